/*
 * codec.c - schema v1 of the pkg.updates event and the pkg.status record:
 * the msgpack adapter (msgpack-c's C API) and every rule of the schema
 * (schemas/v1/README.md). Encoding writes the fields in one fixed order with
 * the smallest msgpack forms, so equal values always give equal bytes.
 * Decoding first walks the raw bytes without allocating (so a 5-byte value
 * claiming four billion map entries cannot make msgpack-c allocate for
 * them), then lets msgpack-c build the object tree (str and bin point into
 * the caller's buffer: the payload is never copied), then checks types and
 * rules field by field. Every failure has reason "bad-schema" and a message
 * naming the field.
 */
#include "codec.h"

#include <msgpack.h>
#include <stdbool.h>
#include <string.h>

#include "mpwrite.h"

#define BAD             "bad-schema"
#define CODEC_ZSTD      "zstd"
#define SITE_PUBLISHED  "_published"
#define KEY_ID_PATTERN  "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
#define PACKAGE_PATTERN "[A-Za-z0-9][A-Za-z0-9._-]{0,127}"

static bool id_char(unsigned char c, bool first)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9'))
        return true;
    return !first && (c == '.' || c == '_' || c == '-');
}

/* [A-Za-z0-9][A-Za-z0-9._-]{0,max-1}: safe as one directory name (no '/',
 * no leading dot, so never "." or "..") and as part of a Kafka key. */
static int id_valid(const char *s, size_t len, size_t max)
{
    if (s == NULL || len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!id_char((unsigned char)s[i], i == 0))
            return 0;
    return 1;
}

int ds_package_valid(const char *s, size_t len)
{
    return id_valid(s, len, DS_PACKAGE_MAX);
}

int ds_site_valid(const char *s, size_t len)
{
    return id_valid(s, len, DS_SITE_MAX);
}

int ds_key_id_valid(const char *s, size_t len)
{
    return id_valid(s, len, DS_KEY_ID_MAX);
}

static int status_site_valid(const char *s, size_t len)
{
    return ds_site_valid(s, len) || (len == strlen(SITE_PUBLISHED) &&
                                     memcmp(s, SITE_PUBLISHED, len) == 0);
}

/* --- Structural pre-check -------------------------------------------- */

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* How to skip each type byte 0xc0..0xdf (the fix* ranges are handled in
 * code): hdr length bytes follow the type byte, then `fixed` payload bytes,
 * or the length itself counts payload bytes (+1 type byte for ext), or
 * array elements, or map pairs. */
enum skip_kind { SK_FIXED, SK_LEN, SK_EXT, SK_ARRAY, SK_MAP, SK_INVALID };

struct skip_rule {
    uint8_t hdr;
    uint8_t fixed;
    uint8_t kind;
};

static const struct skip_rule skip_rules[32] = {
    {0, 0, SK_FIXED},  {0, 0, SK_INVALID}, {0, 0, SK_FIXED}, /* c0-c2 */
    {0, 0, SK_FIXED},  {1, 0, SK_LEN},     {2, 0, SK_LEN},   /* c3-c5 */
    {4, 0, SK_LEN},    {1, 0, SK_EXT},     {2, 0, SK_EXT},   /* c6-c8 */
    {4, 0, SK_EXT},    {0, 4, SK_FIXED},   {0, 8, SK_FIXED}, /* c9-cb */
    {0, 1, SK_FIXED},  {0, 2, SK_FIXED},   {0, 4, SK_FIXED}, /* cc-ce */
    {0, 8, SK_FIXED},  {0, 1, SK_FIXED},   {0, 2, SK_FIXED}, /* cf-d1 */
    {0, 4, SK_FIXED},  {0, 8, SK_FIXED},   {0, 2, SK_FIXED}, /* d2-d4 */
    {0, 3, SK_FIXED},  {0, 5, SK_FIXED},   {0, 9, SK_FIXED}, /* d5-d7 */
    {0, 17, SK_FIXED}, {1, 0, SK_LEN},     {2, 0, SK_LEN},   /* d8-da */
    {4, 0, SK_LEN},    {2, 0, SK_ARRAY},   {4, 0, SK_ARRAY}, /* db-dd */
    {2, 0, SK_MAP},    {4, 0, SK_MAP},                       /* de-df */
};

