/*
 * publish_v1.c - schema v1: pack, spool, chunk and send one update in one
 * transaction; see publish.h (the transaction's plumbing: txn.c; the
 * brokers' limits: limits.c).
 *
 * The chunk headers carry the final size and sha256, so nothing can be
 * sent before the pack ends; what can be done meanwhile is done in a
 * second thread (kafka_prep): init_transactions (which also fences an
 * older run with the same transactional id) and the metadata of both
 * topics. Without that metadata librdkafka keeps the first message of a
 * topic it does not know yet until its next topic scan (up to a second),
 * once for pkg.updates and once more for pkg.status just before commit.
 * The same thread finds out whether the cluster is the embedded broker,
 * whose partitions keep only 5 MiB: there an update that would not fit is
 * refused before anything is sent (early, during the pack, once the spool
 * passes the limit).
 *
 * transaction.timeout.ms is a producer setting sent with
 * init_transactions, but its rule (limits.h) needs the compressed size,
 * known only when the pack ends. The producer starts with the rule's
 * floor (60 s, enough up to 60 MiB): the overlap is kept for every update
 * that small. A bigger one gets a second producer, created after the pack
 * with its own timeout (one more connect + init_transactions, tens of ms,
 * next to a send of seconds).
 */
#include "publish.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "progress.h"
#include "txn.h"

typedef struct send_state {
    uint32_t sent; /* chunk events handed to librdkafka */
    uint32_t delivered;
    uint32_t failed;
    int32_t partition;
    int64_t first_offset, last_offset;
    rd_kafka_resp_err_t first_err;
} send_state;

/* The opaque of each chunk event is its index + 1 (0 = the status). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    send_state *s = opaque;
    uintptr_t idx = (uintptr_t)m->_private;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (s->failed++ == 0)
            s->first_err = m->err;
        return;
    }
    if (idx == 0)
        return;
    s->delivered++;
    s->partition = m->partition;
    if (s->first_offset < 0 || m->offset < s->first_offset)
        s->first_offset = m->offset;
    if (m->offset > s->last_offset)
        s->last_offset = m->offset;
}

static int spool_open(ds_err *err)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
    /* Unnamed: the spool vanishes with the process, even after kill -9. */
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[4096];
    snprintf(path, sizeof(path), "%s/pkgpub.XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return ds_err_sys(err, "io-error", "create spool file in %s", dir);
    unlink(path);
    return fd;
}

static void pack_progress(void *ctx, uint64_t done, uint64_t total)
{
    ds_progress_update(ctx, done, total);
}

/* --- Kafka set-up, concurrent with the pack ------------------------------ */

#define PREP_SLICE_MS 200 /* blocking calls in slices, to notice a cancel */

typedef struct kafka_prep {
    ds_txn *t;
    atomic_int cancel;  /* set by the main thread: give up */
    atomic_int failed;  /* set by prep: init failed, stop the pack */
    atomic_int kind;    /* DS_CLUSTER_*, -1 while not known */
    int32_t broker_id;  /* a broker of the cluster, or -1 */
    int spool_fd;       /* the pack's output, for its size */
    atomic_int too_big; /* the pack was stopped: over the limit */
    int rc;
    ds_err err;
    pthread_t thread;
    int started;
} kafka_prep;

static void *prep_main(void *arg)
{
    kafka_prep *k = arg;
    ds_txn *t = k->t;
    k->rc = ds_txn_init(t, &k->cancel, &k->err);
    if (k->rc < 0) {
        atomic_store(&k->failed, 1);
        return NULL;
    }
    /* Warm-up only: a failure here just leaves the lookup to librdkafka
     * when the first message is produced. */
    rd_kafka_topic_t *topics[] = {t->updates, t->status};
    for (int i = 0; i < 2 && !atomic_load(&k->cancel); i++) {
        const struct rd_kafka_metadata *md = NULL;
        uint64_t deadline = ds_mono_ms() + (uint64_t)t->step_timeout_ms;
        while (!atomic_load(&k->cancel) && ds_mono_ms() < deadline) {
            rd_kafka_resp_err_t e =
                rd_kafka_metadata(t->rk, 0, topics[i], &md, PREP_SLICE_MS);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (k->broker_id < 0 && md->broker_cnt > 0)
                    k->broker_id = md->brokers[0].id;
                rd_kafka_metadata_destroy(md);
                break;
            }
            if (e != RD_KAFKA_RESP_ERR__TIMED_OUT)
                break;
        }
    }
    /* After init_transactions the cluster id is known (it comes with
     * every metadata answer): no wait. */
    atomic_store(&k->kind, ds_kconf_cluster_kind(t->rk, PREP_SLICE_MS));
    return NULL;
}

