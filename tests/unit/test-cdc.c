/*
 * test-cdc.c - content-defined part boundaries (common/cdc.c) through the
 * part cutter: the gear table is schema v2's (vectors derived with
 * Python's hashlib, not with this code) and so are the part sizes of the
 * schema's vector; parts are DS_CDC_MIN..DS_CDC_MAX
 * bytes (but the last) and about DS_CDC_AVG on average; the same bytes
 * give the same parts whatever the write sizes; bytes inserted, changed
 * or removed in the middle of a stream change only the parts around them.
 */
#include <criterion/criterion.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdc.h"
#include "parts.h"
#include "testutil.h"

#define STREAM (24u * 1024 * 1024)
#define MAXP   256

typedef struct got {
    size_t n;
    uint8_t id[MAXP][DS_SHA256_LEN];
    size_t size[MAXP];
} got;

static int collect(void *ctx, const ds_cut_part *p, ds_err *err)
{
    (void)err;
    got *g = ctx;
    cr_assert_lt(g->n, MAXP);
    memcpy(g->id[g->n], p->id, DS_SHA256_LEN);
    g->size[g->n] = p->size;
    g->n++;
    return 0;
}

/* Cut buf[0..n) with the content-defined rule, in writes of `step` bytes
 * (0: one write). Level 1, one thread: ids do not depend on them. */
static void cut(const uint8_t *buf, size_t n, size_t step, got *g)
{
    ds_cdc cdc;
    ds_err err = {0};
    cr_assert_eq(ds_cdc_init(&cdc, &err), 0, "%s", err.msg);
    ds_parts_opts o = {
        .level = 1, .threads = 1, .cut = ds_cdc_cut, .cut_ctx = &cdc};
    ds_parts *s = NULL;
    memset(g, 0, sizeof(*g));
    cr_assert_eq(ds_parts_new(&o, collect, g, &s, &err), 0, "%s", err.msg);
    for (size_t off = 0; off < n;) {
        size_t k = step == 0 || n - off < step ? n - off : step;
        cr_assert_eq(ds_parts_write(s, buf + off, k, &err), 0, "%s", err.msg);
        off += k;
    }
    cr_assert_eq(ds_parts_finish(s, NULL, &err), 0, "%s", err.msg);
    ds_parts_free(s);
}

/* Parts of b whose id is also one of a's. */
static size_t shared(const got *a, const got *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++)
        for (size_t j = 0; j < a->n; j++)
            if (memcmp(b->id[i], a->id[j], DS_SHA256_LEN) == 0) {
                k++;
                break;
            }
    return k;
}

Test(cdc, gear_table_is_the_schema_s)
{
    ds_cdc c;
    ds_err err = {0};
    cr_assert_eq(ds_cdc_init(&c, &err), 0, "%s", err.msg);
    /* int.from_bytes(hashlib.sha256(bytes([i])).digest()[:8], "big") */
    cr_assert_eq(c.gear[0], UINT64_C(0x6e340b9cffb37a98));
    cr_assert_eq(c.gear[1], UINT64_C(0x4bf5122f344554c5));
    cr_assert_eq(c.gear[255], UINT64_C(0xa8100ae6aa1940d0));
}

/* schemas/v2 section 8's vector: 4 MiB of SHA-256("despool-cdc-vector"
 * || k as 8 bytes big-endian) for k = 0, 1, ...; the part sizes were
 * computed by a Python implementation of the section's text. */
Test(cdc, schema_vector)
{
    const size_t n = 4u * 1024 * 1024;
    uint8_t *buf = malloc(n);
    cr_assert_not_null(buf);
    for (size_t k = 0; k < n / 32; k++) {
        uint8_t msg[18 + 8];
        memcpy(msg, "despool-cdc-vector", 18);
        for (int i = 0; i < 8; i++)
            msg[18 + i] = (uint8_t)((uint64_t)k >> (56 - 8 * i));
        unsigned len = 0;
        cr_assert_eq(EVP_Digest(msg, sizeof(msg), buf + 32 * k, &len,
                                EVP_sha256(), NULL),
                     1);
    }
    static const size_t want[] = {185192, 211284, 219187, 231121, 228331,
                                  211318, 215419, 390333, 72091,  84854,
                                  228400, 210149, 327770, 304221, 234273,
                                  112013, 250358, 217909, 243397, 16684};
    static got g;
    cut(buf, n, 100000, &g);
    cr_assert_eq(g.n, sizeof(want) / sizeof(want[0]), "%zu parts", g.n);
    for (size_t i = 0; i < g.n; i++)
        cr_assert_eq(g.size[i], want[i], "part %zu: %zu bytes, want %zu", i,
                     g.size[i], want[i]);
    free(buf);
}

