/* partfetch.c - reading parts by (partition, offset); see partfetch.h. */
#include "partfetch.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "kmeta.h"
#include "log.h"
#include "progress.h"

/* A partition read from X goes on reading when its next wanted offset is
 * at most this far ahead; farther, it is seeked there. */
#define SKIP_AHEAD 8
/* Partition count re-read at most this often (a ref to a partition the
 * topic does not have: grown since, or a bad ref). */
#define METADATA_EVERY_MS 5000
/* Start-up retried this often while the cluster does not answer. */
#define RETRY_MS 1000
#define KEY_CAP  (DS_PART_KEY_MAX + 8)
/* A wanted offset at or past the partition's visible end may simply not
 * be visible yet: a transaction's commit markers reach its partitions one
 * by one, so the manifest can be readable before a part's partition's
 * last stable offset moves. Missing only once it stayed so this long. */
#define BEYOND_END_MS 15000

static void nap_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Threads that check parts (decompress, hash) ahead of the readers, and
 * how far ahead: parts received beyond that wait as frames. At most
 * VERIFY_AHEAD parts, and no more than VERIFY_BYTES of them (six parts of
 * the largest size: small parts are checked further ahead, and the
 * decompressed bytes held stay the same whatever the cut). */
#define VERIFIERS    2
#define VERIFY_AHEAD 12
#define VERIFY_BYTES ((size_t)6 * DS_PART_SIZE_MAX)
#define OUTS_MAX     (VERIFY_AHEAD + 1) /* decompressed buffers per fetch */

/* Parts a fetch takes when their records come by, though only the first
 * ones are sought (the window: up to DS_FETCH_WINDOW parts, and no more
 * than WINDOW_BYTES of frames, 16 of the largest: a window of small parts
 * is longer, so the bytes sought at once do not shrink with the parts): a
 * partition read for a wanted part goes on to the next records, and
 * those are mostly this version's later parts (dropping them cost a seek
 * back and a second read of each). A record waits in a buffer of
 * FRAME_CAP bytes, given back once its part is checked; a wanted part
 * always gets one, a later part only while the buffers in use plus one
 * for each wanted part not received yet stay under FRAMES_MAX, and their
 * frames under FRAMES_BYTES (12 of the largest), so at most FRAMES_MAX +
 * DS_FETCH_WINDOW exist. A partition with no wanted part stays resumed
 * while one of the later parts is next in it and there is room: no pause,
 * and no fetch round trip to resume it. Fixed-size buffers, reused:
 * records of every size coming and going fragmented the heap (RSS 10-20
 * MiB higher). With content-defined cuts (parts of about 140 KiB
 * compressed) the window is 32 parts: with 16, the bench's 1 GiB install
 * took 13.9 s instead of 10.5 s. */
#define RING         128
#define FRAMES_MAX   24
#define FRAME_CAP    (DS_PART_ZSIZE_MAX + 4096) /* a part event's largest */
#define FRAMES_ALL   (FRAMES_MAX + DS_FETCH_WINDOW)
#define WINDOW_BYTES ((size_t)16 * DS_PART_ZSIZE_MAX)
#define FRAMES_BYTES ((size_t)12 * DS_PART_ZSIZE_MAX)

/* A slot's life: WANT -> GOT (the fetcher copied the record) ->
 * VERIFYING (a verifier checks it) -> READY (checked: out holds its
 * bytes, or vrc < 0 says why not); or WANT -> MISSING. */
enum { S_FREE, S_WANT, S_GOT, S_VERIFYING, S_READY, S_MISSING };

typedef struct slot {
    int state;
    bool armed;         /* the partition reads from at most its offset on */
    bool suspect;       /* seen missing once: confirmed after a fresh seek */
    uint64_t beyond_ms; /* when the partition's end was first below it */
    int64_t beyond_end;
    uint64_t idx; /* which part of the fetch */
    uint8_t key[KEY_CAP];
    size_t keylen; /* may exceed KEY_CAP: then the key is wrong anyway */
    uint8_t *val;
    size_t vallen;
    bool pooled;   /* val is one of the fetch's buffers */
    char why[160]; /* S_MISSING */
    uint8_t *out;  /* S_READY: the part's bytes, outlen of them */
    size_t outlen;
    int vrc; /* S_READY: 0, or the check's failure, in verr */
    ds_err verr;
} slot;

