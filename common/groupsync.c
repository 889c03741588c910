/*
 * groupsync.c - group commit of syncfs(2); see groupsync.h.
 *
 * Durability scheme: why a wait's success means the CALLER's writes are
 * on disk, although its round's syncfs is shared and error reports are not.
 *
 * What the kernel gives (Linux >= 5.8, "vfs: track per-sb writeback errors
 * and report them to syncfs"): a failed writeback of any inode is recorded
 * in its filesystem's superblock (an errseq_t); syncfs(fd) writes back and
 * waits for everything dirty, then returns the error if one was recorded
 * since fd's own cursor, and advances that cursor. The cursor belongs to
 * the open file description: sampled at open (an error nobody has seen yet
 * is still reported to it), so each error is reported once per
 * descriptor. Pages whose writeback failed are marked clean: no later sync
 * writes them again, so an error report missed is data lost for good
 * while every later sync succeeds.
 *
 * The hazard: every round syncs the same descriptor. Update A writes its
 * files; before A's round, background writeback or the round of other
 * updates (B's) writes A's pages and fails. B's round reports the error
 * and advances the cursor; A's round finds nothing dirty and nothing new
 * and returns 0, and A would finalize a tree with holes.
 *
 * The rule: the group counts its failed syncs. A writer takes a ticket
 * (the count) before its first write; a wait succeeds only if the count
 * when its own round ended still equals the ticket. That catches every
 * error of the writer's pages: such an error is recorded after the ticket
 * (the pages did not exist before it) and no later than the writer's own
 * round's syncfs, which waits for every dirty page to be written before it
 * reads the cursor. Rounds run one at a time on the one descriptor and
 * nothing else syncs it, so the first round whose check comes after the
 * error reports it, and that round is the writer's own or one that ended
 * after the ticket: either way the count moved. Hence no sync outside the
 * rounds: with no memory for a round the wait fails rather than syncing
 * alone (a sync beside a running round could take its report away).
 *
 * It is conservative, as it must be (a false failure costs a retry, a
 * missed error loses data): any failed sync inside a writer's window fails
 * it, whoever's pages it was (another package, another process on the
 * filesystem, a round already running when the ticket was taken). Errors
 * are rare and retrying everything in flight is the right answer to a
 * failing disk. The group keeps its speed: still one syncfs per round
 * however many members, and the ticket is a counter read under the lock.
 *
 * The alternative, a descriptor per writer (its own cursor, opened before
 * its first write), needs a syncfs per writer to read the cursor (no call
 * reads a filesystem's errseq without syncing), i.e. N syncs for N
 * writers again. The library uses that only where there is no group: a
 * package on another filesystem (library.c, "durability").
 *
 * Before Linux 5.8 syncfs does not report writeback errors of files at
 * all; the group can only count what it is told (docs/DEPLOY.md).
 *
 * Rounds: new arrivals join the open round (created on demand). When no
 * sync is running, the first member to notice becomes the leader: it
 * closes the open round (later arrivals start a new one), runs the sync
 * without the lock, records the result and the failure count in the round
 * and wakes everyone. A round is freed by its last member to leave, so a
 * member that wakes late still reads its own round's result, never a
 * later one's.
 */
#include "groupsync.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct round {
    unsigned members; /* threads that joined and have not left */
    bool done;
    int rc;            /* the sync's result once done */
    uint64_t failures; /* the group's failed syncs once done, this one's in */
    int last_rc;       /* the latest failed sync's result by then */
} round;

struct ds_groupsync {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;
    char what[256];
    ds_groupsync_fn fn;
    void *ctx;
    round *open;  /* joined by new arrivals; NULL until someone arrives */
    bool running; /* a leader is syncing a closed round */
    uint64_t waits, syncs;
    uint64_t failures; /* syncs that returned an error, ever */
    int last_rc;       /* the latest such error */
};

static int default_sync(void *ctx, int fd)
{
    (void)ctx;
    return syncfs(fd) < 0 ? -errno : 0;
}

int ds_groupsync_new(int fd, const char *what, ds_groupsync_fn fn, void *ctx,
                     ds_groupsync **out, ds_err *err)
{
    ds_groupsync *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return ds_err_set(err, -ENOMEM, "io-error",
                          "group sync for %s: out of memory", what);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->fd = fd;
    snprintf(g->what, sizeof(g->what), "%s", what);
    g->fn = fn != NULL ? fn : default_sync;
    g->ctx = ctx;
    *out = g;
    return 0;
}

void ds_groupsync_free(ds_groupsync *g)
{
    if (g == NULL)
        return;
    free(g->open); /* members == 0: nobody waits at free */
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void ds_groupsync_begin(ds_groupsync *g, ds_groupsync_ticket *t)
{
    pthread_mutex_lock(&g->mu);
    t->failures = g->failures;
    pthread_mutex_unlock(&g->mu);
}

int ds_groupsync_wait(ds_groupsync *g, const ds_groupsync_ticket *since,
                      ds_err *err)
{
    pthread_mutex_lock(&g->mu);
    g->waits++;
    if (g->open == NULL && (g->open = calloc(1, sizeof(round))) == NULL) {
        pthread_mutex_unlock(&g->mu);
        return ds_err_set(err, -ENOMEM, "io-error",
                          "syncfs %s: out of memory for a sync round", g->what);
    }
    round *mine = g->open;
    mine->members++;
    while (!mine->done) {
        if (g->running) {
            pthread_cond_wait(&g->cv, &g->mu);
            continue;
        }
        /* No sync running and ours is not done, so ours is still the open
         * round (rounds close only when a leader starts them): lead it. */
        g->running = true;
        g->open = NULL;
        g->syncs++;
        pthread_mutex_unlock(&g->mu);
        int rc = g->fn(g->ctx, g->fd);
        pthread_mutex_lock(&g->mu);
        if (rc < 0) {
            g->failures++;
            g->last_rc = rc;
        }
        mine->rc = rc;
        mine->failures = g->failures;
        mine->last_rc = g->last_rc;
        mine->done = true;
        g->running = false;
        pthread_cond_broadcast(&g->cv);
    }
    int rc = mine->rc, last_rc = mine->last_rc;
    uint64_t failed = mine->failures - since->failures;
    if (--mine->members == 0)
        free(mine);
    pthread_mutex_unlock(&g->mu);
    if (rc < 0) {
        errno = -rc;
        return ds_err_sys(err, "io-error", "syncfs %s", g->what);
    }
    if (failed > 0) {
        /* Not our round's error, but possibly our pages': the report went
         * to the round that synced first after the failed writeback. */
        errno = -last_rc;
        return ds_err_sys(err, "io-error",
                          "syncfs %s: %llu sync(s) since these writes began "
                          "failed, their pages may be lost; the latest",
                          g->what, (unsigned long long)failed);
    }
    return 0;
}

void ds_groupsync_stats(ds_groupsync *g, uint64_t *waits, uint64_t *syncs)
{
    pthread_mutex_lock(&g->mu);
    *waits = g->waits;
    *syncs = g->syncs;
    pthread_mutex_unlock(&g->mu);
}
