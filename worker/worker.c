/*
 * worker.c - the despooler's consumer loop (one thread) and its
 * bookkeeping: which updates are in flight, which offsets are done, what
 * may be committed.
 *
 * Threads: this file runs on the consumer thread only; each update in
 * flight has its own thread (update.c) that extracts and finalizes, then
 * posts its outcome to a completion queue drained here. Delivery reports
 * of dead letters are served here too (rd_kafka_poll on the producer), so
 * every piece of bookkeeping below is single-threaded.
 *
 * Invariants:
 * - Every event the consumer returns is added to its partition's offset
 *   tracker before anything else, and is marked done exactly once: when
 *   its update is finalized or discarded (stale, duplicate, superseded),
 *   or when its dead letter was delivered.
 * - A partition's committed offset never passes an event that is not done;
 *   with nothing pending, it is the consumer's position, which librdkafka
 *   moves past transaction markers, so a caught-up site shows lag 0.
 * - At most --max-in-flight updates whose chunks have all arrived are
 *   extracting at once; at that limit the consumer takes no more events
 *   until one finishes (flow_control). Updates still waiting for chunks
 *   do not count: they need the consumer to fetch more.
 * - On revoke, in-flight updates of the revoked partitions are cancelled
 *   (staging removed, nothing committed for them); updates that got past
 *   the point of no return finish and are committed before the partitions
 *   go.
 */
#include "worker.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "dlq.h"
#include "library.h"
#include "log.h"
#include "metrics.h"
#include "metricsd.h"
#include "offsets.h"
#include "progress.h"
#include "sign.h"
#include "update.h"

#define COMMIT_INTERVAL_MS          200
#define POSITION_COMMIT_INTERVAL_MS 1000
#define REWIND_BACKOFF_MIN_MS       1000
#define REWIND_BACKOFF_MAX_MS       60000
#define GAUGE_INTERVAL_MS           1000
#define HEALTH_TIMEOUT_MS           2000
/* While throttled (--max-in-flight), the consumer still polls this often:
 * rebalances wait at most this long, and at most one event per interval
 * goes over the limit. */
#define THROTTLED_POLL_MS 10000
/* Asking the group's offsets blocks the consumer thread: briefly. */
#define GROUP_OFFSET_TIMEOUT_MS 500

/* What happens to later chunks of an update that is no longer active. */
typedef enum fate {
    ACTIVE,  /* chunks go to its thread */
    DISCARD, /* stale or superseded: later chunks are done quietly */
    DEAD,    /* rejected: later chunks are dead-lettered too */
} fate;

typedef struct flight {
    struct flight *next;
    int32_t partition;
    unsigned gen;     /* partition generation it belongs to */
    ds_event hdr;     /* chunk 0's header (data not kept) */
    int64_t *offsets; /* offsets of chunks taken so far */
    uint32_t noffsets, cap;
    uint32_t next_chunk;    /* index expected next */
    uint64_t last_ms;       /* monotonic time of the last chunk */
    uint64_t throttle_mark; /* throttled_ms() at the last chunk */
    ds_update *u;           /* thread while ACTIVE, else NULL */
    fate fate;
    char reason[DS_REASON_MAX];
    char detail[DS_ERRMSG_MAX];
    bool revoked, superseded, timed_out, shutdown;
} flight;

typedef struct part {
    ds_offsets *trk;
    bool assigned;
    unsigned gen;         /* bumped at each assignment */
    int64_t committed;    /* last offset we committed, -1 none */
    int64_t group_offset; /* the group's, asked once for metrics; -1 */
    bool group_asked;
    uint64_t resume_at_ms; /* paused after a local error until then */
    uint64_t backoff_ms;
} part;

/* A dead letter waiting for its delivery report. */
typedef struct ticket {
    int32_t partition;
    unsigned gen;
    int64_t offset;
} ticket;

typedef struct counters {
    uint64_t finalized, stale, dead, ioerrors, rebalances;
} counters;

typedef struct worker {
    const ds_worker_opts *o;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t *out_topics[2]; /* DLQ, status: metadata known early */
    rd_kafka_queue_t *cqueue;
    ds_library *lib;
    ds_refetch *refetch;
    ds_completions comp;
    part *parts;
    int32_t nparts;
    flight *flights;
    uint64_t last_commit_ms;
    bool dirty;
    bool fatal;
    bool releasing; /* flushing at a revoke or at shutdown: no rewinds */
    bool throttled; /* --max-in-flight reached: not taking events */
    uint64_t throttle_since, throttle_total_ms, last_poll_ms;
    unsigned peak_ready; /* most updates extracting at once, for the log */
    counters n;
    ds_keyring *keys;    /* --trusted-keys, or NULL: signatures unchecked */
    ds_metrics *met;     /* NULL without --metrics */
    ds_metricsd *httpd;  /* serves met on its own thread */
    atomic_int assigned; /* partitions; -1 before the first assignment */
    uint64_t last_gauge_ms;
} worker;

static void handle_completions(worker *w);

/* ---- partitions ---------------------------------------------------- */

static part *part_get(worker *w, int32_t p)
{
    if (p < 0)
        return NULL;
    if (p >= w->nparts) {
        int32_t n = p + 1;
        part *np = realloc(w->parts, (size_t)n * sizeof(*np));
        if (np == NULL)
            return NULL;
        for (int32_t i = w->nparts; i < n; i++) {
            memset(&np[i], 0, sizeof(np[i]));
            np[i].committed = -1;
            np[i].group_offset = -1;
            np[i].trk = ds_offsets_new();
            if (np[i].trk == NULL)
                return NULL;
        }
        w->parts = np;
        w->nparts = n;
    }
    return &w->parts[p];
}

static void mark_done(worker *w, int32_t partition, unsigned gen, int64_t off)
{
    part *p = part_get(w, partition);
    if (p == NULL || !p->assigned || p->gen != gen)
        return; /* revoked since: the new owner re-reads it */
    ds_err err;
    if (ds_offsets_done(p->trk, off, &err) < 0)
        ds_warn("offset-bookkeeping", "partition=%d offset=%lld error=\"%s\"",
                (int)partition, (long long)off, err.msg);
    w->dirty = true;
}

/* ---- metrics (--metrics) ------------------------------------------- */

static void count_finalized(worker *w, const ds_event *h, double fin_secs,
                            double upd_secs)
{
    ds_metrics_add(w->met, DS_C_FINALIZED, 1);
    ds_metrics_add(w->met, DS_C_EXTRACTED_BYTES, h->size);
    ds_metrics_observe(w->met, DS_H_FINALIZE, fin_secs);
    ds_metrics_observe(w->met, DS_H_UPDATE, upd_secs);
}

/* Every label value the worker can produce starts at 0, so that rate()
 * and alerts see a series before its first event. */
