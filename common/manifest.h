/*
 * manifest.h - schema v2 (schemas/v2/README.md is the normative text;
 * schemas/v2/vectors.txt holds test vectors): the manifest on pkg.updates
 * (what to install), the part event on pkg.content (the bytes), the part
 * ref that points from one to the other, the index (a part list stored as
 * parts), part keys, and the text a v2 signature is made over.
 *
 * Decoding is strict about known fields (reason "bad-schema", the message
 * names the field), ignores unknown ones, and allocates nothing: byte
 * strings (inline data, a part's frame, the raw ref array) point into the
 * caller's buffer and stay valid only as long as it does. Encoding checks
 * the same rules, so a publisher cannot emit what a consumer rejects.
 * No Kafka here.
 */
#ifndef DS_MANIFEST_H
#define DS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"

#define DS_SCHEMA_V2 2

/* Limits (README.md, section 3 "Limits"). */
#define DS_PART_SIZE_MAX  917504u  /* uncompressed bytes of a part, 896 KiB */
#define DS_PART_ZSIZE_MAX 921088u  /* ZSTD_COMPRESSBOUND(DS_PART_SIZE_MAX) */
#define DS_INLINE_MAX     262144u  /* compressed bytes inline in a manifest */
#define DS_MANIFEST_MAX   524288u  /* bytes of an encoded manifest */
#define DS_REFS_MAX       8192u    /* entries of a parts or index array */
#define DS_NPARTS_MAX     1048576u /* parts of one version (896 GiB) */
#define DS_PART_KEY_MAX   (DS_PACKAGE_MAX + 1 + 2 * DS_SHA256_LEN) /* 193 */
#define DS_SIG2_MSG_MAX   640 /* the v2 signing text, with room */

/* Where a part is and what it is: [id, size, zsize, partition, offset]. */
typedef struct ds_part_ref {
    uint8_t id[DS_SHA256_LEN]; /* SHA-256 of the part's uncompressed bytes */
    uint32_t size;             /* uncompressed bytes, 1..DS_PART_SIZE_MAX */
    uint32_t zsize;            /* the frame's bytes, 1..DS_PART_ZSIZE_MAX */
    int32_t partition;         /* pkg.content partition, >= 0 */
    int64_t offset;            /* offset in that partition, >= 0 */
} ds_part_ref;

/* The content form: exactly one per manifest. */
enum ds_form {
    DS_FORM_INLINE = 1, /* "data": the whole zstd stream */
    DS_FORM_PARTS = 2,  /* "parts": the part refs, in stream order */
    DS_FORM_INDEX = 3   /* "index": refs of the parts holding the part list */
};

typedef struct ds_manifest {
    uint64_t schema;                  /* 2 */
    char package[DS_PACKAGE_MAX + 1]; /* NUL-terminated, validated id */
    uint64_t version;                 /* >= 1 */
    uint8_t update_id[DS_UPDATE_ID_LEN];
    char codec[DS_CODEC_MAX + 1];  /* "zstd" */
    uint64_t size;                 /* uncompressed tar bytes */
    uint64_t zsize;                /* compressed bytes: data or sum of zsizes */
    uint8_t sha256[DS_SHA256_LEN]; /* of the uncompressed tar stream */
    uint64_t created_ms;
    int has_sig; /* sig and key_id present */
    uint8_t sig[DS_SIG_LEN];
    char key_id[DS_KEY_ID_MAX + 1];
    int form; /* enum ds_form */
    /* DS_FORM_INLINE: the zstd stream, zsize bytes (borrowed). */
    const uint8_t *data;
    size_t data_len;
    /* DS_FORM_PARTS: the part refs; DS_FORM_INDEX: the index parts' refs.
     * Encode reads refs[0..nrefs) when refs is set, else refs_msg.
     * Decode sets refs NULL and refs_msg to the array's msgpack bytes in
     * the value (borrowed); ds_manifest_refs() decodes them. */
    uint32_t nrefs;
    const ds_part_ref *refs;
    const uint8_t *refs_msg;
    size_t refs_msg_len;
    /* Parts of the tar stream: nrefs (parts), the "nparts" field (index),
     * 0 (inline). */
    uint64_t nparts;
} ds_manifest;

/* Encode m as one msgpack map (canonical form). *out is malloc'd, owned
 * by the caller. Fails (bad-schema, naming the field) when m breaks a rule
 * of the schema, its ref sizes do not add up to size and zsize (parts
 * form), or the encoding would exceed DS_MANIFEST_MAX bytes. */
