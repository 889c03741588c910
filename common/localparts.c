/*
 * localparts.c - re-creating a new version's parts from the installed one
 * (localparts.h): the plan (which slices of the installed stream, in
 * order), and a packer thread that re-packs the installed tree through
 * ds_pack_stream, copies the planned slices into a ring of three buffers,
 * checks each against its id and hands them to the consumer in order.
 */
#include "localparts.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pack.h"

#define RING 3

/* One planned slice of the installed stream. */
typedef struct slice {
    uint64_t off;
    uint32_t size;
    size_t ref; /* index in the new refs */
    uint8_t id[DS_SHA256_LEN];
} slice;

/* An installed part, sorted by (id, offset) for the plan's lookups. */
typedef struct oldpart {
    uint8_t id[DS_SHA256_LEN];
    uint64_t off;
    uint32_t size;
} oldpart;

struct ds_local {
    char *dir;
    slice *plan;
    size_t nplan;

    pthread_t thread;
    bool started;
    atomic_int cancel;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *buf[RING];
    int bad[RING]; /* the slot's bytes do not hash to its id */
    size_t t_of[RING];
    unsigned head, nready; /* ready slots head.., the held one included */
    bool held;             /* the consumer holds slot head */
    bool finished;         /* the packer thread is done */
    int rc;                /* its failure (sticky), described in perr */
    ds_err perr;

    /* Packer thread only. */
    uint64_t pos;  /* stream bytes seen */
    size_t t;      /* next slice to fill */
    int fill;      /* slot being filled, -1 none */
    bool complete; /* every slice handed over: stop re-packing */
};

static int oldpart_cmp(const void *a, const void *b)
{
    const oldpart *x = a, *y = b;
    int c = memcmp(x->id, y->id, DS_SHA256_LEN);
    if (c != 0)
        return c;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* First entry of sorted[0..n) with this id and an offset >= from, or NULL. */
static const oldpart *find(const oldpart *sorted, size_t n,
                           const uint8_t id[DS_SHA256_LEN], uint64_t from)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(sorted[mid].id, id, DS_SHA256_LEN);
        if (c < 0 || (c == 0 && sorted[mid].off < from))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < n && memcmp(sorted[lo].id, id, DS_SHA256_LEN) == 0)
        return &sorted[lo];
    return NULL;
}

/* The greedy plan: each ref, in order, from the earliest installed slice
 * with its id at or after the end of the previous one taken. With only
 * set (open), only the refs marked there are taken, into plan. */
static int make_plan(const ds_partlist *old, const ds_part_ref *refs, size_t n,
                     uint8_t *use, const uint8_t *only, slice *plan,
                     size_t *nplan, ds_err *err)
{
    oldpart *sorted = malloc((old->n ? old->n : 1) * sizeof(*sorted));
    if (sorted == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "plan local parts: out of memory for %zu parts",
                          old->n);
    uint64_t off = 0;
    for (size_t i = 0; i < old->n; i++) {
        memcpy(sorted[i].id, old->parts[i].id, DS_SHA256_LEN);
        sorted[i].off = off;
        sorted[i].size = old->parts[i].size;
        off += old->parts[i].size;
    }
    qsort(sorted, old->n, sizeof(*sorted), oldpart_cmp);
    uint64_t from = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (use != NULL)
            use[i] = 0;
        if (only != NULL && !only[i])
            continue;
        if (refs[i].size == 0)
            continue;
        const oldpart *o = find(sorted, old->n, refs[i].id, from);
        if (o == NULL || o->size != refs[i].size)
            continue;
        if (use != NULL)
            use[i] = 1;
        if (plan != NULL) {
            plan[k].off = o->off;
            plan[k].size = o->size;
            plan[k].ref = i;
            memcpy(plan[k].id, o->id, DS_SHA256_LEN);
        }
        k++;
        from = o->off + o->size;
    }
    free(sorted);
    *nplan = k;
    return 0;
}

