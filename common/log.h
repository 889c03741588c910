/*
 * log.h - one logfmt line per event, to stderr.
 *
 *   ts=2026-11-25T10:03:23.123Z level=info pid=4242 msg=finalized \
 *       package=app version=3 bytes=1048576
 *
 * The caller's fmt holds the key=value pairs after msg; a value that may
 * hold a space, a quote, '=' or a control character (a path, an error
 * text, a broker list) goes through DS_LV() (quoted only when logfmt
 * needs it) or ds_log_quote() (always quoted), so that it stays one
 * field. Each line is written with a single write(2), so lines from
 * several threads never interleave.
 *
 * The level threshold (error < warn < info < debug; lines above it are
 * dropped) is the environment variable DESPOOL_LOG_LEVEL, read with getenv
 * on every call (cheap next to the write(2)); unset or unknown means
 * info. main() sets it once from --log-level (ds_log_level_set) before
 * any thread starts, and a systemd unit may set it with
 * Environment=DESPOOL_LOG_LEVEL=debug. So log.c keeps no state of its
 * own: the process environment is the one place the level lives, and it
 * is not written after the threads start.
 */
#ifndef DS_LOG_H
#define DS_LOG_H

#include <stddef.h>

void ds_log(const char *level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define ds_debug(msg, ...) ds_log("debug", msg, __VA_ARGS__)
#define ds_info(msg, ...)  ds_log("info", msg, __VA_ARGS__)
#define ds_warn(msg, ...)  ds_log("warn", msg, __VA_ARGS__)
#define ds_error(msg, ...) ds_log("error", msg, __VA_ARGS__)

/* The rank of a level name (error 0, warn 1, info 2, debug 3), or -1. */
int ds_log_level_rank(const char *name);

/* Validate name and set DESPOOL_LOG_LEVEL to it (main only, before any
 * thread starts: setenv is not thread-safe). -EINVAL when name is not a
 * level; -errno when setenv fails. */
int ds_log_level_set(const char *name);

/* 1 when a line of this level is written under the current threshold. */
int ds_log_enabled(const char *level);

/* s as a logfmt value into buf of size n: bare when it is non-empty and
 * holds no space, '"', '=' or control character, else quoted as
 * ds_log_quote does. Truncated to fit. Returns buf. */
const char *ds_log_value(char *buf, size_t n, const char *s);

/* ds_log_value into a temporary that lives until the end of the caller's
 * full expression's block: ds_info("x", "path=%s", DS_LV(path)). */
#define DS_LV_MAX 1024
#define DS_LV(s)  ds_log_value((char[DS_LV_MAX]){0}, DS_LV_MAX, (s))

/* Quote s as a logfmt value ("..." with \" \\ \n \r \t escaped, other
 * control characters as \u00XX) into buf of size n, truncating if needed.
 * Returns buf. */
const char *ds_log_quote(char *buf, size_t n, const char *s);

/* Lowercase hex of len bytes into buf (size >= 2*len+1). Returns buf. */
const char *ds_hex(char *buf, const unsigned char *p, size_t len);

/* The value of one lowercase hex digit (0-9, a-f), or -1. */
int ds_hex_digit(char c);

#endif
