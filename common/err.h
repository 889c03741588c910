/*
 * err.h - despool's one error convention.
 *
 * Every function that can fail returns an int: 0 on success, a negative
 * value on failure (a negative errno, or DS_EINVAL-style codes below), and
 * fills an optional ds_err with a stable reason code and a message that
 * names the operation and the path, topic/partition/offset or field.
 * The setters return the code they store, so "record and pass up" is one
 * statement:
 *
 *     if (fd < 0)
 *         return ds_err_sys(err, "io-error", "open %s", path);
 *
 * The reason code is what lands in the dead-letter header despool.reason
 * when the failure rejects an event (bad-schema, sha256-mismatch,
 * unsafe-path, too-large, incomplete, ...); failures of the local machine
 * (disk full, permissions) use "io-error" and are retried, never
 * dead-lettered.
 */
#ifndef DS_ERR_H
#define DS_ERR_H

#include <errno.h>
#include <stddef.h>

#define DS_REASON_MAX 32
#define DS_ERRMSG_MAX 512

typedef struct ds_err {
    int code;                   /* negative errno, 0 when unset */
    char reason[DS_REASON_MAX]; /* stable code, e.g. "sha256-mismatch" */
    char msg[DS_ERRMSG_MAX];    /* "operation path: cause" */
} ds_err;

/* Store code (negative), reason and a printf-style message in err (which
 * may be NULL). Returns code. */
int ds_err_set(ds_err *err, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Like ds_err_set with code = -errno and ": strerror(errno)" appended.
 * errno is preserved. Returns -errno (never 0: -EIO if errno was 0). */
int ds_err_sys(ds_err *err, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A printable excerpt of len untrusted bytes for an error message, into
 * buf of size n (n >= 5): bytes outside 0x20..0x7e and '"' become '?', and
 * "..." marks a cut. Returns buf. */
const char *ds_err_excerpt(char *buf, size_t n, const char *s, size_t len);

/* Reset err to the no-error state. */
void ds_err_clear(ds_err *err);

#endif
