/*
 * test-pack.c - archive streaming: a generated tree (and a generated tar
 * file) packed to tar+zstd and unpacked from pieces of many sizes must come
 * back identical; packing is deterministic; every malformed or hostile
 * stream fails with its reason and writes nothing outside the destination;
 * what is written is bounded by the declared size (sparse files refused,
 * a file's header checked before it is created, at most 65000 names per
 * file); a failed filesystem call is the archive's fault or the site's by
 * its errno (EFBIG from RLIMIT_FSIZE, ENOSPC from a small tmpfs); two
 * unpacks run at once in two threads. All data is generated here.
 */
#include <criterion/criterion.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "fsutil.h"
#include "pack.h"
#include "unpack.h"
#include "testutil.h"

/* --- helpers ---------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

static void write_file(const char *path, const void *data, size_t len,
                       mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "create %s", path);
    cr_assert_eq(write(fd, data, len), (ssize_t)len, "write %s", path);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

static void set_mtime(const char *path, time_t sec, long nsec)
{
    struct timespec ts[2] = {{0, UTIME_OMIT}, {sec, nsec}};
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0,
                 "utimensat %s", path);
}

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static buf read_all(const char *path)
{
    buf b = {0};
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s", path);
    uint8_t tmp[65536];
    ssize_t n;
    while ((n = read(fd, tmp, sizeof(tmp))) > 0)
        buf_add(&b, tmp, (size_t)n);
    cr_assert_eq(n, 0);
    close(fd);
    return b;
}

static void sha256_of(const void *p, size_t n, uint8_t out[32])
{
    unsigned len = 0;
    cr_assert_eq(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
}

/* The file names of the sample tree that later tests refer to. */
#define UTF8_NAME                                                              \
    "dir with space/na\xc3\xafve \xc3\xbcn\xc3\xaf \xe2\x82\xac.txt"
#define RANDOM_SIZE (3 * 1024 * 1024)
#define TEXT_SIZE   (5 * 1024 * 1024)

/*
 * The sample tree: nested dirs, an empty dir, an empty file, 3 MB of random
 * bytes, 5 MB of compressible text, modes 0755/0600/0555 (a read-only
 * directory), symlinks to a file and to a dir, a UTF-8 name with spaces,
 * a 200-byte path, and fixed mtimes (with nanoseconds) on everything.
 * Returns the sum of regular file sizes.
 */
static uint64_t make_tree(const char *root)
{
    char *p;
    uint64_t total = 0;
    static const char *dirs[] = {
        "a", "a/b", "a/b/c", "bin", "empty", "dir with space", "ro"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        p = tu_pathf("%s/%s", root, dirs[i]);
        cr_assert_eq(mkdir(p, 0755), 0, "mkdir %s", p);
        free(p);
    }
    p = tu_pathf("%s/a/empty.txt", root);
    write_file(p, "", 0, 0644);
    free(p);

    uint8_t *data = malloc(TEXT_SIZE);
    cr_assert_not_null(data);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < RANDOM_SIZE; i += 8) {
        uint64_t v = rng_next(&s);
        memcpy(data + i, &v, 8);
    }
    p = tu_pathf("%s/a/b/random.bin", root);
    write_file(p, data, RANDOM_SIZE, 0644);
    free(p);
    total += RANDOM_SIZE;

    size_t off = 0;
    for (unsigned line = 0; off < TEXT_SIZE; line++) {
        char l[128];
        int n = snprintf(l, sizeof(l),
                         "%08u INFO request served path=/pkg/%u status=200\n",
                         line, line % 97);
        size_t take = (size_t)n < TEXT_SIZE - off ? (size_t)n : TEXT_SIZE - off;
        memcpy(data + off, l, take);
        off += take;
    }
    p = tu_pathf("%s/a/b/c/text.log", root);
    write_file(p, data, TEXT_SIZE, 0644);
    free(p);
    total += TEXT_SIZE;
    free(data);

    p = tu_pathf("%s/bin/run.sh", root);
    write_file(p, "#!/bin/sh\necho hi\n", 18, 0755);
    free(p);
    total += 18;
    p = tu_pathf("%s/secret", root);
    write_file(p, "s3cret\n", 7, 0600);
    free(p);
    total += 7;
    p = tu_pathf("%s/ro/readme", root);
    write_file(p, "read only dir\n", 14, 0444);
    free(p);
    total += 14;
    p = tu_pathf("%s/" UTF8_NAME, root);
    write_file(p, "unicode\n", 8, 0644);
    free(p);
    total += 8;
    /* Not UTF-8 at all: names are bytes and must survive as such. */
    p = tu_pathf("%s/dir with space/latin1-\xe9t\xe9", root);
    write_file(p, "latin1\n", 7, 0644);
    free(p);
    total += 7;

    /* 200-byte relative path: long/ + 4 x 44-byte dirs + a file name. */
    char rel[256] = "long";
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(rel);
        rel[n] = '/';
        memset(rel + n + 1, 'd' + i, 43);
        rel[n + 44] = '\0';
        p = tu_pathf("%s/%s", root, rel);
        if (i == 0) {
            char *l = tu_pathf("%s/long", root);
            cr_assert_eq(mkdir(l, 0755), 0);
            free(l);
        }
        cr_assert_eq(mkdir(p, 0755), 0, "mkdir %s", p);
        free(p);
    }
    size_t n = strlen(rel);
    rel[n] = '/';
    memset(rel + n + 1, 'f', 200 - n - 1);
    rel[200] = '\0';
    cr_assert_eq(strlen(rel), 200);
    p = tu_pathf("%s/%s", root, rel);
    write_file(p, "long\n", 5, 0644);
    free(p);
    total += 5;

    p = tu_pathf("%s/link-file", root);
    cr_assert_eq(symlink("a/b/random.bin", p), 0);
    free(p);
    p = tu_pathf("%s/a/link-dir", root);
    cr_assert_eq(symlink("b/c", p), 0);
    free(p);

    /* mtimes last, deepest first, so creating children does not reset
     * them; each entry gets its own second and a nanosecond part. */
    static const char *order[] = {"dir with space/latin1-\xe9t\xe9",
                                  "a/b/c/text.log",
                                  "a/b/random.bin",
                                  "a/empty.txt",
                                  "a/link-dir",
                                  "bin/run.sh",
                                  "secret",
                                  "ro/readme",
                                  UTF8_NAME,
                                  "link-file",
                                  "a/b/c",
                                  "a/b",
                                  "a",
                                  "bin",
                                  "empty",
                                  "dir with space"};
    time_t t = 1500000000;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        p = tu_pathf("%s/%s", root, order[i]);
        set_mtime(p, t + (time_t)i * 3600, 123456789);
        free(p);
    }
    p = tu_pathf("%s/%s", root, rel);
    set_mtime(p, t - 86400, 5);
    free(p);
    for (int i = 4; i >= 0; i--) {
        rel[i == 0 ? 4 : 4 + 44 * i] = '\0';
        p = tu_pathf("%s/%s", root, rel);
        set_mtime(p, t - 86400 * (i + 2), 0);
        free(p);
    }
    p = tu_pathf("%s/ro", root);
    cr_assert_eq(chmod(p, 0555), 0);
    set_mtime(p, t + 999, 0);
    free(p);
    return total;
}

static int cmp_names(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_dots(const struct dirent *d)
{
    return strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0;
}

static void cmp_content(const char *a, const char *b)
{
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    cr_assert(fa >= 0 && fb >= 0, "open %s / %s", a, b);
    static __thread uint8_t ba[65536], bb[65536];
    for (;;) {
        ssize_t na = read(fa, ba, sizeof(ba));
        ssize_t nb = read(fb, bb, sizeof(bb));
        cr_assert_eq(na, nb, "length differs: %s", b);
        cr_assert_geq(na, 0);
        if (na == 0)
            break;
        cr_assert_eq(memcmp(ba, bb, (size_t)na), 0, "content differs: %s", b);
    }
    close(fa);
    close(fb);
}

/* Same names, types, permission bits, mtimes (seconds), symlink targets
 * and bytes, recursively. Returns the number of entries compared. */
static uint64_t cmp_trees(const char *a, const char *b)
{
    struct dirent **la, **lb;
    int na = scandir(a, &la, not_dots, cmp_names);
    int nb = scandir(b, &lb, not_dots, cmp_names);
    cr_assert(na >= 0 && nb >= 0, "scandir %s / %s", a, b);
    cr_assert_eq(na, nb, "entry count differs in %s", b);
    uint64_t n = 0;
    for (int i = 0; i < na; i++) {
        cr_assert_str_eq(la[i]->d_name, lb[i]->d_name, "names in %s", b);
        char *pa = tu_pathf("%s/%s", a, la[i]->d_name);
        char *pb = tu_pathf("%s/%s", b, lb[i]->d_name);
        struct stat sa, sb;
        cr_assert_eq(lstat(pa, &sa), 0);
        cr_assert_eq(lstat(pb, &sb), 0);
        cr_assert_eq(sa.st_mode & S_IFMT, sb.st_mode & S_IFMT, "type %s", pb);
        if (!S_ISLNK(sa.st_mode))
            cr_assert_eq(sa.st_mode & 07777, sb.st_mode & 07777,
                         "mode %s: %o vs %o", pb, sa.st_mode & 07777,
                         sb.st_mode & 07777);
        cr_assert_eq(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec, "mtime %s", pb);
        if (S_ISREG(sa.st_mode)) {
            cr_assert_eq(sa.st_size, sb.st_size, "size %s", pb);
            cmp_content(pa, pb);
        } else if (S_ISLNK(sa.st_mode)) {
            char ta[PATH_MAX], tb[PATH_MAX];
            ssize_t la_ = readlink(pa, ta, sizeof(ta));
            ssize_t lb_ = readlink(pb, tb, sizeof(tb));
            cr_assert(la_ > 0 && la_ == lb_ && memcmp(ta, tb, (size_t)la_) == 0,
                      "symlink target %s", pb);
        } else if (S_ISDIR(sa.st_mode)) {
            n += cmp_trees(pa, pb);
        }
        n++;
        free(pa);
        free(pb);
        free(la[i]);
        free(lb[i]);
    }
    free(la);
    free(lb);
    return n;
}

/* --- pack / unpack drivers -------------------------------------------- */

typedef struct prog {
    uint64_t calls, done, total;
    int backwards;
} prog;

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    prog *p = ctx;
    if (done < p->done)
        p->backwards = 1;
    p->calls++;
    p->done = done;
    p->total = total;
}

