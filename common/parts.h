/*
 * parts.h - the publisher's part cutter (schema v2's content store): a
 * streaming sink that takes a version's uncompressed tar stream in write
 * calls of any size, cuts it into consecutive slices (parts), compresses
 * each part as one zstd frame of its own on a small thread pool, and hands
 * the parts to a callback in stream order.
 *
 * Guarantees:
 *  - Part i is bytes [offset, offset + size) of the stream; the parts are
 *    emitted in order, index 0, 1, 2, ..., with no gap and no overlap.
 *  - Each frame is a complete zstd frame (content size in its header, XXH64
 *    checksum) that decodes alone to its slice; the frames concatenated in
 *    index order are a valid zstd stream of the whole stream.
 *  - Part id = SHA-256 of the slice's uncompressed bytes.
 *  - 1 <= size <= DS_PART_MAX for every part except the empty stream's
 *    (see below); zsize <= DS_PART_ZMAX.
 *  - Deterministic: the same bytes, level, part size and cut rule give the
 *    same parts, byte for byte, whatever the thread count and the sizes of
 *    the write calls. (Each frame is compressed by one thread with
 *    ZSTD_compress2 at a fixed level, never with zstd's own workers. Frames
 *    may differ between zstd library versions; ids never do.)
 *  - Memory is bounded and independent of the stream's size: at most
 *    2 x threads + 2 parts are in flight (each DS_PART_MAX bytes of input
 *    plus DS_PART_ZMAX of frame, allocated on first use), plus one zstd
 *    context per thread. About 11 MiB + 2 zstd contexts with 2 threads.
 *
 * The empty stream (finish without a byte written) gives exactly one part
 * of size 0 (id = SHA-256 of nothing, a frame of a few bytes that decodes
 * to nothing), so that "the frames concatenated are a valid zstd stream"
 * holds for every stream; ds_pack never produces an empty stream (a tar
 * always ends with its end-of-archive blocks).
 *
 * Threads: the caller's thread runs write, finish, the cut rule and every
 * callback (one at a time, never concurrently); the pool's threads hash
 * and compress. The SHA-256 of the whole stream (one part at a time, in
 * order) is taken by a pool thread, or by the caller's thread when it
 * would otherwise wait for the pool: never on the writer's path while the
 * pool keeps up.
 *
 * Errors: every function returns 0 or a negative code and fills err. A
 * failure is sticky: once a write, a callback, a pool thread or a cancel
 * failed, every later write and finish returns the same code and message
 * and no more parts are emitted. ds_parts_free then joins the threads and
 * frees everything, whatever state the sink is in.
 */
#ifndef DS_PARTS_H
#define DS_PARTS_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"
#include "manifest.h"

/* Largest part: 896 KiB of uncompressed bytes. Its frame is at most
 * DS_PART_ZMAX bytes (ZSTD_COMPRESSBOUND(DS_PART_MAX), zstd's worst case
 * for any input; incompressible data is stored in raw blocks, about 40
 * bytes over its size), so a part event (frame + a small msgpack map +
 * key + headers) fits Kafka's default message limit of 1,000,000 bytes. */
#define DS_PART_MAX  DS_PART_SIZE_MAX /* schema v2's limits (manifest.h) */
#define DS_PART_ZMAX DS_PART_ZSIZE_MAX

#define DS_PARTS_THREADS_MAX 64

/* One part, as handed to the callback. frame is valid only during the
 * callback (the sink reuses the buffer afterwards): copy what you keep. */
typedef struct ds_cut_part {
    uint64_t index;            /* 0, 1, 2, ... in stream order */
    uint64_t offset;           /* of the slice in the uncompressed stream */
    uint8_t id[DS_SHA256_LEN]; /* SHA-256 of the slice */
    size_t size;               /* bytes of the slice */
    const uint8_t *data;       /* the slice itself */
    const uint8_t *frame;      /* one zstd frame of the slice; NULL when
                                  want_frame declined it (ds_parts_frame) */
    size_t zsize;              /* bytes at frame (0 without one) */
} ds_cut_part;

/* Called on the caller's thread, in index order. Returns 0, or a negative
 * code to stop the sink: the write or finish that emitted the part then
 * fails with that code and with what the callback stored in err (when it
 * stored nothing: reason "internal", "emit part N failed"). */