static int prep_start(kafka_prep *k, ds_err *err)
{
    int e = pthread_create(&k->thread, NULL, prep_main, k);
    if (e != 0)
        return ds_err_set(err, -e, "internal", "start Kafka set-up thread: %s",
                          strerror(e));
    k->started = 1;
    return 0;
}

/* Wait for the set-up thread; cancel it first if the pack failed. Returns
 * its result (with its error copied into err). */
static int prep_join(kafka_prep *k, int cancel, ds_err *err)
{
    if (!k->started)
        return 0;
    if (cancel)
        atomic_store(&k->cancel, 1);
    pthread_join(k->thread, NULL);
    k->started = 0;
    if (k->rc < 0 && err != NULL)
        *err = k->err;
    return k->rc;
}

/* --- send ---------------------------------------------------------------- */

/* A chunk event is its header (ds_event_encode_head: every field, then
 * the bin header of data) followed by the chunk's bytes, read from the
 * spool straight into the event: one copy, no re-encoding of 900 KiB.
 * Each assembled event is decoded again before it is sent. */
/* Chunk i of the update as one malloc'd event (*out, *out_len). */
static int chunk_event(ds_event *ev, int fd, uint64_t off, size_t len,
                       uint8_t **out, size_t *out_len, ds_err *err)
{
    uint8_t *head = NULL;
    size_t hlen = 0;
    ev->data = NULL;
    ev->data_len = len;
    int rc = ds_event_encode_head(ev, &head, &hlen, err);
    if (rc < 0)
        return rc;
    uint8_t *val = malloc(hlen + len);
    if (val == NULL) {
        free(head);
        return ds_err_set(err, -ENOMEM, "io-error",
                          "chunk %u: %zu bytes: out of memory",
                          (unsigned)ev->chunk, hlen + len);
    }
    memcpy(val, head, hlen);
    free(head);
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, val + hlen + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? ds_err_sys(err, "io-error",
                                    "read spool at offset %" PRIu64, off + got)
                       : ds_err_set(err, -EIO, "io-error",
                                    "read spool at offset %" PRIu64
                                    ": end of file",
                                    off + got);
            free(val);
            return rc;
        }
        got += (size_t)n;
    }
    ds_event chk;
    rc = ds_event_decode(val, hlen + len, &chk, err);
    if (rc == 0 && (chk.chunk != ev->chunk || chk.data != val + hlen ||
                    chk.data_len != len || !ds_event_same_update(&chk, ev)))
        rc = ds_err_set(err, -EIO, "internal",
                        "chunk %u: assembled event does not decode to itself",
                        (unsigned)ev->chunk);
    if (rc < 0) {
        free(val);
        return rc;
    }
    *out = val;
    *out_len = hlen + len;
    return 0;
}

