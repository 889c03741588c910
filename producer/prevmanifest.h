/*
 * prevmanifest.h - what the store holds for a package before a schema v2
 * publication or a retire (schemas/v2/README.md section 10, step 2): the
 * package's newest committed record on pkg.updates and, when that is a v2
 * manifest of the parts or index form, its parts, index parts included
 * (for the index form the index content is fetched from pkg.content and
 * checked). A v1 event, an inline manifest, a tombstone, an invalid
 * record or no record at all: the store holds no part of the package.
 *
 * Run it after the publisher's init_transactions: that fenced any other
 * producer with the package's transactional id and ended its open
 * transaction, so what is read is what is committed, and nothing of the
 * package changes until this publisher commits.
 *
 * The package's partition is murmur2(package) among pkg.updates'
 * partitions (the partitioner every publisher uses). It is read backward
 * in windows (64 records, then twice as many each time) from its last
 * stable offset until a record keyed by the package turns up or the
 * partition's start is reached: an active package's newest record is
 * near the end; on a compacted topic an idle one's is wherever
 * compaction left it.
 */
#ifndef DS_PREVMANIFEST_H
#define DS_PREVMANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "manifest.h"
#include "reader.h"

enum ds_prev_kind {
    DS_PREV_NONE = 0,  /* no record of the package */
    DS_PREV_TOMBSTONE, /* retired */
    DS_PREV_V1,        /* a v1 chunk event */
    DS_PREV_V2,        /* a valid v2 manifest (see form) */
    DS_PREV_INVALID,   /* neither: what a site dead-letters */
};

typedef struct ds_prev {
    int kind;           /* enum ds_prev_kind */
    int32_t partition;  /* the package's pkg.updates partition */
    int64_t offset;     /* of the newest record, -1 when none */
    uint64_t version;   /* v1, v2: the record's version */
    int form;           /* v2: enum ds_form */
    ds_part_ref *parts; /* the stream's parts the store holds */
    size_t nparts;
    ds_part_ref *index; /* index form: the index parts */
    size_t nindex;
    /* A v2 manifest whose parts are not all known (its index could not
     * be read): why, else "". */
    char note[DS_ERRMSG_MAX];
} ds_prev;

/* Find package's newest committed record in its partition of pkg.updates
 * (partitions: pkg.updates' partition count). */
int ds_prev_find(ds_reader *rd, const char *package, int32_t partitions,
                 int timeout_ms, ds_prev *p, ds_err *err);

void ds_prev_free(ds_prev *p);

/* "none", "tombstone", "v1", "v2 inline|parts|index", "invalid". */
const char *ds_prev_describe(const ds_prev *p);

#endif
