/*
 * publish_v2.c - schema v2: one version of a package as parts on
 * pkg.content and a manifest on pkg.updates, in one transaction
 * (schemas/v2/README.md section 10); see publish.h.
 *
 * The tar stream goes straight from the packer into a part cutter
 * (ds_pack_parts): there is no spool, and each part is produced as soon as
 * it is cut, so packing, compressing and sending overlap and memory stays
 * bounded (the cutter's slots, plus librdkafka's queue of at most 32 MiB:
 * a produce that finds it full waits for it to drain). Meanwhile a second
 * thread sets up the session (session.h: init_transactions, then the
 * package's previous manifest); the first part that needs Kafka waits for
 * it. What each part becomes is partset.h's decision: reused (the
 * previous manifest's record), repeated (sent earlier in this
 * publication) or sent.
 *
 * Small versions go inline: the first parts are held in memory until
 * their frames add up to more than DS_INLINE_MAX; a stream that ends
 * below that is put into the manifest whole (its frames concatenated: a
 * valid zstd stream) and no part is sent. Otherwise the held parts are
 * sent and the rest streams. More than DS_REFS_MAX parts: the refs go
 * into an index, cut into parts by a second cutter and sent the same way.
 *
 * When the stream ends, a flush waits for every part's delivery report
 * (each gives its record's partition and offset; one without an offset
 * fails the publication). Then, in the same transaction: the manifest
 * (to the partition the previous record was read from: murmur2 of the
 * package), a tombstone for every part the previous manifest referenced
 * and this one does not (to that part's own partition), and the
 * `_published/<package>` status record. Commit; on any failure, abort
 * (txn.c).
 *
 * transaction.timeout.ms must be set before init_transactions, and parts
 * are sent before the compressed size is known: it is sized from an
 * upper bound of what can be sent, the tar stream's size estimated from
 * the source (ds_pack_source_bytes), by the same rule as v1 (limits.h).
 *
 * The embedded broker (5 MiB per partition, oldest dropped) takes at most
 * what limits.h's budget allows of a version's new parts. A version whose
 * source could exceed it is first packed without sending anything (a dry
 * run that counts what would be sent, stopped as soon as it is too much),
 * so that a refusal comes before anything is sent, then packed again for
 * real; a small one (under half of DS_EMBEDDED_UPDATE_MAX, which cannot
 * exceed the budget) is sent at once.
 */
#include "publish.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc.h"
#include "log.h"
#include "manifest.h"
#include "partset.h"
#include "parts.h"
#include "progress.h"
#include "session.h"

/* Delivery report tags (the messages' opaque). */
#define TAG_OTHER    0 /* tombstones, the status record */
#define TAG_MANIFEST 1
#define TAG_PART     2 /* + the part's entry number in the part set */

#define FLUSH_WAIT_MS DS_TXN_ABORT_WAIT_MS

typedef struct held {
    uint8_t id[DS_SHA256_LEN];
    uint32_t size, zsize;
    size_t off; /* of its frame in the hold buffer */
} held;

typedef struct refs {
    ds_part_ref *v;
    size_t n, cap;
} refs;

typedef struct v2 {
    const ds_publish_opts *o;
    ds_publish_result *r;
    ds_session s;
    uint64_t bound; /* upper bound of the tar stream's bytes */
    /* The set-up thread. */
    pthread_t thread;
    int started, joined;
    int prepared; /* ready() done */
    atomic_int cancel, failed;
    int setup_rc;
    ds_err setup_err;
    /* What placing a part does. */
    int begun;   /* transaction begun */
    int dry;     /* count only (the embedded broker's dry run) */
    int indexed; /* placing index parts */
    int embedded;
    ds_embedded_budget budget;
    ds_partset *set;
    /* The previous manifest's parts sorted by id: read by the cutter's
     * threads (want_frame) while set changes on the pack's thread. */
    ds_part_ref *known;
    size_t nknown;
    atomic_int known_ready; /* known is set: the set-up is done */
    ds_parts *sink;         /* of the pass running */
    refs parts, index;
    /* Inline: the parts held so far. */
    int holding;
    uint8_t *hold;
    size_t hold_len, hold_cap;
    held *hp;
    size_t nhp, hp_cap;
    /* Delivery reports. */
    unsigned failed_dr, no_offset;
    rd_kafka_resp_err_t first_err;
    int32_t manifest_partition;
    int64_t manifest_offset;
    /* Counts for the result. */
    uint64_t sent, reused, index_sent, content_bytes, reused_bytes;
    ds_err *err;
} v2;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    v2 *c = opaque;
    uintptr_t tag = (uintptr_t)m->_private;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (c->failed_dr++ == 0)
            c->first_err = m->err;
        return;
    }
    if (tag == TAG_MANIFEST) {
        c->manifest_partition = m->partition;
        c->manifest_offset = m->offset;
    } else if (tag >= TAG_PART) {
        ds_partset_entry *e = ds_partset_at(c->set, tag - TAG_PART);
        if (e == NULL)
            return;
        if (m->offset < 0) {
            c->no_offset++;
            return;
        }
        e->partition = m->partition;
        e->offset = m->offset;
    }
}

