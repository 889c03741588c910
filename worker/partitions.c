/*
 * partitions.c - per-partition bookkeeping of the consumer thread: which
 * offsets are done (the commit point), rewinds after local failures, gaps
 * in the offsets (events that the broker no longer has), and commits.
 *
 * Invariants:
 * - A partition's committed offset never passes an event that is not done;
 *   with nothing pending, it is the consumer's position, which librdkafka
 *   moves past transaction markers, so a caught-up site shows lag 0.
 * - A rewound partition is paused until its seek back to the commit point
 *   has succeeded AND its backoff has passed: resuming after a failed seek
 *   would skip the events between the commit point and the fetch position.
 * - librdkafka keeps an application pause across unassign/assign, so a
 *   partition given up while paused is resumed first (rebalance.c);
 *   `paused` mirrors the pause that this file set.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmeta.h"
#include "log.h"
#include "progress.h"
#include "worker_state.h"

#define REWIND_BACKOFF_MIN_MS 1000
#define REWIND_BACKOFF_MAX_MS 60000
#define SEEK_TIMEOUT_MS       5000
/* Asking the broker for a partition's log start when a gap is seen and
 * the cached figure does not explain it. */
#define WATERMARK_TIMEOUT_MS 1000

part *part_get(worker *w, int32_t p)
{
    if (p < 0)
        return NULL;
    if (p >= w->nparts) {
        int32_t n = p + 1;
        part *np = realloc(w->parts, (size_t)n * sizeof(*np));
        if (np == NULL)
            return NULL;
        w->parts = np;
        for (int32_t i = w->nparts; i < n; i++) {
            memset(&np[i], 0, sizeof(np[i]));
            np[i].committed = -1;
            np[i].group_offset = -1;
            np[i].expect = -1;
            np[i].gap_end = -1;
            np[i].trk = ds_offsets_new();
            if (np[i].trk == NULL)
                return NULL; /* nparts not raised: the next call retries */
            w->nparts = i + 1;
        }
    }
    return &w->parts[p];
}

void part_reset(part *p)
{
    p->committed = -1;
    p->group_offset = -1;
    p->group_asked = false;
    p->paused = false;
    p->rewind_due = false;
    p->resume_at_ms = 0;
    p->backoff_ms = 0;
    p->expect = -1;
    p->gap_end = -1;
    ds_offsets_reset(p->trk);
}

void mark_done(worker *w, int32_t partition, unsigned gen, int64_t off)
{
    part *p = part_get(w, partition);
    if (p == NULL || !p->assigned || p->gen != gen)
        return; /* revoked or rewound since: its events are read again */
    ds_err err;
    if (ds_offsets_done(p->trk, off, &err) < 0)
        ds_warn("offset-bookkeeping", "partition=%d offset=%lld error=%s",
                (int)partition, (long long)off, DS_LV(err.msg));
    w->dirty = true;
}

/* ---- gaps ---------------------------------------------------------- */

/* Called for every event before anything else. A gap in the offsets is
 * normal (transaction markers, aborted transactions, compaction); a gap
 * that starts below the partition's log start means the broker deleted
 * events this site had not yet done (retention, the embedded broker's
 * per-partition cap, a truncated log): say so plainly, once per gap. */