/*
 * Find the end of the first msgpack object in p[0..len) without building
 * it. A value that passes is complete within len, so every array/map count
 * in it is bounded by len, and so is what msgpack-c allocates up front for
 * them (count * sizeof(msgpack_object)): a 5-byte value claiming four
 * billion entries is refused here. `pending` counts the objects still to
 * read; each takes at least one byte, so pending > bytes left means
 * truncated already (an early exit that also keeps pending from growing
 * without bound). Returns 0 and *span, or -1 with *why set.
 */
static int mp_span(const uint8_t *p, size_t len, size_t *span, const char **why)
{
    size_t off = 0;
    uint64_t pending = 1;
    while (pending > 0) {
        if (off >= len)
            goto truncated;
        uint8_t b = p[off++];
        pending--;
        struct skip_rule r = {0, 0, SK_FIXED};
        if (b <= 0x7f || b >= 0xe0) {
            /* positive or negative fixint */
        } else if (b <= 0x8f) {
            pending += 2u * (b & 0x0fu);
        } else if (b <= 0x9f) {
            pending += b & 0x0fu;
        } else if (b <= 0xbf) {
            r.fixed = b & 0x1fu;
        } else {
            r = skip_rules[b - 0xc0];
        }
        if (r.kind == SK_INVALID) {
            *why = "invalid msgpack (type byte 0xc1)";
            return -1;
        }
        if (len - off < r.hdr)
            goto truncated;
        uint64_t n = load_be(p + off, r.hdr);
        off += r.hdr;
        uint64_t skip = r.fixed;
        if (r.kind == SK_LEN)
            skip = n;
        else if (r.kind == SK_EXT)
            skip = n + 1;
        else if (r.kind == SK_ARRAY)
            pending += n;
        else if (r.kind == SK_MAP)
            pending += 2 * n;
        if (len - off < skip)
            goto truncated;
        off += (size_t)skip;
        if (pending > len - off)
            goto truncated;
    }
    *span = off;
    return 0;
truncated:
    *why = "truncated msgpack (the value ends before its last element)";
    return -1;
}

static const char *type_name(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "float";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "unknown";
}

/* --- Field tables ----------------------------------------------------- */

enum kind { K_UINT, K_STR, K_BIN };

struct field {
    const char *name;
    enum kind kind;
    uint32_t fixed; /* exact bin length, 0 = any */
    bool required;
};

enum {
    E_SCHEMA,
    E_PACKAGE,
    E_VERSION,
    E_UPDATE_ID,
    E_CHUNK,
    E_CHUNKS,
    E_CODEC,
    E_SIZE,
    E_ZSIZE,
    E_SHA256,
    E_CREATED_MS,
    E_SIG,
    E_KEY_ID,
    E_DATA,
    E_NFIELDS
};

/* Order of this table is the encoding order (schemas/v1/README.md). */
static const struct field event_fields[E_NFIELDS] = {
    [E_SCHEMA] = {"schema", K_UINT, 0, true},
    [E_PACKAGE] = {"package", K_STR, 0, true},
    [E_VERSION] = {"version", K_UINT, 0, true},
    [E_UPDATE_ID] = {"update_id", K_BIN, DS_UPDATE_ID_LEN, true},
    [E_CHUNK] = {"chunk", K_UINT, 0, true},
    [E_CHUNKS] = {"chunks", K_UINT, 0, true},
    [E_CODEC] = {"codec", K_STR, 0, true},
    [E_SIZE] = {"size", K_UINT, 0, true},
    [E_ZSIZE] = {"zsize", K_UINT, 0, true},
    [E_SHA256] = {"sha256", K_BIN, DS_SHA256_LEN, true},
    [E_CREATED_MS] = {"created_ms", K_UINT, 0, true},
    [E_SIG] = {"sig", K_BIN, DS_SIG_LEN, false},
    [E_KEY_ID] = {"key_id", K_STR, 0, false},
    [E_DATA] = {"data", K_BIN, 0, true},
};

enum { S_SITE, S_PACKAGE, S_VERSION, S_STATE, S_DETAIL, S_AT_MS, S_NFIELDS };

static const struct field status_fields[S_NFIELDS] = {
    [S_SITE] = {"site", K_STR, 0, true},
    [S_PACKAGE] = {"package", K_STR, 0, true},
    [S_VERSION] = {"version", K_UINT, 0, true},
    [S_STATE] = {"state", K_STR, 0, true},
    [S_DETAIL] = {"detail", K_STR, 0, true},
    [S_AT_MS] = {"at_ms", K_UINT, 0, true},
};

