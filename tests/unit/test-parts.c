/*
 * test-parts.c - the part cutter: parts are consecutive slices cut at the
 * fixed size (or where a cut rule says), emitted in order, each id the
 * SHA-256 of its slice and each frame one zstd frame with its content size
 * that decodes alone to its slice; the frames concatenated decode to the
 * stream, and ds_unpack extracts them to the packed tree; the same bytes
 * give the same frames whatever the thread count and write sizes;
 * incompressible parts stay within DS_PART_ZMAX; the empty stream is one
 * empty part; a failing callback, a cancel and bad options stop the sink
 * cleanly with their error (run under ASan for the "no leak" part). All
 * data is generated here.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "fsutil.h"
#include "pack.h"
#include "parts.h"
#include "unpack.h"
#include "testutil.h"

/* --- helpers ---------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            rng_next(&s);
        p[i] = (uint8_t)(s >> (8 * (i % 8)));
    }
}

/* Log-like text: compressible, with a newline every ~50 bytes. */
static void fill_text(uint8_t *p, size_t n, unsigned seed)
{
    size_t off = 0;
    for (unsigned line = seed; off < n; line++) {
        char l[128];
        int k = snprintf(l, sizeof(l), "%08u INFO served path=/pkg/%u ok\n",
                         line, line % 97);
        size_t take = (size_t)k < n - off ? (size_t)k : n - off;
        memcpy(p + off, l, take);
        off += take;
    }
}

static void sha256_of(const void *p, size_t n, uint8_t out[32])
{
    unsigned len = 0;
    cr_assert_eq(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
}

/* Every part the sink emitted, frames copied. */
typedef struct got {
    ds_cut_part *p;
    uint8_t **frames;
    size_t n, cap;
    int fail_at;   /* > 0: return fail_rc at this many calls */
    int fail_rc;   /* code returned then */
    int fail_msg;  /* also fill err */
    int calls;     /* callback calls */
    int bad_order; /* index or offset out of sequence */
    uint64_t next_offset;
} got;

static int collect(void *ctx, const ds_cut_part *p, ds_err *err)
{
    got *g = ctx;
    g->calls++;
    if (g->fail_at > 0 && g->calls >= g->fail_at) {
        if (g->fail_msg)
            return ds_err_set(err, g->fail_rc, "produce-failed",
                              "test: produce part %llu refused",
                              (unsigned long long)p->index);
        return g->fail_rc;
    }
    if (p->index != g->n || p->offset != g->next_offset)
        g->bad_order = 1;
    g->next_offset += p->size;
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 16;
        g->p = realloc(g->p, g->cap * sizeof(*g->p));
        g->frames = realloc(g->frames, g->cap * sizeof(*g->frames));
        cr_assert(g->p != NULL && g->frames != NULL);
    }
    g->p[g->n] = *p;
    g->frames[g->n] = malloc(p->zsize ? p->zsize : 1);
    cr_assert_not_null(g->frames[g->n]);
    memcpy(g->frames[g->n], p->frame, p->zsize);
    g->p[g->n].frame = g->frames[g->n];
    g->n++;
    return 0;
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->frames[i]);
    free(g->frames);
    free(g->p);
    memset(g, 0, sizeof(*g));
}

/* The frames concatenated, in index order; *len set. */
static uint8_t *concat(const got *g, size_t *len)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        n += g->p[i].zsize;
    uint8_t *z = malloc(n ? n : 1);
    cr_assert_not_null(z);
    size_t off = 0;
    for (size_t i = 0; i < g->n; i++) {
        memcpy(z + off, g->frames[i], g->p[i].zsize);
        off += g->p[i].zsize;
    }
    *len = n;
    return z;
}

/* A zstd stream decompressed with the streaming API (the frames are not
 * special-cased: one context across frame boundaries, as ds_unpack
 * does); *len set. */
static uint8_t *zstd_stream_decode(const uint8_t *z, size_t zlen, size_t cap,
                                   size_t *len)
{
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    cr_assert_not_null(dc);
    uint8_t *out = malloc(cap ? cap : 1);
    cr_assert_not_null(out);
    ZSTD_inBuffer in = {z, zlen, 0};
    ZSTD_outBuffer ob = {out, cap, 0};
    size_t r = 1;
    while (in.pos < in.size) {
        r = ZSTD_decompressStream(dc, &ob, &in);
        cr_assert(!ZSTD_isError(r), "decode: %s", ZSTD_getErrorName(r));
        cr_assert(ob.pos < ob.size || in.pos == in.size, "output overflow");
    }
    cr_assert_eq(r, 0, "the stream ends at a frame's end");
    ZSTD_freeDCtx(dc);
    *len = ob.pos;
    return out;
}

/* Every structural property of the parts of data[0..len): order, sizes
 * within bounds, ids, each frame alone, the concatenation, the totals. */
