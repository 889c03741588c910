/*
 * statusfeed.c - the threads that keep the status page's state current;
 * see statusfeed.h.
 */
#include "statusfeed_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <librdkafka/rdkafka.h>

#include "follow.h"
#include "kmeta.h"
#include "lag.h"
#include "log.h"
#include "progress.h"

#define READER_GROUP "despool-statusd" /* never joined, never committed */
#define RETRY_MS     5000
#define STOP_WAIT_MS 2000

/* Sleep up to ms, in steps that notice a stop. */
static void nap(ds_feed *f, uint64_t ms)
{
    for (uint64_t end = ds_mono_ms() + ms; !f->stop && ds_mono_ms() < end;) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int ds_feed_names(ds_feed *f)
{
    if (f->names_ok && f->names_gen == f->tab.gen)
        return 0;
    ds_snames_free(&f->names);
    f->names_ok = ds_stab_names(&f->tab, &f->names) == 0;
    f->names_gen = f->tab.gen;
    return f->names_ok ? 0 : -1;
}

static int on_status(void *ctx, const rd_kafka_message_t *m, ds_err *err)
{
    ds_feed *f = ctx;
    ds_status st;
    ds_err derr;
    if (m->payload == NULL)
        return 0;
    if (ds_status_decode(m->payload, m->len, &st, &derr) < 0) {
        ds_warn("status-record-bad", "topic=%s partition=%d offset=%lld err=%s",
                DS_TOPIC_STATUS, (int)m->partition, (long long)m->offset,
                DS_LV(derr.msg));
        pthread_mutex_lock(&f->mu);
        f->bad_records++;
        pthread_mutex_unlock(&f->mu);
        return 0;
    }
    pthread_mutex_lock(&f->mu);
    int rc = ds_stab_put(&f->tab, &st);
    if (rc == 0)
        rc = ds_pkghist_status(f->hist, &st);
    f->records++;
    pthread_mutex_unlock(&f->mu);
    return rc < 0 ? ds_err_set(err, -ENOMEM, "internal",
                               "status page: out of memory")
                  : 0;
}

/* A header's value as a string into buf ("" when absent). */
static void header(const rd_kafka_message_t *m, const char *name, char *buf,
                   size_t n)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(h, name, &v, &len) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        v != NULL)
        snprintf(buf, n, "%.*s", (int)(len < n ? len : n - 1), (const char *)v);
}

/* A dead letter: the rejected event's key is its package id; one whose
 * key is not a package id is counted, not attributed. */
static int on_dead_letter(void *ctx, const rd_kafka_message_t *m, ds_err *err)
{
    ds_feed *f = ctx;
    char pkg[DS_PACKAGE_MAX + 1], num[32];
    ds_dead_letter_seen d = {.partition = -1, .offset = -1};
    int valid = m->key != NULL && m->key_len > 0 &&
                m->key_len <= DS_PACKAGE_MAX &&
                ds_site_valid(m->key, m->key_len);
    if (valid)
        snprintf(pkg, sizeof(pkg), "%.*s", (int)m->key_len,
                 (const char *)m->key);
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    d.at_ms = ts > 0 ? (uint64_t)ts : 0;
    header(m, "despool.site", d.site, sizeof(d.site));
    header(m, "despool.reason", d.reason, sizeof(d.reason));
    header(m, "despool.detail", d.detail, sizeof(d.detail));
    header(m, "despool.partition", num, sizeof(num));
    if (num[0] != '\0')
        d.partition = (int32_t)strtol(num, NULL, 10);
    header(m, "despool.offset", num, sizeof(num));
    if (num[0] != '\0')
        d.offset = strtoll(num, NULL, 10);
    pthread_mutex_lock(&f->mu);
    int rc = valid ? ds_pkghist_dead_letter(f->hist, pkg, &d) : 0;
    f->dead_letters++;
    pthread_mutex_unlock(&f->mu);
    return rc < 0 ? ds_err_set(err, -ENOMEM, "internal",
                               "status page: out of memory")
                  : 0;
}

