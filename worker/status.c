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
#include "kmeta.h"
#include "progress.h"

#define PUBLISHED "_published"

typedef struct table {
    ds_status *rec;
    size_t n, cap;
} table;

static ds_status *find(table *t, const char *site, const char *package)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->rec[i].site, site) == 0 &&
            strcmp(t->rec[i].package, package) == 0)
            return &t->rec[i];
    return NULL;
}

/* Keep the newest record of each key: the topic is compacted, but until
 * compaction runs it holds older records too, in order. */
static int put(table *t, const ds_status *st)
{
    ds_status *r = find(t, st->site, st->package);
    if (r != NULL) {
        *r = *st;
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
static const char **distinct(const table *t, int sites, size_t *n)
{
    const char **v = calloc(t->n + 1, sizeof(*v));
    *n = 0;
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < t->n; i++) {
        const char *s = sites ? t->rec[i].site : t->rec[i].package;
        if (sites && strcmp(s, PUBLISHED) == 0)
            continue;
        size_t j = 0;
        while (j < *n && strcmp(v[j], s) != 0)
            j++;
        if (j == *n)
            v[(*n)++] = s;
    }
    qsort(v, *n, sizeof(*v), cmp_str);
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

/* A status record's text as a JSON string: quote, backslash and control
 * characters escaped, bytes outside ASCII as '?' (the text is a human
 * note; the output must stay valid UTF-8 whatever a record holds). */
static void print_json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p < 0x80 ? *p : '?');
    }
    putchar('"');
}

/* The text cell of a retired record: the version kept, or none. */
static void retired_cell(char *cell, size_t n, const ds_status *r)
{
    if (r->version == 0 || strcmp(r->detail, "removed") == 0)
        snprintf(cell, n, "retired");
    else
        snprintf(cell, n, "%" PRIu64 " retired", r->version);
}

int ds_status_run(const ds_status_opts *o, int *worst, ds_err *err)
{
    table t = {0};
    int rc = read_topic(o, &t, err);
    if (rc < 0) {
        free(t.rec);
        return rc;
    }
    size_t np, ns;
    const char **pkgs = distinct(&t, 0, &np);
    const char **sites = distinct(&t, 1, &ns);
    if (pkgs == NULL || sites == NULL) {
        free(pkgs);
        free(sites);
        free(t.rec);
        return ds_err_set(err, -ENOMEM, "internal", "out of memory");
    }
    uint64_t now = ds_now_ms();
    uint64_t max_ms = o->max_behind_s * 1000;
    static const char *const names[] = {"ok",     "behind",  "late",
                                        "failed", "missing", "retired"};
    *worst = 0;
    if (o->json)
        printf("{\"packages\":[");
    else {
        printf("%-24s %12s", "PACKAGE", "PUBLISHED");
        for (size_t s = 0; s < ns; s++)
            if (o->site == NULL || strcmp(o->site, sites[s]) == 0)
                printf(" %14.14s", sites[s]);
        printf("\n");
    }
    int first = 1;
    for (size_t p = 0; p < np; p++) {
        if (o->package != NULL && strcmp(o->package, pkgs[p]) != 0)
            continue;
        const ds_status *pub = find(&t, PUBLISHED, pkgs[p]);
        char cell[40];
        if (pub != NULL)
            snprintf(cell, sizeof(cell), "%" PRIu64, pub->version);
        else
            snprintf(cell, sizeof(cell), "-");
        if (o->json) {
            printf("%s{\"package\":\"%s\",\"published\":%s,\"retired\":%s,"
                   "\"sites\":[",
                   first ? "" : ",", pkgs[p], pub ? cell : "null",
                   is_retired(pub) ? "true" : "false");
        } else {
            if (is_retired(pub))
                retired_cell(cell, sizeof(cell), pub);
            printf("%-24s %12s", pkgs[p], cell);
        }
        first = 0;
        int sfirst = 1;
        for (size_t s = 0; s < ns; s++) {
            if (o->site != NULL && strcmp(o->site, sites[s]) != 0)
                continue;
            const ds_status *r = find(&t, sites[s], pkgs[p]);
            mark m = judge(pub, r, now, max_ms);
            if (m == LATE || m == FAILED)
                *worst = 1;
            if (o->json) {
                printf("%s{\"site\":\"%s\",\"version\":", sfirst ? "" : ",",
                       sites[s]);
                if (r != NULL) {
                    printf("%" PRIu64 ",\"state\":\"%s\",\"at_ms\":%" PRIu64
                           ",\"detail\":",
                           r->version, r->state, r->at_ms);
                    print_json_str(r->detail);
                } else {
                    printf("null,\"state\":null,\"at_ms\":null,"
                           "\"detail\":null");
                }
                printf(",\"mark\":\"%s\"}", names[m]);
            } else {
                if (r == NULL)
                    snprintf(cell, sizeof(cell), "-");
                else if (m == RETIRED)
                    retired_cell(cell, sizeof(cell), r);
                else if (m == OK)
                    snprintf(cell, sizeof(cell), "%" PRIu64, r->version);
                else
                    snprintf(cell, sizeof(cell), "%" PRIu64 " %s", r->version,
                             names[m]);
                printf(" %14.14s", cell);
            }
            sfirst = 0;
        }
        if (o->json)
            printf("]}");
        else
            printf("\n");
    }
    if (o->json)
        printf("]}\n");
    free(pkgs);
    free(sites);
    free(t.rec);
    return 0;
}
