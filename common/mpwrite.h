/*
 * mpwrite.h - the msgpack writing helpers the schema codecs share
 * (codec.c for schema v1, manifest.c for schema v2): a packer writing to
 * a growing buffer, str/bin values in the smallest msgpack forms, and the
 * hand-over of the finished bytes to the caller. Nothing here knows a
 * schema; no Kafka.
 */
#ifndef DS_MPWRITE_H
#define DS_MPWRITE_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* A packer and the buffer it writes to. Initialise in place (pk points at
 * sb): never copy one. */
typedef struct ds_mpw {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} ds_mpw;

void ds_mpw_init(ds_mpw *w);

/* The start of every encoder: args_ok (the encoder's own input is there),
 * out and out_len not NULL. Clears *out and *out_len. 0, or -EINVAL with
 * reason "bad-schema" and "<op>: NULL argument". */
int ds_mpw_begin(const char *op, int args_ok, uint8_t **out, size_t *out_len,
                 ds_err *err);

/* A str or bin value (header and body); a str key. 0 or the packer's
 * non-zero failure. */
int ds_mpw_str(msgpack_packer *pk, const char *s, size_t n);
int ds_mpw_bin(msgpack_packer *pk, const void *p, size_t n);
int ds_mpw_key(msgpack_packer *pk, const char *key);

/* Hand w's bytes to the caller (*out, malloc'd; *out_len), or free them on
 * failure: rc is the packer's (non-zero: out of memory, reason
 * "io-error"), fail a ds_err code already set (< 0) or 0. Returns 0,
 * fail, or -ENOMEM. */
int ds_mpw_finish(const char *op, ds_mpw *w, int rc, int fail, uint8_t **out,
                  size_t *out_len, ds_err *err);

#endif
