/*
 * publish.c - pack, spool, chunk and send one update in one transaction;
 * see publish.h. Errors from the transactional API are sorted as
 * librdkafka's examples/transactions.c does: retriable (try the same step
 * again), requires-abort (abort, report), fatal (report).
 *
 * The chunk headers carry the final size and sha256, so nothing can be
 * sent before the pack ends; what can be done meanwhile is done in a
 * second thread (kafka_prep): init_transactions (which also fences an
 * older run with the same transactional id) and the metadata of both
 * topics. Without that metadata librdkafka keeps the first message of a
 * topic it does not know yet until its next topic scan (up to a second),
 * once for pkg.updates and once more for pkg.status just before commit.
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

typedef struct send_state {
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

/* Run a transactional step; on a retriable error try again. */
static int txn_step(rd_kafka_t *rk, const char *step, rd_kafka_error_t *e,
                    ds_err *err)
{
    (void)rk;
    if (e == NULL)
        return 0;
    int rc;
    if (rd_kafka_error_is_fatal(e))
        rc = ds_err_set(err, -EIO, "kafka", "%s: fatal: %s", step,
                        rd_kafka_error_string(e));
    else if (rd_kafka_error_txn_requires_abort(e))
        rc = ds_err_set(err, -ECANCELED, "kafka", "%s: %s (aborted)", step,
                        rd_kafka_error_string(e));
    else if (rd_kafka_error_is_retriable(e))
        rc = -EAGAIN;
    else
        rc = ds_err_set(err, -EIO, "kafka", "%s: %s", step,
                        rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return rc;
}

static int produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *key,
                       uint8_t *val, size_t len, uintptr_t idx, ds_err *err)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(val, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_OPAQUE((void *)idx), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            free(val);
            return ds_err_set(err, -EIO, "kafka", "produce to %s key %s: %s",
                              rd_kafka_topic_name(rkt), key,
                              rd_kafka_err2str(e));
        }
        rd_kafka_poll(rk, 50); /* local queue full: let it drain */
    }
}

/* --- Kafka set-up, concurrent with the pack ------------------------------ */

#define PREP_SLICE_MS 200 /* blocking calls in slices, to notice a cancel */

typedef struct kafka_prep {
    rd_kafka_t *rk;
    const char *bootstrap; /* for the error message */
    int timeout_ms;
    rd_kafka_topic_t *topics[2]; /* pkg.updates, pkg.status */
    atomic_int cancel;           /* set by the main thread: give up */
    atomic_int failed;           /* set by prep: init failed, stop the pack */
    int rc;
    ds_err err;
    pthread_t thread;
    int started;
} kafka_prep;

/* init_transactions is resumable after a retriable timeout: call it in
 * slices until it succeeds, fails for good, is cancelled, or timeout_ms
 * have passed. */
static int prep_init_transactions(kafka_prep *k)
{
    uint64_t deadline = ds_mono_ms() + (uint64_t)k->timeout_ms;
    for (;;) {
        int rc =
            txn_step(k->rk, "init transactions",
                     rd_kafka_init_transactions(k->rk, PREP_SLICE_MS), &k->err);
        if (rc != -EAGAIN)
            return rc;
        if (atomic_load(&k->cancel))
            return ds_err_set(&k->err, -ECANCELED, "kafka",
                              "init transactions: cancelled");
        if (ds_mono_ms() >= deadline)
            return ds_err_set(
                &k->err, -ETIMEDOUT, "kafka",
                "init transactions: no answer from the broker within %d ms "
                "(is %s reachable? is transaction.state.log.min.isr "
                "satisfiable?)",
                k->timeout_ms, k->bootstrap ? k->bootstrap : "-b");
    }
}

static void *prep_main(void *arg)
{
    kafka_prep *k = arg;
    k->rc = prep_init_transactions(k);
    if (k->rc < 0) {
        atomic_store(&k->failed, 1);
        return NULL;
    }
    /* Warm-up only: a failure here just leaves the lookup to librdkafka
     * when the first message is produced. */
    for (int i = 0; i < 2 && !atomic_load(&k->cancel); i++) {
        const struct rd_kafka_metadata *md = NULL;
        uint64_t deadline = ds_mono_ms() + (uint64_t)k->timeout_ms;
        while (!atomic_load(&k->cancel) && ds_mono_ms() < deadline) {
            rd_kafka_resp_err_t e =
                rd_kafka_metadata(k->rk, 0, k->topics[i], &md, PREP_SLICE_MS);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                rd_kafka_metadata_destroy(md);
                break;
            }
            if (e != RD_KAFKA_RESP_ERR__TIMED_OUT)
                break;
        }
    }
    return NULL;
}

