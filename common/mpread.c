/*
 * mpread.c - the bounds-checked msgpack reader; see mpread.h. The format
 * is the msgpack specification's; the one rule added is that a count
 * must fit the bytes left, which is what makes every later loop bounded.
 */
#include "mpread.h"

#include <string.h>

#define WHY_TRUNCATED                                                          \
    "truncated msgpack (the value ends before its last element)"

void ds_mp_init(ds_mp *m, const void *buf, size_t len)
{
    m->p = buf;
    m->len = buf != NULL ? len : 0;
    m->off = 0;
    m->why = NULL;
}

static int fail(ds_mp *m, const char *why)
{
    m->why = why;
    return -1;
}

/* n big-endian bytes at the cursor into *v. */
static int take_be(ds_mp *m, size_t n, uint64_t *v)
{
    if (m->len - m->off < n)
        return fail(m, WHY_TRUNCATED);
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | m->p[m->off + i];
    m->off += n;
    *v = x;
    return 0;
}

/* A body of n bytes at the cursor: o->ptr, o->u. */
static int take_body(ds_mp *m, uint64_t n, ds_mp_obj *o)
{
    if (n > m->len - m->off)
        return fail(m, WHY_TRUNCATED);
    o->ptr = m->p + m->off;
    o->u = n;
    m->off += (size_t)n;
    return 0;
}

/* An array of n elements or a map of n pairs (per = 2): the count must fit
 * the bytes left, one byte at least per element. */
static int take_count(ds_mp *m, uint64_t n, uint64_t per, ds_mp_obj *o)
{
    if (n > (m->len - m->off) / per)
        return fail(m, WHY_TRUNCATED);
    o->u = n;
    return 0;
}

/* A signed integer of n bytes: UINT when >= 0, else NINT. */
static int take_int(ds_mp *m, size_t n, ds_mp_obj *o)
{
    uint64_t raw;
    if (take_be(m, n, &raw) < 0)
        return -1;
    uint64_t sign = (uint64_t)1 << (8 * n - 1);
    if (raw & sign) {
        o->type = DS_MP_NINT;
        o->u = 0;
    } else {
        o->type = DS_MP_UINT;
        o->u = raw;
    }
    return 0;
}

int ds_mp_next(ds_mp *m, ds_mp_obj *o)
{
    uint64_t n = 0;
    memset(o, 0, sizeof(*o));
    if (m->off >= m->len)
        return fail(m, WHY_TRUNCATED);
    uint8_t b = m->p[m->off++];
    if (b <= 0x7f) {
        o->type = DS_MP_UINT;
        o->u = b;
        return 0;
    }
    if (b >= 0xe0) {
        o->type = DS_MP_NINT;
        return 0;
    }
    if (b <= 0x8f) {
        o->type = DS_MP_MAP;
        return take_count(m, b & 0x0fu, 2, o);
    }
    if (b <= 0x9f) {
        o->type = DS_MP_ARRAY;
        return take_count(m, b & 0x0fu, 1, o);
    }
    if (b <= 0xbf) {
        o->type = DS_MP_STR;
        return take_body(m, b & 0x1fu, o);
    }
    switch (b) {
    case 0xc0:
        o->type = DS_MP_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        o->type = DS_MP_BOOL;
        o->u = b == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        o->type = DS_MP_BIN;
        if (take_be(m, (size_t)1 << (b - 0xc4), &n) < 0)
            return -1;
        return take_body(m, n, o);
    case 0xc7:
    case 0xc8:
    case 0xc9:
        o->type = DS_MP_EXT;
        if (take_be(m, (size_t)1 << (b - 0xc7), &n) < 0)
            return -1;
        return take_body(m, n + 1, o); /* the ext type byte, then data */
    case 0xca:
    case 0xcb:
        o->type = DS_MP_FLOAT;
        return take_body(m, b == 0xca ? 4 : 8, o);
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        o->type = DS_MP_UINT;
        return take_be(m, (size_t)1 << (b - 0xcc), &o->u);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return take_int(m, (size_t)1 << (b - 0xd0), o);
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        o->type = DS_MP_EXT;
        return take_body(m, 1 + ((uint64_t)1 << (b - 0xd4)), o);
    case 0xd9:
    case 0xda:
    case 0xdb:
        o->type = DS_MP_STR;
        if (take_be(m, (size_t)1 << (b - 0xd9), &n) < 0)
            return -1;
        return take_body(m, n, o);
    case 0xdc:
    case 0xdd:
        o->type = DS_MP_ARRAY;
        if (take_be(m, b == 0xdc ? 2 : 4, &n) < 0)
            return -1;
        return take_count(m, n, 1, o);
    case 0xde:
    case 0xdf:
        o->type = DS_MP_MAP;
        if (take_be(m, b == 0xde ? 2 : 4, &n) < 0)
            return -1;
        return take_count(m, n, 2, o);
    default: /* 0xc1 */
        return fail(m, "invalid msgpack (type byte 0xc1)");
    }
}

int ds_mp_skip(ds_mp *m)
{
    /* Values still to read; each takes at least one byte, so pending
     * never exceeds the bytes left once a count has been accepted. */
    uint64_t pending = 1;
    while (pending > 0) {
        ds_mp_obj o;
        if (ds_mp_next(m, &o) < 0)
            return -1;
        pending--;
        if (o.type == DS_MP_ARRAY)
            pending += o.u;
        else if (o.type == DS_MP_MAP)
            pending += 2 * o.u;
        if (pending > m->len - m->off)
            return fail(m, WHY_TRUNCATED);
    }
    return 0;
}

const char *ds_mp_type_name(ds_mp_type t)
{
    static const char *const names[] = {
        [DS_MP_NIL] = "nil",     [DS_MP_BOOL] = "bool",
        [DS_MP_UINT] = "uint",   [DS_MP_NINT] = "negative int",
        [DS_MP_FLOAT] = "float", [DS_MP_STR] = "str",
        [DS_MP_BIN] = "bin",     [DS_MP_ARRAY] = "array",
        [DS_MP_MAP] = "map",     [DS_MP_EXT] = "ext",
    };
    return (unsigned)t < sizeof(names) / sizeof(*names) ? names[t] : "unknown";
}
