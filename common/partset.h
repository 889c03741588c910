/*
 * partset.h - the parts one schema v2 publication deals with, by part id
 * (schemas/v2/README.md sections 10 and 11): the parts the store already
 * holds for the package (the previous manifest's refs, its index parts
 * included) and the parts this publication sends. For each part of the
 * new version ds_partset_place says what to do with it:
 *
 *   DS_PLACE_REUSE   the store holds it: reference that record (its
 *                    partition, offset and zsize), send nothing;
 *   DS_PLACE_REPEAT  this publication already sent it (a slice that occurs
 *                    twice): one record, both refs point at it;
 *   DS_PLACE_SEND    new: send it once; its partition and offset come
 *                    from the delivery report (ds_partset_at(..)->...).
 *
 * Afterwards, the held parts nobody placed are the ones the previous
 * manifest referenced and the new one does not: their keys get a
 * tombstone (ds_partset_dropped). Pure bookkeeping: no Kafka, no I/O.
 *
 * A held id whose size differs from the placed part's (a previous
 * manifest that lies, or a SHA-256 collision) is not reused: the entry
 * becomes a part to send again under the same key (a later record of a
 * key replaces the earlier one under compaction), and is no longer held,
 * so it gets no tombstone. A held zsize may differ from the placed
 * part's (another zstd level): the record is reused and the ref takes the
 * record's zsize. An id held twice keeps its first ref.
 *
 * Entries are numbered in insertion order (0, 1, ...); the numbers stay
 * valid until ds_partset_free. Lookup is a hash of the id (SHA-256 output:
 * its first bytes are spread evenly), open addressing, grown at half load.
 */
#ifndef DS_PARTSET_H
#define DS_PARTSET_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "manifest.h"

typedef struct ds_partset_entry {
    uint8_t id[DS_SHA256_LEN];
    uint32_t size;
    uint32_t zsize;    /* the record's frame length */
    int32_t partition; /* held: the ref's; sent: -1 until delivered */
    int64_t offset;    /* likewise */
    uint8_t held;      /* in the store before this publication */
    uint8_t used;      /* referenced by the new version (placed) */
} ds_partset_entry;

enum ds_place {
    DS_PLACE_REUSE = 1,
    DS_PLACE_REPEAT = 2,
    DS_PLACE_SEND = 3,
};

typedef struct ds_partset ds_partset;

/* An empty set sized for about hint entries (0: a small default). */
int ds_partset_new(size_t hint, ds_partset **out, ds_err *err);
void ds_partset_free(ds_partset *s); /* NULL is fine */

/* Add a part the store holds (a ref of the previous manifest). The ref
 * must be valid (size and zsize >= 1, partition and offset >= 0). */
int ds_partset_hold(ds_partset *s, const ds_part_ref *r, ds_err *err);

/* Place a part of the new version: returns an enum ds_place (> 0) and the
 * entry's number in *index, or a negative code. */
int ds_partset_place(ds_partset *s, const uint8_t id[DS_SHA256_LEN],
                     uint32_t size, uint32_t zsize, size_t *index, ds_err *err);

/* The entry numbered index (< ds_partset_count), or NULL. */
ds_partset_entry *ds_partset_at(ds_partset *s, size_t index);

/* The entry of id, or NULL. */
const ds_partset_entry *ds_partset_find(const ds_partset *s,
                                        const uint8_t id[DS_SHA256_LEN]);

size_t ds_partset_count(const ds_partset *s);

/* Held entries not placed, in the order they were held: calls fn for each
 * (stops at and returns fn's first negative return); returns how many
 * there were. */
typedef int (*ds_partset_fn)(void *ctx, const ds_partset_entry *e);
long ds_partset_dropped(const ds_partset *s, ds_partset_fn fn, void *ctx);

/* Fill ref's partition and offset (and zsize) from its entry: for every
 * ref of refs[0..n), the entry of its id must have a partition and offset
 * (a sent part whose delivery report came, or a held one). Fails naming
 * the first ref that has none (reason "kafka": "no offset"). */
int ds_partset_fill_refs(const ds_partset *s, ds_part_ref *refs, size_t n,
                         ds_err *err);

#endif
