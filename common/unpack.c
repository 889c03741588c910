/*
 * unpack.c - the worker's payload: pulls compressed pieces from a source
 * callback, decompresses them with zstd into one output buffer that is
 * hashed, counted against the declared size and handed to libarchive's tar
 * reader, and extracts every entry with its own small writer under one
 * destination directory descriptor.
 *
 * Why our own writer rather than archive_write_disk: several threads
 * unpack at once, and archive_write_disk touches process-wide state
 * (archive_write_disk_new calls umask() twice, and paths longer than
 * PATH_MAX make it fchdir()); it also resolves paths by name from the cwd.
 * Here every file is created with *at() calls relative to descriptors of
 * directories we created or opened with O_NOFOLLOW, new files with O_EXCL,
 * so neither the cwd nor a symlink planted by an earlier entry can steer a
 * write outside the destination. Directory modes and mtimes are applied at
 * the end, children before parents, after all content is written.
 */
#include "unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#define UNPACK_OUT_BUF  (256 * 1024)
#define UNPACK_PATH_MAX 4096 /* longest entry path or link target accepted */
#define UNPACK_NAME_MAX 255  /* longest path component accepted */

/* A directory whose mode and mtime are applied once its content is in. */
typedef struct dir_fixup {
    size_t path_off; /* into fixbuf, NUL-terminated */
    size_t seq;      /* archive order, so a repeated entry's last one wins */
    mode_t mode;
    int has_mtime;
    struct timespec mtime;
} dir_fixup;

typedef struct unpacker {
    const char *dest;
    const ds_unpack_opts *opts;
    ds_err *err;
    int rc; /* first failure raised inside the read callback */
    ds_unpack_read_fn rd;
    void *rd_ctx;

    ZSTD_DCtx *dctx;
    ZSTD_inBuffer in;
    int in_eof;     /* rd returned 0 */
    int frame_done; /* ZSTD_decompressStream returned 0: frame complete */
    uint8_t *out;
    EVP_MD_CTX *md;
    uint64_t size, zsize, entries;

    int dest_fd;
    /* The last parent directory opened, kept open: entries arrive depth
     * first, so most share (or descend from) the previous one's parent. */
    int cache_fd;
    size_t cache_len;
    char cache_path[UNPACK_PATH_MAX + 1];
    char path[UNPACK_PATH_MAX + 1];   /* normalised entry path */
    char target[UNPACK_PATH_MAX + 1]; /* normalised hardlink target */
    char link[UNPACK_PATH_MAX + 1];   /* symlink text read back */

    dir_fixup *fix;
    size_t nfix, capfix;
    char *fixbuf;
    size_t fixlen, capfixbuf;
} unpacker;

/* --- decompression: the read side of libarchive ------------------------- */

static int fail_cb(unpacker *u, int rc)
{
    u->rc = rc;
    return rc;
}

/*
 * Produce the next piece of the uncompressed stream in u->out. Returns its
 * length (> 0), 0 at the end (the frame is complete and rd has no more
 * bytes), or a negative code with u->rc set. Every byte returned has been
 * hashed and counted, and never takes the total past the declared size.
 */
