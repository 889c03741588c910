/*
 * test-localparts.c - what a site reuses from its installed version: the
 * part list's encoding (damage detected), ds_pack_stream (the same stream
 * as ds_pack), the plan and the re-created parts (each checked against
 * its id; a damaged file's part reported as local-mismatch and the rest
 * still served), and single-instance storage in unpack (unchanged files
 * linked to the installed version's, changed ones, a changed mode and a
 * path through a symlink not). All data is generated here.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "localparts.h"
#include "pack.h"
#include "partlist.h"
#include "unpack.h"
#include "testutil.h"

#define SLICE (64 * 1024)

static void sha(const void *p, size_t n, uint8_t out[DS_SHA256_LEN])
{
    unsigned len = 0;
    cr_assert_eq(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
}

static void put(const char *dir, const char *name, size_t n, uint64_t seed)
{
    char *p = tu_pathf("%s/%s", dir, name);
    uint8_t *b = malloc(n ? n : 1);
    tu_fill(b, n, seed);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "create %s", p);
    cr_assert_eq(write(fd, b, n), (ssize_t)n);
    close(fd);
    struct timespec ts[2] = {{1700000000, 5}, {1700000000, 123456789}};
    cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
    free(b);
    free(p);
}

/* A tree: files of several sizes in two directories and a symlink. */
static char *make_tree(const char *root, const char *name)
{
    char *d = tu_pathf("%s/%s", root, name);
    char *b = tu_pathf("%s/b", d);
    cr_assert_eq(mkdir(d, 0755), 0);
    cr_assert_eq(mkdir(b, 0755), 0);
    put(d, "a.bin", 300 * 1024, 1);
    put(d, "b/c.bin", 500 * 1024, 2);
    put(d, "b/d.txt", 100, 3);
    put(d, "z.bin", 200 * 1024, 4);
    char *l = tu_pathf("%s/link", d);
    cr_assert_eq(symlink("a.bin", l), 0);
    free(l);
    free(b);
    return d;
}

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static int collect(void *ctx, const void *b, size_t n, ds_err *err)
{
    (void)err;
    buf *s = ctx;
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->p = realloc(s->p, s->cap);
        cr_assert_not_null(s->p);
    }
    memcpy(s->p + s->n, b, n);
    s->n += n;
    return 0;
}

