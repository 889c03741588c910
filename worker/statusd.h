/*
 * statusd.h - `despooler status --serve ADDR:PORT`: the status page over
 * HTTP (libmicrohttpd, its own threads), from a running feed:
 *
 *   GET /                 the page (index.html, /app.css, /app.js)
 *   GET /api/status       `despooler status --json` (?package=, ?site=)
 *   GET /api/lag          `despooler lag --all-sites --json --watch`
 *   GET /api/view         the page's matrix: a version and a mark letter
 *                         per cell
 *   GET /api/sites        per site: lag, verdict, the last hour's samples
 *   GET /api/package?name=P  a package's cells, history and dead letters
 *   GET /healthz          200 while the feed reads pkg.status, else 503
 *
 * Anything else is 404; a malformed or oversized query 400; a method
 * other than GET and HEAD 405.
 */
#ifndef DS_STATUSD_H
#define DS_STATUSD_H

#include <stddef.h>

#include "err.h"
#include "statusfeed.h"

typedef struct ds_statusd ds_statusd;

/* Serve on fd, a socket ds_listen() bound to bound (listen.h: the caller
 * binds first, so that a bad address fails before the feed starts); the
 * server owns fd from here, also on failure. */
int ds_statusd_start(int fd, const char *bound, ds_feed *feed, ds_statusd **out,
                     ds_err *err);
void ds_statusd_stop(ds_statusd *d); /* NULL is fine */

#endif
