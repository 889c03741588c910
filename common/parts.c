/*
 * parts.c - the part cutter: the caller's thread copies the stream into a
 * ring of part slots and cuts; a pool of threads hashes (part id) and
 * compresses each submitted part into its own frame, and feeds the parts,
 * one at a time and in order, to the whole stream's SHA-256; the caller's
 * thread emits completed parts from the ring's head, in order, and reuses
 * their slots. The ring is the memory bound: a writer that finds every
 * slot in flight waits for the head, and while it waits it feeds the
 * stream digest itself if that job is free (measured on 2 cores: with one
 * compression thread as fast as hashing on the writer, 10-15% faster than
 * leaving the digest to the pool; with two no slower than the pool).
 *
 * Slot for part i is slots[i % nslots]. Under mu, with
 *   emitted <= next_hash, next_compress <= submitted <= emitted + nslots,
 * parts [emitted, submitted) are in flight: [next_compress, submitted)
 * wait for a compressing thread, [next_hash, submitted) for the stream
 * digest (held by one thread at a time: `hashing`). A part is emitted when
 * it is compressed and hashed; workers touch no slot outside
 * [emitted, submitted), and the caller touches an in-flight slot only after
 * reading both flags under mu, so each buffer has one owner at a time.
 */
#include "parts.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

_Static_assert(DS_PART_ZMAX == ZSTD_COMPRESSBOUND(DS_PART_MAX),
               "DS_PART_ZMAX is zstd's bound for DS_PART_MAX");

typedef struct slot {
    uint8_t *in;    /* part_size bytes, allocated on first use */
    uint8_t *frame; /* zcap bytes */
    size_t len, zlen;
    uint64_t index, offset;
    uint8_t id[DS_SHA256_LEN];
    int compressed; /* id and frame are set */
    int skipped;    /* want_frame said no: frame not made */
    int hashed;     /* the stream digest has consumed in[0..len) */
} slot;

typedef struct worker {
    ds_parts *s;
    pthread_t tid;
    int started;
    ZSTD_CCtx *cctx;
    EVP_MD_CTX *md; /* part ids */
} worker;

struct ds_parts {
    int level, nthreads;
    size_t part_size, zcap;
    ds_parts_cut_fn cut;
    void *cut_ctx;
    int (*want_frame)(void *ctx, const uint8_t *id, size_t size);
    void *want_ctx;
    worker *late; /* ds_parts_frame's context, made on first use */
    uint8_t *lateframe;
    ds_part_fn emit;
    void *emit_ctx;
    const char *name;

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers: a job, halt or stop */
    pthread_cond_t done_cv; /* caller: a part done, a failure or cancel */
    slot *slots;
    size_t nslots;
    worker *workers;
    uint64_t submitted, next_compress, next_hash, emitted; /* under mu */
    int hashing;           /* a worker holds stream_md */
    int halt;              /* no more jobs: failure or cancel */
    int stop;              /* workers exit */
    int pool_rc;           /* first failure in a worker */
    ds_err pool_err;       /* its message */
    atomic_int cancelled;  /* ds_parts_cancel was called */
    EVP_MD_CTX *stream_md; /* whole stream; one worker at a time */

    /* The caller's thread only. */
    slot *cur;     /* being filled (slots[submitted % nslots]), or NULL */
    uint64_t size; /* bytes written */
    uint64_t zsize;
    int rc; /* sticky failure */
    ds_err saved;
    int finished;
};

static const char *nm(const ds_parts *s)
{
    return s->name != NULL ? s->name : "stream";
}

/* --- pool ---------------------------------------------------------------- */

static void pool_fail(ds_parts *s, int rc, const ds_err *e)
{
    if (s->pool_rc == 0) {
        s->pool_rc = rc;
        s->pool_err = *e;
    }
    s->halt = 1;
    pthread_cond_broadcast(&s->done_cv);
    pthread_cond_broadcast(&s->work_cv);
}

