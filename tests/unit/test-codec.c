/*
 * test-codec.c - schema v1 codec: round trips, the rules encode enforces,
 * the shared test vectors of schemas/v1/vectors.txt (decoded meaning,
 * canonical re-encoding, error field), borrowing of data, and the
 * package-id validator.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "vectors.h"

/* --- helpers ---------------------------------------------------------- */

/* Append "key=value\n" to a growing string. */
static void put(char **buf, size_t *len, const char *key, const char *val)
{
    size_t add = strlen(key) + strlen(val) + 2;
    *buf = realloc(*buf, *len + add + 1);
    cr_assert_not_null(*buf);
    *len += (size_t)sprintf(*buf + *len, "%s=%s\n", key, val);
}

static void put_u64(char **buf, size_t *len, const char *key, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    put(buf, len, key, tmp);
}

static void put_hex(char **buf, size_t *len, const char *key, const uint8_t *p,
                    size_t n)
{
    char *tmp = malloc(2 * n + 1);
    cr_assert_not_null(tmp);
    hex_of(tmp, p, n);
    put(buf, len, key, tmp);
    free(tmp);
}

/* The decoded meaning of an event in the vector file's field=value form,
 * canonical order. Written independently of the codec. */
static char *render_event(const ds_event *ev)
{
    char *b = NULL;
    size_t n = 0;
    put_u64(&b, &n, "schema", ev->schema);
    put(&b, &n, "package", ev->package);
    put_u64(&b, &n, "version", ev->version);
    put_hex(&b, &n, "update_id", ev->update_id, DS_UPDATE_ID_LEN);
    put_u64(&b, &n, "chunk", ev->chunk);
    put_u64(&b, &n, "chunks", ev->chunks);
    put(&b, &n, "codec", ev->codec);
    put_u64(&b, &n, "size", ev->size);
    put_u64(&b, &n, "zsize", ev->zsize);
    put_hex(&b, &n, "sha256", ev->sha256, DS_SHA256_LEN);
    put_u64(&b, &n, "created_ms", ev->created_ms);
    if (ev->has_sig) {
        put_hex(&b, &n, "sig", ev->sig, DS_SIG_LEN);
        put(&b, &n, "key_id", ev->key_id);
    }
    put_hex(&b, &n, "data", ev->data, ev->data_len);
    return b;
}

static char *render_status(const ds_status *st)
{
    char *b = NULL;
    size_t n = 0;
    put(&b, &n, "site", st->site);
    put(&b, &n, "package", st->package);
    put_u64(&b, &n, "version", st->version);
    put(&b, &n, "state", st->state);
    put(&b, &n, "detail", st->detail);
    put_u64(&b, &n, "at_ms", st->at_ms);
    return b;
}

static uint8_t payload[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x01, 0x02};

static ds_event sample_event(void)
{
    ds_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.schema = DS_SCHEMA_V1;
    strcpy(ev.package, "app");
    ev.version = 3;
    for (int i = 0; i < DS_UPDATE_ID_LEN; i++)
        ev.update_id[i] = (uint8_t)(0xa0 + i);
    ev.chunk = 1;
    ev.chunks = 2;
    strcpy(ev.codec, "zstd");
    ev.size = 10240;
    ev.zsize = 100;
    for (int i = 0; i < DS_SHA256_LEN; i++)
        ev.sha256[i] = (uint8_t)(i * 3);
    ev.created_ms = 1764064800123ULL;
    ev.data = payload;
    ev.data_len = sizeof(payload);
    return ev;
}

static ds_status sample_status(void)
{
    ds_status st;
    memset(&st, 0, sizeof(st));
    strcpy(st.site, "dp-eu-1");
    strcpy(st.package, "app");
    st.version = 7;
    strcpy(st.state, "installed");
    strcpy(st.detail, "ok");
    st.at_ms = 1764064800999ULL;
    return st;
}

static void expect_event_eq(const ds_event *a, const ds_event *b)
{
    char *ra = render_event(a), *rb = render_event(b);
    cr_expect_str_eq(ra, rb);
    cr_expect_eq(a->has_sig, b->has_sig);
    free(ra);
    free(rb);
}