/* --- the set-up, concurrent with the pack --------------------------------
 */

static void *setup_main(void *arg)
{
    v2 *c = arg;
    c->setup_rc = ds_session_open(&c->s, c->bound, on_delivery, c, &c->cancel,
                                  &c->setup_err);
    if (c->setup_rc < 0)
        atomic_store(&c->failed, 1);
    return NULL;
}

/* Wait for the set-up (cancel it first when asked); its result, with its
 * error copied into err (may be NULL). */
static int setup_join(v2 *c, int cancel, ds_err *err)
{
    if (c->started && !c->joined) {
        if (cancel)
            atomic_store(&c->cancel, 1);
        pthread_join(c->thread, NULL);
        c->joined = 1;
    }
    if (c->setup_rc < 0 && err != NULL)
        *err = c->setup_err;
    return c->setup_rc;
}

/* The pack stops early when the set-up failed: nothing could be sent. */
static int pack_cancelled(void *ctx)
{
    v2 *c = ctx;
    return atomic_load(&c->failed);
}

static void pack_progress(void *ctx, uint64_t done, uint64_t total)
{
    ds_progress_update(ctx, done, total);
}

/* A fresh part set: the parts the store holds. */
static int set_reset(v2 *c, ds_err *err)
{
    ds_partset_free(c->set);
    c->set = NULL;
    const ds_prev *p = &c->s.prev;
    int rc = ds_partset_new(p->nparts + p->nindex, &c->set, err);
    for (size_t i = 0; rc == 0 && i < p->nparts; i++)
        rc = ds_partset_hold(c->set, &p->parts[i], err);
    for (size_t i = 0; rc == 0 && i < p->nindex; i++)
        rc = ds_partset_hold(c->set, &p->index[i], err);
    return rc;
}

static int ref_cmp(const void *a, const void *b)
{
    return memcmp(((const ds_part_ref *)a)->id, ((const ds_part_ref *)b)->id,
                  DS_SHA256_LEN);
}

/* The cutter's question (a pool thread): is the frame of this part
 * needed? Not when the store holds the part: it is referenced, not sent,
 * so it is not compressed either (a minor version's publish then costs
 * reading and hashing the tree, and compressing what changed). */
static int want_frame(void *ctx, const uint8_t *id, size_t size)
{
    v2 *c = ctx;
    if (!atomic_load_explicit(&c->known_ready, memory_order_acquire))
        return 1; /* the previous manifest is still being read */
    if (c->nknown == 0)
        return 1;
    ds_part_ref key;
    memcpy(key.id, id, DS_SHA256_LEN);
    const ds_part_ref *r =
        bsearch(&key, c->known, c->nknown, sizeof(*c->known), ref_cmp);
    return r == NULL || r->size != size;
}

static int sort_known(v2 *c, ds_err *err)
{
    const ds_prev *p = &c->s.prev;
    free(c->known);
    c->known = NULL;
    c->nknown = 0;
    if (p->nparts == 0)
        return 0;
    c->known = malloc(p->nparts * sizeof(*c->known));
    if (c->known == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "sort %zu known parts: out of memory", p->nparts);
    memcpy(c->known, p->parts, p->nparts * sizeof(*c->known));
    qsort(c->known, p->nparts, sizeof(*c->known), ref_cmp);
    c->nknown = p->nparts;
    return 0;
}

/* Kafka is needed from here on: the set-up must be done, the dry run
 * decided, the part set built. */
