/*
 * status.c - `despooler status`: read the compacted pkg.status topic to its
 * end, keep the newest record per key (<site>/<package>), and print the
 * version matrix package x site, the published version first. A site is
 * marked when it is behind the published version, failed, or has not
 * reported since the version was published; and retired when it acted on
 * the package's retire (state "retired", detail "kept" or "removed"). A
 * package whose _published record is retired (pkgpub retire) is marked
 * retired, and a site that has not retired it yet is behind (late after
 * --max-behind), like a site that has not installed a new version.
 */
#include "status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "jsonout.h"
#include "kmeta.h"
#include "progress.h"

#define PUBLISHED "_published"

/* The newest record of each key (<site>/<package>): an array, and an
 * open-addressing index into it by the key's hash (FNV-1a), grown at half
 * load. A linear search made reading the topic quadratic: 5,000 packages
 * at 50 sites are 250,000 keys. */
typedef struct table {
    ds_status *rec;
    size_t n, cap;
    size_t *slot; /* rec index + 1, 0 = empty */
    size_t nslot; /* a power of two */
} table;

static uint64_t key_hash(const char *site, const char *package)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = site; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* no byte of a name: a separator */
    for (const char *p = package; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

/* The slot of the key: its record's, or the empty one it would take. */
static size_t *slot_of(const table *t, const char *site, const char *package)
{
    size_t mask = t->nslot - 1;
    for (size_t i = (size_t)key_hash(site, package) & mask;;
         i = (i + 1) & mask) {
        size_t *sl = &t->slot[i];
        if (*sl == 0)
            return sl;
        const ds_status *r = &t->rec[*sl - 1];
        if (strcmp(r->site, site) == 0 && strcmp(r->package, package) == 0)
            return sl;
    }
}

static ds_status *find(const table *t, const char *site, const char *package)
{
    if (t->nslot == 0)
        return NULL;
    size_t *sl = slot_of(t, site, package);
    return *sl ? &t->rec[*sl - 1] : NULL;
}

static int grow_index(table *t)
{
    size_t nslot = t->nslot ? 2 * t->nslot : 128;
    size_t *ns = calloc(nslot, sizeof(*ns));
    if (ns == NULL)
        return -ENOMEM;
    free(t->slot);
    t->slot = ns;
    t->nslot = nslot;
    for (size_t i = 0; i < t->n; i++)
        *slot_of(t, t->rec[i].site, t->rec[i].package) = i + 1;
    return 0;
}

/* Keep the newest record of each key: the topic is compacted, but until
 * compaction runs it holds older records too, in order. */
static int put(table *t, const ds_status *st)
{
    if (2 * (t->n + 1) > t->nslot && grow_index(t) < 0)
        return -ENOMEM;
    size_t *sl = slot_of(t, st->site, st->package);
    if (*sl != 0) {
        t->rec[*sl - 1] = *st;
        return 0;
    }
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 64;
        ds_status *nr = realloc(t->rec, ncap * sizeof(*nr));
        if (nr == NULL)
            return -ENOMEM;
        t->rec = nr;
        t->cap = ncap;
    }
    t->rec[t->n++] = *st;
    *sl = t->n;
    return 0;
}

