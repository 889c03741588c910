/*
 * deadletter.c - the worker's outputs to Kafka: dead letters (with the
 * re-reads they need) and status records, and their delivery reports.
 *
 * Rules:
 * - A rejected event is never dropped: it counts as done only when its
 *   dead letter was delivered. One that cannot be produced now (local
 *   queue full) becomes a job that re-reads the event by offset and tries
 *   again; one whose delivery failed, or whose job made no progress for
 *   DL_JOB_TIMEOUT_MS, rewinds its partition (request_rewind): the events
 *   are read again from the commit point and rejected again, after a
 *   backoff. Nothing here holds the commit point without a retry.
 * - The consumer thread never blocks here: re-reads come from a
 *   non-blocking refetch consumer (refetch.h) pumped once per loop, and
 *   no function polls the producer (delivery reports run from the main
 *   loop's own poll, where they may flag a rewind but free nothing).
 * - A status record that fails is produced again until delivered, unless
 *   a newer record of the same package replaced it (pkg.status is
 *   compacted by site/package: an older record must not land last).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "progress.h"
#include "worker_state.h"

/* A job that has not reached its event in this long gives up: rewind. */
#define DL_JOB_TIMEOUT_MS 30000
/* Re-read events taken per pump, so one pump stays short. */
#define DL_PUMP_BATCH 64
/* Not more dead letters waiting in the producer than this: past it the
 * jobs wait (their events are read again later, not held in memory). */
#define DL_OUTQ_MAX     256
#define STATUS_RETRY_MS 1000
/* After a dead letter could not be produced, the next try. */
#define DL_RETRY_MS 1000
/* The refetch consumer's assignment: changed at most this often unless
 * every partition started, and dropped after this long without jobs. */
#define RF_SETTLE_MS 2000
#define RF_IDLE_MS   5000

enum ticket_kind { TICKET_DEAD, TICKET_STATUS };

/* The opaque of a produced record, back in its delivery report. */
typedef struct ticket {
    enum ticket_kind kind;
    int32_t partition; /* TICKET_DEAD: the source event */
    unsigned gen;
    int64_t offset;
    bool hold; /* settle into its flight (flight_hold) if still seen */
    uint8_t update_id[DS_UPDATE_ID_LEN];
    uint64_t seq; /* TICKET_STATUS: the record's number */
    char package[DS_PACKAGE_MAX + 1];
} ticket;

struct dl_job {
    dl_job *next;
    int32_t partition;
    unsigned gen;
    int64_t offset;
    bool hold;
    uint8_t update_id[DS_UPDATE_ID_LEN];
    uint64_t since_ms; /* queued, or last progress */
    char reason[DS_REASON_MAX];
    char detail[DS_ERRMSG_MAX];
};

struct status_rec {
    status_rec *next;
    char package[DS_PACKAGE_MAX + 1];
    uint64_t version;
    char state[16];
    char detail[DS_ERRMSG_MAX];
    uint64_t seq;
    bool in_flight;
    uint64_t retry_at_ms;
    unsigned failures;
};

/* ---- dead letters -------------------------------------------------- */

static void queue_job(worker *w, int32_t partition, unsigned gen,
                      int64_t offset, const uint8_t *uid, const char *reason,
                      const char *detail)
{
    dl_job *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        ds_error("dead-letter-failed",
                 "site=%s partition=%d offset=%lld error=\"out of memory\" "
                 "note=\"the partition rewinds to it\"",
                 w->o->site, (int)partition, (long long)offset);
        request_rewind(w, partition, gen);
        return;
    }
    j->partition = partition;
    j->gen = gen;
    j->offset = offset;
    j->hold = uid != NULL;
    if (uid != NULL)
        memcpy(j->update_id, uid, DS_UPDATE_ID_LEN);
    j->since_ms = ds_mono_ms();
    snprintf(j->reason, sizeof(j->reason), "%s", reason);
    snprintf(j->detail, sizeof(j->detail), "%s", detail);
    /* Kept in arrival order: a partition's jobs are mostly ascending. */
    dl_job **pp = &w->jobs;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = j;
}

/* Produce m's dead letter; 0 when it was handed to the producer. uid names
 * the flight whose retired offsets it settles (NULL: none). */
