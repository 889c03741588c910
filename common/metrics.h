/*
 * metrics.h - the worker's counters, gauges and histograms, and their
 * Prometheus text exposition (format 0.0.4). No HTTP, no Kafka: the
 * server (worker/metricsd.c) only asks for the rendered text.
 *
 * One mutex guards everything: the consumer thread updates, the HTTP
 * thread renders; both are rare next to the work itself.
 *
 * Labelled counters (discarded{reason}, dead_lettered{reason},
 * errors{kind}, part_bytes{source}) take label values from the program's own
 * stable codes; beyond DS_METRICS_MAX_LABELS distinct values per registry the
 * rest are counted under "other", so a bug can never blow up the series count.
 */
#ifndef DS_METRICS_H
#define DS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DS_METRICS_MAX_LABELS     48
#define DS_METRICS_MAX_PARTITIONS 1024

typedef enum ds_counter {
    DS_C_FINALIZED,       /* updates finalized (current switched) */
    DS_C_ABANDONED,       /* in-flight updates given up (revoke, stop) */
    DS_C_EVENTS,          /* events consumed */
    DS_C_RECEIVED_BYTES,  /* event payload bytes consumed */
    DS_C_EXTRACTED_BYTES, /* tar bytes of finalized updates */
    DS_C_REBALANCES,      /* assign and revoke callbacks */
    DS_C_COMMITS,         /* offset commits sent */
    DS_C_EVENTS_MISSING,  /* events deleted by the broker before done */
    DS_C_RETIRED,         /* retire tombstones acted on */
    DS_C_PARTS,           /* schema v2 parts fetched and verified */
    DS_C_PARTS_LOCAL,     /* parts re-created from the installed version */
    DS_C_LINKED_BYTES,    /* file bytes shared with the installed version */
    DS_C__N
} ds_counter;

typedef enum ds_lcounter {
    DS_L_DISCARDED,  /* label reason: stale, duplicate, superseded */
    DS_L_DEAD,       /* label reason: bad-schema, sha256-mismatch, ... */
    DS_L_ERRORS,     /* label kind: kafka, local, commit, dead-letter */
    DS_L_PART_BYTES, /* label source: fetched, local */
    DS_L__N
} ds_lcounter;

typedef enum ds_gauge {
    DS_G_IN_FLIGHT,  /* updates being extracted or finalized */
    DS_G_ASSIGNED,   /* partitions assigned to this worker */
    DS_G_START_TIME, /* unix seconds the worker started */
    DS_G__N
} ds_gauge;

typedef enum ds_histogram {
    DS_H_FINALIZE, /* finalize step: fsync, lock, rename, swap, prune */
    DS_H_UPDATE,   /* first chunk received to finalized */
    DS_H__N
} ds_histogram;

typedef struct ds_metrics ds_metrics;

/* site is rendered in despool_worker_info{site=...}. */
int ds_metrics_new(const char *site, ds_metrics **out, ds_err *err);
void ds_metrics_free(ds_metrics *m); /* NULL is fine */

/* All updaters accept m == NULL (metrics off) and do nothing then. */
void ds_metrics_add(ds_metrics *m, ds_counter c, uint64_t n);
void ds_metrics_add_label(ds_metrics *m, ds_lcounter c, const char *label,
                          uint64_t n);
void ds_metrics_set(ds_metrics *m, ds_gauge g, double v);
void ds_metrics_observe(ds_metrics *m, ds_histogram h, double seconds);
/* Consumer lag of one partition in events; lag < 0 drops its series
 * (partition revoked, or lag unknown). */
void ds_metrics_set_lag(ds_metrics *m, int32_t partition, int64_t lag);

/* Read back (tests, the health check). */
uint64_t ds_metrics_get(ds_metrics *m, ds_counter c);
double ds_metrics_gauge(ds_metrics *m, ds_gauge g);

/* The exposition text, malloc'd (caller frees). */
int ds_metrics_render(ds_metrics *m, char **text, size_t *len, ds_err *err);

#endif
