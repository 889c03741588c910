/*
 * pkghist.h - per package, what the status page shows beside the matrix:
 * the history of its versions (published when, installed where and when)
 * from every pkg.status record seen, and its last dead letters. No Kafka
 * here: statusfeed.c feeds it.
 *
 * pkg.status is compacted to the newest record per site, so the history
 * holds what the topic still had when the page's server started, and
 * everything after: a version superseded and compacted away before then
 * is not in it.
 */
#ifndef DS_PKGHIST_H
#define DS_PKGHIST_H

#include <stdint.h>
#include <stdio.h>

#include "codec.h"

#define DS_PKGHIST_EVENTS       512 /* per package, oldest dropped first */
#define DS_PKGHIST_DEAD_LETTERS 10  /* per package, the newest kept */
#define DS_PKGHIST_VERSIONS     20  /* in the JSON, the newest */

typedef struct ds_dead_letter_seen {
    uint64_t at_ms; /* the dead letter's timestamp */
    char site[DS_SITE_MAX + 1];
    char reason[64];
    char detail[DS_DETAIL_MAX + 1];
    int32_t partition; /* source position in pkg.updates, -1 unknown */
    int64_t offset;
} ds_dead_letter_seen;

typedef struct ds_pkghist ds_pkghist;

int ds_pkghist_new(ds_pkghist **out); /* -ENOMEM or 0 */
void ds_pkghist_free(ds_pkghist *h);  /* NULL is fine */

/* Note a status record (a site's, or the _published one). */
int ds_pkghist_status(ds_pkghist *h, const ds_status *st);
/* Note a dead letter of package. */
int ds_pkghist_dead_letter(ds_pkghist *h, const char *package,
                           const ds_dead_letter_seen *dl);

/* 1 when anything is known of package. */
int ds_pkghist_has(const ds_pkghist *h, const char *package);

/* "history":[{"version", "published_at_ms", "installed":[{"site",
 * "at_ms", "state"}]}] newest version first, then "dead_letters":[{"at_ms",
 * "site", "reason", "detail", "partition", "offset"}] newest first: two
 * members of an object the caller opened (written with a leading comma).
 * -1 when writing fails. */
int ds_pkghist_write_json(FILE *f, const ds_pkghist *h, const char *package);

#endif
