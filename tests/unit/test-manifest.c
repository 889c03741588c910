/*
 * test-manifest.c - schema v2 codec (common/manifest.c): every vector of
 * schemas/v2/vectors.txt (decoded meaning, canonical re-encoding, error
 * field, signing text, signatures, part checks) and every manifest marked
 * e2e run end to end from its part vectors (fetch by id, check, verify,
 * decompress, sha256); round trips; limits at their boundaries; a 16 GiB
 * version (18,725 parts) through the index form; hostile inputs.
 */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "manifest.h"
#include "sign.h"
#include "vectors.h"

/* --- helpers ---------------------------------------------------------- */

/* A growing "k=v\n" text. */
typedef struct text {
    char *s;
    size_t n;
} text;

static void put(text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int add = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    cr_assert_geq(add, 0);
    t->s = realloc(t->s, t->n + (size_t)add + 2);
    cr_assert_not_null(t->s);
    va_start(ap, fmt);
    vsnprintf(t->s + t->n, (size_t)add + 1, fmt, ap);
    va_end(ap);
    t->n += (size_t)add;
    t->s[t->n++] = '\n';
    t->s[t->n] = '\0';
}

static void put_hex(text *t, const char *key, const uint8_t *p, size_t n)
{
    char *h = malloc(2 * n + 1);
    cr_assert_not_null(h);
    hex_of(h, p, n);
    put(t, "%s=%s", key, h);
    free(h);
}

static void put_ref(text *t, const ds_part_ref *r)
{
    char h[2 * DS_SHA256_LEN + 1];
    hex_of(h, r->id, DS_SHA256_LEN);
    put(t, "ref=%s %u %u %d %lld", h, (unsigned)r->size, (unsigned)r->zsize,
        (int)r->partition, (long long)r->offset);
}

/* The meaning of a decoded manifest in the vectors' field=value form,
 * canonical order; written independently of the codec. */
static char *render_manifest(const ds_manifest *m)
{
    text t = {0};
    put(&t, "schema=%llu", (unsigned long long)m->schema);
    put(&t, "package=%s", m->package);
    put(&t, "version=%llu", (unsigned long long)m->version);
    put_hex(&t, "update_id", m->update_id, DS_UPDATE_ID_LEN);
    put(&t, "codec=%s", m->codec);
    put(&t, "size=%llu", (unsigned long long)m->size);
    put(&t, "zsize=%llu", (unsigned long long)m->zsize);
    put_hex(&t, "sha256", m->sha256, DS_SHA256_LEN);
    put(&t, "created_ms=%llu", (unsigned long long)m->created_ms);
    if (m->has_sig) {
        put_hex(&t, "sig", m->sig, DS_SIG_LEN);
        put(&t, "key_id=%s", m->key_id);
    }
    if (m->form == DS_FORM_INDEX)
        put(&t, "nparts=%llu", (unsigned long long)m->nparts);
    if (m->form == DS_FORM_INLINE) {
        put_hex(&t, "data", m->data, m->data_len);
    } else {
        ds_part_ref *refs = calloc(m->nrefs, sizeof(*refs));
        ds_err err = {0};
        cr_assert_not_null(refs);
        cr_assert_eq(ds_manifest_refs(m, refs, m->nrefs, &err), (int)m->nrefs,
                     "%s", err.msg);
        put(&t, "%s=%u", m->form == DS_FORM_INDEX ? "index" : "parts",
            (unsigned)m->nrefs);
        for (uint32_t i = 0; i < m->nrefs; i++)
            put_ref(&t, &refs[i]);
        free(refs);
    }
    return t.s;
}

static char *render_part(const ds_part *p)
{
    text t = {0};
    put(&t, "schema=%llu", (unsigned long long)p->schema);
    put(&t, "package=%s", p->package);
    put_hex(&t, "part", p->id, DS_SHA256_LEN);
    put(&t, "size=%u", (unsigned)p->size);
    put_hex(&t, "data", p->data, p->data_len);
    return t.s;
}

static void sha256(const void *p, size_t n, uint8_t md[32])
{
    unsigned len = 0;
    cr_assert_eq(EVP_Digest(p, n, md, &len, EVP_sha256(), NULL), 1);
    cr_assert_eq(len, 32);
}

/* Kafka's murmur2 (schemas/v1/README.md section 1), written here apart
 * from the vector generator's. */
static uint32_t murmur2(const uint8_t *d, size_t n)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)n;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t k = (uint32_t)d[i] | (uint32_t)d[i + 1] << 8 |
                     (uint32_t)d[i + 2] << 16 | (uint32_t)d[i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h = h * m ^ k;
    }
    switch (n - i) {
    case 3:
        h ^= (uint32_t)d[i + 2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)d[i + 1] << 8;
        /* fall through */
    case 1:
        h ^= d[i];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

static const uint8_t rfc8032_seed[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
    0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
    0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};

/* --- the vector file -------------------------------------------------- */

#define MAXV 400

struct vec {
    int line;
    char *name, *kind, *valid, *canonical, *error_field, *hex;
    char *sigmsg, *e2e, *public_key, *signature, *key, *verify, *topic, *value,
        *murmur, *partition24;
    text meaning;
    uint8_t *buf; /* hex decoded; decoded structs borrow from it */
    long len;
};

static char **header_slot(struct vec *v, const char *k, int lineno)
{
    v->line = lineno;
    struct {
        const char *name;
        char **slot;
    } map[] = {
        {"name", &v->name},
        {"kind", &v->kind},
        {"valid", &v->valid},
        {"canonical", &v->canonical},
        {"error-field", &v->error_field},
        {"hex", &v->hex},
        {"signing-message", &v->sigmsg},
        {"e2e", &v->e2e},
        {"public-key", &v->public_key},
        {"signature", &v->signature},
        {"key", &v->key},
        {"verify", &v->verify},
        {"topic", &v->topic},
        {"value", &v->value},
        {"murmur2", &v->murmur},
        {"partition-24", &v->partition24},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++)
        if (strcmp(map[i].name, k) == 0)
            return map[i].slot;
    return NULL;
}

/* Where load_vectors puts what walk_vectors reads. */
struct loader {
    struct vec cur, *vs;
    int n;
};

static char **load_header(void *ctx, const char *k, int lineno)
{
    return header_slot(&((struct loader *)ctx)->cur, k, lineno);
}

static void load_meaning(void *ctx, const char *line)
{
    put(&((struct loader *)ctx)->cur.meaning, "%s", line);
}

static void load_close(void *ctx, int lineno)
{
    struct loader *l = ctx;
    if (l->cur.name != NULL) {
        cr_assert_lt(l->n, MAXV);
        l->vs[l->n++] = l->cur;
    } else {
        cr_assert_null(l->cur.hex, "line %d: block without name", lineno);
    }
    memset(&l->cur, 0, sizeof(l->cur));
}

/* Split the file into vectors (blocks with a name: line). */
static int load_vectors(char *textbuf, struct vec *vs)
{
    struct loader l;
    memset(&l, 0, sizeof(l));
    l.vs = vs;
    walk_vectors(textbuf, &l, load_header, load_meaning, load_close);
    cr_assert_null(l.cur.name, "the file must end with a newline");
    return l.n;
}

static void expect_rejected(const struct vec *v, int rc, const ds_err *err,
                            const char *reason)
{
    cr_expect_lt(rc, 0, "%s: must be rejected", v->name);
    cr_expect_str_eq(err->reason, reason, "%s: reason (%s)", v->name, err->msg);
    cr_expect_neq(err->msg[0], '\0', "%s: empty message", v->name);
    if (v->error_field == NULL || strcmp(v->error_field, "-") == 0) {
        cr_expect_null(strstr(err->msg, "field \""),
                       "%s: structural error names a field: %s", v->name,
                       err->msg);
    } else {
        char quoted[80];
        snprintf(quoted, sizeof(quoted), "field \"%s\"", v->error_field);
        cr_expect_not_null(strstr(err->msg, quoted),
                           "%s: message \"%s\" does not name %s", v->name,
                           err->msg, quoted);
    }
}

static void expect_hex(const struct vec *v, const uint8_t *p, size_t n)
{
    char *h = malloc(2 * n + 1);
    cr_assert_not_null(h);
    hex_of(h, p, n);
    cr_expect_str_eq(h, v->hex, "%s: canonical re-encoding differs", v->name);
    free(h);
}

static void unescape(char *dst, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++) {
        if (s[0] == '\\' && s[1] == 'n') {
            dst[o++] = '\n';
            s++;
        } else {
            dst[o++] = *s;
        }
    }
    dst[o] = '\0';
}

