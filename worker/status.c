/*
 * status.c - `despooler status`: read the compacted pkg.status topic to its
 * end (follow.c) and print the version matrix package x site, the
 * published version first, with the marks of statustab.h: behind, late,
 * failed, retired.
 */
#include "status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "follow.h"
#include "progress.h"
#include "statustab.h"

/* Read pkg.status to its end; a record that does not decode is reported,
 * not fatal. */
static int on_record(void *ctx, const rd_kafka_message_t *m, ds_err *err)
{
    ds_status st;
    ds_err derr;
    if (m->payload == NULL)
        return 0;
    if (ds_status_decode(m->payload, m->len, &st, &derr) < 0) {
        fprintf(stderr, "despooler status: %s [%d] offset %lld: %s\n",
                DS_TOPIC_STATUS, (int)m->partition, (long long)m->offset,
                derr.msg);
        return 0;
    }
    if (ds_stab_put(ctx, &st) < 0)
        return ds_err_set(err, -ENOMEM, "internal", "out of memory");
    return 0;
}

static int read_topic(const ds_status_opts *o, ds_stab *t, ds_err *err)
{
    ds_follow *f;
    int rc = ds_follow_open(o->kc, DS_TOPIC_STATUS, "despool.status-reader",
                            o->timeout_ms, &f, err);
    uint64_t deadline = ds_mono_ms() + (uint64_t)o->timeout_ms;
    while (rc >= 0 && !ds_follow_caught_up(f)) {
        if (ds_mono_ms() > deadline) {
            rc = ds_err_set(err, -ETIMEDOUT, "kafka",
                            "read %s: end not reached within %d ms",
                            DS_TOPIC_STATUS, o->timeout_ms);
            break;
        }
        rc = ds_follow_poll(f, 100, on_record, t, err);
    }
    ds_follow_close(f);
    return rc < 0 ? rc : 0;
}

/* The text cell of a retired record: the version kept, or none. */
static void retired_cell(char *cell, size_t n, const ds_status *r)
{
    if (r->version == 0 || strcmp(r->detail, "removed") == 0)
        snprintf(cell, n, "retired");
    else
        snprintf(cell, n, "%" PRIu64 " retired", r->version);
}

/* What the table needs: the records, their distinct packages and sites,
 * and the filters and clock every cell is judged with. */
typedef struct matrix {
    const ds_status_opts *o;
    const ds_stab *t;
    ds_snames v;
    uint64_t now, max_ms;
} matrix;

static int want_pkg(const matrix *x, size_t p)
{
    return x->o->package == NULL || strcmp(x->o->package, x->v.pkgs[p]) == 0;
}

static int want_site(const matrix *x, size_t s)
{
    return x->o->site == NULL || strcmp(x->o->site, x->v.sites[s]) == 0;
}

/* The PUBLISHED cell of a package. */
static void published_cell(char *cell, size_t n, const ds_status *pub)
{
    if (ds_status_is_retired(pub))
        retired_cell(cell, n, pub);
    else if (pub != NULL)
        snprintf(cell, n, "%" PRIu64, pub->version);
    else
        snprintf(cell, n, "-");
}

/* The cell of one site for one package, and its mark. */
static ds_mark site_cell(const matrix *x, size_t p, size_t s, char *cell,
                         size_t n)
{
    const ds_status *pub = ds_stab_find(x->t, DS_PUBLISHED, x->v.pkgs[p]);
    const ds_status *r = ds_stab_find(x->t, x->v.sites[s], x->v.pkgs[p]);
    ds_mark m = ds_stab_judge(pub, r, x->now, x->max_ms);
    if (r == NULL)
        snprintf(cell, n, "-");
    else if (m == DS_MARK_RETIRED)
        retired_cell(cell, n, r);
    else if (m == DS_MARK_OK)
        snprintf(cell, n, "%" PRIu64, r->version);
    else
        snprintf(cell, n, "%" PRIu64 " %s", r->version, ds_mark_name(m));
    return m;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

static const ds_status *pub_of(const matrix *x, size_t p)
{
    return ds_stab_find(x->t, DS_PUBLISHED, x->v.pkgs[p]);
}

/* The matrix as a table. Every column is as wide as its longest entry
 * (header or cell; at least the former fixed widths), so no site or
 * package name is ever cut. */
static int print_table(const matrix *x, int *worst, ds_err *err)
{
    char cell[48];
    size_t wp = 24, wpub = 12;
    size_t *ws = calloc(x->v.ns + 1, sizeof(*ws));
    if (ws == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "out of memory");
    for (size_t s = 0; s < x->v.ns; s++)
        ws[s] = max_sz(14, strlen(x->v.sites[s]));
    for (size_t p = 0; p < x->v.np; p++) {
        if (!want_pkg(x, p))
            continue;
        wp = max_sz(wp, strlen(x->v.pkgs[p]));
        published_cell(cell, sizeof(cell), pub_of(x, p));
        wpub = max_sz(wpub, strlen(cell));
        for (size_t s = 0; s < x->v.ns; s++)
            if (want_site(x, s)) {
                site_cell(x, p, s, cell, sizeof(cell));
                ws[s] = max_sz(ws[s], strlen(cell));
            }
    }
    printf("%-*s %*s", (int)wp, "PACKAGE", (int)wpub, "PUBLISHED");
    for (size_t s = 0; s < x->v.ns; s++)
        if (want_site(x, s))
            printf(" %*s", (int)ws[s], x->v.sites[s]);
    printf("\n");
    for (size_t p = 0; p < x->v.np; p++) {
        if (!want_pkg(x, p))
            continue;
        published_cell(cell, sizeof(cell), pub_of(x, p));
        printf("%-*s %*s", (int)wp, x->v.pkgs[p], (int)wpub, cell);
        for (size_t s = 0; s < x->v.ns; s++) {
            if (!want_site(x, s))
                continue;
            ds_mark m = site_cell(x, p, s, cell, sizeof(cell));
            if (m == DS_MARK_LATE || m == DS_MARK_FAILED)
                *worst = 1;
            printf(" %*s", (int)ws[s], cell);
        }
        printf("\n");
    }
    free(ws);
    return 0;
}

int ds_status_run(const ds_status_opts *o, int *worst, ds_err *err)
{
    ds_stab t = {0};
    int rc = read_topic(o, &t, err);
    if (rc < 0) {
        ds_stab_free(&t);
        return rc;
    }
    matrix x = {.o = o, .t = &t};
    x.now = ds_now_ms();
    x.max_ms = o->max_behind_s * 1000;
    *worst = 0;
    if (ds_stab_names(&t, &x.v) < 0)
        rc = ds_err_set(err, -ENOMEM, "internal", "out of memory");
    else if (o->json) {
        if (ds_stab_write_json(stdout, &t, &x.v, o->package, o->site, x.now,
                               x.max_ms, worst) < 0 ||
            putchar('\n') == EOF)
            rc = ds_err_sys(err, "io-error", "status --json: write stdout");
    } else {
        rc = print_table(&x, worst, err);
    }
    ds_snames_free(&x.v);
    ds_stab_free(&t);
    return rc;
}