static int pack_to(const char *src, const char *out, int level, int threads,
                   prog *pr, ds_pack_stats *st, ds_err *err)
{
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    ds_pack_opts o = {.level = level, .threads = threads};
    if (pr != NULL) {
        o.progress = on_progress;
        o.progress_ctx = pr;
    }
    int rc = ds_pack(src, &o, fd, st, err);
    close(fd);
    return rc;
}

/* Serves data in pieces cycling through sizes[]; fails (-1) once pos
 * reaches fail_at (when fail_at > 0). With edges > 0, sizes[] is used only
 * in the first and last edges bytes and the middle comes in 64 KiB pieces:
 * the whole 8 MiB sample one byte a call took a minute (most of it the
 * helper thread's hand-offs) and tests nothing the edges do not. Each piece is
 * copied into a fresh buffer, as a Kafka message would be, and the previous one
 * is poisoned and freed on every call (as read_chunk destroys the previous
 * message): unpack must be done with a piece once it asks for the next. Calls
 * that overlap (from two threads at once) are counted. */
typedef struct feeder {
    const uint8_t *data;
    size_t len, pos;
    const size_t *sizes;
    size_t nsizes, k;
    size_t fail_at;
    size_t edges;
    uint8_t *piece;
    size_t piece_len;
    atomic_int busy, overlaps;
} feeder;

static ssize_t feed(void *ctx, const void **out)
{
    feeder *f = ctx;
    if (atomic_fetch_add(&f->busy, 1) != 0)
        atomic_fetch_add(&f->overlaps, 1);
    if (f->piece != NULL) {
        memset(f->piece, 0xa5, f->piece_len);
        free(f->piece);
        f->piece = NULL;
    }
    ssize_t rc;
    if (f->fail_at > 0 && f->pos >= f->fail_at) {
        rc = -1;
    } else if (f->pos == f->len) {
        rc = 0;
    } else {
        size_t n = f->sizes[f->k++ % f->nsizes];
        if (f->edges > 0 && f->pos >= f->edges && f->len - f->pos > f->edges)
            n = 65536;
        if (n > f->len - f->pos)
            n = f->len - f->pos;
        f->piece = malloc(n);
        cr_assert_not_null(f->piece);
        f->piece_len = n;
        memcpy(f->piece, f->data + f->pos, n);
        f->pos += n;
        *out = f->piece;
        rc = (ssize_t)n;
    }
    atomic_fetch_sub(&f->busy, 1);
    return rc;
}

static int unpack_edges(const char *dest, const uint8_t *data, size_t len,
                        const size_t *sizes, size_t nsizes, size_t edges,
                        const ds_unpack_opts *o, ds_unpack_stats *st,
                        ds_err *err)
{
    feeder f = {.data = data,
                .len = len,
                .sizes = sizes,
                .nsizes = nsizes,
                .edges = edges};
    ds_err_clear(err);
    int rc = ds_unpack(dest, feed, &f, o, st, err);
    free(f.piece);
    cr_assert_eq(atomic_load(&f.overlaps), 0,
                 "the source was called from "
                 "two threads at once");
    return rc;
}

static int unpack_from(const char *dest, const uint8_t *data, size_t len,
                       const size_t *sizes, size_t nsizes,
                       const ds_unpack_opts *o, ds_unpack_stats *st,
                       ds_err *err)
{
    return unpack_edges(dest, data, len, sizes, nsizes, 0, o, st, err);
}

/* A sample tree packed once, shared by a test's steps. */
typedef struct sample {
    char *tmp, *src, *zst;
    uint64_t file_bytes;
    ds_pack_stats st;
    buf z;
} sample;

static void sample_make(sample *s)
{
    memset(s, 0, sizeof(*s));
    s->tmp = tu_tmpdir("pack");
    s->src = tu_pathf("%s/src", s->tmp);
    s->zst = tu_pathf("%s/out.tar.zst", s->tmp);
    cr_assert_eq(mkdir(s->src, 0755), 0);
    s->file_bytes = make_tree(s->src);
    ds_err err;
    cr_assert_eq(pack_to(s->src, s->zst, 0, 0, NULL, &s->st, &err), 0,
                 "pack: %s", err.msg);
    s->z = read_all(s->zst);
}

static void sample_free(sample *s)
{
    free(s->z.p);
    free(s->src);
    free(s->zst);
    tu_rm(s->tmp);
}

static const size_t piece_64k[] = {65536};

static char *fresh_dir(const char *tmp, const char *name)
{
    char *d = tu_pathf("%s/%s", tmp, name);
    cr_assert_eq(mkdir(d, 0755), 0, "mkdir %s", d);
    return d;
}

/* --- round trip --------------------------------------------------------- */

Test(pack, round_trip_in_pieces_of_every_size, .timeout = 240)
{
    sample s;
    sample_make(&s);

    /* The stats describe the stream that was written. */
    cr_assert_eq(s.st.zsize, s.z.len);
    unsigned long long csize = ZSTD_getFrameContentSize(s.z.p, s.z.len);
    cr_assert_neq(csize, ZSTD_CONTENTSIZE_ERROR);
    uint8_t *tar = malloc(s.st.size);
    cr_assert_not_null(tar);
    size_t dn = ZSTD_decompress(tar, s.st.size, s.z.p, s.z.len);
    cr_assert(!ZSTD_isError(dn), "%s", ZSTD_getErrorName(dn));
    cr_assert_eq(dn, s.st.size);
    uint8_t md[32];
    sha256_of(tar, dn, md);
    cr_assert_eq(memcmp(md, s.st.sha256, 32), 0, "sha256 of the tar stream");
    /* Owners dropped: no user or group name in any ustar header. */
    cr_assert_eq(memmem(tar, dn, "root", 4), NULL);
    free(tar);
    cr_assert_lt(s.st.zsize, s.st.size, "the text file compresses");

    ds_unpack_opts o = {.size = s.st.size, .sha256 = s.st.sha256};
    static const size_t one[] = {1}, seven[] = {7}, k64[] = {65536},
                        kafka[] = {921600}, mixed[] = {1, 7, 65536, 921600, 3};
    const struct {
        const char *name;
        const size_t *sizes;
        size_t n, edges;
    } runs[] = {{"p1", one, 1, 512 * 1024},
                {"p7", seven, 1, 512 * 1024},
                {"p64k", k64, 1, 0},
                {"p900k", kafka, 1, 0},
                {"mixed", mixed, 5, 0}};
    for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
        char *dest = fresh_dir(s.tmp, runs[r].name);
        ds_unpack_stats us;
        ds_err err;
        double t0 = now_s();
        int rc = unpack_edges(dest, s.z.p, s.z.len, runs[r].sizes, runs[r].n,
                              runs[r].edges, &o, &us, &err);
        double dt = now_s() - t0;
        cr_assert_eq(rc, 0, "%s: %s: %s", runs[r].name, err.reason, err.msg);
        cr_assert_eq(us.entries, s.st.files, "%s entries", runs[r].name);
        cr_assert_eq(us.size, s.st.size);
        cr_assert_eq(us.zsize, s.st.zsize);
        uint64_t n = cmp_trees(s.src, dest);
        cr_assert_eq(n, s.st.files, "every entry compared");
        if (runs[r].sizes == kafka)
            fprintf(stderr,
                    "[info] unpack %llu tar bytes in 900 KiB pieces: %.3f s, "
                    "%.0f MB/s\n",
                    (unsigned long long)s.st.size, dt, s.st.size / dt / 1e6);
        free(dest);
    }
    sample_free(&s);
}

/* Raw mode (schema v2's parts, each already decompressed and checked):
 * the uncompressed tar stream in pieces of any size extracts to the same
 * tree, on both paths (small: thread_above UINT64_MAX; large: the helper
 * thread), and size and sha256 still bind the whole stream. */
Test(pack, raw_stream_round_trip_and_checks, .timeout = 120)
{
    sample s;
    sample_make(&s);
    uint8_t *tar = malloc(s.st.size + 1);
    cr_assert_not_null(tar);
    size_t dn = ZSTD_decompress(tar, s.st.size, s.z.p, s.z.len);
    cr_assert_eq(dn, s.st.size);
    static const size_t one[] = {1}, part[] = {917504}, mixed[] = {3, 917504};
    const struct {
        const char *name;
        const size_t *sizes;
        size_t n, edges;
        uint64_t above;
    } runs[] = {{"r1", one, 1, 512 * 1024, 0},
                {"rpart", part, 1, 0, 0},
                {"rmixed", mixed, 2, 0, 0},
                {"rsmall", part, 1, 0, UINT64_MAX}};
    for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
        ds_unpack_opts o = {.size = s.st.size,
                            .sha256 = s.st.sha256,
                            .raw = 1,
                            .thread_above = runs[r].above};
        char *dest = fresh_dir(s.tmp, runs[r].name);
        ds_unpack_stats us;
        ds_err err;
        int rc = unpack_edges(dest, tar, dn, runs[r].sizes, runs[r].n,
                              runs[r].edges, &o, &us, &err);
        cr_assert_eq(rc, 0, "%s: %s: %s", runs[r].name, err.reason, err.msg);
        cr_assert_eq(us.size, s.st.size);
        cr_assert_eq(cmp_trees(s.src, dest), s.st.files);
        free(dest);
    }
    /* One byte changed: sha256-mismatch; one more: too-large; one less:
     * size-mismatch (or the tar side's corrupt-tar, never a success). */
    ds_unpack_opts o = {.size = s.st.size, .sha256 = s.st.sha256, .raw = 1};
    ds_unpack_stats us;
    ds_err err;
    tar[dn - 1] ^= 1; /* in the end-of-archive blocks: tar still reads */
    char *d1 = fresh_dir(s.tmp, "rbad1");
    cr_assert_lt(unpack_from(d1, tar, dn, part, 1, &o, &us, &err), 0);
    cr_assert_str_eq(err.reason, "sha256-mismatch", "%s", err.msg);
    tar[dn - 1] ^= 1;
    tar[dn] = 0;
    char *d2 = fresh_dir(s.tmp, "rbad2");
    cr_assert_lt(unpack_from(d2, tar, dn + 1, part, 1, &o, &us, &err), 0);
    cr_assert_str_eq(err.reason, "too-large", "%s", err.msg);
    char *d3 = fresh_dir(s.tmp, "rbad3");
    cr_assert_lt(unpack_from(d3, tar, dn - 1, part, 1, &o, &us, &err), 0);
    cr_assert(strcmp(err.reason, "size-mismatch") == 0 ||
                  strcmp(err.reason, "corrupt-tar") == 0,
              "%s: %s", err.reason, err.msg);
    free(d1);
    free(d2);
    free(d3);
    free(tar);
    sample_free(&s);
}