typedef int (*ds_part_fn)(void *ctx, const ds_cut_part *part, ds_err *err);

/*
 * A cut rule (content-defined cutting plugs in here). Called on the
 * caller's thread with the stream's next bytes, buf[0..n), while the part
 * being filled already holds `have` bytes (have == 0: a new part starts
 * with buf[0]; a rule with a rolling state resets it then). The sink never
 * offers more than DS_PART_MAX - have bytes (it cuts at the maximum part
 * size by itself). Returns how many of the n bytes belong to the current
 * part, k <= n: k == n means no boundary inside buf (the part goes on);
 * k < n means the part ends after buf[k - 1] (k == 0: right before
 * buf[0], allowed only when have > 0). The rule must be a function of the
 * bytes alone (not of how they were split into write calls) for the
 * parts to be deterministic. A return of k > n, or k == 0 with have == 0,
 * fails the sink (reason "internal").
 */
typedef size_t (*ds_parts_cut_fn)(void *ctx, const uint8_t *buf, size_t n,
                                  size_t have);

typedef struct ds_parts_opts {
    int level;        /* zstd level; 0 = 3 */
    int threads;      /* compression threads; 0 = one per available core */
    size_t part_size; /* fixed cut size, 1..DS_PART_MAX; 0 = DS_PART_MAX */
    /* Optional cut rule; NULL = fixed-size cuts every part_size bytes.
     * With a rule, part_size is still the maximum part size. */
    ds_parts_cut_fn cut;
    void *cut_ctx;
    /* Optional: asked on a pool thread, once a part is hashed, whether
     * its frame is wanted; 0 = no (the caller already has the part, e.g.
     * the store holds it): it is not compressed and reaches the callback
     * with frame NULL and zsize 0, and the callback may still get a frame
     * with ds_parts_frame. Must be thread-safe; NULL = every frame. */
    int (*want_frame)(void *ctx, const uint8_t *id, size_t size);
    void *want_ctx;
    /* Names the stream in error messages (e.g. the source path); may be
     * NULL. Must outlive the sink. */
    const char *name;
} ds_parts_opts;

typedef struct ds_parts_totals {
    uint64_t parts;                /* parts emitted */
    uint64_t size;                 /* bytes of the uncompressed stream */
    uint64_t zsize;                /* sum of the frames' sizes */
    uint8_t sha256[DS_SHA256_LEN]; /* of the whole uncompressed stream */
} ds_parts_totals;

typedef struct ds_parts ds_parts;

/* Create a sink emitting to emit(emit_ctx, ...). opts may be NULL (all
 * defaults). Starts the pool's threads. On success *out is the sink (free
 * with ds_parts_free); on failure *out is NULL. */
int ds_parts_new(const ds_parts_opts *opts, ds_part_fn emit, void *emit_ctx,
                 ds_parts **out, ds_err *err);

/* Append buf[0..n) to the stream. Copies the bytes: buf may be reused when
 * it returns. May emit any number of completed parts (in order) and, when
 * every slot is in flight, waits for the oldest part to be compressed. */
int ds_parts_write(ds_parts *s, const void *buf, size_t n, ds_err *err);

/* From the part callback, for a part that came without a frame: compress
 * it now on the caller's thread, with the pool's settings (the same
 * frame). *frame is valid until the callback returns. */
int ds_parts_frame(ds_parts *s, const ds_cut_part *p, const uint8_t **frame,
                   size_t *zsize, ds_err *err);

/* End the stream: cut the last part, wait for every part, emit the rest,
 * and fill *t (may be NULL). After finish, writes fail. */
int ds_parts_finish(ds_parts *s, ds_parts_totals *t, ds_err *err);

/* Stop the sink: a write or finish in progress (blocked waiting for the
 * pool) and every later one fail with -ECANCELED, reason "cancelled"; no
 * more parts are compressed or emitted. Safe from any thread (not from a
 * signal handler); a no-op once the sink has finished or failed. */
void ds_parts_cancel(ds_parts *s);

/* Join the pool's threads and free the sink, in any state (parts not yet
 * emitted are discarded). Accepts NULL. Not concurrently with a call on
 * the sink. */
void ds_parts_free(ds_parts *s);

#endif