/* Encode, decode, compare; return the decoded event (data borrowed from
 * *enc, which the caller frees). */
static ds_event round_trip(const ds_event *in, uint8_t **enc)
{
    size_t len = 0;
    ds_err err = {0};
    ds_event out;
    cr_assert_eq(ds_event_encode(in, enc, &len, &err), 0, "encode: %s",
                 err.msg);
    cr_assert_eq(ds_event_decode(*enc, len, &out, &err), 0, "decode: %s",
                 err.msg);
    cr_expect(out.data >= *enc && out.data + out.data_len <= *enc + len,
              "data must point into the encoded buffer");
    expect_event_eq(in, &out);
    return out;
}

/* --- round trips ------------------------------------------------------ */

Test(codec, event_round_trip)
{
    ds_event in = sample_event();
    uint8_t *enc = NULL;
    ds_event out = round_trip(&in, &enc);
    cr_expect_eq(out.has_sig, 0);
    cr_expect_eq(out.version, 3);
    cr_expect_eq(out.chunk, 1);
    cr_expect_eq(out.data_len, sizeof(payload));
    cr_expect_eq(memcmp(out.data, payload, sizeof(payload)), 0);
    free(enc);
}

Test(codec, event_signed_round_trip)
{
    ds_event in = sample_event();
    in.has_sig = 1;
    for (int i = 0; i < DS_SIG_LEN; i++)
        in.sig[i] = (uint8_t)(255 - i);
    strcpy(in.key_id, "release.2026_k-1");
    uint8_t *enc = NULL;
    ds_event out = round_trip(&in, &enc);
    cr_expect_eq(out.has_sig, 1);
    cr_expect_eq(memcmp(out.sig, in.sig, DS_SIG_LEN), 0);
    cr_expect_str_eq(out.key_id, "release.2026_k-1");
    free(enc);

    /* A 64-byte key id is the longest. */
    memset(in.key_id, 'k', DS_KEY_ID_MAX);
    in.key_id[DS_KEY_ID_MAX] = '\0';
    out = round_trip(&in, &enc);
    cr_expect_eq(strlen(out.key_id), DS_KEY_ID_MAX);
    free(enc);
}

Test(codec, event_extremes_round_trip)
{
    ds_event in = sample_event();
    memset(in.package, 'x', DS_PACKAGE_MAX);
    in.package[DS_PACKAGE_MAX] = '\0';
    in.version = UINT64_MAX;
    in.size = UINT64_MAX;
    in.zsize = UINT64_MAX;
    in.created_ms = UINT64_MAX;
    in.chunks = UINT32_MAX;
    in.chunk = UINT32_MAX - 1;
    uint8_t *enc = NULL;
    ds_event out = round_trip(&in, &enc);
    cr_expect_eq(strlen(out.package), DS_PACKAGE_MAX);
    cr_expect_eq(out.version, UINT64_MAX);
    cr_expect_eq(out.created_ms, UINT64_MAX);
    cr_expect_eq(out.chunks, UINT32_MAX);
    free(enc);

    /* And the small end: size and created_ms 0, version 1, 1 byte. */
    in = sample_event();
    in.version = 1;
    in.size = 0;
    in.created_ms = 0;
    in.chunk = 0;
    in.chunks = 1;
    in.zsize = 1;
    in.data_len = 1;
    strcpy(in.package, "a");
    out = round_trip(&in, &enc);
    cr_expect_eq(out.version, 1);
    cr_expect_eq(out.size, 0);
    free(enc);
}

