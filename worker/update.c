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
    };
    ds_unpack_stats st = {0};
    if (ds_unpack(u->staging, read_chunk, u, &uo, &st, err) < 0)
        return cancelled(u) ? DS_OUT_CANCELLED : classify(err);
    u->entries = st.entries;
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
            ds_warn("discard-failed", "package=%s path=%s error=\"%s\"",
                    u->hdr.package, u->staging, derr.msg);
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
    if (u == NULL)
        return ds_err_set(err, -ENOMEM, "io-error",
                          "start update %s v%llu: "
                          "out of memory",
                          hdr->package, (unsigned long long)hdr->version);
    u->hdr = *hdr;
    u->hdr.data = NULL;
    u->hdr.data_len = 0;
    u->opts = *opts;
    u->mark.fd = -1;
    u->t0_ms = ds_mono_ms();
    pthread_mutex_init(&u->mu, NULL);
    pthread_cond_init(&u->cv, NULL);
    int rc = pthread_create(&u->thread, NULL, thread_main, u);
    if (rc != 0) {
        pthread_cond_destroy(&u->cv);
        pthread_mutex_destroy(&u->mu);
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
    pthread_cond_destroy(&u->cv);
    pthread_mutex_destroy(&u->mu);
    free(u);
}
