/*
 * refetch.h - re-reading pkg.updates events by offset, for updates
 * rejected after some of their chunks were consumed and released (a
 * multi-chunk update is never held in memory, so its earlier chunks are
 * read again to be dead-lettered whole). A group-less, assign-only,
 * read_committed consumer; never blocks the caller: the consumer thread
 * asks for a set of partitions from given offsets and takes what has
 * arrived each time round its loop.
 */
#ifndef DS_REFETCH_H
#define DS_REFETCH_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "err.h"
#include "kconf.h"

typedef struct ds_refetch ds_refetch;

int ds_refetch_new(const ds_kconf *kc, ds_refetch **out, ds_err *err);
void ds_refetch_free(ds_refetch *rf); /* NULL is fine */

/* Read partitions[i] of pkg.updates from offsets[i] on (n may be 0: stop
 * reading). Replaces the previous set. */
int ds_refetch_assign(ds_refetch *rf, const int32_t *partitions,
                      const int64_t *offsets, int n, ds_err *err);

/* The next event read (the caller destroys it), or NULL at once when none
 * has arrived. Errors other than end-of-partition come back as messages
 * with err set. */
rd_kafka_message_t *ds_refetch_next(ds_refetch *rf);

#endif
