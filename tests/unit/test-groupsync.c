/* test-groupsync.c - concurrent waiters share syncs; none returns before a
 * sync that began after it arrived; a failed sync fails its whole round and
 * every later wait of a writer whose ticket it came after. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "groupsync.h"

typedef struct fake {
    atomic_uint started;  /* syncs begun */
    atomic_uint finished; /* syncs completed */
    atomic_int fail_next; /* errno for the next sync to start, 0 none */
    atomic_bool hold;     /* a started sync waits while set */
    unsigned delay_us;
} fake;

static int fake_sync(void *ctx, int fd)
{
    (void)fd;
    fake *f = ctx;
    int e = atomic_exchange(&f->fail_next, 0);
    atomic_fetch_add(&f->started, 1);
    usleep(f->delay_us);
    while (atomic_load(&f->hold))
        usleep(1000);
    atomic_fetch_add(&f->finished, 1);
    return e ? -e : 0;
}

typedef struct waiter {
    ds_groupsync *g;
    fake *f;
    bool has_ticket; /* t taken by the test already, else at thread start */
    ds_groupsync_ticket t;
    int rc;
    bool covered; /* a sync started after arrival finished before return */
} waiter;

static void *wait_main(void *arg)
{
    waiter *w = arg;
    if (!w->has_ticket)
        ds_groupsync_begin(w->g, &w->t);
    unsigned started_before = atomic_load(&w->f->started);
    w->rc = ds_groupsync_wait(w->g, &w->t, NULL);
    /* At least one sync started after we arrived (index >= started_before)
     * and has finished: finished counts it. */
    w->covered = atomic_load(&w->f->finished) > started_before;
    return NULL;
}

Test(groupsync, alone_syncs_at_once)
{
    fake f = {.delay_us = 0};
    ds_groupsync *g;
    cr_assert_eq(ds_groupsync_new(-1, "lib", fake_sync, &f, &g, NULL), 0);
    for (int i = 0; i < 3; i++) {
        ds_groupsync_ticket t;
        ds_groupsync_begin(g, &t);
        cr_assert_eq(ds_groupsync_wait(g, &t, NULL), 0);
    }
    uint64_t waits, syncs;
    ds_groupsync_stats(g, &waits, &syncs);
    cr_assert_eq(waits, 3);
    cr_assert_eq(syncs, 3, "one sync per lone waiter");
    ds_groupsync_free(g);
}

Test(groupsync, concurrent_waiters_share_syncs)
{
    enum { N = 64 };
    fake f = {.delay_us = 20000};
    ds_groupsync *g;
    cr_assert_eq(ds_groupsync_new(-1, "lib", fake_sync, &f, &g, NULL), 0);
    pthread_t t[N];
    waiter w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (waiter){.g = g, .f = &f};
        cr_assert_eq(pthread_create(&t[i], NULL, wait_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].rc, 0);
        cr_assert(w[i].covered, "waiter %d returned before its sync", i);
    }
    uint64_t waits, syncs;
    ds_groupsync_stats(g, &waits, &syncs);
    cr_assert_eq(waits, N);
    cr_assert_lt(syncs, N / 4, "%llu syncs for %d waiters",
                 (unsigned long long)syncs, N);
    ds_groupsync_free(g);
}

Test(groupsync, failure_reaches_every_member_of_its_round)
{
    fake f = {.hold = true};
    ds_groupsync *g;
    cr_assert_eq(ds_groupsync_new(-1, "/lib", fake_sync, &f, &g, NULL), 0);
    /* A leader's sync is running (held); meanwhile N waiters arrive and
     * form the next round, whose sync is set to fail. */
    waiter lead = {.g = g, .f = &f};
    pthread_t lt;
    cr_assert_eq(pthread_create(&lt, NULL, wait_main, &lead), 0);
    while (atomic_load(&f.started) == 0)
        usleep(100);
    enum { N = 8 };
    pthread_t t[N];
    waiter w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (waiter){.g = g, .f = &f};
        cr_assert_eq(pthread_create(&t[i], NULL, wait_main, &w[i]), 0);
    }
    uint64_t waits = 0, syncs = 0;
    while (waits < N + 1) {
        usleep(100);
        ds_groupsync_stats(g, &waits, &syncs);
    }
    atomic_store(&f.fail_next, EIO);
    atomic_store(&f.hold, false);
    pthread_join(lt, NULL);
    cr_assert_eq(lead.rc, 0, "the leader's sync started before the failure");
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        cr_assert_lt(w[i].rc, 0, "waiter %d of the failed round", i);
    }
    ds_groupsync_stats(g, &waits, &syncs);
    cr_assert_eq(syncs, 2, "the leader's round and the failed one");
    /* The next writer syncs again and succeeds. */
    ds_err err;
    ds_groupsync_ticket tk;
    ds_groupsync_begin(g, &tk);
    cr_assert_eq(ds_groupsync_wait(g, &tk, &err), 0, "%s", err.msg);
    ds_groupsync_free(g);
}