Test(cdc, sizes_within_bounds_and_near_the_average)
{
    uint8_t *buf = malloc(STREAM);
    cr_assert_not_null(buf);
    tu_fill(buf, STREAM, 7);
    static got g;
    cut(buf, STREAM, 0, &g);
    size_t total = 0;
    for (size_t i = 0; i < g.n; i++) {
        total += g.size[i];
        cr_assert_leq(g.size[i], DS_CDC_MAX);
        if (i + 1 < g.n)
            cr_assert_geq(g.size[i], DS_CDC_MIN, "part %zu: %zu bytes", i,
                          g.size[i]);
    }
    cr_assert_eq(total, STREAM);
    double mean = (double)STREAM / (double)g.n;
    cr_assert(mean > 0.8 * DS_CDC_AVG && mean < 1.3 * DS_CDC_AVG,
              "mean part size %.0f over %zu parts", mean, g.n);
    free(buf);
}

Test(cdc, same_parts_whatever_the_write_sizes)
{
    uint8_t *buf = malloc(STREAM);
    cr_assert_not_null(buf);
    tu_fill(buf, STREAM, 11);
    static got a, b, c;
    cut(buf, STREAM, 0, &a);
    cut(buf, STREAM, 4093, &b);
    cut(buf, STREAM, 1, &c);
    cr_assert_eq(a.n, b.n);
    cr_assert_eq(a.n, c.n);
    cr_assert_eq(memcmp(a.id, b.id, a.n * DS_SHA256_LEN), 0);
    cr_assert_eq(memcmp(a.id, c.id, a.n * DS_SHA256_LEN), 0);
    free(buf);
}

/* An edit in the middle: the parts before it are the same parts, and
 * after at most a few parts the cuts fall where they fell before. */
static void edit_changes_little(size_t at, size_t del, size_t ins)
{
    uint8_t *a = malloc(STREAM), *b = malloc(STREAM + ins);
    cr_assert(a != NULL && b != NULL);
    tu_fill(a, STREAM, 3);
    memcpy(b, a, at);
    tu_fill(b + at, ins, 99);
    memcpy(b + at + ins, a + at + del, STREAM - at - del);
    size_t nb = STREAM - del + ins;
    static got ga, gb;
    cut(a, STREAM, 0, &ga);
    cut(b, nb, 65536, &gb);
    size_t k = shared(&ga, &gb);
    cr_assert_geq(k + 3, gb.n, "%zu of %zu parts shared", k, gb.n);
    free(a);
    free(b);
}

Test(cdc, insertion_moves_only_nearby_cuts)
{
    edit_changes_little(11u * 1024 * 1024 + 12345, 0, 1000);
}

Test(cdc, deletion_moves_only_nearby_cuts)
{
    edit_changes_little(7u * 1024 * 1024 + 777, 40000, 0);
}

Test(cdc, change_in_place_moves_only_nearby_cuts)
{
    edit_changes_little(17u * 1024 * 1024, 4096, 4096);
}

/* Fixed-size cuts, by contrast, share nothing after an insertion: the
 * test of the test (the edit above really shifts the stream). */
Test(cdc, fixed_cuts_share_nothing_after_an_insertion)
{
    uint8_t *a = malloc(STREAM), *b = malloc(STREAM + 1);
    cr_assert(a != NULL && b != NULL);
    tu_fill(a, STREAM, 3);
    b[0] = 0x5a;
    memcpy(b + 1, a, STREAM);
    static got ga, gb;
    ds_err err = {0};
    ds_parts *s = NULL;
    ds_parts_opts o = {.level = 1, .threads = 1};
    got *gs[2] = {&ga, &gb};
    const uint8_t *bufs[2] = {a, b};
    size_t lens[2] = {STREAM, STREAM + 1};
    for (int i = 0; i < 2; i++) {
        memset(gs[i], 0, sizeof(got));
        cr_assert_eq(ds_parts_new(&o, collect, gs[i], &s, &err), 0);
        cr_assert_eq(ds_parts_write(s, bufs[i], lens[i], &err), 0);
        cr_assert_eq(ds_parts_finish(s, NULL, &err), 0);
        ds_parts_free(s);
    }
    cr_assert_eq(shared(&ga, &gb), 0);
    free(a);
    free(b);
}