/* Part id and frame of one slot. */
static int compress_part(worker *w, slot *sl, ds_err *e)
{
    ds_parts *s = w->s;
    unsigned mdlen = 0;
    if (EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(w->md, sl->in, sl->len) != 1 ||
        EVP_DigestFinal_ex(w->md, sl->id, &mdlen) != 1 ||
        mdlen != DS_SHA256_LEN)
        return ds_err_set(e, -EIO, "internal",
                          "parts %s: sha256 of part %llu failed", nm(s),
                          (unsigned long long)sl->index);
    sl->skipped =
        s->want_frame != NULL && !s->want_frame(s->want_ctx, sl->id, sl->len);
    if (sl->skipped) {
        sl->zlen = 0;
        return 0;
    }
    size_t r = ZSTD_compress2(w->cctx, sl->frame, s->zcap, sl->in, sl->len);
    if (ZSTD_isError(r))
        return ds_err_set(e, -EIO, "internal",
                          "parts %s: zstd compress part %llu (%zu bytes): %s",
                          nm(s), (unsigned long long)sl->index, sl->len,
                          ZSTD_getErrorName(r));
    sl->zlen = r;
    return 0;
}

/* 1 when the stream digest's next part is ready and nobody holds the
 * digest. Under mu. */
static int hash_ready(const ds_parts *s)
{
    return !s->halt && !s->hashing && s->next_hash < s->submitted;
}

/* Feed the next part to the stream digest (hash_ready was true). Called
 * and returns with mu held; drops it while hashing. */
static void hash_next(ds_parts *s)
{
    slot *sl = &s->slots[s->next_hash % s->nslots];
    s->hashing = 1;
    pthread_mutex_unlock(&s->mu);
    int ok = EVP_DigestUpdate(s->stream_md, sl->in, sl->len) == 1;
    pthread_mutex_lock(&s->mu);
    s->hashing = 0;
    if (!ok) {
        ds_err e;
        pool_fail(s,
                  ds_err_set(&e, -EIO, "internal",
                             "parts %s: sha256 of the stream at part %llu "
                             "failed",
                             nm(s), (unsigned long long)sl->index),
                  &e);
        return;
    }
    sl->hashed = 1;
    s->next_hash++;
    pthread_cond_broadcast(&s->done_cv);
}

/* Jobs, by priority: the stream digest's next part (the one chain that
 * cannot run in parallel, so it never waits behind compression), then the
 * oldest part waiting for compression. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    ds_parts *s = w->s;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (s->halt) {
            pthread_cond_wait(&s->work_cv, &s->mu);
            continue;
        }
        if (hash_ready(s)) {
            hash_next(s);
            continue;
        }
        if (s->next_compress < s->submitted) {
            slot *sl = &s->slots[s->next_compress % s->nslots];
            s->next_compress++;
            pthread_mutex_unlock(&s->mu);
            ds_err e;
            int rc = compress_part(w, sl, &e);
            pthread_mutex_lock(&s->mu);
            if (rc < 0) {
                pool_fail(s, rc, &e);
                continue;
            }
            sl->compressed = 1;
            pthread_cond_broadcast(&s->done_cv);
            continue;
        }
        pthread_cond_wait(&s->work_cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* --- the caller's side --------------------------------------------------- */