static int produce_dead(worker *w, const rd_kafka_message_t *m, unsigned gen,
                        const uint8_t *uid, const char *reason,
                        const char *detail)
{
    ticket *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->kind = TICKET_DEAD;
    t->partition = m->partition;
    t->gen = gen;
    t->offset = m->offset;
    t->hold = uid != NULL;
    if (uid != NULL)
        memcpy(t->update_id, uid, DS_UPDATE_ID_LEN);
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
    ds_err err;
    if (ds_dlq_produce(w->producer, w->o->site, &dl, t, &err) < 0) {
        free(t);
        return -EAGAIN;
    }
    char q[600];
    w->n.dead++;
    ds_metrics_add_label(w->met, DS_L_DEAD, reason, 1);
    ds_warn("dead-lettered",
            "site=%s partition=%d offset=%lld reason=%s detail=%s", w->o->site,
            (int)m->partition, (long long)m->offset, DS_LV(reason),
            ds_log_quote(q, sizeof(q), detail));
    return 0;
}

void dead_letter(worker *w, const rd_kafka_message_t *m, const flight *in,
                 const char *reason, const char *detail)
{
    part *p = part_get(w, m->partition);
    if (p == NULL || !p->assigned)
        return;
    /* A chunk of a retired multi-chunk update settles into its flight. */
    const uint8_t *uid = in != NULL ? in->hdr.update_id : NULL;
    if (produce_dead(w, m, p->gen, uid, reason, detail) == 0)
        return;
    /* Not now (the local queue is full): read it again later. */
    ds_info("dead-letter-deferred",
            "site=%s partition=%d offset=%lld reason=%s "
            "note=\"producer queue full; re-read and retried\"",
            w->o->site, (int)m->partition, (long long)m->offset, DS_LV(reason));
    queue_job(w, m->partition, p->gen, m->offset, uid, reason, detail);
}

/* Dead-letter every chunk of f consumed so far. They were released after
 * extraction, so they are read again from the topic (dead_letters_pump). */
void dead_letter_consumed(worker *w, flight *f, const char *reason,
                          const char *detail)
{
    for (uint32_t i = 0; i < f->noffsets; i++)
        queue_job(w, f->partition, f->gen, f->offsets[i], f->hdr.update_id,
                  reason, detail);
    f->noffsets = 0;
}

static void drop_job(dl_job **pp)
{
    dl_job *j = *pp;
    *pp = j->next;
    free(j);
}

/* Give up on every job of partition p: it rewinds and tries again. */
static void fail_jobs(worker *w, int32_t partition, unsigned gen,
                      const char *why)
{
    int64_t first = -1;
    unsigned n = 0;
    for (dl_job **pp = &w->jobs; *pp != NULL;) {
        if ((*pp)->partition == partition) {
            if (first < 0 || (*pp)->offset < first)
                first = (*pp)->offset;
            n++;
            drop_job(pp);
        } else {
            pp = &(*pp)->next;
        }
    }
    ds_metrics_add_label(w->met, DS_L_ERRORS, "dead-letter", 1);
    ds_error("dead-letter-failed",
             "site=%s partition=%d offset=%lld events=%u error=%s "
             "note=\"not committed; the partition rewinds and retries\"",
             w->o->site, (int)partition, (long long)first, n, DS_LV(why));
    request_rewind(w, partition, gen);
}

/* Where the refetch consumer reads: per partition, the offset it was set
 * to and the next one it will return. */
struct rf_pos {
    int32_t partition;
    int64_t next;
    bool started; /* a message came since the last assign */
};

static int job_partitions(worker *w, int32_t *parts, int64_t *from, int max)
{
    int n = 0;
    for (dl_job *j = w->jobs; j != NULL; j = j->next) {
        int i = 0;
        while (i < n && parts[i] != j->partition)
            i++;
        if (i == n) {
            if (n == max)
                continue;
            parts[n] = j->partition;
            from[n++] = j->offset;
        } else if (j->offset < from[i]) {
            from[i] = j->offset;
        }
    }
    return n;
}

/* Re-read the events that jobs wait for and dead-letter them. Called once
 * per main loop; never blocks. */