Test(groupsync, error_names_the_path)
{
    fake f = {.fail_next = ENOSPC};
    ds_groupsync *g;
    cr_assert_eq(ds_groupsync_new(-1, "/srv/lib", fake_sync, &f, &g, NULL), 0);
    ds_err err;
    ds_groupsync_ticket t;
    ds_groupsync_begin(g, &t);
    cr_assert_lt(ds_groupsync_wait(g, &t, &err), 0);
    cr_assert_str_eq(err.reason, "io-error");
    cr_assert(strstr(err.msg, "syncfs /srv/lib") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "No space") != NULL, "%s", err.msg);
    ds_groupsync_free(g);
}

/*
 * A writeback error is reported once, to whichever round syncs next: here
 * B's round gets the report while A is still writing (A's pages may be the
 * ones lost). A's own round then syncs cleanly, yet A must fail. Without
 * the tickets (the code before issue 11) A's wait returned 0.
 */
Test(groupsync, error_in_another_round_fails_a_later_wait)
{
    fake f = {0};
    ds_groupsync *g;
    cr_assert_eq(ds_groupsync_new(-1, "/lib", fake_sync, &f, &g, NULL), 0);
    ds_groupsync_ticket a, b;
    ds_groupsync_begin(g, &a); /* A starts writing */
    ds_groupsync_begin(g, &b);
    atomic_store(&f.fail_next, EIO);
    ds_err err;
    cr_assert_lt(ds_groupsync_wait(g, &b, &err), 0, "B's own round failed");
    cr_assert_eq(atomic_load(&f.finished), 1);
    int rc = ds_groupsync_wait(g, &a, &err);
    cr_assert_eq(atomic_load(&f.finished), 2, "A's round synced");
    cr_assert_eq(rc, -EIO, "A's wait after a failed round returned %d", rc);
    cr_assert_str_eq(err.reason, "io-error");
    cr_assert(strstr(err.msg, "syncfs /lib: 1 sync(s) since these writes "
                              "began failed") != NULL,
              "%s", err.msg);
    cr_assert(strstr(err.msg, "Input/output error") != NULL, "%s", err.msg);
    /* It stays failed: every later wait of A's (its next durability
     * point) fails too. */
    cr_assert_lt(ds_groupsync_wait(g, &a, &err), 0);
    ds_groupsync_free(g);
}

/* An error reported before a writer took its ticket is not its pages'. */
Test(groupsync, error_before_ticket_does_not_fail)
{
    fake f = {.fail_next = ENOSPC};
    ds_groupsync *g;
    cr_assert_eq(ds_groupsync_new(-1, "/lib", fake_sync, &f, &g, NULL), 0);
    ds_groupsync_ticket b, a;
    ds_groupsync_begin(g, &b);
    cr_assert_lt(ds_groupsync_wait(g, &b, NULL), 0, "B's round failed");
    ds_groupsync_begin(g, &a); /* A starts writing after that */
    ds_err err;
    cr_assert_eq(ds_groupsync_wait(g, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(ds_groupsync_wait(g, &a, &err), 0, "%s", err.msg);
    ds_groupsync_free(g);
}

/*
 * Concurrent: a round A is not in fails while A waits for the next one.
 * A1 took its ticket before that round began, A2 while it was running
 * (its syncfs could be writing A2's first pages back): both fail although
 * their own round succeeds; C, whose ticket came after, succeeds.
 */
Test(groupsync, running_round_error_fails_waiters_of_the_next)
{
    fake f = {.hold = true, .fail_next = EIO};
    ds_groupsync *g;
    cr_assert_eq(ds_groupsync_new(-1, "/lib", fake_sync, &f, &g, NULL), 0);
    waiter a1 = {.g = g, .f = &f, .has_ticket = true};
    ds_groupsync_begin(g, &a1.t);
    waiter lead = {.g = g, .f = &f};
    pthread_t lt, t1, t2;
    cr_assert_eq(pthread_create(&lt, NULL, wait_main, &lead), 0);
    while (atomic_load(&f.started) == 0)
        usleep(100);
    waiter a2 = {.g = g, .f = &f, .has_ticket = true};
    ds_groupsync_begin(g, &a2.t);
    cr_assert_eq(pthread_create(&t1, NULL, wait_main, &a1), 0);
    cr_assert_eq(pthread_create(&t2, NULL, wait_main, &a2), 0);
    uint64_t waits = 0, syncs = 0;
    while (waits < 3) {
        usleep(100);
        ds_groupsync_stats(g, &waits, &syncs);
    }
    atomic_store(&f.hold, false);
    pthread_join(lt, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_lt(lead.rc, 0, "the failed round's own member");
    ds_groupsync_stats(g, &waits, &syncs);
    cr_assert_eq(syncs, 2, "the failed round and A1/A2's");
    cr_assert(a1.covered && a2.covered);
    cr_assert_lt(a1.rc, 0, "A1: ticket before the failed round");
    cr_assert_lt(a2.rc, 0, "A2: ticket while the failed round ran");
    ds_groupsync_ticket c;
    ds_groupsync_begin(g, &c);
    cr_assert_eq(ds_groupsync_wait(g, &c, NULL), 0);
    ds_groupsync_free(g);
}