static ssize_t next_output(unpacker *u)
{
    if (u->rc != 0)
        return u->rc;
    for (;;) {
        if (u->in.pos == u->in.size && !u->in_eof) {
            const void *buf = NULL;
            ssize_t n = u->rd(u->rd_ctx, &buf);
            if (n < 0)
                return fail_cb(u, ds_err_set(u->err, -ECANCELED, "cancelled",
                                             "unpack %s: source aborted after "
                                             "%llu compressed bytes (code %zd)",
                                             u->dest,
                                             (unsigned long long)u->zsize, n));
            if (n == 0) {
                u->in_eof = 1;
            } else {
                u->in = (ZSTD_inBuffer){buf, (size_t)n, 0};
                u->zsize += (uint64_t)n;
            }
        }
        if (u->frame_done) {
            /* The payload is exactly one frame: anything after it (a second
             * frame, a skippable frame, junk) means the stream is not what
             * the producer wrote. */
            if (u->in.pos < u->in.size)
                return fail_cb(
                    u, ds_err_set(u->err, -EBADMSG, "corrupt-zstd",
                                  "unpack %s: data after the end of the zstd "
                                  "frame at compressed offset %llu",
                                  u->dest,
                                  (unsigned long long)(u->zsize - u->in.size +
                                                       u->in.pos)));
            if (u->in_eof)
                return 0;
            continue;
        }
        ZSTD_outBuffer out = {u->out, UNPACK_OUT_BUF, 0};
        size_t r = ZSTD_decompressStream(u->dctx, &out, &u->in);
        if (ZSTD_isError(r) &&
            ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
            return fail_cb(u, ds_err_set(u->err, -EFBIG, "too-large",
                                         "unpack %s: the zstd frame needs a "
                                         "window larger than 2^%u bytes "
                                         "(--max-window-log)",
                                         u->dest,
                                         u->opts->max_window_log
                                             ? u->opts->max_window_log
                                             : 27));
        if (ZSTD_isError(r))
            return fail_cb(u, ds_err_set(u->err, -EBADMSG, "corrupt-zstd",
                                         "unpack %s: zstd decompress near "
                                         "compressed offset %llu: %s",
                                         u->dest, (unsigned long long)u->zsize,
                                         ZSTD_getErrorName(r)));
        if (r == 0)
            u->frame_done = 1;
        if (out.pos > 0) {
            /* The frame's own content size is the sender's claim too: only
             * the declared size bounds what we accept. */
            if (out.pos > u->opts->size - u->size)
                return fail_cb(
                    u, ds_err_set(u->err, -EFBIG, "too-large",
                                  "unpack %s: uncompressed stream exceeds the "
                                  "declared size of %llu bytes",
                                  u->dest, (unsigned long long)u->opts->size));
            if (EVP_DigestUpdate(u->md, u->out, out.pos) != 1)
                return fail_cb(u,
                               ds_err_set(u->err, -EIO, "internal",
                                          "unpack %s: sha256 update", u->dest));
            u->size += out.pos;
            return (ssize_t)out.pos;
        }
        if (!u->frame_done && u->in_eof && u->in.pos == u->in.size)
            return fail_cb(u,
                           ds_err_set(u->err, -EBADMSG, "corrupt-zstd",
                                      "unpack %s: zstd stream truncated "
                                      "after %llu compressed bytes",
                                      u->dest, (unsigned long long)u->zsize));
    }
}

static la_ssize_t tar_read(struct archive *a, void *ctx, const void **buf)
{
    (void)a;
    unpacker *u = ctx;
    ssize_t n = next_output(u);
    *buf = u->out;
    return n < 0 ? ARCHIVE_FATAL : (la_ssize_t)n;
}

/* --- path checks ---------------------------------------------------------- */

static int unsafe(unpacker *u, const char *name, const char *why)
{
    return ds_err_set(u->err, -EPERM, "unsafe-path", "unpack %s: entry %s: %s",
                      u->dest, name, why);
}

/*
 * Copy the relative path p into out without "." or empty components.
 * Absolute paths, ".." anywhere, overlong paths or components are refused
 * (*why says which). *ncomp receives the number of components; an entry
 * naming the destination itself ("./") normalises to "" with 0 components.
 */
static int normalise(const char *p, char *out, size_t *outlen, int *ncomp,
                     const char **why)
{
    size_t plen = strlen(p);
    if (plen == 0) {
        *why = "empty path";
        return -1;
    }
    if (plen > UNPACK_PATH_MAX) {
        *why = "path longer than 4096 bytes";
        return -1;
    }
    if (p[0] == '/') {
        *why = "absolute path";
        return -1;
    }
    size_t o = 0;
    int n = 0;
    while (*p != '\0') {
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            *why = "'..' in path";
            return -1;
        }
        if (len > UNPACK_NAME_MAX) {
            *why = "path component longer than 255 bytes";
            return -1;
        }
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
            n++;
        }
        p = *end ? end + 1 : end;
    }
    out[o] = '\0';
    *outlen = o;
    *ncomp = n;
    return 0;
}

/*
 * A symlink whose directory is depth components below dest must resolve
 * inside dest. Lexically: no absolute target, and its leading ".." must
 * not climb above dest. Stricter than that, ".." is refused after a name:
 * "d/s/.." goes to the parent of wherever d/s points once d/s is itself a
 * symlink, which no lexical check can see; with ".." only in front, the
 * climb happens through real directories (the link's own parents, which we
 * created without following symlinks) and every symlink reached below is
 * held to the same rule, so resolution never leaves dest.
 */
