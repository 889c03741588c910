/*
 * manifest.c - schema v2 (schemas/v2/README.md): manifests, part refs,
 * index contents, part events, part keys and the v2 signing text.
 *
 * Decoding reads the raw bytes with mpread's bounded cursor and builds
 * nothing: a first pass skips the whole value (so truncation, trailing
 * bytes and absurd counts are refused before any field is looked at), a
 * second records where each known field's value lies, then the fields are
 * checked in the order of the field tables, the schema number first.
 * Byte strings are pointers into the caller's buffer. Encoding uses
 * msgpack-c's packer (smallest formats, table order) after the same rule
 * checks as decoding. Every failure has reason "bad-schema" and a message
 * naming the field, except the checks of fetched parts ("part-mismatch").
 */
#include "manifest.h"

#include <inttypes.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <zstd.h>

#include "log.h"
#include "mpread.h"
#include "mpwrite.h"

#define BAD        "bad-schema"
#define MISMATCH   "part-mismatch"
#define CODEC_ZSTD "zstd"

static const uint8_t zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

/* --- Reading a map ---------------------------------------------------- */

enum kind { K_UINT, K_STR, K_BIN, K_ARRAY };

struct field {
    const char *name;
    enum kind kind;
    uint32_t fixed; /* exact bin length, 0 = any */
    bool required;
};

/* A known field's value: its header, and where its bytes lie. */
struct val {
    bool present;
    ds_mp_obj obj;
    size_t at, end;
};

static bool key_is(const ds_mp_obj *key, const char *name)
{
    size_t n = strlen(name);
    return key->u == n && memcmp(key->ptr, name, n) == 0;
}

/*
 * buf must be exactly one msgpack map (at most max bytes) with str keys.
 * Records each known field of fields[] in v[] (unknown keys are skipped,
 * whatever their value); a known key seen twice is an error. Types are
 * not looked at yet.
 */
static int read_map(const char *op, const void *buf, size_t len, size_t max,
                    const struct field *fields, size_t nf, struct val *v,
                    ds_err *err)
{
    if (buf == NULL && len > 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: NULL buffer", op);
    if (len == 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: empty value", op);
    if (len > max)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: %zu bytes, more than the %zu a value may have",
                          op, len, max);
    ds_mp m;
    ds_mp_init(&m, buf, len);
    if (ds_mp_skip(&m) < 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: %s", op, m.why);
    if (m.off != len)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: %zu trailing byte(s) after the msgpack value "
                          "(a value is exactly one map)",
                          op, len - m.off);
    ds_mp_init(&m, buf, len);
    ds_mp_obj root;
    if (ds_mp_next(&m, &root) < 0 || root.type != DS_MP_MAP)
        return ds_err_set(err, -EINVAL, BAD, "%s: expected a map, got %s", op,
                          ds_mp_type_name(root.type));
    for (size_t i = 0; i < nf; i++)
        v[i].present = false;
    for (uint64_t k = 0; k < root.u; k++) {
        ds_mp_obj key;
        if (ds_mp_next(&m, &key) < 0)
            return ds_err_set(err, -EINVAL, BAD, "%s: %s", op, m.why);
        if (key.type != DS_MP_STR)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: a map key is %s (keys must be str)", op,
                              ds_mp_type_name(key.type));
        size_t at = m.off;
        ds_mp probe = m;
        ds_mp_obj obj;
        if (ds_mp_next(&probe, &obj) < 0 || ds_mp_skip(&m) < 0)
            return ds_err_set(err, -EINVAL, BAD, "%s: %s", op, m.why);
        for (size_t i = 0; i < nf; i++) {
            if (!key_is(&key, fields[i].name))
                continue;
            if (v[i].present)
                return ds_err_set(err, -EINVAL, BAD,
                                  "%s: field \"%s\": appears twice", op,
                                  fields[i].name);
            v[i] = (struct val){true, obj, at, m.off};
        }
    }
    return 0;
}

static const char *const kind_names[] = {"uint", "str", "bin", "array"};
static const ds_mp_type kind_types[] = {DS_MP_UINT, DS_MP_STR, DS_MP_BIN,
                                        DS_MP_ARRAY};

/* Presence and type of every field, in table order. */
static int check_types(const char *op, const struct field *fields, size_t nf,
                       const struct val *v, ds_err *err)
{
    for (size_t i = 0; i < nf; i++) {
        const struct field *f = &fields[i];
        if (!v[i].present) {
            if (f->required)
                return ds_err_set(err, -EINVAL, BAD,
                                  "%s: field \"%s\": missing (required)", op,
                                  f->name);
            continue;
        }
        if (v[i].obj.type != kind_types[f->kind])
            return ds_err_set(
                err, -EINVAL, BAD, "%s: field \"%s\": expected %s, got %s", op,
                f->name, kind_names[f->kind], ds_mp_type_name(v[i].obj.type));
        if (f->fixed && v[i].obj.u != f->fixed)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"%s\": expected bin of %u bytes, "
                              "got %llu bytes",
                              op, f->name, (unsigned)f->fixed,
                              (unsigned long long)v[i].obj.u);
    }
    return 0;
}

/* The schema number decides how to read the rest: checked first, so a v1
 * event or a later schema is reported as such, not as a missing field. */
static int check_schema(const char *op, const struct val *v, const char *what,
                        ds_err *err)
{
    if (!v->present || v->obj.type != DS_MP_UINT || v->obj.u == DS_SCHEMA_V2)
        return 0;
    if (v->obj.u == DS_SCHEMA_V1)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"schema\": 1, a v1 event, not a %s "
                          "(read it with schema v1)",
                          op, what);
    return ds_err_set(err, -EINVAL, BAD,
                      "%s: field \"schema\": unsupported schema %llu (this "
                      "reader knows 1 and 2)",
                      op, (unsigned long long)v->obj.u);
}

/* The start of a decoder of a map whose first field is "schema": dst (of
 * size bytes) cleared, buf read into v[] (at most max bytes), the schema
 * number checked first (what: "manifest", "part"), then every field's
 * presence and type. On failure dst stays cleared. */
