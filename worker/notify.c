/*
 * notify.c - the worker's side of systemd's notify protocol; see
 * notify.h. libsystemd's sd_notify sends one datagram per call to
 * NOTIFY_SOCKET and returns 0 when the variable is unset, so nothing here
 * needs to know whether systemd is there.
 */
#include "notify.h"

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"

/* sd_notify's result: > 0 sent, 0 no NOTIFY_SOCKET, < 0 -errno. */
static void send_state(ds_notify *n, const char *state)
{
    int r = sd_notify(0, state);
    if (r < 0 && !n->warned) {
        n->warned = true;
        ds_warn("notify-failed", "state=\"%.*s\" error=\"%s\"",
                (int)strcspn(state, "\n"), state, strerror(-r));
    }
}

void ds_notify_init(ds_notify *n, const char *site)
{
    memset(n, 0, sizeof(*n));
    uint64_t usec = 0;
    /* > 0: WATCHDOG_USEC is set and WATCHDOG_PID, if set, is this
     * process. The environment is left as it is (0). */
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        n->ping_every_ms = usec / 2000;
        if (n->ping_every_ms == 0)
            n->ping_every_ms = 1;
        ds_info("watchdog", "site=%s interval_ms=%llu ping_every_ms=%llu", site,
                (unsigned long long)(usec / 1000),
                (unsigned long long)n->ping_every_ms);
    }
}

void ds_notify_assigned(ds_notify *n, const char *site, const char *partitions)
{
    char msg[640];
    snprintf(msg, sizeof(msg), "%sSTATUS=site %s: partitions %s",
             n->ready ? "" : "READY=1\n", site, partitions);
    send_state(n, msg);
    n->ready = true;
}

void ds_notify_stopping(ds_notify *n, const char *site)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=site %s: stopping", site);
    send_state(n, msg);
}

void ds_notify_watchdog(ds_notify *n, uint64_t now_ms)
{
    if (n->ping_every_ms == 0 || now_ms - n->last_ping_ms < n->ping_every_ms)
        return;
    n->last_ping_ms = now_ms;
    send_state(n, "WATCHDOG=1");
}
