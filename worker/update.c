/*
 * update.c - the update thread: pull chunks from the hand-over queue,
 * unpack into staging (unpack.h), sync, finalize (library.h), post the
 * outcome. See update.h for ownership.
 */
#include "update.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "partlist.h"
#include "partsource.h"
#include "progress.h"
#include "unpack.h"

/* Chunks waiting in the hand-over queue: with ~900 KiB chunks this bounds
 * an update's buffered payload to a few MiB whatever its size. */
#define QCAP 2

struct ds_update {
    ds_event hdr; /* first chunk's header; data not kept */
    ds_update_opts opts;
    pthread_t thread;
    bool started, joined;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled on push, pop and cancel */
    rd_kafka_message_t *q[QCAP];
    const uint8_t *qdata[QCAP];
    size_t qlen[QCAP];
    unsigned qhead, qn;
    bool cancel;      /* consumer asked to stop */
    bool interrupted; /* unpack gave up: read_chunk must not wait */
    bool closed;      /* thread stopped reading: push refuses */

    /* Schema v2: the manifest (borrowed pointers cleared), the refs to
     * fetch (parts, or index parts first), the fetch in progress (set and
     * cleared by the thread under mu, so that cancel reaches it), and the
     * fetch's failure, which explains unpack's "source aborted". */
    bool v2;
    ds_manifest man;
    ds_part_ref *refs;
    size_t nrefs;
    ds_fetch *fetch;    /* the index parts */
    ds_partsource *src; /* the parts: re-created or fetched */
    int fetch_rc;
    ds_err fetch_err;
    ds_partsource_stats pst; /* where the parts came from */
    ds_unpack_stats ust;

    /* Thread-private while running. */
    rd_kafka_message_t *cur; /* message whose bytes unpack is reading */
    uint32_t consumed;       /* chunks taken from the queue */
    char staging[PATH_MAX];
    ds_library_mark mark; /* from before the first write to the last sync */

    /* Result, written by the thread before it posts. */
    ds_outcome outcome;
    ds_err err;
    uint64_t entries;
    uint64_t t0_ms, t_sync_ms, t_finalize_ms, t_end_ms;
    uint64_t wait_ms; /* read_chunk blocked: the next chunk had not come */
    ds_update *next;  /* completion list link */
};

void ds_completions_init(ds_completions *cq, void (*wake)(void *), void *ctx)
{
    pthread_mutex_init(&cq->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cq->cv, &ca);
    pthread_condattr_destroy(&ca);
    cq->head = NULL;
    cq->wake = wake;
    cq->wake_ctx = ctx;
}

void ds_completions_destroy(ds_completions *cq)
{
    pthread_cond_destroy(&cq->cv);
    pthread_mutex_destroy(&cq->mu);
}

static void post(ds_completions *cq, ds_update *u)
{
    pthread_mutex_lock(&cq->mu);
    u->next = NULL;
    ds_update **pp = &cq->head;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = u;
    pthread_cond_signal(&cq->cv);
    pthread_mutex_unlock(&cq->mu);
    if (cq->wake != NULL)
        cq->wake(cq->wake_ctx);
}

ds_update *ds_completions_take(ds_completions *cq)
{
    pthread_mutex_lock(&cq->mu);
    ds_update *list = cq->head;
    cq->head = NULL;
    pthread_mutex_unlock(&cq->mu);
    return list;
}

void ds_completions_wait(ds_completions *cq, unsigned timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&cq->mu);
    while (cq->head == NULL &&
           pthread_cond_timedwait(&cq->cv, &cq->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&cq->mu);
}

/* unpack's source: the next chunk's payload, 0 after the last chunk. */
static ssize_t read_chunk(void *ctx, const void **buf)
{
    ds_update *u = ctx;
    if (u->cur != NULL) {
        rd_kafka_message_destroy(u->cur);
        u->cur = NULL;
    }
    if (u->consumed == u->hdr.chunks)
        return 0;
    pthread_mutex_lock(&u->mu);
    if (u->qn == 0 && !u->cancel && !u->interrupted) {
        uint64_t t = ds_mono_ms();
        while (u->qn == 0 && !u->cancel && !u->interrupted)
            pthread_cond_wait(&u->cv, &u->mu);
        u->wait_ms += ds_mono_ms() - t;
    }
    if (u->cancel || u->interrupted) {
        pthread_mutex_unlock(&u->mu);
        return -1;
    }
    unsigned i = u->qhead;
    u->cur = u->q[i];
    *buf = u->qdata[i];
    ssize_t len = (ssize_t)u->qlen[i];
    u->qhead = (u->qhead + 1) % QCAP;
    u->qn--;
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
    u->consumed++;
    return len;
}