static int decode_map(const char *op, void *dst, size_t size, const void *buf,
                      size_t len, size_t max, const struct field *fields,
                      size_t nf, struct val *v, const char *what, ds_err *err)
{
    if (dst == NULL)
        return ds_err_set(err, -EINVAL, BAD, "%s: NULL argument", op);
    memset(dst, 0, size);
    int rc = read_map(op, buf, len, max, fields, nf, v, err);
    if (rc < 0 || (rc = check_schema(op, &v[0], what, err)) < 0)
        return rc;
    return check_types(op, fields, nf, v, err);
}

/* A str value into a NUL-terminated buffer of cap + 1 bytes. */
static int copy_str(const char *op, const char *name, const ds_mp_obj *o,
                    char *dst, size_t cap, ds_err *err)
{
    if (o->u > cap)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"%s\": %llu bytes, at most %zu allowed",
                          op, name, (unsigned long long)o->u, cap);
    size_t n = (size_t)o->u;
    if (memchr(o->ptr, '\0', n) != NULL)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"%s\": contains a NUL byte", op, name);
    memcpy(dst, o->ptr, n);
    dst[n] = '\0';
    return 0;
}

static int check_package(const char *op, const char *pkg, ds_err *err)
{
    char ex[48];
    size_t n = strnlen(pkg, DS_PACKAGE_MAX + 1);
    if (!ds_package_valid(pkg, n))
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"package\": \"%s\" (%zu bytes) is not a "
                          "package id [A-Za-z0-9][A-Za-z0-9._-]{0,127}",
                          op, ds_err_excerpt(ex, sizeof(ex), pkg, n), n);
    return 0;
}

/* --- Part refs ---------------------------------------------------------- */

static const char *const ref_names[] = {"id", "size", "zsize", "partition",
                                        "offset"};

/* where: "field \"parts\": " or "" (index content). */
static int ref_range(const char *op, const char *where, uint64_t i,
                     const char *name, uint64_t v, uint64_t lo, uint64_t hi,
                     ds_err *err)
{
    if (v >= lo && v <= hi)
        return 0;
    return ds_err_set(err, -EINVAL, BAD,
                      "%s: %sref %llu: field \"%s\": %llu, must be %llu..%llu",
                      op, where, (unsigned long long)i, name,
                      (unsigned long long)v, (unsigned long long)lo,
                      (unsigned long long)hi);
}

static int check_ref(const char *op, const char *where, uint64_t i,
                     const ds_part_ref *r, ds_err *err)
{
    int rc;
    if ((rc = ref_range(op, where, i, "size", r->size, 1, DS_PART_SIZE_MAX,
                        err)) < 0 ||
        (rc = ref_range(op, where, i, "zsize", r->zsize, 1, DS_PART_ZSIZE_MAX,
                        err)) < 0)
        return rc;
    if (r->partition < 0)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: %sref %llu: field \"partition\": %d, must be "
                          ">= 0",
                          op, where, (unsigned long long)i, (int)r->partition);
    if (r->offset < 0)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: %sref %llu: field \"offset\": %" PRId64
                          ", must be >= 0",
                          op, where, (unsigned long long)i, r->offset);
    return 0;
}

/* One ref [id, size, zsize, partition, offset, ...] at the cursor. */
static int read_ref(const char *op, const char *where, uint64_t i, ds_mp *m,
                    ds_part_ref *r, ds_err *err)
{
    ds_mp_obj a, o;
    memset(r, 0, sizeof(*r)); /* padding too: refs compare with memcmp */
    if (ds_mp_next(m, &a) < 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: %sref %llu: %s", op, where,
                          (unsigned long long)i, m->why);
    if (a.type != DS_MP_ARRAY || a.u < 5) {
        char got[48];
        if (a.type == DS_MP_ARRAY)
            snprintf(got, sizeof(got), "an array of %llu",
                     (unsigned long long)a.u);
        else
            snprintf(got, sizeof(got), "%s", ds_mp_type_name(a.type));
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: %sref %llu: expected an array [id, size, zsize, "
                          "partition, offset], got %s",
                          op, where, (unsigned long long)i, got);
    }
    static const uint64_t hi[] = {0, DS_PART_SIZE_MAX, DS_PART_ZSIZE_MAX,
                                  INT32_MAX, INT64_MAX};
    uint64_t u[5] = {0};
    for (int e = 0; e < 5; e++) {
        if (ds_mp_next(m, &o) < 0)
            return ds_err_set(err, -EINVAL, BAD, "%s: %sref %llu: %s", op,
                              where, (unsigned long long)i, m->why);
        if (e == 0) {
            if (o.type != DS_MP_BIN || o.u != DS_SHA256_LEN) {
                char got[48];
                if (o.type == DS_MP_BIN)
                    snprintf(got, sizeof(got), "%llu bytes",
                             (unsigned long long)o.u);
                else
                    snprintf(got, sizeof(got), "%s", ds_mp_type_name(o.type));
                return ds_err_set(err, -EINVAL, BAD,
                                  "%s: %sref %llu: field \"id\": expected bin "
                                  "of 32 bytes, got %s",
                                  op, where, (unsigned long long)i, got);
            }
            memcpy(r->id, o.ptr, DS_SHA256_LEN);
            continue;
        }
        if (o.type != DS_MP_UINT)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: %sref %llu: field \"%s\": expected uint, "
                              "got %s",
                              op, where, (unsigned long long)i, ref_names[e],
                              ds_mp_type_name(o.type));
        int rc = ref_range(op, where, i, ref_names[e], o.u, e <= 2 ? 1 : 0,
                           hi[e], err);
        if (rc < 0)
            return rc;
        u[e] = o.u;
    }
    r->size = (uint32_t)u[1];
    r->zsize = (uint32_t)u[2];
    r->partition = (int32_t)u[3];
    r->offset = (int64_t)u[4];
    /* Elements after the fifth are a later schema's: skipped. */
    for (uint64_t e = 5; e < a.u; e++)
        if (ds_mp_skip(m) < 0)
            return ds_err_set(err, -EINVAL, BAD, "%s: %sref %llu: %s", op,
                              where, (unsigned long long)i, m->why);
    return 0;
}