/* "retired": pkgpub retire's _published record (schemas/v2 section 11). */
static const char *const status_states[] = {"published", "installed", "failed",
                                            "retired"};

static bool key_is(const msgpack_object *key, const char *name)
{
    size_t n = strlen(name);
    return key->via.str.size == n && memcmp(key->via.str.ptr, name, n) == 0;
}

/*
 * Parse buf as exactly one msgpack map with str keys, check each known
 * field's type (and fixed bin length), and store a pointer to its value in
 * vals[] (NULL when absent). Unknown keys are skipped; a repeated known key
 * is an error (two readers could otherwise pick different values).
 * On success *res holds the tree; the caller destroys it.
 */
static int parse_map(const char *op, const void *buf, size_t len,
                     const struct field *fields, size_t nfields,
                     const msgpack_object **vals, msgpack_unpacked *res,
                     ds_err *err)
{
    const char *why = NULL;
    size_t span = 0;
    if (buf == NULL && len > 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: NULL buffer", op);
    if (len == 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: empty value", op);
    if (mp_span(buf, len, &span, &why) < 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: %s", op, why);
    if (span != len)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: %zu trailing byte(s) after the msgpack value "
                          "(a value is exactly one map)",
                          op, len - span);

    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(res, buf, span, &off);
    /* The pre-check bounded every allocation by len, so a failure here is
     * the value's fault (msgpack-c nests at most 32 levels). */
    if (ur != MSGPACK_UNPACK_SUCCESS || off != span)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: msgpack-c cannot parse the value (code %d: "
                          "invalid, or nested more than 32 levels)",
                          op, (int)ur);

    const msgpack_object *root = &res->data;
    if (root->type != MSGPACK_OBJECT_MAP)
        return ds_err_set(err, -EINVAL, BAD, "%s: expected a map, got %s", op,
                          type_name(root));

    for (size_t i = 0; i < nfields; i++)
        vals[i] = NULL;
    const msgpack_object_map *m = &root->via.map;
    for (uint32_t k = 0; k < m->size; k++) {
        const msgpack_object *key = &m->ptr[k].key;
        const msgpack_object *val = &m->ptr[k].val;
        if (key->type != MSGPACK_OBJECT_STR)
            return ds_err_set(
                err, -EINVAL, BAD,
                "%s: map key at position %u is %s, keys must be str", op, k,
                type_name(key));
        size_t f;
        for (f = 0; f < nfields; f++)
            if (key_is(key, fields[f].name))
                break;
        if (f == nfields)
            continue; /* unknown field: forward compatible */
        const char *name = fields[f].name;
        if (vals[f] != NULL)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"%s\": duplicate key", op, name);
        switch (fields[f].kind) {
        case K_UINT:
            if (val->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return ds_err_set(err, -EINVAL, BAD,
                                  "%s: field \"%s\": expected uint, got %s", op,
                                  name, type_name(val));
            break;
        case K_STR:
            if (val->type != MSGPACK_OBJECT_STR)
                return ds_err_set(err, -EINVAL, BAD,
                                  "%s: field \"%s\": expected str, got %s", op,
                                  name, type_name(val));
            break;
        case K_BIN:
            if (val->type != MSGPACK_OBJECT_BIN)
                return ds_err_set(err, -EINVAL, BAD,
                                  "%s: field \"%s\": expected bin, got %s", op,
                                  name, type_name(val));
            if (fields[f].fixed && val->via.bin.size != fields[f].fixed)
                return ds_err_set(err, -EINVAL, BAD,
                                  "%s: field \"%s\": expected bin of %u "
                                  "bytes, got %u bytes",
                                  op, name, (unsigned)fields[f].fixed,
                                  (unsigned)val->via.bin.size);
            break;
        }
        vals[f] = val;
    }
    return 0;
}

static int missing(const char *op, const struct field *fields, size_t nfields,
                   const msgpack_object **vals, ds_err *err)
{
    for (size_t f = 0; f < nfields; f++)
        if (fields[f].required && vals[f] == NULL)
            return ds_err_set(err, -EINVAL, BAD,
                              "%s: field \"%s\": missing (required)", op,
                              fields[f].name);
    return 0;
}

/* Copy a str value into a NUL-terminated buffer of cap+1 bytes. */
static int copy_str(const char *op, const char *name, const msgpack_object *o,
                    char *dst, size_t cap, ds_err *err)
{
    size_t n = o->via.str.size;
    if (n > cap)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"%s\": %zu bytes, at most %zu allowed",
                          op, name, n, cap);
    if (memchr(o->via.str.ptr, '\0', n) != NULL)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"%s\": contains a NUL byte", op, name);
    memcpy(dst, o->via.str.ptr, n);
    dst[n] = '\0';
    return 0;
}

