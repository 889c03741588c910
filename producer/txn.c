/*
 * txn.c - the transactional producer of pkgpub; see txn.h.
 */
#include "txn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "log.h"
#include "progress.h"

#define INIT_SLICE_MS 200 /* init_transactions in slices, to notice cancel */
#define TXN_SLICE_MS  5000

/* The producer: idempotent, transactional, acks=all (all implied by
 * transactional.id, set anyway for the reader). Settings for ~900 KiB
 * events of already compressed data (v1 chunks, v2 parts):
 * - compression none: zstd output does not shrink further;
 * - batch.num.messages=1: an event fills a batch on its own (batch.size and
 *   the broker's message.max.bytes are about 1 MB), so every queued event
 *   is ready to go at once; linger.ms then only sets when the broker thread
 *   wakes up for a queued event. With a short linger (it was 20 ms), a
 *   queued event older than that, waiting for one of the 5 in-flight
 *   requests to finish, makes that thread spin in poll(0) (librdkafka 2.0):
 *   3.4 s of CPU for 627 MiB instead of 0.2 s, taken from the broker on a
 *   small machine. The commit (and a flush) sends the tail whatever the
 *   linger.
 * - queue.buffering.max.kbytes: about 35 events in memory, bounded RSS
 *   (the queue then drains in well under LINGER_MS); beyond it a produce
 *   gets QUEUE_FULL and waits (ds_txn_produce). */
#define LINGER_MS "1000"

int ds_txn_user_set(const ds_kconf *kc, const char *key, const char *alias)
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
    if (ds_txn_user_set(kc, "linger.ms", "queue.buffering.max.ms"))
        return ds_txn_user_set(kc, "batch.num.messages", NULL)
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

static int topics_new(ds_txn *t, int content, ds_err *err)
{
    t->updates = rd_kafka_topic_new(t->rk, DS_TOPIC_UPDATES, NULL);
    t->status = rd_kafka_topic_new(t->rk, DS_TOPIC_STATUS, NULL);
    if (content)
        t->content = rd_kafka_topic_new(t->rk, DS_TOPIC_CONTENT, NULL);
    if (t->updates == NULL || t->status == NULL ||
        (content && t->content == NULL))
        return ds_err_set(err, -EIO, "kafka",
                          "topic handles for %s, %s%s%s: %s", DS_TOPIC_UPDATES,
                          DS_TOPIC_STATUS, content ? ", " : "",
                          content ? DS_TOPIC_CONTENT : "",
                          rd_kafka_err2str(rd_kafka_last_error()));
    return 0;
}

int ds_txn_producer_new(ds_txn *t, int txn_ms, int content, ds_txn_dr_fn dr,
                        void *opaque, ds_err *err)
{
    char errstr[512], v[32];
    int rc;
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(c, opaque);
    rd_kafka_conf_set_dr_msg_cb(c, dr);
    rd_kafka_conf_set_error_cb(c, ds_kconf_log_error);
    snprintf(v, sizeof(v), "%d", txn_ms);
    if ((rc = ds_kconf_set(c, "transactional.id", t->id, err)) < 0 ||
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
        (rc = ds_kconf_apply(t->kc, c, err)) < 0 ||
        (rc = fit_batching(t->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    size_t vlen = sizeof(v);
    if (rd_kafka_conf_get(c, "transaction.timeout.ms", v, &vlen) ==
        RD_KAFKA_CONF_OK)
        t->timeout_ms = (int)strtol(v, NULL, 10);
    t->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (t->rk == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka", "create producer: %s", errstr);
    }
    return topics_new(t, content, err);
}

void ds_txn_producer_free(ds_txn *t)
{
    rd_kafka_topic_t **h[] = {&t->updates, &t->status, &t->content};
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
        if (*h[i] != NULL)
            rd_kafka_topic_destroy(*h[i]);
        *h[i] = NULL;
    }
    if (t->rk != NULL)
        rd_kafka_destroy(t->rk);
    t->rk = NULL;
}

int ds_txn_step(rd_kafka_t *rk, const char *step, rd_kafka_error_t *e,
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

int ds_txn_init(ds_txn *t, atomic_int *cancel, ds_err *err)
{
    uint64_t deadline = ds_mono_ms() + (uint64_t)t->step_timeout_ms;
    for (;;) {
        int rc =
            ds_txn_step(t->rk, "init transactions",
                        rd_kafka_init_transactions(t->rk, INIT_SLICE_MS), err);
        if (rc != -EAGAIN)
            return rc;
        if (cancel != NULL && atomic_load(cancel))
            return ds_err_set(err, -ECANCELED, "kafka",
                              "init transactions: cancelled");
        if (ds_mono_ms() >= deadline)
            return ds_err_set(
                err, -ETIMEDOUT, "kafka",
                "init transactions: no answer from the cluster within %d ms "
                "(is %s reachable? the transaction coordinator needs "
                "transaction.state.log.min.isr in-sync replicas of its "
                "__transaction_state partition: with replication factor 3 "
                "and min ISR 2, two brokers up)",
                t->step_timeout_ms, t->kc->bootstrap ? t->kc->bootstrap : "-b");
    }
}

int ds_txn_begin(ds_txn *t, ds_err *err)
{
    return ds_txn_step(t->rk, "begin transaction",
                       rd_kafka_begin_transaction(t->rk), err);
}

int ds_txn_produce(ds_txn *t, rd_kafka_topic_t *rkt, int32_t partition,
                   const char *key, void *val, size_t len, int flags,
                   void *opaque, ds_err *err)
{
    int msgflags = val != NULL ? flags : 0;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            t->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, len),
            RD_KAFKA_V_MSGFLAGS(msgflags), RD_KAFKA_V_OPAQUE(opaque),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (val != NULL && (flags & RD_KAFKA_MSG_F_FREE))
                free(val);
            return ds_err_set(err, -EIO, "kafka",
                              "produce to %s partition %d key %s: %s",
                              rd_kafka_topic_name(rkt), (int)partition, key,
                              rd_kafka_err2str(e));
        }
        rd_kafka_poll(t->rk, 50); /* local queue full: let it drain */
    }
}