static void check_parts(const got *g, const ds_parts_totals *t,
                        const uint8_t *data, size_t len, size_t part_max)
{
    cr_assert_not(g->bad_order, "parts emitted in index and offset order");
    cr_assert_eq(t->parts, g->n);
    cr_assert_eq(t->size, len);
    uint64_t off = 0, zsum = 0;
    for (size_t i = 0; i < g->n; i++) {
        const ds_cut_part *p = &g->p[i];
        cr_assert_eq(p->index, i);
        cr_assert_eq(p->offset, off, "part %zu offset", i);
        cr_assert(p->size >= 1 || len == 0, "part %zu is empty", i);
        cr_assert_leq(p->size, part_max, "part %zu size %zu", i, p->size);
        cr_assert_leq(p->zsize, DS_PART_ZMAX);
        cr_assert_leq(p->zsize, ZSTD_compressBound(p->size));
        uint8_t id[32];
        sha256_of(data + off, p->size, id);
        cr_assert_eq(memcmp(id, p->id, 32), 0, "part %zu id", i);
        /* One complete frame with its content size in the header. */
        cr_assert_eq(ZSTD_findFrameCompressedSize(p->frame, p->zsize), p->zsize,
                     "part %zu is exactly one frame", i);
        cr_assert_eq(ZSTD_getFrameContentSize(p->frame, p->zsize),
                     (unsigned long long)p->size, "part %zu content size", i);
        uint8_t *one = malloc(p->size + 1);
        cr_assert_not_null(one);
        size_t r = ZSTD_decompress(one, p->size + 1, p->frame, p->zsize);
        cr_assert(!ZSTD_isError(r), "part %zu: %s", i, ZSTD_getErrorName(r));
        cr_assert_eq(r, p->size);
        cr_assert_eq(memcmp(one, data + off, p->size), 0, "part %zu bytes", i);
        free(one);
        off += p->size;
        zsum += p->zsize;
    }
    cr_assert_eq(off, len, "the parts cover the stream");
    cr_assert_eq(t->zsize, zsum);
    uint8_t sha[32];
    sha256_of(data, len, sha);
    cr_assert_eq(memcmp(sha, t->sha256, 32), 0, "stream sha256");
    size_t zlen, dlen;
    uint8_t *z = concat(g, &zlen);
    uint8_t *d = zstd_stream_decode(z, zlen, len + 1, &dlen);
    cr_assert_eq(dlen, len);
    cr_assert_eq(memcmp(d, data, len), 0, "the concatenation is the stream");
    free(d);
    free(z);
}

/* Runs data through a new sink in writes cycling through sizes[]. */
static void run_sink(const ds_parts_opts *o, const uint8_t *data, size_t len,
                     const size_t *sizes, size_t nsizes, got *g,
                     ds_parts_totals *t)
{
    ds_parts *s = NULL;
    ds_err err;
    cr_assert_eq(ds_parts_new(o, collect, g, &s, &err), 0, "%s", err.msg);
    size_t off = 0, k = 0;
    while (off < len) {
        size_t n = sizes[k++ % nsizes];
        if (n > len - off)
            n = len - off;
        cr_assert_eq(ds_parts_write(s, data + off, n, &err), 0, "%s", err.msg);
        off += n;
    }
    cr_assert_eq(ds_parts_finish(s, t, &err), 0, "%s", err.msg);
    ds_parts_free(s);
}

static void same_parts(const got *a, const got *b, const char *what)
{
    cr_assert_eq(a->n, b->n, "%s: part count", what);
    for (size_t i = 0; i < a->n; i++) {
        cr_assert_eq(a->p[i].size, b->p[i].size, "%s: part %zu size", what, i);
        cr_assert_eq(memcmp(a->p[i].id, b->p[i].id, 32), 0, "%s: id %zu", what,
                     i);
        cr_assert_eq(a->p[i].zsize, b->p[i].zsize, "%s: zsize %zu", what, i);
        cr_assert_eq(memcmp(a->frames[i], b->frames[i], a->p[i].zsize), 0,
                     "%s: frame %zu", what, i);
    }
}

/* Half text, half random, in 64 KiB stripes. */
static uint8_t *mixed(size_t len, uint64_t seed)
{
    uint8_t *d = malloc(len);
    cr_assert_not_null(d);
    for (size_t off = 0; off < len; off += 65536) {
        size_t n = len - off < 65536 ? len - off : 65536;
        if ((off / 65536) % 2)
            fill_random(d + off, n, seed + off);
        else
            fill_text(d + off, n, (unsigned)(seed + off));
    }
    return d;
}

static const size_t one_write[] = {SIZE_MAX};

/* --- the sink alone ----------------------------------------------------- */

/* The empty stream is one empty part: a frame that decodes to nothing, so
 * the concatenation is still a valid zstd stream. */
