/*
 * txn.h - the transactional producer both publications (schema v1 chunks,
 * schema v2 parts and manifest) and retire share: its settings, the
 * transactional API's steps with librdkafka's error classes sorted as
 * examples/transactions.c does (retriable: try the same step again;
 * requires-abort: abort, report; fatal: report), and what becomes of a
 * transaction that does not commit.
 *
 * Every failure after begin_transaction ends the transaction: an abort
 * (retried while the broker does not answer, up to DS_TXN_ABORT_WAIT_MS),
 * or, when librdkafka cannot abort (a commit under way), fencing from a
 * new producer with the same transactional id; when neither works, the
 * hint says the transaction is still open, what holds it, and what ends
 * it.
 */
#ifndef DS_TXN_H
#define DS_TXN_H

#include <stdatomic.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "err.h"
#include "kconf.h"

/* How long pkgpub keeps retrying the abort of a failed transaction while
 * the broker does not answer (it may be restarting). */
#define DS_TXN_ABORT_WAIT_MS 120000

/* How a transaction that did not commit ended. */
typedef enum ds_txn_fate {
    DS_FATE_NONE,    /* committed, or never begun */
    DS_FATE_ABORTED, /* aborted by this producer */
    DS_FATE_FENCE,   /* cannot be aborted here: fence from a new producer */
    DS_FATE_FENCED,  /* another producer with the same id took over */
    DS_FATE_OPEN,    /* still open on the broker */
} ds_txn_fate;

typedef void (*ds_txn_dr_fn)(rd_kafka_t *rk, const rd_kafka_message_t *m,
                             void *opaque);

/* One transactional producer and the topic handles it produces to. */
typedef struct ds_txn {
    rd_kafka_t *rk;
    rd_kafka_topic_t *updates, *status; /* always */
    rd_kafka_topic_t *content;          /* schema v2 only, else NULL */
    const ds_kconf *kc;
    const char *package; /* named in the hint */
    char id[256];        /* transactional.id */
    int timeout_ms;      /* transaction.timeout.ms the producer has */
    int step_timeout_ms; /* init_transactions gives up after this */
    int32_t partition;   /* the package's pkg.updates partition, or -1 */
    ds_txn_fate fate;    /* set when a transaction did not commit */
    int abortable;       /* a step failed with an abortable error */
    /* On failure after sending began: what became of the transaction and
     * what the user must check (printed after the error), or "". */
    char hint[1536];
} ds_txn;

/* 1 when the user set key (or its alias, may be NULL) with -X/-F. */
int ds_txn_user_set(const ds_kconf *kc, const char *key, const char *alias);

/* Create t->rk (t->kc, t->id set by the caller) with its topic handles
 * (content: also one for pkg.content). txn_ms: our transaction.timeout.ms,
 * or 0 to leave it to the user's settings; t->timeout_ms gets the value
 * the producer ends up with. dr/opaque: the delivery report callback. */
int ds_txn_producer_new(ds_txn *t, int txn_ms, int content, ds_txn_dr_fn dr,
                        void *opaque, ds_err *err);

/* Destroy the topic handles and the producer (either may be NULL). */
void ds_txn_producer_free(ds_txn *t);

/* init_transactions, in slices until it succeeds, fails for good, *cancel
 * becomes non-zero (may be NULL), or step_timeout_ms have passed. */
int ds_txn_init(ds_txn *t, atomic_int *cancel, ds_err *err);

/* begin_transaction (local: when it fails nothing is open). */
int ds_txn_begin(ds_txn *t, ds_err *err);

/* Run one transactional step's result e; -EAGAIN on a retriable error
 * (try again), else 0 or a negative code with err naming step. */
int ds_txn_step(rd_kafka_t *rk, const char *step, rd_kafka_error_t *e,
                ds_err *err);

/* Produce one message to rkt (partition RD_KAFKA_PARTITION_UA: the
 * partitioner's choice), waiting while librdkafka's queue is full.
 * val == NULL: a tombstone. flags: RD_KAFKA_MSG_F_FREE (val is then freed
 * whatever happens) or RD_KAFKA_MSG_F_COPY. opaque: the delivery report's
 * m->_private. */
int ds_txn_produce(ds_txn *t, rd_kafka_topic_t *rkt, int32_t partition,
                   const char *key, void *val, size_t len, int flags,
                   void *opaque, ds_err *err);

/* Produce failed: name the transaction's first failure rather than
 * librdkafka's "not allowed in this state" that follows it (failed: the
 * delivery reports with an error so far, first_err the first). */
int ds_txn_produce_failed(ds_txn *t, unsigned failed,
                          rd_kafka_resp_err_t first_err, int rc,
                          const char *what, ds_err *err);

/* Commit (flushes and waits for every delivery report; resumed while
 * retriable, for at most DS_TXN_ABORT_WAIT_MS). failed/first_err: the
 * delivery reports with an error, checked once it returns. On failure the
 * transaction is aborted (or t->fate says why not) and err says why. */
int ds_txn_commit(ds_txn *t, const unsigned *failed,
                  const rd_kafka_resp_err_t *first_err, ds_err *err);

/* Abort after a failure: sets t->fate (and t->hint when it did not). */
void ds_txn_abort(ds_txn *t);

/* After a transaction that did not commit (t->fate != DS_FATE_NONE):
 * fence it when t->fate says so (destroying t's producer first: its
 * retries would race the new producer's epoch), and write t->hint.
 * unsent: events were still queued when the transaction failed. */
void ds_txn_settle(ds_txn *t, int unsent);

/* 1 when a transaction that did not commit was aborted (nothing of it is
 * visible) because of the cluster, not the input: librdkafka's abortable
 * error (after a partition leader or the coordinator moved, e.g.
 * OUT_OF_ORDER_SEQUENCE_NUMBER, which requires an epoch bump), seen by a
 * step (commit) or as the deliveries it purged (first_dr_err), or too few
 * in-sync replicas for a while. examples/transactions.c's remedy: abort,
 * and run the same transaction again. */
int ds_txn_worth_retry(const ds_txn *t, rd_kafka_resp_err_t first_dr_err);

#endif