static const char *check_symlink(const char *t, int depth)
{
    if (t == NULL || t[0] == '\0')
        return "empty symlink target";
    if (strlen(t) > UNPACK_PATH_MAX)
        return "symlink target longer than 4096 bytes";
    if (t[0] == '/')
        return "symlink to an absolute path";
    int named = 0;
    while (*t != '\0') {
        const char *end = strchrnul(t, '/');
        size_t len = (size_t)(end - t);
        if (len == 2 && t[0] == '.' && t[1] == '.') {
            if (named)
                return "symlink target has '..' after a name";
            if (--depth < 0)
                return "symlink points outside the destination";
        } else if (len > 0 && !(len == 1 && t[0] == '.')) {
            named = 1;
            depth++;
        }
        t = *end ? end + 1 : end;
    }
    return NULL;
}

/* --- directory descriptors ------------------------------------------------ */

/*
 * Open directory path[0..len) (relative to dest, normalised) and return a
 * borrowed descriptor in *fd: dest_fd for "", else the cached one, which
 * stays valid until the next call. Components are opened one at a time
 * with O_NOFOLLOW, so a symlink (or a file) in the way is refused rather
 * than followed; missing ones are created (mode 0755) when create is set.
 * name is the entry, for messages.
 */
static int open_dir(unpacker *u, const char *path, size_t len, int create,
                    const char *name, int *fd)
{
    if (len == 0) {
        *fd = u->dest_fd;
        return 0;
    }
    if (u->cache_fd >= 0 && u->cache_len == len &&
        memcmp(u->cache_path, path, len) == 0) {
        *fd = u->cache_fd;
        return 0;
    }
    int cur = u->dest_fd;
    size_t pos = 0;
    if (u->cache_fd >= 0 && u->cache_len < len && path[u->cache_len] == '/' &&
        memcmp(u->cache_path, path, u->cache_len) == 0) {
        cur = u->cache_fd;
        pos = u->cache_len + 1;
    }
    while (pos < len) {
        const char *slash = memchr(path + pos, '/', len - pos);
        size_t clen = slash ? (size_t)(slash - (path + pos)) : len - pos;
        char comp[UNPACK_NAME_MAX + 1];
        memcpy(comp, path + pos, clen);
        comp[clen] = '\0';
        int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        int nfd = openat(cur, comp, flags);
        if (nfd < 0 && errno == ENOENT && create) {
            if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST) {
                int rc = ds_err_sys(u->err, "io-error",
                                    "unpack %s: entry %s: mkdir %.*s", u->dest,
                                    name, (int)(pos + clen), path);
                if (cur != u->dest_fd && cur != u->cache_fd)
                    close(cur);
                return rc;
            }
            nfd = openat(cur, comp, flags);
        }
        int saved = errno;
        if (cur != u->dest_fd && cur != u->cache_fd)
            close(cur);
        if (nfd < 0) {
            errno = saved;
            if (errno == ELOOP || errno == ENOTDIR)
                return ds_err_set(u->err, -ENOTDIR, "unsafe-path",
                                  "unpack %s: entry %s: %.*s is not a "
                                  "directory (a symlink or file is in the way)",
                                  u->dest, name, (int)(pos + clen), path);
            if (errno == ENOENT)
                return ds_err_set(u->err, -ENOENT, "corrupt-tar",
                                  "unpack %s: entry %s: %.*s does not exist",
                                  u->dest, name, (int)(pos + clen), path);
            return ds_err_sys(u->err, "io-error",
                              "unpack %s: entry %s: open %.*s", u->dest, name,
                              (int)(pos + clen), path);
        }
        cur = nfd;
        pos += clen + 1;
    }
    if (u->cache_fd >= 0)
        close(u->cache_fd);
    u->cache_fd = cur;
    memcpy(u->cache_path, path, len);
    u->cache_len = len;
    *fd = cur;
    return 0;
}

/* Make room for a new non-directory name: a non-directory already there is
 * replaced (the later entry wins, as with tar); a directory is not. */
static int make_room(unpacker *u, int dirfd, const char *base, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return ds_err_sys(u->err, "io-error", "unpack %s: stat %s", u->dest,
                          name);
    if (S_ISDIR(st.st_mode))
        return unsafe(u, name, "would replace a directory");
    if (unlinkat(dirfd, base, 0) < 0)
        return ds_err_sys(u->err, "io-error", "unpack %s: unlink %s", u->dest,
                          name);
    return 0;
}

