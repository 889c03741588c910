/*
 * session.c - a schema v2 publisher's set-up; see session.h.
 */
#include "session.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kconf.h"
#include "limits.h"
#include "log.h"
#include "progress.h"

#define SLICE_MS 200

/* Warm-up of the producer's metadata: without it librdkafka keeps the
 * first message of a topic it does not know yet until its next topic
 * scan (up to a second). A failure just leaves the lookup for later. */
static void warm_up(ds_txn *t, atomic_int *cancel)
{
    rd_kafka_topic_t *topics[] = {t->content, t->updates, t->status};
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        uint64_t deadline = ds_mono_ms() + (uint64_t)t->step_timeout_ms;
        while ((cancel == NULL || !atomic_load(cancel)) &&
               ds_mono_ms() < deadline) {
            const struct rd_kafka_metadata *md = NULL;
            rd_kafka_resp_err_t e =
                rd_kafka_metadata(t->rk, 0, topics[i], &md, SLICE_MS);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                rd_kafka_metadata_destroy(md);
            if (e != RD_KAFKA_RESP_ERR__TIMED_OUT)
                break;
        }
    }
}

int ds_session_open(ds_session *s, uint64_t upload_bound, ds_txn_dr_fn dr,
                    void *opaque, atomic_int *cancel, ds_err *err)
{
    int tmo = s->t.step_timeout_ms;
    s->kind = -1;
    s->broker_id = -1;
    s->prev.offset = -1;
    s->prev.partition = -1;
    int32_t status_partitions = 0;
    int rc = ds_reader_new(s->t.kc, &s->rd, err);
    if (rc == 0)
        rc = ds_reader_partitions(s->rd, DS_TOPIC_UPDATES, tmo,
                                  &s->updates_partitions, &s->broker_id, err);
    if (rc == 0)
        rc = ds_reader_partitions(s->rd, DS_TOPIC_CONTENT, tmo,
                                  &s->content_partitions, NULL, err);
    if (rc == 0)
        rc = ds_reader_partitions(s->rd, DS_TOPIC_STATUS, tmo,
                                  &status_partitions, NULL, err);
    if (rc < 0)
        return rc;
    /* The metadata answers carried the cluster id: no wait. */
    s->kind = ds_kconf_cluster_kind(ds_reader_handle(s->rd), SLICE_MS);
    int user_txn = ds_txn_user_set(s->t.kc, "transaction.timeout.ms", NULL);
    int txn_ms = 0;
    if (!user_txn) {
        txn_ms = ds_txn_timeout_resize(s->t.kc, ds_reader_handle(s->rd),
                                       s->broker_id, upload_bound,
                                       DS_TXN_FLOOR_MS, tmo);
        if (txn_ms == 0)
            txn_ms = DS_TXN_FLOOR_MS;
    }
    if ((rc = ds_txn_producer_new(&s->t, txn_ms, 1, dr, opaque, err)) < 0)
        return rc;
    if (user_txn) /* only for its warning when the user's is shorter */
        ds_txn_timeout_resize(s->t.kc, NULL, -1, upload_bound, s->t.timeout_ms,
                              tmo);
    if ((rc = ds_txn_init(&s->t, cancel, err)) < 0)
        return rc;
    warm_up(&s->t, cancel);
    rc = ds_prev_find(s->rd, s->t.package, s->updates_partitions, tmo, &s->prev,
                      err);
    if (rc < 0)
        return rc;
    s->t.partition = s->prev.partition;
    ds_info("previous-record",
            "package=%s partition=%d offset=%" PRId64 " kind=%s "
            "version=%" PRIu64 " parts=%zu index_parts=%zu",
            s->t.package, (int)s->prev.partition, s->prev.offset,
            DS_LV(ds_prev_describe(&s->prev)), s->prev.version, s->prev.nparts,
            s->prev.nindex);
    return 0;
}

void ds_session_close(ds_session *s)
{
    ds_prev_free(&s->prev);
    ds_txn_producer_free(&s->t);
    ds_reader_free(s->rd);
    s->rd = NULL;
}
