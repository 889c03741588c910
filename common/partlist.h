/*
 * partlist.h - the part list of an installed version (schema v2): which
 * parts, in stream order, make up the tar stream of the version current
 * points at. A site keeps it beside the package (<pkg>/.partlist,
 * library.h) so that the next version's parts it already holds can be
 * re-created from its own disk (localparts.h) instead of fetched.
 *
 * It is a cache, never trusted: every part re-created from it is checked
 * against the new manifest's id before use, and a list that is missing,
 * damaged or for another version only means that everything is fetched.
 *
 * Encoding (little-endian):
 *   "despool-partlist 1\n"          19 bytes
 *   version u64, size u64, sha256[32], n u32
 *   n times: id[32], size u32       (sizes sum to size)
 *   SHA-256 of everything above     32 bytes
 * No Kafka here.
 */
#ifndef DS_PARTLIST_H
#define DS_PARTLIST_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"
#include "manifest.h"

/* A list larger than this is refused when read (about 34 MiB: more than
 * DS_NPARTS_MAX entries). */
#define DS_PARTLIST_MAX (64u + 36u * (size_t)DS_NPARTS_MAX + 32u)

typedef struct ds_plpart {
    uint8_t id[DS_SHA256_LEN];
    uint32_t size;
} ds_plpart;

typedef struct ds_partlist {
    uint64_t version;
    uint64_t size;                 /* bytes of the tar stream */
    uint8_t sha256[DS_SHA256_LEN]; /* of the tar stream */
    size_t n;
    ds_plpart *parts; /* owned; ds_partlist_free */
} ds_partlist;

/* Encode the list of a version from its manifest's refs[0..n) into a new
 * buffer (*buf, *len; free() it). */
int ds_partlist_encode(uint64_t version, uint64_t size,
                       const uint8_t sha256[DS_SHA256_LEN],
                       const ds_part_ref *refs, size_t n, uint8_t **buf,
                       size_t *len, ds_err *err);

/* Decode and check (magic, length, checksum, sizes adding up): reason
 * "bad-partlist" naming what is wrong. name is for the message. */
int ds_partlist_decode(const uint8_t *buf, size_t len, const char *name,
                       ds_partlist *out, ds_err *err);

void ds_partlist_free(ds_partlist *pl); /* NULL is fine */

#endif