static void check_manifest_vector(struct vec *v)
{
    ds_manifest m;
    ds_err err = {0};
    int rc = ds_manifest_decode(v->buf, (size_t)v->len, &m, &err);
    if (strcmp(v->valid, "no") == 0) {
        expect_rejected(v, rc, &err, "bad-schema");
        cr_expect_eq(m.form, 0, "%s: m not cleared", v->name);
        return;
    }
    cr_assert_eq(rc, 0, "%s: must decode: %s", v->name, err.msg);
    char *got = render_manifest(&m);
    cr_expect_str_eq(got, v->meaning.s, "%s: decoded meaning differs", v->name);
    free(got);
    uint64_t schema = 0;
    cr_expect_eq(ds_value_schema(v->buf, (size_t)v->len, &schema, &err), 0);
    cr_expect_eq(schema, 2, "%s", v->name);
    if (m.form == DS_FORM_INLINE)
        cr_expect(m.data >= v->buf && m.data + m.data_len <= v->buf + v->len,
                  "%s: data not borrowed", v->name);
    else
        cr_expect(m.refs_msg > v->buf &&
                      m.refs_msg + m.refs_msg_len <= v->buf + v->len,
                  "%s: refs not borrowed", v->name);

    /* The signing text, and the signature when there is one. */
    char msg[DS_SIG2_MSG_MAX], want[DS_SIG2_MSG_MAX];
    cr_assert_not_null(v->sigmsg, "%s: no signing-message", v->name);
    unescape(want, sizeof(want), v->sigmsg);
    int mlen = ds_manifest_sig_message(&m, msg, sizeof(msg), &err);
    cr_expect_gt(mlen, 0, "%s: %s", v->name, err.msg);
    cr_expect_str_eq(msg, want, "%s: signing text differs", v->name);
    cr_expect_eq(m.has_sig, v->signature != NULL, "%s", v->name);
    if (m.has_sig) {
        uint8_t *pub = NULL;
        cr_assert_eq(unhex(v->public_key, &pub), 32, "%s", v->name);
        ds_keyring *kr = NULL;
        cr_assert_eq(ds_keyring_new(&kr, &err), 0);
        cr_assert_eq(ds_keyring_add_raw(kr, m.key_id, pub, &err), 0, "%s",
                     err.msg);
        rc = ds_keyring_verify_manifest(kr, &m, &err);
        if (strcmp(v->signature, "verifies") == 0) {
            cr_expect_eq(rc, 0, "%s: %s", v->name, err.msg);
            /* Ed25519 is deterministic: signing again gives the same. */
            ds_signer *s = NULL;
            ds_manifest again = m;
            cr_assert_eq(ds_signer_from_seed(rfc8032_seed, m.key_id, &s, &err),
                         0);
            memset(again.sig, 0, DS_SIG_LEN);
            cr_expect_eq(ds_sign_manifest(s, &again, &err), 0, "%s", err.msg);
            cr_expect_eq(memcmp(again.sig, m.sig, DS_SIG_LEN), 0,
                         "%s: re-signed differently", v->name);
            ds_signer_free(s);
        } else {
            cr_assert_str_eq(v->signature, "fails", "%s", v->name);
            cr_expect_lt(rc, 0, "%s: a forged signature verified", v->name);
            cr_expect_str_eq(err.reason, "bad-signature", "%s", v->name);
        }
        ds_keyring_free(kr);
        free(pub);
    }

    uint8_t *re = NULL;
    size_t relen = 0;
    rc = ds_manifest_encode(&m, &re, &relen, &err);
    cr_expect_eq(rc, 0, "%s: re-encode: %s", v->name, err.msg);
    if (rc == 0 && strcmp(v->canonical, "yes") == 0) {
        expect_hex(v, re, relen);
    } else if (rc == 0) {
        cr_expect_str_eq(v->canonical, "no", "%s", v->name);
        ds_manifest m2;
        cr_expect_eq(ds_manifest_decode(re, relen, &m2, &err), 0, "%s: %s",
                     v->name, err.msg);
        char *got2 = render_manifest(&m2);
        cr_expect_str_eq(got2, v->meaning.s, "%s: re-encoded meaning", v->name);
        free(got2);
    }
    free(re);
}

static void check_part_vector(struct vec *v)
{
    ds_part p;
    ds_err err = {0};
    int rc = ds_part_decode(v->buf, (size_t)v->len, &p, &err);
    if (strcmp(v->valid, "no") == 0) {
        expect_rejected(v, rc, &err, "bad-schema");
        cr_expect_null(p.data, "%s: p not cleared", v->name);
        return;
    }
    cr_assert_eq(rc, 0, "%s: must decode: %s", v->name, err.msg);
    char *got = render_part(&p);
    cr_expect_str_eq(got, v->meaning.s, "%s: decoded meaning differs", v->name);
    free(got);
    cr_expect(p.data >= v->buf && p.data + p.data_len <= v->buf + v->len,
              "%s: data not borrowed", v->name);
    char key[DS_PART_KEY_MAX + 1];
    cr_assert_not_null(v->key, "%s: no key", v->name);
    cr_expect_eq(ds_part_key(key, sizeof(key), p.package, p.id, &err),
                 (int)strlen(v->key), "%s", v->name);
    cr_expect_str_eq(key, v->key, "%s: key", v->name);
    uint8_t *out = malloc(p.size);
    cr_assert_not_null(out);
    rc = ds_part_verify(&p, out, p.size, &err);
    if (strcmp(v->verify, "ok") == 0)
        cr_expect_eq(rc, 0, "%s: %s", v->name, err.msg);
    else
        expect_rejected(v, rc, &err, v->verify);
    free(out);
    uint8_t *re = NULL;
    size_t relen = 0;
    cr_expect_eq(ds_part_encode(&p, &re, &relen, &err), 0, "%s: %s", v->name,
                 err.msg);
    if (strcmp(v->canonical, "yes") == 0)
        expect_hex(v, re, relen);
    free(re);
}

static void check_index_vector(struct vec *v)
{
    ds_err err = {0};
    size_t n = 0;
    int rc = ds_index_decode(v->buf, (size_t)v->len, NULL, 0, &n, &err);
    if (strcmp(v->valid, "no") == 0) {
        expect_rejected(v, rc, &err, "bad-schema");
        return;
    }
    cr_assert_eq(rc, 0, "%s: %s", v->name, err.msg);
    ds_part_ref *refs = calloc(n, sizeof(*refs));
    cr_assert_not_null(refs);
    size_t n2 = 0;
    cr_expect_lt(
        ds_index_decode(v->buf, (size_t)v->len, refs, n - 1, &n2, &err), 0,
        "%s: room for fewer refs than the index has", v->name);
    cr_assert_eq(ds_index_decode(v->buf, (size_t)v->len, refs, n, &n2, &err),
                 0);
    cr_assert_eq(n2, n);
    text t = {0};
    put(&t, "refs=%zu", n);
    for (size_t i = 0; i < n; i++)
        put_ref(&t, &refs[i]);
    cr_expect_str_eq(t.s, v->meaning.s, "%s: meaning", v->name);
    free(t.s);
    uint8_t *re = NULL;
    size_t relen = 0;
    cr_expect_eq(ds_index_encode(refs, n, &re, &relen, &err), 0);
    expect_hex(v, re, relen);
    free(re);
    free(refs);
}

