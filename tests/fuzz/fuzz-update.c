/*
 * fuzz-update.c - libFuzzer target: a sequence of pkg.updates events, as
 * one partition would deliver them. Input: records of [2-byte big-endian
 * length][event bytes]. Each record is an offset; the harness applies the
 * worker's reassembly rules with despool's own parts: decode (codec),
 * chunks of the update started by the first chunk 0 taken in order with
 * the same header (ds_event_same_update), every offset tracked and marked
 * done (offsets), and once all chunks are in, their data streamed through
 * ds_unpack into a scratch directory with the declared size and sha256.
 * Invariants: nothing crashes, the commit point never moves back and
 * never passes an offset not done, nothing escapes the destination.
 *
 * Not covered: worker.c's own flight bookkeeping, which is bound to
 * librdkafka messages; it is exercised by the integration tests.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz_dir.h"
#include "offsets.h"
#include "unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_CHUNKS 64

typedef struct pieces {
    const uint8_t *p[MAX_CHUNKS];
    size_t n[MAX_CHUNKS];
    uint32_t count, next;
} pieces;

static ssize_t next_piece(void *ctx, const void **buf)
{
    pieces *ps = ctx;
    if (ps->next == ps->count)
        return 0;
    *buf = ps->p[ps->next];
    return (ssize_t)ps->n[ps->next++];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_offsets *trk = ds_offsets_new();
    if (trk == NULL)
        abort();
    ds_event hdr, ev;
    int have = 0;
    pieces ps = {0};
    int64_t off = 0, last_cp = -1;
    ds_err err;
    for (size_t i = 0; i + 2 <= size; off++) {
        size_t len = ((size_t)data[i] << 8) | data[i + 1];
        i += 2;
        if (len > size - i)
            len = size - i;
        const uint8_t *rec = data + i;
        i += len;
        if (ds_offsets_add(trk, off, &err) != 0)
            abort();
        int ok = ds_event_decode(rec, len, &ev, &err) == 0;
        if (ok && !have && ev.chunk == 0 && ev.chunks <= MAX_CHUNKS) {
            hdr = ev;
            have = 1;
        }
        if (ok && have && ps.count < hdr.chunks &&
            ds_event_same_update(&hdr, &ev) && ev.chunk == ps.count) {
            ps.p[ps.count] = ev.data;
            ps.n[ps.count++] = ev.data_len;
        }
        /* Every event is done at once here (dead-lettered, discarded or
         * taken): the commit point must follow, and never go back. */
        if (ds_offsets_done(trk, off, &err) != 0)
            abort();
        int64_t cp = ds_offsets_commit_point(trk);
        if (cp < last_cp || cp != off + 1 || ds_offsets_pending(trk) != 0)
            abort();
        last_cp = cp;
    }
    if (have && ps.count == hdr.chunks && hdr.size <= (4u << 20)) {
        fuzz_dir d;
        fuzz_dir_make(&d);
        ds_unpack_opts o = {.size = hdr.size,
                            .sha256 = hdr.sha256,
                            .max_entries = 4096,
                            .max_window_log = 20};
        ds_unpack_stats st;
        (void)ds_unpack(d.dest, next_piece, &ps, &o, &st, &err);
        fuzz_dir_check_and_remove(&d);
    }
    ds_offsets_free(trk);
    return 0;
}