Test(codec, event_large_data_is_borrowed)
{
    /* A full 900 KiB chunk (bin 32): decoding must not copy it. */
    size_t n = 921600;
    uint8_t *big = malloc(n);
    cr_assert_not_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 131 + 7);
    ds_event in = sample_event();
    in.data = big;
    in.data_len = n;
    in.zsize = 5 * n;
    in.chunks = 5;
    uint8_t *enc = NULL;
    size_t len = 0;
    ds_err err = {0};
    cr_assert_eq(ds_event_encode(&in, &enc, &len, &err), 0, "%s", err.msg);
    cr_assert_gt(len, n);
    ds_event out;
    cr_assert_eq(ds_event_decode(enc, len, &out, &err), 0, "%s", err.msg);
    /* The payload is the tail of the value (data is encoded last). */
    cr_expect_eq(out.data, enc + len - n);
    cr_expect_eq(out.data_len, n);
    cr_expect_eq(memcmp(out.data, big, n), 0);
    free(enc);
    free(big);
}

/* The header alone plus the body appended is byte for byte the event
 * ds_event_encode writes, for every bin length class (bin8/16/32) and
 * signed or not; the header never reads data. */
Test(codec, event_head_plus_body_is_the_event)
{
    static const size_t lens[] = {1, 255, 256, 65535, 65536, 921600};
    for (int sig = 0; sig < 2; sig++)
        for (size_t i = 0; i < sizeof(lens) / sizeof(*lens); i++) {
            size_t n = lens[i];
            uint8_t *body = malloc(n);
            cr_assert_not_null(body);
            for (size_t j = 0; j < n; j++)
                body[j] = (uint8_t)(j * 31 + 3);
            ds_event ev = sample_event();
            ev.zsize = 4 * (uint64_t)n;
            ev.chunks = 4;
            if (sig) {
                ev.has_sig = 1;
                memset(ev.sig, 0x5a, DS_SIG_LEN);
                snprintf(ev.key_id, sizeof(ev.key_id), "k1");
            }
            ev.data = body;
            ev.data_len = n;
            uint8_t *whole = NULL, *head = NULL;
            size_t wlen = 0, hlen = 0;
            ds_err err = {0};
            cr_assert_eq(ds_event_encode(&ev, &whole, &wlen, &err), 0, "%s",
                         err.msg);
            ev.data = NULL; /* not read */
            cr_assert_eq(ds_event_encode_head(&ev, &head, &hlen, &err), 0, "%s",
                         err.msg);
            cr_assert_eq(hlen + n, wlen, "len %zu sig %d", n, sig);
            cr_assert_eq(memcmp(head, whole, hlen), 0, "len %zu sig %d", n,
                         sig);
            cr_assert_eq(memcmp(body, whole + hlen, n), 0);
            free(head);
            free(whole);
            free(body);
        }
    /* The same rules as a whole event: no data is no event. */
    ds_event ev = sample_event();
    ev.data = NULL;
    ev.data_len = 0;
    uint8_t *head = NULL;
    size_t hlen = 0;
    ds_err err = {0};
    cr_assert_lt(ds_event_encode_head(&ev, &head, &hlen, &err), 0);
    cr_assert_str_eq(err.reason, "bad-schema");
    cr_assert_null(head);
}

Test(codec, status_round_trip)
{
    const char *sites[] = {"dp-eu-1", "_published", "X"};
    const char *states[] = {"installed", "published", "failed"};
    for (int i = 0; i < 3; i++) {
        ds_status in = sample_status(), out;
        strcpy(in.site, sites[i]);
        strcpy(in.state, states[i]);
        in.version = i == 2 ? UINT64_MAX : (uint64_t)i;
        in.at_ms = i == 2 ? UINT64_MAX : 0;
        if (i == 1)
            in.detail[0] = '\0';
        uint8_t *enc = NULL;
        size_t len = 0;
        ds_err err = {0};
        cr_assert_eq(ds_status_encode(&in, &enc, &len, &err), 0, "%s", err.msg);
        cr_assert_eq(ds_status_decode(enc, len, &out, &err), 0, "%s", err.msg);
        char *ra = render_status(&in), *rb = render_status(&out);
        cr_expect_str_eq(ra, rb);
        free(ra);
        free(rb);
        free(enc);
    }
}