/* --- Rules ------------------------------------------------------------ */

/*
 * Every value rule of an event, shared by encode and decode so that a
 * producer can never emit what a consumer rejects. Types were checked
 * before (decode) or are given by the struct (encode); strings in ev are
 * NUL-terminated within their arrays.
 */
static int check_event(const char *op, const ds_event *ev, ds_err *err)
{
    char ex[48];
    if (ev->schema != DS_SCHEMA_V1)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"schema\": unsupported schema %llu "
                          "(this reader knows %d)",
                          op, (unsigned long long)ev->schema, DS_SCHEMA_V1);
    size_t plen = strnlen(ev->package, sizeof(ev->package));
    if (!ds_package_valid(ev->package, plen))
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"package\": \"%s\" (%zu bytes) is not "
                          "a package id " PACKAGE_PATTERN,
                          op, ds_err_excerpt(ex, sizeof(ex), ev->package, plen),
                          plen);
    if (ev->version < 1)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"version\": 0, must be >= 1", op);
    if (ev->chunks < 1)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"chunks\": 0, must be >= 1", op);
    if (ev->chunk >= ev->chunks)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"chunk\": %u, must be < chunks (%u)", op,
                          (unsigned)ev->chunk, (unsigned)ev->chunks);
    size_t clen = strnlen(ev->codec, sizeof(ev->codec));
    if (clen != strlen(CODEC_ZSTD) || memcmp(ev->codec, CODEC_ZSTD, clen) != 0)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"codec\": \"%s\" unsupported, "
                          "expected \"" CODEC_ZSTD "\"",
                          op, ds_err_excerpt(ex, sizeof(ex), ev->codec, clen));
    if (ev->zsize < 1)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"zsize\": 0, must be >= 1", op);
    /* Every chunk carries at least one byte, so chunks <= zsize. */
    if (ev->chunks > ev->zsize)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"chunks\": %u chunks for zsize %llu "
                          "(every chunk carries at least one byte)",
                          op, (unsigned)ev->chunks,
                          (unsigned long long)ev->zsize);
    if (ev->data == NULL && ev->data_len > 0)
        return ds_err_set(err, -EINVAL, BAD, "%s: field \"data\": NULL pointer",
                          op);
    if (ev->data_len < 1)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": empty, must hold >= 1 byte", op);
    if (ev->data_len > ev->zsize)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"data\": %zu bytes, more than zsize "
                          "%llu",
                          op, ev->data_len, (unsigned long long)ev->zsize);
    if (ev->has_sig) {
        size_t klen = strnlen(ev->key_id, sizeof(ev->key_id));
        if (!id_valid(ev->key_id, klen, DS_KEY_ID_MAX))
            return ds_err_set(
                err, -EINVAL, BAD,
                "%s: field \"key_id\": \"%s\" is not a key id " KEY_ID_PATTERN,
                op, ds_err_excerpt(ex, sizeof(ex), ev->key_id, klen));
    }
    return 0;
}

static int check_status(const char *op, const ds_status *st, ds_err *err)
{
    char ex[48];
    size_t slen = strnlen(st->site, sizeof(st->site));
    if (!status_site_valid(st->site, slen))
        return ds_err_set(
            err, -EINVAL, BAD,
            "%s: field \"site\": \"%s\" is not a site name " PACKAGE_PATTERN
            " or \"" SITE_PUBLISHED "\"",
            op, ds_err_excerpt(ex, sizeof(ex), st->site, slen));
    size_t plen = strnlen(st->package, sizeof(st->package));
    if (!ds_package_valid(st->package, plen))
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"package\": \"%s\" (%zu bytes) is not "
                          "a package id " PACKAGE_PATTERN,
                          op, ds_err_excerpt(ex, sizeof(ex), st->package, plen),
                          plen);
    size_t tlen = strnlen(st->state, sizeof(st->state));
    bool known = false;
    for (size_t i = 0; i < sizeof(status_states) / sizeof(*status_states); i++)
        if (tlen == strlen(status_states[i]) &&
            memcmp(st->state, status_states[i], tlen) == 0)
            known = true;
    if (!known)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"state\": \"%s\" unknown, expected "
                          "published, installed or failed",
                          op, ds_err_excerpt(ex, sizeof(ex), st->state, tlen));
    return 0;
}

