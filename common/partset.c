/*
 * partset.c - the parts of one schema v2 publication by id; see
 * partset.h. Entries live in one array in insertion order; a table of
 * slots (entry number + 1, 0 = empty) indexes them by id.
 */
#include "partset.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define PARTSET_MIN 64 /* slots of the smallest table */

struct ds_partset {
    ds_partset_entry *e;
    size_t n, cap;
    uint32_t *slot; /* entry number + 1, or 0 */
    size_t nslots;  /* a power of two, >= 2 n */
};

/* The id is a SHA-256: its first 8 bytes are as good a hash as any. */
static size_t id_hash(const uint8_t *id)
{
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = h << 8 | id[i];
    return (size_t)(h ^ (h >> 29));
}

/* The slot of id: where it is, or the empty slot where it would go. */
static size_t find_slot(const ds_partset *s, const uint8_t *id)
{
    size_t mask = s->nslots - 1, i = id_hash(id) & mask;
    while (s->slot[i] != 0 &&
           memcmp(s->e[s->slot[i] - 1].id, id, DS_SHA256_LEN) != 0)
        i = (i + 1) & mask;
    return i;
}

static int grow_slots(ds_partset *s, size_t nslots, ds_err *err)
{
    uint32_t *slot = calloc(nslots, sizeof(*slot));
    if (slot == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "part set: %zu slots: out of memory", nslots);
    free(s->slot);
    s->slot = slot;
    s->nslots = nslots;
    for (size_t k = 0; k < s->n; k++)
        s->slot[find_slot(s, s->e[k].id)] = (uint32_t)(k + 1);
    return 0;
}

int ds_partset_new(size_t hint, ds_partset **out, ds_err *err)
{
    *out = NULL;
    ds_partset *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "part set: out of memory");
    size_t nslots = PARTSET_MIN;
    while (nslots < 2 * hint && nslots < ((size_t)1 << 30))
        nslots *= 2;
    int rc = grow_slots(s, nslots, err);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void ds_partset_free(ds_partset *s)
{
    if (s == NULL)
        return;
    free(s->e);
    free(s->slot);
    free(s);
}

/* Append a new entry for id at slot i (as find_slot gave it). */
static int add_entry(ds_partset *s, size_t i, const ds_partset_entry *v,
                     size_t *index, ds_err *err)
{
    if (s->n >= UINT32_MAX - 1)
        return ds_err_set(err, -E2BIG, "internal", "part set: too many parts");
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        ds_partset_entry *e = realloc(s->e, cap * sizeof(*e));
        if (e == NULL)
            return ds_err_set(err, -ENOMEM, "internal",
                              "part set: %zu entries: out of memory", cap);
        s->e = e;
        s->cap = cap;
    }
    s->e[s->n] = *v;
    s->slot[i] = (uint32_t)(s->n + 1);
    *index = s->n++;
    if (2 * s->n > s->nslots)
        return grow_slots(s, 2 * s->nslots, err);
    return 0;
}

int ds_partset_hold(ds_partset *s, const ds_part_ref *r, ds_err *err)
{
    char hex[2 * DS_SHA256_LEN + 1];
    if (r->size == 0 || r->zsize == 0 || r->partition < 0 || r->offset < 0)
        return ds_err_set(err, -EINVAL, "internal",
                          "part set: held part %s: size %u zsize %u at "
                          "partition %d offset %lld: not a valid ref",
                          ds_hex(hex, r->id, DS_SHA256_LEN), (unsigned)r->size,
                          (unsigned)r->zsize, (int)r->partition,
                          (long long)r->offset);
    size_t i = find_slot(s, r->id), index;
    if (s->slot[i] != 0)
        return 0; /* held twice: the first ref stays */
    ds_partset_entry v = {
        .size = r->size,
        .zsize = r->zsize,
        .partition = r->partition,
        .offset = r->offset,
        .held = 1,
    };
    memcpy(v.id, r->id, DS_SHA256_LEN);
    return add_entry(s, i, &v, &index, err);
}

int ds_partset_place(ds_partset *s, const uint8_t id[DS_SHA256_LEN],
                     uint32_t size, uint32_t zsize, size_t *index, ds_err *err)
{
    size_t i = find_slot(s, id);
    if (s->slot[i] != 0) {
        ds_partset_entry *e = &s->e[s->slot[i] - 1];
        *index = s->slot[i] - 1;
        if (e->size == size) {
            int reuse = e->held;
            e->used = 1;
            return reuse ? DS_PLACE_REUSE : DS_PLACE_REPEAT;
        }
        if (!e->held)
            return ds_err_set(err, -EINVAL, "internal",
                              "part set: one part id with sizes %u and %u",
                              (unsigned)e->size, (unsigned)size);
        /* A held ref that does not describe these bytes: send them again
         * under the same key (the new record replaces the old one). */
        e->held = 0;
        e->used = 1;
        e->size = size;
        e->zsize = zsize;
        e->partition = -1;
        e->offset = -1;
        return DS_PLACE_SEND;
    }
    ds_partset_entry v = {
        .size = size,
        .zsize = zsize,
        .partition = -1,
        .offset = -1,
        .used = 1,
    };
    memcpy(v.id, id, DS_SHA256_LEN);
    int rc = add_entry(s, i, &v, index, err);
    return rc < 0 ? rc : DS_PLACE_SEND;
}

ds_partset_entry *ds_partset_at(ds_partset *s, size_t index)
{
    return index < s->n ? &s->e[index] : NULL;
}

const ds_partset_entry *ds_partset_find(const ds_partset *s,
                                        const uint8_t id[DS_SHA256_LEN])
{
    size_t i = find_slot(s, id);
    return s->slot[i] != 0 ? &s->e[s->slot[i] - 1] : NULL;
}

size_t ds_partset_count(const ds_partset *s)
{
    return s->n;
}

long ds_partset_dropped(const ds_partset *s, ds_partset_fn fn, void *ctx)
{
    long n = 0;
    for (size_t k = 0; k < s->n; k++) {
        if (!s->e[k].held || s->e[k].used)
            continue;
        n++;
        if (fn != NULL) {
            int rc = fn(ctx, &s->e[k]);
            if (rc < 0)
                return rc;
        }
    }
    return n;
}

int ds_partset_fill_refs(const ds_partset *s, ds_part_ref *refs, size_t n,
                         ds_err *err)
{
    char hex[2 * DS_SHA256_LEN + 1];
    for (size_t k = 0; k < n; k++) {
        const ds_partset_entry *e = ds_partset_find(s, refs[k].id);
        if (e == NULL || e->partition < 0 || e->offset < 0)
            return ds_err_set(err, -EIO, "kafka", "ref %zu (part %s): %s", k,
                              ds_hex(hex, refs[k].id, DS_SHA256_LEN),
                              e == NULL ? "not in the part set"
                                        : "no offset: its record's delivery "
                                          "report gave none");
        refs[k].partition = e->partition;
        refs[k].offset = e->offset;
        refs[k].zsize = e->zsize;
    }
    return 0;
}
