/*
 * strhash.h - FNV-1a over NUL-terminated strings: the hash of the
 * open-addressing indexes in statustab.c (site and package) and pkghist.c
 * (package, site and state names).
 */
#ifndef DS_STRHASH_H
#define DS_STRHASH_H

#include <stdint.h>

#define DS_FNV1A_INIT  1469598103934665603ull
#define DS_FNV1A_PRIME 1099511628211ull

/* h continued over the bytes of s (start with DS_FNV1A_INIT). */
static inline uint64_t ds_fnv1a(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * DS_FNV1A_PRIME;
    return h;
}

#endif