/* --- Event ------------------------------------------------------------ */

/* Pack ev in the fixed field order (event_fields; sig/key_id only if
 * signed), "data" last; its body only when body is set (else just the bin
 * header for ev->data_len bytes). */
static int pack_event(msgpack_packer *pk, const ds_event *ev, int body)
{
    const struct field *F = event_fields;
    int rc = msgpack_pack_map(pk, ev->has_sig ? 14 : 12);
    rc |= ds_mpw_key(pk, F[E_SCHEMA].name);
    rc |= msgpack_pack_uint64(pk, ev->schema);
    rc |= ds_mpw_key(pk, F[E_PACKAGE].name);
    rc |= ds_mpw_str(pk, ev->package, strlen(ev->package));
    rc |= ds_mpw_key(pk, F[E_VERSION].name);
    rc |= msgpack_pack_uint64(pk, ev->version);
    rc |= ds_mpw_key(pk, F[E_UPDATE_ID].name);
    rc |= ds_mpw_bin(pk, ev->update_id, DS_UPDATE_ID_LEN);
    rc |= ds_mpw_key(pk, F[E_CHUNK].name);
    rc |= msgpack_pack_uint64(pk, ev->chunk);
    rc |= ds_mpw_key(pk, F[E_CHUNKS].name);
    rc |= msgpack_pack_uint64(pk, ev->chunks);
    rc |= ds_mpw_key(pk, F[E_CODEC].name);
    rc |= ds_mpw_str(pk, ev->codec, strlen(ev->codec));
    rc |= ds_mpw_key(pk, F[E_SIZE].name);
    rc |= msgpack_pack_uint64(pk, ev->size);
    rc |= ds_mpw_key(pk, F[E_ZSIZE].name);
    rc |= msgpack_pack_uint64(pk, ev->zsize);
    rc |= ds_mpw_key(pk, F[E_SHA256].name);
    rc |= ds_mpw_bin(pk, ev->sha256, DS_SHA256_LEN);
    rc |= ds_mpw_key(pk, F[E_CREATED_MS].name);
    rc |= msgpack_pack_uint64(pk, ev->created_ms);
    if (ev->has_sig) {
        rc |= ds_mpw_key(pk, F[E_SIG].name);
        rc |= ds_mpw_bin(pk, ev->sig, DS_SIG_LEN);
        rc |= ds_mpw_key(pk, F[E_KEY_ID].name);
        rc |= ds_mpw_str(pk, ev->key_id, strlen(ev->key_id));
    }
    rc |= ds_mpw_key(pk, F[E_DATA].name);
    if (body)
        rc |= ds_mpw_bin(pk, ev->data, ev->data_len);
    else
        rc |= msgpack_pack_bin(pk, ev->data_len);
    return rc;
}

/* Encode ev, with data's body (whole event) or without (header only: data
 * is then not looked at, but checked as a whole event would be). */
static int encode(const char *op, const ds_event *ev, int body, uint8_t **out,
                  size_t *out_len, ds_err *err)
{
    int rc = ds_mpw_begin(op, ev != NULL, out, out_len, err);
    if (rc < 0)
        return rc;
    ds_event chk = *ev;
    static const uint8_t stand_in = 0;
    if (!body)
        chk.data = &stand_in;
    if ((rc = check_event(op, &chk, err)) < 0)
        return rc;
    ds_mpw w;
    ds_mpw_init(&w);
    rc = pack_event(&w.pk, ev, body);
    return ds_mpw_finish(op, &w, rc, 0, out, out_len, err);
}

int ds_event_encode(const ds_event *ev, uint8_t **out, size_t *out_len,
                    ds_err *err)
{
    return encode("encode event", ev, 1, out, out_len, err);
}

int ds_event_encode_head(const ds_event *ev, uint8_t **out, size_t *out_len,
                         ds_err *err)
{
    return encode("encode event header", ev, 0, out, out_len, err);
}