static void check_key(const struct vec *v, const char *key, int valid)
{
    char pkg[DS_PACKAGE_MAX + 1], fmt[DS_PART_KEY_MAX + 1];
    uint8_t id[32];
    ds_err err = {0};
    int rc = ds_part_key_parse(key, strlen(key), pkg, id, &err);
    if (!valid) {
        expect_rejected(v, rc, &err, "bad-schema");
        return;
    }
    cr_assert_eq(rc, 0, "%s: %s", v->name, err.msg);
    text t = {0};
    put(&t, "package=%s", pkg);
    put_hex(&t, "part", id, 32);
    cr_expect_str_eq(t.s, v->meaning.s, "%s", v->name);
    free(t.s);
    cr_expect_gt(ds_part_key(fmt, sizeof(fmt), pkg, id, &err), 0);
    cr_expect_str_eq(fmt, key, "%s: formatting", v->name);
    uint32_t h = murmur2((const uint8_t *)key, strlen(key));
    if (v->murmur != NULL) {
        char mh[16];
        snprintf(mh, sizeof(mh), "0x%08x", h);
        cr_expect_str_eq(mh, v->murmur, "%s: murmur2", v->name);
    }
    if (v->partition24 != NULL)
        cr_expect_eq((long)((h & 0x7fffffff) % 24), atol(v->partition24),
                     "%s: partition", v->name);
}

static void check_tombstone(const struct vec *v)
{
    cr_assert_not_null(v->topic);
    cr_assert_str_eq(v->value, "null", "%s", v->name);
    cr_assert_null(v->hex, "%s: a tombstone has no value bytes", v->name);
    int valid = strcmp(v->valid, "yes") == 0;
    if (strcmp(v->topic, "pkg.content") == 0) {
        check_key(v, v->key, valid);
        return;
    }
    cr_assert_str_eq(v->topic, "pkg.updates", "%s", v->name);
    int ok = ds_package_valid(v->key, strlen(v->key));
    cr_expect_eq(ok, valid, "%s: package id %s", v->name, v->key);
    if (valid) {
        text t = {0};
        put(&t, "retire=%s", v->key);
        cr_expect_str_eq(t.s, v->meaning.s, "%s", v->name);
        free(t.s);
    }
}

/* --- end to end: manifests from their part vectors ----------------------- */

struct store {
    int n;
    ds_part parts[MAXV];
    const char *keys[MAXV];
};

static const ds_part *store_find(const struct store *s, const uint8_t id[32],
                                 const char **key)
{
    for (int i = 0; i < s->n; i++)
        if (memcmp(s->parts[i].id, id, 32) == 0) {
            *key = s->keys[i];
            return &s->parts[i];
        }
    return NULL;
}

/* Fetch, check and verify refs[0..n) from the store: the bytes, in order
 * (malloc'd; *len). Frames concatenated too, into *frames. */
static uint8_t *fetch_all(const char *name, const struct store *s,
                          const char *package, const ds_part_ref *refs,
                          size_t n, size_t *len, uint8_t **frames, size_t *flen)
{
    size_t total = 0, ztotal = 0;
    for (size_t i = 0; i < n; i++) {
        total += refs[i].size;
        ztotal += refs[i].zsize;
    }
    uint8_t *out = malloc(total + 1), *z = malloc(ztotal + 1);
    cr_assert(out && z);
    size_t o = 0, zo = 0;
    for (size_t i = 0; i < n; i++) {
        const char *key = NULL;
        const ds_part *p = store_find(s, refs[i].id, &key);
        cr_assert_not_null(p, "%s: ref %zu: no part vector", name, i);
        ds_err err = {0};
        cr_assert_eq(
            ds_part_check(p, key, strlen(key), package, &refs[i], &err), 0,
            "%s: ref %zu: %s", name, i, err.msg);
        cr_assert_eq(ds_part_verify(p, out + o, total - o, &err), 0,
                     "%s: ref %zu: %s", name, i, err.msg);
        o += p->size;
        memcpy(z + zo, p->data, p->data_len);
        zo += p->data_len;
    }
    *len = o;
    *frames = z;
    *flen = zo;
    return out;
}

static void e2e(const struct vec *v, const struct store *s)
{
    ds_manifest m;
    ds_err err = {0};
    cr_assert_eq(ds_manifest_decode(v->buf, (size_t)v->len, &m, &err), 0);
    uint8_t *stream = NULL, *frames = NULL;
    size_t len = 0, flen = 0;
    if (m.form == DS_FORM_INLINE) {
        frames = malloc(m.data_len);
        cr_assert_not_null(frames);
        memcpy(frames, m.data, m.data_len);
        flen = m.data_len;
    } else {
        ds_part_ref *refs = calloc(m.nrefs, sizeof(*refs));
        cr_assert_not_null(refs);
        cr_assert_eq(ds_manifest_refs(&m, refs, m.nrefs, &err), (int)m.nrefs);
        stream = fetch_all(v->name, s, m.package, refs, m.nrefs, &len, &frames,
                           &flen);
        free(refs);
        if (m.form == DS_FORM_INDEX) {
            /* stream is the index: the real part list. */
            ds_part_ref *real = calloc(m.nparts, sizeof(*real));
            cr_assert_not_null(real);
            cr_assert_eq(
                ds_manifest_check_index(&m, stream, len, real, m.nparts, &err),
                0, "%s: %s", v->name, err.msg);
            /* One byte more or less is not the index. */
            cr_expect_lt(ds_manifest_check_index(&m, stream, len - 1, real,
                                                 m.nparts, &err),
                         0);
            free(stream);
            free(frames);
            stream = fetch_all(v->name, s, m.package, real, m.nparts, &len,
                               &frames, &flen);
            free(real);
        }
        cr_expect_eq(flen, m.zsize, "%s: frames add up to zsize", v->name);
    }
    /* The frames concatenated are one zstd stream of the whole tar. */
    uint8_t *whole = malloc(m.size + 1);
    cr_assert_not_null(whole);
    size_t got = ZSTD_decompress(whole, m.size + 1, frames, flen);
    cr_assert(!ZSTD_isError(got), "%s: %s", v->name, ZSTD_getErrorName(got));
    cr_expect_eq(got, m.size, "%s: size", v->name);
    if (stream != NULL) {
        cr_expect_eq(len, m.size, "%s", v->name);
        cr_expect_eq(memcmp(stream, whole, m.size), 0, "%s", v->name);
    }
    uint8_t md[32];
    sha256(whole, got, md);
    cr_expect_eq(memcmp(md, m.sha256, 32), 0, "%s: sha256", v->name);
    free(whole);
    free(stream);
    free(frames);
}

