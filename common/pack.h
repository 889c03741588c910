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
#include "parts.h"

typedef struct ds_pack_opts {
    /* ds_pack only (ds_pack_parts: the sink's own options): */
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
    uint64_t zsize;                /* bytes written to out_fd, or the sum
                                      of the parts' frames */
    uint8_t sha256[DS_SHA256_LEN]; /* of the uncompressed tar stream */
    uint64_t parts;                /* parts emitted; 0 from ds_pack */
} ds_pack_stats;

/* Pack source (a directory, or a tar file in any format/compression
 * libarchive reads, whose entries are copied in their order) into out_fd.
 * Device nodes, FIFOs and sockets in a source directory are an error
 * naming the path. */
int ds_pack(const char *source, const ds_pack_opts *opts, int out_fd,
            ds_pack_stats *st, ds_err *err);

/* The same tar stream as ds_pack (same bytes, same size and sha256) written
 * into sink, a fresh part cutter (ds_parts_new), which this call finishes:
 * on success every part has been emitted and st->zsize is the sum of the
 * frames. On failure sink is cancelled (no more parts are emitted) and the
 * error is the first one, the packer's or the sink's (e.g. the part
 * callback's). Either way the caller frees sink. opts->level and
 * opts->threads are not used: the sink has its own. */
int ds_pack_parts(const char *source, const ds_pack_opts *opts, ds_parts *sink,
                  ds_pack_stats *st, ds_err *err);

/* The same tar stream as ds_pack, uncompressed and unhashed, handed to out
 * in pieces of up to 64 KiB, in order, on the caller's thread (st->zsize
 * is 0, st->sha256 unset). out returns 0, or a negative code (with err
 * filled) that stops the pack and becomes its return. A site re-creates
 * an installed version's stream with it (localparts.h). */
typedef int (*ds_pack_out_fn)(void *ctx, const void *buf, size_t n,
                              ds_err *err);
int ds_pack_stream(const char *source, const ds_pack_opts *opts,
                   ds_pack_out_fn out, void *out_ctx, ds_pack_stats *st,
                   ds_err *err);

/* Before packing, a bound of the tar stream's size, for what depends on
 * it (pkgpub's transaction timeout): a directory's regular file bytes plus
 * 2.5 KiB per entry for the tar's own blocks (header, pax header for long
 * names, padding: a bound unless names or link targets exceed ~1 KiB),
 * from the same pre-walk the pack makes, which also refuses unsupported
 * files; a tar file's size (not a bound when it is compressed). */
int ds_pack_source_bytes(const char *source, uint64_t *bytes, ds_err *err);

#endif