/* Record the first failure (sticky) and halt the pool. Returns rc. */
static int fail(ds_parts *s, int rc, ds_err *err)
{
    if (s->rc == 0) {
        s->rc = rc;
        if (err != NULL)
            s->saved = *err;
        else
            ds_err_set(&s->saved, rc, "internal", "parts %s: failed", nm(s));
        pthread_mutex_lock(&s->mu);
        s->halt = 1;
        pthread_cond_broadcast(&s->work_cv);
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}

static int replay(ds_parts *s, ds_err *err)
{
    if (err != NULL)
        *err = s->saved;
    return s->rc;
}

static int cancelled(ds_parts *s, ds_err *err)
{
    ds_err e;
    ds_err_set(&e, -ECANCELED, "cancelled", "parts %s: cancelled", nm(s));
    if (err != NULL)
        *err = e;
    return fail(s, -ECANCELED, &e);
}

static int emit_one(ds_parts *s, slot *sl, ds_err *err)
{
    ds_cut_part p = {.index = sl->index,
                     .offset = sl->offset,
                     .size = sl->len,
                     .data = sl->in,
                     .frame = sl->skipped ? NULL : sl->frame,
                     .zsize = sl->zlen};
    memcpy(p.id, sl->id, DS_SHA256_LEN);
    ds_err e;
    ds_err_clear(&e);
    int rc = s->emit(s->emit_ctx, &p, &e);
    if (rc < 0) {
        if (e.code == 0)
            ds_err_set(&e, rc, "internal", "parts %s: emit part %llu failed",
                       nm(s), (unsigned long long)sl->index);
        if (err != NULL)
            *err = e;
        return fail(s, rc, &e);
    }
    s->zsize += sl->zlen;
    return 0;
}

/* Emit every completed part at the ring's head, in order, waiting while
 * more than max_inflight parts are in flight. */
static int drain(ds_parts *s, uint64_t max_inflight, ds_err *err)
{
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (atomic_load(&s->cancelled)) {
            pthread_mutex_unlock(&s->mu);
            return cancelled(s, err);
        }
        if (s->pool_rc != 0) {
            ds_err e = s->pool_err;
            int rc = s->pool_rc;
            pthread_mutex_unlock(&s->mu);
            if (err != NULL)
                *err = e;
            return fail(s, rc, &e);
        }
        if (s->emitted == s->submitted)
            break;
        slot *h = &s->slots[s->emitted % s->nslots];
        if (!(h->compressed && h->hashed)) {
            if (s->submitted - s->emitted <= max_inflight)
                break;
            /* Rather than sleep, the caller's thread takes the digest's
             * next part itself: the pool's threads keep compressing. */
            if (hash_ready(s))
                hash_next(s);
            else
                pthread_cond_wait(&s->done_cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        int rc = emit_one(s, h, err);
        if (rc < 0)
            return rc;
        pthread_mutex_lock(&s->mu);
        s->emitted++;
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Make s->cur a free slot for the next part. */
static int acquire(ds_parts *s, ds_err *err)
{
    int rc = drain(s, s->nslots - 1, err);
    if (rc < 0)
        return rc;
    /* Only this thread moves submitted and emitted. */
    slot *sl = &s->slots[s->submitted % s->nslots];
    if (sl->in == NULL) {
        sl->in = malloc(s->part_size);
        sl->frame = malloc(s->zcap);
        if (sl->in == NULL || sl->frame == NULL) {
            free(sl->in);
            free(sl->frame);
            sl->in = sl->frame = NULL;
            ds_err e;
            ds_err_set(&e, -ENOMEM, "internal",
                       "parts %s: out of memory for part %llu", nm(s),
                       (unsigned long long)s->submitted);
            if (err != NULL)
                *err = e;
            return fail(s, -ENOMEM, &e);
        }
    }
    sl->len = sl->zlen = 0;
    sl->index = s->submitted;
    sl->offset = s->size;
    sl->compressed = sl->hashed = 0;
    s->cur = sl;
    return 0;
}

static void submit(ds_parts *s)
{
    pthread_mutex_lock(&s->mu);
    s->submitted++;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    s->cur = NULL;
}

int ds_parts_write(ds_parts *s, const void *buf, size_t n, ds_err *err)
{
    if (s == NULL || (buf == NULL && n > 0))
        return ds_err_set(err, -EINVAL, "internal",
                          "parts: write: missing sink or buffer");
    if (s->rc != 0)
        return replay(s, err);
    if (s->finished)
        return ds_err_set(err, -EINVAL, "internal",
                          "parts %s: write after finish", nm(s));
    if (atomic_load(&s->cancelled))
        return cancelled(s, err);
    const uint8_t *p = buf;
    while (n > 0) {
        if (s->cur == NULL) {
            int rc = acquire(s, err);
            if (rc < 0)
                return rc;
        }
        slot *c = s->cur;
        size_t room = s->part_size - c->len; /* > 0: full slots are gone */
        size_t take = n < room ? n : room;
        int boundary = 0;
        if (s->cut != NULL) {
            size_t k = s->cut(s->cut_ctx, p, take, c->len);
            if (k > take || (k == 0 && c->len == 0)) {
                ds_err e;
                ds_err_set(&e, -EINVAL, "internal",
                           "parts %s: cut rule took %zu of %zu bytes offered "
                           "at offset %llu with %zu in part %llu",
                           nm(s), k, take, (unsigned long long)s->size, c->len,
                           (unsigned long long)c->index);
                if (err != NULL)
                    *err = e;
                return fail(s, -EINVAL, &e);
            }
            boundary = k < take;
            take = k;
        }
        memcpy(c->in + c->len, p, take);
        c->len += take;
        s->size += take;
        p += take;
        n -= take;
        if (boundary || c->len == s->part_size)
            submit(s);
    }
    return 0;
}

int ds_parts_finish(ds_parts *s, ds_parts_totals *t, ds_err *err)
{
    if (s == NULL)
        return ds_err_set(err, -EINVAL, "internal",
                          "parts: finish: missing sink");
    if (s->rc != 0)
        return replay(s, err);
    if (s->finished)
        return ds_err_set(err, -EINVAL, "internal", "parts %s: finished twice",
                          nm(s));
    if (atomic_load(&s->cancelled))
        return cancelled(s, err);
    int rc;
    if (s->cur == NULL && s->submitted == 0) {
        rc = acquire(s, err); /* the empty stream's one empty part */
        if (rc < 0)
            return rc;
    }
    if (s->cur != NULL)
        submit(s);
    rc = drain(s, 0, err);
    if (rc < 0)
        return rc;
    /* Every part is hashed: stream_md is this thread's now. */
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (EVP_DigestFinal_ex(s->stream_md, md, &mdlen) != 1 ||
        mdlen != DS_SHA256_LEN) {
        ds_err e;
        ds_err_set(&e, -EIO, "internal", "parts %s: sha256 final", nm(s));
        if (err != NULL)
            *err = e;
        return fail(s, -EIO, &e);
    }
    s->finished = 1;
    if (t != NULL) {
        t->parts = s->emitted;
        t->size = s->size;
        t->zsize = s->zsize;
        memcpy(t->sha256, md, DS_SHA256_LEN);
    }
    return 0;
}

void ds_parts_cancel(ds_parts *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->cancelled, 1);
    pthread_mutex_lock(&s->mu);
    s->halt = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->mu);
}

/* --- life cycle ---------------------------------------------------------- */

static int cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void ds_parts_free(ds_parts *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    s->halt = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nthreads; i++) {
        worker *w = &s->workers[i];
        if (w->started)
            pthread_join(w->tid, NULL);
        ZSTD_freeCCtx(w->cctx);
        EVP_MD_CTX_free(w->md);
    }
    for (size_t i = 0; i < s->nslots; i++) {
        free(s->slots[i].in);
        free(s->slots[i].frame);
    }
    if (s->late != NULL) {
        ZSTD_freeCCtx(s->late->cctx);
        EVP_MD_CTX_free(s->late->md);
        free(s->late);
    }
    free(s->lateframe);
    free(s->workers);
    free(s->slots);
    EVP_MD_CTX_free(s->stream_md);
    pthread_cond_destroy(&s->done_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int worker_init(ds_parts *s, worker *w, ds_err *err)
{
    w->s = s;
    w->cctx = ZSTD_createCCtx();
    w->md = EVP_MD_CTX_new();
    if (w->cctx == NULL || w->md == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "parts %s: out of memory for a zstd context", nm(s));
    /* One thread per frame (nbWorkers stays 0): deterministic output. */
    size_t r =
        ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, s->level);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
    if (ZSTD_isError(r))
        return ds_err_set(err, -EINVAL, "bad-option",
                          "parts %s: zstd level %d: %s", nm(s), s->level,
                          ZSTD_getErrorName(r));
    return 0;
}

int ds_parts_frame(ds_parts *s, const ds_cut_part *p, const uint8_t **frame,
                   size_t *zsize, ds_err *err)
{
    if (s->late == NULL) {
        s->late = calloc(1, sizeof(*s->late));
        s->lateframe = malloc(s->zcap);
        if (s->late == NULL || s->lateframe == NULL)
            return ds_err_set(err, -ENOMEM, "internal",
                              "parts %s: out of memory for a frame", nm(s));
        int rc = worker_init(s, s->late, err);
        if (rc < 0)
            return rc;
    }
    size_t r =
        ZSTD_compress2(s->late->cctx, s->lateframe, s->zcap, p->data, p->size);
    if (ZSTD_isError(r))
        return ds_err_set(err, -EIO, "internal",
                          "parts %s: zstd compress part %llu (%zu bytes): %s",
                          nm(s), (unsigned long long)p->index, p->size,
                          ZSTD_getErrorName(r));
    s->zsize += r;
    *frame = s->lateframe;
    *zsize = r;
    return 0;
}

int ds_parts_new(const ds_parts_opts *opts, ds_part_fn emit, void *emit_ctx,
                 ds_parts **out, ds_err *err)
{
    if (out == NULL || emit == NULL)
        return ds_err_set(err, -EINVAL, "internal",
                          "parts: new: missing callback or result");
    *out = NULL;
    ds_parts_opts o = {0};
    if (opts != NULL)
        o = *opts;
    const char *name = o.name != NULL ? o.name : "stream";
    int level = o.level != 0 ? o.level : 3;
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
        return ds_err_set(err, -EINVAL, "bad-option",
                          "parts %s: zstd level %d is outside %d..%d", name,
                          level, ZSTD_minCLevel(), ZSTD_maxCLevel());
    size_t part_size = o.part_size != 0 ? o.part_size : DS_PART_MAX;
    if (part_size > DS_PART_MAX)
        return ds_err_set(err, -EINVAL, "bad-option",
                          "parts %s: part size %zu is over the maximum %u",
                          name, part_size, DS_PART_MAX);
    int threads = o.threads != 0 ? o.threads : cores();
    if (threads < 1 || threads > DS_PARTS_THREADS_MAX)
        return ds_err_set(err, -EINVAL, "bad-option",
                          "parts %s: %d threads: 1..%d, or 0 for one per core",
                          name, threads, DS_PARTS_THREADS_MAX);

    ds_parts *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "parts %s: out of memory",
                          name);
    s->level = level;
    s->part_size = part_size;
    s->zcap = ZSTD_compressBound(part_size);
    s->cut = o.cut;
    s->cut_ctx = o.cut_ctx;
    s->want_frame = o.want_frame;
    s->want_ctx = o.want_ctx;
    s->emit = emit;
    s->emit_ctx = emit_ctx;
    s->name = o.name;
    atomic_init(&s->cancelled, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    /* Enough slots to keep every thread busy while the head part waits to
     * be emitted and the caller fills the next one. */
    size_t nslots = 2 * (size_t)threads + 2;
    s->slots = calloc(nslots, sizeof(*s->slots));
    s->workers = calloc((size_t)threads, sizeof(*s->workers));
    s->stream_md = EVP_MD_CTX_new();
    int rc = 0;
    if (s->slots == NULL || s->workers == NULL || s->stream_md == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal", "parts %s: out of memory",
                        name);
        goto fail;
    }
    s->nslots = nslots;
    s->nthreads = threads;
    if (EVP_DigestInit_ex(s->stream_md, EVP_sha256(), NULL) != 1) {
        rc = ds_err_set(err, -EIO, "internal", "parts %s: sha256 init failed",
                        name);
        goto fail;
    }
    for (int i = 0; i < threads; i++) {
        rc = worker_init(s, &s->workers[i], err);
        if (rc < 0)
            goto fail;
    }
    for (int i = 0; i < threads; i++) {
        worker *w = &s->workers[i];
        int e = pthread_create(&w->tid, NULL, worker_main, w);
        if (e != 0) {
            errno = e;
            rc = ds_err_sys(err, "internal",
                            "parts %s: start compression thread %d of %d", name,
                            i + 1, threads);
            goto fail;
        }
        w->started = 1;
    }
    *out = s;
    return 0;
fail:
    ds_parts_free(s);
    return rc;
}