Test(manifest, vectors)
{
    char *file = slurp(DESPOOL_SOURCE_DIR "/schemas/v2/vectors.txt");
    static struct vec vs[MAXV];
    int n = load_vectors(file, vs);
    int counts[5][2] = {{0}}; /* manifest part index key tombstone x no/yes */
    static const char *const kinds[] = {"manifest", "part", "index", "key",
                                        "tombstone"};
    static struct store st;
    st.n = 0;
    int e2e_n = 0;
    for (int i = 0; i < n; i++) {
        struct vec *v = &vs[i];
        cr_assert_not_null(v->kind, "%s: no kind", v->name);
        cr_assert_not_null(v->valid, "%s: no valid", v->name);
        int valid = strcmp(v->valid, "yes") == 0;
        cr_assert(valid || strcmp(v->valid, "no") == 0, "%s", v->name);
        if (valid)
            cr_assert_not_null(v->meaning.s, "%s: no meaning", v->name);
        int k = -1;
        for (int j = 0; j < 5; j++)
            if (strcmp(v->kind, kinds[j]) == 0)
                k = j;
        cr_assert_geq(k, 0, "%s: kind %s", v->name, v->kind);
        counts[k][valid]++;
        if (k <= 2) {
            cr_assert_not_null(v->hex, "%s: no hex", v->name);
            v->len = unhex(v->hex, &v->buf);
            cr_assert_geq(v->len, 0, "%s: bad hex", v->name);
            if (valid)
                cr_assert_not_null(v->canonical, "%s", v->name);
        }
        switch (k) {
        case 0:
            check_manifest_vector(v);
            break;
        case 1:
            check_part_vector(v);
            if (valid && strcmp(v->verify, "ok") == 0) {
                ds_err err = {0};
                cr_assert_eq(ds_part_decode(v->buf, (size_t)v->len,
                                            &st.parts[st.n], &err),
                             0);
                st.keys[st.n++] = v->key;
            }
            break;
        case 2:
            check_index_vector(v);
            break;
        case 3:
            cr_assert_not_null(v->key, "%s", v->name);
            check_key(v, v->key, valid);
            break;
        case 4:
            check_tombstone(v);
            break;
        }
    }
    for (int i = 0; i < n; i++)
        if (vs[i].e2e != NULL && strcmp(vs[i].e2e, "yes") == 0) {
            e2e(&vs[i], &st);
            e2e_n++;
        }
    /* The file must hold what the README promises. */
    cr_expect_geq(counts[0][1], 15, "valid manifests: %d", counts[0][1]);
    cr_expect_geq(counts[0][0], 60, "invalid manifests: %d", counts[0][0]);
    cr_expect_geq(counts[1][1], 10, "valid parts: %d", counts[1][1]);
    cr_expect_geq(counts[1][0], 15, "invalid parts: %d", counts[1][0]);
    cr_expect_geq(counts[2][1] + counts[2][0], 3);
    cr_expect_geq(counts[3][1], 2);
    cr_expect_geq(counts[3][0], 5);
    cr_expect_geq(counts[4][1], 2);
    cr_expect_geq(e2e_n, 8, "e2e manifests: %d", e2e_n);
    cr_log_info("%d vectors, %d end to end", n, e2e_n);
    for (int i = 0; i < n; i++) {
        free(vs[i].buf);
        free(vs[i].meaning.s);
    }
    free(file);
}

/* --- samples -------------------------------------------------------------- */

static void fill_id(uint8_t id[32], uint32_t seed)
{
    for (int i = 0; i < 32; i++)
        id[i] = (uint8_t)(seed * 131 + (uint32_t)i * 7 + (seed >> 8));
}

static ds_manifest sample(int form)
{
    ds_manifest m;
    memset(&m, 0, sizeof(m));
    m.schema = DS_SCHEMA_V2;
    strcpy(m.package, "app");
    m.version = 7;
    for (int i = 0; i < DS_UPDATE_ID_LEN; i++)
        m.update_id[i] = (uint8_t)(0xa0 + i);
    strcpy(m.codec, "zstd");
    for (int i = 0; i < DS_SHA256_LEN; i++)
        m.sha256[i] = (uint8_t)(i * 3);
    m.created_ms = 1764064800123ULL;
    m.form = form;
    return m;
}

/* n refs of the given sizes; ids differ. */
static ds_part_ref *make_refs(size_t n, uint32_t size, uint32_t zsize,
                              uint64_t *ssize, uint64_t *szsize)
{
    ds_part_ref *r = calloc(n, sizeof(*r));
    cr_assert_not_null(r);
    *ssize = *szsize = 0;
    for (size_t i = 0; i < n; i++) {
        fill_id(r[i].id, (uint32_t)i);
        r[i].size = size;
        r[i].zsize = zsize;
        r[i].partition = (int32_t)(i % 24);
        r[i].offset = (int64_t)(1000000 + i);
        *ssize += size;
        *szsize += zsize;
    }
    return r;
}

static void round_trip(const ds_manifest *in, ds_manifest *out, uint8_t **enc,
                       size_t *len)
{
    ds_err err = {0};
    cr_assert_eq(ds_manifest_encode(in, enc, len, &err), 0, "encode: %s",
                 err.msg);
    cr_assert_eq(ds_manifest_decode(*enc, *len, out, &err), 0, "decode: %s",
                 err.msg);
    char *a = render_manifest(in), *b = render_manifest(out);
    cr_expect_str_eq(a, b);
    free(a);
    free(b);
}

static void expect_encode_refused(const ds_manifest *m, const char *field)
{
    uint8_t *enc = (uint8_t *)"sentinel";
    size_t len = 99;
    ds_err err = {0};
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "field \"%s\"", field);
    cr_expect_lt(ds_manifest_encode(m, &enc, &len, &err), 0,
                 "encode accepted a bad %s", field);
    cr_expect_str_eq(err.reason, "bad-schema");
    cr_expect_not_null(strstr(err.msg, quoted), "\"%s\" lacks %s", err.msg,
                       quoted);
    cr_expect_null(enc);
    cr_expect_eq(len, 0);
}

/* --- round trips ------------------------------------------------------- */

Test(manifest, round_trip_every_form)
{
    uint8_t data[300];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 17);
    ds_manifest in = sample(DS_FORM_INLINE), out;
    in.data = data;
    in.data_len = sizeof(data);
    in.zsize = sizeof(data);
    in.size = 10240;
    uint8_t *enc = NULL;
    size_t len = 0;
    round_trip(&in, &out, &enc, &len);
    cr_expect_eq(out.data, enc + len - sizeof(data), "data is last, borrowed");
    cr_expect_eq(out.nparts, 0);
    free(enc);

    uint64_t s, z;
    ds_part_ref *refs = make_refs(20, 1000, 400, &s, &z);
    in = sample(DS_FORM_PARTS);
    in.refs = refs;
    in.nrefs = 20;
    in.size = s;
    in.zsize = z;
    round_trip(&in, &out, &enc, &len);
    cr_expect_eq(out.nparts, 20);
    cr_expect_null(out.refs);
    /* A decoded manifest re-encodes from its borrowed refs. */
    uint8_t *enc2 = NULL;
    size_t len2 = 0;
    cr_assert_eq(ds_manifest_encode(&out, &enc2, &len2, NULL), 0);
    cr_expect_eq(len2, len);
    cr_expect_eq(memcmp(enc, enc2, len), 0);
    free(enc2);
    free(enc);

    in = sample(DS_FORM_INDEX);
    in.refs = refs;
    in.nrefs = 2;
    in.nparts = 300;
    in.size = 300 * 900000ULL;
    in.zsize = 300 * 300000ULL;
    in.has_sig = 1;
    memset(in.sig, 0x5a, DS_SIG_LEN);
    strcpy(in.key_id, "release-k1");
    round_trip(&in, &out, &enc, &len);
    cr_expect_eq(out.nparts, 300);
    cr_expect_eq(out.nrefs, 2);
    free(enc);
    free(refs);
}

