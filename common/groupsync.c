/*
 * groupsync.c - group commit of syncfs(2); see groupsync.h.
 *
 * Rounds: new arrivals join the open round (created on demand). When no
 * sync is running, the first member to notice becomes the leader: it
 * closes the open round (later arrivals start a new one), runs the sync
 * without the lock, records the result in the round and wakes everyone.
 * A round is freed by its last member to leave, so a member that wakes
 * late still reads its own round's result, never a later one's.
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
    int rc; /* the sync's result once done */
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

int ds_groupsync_wait(ds_groupsync *g, ds_err *err)
{
    pthread_mutex_lock(&g->mu);
    g->waits++;
    if (g->open == NULL && (g->open = calloc(1, sizeof(round))) == NULL) {
        pthread_mutex_unlock(&g->mu);
        /* No round to join: sync alone, which is always correct. */
        int rc = g->fn(g->ctx, g->fd);
        if (rc < 0) {
            errno = -rc;
            return ds_err_sys(err, "io-error", "syncfs %s", g->what);
        }
        return 0;
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
        mine->rc = rc;
        mine->done = true;
        g->running = false;
        pthread_cond_broadcast(&g->cv);
    }
    int rc = mine->rc;
    if (--mine->members == 0)
        free(mine);
    pthread_mutex_unlock(&g->mu);
    if (rc < 0) {
        errno = -rc;
        return ds_err_sys(err, "io-error", "syncfs %s", g->what);
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
