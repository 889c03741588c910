/*
 * status.h - `despooler status`: the version matrix package x site from the
 * compacted pkg.status topic (see status.c).
 */
#ifndef DS_STATUS_CMD_H
#define DS_STATUS_CMD_H

#include <stdint.h>

#include "err.h"
#include "kconf.h"

typedef struct ds_status_opts {
    const ds_kconf *kc;
    const char *package; /* only this package, or NULL */
    const char *site;    /* only this site, or NULL */
    int json;
    uint64_t max_behind_s; /* behind (or silent) longer than this: late */
    int timeout_ms;
} ds_status_opts;

/* Print the matrix; *worst is 1 when a site is late or failed. */
int ds_status_run(const ds_status_opts *o, int *worst, ds_err *err);

#endif
