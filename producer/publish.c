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
 * The same thread finds out whether the cluster is the embedded broker,
 * whose partitions keep only 5 MiB: there an update that would not fit is
 * refused before anything is sent (early, during the pack, once the spool
 * passes the limit).
 *
 * transaction.timeout.ms is a producer setting sent with
 * init_transactions, but its rule (publish.h) needs the compressed size,
 * known only when the pack ends. The producer starts with the rule's
 * floor (60 s, enough up to 60 MiB): the overlap is kept for every update
 * that small. A bigger one gets a second producer, created after the pack
 * with its own timeout (one more connect + init_transactions, tens of ms,
 * next to a send of seconds).
 *
 * Every failure after begin_transaction ends the transaction: an abort
 * (retried while the broker does not answer, up to DS_TXN_ABORT_WAIT_MS),
 * or, when librdkafka cannot abort (a commit under way), fencing from a
 * new producer with the same transactional id; when neither works, the
 * error says the transaction is still open, what holds it, and what ends
 * it.
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

/* Run a transactional step; on a retriable error try again. */
static int txn_step(rd_kafka_t *rk, const char *step, rd_kafka_error_t *e,
                    ds_err *err)
{
    if (e == NULL)
        return 0;
    int rc;
    if (rd_kafka_error_code(e) ==
        RD_KAFKA_RESP_ERR_INVALID_TRANSACTION_TIMEOUT) {
        char v[32] = "?";
        size_t vlen = sizeof(v);
        rd_kafka_conf_get(rd_kafka_conf(rk), "transaction.timeout.ms", v,
                          &vlen);
        rc = ds_err_set(err, -EINVAL, "kafka",
                        "%s: transaction.timeout.ms=%s is more than the "
                        "broker's transaction.max.timeout.ms allows (%s): "
                        "lower -X transaction.timeout.ms, or raise "
                        "transaction.max.timeout.ms on the brokers",
                        step, v, rd_kafka_error_string(e));
    } else if (rd_kafka_error_is_fatal(e))
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
    atomic_int kind;             /* DS_CLUSTER_*, -1 while not known */
    int32_t broker_id;           /* a broker of the cluster, or -1 */
    int spool_fd;                /* the pack's output, for its size */
    atomic_int too_big;          /* the pack was stopped: over the limit */
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
    atomic_store(&k->kind, ds_kconf_cluster_kind(k->rk, PREP_SLICE_MS));
    return NULL;
}

static int prep_topics(kafka_prep *k, ds_err *err)
{
    k->topics[0] = rd_kafka_topic_new(k->rk, DS_TOPIC_UPDATES, NULL);
    k->topics[1] = rd_kafka_topic_new(k->rk, DS_TOPIC_STATUS, NULL);
    if (k->topics[0] == NULL || k->topics[1] == NULL)
        return ds_err_set(err, -EIO, "kafka", "topic handles for %s, %s: %s",
                          DS_TOPIC_UPDATES, DS_TOPIC_STATUS,
                          rd_kafka_err2str(rd_kafka_last_error()));
    return 0;
}

static int prep_start(kafka_prep *k, ds_err *err)
{
    int rc = prep_topics(k, err);
    if (rc < 0)
        return rc;
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
    k->topics[0] = k->topics[1] = NULL;
}

/* --- the brokers' limits ------------------------------------------------- */