static int read_topic(const ds_status_opts *o, table *t, ds_err *err)
{
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int rc;
    /* librdkafka 2.0.2 needs a group.id even to assign(); nothing is ever
     * committed under it. */
    if ((rc = ds_kconf_set(c, "group.id", "despool.status-reader", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.commit", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.partition.eof", "true", err)) < 0 ||
        (rc = ds_kconf_set(c, "isolation.level", "read_committed", err)) < 0 ||
        (rc = ds_kconf_set(c, "log_level", "3", err)) < 0 ||
        (rc = ds_kconf_apply(o->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka", "create client: %s", errstr);
    }
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *l = NULL;
    if ((rc = ds_kmeta_topic(rk, DS_TOPIC_STATUS, o->timeout_ms, &md, err)) < 0)
        goto out;
    int parts = md->topics[0].partition_cnt;
    l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, DS_TOPIC_STATUS,
                                          md->topics[0].partitions[i].id)
            ->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    int eof = 0;
    uint64_t deadline = ds_mono_ms() + (uint64_t)o->timeout_ms;
    while (eof < parts) {
        if (ds_mono_ms() > deadline) {
            rc = ds_err_set(err, -ETIMEDOUT, "kafka",
                            "read %s: end not reached within %d ms",
                            DS_TOPIC_STATUS, o->timeout_ms);
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->payload) {
            ds_status st;
            ds_err derr;
            /* A record that does not decode is reported, not fatal. */
            if (ds_status_decode(m->payload, m->len, &st, &derr) < 0)
                fprintf(stderr, "despooler status: %s [%d] offset %lld: %s\n",
                        DS_TOPIC_STATUS, (int)m->partition,
                        (long long)m->offset, derr.msg);
            else if (put(t, &st) < 0)
                rc = ds_err_set(err, -ENOMEM, "internal", "out of memory");
        }
        rd_kafka_message_destroy(m);
        if (rc < 0)
            goto out;
    }
out:
    if (l != NULL)
        rd_kafka_topic_partition_list_destroy(l);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    /* Assign-only: never joined a group, nothing to close (and 2.0.2's
     * consumer close can hang on such a handle). */
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Distinct values of one field (site or package), sorted; the published
 * pseudo-site is left out of the site list. */
/* The distinct package (or site) names, sorted: all of them sorted, then
 * the repeats dropped (O(n log n) in records). */
static const char **distinct(const table *t, int sites, size_t *n)
{
    const char **v = calloc(t->n + 1, sizeof(*v));
    *n = 0;
    if (v == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        const char *s = sites ? t->rec[i].site : t->rec[i].package;
        if (!(sites && strcmp(s, PUBLISHED) == 0))
            v[k++] = s;
    }
    qsort(v, k, sizeof(*v), cmp_str);
    for (size_t i = 0; i < k; i++)
        if (*n == 0 || strcmp(v[*n - 1], v[i]) != 0)
            v[(*n)++] = v[i];
    return v;
}

typedef enum mark { OK, BEHIND, LATE, FAILED, MISSING, RETIRED } mark;

static int is_retired(const ds_status *r)
{
    return r != NULL && strcmp(r->state, "retired") == 0;
}

/* Behind what pub says, for longer than max_behind_ms or not. */
static mark behind(const ds_status *pub, uint64_t now, uint64_t max_behind_ms)
{
    return now - pub->at_ms > max_behind_ms ? LATE : BEHIND;
}

/* How a site stands for one package, against what was published. */
static mark judge(const ds_status *pub, const ds_status *r, uint64_t now,
                  uint64_t max_behind_ms)
{
    int pub_retired = is_retired(pub);
    if (r == NULL) /* nothing to do here for a retired package */
        return pub != NULL && !pub_retired && now - pub->at_ms > max_behind_ms
                   ? LATE
                   : MISSING;
    if (strcmp(r->state, "failed") == 0)
        return FAILED;
    if (is_retired(r))
        /* Revived since: a newer version was published after it. */
        return pub != NULL && !pub_retired && pub->version > r->version
                   ? behind(pub, now, max_behind_ms)
                   : RETIRED;
    if (pub_retired) /* the site has not acted on the retire yet */
        return behind(pub, now, max_behind_ms);
    if (pub == NULL || r->version >= pub->version)
        return OK;
    return behind(pub, now, max_behind_ms);
}

/* The text cell of a retired record: the version kept, or none. */
static void retired_cell(char *cell, size_t n, const ds_status *r)
{
    if (r->version == 0 || strcmp(r->detail, "removed") == 0)
        snprintf(cell, n, "retired");
    else
        snprintf(cell, n, "%" PRIu64 " retired", r->version);
}

static const char *const names[] = {"ok",     "behind",  "late",
                                    "failed", "missing", "retired"};

/* What the matrix needs: the table, its distinct packages and sites, and
 * the filters and clock every cell is judged with. */
typedef struct matrix {
    const ds_status_opts *o;
    table *t;
    const char **pkgs, **sites;
    size_t np, ns;
    uint64_t now, max_ms;
} matrix;

static int want_pkg(const matrix *x, size_t p)
{
    return x->o->package == NULL || strcmp(x->o->package, x->pkgs[p]) == 0;
}

static int want_site(const matrix *x, size_t s)
{
    return x->o->site == NULL || strcmp(x->o->site, x->sites[s]) == 0;
}

/* The PUBLISHED cell of a package. */
static void published_cell(char *cell, size_t n, const ds_status *pub)
{
    if (is_retired(pub))
        retired_cell(cell, n, pub);
    else if (pub != NULL)
        snprintf(cell, n, "%" PRIu64, pub->version);
    else
        snprintf(cell, n, "-");
}

/* The cell of one site for one package, and its mark. */
static mark site_cell(const matrix *x, size_t p, size_t s, char *cell, size_t n)
{
    const ds_status *pub = find(x->t, PUBLISHED, x->pkgs[p]);
    const ds_status *r = find(x->t, x->sites[s], x->pkgs[p]);
    mark m = judge(pub, r, x->now, x->max_ms);
    if (r == NULL)
        snprintf(cell, n, "-");
    else if (m == RETIRED)
        retired_cell(cell, n, r);
    else if (m == OK)
        snprintf(cell, n, "%" PRIu64, r->version);
    else
        snprintf(cell, n, "%" PRIu64 " %s", r->version, names[m]);
    return m;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* The matrix as a table. Every column is as wide as its longest entry
 * (header or cell; at least the former fixed widths), so no site or
 * package name is ever cut. */
static int print_table(const matrix *x, int *worst, ds_err *err)
{
    char cell[48];
    size_t wp = 24, wpub = 12;
    size_t *ws = calloc(x->ns + 1, sizeof(*ws));
    if (ws == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "out of memory");
    for (size_t s = 0; s < x->ns; s++)
        ws[s] = max_sz(14, strlen(x->sites[s]));
    for (size_t p = 0; p < x->np; p++) {
        if (!want_pkg(x, p))
            continue;
        wp = max_sz(wp, strlen(x->pkgs[p]));
        published_cell(cell, sizeof(cell), find(x->t, PUBLISHED, x->pkgs[p]));
        wpub = max_sz(wpub, strlen(cell));
        for (size_t s = 0; s < x->ns; s++)
            if (want_site(x, s)) {
                site_cell(x, p, s, cell, sizeof(cell));
                ws[s] = max_sz(ws[s], strlen(cell));
            }
    }
    printf("%-*s %*s", (int)wp, "PACKAGE", (int)wpub, "PUBLISHED");
    for (size_t s = 0; s < x->ns; s++)
        if (want_site(x, s))
            printf(" %*s", (int)ws[s], x->sites[s]);
    printf("\n");
    for (size_t p = 0; p < x->np; p++) {
        if (!want_pkg(x, p))
            continue;
        published_cell(cell, sizeof(cell), find(x->t, PUBLISHED, x->pkgs[p]));
        printf("%-*s %*s", (int)wp, x->pkgs[p], (int)wpub, cell);
        for (size_t s = 0; s < x->ns; s++) {
            if (!want_site(x, s))
                continue;
            mark m = site_cell(x, p, s, cell, sizeof(cell));
            if (m == LATE || m == FAILED)
                *worst = 1;
            printf(" %*s", (int)ws[s], cell);
        }
        printf("\n");
    }
    free(ws);
    return 0;
}

/* The matrix as one JSON object: {"packages":[{"package", "published",
 * "retired", "sites":[{"site", "version", "state", "at_ms", "detail",
 * "mark"}]}]}. */
static int print_json(const matrix *x, int *worst, ds_err *err)
{
    json_t *pk = json_array();
    int e = 0;
    for (size_t p = 0; p < x->np; p++) {
        if (!want_pkg(x, p))
            continue;
        const ds_status *pub = find(x->t, PUBLISHED, x->pkgs[p]);
        json_t *jp = json_object(), *js = json_array();
        e |= json_object_set_new(jp, "package", ds_json_text(x->pkgs[p]));
        e |= json_object_set_new(jp, "published",
                                 pub ? json_integer((json_int_t)pub->version)
                                     : json_null());
        e |= json_object_set_new(jp, "retired", json_boolean(is_retired(pub)));
        for (size_t s = 0; s < x->ns; s++) {
            if (!want_site(x, s))
                continue;
            const ds_status *r = find(x->t, x->sites[s], x->pkgs[p]);
            mark m = judge(pub, r, x->now, x->max_ms);
            if (m == LATE || m == FAILED)
                *worst = 1;
            json_t *c = json_object();
            e |= json_object_set_new(c, "site", ds_json_text(x->sites[s]));
            e |= json_object_set_new(c, "version",
                                     r ? json_integer((json_int_t)r->version)
                                       : json_null());
            e |= json_object_set_new(c, "state",
                                     ds_json_text(r ? r->state : NULL));
            e |= json_object_set_new(c, "at_ms",
                                     r ? json_integer((json_int_t)r->at_ms)
                                       : json_null());
            e |= json_object_set_new(c, "detail",
                                     ds_json_text(r ? r->detail : NULL));
            e |= json_object_set_new(c, "mark", json_string(names[m]));
            e |= json_array_append_new(js, c);
        }
        e |= json_object_set_new(jp, "sites", js);
        e |= json_array_append_new(pk, jp);
    }
    json_t *j = json_object();
    e |= json_object_set_new(j, "packages", pk);
    if (e != 0) {
        json_decref(j);
        return ds_err_set(err, -ENOMEM, "internal",
                          "building the JSON output: out of memory");
    }
    if (ds_json_print(j, 1) < 0)
        return ds_err_set(err, -EIO, "internal", "writing the JSON output");
    return 0;
}

int ds_status_run(const ds_status_opts *o, int *worst, ds_err *err)
{
    table t = {0};
    int rc = read_topic(o, &t, err);
    if (rc < 0) {
        free(t.rec);
        free(t.slot);
        return rc;
    }
    matrix x = {.o = o, .t = &t};
    x.pkgs = distinct(&t, 0, &x.np);
    x.sites = distinct(&t, 1, &x.ns);
    x.now = ds_now_ms();
    x.max_ms = o->max_behind_s * 1000;
    *worst = 0;
    if (x.pkgs == NULL || x.sites == NULL)
        rc = ds_err_set(err, -ENOMEM, "internal", "out of memory");
    else if (o->json)
        rc = print_json(&x, worst, err);
    else
        rc = print_table(&x, worst, err);
    free(x.pkgs);
    free(x.sites);
    free(t.rec);
    free(t.slot);
    return rc;
}