/* unpack gave up early (its tar side failed) while its helper thread may
 * be waiting in read_chunk for a chunk the sender may never send. */
static void interrupt_read(void *ctx)
{
    ds_update *u = ctx;
    pthread_mutex_lock(&u->mu);
    u->interrupted = true;
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
}

/* Open a fetch of refs[0..n) as u's current one (cancel reaches it). */
static int fetch_open(ds_update *u, const ds_part_ref *refs, size_t n,
                      ds_err *err)
{
    ds_fetch *f = NULL;
    int rc = ds_fetch_open(u->opts.pf, u->hdr.package, refs, n, &f, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&u->mu);
    u->fetch = f;
    if (u->cancel)
        ds_fetch_cancel(f);
    pthread_mutex_unlock(&u->mu);
    return 0;
}

static void fetch_close(ds_update *u)
{
    pthread_mutex_lock(&u->mu);
    ds_fetch *f = u->fetch;
    u->fetch = NULL;
    pthread_mutex_unlock(&u->mu);
    ds_fetch_close(f);
}

/* unpack's source for the parts form: the next verified part's bytes. */
static ssize_t read_part(void *ctx, const void **buf)
{
    ds_update *u = ctx;
    size_t len = 0;
    uint64_t t = ds_mono_ms();
    int rc = ds_partsource_next(u->src, buf, &len, &u->fetch_err);
    u->wait_ms += ds_mono_ms() - t;
    if (rc < 0) {
        u->fetch_rc = rc;
        return -1;
    }
    return rc == 0 ? 0 : (ssize_t)len;
}

static void interrupt_fetch(void *ctx)
{
    ds_update *u = ctx;
    pthread_mutex_lock(&u->mu);
    if (u->fetch != NULL)
        ds_fetch_cancel(u->fetch);
    if (u->src != NULL)
        ds_partsource_cancel(u->src);
    pthread_mutex_unlock(&u->mu);
}

/* The installed version (current) of the package, when there is one: its
 * directory into dir (else dir[0] = '\0'), and its part list into *pl
 * when the library has one for it (else pl->n == 0, parts NULL). Nothing
 * here fails the update: without them every part is fetched and every
 * file written. */
static void installed(ds_update *u, char *dir, size_t n, ds_partlist *pl)
{
    ds_err err;
    uint64_t cur = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    dir[0] = '\0';
    memset(pl, 0, sizeof(*pl));
    if (ds_library_current(u->opts.lib, u->hdr.package, &cur, &err) < 0 ||
        cur == 0 ||
        ds_library_version_path(u->opts.lib, u->hdr.package, cur, dir, n,
                                &err) < 0) {
        dir[0] = '\0';
        return;
    }
    if (!u->v2 || u->man.form == DS_FORM_INLINE)
        return;
    if (ds_library_load_partlist(u->opts.lib, u->hdr.package, DS_PARTLIST_MAX,
                                 &buf, &len, &err) < 0) {
        ds_warn("partlist-unreadable",
                "package=%s error=%s note=\"every part is fetched\"",
                u->hdr.package, DS_LV(err.msg));
        return;
    }
    if (buf == NULL)
        return;
    ds_partlist l;
    if (ds_partlist_decode(buf, len, u->hdr.package, &l, &err) < 0) {
        ds_warn("partlist-unreadable",
                "package=%s error=%s note=\"every part is fetched\"",
                u->hdr.package, DS_LV(err.msg));
    } else if (l.version != cur) {
        ds_partlist_free(&l); /* of another version: of no use */
    } else {
        *pl = l;
    }
    free(buf);
}