int ds_local_plan(const ds_partlist *old, const ds_part_ref *refs, size_t n,
                  uint8_t *use, size_t *nlocal, ds_err *err)
{
    return make_plan(old, refs, n, use, NULL, NULL, nlocal, err);
}

/* --- packer thread ------------------------------------------------------- */

static int pack_cancelled(void *ctx)
{
    ds_local *l = ctx;
    return atomic_load(&l->cancel) != 0;
}

/* A slot to fill, waiting while the ring is full; -1 when cancelled. */
static int take_slot(ds_local *l)
{
    pthread_mutex_lock(&l->mu);
    while (l->nready == RING && !atomic_load(&l->cancel))
        pthread_cond_wait(&l->cv, &l->mu);
    int s = atomic_load(&l->cancel) ? -1 : (int)((l->head + l->nready) % RING);
    pthread_mutex_unlock(&l->mu);
    return s;
}

static void publish(ds_local *l, int s, int bad)
{
    pthread_mutex_lock(&l->mu);
    l->bad[s] = bad;
    l->t_of[s] = l->t;
    l->nready++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static int check_slice(const slice *sl, const uint8_t *bytes)
{
    uint8_t md[DS_SHA256_LEN];
    unsigned mdlen = 0;
    if (EVP_Digest(bytes, sl->size, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != DS_SHA256_LEN)
        return -1;
    return memcmp(md, sl->id, DS_SHA256_LEN) == 0 ? 0 : 1;
}

/* ds_pack_stream's output: the next n bytes of the installed stream. */
static int take_bytes(void *ctx, const void *buf, size_t n, ds_err *err)
{
    ds_local *l = ctx;
    const uint8_t *p = buf;
    uint64_t start = l->pos, stop = l->pos + n;
    l->pos = stop;
    while (l->t < l->nplan) {
        const slice *sl = &l->plan[l->t];
        uint64_t end = sl->off + sl->size;
        if (sl->off >= stop)
            return 0;
        if (end <= start) { /* cannot happen: slices are in stream order */
            return ds_err_set(err, -EIO, "internal",
                              "re-create parts from %s: slice at %llu passed",
                              l->dir, (unsigned long long)sl->off);
        }
        if (l->fill < 0 && (l->fill = take_slot(l)) < 0)
            return ds_err_set(err, -ECANCELED, "cancelled",
                              "re-create parts from %s: cancelled", l->dir);
        uint64_t a = sl->off > start ? sl->off : start;
        uint64_t b = end < stop ? end : stop;
        memcpy(l->buf[l->fill] + (a - sl->off), p + (a - start),
               (size_t)(b - a));
        if (b < end)
            return 0; /* the slice goes on in the next piece */
        int bad = check_slice(sl, l->buf[l->fill]);
        if (bad < 0)
            return ds_err_set(err, -EIO, "internal",
                              "re-create parts from %s: sha256 failed", l->dir);
        publish(l, l->fill, bad);
        l->fill = -1;
        l->t++;
    }
    l->complete = true;
    return ds_err_set(err, -ECANCELED, "cancelled",
                      "re-create parts from %s: every planned part taken",
                      l->dir);
}

static void *packer_main(void *arg)
{
    ds_local *l = arg;
    ds_err err;
    ds_err_clear(&err);
    ds_pack_opts po = {.cancelled = pack_cancelled, .cancel_ctx = l};
    ds_pack_stats st;
    int rc = ds_pack_stream(l->dir, &po, take_bytes, l, &st, &err);
    if (l->complete)
        rc = 0;
    else if (rc == 0 && l->t < l->nplan)
        rc = ds_err_set(&err, -EIO, "io-error",
                        "re-create parts from %s: the stream ended at %llu "
                        "bytes, before part %zu of the new version (at %llu)",
                        l->dir, (unsigned long long)l->pos, l->plan[l->t].ref,
                        (unsigned long long)l->plan[l->t].off);
    pthread_mutex_lock(&l->mu);
    l->finished = true;
    l->rc = rc;
    if (rc < 0)
        l->perr = err;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* --- consumer ------------------------------------------------------------ */

int ds_local_open(const char *dir, const ds_partlist *old,
                  const ds_part_ref *refs, size_t n, const uint8_t *use,
                  ds_local **out, ds_err *err)
{
    *out = NULL;
    ds_local *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "re-create parts from %s: out of memory", dir);
    l->fill = -1;
    atomic_init(&l->cancel, 0);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    int rc = 0;
    size_t want = 0;
    for (size_t i = 0; i < n; i++)
        want += use[i] != 0;
    l->dir = strdup(dir);
    l->plan = malloc((want ? want : 1) * sizeof(*l->plan));
    if (l->dir == NULL || l->plan == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal",
                        "re-create parts from %s: out of memory", dir);
        goto fail;
    }
    if ((rc = make_plan(old, refs, n, NULL, use, l->plan, &l->nplan, err)) < 0)
        goto fail;
    if (l->nplan != want) {
        rc = ds_err_set(err, -EINVAL, "internal",
                        "re-create parts from %s: %zu parts marked, %zu in "
                        "the plan",
                        dir, want, l->nplan);
        goto fail;
    }
    for (int s = 0; s < RING && l->nplan > 0; s++) {
        if ((l->buf[s] = malloc(DS_PART_SIZE_MAX)) == NULL) {
            rc = ds_err_set(err, -ENOMEM, "internal",
                            "re-create parts from %s: out of memory", dir);
            goto fail;
        }
    }
    if (l->nplan == 0) {
        l->finished = true;
    } else {
        int prc = pthread_create(&l->thread, NULL, packer_main, l);
        if (prc != 0) {
            errno = prc;
            rc = ds_err_sys(err, "internal",
                            "re-create parts from %s: start thread", dir);
            goto fail;
        }
        l->started = true;
    }
    *out = l;
    return 0;
fail:
    ds_local_close(l);
    return rc;
}

int ds_local_next(ds_local *l, const void **buf, size_t *len, ds_err *err)
{
    pthread_mutex_lock(&l->mu);
    if (l->held) {
        l->head = (l->head + 1) % RING;
        l->nready--;
        l->held = false;
        pthread_cond_broadcast(&l->cv);
    }
    while (l->nready == 0 && !l->finished && !atomic_load(&l->cancel))
        pthread_cond_wait(&l->cv, &l->mu);
    int rc;
    if (atomic_load(&l->cancel)) {
        rc = ds_err_set(err, -ECANCELED, "cancelled",
                        "re-create parts from %s: cancelled", l->dir);
    } else if (l->nready == 0) {
        rc = l->rc;
        if (rc < 0)
            *err = l->perr;
    } else {
        unsigned s = l->head;
        const slice *sl = &l->plan[l->t_of[s]];
        l->held = true;
        if (l->bad[s]) {
            char hex[2 * DS_SHA256_LEN + 1];
            rc = ds_err_set(err, -EBADMSG, "local-mismatch",
                            "re-create part %zu (id %s) from %s: the bytes "
                            "at offset %llu of the installed stream do not "
                            "match its id",
                            sl->ref, ds_hex(hex, sl->id, DS_SHA256_LEN), l->dir,
                            (unsigned long long)sl->off);
        } else {
            *buf = l->buf[s];
            *len = sl->size;
            rc = 1;
        }
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void ds_local_cancel(ds_local *l)
{
    pthread_mutex_lock(&l->mu);
    atomic_store(&l->cancel, 1);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void ds_local_close(ds_local *l)
{
    if (l == NULL)
        return;
    if (l->started) {
        ds_local_cancel(l);
        pthread_join(l->thread, NULL);
    }
    for (int s = 0; s < RING; s++)
        free(l->buf[s]);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l->plan);
    free(l->dir);
    free(l);
}
