/*
 * kmeta.h - a topic's metadata from the cluster, for every command that
 * needs a topic's partitions (pkgpub, despooler lag and status, the part
 * fetcher). A topic created a moment ago is not in every broker's
 * metadata at once: Kafka answers "Unknown topic or partition" or
 * "Leader not available" for a while (a second or two after
 * `kafka-topics --create` returns, more on a loaded machine). Those two
 * answers are asked again until timeout_ms; only then is the topic
 * reported missing.
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

#endif