int ds_txn_produce_failed(ds_txn *t, unsigned failed,
                          rd_kafka_resp_err_t first_err, int rc,
                          const char *what, ds_err *err)
{
    char buf[256];
    if (rd_kafka_fatal_error(t->rk, buf, sizeof(buf)) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EIO, "kafka", "%s: producer failed: %s", what,
                          buf);
    if (failed > 0)
        return ds_err_set(err, -EIO, "kafka",
                          "%s: the transaction failed: %u event(s) not "
                          "delivered, first: %s",
                          what, failed, rd_kafka_err2str(first_err));
    return rc;
}

typedef enum txn_class {
    TX_OK,
    TX_RETRY,    /* retriable: call the same API again */
    TX_CONFLICT, /* another transactional call is under way (a commit) */
    TX_ABORT,    /* the transaction must be aborted */
    TX_FATAL,    /* the producer is unusable */
    TX_FAIL,     /* any other error */
} txn_class;

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
static txn_class txn_end(ds_txn *t, int commit, uint64_t deadline, char *why,
                         size_t n)
{
    const char *what = commit ? "commit" : "abort";
    for (int tries = 0;; tries++) {
        uint64_t now = ds_mono_ms();
        uint64_t left = deadline > now ? deadline - now : 0;
        int slice = left > TXN_SLICE_MS ? TXN_SLICE_MS
                    : left < 100        ? 100
                                        : (int)left;
        txn_class c =
            txn_classify(commit ? rd_kafka_commit_transaction(t->rk, slice)
                                : rd_kafka_abort_transaction(t->rk, slice),
                         why, n);
        if (c != TX_RETRY || ds_mono_ms() >= deadline)
            return c;
        if (tries == 0) {
            char q[600];
            ds_warn("transaction-retry",
                    "transactional_id=%s step=%s wait_s=%" PRIu64 " why=%s",
                    DS_LV(t->id), DS_LV(what), left / 1000,
                    ds_log_quote(q, sizeof(q), why));
        }
    }
}

/* The fate of a transaction whose producer hit a fatal error: fenced by
 * another producer with the same transactional id (whose
 * init_transactions aborted it), or anything else (fence it ourselves). */
static ds_txn_fate fatal_fate(rd_kafka_t *rk)
{
    char buf[256];
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    /* librdkafka 2.0 reports the broker's PRODUCER_FENCED or
     * INVALID_PRODUCER_EPOCH as its own _FENCED: fencing from here would
     * bump the epoch again and abort the new producer's transaction. */
    return e == RD_KAFKA_RESP_ERR__FENCED ||
                   e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
                   e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH
               ? DS_FATE_FENCED
               : DS_FATE_FENCE;
}

void ds_txn_abort(ds_txn *t)
{
    char why[512];
    txn_class c =
        txn_end(t, 0, ds_mono_ms() + DS_TXN_ABORT_WAIT_MS, why, sizeof(why));
    t->fate = c == TX_OK         ? DS_FATE_ABORTED
              : c == TX_FATAL    ? fatal_fate(t->rk)
              : c == TX_CONFLICT ? DS_FATE_FENCE
                                 : DS_FATE_OPEN;
    if (t->fate != DS_FATE_ABORTED)
        snprintf(t->hint, sizeof(t->hint), "abort transaction: %s", why);
}

