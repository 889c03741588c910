/*
 * metrics.c - counters, gauges and histograms behind one mutex, rendered
 * in Prometheus' text exposition format 0.0.4:
 *
 *   # HELP despool_updates_finalized_total Updates finalized ...
 *   # TYPE despool_updates_finalized_total counter
 *   despool_updates_finalized_total 12
 *
 * Names follow Prometheus' conventions: counters end in _total, units are
 * seconds and bytes, histograms have cumulative _bucket{le=...}, _sum and
 * _count.
 */
#include "metrics.h"
#include "procstat.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bucket_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                   1,     2.5,  5,     10,   30,  60};
#define NBUCKETS (sizeof(bucket_le) / sizeof(bucket_le[0]))

typedef struct labelled {
    ds_lcounter family;
    char value[DS_REASON_MAX];
    uint64_t n;
} labelled;

typedef struct histogram {
    uint64_t bucket[NBUCKETS]; /* not cumulative; summed when rendered */
    uint64_t count;
    double sum;
} histogram;

struct ds_metrics {
    pthread_mutex_t mu;
    char site[128];
    uint64_t counter[DS_C__N];
    double gauge[DS_G__N];
    histogram hist[DS_H__N];
    labelled label[DS_METRICS_MAX_LABELS];
    int nlabels;
    int64_t *lag; /* per partition, -1 = no series */
    int32_t nlag;
};

typedef struct desc {
    const char *name, *help;
} desc;

static const desc counter_desc[DS_C__N] = {
    [DS_C_FINALIZED] = {"despool_updates_finalized_total",
                        "Updates finalized: current switched to them."},
    [DS_C_ABANDONED] = {"despool_updates_abandoned_total",
                        "In-flight updates given up at a revoke or a stop "
                        "(not committed: read again by the next owner)."},
    [DS_C_EVENTS] = {"despool_events_received_total",
                     "Events consumed from pkg.updates."},
    [DS_C_RECEIVED_BYTES] = {"despool_received_bytes_total",
                             "Event payload bytes consumed from pkg.updates."},
    [DS_C_EXTRACTED_BYTES] = {"despool_extracted_bytes_total",
                              "Uncompressed (tar) bytes of finalized updates."},
    [DS_C_REBALANCES] = {"despool_rebalances_total",
                         "Consumer-group rebalance callbacks (assign and "
                         "revoke)."},
    [DS_C_COMMITS] = {"despool_offset_commits_total",
                      "Offset commits sent to the group coordinator."},
    [DS_C_EVENTS_MISSING] = {"despool_events_missing_total",
                             "Events of pkg.updates the broker deleted before "
                             "this site did them (retention, the embedded "
                             "broker's cap): lost for this site."},
    [DS_C_RETIRED] = {"despool_packages_retired_total",
                      "Retire tombstones (schema v2) this site acted on."},
    [DS_C_PARTS] = {"despool_parts_fetched_total",
                    "Parts (schema v2) read from pkg.content and verified."},
    [DS_C_PARTS_LOCAL] = {"despool_parts_local_total",
                          "Parts (schema v2) re-created from the installed "
                          "version and verified, not fetched."},
    [DS_C_LINKED_BYTES] = {"despool_linked_bytes_total",
                           "Bytes of files shared (hardlinked) with the "
                           "installed version instead of written."},
};

static const struct {
    const char *name, *label, *help;
} lcounter_desc[DS_L__N] = {
    [DS_L_DISCARDED] = {"despool_updates_discarded_total", "reason",
                        "Updates discarded without a change: stale or "
                        "duplicate version, or superseded by a newer one."},
    [DS_L_DEAD] = {"despool_events_dead_lettered_total", "reason",
                   "Events written to pkg.updates.dlq, by reason."},
    [DS_L_ERRORS] = {"despool_errors_total", "kind",
                     "Errors by kind: kafka (client errors), local (library "
                     "disk), commit, dead-letter (DLQ write failed)."},
    [DS_L_PART_BYTES] = {"despool_part_bytes_total", "source",
                         "Frame bytes of schema v2 parts by where the site "
                         "got them: fetched from pkg.content, or local "
                         "(re-created from the installed version)."},
};

