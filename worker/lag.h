/*
 * lag.h - `despooler lag`: per partition of pkg.updates for the group
 * despool.<site>, the columns of Kafka's kafka-consumer-groups.sh
 * --describe (committed offset, log-end offset = high watermark, lag,
 * consumer id, host, client id) plus TIME-LAG, and a group line (state,
 * members, total lag). Read from committed offsets, so a site with no
 * running worker is still reported.
 */
#ifndef DS_LAG_H
#define DS_LAG_H

#include <stdint.h>

#include "err.h"
#include "jsonout.h"
#include "kconf.h"
#include "lagwatch.h"

typedef struct ds_lag_opts {
    const ds_kconf *kc;
    const char *site;
    int timeout_ms;
} ds_lag_opts;

typedef struct ds_lag_row {
    int32_t partition;
    int64_t committed; /* -1: nothing committed */
    int64_t low, high; /* watermarks; high = LOG-END-OFFSET */
    long long lag;     /* -1 when nothing committed (Kafka shows -) */
    char consumer_id[256], host[128], client_id[256];
    int64_t time_lag_ms; /* age of the oldest unconsumed event, -1 ? */
} ds_lag_row;

typedef struct ds_lag_report {
    char group[160];
    char state[32]; /* Stable, Empty, ... or "-" when unknown */
    int members;    /* -1 when unknown */
    char note[256]; /* why something is unknown, or "" */
    ds_lag_row *rows;
    int n;
    long long total_lag; /* uncommitted partitions: high - low */
    int64_t max_time_lag_ms;
} ds_lag_report;

/* Gather the report (the caller frees it with ds_lag_free). Fails only
 * when the broker cannot answer the basic questions; what it cannot tell
 * (members on the embedded broker) is left unknown with a note. */
int ds_lag_collect(const ds_lag_opts *o, ds_lag_report *r, ds_err *err);
void ds_lag_free(ds_lag_report *r);

/* The table: Kafka's columns, TIME-LAG, and with v (one verdict per row,
 * from --watch) a STATUS column and the group's status. */
void ds_lag_print(const ds_lag_report *r, const ds_verdict *v);
/* The same as one JSON object (the caller prints or nests it, and
 * releases it), or NULL when out of memory. */
json_t *ds_lag_json(const ds_lag_report *r, const ds_verdict *v);

/* Every site with a consumer group (despool.<site>) on the cluster, sorted
 * (ListConsumerGroups; the embedded broker lacks it: an error says so).
 * The caller frees each string and the array. */
int ds_lag_list_sites(const ds_lag_opts *o, char ***sites, int *n, ds_err *err);

#endif
