/*
 * pkghist.c - versions and dead letters per package; see pkghist.h.
 *
 * Sites and states are interned (an event is 24 bytes): 5,000 packages
 * seen at 50 sites over three versions are about 18 MB of events.
 */
#include "pkghist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "statustab.h"
#include "strhash.h"

#define SITE_PUBLISHED UINT32_MAX

typedef struct event {
    uint64_t version, at_ms;
    uint32_t site;  /* interned name, or SITE_PUBLISHED */
    uint32_t state; /* interned name */
} event;

typedef struct pkg {
    char *name;
    event *ev;
    size_t nev, cap;
    ds_dead_letter_seen dl[DS_PKGHIST_DEAD_LETTERS]; /* a ring */
    size_t ndl, dl_next;
} pkg;

/* Strings to indexes (or packages), open addressing on FNV-1a, grown at
 * half load. */
typedef struct smap {
    char **key;
    void **val;
    size_t n, cap;
    size_t *slot; /* index + 1, 0 = empty */
    size_t nslot;
} smap;

struct ds_pkghist {
    smap pkgs;  /* name -> pkg * */
    smap names; /* site and state names -> their index */
};

static size_t *slot_of(const smap *m, const char *k)
{
    size_t mask = m->nslot - 1;
    for (size_t i = (size_t)ds_fnv1a(DS_FNV1A_INIT, k) & mask;;
         i = (i + 1) & mask)
        if (m->slot[i] == 0 || strcmp(m->key[m->slot[i] - 1], k) == 0)
            return &m->slot[i];
}

/* The index of k, or -1. */
static long smap_find(const smap *m, const char *k)
{
    if (m->nslot == 0)
        return -1;
    size_t *sl = slot_of(m, k);
    return *sl ? (long)(*sl - 1) : -1;
}

/* The index of k, added (with val) when new; -ENOMEM. */
static long smap_add(smap *m, const char *k, void *val)
{
    long i = smap_find(m, k);
    if (i >= 0)
        return i;
    if (2 * (m->n + 1) > m->nslot) {
        size_t ns = m->nslot ? 2 * m->nslot : 64;
        size_t *s = calloc(ns, sizeof(*s));
        if (s == NULL)
            return -ENOMEM;
        free(m->slot);
        m->slot = s;
        m->nslot = ns;
        for (size_t j = 0; j < m->n; j++)
            *slot_of(m, m->key[j]) = j + 1;
    }
    if (m->n == m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 32;
        char **nk = realloc(m->key, nc * sizeof(*nk));
        if (nk == NULL)
            return -ENOMEM;
        m->key = nk;
        void **nv = realloc(m->val, nc * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        m->val = nv;
        m->cap = nc;
    }
    if ((m->key[m->n] = strdup(k)) == NULL)
        return -ENOMEM;
    m->val[m->n] = val;
    *slot_of(m, k) = m->n + 1;
    return (long)m->n++;
}

static void smap_free(smap *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->key[i]);
    free(m->key);
    free(m->val);
    free(m->slot);
}

int ds_pkghist_new(ds_pkghist **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

void ds_pkghist_free(ds_pkghist *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->pkgs.n; i++) {
        pkg *p = h->pkgs.val[i];
        free(p->ev);
        free(p);
    }
    smap_free(&h->pkgs);
    smap_free(&h->names);
    free(h);
}

static pkg *pkg_of(ds_pkghist *h, const char *name)
{
    long i = smap_find(&h->pkgs, name);
    if (i >= 0)
        return h->pkgs.val[i];
    pkg *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    i = smap_add(&h->pkgs, name, p);
    if (i < 0) {
        free(p);
        return NULL;
    }
    p->name = h->pkgs.key[i];
    return p;
}

int ds_pkghist_status(ds_pkghist *h, const ds_status *st)
{
    pkg *p = pkg_of(h, st->package);
    long site = strcmp(st->site, DS_PUBLISHED) == 0
                    ? (long)SITE_PUBLISHED
                    : smap_add(&h->names, st->site, NULL);
    long state = smap_add(&h->names, st->state, NULL);
    if (p == NULL || site < 0 || state < 0)
        return -ENOMEM;
    event e = {.version = st->version,
               .at_ms = st->at_ms,
               .site = (uint32_t)site,
               .state = (uint32_t)state};
    /* The same record read twice (the topic before compaction holds
     * older copies of a key; nothing else repeats all four). */
    for (size_t i = p->nev; i-- > 0 && i + 64 >= p->nev;)
        if (memcmp(&p->ev[i], &e, sizeof(e)) == 0)
            return 0;
    if (p->nev == DS_PKGHIST_EVENTS) { /* drop the oldest 64 */
        memmove(p->ev, p->ev + 64, (p->nev - 64) * sizeof(*p->ev));
        p->nev -= 64;
    }
    if (p->nev == p->cap) {
        size_t nc = p->cap ? 2 * p->cap : 8;
        event *ne = realloc(p->ev, nc * sizeof(*ne));
        if (ne == NULL)
            return -ENOMEM;
        p->ev = ne;
        p->cap = nc;
    }
    p->ev[p->nev++] = e;
    return 0;
}