static uint64_t u64(const msgpack_object *o)
{
    return o->via.u64;
}

static int get_u32(const char *op, const char *name, const msgpack_object *o,
                   uint32_t *dst, ds_err *err)
{
    if (o->via.u64 > UINT32_MAX)
        return ds_err_set(err, -EINVAL, BAD,
                          "%s: field \"%s\": %llu out of range (at most "
                          "%lu)",
                          op, name, (unsigned long long)o->via.u64,
                          (unsigned long)UINT32_MAX);
    *dst = (uint32_t)o->via.u64;
    return 0;
}

int ds_event_decode(const void *buf, size_t len, ds_event *ev, ds_err *err)
{
    const char *op = "decode event";
    const struct field *F = event_fields;
    const msgpack_object *v[E_NFIELDS];
    msgpack_unpacked res;
    if (ev == NULL)
        return ds_err_set(err, -EINVAL, BAD, "%s: NULL argument", op);
    memset(ev, 0, sizeof(*ev));
    msgpack_unpacked_init(&res);
    int rc = parse_map(op, buf, len, F, E_NFIELDS, v, &res, err);
    if (rc < 0)
        goto out;
    /* The schema number decides how to read the rest: check it first, so
     * a v2 event is reported as such rather than as a missing field. */
    if (v[E_SCHEMA] != NULL && u64(v[E_SCHEMA]) != DS_SCHEMA_V1) {
        rc = ds_err_set(err, -EINVAL, BAD,
                        "%s: field \"schema\": unsupported schema %llu "
                        "(this reader knows %d)",
                        op, (unsigned long long)u64(v[E_SCHEMA]), DS_SCHEMA_V1);
        goto out;
    }
    if ((rc = missing(op, F, E_NFIELDS, v, err)) < 0)
        goto out;
    if ((v[E_SIG] == NULL) != (v[E_KEY_ID] == NULL)) {
        const char *name = v[E_SIG] ? "key_id" : "sig";
        rc = ds_err_set(err, -EINVAL, BAD,
                        "%s: field \"%s\": missing (sig and key_id go "
                        "together)",
                        op, name);
        goto out;
    }

    ev->schema = u64(v[E_SCHEMA]);
    if ((rc = copy_str(op, "package", v[E_PACKAGE], ev->package, DS_PACKAGE_MAX,
                       err)) < 0)
        goto out;
    ev->version = u64(v[E_VERSION]);
    memcpy(ev->update_id, v[E_UPDATE_ID]->via.bin.ptr, DS_UPDATE_ID_LEN);
    if ((rc = get_u32(op, "chunk", v[E_CHUNK], &ev->chunk, err)) < 0 ||
        (rc = get_u32(op, "chunks", v[E_CHUNKS], &ev->chunks, err)) < 0)
        goto out;
    if ((rc = copy_str(op, "codec", v[E_CODEC], ev->codec, DS_CODEC_MAX, err)) <
        0)
        goto out;
    ev->size = u64(v[E_SIZE]);
    ev->zsize = u64(v[E_ZSIZE]);
    memcpy(ev->sha256, v[E_SHA256]->via.bin.ptr, DS_SHA256_LEN);
    ev->created_ms = u64(v[E_CREATED_MS]);
    if (v[E_SIG] != NULL) {
        ev->has_sig = 1;
        memcpy(ev->sig, v[E_SIG]->via.bin.ptr, DS_SIG_LEN);
        if ((rc = copy_str(op, "key_id", v[E_KEY_ID], ev->key_id, DS_KEY_ID_MAX,
                           err)) < 0)
            goto out;
    }
    /* msgpack_unpack_next leaves bin.ptr pointing into buf (no copy), so
     * data borrows the caller's buffer as codec.h promises. */
    ev->data = (const uint8_t *)v[E_DATA]->via.bin.ptr;
    ev->data_len = v[E_DATA]->via.bin.size;
    rc = check_event(op, ev, err);
out:
    msgpack_unpacked_destroy(&res);
    if (rc < 0) {
        memset(ev, 0, sizeof(*ev));
        return rc;
    }
    return 0;
}

