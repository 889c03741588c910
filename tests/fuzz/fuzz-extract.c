/*
 * fuzz-extract.c - libFuzzer target: arbitrary bytes as the uncompressed
 * tar stream of an update. The harness compresses them (zstd level 1) and
 * declares their true size and sha256, so every input reaches the tar
 * layer and the filesystem writer (ds_unpack), once on the calling thread
 * and once through the helper thread. Extraction must never crash, both
 * ways must agree on success, nothing may appear outside the destination
 * (fuzz_dir.h), and the files written may not add up to more than the
 * declared size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <openssl/sha.h>
#include <zstd.h>

#include "fuzz_dir.h"
#include "unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct src {
    const uint8_t *p;
    size_t n, off;
} src;

/* The compressed stream in pieces of up to 4 KiB, as chunks would come. */
static ssize_t next(void *ctx, const void **buf)
{
    src *s = ctx;
    size_t k = s->n - s->off < 4096 ? s->n - s->off : 4096;
    *buf = s->p + s->off;
    s->off += k;
    return (ssize_t)k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    size_t cap = ZSTD_compressBound(size);
    uint8_t *z = malloc(cap), sha[32];
    if (z == NULL)
        abort();
    size_t zn = ZSTD_compress(z, cap, data, size, 1);
    if (ZSTD_isError(zn))
        abort();
    SHA256(data, size, sha);
    /* Twice: decompressing on the calling thread, and on the helper
     * thread that large streams get. Both must accept or both refuse (the
     * reason may differ: the tar layer may see a little more of a stream
     * that is cut short on one side than on the other). */
    int failed[2];
    for (int t = 0; t < 2; t++) {
        fuzz_dir d;
        fuzz_dir_make(&d);
        src s = {z, zn, 0};
        ds_unpack_opts o = {.size = size,
                            .sha256 = sha,
                            .max_entries = 4096,
                            .thread_above = t ? 1 : UINT64_MAX};
        ds_unpack_stats st;
        ds_err err;
        failed[t] = ds_unpack(d.dest, next, &s, &o, &st, &err) < 0;
        /* Refused or not, the tree written is no larger than the stream
         * it came from (a sparse file would be). */
        if (fuzz_dir_tree_bytes(&d) > size)
            abort();
        fuzz_dir_check_and_remove(&d);
    }
    if (failed[0] != failed[1])
        abort();
    free(z);
    return 0;
}