/* Where refs come from: a caller's array (encode) or msgpack (decode). */
struct refsrc {
    const ds_part_ref *arr;
    ds_mp mp;
};

static int refsrc_open(const char *op, const ds_manifest *m, struct refsrc *s,
                       ds_err *err)
{
    s->arr = m->refs;
    if (s->arr != NULL)
        return 0;
    if (m->refs_msg == NULL)
        return ds_err_set(err, -EINVAL, BAD, "%s: field \"%s\": no refs given",
                          op, m->form == DS_FORM_INDEX ? "index" : "parts");
    ds_mp_init(&s->mp, m->refs_msg, m->refs_msg_len);
    ds_mp_obj a;
    if (ds_mp_next(&s->mp, &a) < 0 || a.type != DS_MP_ARRAY || a.u != m->nrefs)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: refs_msg is not an array of %u refs", op,
                          (unsigned)m->nrefs);
    return 0;
}

static int refsrc_next(const char *op, const char *where, struct refsrc *s,
                       uint64_t i, ds_part_ref *r, ds_err *err)
{
    if (s->arr != NULL) {
        *r = s->arr[i];
        return check_ref(op, where, i, r, err);
    }
    return read_ref(op, where, i, &s->mp, r, err);
}

/* Walk m's refs: each checked, optionally copied to out, and summed. */
static int walk_refs(const char *op, const ds_manifest *m, ds_part_ref *out,
                     uint64_t *sum_size, uint64_t *sum_zsize, ds_err *err)
{
    const char *where =
        m->form == DS_FORM_INDEX ? "field \"index\": " : "field \"parts\": ";
    struct refsrc s;
    int rc = refsrc_open(op, m, &s, err);
    *sum_size = *sum_zsize = 0;
    for (uint64_t i = 0; rc == 0 && i < m->nrefs; i++) {
        ds_part_ref r;
        if ((rc = refsrc_next(op, where, &s, i, &r, err)) < 0)
            break;
        if (out != NULL)
            out[i] = r;
        /* At most 8192 refs of < 2^20 bytes: no overflow. */
        *sum_size += r.size;
        *sum_zsize += r.zsize;
    }
    return rc;
}

/* --- Manifest rules ----------------------------------------------------- */

/* nparts units (parts, or their frames) of 1..max bytes each can hold
 * total bytes (field name). */
static int check_fill(const char *op, uint64_t nparts, const char *name,
                      uint64_t total, const char *unit, uint32_t max,
                      ds_err *err)
{
    if (nparts > total)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"nparts\": %llu parts for %s %llu (a "
                          "%s holds at least 1 byte)",
                          op, (unsigned long long)nparts, name,
                          (unsigned long long)total, unit);
    if (total > nparts * max)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"%s\": %llu bytes in %llu %ss (a %s "
                          "holds at most %u)",
                          op, name, (unsigned long long)total,
                          (unsigned long long)nparts, unit, unit, max);
    return 0;
}

/* Every rule on m's own fields (not on its refs), shared by encode and
 * decode. Strings are NUL-terminated within their arrays. */
static int check_manifest(const char *op, const ds_manifest *m, ds_err *err)
{
    char ex[48];
    int rc;
    if (m->schema != DS_SCHEMA_V2)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"schema\": %llu, a manifest is schema 2",
                          op, (unsigned long long)m->schema);
    if ((rc = check_package(op, m->package, err)) < 0)
        return rc;
    if (m->version < 1)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"version\": 0, must be >= 1", op);
    size_t clen = strnlen(m->codec, sizeof(m->codec));
    if (clen != strlen(CODEC_ZSTD) || memcmp(m->codec, CODEC_ZSTD, clen) != 0)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"codec\": \"%s\" unsupported, expected "
                          "\"" CODEC_ZSTD "\"",
                          op, ds_err_excerpt(ex, sizeof(ex), m->codec, clen));
    if (m->has_sig) {
        size_t klen = strnlen(m->key_id, sizeof(m->key_id));
        if (!ds_key_id_valid(m->key_id, klen))
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"key_id\": \"%s\" is not a key id "
                              "[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
                              op,
                              ds_err_excerpt(ex, sizeof(ex), m->key_id, klen));
    }
    switch (m->form) {
    case DS_FORM_INLINE:
        if (m->data == NULL && m->data_len > 0)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"data\": NULL pointer", op);
        if (m->data_len < 1)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"data\": empty, must hold >= 1 byte",
                              op);
        if (m->data_len > DS_INLINE_MAX)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"data\": %zu bytes, more than the "
                              "%u a manifest may carry inline (use parts)",
                              op, m->data_len, DS_INLINE_MAX);
        if (m->zsize != m->data_len)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"data\": %zu bytes, zsize says %llu",
                              op, m->data_len, (unsigned long long)m->zsize);
        return 0;
    case DS_FORM_PARTS:
    case DS_FORM_INDEX: {
        const char *f = m->form == DS_FORM_PARTS ? "parts" : "index";
        if (m->nrefs < 1)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"%s\": empty array, must hold >= 1 "
                              "ref",
                              op, f);
        if (m->nrefs > DS_REFS_MAX)
            return ds_err_set(
                err, -EINVAL, BAD, "%s: field \"%s\": %u refs, more than %u%s",
                op, f, (unsigned)m->nrefs, DS_REFS_MAX,
                m->form == DS_FORM_PARTS ? " (use the index form)" : "");
        break;
    }
    default:
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"parts\": no content form (form %d; one "
                          "of data, parts, index)",
                          op, m->form);
    }
    if (m->form == DS_FORM_PARTS)
        return 0;
    /* Index: nparts parts of 1..DS_PART_SIZE_MAX bytes and frames of
     * 1..DS_PART_ZSIZE_MAX bytes must be able to add up to size, zsize. */
    if (m->nparts < 1 || m->nparts > DS_NPARTS_MAX)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"nparts\": %llu, must be 1..%u", op,
                          (unsigned long long)m->nparts, DS_NPARTS_MAX);
    rc = check_fill(op, m->nparts, "size", m->size, "part", DS_PART_SIZE_MAX,
                    err);
    return rc < 0 ? rc
                  : check_fill(op, m->nparts, "zsize", m->zsize, "frame",
                               DS_PART_ZSIZE_MAX, err);
}