Test(manifest, encode_refuses_what_decode_rejects)
{
    uint64_t s, z;
    ds_part_ref *refs = make_refs(3, 1000, 400, &s, &z);
    ds_manifest m;
#define REFUSE(field, stmt)                                                    \
    do {                                                                       \
        m = sample(DS_FORM_PARTS);                                             \
        m.refs = refs;                                                         \
        m.nrefs = 3;                                                           \
        m.size = s;                                                            \
        m.zsize = z;                                                           \
        stmt;                                                                  \
        expect_encode_refused(&m, field);                                      \
    } while (0)
    REFUSE("schema", m.schema = 1);
    REFUSE("package", strcpy(m.package, "a/b"));
    REFUSE("package", m.package[0] = '\0');
    REFUSE("version", m.version = 0);
    REFUSE("codec", strcpy(m.codec, "gzip"));
    REFUSE("key_id", (m.has_sig = 1, strcpy(m.key_id, "-k")));
    REFUSE("size", m.size++);
    REFUSE("zsize", m.zsize--);
    REFUSE("parts", m.nrefs = 0);
    REFUSE("parts", m.form = 0);
    REFUSE("parts", refs[1].size = 0);
    REFUSE("parts", refs[1].size = DS_PART_SIZE_MAX + 1);
    refs[1].size = 1000;
    REFUSE("parts", refs[2].zsize = DS_PART_ZSIZE_MAX + 1);
    refs[2].zsize = 400;
    REFUSE("parts", refs[0].partition = -1);
    refs[0].partition = 0;
    REFUSE("parts", refs[0].offset = -5);
    refs[0].offset = 0;
    REFUSE("data", (m.form = DS_FORM_INLINE, m.data_len = 0));
    REFUSE("data", (m.form = DS_FORM_INLINE, m.data = (const uint8_t *)"abc",
                    m.data_len = 3, m.zsize = 4));
    REFUSE("nparts", (m.form = DS_FORM_INDEX, m.nparts = 0));
    REFUSE("nparts", (m.form = DS_FORM_INDEX, m.nparts = DS_NPARTS_MAX + 1));
    REFUSE("nparts", (m.form = DS_FORM_INDEX, m.nparts = s + 1));
    REFUSE("size", (m.form = DS_FORM_INDEX, m.nparts = 1,
                    m.size = DS_PART_SIZE_MAX + 1ULL));
    REFUSE("zsize", (m.form = DS_FORM_INDEX, m.nparts = 2,
                     m.zsize = 2ULL * DS_PART_ZSIZE_MAX + 1));
#undef REFUSE
    free(refs);
}

/* --- limits at their boundaries ------------------------------------------ */

Test(manifest, inline_limit)
{
    uint8_t *data = calloc(1, DS_INLINE_MAX + 1);
    cr_assert_not_null(data);
    ds_manifest m = sample(DS_FORM_INLINE), out;
    m.data = data;
    m.data_len = m.zsize = DS_INLINE_MAX;
    uint8_t *enc = NULL;
    size_t len = 0;
    round_trip(&m, &out, &enc, &len);
    cr_expect_lt(len, DS_MANIFEST_MAX);
    /* One byte more: refused by encode, and by decode (the encoding is
     * patched by hand: bin 32 length and zsize). */
    m.data_len = m.zsize = DS_INLINE_MAX + 1;
    expect_encode_refused(&m, "data");
    free(enc);
    m.data_len = m.zsize = DS_INLINE_MAX;
    cr_assert_eq(ds_manifest_encode(&m, &enc, &len, NULL), 0);
    uint8_t *big = malloc(len + 1);
    cr_assert_not_null(big);
    memcpy(big, enc, len);
    big[len] = 0;
    /* data is last: c6 <be32 len> <bytes>; zsize is ce <be32>. */
    size_t at = len - DS_INLINE_MAX - 5;
    cr_assert_eq(big[at], 0xc6);
    big[at + 4] = 0x01; /* 00 04 00 01: 262145 */
    uint8_t *zs = memmem(big, at, "\xa5zsize\xce\x00\x04\x00\x00", 10);
    cr_assert_not_null(zs);
    zs[9] = 0x01;
    ds_err err = {0};
    cr_expect_lt(ds_manifest_decode(big, len + 1, &out, &err), 0);
    cr_expect_not_null(strstr(err.msg, "field \"data\""), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "262144"), "%s", err.msg);
    free(big);
    free(enc);
    free(data);
}

/* The largest parts-form manifest there can be: 8192 refs with every
 * number in its largest encoding, signed, a 128-byte package. */
Test(manifest, parts_limit_and_manifest_size)
{
    uint64_t s, z;
    ds_part_ref *refs =
        make_refs(DS_REFS_MAX + 1, DS_PART_SIZE_MAX, DS_PART_ZSIZE_MAX, &s, &z);
    for (size_t i = 0; i <= DS_REFS_MAX; i++) {
        refs[i].partition = INT32_MAX;
        refs[i].offset = INT64_MAX;
    }
    ds_manifest m = sample(DS_FORM_PARTS), out;
    memset(m.package, 'p', DS_PACKAGE_MAX);
    m.package[DS_PACKAGE_MAX] = '\0';
    m.version = m.created_ms = UINT64_MAX;
    m.has_sig = 1;
    memset(m.key_id, 'k', DS_KEY_ID_MAX);
    m.key_id[DS_KEY_ID_MAX] = '\0';
    m.refs = refs;
    m.nrefs = DS_REFS_MAX;
    m.size = s - DS_PART_SIZE_MAX;
    m.zsize = z - DS_PART_ZSIZE_MAX;
    uint8_t *enc = NULL;
    size_t len = 0;
    round_trip(&m, &out, &enc, &len);
    /* 8192 refs of 59 bytes + 445 bytes of header and array header
     * (README.md section 3). */
    cr_expect_eq(len, 8192 * 59 + 445, "%zu", len);
    cr_expect_lt(len, DS_MANIFEST_MAX);
    cr_log_info("largest parts manifest: %zu bytes", len);
    free(enc);
    m.nrefs = DS_REFS_MAX + 1;
    m.size = s;
    m.zsize = z;
    expect_encode_refused(&m, "parts");
    free(refs);
}

/* Decoding refuses a value above DS_MANIFEST_MAX bytes, whatever it is,
 * and accepts one of exactly DS_MANIFEST_MAX (unknown field padding). */
Test(manifest, manifest_size_limit)
{
    uint64_t s, z;
    ds_part_ref *refs = make_refs(2, 100, 50, &s, &z);
    ds_manifest m = sample(DS_FORM_PARTS), out;
    m.refs = refs;
    m.nrefs = 2;
    m.size = s;
    m.zsize = z;
    uint8_t *enc = NULL;
    size_t len = 0;
    ds_err err = {0};
    cr_assert_eq(ds_manifest_encode(&m, &enc, &len, &err), 0);
    for (int extra = 0; extra <= 1; extra++) {
        /* + "zz": bin 32 padding, so that the total is the limit + extra */
        size_t pad = DS_MANIFEST_MAX + (size_t)extra - len - 3 - 5;
        size_t tot = len + 3 + 5 + pad;
        uint8_t *v = calloc(1, tot);
        cr_assert_not_null(v);
        memcpy(v, enc, len);
        cr_assert_eq(v[0], 0x8a);
        v[0] = 0x8b;
        uint8_t *p = v + len;
        *p++ = 0xa2;
        *p++ = 'z';
        *p++ = 'z';
        *p++ = 0xc6;
        *p++ = (uint8_t)(pad >> 24);
        *p++ = (uint8_t)(pad >> 16);
        *p++ = (uint8_t)(pad >> 8);
        *p++ = (uint8_t)pad;
        int rc = ds_manifest_decode(v, tot, &out, &err);
        if (extra == 0) {
            cr_expect_eq(rc, 0, "%s", err.msg);
        } else {
            cr_expect_lt(rc, 0);
            cr_expect_not_null(strstr(err.msg, "524289 bytes"), "%s", err.msg);
        }
        free(v);
    }
    free(enc);
    free(refs);
}

