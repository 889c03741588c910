/*
 * groupsync.h - group commit for one filesystem: many threads that each
 * need "everything I wrote so far is durable" share one syncfs(2).
 *
 * A writer takes a ticket (ds_groupsync_begin) before its first write and
 * calls ds_groupsync_wait() at each durability point after. If no sync is
 * running the wait starts one at once (no added latency when alone); if
 * one is running, the thread joins the next round, which starts when the
 * running one ends and covers every thread that arrived meanwhile. Under
 * load N waiting threads cost one syncfs instead of N syncs, the way a
 * database groups the log flushes of concurrent commits.
 *
 * Correctness rests on two rules:
 * - a round's sync starts after every one of its members has arrived, so
 *   it covers all their writes; a thread never returns success from a
 *   round whose sync began before it arrived;
 * - all rounds sync one descriptor, so a writeback error is reported ONCE,
 *   to whichever round syncs next, which need not be the round of the
 *   writer whose pages were lost. So a wait fails if ANY sync of the group
 *   failed between the writer's ticket and the end of its own round, not
 *   only its own round's (groupsync.c explains why this is enough).
 */
#ifndef DS_GROUPSYNC_H
#define DS_GROUPSYNC_H

#include <stdint.h>

#include "err.h"

typedef struct ds_groupsync ds_groupsync;

/* The sync a round runs: returns 0 or a negative errno. The default is
 * syncfs(fd); tests substitute their own. */
typedef int (*ds_groupsync_fn)(void *ctx, int fd);

/* Where a writer's writes began: the number of failed syncs the group had
 * counted by then. A plain value: nothing to release. */
typedef struct ds_groupsync_ticket {
    uint64_t failures;
} ds_groupsync_ticket;

/* fd: an open descriptor on the filesystem (not owned, must outlive g),
 * opened before anything the group is to vouch for was written, and
 * synced by nobody but the group (every other syncfs on it would take an
 * error report away from the rounds). what: names it in error messages
 * (e.g. the library root). fn may be NULL for syncfs. */
int ds_groupsync_new(int fd, const char *what, ds_groupsync_fn fn, void *ctx,
                     ds_groupsync **out, ds_err *err);
void ds_groupsync_free(ds_groupsync *g); /* no thread may be waiting */

/* Take a ticket; call it BEFORE the first write the ticket is to cover. */
void ds_groupsync_begin(ds_groupsync *g, ds_groupsync_ticket *t);

/* Return once a sync that started after this call has completed: 0 if that
 * sync and every other sync completed since *since was taken succeeded,
 * else "io-error" naming the path (the writer's data may be lost: retry
 * it from the start). */
int ds_groupsync_wait(ds_groupsync *g, const ds_groupsync_ticket *since,
                      ds_err *err);

/* Calls of ds_groupsync_wait so far and syncs run for them. */
void ds_groupsync_stats(ds_groupsync *g, uint64_t *waits, uint64_t *syncs);

#endif