/* The refs of a parts-form m add up to its size and zsize. */
static int check_sums(const char *op, const ds_manifest *m, uint64_t ssize,
                      uint64_t szsize, ds_err *err)
{
    if (ssize != m->size)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"size\": %llu, the parts add up to %llu",
                          op, (unsigned long long)m->size,
                          (unsigned long long)ssize);
    if (szsize != m->zsize)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"zsize\": %llu, the parts' frames add "
                          "up to %llu",
                          op, (unsigned long long)m->zsize,
                          (unsigned long long)szsize);
    return 0;
}

/* check_manifest, then the refs (and for parts their sums). */
static int check_all(const char *op, const ds_manifest *m, ds_err *err)
{
    int rc = check_manifest(op, m, err);
    if (rc < 0 || m->form == DS_FORM_INLINE)
        return rc;
    uint64_t ssize, szsize;
    if ((rc = walk_refs(op, m, NULL, &ssize, &szsize, err)) < 0)
        return rc;
    return m->form == DS_FORM_PARTS ? check_sums(op, m, ssize, szsize, err) : 0;
}

/* --- Manifest encode ---------------------------------------------------- */

enum {
    M_SCHEMA,
    M_PACKAGE,
    M_VERSION,
    M_UPDATE_ID,
    M_CODEC,
    M_SIZE,
    M_ZSIZE,
    M_SHA256,
    M_CREATED_MS,
    M_SIG,
    M_KEY_ID,
    M_NPARTS,
    M_DATA,
    M_PARTS,
    M_INDEX,
    M_NFIELDS
};

/* Table order is the canonical encoding order (README.md section 4). */
static const struct field manifest_fields[M_NFIELDS] = {
    [M_SCHEMA] = {"schema", K_UINT, 0, true},
    [M_PACKAGE] = {"package", K_STR, 0, true},
    [M_VERSION] = {"version", K_UINT, 0, true},
    [M_UPDATE_ID] = {"update_id", K_BIN, DS_UPDATE_ID_LEN, true},
    [M_CODEC] = {"codec", K_STR, 0, true},
    [M_SIZE] = {"size", K_UINT, 0, true},
    [M_ZSIZE] = {"zsize", K_UINT, 0, true},
    [M_SHA256] = {"sha256", K_BIN, DS_SHA256_LEN, true},
    [M_CREATED_MS] = {"created_ms", K_UINT, 0, true},
    [M_SIG] = {"sig", K_BIN, DS_SIG_LEN, false},
    [M_KEY_ID] = {"key_id", K_STR, 0, false},
    [M_NPARTS] = {"nparts", K_UINT, 0, false},
    [M_DATA] = {"data", K_BIN, 0, false},
    [M_PARTS] = {"parts", K_ARRAY, 0, false},
    [M_INDEX] = {"index", K_ARRAY, 0, false},
};

static int pack_ref(msgpack_packer *pk, const ds_part_ref *r)
{
    int rc = msgpack_pack_array(pk, 5);
    rc |= ds_mpw_bin(pk, r->id, DS_SHA256_LEN);
    rc |= msgpack_pack_uint64(pk, r->size);
    rc |= msgpack_pack_uint64(pk, r->zsize);
    rc |= msgpack_pack_uint64(pk, (uint64_t)r->partition);
    rc |= msgpack_pack_uint64(pk, (uint64_t)r->offset);
    return rc;
}

int ds_manifest_encode(const ds_manifest *m, uint8_t **out, size_t *out_len,
                       ds_err *err)
{
    const char *op = "encode manifest";
    const struct field *F = manifest_fields;
    int fail = ds_mpw_begin(op, m != NULL, out, out_len, err);
    if (fail < 0 || (fail = check_all(op, m, err)) < 0)
        return fail;
    ds_mpw w;
    ds_mpw_init(&w);
    msgpack_packer *pk = &w.pk;
    int n = 10 + (m->has_sig ? 2 : 0) + (m->form == DS_FORM_INDEX);
    int rc = msgpack_pack_map(pk, (size_t)n);
    rc |= ds_mpw_key(pk, F[M_SCHEMA].name);
    rc |= msgpack_pack_uint64(pk, m->schema);
    rc |= ds_mpw_key(pk, F[M_PACKAGE].name);
    rc |= ds_mpw_str(pk, m->package, strlen(m->package));
    rc |= ds_mpw_key(pk, F[M_VERSION].name);
    rc |= msgpack_pack_uint64(pk, m->version);
    rc |= ds_mpw_key(pk, F[M_UPDATE_ID].name);
    rc |= ds_mpw_bin(pk, m->update_id, DS_UPDATE_ID_LEN);
    rc |= ds_mpw_key(pk, F[M_CODEC].name);
    rc |= ds_mpw_str(pk, m->codec, strlen(m->codec));
    rc |= ds_mpw_key(pk, F[M_SIZE].name);
    rc |= msgpack_pack_uint64(pk, m->size);
    rc |= ds_mpw_key(pk, F[M_ZSIZE].name);
    rc |= msgpack_pack_uint64(pk, m->zsize);
    rc |= ds_mpw_key(pk, F[M_SHA256].name);
    rc |= ds_mpw_bin(pk, m->sha256, DS_SHA256_LEN);
    rc |= ds_mpw_key(pk, F[M_CREATED_MS].name);
    rc |= msgpack_pack_uint64(pk, m->created_ms);
    if (m->has_sig) {
        rc |= ds_mpw_key(pk, F[M_SIG].name);
        rc |= ds_mpw_bin(pk, m->sig, DS_SIG_LEN);
        rc |= ds_mpw_key(pk, F[M_KEY_ID].name);
        rc |= ds_mpw_str(pk, m->key_id, strlen(m->key_id));
    }
    if (m->form == DS_FORM_INLINE) {
        rc |= ds_mpw_key(pk, F[M_DATA].name);
        rc |= ds_mpw_bin(pk, m->data, m->data_len);
    } else {
        if (m->form == DS_FORM_INDEX) {
            rc |= ds_mpw_key(pk, F[M_NPARTS].name);
            rc |= msgpack_pack_uint64(pk, m->nparts);
        }
        rc |= ds_mpw_key(pk,
                         F[m->form == DS_FORM_INDEX ? M_INDEX : M_PARTS].name);
        rc |= msgpack_pack_array(pk, m->nrefs);
        struct refsrc s;
        fail = refsrc_open(op, m, &s, err);
        for (uint32_t i = 0; fail == 0 && i < m->nrefs; i++) {
            ds_part_ref r;
            if ((fail = refsrc_next(op, "", &s, i, &r, err)) == 0)
                rc |= pack_ref(pk, &r);
        }
    }
    if (rc == 0 && fail == 0 && w.sb.size > DS_MANIFEST_MAX)
        fail =
            ds_err_set(err, -EINVAL, BAD,
                       "%s: %zu bytes, more than the %u a manifest may "
                       "have%s",
                       op, w.sb.size, DS_MANIFEST_MAX,
                       m->form == DS_FORM_PARTS ? " (use the index form)" : "");
    return ds_mpw_finish(op, &w, rc, fail, out, out_len, err);
}

