/*
 * codec.h - schema v1 of the pkg.updates event and the pkg.status record,
 * encoded as msgpack maps with string keys (schemas/v1/README.md is the
 * normative text; schemas/v1/vectors.txt holds test vectors).
 *
 * Decoding is strict about the fields it knows (a missing or mistyped
 * required field is an error with reason "bad-schema") and ignores fields it
 * does not know (forward compatibility). Decoded byte strings that can be
 * large (data) point into the caller's buffer: they stay valid only as long
 * as that buffer does.
 */
#ifndef DS_CODEC_H
#define DS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DS_SCHEMA_V1     1
#define DS_PACKAGE_MAX   128 /* bytes of a package id */
#define DS_UPDATE_ID_LEN 16
#define DS_SHA256_LEN    32
#define DS_SIG_LEN       64
#define DS_KEY_ID_MAX    64
#define DS_CODEC_MAX     16

typedef struct ds_event {
    uint64_t schema;                  /* 1 */
    char package[DS_PACKAGE_MAX + 1]; /* NUL-terminated, validated id */
    uint64_t version;                 /* >= 1 */
    uint8_t update_id[DS_UPDATE_ID_LEN];
    uint32_t chunk;                /* 0-based, < chunks */
    uint32_t chunks;               /* >= 1 */
    char codec[DS_CODEC_MAX + 1];  /* "zstd" */
    uint64_t size;                 /* uncompressed tar bytes */
    uint64_t zsize;                /* compressed bytes, sum of data */
    uint8_t sha256[DS_SHA256_LEN]; /* of the uncompressed tar stream */
    uint64_t created_ms;
    const uint8_t *data; /* this chunk's slice; borrowed */
    size_t data_len;
    /* Optional (signed updates): present when has_sig is non-zero. */
    int has_sig;
    uint8_t sig[DS_SIG_LEN];
    char key_id[DS_KEY_ID_MAX + 1];
} ds_event;

/* 1 when s[0..len) matches [A-Za-z0-9][A-Za-z0-9._-]{0,127}, else 0. */
int ds_package_valid(const char *s, size_t len);

/* 1 when s[0..len) matches [A-Za-z0-9][A-Za-z0-9._-]{0,63}, else 0. */
int ds_key_id_valid(const char *s, size_t len);

/* Encode ev as one msgpack map. On success *out is a malloc'd buffer of
 * *out_len bytes owned by the caller. Fails (bad-schema) if ev breaks a
 * rule of the schema, so a producer cannot emit an event consumers reject. */
int ds_event_encode(const ds_event *ev, uint8_t **out, size_t *out_len,
                    ds_err *err);

/* Everything ds_event_encode writes except data's ev->data_len bytes
 * (ev->data is not read): the caller appends them, e.g. read straight
 * from a file, without encoding a large payload twice. */
int ds_event_encode_head(const ds_event *ev, uint8_t **out, size_t *out_len,
                         ds_err *err);

/* Decode buf into ev and check every rule of schema v1 (types, ranges,
 * codec, chunk < chunks, data_len <= zsize). Does not compare the package
 * with the Kafka key: the caller does. Returns 0 or a negative code with
 * err->reason "bad-schema" and err->msg naming the field. */
int ds_event_decode(const void *buf, size_t len, ds_event *ev, ds_err *err);

/* True when two chunks' headers describe the same update (every header
 * field equal; chunk index and data excluded). */
int ds_event_same_update(const ds_event *a, const ds_event *b);

#define DS_SITE_MAX   128
#define DS_STATE_MAX  16
#define DS_DETAIL_MAX 256

/* pkg.status value; key is "<site>/<package>". */
typedef struct ds_status {
    char site[DS_SITE_MAX + 1]; /* "_published" for pkgpub */
    char package[DS_PACKAGE_MAX + 1];
    uint64_t version;
    char state[DS_STATE_MAX + 1]; /* published | installed | failed | retired */
    char detail[DS_DETAIL_MAX + 1]; /* human text, may be empty */
    uint64_t at_ms;
} ds_status;

int ds_status_encode(const ds_status *st, uint8_t **out, size_t *out_len,
                     ds_err *err);
int ds_status_decode(const void *buf, size_t len, ds_status *st, ds_err *err);

/* 1 when s is a valid site name: same rule as a package id. */
int ds_site_valid(const char *s, size_t len);

#endif