Test(pack, throughput_and_progress, .timeout = 120)
{
    sample s;
    sample_make(&s);
    char *out = tu_pathf("%s/again.tar.zst", s.tmp);
    prog pr = {0};
    ds_pack_stats st;
    ds_err err;
    double t0 = now_s();
    cr_assert_eq(pack_to(s.src, out, 3, 0, &pr, &st, &err), 0, "%s", err.msg);
    double dt = now_s() - t0;
    fprintf(stderr,
            "[info] pack %llu tar bytes -> %llu (level 3, 1 thread): "
            "%.3f s, %.0f MB/s\n",
            (unsigned long long)st.size, (unsigned long long)st.zsize, dt,
            st.size / dt / 1e6);
    cr_assert_eq(pr.total, s.file_bytes, "total = sum of file sizes");
    cr_assert_eq(pr.done, s.file_bytes, "last report covers everything");
    cr_assert_eq(pr.backwards, 0);
    cr_assert_geq(pr.calls, 3);
    cr_assert_leq(pr.calls, s.file_bytes / (1024 * 1024) + 3,
                  "at most one report per MiB (%llu calls)",
                  (unsigned long long)pr.calls);
    free(out);
    sample_free(&s);
}

/* --- determinism --------------------------------------------------------- */

static void touch_atimes(const char *dir)
{
    struct dirent **l;
    int n = scandir(dir, &l, not_dots, cmp_names);
    cr_assert_geq(n, 0);
    for (int i = 0; i < n; i++) {
        char *p = tu_pathf("%s/%s", dir, l[i]->d_name);
        struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
        /* Also bumps ctime. */
        cr_assert_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
        struct stat st;
        cr_assert_eq(lstat(p, &st), 0);
        if (S_ISDIR(st.st_mode))
            touch_atimes(p);
        free(p);
        free(l[i]);
    }
    free(l);
}

