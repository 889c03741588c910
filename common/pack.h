/*
 * pack.h - the publisher's side of the payload: a directory or tar file
 * becomes one tar stream (entries in byte-wise sorted order, owners and
 * atime/ctime dropped, so the same tree always gives the same bytes and the
 * same sha256), compressed as one zstd stream into a file descriptor.
 * Memory is constant whatever the tree's size.
 */
#ifndef DS_PACK_H
#define DS_PACK_H

#include <stdint.h>

#include "codec.h"
#include "err.h"

typedef struct ds_pack_opts {
    int level;   /* zstd level, 1..19; 3 by default */
    int threads; /* zstd worker threads, 0 = single-threaded */
    /* Progress: called now and then with bytes of input read so far and
     * the total expected (0 if unknown). May be NULL. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    /* Checked now and then (every tar block): non-zero stops the pack with
     * -ECANCELED. May be NULL. */
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
} ds_pack_opts;

typedef struct ds_pack_stats {
    uint64_t files;                /* entries written (files, dirs, symlinks) */
    uint64_t size;                 /* bytes of the uncompressed tar stream */
    uint64_t zsize;                /* bytes written to out_fd */
    uint8_t sha256[DS_SHA256_LEN]; /* of the uncompressed tar stream */
} ds_pack_stats;

/* Pack source (a directory, or a tar file in any format/compression
 * libarchive reads, whose entries are copied in their order) into out_fd.
 * Device nodes, FIFOs and sockets in a source directory are an error
 * naming the path. */
int ds_pack(const char *source, const ds_pack_opts *opts, int out_fd,
            ds_pack_stats *st, ds_err *err);

#endif
