/*
 * kmeta.h - a topic's metadata from the cluster, for every command that
 * needs a topic's partitions (pkgpub, despooler lag and status, the part
 * fetcher). A topic created a moment ago is not in every broker's
 * metadata at once: Kafka answers "Unknown topic or partition" or
 * "Leader not available" for a while (a second or two after
 * `kafka-topics --create` returns, more on a loaded machine). Those two
 * answers are asked again until timeout_ms; only then is the topic
 * reported missing. A request is made in slices of 4 s and made again
 * when it timed out or its broker went away (a broker shutting down may
 * never answer), so one broker down costs seconds, not the timeout.
 */
#ifndef DS_KMETA_H
#define DS_KMETA_H

#include <librdkafka/rdkafka.h>

#include "err.h"

/* The metadata of one topic: on success *md holds exactly one topic with
 * at least one partition; free it with rd_kafka_metadata_destroy().
 * Errors: -EHOSTUNREACH no broker answered (err asks whether -b is
 * right), -ENOENT the topic does not exist or has no partitions after
 * timeout_ms (err says how to create it). */
int ds_kmeta_topic(rd_kafka_t *rk, const char *topic, int timeout_ms,
                   const rd_kafka_metadata_t **md, ds_err *err);

/* 1 for the errors a partition leader's move, a broker's restart or a
 * topic's creation cause for a while (NOT_LEADER_OR_FOLLOWER, leader not
 * available, a stale leader epoch, the connection lost or timed out):
 * asking again after a metadata refresh can succeed. */
int ds_kmeta_transient(rd_kafka_resp_err_t e);

/* rd_kafka_query_watermark_offsets(), asked only of a leader that the
 * cluster's metadata names now and that accepts a TCP connection (2.0.2
 * sends the query to the leader in its cache and waits for it without a
 * timeout while that broker is down), in slices of 2 s, and asked again
 * while the error is transient, until timeout_ms. Returns the last error
 * (NO_ERROR: *lo, *hi set). */
rd_kafka_resp_err_t ds_kmeta_watermarks(rd_kafka_t *rk, const char *topic,
                                        int32_t partition, int64_t *lo,
                                        int64_t *hi, int timeout_ms);

#endif