static buf stream_of(const char *dir)
{
    buf s = {0};
    ds_err err;
    ds_pack_stats st;
    cr_assert_eq(ds_pack_stream(dir, NULL, collect, &s, &st, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(st.size, s.n);
    return s;
}

/* The stream cut every SLICE bytes: refs with ids and sizes. */
static size_t cut(const buf *s, ds_part_ref *refs, size_t cap)
{
    size_t n = 0;
    for (size_t off = 0; off < s->n; off += SLICE) {
        cr_assert_lt(n, cap);
        size_t len = s->n - off < SLICE ? s->n - off : SLICE;
        memset(&refs[n], 0, sizeof(refs[n]));
        sha(s->p + off, len, refs[n].id);
        refs[n].size = (uint32_t)len;
        refs[n].zsize = (uint32_t)len;
        n++;
    }
    return n;
}

static ds_partlist list_of(const buf *s, const ds_part_ref *refs, size_t n)
{
    uint8_t *enc = NULL, md[DS_SHA256_LEN];
    size_t len = 0;
    ds_err err;
    sha(s->p, s->n, md);
    cr_assert_eq(ds_partlist_encode(7, s->n, md, refs, n, &enc, &len, &err), 0,
                 "%s", err.msg);
    ds_partlist pl;
    cr_assert_eq(ds_partlist_decode(enc, len, "test", &pl, &err), 0, "%s",
                 err.msg);
    free(enc);
    return pl;
}

Test(partlist, round_trip_and_damage)
{
    ds_part_ref refs[3] = {{.size = 10}, {.size = 20}, {.size = 5}};
    for (int i = 0; i < 3; i++)
        tu_fill(refs[i].id, DS_SHA256_LEN, (uint64_t)i + 9);
    uint8_t md[DS_SHA256_LEN] = {1, 2, 3};
    uint8_t *enc = NULL;
    size_t len = 0;
    ds_err err;
    cr_assert_eq(ds_partlist_encode(42, 35, md, refs, 3, &enc, &len, &err), 0);
    ds_partlist pl;
    cr_assert_eq(ds_partlist_decode(enc, len, "x", &pl, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(pl.version, 42);
    cr_assert_eq(pl.size, 35);
    cr_assert_eq(pl.n, 3);
    cr_assert_eq(memcmp(pl.sha256, md, DS_SHA256_LEN), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(pl.parts[i].size, refs[i].size);
        cr_assert_eq(memcmp(pl.parts[i].id, refs[i].id, DS_SHA256_LEN), 0);
    }
    ds_partlist_free(&pl);
    /* Any byte flipped, or a byte short: refused, naming the cause. */
    for (size_t i = 0; i < len; i += 7) {
        enc[i] ^= 0x40;
        cr_assert_lt(ds_partlist_decode(enc, len, "x", &pl, &err), 0,
                     "byte %zu flipped was accepted", i);
        cr_assert_str_eq(err.reason, "bad-partlist");
        enc[i] ^= 0x40;
    }
    cr_assert_lt(ds_partlist_decode(enc, len - 1, "x", &pl, &err), 0);
    cr_assert_str_eq(err.reason, "bad-partlist");
    /* Sizes that do not add up are refused even with a good checksum. */
    free(enc);
    cr_assert_eq(ds_partlist_encode(42, 36, md, refs, 3, &enc, &len, &err), 0);
    cr_assert_lt(ds_partlist_decode(enc, len, "x", &pl, &err), 0);
    cr_assert(strstr(err.msg, "add up") != NULL, "%s", err.msg);
    free(enc);
}

Test(localparts, stream_equals_pack)
{
    char *root = tu_tmpdir("localparts");
    char *d = make_tree(root, "t");
    buf s = stream_of(d);
    int fd = open("/dev/null", O_WRONLY);
    ds_pack_stats st;
    ds_err err;
    cr_assert_eq(ds_pack(d, NULL, fd, &st, &err), 0, "%s", err.msg);
    close(fd);
    uint8_t md[DS_SHA256_LEN];
    sha(s.p, s.n, md);
    cr_assert_eq(st.size, s.n);
    cr_assert_eq(memcmp(st.sha256, md, DS_SHA256_LEN), 0,
                 "ds_pack_stream's bytes differ from ds_pack's");
    free(s.p);
    free(d);
    tu_rm(root);
}

/* Take every planned part from l and check it against the stream. */
static void drain(ds_local *l, const buf *s, const ds_part_ref *refs,
                  const uint8_t *use, size_t n, int *bad, size_t nbad)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!use[i])
            continue;
        const void *p;
        size_t len;
        ds_err err;
        ds_err_clear(&err);
        int rc = ds_local_next(l, &p, &len, &err);
        int want_bad = 0;
        for (size_t j = 0; j < nbad; j++)
            want_bad |= bad[j] == (int)i;
        if (want_bad) {
            cr_assert_lt(rc, 0, "part %zu: damaged, yet served", i);
            cr_assert_str_eq(err.reason, "local-mismatch", "%s", err.msg);
            cr_assert(strstr(err.msg, "do not match its id") != NULL);
        } else {
            cr_assert_eq(rc, 1, "part %zu: %s", i, err.msg);
            cr_assert_eq(len, refs[i].size);
            uint8_t md[DS_SHA256_LEN];
            sha(p, len, md);
            cr_assert_eq(memcmp(md, refs[i].id, DS_SHA256_LEN), 0);
        }
        k++;
    }
    const void *p;
    size_t len;
    ds_err err;
    cr_assert_eq(ds_local_next(l, &p, &len, &err), 0,
                 "more parts than planned");
    (void)s;
}

Test(localparts, plan_recreate_and_damage)
{
    char *root = tu_tmpdir("localparts");
    char *d = make_tree(root, "t");
    buf s = stream_of(d);
    ds_part_ref old[64], refs[64];
    size_t nold = cut(&s, old, 64);
    cr_assert_gt(nold, 12);
    ds_partlist pl = list_of(&s, old, nold);

    /* The new version: old parts in order, one unknown, one moved back
     * (behind a later one: fetched), one repeated (after itself: found
     * only once, the repeat is fetched). */
    size_t n = 0;
    refs[n++] = old[0];
    refs[n++] = old[1];
    refs[n] = old[2];
    tu_fill(refs[n++].id, DS_SHA256_LEN, 77); /* unknown id */
    refs[n++] = old[4];
    refs[n++] = old[3]; /* before old[4]: not in stream order */
    refs[n++] = old[5];
    refs[n++] = old[5]; /* again: its slice is behind */
    for (size_t i = 6; i < nold; i++)
        refs[n++] = old[i];
    uint8_t use[64];
    size_t nlocal = 0;
    ds_err err;
    cr_assert_eq(ds_local_plan(&pl, refs, n, use, &nlocal, &err), 0);
    uint8_t want[64] = {1, 1, 0, 1, 0, 1, 0};
    for (size_t i = 7; i < n; i++)
        want[i] = 1;
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(use[i], want[i], "ref %zu planned %d", i, use[i]);
    cr_assert_eq(nlocal, n - 3);

    ds_local *l = NULL;
    cr_assert_eq(ds_local_open(d, &pl, refs, n, use, &l, &err), 0, "%s",
                 err.msg);
    drain(l, &s, refs, use, n, NULL, 0);
    ds_local_close(l);

    /* Damage b/c.bin in place (same size and mtime): the parts over the
     * damage are local-mismatch, the others still come. */
    char *c = tu_pathf("%s/b/c.bin", d);
    struct stat st0;
    cr_assert_eq(stat(c, &st0), 0);
    int fd = open(c, O_WRONLY);
    cr_assert_eq(pwrite(fd, "damage", 6, 1000), 6);
    close(fd);
    struct timespec ts[2] = {st0.st_atim, st0.st_mtim};
    cr_assert_eq(utimensat(AT_FDCWD, c, ts, 0), 0);
    /* Where c.bin's byte 1000 is in the stream: find it by the data. */
    buf s2 = stream_of(d);
    cr_assert_eq(s2.n, s.n);
    size_t at = 0;
    while (at < s.n && s.p[at] == s2.p[at])
        at++;
    cr_assert_lt(at, s.n);
    int bad = -1;
    for (size_t i = 0, off = 0; i < n; i++) {
        /* refs i >= 7 are old[i - 1]: offsets by the old slice index. */
        size_t oi = i < 7 ? (size_t[]){0, 1, 2, 4, 3, 5, 5}[i] : i - 1;
        off = oi * SLICE;
        if (use[i] && at >= off && at < off + SLICE)
            bad = (int)i;
    }
    cr_assert_geq(bad, 0);
    cr_assert_eq(ds_local_open(d, &pl, refs, n, use, &l, &err), 0, "%s",
                 err.msg);
    drain(l, &s, refs, use, n, &bad, 1);
    ds_local_close(l);

    /* Closed early (cancel): returns promptly, nothing leaks (ASan). */
    cr_assert_eq(ds_local_open(d, &pl, refs, n, use, &l, &err), 0);
    ds_local_close(l);

    /* A tree that cannot be re-packed (a file gone): the source fails
     * with the pack's error, sticky, never a wrong part. */
    char *z = tu_pathf("%s/z.bin", d);
    cr_assert_eq(unlink(z), 0);
    cr_assert_eq(ds_local_open(d, &pl, refs, n, use, &l, &err), 0);
    int rc = 1;
    const void *p;
    size_t len;
    for (size_t i = 0; i < n && rc != 0; i++) {
        ds_err_clear(&err);
        rc = ds_local_next(l, &p, &len, &err);
        if (rc < 0 && strcmp(err.reason, "local-mismatch") != 0)
            break;
    }
    cr_assert_lt(rc, 0, "the re-created stream lost a file, yet ended well");
    cr_assert_str_neq(err.reason, "cancelled");
    cr_assert_lt(ds_local_next(l, &p, &len, &err), 0, "not sticky");
    ds_local_close(l);

    free(z);
    free(c);
    free(s.p);
    free(s2.p);
    ds_partlist_free(&pl);
    free(d);
    tu_rm(root);
}

typedef struct feeder {
    const buf *s;
    int done;
} feeder;

static ssize_t feed(void *ctx, const void **b)
{
    feeder *f = ctx;
    if (f->done)
        return 0;
    f->done = 1;
    *b = f->s->p;
    return (ssize_t)f->s->n;
}

/* Unpack the raw stream of dir into dest, linking from link_from. */
static ds_unpack_stats unpack_dir(const char *dir, const char *dest,
                                  const char *link_from)
{
    buf s = stream_of(dir);
    uint8_t md[DS_SHA256_LEN];
    sha(s.p, s.n, md);
    cr_assert_eq(mkdir(dest, 0755), 0);
    feeder f = {&s, 0};
    ds_unpack_opts o = {
        .size = s.n, .sha256 = md, .raw = 1, .link_from = link_from};
    ds_unpack_stats st = {0};
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_unpack(dest, feed, &f, &o, &st, &err), 0, "%s", err.msg);
    free(s.p);
    return st;
}