/* --- entries -------------------------------------------------------------- */

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_OMIT;
    if (archive_entry_mtime_is_set(e)) {
        ts[1].tv_sec = archive_entry_mtime(e);
        ts[1].tv_nsec = archive_entry_mtime_nsec(e);
    } else {
        ts[1].tv_sec = 0;
        ts[1].tv_nsec = UTIME_OMIT;
    }
}

/* A failed libarchive call while reading: our callback's error if the
 * stream failed underneath, else the tar data is bad. */
static int read_failed(unpacker *u, struct archive *a, const char *what)
{
    if (u->rc != 0)
        return u->rc;
    return ds_err_set(u->err, -EBADMSG, "corrupt-tar", "unpack %s: %s: %s",
                      u->dest, what, archive_error_string(a));
}

static int put_file(unpacker *u, struct archive *a, struct archive_entry *e,
                    int dirfd, const char *base, const char *name)
{
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(dirfd, base, flags, 0600);
    if (fd < 0 && errno == EEXIST) {
        int rc = make_room(u, dirfd, base, name);
        if (rc < 0)
            return rc;
        fd = openat(dirfd, base, flags, 0600);
    }
    if (fd < 0)
        return ds_err_sys(u->err, "io-error", "unpack %s: create %s", u->dest,
                          name);
    int rc = 0;
    int64_t end = 0;
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(a, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            char what[64 + UNPACK_PATH_MAX];
            snprintf(what, sizeof(what), "read data of %s", name);
            rc = read_failed(u, a, what);
            goto out;
        }
        if (len > 0 && pwrite_all(fd, buf, len, (off_t)off) < 0) {
            rc = ds_err_sys(u->err, "io-error", "unpack %s: write %s", u->dest,
                            name);
            goto out;
        }
        if (off + (int64_t)len > end)
            end = off + (int64_t)len;
    }
    /* A sparse file's trailing hole. */
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > end &&
        ftruncate(fd, (off_t)archive_entry_size(e)) < 0) {
        rc = ds_err_sys(u->err, "io-error", "unpack %s: truncate %s", u->dest,
                        name);
        goto out;
    }
    struct timespec ts[2];
    entry_times(e, ts);
    if (fchmod(fd, archive_entry_perm(e) & 0777) < 0 || futimens(fd, ts) < 0) {
        rc = ds_err_sys(u->err, "io-error", "unpack %s: set mode/mtime of %s",
                        u->dest, name);
        goto out;
    }
out:
    if (close(fd) < 0 && rc == 0)
        rc = ds_err_sys(u->err, "io-error", "unpack %s: close %s", u->dest,
                        name);
    return rc;
}

static int add_fixup(unpacker *u, const char *path, size_t len,
                     struct archive_entry *e)
{
    if (u->nfix == u->capfix) {
        size_t cap = u->capfix ? 2 * u->capfix : 64;
        dir_fixup *f = realloc(u->fix, cap * sizeof(*f));
        if (f == NULL)
            goto oom;
        u->fix = f;
        u->capfix = cap;
    }
    if (u->fixlen + len + 1 > u->capfixbuf) {
        size_t cap = u->capfixbuf ? 2 * u->capfixbuf : 4096;
        while (cap < u->fixlen + len + 1)
            cap *= 2;
        char *b = realloc(u->fixbuf, cap);
        if (b == NULL)
            goto oom;
        u->fixbuf = b;
        u->capfixbuf = cap;
    }
    dir_fixup *f = &u->fix[u->nfix];
    f->path_off = u->fixlen;
    f->seq = u->nfix;
    f->mode = archive_entry_perm(e) & 0777;
    f->has_mtime = archive_entry_mtime_is_set(e);
    f->mtime.tv_sec = archive_entry_mtime(e);
    f->mtime.tv_nsec = archive_entry_mtime_nsec(e);
    memcpy(u->fixbuf + u->fixlen, path, len + 1);
    u->fixlen += len + 1;
    u->nfix++;
    return 0;
oom:
    return ds_err_set(u->err, -ENOMEM, "internal",
                      "unpack %s: out of memory recording directory %s",
                      u->dest, path);
}