static void reader_error(ds_feed *f, const char *msg)
{
    pthread_mutex_lock(&f->mu);
    int changed = strcmp(f->error, msg) != 0;
    snprintf(f->error, sizeof(f->error), "%s", msg);
    pthread_mutex_unlock(&f->mu);
    if (changed)
        ds_warn("status-read-failed", "err=%s retry_ms=%d", DS_LV(msg),
                RETRY_MS);
}

/* Follow both topics until stopped; open again after a failure. Until
 * pkg.updates.dlq exists (no dead letter yet on a new cluster) only
 * pkg.status is followed, and the dead letters' topic is looked for
 * again every RETRY_MS. */
static void *reader_main(void *arg)
{
    ds_feed *f = arg;
    ds_follow *st = NULL, *dl = NULL;
    uint64_t dl_next = 0;
    ds_err err;
    while (!f->stop) {
        if (st == NULL && ds_follow_open(f->o.kc, DS_TOPIC_STATUS, READER_GROUP,
                                         f->o.timeout_ms, &st, &err) < 0) {
            reader_error(f, err.msg);
            nap(f, RETRY_MS);
            continue;
        }
        if (dl == NULL && ds_mono_ms() >= dl_next &&
            ds_follow_open(f->o.kc, DS_TOPIC_DLQ, READER_GROUP,
                           f->o.timeout_ms < 2000 ? f->o.timeout_ms : 2000, &dl,
                           &err) < 0)
            dl_next = ds_mono_ms() + RETRY_MS;
        if (ds_follow_poll(st, 100, on_status, f, &err) < 0 ||
            (dl != NULL &&
             ds_follow_poll(dl, 0, on_dead_letter, f, &err) < 0)) {
            reader_error(f, err.msg);
            ds_follow_close(st);
            ds_follow_close(dl);
            st = dl = NULL;
            nap(f, RETRY_MS);
            continue;
        }
        int up = ds_follow_caught_up(st);
        pthread_mutex_lock(&f->mu);
        if (up && !f->caught_up)
            ds_info("status-caught-up", "topic=%s records=%llu keys=%zu",
                    DS_TOPIC_STATUS, (unsigned long long)f->records, f->tab.n);
        f->caught_up = up;
        const char *t = ds_follow_trouble(st);
        int changed = (t != NULL) != (f->error[0] != '\0');
        snprintf(f->error, sizeof(f->error), "%s", t ? t : "");
        pthread_mutex_unlock(&f->mu);
        if (changed && t != NULL)
            ds_warn("status-read-failed", "err=%s", DS_LV(t));
        else if (changed)
            ds_info("status-read-resumed", "topic=%s", DS_TOPIC_STATUS);
    }
    ds_follow_close(st);
    ds_follow_close(dl);
    return NULL;
}

static int cmp_site(const void *a, const void *b)
{
    return strcmp((*(site_lag *const *)a)->name, (*(site_lag *const *)b)->name);
}

/* The site's entry, added when new (mu held); NULL when out of memory. */
static site_lag *site_of(ds_feed *f, const char *name)
{
    for (size_t i = 0; i < f->nsites; i++)
        if (strcmp(f->sites[i]->name, name) == 0)
            return f->sites[i];
    site_lag **ns = realloc(f->sites, (f->nsites + 1) * sizeof(*ns));
    if (ns == NULL)
        return NULL;
    f->sites = ns;
    site_lag *s = calloc(1, sizeof(*s));
    ds_err err;
    if (s == NULL ||
        ds_lagwatch_new(f->o.window, (uint64_t)(f->o.stop_after_s * 1000),
                        &s->watch, &err) < 0) {
        free(s);
        return NULL;
    }
    snprintf(s->name, sizeof(s->name), "%s", name);
    snprintf(s->status, sizeof(s->status), "-");
    snprintf(s->state, sizeof(s->state), "-");
    s->members = -1;
    /* An hour of samples, and a few spare for a slow round. */
    s->cap = (size_t)(3600.0 / f->o.lag_every_s) + 8;
    s->ring = calloc(s->cap, sizeof(*s->ring));
    if (s->ring == NULL) {
        ds_lagwatch_free(s->watch);
        free(s);
        return NULL;
    }
    f->sites[f->nsites++] = s;
    qsort(f->sites, f->nsites, sizeof(*f->sites), cmp_site);
    return s;
}