void note_offset(worker *w, int32_t partition, int64_t offset)
{
    part *p = part_get(w, partition);
    if (p == NULL)
        return;
    int64_t expect = p->expect;
    p->expect = offset + 1;
    p->gap_before = expect >= 0 && offset > expect;
    if (expect < 0) {
        /* The first event read here: removed records before it show as a
         * start past the log's start (compaction keeps the log start). */
        int64_t lo = -1, hi = -1;
        p->gap_before = rd_kafka_get_watermark_offsets(
                            w->consumer, DS_TOPIC_UPDATES, partition, &lo,
                            &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                        lo >= 0 && offset > lo;
        return;
    }
    if (offset <= expect)
        return;
    int64_t lo = -1, hi = -1;
    /* The cached figures come with every fetch response; ask the broker
     * only when they do not explain a gap of more than a marker. */
    if (rd_kafka_get_watermark_offsets(w->consumer, DS_TOPIC_UPDATES, partition,
                                       &lo,
                                       &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        lo <= expect) {
        /* A compacted partition is full of gaps: ask at most once a
         * second. */
        uint64_t now = ds_mono_ms();
        if (offset - expect < 2 || now - p->wm_query_ms < 1000)
            return;
        p->wm_query_ms = now;
        /* Not librdkafka's query alone: on a leader that just died it
         * waits without a timeout, and this is the consumer's thread. */
        if (ds_kmeta_watermarks(w->consumer, DS_TOPIC_UPDATES, partition, &lo,
                                &hi, WATERMARK_TIMEOUT_MS) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
    }
    if (lo <= expect)
        return;
    int64_t missing = (lo < offset ? lo : offset) - expect;
    p->gap_end = offset;
    ds_metrics_add(w->met, DS_C_EVENTS_MISSING, (uint64_t)missing);
    ds_error("events-missing",
             "site=%s topic=%s partition=%d expected_offset=%lld "
             "first_offset=%lld missing=%lld note=\"the broker deleted "
             "events this site had not done (retention, or the embedded "
             "broker's per-partition cap); updates among them are lost "
             "for this site: publish them again\"",
             w->o->site, DS_TOPIC_UPDATES, (int)partition, (long long)expect,
             (long long)offset, (long long)missing);
}

/* ---- local failures: rewind the partition --------------------------- */

/* Seek p back to p's commit point; 0 when librdkafka took it. A seek
 * reports per-partition failures in the list's err fields, not in its
 * return value: both are looked at. */
static int seek_back(worker *w, int32_t partition, int64_t cp)
{
    if (cp < 0)
        return 0; /* nothing consumed since the last commit: stays there */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES, partition)->offset =
        cp;
    rd_kafka_error_t *e =
        rd_kafka_seek_partitions(w->consumer, l, SEEK_TIMEOUT_MS);
    const char *why = NULL;
    char buf[256];
    if (e != NULL) {
        snprintf(buf, sizeof(buf), "%s", rd_kafka_error_string(e));
        why = buf;
        rd_kafka_error_destroy(e);
    } else if (l->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        why = rd_kafka_err2str(l->elems[0].err);
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (why == NULL)
        return 0;
    ds_error("rewind-failed",
             "site=%s partition=%d offset=%lld error=%s "
             "note=\"stays paused; the seek is tried again\"",
             w->o->site, (int)partition, (long long)cp, DS_LV(why));
    return -1;
}

static void pause_partition(worker *w, int32_t partition)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES, partition);
    rd_kafka_pause_partitions(w->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* A local failure (disk full, permissions) is nobody's event's fault:
 * nothing is dead-lettered or committed. The partition forgets what it
 * has in flight and goes back to its commit point, paused with a growing
 * backoff; other partitions carry on. Called only from the main loop's
 * own code, never from a Kafka callback (request_rewind). */
void rewind_partition(worker *w, int32_t partition)
{
    part *p = part_get(w, partition);
    if (p == NULL || !p->assigned)
        return;
    /* Updates still running are told to stop; their completions arrive
     * later and find their flight out of date (complete_one). */
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
    if (cp < 0 && p->committed >= 0)
        cp = p->committed;
    ds_offsets_reset(p->trk);
    p->gen++;
    p->rewind_due = false;
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : REWIND_BACKOFF_MIN_MS;
    if (p->backoff_ms > REWIND_BACKOFF_MAX_MS)
        p->backoff_ms = REWIND_BACKOFF_MAX_MS;
    p->resume_at_ms = ds_mono_ms() + p->backoff_ms;
    pause_partition(w, partition);
    p->paused = true;
    p->expect = cp;
    p->seek_to = cp;
    p->seek_pending = seek_back(w, partition, cp) < 0;
    ds_warn("partition-paused",
            "partition=%d rewind_to=%lld retry_in_ms=%llu site=%s",
            (int)partition, (long long)cp, (unsigned long long)p->backoff_ms,
            w->o->site);
}

/* From a callback: rewind at the main loop's next safe point. */
void request_rewind(worker *w, int32_t partition, unsigned gen)
{
    part *p = part_get(w, partition);
    if (p != NULL && p->assigned && p->gen == gen)
        p->rewind_due = true;
}

void apply_rewinds(worker *w)
{
    for (int32_t i = 0; i < w->nparts; i++)
        if (w->parts[i].assigned && w->parts[i].rewind_due)
            rewind_partition(w, i);
}

void resume_due(worker *w)
{
    uint64_t now = ds_mono_ms();
    for (int32_t i = 0; i < w->nparts; i++) {
        part *p = &w->parts[i];
        if (!p->assigned || !p->paused || now < p->resume_at_ms)
            continue;
        if (p->seek_pending) {
            if (seek_back(w, i, p->seek_to) < 0) {
                p->resume_at_ms = now + REWIND_BACKOFF_MIN_MS;
                continue;
            }
            p->seek_pending = false;
        }
        p->paused = false;
        p->resume_at_ms = 0;
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES, i);
        rd_kafka_resume_partitions(w->consumer, l);
        rd_kafka_topic_partition_list_destroy(l);
        ds_info("partition-resumed", "partition=%d site=%s", (int)i,
                w->o->site);
    }
}

/* ---- commits ------------------------------------------------------- */

/* Commit every assigned partition (or those in only) whose commit point
 * moved. With nothing pending and positions set, the commit point is the
 * consumer's position, which librdkafka advances past transaction markers
 * once it has seen them; not while the partition is rewound (its position
 * is wherever the fetcher was). Never positions while partitions are being
 * given up: librdkafka 2.0's consumer close moves the position past
 * events still in its queue that the application never received
 * (measured: a worker stopped right after its assignment committed
 * offset 2 of a partition it had not read an event of). */
void commit(worker *w, bool sync, bool positions,
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
        if (positions && ds_offsets_pending(p->trk) == 0 && !p->paused &&
            !p->rewind_due && pos->elems[i].offset > cp)
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
            ds_warn("commit-failed", "site=%s error=%s", w->o->site,
                    DS_LV(rd_kafka_err2str(e)));
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

void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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
                    "error=%s",
                    w->o->site, (int)tp->partition, (long long)tp->offset,
                    DS_LV(rd_kafka_err2str(tp->err ? tp->err : err)));
            part *p = part_get(w, tp->partition);
            if (p != NULL)
                p->committed = -1; /* retry at the next commit */
        }
    }
}
