/* jsonout.c - JSON output through jansson; see jsonout.h. */
#include "jsonout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *ds_json_text(const char *s)
{
    if (s == NULL)
        return json_null();
    json_t *v = json_string(s);
    if (v != NULL)
        return v;
    /* Not valid UTF-8 (json_string refuses it): bytes outside ASCII as
     * '?', as a human note would be shown. */
    char *c = strdup(s);
    if (c == NULL)
        return NULL;
    for (char *p = c; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(c);
    free(c);
    return v;
}

json_t *ds_json_secs(double v)
{
    return json_real(round(v * 1000.0) / 1000.0);
}

int ds_json_print(json_t *v, int nl)
{
    if (v == NULL)
        return -1;
    /* %.10g after rounding to milliseconds prints 0.123, not
     * 0.12300000000000001. */
    int rc = json_dumpf(v, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(v);
    if (rc == 0 && nl)
        putchar('\n');
    return rc == 0 ? 0 : -1;
}

/* 1 when s is valid UTF-8 (no overlong forms, surrogates or values past
 * U+10FFFF), as jansson's json_string() requires. */
static int utf8_valid(const unsigned char *s)
{
    while (*s != '\0') {
        unsigned c = *s++;
        int more;
        unsigned v;
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf)
            more = 1, v = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            more = 2, v = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            more = 3, v = c & 0x07;
        else
            return 0;
        for (int i = 0; i < more; i++, s++) {
            if ((*s & 0xc0) != 0x80)
                return 0;
            v = (v << 6) | (*s & 0x3f);
        }
        if ((more == 2 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) ||
            (more == 3 && (v < 0x10000 || v > 0x10ffff)))
            return 0;
    }
    return 1;
}

int ds_json_put_str(FILE *f, const char *s)
{
    if (s == NULL)
        return fputs("null", f) < 0 ? -1 : 0;
    int ascii_only = !utf8_valid((const unsigned char *)s);
    if (putc('"', f) == EOF)
        return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        int rc;
        switch (*p) {
        case '"':
            rc = fputs("\\\"", f);
            break;
        case '\\':
            rc = fputs("\\\\", f);
            break;
        case '\b':
            rc = fputs("\\b", f);
            break;
        case '\f':
            rc = fputs("\\f", f);
            break;
        case '\n':
            rc = fputs("\\n", f);
            break;
        case '\r':
            rc = fputs("\\r", f);
            break;
        case '\t':
            rc = fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                rc = fprintf(f, "\\u%04X", *p);
            else
                rc = putc(ascii_only && *p >= 0x80 ? '?' : *p, f);
        }
        if (rc < 0)
            return -1;
    }
    return putc('"', f) == EOF ? -1 : 0;
}