/* --- Manifest decode ---------------------------------------------------- */

int ds_manifest_decode(const void *buf, size_t len, ds_manifest *m, ds_err *err)
{
    const char *op = "decode manifest";
    const struct field *F = manifest_fields;
    struct val v[M_NFIELDS];
    int rc = decode_map(op, m, sizeof(*m), buf, len, DS_MANIFEST_MAX, F,
                        M_NFIELDS, v, "manifest", err);
    if (rc < 0)
        return rc;
    if (v[M_SIG].present != v[M_KEY_ID].present) {
        rc = ds_err_set(err, -EINVAL, BAD,
                        "%s: field \"%s\": missing (sig and key_id go "
                        "together)",
                        op, v[M_SIG].present ? "key_id" : "sig");
        goto out;
    }
    /* Exactly one content form; a second one is named in the error. */
    int form = 0, fi = -1;
    static const int forms[] = {M_DATA, M_PARTS, M_INDEX};
    for (int i = 0; i < 3; i++) {
        if (!v[forms[i]].present)
            continue;
        if (form != 0) {
            rc = ds_err_set(err, -EINVAL, BAD,
                            "%s: field \"%s\": not allowed with \"%s\" (a "
                            "manifest has exactly one of data, parts, index)",
                            op, F[forms[i]].name, F[fi].name);
            goto out;
        }
        form = DS_FORM_INLINE + i;
        fi = forms[i];
    }
    if (form == 0) {
        rc = ds_err_set(err, -EINVAL, BAD,
                        "%s: field \"parts\": missing (a manifest has exactly "
                        "one of data, parts, index)",
                        op);
        goto out;
    }
    if (v[M_NPARTS].present != (form == DS_FORM_INDEX)) {
        rc = ds_err_set(err, -EINVAL, BAD, "%s: field \"nparts\": %s", op,
                        form == DS_FORM_INDEX ? "missing (required with index)"
                                              : "only allowed with index");
        goto out;
    }

    m->schema = v[M_SCHEMA].obj.u;
    if ((rc = copy_str(op, "package", &v[M_PACKAGE].obj, m->package,
                       DS_PACKAGE_MAX, err)) < 0 ||
        (rc = copy_str(op, "codec", &v[M_CODEC].obj, m->codec, DS_CODEC_MAX,
                       err)) < 0)
        goto out;
    m->version = v[M_VERSION].obj.u;
    memcpy(m->update_id, v[M_UPDATE_ID].obj.ptr, DS_UPDATE_ID_LEN);
    m->size = v[M_SIZE].obj.u;
    m->zsize = v[M_ZSIZE].obj.u;
    memcpy(m->sha256, v[M_SHA256].obj.ptr, DS_SHA256_LEN);
    m->created_ms = v[M_CREATED_MS].obj.u;
    if (v[M_SIG].present) {
        m->has_sig = 1;
        memcpy(m->sig, v[M_SIG].obj.ptr, DS_SIG_LEN);
        if ((rc = copy_str(op, "key_id", &v[M_KEY_ID].obj, m->key_id,
                           DS_KEY_ID_MAX, err)) < 0)
            goto out;
    }
    m->form = form;
    if (form == DS_FORM_INLINE) {
        m->data = v[M_DATA].obj.ptr;
        m->data_len = (size_t)v[M_DATA].obj.u;
    } else {
        const struct val *a = &v[fi];
        /* Bounded by len <= DS_MANIFEST_MAX (mpread): fits, and a count
         * above DS_REFS_MAX is reported by check_all, never iterated. */
        m->nrefs = (uint32_t)a->obj.u;
        m->refs_msg = (const uint8_t *)buf + a->at;
        m->refs_msg_len = a->end - a->at;
        m->nparts = form == DS_FORM_INDEX ? v[M_NPARTS].obj.u : m->nrefs;
    }
    rc = check_all(op, m, err);
out:
    if (rc < 0) {
        memset(m, 0, sizeof(*m));
        return rc;
    }
    return 0;
}

int ds_manifest_refs(const ds_manifest *m, ds_part_ref *out, size_t cap,
                     ds_err *err)
{
    const char *op = "manifest refs";
    if (m == NULL)
        return ds_err_set(err, -EINVAL, "internal", "%s: NULL argument", op);
    if (m->form == DS_FORM_INLINE)
        return 0;
    if (cap < m->nrefs || out == NULL)
        return ds_err_set(err, -ENOSPC, "internal",
                          "%s of %s version %" PRIu64 ": %u refs, room for %zu",
                          op, m->package, m->version, (unsigned)m->nrefs, cap);
    uint64_t s1, s2;
    int rc = walk_refs(op, m, out, &s1, &s2, err);
    return rc < 0 ? rc : (int)m->nrefs;
}

int ds_manifest_form_for(uint64_t zsize, uint64_t nparts)
{
    if (zsize <= DS_INLINE_MAX)
        return DS_FORM_INLINE;
    return nparts <= DS_REFS_MAX ? DS_FORM_PARTS : DS_FORM_INDEX;
}

