/*
 * dlq.h - the worker's two outputs besides the library: dead letters to
 * pkg.updates.dlq (the rejected event's original key and value, unchanged,
 * with despool.* headers naming the reason and the source position) and
 * status records to the compacted pkg.status. Also re-reading an event by
 * its offset, for updates rejected after some of their chunks were
 * consumed and released (a multi-chunk update is never held in memory, so
 * its earlier chunks are fetched again to be dead-lettered whole).
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

/* Produce the status record <site>/<package> to pkg.status. */
int ds_status_produce(rd_kafka_t *producer, const char *site,
                      const char *package, uint64_t version, const char *state,
                      const char *detail, ds_err *err);

typedef struct ds_refetch ds_refetch;

/* A group-less read_committed consumer used only to re-read events. */
int ds_refetch_new(const ds_kconf *kc, ds_refetch **out, ds_err *err);
void ds_refetch_free(ds_refetch *rf);

/* Fetch the pkg.updates event at partition/offset (waits up to
 * timeout_ms). *msg is the caller's to destroy. */
int ds_refetch_get(ds_refetch *rf, int32_t partition, int64_t offset,
                   int timeout_ms, rd_kafka_message_t **msg, ds_err *err);

#endif
