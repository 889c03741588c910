/*
 * mpread.h - a bounds-checked msgpack reader over one byte buffer, for
 * decoders that must face hostile input: no allocation, no recursion,
 * every length checked against the bytes that are left. Strings, bins and
 * exts are returned as pointers into the buffer (nothing is copied).
 *
 * An array or map header is accepted only when its count could fit in the
 * bytes left (every element takes at least one byte), so a 5-byte value
 * claiming four billion elements fails at once, and a loop over a count
 * read here is bounded by the input's length. No Kafka, no msgpack-c.
 */
#ifndef DS_MPREAD_H
#define DS_MPREAD_H

#include <stddef.h>
#include <stdint.h>

typedef enum ds_mp_type {
    DS_MP_NIL,
    DS_MP_BOOL,
    DS_MP_UINT, /* any integer format holding a value >= 0 */
    DS_MP_NINT, /* a negative integer */
    DS_MP_FLOAT,
    DS_MP_STR,
    DS_MP_BIN,
    DS_MP_ARRAY,
    DS_MP_MAP,
    DS_MP_EXT
} ds_mp_type;

typedef struct ds_mp_obj {
    ds_mp_type type;
    /* UINT: the value; BOOL: 0 or 1; STR, BIN, EXT: the body's length;
     * ARRAY: elements; MAP: pairs (the elements follow the header). */
    uint64_t u;
    const uint8_t *ptr; /* STR, BIN, EXT: the body, in the buffer */
} ds_mp_obj;

typedef struct ds_mp {
    const uint8_t *p;
    size_t len;
    size_t off;      /* next byte to read */
    const char *why; /* after a failure: what is wrong (static text) */
} ds_mp;

void ds_mp_init(ds_mp *m, const void *buf, size_t len);

/* Read one object at the cursor: its header, and for str/bin/ext its body
 * too; for an array or map only the count. 0, or -1 with m->why set
 * (truncated, type byte 0xc1, a count beyond the bytes left); the cursor
 * is then unspecified. */
int ds_mp_next(ds_mp *m, ds_mp_obj *o);

/* Skip one whole value, nested arrays and maps included. 0 or -1. */
int ds_mp_skip(ds_mp *m);

/* "uint", "str", ... for error messages. */
const char *ds_mp_type_name(ds_mp_type t);

#endif