static int put_dir(unpacker *u, struct archive_entry *e, int dirfd,
                   const char *base, const char *name, size_t len)
{
    /* 0700 until the end: the archive's mode may deny us writing into it. */
    if (mkdirat(dirfd, base, 0700) < 0) {
        if (errno != EEXIST)
            return ds_err_sys(u->err, "io-error", "unpack %s: mkdir %s",
                              u->dest, name);
        struct stat st;
        if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return ds_err_sys(u->err, "io-error", "unpack %s: stat %s", u->dest,
                              name);
        if (!S_ISDIR(st.st_mode)) {
            int rc = make_room(u, dirfd, base, name);
            if (rc < 0)
                return rc;
            if (mkdirat(dirfd, base, 0700) < 0)
                return ds_err_sys(u->err, "io-error", "unpack %s: mkdir %s",
                                  u->dest, name);
        }
    }
    return add_fixup(u, u->path, len, e);
}

static int put_symlink(unpacker *u, struct archive_entry *e, int dirfd,
                       const char *base, const char *name, const char *target)
{
    if (symlinkat(target, dirfd, base) < 0) {
        if (errno != EEXIST)
            return ds_err_sys(u->err, "io-error", "unpack %s: symlink %s",
                              u->dest, name);
        int rc = make_room(u, dirfd, base, name);
        if (rc < 0)
            return rc;
        if (symlinkat(target, dirfd, base) < 0)
            return ds_err_sys(u->err, "io-error", "unpack %s: symlink %s",
                              u->dest, name);
    }
    struct timespec ts[2];
    entry_times(e, ts);
    if (utimensat(dirfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return ds_err_sys(u->err, "io-error", "unpack %s: set mtime of %s",
                          u->dest, name);
    return 0;
}

/* Hardlink name (depth components deep) to target: an earlier entry,
 * reached with the same no-follow walk. A hardlink to a symlink is a
 * symlink in a new directory, so its text is checked again from there. */
static int put_hardlink(unpacker *u, const char *hl, const char *name,
                        size_t len, int ncomp)
{
    const char *why;
    size_t tlen;
    int tcomp = -1;
    if (normalise(hl, u->target, &tlen, &tcomp, &why) < 0 || tcomp == 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "hardlink target: %s",
                 tcomp == 0 ? "the destination itself" : why);
        return unsafe(u, name, msg);
    }
    if (tlen == len && memcmp(u->target, u->path, len) == 0)
        return 0; /* linked to itself: already there */

    const char *tslash = strrchr(u->target, '/');
    const char *tbase = tslash ? tslash + 1 : u->target;
    size_t tplen = tslash ? (size_t)(tslash - u->target) : 0;
    int tfd;
    int rc = open_dir(u, u->target, tplen, 0, name, &tfd);
    if (rc < 0)
        return rc;
    /* Our own descriptor: opening the link's parent may evict the cache. */
    tfd = fcntl(tfd, F_DUPFD_CLOEXEC, 0);
    if (tfd < 0)
        return ds_err_sys(u->err, "io-error", "unpack %s: dup", u->dest);

    struct stat st;
    if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            rc = ds_err_set(u->err, -ENOENT, "corrupt-tar",
                            "unpack %s: entry %s: hardlink target %s does not "
                            "exist",
                            u->dest, name, u->target);
        else
            rc = ds_err_sys(u->err, "io-error", "unpack %s: stat %s", u->dest,
                            u->target);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = unsafe(u, name, "hardlink to a directory");
        goto out;
    }
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlinkat(tfd, tbase, u->link, sizeof(u->link) - 1);
        if (n < 0) {
            rc = ds_err_sys(u->err, "io-error", "unpack %s: readlink %s",
                            u->dest, u->target);
            goto out;
        }
        u->link[n] = '\0';
        const char *bad = check_symlink(u->link, ncomp - 1);
        if (bad != NULL) {
            rc = unsafe(u, name, bad);
            goto out;
        }
    }

    const char *slash = strrchr(u->path, '/');
    const char *base = slash ? slash + 1 : u->path;
    int dirfd;
    rc = open_dir(u, u->path, slash ? (size_t)(slash - u->path) : 0, 1, name,
                  &dirfd);
    if (rc < 0)
        goto out;
    if (linkat(tfd, tbase, dirfd, base, 0) < 0) {
        if (errno != EEXIST) {
            rc = ds_err_sys(u->err, "io-error", "unpack %s: link %s to %s",
                            u->dest, name, u->target);
            goto out;
        }
        rc = make_room(u, dirfd, base, name);
        if (rc == 0 && linkat(tfd, tbase, dirfd, base, 0) < 0)
            rc = ds_err_sys(u->err, "io-error", "unpack %s: link %s to %s",
                            u->dest, name, u->target);
    }