static int ready(v2 *c)
{
    if (c->prepared)
        return 0;
    int rc = setup_join(c, 0, c->err);
    if (rc < 0)
        return rc;
    c->embedded = c->s.kind == DS_CLUSTER_EMBEDDED;
    c->dry = c->embedded && c->bound > DS_EMBEDDED_UPDATE_MAX / 2;
    if ((c->embedded &&
         (rc = ds_embedded_budget_init(&c->budget, c->s.content_partitions,
                                       c->err)) < 0) ||
        (rc = set_reset(c, c->err)) < 0 ||
        (!atomic_load(&c->known_ready) && (rc = sort_known(c, c->err)) < 0)) {
        /* Sticky, as a failed set-up. */
        c->setup_err = *c->err;
        return c->setup_rc = rc;
    }
    atomic_store_explicit(&c->known_ready, 1, memory_order_release);
    c->prepared = 1;
    return 0;
}

static int refs_add(refs *l, const uint8_t *id, uint32_t size, uint32_t zsize,
                    ds_err *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        ds_part_ref *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return ds_err_set(err, -ENOMEM, "internal",
                              "part refs: %zu: out of memory", cap);
        l->v = v;
        l->cap = cap;
    }
    ds_part_ref *r = &l->v[l->n++];
    memcpy(r->id, id, DS_SHA256_LEN);
    r->size = size;
    r->zsize = zsize;
    r->partition = -1;
    r->offset = -1;
    return 0;
}

static int begin(v2 *c)
{
    if (c->begun)
        return 0;
    int rc = ds_txn_begin(&c->s.t, c->err);
    if (rc == 0)
        c->begun = 1;
    return rc;
}

/* Send one new part: its record on pkg.content, in the partition its key
 * hashes to (murmur2, as the partitioner does). */
static int send_part(v2 *c, const uint8_t *id, uint32_t size,
                     const uint8_t *frame, uint32_t zsize, size_t entry)
{
    ds_err *err = c->err;
    char key[DS_PART_KEY_MAX + 1];
    int klen = ds_part_key(key, sizeof(key), c->o->package, id, err);
    if (klen < 0)
        return klen;
    int32_t partition = rd_kafka_msg_partitioner_murmur2_random(
        c->s.t.content, key, (size_t)klen, c->s.content_partitions, NULL, NULL);
    int rc;
    if (c->embedded && (rc = ds_embedded_take(&c->budget, partition, zsize,
                                              (size_t)klen, err)) < 0)
        return rc;
    c->content_bytes += zsize;
    if (c->dry)
        return 0;
    if ((rc = begin(c)) < 0)
        return rc;
    ds_part p = {
        .schema = DS_SCHEMA_V2, .size = size, .data = frame, .data_len = zsize};
    snprintf(p.package, sizeof(p.package), "%s", c->o->package);
    memcpy(p.id, id, DS_SHA256_LEN);
    uint8_t *val = NULL;
    size_t vlen = 0;
    if ((rc = ds_part_encode(&p, &val, &vlen, err)) < 0)
        return rc;
    /* The value is a copy of the frame (valid only during the cutter's
     * callback): librdkafka frees it once delivered. */
    rc = ds_txn_produce(&c->s.t, c->s.t.content, partition, key, val, vlen,
                        RD_KAFKA_MSG_F_FREE,
                        (void *)(uintptr_t)(TAG_PART + entry), err);
    if (rc < 0) {
        char what[DS_PART_KEY_MAX + 64];
        snprintf(what, sizeof(what), "send part %s to %s partition %d", key,
                 DS_TOPIC_CONTENT, (int)partition);
        return ds_txn_produce_failed(&c->s.t, c->failed_dr, c->first_err, rc,
                                     what, err);
    }
    rd_kafka_poll(c->s.t.rk, 0);
    return 0;
}

/* A part of the new version (or of its index): a ref, and a record sent
 * unless the store holds it or this publication sent it already. */
static int place(v2 *c, const uint8_t *id, uint32_t size, const uint8_t *frame,
                 uint32_t zsize)
{
    int rc = ready(c);
    if (rc < 0)
        return rc;
    if ((rc = refs_add(c->indexed ? &c->index : &c->parts, id, size, zsize,
                       c->err)) < 0)
        return rc;
    size_t entry = 0;
    int what = ds_partset_place(c->set, id, size, zsize, &entry, c->err);
    if (what < 0)
        return what;
    if (what == DS_PLACE_REUSE && !c->indexed) {
        c->reused++;
        c->reused_bytes += ds_partset_at(c->set, entry)->zsize;
    }
    if (what != DS_PLACE_SEND)
        return 0;
    if (c->indexed)
        c->index_sent++;
    else
        c->sent++;
    return send_part(c, id, size, frame, zsize, entry);
}

