/*
 * worker.h - `despooler run`: the consumer-group member that turns
 * pkg.updates events into finalized versions in one site's library, and
 * commits offsets only for events whose update is done (DESIGN.md, offset
 * rule).
 */
#ifndef DS_WORKER_H
#define DS_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "err.h"
#include "kconf.h"

typedef struct ds_worker_opts {
    const ds_kconf *kc;
    const char *site;
    const char *library;
    unsigned keep_versions;         /* >= 1 */
    uint64_t incomplete_timeout_ms; /* chunks stopped arriving */
    uint64_t max_update_size;       /* declared size cap, 0 = none */
    uint64_t max_entries;           /* tar entries cap, 0 = none */
    unsigned max_window_log;        /* zstd window cap, 0 = default */
    unsigned max_in_flight;         /* updates extracting at once, >= 1 */
    const char *metrics_addr;       /* --metrics HOST:PORT, or NULL */
    const char *trusted_keys;       /* require signatures by these, or NULL */
    /* Set (to the signal's number) by SIGTERM/SIGINT; *stop_sender is the
     * sending pid then (0: unknown). stop_sender may be NULL. */
    volatile sig_atomic_t *stop;
    volatile sig_atomic_t *stop_sender;
    /* Set by SIGHUP: re-read --trusted-keys; the worker clears it. NULL:
     * no reloads. */
    volatile sig_atomic_t *reload;
    int create_library; /* --create-library: make DIR (and parents) */
    /* DS_RETIRE_KEEP (default) or DS_RETIRE_REMOVE (--on-retire) */
    int on_retire;
} ds_worker_opts;

/* Run until *stop is set (returns 0 after a clean shutdown: in-flight
 * work finished or abandoned, offsets committed, group left) or a fatal
 * error (negative, err filled). */
int ds_worker_run(const ds_worker_opts *opts, ds_err *err);

#endif