struct ds_fetch {
    ds_partfetch *pf;
    ds_fetch *next;
    char package[DS_PACKAGE_MAX + 1];
    ds_part_ref *refs;
    size_t n;
    size_t head; /* the part next() hands out next */
    slot win[RING];
    size_t wend;                 /* the window: parts [head, wend) are sought */
    uint8_t *frames[FRAMES_ALL]; /* the free buffers */
    unsigned nfree, nframes;
    size_t held; /* bytes of the records in the buffers in use */
    bool cancelled;
    unsigned busy; /* slots a verifier is checking: close waits */
    uint8_t *out;  /* the reader's: the bytes handed out last */
    /* Decompressed buffers not in use, and how many exist (the reader's,
     * those of checked slots, the pool): at most OUTS_MAX. */
    uint8_t *pool[OUTS_MAX];
    unsigned npool, nouts;
};

typedef struct pstate {
    bool resumed;
    int64_t pos; /* offset the next record read has at least; -1 unknown */
} pstate;

struct ds_partfetch {
    const ds_kconf *kc;
    char topic[256];
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* slots changed, or cancel */
    pthread_cond_t vcv; /* a slot to verify, or stop */
    ds_fetch *fetches;
    bool stop, started;
    pthread_t thread;
    pthread_t verifiers[VERIFIERS];
    int nverifiers;
    ds_partfetch_stats st;

    /* The fetcher thread's own. */
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    pstate *ps;
    int32_t nparts;
    uint64_t metadata_ms;
    uint64_t warned_ms;
};

/* ---- the fetcher thread ------------------------------------------------ */

