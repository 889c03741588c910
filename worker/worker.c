/*
 * worker.c - the despooler's consumer loop (one thread): events become
 * flights (flights.c) whose chunks go to update threads, completions
 * settle them, and the loop serves commits (partitions.c), dead letters
 * (deadletter.c), flow control (flow.c) and rebalances (rebalance.c);
 * worker_state.h lists who owns what.
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
 * - At most --max-in-flight updates whose chunks have all arrived are
 *   extracting at once; at that limit the consumer takes no more events
 *   until one finishes (flow_control). Updates still waiting for chunks
 *   do not count: they need the consumer to fetch more.
 * - A discarded or rejected update's offsets count as done only once all
 *   of its chunks have passed (flights.c), so the commit point never lands
 *   inside it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "progress.h"
#include "worker_state.h"

#define COMMIT_INTERVAL_MS          200
#define POSITION_COMMIT_INTERVAL_MS 1000
#define GAUGE_INTERVAL_MS           1000
/* While throttled (--max-in-flight), the consumer still polls this often:
 * rebalances wait at most this long, and at most one event per interval
 * goes over the limit. */
#define THROTTLED_POLL_MS 10000

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
    const ds_err *uerr = NULL;
    ds_outcome out = ds_update_outcome(u, &uerr);
    /* Copied: uerr lives in u, which is freed below. */
    ds_err errcopy = {0};
    if (uerr != NULL)
        errcopy = *uerr;
    const ds_err *err = &errcopy;
    char id[2 * DS_UPDATE_ID_LEN + 1], q[600];
    const ds_event *h = &f->hdr;
    double fin_secs = ds_update_finalize_seconds(u),
           upd_secs = ds_update_seconds(u), wait_secs, extract_secs, sync_secs;
    ds_update_phases(u, &wait_secs, &extract_secs, &sync_secs);
    ds_update_reuse_stats ru;
    ds_update_reuse(u, &ru);
    count_reuse(w, &ru);
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
                    "extract_s=%.3f sync_s=%.3f finalize_s=%.3f "
                    "parts_fetched=%" PRIu64 " fetched_bytes=%" PRIu64
                    " parts_local=%" PRIu64 " local_bytes=%" PRIu64
                    " files_linked=%" PRIu64 " linked_bytes=%" PRIu64,
                    w->o->site, h->package, h->version, hexid(id, f), h->size,
                    h->zsize, h->chunks, (int)f->partition,
                    (long long)(f->noffsets ? f->offsets[0] : -1), upd_secs,
                    wait_secs, extract_secs, sync_secs, fin_secs,
                    ru.fetched_parts, ru.fetched_bytes, ru.local_parts,
                    ru.local_bytes, ru.linked_files, ru.linked_bytes);
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
        if (strcmp(err->reason, "part-missing") == 0 &&
            (f->superseded || part_missing_wait(w, f, err->msg))) {
            if (f->superseded) {
                /* A newer record was read meanwhile: it replaced this. */
                w->n.stale++;
                ds_metrics_add_label(w->met, DS_L_DISCARDED, "superseded", 1);
                for (uint32_t i = 0; i < f->noffsets; i++)
                    flight_hold(w, f, f->offsets[i]);
                f->noffsets = 0;
                ds_info("discarded",
                        "site=%s package=%s version=%" PRIu64 " update_id=%s "
                        "reason=superseded partition=%d note=\"a part was "
                        "missing\"",
                        w->o->site, h->package, h->version, hexid(id, f),
                        (int)f->partition);
                flight_retire(w, f, DISCARD, NULL, NULL);
            }
            break;
        }
        ds_warn("rejected",
                "site=%s package=%s version=%" PRIu64 " update_id=%s "
                "reason=%s detail=%s",
                w->o->site, h->package, h->version, hexid(id, f),
                DS_LV(err->reason), ds_log_quote(q, sizeof(q), err->msg));
        report_status(w, h->package, h->version, "failed", err->msg);
        dead_letter_consumed(w, f, errcopy.reason, errcopy.msg);
        flight_retire(w, f, DEAD, errcopy.reason, errcopy.msg);
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
            /* Its later chunks may still come: held until they have. */
            for (uint32_t i = 0; i < f->noffsets; i++)
                flight_hold(w, f, f->offsets[i]);
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

void handle_completions(worker *w)
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
static void settle(worker *w, flight *f, rd_kafka_message_t *m,
                   const ds_event *ev);