Test(pack, same_tree_same_bytes, .timeout = 120)
{
    sample s;
    sample_make(&s);
    sleep(1);
    touch_atimes(s.src);
    char *out = tu_pathf("%s/second.tar.zst", s.tmp);
    ds_pack_stats st2;
    ds_err err;
    cr_assert_eq(pack_to(s.src, out, 0, 0, NULL, &st2, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(s.st.sha256, st2.sha256, 32), 0,
                 "same tree, same sha256");
    cr_assert_eq(s.st.size, st2.size);
    cr_assert_eq(s.st.files, st2.files);

    /* Threads and level change the compressed bytes, never the tar. */
    ds_pack_stats st3;
    cr_assert_eq(pack_to(s.src, out, 9, 2, NULL, &st3, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(s.st.sha256, st3.sha256, 32), 0);
    cr_assert_eq(s.st.size, st3.size);

    /* And a changed mtime does change it: the check can fail. */
    char *p = tu_pathf("%s/secret", s.src);
    set_mtime(p, 1700000000, 0);
    cr_assert_eq(pack_to(s.src, out, 0, 0, NULL, &st3, &err), 0, "%s", err.msg);
    cr_assert_neq(memcmp(s.st.sha256, st3.sha256, 32), 0);
    free(p);
    free(out);
    sample_free(&s);
}

/* ds_pack_source_bytes: before packing, a bound of the tar stream's size
 * (pkgpub sizes a schema v2 transaction's timeout with it): at least the
 * tar's real size and the files' bytes, not wildly more; a tar file's own
 * size; a source that is neither, or holds a FIFO, refused. */
Test(pack, source_bytes_bounds_the_tar, .timeout = 60)
{
    sample s;
    sample_make(&s);
    ds_err err;
    uint64_t b = 0;
    cr_assert_eq(ds_pack_source_bytes(s.src, &b, &err), 0, "%s", err.msg);
    cr_assert_geq(b, s.st.size, "bound %llu, tar %llu", (unsigned long long)b,
                  (unsigned long long)s.st.size);
    cr_assert_geq(b, s.file_bytes);
    cr_assert_lt(b, s.st.size + s.st.files * 4096 + 65536);

    /* Many files with long names: still a bound. */
    char *many = fresh_dir(s.tmp, "many");
    for (int i = 0; i < 300; i++) {
        char *p = tu_pathf("%s/%0200d", many, i);
        write_file(p, "xxxxxxx", (size_t)(i % 7), 0644);
        free(p);
    }
    char *out = tu_pathf("%s/many.tar.zst", s.tmp);
    ds_pack_stats st;
    cr_assert_eq(pack_to(many, out, 0, 0, NULL, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(ds_pack_source_bytes(many, &b, &err), 0, "%s", err.msg);
    cr_assert_geq(b, st.size, "bound %llu, tar %llu", (unsigned long long)b,
                  (unsigned long long)st.size);

    /* A tar file: its size. */
    cr_assert_eq(ds_pack_source_bytes(s.zst, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(b, s.z.len);

    char *fifo = tu_pathf("%s/fifo", many);
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    cr_assert_lt(ds_pack_source_bytes(many, &b, &err), 0);
    cr_assert_str_eq(err.reason, "unsupported-file");
    cr_assert_lt(ds_pack_source_bytes(fifo, &b, &err), 0);
    cr_assert_str_eq(err.reason, "unsupported-file");
    char *none = tu_pathf("%s/none", s.tmp);
    cr_assert_lt(ds_pack_source_bytes(none, &b, &err), 0);
    cr_assert_str_eq(err.reason, "io-error");
    free(none);
    free(fifo);
    free(out);
    free(many);
    sample_free(&s);
}

/* --- tar file source ------------------------------------------------------ */

static void tar_add(struct archive *w, const char *path, mode_t type,
                    mode_t perm, const char *link, int hard, const void *data,
                    size_t len, time_t mtime)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_copy_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_mtime(e, mtime, 0);
    archive_entry_set_uid(e, 1000);
    archive_entry_set_gid(e, 1000);
    archive_entry_copy_uname(e, "alice");
    archive_entry_copy_gname(e, "staff");
    archive_entry_set_atime(e, mtime + 5, 0);
    if (type == AE_IFCHR)
        archive_entry_set_rdev(e, makedev(1, 3));
    if (link != NULL && hard)
        archive_entry_copy_hardlink(e, link);
    else if (link != NULL)
        archive_entry_copy_symlink(e, link);
    archive_entry_set_size(e, type == AE_IFREG && !hard ? (la_int64_t)len : 0);
    cr_assert_geq(archive_write_header(w, e), ARCHIVE_WARN, "%s: %s", path,
                  archive_error_string(w));
    if (len > 0 && !hard)
        cr_assert_eq(archive_write_data(w, data, len), (la_ssize_t)len);
    archive_entry_free(e);
}

Test(pack, tar_file_source, .timeout = 60)
{
    char *tmp = tu_tmpdir("pack");
    char *tarp = tu_pathf("%s/in.tar.gz", tmp);
    struct archive *w = archive_write_new();
    archive_write_set_format_pax(w); /* full pax: atime, owners recorded */
    archive_write_add_filter_gzip(w);
    cr_assert_eq(archive_write_open_filename(w, tarp), ARCHIVE_OK);
    tar_add(w, "t", AE_IFDIR, 0750, NULL, 0, NULL, 0, 1400000000);
    tar_add(w, "t/hello.txt", AE_IFREG, 0644, NULL, 0, "hello\n", 6,
            1400000100);
    tar_add(w, "t/exe", AE_IFREG, 0755, NULL, 0, "#!x\n", 4, 1400000200);
    tar_add(w, "t/link", AE_IFLNK, 0777, "hello.txt", 0, NULL, 0, 1400000300);
    tar_add(w, "t/hard", AE_IFREG, 0644, "t/hello.txt", 1, NULL, 0, 1400000100);
    tar_add(w, "t/sub", AE_IFDIR, 0700, NULL, 0, NULL, 0, 1400000400);
    cr_assert_eq(archive_write_close(w), ARCHIVE_OK);
    archive_write_free(w);

    char *zst = tu_pathf("%s/out.tar.zst", tmp);
    ds_pack_stats st, st2;
    ds_err err;
    prog pr = {0};
    cr_assert_eq(pack_to(tarp, zst, 0, 0, &pr, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.files, 6);
    struct stat tst;
    cr_assert_eq(stat(tarp, &tst), 0);
    cr_assert_eq(pr.total, (uint64_t)tst.st_size);
    cr_assert_eq(pr.done, (uint64_t)tst.st_size);
    cr_assert_eq(pack_to(tarp, zst, 0, 0, NULL, &st2, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(st.sha256, st2.sha256, 32), 0, "deterministic");

    buf z = read_all(zst);
    uint8_t *tar = malloc(st.size);
    cr_assert_eq(ZSTD_decompress(tar, st.size, z.p, z.len), st.size);
    cr_assert_eq(memmem(tar, st.size, "alice", 5), NULL, "owner dropped");
    cr_assert_eq(memmem(tar, st.size, "atime", 5), NULL, "atime dropped");
    free(tar);

    char *dest = fresh_dir(tmp, "dest");
    ds_unpack_opts o = {.size = st.size, .sha256 = st.sha256};
    ds_unpack_stats us;
    cr_assert_eq(unpack_from(dest, z.p, z.len, piece_64k, 1, &o, &us, &err), 0,
                 "%s: %s", err.reason, err.msg);
    cr_assert_eq(us.entries, 6);

    struct stat sd, sh, shard, se, sl, ssub;
    char *p;
    p = tu_pathf("%s/t", dest);
    cr_assert_eq(lstat(p, &sd), 0);
    free(p);
    p = tu_pathf("%s/t/hello.txt", dest);
    cr_assert_eq(lstat(p, &sh), 0);
    buf hb = read_all(p);
    cr_assert(hb.len == 6 && memcmp(hb.p, "hello\n", 6) == 0);
    free(hb.p);
    free(p);
    p = tu_pathf("%s/t/hard", dest);
    cr_assert_eq(lstat(p, &shard), 0);
    free(p);
    p = tu_pathf("%s/t/exe", dest);
    cr_assert_eq(lstat(p, &se), 0);
    free(p);
    p = tu_pathf("%s/t/link", dest);
    cr_assert_eq(lstat(p, &sl), 0);
    char target[64] = {0};
    cr_assert_eq(readlink(p, target, sizeof(target) - 1), 9);
    cr_assert_str_eq(target, "hello.txt");
    free(p);
    p = tu_pathf("%s/t/sub", dest);
    cr_assert_eq(lstat(p, &ssub), 0);
    free(p);
    cr_assert(S_ISDIR(sd.st_mode));
    cr_assert_eq(sd.st_mode & 07777, 0750);
    cr_assert_eq(sd.st_mtim.tv_sec, 1400000000);
    cr_assert_eq(sh.st_mode & 07777, 0644);
    cr_assert_eq(sh.st_mtim.tv_sec, 1400000100);
    cr_assert_eq(sh.st_ino, shard.st_ino, "hardlink shares the inode");
    cr_assert_eq(se.st_mode & 07777, 0755);
    cr_assert(S_ISLNK(sl.st_mode));
    cr_assert_eq(ssub.st_mode & 07777, 0700);
    cr_assert_eq(ssub.st_mtim.tv_sec, 1400000400);

    free(dest);
    free(z.p);
    free(zst);
    free(tarp);
    tu_rm(tmp);
}

Test(pack, special_file_in_source_is_refused)
{
    char *tmp = tu_tmpdir("pack");
    char *src = fresh_dir(tmp, "src");
    char *p = tu_pathf("%s/ok.txt", src);
    write_file(p, "x", 1, 0644);
    free(p);
    char *sub = fresh_dir(src, "sub");
    p = tu_pathf("%s/pipe", sub);
    cr_assert_eq(mkfifo(p, 0644), 0);
    free(p);
    char *out = tu_pathf("%s/out.zst", tmp);
    ds_err err;
    ds_pack_stats st;
    /* Found by the main walk (no progress)... */
    cr_assert_lt(pack_to(src, out, 0, 0, NULL, &st, &err), 0);
    cr_assert_str_eq(err.reason, "unsupported-file");
    cr_assert_neq(strstr(err.msg, "sub/pipe"), NULL, "%s", err.msg);
    /* ...and by the pre-walk (progress), before any byte is written. */
    prog pr = {0};
    ds_err_clear(&err);
    cr_assert_lt(pack_to(src, out, 0, 0, &pr, &st, &err), 0);
    cr_assert_str_eq(err.reason, "unsupported-file");
    cr_assert_neq(strstr(err.msg, "sub/pipe"), NULL, "%s", err.msg);
    struct stat ost;
    cr_assert_eq(stat(out, &ost), 0);
    cr_assert_eq(ost.st_size, 0, "nothing written before the refusal");

    /* A tar file source holding a device node is refused the same way. */
    char *tarp = tu_pathf("%s/dev.tar", tmp);
    struct archive *w = archive_write_new();
    archive_write_set_format_pax_restricted(w);
    cr_assert_eq(archive_write_open_filename(w, tarp), ARCHIVE_OK);
    tar_add(w, "ok.txt", AE_IFREG, 0644, NULL, 0, "x", 1, 1);
    tar_add(w, "dev/null", AE_IFCHR, 0666, NULL, 0, NULL, 0, 1);
    cr_assert_eq(archive_write_close(w), ARCHIVE_OK);
    archive_write_free(w);
    cr_assert_lt(pack_to(tarp, out, 0, 0, NULL, &st, &err), 0);
    cr_assert_str_eq(err.reason, "unsupported-file");
    cr_assert_neq(strstr(err.msg, "dev/null"), NULL, "%s", err.msg);
    free(tarp);
    free(out);
    free(sub);
    free(src);
    tu_rm(tmp);
}

/* The cancel hook (pkgpub stops packing when its Kafka set-up failed):
 * asked at each tar block, it stops the pack with -ECANCELED, reason
 * "cancelled"; never set, it changes nothing. */
typedef struct cancel_after {
    int calls, at;
} cancel_after;

static int cancel_hook(void *ctx)
{
    cancel_after *c = ctx;
    return ++c->calls >= c->at;
}

/* Pack src into the file out with cancel_hook asking c. */
static int pack_with_hook(const char *src, const char *out, cancel_after *c,
                          ds_pack_stats *st, ds_err *err)
{
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    ds_pack_opts o = {.cancelled = cancel_hook, .cancel_ctx = c};
    ds_err_clear(err);
    int rc = ds_pack(src, &o, fd, st, err);
    close(fd);
    return rc;
}

Test(pack, cancel_hook_stops_the_pack, .timeout = 120)
{
    sample s;
    sample_make(&s);
    char *out = tu_pathf("%s/cancel.zst", s.tmp);
    for (int at = 1; at <= 3; at++) {
        cancel_after c = {0, at};
        ds_pack_stats st;
        ds_err err;
        int rc = pack_with_hook(s.src, out, &c, &st, &err);
        cr_assert_eq(rc, -ECANCELED, "at %d: rc %d (%s)", at, rc, err.msg);
        cr_assert_str_eq(err.reason, "cancelled");
        cr_assert_neq(strstr(err.msg, s.src), NULL, "%s", err.msg);
        cr_assert_eq(c.calls, at, "asked again after it said stop");
    }
    /* Never set: the same bytes as without a hook. */
    cancel_after never = {0, INT_MAX};
    ds_pack_stats st;
    ds_err err;
    cr_assert_eq(pack_with_hook(s.src, out, &never, &st, &err), 0, "%s",
                 err.msg);
    cr_assert_gt(never.calls, 1);
    cr_assert_eq(memcmp(st.sha256, s.st.sha256, 32), 0);
    buf z = read_all(out);
    cr_assert_eq(z.len, s.z.len);
    cr_assert_eq(memcmp(z.p, s.z.p, z.len), 0);
    free(z.p);
    free(out);
    sample_free(&s);
}

/* --- corrupted and mislabelled streams ---------------------------------- */

static void expect_fail(const sample *s, const uint8_t *data, size_t len,
                        const ds_unpack_opts *o, const char *name,
                        const char *const *reasons, ds_err *err)
{
    char *dest = fresh_dir(s->tmp, name);
    ds_unpack_stats us;
    int rc = unpack_from(dest, data, len, piece_64k, 1, o, &us, err);
    cr_assert_lt(rc, 0, "%s: must fail", name);
    int ok = 0;
    for (size_t i = 0; reasons[i] != NULL; i++)
        ok |= strcmp(err->reason, reasons[i]) == 0;
    cr_assert(ok, "%s: unexpected reason %s (%s)", name, err->reason, err->msg);
    cr_assert_eq(rc, err->code);
    free(dest);
}

Test(pack, broken_streams_fail_with_their_reason, .timeout = 120)
{
    sample s;
    sample_make(&s);
    ds_unpack_opts o = {.size = s.st.size, .sha256 = s.st.sha256};
    ds_err err;
    static const char *const zstd_only[] = {"corrupt-zstd", NULL};

    /* Truncated: near the end (frame checksum missing) and in the middle. */
    expect_fail(&s, s.z.p, s.z.len - 5, &o, "trunc-end", zstd_only, &err);
    cr_assert_neq(strstr(err.msg, "truncated"), NULL, "%s", err.msg);
    expect_fail(&s, s.z.p, s.z.len / 2, &o, "trunc-mid", zstd_only, &err);
    expect_fail(&s, s.z.p, 0, &o, "empty", zstd_only, &err);

    /* One bit flipped in the middle. */
    uint8_t *bad = malloc(s.z.len + 64);
    memcpy(bad, s.z.p, s.z.len);
    bad[s.z.len / 2] ^= 0x10;
    static const char *const flip[] = {"corrupt-zstd", "sha256-mismatch",
                                       "corrupt-tar", NULL};
    expect_fail(&s, bad, s.z.len, &o, "flip", flip, &err);

    /* Junk, or a second frame, after the end of the frame. */
    memcpy(bad, s.z.p, s.z.len);
    memcpy(bad + s.z.len, "JUNK", 4);
    expect_fail(&s, bad, s.z.len + 4, &o, "junk", zstd_only, &err);
    cr_assert_neq(strstr(err.msg, "after the end"), NULL, "%s", err.msg);
    size_t fl = ZSTD_compress(bad + s.z.len, 64, "x", 1, 1);
    cr_assert(!ZSTD_isError(fl));
    expect_fail(&s, bad, s.z.len + fl, &o, "frame2", zstd_only, &err);
    free(bad);

    /* Wrong digest. */
    uint8_t wrong[32];
    memcpy(wrong, s.st.sha256, 32);
    wrong[31] ^= 1;
    ds_unpack_opts ow = o;
    ow.sha256 = wrong;
    static const char *const sha[] = {"sha256-mismatch", NULL};
    expect_fail(&s, s.z.p, s.z.len, &ow, "sha", sha, &err);
    char hex[8];
    snprintf(hex, sizeof(hex), "%02x%02x", s.st.sha256[0], s.st.sha256[1]);
    cr_assert_neq(strstr(err.msg, hex), NULL, "names the digest: %s", err.msg);

    /* Declared size larger than the stream. */
    ds_unpack_opts ol = o;
    ol.size = s.st.size + 1;
    static const char *const mism[] = {"size-mismatch", NULL};
    expect_fail(&s, s.z.p, s.z.len, &ol, "larger", mism, &err);

    /* Declared size smaller: stops there, the rest is never written. */
    ds_unpack_opts os = o;
    os.size = s.st.size / 2;
    static const char *const big[] = {"too-large", NULL};
    expect_fail(&s, s.z.p, s.z.len, &os, "smaller", big, &err);
    char num[32];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)os.size);
    cr_assert_neq(strstr(err.msg, num), NULL, "names the size: %s", err.msg);
    char *p = tu_pathf("%s/smaller/secret", s.tmp);
    cr_assert_not(exists(p), "extraction went on past the declared size");
    free(p);
    p = tu_pathf("%s/smaller/a/b/c", s.tmp);
    cr_assert(exists(p), "extraction had started");
    free(p);
    /* text.log alone is larger than the declared size: refused at its
     * header, never created. */
    p = tu_pathf("%s/smaller/a/b/c/text.log", s.tmp);
    cr_assert_not(exists(p), "a file over the declared size was created");
    free(p);

    /* Entry cap. */
    ds_unpack_opts oc = o;
    oc.max_entries = 3;
    expect_fail(&s, s.z.p, s.z.len, &oc, "entries", big, &err);

    /* The source gives up. */
    char *dest = fresh_dir(s.tmp, "cancel");
    feeder f = {.data = s.z.p,
                .len = s.z.len,
                .sizes = piece_64k,
                .nsizes = 1,
                .fail_at = 3 * 65536};
    ds_unpack_stats us;
    ds_err_clear(&err);
    cr_assert_lt(ds_unpack(dest, feed, &f, &o, &us, &err), 0);
    cr_assert_str_eq(err.reason, "cancelled");
    cr_assert_eq(us.zsize, 3 * 65536);
    free(f.piece);
    free(dest);

    /* Window limit below what the stream needs: a cap, like a size. */
    static const char *const too_large[] = {"too-large", NULL};
    ds_unpack_opts owl = o;
    owl.max_window_log = 10;
    expect_fail(&s, s.z.p, s.z.len, &owl, "window", too_large, &err);
    cr_assert(strstr(err.msg, "2^10") != NULL, "%s", err.msg);
    sample_free(&s);
}

/* --- hostile entries ------------------------------------------------------ */

static la_ssize_t buf_write(struct archive *a, void *ctx, const void *p,
                            size_t n)
{
    (void)a;
    buf_add(ctx, p, n);
    return (la_ssize_t)n;
}

typedef struct zstream {
    uint8_t *z;
    size_t zlen;
    uint64_t size;
    uint8_t sha[32];
} zstream;

/* zs: t compressed, with its true size and digest; t is freed. */
static void zstream_of(buf *t, zstream *zs)
{
    zs->size = t->len;
    sha256_of(t->p, t->len, zs->sha);
    size_t cap = ZSTD_compressBound(t->len);
    zs->z = malloc(cap);
    zs->zlen = ZSTD_compress(zs->z, cap, t->p, t->len, 3);
    cr_assert(!ZSTD_isError(zs->zlen));
    free(t->p);
}

static void finish_tar(struct archive *w, buf *t, zstream *zs)
{
    cr_assert_eq(archive_write_close(w), ARCHIVE_OK);
    archive_write_free(w);
    zstream_of(t, zs);
}

static struct archive *start_tar(buf *t)
{
    memset(t, 0, sizeof(*t));
    struct archive *w = archive_write_new();
    archive_write_set_format_pax_restricted(w);
    cr_assert_eq(archive_write_open(w, t, NULL, buf_write, NULL), ARCHIVE_OK);
    return w;
}

typedef struct bad_case {
    const char *name;     /* the hostile entry's path */
    mode_t type;          /* AE_IF* */
    const char *link;     /* symlink or hardlink target */
    int hard;             /* link is a hardlink target */
    const char *escape;   /* path (relative to outer) that must not exist */
    const char *pre_name; /* an entry before it, or NULL */
    mode_t pre_type;
    const char *pre_link;
} bad_case;

Test(pack, hostile_entries_are_refused, .timeout = 60)
{
    char *tmp = tu_tmpdir("pack");
    char *outer = fresh_dir(tmp, "outer");
    char *abs = tu_pathf("%s/abs-x", outer);
    const bad_case cases[] = {
        {abs, AE_IFREG, NULL, 0, "abs-x", NULL, 0, NULL},
        {"../x", AE_IFREG, NULL, 0, "x", NULL, 0, NULL},
        {"a/../../x", AE_IFREG, NULL, 0, "x", NULL, 0, NULL},
        {"etc", AE_IFLNK, "/etc", 0, "dest/etc", NULL, 0, NULL},
        {"a", AE_IFLNK, "../../x", 0, "dest/a", NULL, 0, NULL},
        {"sub/up", AE_IFLNK, "../..", 0, "dest/sub/up", NULL, 0, NULL},
        {"pw", AE_IFREG, "/etc/passwd", 1, "dest/pw", NULL, 0, NULL},
        {"pw", AE_IFREG, "../outer-file", 1, "dest/pw", NULL, 0, NULL},
        {"fifo", AE_IFIFO, NULL, 0, "dest/fifo", NULL, 0, NULL},
        {"null", AE_IFCHR, NULL, 0, "dest/null", NULL, 0, NULL},
        /* d1/d2/s -> ../.. is dest itself; through it, ".." leaves dest. */
        {"t", AE_IFLNK, "d1/d2/s/../..", 0, "dest/t", "d1/d2/s", AE_IFLNK,
         "../.."},
        /* Fine at depth 2, escapes when hardlinked at depth 0. */
        {"h", AE_IFREG, "d1/d2/s2", 1, "dest/h", "d1/d2/s2", AE_IFLNK,
         "../../first.txt"},
        /* A file written through a symlink (even one inside dest). */
        {"l/evil", AE_IFREG, NULL, 0, "dest/sub2/evil", "l", AE_IFLNK, "sub2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bad_case *c = &cases[i];
        char *dest = tu_pathf("%s/dest", outer);
        cr_assert_eq(mkdir(dest, 0755), 0);
        buf t;
        struct archive *w = start_tar(&t);
        tar_add(w, "first.txt", AE_IFREG, 0644, NULL, 0, "1", 1, 1);
        tar_add(w, "sub2", AE_IFDIR, 0755, NULL, 0, NULL, 0, 1);
        if (c->pre_name != NULL)
            tar_add(w, c->pre_name, c->pre_type, 0777, c->pre_link, 0, NULL, 0,
                    1);
        tar_add(w, c->name, c->type, 0644, c->link, c->hard,
                c->type == AE_IFREG && !c->hard ? "evil" : NULL,
                c->type == AE_IFREG && !c->hard ? 4 : 0, 1);
        tar_add(w, "after.txt", AE_IFREG, 0644, NULL, 0, "2", 1, 1);
        zstream zs;
        finish_tar(w, &t, &zs);

        /* On the calling thread, then through the helper thread. */
        for (int th = 0; th < 2; th++) {
            if (th == 1)
                cr_assert_eq(mkdir(dest, 0755), 0);
            ds_unpack_opts o = {.size = zs.size,
                                .sha256 = zs.sha,
                                .thread_above = th ? 1 : UINT64_MAX};
            ds_unpack_stats us;
            ds_err err;
            int rc =
                unpack_from(dest, zs.z, zs.zlen, piece_64k, 1, &o, &us, &err);
            cr_assert_lt(rc, 0, "case %zu (%s) must fail", i, c->name);
            cr_assert_str_eq(err.reason, "unsafe-path", "case %zu (%s): %s", i,
                             c->name, err.msg);
            cr_assert_neq(strstr(err.msg, c->name), NULL,
                          "message names the entry: %s", err.msg);
            char *esc = tu_pathf("%s/%s", outer, c->escape);
            cr_assert_not(exists(esc), "case %zu: %s was written", i, esc);
            free(esc);
            char *first = tu_pathf("%s/first.txt", dest);
            char *after = tu_pathf("%s/after.txt", dest);
            cr_assert(exists(first), "case %zu: extraction had started", i);
            cr_assert_not(exists(after), "case %zu: stopped at the entry", i);
            free(first);
            free(after);
            cr_assert_eq(ds_rm_rf(dest, &err), 0);
        }
        free(dest);
        free(zs.z);
    }
    cr_assert_not(exists("/etc/x"));
    free(abs);
    free(outer);
    tu_rm(tmp);
}

Test(pack, long_names_and_special_bits, .timeout = 60)
{
    char *tmp = tu_tmpdir("pack");

    /* A 256-byte component and a 4097-byte path are refused. */
    char comp[300], longp[4200];
    memset(comp, 'c', 256);
    comp[256] = '\0';
    memset(longp, 'p', 4097);
    for (int i = 100; i < 4097; i += 101)
        longp[i] = '/';
    longp[4097] = '\0';
    const char *names[] = {comp, longp};
    for (int i = 0; i < 2; i++) {
        char *dest = tu_pathf("%s/long%d", tmp, i);
        cr_assert_eq(mkdir(dest, 0755), 0);
        buf t;
        struct archive *w = start_tar(&t);
        tar_add(w, names[i], AE_IFREG, 0644, NULL, 0, "x", 1, 1);
        zstream zs;
        finish_tar(w, &t, &zs);
        ds_unpack_opts o = {.size = zs.size, .sha256 = zs.sha};
        ds_unpack_stats us;
        ds_err err;
        cr_assert_lt(
            unpack_from(dest, zs.z, zs.zlen, piece_64k, 1, &o, &us, &err), 0);
        cr_assert_str_eq(err.reason, "unsafe-path", "%s", err.msg);
        free(zs.z);
        free(dest);
    }

    /* setuid/setgid/sticky stripped; "./" prefixes and a "./" entry are
     * fine; a hardlink to an earlier file works; a later duplicate wins. */
    char *dest = fresh_dir(tmp, "bits");
    buf t;
    struct archive *w = start_tar(&t);
    tar_add(w, "./", AE_IFDIR, 0755, NULL, 0, NULL, 0, 1);
    tar_add(w, "./suid", AE_IFREG, 04755, NULL, 0, "#!\n", 3, 1000);
    tar_add(w, "./sgid", AE_IFREG, 02711, NULL, 0, "#!\n", 3, 1000);
    tar_add(w, "./tmpdir", AE_IFDIR, 01777, NULL, 0, NULL, 0, 2000);
    tar_add(w, "./tmpdir/f", AE_IFREG, 0644, NULL, 0, "old", 3, 3000);
    tar_add(w, "./tmpdir/f", AE_IFREG, 0640, NULL, 0, "new!", 4, 3001);
    tar_add(w, "implicit/dir/file", AE_IFREG, 0444, NULL, 0, "i", 1, 4000);
    zstream zs;
    finish_tar(w, &t, &zs);
    ds_unpack_opts o = {.size = zs.size, .sha256 = zs.sha};
    ds_unpack_stats us;
    ds_err err;
    cr_assert_eq(unpack_from(dest, zs.z, zs.zlen, piece_64k, 1, &o, &us, &err),
                 0, "%s: %s", err.reason, err.msg);
    cr_assert_eq(us.entries, 7);
    struct stat st;
    char *p = tu_pathf("%s/suid", dest);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0755);
    cr_assert_eq(st.st_mtim.tv_sec, 1000);
    free(p);
    p = tu_pathf("%s/sgid", dest);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0711);
    free(p);
    p = tu_pathf("%s/tmpdir", dest);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0777);
    cr_assert_eq(st.st_mtim.tv_sec, 2000, "dir mtime set after its content");
    free(p);
    p = tu_pathf("%s/tmpdir/f", dest);
    buf fb = read_all(p);
    cr_assert(fb.len == 4 && memcmp(fb.p, "new!", 4) == 0);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0640);
    free(fb.p);
    free(p);
    p = tu_pathf("%s/implicit/dir/file", dest);
    cr_assert_eq(lstat(p, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0444);
    free(p);
    free(zs.z);
    free(dest);
    tu_rm(tmp);
}

/* --- the tree on disk, and whose fault a failure is ---------------------- */

Test(pack, filesystem_errors_are_the_archives_or_the_sites)
{
    static const struct {
        int e;
        const char *names, *other; /* for calls creating a name, others */
    } want[] = {
        {EFBIG, "too-large", "too-large"},
        {EMLINK, "too-large", "too-large"},
        {ENAMETOOLONG, "unsafe-path", "unsafe-path"},
        {EILSEQ, "unsafe-path", "unsafe-path"},
        {EINVAL, "unsafe-path", "io-error"},
        {ENOSPC, "io-error", "io-error"},
        {EDQUOT, "io-error", "io-error"},
        {EIO, "io-error", "io-error"},
        {EACCES, "io-error", "io-error"},
        {EPERM, "io-error", "io-error"},
        {EROFS, "io-error", "io-error"},
        {EMFILE, "io-error", "io-error"},
        {ENOMEM, "io-error", "io-error"},
        {0, "io-error", "io-error"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_assert_str_eq(ds_unpack_fs_reason(want[i].e, 1), want[i].names,
                         "errno %d (%s), a name", want[i].e,
                         strerror(want[i].e));
        cr_assert_str_eq(ds_unpack_fs_reason(want[i].e, 0), want[i].other,
                         "errno %d (%s)", want[i].e, strerror(want[i].e));
    }
}

/* A tar number field: octal digits and a NUL, or base-256 when too big. */
static void tar_num(uint8_t *f, size_t width, uint64_t v)
{
    if (v < (1ull << (3 * (width - 1)))) {
        snprintf((char *)f, width, "%0*llo", (int)(width - 1),
                 (unsigned long long)v);
        return;
    }
    memset(f, 0, width);
    f[0] = 0x80;
    for (size_t i = width - 1; i > 0 && v != 0; i--, v >>= 8)
        f[i] = (uint8_t)v;
}

/* A tar header by hand, for what libarchive's writer does not produce:
 * old-GNU sparse entries (type 'S', gnu set), a size its data does not
 * match. The caller sets type-specific fields, then raw_checksum. */
static void raw_header(uint8_t h[512], const char *name, char type,
                       uint64_t size, int gnu)
{
    memset(h, 0, 512);
    memcpy(h, name, strlen(name));
    tar_num(h + 100, 8, 0644);
    tar_num(h + 108, 8, 0);
    tar_num(h + 116, 8, 0);
    tar_num(h + 124, 12, size);
    tar_num(h + 136, 12, 1764064800);
    h[156] = (uint8_t)type;
    memcpy(h + 257, gnu ? "ustar  " : "ustar\00000", 8);
}

static void raw_checksum(uint8_t h[512])
{
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

/* An old-GNU sparse file: its apparent size, up to 4 extents in the
 * header, and only the extents' bytes (all 'x') stored. */
static void add_old_gnu_sparse(buf *t, const char *name, uint64_t realsize,
                               const uint64_t (*ext)[2], int next)
{
    uint8_t h[512];
    uint64_t stored = 0;
    for (int i = 0; i < next; i++)
        stored += ext[i][1];
    raw_header(h, name, 'S', stored, 1);
    for (int i = 0; i < next; i++) {
        tar_num(h + 386 + 24 * i, 12, ext[i][0]);
        tar_num(h + 398 + 24 * i, 12, ext[i][1]);
    }
    tar_num(h + 483, 12, realsize);
    raw_checksum(h);
    buf_add(t, h, 512);
    uint8_t blk[512];
    memset(blk, 'x', sizeof(blk));
    for (uint64_t left = stored; left > 0;) {
        size_t n = left < 512 ? (size_t)left : 512;
        buf_add(t, blk, n);
        left -= n;
    }
    static const uint8_t zero[512];
    buf_add(t, zero, (512 - stored % 512) % 512);
}

static void add_end(buf *t)
{
    static const uint8_t zero[1024];
    buf_add(t, zero, sizeof(zero));
}

/* The largest apparent size of a regular file under dir (recursive). */
static uint64_t largest_file(const char *dir)
{
    struct dirent **l;
    int n = scandir(dir, &l, not_dots, cmp_names);
    cr_assert_geq(n, 0, "scandir %s", dir);
    uint64_t max = 0;
    for (int i = 0; i < n; i++) {
        char *p = tu_pathf("%s/%s", dir, l[i]->d_name);
        struct stat st;
        cr_assert_eq(lstat(p, &st), 0);
        uint64_t s = S_ISDIR(st.st_mode)   ? largest_file(p)
                     : S_ISREG(st.st_mode) ? (uint64_t)st.st_size
                                           : 0;
        if (s > max)
            max = s;
        free(p);
        free(l[i]);
    }
    free(l);
    return max;
}

/* Unpack zs into a fresh tmp/name on the calling thread and through the
 * helper; it must fail with reason, naming the entry, with no file
 * larger than the declared size in what was written and nothing after
 * the entry ("after.txt"). */
static void expect_refused(const char *tmp, const char *name, zstream *zs,
                           const char *reason, const char *entry,
                           const char *what)
{
    for (int th = 0; th < 2; th++) {
        char *sub = tu_pathf("%s-%d", name, th);
        char *dest = fresh_dir(tmp, sub);
        ds_unpack_opts o = {.size = zs->size,
                            .sha256 = zs->sha,
                            .thread_above = th ? 1 : UINT64_MAX};
        ds_unpack_stats us;
        ds_err err;
        int rc =
            unpack_from(dest, zs->z, zs->zlen, piece_64k, 1, &o, &us, &err);
        cr_assert_lt(rc, 0, "%s must be refused", sub);
        cr_assert_eq(rc, err.code);
        cr_assert_str_eq(err.reason, reason, "%s: %s", sub, err.msg);
        cr_assert_neq(strstr(err.msg, entry), NULL, "%s: names the entry: %s",
                      sub, err.msg);
        cr_assert_neq(strstr(err.msg, what), NULL, "%s: says '%s': %s", sub,
                      what, err.msg);
        cr_assert_leq(largest_file(dest), zs->size,
                      "%s: a file larger than "
                      "the declared size was written",
                      sub);
        char *after = tu_pathf("%s/after.txt", dest);
        cr_assert_not(exists(after), "%s: went on past the entry", sub);
        free(after);
        free(dest);
        free(sub);
    }
}

/* A sparse file costs its stored bytes in the stream, not its apparent
 * size: 2^45 bytes in a 2 KiB tar (ext4 answered EFBIG, an io-error that
 * wedged the partition; tmpfs wrote it). Refused at the header whatever
 * the form or size, nothing of it written. */
Test(pack, sparse_files_are_refused, .timeout = 60)
{
    char *tmp = tu_tmpdir("pack");
    const uint64_t tb32 = 1ull << 45;
    static const struct {
        const char *name;
        uint64_t realsize;
        uint64_t ext[2][2];
        int next;
        const char *reason, *what;
    } cases[] = {
        {"gnu-32tib", 1ull << 45, {{0, 1}}, 1, "corrupt-tar", "sparse file"},
        {"gnu-data-at-32tib",
         1ull << 45,
         {{(1ull << 45) - 1, 1}},
         1,
         "corrupt-tar",
         "sparse file"},
        {"gnu-small",
         8192,
         {{0, 10}, {4096, 10}},
         2,
         "corrupt-tar",
         "sparse file"},
        /* No extent at all: 2^45 bytes of nothing, over the declared size. */
        {"gnu-no-extents",
         1ull << 45,
         {{0, 0}},
         0,
         "too-large",
         "past the declared size"},
        /* An extent past the apparent size: libarchive keeps it out of the
         * entry's map (no "sparse file" to see) but still delivers it. */
        {"gnu-extent-past-size",
         10,
         {{1000, 1}},
         1,
         "corrupt-tar",
         "sparse or malformed"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf t = {0};
        add_old_gnu_sparse(&t, "big.img", cases[i].realsize, cases[i].ext,
                           cases[i].next);
        uint8_t h[512];
        raw_header(h, "after.txt", '0', 1, 0);
        raw_checksum(h);
        buf_add(&t, h, 512);
        uint8_t data[512] = {'a'};
        buf_add(&t, data, 512);
        add_end(&t);
        zstream zs;
        zstream_of(&t, &zs);
        expect_refused(tmp, cases[i].name, &zs, cases[i].reason, "big.img",
                       cases[i].what);
        free(zs.z);
    }

    /* pax (GNU sparse 1.0, as libarchive's own writer makes it). */
    buf t;
    struct archive *w = start_tar(&t);
    struct archive_entry *e = archive_entry_new();
    archive_entry_copy_pathname(e, "big.img");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)tb32);
    archive_entry_sparse_add_entry(e, 0, 1);
    cr_assert_geq(archive_write_header(w, e), ARCHIVE_WARN, "%s",
                  archive_error_string(w));
    cr_assert_eq(archive_write_data(w, "x", 1), 1);
    archive_entry_free(e);
    tar_add(w, "after.txt", AE_IFREG, 0644, NULL, 0, "a", 1, 1);
    zstream zs;
    finish_tar(w, &t, &zs);
    cr_assert_lt(zs.size, 16384, "a small stream");
    expect_refused(tmp, "pax-32tib", &zs, "corrupt-tar", "big.img",
                   "sparse file");
    free(zs.z);
    tu_rm(tmp);
}

/* A plain file whose header claims more than the declared size (and more
 * than the stream holds) is refused at its header: nothing is created. */
Test(pack, files_larger_than_declared_are_refused_at_the_header)
{
    char *tmp = tu_tmpdir("pack");
    buf t = {0};
    uint8_t h[512], data[512];
    raw_header(h, "first.txt", '0', 5, 0);
    raw_checksum(h);
    buf_add(&t, h, 512);
    memset(data, 0, sizeof(data));
    memcpy(data, "first", 5);
    buf_add(&t, data, 512);
    raw_header(h, "huge.bin", '0', 1ull << 30, 0);
    raw_checksum(h);
    buf_add(&t, h, 512);
    memset(data, 'h', sizeof(data));
    for (int i = 0; i < 8; i++)
        buf_add(&t, data, 512);
    add_end(&t);
    zstream zs;
    zstream_of(&t, &zs);
    expect_refused(tmp, "huge", &zs, "too-large", "huge.bin",
                   "past the declared size");
    char *p = tu_pathf("%s/huge-0/huge.bin", tmp);
    cr_assert_not(exists(p), "refused before it was created");
    free(p);
    p = tu_pathf("%s/huge-0/first.txt", tmp);
    cr_assert(exists(p), "the entry before it was extracted");
    free(p);
    free(zs.z);
    tu_rm(tmp);
}

/* Hardlinks store no data, so the stream's size bounds them only through
 * their headers: a file gets at most 65000 names (ext4's limit, where
 * the 65001st was EMLINK, an io-error that wedged the partition), on
 * every filesystem alike. */
Test(pack, hardlink_count_is_bounded, .timeout = 120)
{
    char *tmp = tu_tmpdir("pack");
    for (int over = 0; over < 2; over++) {
        buf t;
        struct archive *w = start_tar(&t);
        tar_add(w, "f", AE_IFREG, 0644, NULL, 0, "x", 1, 1);
        int links = 64999 + over;
        for (int i = 0; i < links; i++) {
            char name[16];
            snprintf(name, sizeof(name), "l%05d", i);
            tar_add(w, name, AE_IFREG, 0644, "f", 1, NULL, 0, 1);
        }
        tar_add(w, "after.txt", AE_IFREG, 0644, NULL, 0, "a", 1, 1);
        zstream zs;
        finish_tar(w, &t, &zs);
        char *dest = fresh_dir(tmp, over ? "over" : "at-limit");
        ds_unpack_opts o = {.size = zs.size, .sha256 = zs.sha};
        ds_unpack_stats us;
        ds_err err;
        int rc = unpack_from(dest, zs.z, zs.zlen, piece_64k, 1, &o, &us, &err);
        char *f = tu_pathf("%s/f", dest);
        char *after = tu_pathf("%s/after.txt", dest);
        if (!over) {
            cr_assert_eq(rc, 0, "%s: %s", err.reason, err.msg);
            struct stat st;
            cr_assert_eq(lstat(f, &st), 0);
            cr_assert_eq(st.st_nlink, 65000);
            cr_assert(exists(after));
        } else {
            cr_assert_lt(rc, 0, "the 65001st name must be refused");
            cr_assert_str_eq(err.reason, "too-large", "%s", err.msg);
            cr_assert_neq(strstr(err.msg, "entry l64999: hardlink target f "
                                          "has 65000 names"),
                          NULL, "%s", err.msg);
            cr_assert_not(exists(after), "went on past the entry");
        }
        free(f);
        free(after);
        free(dest);
        free(zs.z);
    }
    tu_rm(tmp);
}

/* Overlong link targets are refused as unsafe-path like overlong paths. */
Test(pack, overlong_link_targets_are_refused)
{
    char *tmp = tu_tmpdir("pack");
    char longt[4300];
    for (size_t i = 0; i < sizeof(longt) - 1; i++)
        longt[i] = i % 100 == 99 ? '/' : 't';
    longt[sizeof(longt) - 1] = '\0';
    for (int hard = 0; hard < 2; hard++) {
        buf t;
        struct archive *w = start_tar(&t);
        tar_add(w, "first.txt", AE_IFREG, 0644, NULL, 0, "1", 1, 1);
        tar_add(w, "l", hard ? AE_IFREG : AE_IFLNK, 0644, longt, hard, NULL, 0,
                1);
        tar_add(w, "after.txt", AE_IFREG, 0644, NULL, 0, "a", 1, 1);
        zstream zs;
        finish_tar(w, &t, &zs);
        expect_refused(tmp, hard ? "hard" : "sym", &zs, "unsafe-path",
                       "entry l", "longer than 4096 bytes");
        free(zs.z);
    }
    tu_rm(tmp);
}

/* One regular file of `size` bytes of text, then after.txt. */
static void one_file_tar(zstream *zs, const char *name, size_t size)
{
    char *data = malloc(size);
    cr_assert_not_null(data);
    for (size_t i = 0; i < size; i++)
        data[i] = "despool\n"[i % 8];
    buf t;
    struct archive *w = start_tar(&t);
    tar_add(w, name, AE_IFREG, 0644, NULL, 0, data, size, 1);
    tar_add(w, "after.txt", AE_IFREG, 0644, NULL, 0, "a", 1, 1);
    finish_tar(w, &t, zs);
    free(data);
}

/* EFBIG from the filesystem (here RLIMIT_FSIZE's, with SIGXFSZ ignored:
 * the same errno ext4 gives past 16 TiB) is the archive's fault. */
Test(pack, a_file_too_big_for_the_filesystem_is_too_large)
{
    char *tmp = tu_tmpdir("pack");
    zstream zs;
    one_file_tar(&zs, "big.bin", 1 << 20);
    char *dest = fresh_dir(tmp, "fsize");
    cr_assert_neq(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ds_unpack_opts o = {.size = zs.size, .sha256 = zs.sha};
    ds_unpack_stats us;
    ds_err err;
    int rc = unpack_from(dest, zs.z, zs.zlen, piece_64k, 1, &o, &us, &err);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    cr_assert_lt(rc, 0);
    cr_assert_eq(rc, -EFBIG, "%s", err.msg);
    cr_assert_str_eq(err.reason, "too-large", "%s", err.msg);
    cr_assert_neq(strstr(err.msg, "write big.bin"), NULL, "%s", err.msg);
    free(dest);
    free(zs.z);
    tu_rm(tmp);
}

/* A full disk is the site's fault: io-error (retried), never the
 * archive's. The disk is a 256 KiB tmpfs in this test's own mount
 * namespace (root, or an unprivileged user namespace where allowed). */
Test(pack, a_full_disk_stays_a_local_error)
{
    if (unshare(CLONE_NEWNS) != 0) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            cr_skip_test("no mount namespace here (%s): needs root or "
                         "unprivileged user namespaces",
                         strerror(errno));
        char m[64];
        int fd = open("/proc/self/setgroups", O_WRONLY);
        if (fd >= 0) {
            cr_assert_eq(write(fd, "deny", 4), 4);
            close(fd);
        }
        snprintf(m, sizeof(m), "0 %u 1", (unsigned)uid);
        fd = open("/proc/self/uid_map", O_WRONLY);
        cr_assert(fd >= 0 && write(fd, m, strlen(m)) == (ssize_t)strlen(m));
        close(fd);
        snprintf(m, sizeof(m), "0 %u 1", (unsigned)gid);
        fd = open("/proc/self/gid_map", O_WRONLY);
        cr_assert(fd >= 0 && write(fd, m, strlen(m)) == (ssize_t)strlen(m));
        close(fd);
    }
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0,
                 "make / private: %s", strerror(errno));
    char *tmp = tu_tmpdir("pack");
    char *disk = fresh_dir(tmp, "disk");
    cr_assert_eq(mount("tmpfs", disk, "tmpfs", 0, "size=256k"), 0,
                 "mount tmpfs: %s", strerror(errno));
    zstream zs;
    one_file_tar(&zs, "big.bin", 1 << 20);
    char *dest = fresh_dir(disk, "dest");
    ds_unpack_opts o = {.size = zs.size, .sha256 = zs.sha};
    ds_unpack_stats us;
    ds_err err;
    int rc = unpack_from(dest, zs.z, zs.zlen, piece_64k, 1, &o, &us, &err);
    cr_assert_eq(rc, -ENOSPC, "%s: %s", err.reason, err.msg);
    cr_assert_str_eq(err.reason, "io-error", "%s", err.msg);
    cr_assert_neq(strstr(err.msg, "write big.bin"), NULL, "%s", err.msg);
    cr_assert_eq(umount(disk), 0);
    free(dest);
    free(disk);
    free(zs.z);
    tu_rm(tmp);
}

/* --- two unpacks at once -------------------------------------------------- */

typedef struct job {
    const char *dest;
    const uint8_t *z;
    size_t zlen;
    const ds_pack_stats *st;
    int rc;
    ds_err err;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    ds_unpack_opts o = {.size = j->st->size, .sha256 = j->st->sha256};
    static const size_t sizes[] = {65536, 921600, 7};
    feeder f = {.data = j->z, .len = j->zlen, .sizes = sizes, .nsizes = 3};
    ds_unpack_stats us;
    j->rc = ds_unpack(j->dest, feed, &f, &o, &us, &j->err);
    free(f.piece);
    return NULL;
}

Test(pack, two_unpacks_in_parallel, .timeout = 120)
{
    sample s;
    sample_make(&s);
    /* A second stream with other compressed bytes for the same tree. */
    char *zst2 = tu_pathf("%s/mt.tar.zst", s.tmp);
    ds_pack_stats st2;
    ds_err err;
    cr_assert_eq(pack_to(s.src, zst2, 1, 2, NULL, &st2, &err), 0, "%s",
                 err.msg);
    buf z2 = read_all(zst2);
    cr_assert(z2.len != s.z.len || memcmp(z2.p, s.z.p, z2.len) != 0);

    char *d1 = fresh_dir(s.tmp, "t1"), *d2 = fresh_dir(s.tmp, "t2");
    job j1 = {.dest = d1, .z = s.z.p, .zlen = s.z.len, .st = &s.st};
    job j2 = {.dest = d2, .z = z2.p, .zlen = z2.len, .st = &st2};
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, run_job, &j1), 0);
    cr_assert_eq(pthread_create(&t2, NULL, run_job, &j2), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(j1.rc, 0, "%s", j1.err.msg);
    cr_assert_eq(j2.rc, 0, "%s", j2.err.msg);
    cr_assert_eq(cmp_trees(s.src, d1), s.st.files);
    cr_assert_eq(cmp_trees(s.src, d2), s.st.files);
    free(d1);
    free(d2);
    free(z2.p);
    free(zst2);
    sample_free(&s);
}

/* --- the decompression thread -------------------------------------------- */

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v = rng_next(&seed);
        memcpy(p + i, &v, 8);
    }
}