static void seed_labels(ds_metrics *m)
{
    static const char *const discarded[] = {"stale", "duplicate", "superseded"};
    static const char *const dead[] = {
        "bad-schema",   "sha256-mismatch", "size-mismatch",
        "corrupt-zstd", "corrupt-tar",     "unsafe-path",
        "too-large",    "bad-signature",   "incomplete"};
    static const char *const errors[] = {"kafka", "local", "commit",
                                         "dead-letter"};
    for (size_t i = 0; i < sizeof(discarded) / sizeof(*discarded); i++)
        ds_metrics_add_label(m, DS_L_DISCARDED, discarded[i], 0);
    for (size_t i = 0; i < sizeof(dead) / sizeof(*dead); i++)
        ds_metrics_add_label(m, DS_L_DEAD, dead[i], 0);
    for (size_t i = 0; i < sizeof(errors) / sizeof(*errors); i++)
        ds_metrics_add_label(m, DS_L_ERRORS, errors[i], 0);
}

/* Gauges sampled now and then on the consumer thread: updates in flight,
 * and each assigned partition's lag: the high watermark librdkafka last
 * saw in a fetch response (the figure its statistics report as hi_offset;
 * no request is sent) minus the group's committed offset: this worker's
 * last commit, or until it made one, the group's as the coordinator
 * reports it (asked once per assignment; a partition the group never
 * committed counts from its log start, as auto.offset.reset=earliest
 * will read it). */
