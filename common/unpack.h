/*
 * unpack.h - the worker's side of the payload: a zstd-compressed tar stream
 * arriving in pieces is decompressed, hashed and extracted into a staging
 * directory as it arrives (pull model: unpack asks its source for the next
 * piece). Memory is constant: one piece of input and a few output buffers
 * (one for small streams; for large ones a ring of them between a helper
 * thread that decompresses and hashes and the calling thread that parses
 * the tar and writes files).
 *
 * Verified: total uncompressed size equals the declared size (decompression
 * stops the moment it would exceed it), sha256 equals the declared digest,
 * the zstd stream ends exactly at the end of the input, and every tar entry
 * is a regular file, directory, symlink or hardlink with a relative path
 * inside the destination. Owners, ACLs, xattrs and setuid/setgid/sticky
 * bits are never applied. Modes (permission bits) and mtimes are.
 *
 * Bounded on disk, not only in the stream: the sizes of the regular files
 * extracted add up to at most the declared size (checked at each entry's
 * header, before it is written), sparse files are refused (their holes
 * would let a few bytes claim terabytes), the entry cap bounds every name
 * created, and no file gets more than 65000 names (hardlinks).
 *
 * Failure reasons (err->reason), the event's fault (dead-letter):
 *   corrupt-zstd, size-mismatch, sha256-mismatch;
 *   corrupt-tar   not a tar stream, or a sparse file, or an entry whose
 *                 data does not match its header;
 *   unsafe-path   a path or link target outside the destination, a device
 *                 node, FIFO or socket, a path over 4096 bytes or a
 *                 component over 255, or a name the filesystem cannot
 *                 store (ENAMETOOLONG, EILSEQ, EINVAL);
 *   too-large     over the declared size, the entry cap or the zstd
 *                 window; a file or link count the filesystem cannot
 *                 hold (EFBIG, EMLINK);
 * the site's fault (retry): io-error (disk full, quota, I/O error,
 * permissions, read-only filesystem); internal: out of memory or a
 * library failure; cancelled: the source said so.
 */
#ifndef DS_UNPACK_H
#define DS_UNPACK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"
#include "err.h"

/* Source of compressed bytes. Returns the number of bytes at *buf (> 0),
 * 0 at the end of the stream, or a negative code to abort (then unpack
 * fails with reason "cancelled"). *buf must stay valid until the next call.
 * For a large stream it is called from unpack's helper thread (one call at
 * a time, all from that thread); after a failure in the tar layer unpack
 * calls it no more, but waits for a call in progress to return. */
typedef ssize_t (*ds_unpack_read_fn)(void *ctx, const void **buf);

typedef struct ds_unpack_opts {
    uint64_t size;           /* declared uncompressed size */
    const uint8_t *sha256;   /* declared digest, 32 bytes */
    uint64_t max_entries;    /* 0 = no cap */
    unsigned max_window_log; /* 0 = zstd's default limit */
    /* Streams declaring more than this many bytes are decompressed and
     * hashed on a helper thread while the calling thread writes files
     * (then the source is called from that thread, never from two at
     * once). 0 = the default, 1 MiB; UINT64_MAX = never. */
    uint64_t thread_above;
    /* Optional: called on the calling thread when unpack gives up early
     * (the tar side failed) while the helper thread may be blocked in rd
     * waiting for a piece that may never come; rd must then return < 0
     * promptly. Without it, unpack returns when rd next returns. */
    void (*interrupt)(void *rd_ctx);
    /* 0: the stream is exactly one zstd frame (schema v1); anything after
     * it is corrupt-zstd. Non-zero: any number of complete frames one
     * after another (schema v2's parts, concatenated in order); the
     * stream must still end at the end of a frame. */
    int multi_frame;
    /* Non-zero: the source gives the uncompressed tar stream itself (schema
     * v2's parts, each already decompressed and checked against its id);
     * no zstd. Size and sha256 are still verified over the whole stream. */
    int raw;
    /* Optional: the installed version's root. A regular file equal to the
     * file at the same path there (bytes, size, mode, mtime) is made a
     * hardlink to it instead of a copy (dedup.h). */
    const char *link_from;
} ds_unpack_opts;

typedef struct ds_unpack_stats {
    uint64_t entries; /* tar entries extracted */
    uint64_t size;    /* uncompressed bytes seen */
    uint64_t zsize;   /* compressed bytes consumed */
    uint64_t linked;  /* files linked to the installed version's */
    uint64_t linked_bytes;
} ds_unpack_stats;

/* The reason for a filesystem call that failed with errnum while
 * extracting (names: the call creates a name the archive gave: create,
 * mkdir, symlink, link). The archive's fault when the entry is more than
 * the site's filesystem can hold, so that a retry would fail alike for
 * ever: "too-large" for EFBIG and EMLINK, "unsafe-path" for ENAMETOOLONG,
 * EILSEQ and, when names is set, EINVAL. Any other errno is the site's:
 * "io-error". */
const char *ds_unpack_fs_reason(int errnum, int names);

/* Extract the stream from rd into dest (an existing, empty directory).
 * On failure dest may hold a partial tree: the caller discards it. */
int ds_unpack(const char *dest, ds_unpack_read_fn rd, void *rd_ctx,
              const ds_unpack_opts *opts, ds_unpack_stats *st, ds_err *err);

#endif