static int hold_part(v2 *c, const ds_cut_part *p)
{
    if (c->nhp == c->hp_cap) {
        size_t cap = c->hp_cap ? 2 * c->hp_cap : 16;
        held *v = realloc(c->hp, cap * sizeof(*v));
        if (v == NULL)
            return ds_err_set(c->err, -ENOMEM, "internal",
                              "hold parts: out of memory");
        c->hp = v;
        c->hp_cap = cap;
    }
    if (c->hold_len + p->zsize > c->hold_cap) {
        size_t cap = c->hold_cap ? c->hold_cap : DS_INLINE_MAX;
        while (cap < c->hold_len + p->zsize)
            cap *= 2;
        uint8_t *b = realloc(c->hold, cap);
        if (b == NULL)
            return ds_err_set(c->err, -ENOMEM, "internal",
                              "hold parts: %zu bytes: out of memory", cap);
        c->hold = b;
        c->hold_cap = cap;
    }
    held *h = &c->hp[c->nhp++];
    memcpy(h->id, p->id, DS_SHA256_LEN);
    h->size = (uint32_t)p->size;
    h->zsize = (uint32_t)p->zsize;
    h->off = c->hold_len;
    memcpy(c->hold + c->hold_len, p->frame, p->zsize);
    c->hold_len += p->zsize;
    return 0;
}

/* The cutter's callback (the pack's thread). */
static int emit(void *ctx, const ds_cut_part *part, ds_err *err)
{
    v2 *c = ctx;
    c->err = err;
    ds_cut_part q = *part;
    const ds_cut_part *p = &q;
    if (p->size == 0 || p->size > DS_PART_SIZE_MAX ||
        (p->frame != NULL && (p->zsize == 0 || p->zsize > DS_PART_ZSIZE_MAX)))
        return ds_err_set(err, -EINVAL, "internal",
                          "part %" PRIu64 ": %zu bytes, frame %zu", p->index,
                          p->size, p->zsize);
    /* Not compressed (the store holds it): compress it after all when it
     * may go inline, or when the part set will send it (a held ref whose
     * size did not match). */
    if (q.frame == NULL) {
        const ds_partset_entry *e = ds_partset_find(c->set, q.id);
        if (c->holding || e == NULL || e->size != q.size) {
            int rc = ds_parts_frame(c->sink, part, &q.frame, &q.zsize, err);
            if (rc < 0)
                return rc;
        }
    }
    if (c->holding) {
        int rc = hold_part(c, p);
        if (rc < 0 || c->hold_len <= DS_INLINE_MAX)
            return rc;
        /* Too big to go inline: send what was held, then stream. */
        c->holding = 0;
        for (size_t i = 0; i < c->nhp; i++) {
            const held *h = &c->hp[i];
            if ((rc = place(c, h->id, h->size, c->hold + h->off, h->zsize)) < 0)
                return rc;
        }
        c->nhp = 0;
        c->hold_len = 0;
        return 0;
    }
    return place(c, p->id, (uint32_t)p->size, p->frame, (uint32_t)p->zsize);
}

static int emit_index(void *ctx, const ds_cut_part *p, ds_err *err)
{
    v2 *c = ctx;
    c->err = err;
    return place(c, p->id, (uint32_t)p->size, p->frame, (uint32_t)p->zsize);
}