/* --- Index content -------------------------------------------------------- */

int ds_index_encode(const ds_part_ref *refs, size_t n, uint8_t **out,
                    size_t *out_len, ds_err *err)
{
    const char *op = "encode index";
    int rc = ds_mpw_begin(op, refs != NULL || n == 0, out, out_len, err);
    if (rc < 0)
        return rc;
    if (n < 1 || n > DS_NPARTS_MAX)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: %zu refs, must be 1..%u (field \"nparts\")", op,
                          n, DS_NPARTS_MAX);
    for (size_t i = 0; i < n; i++)
        if ((rc = check_ref(op, "", i, &refs[i], err)) < 0)
            return rc;
    ds_mpw w;
    ds_mpw_init(&w);
    rc = msgpack_pack_array(&w.pk, n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = pack_ref(&w.pk, &refs[i]);
    return ds_mpw_finish(op, &w, rc, 0, out, out_len, err);
}

int ds_index_decode(const void *buf, size_t len, ds_part_ref *out, size_t cap,
                    size_t *n, ds_err *err)
{
    const char *op = "decode index";
    if (n != NULL)
        *n = 0;
    if (buf == NULL || len == 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: empty", op);
    ds_mp m;
    ds_mp_init(&m, buf, len);
    if (ds_mp_skip(&m) < 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: %s", op, m.why);
    if (m.off != len)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: %zu trailing byte(s) after the msgpack array",
                          op, len - m.off);
    ds_mp_init(&m, buf, len);
    ds_mp_obj a;
    if (ds_mp_next(&m, &a) < 0 || a.type != DS_MP_ARRAY)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: expected an array of refs, got %s", op,
                          ds_mp_type_name(a.type));
    if (a.u < 1 || a.u > DS_NPARTS_MAX)
        return ds_err_set(err, -EINVAL, BAD, "%s: %llu refs, must be 1..%u", op,
                          (unsigned long long)a.u, DS_NPARTS_MAX);
    if (out != NULL && a.u > cap)
        return ds_err_set(err, -ENOSPC, BAD, "%s: %llu refs, room for %zu", op,
                          (unsigned long long)a.u, cap);
    for (uint64_t i = 0; i < a.u; i++) {
        ds_part_ref r;
        int rc = read_ref(op, "", i, &m, &r, err);
        if (rc < 0)
            return rc;
        if (out != NULL)
            out[i] = r;
    }
    if (n != NULL)
        *n = (size_t)a.u;
    return 0;
}

int ds_manifest_check_index(const ds_manifest *m, const void *buf, size_t len,
                            ds_part_ref *out, size_t cap, ds_err *err)
{
    const char *op = "check index";
    if (m == NULL || m->form != DS_FORM_INDEX)
        return ds_err_set(err, -EINVAL, "internal",
                          "%s: not an index-form manifest", op);
    if (out == NULL || cap < m->nparts)
        return ds_err_set(err, -ENOSPC, "internal",
                          "%s of %s version %" PRIu64 ": room for %zu of %llu "
                          "refs",
                          op, m->package, m->version, cap,
                          (unsigned long long)m->nparts);
    uint64_t isize, izsize;
    int rc = walk_refs(op, m, NULL, &isize, &izsize, err);
    if (rc < 0)
        return rc;
    if (isize != len)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s of %s version %" PRIu64 ": %zu bytes, the index "
                          "parts add up to %llu",
                          op, m->package, m->version, len,
                          (unsigned long long)isize);
    size_t n = 0;
    if ((rc = ds_index_decode(buf, len, out, cap, &n, err)) < 0)
        return rc;
    if (n != m->nparts)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s of %s version %" PRIu64 ": field \"nparts\": "
                          "%llu, the index lists %zu",
                          op, m->package, m->version,
                          (unsigned long long)m->nparts, n);
    /* At most 2^20 refs of < 2^20 bytes: no overflow. */
    uint64_t ssize = 0, szsize = 0;
    for (size_t i = 0; i < n; i++) {
        ssize += out[i].size;
        szsize += out[i].zsize;
    }
    return check_sums(op, m, ssize, szsize, err);
}

/* --- Signing text --------------------------------------------------------- */

int ds_manifest_sig_message(const ds_manifest *m, char *buf, size_t n,
                            ds_err *err)
{
    const char *op = "v2 signing text";
    static const char *const forms[] = {"", "inline", "parts", "index"};
    if (m == NULL || buf == NULL || m->form < DS_FORM_INLINE ||
        m->form > DS_FORM_INDEX)
        return ds_err_set(err, -EINVAL, "internal", "%s: no manifest", op);
    /* refs_sha256: SHA-256 over id || size (8 bytes, big-endian) || zsize
     * (8 bytes, big-endian) of every ref in order; partition and offset
     * are left out on purpose (README.md section 9). */
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    int rc = 0;
    if (ok && m->form != DS_FORM_INLINE) {
        struct refsrc s;
        rc = refsrc_open(op, m, &s, err);
        for (uint32_t i = 0; rc == 0 && ok && i < m->nrefs; i++) {
            ds_part_ref r;
            if ((rc = refsrc_next(op, "", &s, i, &r, err)) < 0)
                break;
            uint8_t rec[DS_SHA256_LEN + 16];
            memcpy(rec, r.id, DS_SHA256_LEN);
            for (int b = 0; b < 8; b++) {
                rec[DS_SHA256_LEN + b] =
                    (uint8_t)((uint64_t)r.size >> (56 - 8 * b));
                rec[DS_SHA256_LEN + 8 + b] =
                    (uint8_t)((uint64_t)r.zsize >> (56 - 8 * b));
            }
            ok = EVP_DigestUpdate(ctx, rec, sizeof(rec)) == 1;
        }
    }
    ok = ok && rc == 0 && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 &&
         mdlen == DS_SHA256_LEN;
    EVP_MD_CTX_free(ctx);
    if (rc < 0)
        return rc;
    if (!ok)
        return ds_err_set(err, -EIO, "internal", "%s of %s: sha256 failed", op,
                          m->package);
    char uid[2 * DS_UPDATE_ID_LEN + 1], sha[2 * DS_SHA256_LEN + 1],
        refs[2 * DS_SHA256_LEN + 1];
    ds_hex(uid, m->update_id, DS_UPDATE_ID_LEN);
    ds_hex(sha, m->sha256, DS_SHA256_LEN);
    ds_hex(refs, md, DS_SHA256_LEN);
    uint64_t nparts = m->form == DS_FORM_INLINE  ? 0
                      : m->form == DS_FORM_PARTS ? m->nrefs
                                                 : m->nparts;
    uint32_t nrefs = m->form == DS_FORM_INLINE ? 0 : m->nrefs;
    int len =
        snprintf(buf, n,
                 "despool-sig-v2\npackage=%s\nversion=%" PRIu64
                 "\nupdate_id=%s\ncodec=%s\nsize=%" PRIu64 "\nzsize=%" PRIu64
                 "\nsha256=%s\ncontent=%s\nnparts=%" PRIu64 "\nrefs=%" PRIu32
                 "\nrefs_sha256=%s\n",
                 m->package, m->version, uid, m->codec, m->size, m->zsize, sha,
                 forms[m->form], nparts, nrefs, refs);
    if (len < 0 || (size_t)len >= n)
        return ds_err_set(err, -ENOSPC, "internal",
                          "%s of %s: longer than %zu bytes", op, m->package, n);
    return len;
}