bool key_matches(worker *w, rd_kafka_message_t *m, const char *package)
{
    if (m->key != NULL && m->key_len == strlen(package) &&
        memcmp(m->key, package, m->key_len) == 0)
        return true;
    char detail[300];
    snprintf(detail, sizeof(detail),
             "event key \"%.*s\" differs from field package \"%s\"",
             (int)(m->key ? (m->key_len > 128 ? 128 : m->key_len) : 0),
             m->key ? (const char *)m->key : "", package);
    dead_letter(w, m, NULL, "bad-schema", detail);
    rd_kafka_message_destroy(m);
    return false;
}

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
    p->at_eof = false;
    if (ds_offsets_add(p->trk, m->offset, &err) < 0) {
        /* A redelivery of an offset already handled (librdkafka 2.0.2 can
         * repeat messages after offset validation): nothing to do. */
        ds_warn("redelivered-event", "partition=%d offset=%lld",
                (int)m->partition, (long long)m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    note_offset(w, m->partition, m->offset);
    ds_metrics_add(w->met, DS_C_EVENTS, 1);
    ds_metrics_add(w->met, DS_C_RECEIVED_BYTES, m->len);
    if (m->payload == NULL) {
        handle_retire(w, m, p);
        return;
    }
    uint64_t schema = 0;
    if (ds_value_schema(m->payload, m->len, &schema, &err) == 0 &&
        schema == DS_SCHEMA_V2) {
        handle_manifest(w, m, p);
        return;
    }
    ds_event ev;
    if (ds_event_decode(m->payload, m->len, &ev, &err) < 0) {
        dead_letter(w, m, NULL, "bad-schema", err.msg);
        rd_kafka_message_destroy(m);
        return;
    }
    if (!key_matches(w, m, ev.package))
        return;
    flight *f = flight_find(w, m->partition, ev.update_id);
    if (f == NULL)
        start_flight(w, m, &ev, p);
    else
        chunk_to_flight(w, f, m, &ev);
}

/* Refuse a whole update at its first chunk m: m is dead-lettered now,
 * and its later chunks as they come (the flight is retired DEAD). */
void refuse_update(worker *w, rd_kafka_message_t *m, const ds_event *ev,
                   part *p, const char *reason, const char *detail)
{
    flight *f = flight_new(w, m, ev, p);
    if (f != NULL) {
        f->next_chunk = 1;
        f->fate = DEAD;
    }
    dead_letter(w, m, f, reason, detail);
    rd_kafka_message_destroy(m);
    if (f != NULL)
        flight_retire(w, f, DEAD, reason, detail);
}

/* A new update failed for the site's own reason (library, memory,
 * threads): nothing about it is settled; m is dropped and its partition
 * read again from the commit point after a backoff (f, when given, is
 * forgotten unsettled). */
void local_failure(worker *w, rd_kafka_message_t *m, flight *f,
                   const char *package, const char *msg)
{
    ds_metrics_add_label(w->met, DS_L_ERRORS, "local", 1);
    ds_error("local-error", "package=%s error=%s", package, DS_LV(msg));
    if (f != NULL)
        flight_unlink(w, f);
    int32_t partition = m->partition;
    rd_kafka_message_destroy(m);
    rewind_partition(w, partition);
}

/* What every new update (a v1 chunk 0, a v2 manifest) meets before it
 * starts: the site's size cap, a package layout updates can use, and a
 * version newer than current. Returns its new flight, or NULL when m was
 * settled here (refused, discarded, or its partition rewound). */
flight *admit_update(worker *w, rd_kafka_message_t *m, const ds_event *ev,
                     part *p)
{
    char detail[DS_ERRMSG_MAX];
    ds_err err;
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
        return NULL;
    }
    uint64_t cur = 0;
    if (ds_library_current(w->lib, ev->package, &cur, &err) < 0) {
        local_failure(w, m, NULL, ev->package, err.msg);
        return NULL;
    }
    flight *f = flight_new(w, m, ev, p);
    if (f == NULL) {
        ds_error("out-of-memory", "partition=%d offset=%lld", (int)m->partition,
                 (long long)m->offset);
        rd_kafka_message_destroy(m);
        w->fatal = true;
        return NULL;
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
        flight_hold(w, f, m->offset);
        rd_kafka_message_destroy(m);
        flight_retire(w, f, DISCARD, NULL, NULL);
        return NULL;
    }
    return f;
}

