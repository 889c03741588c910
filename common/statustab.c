/*
 * statustab.c - the newest status record per key and the marks; see
 * statustab.h.
 */
#include "statustab.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "strhash.h"

static const char *const mark_names[DS_MARK_COUNT] = {
    "ok", "behind", "late", "failed", "missing", "retired"};

const char *ds_mark_name(ds_mark m)
{
    return (unsigned)m < DS_MARK_COUNT ? mark_names[m] : "?";
}

char ds_mark_code(ds_mark m)
{
    return (unsigned)m < DS_MARK_COUNT ? "oblfmr"[m] : '?';
}

static uint64_t key_hash(const char *site, const char *package)
{
    uint64_t h = ds_fnv1a(DS_FNV1A_INIT, site);
    h = (h ^ 0xff) * DS_FNV1A_PRIME; /* no byte of a name: a separator */
    return ds_fnv1a(h, package);
}

/* The slot of the key: its record's, or the empty one it would take. */
static size_t *slot_of(const ds_stab *t, const char *site, const char *package)
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

const ds_status *ds_stab_find(const ds_stab *t, const char *site,
                              const char *package)
{
    if (t->nslot == 0)
        return NULL;
    size_t *sl = slot_of(t, site, package);
    return *sl ? &t->rec[*sl - 1] : NULL;
}

static int grow_index(ds_stab *t)
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

int ds_stab_put(ds_stab *t, const ds_status *st)
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
    t->gen++;
    return 0;
}

void ds_stab_free(ds_stab *t)
{
    free(t->rec);
    free(t->slot);
    *t = (ds_stab){0};
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct package (or site) names: all of them sorted, then the
 * repeats dropped (O(n log n) in records). */
static const char **distinct(const ds_stab *t, int sites, size_t *n)
{
    const char **v = calloc(t->n + 1, sizeof(*v));
    *n = 0;
    if (v == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        const char *s = sites ? t->rec[i].site : t->rec[i].package;
        if (!(sites && strcmp(s, DS_PUBLISHED) == 0))
            v[k++] = s;
    }
    qsort(v, k, sizeof(*v), cmp_str);
    for (size_t i = 0; i < k; i++)
        if (*n == 0 || strcmp(v[*n - 1], v[i]) != 0)
            v[(*n)++] = v[i];
    return v;
}

int ds_stab_names(const ds_stab *t, ds_snames *v)
{
    *v = (ds_snames){0};
    v->pkgs = distinct(t, 0, &v->np);
    v->sites = distinct(t, 1, &v->ns);
    if (v->pkgs == NULL || v->sites == NULL) {
        ds_snames_free(v);
        return -ENOMEM;
    }
    return 0;
}

void ds_snames_free(ds_snames *v)
{
    free(v->pkgs);
    free(v->sites);
    *v = (ds_snames){0};
}

int ds_status_is_retired(const ds_status *r)
{
    return r != NULL && strcmp(r->state, "retired") == 0;
}

/* Behind what pub says, for longer than max_behind_ms or not. */
static ds_mark behind(const ds_status *pub, uint64_t now,
                      uint64_t max_behind_ms)
{
    return now - pub->at_ms > max_behind_ms ? DS_MARK_LATE : DS_MARK_BEHIND;
}

ds_mark ds_stab_judge(const ds_status *pub, const ds_status *r, uint64_t now,
                      uint64_t max_behind_ms)
{
    int pub_retired = ds_status_is_retired(pub);
    if (r == NULL) /* nothing to do here for a retired package */
        return pub != NULL && !pub_retired && now - pub->at_ms > max_behind_ms
                   ? DS_MARK_LATE
                   : DS_MARK_MISSING;
    if (strcmp(r->state, "failed") == 0)
        return DS_MARK_FAILED;
    if (ds_status_is_retired(r))
        /* Revived since: a newer version was published after it. */
        return pub != NULL && !pub_retired && pub->version > r->version
                   ? behind(pub, now, max_behind_ms)
                   : DS_MARK_RETIRED;
    if (pub_retired) /* the site has not acted on the retire yet */
        return behind(pub, now, max_behind_ms);
    if (pub == NULL || r->version >= pub->version)
        return DS_MARK_OK;
    return behind(pub, now, max_behind_ms);
}

/* One site's cell: {"site","version","state","at_ms","detail","mark"}. */
static int put_cell(FILE *f, const char *site, const ds_status *r, ds_mark m)
{
    if (fputs("{\"site\":", f) < 0 || ds_json_put_str(f, site) < 0)
        return -1;
    if (r != NULL) {
        if (fprintf(f, ",\"version\":%" PRIu64 ",\"state\":", r->version) < 0 ||
            ds_json_put_str(f, r->state) < 0 ||
            fprintf(f, ",\"at_ms\":%" PRIu64 ",\"detail\":", r->at_ms) < 0 ||
            ds_json_put_str(f, r->detail) < 0)
            return -1;
    } else if (fputs(",\"version\":null,\"state\":null,\"at_ms\":null,"
                     "\"detail\":null",
                     f) < 0) {
        return -1;
    }
    return fprintf(f, ",\"mark\":\"%s\"}", ds_mark_name(m)) < 0 ? -1 : 0;
}

int ds_stab_write_cells(FILE *f, const ds_stab *t, const ds_snames *v,
                        const char *package, const char *site, uint64_t now,
                        uint64_t max_behind_ms, int *worst)
{
    const ds_status *pub = ds_stab_find(t, DS_PUBLISHED, package);
    int first = 1;
    if (putc('[', f) == EOF)
        return -1;
    for (size_t s = 0; s < v->ns; s++) {
        if (site != NULL && strcmp(site, v->sites[s]) != 0)
            continue;
        const ds_status *r = ds_stab_find(t, v->sites[s], package);
        ds_mark m = ds_stab_judge(pub, r, now, max_behind_ms);
        if (m == DS_MARK_LATE || m == DS_MARK_FAILED)
            *worst = 1;
        if ((!first && putc(',', f) == EOF) ||
            put_cell(f, v->sites[s], r, m) < 0)
            return -1;
        first = 0;
    }
    return putc(']', f) == EOF ? -1 : 0;
}

int ds_stab_write_json(FILE *f, const ds_stab *t, const ds_snames *v,
                       const char *package, const char *site, uint64_t now,
                       uint64_t max_behind_ms, int *worst)
{
    int first = 1;
    if (fputs("{\"packages\":[", f) < 0)
        return -1;
    for (size_t p = 0; p < v->np; p++) {
        const char *pkg = v->pkgs[p];
        if (package != NULL && strcmp(package, pkg) != 0)
            continue;
        const ds_status *pub = ds_stab_find(t, DS_PUBLISHED, pkg);
        if (fputs(first ? "{\"package\":" : ",{\"package\":", f) < 0 ||
            ds_json_put_str(f, pkg) < 0)
            return -1;
        first = 0;
        int rc = pub != NULL
                     ? fprintf(f, ",\"published\":%" PRIu64, pub->version)
                     : fputs(",\"published\":null", f);
        if (rc < 0 || fprintf(f, ",\"retired\":%s,\"sites\":",
                              ds_status_is_retired(pub) ? "true" : "false") < 0)
            return -1;
        if (ds_stab_write_cells(f, t, v, pkg, site, now, max_behind_ms, worst) <
                0 ||
            putc('}', f) == EOF)
            return -1;
    }
    return fputs("]}", f) < 0 ? -1 : 0;
}
