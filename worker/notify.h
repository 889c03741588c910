/*
 * notify.h - what `despooler run` tells its service manager (systemd's
 * sd_notify protocol, libsystemd): READY=1 once the consumer got its first
 * assignment, a STATUS= line per assignment, STOPPING=1 when a stop
 * begins, and WATCHDOG=1 pings when the unit has WatchdogSec=. Without
 * NOTIFY_SOCKET (not started by systemd) every call is a no-op; a message
 * that cannot be sent is not an error for the worker (it is logged once).
 * Consumer thread only.
 */
#ifndef DS_NOTIFY_H
#define DS_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ds_notify {
    uint64_t ping_every_ms; /* half of WATCHDOG_USEC; 0 = no watchdog */
    uint64_t last_ping_ms;
    bool ready;  /* READY=1 sent */
    bool warned; /* a failed send was logged */
} ds_notify;

/* Read WATCHDOG_USEC/WATCHDOG_PID (sd_watchdog_enabled) and log whether
 * the watchdog is on. */
void ds_notify_init(ds_notify *n, const char *site);

/* An assignment was taken (partitions: "0,1,2" or "none"): STATUS= line,
 * and READY=1 the first time. */
void ds_notify_assigned(ds_notify *n, const char *site, const char *partitions);

/* A stop begins (SIGTERM/SIGINT or a fatal error). */
void ds_notify_stopping(ds_notify *n, const char *site);

/* Call from the consumer loop: WATCHDOG=1 when half the watchdog interval
 * has passed since the last ping (now_ms: ds_mono_ms). */
void ds_notify_watchdog(ds_notify *n, uint64_t now_ms);

#endif
