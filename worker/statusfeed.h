/*
 * statusfeed.h - the live state behind `despooler status --serve`: two
 * threads keep it current while the HTTP server (statusd.c) renders it
 * (statusapi.c).
 *
 *   reader  follows pkg.status (the newest record per key, and every
 *           record into the per-package history) and pkg.updates.dlq
 *           (the last dead letters per package), from their beginnings;
 *   lagger  every lag_every seconds, the lag of every site (the sites of
 *           pkg.status, and every despool.* group where the broker can
 *           list groups), fed to a Burrow-style watch per site (the
 *           verdict of `despooler lag --watch`) and kept for an hour.
 *
 * A broker that cannot be reached is retried; the page shows the error
 * and the last data it had.
 */
#ifndef DS_STATUSFEED_H
#define DS_STATUSFEED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "kconf.h"

typedef struct ds_feed_opts {
    const ds_kconf *kc;
    uint64_t max_behind_s; /* late after this */
    double refresh_s;      /* the page's refresh, told to it */
    double lag_every_s;    /* between lag samples */
    int window;            /* samples per verdict window */
    double stop_after_s;   /* STOP after this without a commit */
    int timeout_ms;        /* per broker request */
} ds_feed_opts;

typedef struct ds_feed ds_feed;

int ds_feed_start(const ds_feed_opts *o, ds_feed **out, ds_err *err);
/* Stop and free the feed; a thread still inside a broker request after
 * 2 s is left behind, with the feed (only for a process about to exit).
 * NULL is fine. */
void ds_feed_stop(ds_feed *f);

/* 1 while the reader reads pkg.status; why says how far it is, or what
 * fails. */
int ds_feed_health(ds_feed *f, char *why, size_t n);

/* The renderings (statusapi.c), each taken under the feed's lock; -1
 * when writing fails, 1 (package) when the package is unknown. */
int ds_api_view(ds_feed *f, FILE *out);
int ds_api_status(ds_feed *f, FILE *out, const char *package, const char *site);
int ds_api_lag(ds_feed *f, FILE *out);
int ds_api_sites(ds_feed *f, FILE *out);
int ds_api_package(ds_feed *f, FILE *out, const char *package);

#endif
