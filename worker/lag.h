/*
 * lag.h - `despooler lag`: committed offset, log-end offset (the high
 * watermark, as kafka-consumer-groups.sh shows it) and lag per partition of
 * pkg.updates for the group despool.<site>. Read from committed offsets,
 * so a site with no running worker is still reported.
 */
#ifndef DS_LAG_H
#define DS_LAG_H

#include "err.h"
#include "kconf.h"

typedef struct ds_lag_opts {
    const ds_kconf *kc;
    const char *site;
    int json;
    int timeout_ms;
} ds_lag_opts;

/* Print the table (or JSON) to stdout; *total_lag gets the sum. */
int ds_lag_run(const ds_lag_opts *o, long long *total_lag, ds_err *err);

#endif