static void update_gauges(worker *w)
{
    if (w->met == NULL)
        return;
    unsigned in_flight = 0;
    for (flight *f = w->flights; f != NULL; f = f->next)
        in_flight += f->u != NULL;
    ds_metrics_set(w->met, DS_G_IN_FLIGHT, in_flight);
    rd_kafka_topic_partition_list_t *ask =
        rd_kafka_topic_partition_list_new(w->nparts > 0 ? w->nparts : 1);
    for (int32_t i = 0; i < w->nparts; i++)
        if (w->parts[i].assigned && w->parts[i].committed < 0 &&
            !w->parts[i].group_asked)
            rd_kafka_topic_partition_list_add(ask, DS_TOPIC_UPDATES, i);
    if (ask->cnt > 0 &&
        rd_kafka_committed(w->consumer, ask, GROUP_OFFSET_TIMEOUT_MS) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < ask->cnt; i++) {
            part *p = &w->parts[ask->elems[i].partition];
            p->group_asked = true;
            p->group_offset = ask->elems[i].err ? -1 : ask->elems[i].offset;
            if (p->group_offset < 0) /* none yet: from the log start */
                p->group_offset = RD_KAFKA_OFFSET_BEGINNING;
        }
    rd_kafka_topic_partition_list_destroy(ask);
    for (int32_t i = 0; i < w->nparts; i++) {
        const part *p = &w->parts[i];
        int64_t lo = -1, hi = -1, lag = -1;
        if (p->assigned &&
            rd_kafka_get_watermark_offsets(w->consumer, DS_TOPIC_UPDATES, i,
                                           &lo,
                                           &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0) {
            int64_t from = p->committed >= 0 ? p->committed
                           : p->group_offset == RD_KAFKA_OFFSET_BEGINNING
                               ? lo
                               : p->group_offset;
            if (from >= 0)
                lag = hi > from ? hi - from : 0;
        }
        ds_metrics_set_lag(w->met, i, lag);
    }
}

/* /healthz, on the HTTP thread: healthy when the member holds an
 * assignment (it may be empty when the group has more members than
 * partitions) and a broker answers a metadata request now. */
static int health(void *ctx, char *why, size_t n)
{
    worker *w = ctx;
    int assigned = atomic_load(&w->assigned);
    if (assigned < 0) {
        snprintf(why, n,
                 "site=%s no partition assignment (joining or "
                 "rebalancing)",
                 w->o->site);
        return 0;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e =
        rd_kafka_metadata(w->consumer, 0, NULL, &md, HEALTH_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(why, n, "site=%s broker unreachable: metadata request: %s",
                 w->o->site, rd_kafka_err2str(e));
        return 0;
    }
    int brokers = md->broker_cnt;
    rd_kafka_metadata_destroy(md);
    snprintf(why, n, "site=%s partitions=%d brokers=%d", w->o->site, assigned,
             brokers);
    return 1;
}

/* ---- flights ------------------------------------------------------- */

/* Flights of an older generation of the partition (before a rewind or a
 * re-assignment) never match: their events are read again and start
 * afresh. */
static flight *flight_find(worker *w, int32_t partition, const uint8_t *id)
{
    part *p = part_get(w, partition);
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->partition == partition && p != NULL && f->gen == p->gen &&
            memcmp(f->hdr.update_id, id, DS_UPDATE_ID_LEN) == 0)
            return f;
    return NULL;
}

static bool flight_current(worker *w, const flight *f)
{
    part *p = part_get(w, f->partition);
    return p != NULL && p->assigned && p->gen == f->gen;
}

static void flight_unlink(worker *w, flight *f)
{
    for (flight **pp = &w->flights; *pp != NULL; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    free(f->offsets);
    free(f);
}

static int flight_add_offset(flight *f, int64_t off)
{
    if (f->noffsets == f->cap) {
        uint32_t ncap = f->cap ? f->cap * 2 : 8;
        int64_t *n = realloc(f->offsets, ncap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        f->offsets = n;
        f->cap = ncap;
    }
    f->offsets[f->noffsets++] = off;
    return 0;
}

static bool all_chunks_seen(const flight *f)
{
    return f->next_chunk >= f->hdr.chunks;
}

/* The update is no longer active: later chunks meet fate. Once all of its
 * chunks have passed, nothing more can refer to it. */
static void flight_retire(worker *w, flight *f, fate fate, const char *reason,
                          const char *detail)
{
    f->fate = fate;
    f->u = NULL;
    snprintf(f->reason, sizeof(f->reason), "%s", reason ? reason : "");
    snprintf(f->detail, sizeof(f->detail), "%s", detail ? detail : "");
    f->last_ms = ds_mono_ms();
    if (all_chunks_seen(f))
        flight_unlink(w, f);
}

static const char *hexid(char buf[2 * DS_UPDATE_ID_LEN + 1], const flight *f)
{
    return ds_hex(buf, f->hdr.update_id, DS_UPDATE_ID_LEN);
}

/* ---- dead letters -------------------------------------------------- */

static void dead_letter(worker *w, const rd_kafka_message_t *m,
                        const char *reason, const char *detail)
{
    part *p = part_get(w, m->partition);
    ticket *t = malloc(sizeof(*t));
    ds_err err;
    if (p == NULL || t == NULL) {
        free(t);
        ds_metrics_add_label(w->met, DS_L_ERRORS, "dead-letter", 1);
        ds_error("dead-letter-failed",
                 "partition=%d offset=%lld reason=%s error=\"out of memory\"",
                 (int)m->partition, (long long)m->offset, reason);
        return; /* not marked done: the commit point stays before it */
    }
    *t = (ticket){m->partition, p->gen, m->offset};
    ds_dead_letter dl = {
        .partition = m->partition,
        .offset = m->offset,
        .key = m->key,
        .key_len = m->key_len,
        .value = m->payload,
        .value_len = m->len,
        .reason = reason,
        .detail = detail,
    };
    char q[600];
    /* A full local queue: serve delivery reports and try again. */
    for (int tries = 0;; tries++) {
        int rc = ds_dlq_produce(w->producer, w->o->site, &dl, t, &err);
        if (rc == 0)
            break;
        if (tries == 50) {
            free(t);
            ds_metrics_add_label(w->met, DS_L_ERRORS, "dead-letter", 1);
            ds_error("dead-letter-failed",
                     "partition=%d offset=%lld reason=%s error=%s",
                     (int)m->partition, (long long)m->offset, reason,
                     ds_log_quote(q, sizeof(q), err.msg));
            return;
        }
        rd_kafka_poll(w->producer, 100);
    }
    w->n.dead++;
    ds_metrics_add_label(w->met, DS_L_DEAD, reason, 1);
    ds_warn("dead-lettered",
            "site=%s partition=%d offset=%lld reason=%s detail=%s", w->o->site,
            (int)m->partition, (long long)m->offset, reason,
            ds_log_quote(q, sizeof(q), detail));
}

/* Dead-letter every chunk of f consumed so far. They were released after
 * extraction, so they are read again from the topic. */
static void dead_letter_consumed(worker *w, flight *f, const char *reason,
                                 const char *detail)
{
    for (uint32_t i = 0; i < f->noffsets; i++) {
        rd_kafka_message_t *m = NULL;
        ds_err err;
        if (w->refetch == NULL &&
            ds_refetch_new(w->o->kc, &w->refetch, &err) < 0) {
            ds_metrics_add_label(w->met, DS_L_ERRORS, "dead-letter", 1);
            ds_error("dead-letter-failed",
                     "partition=%d offset=%lld "
                     "error=\"%s\"",
                     (int)f->partition, (long long)f->offsets[i], err.msg);
            continue; /* not done: the commit point holds before it */
        }
        if (ds_refetch_get(w->refetch, f->partition, f->offsets[i], 10000, &m,
                           &err) < 0) {
            ds_metrics_add_label(w->met, DS_L_ERRORS, "dead-letter", 1);
            ds_error("dead-letter-failed",
                     "partition=%d offset=%lld "
                     "error=\"%s\"",
                     (int)f->partition, (long long)f->offsets[i], err.msg);
            continue;
        }
        dead_letter(w, m, reason, detail);
        rd_kafka_message_destroy(m);
    }
    f->noffsets = 0;
}

static void report_status(worker *w, const char *package, uint64_t version,
                          const char *state, const char *detail)
{
    ds_err err;
    if (ds_status_produce(w->producer, w->o->site, package, version, state,
                          detail, &err) < 0)
        ds_warn("status-failed", "package=%s error=\"%s\"", package, err.msg);
}

static void rewind_partition(worker *w, int32_t partition);

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    worker *w = opaque;
    ticket *t = m->_private;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && t == NULL) {
        ds_error("produce-failed", "topic=%s error=\"%s\"",
                 rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        return;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* A dead letter that cannot be written is never dropped: its
         * event stays not done, so the commit point holds before it, and
         * the partition goes back to it and tries again after a backoff
         * (not while partitions are being given up: their next owner
         * reads it again). */
        part *p = part_get(w, t->partition);
        bool retry =
            !w->releasing && p != NULL && p->assigned && p->gen == t->gen;
        ds_metrics_add_label(w->met, DS_L_ERRORS, "dead-letter", 1);
        ds_error("dead-letter-failed",
                 "site=%s partition=%d offset=%lld topic=%s error=\"%s\" "
                 "note=\"not committed; %s\"",
                 w->o->site, (int)t->partition, (long long)t->offset,
                 rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err),
                 retry ? "the partition rewinds to it and retries"
                       : "read again by the partition's next owner");
        int32_t partition = t->partition;
        free(t);
        if (retry)
            rewind_partition(w, partition);
        return;
    }
    if (t != NULL) {
        mark_done(w, t->partition, t->gen, t->offset);
        free(t);
    }
}

/* ---- local failures: rewind the partition --------------------------- */

/* A local failure (disk full, permissions) is nobody's event's fault:
 * nothing is dead-lettered or committed. The partition forgets what it
 * has in flight and goes back to its commit point, paused with a growing
 * backoff; other partitions carry on. */
static void rewind_partition(worker *w, int32_t partition)
{
    part *p = part_get(w, partition);
    if (p == NULL || !p->assigned)
        return;
    /* Updates still running are told to stop; their completions arrive
     * later and find their flight out of date (complete_one). Nothing
     * here waits or recurses. */
    for (flight *f = w->flights, *nx; f != NULL; f = nx) {
        nx = f->next;
        if (f->partition != partition || f->gen != p->gen)
            continue;
        if (f->u != NULL) {
            f->revoked = true;
            ds_update_cancel(f->u);
        } else {
            flight_unlink(w, f);
        }
    }
    int64_t cp = ds_offsets_commit_point(p->trk);
    ds_offsets_reset(p->trk);
    p->gen++;
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : REWIND_BACKOFF_MIN_MS;
    if (p->backoff_ms > REWIND_BACKOFF_MAX_MS)
        p->backoff_ms = REWIND_BACKOFF_MAX_MS;
    p->resume_at_ms = ds_mono_ms() + p->backoff_ms;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES, partition)->offset =
        cp;
    rd_kafka_pause_partitions(w->consumer, l);
    if (cp >= 0) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(w->consumer, l, 5000);
        if (e != NULL) {
            ds_error("rewind-failed", "partition=%d offset=%lld error=\"%s\"",
                     (int)partition, (long long)cp, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    ds_warn("partition-paused", "partition=%d rewind_to=%lld retry_in_ms=%llu",
            (int)partition, (long long)cp, (unsigned long long)p->backoff_ms);
}

static void resume_due(worker *w)
{
    uint64_t now = ds_mono_ms();
    for (int32_t i = 0; i < w->nparts; i++) {
        part *p = &w->parts[i];
        if (!p->assigned || p->resume_at_ms == 0 || now < p->resume_at_ms)
            continue;
        p->resume_at_ms = 0;
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES, i);
        rd_kafka_resume_partitions(w->consumer, l);
        rd_kafka_topic_partition_list_destroy(l);
        ds_info("partition-resumed", "partition=%d", (int)i);
    }
}

/* ---- flow control (--max-in-flight) ---------------------------------- */

/* Time spent throttled so far, the current stretch included. */
static uint64_t throttled_ms(const worker *w, uint64_t now)
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
 * not count, and the time spent throttled does not count against their
 * incomplete timeout (check_timeouts). */
static void flow_control(worker *w)
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

/* ---- completions --------------------------------------------------- */

/* Cancel the older, still-active updates of a package that just got a
 * newer version: they can only be discarded, and must not hold the commit
 * point while their chunks trickle in. */
static void supersede(worker *w, const char *package, uint64_t version)
{
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL && f->hdr.version <= version &&
            strcmp(f->hdr.package, package) == 0) {
            f->superseded = true;
            ds_update_cancel(f->u);
        }
}