/* One pass over the source: pack, cut, place. */
static int pack_pass(v2 *c, ds_pack_stats *st, ds_err *err)
{
    const ds_publish_opts *o = c->o;
    c->holding = 1;
    c->nhp = 0;
    c->hold_len = 0;
    c->err = err;
    ds_parts_opts po = {.level = o->level,
                        .threads = o->threads,
                        .part_size = o->part_size,
                        .want_frame = want_frame,
                        .want_ctx = c,
                        .name = o->source};
    ds_cdc cdc;
    int rc;
    if (o->cut == DS_CUT_CONTENT) {
        if ((rc = ds_cdc_init(&cdc, err)) < 0)
            return rc;
        po.cut = ds_cdc_cut;
        po.cut_ctx = &cdc;
    }
    ds_parts *sink = NULL;
    rc = ds_parts_new(&po, emit, c, &sink, err);
    if (rc < 0)
        return rc;
    c->sink = sink;
    ds_progress bar;
    ds_progress_init(&bar, c->dry ? "check" : "publish", o->progress);
    ds_pack_opts pk = {
        .progress = pack_progress,
        .progress_ctx = &bar,
        .cancelled = pack_cancelled,
        .cancel_ctx = c,
    };
    rc = ds_pack_parts(o->source, &pk, sink, st, err);
    ds_progress_finish(&bar);
    c->sink = NULL;
    ds_parts_free(sink);
    return rc;
}

/* Wait for every delivery report; all parts must have their offsets. */
static int flush_parts(v2 *c, refs *l, const char *what, ds_err *err)
{
    rd_kafka_t *rk = c->s.t.rk;
    uint64_t deadline = ds_mono_ms() + FLUSH_WAIT_MS;
    while (rd_kafka_outq_len(rk) > 0 && c->failed_dr == 0 &&
           ds_mono_ms() < deadline)
        rd_kafka_flush(rk, 1000);
    if (c->failed_dr > 0)
        return ds_err_set(err, -EIO, "kafka",
                          "send %s to %s: %u record(s) not delivered, first: "
                          "%s",
                          what, DS_TOPIC_CONTENT, c->failed_dr,
                          rd_kafka_err2str(c->first_err));
    if (rd_kafka_outq_len(rk) > 0)
        return ds_err_set(err, -ETIMEDOUT, "kafka",
                          "send %s to %s: %d record(s) not delivered after "
                          "%d s",
                          what, DS_TOPIC_CONTENT, rd_kafka_outq_len(rk),
                          FLUSH_WAIT_MS / 1000);
    ds_err ferr;
    if (ds_partset_fill_refs(c->set, l->v, l->n, &ferr) < 0)
        return ds_err_set(err, -EIO, "kafka",
                          "send %s to %s: %s%s: the publication is aborted "
                          "(its ref would be unknown); run it again",
                          what, DS_TOPIC_CONTENT, ferr.msg,
                          c->no_offset ? " (a delivery report without an "
                                         "offset)"
                                       : "");
    return 0;
}

/* The index of the new version's refs, cut into parts and sent. */
static int send_index(v2 *c, ds_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = ds_index_encode(c->parts.v, c->parts.n, &buf, &len, err);
    if (rc < 0)
        return rc;
    ds_parts_opts po = {
        .level = c->o->level, .threads = c->o->threads, .name = "index"};
    ds_parts *sink = NULL;
    c->indexed = 1;
    if ((rc = ds_parts_new(&po, emit_index, c, &sink, err)) == 0 &&
        (rc = ds_parts_write(sink, buf, len, err)) == 0)
        rc = ds_parts_finish(sink, NULL, err);
    ds_parts_free(sink);
    free(buf);
    if (rc == 0)
        rc = flush_parts(c, &c->index, "the index parts", err);
    return rc;
}

static int send_tombstone(void *ctx, const ds_partset_entry *e)
{
    v2 *c = ctx;
    char key[DS_PART_KEY_MAX + 1];
    int rc = ds_part_key(key, sizeof(key), c->o->package, e->id, c->err);
    if (rc < 0)
        return rc;
    /* To the partition its record is in: not the partitioner's choice,
     * which differs once the partition count changed. */
    rc = ds_txn_produce(&c->s.t, c->s.t.content, e->partition, key, NULL, 0, 0,
                        (void *)(uintptr_t)TAG_OTHER, c->err);
    if (rc < 0) {
        char what[DS_PART_KEY_MAX + 64];
        snprintf(what, sizeof(what), "send tombstone %s to %s partition %d",
                 key, DS_TOPIC_CONTENT, (int)e->partition);
        return ds_txn_produce_failed(&c->s.t, c->failed_dr, c->first_err, rc,
                                     what, c->err);
    }
    rd_kafka_poll(c->s.t.rk, 0);
    return 0;
}

