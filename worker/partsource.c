/*
 * partsource.c - an update's parts from the installed version or the
 * fetcher (partsource.h). The plan is made once at open: the refs the
 * installed version holds (localparts.h) go to the local source, the rest
 * to one fetch; next() takes each ref, in order, from its source.
 */
#include "partsource.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "localparts.h"
#include "log.h"

/* Mismatched re-created parts in a row before the rest is fetched. */
#define MISMATCH_RUN 4

struct ds_partsource {
    ds_partfetch *pf;
    char package[DS_PACKAGE_MAX + 1];
    uint64_t version;
    ds_part_ref *refs;
    size_t n, at;
    uint8_t *use; /* use[i]: refs[i] is planned locally */

    /* Set and cleared under mu, so that cancel reaches them. */
    pthread_mutex_t mu;
    bool cancelled;
    ds_local *local;  /* NULL once given up */
    ds_fetch *remote; /* the refs not planned locally */
    ds_fetch *extra;  /* a mismatched part, or every local one left */
    bool extra_single;
    unsigned run; /* mismatches in a row */
    ds_partsource_stats st;
};

int ds_partsource_open(ds_partfetch *pf, const char *package, uint64_t version,
                       const ds_part_ref *refs, size_t n, const char *installed,
                       const ds_partlist *old, ds_partsource **out, ds_err *err)
{
    *out = NULL;
    ds_partsource *s = calloc(1, sizeof(*s));
    ds_part_ref *remote = NULL;
    int rc = 0;
    if (s == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "parts of %s v%llu: out of memory", package,
                          (unsigned long long)version);
    pthread_mutex_init(&s->mu, NULL);
    s->pf = pf;
    snprintf(s->package, sizeof(s->package), "%s", package);
    s->version = version;
    s->n = n;
    s->refs = malloc((n ? n : 1) * sizeof(*refs));
    s->use = calloc(n ? n : 1, 1);
    remote = malloc((n ? n : 1) * sizeof(*refs));
    if (s->refs == NULL || s->use == NULL || remote == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal",
                        "parts of %s v%llu: out of memory for %zu refs",
                        package, (unsigned long long)version, n);
        goto fail;
    }
    memcpy(s->refs, refs, n * sizeof(*refs));
    size_t nlocal = 0;
    if (installed != NULL && old != NULL) {
        if ((rc = ds_local_plan(old, refs, n, s->use, &nlocal, err)) < 0)
            goto fail;
        if (nlocal > 0 && ds_local_open(installed, old, refs, n, s->use,
                                        &s->local, err) < 0) {
            ds_warn("local-parts-failed",
                    "package=%s version=%llu error=%s note=\"every part is "
                    "fetched\"",
                    package, (unsigned long long)version, DS_LV(err->msg));
            memset(s->use, 0, n);
            nlocal = 0;
        }
    }
    size_t nremote = 0;
    for (size_t i = 0; i < n; i++)
        if (!s->use[i])
            remote[nremote++] = refs[i];
    if ((rc = ds_fetch_open(pf, package, remote, nremote, &s->remote, err)) < 0)
        goto fail;
    free(remote);
    *out = s;
    return 0;
fail:
    free(remote);
    ds_partsource_close(s);
    return rc;
}

static int cancelled_err(ds_partsource *s, ds_err *err)
{
    return ds_err_set(err, -ECANCELED, "cancelled",
                      "parts of %s v%llu: cancelled", s->package,
                      (unsigned long long)s->version);
}

/* Replace the extra fetch with one of the local refs from at on (all of
 * them, or only refs[at] when single). */
static int open_extra(ds_partsource *s, bool single, ds_err *err)
{
    ds_part_ref *list = malloc((s->n - s->at) * sizeof(*list));
    if (list == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "parts of %s v%llu: out of memory", s->package,
                          (unsigned long long)s->version);
    size_t k = 0;
    for (size_t i = s->at; i < s->n && !(single && k == 1); i++)
        if (s->use[i])
            list[k++] = s->refs[i];
    ds_fetch *f = NULL;
    int rc = ds_fetch_open(s->pf, s->package, list, k, &f, err);
    free(list);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->mu);
    ds_fetch *old = s->extra;
    s->extra = f;
    s->extra_single = single;
    bool c = s->cancelled;
    if (c)
        ds_fetch_cancel(f);
    pthread_mutex_unlock(&s->mu);
    ds_fetch_close(old);
    return c ? cancelled_err(s, err) : 0;
}