Test(parts, empty_stream_is_one_empty_part)
{
    got g = {0};
    ds_parts_totals t;
    ds_parts_opts o = {.threads = 2};
    run_sink(&o, NULL, 0, one_write, 1, &g, &t);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.p[0].size, 0);
    cr_assert_gt(g.p[0].zsize, 0);
    cr_assert_eq(ZSTD_getFrameContentSize(g.frames[0], g.p[0].zsize), 0);
    check_parts(&g, &t, (const uint8_t *)"", 0, DS_PART_MAX);
    /* A zero-length write changes nothing. */
    got g2 = {0};
    ds_parts *s = NULL;
    ds_err err;
    cr_assert_eq(ds_parts_new(NULL, collect, &g2, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(ds_parts_write(s, NULL, 0, &err), 0, "%s", err.msg);
    ds_parts_totals t2;
    cr_assert_eq(ds_parts_finish(s, &t2, &err), 0, "%s", err.msg);
    ds_parts_free(s);
    same_parts(&g, &g2, "empty");
    got_free(&g);
    got_free(&g2);
}

/* DS_PART_MAX bytes are exactly one part; one byte more makes two. */
Test(parts, max_size_part_and_one_byte_more, .timeout = 60)
{
    uint8_t *d = mixed(DS_PART_MAX + 1, 5);
    for (int extra = 0; extra <= 1; extra++) {
        got g = {0};
        ds_parts_totals t;
        size_t len = DS_PART_MAX + (size_t)extra;
        run_sink(NULL, d, len, one_write, 1, &g, &t);
        cr_assert_eq(g.n, 1 + (size_t)extra, "%zu bytes: %zu parts", len, g.n);
        cr_assert_eq(g.p[0].size, DS_PART_MAX);
        if (extra)
            cr_assert_eq(g.p[1].size, 1);
        check_parts(&g, &t, d, len, DS_PART_MAX);
        got_free(&g);
    }
    free(d);
}

/* Writes of 1 byte, 4095 bytes and 1 MiB straddle every part boundary;
 * the parts are those of a single write of the whole stream. */
Test(parts, writes_of_any_size_give_the_same_parts, .timeout = 120)
{
    size_t len = 3 * (size_t)DS_PART_MAX + 12345;
    uint8_t *d = mixed(len, 9);
    got whole = {0};
    ds_parts_totals tw;
    run_sink(NULL, d, len, one_write, 1, &whole, &tw);
    cr_assert_eq(whole.n, 4);
    cr_assert_eq(whole.p[3].size, 12345);
    check_parts(&whole, &tw, d, len, DS_PART_MAX);

    static const size_t mix[] = {1, 4095, 1 << 20, 1, 1, 4095, 7};
    static const size_t ones[] = {1};
    static const size_t pages[] = {4095};
    static const size_t mibs[] = {1 << 20};
    const size_t *sets[] = {mix, ones, pages, mibs};
    size_t nsets[] = {sizeof(mix) / sizeof(mix[0]), 1, 1, 1};
    for (size_t k = 0; k < 4; k++) {
        got g = {0};
        ds_parts_totals t;
        ds_parts_opts o = {.threads = 2};
        run_sink(&o, d, len, sets[k], nsets[k], &g, &t);
        check_parts(&g, &t, d, len, DS_PART_MAX);
        same_parts(&whole, &g, "write sizes");
        cr_assert_eq(memcmp(t.sha256, tw.sha256, 32), 0);
        got_free(&g);
    }
    got_free(&whole);
    free(d);
}

/* 1, 2 and 4 threads, and small parts (many in flight at once): the same
 * frames byte for byte. */
Test(parts, same_frames_whatever_the_thread_count, .timeout = 120)
{
    size_t len = 6 << 20;
    uint8_t *d = mixed(len, 17);
    static const size_t sizes[] = {65536, 100, 300000};
    static const size_t part_sizes[] = {0, 100000};
    for (size_t ps = 0; ps < 2; ps++) {
        got ref = {0};
        for (int th = 1; th <= 4; th *= 2) {
            got g = {0};
            ds_parts_totals t;
            ds_parts_opts o = {.threads = th, .part_size = part_sizes[ps]};
            run_sink(&o, d, len, sizes, 3, &g, &t);
            check_parts(&g, &t, d, len,
                        part_sizes[ps] ? part_sizes[ps] : DS_PART_MAX);
            if (th == 1)
                ref = g;
            else {
                same_parts(&ref, &g, "threads");
                got_free(&g);
            }
        }
        cr_assert_eq(ref.n, ps == 0 ? 7 : 63);
        got_free(&ref);
    }
    free(d);
}

/* Incompressible parts: zstd stores raw blocks, so the frame is a few
 * bytes over the part (frame header, 3 bytes per 128 KiB block, the
 * checksum), never over DS_PART_ZMAX, zstd's worst case. */
Test(parts, incompressible_parts_stay_within_the_bound, .timeout = 60)
{
    size_t len = 2 * (size_t)DS_PART_MAX + 5;
    uint8_t *d = malloc(len);
    cr_assert_not_null(d);
    fill_random(d, len, 23);
    got g = {0};
    ds_parts_totals t;
    ds_parts_opts o = {.level = 19, .threads = 2};
    run_sink(&o, d, len, one_write, 1, &g, &t);
    check_parts(&g, &t, d, len, DS_PART_MAX);
    cr_assert_eq(g.n, 3);
    cr_assert_eq(ZSTD_compressBound(DS_PART_MAX), DS_PART_ZMAX);
    for (size_t i = 0; i < g.n; i++) {
        cr_assert_gt(g.p[i].zsize, g.p[i].size, "random data does not shrink");
        cr_assert_leq(g.p[i].zsize, g.p[i].size + 64,
                      "part %zu: %zu bytes of frame for %zu", i, g.p[i].zsize,
                      g.p[i].size);
    }
    got_free(&g);
    free(d);
}

/* A content-defined rule: cut after "k\n" (the text's line end) once a
 * part holds 1000 bytes; its state (the byte before buf) carries across
 * calls and resets with each part. Parts end where the rule says (or at
 * the maximum), whatever the write sizes and thread count; a rule that
 * returns nonsense fails the sink. */
typedef struct nl_rule {
    size_t min;
    int broken; /* returns n + 1 */
    uint64_t calls;
    uint8_t prev;
} nl_rule;

static size_t cut_newline(void *ctx, const uint8_t *buf, size_t n, size_t have)
{
    nl_rule *r = ctx;
    r->calls++;
    if (r->broken)
        return n + 1;
    if (have == 0)
        r->prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t before = i > 0 ? buf[i - 1] : r->prev;
        if (have + i + 1 >= r->min && buf[i] == '\n' && before == 'k')
            return i + 1;
    }
    if (n > 0)
        r->prev = buf[n - 1];
    return n;
}

