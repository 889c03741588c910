/*
 * gzipbuf.h - a buffer compressed as one gzip member (zlib), for HTTP
 * answers sent with Content-Encoding: gzip: the status page's matrix of
 * 5,000 packages x 50 sites is 1.2 MB of JSON and 110 KB gzipped.
 */
#ifndef DS_GZIPBUF_H
#define DS_GZIPBUF_H

#include <stddef.h>

#include "err.h"

/* Compress in[0..n) at level (1 fast .. 9 small) into a malloc'd *out of
 * *outn bytes; the caller frees it. */
int ds_gzip(const void *in, size_t n, int level, void **out, size_t *outn,
            ds_err *err);

#endif
