/*
 * groupsync.h - group commit for one filesystem: many threads that each
 * need "everything I wrote so far is durable" share one syncfs(2).
 *
 * A thread calls ds_groupsync_wait() after its writes. If no sync is
 * running it starts one at once (no added latency when alone); if one is
 * running, the thread joins the next round, which starts when the running
 * one ends and covers every thread that arrived meanwhile. Under load N
 * waiting threads cost one syncfs instead of N syncs, the way a database
 * groups the log flushes of concurrent commits.
 *
 * Correctness rests on one rule: a round's sync starts after every one of
 * its members has arrived, so it covers all their writes; a thread never
 * returns success from a round whose sync began before it arrived, nor
 * from a round whose sync failed (each member sees that round's error).
 */
#ifndef DS_GROUPSYNC_H
#define DS_GROUPSYNC_H

#include <stdint.h>

#include "err.h"

typedef struct ds_groupsync ds_groupsync;

/* The sync a round runs: returns 0 or a negative errno. The default is
 * syncfs(fd); tests substitute their own. */
typedef int (*ds_groupsync_fn)(void *ctx, int fd);

/* fd: any open descriptor on the filesystem (not owned, must outlive g).
 * what: names it in error messages (e.g. the library root). fn may be
 * NULL for syncfs. */
int ds_groupsync_new(int fd, const char *what, ds_groupsync_fn fn, void *ctx,
                     ds_groupsync **out, ds_err *err);
void ds_groupsync_free(ds_groupsync *g); /* no thread may be waiting */

/* Return once a sync that started after this call has completed: 0, or
 * the round's failure ("io-error", naming the path). */
int ds_groupsync_wait(ds_groupsync *g, ds_err *err);

/* Calls of ds_groupsync_wait so far and syncs run for them. */
void ds_groupsync_stats(ds_groupsync *g, uint64_t *waits, uint64_t *syncs);

#endif
