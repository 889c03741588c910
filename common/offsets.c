/*
 * offsets.c - per-partition commit point (see offsets.h).
 *
 * A ring of the offsets added and not yet retired, in increasing order,
 * each with a done flag. Done entries at the head are retired at once, so
 * the head is always the lowest pending offset: the commit point. Marking
 * an offset done is a binary search in the ring (offsets increase, but may
 * have gaps: transaction markers and compacted records take offsets too).
 */
#include "offsets.h"

#include <stdbool.h>
#include <stdlib.h>

struct ds_offsets {
    int64_t *off; /* ring of pending-window offsets */
    bool *done;
    size_t cap;     /* power of two */
    size_t head;    /* index of the lowest entry */
    size_t len;     /* entries in the ring */
    size_t pending; /* entries not done */
    int64_t last;   /* highest offset added, -1 if none */
};

ds_offsets *ds_offsets_new(void)
{
    ds_offsets *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->last = -1;
    return t;
}

void ds_offsets_free(ds_offsets *t)
{
    if (t == NULL)
        return;
    free(t->off);
    free(t->done);
    free(t);
}

static size_t slot(const ds_offsets *t, size_t i)
{
    return (t->head + i) & (t->cap - 1);
}

static int grow(ds_offsets *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 64;
    int64_t *noff = malloc(ncap * sizeof(*noff));
    bool *ndone = malloc(ncap * sizeof(*ndone));
    if (noff == NULL || ndone == NULL) {
        free(noff);
        free(ndone);
        return -ENOMEM;
    }
    for (size_t i = 0; i < t->len; i++) {
        noff[i] = t->off[slot(t, i)];
        ndone[i] = t->done[slot(t, i)];
    }
    free(t->off);
    free(t->done);
    t->off = noff;
    t->done = ndone;
    t->cap = ncap;
    t->head = 0;
    return 0;
}

int ds_offsets_add(ds_offsets *t, int64_t off, ds_err *err)
{
    if (off < 0 || off <= t->last)
        return ds_err_set(err, -EINVAL, "internal",
                          "track offset %lld: not above last offset %lld",
                          (long long)off, (long long)t->last);
    if (t->len == t->cap && grow(t) < 0)
        return ds_err_set(err, -ENOMEM, "internal",
                          "track offset %lld: out of memory", (long long)off);
    size_t s = slot(t, t->len);
    t->off[s] = off;
    t->done[s] = false;
    t->len++;
    t->pending++;
    t->last = off;
    return 0;
}

int ds_offsets_done(ds_offsets *t, int64_t off, ds_err *err)
{
    size_t lo = 0, hi = t->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->off[slot(t, mid)] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->len || t->off[slot(t, lo)] != off || t->done[slot(t, lo)])
        return ds_err_set(err, -ENOENT, "internal",
                          "mark offset %lld done: not pending", (long long)off);
    t->done[slot(t, lo)] = true;
    t->pending--;
    /* Retire the done prefix so the head is the lowest pending offset. */
    while (t->len > 0 && t->done[t->head]) {
        t->head = (t->head + 1) & (t->cap - 1);
        t->len--;
    }
    return 0;
}

int64_t ds_offsets_commit_point(const ds_offsets *t)
{
    if (t->len > 0)
        return t->off[t->head];
    return t->last < 0 ? -1 : t->last + 1;
}

size_t ds_offsets_pending(const ds_offsets *t)
{
    return t->pending;
}

void ds_offsets_reset(ds_offsets *t)
{
    t->head = 0;
    t->len = 0;
    t->pending = 0;
    t->last = -1;
}