static int send_status(v2 *c, ds_err *err)
{
    ds_status st = {.version = c->o->version, .at_ms = ds_now_ms()};
    snprintf(st.site, sizeof(st.site), "_published");
    snprintf(st.package, sizeof(st.package), "%s", c->o->package);
    snprintf(st.state, sizeof(st.state), "published");
    uint8_t *val = NULL;
    size_t len = 0;
    char key[DS_PACKAGE_MAX + 16];
    snprintf(key, sizeof(key), "_published/%s", c->o->package);
    int rc = ds_status_encode(&st, &val, &len, err);
    if (rc == 0 &&
        (rc = ds_txn_produce(&c->s.t, c->s.t.status, RD_KAFKA_PARTITION_UA, key,
                             val, len, RD_KAFKA_MSG_F_FREE,
                             (void *)(uintptr_t)TAG_OTHER, err)) < 0) {
        char what[DS_PACKAGE_MAX + 64];
        snprintf(what, sizeof(what), "send %s to %s", key, DS_TOPIC_STATUS);
        rc = ds_txn_produce_failed(&c->s.t, c->failed_dr, c->first_err, rc,
                                   what, err);
    }
    return rc;
}

/* After the stream: the index, the manifest, the tombstones, the status
 * record, commit. */
static int finish(v2 *c, const ds_pack_stats *st, ds_err *err)
{
    const ds_publish_opts *o = c->o;
    ds_publish_result *r = c->r;
    int rc;
    c->err = err;
    if ((rc = ready(c)) < 0 || (rc = begin(c)) < 0)
        return rc;
    ds_manifest m = {
        .schema = DS_SCHEMA_V2,
        .version = o->version,
        .size = st->size,
        .created_ms = ds_now_ms(),
    };
    snprintf(m.package, sizeof(m.package), "%s", o->package);
    snprintf(m.codec, sizeof(m.codec), "zstd");
    memcpy(m.update_id, r->update_id, DS_UPDATE_ID_LEN);
    memcpy(m.sha256, st->sha256, DS_SHA256_LEN);
    if (c->holding) {
        m.form = DS_FORM_INLINE;
        m.data = c->hold;
        m.data_len = c->hold_len;
        m.zsize = c->hold_len;
    } else {
        if ((rc = flush_parts(c, &c->parts, "the parts", err)) < 0)
            return rc;
        for (size_t i = 0; i < c->parts.n; i++)
            m.zsize += c->parts.v[i].zsize;
        m.nparts = c->parts.n;
        m.form = c->parts.n > DS_REFS_MAX ? DS_FORM_INDEX : DS_FORM_PARTS;
        if (m.form == DS_FORM_INDEX && (rc = send_index(c, err)) < 0)
            return rc;
        const refs *l = m.form == DS_FORM_INDEX ? &c->index : &c->parts;
        m.refs = l->v;
        m.nrefs = (uint32_t)l->n;
    }
    if (o->signer != NULL) {
        if ((rc = ds_sign_manifest(o->signer, &m, err)) < 0)
            return rc;
        snprintf(r->signed_by, sizeof(r->signed_by), "%s", m.key_id);
        memcpy(r->sig, m.sig, DS_SIG_LEN);
    }
    uint8_t *val = NULL;
    size_t len = 0;
    if ((rc = ds_manifest_encode(&m, &val, &len, err)) < 0)
        return rc;
    if ((rc = ds_txn_produce(&c->s.t, c->s.t.updates, c->s.prev.partition,
                             o->package, val, len, RD_KAFKA_MSG_F_FREE,
                             (void *)(uintptr_t)TAG_MANIFEST, err)) < 0) {
        char what[DS_PACKAGE_MAX + 64];
        snprintf(what, sizeof(what), "send the manifest to %s partition %d",
                 DS_TOPIC_UPDATES, (int)c->s.prev.partition);
        return ds_txn_produce_failed(&c->s.t, c->failed_dr, c->first_err, rc,
                                     what, err);
    }
    long dropped = ds_partset_dropped(c->set, send_tombstone, c);
    if (dropped < 0)
        return (int)dropped;
    if ((rc = send_status(c, err)) < 0)
        return rc;
    r->form = m.form;
    r->parts = m.nparts;
    r->index_parts = m.form == DS_FORM_INDEX ? m.nrefs : 0;
    r->parts_tombstoned = (uint64_t)dropped;
    r->st.zsize = m.zsize;
    return 0;
}