void dead_letters_pump(worker *w)
{
    /* Jobs of partitions rewound or given up since: nothing to do. */
    for (dl_job **pp = &w->jobs; *pp != NULL;) {
        part *p = part_get(w, (*pp)->partition);
        if (p == NULL || !p->assigned || p->gen != (*pp)->gen)
            drop_job(pp);
        else
            pp = &(*pp)->next;
    }
    uint64_t now = ds_mono_ms();
    for (dl_job *j = w->jobs; j != NULL; j = j->next)
        if (now - j->since_ms >= DL_JOB_TIMEOUT_MS) {
            char why[160];
            snprintf(why, sizeof(why),
                     "re-read of the rejected event made no progress in "
                     "%d ms",
                     DL_JOB_TIMEOUT_MS);
            fail_jobs(w, j->partition, j->gen, why);
            break; /* the list changed; the rest next time round */
        }

    enum { MAXP = 64 };
    int32_t parts[MAXP];
    int64_t from[MAXP];
    int n = job_partitions(w, parts, from, MAXP);
    ds_err err;
    if (n > 0 && w->refetch == NULL &&
        ds_refetch_new(w->o->kc, &w->refetch, &err) < 0) {
        fail_jobs(w, w->jobs->partition, w->jobs->gen, err.msg);
        return;
    }
    if (w->refetch == NULL)
        return;
    /* (Re)assign only when a job's partition is not read yet or a job
     * wants an event behind the read position; partitions are never
     * dropped while jobs remain (all are unassigned after RF_IDLE_MS
     * without jobs), and an assign waits for the previous one to start
     * (a message from each partition, or RF_SETTLE_MS): librdkafka 2.0
     * aborts (rd_kafka_assignment_partition_stopped: rktp_started) when
     * assignments change faster than partitions start and stop. */
    uint64_t now2 = ds_mono_ms();
    bool settled = now2 - w->rf_assigned_ms >= RF_SETTLE_MS;
    if (!settled) {
        settled = true;
        for (int k = 0; k < w->nrfpos; k++)
            settled = settled && w->rfpos[k].started;
    }
    if (n == 0) {
        if (w->rf_idle_since == 0)
            w->rf_idle_since = now2;
        if (w->nrfpos > 0 && settled && now2 - w->rf_idle_since >= RF_IDLE_MS &&
            ds_refetch_assign(w->refetch, NULL, NULL, 0, &err) == 0) {
            w->nrfpos = 0;
            w->rf_assigned_ms = now2;
        }
        return;
    }
    w->rf_idle_since = 0;
    bool need = false;
    for (int i = 0; !need && i < n; i++) {
        int k = 0;
        while (k < w->nrfpos && w->rfpos[k].partition != parts[i])
            k++;
        need = k == w->nrfpos || from[i] < w->rfpos[k].next;
    }
    if (need && !settled)
        return; /* reading on could pass a job's event: wait */
    if (need) {
        /* The new set: what is read now (from where it is), plus the jobs'
         * partitions from their lowest offset. */
        int total = w->nrfpos;
        for (int i = 0; i < n; i++) {
            int k = 0;
            while (k < w->nrfpos && w->rfpos[k].partition != parts[i])
                k++;
            total += k == w->nrfpos;
        }
        rf_pos *np = malloc((size_t)total * sizeof(*np));
        int32_t *ap = malloc((size_t)total * sizeof(*ap));
        int64_t *ao = malloc((size_t)total * sizeof(*ao));
        if (np == NULL || ap == NULL || ao == NULL) {
            free(np);
            free(ap);
            free(ao);
            fail_jobs(w, parts[0], w->jobs->gen, "out of memory");
            return;
        }
        int m = 0;
        for (int k = 0; k < w->nrfpos; k++)
            np[m++] = (rf_pos){w->rfpos[k].partition, w->rfpos[k].next, false};
        for (int i = 0; i < n; i++) {
            int k = 0;
            while (k < m && np[k].partition != parts[i])
                k++;
            if (k == m)
                np[m++] = (rf_pos){parts[i], from[i], false};
            else if (from[i] < np[k].next)
                np[k].next = from[i];
        }
        for (int k = 0; k < m; k++) {
            ap[k] = np[k].partition;
            ao[k] = np[k].next;
        }
        int rc = ds_refetch_assign(w->refetch, ap, ao, m, &err);
        free(ap);
        free(ao);
        if (rc < 0) {
            free(np);
            fail_jobs(w, parts[0], w->jobs->gen, err.msg);
            return;
        }
        free(w->rfpos);
        w->rfpos = np;
        w->nrfpos = m;
        w->rf_assigned_ms = now2;
    }

    if (ds_mono_ms() < w->pump_after_ms)
        return;
    bool stalled = false;
    for (int taken = 0; taken < DL_PUMP_BATCH; taken++) {
        if (rd_kafka_outq_len(w->producer) > DL_OUTQ_MAX)
            break; /* let deliveries drain first */
        rd_kafka_message_t *m = ds_refetch_next(w->refetch);
        if (m == NULL)
            break;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ds_warn("refetch-error", "site=%s partition=%d error=%s",
                    w->o->site, (int)m->partition,
                    DS_LV(rd_kafka_message_errstr(m)));
            rd_kafka_message_destroy(m);
            continue;
        }
        for (int k = 0; k < w->nrfpos; k++)
            if (w->rfpos[k].partition == m->partition) {
                w->rfpos[k].started = true;
                if (m->offset >= w->rfpos[k].next)
                    w->rfpos[k].next = m->offset + 1;
            }
        for (dl_job **pp = &w->jobs; *pp != NULL;) {
            dl_job *j = *pp;
            if (j->partition != m->partition || j->offset > m->offset) {
                pp = &j->next;
                continue;
            }
            if (j->offset < m->offset) {
                /* Read past it: the broker no longer has that event
                 * (deleted by retention or compaction). Nothing is left
                 * to dead-letter; it counts as done. */
                ds_error("dead-letter-lost",
                         "site=%s partition=%d offset=%lld reason=%s "
                         "note=\"the event is no longer in %s\"",
                         w->o->site, (int)j->partition, (long long)j->offset,
                         DS_LV(j->reason), DS_TOPIC_UPDATES);
                mark_done(w, j->partition, j->gen, j->offset);
                drop_job(pp);
                continue;
            }
            if (produce_dead(w, m, j->gen, j->hold ? j->update_id : NULL,
                             j->reason, j->detail) < 0) {
                /* Not now: stop this batch (reading on would pass this
                 * job's event), and read again from it after a pause. */
                stalled = true;
                break;
            }
            drop_job(pp);
            for (dl_job *o = w->jobs; o != NULL; o = o->next)
                if (o->partition == m->partition)
                    o->since_ms = ds_mono_ms(); /* progress */
        }
        rd_kafka_message_destroy(m);
        if (stalled) {
            w->pump_after_ms = ds_mono_ms() + DL_RETRY_MS;
            break;
        }
    }
}

