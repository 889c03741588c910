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