static int prep_start(kafka_prep *k, ds_err *err)
{
    k->topics[0] = rd_kafka_topic_new(k->rk, DS_TOPIC_UPDATES, NULL);
    k->topics[1] = rd_kafka_topic_new(k->rk, DS_TOPIC_STATUS, NULL);
    if (k->topics[0] == NULL || k->topics[1] == NULL)
        return ds_err_set(err, -EIO, "kafka", "topic handles for %s, %s: %s",
                          DS_TOPIC_UPDATES, DS_TOPIC_STATUS,
                          rd_kafka_err2str(rd_kafka_last_error()));
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

static void prep_free(kafka_prep *k)
{
    for (int i = 0; i < 2; i++)
        if (k->topics[i] != NULL)
            rd_kafka_topic_destroy(k->topics[i]);
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

static int send_update(kafka_prep *k, const ds_publish_opts *o, int fd,
                       ds_publish_result *r, send_state *s, ds_err *err)
{
    rd_kafka_t *rk = k->rk;
    int rc;
    ds_progress bar;
    ds_progress_init(&bar, "send", o->progress);
    if ((rc = txn_step(rk, "begin transaction", rd_kafka_begin_transaction(rk),
                       err)) < 0)
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
        if ((rc = produce_one(rk, k->topics[0], o->package, val, vlen,
                              (uintptr_t)i + 1, err)) < 0)
            goto abort;
        rd_kafka_poll(rk, 0);
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
    if ((rc = ds_status_encode(&st, &sval, &slen, err)) < 0 ||
        (rc = produce_one(rk, k->topics[1], skey, sval, slen, 0, err)) < 0)
        goto abort;
    /* commit_transaction flushes and waits for every delivery report. */
    /* Retriable commit errors are retried, a bounded number of times. */
    for (int tries = 0; tries < 5; tries++) {
        rc = txn_step(rk, "commit transaction",
                      rd_kafka_commit_transaction(rk, o->timeout_ms), err);
        if (rc != -EAGAIN)
            break;
    }
    if (rc == -EAGAIN)
        rc = ds_err_set(err, -ETIMEDOUT, "kafka",
                        "commit transaction: still retriable after 5 tries");
    ds_progress_finish(&bar);
    if (rc == -ECANCELED)
        goto abort;
    if (rc == 0 && s->failed > 0)
        rc = ds_err_set(err, -EIO, "kafka", "%u event(s) not delivered: %s",
                        s->failed, rd_kafka_err2str(s->first_err));
    goto out;
abort:
    ds_progress_finish(&bar);
    {
        rd_kafka_error_t *e = rd_kafka_abort_transaction(rk, o->timeout_ms);
        if (e != NULL)
            rd_kafka_error_destroy(e);
    }
out:
    return rc;
}

/* The producer: idempotent, transactional, acks=all (all implied by
 * transactional.id, set anyway for the reader). Settings for 900 KiB
 * events of already compressed data:
 * - compression none: zstd output does not shrink further;
 * - batch.num.messages=1: a chunk fills a batch on its own (batch.size and
 *   the broker's message.max.bytes are about 1 MB), so every queued chunk
 *   is ready to go at once; linger.ms then only sets when the broker thread
 *   wakes up for a queued chunk. With a short linger (it was 20 ms), a
 *   queued chunk older than that, waiting for one of the 5 in-flight
 *   requests to finish, makes that thread spin in poll(0) (librdkafka 2.0):
 *   3.4 s of CPU for 627 MiB instead of 0.2 s, taken from the broker on a
 *   small machine. The commit flushes the tail whatever the linger.
 * - queue.buffering.max.kbytes: about 35 chunks in memory, bounded RSS
 *   (the queue then drains in well under LINGER_MS). */
#define LINGER_MS "1000"

static int user_set(const ds_kconf *kc, const char *key, const char *alias)
{
    for (size_t i = 0; i < kc->n; i++)
        if (strcmp(kc->kv[i].key, key) == 0 ||
            (alias != NULL && strcmp(kc->kv[i].key, alias) == 0))
            return 1;
    return 0;
}

/* Our batch.num.messages=1 and long linger.ms are one setting. A user's
 * own linger.ms gets librdkafka's default batching back (unless they set
 * batch.num.messages too), so that their linger means what it says: each
 * event waits for it (t12 throttles pkgpub that way). Our linger must stay
 * below message.timeout.ms, which a transactional producer caps at
 * transaction.timeout.ms: under a shorter transaction timeout it shrinks
 * to half of that. */
static int fit_batching(const ds_kconf *kc, rd_kafka_conf_t *c, ds_err *err)
{
    if (user_set(kc, "linger.ms", "queue.buffering.max.ms"))
        return user_set(kc, "batch.num.messages", NULL)
                   ? 0
                   : ds_kconf_set(c, "batch.num.messages", "10000", err);
    char v[32];
    size_t vlen = sizeof(v);
    if (rd_kafka_conf_get(c, "transaction.timeout.ms", v, &vlen) !=
        RD_KAFKA_CONF_OK)
        return 0;
    long txn_ms = strtol(v, NULL, 10);
    if (txn_ms > atol(LINGER_MS))
        return 0;
    snprintf(v, sizeof(v), "%ld", txn_ms / 2);
    return ds_kconf_set(c, "linger.ms", v, err);
}

static int producer_new(const ds_publish_opts *o, const char *txn_id,
                        send_state *s, rd_kafka_t **rkp, ds_err *err)
{
    char errstr[512];
    int rc;
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(c, s);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_error_cb(c, ds_kconf_log_error);
    if ((rc = ds_kconf_set(c, "transactional.id", txn_id, err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.idempotence", "true", err)) < 0 ||
        (rc = ds_kconf_set(c, "acks", "all", err)) < 0 ||
        /* The partition a Java client would choose for the same key. */
        (rc = ds_kconf_set(c, "partitioner", "murmur2_random", err)) < 0 ||
        (rc = ds_kconf_set(c, "compression.codec", "none", err)) < 0 ||
        (rc = ds_kconf_set(c, "batch.num.messages", "1", err)) < 0 ||
        (rc = ds_kconf_set(c, "linger.ms", LINGER_MS, err)) < 0 ||
        (rc = ds_kconf_set(c, "queue.buffering.max.kbytes", "32768", err)) <
            0 ||
        (rc = ds_kconf_apply(o->kc, c, err)) < 0 ||
        (rc = fit_batching(o->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    *rkp = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (*rkp == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka", "create producer: %s", errstr);
    }
    return 0;
}

/* Pack stops early when the Kafka set-up failed: nothing could be sent. */
static int pack_cancelled(void *ctx)
{
    kafka_prep *k = ctx;
    return atomic_load(&k->failed);
}

int ds_publish(const ds_publish_opts *o, ds_publish_result *r, ds_err *err)
{
    char host[64] = "host";
    memset(r, 0, sizeof(*r));
    if (!ds_package_valid(o->package, strlen(o->package)))
        return ds_err_set(err, -EINVAL, "usage",
                          "package id \"%s\": expected [A-Za-z0-9]"
                          "[A-Za-z0-9._-]{0,127}",
                          o->package);
    if (getrandom(r->update_id, sizeof(r->update_id), 0) !=
        (ssize_t)sizeof(r->update_id))
        return ds_err_sys(err, "io-error", "getrandom for update id");
    if (o->transactional_id != NULL) {
        snprintf(r->transactional_id, sizeof(r->transactional_id), "%s",
                 o->transactional_id);
    } else {
        gethostname(host, sizeof(host) - 1);
        /* Same host + package = same id: a re-run fences a crashed run's
         * open transaction instead of waiting for it to time out. */
        snprintf(r->transactional_id, sizeof(r->transactional_id),
                 "pkgpub-%s-%s", host, o->package);
    }

    send_state s = {.partition = -1, .first_offset = -1, .last_offset = -1};
    kafka_prep k = {.bootstrap = o->kc->bootstrap, .timeout_ms = o->timeout_ms};
    int fd = -1;
    int rc = producer_new(o, r->transactional_id, &s, &k.rk, err);
    if (rc < 0)
        return rc;
    if ((rc = prep_start(&k, err)) < 0)
        goto out;
    if ((fd = spool_open(err)) < 0) {
        rc = fd;
        goto out;
    }

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
    if (rc < 0)
        goto out;
    r->chunks = (uint32_t)((r->st.zsize + o->chunk_size - 1) / o->chunk_size);

    t0 = ds_mono_ms();
    rc = send_update(&k, o, fd, r, &s, err);
    r->send_secs = (double)(ds_mono_ms() - t0) / 1000.0;
    r->partition = s.partition;
    r->first_offset = s.first_offset;
    r->last_offset = s.last_offset;
out:
    prep_join(&k, 1, NULL);
    prep_free(&k);
    rd_kafka_destroy(k.rk);
    if (fd >= 0)
        close(fd);
    return rc;
}
