/*
 * statustab.h - the newest pkg.status record of every key
 * (<site>/<package>) and how a site stands for a package against what was
 * published: the model behind `despooler status` and its page (status.c,
 * statusd.c). No Kafka here.
 *
 * A site is behind when it holds an older version than the published
 * one, late when that has lasted longer than max-behind (or it has said
 * nothing since the version was published), failed when its last
 * attempt failed, retired when it acted on the package's retire (state
 * "retired", detail "kept" or "removed"). A package whose _published
 * record is retired (pkgpub retire) shows retired as published, and a
 * site that has not retired it yet is behind, then late.
 */
#ifndef DS_STATUSTAB_H
#define DS_STATUSTAB_H

#include <stdint.h>
#include <stdio.h>

#include "codec.h"

#define DS_PUBLISHED "_published" /* pkgpub's pseudo-site */

typedef enum ds_mark {
    DS_MARK_OK, /* current */
    DS_MARK_BEHIND,
    DS_MARK_LATE,
    DS_MARK_FAILED,
    DS_MARK_MISSING, /* no record */
    DS_MARK_RETIRED,
} ds_mark;
#define DS_MARK_COUNT 6

/* "ok", "behind", "late", "failed", "missing", "retired". */
const char *ds_mark_name(ds_mark m);
/* One letter each: o b l f m r (the page's compact matrix). */
char ds_mark_code(ds_mark m);

/* Records in an array, and an open-addressing index into it by the key's
 * hash, grown at half load. gen counts new keys (not updates), so a
 * caller knows when its sorted names are stale. */
typedef struct ds_stab {
    ds_status *rec;
    size_t n, cap;
    size_t *slot; /* rec index + 1, 0 = empty */
    size_t nslot; /* a power of two */
    uint64_t gen;
} ds_stab;

/* Keep st if it is the newest of its key: the topic is compacted, but
 * until compaction runs it holds older records too, in order. A record
 * replaces the one it follows. -ENOMEM, else 0. */
int ds_stab_put(ds_stab *t, const ds_status *st);
const ds_status *ds_stab_find(const ds_stab *t, const char *site,
                              const char *package);
void ds_stab_free(ds_stab *t);

/* The distinct package and site names, sorted (the published pseudo-site
 * left out); pointers into t, valid until its next put. */
typedef struct ds_snames {
    const char **pkgs, **sites;
    size_t np, ns;
} ds_snames;

int ds_stab_names(const ds_stab *t, ds_snames *v); /* -ENOMEM or 0 */
void ds_snames_free(ds_snames *v);

int ds_status_is_retired(const ds_status *r); /* r may be NULL */

/* How site record r (NULL: none) stands against pub (NULL: never
 * published) at now, late after max_behind_ms. */
ds_mark ds_stab_judge(const ds_status *pub, const ds_status *r, uint64_t now,
                      uint64_t max_behind_ms);

/* `despooler status --json` (and GET /api/status): {"packages":[{"package",
 * "published", "retired", "sites":[{"site", "version", "state", "at_ms",
 * "detail", "mark"}]}]}, compact, without a newline. package and site
 * (NULL: all) filter it. *worst becomes 1 when a shown cell is late or
 * failed. Written as it goes (no tree: 250,000 cells). -1 when writing
 * fails. */
int ds_stab_write_json(FILE *f, const ds_stab *t, const ds_snames *v,
                       const char *package, const char *site, uint64_t now,
                       uint64_t max_behind_ms, int *worst);

/* The "sites" array of one package in that output. */
int ds_stab_write_cells(FILE *f, const ds_stab *t, const ds_snames *v,
                        const char *package, const char *site, uint64_t now,
                        uint64_t max_behind_ms, int *worst);

#endif