/* Open the parts as u's source (cancel reaches it). */
static int source_open(ds_update *u, const char *dir, const ds_partlist *pl,
                       ds_err *err)
{
    ds_partsource *s = NULL;
    int rc = ds_partsource_open(u->opts.pf, u->hdr.package, u->hdr.version,
                                u->refs, u->nrefs, dir[0] ? dir : NULL,
                                pl->parts != NULL ? pl : NULL, &s, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&u->mu);
    u->src = s;
    if (u->cancel)
        ds_partsource_cancel(s);
    pthread_mutex_unlock(&u->mu);
    return 0;
}

static void source_close(ds_update *u)
{
    pthread_mutex_lock(&u->mu);
    ds_partsource *s = u->src;
    u->src = NULL;
    pthread_mutex_unlock(&u->mu);
    if (s != NULL)
        ds_partsource_stats_get(s, &u->pst);
    ds_partsource_close(s);
}

/* Keep the new version's part list for the next update (a cache: a
 * failure is a warning). */
static void save_partlist(ds_update *u)
{
    if (!u->v2 || u->man.form == DS_FORM_INLINE)
        return;
    ds_err err;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (ds_partlist_encode(u->hdr.version, u->man.size, u->man.sha256, u->refs,
                           u->nrefs, &buf, &len, &err) < 0 ||
        ds_library_save_partlist(u->opts.lib, u->hdr.package, u->hdr.version,
                                 buf, len, &err) < 0)
        ds_warn("partlist-not-saved",
                "package=%s version=%llu error=%s note=\"the next version "
                "fetches every part\"",
                u->hdr.package, (unsigned long long)u->hdr.version,
                DS_LV(err.msg));
    free(buf);
}

/* Index form: fetch the index parts, check the index content against the
 * manifest, and make its refs u's refs. */
static int fetch_index(ds_update *u, ds_err *err)
{
    uint64_t len = 0;
    for (size_t i = 0; i < u->nrefs; i++)
        len += u->refs[i].size;
    uint8_t *buf = malloc(len ? len : 1);
    ds_part_ref *refs = malloc(u->man.nparts * sizeof(*refs));
    int rc = 0;
    if (buf == NULL || refs == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal",
                        "index of %s v%llu: out of memory for %llu bytes",
                        u->hdr.package, (unsigned long long)u->hdr.version,
                        (unsigned long long)len);
        goto out;
    }
    if ((rc = fetch_open(u, u->refs, u->nrefs, err)) < 0)
        goto out;
    uint64_t at = 0;
    for (;;) {
        const void *p;
        size_t n;
        rc = ds_fetch_next(u->fetch, &p, &n, err);
        if (rc <= 0)
            break;
        memcpy(buf + at, p, n); /* sizes checked against the refs */
        at += n;
    }
    fetch_close(u);
    if (rc < 0)
        goto out;
    ds_manifest m = u->man;
    m.refs = u->refs;
    m.nrefs = (uint32_t)u->nrefs;
    if ((rc = ds_manifest_check_index(&m, buf, (size_t)at, refs,
                                      (size_t)u->man.nparts, err)) < 0)
        goto out;
    free(u->refs);
    u->refs = refs;
    u->nrefs = (size_t)u->man.nparts;
    refs = NULL;
out:
    free(buf);
    free(refs);
    return rc;
}

static bool cancelled(ds_update *u)
{
    pthread_mutex_lock(&u->mu);
    bool c = u->cancel;
    pthread_mutex_unlock(&u->mu);
    return c;
}

static ds_outcome classify(const ds_err *err)
{
    if (strcmp(err->reason, "cancelled") == 0)
        return DS_OUT_CANCELLED;
    /* The site's fault, retried: the disk, and "internal" (out of memory,
     * a hash or zstd context that could not be made): no input causes
     * those, so dead-lettering would lose a good update. */
    if (strcmp(err->reason, "io-error") == 0 ||
        strcmp(err->reason, "internal") == 0)
        return DS_OUT_IOERROR;
    return DS_OUT_REJECTED;
}

