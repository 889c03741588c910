/*
 * manifests.c - schema v2 records on pkg.updates (schemas/v2/README.md
 * section 13): a manifest becomes a flight of one "chunk" whose bytes are
 * inline or fetched as parts by its update thread (partfetch.h); a newer
 * record of a package supersedes its pending older ones as soon as it is
 * read, before their parts are fetched; a null value retires the package;
 * a version whose part has gone missing waits for the newer record that
 * must have replaced it, and is dead-lettered part-missing only when the
 * consumer has read to the partition's end without finding one.
 *
 * Offsets: a manifest's offset is done when its update is finalized,
 * discarded (stale, superseded) or dead-lettered, as for a v1 chunk; a
 * retire's once the site acted on it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker_state.h"

/* The v1 header a flight keeps, from a manifest: one chunk. */
static void manifest_header(const ds_manifest *mf, ds_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->schema = mf->schema;
    memcpy(ev->package, mf->package, sizeof(ev->package));
    ev->version = mf->version;
    memcpy(ev->update_id, mf->update_id, DS_UPDATE_ID_LEN);
    ev->chunk = 0;
    ev->chunks = 1;
    memcpy(ev->codec, mf->codec, sizeof(ev->codec));
    ev->size = mf->size;
    ev->zsize = mf->zsize;
    memcpy(ev->sha256, mf->sha256, DS_SHA256_LEN);
    ev->created_ms = mf->created_ms;
    ev->data = mf->data;
    ev->data_len = mf->data_len;
    ev->has_sig = mf->has_sig;
    memcpy(ev->sig, mf->sig, DS_SIG_LEN);
    memcpy(ev->key_id, mf->key_id, sizeof(ev->key_id));
}

static const char *form_name(int form)
{
    return form == DS_FORM_INLINE  ? "inline"
           : form == DS_FORM_PARTS ? "parts"
                                   : "index";
}

/* A record of package at partition/offset supersedes what is pending of
 * the package up to version (a retire: every version): active updates
 * are cancelled (complete_one discards them), waiting ones discarded. */
static void supersede_pending(worker *w, const char *package, int32_t partition,
                              uint64_t version)
{
    char id[2 * DS_UPDATE_ID_LEN + 1];
    for (flight *f = w->flights, *nx; f != NULL; f = nx) {
        nx = f->next;
        if (f->partition != partition || f->hdr.version > version ||
            strcmp(f->hdr.package, package) != 0 || !flight_current(w, f))
            continue;
        if (f->u != NULL) {
            f->superseded = true;
            ds_update_cancel(f->u);
        } else if (f->awaiting) {
            w->n.stale++;
            ds_metrics_add_label(w->met, DS_L_DISCARDED, "superseded", 1);
            ds_info("discarded",
                    "site=%s package=%s version=%" PRIu64 " update_id=%s "
                    "reason=superseded partition=%d note=\"a part was "
                    "missing; a newer record replaced the version\"",
                    w->o->site, f->hdr.package, f->hdr.version, hexid(id, f),
                    (int)f->partition);
            for (uint32_t i = 0; i < f->noffsets; i++)
                flight_hold(w, f, f->offsets[i]);
            f->noffsets = 0;
            f->awaiting = false;
            flight_retire(w, f, DISCARD, NULL, NULL);
        }
    }
}

