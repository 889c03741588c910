/* numparse.c - strict number parsing; see numparse.h. */
#include "numparse.h"

#include <errno.h>
#include <stddef.h>

int ds_parse_u64(const char *s, uint64_t *out)
{
    /* strtoull would accept leading space, '+', '-' (wrapping) and stop at
     * junk; a version number or an option value must be all digits. */
    if (s == NULL || s[0] == '\0')
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int ds_parse_decimal(const char *s, double *out)
{
    if (s == NULL)
        return -EINVAL;
    const char *p = s;
    double v = 0;
    size_t whole = 0, frac = 0;
    for (; *p >= '0' && *p <= '9'; p++, whole++) {
        v = v * 10 + (*p - '0');
        if (v > 1e9)
            return -EINVAL;
    }
    if (*p == '.') {
        double scale = 0.1;
        for (p++; *p >= '0' && *p <= '9'; p++, frac++, scale /= 10)
            v += (*p - '0') * scale;
        if (frac == 0)
            return -EINVAL;
    }
    if (whole == 0 || *p != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}
