/*
 * testutil.h - helpers the unit tests share: scratch directories, paths
 * built with a format, and deterministic pseudo-random bytes. Header-only
 * (each test is its own program).
 */
#ifndef DS_TESTUTIL_H
#define DS_TESTUTIL_H

#include <criterion/criterion.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"

/* A fresh directory /tmp/despool-test-<name>-XXXXXX (free with tu_rm). */
static inline char *tu_tmpdir(const char *name)
{
    char *d = NULL;
    cr_assert_geq(asprintf(&d, "/tmp/despool-test-%s-XXXXXX", name), 0);
    cr_assert_not_null(mkdtemp(d), "mkdtemp %s", d);
    return d;
}

/* rm -rf dir, then free it. */
static inline void tu_rm(char *dir)
{
    ds_err err;
    cr_assert_eq(ds_rm_rf(dir, &err), 0, "rm -rf %s: %s", dir, err.msg);
    free(dir);
}

/* A path from a format (free it). */
static inline char *tu_pathf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static inline char *tu_pathf(const char *fmt, ...)
{
    char *p = NULL;
    va_list ap;
    va_start(ap, fmt);
    cr_assert_geq(vasprintf(&p, fmt, ap), 0);
    va_end(ap);
    return p;
}

/* n bytes of xorshift64 output from seed: the same seed, the same bytes. */
static inline void tu_fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (uint8_t)(s >> 29);
    }
}

#endif
