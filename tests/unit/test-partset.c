/*
 * test-partset.c - the part set of a schema v2 publication: held parts
 * are reused with their record's partition, offset and zsize; a new part
 * is sent once and a repeat of it points at the same record; the held
 * parts nobody placed are the dropped ones, in the order they were held;
 * a held id of another size is sent again and not dropped; refs are
 * filled from delivery reports and a ref without one fails, naming it;
 * invalid held refs are refused; the table grows (thousands of parts)
 * without losing any.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "partset.h"

/* A distinct id per n (the hash uses the first bytes: vary them). */
static void id_of(uint8_t id[DS_SHA256_LEN], unsigned n)
{
    memset(id, 0xa5, DS_SHA256_LEN);
    for (int i = 0; i < 4; i++)
        id[i] = (uint8_t)(n >> (8 * i));
    id[31] = (uint8_t)n;
}

static ds_part_ref ref_of(unsigned n, int32_t partition, int64_t offset)
{
    ds_part_ref r = {.size = 1000 + n,
                     .zsize = 500 + n,
                     .partition = partition,
                     .offset = offset};
    id_of(r.id, n);
    return r;
}

static ds_partset *held_set(unsigned n)
{
    ds_partset *s = NULL;
    ds_err err;
    cr_assert_eq(ds_partset_new(n, &s, &err), 0, "%s", err.msg);
    for (unsigned i = 0; i < n; i++) {
        ds_part_ref r = ref_of(i, (int32_t)(i % 24), 100 + i);
        cr_assert_eq(ds_partset_hold(s, &r, &err), 0, "%s", err.msg);
    }
    return s;
}

typedef struct seen {
    unsigned n;
    uint8_t ids[16][DS_SHA256_LEN];
    int32_t partitions[16];
} seen;

static int collect(void *ctx, const ds_partset_entry *e)
{
    seen *s = ctx;
    if (s->n < 16) {
        memcpy(s->ids[s->n], e->id, DS_SHA256_LEN);
        s->partitions[s->n] = e->partition;
    }
    s->n++;
    return 0;
}

Test(partset, reuse_repeat_send_and_dropped)
{
    ds_partset *s = held_set(4); /* parts 0..3 held */
    ds_err err;
    uint8_t id[DS_SHA256_LEN];
    size_t e1 = 99, e2 = 99;

    /* Held part 1: reused with its record's place and zsize. */
    id_of(id, 1);
    cr_assert_eq(ds_partset_place(s, id, 1001, 777, &e1, &err), DS_PLACE_REUSE);
    const ds_partset_entry *e = ds_partset_at(s, e1);
    cr_assert_eq(e->partition, 1);
    cr_assert_eq(e->offset, 101);
    cr_assert_eq(e->zsize, 501, "the record's zsize, not the new frame's");

    /* A new part: sent, then the same id again: the same record. */
    id_of(id, 50);
    cr_assert_eq(ds_partset_place(s, id, 2000, 1500, &e1, &err), DS_PLACE_SEND);
    cr_assert_eq(ds_partset_at(s, e1)->partition, -1, "not delivered yet");
    cr_assert_eq(ds_partset_place(s, id, 2000, 1500, &e2, &err),
                 DS_PLACE_REPEAT);
    cr_assert_eq(e1, e2);

    /* Held part 3 placed twice: reused both times. */
    id_of(id, 3);
    cr_assert_eq(ds_partset_place(s, id, 1003, 503, &e2, &err), DS_PLACE_REUSE);
    cr_assert_eq(ds_partset_place(s, id, 1003, 503, &e2, &err), DS_PLACE_REUSE);

    /* Dropped: 0 and 2, in the order held, at their own partitions. */
    seen d = {0};
    cr_assert_eq(ds_partset_dropped(s, collect, &d), 2);
    cr_assert_eq(d.n, 2);
    id_of(id, 0);
    cr_assert_eq(memcmp(d.ids[0], id, DS_SHA256_LEN), 0);
    cr_assert_eq(d.partitions[0], 0);
    id_of(id, 2);
    cr_assert_eq(memcmp(d.ids[1], id, DS_SHA256_LEN), 0);
    cr_assert_eq(d.partitions[1], 2);
    cr_assert_eq(ds_partset_dropped(s, NULL, NULL), 2, "counting only");
    ds_partset_free(s);
}

Test(partset, nothing_placed_drops_everything_held)
{
    ds_partset *s = held_set(5);
    cr_assert_eq(ds_partset_dropped(s, NULL, NULL), 5);
    ds_partset_free(s);

    ds_err err;
    cr_assert_eq(ds_partset_new(0, &s, &err), 0);
    cr_assert_eq(ds_partset_dropped(s, NULL, NULL), 0, "nothing held");
    ds_partset_free(s);
    ds_partset_free(NULL);
}

Test(partset, held_twice_keeps_the_first_ref)
{
    ds_partset *s = held_set(1);
    ds_err err;
    ds_part_ref again = ref_of(0, 9, 999);
    cr_assert_eq(ds_partset_hold(s, &again, &err), 0);
    cr_assert_eq(ds_partset_count(s), 1);
    uint8_t id[DS_SHA256_LEN];
    id_of(id, 0);
    const ds_partset_entry *e = ds_partset_find(s, id);
    cr_assert_not_null(e);
    cr_assert_eq(e->partition, 0);
    cr_assert_eq(e->offset, 100);
    ds_partset_free(s);
}

