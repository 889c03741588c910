/* test-lagwatch.c - Burrow-style verdicts from lag samples over a window. */
#include <criterion/criterion.h>

#include <string.h>

#include "lagwatch.h"

static ds_lagwatch *lw_new(int window, uint64_t stop_after_ms)
{
    ds_lagwatch *lw = NULL;
    ds_err err;
    cr_assert_eq(ds_lagwatch_new(window, stop_after_ms, &lw, &err), 0);
    return lw;
}

static void add(ds_lagwatch *lw, uint64_t s, int64_t committed, int64_t lag)
{
    ds_err err;
    cr_assert_eq(ds_lagwatch_add(lw, 0, s * 1000, committed, lag, &err), 0);
}

Test(lagwatch, one_sample_is_no_verdict)
{
    ds_lagwatch *lw = lw_new(5, 60000);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_NONE);
    add(lw, 0, 10, 5);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_NONE);
    cr_assert_str_eq(ds_verdict_name(DS_V_NONE), "-");
    ds_lagwatch_free(lw);
}

Test(lagwatch, caught_up_is_ok_even_if_nothing_moves)
{
    ds_lagwatch *lw = lw_new(3, 2000);
    for (uint64_t t = 0; t < 10; t++)
        add(lw, t, 10, 0);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_OK);
    ds_lagwatch_free(lw);
}

Test(lagwatch, consuming_is_ok)
{
    ds_lagwatch *lw = lw_new(4, 60000);
    int64_t c = 0;
    for (uint64_t t = 0; t < 8; t++, c += 3)
        add(lw, t, c, 2 + (int64_t)(t % 2)); /* lag wobbles, commits move */
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_OK);
    ds_lagwatch_free(lw);
}

Test(lagwatch, growing_lag_while_committing_is_warn)
{
    ds_lagwatch *lw = lw_new(4, 60000);
    for (uint64_t t = 0; t < 4; t++)
        add(lw, t, (int64_t)t, 5 + (int64_t)t * 2);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_WARN);
    /* One decrease inside the window: not WARN any more. */
    add(lw, 4, 4, 6);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_OK);
    ds_lagwatch_free(lw);
}

Test(lagwatch, stall_needs_a_full_window_of_no_progress)
{
    ds_lagwatch *lw = lw_new(4, 60000);
    add(lw, 0, 7, 3);
    add(lw, 1, 7, 3);
    add(lw, 2, 7, 4);
    cr_assert_neq(ds_lagwatch_verdict(lw, 0), DS_V_STALL, "window not full");
    add(lw, 3, 7, 4);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_STALL);
    /* Progress again: the stall clears once the window sees it. */
    add(lw, 4, 9, 2);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_OK);
    ds_lagwatch_free(lw);
}

Test(lagwatch, stop_after_no_movement_for_long)
{
    ds_lagwatch *lw = lw_new(3, 5000);
    for (uint64_t t = 0; t <= 5; t++)
        add(lw, t, 7, 3);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_STALL, "5 s: not yet STOP");
    add(lw, 6, 7, 3);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_STOP);
    cr_assert_str_eq(ds_verdict_group_name(DS_V_STOP), "ERR");
    cr_assert_eq(ds_verdict_exit_code(DS_V_STOP), 2);
    ds_lagwatch_free(lw);
}

Test(lagwatch, rewind_is_reported)
{
    ds_lagwatch *lw = lw_new(3, 60000);
    add(lw, 0, 10, 2);
    add(lw, 1, 4, 8);
    cr_assert_eq(ds_lagwatch_verdict(lw, 0), DS_V_REWIND);
    ds_lagwatch_free(lw);
}

Test(lagwatch, partitions_are_independent)
{
    ds_lagwatch *lw = lw_new(2, 60000);
    ds_err err;
    cr_assert_eq(ds_lagwatch_add(lw, 3, 0, 5, 1, &err), 0);
    cr_assert_eq(ds_lagwatch_add(lw, 4, 0, 5, 0, &err), 0);
    cr_assert_eq(ds_lagwatch_add(lw, 3, 1000, 5, 1, &err), 0);
    cr_assert_eq(ds_lagwatch_add(lw, 4, 1000, 5, 0, &err), 0);
    cr_assert_eq(ds_lagwatch_verdict(lw, 3), DS_V_STALL);
    cr_assert_eq(ds_lagwatch_verdict(lw, 4), DS_V_OK);
    cr_assert_eq(ds_lagwatch_verdict(lw, 5), DS_V_NONE);
    cr_assert_str_eq(ds_verdict_group_name(DS_V_WARN), "WARN");
    cr_assert_eq(ds_verdict_exit_code(DS_V_OK), 0);
    ds_lagwatch_free(lw);
}

Test(lagwatch, window_below_two_is_refused)
{
    ds_lagwatch *lw = NULL;
    ds_err err;
    cr_assert_lt(ds_lagwatch_new(1, 1000, &lw, &err), 0);
    cr_assert(strstr(err.msg, "window") != NULL);
}
