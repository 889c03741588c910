/*
 * dedup.c - hardlinks to the installed version's unchanged files (dedup.h).
 *
 * Paths are resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
 * from the installed root, so neither a symlink in the installed tree nor
 * a ".." can lead the comparison (and the link) outside it. Without
 * openat2 (Linux < 5.6) nothing is shared. The last parent directory is
 * kept open: entries arrive depth first.
 */
#include "dedup.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CMP_BUF  (256 * 1024)
#define PATH_CAP 4097

struct ds_dedup {
    int rootfd;
    int cache_fd; /* parent directory of the last candidate */
    size_t cache_len;
    char cache_path[PATH_CAP];
    uint8_t *cmp;
};

void ds_dedup_open(const char *root, ds_dedup **out)
{
    *out = NULL;
    ds_dedup *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return;
    d->cache_fd = -1;
    d->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    d->cmp = malloc(CMP_BUF);
    if (d->rootfd < 0 || d->cmp == NULL) {
        ds_dedup_close(d);
        return;
    }
    *out = d;
}

void ds_dedup_close(ds_dedup *d)
{
    if (d == NULL)
        return;
    if (d->cache_fd >= 0)
        close(d->cache_fd);
    if (d->rootfd >= 0)
        close(d->rootfd);
    free(d->cmp);
    free(d);
}

static int open_beneath(int dirfd, const char *path, uint64_t flags)
{
    struct open_how how = {
        .flags = flags | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* The parent directory of path[0..len) in the installed tree. */
static int parent_fd(ds_dedup *d, const char *path, size_t len)
{
    if (len == 0)
        return d->rootfd;
    if (d->cache_fd >= 0 && d->cache_len == len &&
        memcmp(d->cache_path, path, len) == 0)
        return d->cache_fd;
    if (len >= PATH_CAP)
        return -1;
    char p[PATH_CAP];
    memcpy(p, path, len);
    p[len] = '\0';
    int fd = open_beneath(d->rootfd, p, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    if (d->cache_fd >= 0)
        close(d->cache_fd);
    d->cache_fd = fd;
    memcpy(d->cache_path, path, len);
    d->cache_len = len;
    return fd;
}

int ds_dedup_begin(ds_dedup *d, const char *path, int64_t size, mode_t perm,
                   const struct timespec *mtime, ds_dedup_file *f)
{
    f->fd = -1;
    if (d == NULL || mtime == NULL)
        return 0;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    if (blen == 0 || blen >= sizeof(f->base))
        return 0;
    int pfd = parent_fd(d, path, slash ? (size_t)(slash - path) : 0);
    if (pfd < 0)
        return 0;
    int fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (fstat(fd, &f->st) < 0 || !S_ISREG(f->st.st_mode) ||
        f->st.st_size != size || (f->st.st_mode & 07777) != (perm & 0777) ||
        f->st.st_mtim.tv_sec != mtime->tv_sec ||
        f->st.st_mtim.tv_nsec != mtime->tv_nsec) {
        close(fd);
        return 0;
    }
    if (size > CMP_BUF)
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    f->fd = fd;
    f->dirfd = pfd;
    memcpy(f->base, base, blen + 1);
    return 1;
}

int ds_dedup_same(ds_dedup *d, ds_dedup_file *f, const void *buf, size_t len,
                  int64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        size_t want = len < CMP_BUF ? len : CMP_BUF;
        ssize_t r = pread(f->fd, d->cmp, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || memcmp(d->cmp, p, (size_t)r) != 0)
            return 0;
        p += r;
        len -= (size_t)r;
        off += r;
    }
    return 1;
}

int ds_dedup_copy(ds_dedup_file *f, int fd, int64_t n, const char *name,
                  ds_err *err)
{
    off_t in = 0, out = 0;
    while (in < n) {
        ssize_t r = copy_file_range(f->fd, &in, fd, &out, (size_t)(n - in), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            continue;
        if (r == 0) {
            errno = EIO;
            return ds_err_sys(err, "io-error",
                              "copy the unchanged start of %s from the "
                              "installed version: it ended at %lld of %lld "
                              "bytes",
                              name, (long long)in, (long long)n);
        }
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL &&
            errno != EOPNOTSUPP)
            return ds_err_sys(err, "io-error",
                              "copy the unchanged start of %s from the "
                              "installed version",
                              name);
        /* No copy_file_range here: plain reads and writes. */
        uint8_t b[64 * 1024];
        while (in < n) {
            size_t want =
                (size_t)(n - in) < sizeof(b) ? (size_t)(n - in) : sizeof(b);
            ssize_t got = pread(f->fd, b, want, in);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                if (got == 0)
                    errno = EIO;
                return ds_err_sys(err, "io-error",
                                  "read the unchanged start of %s from the "
                                  "installed version",
                                  name);
            }
            for (ssize_t done = 0; done < got;) {
                ssize_t w =
                    pwrite(fd, b + done, (size_t)(got - done), out + done);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w < 0)
                    return ds_err_sys(err, "io-error", "write %s", name);
                done += w;
            }
            in += got;
            out += got;
        }
    }
    return 0;
}

int ds_dedup_link(ds_dedup_file *f, int dirfd, const char *base)
{
    if (linkat(f->dirfd, f->base, dirfd, base, 0) < 0)
        return -errno;
    /* The name could have been replaced since it was opened (a version is
     * immutable, but only by contract): keep the link only if it is the
     * inode whose bytes were compared. */
    struct stat st;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        st.st_ino != f->st.st_ino || st.st_dev != f->st.st_dev) {
        unlinkat(dirfd, base, 0);
        return -ENOENT;
    }
    return 0;
}

void ds_dedup_end(ds_dedup_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}
