/*
 * update.h - one update in flight: its chunks, handed over by the consumer
 * thread as they arrive, are decompressed, verified and extracted into a
 * staging directory by the update's own thread, which then finalizes the
 * version (library.h) and posts the outcome to a completion queue that the
 * consumer thread drains.
 *
 * Ownership: ds_update_push() takes the Kafka message (its payload is read
 * in place, never copied) and destroys it once its bytes are consumed. The
 * hand-over queue is bounded (a few chunks), so memory per update is
 * constant; a push into a full queue waits for the thread to catch up.
 *
 * Only the consumer thread calls push/cancel/join; the update thread only
 * touches the queue under the update's mutex.
 */
#ifndef DS_UPDATE_H
#define DS_UPDATE_H

#include <pthread.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "err.h"
#include "library.h"
#include "manifest.h"
#include "partfetch.h"

typedef enum ds_outcome {
    DS_OUT_FINALIZED = 1, /* current now points at this version */
    DS_OUT_STALE,         /* current was already >= this version */
    DS_OUT_REJECTED,      /* the update's fault: err.reason says why */
    DS_OUT_IOERROR,       /* the local disk's fault: retry later */
    DS_OUT_CANCELLED,     /* ds_update_cancel() was called */
} ds_outcome;

typedef struct ds_update ds_update;

/* Where finished updates are posted. wake() (may be NULL) is called after
 * each post so the consumer thread's poll returns promptly. */
typedef struct ds_completions {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled on post */
    ds_update *head;
    void (*wake)(void *ctx);
    void *wake_ctx;
} ds_completions;

void ds_completions_init(ds_completions *cq, void (*wake)(void *), void *ctx);
void ds_completions_destroy(ds_completions *cq);
/* Detach and return the list of finished updates (linked by
 * ds_update_next()), oldest first, or NULL. */
ds_update *ds_completions_take(ds_completions *cq);
/* Wait up to timeout_ms for a finished update to be posted (returns at
 * once if one is waiting). */
void ds_completions_wait(ds_completions *cq, unsigned timeout_ms);

typedef struct ds_update_opts {
    ds_library *lib;
    ds_completions *cq;
    uint64_t max_entries;
    unsigned max_window_log;
    void *user; /* the consumer thread's bookkeeping */
    /* Schema v2 (NULL for v1): the manifest, whose borrowed pointers are
     * not used. Inline: its data comes through ds_update_push as one
     * chunk, a stream of one or more zstd frames. Parts or index form:
     * the thread fetches refs[0..nrefs) (the parts, or the index parts)
     * from pf; ds_update_start takes ownership of refs (malloc'd), also
     * when it fails. */
    const ds_manifest *man;
    ds_partfetch *pf;
    ds_part_ref *refs;
    size_t nrefs;
} ds_update_opts;

/* Start the thread for the update whose first chunk header is hdr. */
int ds_update_start(const ds_event *hdr, const ds_update_opts *opts,
                    ds_update **out, ds_err *err);

/* Hand chunk msg (header ev, already checked to be the next chunk of this
 * update) to the thread. Returns 0 and owns msg, or 1 when the thread has
 * already stopped reading (failed or cancelled): msg stays the caller's. */
int ds_update_push(ds_update *u, rd_kafka_message_t *msg, const ds_event *ev);

/* Ask the thread to stop at the next chunk boundary. An update already
 * finalizing completes (it is past the point of no return). */
void ds_update_cancel(ds_update *u);

/* Wait for the thread to finish (its completion has been posted). */
void ds_update_join(ds_update *u);

/* After completion: outcome, error (for REJECTED/IOERROR) and numbers. */
ds_outcome ds_update_outcome(const ds_update *u, const ds_err **err);
const ds_event *ds_update_header(const ds_update *u);
void *ds_update_user(const ds_update *u);
ds_update *ds_update_next(const ds_update *u);
uint64_t ds_update_entries(const ds_update *u);
double ds_update_seconds(const ds_update *u); /* first chunk to done */
double ds_update_finalize_seconds(const ds_update *u);
/* Where a v2 update's parts came from (frame bytes: what pkg.content
 * would send), and the files it shares with the installed version. */
typedef struct ds_update_reuse_stats {
    uint64_t local_parts, local_bytes, fetched_parts, fetched_bytes;
    uint64_t mismatches;
    uint64_t linked_files, linked_bytes;
} ds_update_reuse_stats;
void ds_update_reuse(const ds_update *u, ds_update_reuse_stats *r);
/* Where an update's time went: waiting for chunks (the consumer or the
 * sender was behind), extracting (decompress, hash, write), syncing the
 * staged tree. */
void ds_update_phases(const ds_update *u, double *wait, double *extract,
                      double *sync);

/* Join (if needed) and free. NULL is fine. */
void ds_update_free(ds_update *u);

#endif
