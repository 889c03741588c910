/*
 * metricsd.h - `despooler run --metrics ADDR:PORT`: a small HTTP server
 * (libmicrohttpd, its own thread) serving
 *
 *   GET /metrics  Prometheus text exposition of a ds_metrics registry
 *   GET /healthz  200 "ok ..." when health() says so, else 503 "..."
 *
 * health() runs on the server's thread, so it must be thread-safe.
 */
#ifndef DS_METRICSD_H
#define DS_METRICSD_H

#include <stddef.h>

#include "err.h"
#include "metrics.h"

/* Returns 1 when healthy, 0 when not; writes a one-line reason to why. */
typedef int (*ds_health_fn)(void *ctx, char *why, size_t n);

typedef struct ds_metricsd ds_metricsd;

/* Listen on addr ("HOST:PORT", "[V6]:PORT" or ":PORT" for every
 * interface; port 0 picks a free one). bound receives "HOST:PORT" as
 * actually bound (size >= 64). */
int ds_metricsd_start(const char *addr, ds_metrics *m, ds_health_fn health,
                      void *ctx, ds_metricsd **out, char *bound, size_t n,
                      ds_err *err);
void ds_metricsd_stop(ds_metricsd *d); /* NULL is fine */

#endif