static off_t file_size(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? st.st_size : -1;
}

/* Streams this large are decompressed on a helper thread. When the tar
 * side fails early (a hostile entry, a damaged header, the size cap), that
 * failure is the one returned, the helper is stopped and joined, and what
 * it read ahead of the tar side is bounded: most of the source stays
 * unread. */
Test(pack, helper_thread_stops_when_the_tar_side_fails, .timeout = 60)
{
    char *tmp = tu_tmpdir("pack");
    const size_t big = 3 << 20, tail = 24 << 20;
    uint8_t *data = malloc(tail);
    cr_assert_not_null(data);
    fill_random(data, tail, 7);
    for (int c = 0; c < 3; c++) {
        static const char *const names[] = {"unsafe", "damaged", "capped"};
        buf t;
        struct archive *w = start_tar(&t);
        tar_add(w, "first.bin", AE_IFREG, 0644, NULL, 0, data, big, 1);
        tar_add(w, c == 0 ? "../evil" : "second.txt", AE_IFREG, 0644, NULL, 0,
                "x", 1, 1);
        tar_add(w, "after.bin", AE_IFREG, 0644, NULL, 0, data, tail, 1);
        cr_assert_eq(archive_write_close(w), ARCHIVE_OK);
        archive_write_free(w);
        /* The second entry's header follows first.bin's header and data:
         * a changed name no longer matches the header checksum. */
        if (c == 1)
            memcpy(t.p + 512 + big, "XX", 2);
        zstream zs;
        zstream_of(&t, &zs);
        ds_unpack_opts o = {.size = zs.size, .sha256 = zs.sha};
        if (c == 2)
            o.size = big + (2 << 20) + 1; /* stops inside after.bin */

        char *dest = fresh_dir(tmp, names[c]);
        feeder f = {
            .data = zs.z, .len = zs.zlen, .sizes = piece_64k, .nsizes = 1};
        ds_unpack_stats us;
        ds_err err;
        ds_err_clear(&err);
        int rc = ds_unpack(dest, feed, &f, &o, &us, &err);
        free(f.piece);
        cr_assert_lt(rc, 0, "%s must fail", names[c]);
        static const char *const want[] = {"unsafe-path", "corrupt-tar",
                                           "too-large"};
        cr_assert_str_eq(err.reason, want[c], "%s: %s", names[c], err.msg);
        cr_assert_eq(rc, err.code);
        cr_assert_eq(atomic_load(&f.overlaps), 0);
        cr_assert_eq(us.zsize, f.pos, "stats count what was read");
        cr_assert_lt(f.pos, zs.zlen / 2, "%s: read %zu of %zu bytes", names[c],
                     f.pos, zs.zlen);
        cr_assert_leq(us.size, o.size, "never past the declared size");
        char *p = tu_pathf("%s/first.bin", dest);
        cr_assert_eq(file_size(p), (off_t)big, "%s: first.bin complete",
                     names[c]);
        free(p);
        p = tu_pathf("%s/after.bin", dest);
        if (c == 2)
            cr_assert_leq(file_size(p), (off_t)(2 << 20));
        else
            cr_assert_not(exists(p), "%s: stopped at the entry", names[c]);
        free(p);
        free(dest);
        free(zs.z);
    }
    free(data);
    tu_rm(tmp);
}