static ino_t ino(const char *dir, const char *name)
{
    char *p = tu_pathf("%s/%s", dir, name);
    struct stat st;
    cr_assert_eq(lstat(p, &st), 0, "stat %s", p);
    free(p);
    return st.st_ino;
}

static int same_bytes(const char *a, const char *b)
{
    char *cmd = tu_pathf("diff -r --no-dereference '%s' '%s' >/dev/null", a, b);
    int rc = system(cmd);
    free(cmd);
    return rc == 0;
}

Test(dedup, unchanged_files_linked)
{
    char *root = tu_tmpdir("localparts");
    char *src = make_tree(root, "src");
    char *v1 = tu_pathf("%s/v1", root), *v2 = tu_pathf("%s/v2", root);
    ds_unpack_stats st = unpack_dir(src, v1, NULL);
    cr_assert_eq(st.linked, 0);
    cr_assert(same_bytes(src, v1));

    /* Version 2: z.bin's bytes changed (same size and mtime), b/d.txt's
     * mode changed, a.bin and b/c.bin unchanged. */
    put(src, "z.bin", 200 * 1024, 99);
    char *dtxt = tu_pathf("%s/b/d.txt", src);
    cr_assert_eq(chmod(dtxt, 0600), 0);
    st = unpack_dir(src, v2, v1);
    cr_assert(same_bytes(src, v2), "version 2 differs from its source");
    cr_assert_eq(st.linked, 2, "%llu files linked",
                 (unsigned long long)st.linked);
    cr_assert_eq(st.linked_bytes, 800 * 1024);
    cr_assert_eq(ino(v1, "a.bin"), ino(v2, "a.bin"));
    cr_assert_eq(ino(v1, "b/c.bin"), ino(v2, "b/c.bin"));
    cr_assert_neq(ino(v1, "z.bin"), ino(v2, "z.bin"));
    cr_assert_neq(ino(v1, "b/d.txt"), ino(v2, "b/d.txt"));
    char *d2 = tu_pathf("%s/b/d.txt", v2);
    struct stat sd;
    cr_assert_eq(stat(d2, &sd), 0);
    cr_assert_eq(sd.st_mode & 07777, 0600);
    /* Version 1 is untouched by version 2's writes. */
    put(root, "ref-z.bin", 200 * 1024, 4);
    char *rz = tu_pathf("%s/ref-z.bin", root), *z1 = tu_pathf("%s/z.bin", v1);
    char *cmd = tu_pathf("cmp -s '%s' '%s'", rz, z1);
    cr_assert_eq(system(cmd), 0, "version 1's z.bin changed");

    /* Removing version 1 leaves version 2's shared files whole. */
    ds_err err;
    cr_assert_eq(ds_rm_rf(v1, &err), 0);
    cr_assert(same_bytes(src, v2), "version 2 lost bytes with version 1");

    free(cmd);
    free(rz);
    free(z1);
    free(d2);
    free(dtxt);
    free(v1);
    free(v2);
    free(src);
    tu_rm(root);
}