Test(parts, a_cut_rule_decides_the_boundaries, .timeout = 60)
{
    size_t len = 3 << 20;
    uint8_t *d = mixed(len, 31);
    nl_rule rule = {.min = 1000};
    ds_parts_opts o = {.part_size = 8192, .cut = cut_newline, .cut_ctx = &rule};
    got a = {0}, b = {0};
    ds_parts_totals ta, tb;
    run_sink(&o, d, len, one_write, 1, &a, &ta);
    check_parts(&a, &ta, d, len, 8192);
    cr_assert_gt(rule.calls, 0);
    static const size_t small[] = {1, 333, 4095};
    o.threads = 3;
    run_sink(&o, d, len, small, 3, &b, &tb);
    same_parts(&a, &b, "cut rule");
    size_t at_newline = 0, at_max = 0;
    for (size_t i = 0; i + 1 < a.n; i++) {
        const ds_cut_part *p = &a.p[i];
        if (p->size >= 1000 && d[p->offset + p->size - 1] == '\n' &&
            d[p->offset + p->size - 2] == 'k')
            at_newline++;
        else if (p->size == 8192)
            at_max++;
        else
            cr_assert_fail("part %zu (%zu bytes) ends neither at a newline "
                           "nor at the maximum",
                           i, p->size);
    }
    /* Text stripes cut at newlines, random stripes mostly at the max. */
    cr_assert_gt(at_newline, 10);
    cr_assert_gt(at_max, 10);
    got_free(&a);
    got_free(&b);

    nl_rule bad = {.broken = 1};
    ds_parts_opts ob = {.cut = cut_newline, .cut_ctx = &bad};
    ds_parts *s = NULL;
    ds_err err;
    got g = {0};
    cr_assert_eq(ds_parts_new(&ob, collect, &g, &s, &err), 0, "%s", err.msg);
    cr_assert_lt(ds_parts_write(s, d, 100, &err), 0);
    cr_assert_str_eq(err.reason, "internal");
    cr_assert_neq(strstr(err.msg, "cut rule"), NULL, "%s", err.msg);
    cr_assert_lt(ds_parts_finish(s, NULL, &err), 0, "sticky");
    ds_parts_free(s);
    got_free(&g);
    free(d);
}

/* A callback failing at its third part stops the sink: the write that
 * emitted it returns the callback's error, later calls return it again,
 * nothing more is emitted, and free joins the threads with parts still
 * in flight (ASan: no leak, no use after free). */
Test(parts, failing_callback_stops_the_sink, .timeout = 60)
{
    size_t len = 12 << 20;
    uint8_t *d = mixed(len, 41);
    for (int msg = 0; msg <= 1; msg++) {
        got g = {.fail_at = 3, .fail_rc = -EPIPE, .fail_msg = msg};
        ds_parts *s = NULL;
        ds_err err;
        ds_parts_opts o = {.threads = 2, .name = "pkg-x"};
        cr_assert_eq(ds_parts_new(&o, collect, &g, &s, &err), 0, "%s", err.msg);
        int rc = 0;
        size_t off = 0;
        while (off < len && rc == 0) {
            size_t n = len - off < 65536 ? len - off : 65536;
            ds_err_clear(&err);
            rc = ds_parts_write(s, d + off, n, &err);
            off += n;
        }
        cr_assert_eq(rc, -EPIPE, "the callback's code, got %d", rc);
        cr_assert_lt(off, len, "stopped at the failure, not at the end");
        cr_assert_eq(err.code, -EPIPE);
        if (msg) {
            cr_assert_str_eq(err.reason, "produce-failed");
            cr_assert_neq(strstr(err.msg, "produce part 2"), NULL, "%s",
                          err.msg);
        } else {
            cr_assert_str_eq(err.reason, "internal");
            cr_assert_neq(strstr(err.msg, "pkg-x"), NULL, "%s", err.msg);
            cr_assert_neq(strstr(err.msg, "emit part 2"), NULL, "%s", err.msg);
        }
        ds_err again;
        ds_err_clear(&again);
        cr_assert_eq(ds_parts_write(s, d, 10, &again), -EPIPE);
        cr_assert_str_eq(again.msg, err.msg);
        ds_err_clear(&again);
        cr_assert_eq(ds_parts_finish(s, NULL, &again), -EPIPE);
        cr_assert_str_eq(again.msg, err.msg);
        cr_assert_eq(g.calls, 3, "no part emitted after the failure");
        ds_parts_cancel(s); /* a no-op now */
        ds_parts_free(s);
        got_free(&g);
    }
    free(d);
}