int ds_manifest_encode(const ds_manifest *m, uint8_t **out, size_t *out_len,
                       ds_err *err);

/* Decode buf into m and check every rule that the value alone allows
 * (README.md section 4), refs and sums included; for the index form the
 * real part list is checked by ds_manifest_check_index once fetched.
 * Does not compare package with the Kafka key: the caller does. */
int ds_manifest_decode(const void *buf, size_t len, ds_manifest *m,
                       ds_err *err);

/* m's refs (parts or index form) into out[0..cap): returns m->nrefs, or a
 * negative code when cap is too small. */
int ds_manifest_refs(const ds_manifest *m, ds_part_ref *out, size_t cap,
                     ds_err *err);

/* The manifest's content form for a stream of zsize compressed bytes in
 * nparts parts, as despool's publisher picks it: inline when zsize <=
 * DS_INLINE_MAX, else parts when nparts <= DS_REFS_MAX, else index. */
int ds_manifest_form_for(uint64_t zsize, uint64_t nparts);

/* An index's content: the msgpack array of refs (canonical). *out is
 * malloc'd. Every ref is checked. */
int ds_index_encode(const ds_part_ref *refs, size_t n, uint8_t **out,
                    size_t *out_len, ds_err *err);

/* Decode an index's content (the concatenated uncompressed bytes of the
 * index parts): exactly one msgpack array of valid refs. out may be NULL
 * (cap 0) to count only; *n gets the count. A count above cap fails. */
int ds_index_decode(const void *buf, size_t len, ds_part_ref *out, size_t cap,
                    size_t *n, ds_err *err);

/* For an index-form m: decode the index content buf (ds_index_decode)
 * into out (cap >= m->nparts) and check it against m: len equals the sum
 * of the index refs' sizes, the count equals nparts, sizes add up to size
 * and zsizes to zsize. Failures are bad-schema. */
int ds_manifest_check_index(const ds_manifest *m, const void *buf, size_t len,
                            ds_part_ref *out, size_t cap, ds_err *err);

/* The v2 signing text of m (README.md section 9) into buf (size n, at
 * least DS_SIG2_MSG_MAX). Returns its length or a negative code. */
int ds_manifest_sig_message(const ds_manifest *m, char *buf, size_t n,
                            ds_err *err);

/* The "schema" field of a value on pkg.updates, to pick the decoder (1:
 * ds_event_decode, 2: ds_manifest_decode). Fails (bad-schema) when the
 * value is not one msgpack map with str keys or has no uint schema. */
int ds_value_schema(const void *buf, size_t len, uint64_t *schema, ds_err *err);

/* A part event (pkg.content value). */
typedef struct ds_part {
    uint64_t schema;                  /* 2 */
    char package[DS_PACKAGE_MAX + 1]; /* the package the part belongs to */
    uint8_t id[DS_SHA256_LEN];        /* "part": SHA-256 of the bytes */
    uint32_t size;                    /* uncompressed bytes */
    const uint8_t *data; /* exactly one zstd frame of size bytes; borrowed */
    size_t data_len;
} ds_part;

/* Encode / decode a part event. Both check that data is exactly one
 * complete zstd frame declaring size as its content size (a header walk:
 * nothing is decompressed). */
int ds_part_encode(const ds_part *p, uint8_t **out, size_t *out_len,
                   ds_err *err);
int ds_part_decode(const void *buf, size_t len, ds_part *p, ds_err *err);

/* A fetched record against the ref that led to it: key is
 * "<package>/<hex of r->id>", p->package is package, and p's id, size and
 * frame length are r's. Else reason "part-mismatch". */
int ds_part_check(const ds_part *p, const void *key, size_t key_len,
                  const char *package, const ds_part_ref *r, ds_err *err);

/* Decompress p's frame into out (cap >= p->size) and check that it gives
 * exactly p->size bytes whose SHA-256 is p->id. Else "part-mismatch". */
int ds_part_verify(const ds_part *p, void *out, size_t cap, ds_err *err);

/* The pkg.content key "<package>/<64 lowercase hex>" into buf (n >
 * DS_PART_KEY_MAX). Returns its length or a negative code. */
int ds_part_key(char *buf, size_t n, const char *package,
                const uint8_t id[DS_SHA256_LEN], ds_err *err);

/* Parse a pkg.content key; package gets DS_PACKAGE_MAX + 1 bytes. */
int ds_part_key_parse(const void *key, size_t len, char *package,
                      uint8_t id[DS_SHA256_LEN], ds_err *err);

#endif