/* Stop using the installed version: what is left of the plan is fetched. */
static int give_up_local(ds_partsource *s, const ds_err *why, ds_err *err)
{
    ds_warn("local-parts-failed",
            "package=%s version=%llu part=%zu error=%s note=\"the remaining "
            "parts planned from the installed version are fetched\"",
            s->package, (unsigned long long)s->version, s->at, DS_LV(why->msg));
    pthread_mutex_lock(&s->mu);
    ds_local *l = s->local;
    s->local = NULL;
    pthread_mutex_unlock(&s->mu);
    ds_local_close(l);
    return open_extra(s, false, err);
}

/* refs[at], planned locally. */
static int next_local(ds_partsource *s, const void **buf, size_t *len,
                      ds_err *err)
{
    if (s->local != NULL) {
        ds_err lerr;
        ds_err_clear(&lerr);
        int rc = ds_local_next(s->local, buf, len, &lerr);
        if (rc == 1) {
            s->run = 0;
            s->st.local_parts++;
            s->st.local_bytes += s->refs[s->at].zsize;
            return 1;
        }
        if (strcmp(lerr.reason, "cancelled") == 0) {
            *err = lerr;
            return rc < 0 ? rc : -ECANCELED;
        }
        if (rc == 0) /* cannot happen: the plan counts its parts */
            ds_err_set(&lerr, -EIO, "internal",
                       "re-created parts ended before part %zu", s->at);
        s->st.mismatches++;
        if (strcmp(lerr.reason, "local-mismatch") == 0 &&
            ++s->run < MISMATCH_RUN) {
            ds_warn("local-part-mismatch",
                    "package=%s version=%llu part=%zu error=%s note=\"the "
                    "part is fetched\"",
                    s->package, (unsigned long long)s->version, s->at,
                    DS_LV(lerr.msg));
            if ((rc = open_extra(s, true, err)) < 0)
                return rc;
        } else if ((rc = give_up_local(s, &lerr, err)) < 0) {
            return rc;
        }
    }
    int rc = ds_fetch_next(s->extra, buf, len, err);
    if (rc == 0)
        rc = ds_err_set(err, -EIO, "internal",
                        "parts of %s v%llu: the fetch of part %zu ended early",
                        s->package, (unsigned long long)s->version, s->at);
    if (rc == 1) {
        s->st.fetched_parts++;
        s->st.fetched_bytes += s->refs[s->at].zsize;
    }
    return rc;
}

int ds_partsource_next(ds_partsource *s, const void **buf, size_t *len,
                       ds_err *err)
{
    /* A single-part extra fetch served the previous call: done with it. */
    if (s->extra != NULL && s->extra_single) {
        pthread_mutex_lock(&s->mu);
        ds_fetch *f = s->extra;
        s->extra = NULL;
        pthread_mutex_unlock(&s->mu);
        ds_fetch_close(f);
    }
    pthread_mutex_lock(&s->mu);
    bool c = s->cancelled;
    pthread_mutex_unlock(&s->mu);
    if (c)
        return cancelled_err(s, err);
    if (s->at == s->n)
        return 0;
    int rc;
    if (s->use[s->at]) {
        rc = next_local(s, buf, len, err);
    } else {
        rc = ds_fetch_next(s->remote, buf, len, err);
        if (rc == 0)
            rc = ds_err_set(err, -EIO, "internal",
                            "parts of %s v%llu: the fetch ended before part "
                            "%zu",
                            s->package, (unsigned long long)s->version, s->at);
        if (rc == 1) {
            s->st.fetched_parts++;
            s->st.fetched_bytes += s->refs[s->at].zsize;
        }
    }
    if (rc == 1)
        s->at++;
    return rc;
}

void ds_partsource_cancel(ds_partsource *s)
{
    pthread_mutex_lock(&s->mu);
    s->cancelled = true;
    if (s->local != NULL)
        ds_local_cancel(s->local);
    if (s->remote != NULL)
        ds_fetch_cancel(s->remote);
    if (s->extra != NULL)
        ds_fetch_cancel(s->extra);
    pthread_mutex_unlock(&s->mu);
}

void ds_partsource_stats_get(const ds_partsource *s, ds_partsource_stats *st)
{
    *st = s->st;
}

void ds_partsource_close(ds_partsource *s)
{
    if (s == NULL)
        return;
    ds_local_close(s->local);
    ds_fetch_close(s->remote);
    ds_fetch_close(s->extra);
    pthread_mutex_destroy(&s->mu);
    free(s->refs);
    free(s->use);
    free(s);
}