int ds_txn_timeout_for(uint64_t zsize)
{
    uint64_t ms = DS_TXN_MARGIN_MS + zsize * 1000 / DS_TXN_RATE;
    if (ms < DS_TXN_FLOOR_MS)
        ms = DS_TXN_FLOOR_MS;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Kafka's default transaction.max.timeout.ms (15 min). */
#define BROKER_TXN_MAX_DEFAULT_MS 900000

/* The broker's transaction.max.timeout.ms (DescribeConfigs of broker
 * `broker`), or -1 when it cannot be read (no answer, no
 * DescribeConfigs permission). */
static long broker_txn_max_ms(rd_kafka_t *rk, int32_t broker, int timeout_ms)
{
    char name[16], errstr[256];
    snprintf(name, sizeof(name), "%d", (int)broker);
    rd_kafka_ConfigResource_t *res =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_BROKER, name);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, errstr,
                                              sizeof(errstr));
    rd_kafka_DescribeConfigs(rk, &res, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    const rd_kafka_DescribeConfigs_result_t *dr =
        ev != NULL && rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR
            ? rd_kafka_event_DescribeConfigs_result(ev)
            : NULL;
    long max = -1;
    size_t n = 0;
    const rd_kafka_ConfigResource_t **rs =
        dr ? rd_kafka_DescribeConfigs_result_resources(dr, &n) : NULL;
    if (n == 1 && rd_kafka_ConfigResource_error(rs[0]) == 0) {
        size_t m = 0;
        const rd_kafka_ConfigEntry_t **ce =
            rd_kafka_ConfigResource_configs(rs[0], &m);
        for (size_t i = 0; i < m; i++) {
            const char *v = rd_kafka_ConfigEntry_value(ce[i]);
            if (v != NULL && strcmp(rd_kafka_ConfigEntry_name(ce[i]),
                                    "transaction.max.timeout.ms") == 0)
                max = strtol(v, NULL, 10);
        }
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
    return max;
}

/* What an update takes in a partition of the embedded broker: the
 * compressed bytes plus, per chunk event, at most EVENT_OVERHEAD (event
 * header with signature about 330, record batch header 61, record
 * header about 20) and the key. */
#define EVENT_OVERHEAD 512

static uint64_t embedded_bytes(uint64_t zsize, uint32_t chunks, size_t keylen)
{
    return zsize + (uint64_t)chunks * (EVENT_OVERHEAD + keylen);
}

static int embedded_too_big(uint64_t bytes, int at_least, ds_err *err)
{
    return ds_err_set(
        err, -EFBIG, "too-large",
        "the embedded broker (despooler dev-broker) keeps only %u MiB per "
        "partition and silently drops the oldest events beyond that: this "
        "update would take %s%" PRIu64 " bytes there, over the %u (%u MiB) "
        "one update may take (the rest is left for other packages' events). "
        "Nothing was sent. Publish it to Apache Kafka: scripts/kafka start, "
        "then -b @/tmp/despool-kafka/bootstrap",
        DS_EMBEDDED_PARTITION_BYTES >> 20, at_least ? "at least " : "", bytes,
        DS_EMBEDDED_UPDATE_MAX, DS_EMBEDDED_UPDATE_MAX >> 20);
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

/* How a transaction that did not commit ended. */
typedef enum txn_fate {
    FATE_NONE,    /* committed, or never begun */
    FATE_ABORTED, /* aborted by this producer */
    FATE_FENCE,   /* cannot be aborted here: fence from a new producer */
    FATE_FENCED,  /* another producer with the same id took over */
    FATE_OPEN,    /* still open on the broker */
} txn_fate;

typedef enum txn_class {
    TX_OK,
    TX_RETRY,    /* retriable: call the same API again */
    TX_CONFLICT, /* another transactional call is under way (a commit) */
    TX_ABORT,    /* the transaction must be aborted */
    TX_FATAL,    /* the producer is unusable */
    TX_FAIL,     /* any other error */
} txn_class;

#define TXN_SLICE_MS 5000

/* Sort e as librdkafka's examples/transactions.c does; why gets its name
 * and text. Destroys e. */
static txn_class txn_classify(rd_kafka_error_t *e, char *why, size_t n)
{
    if (e == NULL)
        return TX_OK;
    snprintf(why, n, "%s: %s", rd_kafka_error_name(e),
             rd_kafka_error_string(e));
    txn_class c = rd_kafka_error_is_fatal(e)             ? TX_FATAL
                  : rd_kafka_error_txn_requires_abort(e) ? TX_ABORT
                  : rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__CONFLICT
                      ? TX_CONFLICT
                  : rd_kafka_error_is_retriable(e) ? TX_RETRY
                                                   : TX_FAIL;
    rd_kafka_error_destroy(e);
    return c;
}

/* Commit (commit = 1) or abort, resuming the call while it is retriable
 * (the broker does not answer, the flush is not done) until deadline.
 * Returns TX_RETRY when it still was at the deadline. */
static txn_class txn_end(rd_kafka_t *rk, int commit, const char *txn_id,
                         uint64_t deadline, char *why, size_t n)
{
    const char *what = commit ? "commit" : "abort";
    for (int tries = 0;; tries++) {
        uint64_t now = ds_mono_ms();
        uint64_t left = deadline > now ? deadline - now : 0;
        int slice = left > TXN_SLICE_MS ? TXN_SLICE_MS
                    : left < 100        ? 100
                                        : (int)left;
        txn_class c =
            txn_classify(commit ? rd_kafka_commit_transaction(rk, slice)
                                : rd_kafka_abort_transaction(rk, slice),
                         why, n);
        if (c != TX_RETRY || ds_mono_ms() >= deadline)
            return c;
        if (tries == 0) {
            char q[600];
            ds_warn("transaction-retry",
                    "transactional_id=%s step=%s wait_s=%" PRIu64 " why=%s",
                    txn_id, what, left / 1000, ds_log_quote(q, sizeof(q), why));
        }
    }
}

/* The fate of a transaction whose producer hit a fatal error: fenced by
 * another producer with the same transactional id (whose
 * init_transactions aborted it), or anything else (fence it ourselves). */
static txn_fate fatal_fate(rd_kafka_t *rk)
{
    char buf[256];
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    return e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
                   e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH
               ? FATE_FENCED
               : FATE_FENCE;
}

/* Produce failed: name the transaction's first failure rather than
 * librdkafka's "not allowed in this state" that follows it. */
static int produce_failed(rd_kafka_t *rk, const send_state *s, int rc,
                          const char *what, ds_err *err)
{
    char buf[256];
    if (rd_kafka_fatal_error(rk, buf, sizeof(buf)) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EIO, "kafka", "%s: producer failed: %s", what,
                          buf);
    if (s->failed > 0)
        return ds_err_set(err, -EIO, "kafka",
                          "%s: the transaction failed: %u event(s) not "
                          "delivered, first: %s",
                          what, s->failed, rd_kafka_err2str(s->first_err));
    return rc;
}

static int send_update(kafka_prep *k, const ds_publish_opts *o, int fd,
                       ds_publish_result *r, send_state *s, txn_fate *fate,
                       ds_err *err)
{
    rd_kafka_t *rk = k->rk;
    int rc;
    char why[512], what[192];
    txn_class c;
    *fate = FATE_NONE;
    ds_progress bar;
    ds_progress_init(&bar, "send", o->progress);
    /* begin_transaction is local: when it fails nothing is open. */
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
                              (uintptr_t)i + 1, err)) < 0) {
            snprintf(what, sizeof(what), "send chunk %u of %u to %s",
                     (unsigned)i, (unsigned)r->chunks, DS_TOPIC_UPDATES);
            rc = produce_failed(rk, s, rc, what, err);
            goto abort;
        }
        s->sent++;
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
    if ((rc = ds_status_encode(&st, &sval, &slen, err)) < 0)
        goto abort;
    if ((rc = produce_one(rk, k->topics[1], skey, sval, slen, 0, err)) < 0) {
        snprintf(what, sizeof(what), "send %s to %s", skey, DS_TOPIC_STATUS);
        rc = produce_failed(rk, s, rc, what, err);
        goto abort;
    }
    /* commit_transaction flushes and waits for every delivery report;
     * resumed while retriable, for at most DS_TXN_ABORT_WAIT_MS. */
    c = txn_end(rk, 1, r->transactional_id, ds_mono_ms() + DS_TXN_ABORT_WAIT_MS,
                why, sizeof(why));
    ds_progress_finish(&bar);
    switch (c) {
    case TX_OK:
        rc = 0;
        if (s->failed > 0)
            rc = ds_err_set(err, -EIO, "kafka", "%u event(s) not delivered: %s",
                            s->failed, rd_kafka_err2str(s->first_err));
        goto out;
    case TX_ABORT:
    case TX_FAIL:
        rc = ds_err_set(err, -EIO, "kafka", "commit transaction: %s", why);
        goto abort;
    case TX_FATAL:
        rc = ds_err_set(err, -EIO, "kafka", "commit transaction: fatal: %s",
                        why);
        *fate = fatal_fate(rk);
        goto out;
    default: /* still under way: librdkafka cannot abort it now */
        rc =
            ds_err_set(err, -ETIMEDOUT, "kafka",
                       "commit transaction: not done after %d s, %d "
                       "event(s) not yet delivered: %s",
                       DS_TXN_ABORT_WAIT_MS / 1000, rd_kafka_outq_len(rk), why);
        *fate = FATE_FENCE;
        goto out;
    }
