/*
 * statusapi.c - the status page's JSON, rendered from the feed under its
 * lock (statusfeed_int.h). GET /api/status and /api/lag have the shapes
 * of `despooler status --json` and `despooler lag --all-sites --json
 * --watch`; /api/view, /api/sites and /api/package are the page's own,
 * compact enough for 5,000 packages x 50 sites (a cell is a version and
 * one letter).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "progress.h"
#include "statusfeed_int.h"

static int put_reader(ds_feed *f, FILE *out)
{
    if (fprintf(out,
                "\"reader\":{\"records\":%" PRIu64 ",\"bad_records\":%" PRIu64
                ",\"dead_letters\":%" PRIu64 ",\"keys\":%zu,\"caught_up\":%s,"
                "\"error\":",
                f->records, f->bad_records, f->dead_letters, f->tab.n,
                f->caught_up ? "true" : "false") < 0 ||
        ds_json_put_str(out, f->error[0] ? f->error : NULL) < 0 ||
        putc('}', out) == EOF)
        return -1;
    return 0;
}

/* A number without printf's parsing: 250,000 cells per rendering. */
static int put_u64(FILE *out, uint64_t v)
{
    char buf[24], *p = buf + sizeof(buf);
    *--p = '\0';
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return fputs_unlocked(p, out);
}

/* {"generated_ms", "max_behind_s", "refresh_s", "reader", "sites":[..],
 * "counts":{mark:n}, "packages":[{"n", "p", "r", "v":[..], "m":"ob.."}]} */
static int view(ds_feed *f, FILE *out)
{
    const ds_snames *v = &f->names;
    uint64_t now = ds_now_ms(), max_ms = f->o.max_behind_s * 1000;
    uint64_t counts[DS_MARK_COUNT] = {0};
    char *marks = malloc(v->ns + 1);
    if (marks == NULL)
        return -1;
    int rc = fprintf(out,
                     "{\"generated_ms\":%" PRIu64 ",\"max_behind_s\":%" PRIu64
                     ",\"refresh_s\":%g,",
                     now, f->o.max_behind_s, f->o.refresh_s) < 0 ||
                     put_reader(f, out) < 0 || fputs(",\"sites\":[", out) < 0
                 ? -1
                 : 0;
    for (size_t s = 0; rc == 0 && s < v->ns; s++)
        if ((s && putc(',', out) == EOF) || ds_json_put_str(out, v->sites[s]))
            rc = -1;
    if (rc == 0 && fputs("],\"packages\":[", out) < 0)
        rc = -1;
    for (size_t p = 0; rc == 0 && p < v->np; p++) {
        const ds_status *pub = ds_stab_find(&f->tab, DS_PUBLISHED, v->pkgs[p]);
        if (fputs(p ? ",{\"n\":" : "{\"n\":", out) < 0 ||
            ds_json_put_str(out, v->pkgs[p]) < 0 ||
            (pub ? fprintf(out, ",\"p\":%" PRIu64, pub->version)
                 : fputs(",\"p\":null", out)) < 0 ||
            fprintf(out, ",\"r\":%s,\"v\":[",
                    ds_status_is_retired(pub) ? "true" : "false") < 0) {
            rc = -1;
            break;
        }
        for (size_t s = 0; rc == 0 && s < v->ns; s++) {
            const ds_status *r = ds_stab_find(&f->tab, v->sites[s], v->pkgs[p]);
            ds_mark m = ds_stab_judge(pub, r, now, max_ms);
            counts[m]++;
            marks[s] = ds_mark_code(m);
            if ((s && putc_unlocked(',', out) == EOF) ||
                (r ? put_u64(out, r->version) : fputs_unlocked("null", out)) <
                    0)
                rc = -1;
        }
        marks[v->ns] = '\0';
        if (rc == 0 && fprintf(out, "],\"m\":\"%s\"}", marks) < 0)
            rc = -1;
    }
    if (rc == 0 && fputs("],\"counts\":{", out) < 0)
        rc = -1;
    for (int m = 0; rc == 0 && m < DS_MARK_COUNT; m++)
        if (fprintf(out, "%s\"%s\":%" PRIu64, m ? "," : "",
                    ds_mark_name((ds_mark)m), counts[m]) < 0)
            rc = -1;
    free(marks);
    return rc == 0 && fputs("}}", out) >= 0 ? 0 : -1;
}