Test(codec, status_detail_truncated_on_encode)
{
    ds_status in = sample_status(), out;
    uint8_t *enc = NULL;
    size_t len = 0;
    ds_err err = {0};
    /* detail filled to the last byte with no terminator: 256 are sent. */
    memset(in.detail, 'x', sizeof(in.detail));
    cr_assert_eq(ds_status_encode(&in, &enc, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(ds_status_decode(enc, len, &out, &err), 0, "%s", err.msg);
    cr_expect_eq(strlen(out.detail), DS_DETAIL_MAX);
    free(enc);

    /* The cut falls inside a two-byte UTF-8 character: drop all of it. */
    memset(in.detail, 'a', DS_DETAIL_MAX - 1);
    in.detail[DS_DETAIL_MAX - 1] = (char)0xc3;
    in.detail[DS_DETAIL_MAX] = (char)0xa9;
    cr_assert_eq(ds_status_encode(&in, &enc, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(ds_status_decode(enc, len, &out, &err), 0, "%s", err.msg);
    cr_expect_eq(strlen(out.detail), DS_DETAIL_MAX - 1);
    cr_expect_eq(out.detail[DS_DETAIL_MAX - 2], 'a');
    free(enc);
}

/* --- encode refuses what decode would reject -------------------------- */

static void expect_encode_refused(const ds_event *ev, const char *field)
{
    uint8_t *enc = (uint8_t *)"sentinel";
    size_t len = 99;
    ds_err err = {0};
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "\"%s\"", field);
    cr_expect_lt(ds_event_encode(ev, &enc, &len, &err), 0,
                 "encode accepted a bad %s", field);
    cr_expect_str_eq(err.reason, "bad-schema");
    cr_expect_not_null(strstr(err.msg, quoted), "msg \"%s\" lacks %s", err.msg,
                       quoted);
    cr_expect_null(enc);
    cr_expect_eq(len, 0);
}

Test(codec, encode_refuses_invalid_events)
{
    ds_event ev;
#define REFUSE(field, stmt)                                                    \
    do {                                                                       \
        ev = sample_event();                                                   \
        stmt;                                                                  \
        expect_encode_refused(&ev, field);                                     \
    } while (0)
    REFUSE("schema", ev.schema = 2);
    REFUSE("schema", ev.schema = 0);
    REFUSE("package", ev.package[0] = '\0');
    REFUSE("package", strcpy(ev.package, ".hidden"));
    REFUSE("package", strcpy(ev.package, "a/b"));
    REFUSE("package", memset(ev.package, 'a', sizeof(ev.package)));
    REFUSE("version", ev.version = 0);
    REFUSE("chunks", (ev.chunks = 0, ev.chunk = 0));
    REFUSE("chunk", ev.chunk = ev.chunks);
    REFUSE("codec", strcpy(ev.codec, "gzip"));
    REFUSE("codec", memset(ev.codec, 'z', sizeof(ev.codec)));
    REFUSE("zsize", ev.zsize = 0);
    REFUSE("chunks", (ev.zsize = 7, ev.chunks = 8, ev.chunk = 0));
    REFUSE("data", ev.data_len = 0);
    REFUSE("data", ev.data = NULL);
    REFUSE("data", ev.zsize = ev.data_len - 1);
    REFUSE("key_id", ev.has_sig = 1);
    REFUSE("key_id", (ev.has_sig = 1, strcpy(ev.key_id, "-x")));
    REFUSE("key_id",
           (ev.has_sig = 1, memset(ev.key_id, 'k', sizeof(ev.key_id))));
#undef REFUSE
    /* The unsigned path ignores key_id entirely. */
    ev = sample_event();
    strcpy(ev.key_id, "-ignored");
    uint8_t *enc = NULL;
    size_t len = 0;
    cr_expect_eq(ds_event_encode(&ev, &enc, &len, NULL), 0);
    free(enc);
}

Test(codec, encode_refuses_invalid_status)
{
    struct {
        const char *field;
        ds_status st;
    } cases[8];
    int n = 0;
    for (int i = 0; i < 8; i++)
        cases[i].st = sample_status();
    cases[n].field = "state";
    strcpy(cases[n++].st.state, "deleted");
    cases[n].field = "state";
    memset(cases[n++].st.state, 'f', sizeof(cases[0].st.state));
    cases[n].field = "site";
    strcpy(cases[n++].st.site, "a/b");
    cases[n].field = "site";
    strcpy(cases[n++].st.site, "_publishedx");
    cases[n].field = "site";
    cases[n++].st.site[0] = '\0';
    cases[n].field = "package";
    strcpy(cases[n++].st.package, "..");
    cases[n].field = "package";
    memset(cases[n++].st.package, 'p', sizeof(cases[0].st.package));
    for (int i = 0; i < n; i++) {
        uint8_t *enc = NULL;
        size_t len = 0;
        ds_err err = {0};
        char quoted[32];
        snprintf(quoted, sizeof(quoted), "\"%s\"", cases[i].field);
        cr_expect_lt(ds_status_encode(&cases[i].st, &enc, &len, &err), 0,
                     "case %d", i);
        cr_expect_str_eq(err.reason, "bad-schema");
        cr_expect_not_null(strstr(err.msg, quoted), "case %d: %s", i, err.msg);
        cr_expect_null(enc);
    }
}

/* --- same_update ------------------------------------------------------ */

Test(codec, same_update)
{
    ds_event a = sample_event(), b = sample_event();
    cr_expect(ds_event_same_update(&a, &b));
    b.chunk = 0;
    b.data = payload + 1;
    b.data_len = 2;
    cr_expect(ds_event_same_update(&a, &b), "chunk and data do not count");
    cr_expect_not(ds_event_same_update(&a, NULL));
    cr_expect_not(ds_event_same_update(NULL, &b));

#define DIFFERS(stmt)                                                          \
    do {                                                                       \
        b = sample_event();                                                    \
        stmt;                                                                  \
        cr_expect_not(ds_event_same_update(&a, &b), "%s", #stmt);              \
        cr_expect_not(ds_event_same_update(&b, &a), "%s", #stmt);              \
    } while (0)
    DIFFERS(b.schema = 2);
    DIFFERS(strcpy(b.package, "app2"));
    DIFFERS(b.version++);
    DIFFERS(b.update_id[15] ^= 1);
    DIFFERS(b.chunks++);
    DIFFERS(strcpy(b.codec, "zstx"));
    DIFFERS(b.size++);
    DIFFERS(b.zsize++);
    DIFFERS(b.sha256[0] ^= 1);
    DIFFERS(b.created_ms++);
    DIFFERS((b.has_sig = 1, strcpy(b.key_id, "k")));
    a.has_sig = 1;
    strcpy(a.key_id, "k");
    DIFFERS((b.has_sig = 1, strcpy(b.key_id, "k"), b.sig[63] = 1));
    DIFFERS((b.has_sig = 1, strcpy(b.key_id, "j")));
#undef DIFFERS
    b = a;
    cr_expect(ds_event_same_update(&a, &b));
}

/* --- validators ------------------------------------------------------- */

Test(codec, package_id_validator)
{
    char max[DS_PACKAGE_MAX + 2];
    memset(max, 'a', sizeof(max));
    cr_expect(ds_package_valid(max, DS_PACKAGE_MAX));
    cr_expect_not(ds_package_valid(max, DS_PACKAGE_MAX + 1));
    cr_expect_not(ds_package_valid("", 0));
    cr_expect_not(ds_package_valid(NULL, 3));
    cr_expect(ds_package_valid("a", 1));
    cr_expect(ds_package_valid("7", 1));
    cr_expect(ds_package_valid("Z.z_9-x", 7));
    cr_expect(ds_package_valid("a..b", 4));
    cr_expect(ds_package_valid("app.", 4));
    cr_expect_not(ds_package_valid(".app", 4));
    cr_expect_not(ds_package_valid("-app", 4));
    cr_expect_not(ds_package_valid("_app", 4));
    cr_expect_not(ds_package_valid(".", 1));
    cr_expect_not(ds_package_valid("..", 2));
    cr_expect_not(ds_package_valid("a/b", 3));
    cr_expect_not(ds_package_valid("a b", 3));
    cr_expect_not(ds_package_valid("a\\b", 3));
    cr_expect_not(ds_package_valid("a:b", 3));
    cr_expect_not(ds_package_valid("a\0b", 3));
    cr_expect_not(ds_package_valid("caf\xc3\xa9", 5));
    cr_expect_not(ds_package_valid("a\n", 2));
    /* len, not NUL, delimits: "ab/" checked only up to 2 bytes is fine. */
    cr_expect(ds_package_valid("ab/", 2));

    cr_expect(ds_site_valid("dp-eu-1", 7));
    cr_expect_not(ds_site_valid("_published", 10));
    cr_expect_not(ds_site_valid("a/b", 3));
}

/* --- robustness ------------------------------------------------------- */

Test(codec, every_truncation_and_bit_flip_is_handled)
{
    ds_event in = sample_event();
    in.has_sig = 1;
    strcpy(in.key_id, "k1");
    uint8_t *enc = NULL;
    size_t len = 0;
    cr_assert_eq(ds_event_encode(&in, &enc, &len, NULL), 0);
    ds_event out;
    ds_err err = {0};
    for (size_t cut = 0; cut < len; cut++) {
        cr_expect_lt(ds_event_decode(enc, cut, &out, &err), 0, "cut %zu", cut);
        cr_expect_str_eq(err.reason, "bad-schema");
        cr_expect_null(out.data);
    }
    /* Any single flipped bit: either still valid or bad-schema, never a
     * crash (ASan/UBSan builds check the memory side). */
    uint8_t *copy = malloc(len);
    cr_assert_not_null(copy);
    int rejected = 0;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, enc, len);
            copy[i] ^= (uint8_t)(1u << bit);
            ds_err_clear(&err);
            if (ds_event_decode(copy, len, &out, &err) < 0) {
                cr_expect_str_eq(err.reason, "bad-schema");
                rejected++;
            } else {
                cr_expect(out.data >= copy && out.data < copy + len);
            }
        }
    }
    cr_expect_gt(rejected, 0);
    free(copy);
    free(enc);
}

static void expect_decode_fails(const uint8_t *p, size_t n, const char *what,
                                const char *msg_part)
{
    ds_event ev;
    ds_err err = {0};
    cr_expect_lt(ds_event_decode(p, n, &ev, &err), 0, "%s", what);
    cr_expect_str_eq(err.reason, "bad-schema", "%s", what);
    cr_expect_not_null(strstr(err.msg, msg_part), "%s: \"%s\" lacks \"%s\"",
                       what, err.msg, msg_part);
}

Test(codec, hostile_structures)
{
    /* array 32 / map 32 / bin 32 / str 32 lengths far beyond the input:
     * refused by the pre-check ("truncated"), before msgpack-c would
     * allocate room for billions of elements (its own failure would read
     * "cannot parse"). */
    const uint8_t a32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    const uint8_t m32[] = {0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01};
    const uint8_t b32[] = {0x81, 0xa4, 'd',  'a',  't',  'a',
                           0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    const uint8_t s32[] = {0x81, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xf0};
    const uint8_t ext[] = {0x81, 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff, 1};
    expect_decode_fails(a32, sizeof(a32), "array32", "truncated");
    expect_decode_fails(m32, sizeof(m32), "map32", "truncated");
    expect_decode_fails(b32, sizeof(b32), "bin32", "truncated");
    expect_decode_fails(s32, sizeof(s32), "str32", "truncated");
    expect_decode_fails(ext, sizeof(ext), "ext32", "truncated");
    expect_decode_fails(NULL, 0, "NULL, 0", "empty value");
    expect_decode_fails(NULL, 5, "NULL, 5", "NULL buffer");
    ds_err err = {0};
    cr_expect_lt(ds_event_decode(a32, sizeof(a32), NULL, &err), 0);
    ds_status st;
    cr_expect_lt(ds_status_decode(m32, sizeof(m32), &st, &err), 0);
    cr_expect_str_eq(err.reason, "bad-schema");
}

/* An unknown field nested `depth` arrays deep, appended to a valid event. */
static uint8_t *nested_event(int depth, size_t *len)
{
    ds_event in = sample_event();
    uint8_t *enc = NULL;
    size_t n = 0;
    cr_assert_eq(ds_event_encode(&in, &enc, &n, NULL), 0);
    cr_assert_eq(enc[0], 0x80 | 12); /* fixmap of 12 */
    uint8_t *out = malloc(n + 3 + (size_t)depth + 1);
    cr_assert_not_null(out);
    memcpy(out, enc, n);
    out[0] = 0x80 | 13;
    size_t o = n;
    out[o++] = 0xa2;
    out[o++] = 'z';
    out[o++] = 'z';
    for (int i = 0; i < depth; i++)
        out[o++] = 0x91; /* array of one element */
    out[o++] = 0xc0;
    free(enc);
    *len = o;
    return out;
}

Test(codec, nesting_depth)
{
    size_t len;
    ds_event ev;
    ds_err err = {0};
    uint8_t *v = nested_event(20, &len);
    cr_expect_eq(ds_event_decode(v, len, &ev, &err), 0, "%s", err.msg);
    free(v);
    v = nested_event(200, &len);
    cr_expect_lt(ds_event_decode(v, len, &ev, &err), 0);
    cr_expect_str_eq(err.reason, "bad-schema");
    free(v);
}

/* --- the shared test vectors ------------------------------------------ */

struct vec {
    int line;
    char *name, *kind, *valid, *canonical, *error_field, *hex;
    char *meaning; /* "k=v\n" lines, in file order */
    size_t meaning_len;
};

static void check_vector(const struct vec *v, int *valid_n, int *invalid_n)
{
    const char *name = v->name;
    cr_assert_not_null(v->kind, "%s: no kind", name);
    cr_assert_not_null(v->valid, "%s: no valid", name);
    cr_assert_not_null(v->hex, "%s: no hex", name);
    int is_event = strcmp(v->kind, "event") == 0;
    cr_assert(is_event || strcmp(v->kind, "status") == 0, "%s: kind %s", name,
              v->kind);
    uint8_t *buf = NULL;
    long n = unhex(v->hex, &buf);
    cr_assert_geq(n, 0, "%s: bad hex", name);
    ds_err err = {0};
    ds_event ev;
    ds_status st;
    int rc = is_event ? ds_event_decode(buf, (size_t)n, &ev, &err)
                      : ds_status_decode(buf, (size_t)n, &st, &err);

    if (strcmp(v->valid, "yes") == 0) {
        (*valid_n)++;
        cr_assert_not_null(v->canonical, "%s: no canonical", name);
        cr_expect_eq(rc, 0, "%s: must decode: %s", name, err.msg);
        if (rc != 0)
            goto out;
        char *got = is_event ? render_event(&ev) : render_status(&st);
        cr_expect_str_eq(got, v->meaning ? v->meaning : "",
                         "%s: decoded meaning differs", name);
        free(got);
        if (is_event)
            cr_expect(ev.data >= buf && ev.data + ev.data_len <= buf + n,
                      "%s: data not borrowed from the input", name);
        uint8_t *re = NULL;
        size_t relen = 0;
        rc = is_event ? ds_event_encode(&ev, &re, &relen, &err)
                      : ds_status_encode(&st, &re, &relen, &err);
        cr_expect_eq(rc, 0, "%s: re-encode: %s", name, err.msg);
        if (rc == 0 && strcmp(v->canonical, "yes") == 0) {
            char *rehex = malloc(2 * relen + 1);
            cr_assert_not_null(rehex);
            hex_of(rehex, re, relen);
            cr_expect_str_eq(rehex, v->hex, "%s: canonical re-encoding differs",
                             name);
            free(rehex);
        } else if (rc == 0) {
            cr_expect_str_eq(v->canonical, "no", "%s", name);
            /* Not byte-identical by design, but must mean the same. */
            ds_event ev2;
            ds_status st2;
            rc = is_event ? ds_event_decode(re, relen, &ev2, &err)
                          : ds_status_decode(re, relen, &st2, &err);
            cr_expect_eq(rc, 0, "%s: decode re-encoded: %s", name, err.msg);
            if (rc == 0) {
                char *got2 =
                    is_event ? render_event(&ev2) : render_status(&st2);
                cr_expect_str_eq(got2, v->meaning ? v->meaning : "",
                                 "%s: re-encoded meaning", name);
                free(got2);
            }
        }
        free(re);
    } else {
        cr_assert_str_eq(v->valid, "no", "%s: valid must be yes|no", name);
        (*invalid_n)++;
        cr_assert_not_null(v->error_field, "%s: no error-field", name);
        cr_expect_lt(rc, 0, "%s: must be rejected", name);
        cr_expect_str_eq(err.reason, "bad-schema", "%s: reason", name);
        if (strcmp(v->error_field, "-") == 0) {
            cr_expect_null(strstr(err.msg, "field \""),
                           "%s: structural error names a field: %s", name,
                           err.msg);
        } else {
            char quoted[80];
            snprintf(quoted, sizeof(quoted), "field \"%s\"", v->error_field);
            cr_expect_not_null(strstr(err.msg, quoted),
                               "%s: message \"%s\" does not name %s", name,
                               err.msg, quoted);
        }
        cr_expect_neq(err.msg[0], '\0', "%s: empty message", name);
        if (is_event)
            cr_expect_null(ev.data, "%s: ev not cleared", name);
    }
out:
    free(buf);
}

/* What the walk over the vector file counts, and the block it is in. */
struct walk {
    struct vec v;
    int valid_n, invalid_n, total, events, statuses;
};

static char **walk_header(void *ctx, const char *k, int lineno)
{
    struct vec *v = &((struct walk *)ctx)->v;
    v->line = lineno;
    return !strcmp(k, "name")          ? &v->name
           : !strcmp(k, "kind")        ? &v->kind
           : !strcmp(k, "valid")       ? &v->valid
           : !strcmp(k, "canonical")   ? &v->canonical
           : !strcmp(k, "error-field") ? &v->error_field
           : !strcmp(k, "hex")         ? &v->hex
                                       : NULL;
}

static void walk_meaning(void *ctx, const char *line)
{
    struct vec *v = &((struct walk *)ctx)->v;
    size_t l = strlen(line);
    v->meaning = realloc(v->meaning, v->meaning_len + l + 2);
    cr_assert_not_null(v->meaning);
    memcpy(v->meaning + v->meaning_len, line, l);
    v->meaning_len += l;
    v->meaning[v->meaning_len++] = '\n';
    v->meaning[v->meaning_len] = '\0';
}

static void walk_close(void *ctx, int lineno)
{
    struct walk *w = ctx;
    if (w->v.name != NULL) {
        w->total++;
        if (strcmp(w->v.kind ? w->v.kind : "", "event") == 0)
            w->events++;
        else
            w->statuses++;
        check_vector(&w->v, &w->valid_n, &w->invalid_n);
    } else {
        cr_assert_null(w->v.hex, "line %d: block without name", lineno);
    }
    free(w->v.meaning);
    memset(&w->v, 0, sizeof(w->v));
}

Test(codec, vectors)
{
    char *text = slurp(DESPOOL_SOURCE_DIR "/schemas/v1/vectors.txt");
    struct walk w;
    memset(&w, 0, sizeof(w));
    /* A blank line (or the end) closes a block. */
    walk_vectors(text, &w, walk_header, walk_meaning, walk_close);
    cr_assert_null(w.v.name, "the file must end with a newline");
    free(w.v.meaning);
    free(text);
    int valid_n = w.valid_n, invalid_n = w.invalid_n, total = w.total;
    cr_expect_gt(total, 30, "only %d vectors", total);
    cr_expect_gt(valid_n, 10, "only %d valid vectors", valid_n);
    cr_expect_gt(invalid_n, 50, "only %d invalid vectors", invalid_n);
    cr_expect_gt(w.events, 20);
    cr_expect_gt(w.statuses, 10);
    cr_log_info("%d vectors: %d valid, %d invalid", total, valid_n, invalid_n);
}