typedef struct canceller {
    ds_parts *s;
    int delay_ms;
} canceller;

static void *cancel_later(void *arg)
{
    canceller *c = arg;
    struct timespec ts = {0, (long)c->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    ds_parts_cancel(c->s);
    return NULL;
}

/* Cancel from another thread while the writer writes (and waits for the
 * pool): the writer's next call, or the one waiting, fails "cancelled";
 * so does finish; cancel before any write fails the first write. */
Test(parts, cancel_stops_the_writer, .timeout = 60)
{
    size_t len = 1 << 20;
    uint8_t *d = mixed(len, 43);
    got g = {0};
    ds_parts *s = NULL;
    ds_err err;
    ds_parts_opts o = {.threads = 1, .level = 9};
    cr_assert_eq(ds_parts_new(&o, collect, &g, &s, &err), 0, "%s", err.msg);
    canceller c = {.s = s, .delay_ms = 50};
    pthread_t tid;
    cr_assert_eq(pthread_create(&tid, NULL, cancel_later, &c), 0);
    int rc = 0;
    uint64_t rounds = 0;
    /* Without the cancel this would run for ever (bounded by the test's
     * timeout). */
    while (rc == 0) {
        ds_err_clear(&err);
        rc = ds_parts_write(s, d, len, &err);
        rounds++;
    }
    pthread_join(tid, NULL);
    cr_assert_eq(rc, -ECANCELED);
    cr_assert_str_eq(err.reason, "cancelled", "%s", err.msg);
    cr_assert_gt(rounds, 1);
    cr_assert_eq(ds_parts_finish(s, NULL, &err), -ECANCELED);
    int emitted = g.calls;
    ds_parts_free(s);
    cr_assert_eq(g.calls, emitted, "nothing emitted by free");
    got_free(&g);

    cr_assert_eq(ds_parts_new(NULL, collect, &g, &s, &err), 0, "%s", err.msg);
    ds_parts_cancel(s);
    cr_assert_eq(ds_parts_write(s, d, 10, &err), -ECANCELED);
    cr_assert_str_eq(err.reason, "cancelled");
    ds_parts_free(s);
    cr_assert_eq(g.calls, 0);
    got_free(&g);
    free(d);
}

Test(parts, bad_options_and_misuse_are_errors)
{
    got g = {0};
    ds_parts *s = (ds_parts *)&g;
    ds_err err;
    ds_parts_opts o = {.level = 99};
    cr_assert_eq(ds_parts_new(&o, collect, &g, &s, &err), -EINVAL);
    cr_assert_str_eq(err.reason, "bad-option");
    cr_assert_null(s);
    o = (ds_parts_opts){.part_size = DS_PART_MAX + 1};
    cr_assert_eq(ds_parts_new(&o, collect, &g, &s, &err), -EINVAL);
    cr_assert_neq(strstr(err.msg, "part size"), NULL, "%s", err.msg);
    o = (ds_parts_opts){.threads = DS_PARTS_THREADS_MAX + 1};
    cr_assert_eq(ds_parts_new(&o, collect, &g, &s, &err), -EINVAL);
    o = (ds_parts_opts){.threads = -1};
    cr_assert_eq(ds_parts_new(&o, collect, &g, &s, &err), -EINVAL);
    cr_assert_eq(ds_parts_new(NULL, NULL, &g, &s, &err), -EINVAL);
    cr_assert_eq(ds_parts_write(NULL, "x", 1, &err), -EINVAL);
    cr_assert_eq(ds_parts_finish(NULL, NULL, &err), -EINVAL);
    ds_parts_cancel(NULL);
    ds_parts_free(NULL);

    cr_assert_eq(ds_parts_new(NULL, collect, &g, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(ds_parts_write(s, "abc", 3, &err), 0, "%s", err.msg);
    ds_parts_totals t;
    cr_assert_eq(ds_parts_finish(s, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t.parts, 1);
    cr_assert_eq(t.size, 3);
    cr_assert_lt(ds_parts_write(s, "d", 1, &err), 0, "write after finish");
    cr_assert_lt(ds_parts_finish(s, &t, &err), 0, "finish twice");
    ds_parts_free(s);
    got_free(&g);
}

/* --- ds_pack_parts ------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t len,
                       mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "create %s", path);
    cr_assert_eq(write(fd, data, len), (ssize_t)len, "write %s", path);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

/* A tree of ~5.5 MiB: a 2 MiB random file, a 3 MiB text file, a hundred
 * small files over nested directories, an empty file and directory, a
 * symlink, modes 0755/0600. */
static void make_tree(const char *root)
{
    static const char *dirs[] = {"a", "a/b", "a/b/c", "empty", "many"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char *p = tu_pathf("%s/%s", root, dirs[i]);
        cr_assert_eq(mkdir(p, 0755), 0, "mkdir %s", p);
        free(p);
    }
    size_t big = 3 << 20;
    uint8_t *data = malloc(big);
    cr_assert_not_null(data);
    fill_random(data, 2 << 20, 77);
    char *p = tu_pathf("%s/a/b/random.bin", root);
    write_file(p, data, 2 << 20, 0644);
    free(p);
    fill_text(data, big, 3);
    p = tu_pathf("%s/a/b/c/text.log", root);
    write_file(p, data, big, 0600);
    free(p);
    for (int i = 0; i < 100; i++) {
        p = tu_pathf("%s/many/f%03d", root, i);
        write_file(p, data + i * 1000, 100 + (size_t)i * 97,
                   i % 2 ? 0755 : 0644);
        free(p);
    }
    p = tu_pathf("%s/a/empty.txt", root);
    write_file(p, "", 0, 0644);
    free(p);
    p = tu_pathf("%s/link", root);
    cr_assert_eq(symlink("a/b/random.bin", p), 0);
    free(p);
    free(data);
}

static int not_dots(const struct dirent *e)
{
    return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    cr_assert(fa != NULL && fb != NULL, "open %s / %s", a, b);
    static uint8_t ba[65536], bb[65536];
    for (;;) {
        size_t na = fread(ba, 1, sizeof(ba), fa);
        size_t nb = fread(bb, 1, sizeof(bb), fb);
        cr_assert_eq(na, nb, "length of %s", b);
        if (na == 0)
            break;
        cr_assert_eq(memcmp(ba, bb, na), 0, "content of %s", b);
    }
    fclose(fa);
    fclose(fb);
}

/* Names, types, modes, mtimes, link targets and bytes; returns entries. */
static uint64_t same_tree(const char *a, const char *b)
{
    struct dirent **la, **lb;
    int na = scandir(a, &la, not_dots, by_name);
    int nb = scandir(b, &lb, not_dots, by_name);
    cr_assert(na >= 0 && nb >= 0, "scandir %s / %s", a, b);
    cr_assert_eq(na, nb, "entries in %s", b);
    uint64_t n = 0;
    for (int i = 0; i < na; i++) {
        cr_assert_str_eq(la[i]->d_name, lb[i]->d_name);
        char *pa = tu_pathf("%s/%s", a, la[i]->d_name);
        char *pb = tu_pathf("%s/%s", b, lb[i]->d_name);
        struct stat sa, sb;
        cr_assert_eq(lstat(pa, &sa), 0);
        cr_assert_eq(lstat(pb, &sb), 0);
        cr_assert_eq(sa.st_mode & S_IFMT, sb.st_mode & S_IFMT, "type %s", pb);
        if (!S_ISLNK(sa.st_mode)) {
            cr_assert_eq(sa.st_mode & 07777, sb.st_mode & 07777, "mode %s", pb);
            cr_assert_eq(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec, "mtime %s", pb);
        }
        if (S_ISREG(sa.st_mode)) {
            same_file(pa, pb);
        } else if (S_ISLNK(sa.st_mode)) {
            char ta[PATH_MAX], tb[PATH_MAX];
            ssize_t x = readlink(pa, ta, sizeof(ta));
            ssize_t y = readlink(pb, tb, sizeof(tb));
            cr_assert(x > 0 && x == y && memcmp(ta, tb, (size_t)x) == 0,
                      "link %s", pb);
        } else {
            n += same_tree(pa, pb);
        }
        n++;
        free(pa);
        free(pb);
        free(la[i]);
        free(lb[i]);
    }
    free(la);
    free(lb);
    return n;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    uint8_t *b = malloc((size_t)n + 1);
    cr_assert_not_null(b);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Hands out a byte string in pieces of 900 KiB, each copied into a
 * fresh buffer that is freed on the next call (a Kafka message's life). */
typedef struct feeder {
    const uint8_t *data;
    size_t len, pos;
    uint8_t *piece;
} feeder;

static ssize_t feed(void *ctx, const void **out)
{
    feeder *f = ctx;
    free(f->piece);
    f->piece = NULL;
    if (f->pos == f->len)
        return 0;
    size_t n = f->len - f->pos < 900 * 1024 ? f->len - f->pos : 900 * 1024;
    f->piece = malloc(n);
    cr_assert_not_null(f->piece);
    memcpy(f->piece, f->data + f->pos, n);
    f->pos += n;
    *out = f->piece;
    return (ssize_t)n;
}

static void unpack_fails(const char *tmp, const char *name, const uint8_t *z,
                         size_t zlen, const ds_unpack_opts *o,
                         const char *reason, const char *text)
{
    char *dest = tu_pathf("%s/%s", tmp, name);
    cr_assert_eq(mkdir(dest, 0755), 0);
    feeder f = {.data = z, .len = zlen};
    ds_err err;
    ds_err_clear(&err);
    cr_assert_lt(ds_unpack(dest, feed, &f, o, NULL, &err), 0, "%s", name);
    free(f.piece);
    cr_assert_str_eq(err.reason, reason, "%s: %s", name, err.msg);
    if (text != NULL)
        cr_assert_neq(strstr(err.msg, text), NULL, "%s: %s", name, err.msg);
    free(dest);
}

/* What ds_unpack refuses of a stream of parts: more than one frame unless
 * multi_frame is set, junk after the last frame, a stream cut inside its
 * last frame, a part left out. */
static void unpack_refusals(const char *tmp, const got *g, const uint8_t *cat,
                            size_t zlen, const ds_unpack_opts *uo)
{
    cr_assert_geq(g->n, 2);
    ds_unpack_opts one = *uo;
    one.multi_frame = 0;
    unpack_fails(tmp, "v1", cat, zlen, &one, "corrupt-zstd", "after the end");
    uint8_t *junk = malloc(zlen + 4);
    cr_assert_not_null(junk);
    memcpy(junk, cat, zlen);
    memcpy(junk + zlen, "JUNK", 4);
    unpack_fails(tmp, "junk", junk, zlen + 4, uo, "corrupt-zstd", NULL);
    unpack_fails(tmp, "cut", cat, zlen - 3, uo, "corrupt-zstd", "truncated");
    /* Part 1 left out: the bytes after it are not the tar's. */
    size_t z0 = g->p[0].zsize, z1 = g->p[1].zsize;
    memcpy(junk, cat, z0);
    memcpy(junk + z0, cat + z0 + z1, zlen - z0 - z1);
    char *dest = tu_pathf("%s/gap", tmp);
    cr_assert_eq(mkdir(dest, 0755), 0);
    feeder f = {.data = junk, .len = zlen - z1};
    ds_err err;
    ds_err_clear(&err);
    cr_assert_lt(ds_unpack(dest, feed, &f, uo, NULL, &err), 0);
    free(f.piece);
    free(dest);
    free(junk);
}

static int pack_parts_of(const char *src, const ds_parts_opts *po,
                         const ds_pack_opts *o, got *g, ds_pack_stats *st,
                         ds_err *err)
{
    ds_parts *s = NULL;
    int rc = ds_parts_new(po, collect, g, &s, err);
    cr_assert_eq(rc, 0, "%s", err->msg);
    rc = ds_pack_parts(src, o, s, st, err);
    ds_parts_free(s);
    return rc;
}

/*
 * The tree packed into parts is the tar stream ds_pack makes (same size,
 * sha256 and entries; the parts' frames decode to ds_pack's stream
 * decoded), and ds_unpack extracts the concatenated frames, given as one
 * stream in 900 KiB pieces, to the same tree. A tar file source too.
 */
Test(parts, pack_parts_unpacks_to_the_same_tree, .timeout = 120)
{
    char *tmp = tu_tmpdir("parts");
    char *src = tu_pathf("%s/src", tmp);
    char *zst = tu_pathf("%s/one.tar.zst", tmp);
    cr_assert_eq(mkdir(src, 0755), 0);
    make_tree(src);

    ds_err err;
    ds_pack_stats one;
    int fd = open(zst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ds_pack(src, NULL, fd, &one, &err), 0, "%s", err.msg);
    close(fd);
    cr_assert_eq(one.parts, 0);
    size_t zlen;
    uint8_t *z = read_all(zst, &zlen);
    size_t tlen;
    uint8_t *tar = zstd_stream_decode(z, zlen, one.size + 1, &tlen);
    cr_assert_eq(tlen, one.size);
    free(z);

    got g = {0};
    ds_pack_stats st;
    ds_parts_opts po = {.threads = 2, .name = src};
    cr_assert_eq(pack_parts_of(src, &po, NULL, &g, &st, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(st.size, one.size);
    cr_assert_eq(st.files, one.files);
    cr_assert_eq(memcmp(st.sha256, one.sha256, 32), 0, "same tar stream");
    cr_assert_eq(st.parts, g.n);
    cr_assert_geq(g.n, 7, "~5.5 MiB: at least 7 parts, got %zu", g.n);
    ds_parts_totals t = {.parts = st.parts, .size = st.size, .zsize = st.zsize};
    memcpy(t.sha256, st.sha256, 32);
    check_parts(&g, &t, tar, tlen, DS_PART_MAX);

    uint8_t *cat = concat(&g, &zlen);
    cr_assert_eq(zlen, st.zsize);
    char *dest = tu_pathf("%s/dest", tmp);
    cr_assert_eq(mkdir(dest, 0755), 0);
    ds_unpack_opts uo = {
        .size = st.size, .sha256 = st.sha256, .multi_frame = 1};
    feeder f = {.data = cat, .len = zlen};
    ds_unpack_stats us;
    ds_err_clear(&err);
    cr_assert_eq(ds_unpack(dest, feed, &f, &uo, &us, &err), 0, "%s: %s",
                 err.reason, err.msg);
    free(f.piece);
    cr_assert_eq(us.size, st.size);
    cr_assert_eq(us.zsize, st.zsize);
    cr_assert_eq(same_tree(src, dest), st.files);
    unpack_refusals(tmp, &g, cat, zlen, &uo);
    free(cat);
    got_free(&g);

    /* The tar file as the source: its entries copied, the same tree. */
    char *tarpath = tu_pathf("%s/src.tar", tmp);
    fd = open(tarpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, tar, tlen), (ssize_t)tlen);
    close(fd);
    ds_pack_stats st2;
    cr_assert_eq(pack_parts_of(tarpath, &po, NULL, &g, &st2, &err), 0, "%s",
                 err.msg);
    cat = concat(&g, &zlen);
    char *dest2 = tu_pathf("%s/dest2", tmp);
    cr_assert_eq(mkdir(dest2, 0755), 0);
    uo = (ds_unpack_opts){
        .size = st2.size, .sha256 = st2.sha256, .multi_frame = 1};
    f = (feeder){.data = cat, .len = zlen};
    cr_assert_eq(ds_unpack(dest2, feed, &f, &uo, &us, &err), 0, "%s: %s",
                 err.reason, err.msg);
    free(f.piece);
    cr_assert_eq(same_tree(src, dest2), st.files);
    free(cat);
    got_free(&g);

    free(tar);
    free(tarpath);
    free(dest);
    free(dest2);
    free(src);
    free(zst);
    tu_rm(tmp);
}

static int cancel_after(void *ctx)
{
    int *left = ctx;
    return --*left < 0;
}

/* A failing part callback fails the pack with the callback's error; the
 * pack's own cancel hook cancels the sink: nothing is emitted after. */
Test(parts, pack_parts_stops_on_a_failing_callback_or_cancel, .timeout = 60)
{
    char *tmp = tu_tmpdir("parts");
    char *src = tu_pathf("%s/src", tmp);
    cr_assert_eq(mkdir(src, 0755), 0);
    make_tree(src);
    ds_err err;
    ds_pack_stats st;
    ds_parts_opts po = {.threads = 2};

    got g = {.fail_at = 2, .fail_rc = -ENOSPC, .fail_msg = 1};
    ds_err_clear(&err);
    cr_assert_eq(pack_parts_of(src, &po, NULL, &g, &st, &err), -ENOSPC);
    cr_assert_str_eq(err.reason, "produce-failed", "%s", err.msg);
    cr_assert_eq(g.calls, 2);
    got_free(&g);

    got h = {0};
    int left = 20; /* tar blocks of 64 KiB: stops after ~1.3 MiB */
    ds_pack_opts o = {.cancelled = cancel_after, .cancel_ctx = &left};
    ds_err_clear(&err);
    cr_assert_eq(pack_parts_of(src, &po, &o, &h, &st, &err), -ECANCELED);
    cr_assert_str_eq(err.reason, "cancelled", "%s", err.msg);
    cr_assert_leq(h.n, 2, "at most the parts cut before the cancel");
    got_free(&h);

    /* A missing sink is refused. */
    cr_assert_eq(ds_pack_parts(src, NULL, NULL, &st, &err), -EINVAL);
    free(src);
    tu_rm(tmp);
}

/* want_frame: the parts it declines come without a frame (nothing
 * compressed), with their bytes; ds_parts_frame then makes exactly the
 * frame the pool would have made. */
typedef struct lazy {
    ds_parts *s;
    const got *ref;
    size_t n, declined;
} lazy;

static int want_odd(void *ctx, const uint8_t *id, size_t size)
{
    (void)ctx;
    (void)size;
    return id[0] & 1;
}

static int lazy_emit(void *ctx, const ds_cut_part *p, ds_err *err)
{
    lazy *l = ctx;
    const ds_cut_part *r = &l->ref->p[l->n++];
    cr_assert_eq(memcmp(p->id, r->id, DS_SHA256_LEN), 0);
    uint8_t md[DS_SHA256_LEN];
    unsigned mdlen = 0;
    EVP_Digest(p->data, p->size, md, &mdlen, EVP_sha256(), NULL);
    cr_assert_eq(memcmp(md, p->id, DS_SHA256_LEN), 0, "data is not the part");
    if (p->frame != NULL) {
        cr_assert(p->id[0] & 1, "a declined part came with a frame");
        cr_assert_eq(p->zsize, r->zsize);
        return 0;
    }
    cr_assert_eq(p->id[0] & 1, 0, "a wanted part came without a frame");
    cr_assert_eq(p->zsize, 0);
    l->declined++;
    const uint8_t *f = NULL;
    size_t z = 0;
    int rc = ds_parts_frame(l->s, p, &f, &z, err);
    cr_assert_eq(rc, 0, "%s", err->msg);
    cr_assert_eq(z, r->zsize);
    cr_assert_eq(memcmp(f, r->frame, z), 0, "ds_parts_frame's frame differs");
    return 0;
}

Test(parts, declined_frames_are_not_made, .timeout = 60)
{
    size_t len = 4 << 20;
    uint8_t *d = mixed(len, 23);
    static const size_t sizes[] = {65536};
    got ref = {0};
    ds_parts_totals t;
    ds_parts_opts o = {.threads = 2, .part_size = 100000};
    run_sink(&o, d, len, sizes, 1, &ref, &t);
    o.want_frame = want_odd;
    lazy l = {.ref = &ref};
    ds_err err;
    cr_assert_eq(ds_parts_new(&o, lazy_emit, &l, &l.s, &err), 0);
    cr_assert_eq(ds_parts_write(l.s, d, len, &err), 0, "%s", err.msg);
    ds_parts_totals t2;
    cr_assert_eq(ds_parts_finish(l.s, &t2, &err), 0, "%s", err.msg);
    ds_parts_free(l.s);
    cr_assert_eq(l.n, ref.n);
    cr_assert_gt(l.declined, 5, "only %zu of %zu parts declined", l.declined,
                 l.n);
    cr_assert_eq(memcmp(t2.sha256, t.sha256, DS_SHA256_LEN), 0);
    got_free(&ref);
    free(d);
}