/* ---- status records ------------------------------------------------ */

/* r failed (to be produced, or delivered): try again soon; said once. */
static void status_retry_later(worker *w, status_rec *r, const char *why)
{
    r->in_flight = false;
    r->retry_at_ms = ds_mono_ms() + STATUS_RETRY_MS;
    if (r->failures++ == 0)
        ds_warn("status-failed",
                "site=%s package=%s version=%" PRIu64 " state=%s "
                "error=%s note=\"retried until delivered\"",
                w->o->site, r->package, r->version, DS_LV(r->state),
                DS_LV(why));
}

static void produce_status(worker *w, status_rec *r)
{
    ticket *t = calloc(1, sizeof(*t));
    ds_err err;
    if (t != NULL) {
        t->kind = TICKET_STATUS;
        t->seq = r->seq;
        snprintf(t->package, sizeof(t->package), "%s", r->package);
        if (ds_status_produce(w->producer, w->o->site, r->package, r->version,
                              r->state, r->detail, t, &err) == 0) {
            r->in_flight = true;
            return;
        }
        free(t);
    } else {
        ds_err_set(&err, -ENOMEM, "internal", "status: out of memory");
    }
    status_retry_later(w, r, err.msg);
}

void report_status(worker *w, const char *package, uint64_t version,
                   const char *state, const char *detail)
{
    status_rec *r = w->statuses;
    while (r != NULL && strcmp(r->package, package) != 0)
        r = r->next;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            ds_error("status-failed",
                     "site=%s package=%s version=%" PRIu64 " state=%s "
                     "error=\"out of memory\"",
                     w->o->site, package, version, DS_LV(state));
            return;
        }
        snprintf(r->package, sizeof(r->package), "%s", package);
        r->next = w->statuses;
        w->statuses = r;
    }
    r->version = version;
    snprintf(r->state, sizeof(r->state), "%s", state);
    snprintf(r->detail, sizeof(r->detail), "%s", detail ? detail : "");
    r->seq = ++w->status_seq;
    r->failures = 0;
    produce_status(w, r);
}

