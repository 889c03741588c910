/* log.c - logfmt lines to stderr; see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int ds_log_level_rank(const char *name)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; name != NULL && i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

int ds_log_level_set(const char *name)
{
    if (ds_log_level_rank(name) < 0)
        return -EINVAL;
    if (setenv("DESPOOL_LOG_LEVEL", name, 1) < 0)
        return -errno;
    return 0;
}

int ds_log_enabled(const char *level)
{
    int max = ds_log_level_rank(getenv("DESPOOL_LOG_LEVEL"));
    if (max < 0)
        max = 2; /* info */
    return ds_log_level_rank(level) <= max;
}

void ds_log(const char *level, const char *msg, const char *fmt, ...)
{
    if (!ds_log_enabled(level))
        return;
    char line[8192];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s pid=%d "
                     "msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000), level,
                     (int)getpid(), msg);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    if (fmt != NULL && fmt[0] != '\0' && len < sizeof(line) - 2) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        va_end(ap);
        if (n > 0)
            len += (size_t)n < sizeof(line) - len ? (size_t)n
                                                  : sizeof(line) - len - 1;
    }
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* One write per line: atomic with respect to other threads' lines. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

/* A byte that logfmt cannot hold bare. */
static int needs_quote(unsigned char c)
{
    return c <= ' ' || c == '"' || c == '=' || c == 0x7f;
}

const char *ds_log_value(char *buf, size_t n, const char *s)
{
    if (n == 0)
        return buf;
    int bare = s != NULL && s[0] != '\0';
    for (const char *p = s; bare && *p; p++)
        if (needs_quote((unsigned char)*p))
            bare = 0;
    if (!bare)
        return ds_log_quote(buf, n, s);
    snprintf(buf, n, "%s", s);
    return buf;
}

const char *ds_log_quote(char *buf, size_t n, const char *s)
{
    static const char digits[] = "0123456789abcdef";
    size_t o = 0;
    if (n < 3) {
        if (n)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    /* Each step writes at most 6 bytes; the closing quote and NUL need 2. */
    for (; s && *s && o + 8 <= n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            buf[o++] = '\\';
            buf[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(buf + o, "\\u00", 4);
            buf[o + 4] = digits[c >> 4];
            buf[o + 5] = digits[c & 15];
            o += 6;
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

const char *ds_hex(char *buf, const unsigned char *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        buf[2 * i] = digits[p[i] >> 4];
        buf[2 * i + 1] = digits[p[i] & 15];
    }
    buf[2 * len] = '\0';
    return buf;
}

int ds_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}
