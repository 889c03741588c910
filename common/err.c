/* err.c - the ds_err setters; see err.h for the convention. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_reason(ds_err *err, const char *reason)
{
    snprintf(err->reason, sizeof(err->reason), "%s", reason ? reason : "");
}

int ds_err_set(ds_err *err, int code, const char *reason, const char *fmt, ...)
{
    if (code == 0)
        code = -EIO;
    if (err == NULL)
        return code;
    err->code = code;
    set_reason(err, reason);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int ds_err_sys(ds_err *err, const char *reason, const char *fmt, ...)
{
    int saved = errno ? errno : EIO;
    if (err != NULL) {
        err->code = -saved;
        set_reason(err, reason);
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof(err->msg))
            snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s",
                     strerror(saved));
    }
    errno = saved;
    return -saved;
}

void ds_err_clear(ds_err *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->reason[0] = '\0';
    err->msg[0] = '\0';
}

const char *ds_err_excerpt(char *buf, size_t n, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (o + 4 >= n && len > o) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}