int ds_pkghist_dead_letter(ds_pkghist *h, const char *package,
                           const ds_dead_letter_seen *dl)
{
    pkg *p = pkg_of(h, package);
    if (p == NULL)
        return -ENOMEM;
    p->dl[p->dl_next] = *dl;
    p->dl_next = (p->dl_next + 1) % DS_PKGHIST_DEAD_LETTERS;
    if (p->ndl < DS_PKGHIST_DEAD_LETTERS)
        p->ndl++;
    return 0;
}

int ds_pkghist_has(const ds_pkghist *h, const char *package)
{
    return smap_find(&h->pkgs, package) >= 0;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* One version: when it was published and where it went. */
static int write_version(FILE *f, const ds_pkghist *h, const pkg *p, uint64_t v)
{
    uint64_t pub_at = 0;
    for (size_t i = 0; i < p->nev; i++)
        if (p->ev[i].site == SITE_PUBLISHED && p->ev[i].version == v &&
            (pub_at == 0 || p->ev[i].at_ms < pub_at))
            pub_at = p->ev[i].at_ms;
    if (fprintf(f, "{\"version\":%" PRIu64, v) < 0 ||
        (pub_at ? fprintf(f, ",\"published_at_ms\":%" PRIu64, pub_at)
                : fputs(",\"published_at_ms\":null", f)) < 0 ||
        fputs(",\"installed\":[", f) < 0)
        return -1;
    int first = 1;
    for (size_t i = 0; i < p->nev; i++) {
        const event *e = &p->ev[i];
        if (e->site == SITE_PUBLISHED || e->version != v)
            continue;
        if (fputs(first ? "{\"site\":" : ",{\"site\":", f) < 0 ||
            ds_json_put_str(f, h->names.key[e->site]) < 0 ||
            fprintf(f, ",\"at_ms\":%" PRIu64 ",\"state\":", e->at_ms) < 0 ||
            ds_json_put_str(f, h->names.key[e->state]) < 0 ||
            putc('}', f) == EOF)
            return -1;
        first = 0;
    }
    return fputs("]}", f) < 0 ? -1 : 0;
}

static int write_dead_letters(FILE *f, const pkg *p)
{
    if (fputs(",\"dead_letters\":[", f) < 0)
        return -1;
    for (size_t k = 0; p != NULL && k < p->ndl; k++) {
        size_t i = (p->dl_next + DS_PKGHIST_DEAD_LETTERS - 1 - k) %
                   DS_PKGHIST_DEAD_LETTERS; /* newest first */
        const ds_dead_letter_seen *d = &p->dl[i];
        if (fprintf(f, "%s{\"at_ms\":%" PRIu64 ",\"site\":", k ? "," : "",
                    d->at_ms) < 0 ||
            ds_json_put_str(f, d->site) < 0 || fputs(",\"reason\":", f) < 0 ||
            ds_json_put_str(f, d->reason) < 0 || fputs(",\"detail\":", f) < 0 ||
            ds_json_put_str(f, d->detail) < 0 ||
            fprintf(f, ",\"partition\":%d,\"offset\":%" PRId64 "}",
                    (int)d->partition, d->offset) < 0)
            return -1;
    }
    return putc(']', f) == EOF ? -1 : 0;
}

int ds_pkghist_write_json(FILE *f, const ds_pkghist *h, const char *package)
{
    long i = smap_find(&h->pkgs, package);
    const pkg *p = i >= 0 ? h->pkgs.val[i] : NULL;
    uint64_t *vs = NULL;
    size_t nv = 0;
    if (p != NULL && p->nev > 0) {
        if ((vs = malloc(p->nev * sizeof(*vs))) == NULL)
            return -1;
        for (size_t k = 0; k < p->nev; k++)
            vs[k] = p->ev[k].version;
        qsort(vs, p->nev, sizeof(*vs), cmp_desc);
        for (size_t k = 0; k < p->nev; k++)
            if (nv == 0 || vs[nv - 1] != vs[k])
                vs[nv++] = vs[k];
    }
    int rc = fputs(",\"history\":[", f) < 0 ? -1 : 0;
    for (size_t k = 0; rc == 0 && k < nv && k < DS_PKGHIST_VERSIONS; k++)
        if ((k && putc(',', f) == EOF) || write_version(f, h, p, vs[k]) < 0)
            rc = -1;
    free(vs);
    if (rc == 0 && putc(']', f) == EOF)
        rc = -1;
    return rc == 0 ? write_dead_letters(f, p) : -1;
}