static ds_outcome run(ds_update *u)
{
    ds_err *err = &u->err;
    char tag[2 * DS_UPDATE_ID_LEN + 32];
    char hex[2 * DS_UPDATE_ID_LEN + 1];
    snprintf(tag, sizeof(tag), "%s-v%llu",
             ds_hex(hex, u->hdr.update_id, DS_UPDATE_ID_LEN),
             (unsigned long long)u->hdr.version);
    /* The mark is taken before the first write: every durability point
     * below fails if any writeback error was reported on the library's
     * filesystem since then, whichever sync got the report (library.h). */
    if (ds_library_stage(u->opts.lib, u->hdr.package, tag, u->staging,
                         sizeof(u->staging), &u->mark, err) < 0) {
        u->staging[0] = '\0';
        return DS_OUT_IOERROR;
    }
    ds_unpack_opts uo = {
        .size = u->hdr.size,
        .sha256 = u->hdr.sha256,
        .max_entries = u->opts.max_entries,
        .max_window_log = u->opts.max_window_log,
        .interrupt = interrupt_read,
        .multi_frame = u->v2,
    };
    ds_unpack_stats *st = &u->ust;
    ds_unpack_read_fn rd = read_chunk;
    char dir[PATH_MAX];
    ds_partlist pl;
    installed(u, dir, sizeof(dir), &pl);
    if (dir[0] != '\0')
        uo.link_from = dir;
    if (u->v2 && u->man.form != DS_FORM_INLINE) {
        if ((u->man.form == DS_FORM_INDEX && fetch_index(u, err) < 0) ||
            source_open(u, dir, &pl, err) < 0) {
            ds_partlist_free(&pl);
            return cancelled(u) ? DS_OUT_CANCELLED : classify(err);
        }
        rd = read_part;
        uo.raw = 1;
        uo.interrupt = interrupt_fetch;
    }
    int urc = ds_unpack(u->staging, rd, u, &uo, st, err);
    source_close(u);
    ds_partlist_free(&pl);
    if (urc < 0 && u->fetch_rc < 0 &&
        strcmp(u->fetch_err.reason, "cancelled") != 0)
        *err = u->fetch_err; /* why the source gave up */
    if (urc < 0)
        return cancelled(u) ? DS_OUT_CANCELLED : classify(err);
    u->entries = st->entries;
    u->t_sync_ms = ds_mono_ms();
    if (ds_library_sync(u->opts.lib, u->staging, &u->mark, err) < 0)
        return DS_OUT_IOERROR;
    /* Last chance to back out; past this point the version goes live. */
    if (cancelled(u))
        return DS_OUT_CANCELLED;
    u->t_finalize_ms = ds_mono_ms();
    ds_finalize_result fr;
    if (ds_library_finalize(u->opts.lib, u->hdr.package, u->hdr.version,
                            u->staging, &u->mark, &fr, err) < 0)
        return DS_OUT_IOERROR;
    u->staging[0] = '\0'; /* renamed into versions/ or removed */
    if (fr == DS_FINALIZED)
        save_partlist(u);
    return fr == DS_FINALIZED ? DS_OUT_FINALIZED : DS_OUT_STALE;
}

static void *thread_main(void *arg)
{
    ds_update *u = arg;
    u->outcome = run(u);
    ds_library_mark_release(&u->mark);
    if (u->cur != NULL) {
        rd_kafka_message_destroy(u->cur);
        u->cur = NULL;
    }
    if (u->staging[0] != '\0') {
        ds_err derr;
        if (ds_library_discard(u->opts.lib, u->staging, &derr) < 0)
            ds_warn("discard-failed", "package=%s path=%s error=%s",
                    u->hdr.package, DS_LV(u->staging), DS_LV(derr.msg));
    }
    /* Stop reading: drop what is queued; further pushes are refused. */
    pthread_mutex_lock(&u->mu);
    u->closed = true;
    while (u->qn > 0) {
        rd_kafka_message_destroy(u->q[u->qhead]);
        u->qhead = (u->qhead + 1) % QCAP;
        u->qn--;
    }
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
    u->t_end_ms = ds_mono_ms();
    post(u->opts.cq, u);
    return NULL;
}