static void complete_one(worker *w, ds_update *u)
{
    flight *f = ds_update_user(u);
    const ds_err *err = NULL;
    ds_outcome out = ds_update_outcome(u, &err);
    char id[2 * DS_UPDATE_ID_LEN + 1], q[600];
    const ds_event *h = &f->hdr;
    double fin_secs = ds_update_finalize_seconds(u),
           upd_secs = ds_update_seconds(u), wait_secs, extract_secs, sync_secs;
    ds_update_phases(u, &wait_secs, &extract_secs, &sync_secs);
    ds_update_free(u);
    f->u = NULL;

    if (!flight_current(w, f)) {
        /* Its partition was rewound or revoked meanwhile: its events are
         * read again from the commit point (a version finalized here is
         * then found current and discarded as a duplicate). */
        if (out == DS_OUT_FINALIZED) {
            w->n.finalized++;
            count_finalized(w, h, fin_secs, upd_secs);
            ds_info("finalized",
                    "site=%s package=%s version=%" PRIu64
                    " update_id=%s note=\"partition rewound or revoked, "
                    "its events are read again\"",
                    w->o->site, h->package, h->version, hexid(id, f));
            report_status(w, h->package, h->version, "installed", "");
        }
        flight_unlink(w, f);
        return;
    }

    switch (out) {
    case DS_OUT_FINALIZED:
    case DS_OUT_STALE:
        for (uint32_t i = 0; i < f->noffsets; i++)
            mark_done(w, f->partition, f->gen, f->offsets[i]);
        if (out == DS_OUT_FINALIZED) {
            w->n.finalized++;
            count_finalized(w, h, fin_secs, upd_secs);
            ds_info("finalized",
                    "site=%s package=%s version=%" PRIu64 " update_id=%s "
                    "bytes=%" PRIu64 " zbytes=%" PRIu64 " chunks=%" PRIu32
                    " partition=%d offset=%lld seconds=%.3f wait_s=%.3f "
                    "extract_s=%.3f sync_s=%.3f finalize_s=%.3f",
                    w->o->site, h->package, h->version, hexid(id, f), h->size,
                    h->zsize, h->chunks, (int)f->partition,
                    (long long)(f->noffsets ? f->offsets[0] : -1), upd_secs,
                    wait_secs, extract_secs, sync_secs, fin_secs);
            report_status(w, h->package, h->version, "installed", "");
            supersede(w, h->package, h->version);
        } else {
            w->n.stale++;
            ds_metrics_add_label(w->met, DS_L_DISCARDED, "stale", 1);
            ds_info("discarded",
                    "site=%s package=%s version=%" PRIu64 " update_id=%s "
                    "reason=stale partition=%d",
                    w->o->site, h->package, h->version, hexid(id, f),
                    (int)f->partition);
        }
        flight_retire(w, f, DISCARD, NULL, NULL);
        break;
    case DS_OUT_REJECTED:
        ds_warn("rejected",
                "site=%s package=%s version=%" PRIu64 " update_id=%s "
                "reason=%s detail=%s",
                w->o->site, h->package, h->version, hexid(id, f), err->reason,
                ds_log_quote(q, sizeof(q), err->msg));
        report_status(w, h->package, h->version, "failed", err->msg);
        {
            char reason[DS_REASON_MAX], detail[DS_ERRMSG_MAX];
            snprintf(reason, sizeof(reason), "%s", err->reason);
            snprintf(detail, sizeof(detail), "%s", err->msg);
            dead_letter_consumed(w, f, reason, detail);
            flight_retire(w, f, DEAD, reason, detail);
        }
        break;
    case DS_OUT_IOERROR:
        w->n.ioerrors++;
        ds_metrics_add_label(w->met, DS_L_ERRORS, "local", 1);
        ds_error("local-error",
                 "site=%s package=%s version=%" PRIu64 " update_id=%s "
                 "error=%s",
                 w->o->site, h->package, h->version, hexid(id, f),
                 ds_log_quote(q, sizeof(q), err->msg));
        {
            int32_t partition = f->partition;
            flight_unlink(w, f);
            rewind_partition(w, partition);
        }
        break;
    case DS_OUT_CANCELLED:
        if (f->revoked || f->shutdown) {
            /* Nothing committed for it: whoever owns the partition next
             * reads the update again from its first chunk. */
            ds_metrics_add(w->met, DS_C_ABANDONED, 1);
            ds_info("abandoned",
                    "site=%s package=%s version=%" PRIu64 " update_id=%s",
                    w->o->site, h->package, h->version, hexid(id, f));
            flight_unlink(w, f);
        } else if (f->superseded) {
            w->n.stale++;
            ds_metrics_add_label(w->met, DS_L_DISCARDED, "superseded", 1);
            for (uint32_t i = 0; i < f->noffsets; i++)
                mark_done(w, f->partition, f->gen, f->offsets[i]);
            ds_info("discarded",
                    "site=%s package=%s version=%" PRIu64 " update_id=%s "
                    "reason=superseded partition=%d",
                    w->o->site, h->package, h->version, hexid(id, f),
                    (int)f->partition);
            flight_retire(w, f, DISCARD, NULL, NULL);
        } else if (f->reason[0] != '\0') {
            char reason[DS_REASON_MAX], detail[DS_ERRMSG_MAX];
            snprintf(reason, sizeof(reason), "%s", f->reason);
            snprintf(detail, sizeof(detail), "%s", f->detail);
            report_status(w, h->package, h->version, "failed", detail);
            dead_letter_consumed(w, f, reason, detail);
            flight_retire(w, f, DEAD, reason, detail);
        } else {
            char detail[256];
            snprintf(detail, sizeof(detail),
                     "update %s of %s version %" PRIu64 ": %" PRIu32
                     " of %" PRIu32 " chunks arrived, then none for %llu ms",
                     hexid(id, f), h->package, h->version, f->next_chunk,
                     h->chunks,
                     (unsigned long long)w->o->incomplete_timeout_ms);
            report_status(w, h->package, h->version, "failed", detail);
            dead_letter_consumed(w, f, "incomplete", detail);
            flight_retire(w, f, DEAD, "incomplete", detail);
        }
        break;
    }
}

static void handle_completions(worker *w)
{
    ds_update *u = ds_completions_take(&w->comp);
    while (u != NULL) {
        ds_update *next = ds_update_next(u);
        ds_update_join(u);
        complete_one(w, u);
        u = next;
    }
}