static int send_update(ds_txn *t, const ds_publish_opts *o, int fd,
                       ds_publish_result *r, send_state *s, ds_err *err)
{
    int rc;
    char what[192];
    ds_progress bar;
    ds_progress_init(&bar, "send", o->progress);
    if ((rc = ds_txn_begin(t, err)) < 0)
        goto out;
    ds_event ev = {
        .schema = DS_SCHEMA_V1,
        .version = o->version,
        .chunks = r->chunks,
        .size = r->st.size,
        .zsize = r->st.zsize,
        .created_ms = ds_now_ms(),
    };
    snprintf(ev.package, sizeof(ev.package), "%s", o->package);
    snprintf(ev.codec, sizeof(ev.codec), "zstd");
    memcpy(ev.update_id, r->update_id, DS_UPDATE_ID_LEN);
    memcpy(ev.sha256, r->st.sha256, DS_SHA256_LEN);
    /* One signature over the header; every chunk carries it. */
    if (o->signer != NULL) {
        if ((rc = ds_sign_event(o->signer, &ev, err)) < 0)
            goto abort;
        snprintf(r->signed_by, sizeof(r->signed_by), "%s", ev.key_id);
        memcpy(r->sig, ev.sig, DS_SIG_LEN);
    }
    for (uint32_t i = 0; i < r->chunks; i++) {
        uint64_t off = (uint64_t)i * o->chunk_size;
        size_t len = r->st.zsize - off < o->chunk_size
                         ? (size_t)(r->st.zsize - off)
                         : o->chunk_size;
        ev.chunk = i;
        uint8_t *val = NULL;
        size_t vlen = 0;
        if ((rc = chunk_event(&ev, fd, off, len, &val, &vlen, err)) < 0)
            goto abort;
        if ((rc = ds_txn_produce(t, t->updates, RD_KAFKA_PARTITION_UA,
                                 o->package, val, vlen, RD_KAFKA_MSG_F_FREE,
                                 (void *)((uintptr_t)i + 1), err)) < 0) {
            snprintf(what, sizeof(what), "send chunk %u of %u to %s",
                     (unsigned)i, (unsigned)r->chunks, DS_TOPIC_UPDATES);
            rc = ds_txn_produce_failed(t, s->failed, s->first_err, rc, what,
                                       err);
            goto abort;
        }
        s->sent++;
        rd_kafka_poll(t->rk, 0);
        ds_progress_update(&bar, off + len, r->st.zsize);
    }
    ds_status st = {.version = o->version, .at_ms = ds_now_ms()};
    snprintf(st.site, sizeof(st.site), "_published");
    snprintf(st.package, sizeof(st.package), "%s", o->package);
    snprintf(st.state, sizeof(st.state), "published");
    uint8_t *sval = NULL;
    size_t slen = 0;
    char skey[DS_PACKAGE_MAX + 16];
    snprintf(skey, sizeof(skey), "_published/%s", o->package);
    if ((rc = ds_status_encode(&st, &sval, &slen, err)) < 0)
        goto abort;
    if ((rc = ds_txn_produce(t, t->status, RD_KAFKA_PARTITION_UA, skey, sval,
                             slen, RD_KAFKA_MSG_F_FREE, NULL, err)) < 0) {
        snprintf(what, sizeof(what), "send %s to %s", skey, DS_TOPIC_STATUS);
        rc = ds_txn_produce_failed(t, s->failed, s->first_err, rc, what, err);
        goto abort;
    }
    rc = ds_txn_commit(t, &s->failed, &s->first_err, err);
    goto out;
abort:
    ds_txn_abort(t);
out:
    ds_progress_finish(&bar);
    return rc;
}

/* Pack stops early when the Kafka set-up failed (nothing could be sent),
 * or when the embedded broker could not keep what is packed so far. */
static int pack_cancelled(void *ctx)
{
    kafka_prep *k = ctx;
    if (atomic_load(&k->failed))
        return 1;
    struct stat st;
    if (atomic_load(&k->kind) == DS_CLUSTER_EMBEDDED &&
        fstat(k->spool_fd, &st) == 0 &&
        (uint64_t)st.st_size > DS_EMBEDDED_UPDATE_MAX) {
        atomic_store(&k->too_big, 1);
        return 1;
    }
    return 0;
}