/* A source whose sender went quiet: it hands out all but the stream's
 * last bytes, then waits until interrupted (the worker's read_chunk
 * waiting for a chunk that never comes). */
typedef struct staller {
    feeder f;
    size_t hold; /* bytes withheld at the end */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int interrupted, waited;
} staller;

static ssize_t stall_feed(void *ctx, const void **out)
{
    staller *s = ctx;
    if (s->f.pos + s->hold < s->f.len)
        return feed(&s->f, out);
    pthread_mutex_lock(&s->mu);
    s->waited = 1;
    while (!s->interrupted)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return -1;
}

static void stall_interrupt(void *ctx)
{
    staller *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->interrupted = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The tar side fails while the helper thread waits in the source for the
 * rest of the stream: the interrupt hook lets it go, and the tar side's
 * reason is returned at once (not whatever the source says later, e.g. an
 * incomplete timeout). Without the hook this test hangs. */
Test(pack, stalled_source_is_interrupted_when_the_tar_side_fails, .timeout = 60)
{
    char *tmp = tu_tmpdir("pack");
    const size_t big = 3 << 20;
    uint8_t *data = malloc(big);
    cr_assert_not_null(data);
    fill_random(data, big, 11);
    buf t;
    struct archive *w = start_tar(&t);
    tar_add(w, "first.bin", AE_IFREG, 0644, NULL, 0, data, big, 1);
    tar_add(w, "../evil", AE_IFREG, 0644, NULL, 0, "x", 1, 1);
    tar_add(w, "after.txt", AE_IFREG, 0644, NULL, 0, "y", 1, 1);
    cr_assert_eq(archive_write_close(w), ARCHIVE_OK);
    archive_write_free(w);
    zstream zs;
    zstream_of(&t, &zs);
    ds_unpack_opts o = {
        .size = zs.size, .sha256 = zs.sha, .interrupt = stall_interrupt};
    staller st = {
        .f = {.data = zs.z, .len = zs.zlen, .sizes = piece_64k, .nsizes = 1},
        .hold = 8};
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    char *dest = fresh_dir(tmp, "stalled");
    ds_err err;
    ds_err_clear(&err);
    int rc = ds_unpack(dest, stall_feed, &st, &o, NULL, &err);
    free(st.f.piece);
    cr_assert_lt(rc, 0);
    cr_assert_str_eq(err.reason, "unsafe-path", "%s", err.msg);
    cr_assert(st.interrupted, "the hook was called");
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.mu);
    free(dest);
    free(zs.z);
    free(data);
    tu_rm(tmp);
}

