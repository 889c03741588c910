/*
 * flow.c - how much the consumer thread takes on: --max-in-flight (updates
 * extracting at once) and --incomplete-timeout (updates whose chunks
 * stopped arriving). Time spent throttled by the first never counts
 * against the second: while the consumer takes no events, no update can
 * receive a chunk.
 */
#include "progress.h"
#include "worker_state.h"

/* Time spent throttled so far, the current stretch included. */
uint64_t throttled_ms(const worker *w, uint64_t now)
{
    return w->throttle_total_ms + (w->throttled ? now - w->throttle_since : 0);
}

/* Bound the updates extracting at once: a backlog of small updates would
 * otherwise start a thread, a zstd context and a tar reader for every one
 * the consumer hands over, hundreds at a time. At the limit the consumer
 * stops taking events (librdkafka's prefetch is bounded by
 * queued.max.messages.kbytes) and waits for completions instead; see the
 * main loop. Pausing the partitions instead would keep rebalances served,
 * but librdkafka 2.0 resumes a paused partition's fetching only after a
 * delay (measured: ~0.5 s per pause/resume cycle, 18 updates/s), so
 * stopping the poll is the better trade: a rebalance waits at most until
 * an update finishes (or THROTTLED_POLL_MS). Updates waiting for chunks do
 * not count. */
void flow_control(worker *w)
{
    unsigned ready = 0;
    for (flight *f = w->flights; f != NULL; f = f->next)
        ready += f->u != NULL && all_chunks_seen(f);
    if (ready > w->peak_ready)
        w->peak_ready = ready;
    bool want = ready >= (w->o->max_in_flight ? w->o->max_in_flight : 1);
    if (want == w->throttled)
        return;
    uint64_t now = ds_mono_ms();
    if (want) {
        w->throttle_since = now;
    } else {
        w->throttle_total_ms += now - w->throttle_since;
    }
    w->throttled = want;
}

/* Updates whose chunks stopped arriving must not hold the commit point
 * forever (DESIGN.md): after --incomplete-timeout of fetching they are
 * cancelled and dead-lettered as incomplete. A retired update is
 * forgotten after the same time without a chunk (each chunk of it, even
 * discarded or dead-lettered, counts as one). */
void check_timeouts(worker *w)
{
    uint64_t now = ds_mono_ms();
    uint64_t limit = w->o->incomplete_timeout_ms;
    uint64_t throttled = throttled_ms(w, now);
    for (flight *f = w->flights, *nx; f != NULL; f = nx) {
        nx = f->next;
        if (now - f->last_ms < limit || f->awaiting)
            continue;
        uint64_t idle = now - f->last_ms - (throttled - f->throttle_mark);
        if (idle < limit)
            continue;
        if (f->u != NULL) {
            if (!all_chunks_seen(f) && !f->timed_out) {
                f->timed_out = true;
                ds_update_cancel(f->u);
            }
        } else if (flight_current(w, f)) {
            flight_forget(w, f);
        } else {
            flight_unlink(w, f);
        }
    }
}