/* --- Schema number -------------------------------------------------------- */

int ds_value_schema(const void *buf, size_t len, uint64_t *schema, ds_err *err)
{
    static const struct field f[1] = {{"schema", K_UINT, 0, true}};
    struct val v[1];
    int rc = read_map("read schema", buf, len, SIZE_MAX, f, 1, v, err);
    if (rc < 0 || (rc = check_types("read schema", f, 1, v, err)) < 0)
        return rc;
    *schema = v[0].obj.u;
    return 0;
}

/* --- Part events ---------------------------------------------------------- */

enum { P_SCHEMA, P_PACKAGE, P_PART, P_SIZE, P_DATA, P_NFIELDS };

static const struct field part_fields[P_NFIELDS] = {
    [P_SCHEMA] = {"schema", K_UINT, 0, true},
    [P_PACKAGE] = {"package", K_STR, 0, true},
    [P_PART] = {"part", K_BIN, DS_SHA256_LEN, true},
    [P_SIZE] = {"size", K_UINT, 0, true},
    [P_DATA] = {"data", K_BIN, 0, true},
};

/* data is exactly one complete zstd frame declaring size bytes of
 * content: a walk over its frame and block headers, nothing decoded. */
static int check_frame(const char *op, const uint8_t *d, size_t n,
                       uint64_t size, ds_err *err)
{
    if (n < sizeof(zstd_magic) || memcmp(d, zstd_magic, sizeof(zstd_magic)))
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": not a zstd frame (it does not "
                          "start with 28 b5 2f fd)",
                          op);
    size_t fs = ZSTD_findFrameCompressedSize(d, n);
    if (ZSTD_isError(fs))
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": not one complete zstd frame "
                          "(%s)",
                          op, ZSTD_getErrorName(fs));
    if (fs != n)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": %zu byte(s) after the frame's "
                          "%zu (a part is exactly one frame)",
                          op, n - fs, fs);
    unsigned long long cs = ZSTD_getFrameContentSize(d, n);
    if (cs == ZSTD_CONTENTSIZE_UNKNOWN)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": the frame does not declare its "
                          "content size",
                          op);
    if (cs == ZSTD_CONTENTSIZE_ERROR)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": invalid frame header", op);
    if (cs != size)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": the frame holds %llu bytes, "
                          "size says %llu",
                          op, cs, (unsigned long long)size);
    return 0;
}

static int check_part(const char *op, const ds_part *p, ds_err *err)
{
    int rc;
    if (p->schema != DS_SCHEMA_V2)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"schema\": %llu, a part is schema 2", op,
                          (unsigned long long)p->schema);
    if ((rc = check_package(op, p->package, err)) < 0)
        return rc;
    if (p->size < 1 || p->size > DS_PART_SIZE_MAX)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"size\": %u, must be 1..%u", op,
                          (unsigned)p->size, DS_PART_SIZE_MAX);
    if (p->data == NULL && p->data_len > 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: field \"data\": NULL pointer",
                          op);
    if (p->data_len < 1 || p->data_len > DS_PART_ZSIZE_MAX)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": %zu bytes, must be 1..%u", op,
                          p->data_len, DS_PART_ZSIZE_MAX);
    return check_frame(op, p->data, p->data_len, p->size, err);
}

int ds_part_encode(const ds_part *p, uint8_t **out, size_t *out_len,
                   ds_err *err)
{
    const char *op = "encode part";
    const struct field *F = part_fields;
    int rc = ds_mpw_begin(op, p != NULL, out, out_len, err);
    if (rc < 0 || (rc = check_part(op, p, err)) < 0)
        return rc;
    ds_mpw w;
    ds_mpw_init(&w);
    msgpack_packer *pk = &w.pk;
    rc = msgpack_pack_map(pk, P_NFIELDS);
    rc |= ds_mpw_key(pk, F[P_SCHEMA].name);
    rc |= msgpack_pack_uint64(pk, p->schema);
    rc |= ds_mpw_key(pk, F[P_PACKAGE].name);
    rc |= ds_mpw_str(pk, p->package, strlen(p->package));
    rc |= ds_mpw_key(pk, F[P_PART].name);
    rc |= ds_mpw_bin(pk, p->id, DS_SHA256_LEN);
    rc |= ds_mpw_key(pk, F[P_SIZE].name);
    rc |= msgpack_pack_uint64(pk, p->size);
    rc |= ds_mpw_key(pk, F[P_DATA].name);
    rc |= ds_mpw_bin(pk, p->data, p->data_len);
    return ds_mpw_finish(op, &w, rc, 0, out, out_len, err);
}