Test(manifest, form_for)
{
    cr_expect_eq(ds_manifest_form_for(DS_INLINE_MAX, 1), DS_FORM_INLINE);
    cr_expect_eq(ds_manifest_form_for(DS_INLINE_MAX + 1, 1), DS_FORM_PARTS);
    cr_expect_eq(ds_manifest_form_for(1ULL << 30, DS_REFS_MAX), DS_FORM_PARTS);
    cr_expect_eq(ds_manifest_form_for(1ULL << 30, DS_REFS_MAX + 1),
                 DS_FORM_INDEX);
}

/* A 16 GiB version: 18,725 parts of 896 KiB (the last 512 KiB). The part
 * list does not fit a manifest; through the index it does, in two index
 * parts, and comes back whole. */
Test(manifest, sixteen_gib_through_the_index)
{
    const uint64_t total = 16ULL << 30;
    const size_t n =
        (size_t)((total + DS_PART_SIZE_MAX - 1) / DS_PART_SIZE_MAX);
    cr_assert_eq(n, 18725);
    uint64_t s, z;
    ds_part_ref *refs = make_refs(n, DS_PART_SIZE_MAX, 300000, &s, &z);
    refs[n - 1].size = (uint32_t)(total - (n - 1) * (uint64_t)DS_PART_SIZE_MAX);
    cr_assert_eq(refs[n - 1].size, 524288);
    for (size_t i = 0; i < n; i++)
        refs[i].offset = 5000000000LL + (int64_t)i; /* uint 64 offsets */
    s = total;

    ds_manifest m = sample(DS_FORM_PARTS);
    m.refs = refs;
    m.nrefs = (uint32_t)n;
    m.size = s;
    m.zsize = z;
    expect_encode_refused(&m, "parts");

    uint8_t *index = NULL;
    size_t ilen = 0;
    ds_err err = {0};
    cr_assert_eq(ds_index_encode(refs, n, &index, &ilen, &err), 0, "%s",
                 err.msg);
    /* array 16 header + 18725 refs of 1 + 34 + 5 + 5 + 1 + 9 bytes */
    cr_expect_eq(ilen, 3 + n * 55, "%zu", ilen);
    size_t nidx = (ilen + DS_PART_SIZE_MAX - 1) / DS_PART_SIZE_MAX;
    cr_expect_eq(nidx, 2);
    ds_part_ref irefs[4];
    memset(irefs, 0, sizeof(irefs));
    for (size_t i = 0; i < nidx; i++) {
        size_t off = i * DS_PART_SIZE_MAX;
        size_t len =
            ilen - off < DS_PART_SIZE_MAX ? ilen - off : DS_PART_SIZE_MAX;
        sha256(index + off, len, irefs[i].id);
        irefs[i].size = (uint32_t)len;
        irefs[i].zsize = (uint32_t)(len / 3);
        irefs[i].partition = 5;
        irefs[i].offset = (int64_t)(77 + i);
    }
    m = sample(DS_FORM_INDEX);
    m.refs = irefs;
    m.nrefs = (uint32_t)nidx;
    m.nparts = n;
    m.size = s;
    m.zsize = z;
    ds_signer *signer = NULL;
    cr_assert_eq(ds_signer_from_seed(rfc8032_seed, "k1", &signer, &err), 0);
    cr_assert_eq(ds_sign_manifest(signer, &m, &err), 0, "%s", err.msg);
    ds_signer_free(signer);
    uint8_t *enc = NULL;
    size_t len = 0;
    ds_manifest out;
    round_trip(&m, &out, &enc, &len);
    cr_expect_lt(len, 400, "a 16 GiB manifest: %zu bytes", len);
    cr_log_info("16 GiB: %zu parts, index %zu bytes in %zu parts, manifest "
                "%zu bytes",
                n, ilen, nidx, len);

    ds_part_ref *back = calloc(n, sizeof(*back));
    cr_assert_not_null(back);
    cr_assert_eq(ds_manifest_check_index(&out, index, ilen, back, n, &err), 0,
                 "%s", err.msg);
    for (size_t i = 0; i < n; i++)
        cr_assert(memcmp(back[i].id, refs[i].id, 32) == 0 &&
                      back[i].size == refs[i].size &&
                      back[i].zsize == refs[i].zsize &&
                      back[i].partition == refs[i].partition &&
                      back[i].offset == refs[i].offset,
                  "ref %zu differs", i);
    cr_expect_lt(ds_manifest_check_index(&out, index, ilen, back, n - 1, &err),
                 0, "room for fewer refs");
    /* An index whose sums disagree with the manifest is refused. */
    out.size--;
    cr_expect_lt(ds_manifest_check_index(&out, index, ilen, back, n, &err), 0);
    cr_expect_not_null(strstr(err.msg, "field \"size\""), "%s", err.msg);
    out.size++;
    out.nparts--;
    cr_expect_lt(ds_manifest_check_index(&out, index, ilen, back, n, &err), 0);
    cr_expect_not_null(strstr(err.msg, "field \"nparts\""), "%s", err.msg);
    free(back);
    free(enc);
    free(index);
    free(refs);
}

/* --- hostile inputs --------------------------------------------------------
 */

/* A manifest map built by hand: the header fields, then `rest` (already
 * msgpack: key + value pairs, nrest of them). */
static uint8_t *craft(const uint8_t *rest, size_t rest_len, int nrest,
                      uint64_t size, uint64_t zsize, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t)(9 + nrest));
#define KEY(k)                                                                 \
    (msgpack_pack_str(&pk, strlen(k)), msgpack_pack_str_body(&pk, k, strlen(k)))
    uint8_t id[32] = {0};
    KEY("schema");
    msgpack_pack_uint64(&pk, 2);
    KEY("package");
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "app", 3);
    KEY("version");
    msgpack_pack_uint64(&pk, 3);
    KEY("update_id");
    msgpack_pack_bin(&pk, 16);
    msgpack_pack_bin_body(&pk, id, 16);
    KEY("codec");
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "zstd", 4);
    KEY("size");
    msgpack_pack_uint64(&pk, size);
    KEY("zsize");
    msgpack_pack_uint64(&pk, zsize);
    KEY("sha256");
    msgpack_pack_bin(&pk, 32);
    msgpack_pack_bin_body(&pk, id, 32);
    KEY("created_ms");
    msgpack_pack_uint64(&pk, 1);
#undef KEY
    msgpack_sbuffer_write(&sb, (const char *)rest, rest_len);
    *len = sb.size;
    return (uint8_t *)msgpack_sbuffer_release(&sb);
}

static void expect_craft_fails(const char *what, const void *rest, size_t n,
                               int nrest, uint64_t size, uint64_t zsize,
                               const char *msg_part)
{
    size_t len;
    uint8_t *v = craft(rest, n, nrest, size, zsize, &len);
    ds_manifest m;
    ds_err err = {0};
    cr_expect_lt(ds_manifest_decode(v, len, &m, &err), 0, "%s accepted", what);
    cr_expect_str_eq(err.reason, "bad-schema", "%s", what);
    cr_expect_not_null(strstr(err.msg, msg_part), "%s: \"%s\" lacks \"%s\"",
                       what, err.msg, msg_part);
    free(v);
}

/* A string literal and its length (without the terminator). */
#define LIT(s) s, sizeof(s) - 1

#define ID32                                                                   \
    "\xc4\x20"                                                                 \
    "0123456789abcdef0123456789abcdef"

