/* gzipbuf.c - one gzip member from a buffer; see gzipbuf.h. */
#include "gzipbuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

int ds_gzip(const void *in, size_t n, int level, void **out, size_t *outn,
            ds_err *err)
{
    z_stream z = {0};
    *out = NULL;
    *outn = 0;
    if (n > UINT32_MAX / 2)
        return ds_err_set(err, -EFBIG, "internal",
                          "gzip: %zu bytes is too big to compress at once", n);
    /* windowBits 15 + 16: a gzip header and trailer, not zlib's. */
    int zr =
        deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (zr != Z_OK)
        return ds_err_set(err, -ENOMEM, "internal", "gzip: deflateInit2: %s",
                          zError(zr));
    uLong cap = deflateBound(&z, (uLong)n);
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        deflateEnd(&z);
        return ds_err_set(err, -ENOMEM, "internal", "gzip: out of memory");
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    zr = deflate(&z, Z_FINISH);
    size_t len = z.total_out;
    deflateEnd(&z);
    if (zr != Z_STREAM_END) {
        free(buf);
        return ds_err_set(err, -EIO, "internal", "gzip: deflate: %s",
                          zError(zr));
    }
    *out = buf;
    *outn = len;
    return 0;
}