/* ---- events -------------------------------------------------------- */

static void start_flight(worker *w, rd_kafka_message_t *m, const ds_event *ev,
                         part *p);
static void chunk_to_flight(worker *w, flight *f, rd_kafka_message_t *m,
                            const ds_event *ev);
static void settle(worker *w, flight *f, rd_kafka_message_t *m,
                   const ds_event *ev);

static void handle_event(worker *w, rd_kafka_message_t *m)
{
    part *p = part_get(w, m->partition);
    if (p == NULL || !p->assigned) {
        ds_warn("unassigned-event", "partition=%d offset=%lld",
                (int)m->partition, (long long)m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    ds_err err;
    if (ds_offsets_add(p->trk, m->offset, &err) < 0) {
        /* A redelivery of an offset already handled (librdkafka 2.0.2 can
         * repeat messages after offset validation): nothing to do. */
        ds_warn("redelivered-event", "partition=%d offset=%lld",
                (int)m->partition, (long long)m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    ds_metrics_add(w->met, DS_C_EVENTS, 1);
    ds_metrics_add(w->met, DS_C_RECEIVED_BYTES, m->len);
    ds_event ev;
    if (ds_event_decode(m->payload, m->len, &ev, &err) < 0) {
        dead_letter(w, m, "bad-schema", err.msg);
        rd_kafka_message_destroy(m);
        return;
    }
    if (m->key == NULL || m->key_len != strlen(ev.package) ||
        memcmp(m->key, ev.package, m->key_len) != 0) {
        char detail[300];
        snprintf(detail, sizeof(detail),
                 "event key \"%.*s\" differs from field package \"%s\"",
                 (int)(m->key ? (m->key_len > 128 ? 128 : m->key_len) : 0),
                 m->key ? (const char *)m->key : "", ev.package);
        dead_letter(w, m, "bad-schema", detail);
        rd_kafka_message_destroy(m);
        return;
    }
    flight *f = flight_find(w, m->partition, ev.update_id);
    if (f == NULL)
        start_flight(w, m, &ev, p);
    else
        chunk_to_flight(w, f, m, &ev);
}

static flight *new_flight(worker *w, const rd_kafka_message_t *m,
                          const ds_event *ev, part *p)
{
    flight *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->partition = m->partition;
    f->gen = p->gen;
    f->hdr = *ev;
    f->hdr.data = NULL;
    f->hdr.data_len = 0;
    f->last_ms = ds_mono_ms();
    f->throttle_mark = throttled_ms(w, f->last_ms);
    f->next = w->flights;
    w->flights = f;
    return f;
}

/* Refuse a whole update at its first chunk m: m is dead-lettered now,
 * and its later chunks as they come (the flight is retired DEAD). */
static void refuse_update(worker *w, rd_kafka_message_t *m, const ds_event *ev,
                          part *p, const char *reason, const char *detail)
{
    flight *f = new_flight(w, m, ev, p);
    dead_letter(w, m, reason, detail);
    rd_kafka_message_destroy(m);
    if (f != NULL) {
        f->next_chunk = 1;
        flight_retire(w, f, DEAD, reason, detail);
    }
}

static void start_flight(worker *w, rd_kafka_message_t *m, const ds_event *ev,
                         part *p)
{
    char detail[DS_ERRMSG_MAX];
    ds_err err;
    if (ev->chunk != 0) {
        snprintf(detail, sizeof(detail),
                 "chunk %" PRIu32 " of %" PRIu32 " of %s version %" PRIu64
                 " arrived without chunk 0",
                 ev->chunk, ev->chunks, ev->package, ev->version);
        dead_letter(w, m, "incomplete", detail);
        rd_kafka_message_destroy(m);
        return;
    }
    /* A site that requires signatures refuses an update at its first
     * chunk, before anything else is decided about it. */
    if (w->keys != NULL && ds_keyring_verify(w->keys, ev, &err) < 0) {
        report_status(w, ev->package, ev->version, "failed", err.msg);
        refuse_update(w, m, ev, p, "bad-signature", err.msg);
        return;
    }
    /* The declared sizes are the sender's claim, checked before a byte is
     * extracted; the extraction then holds the stream to them. */
    uint64_t cap = w->o->max_update_size;
    if (cap != 0 && (ev->size > cap || ev->zsize > cap)) {
        snprintf(detail, sizeof(detail),
                 "%s version %" PRIu64 " declares %" PRIu64 " bytes (%" PRIu64
                 " compressed), over --max-update-size "
                 "%" PRIu64,
                 ev->package, ev->version, ev->size, ev->zsize, cap);
        refuse_update(w, m, ev, p, "too-large", detail);
        return;
    }
    uint64_t cur = 0;
    if (ds_library_current(w->lib, ev->package, &cur, &err) < 0) {
        ds_metrics_add_label(w->met, DS_L_ERRORS, "local", 1);
        ds_error("local-error", "package=%s error=\"%s\"", ev->package,
                 err.msg);
        int32_t partition = m->partition;
        rd_kafka_message_destroy(m);
        rewind_partition(w, partition);
        return;
    }
    flight *f = new_flight(w, m, ev, p);
    if (f == NULL) {
        ds_error("out-of-memory", "partition=%d offset=%lld", (int)m->partition,
                 (long long)m->offset);
        rd_kafka_message_destroy(m);
        w->fatal = true;
        return;
    }
    if (cur >= ev->version) {
        /* Stale or duplicate: not an error, nothing changes. */
        char id[2 * DS_UPDATE_ID_LEN + 1];
        w->n.stale++;
        ds_metrics_add_label(w->met, DS_L_DISCARDED,
                             cur == ev->version ? "duplicate" : "stale", 1);
        ds_info("discarded",
                "site=%s package=%s version=%" PRIu64 " update_id=%s "
                "reason=%s current=%" PRIu64 " partition=%d offset=%lld",
                w->o->site, ev->package, ev->version, hexid(id, f),
                cur == ev->version ? "duplicate" : "stale", cur,
                (int)m->partition, (long long)m->offset);
        f->next_chunk = 1;
        mark_done(w, m->partition, p->gen, m->offset);
        rd_kafka_message_destroy(m);
        flight_retire(w, f, DISCARD, NULL, NULL);
        return;
    }
    ds_update_opts uo = {
        .lib = w->lib,
        .cq = &w->comp,
        .max_entries = w->o->max_entries,
        .max_window_log = w->o->max_window_log,
        .user = f,
    };
    if (ds_update_start(ev, &uo, &f->u, &err) < 0) {
        ds_metrics_add_label(w->met, DS_L_ERRORS, "local", 1);
        ds_error("local-error", "package=%s error=\"%s\"", ev->package,
                 err.msg);
        flight_unlink(w, f);
        int32_t partition = m->partition;
        rd_kafka_message_destroy(m);
        rewind_partition(w, partition);
        return;
    }
    char id[2 * DS_UPDATE_ID_LEN + 1];
    ds_info("update-started",
            "site=%s package=%s version=%" PRIu64 " update_id=%s "
            "chunks=%" PRIu32 " bytes=%" PRIu64 " partition=%d offset=%lld",
            w->o->site, ev->package, ev->version, hexid(id, f), ev->chunks,
            ev->size, (int)m->partition, (long long)m->offset);
    chunk_to_flight(w, f, m, ev);
}

/* f's thread has stopped or was told to: wait for it, learn the outcome
 * (which retires f), then treat chunk m by the update's fate, unless the
 * partition was rewound meanwhile (m is then read again later). */
static void settle(worker *w, flight *f, rd_kafka_message_t *m,
                   const ds_event *ev)
{
    int32_t partition = f->partition;
    unsigned gen = f->gen;
    ds_update_join(f->u);
    handle_completions(w);
    flight *again = flight_find(w, partition, ev->update_id);
    part *p = part_get(w, partition);
    if (again != NULL && again->u == NULL && p != NULL && p->gen == gen)
        chunk_to_flight(w, again, m, ev);
    else
        rd_kafka_message_destroy(m);
}

static void chunk_to_flight(worker *w, flight *f, rd_kafka_message_t *m,
                            const ds_event *ev)
{
    char detail[DS_ERRMSG_MAX];
    if (f->fate == DISCARD) {
        mark_done(w, m->partition, f->gen, m->offset);
        f->next_chunk = ev->chunk + 1;
        rd_kafka_message_destroy(m);
        if (all_chunks_seen(f))
            flight_unlink(w, f);
        return;
    }
    if (f->fate == DEAD) {
        snprintf(detail, sizeof(detail),
                 "%.400s (chunk %" PRIu32 " of a rejected "
                 "update)",
                 f->detail, ev->chunk);
        dead_letter(w, m, f->reason, detail);
        f->next_chunk = ev->chunk + 1;
        rd_kafka_message_destroy(m);
        if (all_chunks_seen(f))
            flight_unlink(w, f);
        return;
    }
    /* Active. A chunk already taken again (a redelivery under a new
     * offset) is dead-lettered alone; it does not harm the update. */
    if (ev->chunk < f->next_chunk) {
        snprintf(detail, sizeof(detail),
                 "duplicate chunk %" PRIu32 " of an update in progress",
                 ev->chunk);
        dead_letter(w, m, "bad-schema", detail);
        rd_kafka_message_destroy(m);
        return;
    }
    const char *reason = NULL;
    if (!ds_event_same_update(&f->hdr, ev)) {
        reason = "bad-schema";
        snprintf(detail, sizeof(detail),
                 "chunk %" PRIu32 " header differs from chunk 0's", ev->chunk);
    } else if (ev->chunk != f->next_chunk) {
        reason = "incomplete";
        snprintf(detail, sizeof(detail),
                 "chunk %" PRIu32 " arrived where chunk %" PRIu32 " was due",
                 ev->chunk, f->next_chunk);
    }
    if (reason != NULL) {
        /* Fail the whole update: its thread stops, what it consumed is
         * dead-lettered with this reason (complete_one), then this event
         * and whatever follows. */
        snprintf(f->reason, sizeof(f->reason), "%s", reason);
        snprintf(f->detail, sizeof(f->detail), "%s", detail);
        ds_update_cancel(f->u);
        settle(w, f, m, ev);
        return;
    }
    int64_t off = m->offset;
    int32_t partition = m->partition;
    if (ds_update_push(f->u, m, ev) == 1) {
        /* Its thread already stopped (rejected or failed locally). */
        settle(w, f, m, ev);
        return;
    }
    if (flight_add_offset(f, off) < 0) {
        ds_error("out-of-memory", "partition=%d offset=%lld", (int)partition,
                 (long long)off);
        w->fatal = true;
        return;
    }
    f->next_chunk++;
    f->last_ms = ds_mono_ms();
    f->throttle_mark = throttled_ms(w, f->last_ms);
}

/* Updates whose chunks stopped arriving must not hold the commit point
 * forever (DESIGN.md): after --incomplete-timeout of fetching (time spent
 * throttled by --max-in-flight does not count) they are cancelled and
 * dead-lettered as incomplete. Retired updates are forgotten after the
 * same time. */
static void check_timeouts(worker *w)
{
    uint64_t now = ds_mono_ms();
    uint64_t limit = w->o->incomplete_timeout_ms;
    uint64_t throttled = throttled_ms(w, now);
    for (flight *f = w->flights, *nx; f != NULL; f = nx) {
        nx = f->next;
        if (now - f->last_ms < limit)
            continue;
        if (f->u != NULL) {
            /* Time the consumer spent throttled, not fetching, is not the
             * sender's delay. */
            uint64_t idle = now - f->last_ms - (throttled - f->throttle_mark);
            if (!all_chunks_seen(f) && !f->timed_out && idle >= limit) {
                f->timed_out = true;
                ds_update_cancel(f->u);
            }
        } else {
            flight_unlink(w, f);
        }
    }
}

/* ---- commits ------------------------------------------------------- */

/* Commit every assigned partition whose commit point moved. With nothing
 * pending, the commit point is the consumer's position, which librdkafka
 * advances past transaction markers once it has seen them. */
static void commit(worker *w, bool sync,
                   const rd_kafka_topic_partition_list_t *only)
{
    if (w->nparts == 0)
        return;
    rd_kafka_topic_partition_list_t *pos =
        rd_kafka_topic_partition_list_new(w->nparts);
    for (int32_t i = 0; i < w->nparts; i++)
        if (w->parts[i].assigned &&
            (only == NULL ||
             rd_kafka_topic_partition_list_find(only, DS_TOPIC_UPDATES, i)))
            rd_kafka_topic_partition_list_add(pos, DS_TOPIC_UPDATES, i);
    if (pos->cnt > 0)
        rd_kafka_position(w->consumer, pos);
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(pos->cnt > 0 ? pos->cnt : 1);
    for (int i = 0; i < pos->cnt; i++) {
        part *p = &w->parts[pos->elems[i].partition];
        int64_t cp = ds_offsets_commit_point(p->trk);
        if (ds_offsets_pending(p->trk) == 0 && p->resume_at_ms == 0 &&
            pos->elems[i].offset > cp)
            cp = pos->elems[i].offset;
        if (cp > p->committed)
            rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES,
                                              pos->elems[i].partition)
                ->offset = cp;
    }
    if (l->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_commit(w->consumer, l, !sync);
        ds_metrics_add(w->met, DS_C_COMMITS, 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ds_metrics_add_label(w->met, DS_L_ERRORS, "commit", 1);
            ds_warn("commit-failed", "site=%s error=\"%s\"", w->o->site,
                    rd_kafka_err2str(e));
        } else {
            for (int i = 0; i < l->cnt; i++)
                w->parts[l->elems[i].partition].committed = l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_topic_partition_list_destroy(pos);
    w->dirty = false;
    w->last_commit_ms = ds_mono_ms();
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    worker *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        if (tp->err != RD_KAFKA_RESP_ERR_NO_ERROR || err) {
            ds_metrics_add_label(w->met, DS_L_ERRORS, "commit", 1);
            ds_warn("commit-failed",
                    "site=%s partition=%d offset=%lld "
                    "error=\"%s\"",
                    w->o->site, (int)tp->partition, (long long)tp->offset,
                    rd_kafka_err2str(tp->err ? tp->err : err));
            part *p = part_get(w, tp->partition);
            if (p != NULL)
                p->committed = -1; /* retry at the next commit */
        }
    }
}

/* ---- rebalance ----------------------------------------------------- */

static void part_list_str(const rd_kafka_topic_partition_list_t *l, char *buf,
                          size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < l->cnt && o + 12 < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%d", i ? "," : "",
                              (int)l->elems[i].partition);
}

/* Give up the partitions in l: cancel their in-flight updates, wait for
 * their threads (an update past the point of no return finishes), wait for
 * their dead letters to be delivered, commit, forget. */
static void release_partitions(worker *w,
                               const rd_kafka_topic_partition_list_t *l)
{
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL && rd_kafka_topic_partition_list_find(
                                l, DS_TOPIC_UPDATES, f->partition)) {
            f->revoked = true;
            ds_update_cancel(f->u);
        }
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL && f->revoked)
            ds_update_join(f->u);
    handle_completions(w);
    bool was = w->releasing;
    w->releasing = true;
    rd_kafka_flush(w->producer, 10000);
    w->releasing = was;
    commit(w, true, l);
    for (int i = 0; i < l->cnt; i++) {
        part *p = part_get(w, l->elems[i].partition);
        if (p == NULL)
            continue;
        p->assigned = false;
        p->resume_at_ms = 0;
        ds_offsets_reset(p->trk);
    }
    for (flight *f = w->flights, *nx; f != NULL; f = nx) {
        nx = f->next;
        if (f->u == NULL && rd_kafka_topic_partition_list_find(
                                l, DS_TOPIC_UPDATES, f->partition))
            flight_unlink(w, f);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    worker *w = opaque;
    char list[512];
    part_list_str(parts, list, sizeof(list));
    w->n.rebalances++;
    ds_metrics_add(w->met, DS_C_REBALANCES, 1);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            part *p = part_get(w, parts->elems[i].partition);
            if (p == NULL) {
                w->fatal = true;
                continue;
            }
            p->assigned = true;
            p->gen++;
            p->committed = -1;
            p->group_offset = -1;
            p->group_asked = false;
            p->resume_at_ms = 0;
            p->backoff_ms = 0;
            ds_offsets_reset(p->trk);
        }
        ds_info("assigned", "site=%s partitions=%s", w->o->site,
                list[0] ? list : "none");
        rd_kafka_assign(rk, parts);
        atomic_store(&w->assigned, parts->cnt);
        ds_metrics_set(w->met, DS_G_ASSIGNED, parts->cnt);
    } else {
        ds_info("revoked", "site=%s partitions=%s", w->o->site,
                list[0] ? list : "none");
        release_partitions(w, parts);
        rd_kafka_assign(rk, NULL);
        atomic_store(&w->assigned, -1);
        ds_metrics_set(w->met, DS_G_ASSIGNED, 0);
        for (int i = 0; i < parts->cnt; i++)
            ds_metrics_set_lag(w->met, parts->elems[i].partition, -1);
    }
}