/* The rest of a manifest whose parts list holds one ref: "parts", a
 * 1-array, a 5-array, the id (ID32), then tail. */
#define REF1(tail) LIT("\xa5parts\x91\x95" ID32 tail)

Test(manifest, hostile)
{
    /* Counts far beyond the bytes: refused before any loop runs. */
    expect_craft_fails("parts array32 4G",
                       LIT("\xa5parts\xdd\xff\xff\xff\xff\x90"), 1, 1, 1,
                       "truncated");
    expect_craft_fails("ref array32 4G",
                       LIT("\xa5parts\x91\xdd\xff\xff\xff\xff" ID32), 1, 1, 1,
                       "truncated");
    expect_craft_fails("map32 4G unknown", LIT("\xa2zz\xdf\xff\xff\xff\xff"), 1,
                       1, 1, "truncated");
    expect_craft_fails("bin32 4G data",
                       LIT("\xa4\x64\x61\x74\x61\xc6\xff\xff\xff\xff"), 1, 1, 1,
                       "truncated");
    /* 8193 refs are counted, never walked (and a 3-byte array header
     * claiming them is truncated). */
    expect_craft_fails("8193 refs claimed", LIT("\xa5parts\xdc\x20\x01"), 1, 1,
                       1, "truncated");
    /* Numbers that do not fit the struct are range errors, not wraps: one
     * ref, its id, then size, zsize, partition and offset. */
    static const struct {
        const char *what, *rest;
        size_t n;
        uint64_t size;
        const char *msg_part;
    } ranges[] = {
        {"size 2^32+5",
         REF1("\xcf\x00\x00\x00\x01\x00\x00\x00\x05\x01\x00\x00"), 5,
         "field \"size\""},
        {"zsize 2^64-1",
         REF1("\x01\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00"), 1,
         "field \"zsize\""},
        {"partition 2^32",
         REF1("\x01\x01\xcf\x00\x00\x00\x01\x00\x00\x00\x00\x00"), 1,
         "field \"partition\""},
        {"offset 2^64-1",
         REF1("\x01\x01\x00\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), 1,
         "field \"offset\""},
        {"offset -1 (int 64)",
         REF1("\x01\x01\x00\xd3\xff\xff\xff\xff\xff\xff\xff\xff"), 1,
         "negative int"},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(*ranges); i++)
        expect_craft_fails(ranges[i].what, ranges[i].rest, ranges[i].n, 1,
                           ranges[i].size, 1, ranges[i].msg_part);
    /* Sums: a claimed size of 2^64-1 over an index of 2^20 parts, and
     * over a parts list. */
    expect_craft_fails(
        "index size 2^64-1",
        LIT("\xa6nparts\xce\x00\x10\x00\x00\xa5index\x91\x95" ID32
            "\x01\x01\x00\x00"),
        2, UINT64_MAX, 1ULL << 20, "field \"size\"");
    expect_craft_fails("parts size 2^64-1",
                       LIT("\xa5parts\x92\x95" ID32 "\x01\x01\x00\x00\x95" ID32
                           "\x01\x01\x00\x00"),
                       1, UINT64_MAX, 2, "field \"size\"");
    /* Types nested wrongly. */
    expect_craft_fails("ref is nil", LIT("\xa5parts\x91\xc0"), 1, 1, 1,
                       "got nil");
    expect_craft_fails("ref id of 31",
                       LIT("\xa5parts\x91\x95\xc4\x1f"
                           "0123456789abcdef0123456789abcde"
                           "\x01\x01\x00\x00"),
                       1, 1, 1, "got 31 bytes");
    expect_craft_fails("parts as str",
                       LIT("\xa5parts\xa3"
                           "abc"),
                       1, 1, 1, "expected array, got str");

    /* The index decoder alone. */
    ds_err err = {0};
    size_t n = 0;
    cr_expect_lt(
        ds_index_decode("\xdd\xff\xff\xff\xff\x90", 6, NULL, 0, &n, &err), 0);
    cr_expect_not_null(strstr(err.msg, "truncated"), "%s", err.msg);
    cr_expect_lt(ds_index_decode("\x90", 1, NULL, 0, &n, &err), 0);
    cr_expect_lt(ds_index_decode(NULL, 0, NULL, 0, &n, &err), 0);
    ds_manifest m;
    cr_expect_lt(ds_manifest_decode(NULL, 0, &m, &err), 0);
    cr_expect_lt(ds_manifest_decode(NULL, 5, &m, &err), 0);
    cr_expect_lt(ds_manifest_decode("\x80", 1, NULL, &err), 0);
}

/* Every truncation and every flipped bit of a signed parts manifest and
 * of a part event: rejected or valid, never a crash (ASan build). */
Test(manifest, truncations_and_bit_flips)
{
    uint64_t s, z;
    ds_part_ref *refs = make_refs(3, 1000, 400, &s, &z);
    ds_manifest m = sample(DS_FORM_PARTS), out;
    m.refs = refs;
    m.nrefs = 3;
    m.size = s;
    m.zsize = z;
    m.has_sig = 1;
    strcpy(m.key_id, "k1");
    uint8_t *enc = NULL;
    size_t len = 0;
    ds_err err = {0};
    cr_assert_eq(ds_manifest_encode(&m, &enc, &len, &err), 0);
    for (size_t cut = 0; cut < len; cut++) {
        cr_expect_lt(ds_manifest_decode(enc, cut, &out, &err), 0, "cut %zu",
                     cut);
        cr_expect_str_eq(err.reason, "bad-schema");
    }
    uint8_t *copy = malloc(len);
    cr_assert_not_null(copy);
    int rejected = 0, accepted = 0;
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, enc, len);
            copy[i] ^= (uint8_t)(1u << bit);
            ds_err_clear(&err);
            if (ds_manifest_decode(copy, len, &out, &err) < 0) {
                cr_expect_str_eq(err.reason, "bad-schema");
                rejected++;
            } else {
                accepted++;
                ds_part_ref back[3];
                cr_expect_eq(ds_manifest_refs(&out, back, 3, &err), 3);
            }
        }
    cr_expect_gt(rejected, 0);
    cr_expect_gt(accepted, 0);
    free(copy);
    free(enc);
    free(refs);

    /* A part: one raw block frame of 100 bytes. */
    uint8_t frame[4 + 1 + 1 + 3 + 100];
    memcpy(frame, "\x28\xb5\x2f\xfd\x20\x64", 6);
    uint32_t bh = 1 | (100u << 3);
    frame[6] = (uint8_t)bh;
    frame[7] = (uint8_t)(bh >> 8);
    frame[8] = (uint8_t)(bh >> 16);
    for (int i = 0; i < 100; i++)
        frame[9 + i] = (uint8_t)i;
    ds_part p = {
        .schema = 2, .size = 100, .data = frame, .data_len = sizeof(frame)};
    strcpy(p.package, "app");
    sha256(frame + 9, 100, p.id);
    cr_assert_eq(ds_part_encode(&p, &enc, &len, &err), 0, "%s", err.msg);
    ds_part q;
    for (size_t cut = 0; cut < len; cut++)
        cr_expect_lt(ds_part_decode(enc, cut, &q, &err), 0, "cut %zu", cut);
    copy = malloc(len);
    cr_assert_not_null(copy);
    uint8_t plain[100];
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, enc, len);
            copy[i] ^= (uint8_t)(1u << bit);
            if (ds_part_decode(copy, len, &q, &err) == 0 &&
                ds_part_verify(&q, plain, sizeof(plain), &err) < 0)
                cr_expect_str_eq(err.reason, "part-mismatch");
        }
    free(copy);
    free(enc);
}

