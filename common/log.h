/*
 * log.h - one logfmt line per event, to stderr.
 *
 *   ts=2026-11-25T10:03:23.123Z level=info pid=4242 msg=finalized \
 *       package=app version=3 bytes=1048576
 *
 * The caller's fmt holds the key=value pairs after msg; a free-text value
 * goes through ds_log_quote() so that it stays one greppable field. Each
 * line is written with a single write(2), so lines from several threads
 * never interleave. No state: the functions here keep nothing between calls.
 */
#ifndef DS_LOG_H
#define DS_LOG_H

#include <stddef.h>

void ds_log(const char *level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define ds_info(msg, ...)  ds_log("info", msg, __VA_ARGS__)
#define ds_warn(msg, ...)  ds_log("warn", msg, __VA_ARGS__)
#define ds_error(msg, ...) ds_log("error", msg, __VA_ARGS__)

/* Quote s as a logfmt value ("..." with \" \\ \n escaped) into buf of size
 * n, truncating if needed. Returns buf. */
const char *ds_log_quote(char *buf, size_t n, const char *s);

/* Lowercase hex of len bytes into buf (size >= 2*len+1). Returns buf. */
const char *ds_hex(char *buf, const unsigned char *p, size_t len);

/* The value of one lowercase hex digit (0-9, a-f), or -1. */
int ds_hex_digit(char c);

#endif