int ds_event_same_update(const ds_event *a, const ds_event *b)
{
    if (a == NULL || b == NULL)
        return 0;
    if (a->schema != b->schema || a->version != b->version ||
        a->chunks != b->chunks || a->size != b->size || a->zsize != b->zsize ||
        a->created_ms != b->created_ms || !a->has_sig != !b->has_sig)
        return 0;
    if (strncmp(a->package, b->package, sizeof(a->package)) != 0 ||
        strncmp(a->codec, b->codec, sizeof(a->codec)) != 0 ||
        memcmp(a->update_id, b->update_id, DS_UPDATE_ID_LEN) != 0 ||
        memcmp(a->sha256, b->sha256, DS_SHA256_LEN) != 0)
        return 0;
    if (a->has_sig && (memcmp(a->sig, b->sig, DS_SIG_LEN) != 0 ||
                       strncmp(a->key_id, b->key_id, sizeof(a->key_id)) != 0))
        return 0;
    return 1;
}

/* --- Status ----------------------------------------------------------- */

/* Length of detail as encoded: at most DS_DETAIL_MAX bytes, cut back to a
 * UTF-8 character boundary when it has to be truncated. */
static size_t detail_len(const char *d, size_t cap)
{
    size_t n = strnlen(d, cap + 1);
    if (n <= cap)
        return n;
    n = cap;
    while (n > 0 && ((unsigned char)d[n] & 0xc0) == 0x80)
        n--;
    return n;
}

int ds_status_encode(const ds_status *st, uint8_t **out, size_t *out_len,
                     ds_err *err)
{
    const char *op = "encode status";
    int rc = ds_mpw_begin(op, st != NULL, out, out_len, err);
    if (rc < 0)
        return rc;
    size_t dlen = detail_len(st->detail, DS_DETAIL_MAX);
    if ((rc = check_status(op, st, err)) < 0)
        return rc;

    ds_mpw w;
    ds_mpw_init(&w);
    msgpack_packer *pk = &w.pk;
    const struct field *F = status_fields;
    rc |= msgpack_pack_map(pk, S_NFIELDS);
    rc |= ds_mpw_key(pk, F[S_SITE].name);
    rc |= ds_mpw_str(pk, st->site, strlen(st->site));
    rc |= ds_mpw_key(pk, F[S_PACKAGE].name);
    rc |= ds_mpw_str(pk, st->package, strlen(st->package));
    rc |= ds_mpw_key(pk, F[S_VERSION].name);
    rc |= msgpack_pack_uint64(pk, st->version);
    rc |= ds_mpw_key(pk, F[S_STATE].name);
    rc |= ds_mpw_str(pk, st->state, strlen(st->state));
    rc |= ds_mpw_key(pk, F[S_DETAIL].name);
    rc |= ds_mpw_str(pk, st->detail, dlen);
    rc |= ds_mpw_key(pk, F[S_AT_MS].name);
    rc |= msgpack_pack_uint64(pk, st->at_ms);
    return ds_mpw_finish(op, &w, rc, 0, out, out_len, err);
}

int ds_status_decode(const void *buf, size_t len, ds_status *st, ds_err *err)
{
    const char *op = "decode status";
    const struct field *F = status_fields;
    const msgpack_object *v[S_NFIELDS];
    msgpack_unpacked res;
    if (st == NULL)
        return ds_err_set(err, -EINVAL, BAD, "%s: NULL argument", op);
    memset(st, 0, sizeof(*st));
    msgpack_unpacked_init(&res);
    int rc = parse_map(op, buf, len, F, S_NFIELDS, v, &res, err);
    if (rc < 0 || (rc = missing(op, F, S_NFIELDS, v, err)) < 0)
        goto out;
    if ((rc = copy_str(op, "site", v[S_SITE], st->site, DS_SITE_MAX, err)) <
            0 ||
        (rc = copy_str(op, "package", v[S_PACKAGE], st->package, DS_PACKAGE_MAX,
                       err)) < 0 ||
        (rc = copy_str(op, "state", v[S_STATE], st->state, DS_STATE_MAX, err)) <
            0 ||
        (rc = copy_str(op, "detail", v[S_DETAIL], st->detail, DS_DETAIL_MAX,
                       err)) < 0)
        goto out;
    st->version = u64(v[S_VERSION]);
    st->at_ms = u64(v[S_AT_MS]);
    rc = check_status(op, st, err);
out:
    msgpack_unpacked_destroy(&res);
    if (rc < 0) {
        memset(st, 0, sizeof(*st));
        return rc;
    }
    return 0;
}