static const desc gauge_desc[DS_G__N] = {
    [DS_G_IN_FLIGHT] = {"despool_updates_in_flight",
                        "Updates being extracted or finalized now."},
    [DS_G_ASSIGNED] = {"despool_assigned_partitions",
                       "Partitions of pkg.updates assigned to this worker."},
    [DS_G_START_TIME] = {"despool_start_time_seconds",
                         "Unix time the worker started."},
};

static const desc hist_desc[DS_H__N] = {
    [DS_H_FINALIZE] = {"despool_finalize_duration_seconds",
                       "Finalize step: fsync, per-package lock, rename, "
                       "symlink swap, prune."},
    [DS_H_UPDATE] = {"despool_update_duration_seconds",
                     "First chunk received to finalized."},
};

int ds_metrics_new(const char *site, ds_metrics **out, ds_err *err)
{
    ds_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "metrics: out of memory");
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return ds_err_set(err, -ENOMEM, "internal", "metrics: mutex init");
    }
    snprintf(m->site, sizeof(m->site), "%s", site ? site : "");
    *out = m;
    return 0;
}

void ds_metrics_free(ds_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m->lag);
    free(m);
}

void ds_metrics_add(ds_metrics *m, ds_counter c, uint64_t n)
{
    if (m == NULL || c < 0 || c >= DS_C__N)
        return;
    pthread_mutex_lock(&m->mu);
    m->counter[c] += n;
    pthread_mutex_unlock(&m->mu);
}

void ds_metrics_add_label(ds_metrics *m, ds_lcounter c, const char *label,
                          uint64_t n)
{
    if (m == NULL || c < 0 || c >= DS_L__N)
        return;
    if (label == NULL || label[0] == '\0')
        label = "unknown";
    pthread_mutex_lock(&m->mu);
    labelled *hit = NULL, *other = NULL;
    for (int i = 0; i < m->nlabels; i++) {
        if (m->label[i].family != c)
            continue;
        if (strcmp(m->label[i].value, label) == 0)
            hit = &m->label[i];
        else if (strcmp(m->label[i].value, "other") == 0)
            other = &m->label[i];
    }
    if (hit == NULL && m->nlabels < DS_METRICS_MAX_LABELS - DS_L__N) {
        hit = &m->label[m->nlabels++];
        hit->family = c;
        snprintf(hit->value, sizeof(hit->value), "%s", label);
    }
    if (hit == NULL && other == NULL) {
        /* The last DS_L__N slots are kept for one "other" per family. */
        other = &m->label[m->nlabels++];
        other->family = c;
        snprintf(other->value, sizeof(other->value), "other");
    }
    (hit ? hit : other)->n += n;
    pthread_mutex_unlock(&m->mu);
}

void ds_metrics_set(ds_metrics *m, ds_gauge g, double v)
{
    if (m == NULL || g < 0 || g >= DS_G__N)
        return;
    pthread_mutex_lock(&m->mu);
    m->gauge[g] = v;
    pthread_mutex_unlock(&m->mu);
}

void ds_metrics_observe(ds_metrics *m, ds_histogram h, double seconds)
{
    if (m == NULL || h < 0 || h >= DS_H__N)
        return;
    pthread_mutex_lock(&m->mu);
    histogram *x = &m->hist[h];
    size_t b = 0;
    while (b < NBUCKETS && seconds > bucket_le[b])
        b++;
    if (b < NBUCKETS)
        x->bucket[b]++;
    x->count++;
    x->sum += seconds;
    pthread_mutex_unlock(&m->mu);
}

void ds_metrics_set_lag(ds_metrics *m, int32_t partition, int64_t lag)
{
    if (m == NULL || partition < 0 || partition >= DS_METRICS_MAX_PARTITIONS)
        return;
    pthread_mutex_lock(&m->mu);
    if (partition >= m->nlag && lag >= 0) {
        int32_t n = partition + 1;
        int64_t *nl = realloc(m->lag, (size_t)n * sizeof(*nl));
        if (nl != NULL) {
            for (int32_t i = m->nlag; i < n; i++)
                nl[i] = -1;
            m->lag = nl;
            m->nlag = n;
        }
    }
    if (partition < m->nlag)
        m->lag[partition] = lag < 0 ? -1 : lag;
    pthread_mutex_unlock(&m->mu);
}