void handle_manifest(worker *w, rd_kafka_message_t *m, part *p)
{
    ds_err err;
    ds_manifest mf;
    if (ds_manifest_decode(m->payload, m->len, &mf, &err) < 0) {
        dead_letter(w, m, NULL, "bad-schema", err.msg);
        rd_kafka_message_destroy(m);
        return;
    }
    if (!key_matches(w, m, mf.package))
        return;
    ds_event ev;
    manifest_header(&mf, &ev);
    if (w->keys != NULL && ds_keyring_verify_manifest(w->keys, &mf, &err) < 0) {
        report_status(w, mf.package, mf.version, "failed", err.msg);
        refuse_update(w, m, &ev, p, "bad-signature", err.msg);
        return;
    }
    /* Known now: nothing older of the package is worth fetching. */
    supersede_pending(w, mf.package, m->partition, mf.version);

    ds_part_ref *refs = NULL;
    size_t nrefs = 0;
    if (mf.form != DS_FORM_INLINE) {
        refs = malloc(mf.nrefs * sizeof(*refs));
        int n = refs ? ds_manifest_refs(&mf, refs, mf.nrefs, &err) : -ENOMEM;
        if (n < 0) {
            free(refs);
            local_failure(w, m, NULL, mf.package,
                          n == -ENOMEM ? "refs of the manifest: out of memory"
                                       : err.msg);
            return;
        }
        nrefs = (size_t)n;
    }
    flight *f = admit_update(w, m, &ev, p);
    if (f == NULL) {
        free(refs);
        return;
    }
    if (w->pf == NULL && mf.form != DS_FORM_INLINE &&
        ds_partfetch_new(w->o->kc, DS_TOPIC_CONTENT, &w->pf, &err) < 0) {
        free(refs);
        local_failure(w, m, f, mf.package, err.msg);
        return;
    }
    ds_update_opts uo = {
        .lib = w->lib,
        .cq = &w->comp,
        .max_entries = w->o->max_entries,
        .max_window_log = w->o->max_window_log,
        .user = f,
        .man = &mf,
        .pf = w->pf,
        .refs = refs,
        .nrefs = nrefs,
    };
    if (ds_update_start(&ev, &uo, &f->u, &err) < 0) {
        local_failure(w, m, f, ev.package, err.msg);
        return;
    }
    char id[2 * DS_UPDATE_ID_LEN + 1];
    ds_info("update-started",
            "site=%s package=%s version=%" PRIu64 " update_id=%s schema=2 "
            "form=%s parts=%" PRIu64 " bytes=%" PRIu64 " partition=%d "
            "offset=%lld",
            w->o->site, ev.package, ev.version, hexid(id, f),
            form_name(mf.form), mf.nparts, ev.size, (int)m->partition,
            (long long)m->offset);
    if (mf.form == DS_FORM_INLINE) {
        chunk_to_flight(w, f, m, &ev);
        return;
    }
    if (flight_add_offset(f, m->offset) < 0) {
        ds_error("out-of-memory", "partition=%d offset=%lld", (int)m->partition,
                 (long long)m->offset);
        w->fatal = true;
    }
    f->next_chunk = 1;
    f->fetches = true;
    flight_touch(w, f);
    rd_kafka_message_destroy(m);
}

void handle_retire(worker *w, rd_kafka_message_t *m, part *p)
{
    char package[DS_PACKAGE_MAX + 1];
    if (m->key == NULL || !ds_package_valid(m->key, m->key_len)) {
        char detail[300];
        snprintf(detail, sizeof(detail),
                 "a null value (retire) whose key \"%.*s\" is not a package "
                 "id",
                 (int)(m->key ? (m->key_len > 128 ? 128 : m->key_len) : 0),
                 m->key ? (const char *)m->key : "");
        dead_letter(w, m, NULL, "bad-schema", detail);
        rd_kafka_message_destroy(m);
        return;
    }
    memcpy(package, m->key, m->key_len);
    package[m->key_len] = '\0';
    int32_t partition = m->partition;
    int64_t offset = m->offset;
    unsigned gen = p->gen;
    rd_kafka_message_destroy(m);

    /* Whatever of the package is pending stops first: an update past its
     * point of no return finishes before the package is retired. */
    supersede_pending(w, package, partition, UINT64_MAX);
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL && f->partition == partition &&
            strcmp(f->hdr.package, package) == 0)
            ds_update_join(f->u);
    handle_completions(w);
    part *again = part_get(w, partition);
    if (again == NULL || !again->assigned || again->gen != gen)
        return; /* rewound meanwhile: read again */

    ds_err err;
    uint64_t cur = 0;
    int remove = w->o->on_retire == DS_RETIRE_REMOVE;
    int rc = ds_library_retire(w->lib, package, w->o->on_retire, &cur, &err);
    if (rc == DS_RETIRE_LEFTOVER) {
        char q[600];
        ds_warn("retire-leftover", "site=%s package=%s error=%s", w->o->site,
                package, ds_log_quote(q, sizeof(q), err.msg));
    } else if (rc < 0) {
        char q[600];
        w->n.ioerrors++;
        ds_metrics_add_label(w->met, DS_L_ERRORS, "local", 1);
        ds_error("local-error", "site=%s package=%s op=retire error=%s",
                 w->o->site, package, ds_log_quote(q, sizeof(q), err.msg));
        rewind_partition(w, partition);
        return;
    }
    ds_info("retired",
            "site=%s package=%s action=%s current=%" PRIu64
            " partition=%d offset=%lld",
            w->o->site, package, remove ? "remove" : "keep", cur,
            (int)partition, (long long)offset);
    ds_metrics_add(w->met, DS_C_RETIRED, 1);
    report_status(w, package, cur, "retired", remove ? "removed" : "kept");
    mark_done(w, partition, gen, offset);
}