int ds_part_decode(const void *buf, size_t len, ds_part *p, ds_err *err)
{
    const char *op = "decode part";
    const struct field *F = part_fields;
    struct val v[P_NFIELDS];
    int rc = decode_map(op, p, sizeof(*p), buf, len, SIZE_MAX, F, P_NFIELDS, v,
                        "part", err);
    if (rc < 0)
        return rc;
    p->schema = v[P_SCHEMA].obj.u;
    if ((rc = copy_str(op, "package", &v[P_PACKAGE].obj, p->package,
                       DS_PACKAGE_MAX, err)) < 0)
        goto out;
    memcpy(p->id, v[P_PART].obj.ptr, DS_SHA256_LEN);
    uint64_t size = v[P_SIZE].obj.u;
    if (size < 1 || size > DS_PART_SIZE_MAX) {
        rc = ds_err_set(err, -EINVAL, BAD,
                        "%s: field \"size\": %llu, must be 1..%u", op,
                        (unsigned long long)size, DS_PART_SIZE_MAX);
        goto out;
    }
    p->size = (uint32_t)size;
    p->data = v[P_DATA].obj.ptr;
    p->data_len = (size_t)v[P_DATA].obj.u;
    rc = check_part(op, p, err);
out:
    if (rc < 0) {
        memset(p, 0, sizeof(*p));
        return rc;
    }
    return 0;
}

int ds_part_check(const ds_part *p, const void *key, size_t key_len,
                  const char *package, const ds_part_ref *r, ds_err *err)
{
    char want[DS_PART_KEY_MAX + 1], ex[80];
    int klen = ds_part_key(want, sizeof(want), package, r->id, err);
    if (klen < 0)
        return klen;
    if (key == NULL || key_len != (size_t)klen ||
        memcmp(key, want, key_len) != 0)
        return ds_err_set(
            err, -EINVAL, MISMATCH, "part %s: the record's key is \"%s\"", want,
            key ? ds_err_excerpt(ex, sizeof(ex), key, key_len) : "");
    if (strcmp(p->package, package) != 0)
        return ds_err_set(err, -EINVAL, MISMATCH,
                          "part %s: the record's package is %s", want,
                          p->package);
    if (memcmp(p->id, r->id, DS_SHA256_LEN) != 0) {
        char hx[2 * DS_SHA256_LEN + 1];
        return ds_err_set(err, -EINVAL, MISMATCH,
                          "part %s: the record holds part %s", want,
                          ds_hex(hx, p->id, DS_SHA256_LEN));
    }
    if (p->size != r->size || p->data_len != r->zsize)
        return ds_err_set(err, -EINVAL, MISMATCH,
                          "part %s: the record holds %u bytes in %zu, the "
                          "manifest says %u in %u",
                          want, (unsigned)p->size, p->data_len,
                          (unsigned)r->size, (unsigned)r->zsize);
    return 0;
}

int ds_part_verify(const ds_part *p, void *out, size_t cap, ds_err *err)
{
    char hx[2 * DS_SHA256_LEN + 1];
    if (p == NULL || out == NULL || cap < p->size)
        return ds_err_set(err, -EINVAL, "internal",
                          "verify part: a buffer of %zu bytes for %u", cap,
                          p ? (unsigned)p->size : 0u);
    ds_hex(hx, p->id, DS_SHA256_LEN);
    size_t got = ZSTD_decompress(out, p->size, p->data, p->data_len);
    if (ZSTD_isError(got))
        return ds_err_set(err, -EINVAL, MISMATCH, "part %s/%s: zstd: %s",
                          p->package, hx, ZSTD_getErrorName(got));
    if (got != p->size)
        return ds_err_set(err, -EINVAL, MISMATCH,
                          "part %s/%s: %zu bytes, size says %u", p->package, hx,
                          got, (unsigned)p->size);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (EVP_Digest(out, got, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != DS_SHA256_LEN)
        return ds_err_set(err, -EIO, "internal", "part %s/%s: sha256 failed",
                          p->package, hx);
    if (memcmp(md, p->id, DS_SHA256_LEN) != 0) {
        char gh[2 * DS_SHA256_LEN + 1];
        return ds_err_set(err, -EINVAL, MISMATCH,
                          "part %s/%s: the bytes hash to %s", p->package, hx,
                          ds_hex(gh, md, DS_SHA256_LEN));
    }
    return 0;
}

/* --- Part keys ------------------------------------------------------------ */

int ds_part_key(char *buf, size_t n, const char *package,
                const uint8_t id[DS_SHA256_LEN], ds_err *err)
{
    int rc = check_package("part key", package, err);
    if (rc < 0)
        return rc;
    char hx[2 * DS_SHA256_LEN + 1];
    int len = snprintf(buf, n, "%s/%s", package, ds_hex(hx, id, DS_SHA256_LEN));
    if (len < 0 || (size_t)len >= n)
        return ds_err_set(err, -ENOSPC, "internal",
                          "part key of %s: longer than %zu bytes", package, n);
    return len;
}

int ds_part_key_parse(const void *key, size_t len, char *package,
                      uint8_t id[DS_SHA256_LEN], ds_err *err)
{
    char ex[80];
    const char *k = key;
    const size_t hexlen = 2 * DS_SHA256_LEN;
    if (k == NULL || len < hexlen + 2 || len > DS_PART_KEY_MAX ||
        k[len - hexlen - 1] != '/' || !ds_package_valid(k, len - hexlen - 1))
        return ds_err_set(err, -EINVAL, BAD,
                          "part key \"%s\": not <package>/<64 lowercase hex>",
                          k ? ds_err_excerpt(ex, sizeof(ex), k, len) : "");
    const char *h = k + len - hexlen;
    for (size_t i = 0; i < DS_SHA256_LEN; i++) {
        int hi = ds_hex_digit(h[2 * i]), lo = ds_hex_digit(h[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return ds_err_set(err, -EINVAL, BAD,
                              "part key \"%s\": the part id is not 64 "
                              "lowercase hex digits",
                              ds_err_excerpt(ex, sizeof(ex), k, len));
        id[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(package, k, len - hexlen - 1);
    package[len - hexlen - 1] = '\0';
    return 0;
}