static void push_sample(site_lag *s, const lag_sample *x)
{
    /* Drop what is older than an hour, and the oldest when full. */
    while (s->nring > 0 && (s->nring == s->cap ||
                            s->ring[s->head].at_ms + LAG_HOUR_MS < x->at_ms)) {
        s->head = (s->head + 1) % s->cap;
        s->nring--;
    }
    s->ring[(s->head + s->nring) % s->cap] = *x;
    s->nring++;
}

/* Feed one site's report to its watch and keep what the page shows. */
static void keep_report(site_lag *s, const ds_lag_report *r, uint64_t mono,
                        uint64_t now)
{
    ds_verdict *v = calloc((size_t)(r->n > 0 ? r->n : 1), sizeof(*v));
    ds_verdict worst = DS_V_NONE;
    ds_err err;
    if (v == NULL) {
        snprintf(s->error, sizeof(s->error), "out of memory");
        return;
    }
    s->error[0] = '\0';
    for (int k = 0; k < r->n; k++) {
        const ds_lag_row *row = &r->rows[k];
        long long lag = row->lag >= 0 ? row->lag : row->high - row->low;
        if (ds_lagwatch_add(s->watch, row->partition, mono, row->committed, lag,
                            &err) < 0)
            snprintf(s->error, sizeof(s->error), "%s", err.msg);
        v[k] = ds_lagwatch_verdict(s->watch, row->partition);
        if (v[k] > worst)
            worst = v[k];
    }
    /* The group's status, as `lag --watch` prints it: "-" until a
     * partition has two samples. */
    snprintf(s->status, sizeof(s->status), "%s",
             worst == DS_V_NONE ? "-" : ds_verdict_group_name(worst));
    free(s->json);
    json_t *j = ds_lag_json(r, v);
    s->json = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    free(v);
    snprintf(s->state, sizeof(s->state), "%s", r->state);
    snprintf(s->note, sizeof(s->note), "%s", r->note);
    s->members = r->members;
    s->total_lag = r->total_lag;
    s->max_time_lag_ms = r->max_time_lag_ms;
    push_sample(s, &(lag_sample){.at_ms = now,
                                 .total_lag = r->total_lag,
                                 .max_time_lag_ms = r->max_time_lag_ms});
}

/* The sites to sample: those of pkg.status, and the listed groups'. */
static char **sites_to_sample(ds_feed *f, int *n, int *listing)
{
    ds_lag_opts lo = {.kc = f->o.kc, .timeout_ms = f->o.timeout_ms};
    char **listed = NULL;
    int nlisted = 0;
    ds_err err;
    if (*listing && ds_lag_list_sites(&lo, &listed, &nlisted, &err) < 0) {
        if (err.code == -ENOTSUP) /* the embedded broker: never will */
            *listing = 0;
        nlisted = 0;
    }
    pthread_mutex_lock(&f->mu);
    size_t ns = ds_feed_names(f) == 0 ? f->names.ns : 0;
    char **all = calloc(ns + (size_t)nlisted + 1, sizeof(*all));
    *n = 0;
    for (size_t i = 0; all != NULL && i < ns; i++)
        if ((all[*n] = strdup(f->names.sites[i])) != NULL)
            (*n)++;
    pthread_mutex_unlock(&f->mu);
    for (int i = 0; i < nlisted; i++) {
        int dup = 0;
        for (int k = 0; all != NULL && k < *n && !dup; k++)
            dup = strcmp(all[k], listed[i]) == 0;
        if (all != NULL && !dup && ds_site_valid(listed[i], strlen(listed[i])))
            all[(*n)++] = listed[i];
        else
            free(listed[i]);
    }
    free(listed);
    return all;
}