int ds_api_view(ds_feed *f, FILE *out)
{
    pthread_mutex_lock(&f->mu);
    int rc = ds_feed_names(f) < 0 ? -1 : view(f, out);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

int ds_api_status(ds_feed *f, FILE *out, const char *package, const char *site)
{
    int worst = 0;
    pthread_mutex_lock(&f->mu);
    int rc =
        ds_feed_names(f) < 0
            ? -1
            : ds_stab_write_json(out, &f->tab, &f->names, package, site,
                                 ds_now_ms(), f->o.max_behind_s * 1000, &worst);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

int ds_api_lag(ds_feed *f, FILE *out)
{
    pthread_mutex_lock(&f->mu);
    int rc = fputs("{\"groups\":[", out) < 0 ? -1 : 0, first = 1;
    for (size_t i = 0; rc == 0 && i < f->nsites; i++) {
        if (f->sites[i]->json == NULL) /* never sampled yet */
            continue;
        if (fprintf(out, "%s%s", first ? "" : ",", f->sites[i]->json) < 0)
            rc = -1;
        first = 0;
    }
    pthread_mutex_unlock(&f->mu);
    return rc == 0 && fputs("]}", out) >= 0 ? 0 : -1;
}

static int site_json(FILE *out, const site_lag *s)
{
    if (fputs("{\"site\":", out) < 0 || ds_json_put_str(out, s->name) < 0 ||
        fprintf(out, ",\"group\":\"despool.%s\",\"status\":\"%s\"", s->name,
                s->status) < 0 ||
        fprintf(out, ",\"total_lag\":%lld,\"max_time_lag_ms\":%" PRId64,
                s->total_lag, s->max_time_lag_ms) < 0 ||
        fputs(",\"state\":", out) < 0 || ds_json_put_str(out, s->state) < 0 ||
        fprintf(out, ",\"members\":%d,\"note\":", s->members) < 0 ||
        ds_json_put_str(out, s->note) < 0 || fputs(",\"error\":", out) < 0 ||
        ds_json_put_str(out, s->error[0] ? s->error : NULL) < 0 ||
        fputs(",\"samples\":[", out) < 0)
        return -1;
    for (size_t k = 0; k < s->nring; k++) {
        const lag_sample *x = &s->ring[(s->head + k) % s->cap];
        if (fprintf(out, "%s[%" PRIu64 ",%lld,%" PRId64 "]", k ? "," : "",
                    x->at_ms, x->total_lag, x->max_time_lag_ms) < 0)
            return -1;
    }
    return fputs("]}", out) < 0 ? -1 : 0;
}

int ds_api_sites(ds_feed *f, FILE *out)
{
    pthread_mutex_lock(&f->mu);
    int rc = fprintf(out,
                     "{\"interval_s\":%g,\"window\":%d,\"stop_after_s\":%g,"
                     "\"sampled_ms\":%" PRIu64 ",\"sites\":[",
                     f->o.lag_every_s, f->o.window, f->o.stop_after_s,
                     f->lag_at_ms) < 0
                 ? -1
                 : 0;
    for (size_t i = 0; rc == 0 && i < f->nsites; i++)
        if ((i && putc(',', out) == EOF) || site_json(out, f->sites[i]) < 0)
            rc = -1;
    pthread_mutex_unlock(&f->mu);
    return rc == 0 && fputs("]}", out) >= 0 ? 0 : -1;
}

/* {"package", "published", "retired", "published_at_ms", "sites":[the
 * cells of /api/status], "history":[..], "dead_letters":[..]} */
static int package(ds_feed *f, FILE *out, const char *name)
{
    const ds_status *pub = ds_stab_find(&f->tab, DS_PUBLISHED, name);
    if (fputs("{\"package\":", out) < 0 || ds_json_put_str(out, name) < 0 ||
        (pub ? fprintf(out, ",\"published\":%" PRIu64, pub->version)
             : fputs(",\"published\":null", out)) < 0 ||
        fprintf(out, ",\"retired\":%s",
                ds_status_is_retired(pub) ? "true" : "false") < 0 ||
        (pub ? fprintf(out, ",\"published_at_ms\":%" PRIu64, pub->at_ms)
             : fputs(",\"published_at_ms\":null", out)) < 0)
        return -1;
    int worst = 0, rc = 0;
    if (fputs(",\"sites\":", out) < 0 ||
        ds_stab_write_cells(out, &f->tab, &f->names, name, NULL, ds_now_ms(),
                            f->o.max_behind_s * 1000, &worst) < 0)
        rc = -1;
    if (rc == 0 && ds_pkghist_write_json(out, f->hist, name) < 0)
        rc = -1;
    return rc == 0 && putc('}', out) != EOF ? 0 : -1;
}

int ds_api_package(ds_feed *f, FILE *out, const char *name)
{
    pthread_mutex_lock(&f->mu);
    int rc;
    if (ds_feed_names(f) < 0)
        rc = -1;
    else if (ds_stab_find(&f->tab, DS_PUBLISHED, name) == NULL &&
             !ds_pkghist_has(f->hist, name))
        rc = 1;
    else
        rc = package(f, out, name);
    pthread_mutex_unlock(&f->mu);
    return rc;
}