void statuses_retry(worker *w)
{
    uint64_t now = ds_mono_ms();
    if (now - w->last_retry_ms < 200)
        return;
    w->last_retry_ms = now;
    for (status_rec *r = w->statuses; r != NULL; r = r->next)
        if (!r->in_flight && now >= r->retry_at_ms)
            produce_status(w, r);
}

void statuses_free(worker *w)
{
    unsigned unsent = 0;
    while (w->statuses != NULL) {
        status_rec *r = w->statuses;
        w->statuses = r->next;
        unsent++;
        free(r);
    }
    if (unsent > 0)
        ds_warn("status-unsent",
                "site=%s records=%u note=\"not delivered before the stop; "
                "pkg.status lags until this site's next install of those "
                "packages\"",
                w->o->site, unsent);
    while (w->jobs != NULL)
        drop_job(&w->jobs);
    free(w->rfpos);
    w->rfpos = NULL;
    w->nrfpos = 0;
}

static void status_delivered(worker *w, const ticket *t, rd_kafka_resp_err_t e)
{
    status_rec **pp = &w->statuses;
    while (*pp != NULL && strcmp((*pp)->package, t->package) != 0)
        pp = &(*pp)->next;
    status_rec *r = *pp;
    if (r == NULL || r->seq != t->seq)
        return; /* replaced by a newer record of the package */
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (r->failures > 0)
            ds_info("status-delivered",
                    "site=%s package=%s version=%" PRIu64 " state=%s "
                    "attempts=%u",
                    w->o->site, r->package, r->version, DS_LV(r->state),
                    r->failures + 1);
        *pp = r->next;
        free(r);
        return;
    }
    status_retry_later(w, r, rd_kafka_err2str(e));
}

/* ---- delivery reports ---------------------------------------------- */

/* Runs inside rd_kafka_poll/flush on the producer, from the main loop:
 * marks offsets done or flags a rewind; frees no flight. */
void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    worker *w = opaque;
    ticket *t = m->_private;
    if (t == NULL) {
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
            ds_error("produce-failed", "topic=%s error=%s",
                     rd_kafka_topic_name(m->rkt),
                     DS_LV(rd_kafka_err2str(m->err)));
        return;
    }
    if (t->kind == TICKET_STATUS) {
        status_delivered(w, t, m->err);
        free(t);
        return;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Never dropped: its event stays not done, and the partition goes
         * back to it after a backoff (a partition given up meanwhile is
         * read again by its next owner). */
        part *p = part_get(w, t->partition);
        bool retry = p != NULL && p->assigned && p->gen == t->gen;
        ds_metrics_add_label(w->met, DS_L_ERRORS, "dead-letter", 1);
        ds_error("dead-letter-failed",
                 "site=%s partition=%d offset=%lld topic=%s error=%s "
                 "note=\"not committed; %s\"",
                 w->o->site, (int)t->partition, (long long)t->offset,
                 rd_kafka_topic_name(m->rkt), DS_LV(rd_kafka_err2str(m->err)),
                 retry ? "the partition rewinds to it and retries"
                       : "read again by the partition's next owner");
        if (retry)
            request_rewind(w, t->partition, t->gen);
        free(t);
        return;
    }
    flight *f = t->hold ? flight_find(w, t->partition, t->update_id) : NULL;
    if (f != NULL && f->gen == t->gen && f->fate == DEAD && !all_chunks_seen(f))
        flight_hold(w, f, t->offset);
    else
        mark_done(w, t->partition, t->gen, t->offset);
    free(t);
}