/* Every way a small stream can fail, under tmp, with the given
 * thread_above: the same reasons on the calling thread and on the helper. */
static void small_stream_cases(char *tmp, const zstream *zs,
                               uint64_t thread_above)
{
    sample s = {.tmp = tmp};
    ds_unpack_opts o = {
        .size = zs->size, .sha256 = zs->sha, .thread_above = thread_above};
    ds_err err;

    char *dest = fresh_dir(tmp, "ok");
    ds_unpack_stats us;
    cr_assert_eq(
        unpack_from(dest, zs->z, zs->zlen, piece_64k, 1, &o, &us, &err), 0,
        "%s", err.msg);
    cr_assert_eq(us.entries, 3);
    cr_assert_eq(us.size, zs->size);
    free(dest);

    static const char *const zstd_only[] = {"corrupt-zstd", NULL};
    expect_fail(&s, zs->z, zs->zlen - 3, &o, "trunc", zstd_only, &err);
    cr_assert_neq(strstr(err.msg, "truncated"), NULL, "%s", err.msg);
    expect_fail(&s, zs->z, 0, &o, "empty", zstd_only, &err);
    uint8_t *bad = malloc(zs->zlen + 64);
    memcpy(bad, zs->z, zs->zlen);
    memcpy(bad + zs->zlen, "JUNK", 4);
    expect_fail(&s, bad, zs->zlen + 4, &o, "junk", zstd_only, &err);
    cr_assert_neq(strstr(err.msg, "after the end"), NULL, "%s", err.msg);
    free(bad);

    uint8_t wrong[32];
    memcpy(wrong, zs->sha, 32);
    wrong[0] ^= 1;
    ds_unpack_opts ow = o;
    ow.sha256 = wrong;
    static const char *const sha[] = {"sha256-mismatch", NULL};
    expect_fail(&s, zs->z, zs->zlen, &ow, "sha", sha, &err);

    ds_unpack_opts ol = o;
    ol.size = zs->size + 1;
    static const char *const mism[] = {"size-mismatch", NULL};
    expect_fail(&s, zs->z, zs->zlen, &ol, "larger", mism, &err);

    static const char *const big[] = {"too-large", NULL};
    ds_unpack_opts os = o;
    os.size = 2000; /* inside d/a.txt */
    dest = fresh_dir(tmp, "smaller");
    cr_assert_lt(
        unpack_from(dest, zs->z, zs->zlen, piece_64k, 1, &os, &us, &err), 0);
    cr_assert_str_eq(err.reason, "too-large", "%s", err.msg);
    cr_assert_leq(us.size, os.size, "never past the declared size");
    free(dest);
    os.size = 0;
    expect_fail(&s, zs->z, zs->zlen, &os, "zero", big, &err);

    ds_unpack_opts oc = o;
    oc.max_entries = 2;
    expect_fail(&s, zs->z, zs->zlen, &oc, "entries", big, &err);
    /* (No window case: a frame this small, whole in one piece, is
     * decoded in one pass with no window to bound.) */

    dest = fresh_dir(tmp, "cancel");
    static const size_t one[] = {1};
    feeder f = {.data = zs->z,
                .len = zs->zlen,
                .sizes = one,
                .nsizes = 1,
                .fail_at = 5};
    ds_err_clear(&err);
    cr_assert_lt(ds_unpack(dest, feed, &f, &o, &us, &err), 0);
    cr_assert_str_eq(err.reason, "cancelled");
    cr_assert_eq(us.zsize, 5);
    free(f.piece);
    free(dest);
}

/* Streams too small for the helper thread fail with the same reasons,
 * and so do they when made to use it. */
Test(pack, small_streams_fail_with_their_reason, .timeout = 60)
{
    char *tmp = tu_tmpdir("pack");
    char text[10000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = "abcdefgh\n"[i % 9];
    buf t;
    struct archive *w = start_tar(&t);
    tar_add(w, "d", AE_IFDIR, 0755, NULL, 0, NULL, 0, 1);
    tar_add(w, "d/a.txt", AE_IFREG, 0644, NULL, 0, text, sizeof(text), 1);
    tar_add(w, "d/b.txt", AE_IFREG, 0644, NULL, 0, "b", 1, 1);
    zstream zs;
    finish_tar(w, &t, &zs);
    char *m0 = fresh_dir(tmp, "calling"), *m1 = fresh_dir(tmp, "helper");
    small_stream_cases(m0, &zs, 0);
    small_stream_cases(m1, &zs, 1);
    free(m0);
    free(m1);
    free(zs.z);
    tu_rm(tmp);
}