int ds_txn_commit(ds_txn *t, const unsigned *failed,
                  const rd_kafka_resp_err_t *first_err, ds_err *err)
{
    char why[512];
    txn_class c =
        txn_end(t, 1, ds_mono_ms() + DS_TXN_ABORT_WAIT_MS, why, sizeof(why));
    int rc;
    switch (c) {
    case TX_OK:
        if (*failed > 0)
            return ds_err_set(err, -EIO, "kafka",
                              "%u event(s) not delivered: %s", *failed,
                              rd_kafka_err2str(*first_err));
        return 0;
    case TX_ABORT:
    case TX_FAIL:
        t->abortable = c == TX_ABORT;
        rc = ds_err_set(err, -EIO, "kafka", "commit transaction: %s", why);
        ds_txn_abort(t);
        return rc;
    case TX_FATAL:
        t->fate = fatal_fate(t->rk);
        return ds_err_set(err, -EIO, "kafka", "commit transaction: fatal: %s",
                          why);
    default: /* still under way: librdkafka cannot abort it now */
        t->fate = DS_FATE_FENCE;
        return ds_err_set(err, -ETIMEDOUT, "kafka",
                          "commit transaction: not done after %d s, %d "
                          "event(s) not yet delivered: %s",
                          DS_TXN_ABORT_WAIT_MS / 1000, rd_kafka_outq_len(t->rk),
                          why);
    }
}

/* End t->id's open transaction from a new producer: its
 * init_transactions bumps the epoch (the old producer is fenced) and the
 * coordinator ends what that one left open. */
static int fence(const ds_txn *old, ds_err *err)
{
    ds_txn t = {.kc = old->kc, .step_timeout_ms = old->step_timeout_ms};
    snprintf(t.id, sizeof(t.id), "%s", old->id);
    int rc = ds_txn_producer_new(
        &t,
        ds_txn_user_set(old->kc, "transaction.timeout.ms", NULL)
            ? 0
            : old->timeout_ms,
        0, NULL, NULL, err);
    if (rc == 0)
        rc = ds_txn_init(&t, NULL, err);
    ds_txn_producer_free(&t);
    return rc;
}

/* t->hint for a transaction that did not commit. */
static void fate_hint(ds_txn *t, int unsent, const ds_err *fence_err)
{
    char part[64], last[400];
    const char *id = t->id;
    snprintf(last, sizeof(last), "%.399s", t->hint);
    if (t->partition >= 0)
        snprintf(part, sizeof(part), "partition %d", (int)t->partition);
    else
        snprintf(part, sizeof(part), "the partition of key %.40s", t->package);
    switch (t->fate) {
    case DS_FATE_NONE:
        break;
    case DS_FATE_ABORTED:
        snprintf(t->hint, sizeof(t->hint),
                 "the transaction (transactional id %s) was aborted: nothing "
                 "of this update was published and no consumer is held "
                 "back; run the same command again once the cause is fixed",
                 id);
        break;
    case DS_FATE_FENCED:
        snprintf(t->hint, sizeof(t->hint),
                 "another producer with transactional id %s (a second "
                 "pkgpub for the same package, or the same "
                 "--transactional-id) took over and aborted this "
                 "transaction: nothing of this update was published",
                 id);
        break;
    case DS_FATE_FENCE:
        if (fence_err == NULL) {
            snprintf(t->hint, sizeof(t->hint),
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
            t->hint, sizeof(t->hint),
            "the transaction (transactional id %.128s) is still open on "
            "the broker (%.200s): until it ends, read_committed consumers "
            "(every despooler site) see nothing on %s %s past its first "
            "event. It ends when pkgpub runs again with transactional "
            "id %.128s (that fences and aborts it), or when the transaction "
            "coordinator aborts it, transaction.timeout.ms=%d ms after "
            "it began. Check that the broker %.200s is up and reachable, "
            "then run the same command again",
            id, last, DS_TOPIC_UPDATES, part, id, t->timeout_ms,
            t->kc->bootstrap ? t->kc->bootstrap : "(-b)");
        break;
    }
}

void ds_txn_settle(ds_txn *t, int unsent)
{
    if (t->fate == DS_FATE_NONE)
        return;
    if (t->fate != DS_FATE_FENCE) {
        fate_hint(t, unsent, NULL);
        return;
    }
    /* The old producer goes first: its retries would race the new
     * producer's epoch. */
    ds_txn_producer_free(t);
    ds_err ferr;
    int frc = fence(t, &ferr);
    fate_hint(t, unsent, frc < 0 ? &ferr : NULL);
}

int ds_txn_worth_retry(const ds_txn *t, rd_kafka_resp_err_t first_dr_err)
{
    if (t->fate != DS_FATE_ABORTED)
        return 0;
    if (t->abortable)
        return 1;
    switch (first_dr_err) {
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:    /* librdkafka's abortable */
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT: /* error purged the rest */
    case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
        return 1;
    default:
        return 0;
    }
}