static void *lagger_main(void *arg)
{
    ds_feed *f = arg;
    int listing = 1, up = 0;
    /* The first round samples the sites pkg.status names: once it has
     * been read (or after 10 s, so that a slow topic does not hide the
     * listed groups' lag). */
    for (uint64_t end = ds_mono_ms() + 10000;
         !f->stop && !up && ds_mono_ms() < end;) {
        pthread_mutex_lock(&f->mu);
        up = f->caught_up;
        pthread_mutex_unlock(&f->mu);
        if (!up)
            nap(f, 100);
    }
    while (!f->stop) {
        uint64_t start = ds_mono_ms();
        int n = 0;
        char **sites = sites_to_sample(f, &n, &listing);
        for (int i = 0; i < n && !f->stop; i++) {
            ds_lag_opts lo = {
                .kc = f->o.kc, .site = sites[i], .timeout_ms = f->o.timeout_ms};
            ds_lag_report r;
            ds_err err;
            int rc = ds_lag_collect(&lo, &r, &err);
            pthread_mutex_lock(&f->mu);
            site_lag *s = site_of(f, sites[i]);
            if (s != NULL && rc < 0)
                snprintf(s->error, sizeof(s->error), "%s", err.msg);
            else if (s != NULL)
                keep_report(s, &r, ds_mono_ms(), ds_now_ms());
            pthread_mutex_unlock(&f->mu);
            if (rc < 0)
                ds_warn("lag-sample-failed", "site=%s err=%s", sites[i],
                        DS_LV(err.msg));
            ds_lag_free(&r);
        }
        for (int i = 0; i < n; i++)
            free(sites[i]);
        free(sites);
        pthread_mutex_lock(&f->mu);
        f->lag_at_ms = ds_now_ms();
        pthread_mutex_unlock(&f->mu);
        uint64_t took = ds_mono_ms() - start,
                 every = (uint64_t)(f->o.lag_every_s * 1000);
        ds_debug("lag-round", "sites=%d took_ms=%llu", n,
                 (unsigned long long)took);
        nap(f, took < every ? every - took : 0);
    }
    return NULL;
}

int ds_feed_health(ds_feed *f, char *why, size_t n)
{
    pthread_mutex_lock(&f->mu);
    int ok = f->error[0] == '\0';
    if (ok)
        snprintf(why, n, "%s records=%llu keys=%zu",
                 f->caught_up ? "caught-up" : "catching-up",
                 (unsigned long long)f->records, f->tab.n);
    else
        snprintf(why, n, "%s", f->error);
    pthread_mutex_unlock(&f->mu);
    return ok;
}

int ds_feed_start(const ds_feed_opts *o, ds_feed **out, ds_err *err)
{
    ds_feed *f = calloc(1, sizeof(*f));
    *out = NULL;
    if (f == NULL || ds_pkghist_new(&f->hist) < 0) {
        free(f);
        return ds_err_set(err, -ENOMEM, "internal",
                          "status page: out of memory");
    }
    f->o = *o;
    pthread_mutex_init(&f->mu, NULL);
    int e = pthread_create(&f->reader, NULL, reader_main, f);
    f->reader_started = e == 0;
    if (e == 0) {
        e = pthread_create(&f->lagger, NULL, lagger_main, f);
        f->lagger_started = e == 0;
    }
    if (e != 0) {
        ds_feed_stop(f);
        return ds_err_set(err, -e, "internal",
                          "status page: start a thread: %s", strerror(e));
    }
    *out = f;
    return 0;
}

void ds_feed_stop(ds_feed *f)
{
    if (f == NULL)
        return;
    f->stop = 1;
    /* A thread inside a broker request (a lag sample, a metadata wait)
     * notices the stop only when it returns, up to its timeout: give them
     * STOP_WAIT_MS, then let the process end without them (their state
     * is left allocated: the process exits next). */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += STOP_WAIT_MS / 1000;
    int stuck = 0;
    if (f->reader_started && pthread_timedjoin_np(f->reader, NULL, &until))
        stuck = 1;
    if (f->lagger_started && pthread_timedjoin_np(f->lagger, NULL, &until))
        stuck = 1;
    if (stuck) {
        ds_warn("status-stop-slow",
                "detail=\"a broker request is still waiting; not waiting "
                "for it\" waited_ms=%d",
                STOP_WAIT_MS);
        return;
    }
    for (size_t i = 0; i < f->nsites; i++) {
        ds_lagwatch_free(f->sites[i]->watch);
        free(f->sites[i]->json);
        free(f->sites[i]->ring);
        free(f->sites[i]);
    }
    free(f->sites);
    ds_snames_free(&f->names);
    ds_stab_free(&f->tab);
    ds_pkghist_free(f->hist);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
