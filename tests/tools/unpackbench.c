/*
 * unpackbench.c - ds_unpack alone, without Kafka: a .tar.zst file is fed
 * to ds_unpack in pieces (900 KiB by default, each copied into one reused
 * buffer, as the worker hands over one Kafka message at a time) and the
 * wall time, CPU time and peak RSS are printed. The declared size and
 * sha256 are computed first, untimed, by decompressing the file once (which
 * also leaves it in the page cache, as a baseline `zstd -dc` would find it).
 *
 *   unpackbench [-p PIECE] [-n COUNT] [-s] FILE.tar.zst DEST
 *
 * DEST must not exist; it is created. With -n COUNT > 1 the stream is
 * unpacked COUNT times into DEST/0, DEST/1, ... (the small-update loop).
 * With -s a syncfs() of DEST's filesystem is part of the timing. Not a
 * test: it asserts nothing about speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "unpack.h"
#include "benchclock.h"

typedef struct source {
    int fd;
    size_t piece;
    uint8_t *buf;
} source;

/* One piece per call into the same buffer: what was handed out before is
 * overwritten, so ds_unpack must be done with it (as with read_chunk). */
static ssize_t source_read(void *ctx, const void **out)
{
    source *s = ctx;
    size_t n = 0;
    while (n < s->piece) {
        ssize_t r = read(s->fd, s->buf + n, s->piece - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = s->buf;
    return (ssize_t)n;
}

/* The declared values: size and sha256 of the decompressed stream. */
static int measure(const char *path, uint64_t *size, uint8_t sha[32])
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "unpackbench: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t ilen = ZSTD_DStreamInSize(), olen = ZSTD_DStreamOutSize();
    uint8_t *in = malloc(ilen), *out = malloc(olen);
    int rc = -1;
    if (dc == NULL || md == NULL || in == NULL || out == NULL ||
        EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto done;
    *size = 0;
    size_t n;
    while ((n = fread(in, 1, ilen, f)) > 0) {
        ZSTD_inBuffer ib = {in, n, 0};
        while (ib.pos < ib.size) {
            ZSTD_outBuffer ob = {out, olen, 0};
            size_t r = ZSTD_decompressStream(dc, &ob, &ib);
            if (ZSTD_isError(r)) {
                fprintf(stderr, "unpackbench: %s: %s\n", path,
                        ZSTD_getErrorName(r));
                goto done;
            }
            EVP_DigestUpdate(md, out, ob.pos);
            *size += ob.pos;
        }
    }
    unsigned mdlen = 0;
    if (EVP_DigestFinal_ex(md, sha, &mdlen) == 1 && mdlen == 32)
        rc = 0;
done:
    free(in);
    free(out);
    EVP_MD_CTX_free(md);
    ZSTD_freeDCtx(dc);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    size_t piece = 900 * 1024;
    long count = 1;
    int do_sync = 0;
    int c;
    while ((c = getopt(argc, argv, "p:n:s")) != -1) {
        switch (c) {
        case 'p':
            piece = strtoul(optarg, NULL, 0);
            break;
        case 'n':
            count = strtol(optarg, NULL, 0);
            break;
        case 's':
            do_sync = 1;
            break;
        default:
            goto usage;
        }
    }
    if (argc - optind != 2 || piece == 0 || count < 1)
        goto usage;
    const char *file = argv[optind], *dest = argv[optind + 1];

    uint64_t size;
    uint8_t sha[32];
    if (measure(file, &size, sha) < 0)
        return 1;
    if (mkdir(dest, 0755) < 0) {
        fprintf(stderr, "unpackbench: mkdir %s: %s\n", dest, strerror(errno));
        return 1;
    }
    source s = {.fd = -1, .piece = piece, .buf = malloc(piece)};
    if (s.buf == NULL)
        return 1;
    ds_unpack_opts o = {.size = size, .sha256 = sha};
    ds_unpack_stats st = {0};
    char *sub = malloc(strlen(dest) + 32);
    double t0 = now_s(), c0 = cpu_s();
    for (long i = 0; i < count; i++) {
        const char *d = dest;
        if (count > 1) {
            sprintf(sub, "%s/%ld", dest, i);
            if (mkdir(sub, 0755) < 0) {
                fprintf(stderr, "unpackbench: mkdir %s: %s\n", sub,
                        strerror(errno));
                return 1;
            }
            d = sub;
        }
        s.fd = open(file, O_RDONLY | O_CLOEXEC);
        if (s.fd < 0) {
            fprintf(stderr, "unpackbench: open %s: %s\n", file,
                    strerror(errno));
            return 1;
        }
        ds_err err;
        ds_err_clear(&err);
        if (ds_unpack(d, source_read, &s, &o, &st, &err) < 0) {
            fprintf(stderr, "unpackbench: %s: %s\n", err.reason, err.msg);
            return 1;
        }
        close(s.fd);
    }
    double t1 = now_s();
    if (do_sync) {
        int fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || syncfs(fd) < 0) {
            fprintf(stderr, "unpackbench: syncfs %s: %s\n", dest,
                    strerror(errno));
            return 1;
        }
        close(fd);
    }
    double t2 = now_s(), c2 = cpu_s();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double per = (t1 - t0) / (double)count;
    printf("unpack: %ld x %llu bytes (%llu compressed, %llu entries) in "
           "%.0f KiB pieces\n",
           count, (unsigned long long)st.size, (unsigned long long)st.zsize,
           (unsigned long long)st.entries, (double)piece / 1024);
    printf("unpack_s=%.3f sync_s=%.3f total_s=%.3f per_call_us=%.1f "
           "cpu_s=%.3f mb_s=%.0f maxrss_mib=%.1f\n",
           t1 - t0, t2 - t1, t2 - t0, per * 1e6, c2 - c0,
           (double)st.size * (double)count / (t1 - t0) / 1e6,
           (double)ru.ru_maxrss / 1024);
    free(sub);
    free(s.buf);
    return 0;
usage:
    fprintf(stderr,
            "usage: unpackbench [-p PIECE] [-n COUNT] [-s] FILE.tar.zst "
            "DEST\n");
    return 2;
}