abort:
    ds_progress_finish(&bar);
    c = txn_end(rk, 0, r->transactional_id, ds_mono_ms() + DS_TXN_ABORT_WAIT_MS,
                why, sizeof(why));
    *fate = c == TX_OK         ? FATE_ABORTED
            : c == TX_FATAL    ? fatal_fate(rk)
            : c == TX_CONFLICT ? FATE_FENCE
                               : FATE_OPEN;
    if (*fate != FATE_ABORTED)
        snprintf(r->hint, sizeof(r->hint), "abort transaction: %s", why);
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

/* txn_ms: our transaction.timeout.ms, or 0 to leave it to the user's
 * settings. *txn_ms_out: the value the producer ends up with. */
static int producer_new(const ds_publish_opts *o, const char *txn_id,
                        int txn_ms, send_state *s, rd_kafka_t **rkp,
                        int *txn_ms_out, ds_err *err)
{
    char errstr[512], v[32];
    int rc;
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(c, s);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_error_cb(c, ds_kconf_log_error);
    snprintf(v, sizeof(v), "%d", txn_ms);
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
        /* librdkafka raises socket.timeout.ms with the transaction
         * timeout: keep its 60 s default, so that a broker that stopped
         * answering is noticed as soon as before. */
        (txn_ms > 0 &&
         ((rc = ds_kconf_set(c, "transaction.timeout.ms", v, err)) < 0 ||
          (rc = ds_kconf_set(c, "socket.timeout.ms", "60000", err)) < 0)) ||
        (rc = ds_kconf_apply(o->kc, c, err)) < 0 ||
        (rc = fit_batching(o->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    size_t vlen = sizeof(v);
    if (rd_kafka_conf_get(c, "transaction.timeout.ms", v, &vlen) ==
        RD_KAFKA_CONF_OK)
        *txn_ms_out = (int)strtol(v, NULL, 10);
    *rkp = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (*rkp == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka", "create producer: %s", errstr);
    }
    return 0;
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

/* The transaction timeout for the packed update (publish.h): the one the
 * producer has, or a bigger one (clamped to the broker's maximum) for
 * which the producer must be created again. Returns the new value, or 0
 * when the producer can stay. */
static int txn_timeout_resize(const ds_publish_opts *o, kafka_prep *k,
                              const ds_publish_result *r)
{
    int need = ds_txn_timeout_for(r->st.zsize);
    if (user_set(o->kc, "transaction.timeout.ms", NULL)) {
        if (r->txn_timeout_ms < need)
            ds_warn("transaction-timeout-short",
                    "transaction_timeout_ms=%d needed_ms=%d zsize=%" PRIu64
                    " detail=\"set by -X/-F; below what pkgpub would choose "
                    "(30 s + size at 2 MiB/s): a slower upload is aborted by "
                    "the transaction coordinator\"",
                    r->txn_timeout_ms, need, r->st.zsize);
        return 0;
    }
    if (need <= r->txn_timeout_ms)
        return 0;
    long max = k->broker_id >= 0
                   ? broker_txn_max_ms(k->rk, k->broker_id, o->timeout_ms)
                   : -1;
    int assumed = max <= 0;
    if (assumed)
        max = BROKER_TXN_MAX_DEFAULT_MS;
    if (need > max) {
        ds_warn("transaction-timeout-clamped",
                "needed_ms=%d transaction_max_timeout_ms=%ld%s zsize=%" PRIu64
                " detail=\"the upload needs more than the broker's "
                "transaction.max.timeout.ms allows: if it takes longer than "
                "%ld ms the transaction coordinator aborts it and nothing is "
                "published; raise transaction.max.timeout.ms on the "
                "brokers\"",
                need, max, assumed ? " (assumed: Kafka's default)" : "",
                r->st.zsize, max);
        need = (int)max;
    }
    return need > r->txn_timeout_ms ? need : 0;
}

/* End transactional id txn_id's open transaction from a new producer: its
 * init_transactions bumps the epoch (the old producer is fenced) and the
 * coordinator ends what that one left open. */
static int fence(const ds_publish_opts *o, const char *txn_id, int txn_ms,
                 ds_err *err)
{
    send_state s = {.partition = -1, .first_offset = -1, .last_offset = -1};
    kafka_prep k = {.bootstrap = o->kc->bootstrap, .timeout_ms = o->timeout_ms};
    int got = 0;
    int rc = producer_new(
        o, txn_id, user_set(o->kc, "transaction.timeout.ms", NULL) ? 0 : txn_ms,
        &s, &k.rk, &got, err);
    if (rc < 0)
        return rc;
    rc = prep_init_transactions(&k);
    if (rc < 0)
        *err = k.err;
    rd_kafka_destroy(k.rk);
    return rc;
}

/* r->hint for a transaction that did not commit. */
static void fate_hint(const ds_publish_opts *o, ds_publish_result *r,
                      const send_state *s, txn_fate fate, int unsent,
                      const ds_err *fence_err)
{
    char part[64], last[400];
    const char *id = r->transactional_id;
    snprintf(last, sizeof(last), "%.399s", r->hint);
    if (s->partition >= 0)
        snprintf(part, sizeof(part), "partition %d", (int)s->partition);
    else
        snprintf(part, sizeof(part), "the partition of key %.40s", o->package);
    switch (fate) {
    case FATE_ABORTED:
        snprintf(r->hint, sizeof(r->hint),
                 "the transaction (transactional id %s) was aborted: nothing "
                 "of this update was published and no consumer is held "
                 "back; run the same command again once the cause is fixed",
                 id);
        break;
    case FATE_FENCED:
        snprintf(r->hint, sizeof(r->hint),
                 "another producer with transactional id %s (a second "
                 "pkgpub for the same package on this host, or the same "
                 "--transactional-id) took over and aborted this "
                 "transaction: nothing of this update was published",
                 id);
        break;
    case FATE_FENCE:
        if (fence_err == NULL) {
            snprintf(r->hint, sizeof(r->hint),
                     "librdkafka could not abort the transaction, so pkgpub "
                     "ended it by fencing transactional id %s (a new "
                     "producer's init_transactions): %s; run the same "
                     "command again%s",
                     id,
                     unsent ? "it was aborted (events were still unsent), "
                              "nothing was published"
                            : "the coordinator aborted it, or committed it "
                              "if the commit had reached it",
                     unsent ? ""
                            : " if `despooler status` does not show "
                              "the version published");
            break;
        }
        snprintf(last, sizeof(last), "fencing failed: %.300s", fence_err->msg);
        /* fall through */
    default:
        snprintf(
            r->hint, sizeof(r->hint),
            "the transaction (transactional id %.128s) is still open on "
            "the broker (%.200s): until it ends, read_committed consumers "
            "(every despooler site) see nothing on %s %s past its first "
            "event. It ends when pkgpub runs again with transactional "
            "id %.128s (that fences and aborts it), or when the transaction "
            "coordinator aborts it, transaction.timeout.ms=%d ms after "
            "it began. Check that the broker %.200s is up and reachable, "
            "then run the same command again",
            id, last, DS_TOPIC_UPDATES, part, id, r->txn_timeout_ms,
            o->kc->bootstrap ? o->kc->bootstrap : "(-b)");
        break;
    }
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
    kafka_prep k = {.bootstrap = o->kc->bootstrap,
                    .timeout_ms = o->timeout_ms,
                    .broker_id = -1,
                    .spool_fd = -1};
    atomic_init(&k.kind, -1);
    int fd = -1;
    int user_txn = user_set(o->kc, "transaction.timeout.ms", NULL);
    int rc =
        producer_new(o, r->transactional_id, user_txn ? 0 : DS_TXN_FLOOR_MS, &s,
                     &k.rk, &r->txn_timeout_ms, err);
    if (rc < 0)
        return rc;
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
        rc = embedded_too_big(fstat(fd, &st) == 0 ? (uint64_t)st.st_size
                                                  : DS_EMBEDDED_UPDATE_MAX,
                              1, err);
    }
    if (rc < 0)
        goto out;
    r->chunks = (uint32_t)((r->st.zsize + o->chunk_size - 1) / o->chunk_size);
    if (atomic_load(&k.kind) == DS_CLUSTER_EMBEDDED) {
        uint64_t b = embedded_bytes(r->st.zsize, r->chunks, strlen(o->package));
        if (b > DS_EMBEDDED_UPDATE_MAX) {
            rc = embedded_too_big(b, 0, err);
            goto out;
        }
    }
    uint64_t t_resize = ds_mono_ms();
    int txn_ms = txn_timeout_resize(o, &k, r);
    if (txn_ms > 0) {
        /* The timeout goes with init_transactions: a new producer. */
        prep_free(&k);
        rd_kafka_destroy(k.rk);
        k.rk = NULL;
        if ((rc = producer_new(o, r->transactional_id, txn_ms, &s, &k.rk,
                               &r->txn_timeout_ms, err)) < 0 ||
            (rc = prep_topics(&k, err)) < 0)
            goto out;
        prep_main(&k);
        if ((rc = k.rc) < 0) {
            *err = k.err;
            goto out;
        }
        ds_info("producer-resized",
                "transactional_id=%s transaction_timeout_ms=%d zsize=%" PRIu64
                " took_ms=%" PRIu64,
                r->transactional_id, r->txn_timeout_ms, r->st.zsize,
                ds_mono_ms() - t_resize);
    }

    t0 = ds_mono_ms();
    txn_fate fate = FATE_NONE;
    rc = send_update(&k, o, fd, r, &s, &fate, err);
    int unsent = rd_kafka_outq_len(k.rk) > 0;
    r->send_secs = (double)(ds_mono_ms() - t0) / 1000.0;
    r->partition = s.partition;
    r->first_offset = s.first_offset;
    r->last_offset = s.last_offset;
    if (fate == FATE_FENCE) {
        /* The old producer goes first: its retries would race the new
         * producer's epoch. */
        prep_free(&k);
        rd_kafka_destroy(k.rk);
        k.rk = NULL;
        ds_err ferr;
        int frc = fence(o, r->transactional_id, r->txn_timeout_ms, &ferr);
        fate_hint(o, r, &s, fate, unsent, frc < 0 ? &ferr : NULL);
    } else if (fate != FATE_NONE) {
        fate_hint(o, r, &s, fate, unsent, NULL);
    }
out:
    prep_join(&k, 1, NULL);
    prep_free(&k);
    if (k.rk != NULL)
        rd_kafka_destroy(k.rk);
    if (fd >= 0)
        close(fd);
    return rc;
}
