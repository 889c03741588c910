/*
 * vectors.h - helpers the unit tests share for the test-vector files
 * (schemas/v1/vectors.txt, schemas/v2/vectors.txt): reading a whole file
 * and turning hex text into bytes. Header-only (static inline), so each
 * test executable gets its own copy and no CMake target is needed.
 */
#ifndef DS_TEST_VECTORS_H
#define DS_TEST_VECTORS_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Lowercase hex to bytes (malloc'd, at least 1 byte); length or -1. */
static inline long unhex(const char *s, uint8_t **out)
{
    size_t n = strlen(s);
    if (n % 2)
        return -1;
    *out = malloc(n / 2 + 1);
    cr_assert_not_null(*out);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = ds_hex_digit(s[2 * i]), lo = ds_hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(*out);
            *out = NULL;
            return -1;
        }
        (*out)[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

/* Lowercase hex of n bytes into out (2 * n + 1 bytes). */
static inline void hex_of(char *out, const uint8_t *p, size_t n)
{
    ds_hex(out, p, n);
}

/* The whole file at path, NUL-terminated (malloc'd); fails the test if it
 * cannot be read. */
static inline char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 262144;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        size_t got = fread(buf + len, 1, 65536, f);
        len += got;
        if (got == 0)
            break;
    }
    cr_assert_not(ferror(f), "read %s", path);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/*
 * Walk the text of a vector file (changed in place: lines are cut at their
 * '\n') line by line. A "k: v" line is a header: *header(ctx, k, lineno)
 * is the slot for it (NULL: an unknown header, the test fails; already
 * set: a repeated header, the test fails) and gets v. A "k=v" line goes to
 * meaning(ctx, line). '#' lines are comments. A blank line, and the end of
 * the text, close the block: close(ctx, lineno). After the walk the caller
 * checks that its last block was closed (the file ends with a newline).
 */
static inline void walk_vectors(char *text, void *ctx,
                                char **(*header)(void *, const char *, int),
                                void (*meaning)(void *, const char *),
                                void (*close)(void *, int))
{
    int lineno = 0;
    /* strtok_r would skip empty lines, so split by hand. */
    char *p = text;
    for (;;) {
        char *nl = strchr(p, '\n');
        int last = nl == NULL;
        if (nl)
            *nl = '\0';
        lineno++;
        if (*p == '\0') {
            close(ctx, lineno);
        } else if (*p != '#') {
            size_t id = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_-");
            cr_assert_gt(id, 0, "line %d: bad line", lineno);
            if (p[id] == ':') {
                char *val = p + id + 1;
                val += *val == ' ';
                p[id] = '\0';
                char **slot = header(ctx, p, lineno);
                cr_assert_not_null(slot, "line %d: unknown header %s", lineno,
                                   p);
                cr_assert_null(*slot, "line %d: repeated %s", lineno, p);
                *slot = val;
            } else {
                cr_assert_eq(p[id], '=', "line %d: expected k: or k=", lineno);
                meaning(ctx, p);
            }
        }
        if (last)
            break;
        p = nl + 1;
    }
}

#endif