int ds_update_start(const ds_event *hdr, const ds_update_opts *opts,
                    ds_update **out, ds_err *err)
{
    ds_update *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        free(opts->refs);
        return ds_err_set(err, -ENOMEM, "internal",
                          "start update %s v%llu: "
                          "out of memory",
                          hdr->package, (unsigned long long)hdr->version);
    }
    u->hdr = *hdr;
    u->hdr.data = NULL;
    u->hdr.data_len = 0;
    u->opts = *opts;
    u->refs = opts->refs;
    u->nrefs = opts->nrefs;
    if (opts->man != NULL) {
        u->v2 = true;
        u->man = *opts->man;
        u->man.data = NULL;
        u->man.data_len = 0;
        u->man.refs = NULL;
        u->man.refs_msg = NULL;
        u->man.refs_msg_len = 0;
    }
    u->opts.man = NULL;
    u->opts.refs = NULL;
    u->mark.fd = -1;
    u->t0_ms = ds_mono_ms();
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->cv, NULL);
    int rc = pthread_create(&u->thread, NULL, thread_main, u);
    if (rc != 0) {
        pthread_cond_destroy(&u->cv);
        pthread_mutex_destroy(&u->mu);
        free(u->refs);
        free(u);
        errno = rc;
        return ds_err_sys(err, "io-error", "start update thread for %s v%llu",
                          hdr->package, (unsigned long long)hdr->version);
    }
    u->started = true;
    *out = u;
    return 0;
}

int ds_update_push(ds_update *u, rd_kafka_message_t *msg, const ds_event *ev)
{
    pthread_mutex_lock(&u->mu);
    while (u->qn == QCAP && !u->closed)
        pthread_cond_wait(&u->cv, &u->mu);
    if (u->closed) {
        pthread_mutex_unlock(&u->mu);
        return 1;
    }
    unsigned i = (u->qhead + u->qn) % QCAP;
    u->q[i] = msg;
    u->qdata[i] = ev->data;
    u->qlen[i] = ev->data_len;
    u->qn++;
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
    return 0;
}

void ds_update_cancel(ds_update *u)
{
    pthread_mutex_lock(&u->mu);
    u->cancel = true;
    if (u->fetch != NULL)
        ds_fetch_cancel(u->fetch);
    if (u->src != NULL)
        ds_partsource_cancel(u->src);
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
}

void ds_update_join(ds_update *u)
{
    if (u->started && !u->joined) {
        pthread_join(u->thread, NULL);
        u->joined = true;
    }
}

ds_outcome ds_update_outcome(const ds_update *u, const ds_err **err)
{
    if (err != NULL)
        *err = &u->err;
    return u->outcome;
}

const ds_event *ds_update_header(const ds_update *u)
{
    return &u->hdr;
}

void *ds_update_user(const ds_update *u)
{
    return u->opts.user;
}

ds_update *ds_update_next(const ds_update *u)
{
    return u->next;
}

uint64_t ds_update_entries(const ds_update *u)
{
    return u->entries;
}

double ds_update_seconds(const ds_update *u)
{
    return (double)(u->t_end_ms - u->t0_ms) / 1000.0;
}

void ds_update_phases(const ds_update *u, double *wait, double *extract,
                      double *sync)
{
    uint64_t end = u->t_sync_ms ? u->t_sync_ms : u->t_end_ms;
    *wait = (double)u->wait_ms / 1000.0;
    *extract = (double)(end - u->t0_ms - u->wait_ms) / 1000.0;
    *sync = u->t_sync_ms && u->t_finalize_ms
                ? (double)(u->t_finalize_ms - u->t_sync_ms) / 1000.0
                : 0.0;
}

void ds_update_reuse(const ds_update *u, ds_update_reuse_stats *r)
{
    r->local_parts = u->pst.local_parts;
    r->local_bytes = u->pst.local_bytes;
    r->fetched_parts = u->pst.fetched_parts;
    r->fetched_bytes = u->pst.fetched_bytes;
    r->mismatches = u->pst.mismatches;
    r->linked_files = u->ust.linked;
    r->linked_bytes = u->ust.linked_bytes;
}

double ds_update_finalize_seconds(const ds_update *u)
{
    return u->t_finalize_ms ? (double)(u->t_end_ms - u->t_finalize_ms) / 1000.0
                            : 0.0;
}

void ds_update_free(ds_update *u)
{
    if (u == NULL)
        return;
    ds_update_join(u);
    free(u->refs);
    pthread_cond_destroy(&u->cv);
    pthread_mutex_destroy(&u->mu);
    free(u);
}
