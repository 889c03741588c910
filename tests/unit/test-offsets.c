/* test-offsets.c - the commit point is the lowest offset not yet done. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "offsets.h"

Test(offsets, empty_tracker_has_no_commit_point)
{
    ds_offsets *t = ds_offsets_new();
    cr_assert_eq(ds_offsets_commit_point(t), -1);
    cr_assert_eq(ds_offsets_pending(t), 0);
    ds_offsets_free(t);
}

Test(offsets, out_of_order_completion)
{
    ds_offsets *t = ds_offsets_new();
    for (int64_t o = 10; o < 15; o++)
        cr_assert_eq(ds_offsets_add(t, o, NULL), 0);
    cr_assert_eq(ds_offsets_commit_point(t), 10);
    cr_assert_eq(ds_offsets_done(t, 12, NULL), 0);
    cr_assert_eq(ds_offsets_done(t, 14, NULL), 0);
    cr_assert_eq(ds_offsets_commit_point(t), 10, "10 is still pending");
    cr_assert_eq(ds_offsets_done(t, 10, NULL), 0);
    cr_assert_eq(ds_offsets_commit_point(t), 11);
    cr_assert_eq(ds_offsets_done(t, 11, NULL), 0);
    cr_assert_eq(ds_offsets_commit_point(t), 13, "12 was done already");
    cr_assert_eq(ds_offsets_pending(t), 1);
    cr_assert_eq(ds_offsets_done(t, 13, NULL), 0);
    cr_assert_eq(ds_offsets_commit_point(t), 15, "all done: one past last");
    cr_assert_eq(ds_offsets_pending(t), 0);
    ds_offsets_free(t);
}

Test(offsets, gaps_from_transaction_markers)
{
    /* 0,1 chunks of one transaction, 2 is its marker, 3.. the next. */
    ds_offsets *t = ds_offsets_new();
    int64_t offs[] = {0, 1, 3, 4, 7};
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(ds_offsets_add(t, offs[i], NULL), 0);
    cr_assert_eq(ds_offsets_done(t, 3, NULL), 0);
    cr_assert_eq(ds_offsets_done(t, 4, NULL), 0);
    cr_assert_eq(ds_offsets_commit_point(t), 0);
    cr_assert_eq(ds_offsets_done(t, 0, NULL), 0);
    cr_assert_eq(ds_offsets_done(t, 1, NULL), 0);
    cr_assert_eq(ds_offsets_commit_point(t), 7);
    cr_assert_lt(ds_offsets_done(t, 2, NULL), 0, "2 was never added");
    ds_offsets_free(t);
}

Test(offsets, rejects_duplicates_and_going_back)
{
    ds_offsets *t = ds_offsets_new();
    ds_err err;
    cr_assert_eq(ds_offsets_add(t, 5, NULL), 0);
    cr_assert_lt(ds_offsets_add(t, 5, &err), 0);
    cr_assert_lt(ds_offsets_add(t, 4, &err), 0);
    cr_assert_eq(ds_offsets_done(t, 5, NULL), 0);
    cr_assert_lt(ds_offsets_done(t, 5, &err), 0, "done twice");
    ds_offsets_reset(t);
    cr_assert_eq(ds_offsets_commit_point(t), -1);
    cr_assert_eq(ds_offsets_add(t, 2, NULL), 0, "reset allows rewinding");
    ds_offsets_free(t);
}

/* Random completion order over a long run that wraps and grows the ring;
 * the commit point is checked against a brute-force model each step. */
Test(offsets, matches_model_under_random_completion)
{
    enum { N = 5000 };
    static bool done[N];
    ds_offsets *t = ds_offsets_new();
    srand(42);
    int64_t next_add = 0;
    size_t added = 0;
    while (added < N || ds_offsets_pending(t) > 0) {
        if (added < N && (rand() % 3 != 0 || ds_offsets_pending(t) == 0)) {
            cr_assert_eq(ds_offsets_add(t, next_add, NULL), 0);
            next_add++;
            added++;
        } else {
            /* complete a random pending offset */
            int64_t o;
            do
                o = rand() % (int64_t)added;
            while (done[o]);
            done[o] = true;
            cr_assert_eq(ds_offsets_done(t, o, NULL), 0);
        }
        int64_t expect = (int64_t)added;
        for (size_t i = 0; i < added; i++)
            if (!done[i]) {
                expect = (int64_t)i;
                break;
            }
        cr_assert_eq(ds_offsets_commit_point(t), expect);
    }
    ds_offsets_free(t);
}