uint64_t ds_metrics_get(ds_metrics *m, ds_counter c)
{
    if (m == NULL || c < 0 || c >= DS_C__N)
        return 0;
    pthread_mutex_lock(&m->mu);
    uint64_t v = m->counter[c];
    pthread_mutex_unlock(&m->mu);
    return v;
}

double ds_metrics_gauge(ds_metrics *m, ds_gauge g)
{
    if (m == NULL || g < 0 || g >= DS_G__N)
        return 0;
    pthread_mutex_lock(&m->mu);
    double v = m->gauge[g];
    pthread_mutex_unlock(&m->mu);
    return v;
}

/* A label value with \, " and newline escaped, as the format requires. */
static void put_label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void put_header(FILE *f, const char *name, const char *help,
                       const char *type)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_locked(ds_metrics *m, FILE *f)
{
    put_header(f, "despool_build_info",
               "The program's version (CMake project VERSION; constant 1).",
               "gauge");
    fputs("despool_build_info{version=\"", f);
    put_label_value(f, DESPOOL_VERSION);
    fputs("\"} 1\n", f);
    put_header(f, "despool_worker_info", "The worker's site (constant 1).",
               "gauge");
    fputs("despool_worker_info{site=\"", f);
    put_label_value(f, m->site);
    fputs("\"} 1\n", f);

    for (int c = 0; c < DS_C__N; c++) {
        put_header(f, counter_desc[c].name, counter_desc[c].help, "counter");
        fprintf(f, "%s %llu\n", counter_desc[c].name,
                (unsigned long long)m->counter[c]);
    }
    for (int c = 0; c < DS_L__N; c++) {
        put_header(f, lcounter_desc[c].name, lcounter_desc[c].help, "counter");
        for (int i = 0; i < m->nlabels; i++) {
            if (m->label[i].family != (ds_lcounter)c)
                continue;
            fprintf(f, "%s{%s=\"", lcounter_desc[c].name,
                    lcounter_desc[c].label);
            put_label_value(f, m->label[i].value);
            fprintf(f, "\"} %llu\n", (unsigned long long)m->label[i].n);
        }
    }
    for (int g = 0; g < DS_G__N; g++) {
        put_header(f, gauge_desc[g].name, gauge_desc[g].help, "gauge");
        fprintf(f, "%s %.17g\n", gauge_desc[g].name, m->gauge[g]);
    }
    put_header(f, "despool_consumer_lag",
               "Events of the partition not yet committed by this worker "
               "(high watermark minus committed offset).",
               "gauge");
    for (int32_t p = 0; p < m->nlag; p++)
        if (m->lag[p] >= 0)
            fprintf(f,
                    "despool_consumer_lag{topic=\"pkg.updates\","
                    "partition=\"%d\"} %lld\n",
                    (int)p, (long long)m->lag[p]);
    for (int h = 0; h < DS_H__N; h++) {
        const histogram *x = &m->hist[h];
        const char *n = hist_desc[h].name;
        put_header(f, n, hist_desc[h].help, "histogram");
        uint64_t cum = 0;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += x->bucket[b];
            fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", n, bucket_le[b],
                    (unsigned long long)cum);
        }
        fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", n,
                (unsigned long long)x->count);
        fprintf(f, "%s_sum %.9g\n%s_count %llu\n", n, x->sum, n,
                (unsigned long long)x->count);
    }
}

int ds_metrics_render(ds_metrics *m, char **text, size_t *len, ds_err *err)
{
    char *buf = NULL;
    size_t n = 0;
    /* The process_* series are read fresh from /proc, outside the lock. */
    ds_procstat ps;
    int rc = ds_procstat_read(&ps, err);
    if (rc < 0)
        return rc;
    FILE *f = open_memstream(&buf, &n);
    if (f == NULL)
        return ds_err_sys(err, "internal", "metrics: open_memstream");
    pthread_mutex_lock(&m->mu);
    render_locked(m, f);
    pthread_mutex_unlock(&m->mu);
    ds_procstat_render(&ps, f);
    if (fclose(f) != 0) {
        free(buf);
        return ds_err_sys(err, "internal", "metrics: render");
    }
    *text = buf;
    *len = n;
    return 0;
}