/* --- parts ---------------------------------------------------------------- */

Test(manifest, part_limits_and_checks)
{
    ds_err err = {0};
    uint8_t *junk = calloc(1, DS_PART_ZSIZE_MAX + 1);
    cr_assert_not_null(junk);
    memcpy(junk, "\x28\xb5\x2f\xfd", 4);
    ds_part p = {.schema = 2, .size = 1000, .data = junk};
    strcpy(p.package, "app");
    uint8_t *enc = NULL;
    size_t len = 0;
    /* The length limit comes first: one byte over is named as such... */
    p.data_len = DS_PART_ZSIZE_MAX + 1;
    cr_expect_lt(ds_part_encode(&p, &enc, &len, &err), 0);
    cr_expect_not_null(strstr(err.msg, "must be 1..921088"), "%s", err.msg);
    /* ...the limit itself passes it (and then fails as a frame). */
    p.data_len = DS_PART_ZSIZE_MAX;
    cr_expect_lt(ds_part_encode(&p, &enc, &len, &err), 0);
    cr_expect_null(strstr(err.msg, "must be 1..921088"), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "zstd frame"), "%s", err.msg);
    p.size = DS_PART_SIZE_MAX + 1;
    cr_expect_lt(ds_part_encode(&p, &enc, &len, &err), 0);
    cr_expect_not_null(strstr(err.msg, "field \"size\""), "%s", err.msg);
    free(junk);

    /* A real worst-case part: 917504 incompressible bytes, compressed by
     * libzstd, fits DS_PART_ZSIZE_MAX and the 1,000,000-byte limit. */
    uint8_t *plain = malloc(DS_PART_SIZE_MAX), *frame = malloc(921088);
    cr_assert(plain && frame);
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < DS_PART_SIZE_MAX; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        plain[i] = (uint8_t)x;
    }
    cr_assert_eq(ZSTD_compressBound(DS_PART_SIZE_MAX), DS_PART_ZSIZE_MAX);
    size_t zn =
        ZSTD_compress(frame, DS_PART_ZSIZE_MAX, plain, DS_PART_SIZE_MAX, 19);
    cr_assert(!ZSTD_isError(zn));
    p.size = DS_PART_SIZE_MAX;
    p.data = frame;
    p.data_len = zn;
    memset(p.package, 'p', DS_PACKAGE_MAX);
    p.package[DS_PACKAGE_MAX] = '\0';
    sha256(plain, DS_PART_SIZE_MAX, p.id);
    cr_assert_eq(ds_part_encode(&p, &enc, &len, &err), 0, "%s", err.msg);
    char key[DS_PART_KEY_MAX + 1];
    int klen = ds_part_key(key, sizeof(key), p.package, p.id, &err);
    cr_expect_eq(klen, DS_PART_KEY_MAX);
    /* value + key + Kafka's record and batch overhead (<= 81 bytes). */
    cr_expect_leq(len, 921294);
    cr_expect_lt(len + (size_t)klen + 81, 1000000);
    cr_log_info("worst-case part: %zu-byte frame, %zu-byte value", zn, len);
    ds_part q;
    cr_assert_eq(ds_part_decode(enc, len, &q, &err), 0, "%s", err.msg);
    cr_expect_eq(q.data, enc + len - zn, "data borrowed, last");
    cr_expect_eq(ds_part_verify(&q, plain, DS_PART_SIZE_MAX, &err), 0, "%s",
                 err.msg);
    cr_expect_lt(ds_part_verify(&q, plain, DS_PART_SIZE_MAX - 1, &err), 0);

    /* ds_part_check: the record against its ref. */
    ds_part_ref r = {.size = q.size,
                     .zsize = (uint32_t)q.data_len,
                     .partition = 1,
                     .offset = 2};
    memcpy(r.id, q.id, 32);
    cr_expect_eq(ds_part_check(&q, key, (size_t)klen, q.package, &r, &err), 0,
                 "%s", err.msg);
    cr_expect_lt(ds_part_check(&q, key, (size_t)klen - 1, q.package, &r, &err),
                 0);
    cr_expect_str_eq(err.reason, "part-mismatch");
    ds_part_ref r2 = r;
    r2.zsize++;
    cr_expect_lt(ds_part_check(&q, key, (size_t)klen, q.package, &r2, &err), 0);
    cr_expect_str_eq(err.reason, "part-mismatch");
    r2 = r;
    r2.id[5] ^= 1;
    cr_expect_lt(ds_part_check(&q, key, (size_t)klen, q.package, &r2, &err), 0,
                 "the key names another part");
    cr_expect_lt(ds_part_check(&q, key, (size_t)klen, "app", &r, &err), 0);
    cr_expect_str_eq(err.reason, "part-mismatch");
    q.id[0] ^= 1;
    cr_expect_lt(ds_part_verify(&q, plain, DS_PART_SIZE_MAX, &err), 0);
    cr_expect_str_eq(err.reason, "part-mismatch");
    free(enc);
    free(plain);
    free(frame);
}

Test(manifest, part_keys)
{
    uint8_t id[32], back[32];
    fill_id(id, 9);
    char key[DS_PART_KEY_MAX + 1], pkg[DS_PACKAGE_MAX + 1];
    ds_err err = {0};
    int n = ds_part_key(key, sizeof(key), "app", id, &err);
    cr_assert_eq(n, 3 + 1 + 64);
    cr_assert_eq(ds_part_key_parse(key, (size_t)n, pkg, back, &err), 0);
    cr_expect_str_eq(pkg, "app");
    cr_expect_eq(memcmp(id, back, 32), 0);
    cr_expect_lt(ds_part_key(key, (size_t)n, "app", id, &err), 0, "no room");
    cr_expect_lt(ds_part_key(key, sizeof(key), "a/b", id, &err), 0);
    cr_expect_lt(ds_part_key_parse(key, 0, pkg, back, &err), 0);
    cr_expect_lt(ds_part_key_parse(NULL, 5, pkg, back, &err), 0);
    /* len, not NUL, delimits the key. */
    n = ds_part_key(key, sizeof(key), "app", id, &err);
    cr_expect_lt(ds_part_key_parse(key, (size_t)n - 1, pkg, back, &err), 0);
    cr_expect_str_eq(err.reason, "bad-schema");
}

Test(manifest, value_schema_picks_the_decoder)
{
    ds_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.schema = 1;
    strcpy(ev.package, "app");
    ev.version = 1;
    ev.chunks = 1;
    strcpy(ev.codec, "zstd");
    ev.zsize = 1;
    ev.data = (const uint8_t *)"x";
    ev.data_len = 1;
    uint8_t *enc = NULL;
    size_t len = 0;
    ds_err err = {0};
    cr_assert_eq(ds_event_encode(&ev, &enc, &len, &err), 0);
    uint64_t schema = 0;
    cr_expect_eq(ds_value_schema(enc, len, &schema, &err), 0);
    cr_expect_eq(schema, 1);
    ds_manifest m;
    cr_expect_lt(ds_manifest_decode(enc, len, &m, &err), 0);
    cr_expect_not_null(strstr(err.msg, "v1 event"), "%s", err.msg);
    free(enc);
    cr_expect_lt(ds_value_schema("\x80", 1, &schema, &err), 0);
    cr_expect_not_null(strstr(err.msg, "field \"schema\": missing"), "%s",
                       err.msg);
    cr_expect_lt(ds_value_schema("\x81\xa6schema\xa1\x32", 10, &schema, &err),
                 0);
    cr_expect_lt(
        ds_value_schema("\x82\xa6schema\x02\xa6schema\x02", 17, &schema, &err),
        0);
    cr_expect_lt(ds_value_schema("", 0, &schema, &err), 0);
}