/* The embedded broker's dry run passed: start again for real. */
static void reset_after_dry_run(v2 *c)
{
    c->dry = 0;
    c->parts.n = c->index.n = 0;
    c->sent = c->reused = c->index_sent = c->content_bytes = 0;
    c->reused_bytes = 0;
    c->budget.total = 0;
    memset(c->budget.per, 0,
           (size_t)c->budget.partitions * sizeof(*c->budget.per));
}

int ds_publish_v2(const ds_publish_opts *o, ds_publish_result *r, ds_err *err)
{
    v2 *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "publish: out of memory");
    c->o = o;
    c->r = r;
    c->manifest_partition = -1;
    c->manifest_offset = -1;
    c->s.t.kc = o->kc;
    c->s.t.package = o->package;
    c->s.t.step_timeout_ms = o->timeout_ms;
    c->s.t.partition = -1;
    snprintf(c->s.t.id, sizeof(c->s.t.id), "%s", r->transactional_id);
    ds_pack_stats st;
    int rc = ds_pack_source_bytes(o->source, &c->bound, err);
    if (rc < 0)
        goto out;
    int e = pthread_create(&c->thread, NULL, setup_main, c);
    if (e != 0) {
        rc = ds_err_set(err, -e, "internal", "start Kafka set-up thread: %s",
                        strerror(e));
        goto out;
    }
    c->started = 1;
    uint64_t t0 = ds_mono_ms();
    uint64_t t_pack = t0;
    for (;;) {
        rc = pack_pass(c, &st, err);
        t_pack = ds_mono_ms();
        /* A pack that failed on its own is the error to report (the
         * set-up is cancelled); one the failed set-up cancelled reports
         * the set-up's. */
        int own_failure = rc < 0 && !atomic_load(&c->failed);
        int src = setup_join(c, own_failure, own_failure ? NULL : err);
        if (!own_failure && src < 0)
            rc = src;
        if (rc < 0 || !c->dry)
            break;
        ds_info("embedded-check-passed",
                "package=%s content_bytes=%" PRIu64 " detail=\"within the "
                "embedded broker's budget; now sending\"",
                o->package, c->content_bytes);
        reset_after_dry_run(c);
        if ((rc = set_reset(c, err)) < 0)
            break;
        t0 = ds_mono_ms();
    }
    /* pack: the stream cut and its parts sent as they came; send: the
     * rest (the set-up if still under way, the last delivery reports, the
     * manifest, tombstones, commit). */
    r->pack_secs = (double)(t_pack - t0) / 1000.0;
    if (rc < 0) {
        if (c->begun)
            ds_txn_abort(&c->s.t);
        goto settle;
    }
    r->st = st;
    uint64_t t1 = t_pack;
    rc = finish(c, &st, err);
    if (rc == 0)
        rc = ds_txn_commit(&c->s.t, &c->failed_dr, &c->first_err, err);
    else if (c->begun)
        ds_txn_abort(&c->s.t);
    r->send_secs = (double)(ds_mono_ms() - t1) / 1000.0;
settle:
    if (c->s.t.rk != NULL) {
        int unsent = rd_kafka_outq_len(c->s.t.rk) > 0;
        ds_txn_settle(&c->s.t, unsent);
    }
    /* A delivery report without an offset: after a leader moved, the
     * retried batch was already in the log (DUPLICATE_SEQUENCE_NUMBER),
     * so its offset is unknown and no manifest can name it; the aborted
     * publication is run again. */
    r->retry = rc < 0 && strcmp(err->reason, "kafka") == 0 &&
               (ds_txn_worth_retry(&c->s.t, c->first_err) ||
                (c->no_offset > 0 && c->s.t.fate == DS_FATE_ABORTED));
    r->chunks = 1;
    r->partition = c->manifest_partition;
    r->first_offset = r->last_offset = c->manifest_offset;
    r->parts_sent = c->sent;
    r->parts_reused = c->reused;
    r->content_bytes = c->content_bytes;
    r->reused_bytes = c->reused_bytes;
out:
    setup_join(c, 1, NULL);
    r->txn_timeout_ms = c->s.t.timeout_ms;
    snprintf(r->hint, sizeof(r->hint), "%s", c->s.t.hint);
    ds_session_close(&c->s);
    ds_partset_free(c->set);
    free(c->known);
    ds_embedded_budget_free(&c->budget);
    free(c->parts.v);
    free(c->index.v);
    free(c->hold);
    free(c->hp);
    free(c);
    return rc;
}
