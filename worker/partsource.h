/*
 * partsource.h - an update's parts in stream order, each from where it is
 * cheapest: re-created from the installed version (localparts.h) when
 * the site holds it, else fetched from pkg.content (partfetch.h). Every
 * part is verified by its id either way.
 *
 * A re-created part that does not match its id is fetched instead (a
 * warning, msg=local-part-mismatch); after four in a row, or when the
 * installed tree cannot be re-packed at all (msg=local-parts-failed),
 * every part still planned locally is fetched. So a damaged installed
 * version costs fetches, never a wrong byte and never a failed update.
 */
#ifndef DS_PARTSOURCE_H
#define DS_PARTSOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "manifest.h"
#include "partfetch.h"
#include "partlist.h"

typedef struct ds_partsource ds_partsource;

/* Where the parts of one update came from: parts and their frame bytes
 * (the refs' zsize, what pkg.content would have sent). */
typedef struct ds_partsource_stats {
    uint64_t local_parts, local_bytes;
    uint64_t fetched_parts, fetched_bytes;
    uint64_t mismatches; /* re-created parts fetched after all */
} ds_partsource_stats;

/* Open the parts refs[0..n) of package version. installed (the directory
 * current points at) and old (its part list) may be NULL: all fetched. */
int ds_partsource_open(ds_partfetch *pf, const char *package, uint64_t version,
                       const ds_part_ref *refs, size_t n, const char *installed,
                       const ds_partlist *old, ds_partsource **out,
                       ds_err *err);

/* As ds_fetch_next: 1 with the next part's verified bytes (valid until the
 * next call or close), 0 after the last, < 0 a fetch's failure. Called by
 * one thread at a time. */
int ds_partsource_next(ds_partsource *s, const void **buf, size_t *len,
                       ds_err *err);

/* Any thread: a waiting or later next() returns "cancelled". */
void ds_partsource_cancel(ds_partsource *s);

void ds_partsource_stats_get(const ds_partsource *s, ds_partsource_stats *st);

void ds_partsource_close(ds_partsource *s); /* NULL is fine */

#endif