/* A symlink in the installed tree never leads the comparison elsewhere:
 * b/ replaced by a symlink to a directory holding the same c.bin. */
Test(dedup, no_symlink_followed)
{
    char *root = tu_tmpdir("localparts");
    char *src = make_tree(root, "src");
    char *v1 = tu_pathf("%s/v1", root), *v2 = tu_pathf("%s/v2", root);
    unpack_dir(src, v1, NULL);
    char *b1 = tu_pathf("%s/b", v1), *other = tu_pathf("%s/other", root);
    cr_assert_eq(rename(b1, other), 0);
    cr_assert_eq(symlink(other, b1), 0);
    ds_unpack_stats st = unpack_dir(src, v2, v1);
    cr_assert(same_bytes(src, v2));
    /* a.bin and z.bin (top level) are linked; nothing under b/ is. */
    cr_assert_eq(st.linked, 2, "%llu linked", (unsigned long long)st.linked);
    char *c_other = tu_pathf("%s/c.bin", other);
    struct stat so, s2;
    char *c2 = tu_pathf("%s/b/c.bin", v2);
    cr_assert_eq(stat(c_other, &so), 0);
    cr_assert_eq(stat(c2, &s2), 0);
    cr_assert_neq(so.st_ino, s2.st_ino, "linked through a symlink");
    free(c2);
    free(c_other);
    free(b1);
    free(other);
    free(v1);
    free(v2);
    free(src);
    tu_rm(root);
}
