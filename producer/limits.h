/*
 * limits.h - what the brokers allow one publication: the transaction
 * timeout to ask for (sized to the upload, clamped to the brokers'
 * transaction.max.timeout.ms), and what fits the embedded broker's 5 MiB
 * partitions: schema v1 puts one update's chunks into one pkg.updates
 * partition; schema v2 spreads a version's new parts over pkg.content's
 * partitions.
 */
#ifndef DS_LIMITS_H
#define DS_LIMITS_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "err.h"
#include "kconf.h"

/* transaction.timeout.ms, unless the user sets it (-X/-F): the
 * coordinator aborts a transaction still open that long after its first
 * event, so it must cover the whole send. pkgpub assumes the upload runs
 * at DS_TXN_RATE (2 MiB/s, about 17 Mbit/s) and allows DS_TXN_MARGIN_MS
 * more, never less than librdkafka's default DS_TXN_FLOOR_MS:
 *   max(60 s, 30 s + compressed bytes / 2 MiB/s)
 * (60 s up to 60 MiB, 542 s for 1 GiB), clamped to the brokers'
 * transaction.max.timeout.ms (Kafka's default 15 min: reached at 1.7 GiB;
 * beyond it an upload slower than the clamp is aborted). */
#define DS_TXN_FLOOR_MS  60000
#define DS_TXN_MARGIN_MS 30000
#define DS_TXN_RATE      (2u << 20)

/* The transaction timeout the rule above gives for zsize bytes. */
int ds_txn_timeout_for(uint64_t zsize);

/* The transaction timeout for zsize bytes when the producer has have_ms:
 * 0 when that suffices or the user set transaction.timeout.ms (then a
 * warning when theirs is shorter than the rule's), else the rule's value
 * clamped (with a warning) to broker broker_id's
 * transaction.max.timeout.ms, asked with rk's admin API (any client
 * handle; Kafka's default 15 min when it cannot be read). */
int ds_txn_timeout_resize(const ds_kconf *kc, rd_kafka_t *rk, int32_t broker_id,
                          uint64_t zsize, int have_ms, int timeout_ms);

/* What one event takes in a partition of the embedded broker besides its
 * payload and key, at most: event header with signature about 330, record
 * batch header 61, record header about 20. */
#define DS_EVENT_OVERHEAD 512

/* Schema v1: an update's chunk events, all in the package's partition. */
uint64_t ds_embedded_v1_bytes(uint64_t zsize, uint32_t chunks, size_t keylen);
int ds_embedded_v1_too_big(uint64_t bytes, int at_least, ds_err *err);

/* Schema v2: the new parts a version sends to pkg.content may take at
 * most DS_EMBEDDED_UPDATE_MAX (4 MiB) of any one partition and, in all,
 * DS_EMBEDDED_V2_SHARE (1 MiB) times the partition count (24 MiB with 24
 * partitions: a fifth of what the topic keeps, so the parts of the
 * previous versions, which the next one references, stay). */
#define DS_EMBEDDED_V2_SHARE (1u << 20)

typedef struct ds_embedded_budget {
    int32_t partitions;
    uint64_t total; /* bytes taken so far, all partitions */
    uint64_t *per;  /* per partition */
} ds_embedded_budget;

int ds_embedded_budget_init(ds_embedded_budget *b, int32_t partitions,
                            ds_err *err);
void ds_embedded_budget_free(ds_embedded_budget *b);

/* Take a part record of zsize bytes and keylen key bytes in partition:
 * 0, or -EFBIG (reason "too-large") saying which limit it breaks and that
 * nothing was sent (the caller refuses before sending). */
int ds_embedded_take(ds_embedded_budget *b, int32_t partition, uint64_t zsize,
                     size_t keylen, ds_err *err);

#endif
