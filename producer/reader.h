/*
 * reader.h - pkgpub's reads of Kafka (schema v2 publications and retire
 * look before they write): topic metadata, the committed end of a
 * partition, a range of a partition, one record at an exact offset. Built
 * on librdkafka's simple (legacy) consumer: partitions are read directly
 * by offset, no consumer group is joined and nothing is committed.
 * Everything is read read_committed, so records of aborted or still open
 * transactions are never seen.
 */
#ifndef DS_READER_H
#define DS_READER_H

#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "err.h"
#include "kconf.h"

typedef struct ds_reader ds_reader;

/* Two consumer handles: one read_committed (reads, the last stable
 * offset), one read_uncommitted (the high watermark only). They connect
 * on first use. */
int ds_reader_new(const ds_kconf *kc, ds_reader **out, ds_err *err);
void ds_reader_free(ds_reader *rd); /* NULL is fine */

/* The read_committed handle, e.g. for admin requests or the cluster id. */
rd_kafka_t *ds_reader_handle(ds_reader *rd);

/* topic's partition count (fails naming the topic when it does not
 * exist), and a broker id of the cluster (may be NULL). */
int ds_reader_partitions(ds_reader *rd, const char *topic, int timeout_ms,
                         int32_t *count, int32_t *broker_id, ds_err *err);

/* The committed range [*lo, *end) of a partition: *end is the last stable
 * offset once it has caught up with the high watermark seen first. While
 * a transaction (of any producer) is open in the partition, the last
 * stable offset stays below it, and records committed after that
 * transaction began are not readable yet: this waits for it, up to
 * timeout_ms, then fails (reason "kafka") saying so. */
int ds_reader_committed_end(ds_reader *rd, const char *topic, int32_t partition,
                            int timeout_ms, int64_t *lo, int64_t *end,
                            ds_err *err);

/* Each record of [from, to) of a partition, in order, to fn (which
 * returns 0 to go on, or a negative code to stop: returned as is). Ends
 * at the first record at or past to, or at the partition's end. Fails
 * when nothing arrives for timeout_ms. */
typedef int (*ds_reader_fn)(void *ctx, const rd_kafka_message_t *m);
int ds_reader_scan(ds_reader *rd, const char *topic, int32_t partition,
                   int64_t from, int64_t to, int timeout_ms, ds_reader_fn fn,
                   void *ctx, ds_err *err);

/* The record at exactly (partition, offset) into *out (destroy it with
 * rd_kafka_message_destroy). -ENOENT (reason "part-missing") when the
 * first record read is at a later offset (compacted away, or never
 * committed) or the offset is past the partition's end. */
int ds_reader_get(ds_reader *rd, const char *topic, int32_t partition,
                  int64_t offset, int timeout_ms, rd_kafka_message_t **out,
                  ds_err *err);

#endif