int ds_publish_v1(const ds_publish_opts *o, ds_publish_result *r, ds_err *err)
{
    send_state s = {.partition = -1, .first_offset = -1, .last_offset = -1};
    ds_txn t = {.kc = o->kc,
                .package = o->package,
                .step_timeout_ms = o->timeout_ms,
                .partition = -1};
    snprintf(t.id, sizeof(t.id), "%s", r->transactional_id);
    kafka_prep k = {.t = &t, .broker_id = -1, .spool_fd = -1};
    atomic_init(&k.kind, -1);
    int fd = -1;
    int user_txn = ds_txn_user_set(o->kc, "transaction.timeout.ms", NULL);
    int rc = ds_txn_producer_new(&t, user_txn ? 0 : DS_TXN_FLOOR_MS, 0,
                                 on_delivery, &s, err);
    if (rc < 0)
        goto out;
    if ((fd = spool_open(err)) < 0) {
        rc = fd;
        goto out;
    }
    k.spool_fd = fd;
    if ((rc = prep_start(&k, err)) < 0)
        goto out;

    ds_progress bar;
    ds_progress_init(&bar, "pack", o->progress);
    ds_pack_opts po = {
        .level = o->level,
        .threads = o->threads,
        .progress = pack_progress,
        .progress_ctx = &bar,
        .cancelled = pack_cancelled,
        .cancel_ctx = &k,
    };
    uint64_t t0 = ds_mono_ms();
    rc = ds_pack(o->source, &po, fd, &r->st, err);
    ds_progress_finish(&bar);
    r->pack_secs = (double)(ds_mono_ms() - t0) / 1000.0;
    /* A pack that failed on its own is the error to report (the set-up is
     * cancelled); one the failed set-up cancelled reports the set-up's. */
    int own_failure = rc < 0 && !atomic_load(&k.failed);
    int prc = prep_join(&k, own_failure, own_failure ? NULL : err);
    if (!own_failure && prc < 0)
        rc = prc;
    if (atomic_load(&k.too_big)) {
        struct stat st;
        rc = ds_embedded_v1_too_big(
            fstat(fd, &st) == 0 ? (uint64_t)st.st_size : DS_EMBEDDED_UPDATE_MAX,
            1, err);
    }
    if (rc < 0)
        goto out;
    r->chunks = (uint32_t)((r->st.zsize + o->chunk_size - 1) / o->chunk_size);
    if (atomic_load(&k.kind) == DS_CLUSTER_EMBEDDED) {
        uint64_t b =
            ds_embedded_v1_bytes(r->st.zsize, r->chunks, strlen(o->package));
        if (b > DS_EMBEDDED_UPDATE_MAX) {
            rc = ds_embedded_v1_too_big(b, 0, err);
            goto out;
        }
    }
    uint64_t t_resize = ds_mono_ms();
    int txn_ms = ds_txn_timeout_resize(o->kc, t.rk, k.broker_id, r->st.zsize,
                                       t.timeout_ms, o->timeout_ms);
    if (txn_ms > 0) {
        /* The timeout goes with init_transactions: a new producer. */
        ds_txn_producer_free(&t);
        if ((rc = ds_txn_producer_new(&t, txn_ms, 0, on_delivery, &s, err)) < 0)
            goto out;
        prep_main(&k);
        if ((rc = k.rc) < 0) {
            *err = k.err;
            goto out;
        }
        ds_info("producer-resized",
                "transactional_id=%s transaction_timeout_ms=%d zsize=%" PRIu64
                " took_ms=%" PRIu64,
                DS_LV(t.id), t.timeout_ms, r->st.zsize,
                ds_mono_ms() - t_resize);
    }

    t0 = ds_mono_ms();
    rc = send_update(&t, o, fd, r, &s, err);
    int unsent = rd_kafka_outq_len(t.rk) > 0;
    r->send_secs = (double)(ds_mono_ms() - t0) / 1000.0;
    r->partition = s.partition;
    r->first_offset = s.first_offset;
    r->last_offset = s.last_offset;
    t.partition = s.partition;
    ds_txn_settle(&t, unsent);
out:
    prep_join(&k, 1, NULL);
    r->txn_timeout_ms = t.timeout_ms;
    snprintf(r->hint, sizeof(r->hint), "%s", t.hint);
    ds_txn_producer_free(&t);
    if (fd >= 0)
        close(fd);
    return rc;
}