static int make_consumer(ds_partfetch *pf, ds_err *err)
{
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int rc;
    /* Assign-only (2.0.2 wants a group.id for assign; it never joins it:
     * on a secured cluster it needs Describe on despool.partfetch). */
    if ((rc = ds_kconf_set(c, "group.id", "despool.partfetch", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.commit", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.offset.store", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "isolation.level", "read_committed", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.partition.eof", "true", err)) < 0 ||
        /* An offset out of range (a bad ref, or retention) reads on from
         * the end: the partition's end then says the part is missing. */
        (rc = ds_kconf_set(c, "auto.offset.reset", "latest", err)) < 0 ||
        /* Memory is bounded by what is wanted (paused partitions fetch
         * nothing), never by the prefetch limit, whose 1 s back-off in
         * 2.0.2 would stall every partition that reached it. */
        (rc = ds_kconf_set(c, "queued.max.messages.kbytes", "65536", err)) <
            0 ||
        (rc = ds_kconf_set(c, "fetch.max.bytes", "4194304", err)) < 0 ||
        (rc = ds_kconf_set(c, "fetch.wait.max.ms", "100", err)) < 0 ||
        (rc = ds_kconf_apply(pf->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    pf->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (pf->rk == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka",
                          "create part fetcher consumer: %s", errstr);
    }
    pthread_mutex_lock(&pf->mu);
    pf->q = rd_kafka_queue_get_consumer(pf->rk);
    pthread_mutex_unlock(&pf->mu);
    return 0;
}

/* pkg.content's partition count from the cluster. */
static int32_t partition_count(ds_partfetch *pf, ds_err *err)
{
    const rd_kafka_metadata_t *md = NULL;
    int rc = ds_kmeta_topic(pf->rk, pf->topic, 5000, &md, err);
    if (rc < 0)
        return rc;
    int32_t n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Assign partitions [from, n) of the topic, paused: reading starts only
 * where a part is wanted (seek, then resume). */
static int assign_more(ds_partfetch *pf, int32_t n, ds_err *err)
{
    pstate *ps = realloc(pf->ps, (size_t)n * sizeof(*ps));
    if (ps == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "part fetcher: memory");
    pf->ps = ps;
    rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(n);
    rd_kafka_topic_partition_list_t *add =
        rd_kafka_topic_partition_list_new(n - pf->nparts);
    for (int32_t p = 0; p < n; p++) {
        rd_kafka_topic_partition_list_add(all, pf->topic, p)->offset = 0;
        if (p >= pf->nparts) {
            rd_kafka_topic_partition_list_add(add, pf->topic, p);
            ps[p] = (pstate){.resumed = false, .pos = -1};
        }
    }
    /* Paused first, at an absolute offset: no fetch and no offset lookup
     * ever starts before the seek that sets where a partition is read
     * (2.0.2 lets a lookup still in flight, for a logical offset such as
     * END, override a later seek). */
    rd_kafka_resp_err_t e = rd_kafka_pause_partitions(pf->rk, add);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        e = rd_kafka_assign(pf->rk, all);
    rd_kafka_topic_partition_list_destroy(all);
    rd_kafka_topic_partition_list_destroy(add);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EIO, "kafka", "assign %s [0..%d): %s",
                          pf->topic, (int)n, rd_kafka_err2str(e));
    pf->nparts = n;
    return 0;
}

static void slot_missing(slot *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void slot_missing(slot *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
    s->state = S_MISSING;
}

/* Under mu: the reading of partition p went past s's offset without it.
 * Missing for sure only if that happens again after a fresh seek: a seek
 * can lose to an offset lookup still in flight in librdkafka 2.0.2 (the
 * partition is then read from its end), and a part must never be called
 * missing because of the client. */
static void passed(ds_partfetch *pf, slot *s, int32_t p, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void passed(ds_partfetch *pf, slot *s, int32_t p, const char *fmt, ...)
{
    if (!s->suspect) {
        s->suspect = true;
        s->armed = false;
        pf->ps[p].pos = -1;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
    s->state = S_MISSING;
}

/* Visit every slot still waiting for its record among the first SPAN
 * parts from each fetch's head (under mu); i_ is the part's index. */
#define FOR_WAITING(pf, f, s, r, END)                                          \
    for (ds_fetch *f = (pf)->fetches; f != NULL; f = f->next)                  \
        for (size_t i_ = f->head; i_ < f->n && i_ < (END); i_++)               \
            for (slot *s = &f->win[i_ % RING]; s != NULL; s = NULL)            \
                for (const ds_part_ref *r = &f->refs[i_]; r != NULL; r = NULL) \
                    if (s->state == S_WANT)
/* The wanted ones: what the partitions are read for. */
#define FOR_WANTED(pf, f, s, r) FOR_WAITING(pf, f, s, r, f->wend)

/* Under mu (or before the fetch is shared): the window from f's head. */
static void set_window(ds_fetch *f)
{
    size_t i = f->head, bytes = 0;
    while (i < f->n && i - f->head < DS_FETCH_WINDOW &&
           (i == f->head || bytes + f->refs[i].zsize <= WINDOW_BYTES))
        bytes += f->refs[i++].zsize;
    f->wend = i;
}

/* Under mu: may a part beyond f's window take a buffer? */
static bool spare_frame(const ds_fetch *f)
{
    unsigned used = f->nframes - f->nfree, want = 0;
    size_t bytes = f->held;
    for (size_t i = f->head; i < f->wend; i++)
        if (f->win[i % RING].state == S_WANT) {
            want++;
            bytes += f->refs[i].zsize;
        }
    return used + want < FRAMES_MAX && bytes < FRAMES_BYTES;
}

/* Under mu: where each partition must read. need[p] = lowest wanted
 * offset; -1 for none, -2 for none but stay resumed (the record it reads
 * next is one a fetch takes, RING). Refs to partitions the topic lacks
 * are missing (after one metadata refresh, done by the caller:
 * *refresh). */
static void plan(ds_partfetch *pf, int64_t *need, bool *refresh)
{
    for (int32_t p = 0; p < pf->nparts; p++)
        need[p] = -1;
    for (ds_fetch *f = pf->fetches; f != NULL; f = f->next) {
        if (!spare_frame(f))
            continue;
        for (size_t i = f->wend; i < f->n && i < f->head + RING; i++) {
            const ds_part_ref *r = &f->refs[i];
            if (f->win[i % RING].state != S_WANT || r->partition >= pf->nparts)
                continue;
            const pstate *ps = &pf->ps[r->partition];
            if (ps->resumed && ps->pos >= 0 && r->offset >= ps->pos &&
                r->offset <= ps->pos + SKIP_AHEAD)
                need[r->partition] = -2;
        }
    }
    uint64_t now = ds_mono_ms();
    FOR_WANTED(pf, f, s, r)
    {
        if (r->partition >= pf->nparts) {
            if (now - pf->metadata_ms < METADATA_EVERY_MS) {
                slot_missing(s, "%s has %d partitions, the ref says %d",
                             pf->topic, (int)pf->nparts, (int)r->partition);
                pthread_cond_broadcast(&pf->cv);
            } else {
                *refresh = true;
            }
            continue;
        }
        if (need[r->partition] < 0 || r->offset < need[r->partition])
            need[r->partition] = r->offset;
    }
}

/* Under mu: after partition p was positioned at ps->pos, every wanted
 * slot at or after it will be passed in order: arm them. */
static void arm(ds_partfetch *pf, int32_t p)
{
    FOR_WANTED(pf, f, s, r)
    if (r->partition == p && r->offset >= pf->ps[p].pos)
        s->armed = true;
}

static void warn_rate(ds_partfetch *pf, const char *what, const char *detail)
{
    uint64_t now = ds_mono_ms();
    if (now - pf->warned_ms < 10000)
        return;
    pf->warned_ms = now;
    char q[600];
    ds_warn("part-fetch-error", "topic=%s op=%s error=%s", pf->topic,
            DS_LV(what), ds_log_quote(q, sizeof(q), detail));
}

/* Seek, resume or pause partitions as the plan says (not under mu: these
 * talk to librdkafka's threads). Seeks are made synchronously, so no
 * record from before a seek is returned after it. */
static void apply(ds_partfetch *pf, const int64_t *need)
{
    rd_kafka_topic_partition_list_t *seek =
        rd_kafka_topic_partition_list_new(4);
    rd_kafka_topic_partition_list_t *resume =
        rd_kafka_topic_partition_list_new(4);
    rd_kafka_topic_partition_list_t *pause =
        rd_kafka_topic_partition_list_new(4);
    for (int32_t p = 0; p < pf->nparts; p++) {
        pstate *ps = &pf->ps[p];
        if (need[p] < 0) {
            if (need[p] == -1 && ps->resumed)
                rd_kafka_topic_partition_list_add(pause, pf->topic, p);
            continue;
        }
        bool far =
            ps->pos < 0 || need[p] < ps->pos || need[p] > ps->pos + SKIP_AHEAD;
        /* A resume alone does not wake the broker's thread in 2.0.2 (a
         * seek does): with nothing else in flight the partition would sit
         * until the thread's 1 s timeout. So a resumed partition is also
         * seeked, to where it is if it reads on from there. */
        if (far || !ps->resumed)
            rd_kafka_topic_partition_list_add(seek, pf->topic, p)->offset =
                far ? need[p] : ps->pos;
        if (!ps->resumed)
            rd_kafka_topic_partition_list_add(resume, pf->topic, p);
    }
    if (pause->cnt > 0) {
        rd_kafka_pause_partitions(pf->rk, pause);
        for (int i = 0; i < pause->cnt; i++)
            pf->ps[pause->elems[i].partition].resumed = false;
    }
    /* Resumed before the seek: the seek's wake-up finds it fetchable. */
    if (resume->cnt > 0) {
        rd_kafka_resume_partitions(pf->rk, resume);
        for (int i = 0; i < resume->cnt; i++)
            pf->ps[resume->elems[i].partition].resumed = true;
    }
    if (seek->cnt > 0) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(pf->rk, seek, 5000);
        if (e != NULL) {
            warn_rate(pf, "seek", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        } else {
            pthread_mutex_lock(&pf->mu);
            for (int i = 0; i < seek->cnt; i++) {
                rd_kafka_topic_partition_t *t = &seek->elems[i];
                if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                    /* Not started yet (just assigned): next round. */
                    pf->ps[t->partition].pos = -1;
                    continue;
                }
                pf->ps[t->partition].pos = t->offset;
                pf->st.seeks++;
            }
            pthread_mutex_unlock(&pf->mu);
        }
    }
    pthread_mutex_lock(&pf->mu);
    for (int32_t p = 0; p < pf->nparts; p++)
        if (need[p] >= 0 && pf->ps[p].pos >= 0 && pf->ps[p].resumed)
            arm(pf, p);
    pthread_mutex_unlock(&pf->mu);
    rd_kafka_topic_partition_list_destroy(seek);
    rd_kafka_topic_partition_list_destroy(resume);
    rd_kafka_topic_partition_list_destroy(pause);
}

/* Under mu: copy record m into slot s, in one of f's buffers (a record
 * too large for one is no part event: it gets its own, to be refused by
 * the check). Returns 0, or -1 out of memory. */
static int keep(ds_fetch *f, slot *s, const rd_kafka_message_t *m)
{
    if (m->len > FRAME_CAP) {
        if ((s->val = malloc(m->len)) == NULL)
            return -1;
        s->pooled = false;
    } else if (f->nfree > 0) {
        s->val = f->frames[--f->nfree];
        s->pooled = true;
    } else {
        if ((s->val = malloc(FRAME_CAP)) == NULL)
            return -1;
        f->nframes++;
        s->pooled = true;
    }
    if (s->pooled)
        f->held += m->len;
    memcpy(s->val, m->payload, m->len);
    s->vallen = m->len;
    s->keylen = m->key_len;
    memcpy(s->key, m->key, m->key_len < KEY_CAP ? m->key_len : KEY_CAP);
    s->state = S_GOT;
    return 0;
}

/* Under mu: a record (or an end or error) of partition p. */
static void route(ds_partfetch *pf, const rd_kafka_message_t *m)
{
    int32_t p = m->partition;
    if (p < 0 || p >= pf->nparts)
        return;
    pstate *ps = &pf->ps[p];
    bool changed = false;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        ps->pos = m->offset;
        FOR_WANTED(pf, f, s, r)
        if (s->armed && r->partition == p) {
            if (r->offset >= m->offset) {
                /* Not visible yet, or never: the fetcher's loop decides
                 * after BEYOND_END_MS (the fetch goes on at the end). */
                if (s->beyond_ms == 0)
                    s->beyond_ms = ds_mono_ms();
                s->beyond_end = m->offset;
                continue;
            }
            passed(pf, s, p, "partition %d ends at offset %lld", (int)p,
                   (long long)m->offset);
            changed = true;
        }
    } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
            m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
            ps->pos = -1; /* stopped: seek again for anything else */
            FOR_WANTED(pf, f, s, r)
            if (s->armed && r->partition == p) {
                passed(pf, s, p, "offset out of range of partition %d: %s",
                       (int)p, rd_kafka_message_errstr(m));
                changed = true;
            }
        } else {
            warn_rate(pf, "fetch", rd_kafka_message_errstr(m));
        }
    } else {
        pf->st.records++;
        ps->pos = m->offset + 1;
        bool used = false;
        FOR_WAITING(pf, f, s, r, f->head + RING)
        {
            if (r->partition != p)
                continue;
            bool wanted = i_ < f->wend;
            if (r->offset == m->offset) {
                if (!wanted && !spare_frame(f))
                    continue; /* no room: sought again in its turn */
                if (m->payload == NULL) {
                    slot_missing(s, "a tombstone at partition %d offset %lld",
                                 (int)p, (long long)m->offset);
                } else if (keep(f, s, m) < 0) {
                    slot_missing(s, "out of memory keeping %zu bytes", m->len);
                    s->why[0] = '!'; /* internal, not the input's fault */
                }
                used = changed = true;
            } else if (s->armed && r->offset < m->offset) {
                passed(pf, s, p,
                       "the first record at or after offset %lld of "
                       "partition %d is at %lld",
                       (long long)r->offset, (int)p, (long long)m->offset);
                changed = true;
            }
        }
        if (!used)
            pf->st.dropped++;
    }
    if (changed) {
        pthread_cond_broadcast(&pf->cv);
        pthread_cond_broadcast(&pf->vcv);
    }
}

/* Under mu: wanted parts past their partition's visible end for
 * BEYOND_END_MS are missing. */
static void beyond_end_timeouts(ds_partfetch *pf)
{
    uint64_t now = ds_mono_ms();
    FOR_WANTED(pf, f, s, r)
    if (s->beyond_ms != 0 && now - s->beyond_ms >= BEYOND_END_MS) {
        slot_missing(s, "partition %d ends at offset %lld (for %d s)",
                     (int)r->partition, (long long)s->beyond_end,
                     BEYOND_END_MS / 1000);
        pthread_cond_broadcast(&pf->cv);
    }
}

static void *fetcher_main(void *arg)
{
    ds_partfetch *pf = arg;
    ds_err err;
    int64_t *need = NULL;
    int32_t needcap = 0;
    for (;;) {
        pthread_mutex_lock(&pf->mu);
        bool stop = pf->stop;
        pthread_mutex_unlock(&pf->mu);
        if (stop)
            break;
        if (pf->rk == NULL && make_consumer(pf, &err) < 0) {
            warn_rate(pf, "create consumer", err.msg);
            nap_ms(RETRY_MS);
            continue;
        }
        bool refresh = pf->nparts == 0;
        if (!refresh) {
            if (needcap < pf->nparts) {
                int64_t *nn = realloc(need, (size_t)pf->nparts * sizeof(*nn));
                if (nn == NULL) {
                    nap_ms(RETRY_MS);
                    continue;
                }
                need = nn;
                needcap = pf->nparts;
            }
            pthread_mutex_lock(&pf->mu);
            beyond_end_timeouts(pf);
            plan(pf, need, &refresh);
            pthread_mutex_unlock(&pf->mu);
            apply(pf, need);
        }
        if (refresh) {
            pf->metadata_ms = ds_mono_ms();
            int32_t n = partition_count(pf, &err);
            if (n < 0 || (n > pf->nparts && assign_more(pf, n, &err) < 0)) {
                warn_rate(pf, "assign", err.msg);
                nap_ms(RETRY_MS);
            }
            continue;
        }
        /* Take what has arrived; the reader's advance wakes the poll. */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(pf->rk, 100);
        for (int k = 0; m != NULL && k < 64; k++) {
            pthread_mutex_lock(&pf->mu);
            route(pf, m);
            pthread_mutex_unlock(&pf->mu);
            rd_kafka_message_destroy(m);
            m = rd_kafka_consumer_poll(pf->rk, 0);
        }
        if (m != NULL) {
            pthread_mutex_lock(&pf->mu);
            route(pf, m);
            pthread_mutex_unlock(&pf->mu);
            rd_kafka_message_destroy(m);
        }
    }
    free(need);
    return NULL;
}

/* ---- the verifiers ------------------------------------------------------ */

/* Check slot s's record against ref r of f's package; not under mu (the
 * slot is VERIFYING: nobody else touches it). */
static void verify_slot(ds_fetch *f, slot *s, const ds_part_ref *r)
{
    ds_part p;
    ds_err *err = &s->verr;
    size_t klen = s->keylen > KEY_CAP ? KEY_CAP : s->keylen;
    s->vrc = 0;
    if (s->out == NULL && (s->out = malloc(DS_PART_SIZE_MAX)) == NULL) {
        s->vrc = ds_err_set(err, -ENOMEM, "internal",
                            "part %llu of %s: out of memory",
                            (unsigned long long)s->idx, f->package);
        return;
    }
    int rc;
    if ((rc = ds_part_decode(s->val, s->vallen, &p, err)) < 0 ||
        (rc = ds_part_check(&p, s->key, klen, f->package, r, err)) < 0 ||
        (rc = ds_part_verify(&p, s->out, DS_PART_SIZE_MAX, err)) < 0) {
        s->vrc = rc;
        if (strcmp(err->reason, "internal") != 0) {
            char msg[DS_ERRMSG_MAX];
            snprintf(msg, sizeof(msg), "%s", err->msg);
            s->vrc = ds_err_set(err, -EINVAL, "part-mismatch",
                                "part %llu of %zu at %s partition %d offset "
                                "%lld: %s",
                                (unsigned long long)s->idx, f->n, f->pf->topic,
                                (int)r->partition, (long long)r->offset, msg);
        }
        return;
    }
    s->outlen = p.size;
}

/* Uncompressed bytes of f's parts from its head to i, both included. */
static size_t ahead_bytes(const ds_fetch *f, size_t i)
{
    size_t bytes = 0;
    for (size_t j = f->head; j <= i; j++)
        bytes += f->refs[j].size;
    return bytes;
}

static void *verifier_main(void *arg)
{
    ds_partfetch *pf = arg;
    pthread_mutex_lock(&pf->mu);
    while (!pf->stop) {
        ds_fetch *f = NULL;
        slot *s = NULL;
        const ds_part_ref *ref = NULL;
        /* The earliest part first: a reader waits for its head. */
        for (size_t k = 0; k < VERIFY_AHEAD && s == NULL; k++)
            for (ds_fetch *g = pf->fetches; g != NULL && s == NULL;
                 g = g->next) {
                size_t i = g->head + k;
                if (k > 0 && i < g->n && ahead_bytes(g, i) > VERIFY_BYTES)
                    continue;
                if (i < g->n && g->win[i % RING].state == S_GOT &&
                    (g->npool > 0 || g->nouts < OUTS_MAX)) {
                    f = g;
                    s = &g->win[i % RING];
                    ref = &g->refs[i];
                }
            }
        if (s == NULL) {
            pthread_cond_wait(&pf->vcv, &pf->mu);
            continue;
        }
        s->state = S_VERIFYING;
        f->busy++;
        if (f->npool > 0)
            s->out = f->pool[--f->npool];
        else
            f->nouts++; /* verify_slot allocates it */
        pthread_mutex_unlock(&pf->mu);
        verify_slot(f, s, ref);
        uint8_t *spent = s->val; /* the record is done with */
        pthread_mutex_lock(&pf->mu);
        s->val = NULL;
        if (s->pooled)
            f->held -= s->vallen;
        if (s->pooled && f->nfree < FRAMES_ALL) {
            f->frames[f->nfree++] = spent; /* free for the next record */
            spent = NULL;
        } else if (s->pooled) {
            f->nframes--; /* cannot happen (FRAMES_ALL), but never overrun */
        }
        s->state = S_READY;
        f->busy--;
        pthread_cond_broadcast(&pf->cv);
        pthread_mutex_unlock(&pf->mu);
        free(spent);
        pthread_mutex_lock(&pf->mu);
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

/* ---- the API ------------------------------------------------------------ */

int ds_partfetch_new(const ds_kconf *kc, const char *topic, ds_partfetch **out,
                     ds_err *err)
{
    ds_partfetch *pf = calloc(1, sizeof(*pf));
    if (pf == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "part fetcher: memory");
    pf->kc = kc;
    snprintf(pf->topic, sizeof(pf->topic), "%s", topic);
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    pthread_cond_init(&pf->vcv, NULL);
    *out = pf;
    return 0;
}

/* Under mu: the fetcher re-plans after each poll; a yield ends the poll
 * now. */
static void wake(ds_partfetch *pf)
{
    if (pf->q != NULL)
        rd_kafka_queue_yield(pf->q);
}

void ds_partfetch_free(ds_partfetch *pf)
{
    if (pf == NULL)
        return;
    pthread_mutex_lock(&pf->mu);
    pf->stop = true;
    bool started = pf->started;
    wake(pf);
    pthread_cond_broadcast(&pf->vcv);
    pthread_mutex_unlock(&pf->mu);
    if (started)
        pthread_join(pf->thread, NULL);
    for (int i = 0; i < pf->nverifiers; i++)
        pthread_join(pf->verifiers[i], NULL);
    if (pf->q != NULL)
        rd_kafka_queue_destroy(pf->q);
    if (pf->rk != NULL)
        rd_kafka_destroy_flags(pf->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    free(pf->ps);
    pthread_cond_destroy(&pf->cv);
    pthread_cond_destroy(&pf->vcv);
    pthread_mutex_destroy(&pf->mu);
    free(pf);
}

static void slot_want(slot *s, uint64_t idx)
{
    s->state = S_WANT;
    s->armed = false;
    s->suspect = false;
    s->beyond_ms = 0;
    s->idx = idx;
    s->why[0] = '\0';
}

int ds_fetch_open(ds_partfetch *pf, const char *package,
                  const ds_part_ref *refs, size_t n, ds_fetch **out,
                  ds_err *err)
{
    ds_fetch *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->refs = malloc((n ? n : 1) * sizeof(*refs))) == NULL) {
        if (f != NULL)
            free(f->refs);
        free(f);
        return ds_err_set(err, -ENOMEM, "internal",
                          "fetch %zu parts of %s: out of memory", n, package);
    }
    memcpy(f->refs, refs, n * sizeof(*refs));
    f->n = n;
    f->pf = pf;
    snprintf(f->package, sizeof(f->package), "%s", package);
    for (size_t i = 0; i < n && i < RING; i++)
        slot_want(&f->win[i], i);
    set_window(f);
    pthread_mutex_lock(&pf->mu);
    int rc = 0;
    if (!pf->started) {
        rc = pthread_create(&pf->thread, NULL, fetcher_main, pf);
        if (rc == 0)
            pf->started = true;
        while (rc == 0 && pf->nverifiers < VERIFIERS) {
            rc = pthread_create(&pf->verifiers[pf->nverifiers], NULL,
                                verifier_main, pf);
            if (rc == 0)
                pf->nverifiers++;
        }
    }
    if (rc == 0) {
        f->next = pf->fetches;
        pf->fetches = f;
        wake(pf);
    }
    pthread_mutex_unlock(&pf->mu);
    if (rc != 0) {
        errno = rc;
        ds_fetch_close(f);
        return ds_err_sys(err, "internal", "start the part fetcher thread");
    }
    *out = f;
    return 0;
}

int ds_fetch_next(ds_fetch *f, const void **buf, size_t *len, ds_err *err)
{
    ds_partfetch *pf = f->pf;
    char hx[2 * DS_SHA256_LEN + 1];
    pthread_mutex_lock(&pf->mu);
    if (f->head == f->n) {
        pthread_mutex_unlock(&pf->mu);
        return 0;
    }
    size_t i = f->head;
    const ds_part_ref *r = &f->refs[i];
    slot *s = &f->win[i % RING];
    while (
        (s->state == S_WANT || s->state == S_GOT || s->state == S_VERIFYING) &&
        !f->cancelled)
        pthread_cond_wait(&pf->cv, &pf->mu);
    if (f->cancelled) {
        pthread_mutex_unlock(&pf->mu);
        return ds_err_set(err, -ECANCELED, "cancelled",
                          "fetch of %s cancelled at part %zu of %zu",
                          f->package, i, f->n);
    }
    if (s->state == S_MISSING) {
        int internal = s->why[0] == '!';
        int rc = ds_err_set(
            err, internal ? -ENOMEM : -ENOENT,
            internal ? "internal" : "part-missing",
            "part %zu of %zu of %s (%s) is not at %s "
            "partition %d offset %lld: %s",
            i, f->n, f->package, ds_hex(hx, r->id, DS_SHA256_LEN), pf->topic,
            (int)r->partition, (long long)r->offset, s->why + internal);
        pthread_mutex_unlock(&pf->mu);
        return rc;
    }
    /* READY: take its bytes (the reader's last buffer goes to the slot);
     * the slot moves on to part i + window. */
    int rc = s->vrc;
    size_t n = s->outlen;
    if (rc < 0) {
        *err = s->verr;
        if (s->out != NULL)
            f->pool[f->npool++] = s->out;
        else
            f->nouts--;
    } else {
        if (f->out != NULL)
            f->pool[f->npool++] = f->out;
        f->out = s->out;
        pf->st.parts++;
        pf->st.bytes += s->vallen;
    }
    s->out = NULL;
    s->state = S_FREE;
    f->head++;
    if (i + RING < f->n)
        slot_want(s, i + RING);
    set_window(f);
    wake(pf);
    /* A buffer came back and the verify window moved: parts that arrived
     * ahead may be checked now. */
    pthread_cond_broadcast(&pf->vcv);
    pthread_mutex_unlock(&pf->mu);
    if (rc < 0)
        return rc;
    *buf = f->out;
    *len = n;
    return 1;
}

void ds_fetch_cancel(ds_fetch *f)
{
    pthread_mutex_lock(&f->pf->mu);
    f->cancelled = true;
    pthread_cond_broadcast(&f->pf->cv);
    pthread_mutex_unlock(&f->pf->mu);
}

void ds_fetch_close(ds_fetch *f)
{
    if (f == NULL)
        return;
    ds_partfetch *pf = f->pf;
    pthread_mutex_lock(&pf->mu);
    for (ds_fetch **pp = &pf->fetches; *pp != NULL; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    while (f->busy > 0)
        pthread_cond_wait(&pf->cv, &pf->mu);
    wake(pf);
    pthread_mutex_unlock(&pf->mu);
    for (unsigned i = 0; i < f->nfree; i++)
        free(f->frames[i]);
    for (size_t i = 0; i < RING; i++) {
        free(f->win[i].val);
        free(f->win[i].out);
    }
    for (unsigned i = 0; i < f->npool; i++)
        free(f->pool[i]);
    free(f->out);
    free(f->refs);
    free(f);
}

void ds_partfetch_stats_get(ds_partfetch *pf, ds_partfetch_stats *st)
{
    pthread_mutex_lock(&pf->mu);
    *st = pf->st;
    pthread_mutex_unlock(&pf->mu);
}
