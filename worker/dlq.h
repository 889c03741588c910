/*
 * dlq.h - the worker's two outputs besides the library: dead letters to
 * pkg.updates.dlq (the rejected event's original key and value, unchanged,
 * with despool.* headers naming the reason and the source position) and
 * status records to the compacted pkg.status (refetch.h re-reads events
 * to dead-letter).
 */
#ifndef DS_DLQ_H
#define DS_DLQ_H

#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "err.h"
#include "kconf.h"

typedef struct ds_dead_letter {
    int32_t partition; /* source position in pkg.updates */
    int64_t offset;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    const char *reason; /* stable code, e.g. "sha256-mismatch" */
    const char *detail; /* human text */
} ds_dead_letter;

/* Produce dl to pkg.updates.dlq; opaque reaches the delivery report.
 * Only a delivered dead letter may let its source offset count as done. */
int ds_dlq_produce(rd_kafka_t *producer, const char *site,
                   const ds_dead_letter *dl, void *opaque, ds_err *err);

/* Produce the status record <site>/<package> to pkg.status; opaque
 * reaches the delivery report. */
int ds_status_produce(rd_kafka_t *producer, const char *site,
                      const char *package, uint64_t version, const char *state,
                      const char *detail, void *opaque, ds_err *err);

#endif