/* The high watermark the consumer last heard of for partition, or -1. */
static int64_t known_end(worker *w, int32_t partition)
{
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(w->consumer, DS_TOPIC_UPDATES, partition,
                                       &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return hi;
}

/* Read to the end: nothing newer of the package is there as of now. */
static bool read_to_end(worker *w, const flight *f)
{
    part *p = part_get(w, f->partition);
    if (p == NULL)
        return false;
    if (p->at_eof && p->eof_offset >= f->await_hi)
        return true;
    return p->expect >= 0 && f->await_hi >= 0 && p->expect >= f->await_hi;
}

static void give_up(worker *w, flight *f)
{
    char reason[DS_REASON_MAX], detail[DS_ERRMSG_MAX];
    snprintf(reason, sizeof(reason), "%s", f->reason);
    snprintf(detail, sizeof(detail), "%s", f->detail);
    f->awaiting = false;
    ds_warn("rejected",
            "site=%s package=%s version=%" PRIu64
            " reason=part-missing partition=%d note=\"no newer record of the "
            "package up to the partition's end\"",
            w->o->site, f->hdr.package, f->hdr.version, (int)f->partition);
    report_status(w, f->hdr.package, f->hdr.version, "failed", detail);
    dead_letter_consumed(w, f, reason, detail);
    flight_retire(w, f, DEAD, reason, detail);
}

bool part_missing_wait(worker *w, flight *f, const char *detail)
{
    snprintf(f->reason, sizeof(f->reason), "part-missing");
    snprintf(f->detail, sizeof(f->detail), "%s", detail);
    f->await_hi = known_end(w, f->partition);
    part *p = part_get(w, f->partition);
    if (p != NULL && p->at_eof && p->eof_offset >= f->await_hi)
        return false; /* nothing newer: the caller dead-letters */
    f->awaiting = true;
    char q[600];
    ds_info("part-missing-wait",
            "site=%s package=%s version=%" PRIu64
            " partition=%d until=%lld detail=%s",
            w->o->site, f->hdr.package, f->hdr.version, (int)f->partition,
            (long long)f->await_hi, ds_log_quote(q, sizeof(q), detail));
    return true;
}

void check_awaiting(worker *w)
{
    for (flight *f = w->flights, *nx; f != NULL; f = nx) {
        nx = f->next;
        if (f->awaiting && flight_current(w, f) && read_to_end(w, f))
            give_up(w, f);
    }
}

void on_partition_eof(worker *w, int32_t partition, int64_t offset)
{
    part *p = part_get(w, partition);
    if (p == NULL || !p->assigned)
        return;
    p->at_eof = true;
    p->eof_offset = offset;
}