/* ---- set-up -------------------------------------------------------- */

static void wake_consumer(void *ctx)
{
    worker *w = ctx;
    if (w->cqueue != NULL)
        rd_kafka_queue_yield(w->cqueue);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    worker *w = opaque;
    char q[600];
    ds_metrics_add_label(w->met, DS_L_ERRORS, "kafka", 1);
    ds_warn("kafka-error", "site=%s error=%s detail=%s", w->o->site,
            rd_kafka_err2name((rd_kafka_resp_err_t)err),
            ds_log_quote(q, sizeof(q), reason));
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        w->fatal = true;
}

static int make_clients(worker *w, ds_err *err)
{
    char errstr[512], group[DS_SITE_MAX + 16], host[64] = "host",
                                               cid[DS_SITE_MAX + 96];
    gethostname(host, sizeof(host) - 1);
    snprintf(group, sizeof(group), "despool.%s", w->o->site);
    snprintf(cid, sizeof(cid), "despooler-%s-%s-%d", w->o->site, host,
             (int)getpid());
    int rc;

    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(c, w);
    rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(c, on_commit);
    rd_kafka_conf_set_error_cb(c, on_error);
    if ((rc = ds_kconf_set(c, "group.id", group, err)) < 0 ||
        (rc = ds_kconf_set(c, "client.id", cid, err)) < 0 ||
        (rc = ds_kconf_set(c, "isolation.level", "read_committed", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.commit", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.offset.store", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "auto.offset.reset", "earliest", err)) < 0 ||
        /* A dead worker's partitions move on after 10 s, not 45. */
        (rc = ds_kconf_set(c, "session.timeout.ms", "10000", err)) < 0 ||
        (rc = ds_kconf_set(c, "heartbeat.interval.ms", "1000", err)) < 0 ||
        /* Bound what librdkafka prefetches: memory stays flat. Not less:
         * librdkafka 2.0 stops fetching for a whole second once this
         * queue is full, and a big update then waits for its chunks
         * (512 MiB update, measured: 16 MiB -> 3.8-6.8 s, RSS 45 MiB;
         * 32 MiB -> 3.8 s, RSS 63 MiB; 64 MiB -> 2.9 s, RSS 101 MiB). */
        (rc = ds_kconf_set(c, "queued.max.messages.kbytes", "32768", err)) <
            0 ||
        (rc = ds_kconf_apply(w->o->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    w->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (w->consumer == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka", "create consumer: %s", errstr);
    }

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(pc, w);
    rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
    rd_kafka_conf_set_error_cb(pc, on_error);
    if ((rc = ds_kconf_set(pc, "client.id", cid, err)) < 0 ||
        (rc = ds_kconf_set(pc, "enable.idempotence", "true", err)) < 0 ||
        (rc = ds_kconf_set(pc, "linger.ms", "5", err)) < 0 ||
        /* A dead letter not delivered within a minute fails, and its
         * partition rewinds to it (on_delivery), rather than holding the
         * commit point silently for librdkafka's default 5 minutes. */
        (rc = ds_kconf_set(pc, "message.timeout.ms", "60000", err)) < 0 ||
        (rc = ds_kconf_apply(w->o->kc, pc, err)) < 0) {
        rd_kafka_conf_destroy(pc);
        return rc;
    }
    w->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    if (w->producer == NULL) {
        rd_kafka_conf_destroy(pc);
        return ds_err_set(err, -EINVAL, "kafka", "create producer: %s", errstr);
    }
    /* Topic handles ask for the topics' metadata at once: librdkafka
     * otherwise holds the first message to a topic it does not know until
     * its next metadata scan (up to a second), and the first status record
     * or dead letter would lag its finalize or rejection by that much. */
    w->out_topics[0] = rd_kafka_topic_new(w->producer, DS_TOPIC_DLQ, NULL);
    w->out_topics[1] = rd_kafka_topic_new(w->producer, DS_TOPIC_STATUS, NULL);

    rd_kafka_poll_set_consumer(w->consumer);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, DS_TOPIC_UPDATES,
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(w->consumer, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EINVAL, "kafka", "subscribe %s: %s",
                          DS_TOPIC_UPDATES, rd_kafka_err2str(e));
    w->cqueue = rd_kafka_queue_get_consumer(w->consumer);
    return 0;
}

/* Wait for in-flight work at shutdown: updates whose chunks have all
 * arrived are finished; the others are abandoned (their staging removed,
 * nothing committed, so they are read again after a restart). */
static void drain_in_flight(worker *w)
{
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL && !all_chunks_seen(f)) {
            f->shutdown = true;
            ds_update_cancel(f->u);
        }
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL)
            ds_update_join(f->u);
    handle_completions(w);
}

static void cleanup(worker *w)
{
    /* First: /healthz uses the consumer handle. */
    ds_metricsd_stop(w->httpd);
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL) {
            ds_update_cancel(f->u);
            ds_update_join(f->u);
        }
    ds_update *u = ds_completions_take(&w->comp);
    while (u != NULL) {
        ds_update *nx = ds_update_next(u);
        ds_update_free(u);
        u = nx;
    }
    while (w->flights != NULL)
        flight_unlink(w, w->flights);
    if (w->cqueue != NULL)
        rd_kafka_queue_destroy(w->cqueue);
    if (w->consumer != NULL)
        rd_kafka_destroy(w->consumer);
    for (int i = 0; i < 2; i++)
        if (w->out_topics[i] != NULL)
            rd_kafka_topic_destroy(w->out_topics[i]);
    if (w->producer != NULL)
        rd_kafka_destroy(w->producer);
    ds_refetch_free(w->refetch);
    for (int32_t i = 0; i < w->nparts; i++)
        ds_offsets_free(w->parts[i].trk);
    free(w->parts);
    ds_library_close(w->lib);
    ds_completions_destroy(&w->comp);
    ds_metrics_free(w->met);
    ds_keyring_free(w->keys);
}