static void discard_compacted(worker *w, rd_kafka_message_t *m,
                              const ds_event *ev, part *p)
{
    if (!p->compacted_logged) {
        p->compacted_logged = true;
        ds_info("v1-compacted",
                "site=%s partition=%d offset=%lld package=%s version=%" PRIu64
                " chunk=%" PRIu32 " note=\"chunks of a v1 update whose first "
                "chunks compaction removed are discarded (logged once per "
                "partition)\"",
                w->o->site, (int)m->partition, (long long)m->offset,
                ev->package, ev->version, ev->chunk);
    }
    w->n.stale++;
    ds_metrics_add_label(w->met, DS_L_DISCARDED, "compacted", 1);
    flight *f = flight_new(w, m, ev, p);
    if (f == NULL) {
        mark_done(w, m->partition, p->gen, m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    f->next_chunk = ev->chunk + 1;
    flight_hold(w, f, m->offset);
    rd_kafka_message_destroy(m);
    flight_retire(w, f, DISCARD, NULL, NULL);
}

static void start_flight(worker *w, rd_kafka_message_t *m, const ds_event *ev,
                         part *p)
{
    char detail[DS_ERRMSG_MAX];
    ds_err err;
    if (ev->chunk != 0) {
        /* Right after an events-missing gap: the broker deleted the
         * update's first chunks. */
        bool dropped = p->gap_end >= 0 && m->offset >= p->gap_end &&
                       m->offset - p->gap_end < (int64_t)ev->chunks;
        if (!dropped && p->gap_before) {
            /* Records removed right before it, none of them deleted by
             * retention: on a compacted pkg.updates (schema v2) this is
             * an old v1 update whose first chunks the cleaner removed
             * because newer records of the package follow. History, not
             * an incident: its chunks are discarded quietly. */
            discard_compacted(w, m, ev, p);
            return;
        }
        snprintf(detail, sizeof(detail),
                 "chunk %" PRIu32 " of %" PRIu32 " of %s version %" PRIu64
                 " arrived without chunk 0%s",
                 ev->chunk, ev->chunks, ev->package, ev->version,
                 dropped ? ": the broker deleted its first chunks "
                           "(events-missing, offset reset past data)"
                         : "");
        dead_letter(w, m, NULL, "incomplete", detail);
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
    flight *f = admit_update(w, m, ev, p);
    if (f == NULL)
        return;
    ds_update_opts uo = {
        .lib = w->lib,
        .cq = &w->comp,
        .max_entries = w->o->max_entries,
        .max_window_log = w->o->max_window_log,
        .user = f,
    };
    if (ds_update_start(ev, &uo, &f->u, &err) < 0) {
        local_failure(w, m, f, ev->package, err.msg);
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

void chunk_to_flight(worker *w, flight *f, rd_kafka_message_t *m,
                     const ds_event *ev)
{
    char detail[DS_ERRMSG_MAX];
    if (f->fate == DISCARD) {
        flight_hold(w, f, m->offset);
        f->next_chunk = ev->chunk + 1;
        rd_kafka_message_destroy(m);
        flight_touch(w, f);
        if (all_chunks_seen(f))
            flight_forget(w, f);
        return;
    }
    if (f->fate == DEAD) {
        snprintf(detail, sizeof(detail),
                 "%.400s (chunk %" PRIu32 " of a rejected "
                 "update)",
                 f->detail, ev->chunk);
        f->next_chunk = ev->chunk + 1;
        /* The last chunk's dead letter is done on delivery; the earlier
         * ones, held in f, become done when f is forgotten. */
        dead_letter(w, m, all_chunks_seen(f) ? NULL : f, f->reason, detail);
        rd_kafka_message_destroy(m);
        flight_touch(w, f);
        if (all_chunks_seen(f))
            flight_forget(w, f);
        return;
    }
    /* Active. A chunk already taken again (a redelivery under a new
     * offset) is dead-lettered alone; it does not harm the update. */
    if (ev->chunk < f->next_chunk) {
        snprintf(detail, sizeof(detail),
                 "duplicate chunk %" PRIu32 " of an update in progress",
                 ev->chunk);
        dead_letter(w, m, NULL, "bad-schema", detail);
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
    flight_touch(w, f);
}

/* ---- set-up -------------------------------------------------------- */

/* SIGHUP: read --trusted-keys again. The new keyring is loaded in full
 * before it replaces the old one; if it cannot be (a broken or unreadable
 * .pub, no key left, the directory gone) the old one stays. Runs on the
 * consumer thread, the only one that uses w->keys (worker_state.h). */
static void reload_keys(worker *w)
{
    const ds_worker_opts *o = w->o;
    if (o->trusted_keys == NULL) {
        ds_info("reload",
                "site=%s note=\"no --trusted-keys: nothing to "
                "reload; logs go to stderr: nothing to reopen\"",
                o->site);
        return;
    }
    ds_err err;
    ds_keyring *fresh = NULL;
    char ids[512], q[DS_ERRMSG_MAX + 64];
    if (ds_keyring_load(o->trusted_keys, &fresh, &err) < 0) {
        ds_error("trusted-keys-reload-failed",
                 "site=%s dir=%s keys=%s error=%s note=\"previous keys "
                 "kept\"",
                 o->site, o->trusted_keys,
                 ds_keyring_ids(w->keys, ids, sizeof(ids)),
                 ds_log_quote(q, sizeof(q), err.msg));
        return;
    }
    ds_keyring_free(w->keys);
    w->keys = fresh;
    ds_info("trusted-keys-reloaded", "site=%s dir=%s keys=%s", o->site,
            o->trusted_keys, ds_keyring_ids(w->keys, ids, sizeof(ids)));
}

static void wake_consumer(void *ctx)
{
    worker *w = ctx;
    if (w->cqueue != NULL)
        rd_kafka_queue_yield(w->cqueue);
}

/* Wait for in-flight work at shutdown: updates whose chunks have all
 * arrived are finished; the others, and those still fetching parts
 * (schema v2: their bytes may be gigabytes away), are abandoned (their staging
 * removed, nothing committed, so they are read again after a restart). */
static void drain_in_flight(worker *w)
{
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL && (!all_chunks_seen(f) || f->fetches)) {
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
    ds_partfetch_free(w->pf);
    statuses_free(w);
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
    ds_notify_init(&w.notify, o->site);
    int rc = ds_library_open(o->library, o->keep_versions,
                             o->create_library != 0, &w.lib, err);
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
                DS_LV(o->trusted_keys),
                DS_LV(ds_keyring_ids(w.keys, ids, sizeof(ids))));
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
                o->site, DS_LV(bound));
    }
    size_t refused = 0;
    while (ds_library_refused(w.lib, refused, NULL) != NULL)
        refused++;
    ds_info("started",
            "site=%s group=despool.%s library=%s keep_versions=%u "
            "staging_removed=%u packages_refused=%zu",
            o->site, o->site, DS_LV(ds_library_root(w.lib)), o->keep_versions,
            removed, refused);

    while (!*o->stop && !w.fatal) {
        /* Throttled: wait for an update to finish rather than take more
         * events, but poll now and then anyway (one event at most) so
         * that rebalances are served and max.poll.interval.ms is kept. */
        rd_kafka_message_t *m = NULL;
        uint64_t now = ds_mono_ms();
        ds_notify_watchdog(&w.notify, now);
        if (o->reload != NULL && *o->reload) {
            *o->reload = 0;
            reload_keys(&w);
        }
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
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    on_partition_eof(&w, m->partition, m->offset);
                else
                    ds_warn("consume-error", "site=%s error=%s", o->site,
                            DS_LV(rd_kafka_message_errstr(m)));
                rd_kafka_message_destroy(m);
            }
        }
        handle_completions(&w);
        flow_control(&w);
        rd_kafka_poll(w.producer, 0); /* delivery reports */
        apply_rewinds(&w);
        dead_letters_pump(&w);
        statuses_retry(&w);
        check_timeouts(&w);
        check_awaiting(&w);
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
            commit(&w, false, true, NULL);
    }
    if (w.fatal)
        rc = ds_err_set(err, -EIO, "kafka",
                        "fatal error in site %s (see the log above)", o->site);

    unsigned in_flight = 0;
    for (flight *f = w.flights; f != NULL; f = f->next)
        in_flight += f->u != NULL;
    if (*o->stop != 0) {
        int sig = (int)*o->stop;
        const char *name = sig == SIGTERM  ? "SIGTERM"
                           : sig == SIGINT ? "SIGINT"
                                           : "other";
        ds_info("stopping", "site=%s in_flight=%u signal=%s(%d) sender_pid=%d",
                o->site, in_flight, name, sig,
                o->stop_sender != NULL ? (int)*o->stop_sender : 0);
    } else {
        ds_info("stopping", "site=%s in_flight=%u", o->site, in_flight);
    }
    /* From here on systemd's stop timeout (TimeoutStopSec) applies, not
     * the watchdog: draining may take long. */
    ds_notify_stopping(&w.notify, o->site);
    drain_in_flight(&w);
    rd_kafka_flush(w.producer, 10000);
    commit(&w, true, true, NULL);
    /* Leaves the group; the revoke callback runs one last time. */
    rd_kafka_consumer_close(w.consumer);
    rd_kafka_flush(w.producer, 10000);
    ds_partfetch_stats pst = {0};
    if (w.pf != NULL)
        ds_partfetch_stats_get(w.pf, &pst);
    ds_info("stopped",
            "site=%s finalized=%" PRIu64 " discarded=%" PRIu64
            " dead_lettered=%" PRIu64 " local_errors=%" PRIu64
            " peak_in_flight=%u parts_fetched=%" PRIu64 " part_bytes=%" PRIu64
            " part_records_read=%" PRIu64 " part_seeks=%" PRIu64,
            o->site, w.n.finalized, w.n.stale, w.n.dead, w.n.ioerrors,
            w.peak_ready, pst.parts, pst.bytes, pst.records, pst.seeks);
out:
    cleanup(&w);
    return rc;
}
