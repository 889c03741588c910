/*
 * limits.c - the brokers' limits for one publication; see limits.h.
 */
#include "limits.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "txn.h"

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

int ds_txn_timeout_resize(const ds_kconf *kc, rd_kafka_t *rk, int32_t broker_id,
                          uint64_t zsize, int have_ms, int timeout_ms)
{
    int need = ds_txn_timeout_for(zsize);
    if (ds_txn_user_set(kc, "transaction.timeout.ms", NULL)) {
        if (have_ms < need)
            ds_warn("transaction-timeout-short",
                    "transaction_timeout_ms=%d needed_ms=%d zsize=%" PRIu64
                    " detail=\"set by -X/-F; below what pkgpub would choose "
                    "(30 s + size at 2 MiB/s): a slower upload is aborted by "
                    "the transaction coordinator\"",
                    have_ms, need, zsize);
        return 0;
    }
    if (need <= have_ms)
        return 0;
    long max =
        broker_id >= 0 ? broker_txn_max_ms(rk, broker_id, timeout_ms) : -1;
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
                need, max, assumed ? " (assumed: Kafka's default)" : "", zsize,
                max);
        need = (int)max;
    }
    return need > have_ms ? need : 0;
}

uint64_t ds_embedded_v1_bytes(uint64_t zsize, uint32_t chunks, size_t keylen)
{
    return zsize + (uint64_t)chunks * (DS_EVENT_OVERHEAD + keylen);
}

int ds_embedded_v1_too_big(uint64_t bytes, int at_least, ds_err *err)
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

int ds_embedded_budget_init(ds_embedded_budget *b, int32_t partitions,
                            ds_err *err)
{
    memset(b, 0, sizeof(*b));
    if (partitions < 1)
        return ds_err_set(err, -EINVAL, "internal",
                          "embedded budget: %d partitions", (int)partitions);
    b->per = calloc((size_t)partitions, sizeof(*b->per));
    if (b->per == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "embedded budget: out of memory");
    b->partitions = partitions;
    return 0;
}

void ds_embedded_budget_free(ds_embedded_budget *b)
{
    free(b->per);
    b->per = NULL;
}

int ds_embedded_take(ds_embedded_budget *b, int32_t partition, uint64_t zsize,
                     size_t keylen, ds_err *err)
{
    if (partition < 0 || partition >= b->partitions)
        return ds_err_set(err, -EINVAL, "internal",
                          "embedded budget: partition %d of %d", (int)partition,
                          (int)b->partitions);
    uint64_t bytes = zsize + DS_EVENT_OVERHEAD + keylen;
    uint64_t cap = (uint64_t)b->partitions * DS_EMBEDDED_V2_SHARE;
    b->per[partition] += bytes;
    b->total += bytes;
    if (b->per[partition] <= DS_EMBEDDED_UPDATE_MAX && b->total <= cap)
        return 0;
    char what[160];
    if (b->per[partition] > DS_EMBEDDED_UPDATE_MAX)
        snprintf(what, sizeof(what),
                 "at least %" PRIu64 " bytes in partition %d of %s",
                 b->per[partition], (int)partition, DS_TOPIC_CONTENT);
    else
        snprintf(what, sizeof(what), "at least %" PRIu64 " bytes of %s",
                 b->total, DS_TOPIC_CONTENT);
    return ds_err_set(
        err, -EFBIG, "too-large",
        "the embedded broker (despooler dev-broker) keeps only %u MiB per "
        "partition and drops the oldest records beyond: this version's new "
        "parts would take %s, over the %u (%u MiB) a version may put in one "
        "partition (and %" PRIu64 " in all %d). Nothing was sent. Publish "
        "it to Apache Kafka: scripts/kafka start, then -b "
        "@/tmp/despool-kafka/bootstrap",
        DS_EMBEDDED_PARTITION_BYTES >> 20, what, DS_EMBEDDED_UPDATE_MAX,
        DS_EMBEDDED_UPDATE_MAX >> 20, cap, (int)b->partitions);
}