int ds_worker_run(const ds_worker_opts *o, ds_err *err)
{
    worker w = {.o = o, .assigned = -1};
    ds_completions_init(&w.comp, wake_consumer, &w);
    int rc = ds_library_open(o->library, o->keep_versions, &w.lib, err);
    if (rc < 0)
        goto out;
    unsigned removed = 0;
    rc = ds_library_cleanup_staging(w.lib, &removed, err);
    if (rc < 0)
        goto out;
    if (o->trusted_keys != NULL) {
        char ids[512];
        if ((rc = ds_keyring_load(o->trusted_keys, &w.keys, err)) < 0)
            goto out;
        ds_info("trusted-keys", "site=%s dir=%s keys=%s", o->site,
                o->trusted_keys, ds_keyring_ids(w.keys, ids, sizeof(ids)));
    }
    if ((rc = make_clients(&w, err)) < 0)
        goto out;
    if (o->metrics_addr != NULL) {
        char bound[160];
        if ((rc = ds_metrics_new(o->site, &w.met, err)) < 0 ||
            (rc = ds_metricsd_start(o->metrics_addr, w.met, health, &w,
                                    &w.httpd, bound, sizeof(bound), err)) < 0)
            goto out;
        ds_metrics_set(w.met, DS_G_START_TIME, (double)time(NULL));
        seed_labels(w.met);
        ds_info("metrics-listening", "site=%s addr=%s paths=/metrics,/healthz",
                o->site, bound);
    }
    ds_info("started",
            "site=%s group=despool.%s library=%s keep_versions=%u "
            "staging_removed=%u",
            o->site, o->site, ds_library_root(w.lib), o->keep_versions,
            removed);

    while (!*o->stop && !w.fatal) {
        /* Throttled: wait for an update to finish rather than take more
         * events, but poll now and then anyway (one event at most) so
         * that rebalances are served and max.poll.interval.ms is kept. */
        rd_kafka_message_t *m = NULL;
        uint64_t now = ds_mono_ms();
        if (!w.throttled || now - w.last_poll_ms >= THROTTLED_POLL_MS) {
            m = rd_kafka_consumer_poll(w.consumer, 100);
            w.last_poll_ms = now;
        } else {
            ds_completions_wait(&w.comp, 100);
        }
        if (m != NULL) {
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                handle_event(&w, m);
            } else {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    ds_warn("consume-error", "site=%s error=\"%s\"", o->site,
                            rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
            }
        }
        handle_completions(&w);
        flow_control(&w);
        rd_kafka_poll(w.producer, 0);
        check_timeouts(&w);
        resume_due(&w);
        if (ds_mono_ms() - w.last_gauge_ms >= GAUGE_INTERVAL_MS) {
            update_gauges(&w);
            w.last_gauge_ms = ds_mono_ms();
        }
        /* Commit soon after work is done, and now and then anyway: the
         * position steps over a transaction marker only on a poll after
         * the last event, and that alone must reach the group too, or a
         * caught-up site would show a lag of 1 forever. */
        uint64_t since = ds_mono_ms() - w.last_commit_ms;
        if ((w.dirty && since >= COMMIT_INTERVAL_MS) ||
            since >= POSITION_COMMIT_INTERVAL_MS)
            commit(&w, false, NULL);
    }
    if (w.fatal)
        rc = ds_err_set(err, -EIO, "kafka",
                        "fatal error in site %s (see the log above)", o->site);

    unsigned in_flight = 0;
    for (flight *f = w.flights; f != NULL; f = f->next)
        in_flight += f->u != NULL;
    ds_info("stopping", "site=%s in_flight=%u", o->site, in_flight);
    w.releasing = true;
    drain_in_flight(&w);
    rd_kafka_flush(w.producer, 10000);
    commit(&w, true, NULL);
    /* Leaves the group; the revoke callback runs one last time. */
    rd_kafka_consumer_close(w.consumer);
    rd_kafka_flush(w.producer, 10000);
    ds_info("stopped",
            "site=%s finalized=%" PRIu64 " discarded=%" PRIu64
            " dead_lettered=%" PRIu64 " local_errors=%" PRIu64
            " peak_in_flight=%u",
            o->site, w.n.finalized, w.n.stale, w.n.dead, w.n.ioerrors,
            w.peak_ready);
out:
    cleanup(&w);
    return rc;
}