Test(partset, held_id_of_another_size_is_sent_again_not_dropped)
{
    ds_partset *s = held_set(2);
    ds_err err;
    uint8_t id[DS_SHA256_LEN];
    size_t e;
    id_of(id, 1);
    cr_assert_eq(ds_partset_place(s, id, 4242, 100, &e, &err), DS_PLACE_SEND);
    cr_assert_eq(ds_partset_at(s, e)->held, 0);
    cr_assert_eq(ds_partset_at(s, e)->partition, -1);
    /* Only part 0 is dropped: part 1's key is used again. */
    seen d = {0};
    cr_assert_eq(ds_partset_dropped(s, collect, &d), 1);
    id_of(id, 0);
    cr_assert_eq(memcmp(d.ids[0], id, DS_SHA256_LEN), 0);
    /* Placing it once more with its new size is a repeat. */
    id_of(id, 1);
    cr_assert_eq(ds_partset_place(s, id, 4242, 100, &e, &err), DS_PLACE_REPEAT);
    /* A sent id with yet another size is an error. */
    cr_assert_lt(ds_partset_place(s, id, 7, 7, &e, &err), 0);
    ds_partset_free(s);
}

Test(partset, fill_refs_from_delivery_reports)
{
    ds_partset *s = held_set(2);
    ds_err err;
    uint8_t id[DS_SHA256_LEN];
    size_t e;
    ds_part_ref refs[3];
    memset(refs, 0, sizeof(refs));
    id_of(refs[0].id, 1); /* held */
    id_of(refs[1].id, 7); /* new */
    id_of(refs[2].id, 7); /* its repeat */
    id_of(id, 1);
    cr_assert_eq(ds_partset_place(s, id, 1001, 9, &e, &err), DS_PLACE_REUSE);
    id_of(id, 7);
    cr_assert_eq(ds_partset_place(s, id, 3000, 2000, &e, &err), DS_PLACE_SEND);
    /* No delivery report yet: fails naming ref 1 and "no offset". */
    cr_assert_lt(ds_partset_fill_refs(s, refs, 3, &err), 0);
    cr_assert(strstr(err.msg, "ref 1 ") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "no offset") != NULL, "%s", err.msg);
    ds_partset_entry *x = ds_partset_at(s, e);
    x->partition = 17;
    x->offset = 4242;
    cr_assert_eq(ds_partset_fill_refs(s, refs, 3, &err), 0, "%s", err.msg);
    cr_assert_eq(refs[0].partition, 1);
    cr_assert_eq(refs[0].offset, 101);
    cr_assert_eq(refs[0].zsize, 501);
    for (int i = 1; i < 3; i++) {
        cr_assert_eq(refs[i].partition, 17);
        cr_assert_eq(refs[i].offset, 4242);
        cr_assert_eq(refs[i].zsize, 2000);
    }
    /* An id the set never saw. */
    id_of(refs[2].id, 12345);
    cr_assert_lt(ds_partset_fill_refs(s, refs, 3, &err), 0);
    cr_assert(strstr(err.msg, "ref 2 ") != NULL, "%s", err.msg);
    ds_partset_free(s);
}

Test(partset, invalid_held_refs_are_refused)
{
    ds_partset *s = NULL;
    ds_err err;
    cr_assert_eq(ds_partset_new(0, &s, &err), 0);
    ds_part_ref bad[] = {ref_of(1, -1, 0), ref_of(2, 0, -1), ref_of(3, 0, 0),
                         ref_of(4, 0, 0)};
    bad[2].size = 0;
    bad[3].zsize = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_lt(ds_partset_hold(s, &bad[i], &err), 0, "ref %zu", i);
        cr_assert(strstr(err.msg, "not a valid ref") != NULL, "%s", err.msg);
    }
    cr_assert_eq(ds_partset_count(s), 0);
    ds_partset_free(s);
}

Test(partset, grows_without_losing_parts)
{
    enum { N = 20000 };
    ds_partset *s = NULL;
    ds_err err;
    cr_assert_eq(ds_partset_new(0, &s, &err), 0); /* no size hint */
    for (unsigned i = 0; i < N; i += 2) {
        ds_part_ref r = ref_of(i, 3, i);
        cr_assert_eq(ds_partset_hold(s, &r, &err), 0, "%s", err.msg);
    }
    unsigned reused = 0, sent = 0;
    for (unsigned i = 0; i < N; i++) {
        uint8_t id[DS_SHA256_LEN];
        size_t e;
        id_of(id, i);
        int what = ds_partset_place(s, id, 1000 + i, 1, &e, &err);
        reused += what == DS_PLACE_REUSE;
        sent += what == DS_PLACE_SEND;
        cr_assert_eq(memcmp(ds_partset_at(s, e)->id, id, DS_SHA256_LEN), 0);
    }
    cr_assert_eq(reused, N / 2);
    cr_assert_eq(sent, N / 2);
    cr_assert_eq(ds_partset_count(s), N);
    cr_assert_eq(ds_partset_dropped(s, NULL, NULL), 0);
    cr_assert_null(ds_partset_at(s, N));
    ds_partset_free(s);
}