out:
    close(tfd);
    return rc;
}

static int put_entry(unpacker *u, struct archive *a, struct archive_entry *e)
{
    const char *name = archive_entry_pathname(e);
    if (name == NULL)
        name = "";
    /* Every check runs before anything is written for this entry. */
    const char *why;
    size_t len;
    int ncomp;
    if (normalise(name, u->path, &len, &ncomp, &why) < 0)
        return unsafe(u, name, why);

    const char *hl = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    if (hl == NULL && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
        return unsafe(u, name,
                      "not a regular file, directory, symlink or hardlink");
    if (ncomp == 0) {
        /* "." or "./": the destination itself, which exists already. */
        if (hl == NULL && type == AE_IFDIR)
            return 0;
        return unsafe(u, name, "names the destination itself");
    }
    if (hl != NULL)
        return put_hardlink(u, hl, name, len, ncomp);
    const char *target = NULL;
    if (type == AE_IFLNK) {
        target = archive_entry_symlink(e);
        const char *bad = check_symlink(target, ncomp - 1);
        if (bad != NULL)
            return unsafe(u, name, bad);
    }

    const char *slash = strrchr(u->path, '/');
    const char *base = slash ? slash + 1 : u->path;
    int dirfd;
    int rc = open_dir(u, u->path, slash ? (size_t)(slash - u->path) : 0, 1,
                      name, &dirfd);
    if (rc < 0)
        return rc;
    if (type == AE_IFDIR)
        return put_dir(u, e, dirfd, base, name, len);
    if (type == AE_IFLNK)
        return put_symlink(u, e, dirfd, base, name, target);
    return put_file(u, a, e, dirfd, base, name);
}

/* Children before parents (a child's path extends its parent's, so it
 * sorts after it: descending order puts it first); for one path, archive
 * order, so the last entry's values stay. */
static int fixup_cmp(const void *pa, const void *pb, void *ctx)
{
    const dir_fixup *a = pa, *b = pb;
    const char *buf = ctx;
    int c = strcmp(buf + b->path_off, buf + a->path_off);
    if (c != 0)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int apply_fixups(unpacker *u)
{
    qsort_r(u->fix, u->nfix, sizeof(*u->fix), fixup_cmp, u->fixbuf);
    for (size_t i = 0; i < u->nfix; i++) {
        const dir_fixup *f = &u->fix[i];
        const char *path = u->fixbuf + f->path_off;
        int fd;
        int rc = open_dir(u, path, strlen(path), 0, path, &fd);
        if (rc < 0)
            return rc;
        struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
        if (f->has_mtime)
            ts[1] = f->mtime;
        if (fchmod(fd, f->mode) < 0 || futimens(fd, ts) < 0)
            return ds_err_sys(u->err, "io-error",
                              "unpack %s: set mode/mtime of directory %s",
                              u->dest, path);
    }
    return 0;
}

/* --- entry point ---------------------------------------------------------- */

static int verify(unpacker *u)
{
    const ds_unpack_opts *o = u->opts;
    if (u->size != o->size)
        return ds_err_set(u->err, -EBADMSG, "size-mismatch",
                          "unpack %s: uncompressed size is %llu bytes, the "
                          "event declares %llu",
                          u->dest, (unsigned long long)u->size,
                          (unsigned long long)o->size);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (EVP_DigestFinal_ex(u->md, md, &mdlen) != 1 || mdlen != DS_SHA256_LEN)
        return ds_err_set(u->err, -EIO, "internal", "unpack %s: sha256 final",
                          u->dest);
    if (memcmp(md, o->sha256, DS_SHA256_LEN) != 0) {
        static const char hx[] = "0123456789abcdef";
        char got[2 * DS_SHA256_LEN + 1], want[2 * DS_SHA256_LEN + 1];
        for (int i = 0; i < DS_SHA256_LEN; i++) {
            got[2 * i] = hx[md[i] >> 4];
            got[2 * i + 1] = hx[md[i] & 15];
            want[2 * i] = hx[o->sha256[i] >> 4];
            want[2 * i + 1] = hx[o->sha256[i] & 15];
        }
        got[2 * DS_SHA256_LEN] = want[2 * DS_SHA256_LEN] = '\0';
        return ds_err_set(u->err, -EBADMSG, "sha256-mismatch",
                          "unpack %s: sha256 of the tar stream is %s, the "
                          "event declares %s",
                          u->dest, got, want);
    }
    return 0;
}

static int unpacker_init(unpacker *u)
{
    u->dest_fd = open(u->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u->dest_fd < 0)
        return ds_err_sys(u->err, "io-error", "unpack: open destination %s",
                          u->dest);
    u->dctx = ZSTD_createDCtx();
    u->md = EVP_MD_CTX_new();
    u->out = malloc(UNPACK_OUT_BUF);
    if (u->dctx == NULL || u->md == NULL || u->out == NULL)
        return ds_err_set(u->err, -ENOMEM, "internal",
                          "unpack %s: out of memory", u->dest);
    if (EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1)
        return ds_err_set(u->err, -EIO, "internal",
                          "unpack %s: sha256 init failed", u->dest);
    if (u->opts->max_window_log != 0) {
        size_t r = ZSTD_DCtx_setParameter(u->dctx, ZSTD_d_windowLogMax,
                                          (int)u->opts->max_window_log);
        if (ZSTD_isError(r))
            return ds_err_set(u->err, -EINVAL, "internal",
                              "unpack %s: zstd window log %u: %s", u->dest,
                              u->opts->max_window_log, ZSTD_getErrorName(r));
    }
    return 0;
}

int ds_unpack(const char *dest, ds_unpack_read_fn rd, void *rd_ctx,
              const ds_unpack_opts *opts, ds_unpack_stats *st, ds_err *err)
{
    if (dest == NULL || rd == NULL || opts == NULL || opts->sha256 == NULL)
        return ds_err_set(err, -EINVAL, "internal",
                          "unpack: missing destination, source, size or "
                          "sha256");
    unpacker *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "unpack %s: out of memory",
                          dest);
    u->dest = dest;
    u->opts = opts;
    u->err = err;
    u->rd = rd;
    u->rd_ctx = rd_ctx;
    u->cache_fd = -1;
    struct archive *a = NULL;
    /* As in pack.c: names in pax headers are UTF-8 (or BINARY); read them
     * in C.UTF-8 on this thread so they come back as the producer's bytes
     * whatever the process locale. */
    locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    locale_t old = utf8 != (locale_t)0 ? uselocale(utf8) : (locale_t)0;

    int rc = unpacker_init(u);
    if (rc < 0)
        goto out;

    a = archive_read_new();
    if (a == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal", "unpack %s: out of memory",
                        dest);
        goto out;
    }
    /* Tar only, no filters: the bytes are ours, already decompressed. */
    archive_read_support_format_tar(a);
    if (archive_read_open(a, u, NULL, tar_read, NULL) != ARCHIVE_OK) {
        rc = read_failed(u, a, "open tar stream");
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            char what[64];
            snprintf(what, sizeof(what), "read tar header after %llu entries",
                     (unsigned long long)u->entries);
            rc = read_failed(u, a, what);
            goto out;
        }
        if (opts->max_entries != 0 && u->entries >= opts->max_entries) {
            rc = ds_err_set(
                err, -EFBIG, "too-large",
                "unpack %s: more than %llu entries (at %s)", dest,
                (unsigned long long)opts->max_entries,
                archive_entry_pathname(e) ? archive_entry_pathname(e) : "?");
            goto out;
        }
        rc = put_entry(u, a, e);
        if (rc < 0)
            goto out;
        u->entries++;
    }
    if (u->rc != 0) {
        rc = u->rc;
        goto out;
    }
    /* libarchive stops at the end-of-archive blocks; the rest of the stream
     * (padding, the frame's end and checksum) must still be decompressed,
     * hashed and checked. */
    for (;;) {
        ssize_t n = next_output(u);
        if (n < 0) {
            rc = (int)n;
            goto out;
        }
        if (n == 0)
            break;
    }
    rc = verify(u);
    if (rc < 0)
        goto out;
    rc = apply_fixups(u);
out:
    if (st != NULL) {
        st->entries = u->entries;
        st->size = u->size;
        st->zsize = u->zsize;
    }
    archive_read_free(a);
    if (u->cache_fd >= 0)
        close(u->cache_fd);
    if (u->dest_fd >= 0)
        close(u->dest_fd);
    free(u->fix);
    free(u->fixbuf);
    free(u->out);
    EVP_MD_CTX_free(u->md);
    ZSTD_freeDCtx(u->dctx);
    free(u);
    if (utf8 != (locale_t)0) {
        uselocale(old);
        freelocale(utf8);
    }
    return rc;
}
