/*
 * library_partlist.c - the package's part list file, <pkg>/.partlist
 * (library.h): the parts of the version current points at, kept for the
 * next update to re-create them from disk (partlist.h, localparts.h).
 *
 * A cache: written after the swap of current, under the package lock and
 * only while current is still that version, but not synced (lost to a
 * power cut, the next update fetches what it would have re-created).
 * Readers check the version it names against current and every part they
 * re-create against its id.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "library_int.h"

int ds_library_save_partlist(ds_library *lib, const char *package,
                             uint64_t version, const uint8_t *buf, size_t len,
                             ds_err *err)
{
    char tmp[sizeof(PARTLIST_TMP_PREFIX) + TOKEN_LEN + 8];
    char shown[PATH_MAX + 64];
    int pkgfd = -1, lockfd = -1, fd = -1;
    uint64_t cur = 0;
    int rc = ds_lib_check_package(package, err);
    if (rc < 0)
        return rc;
    snprintf(tmp, sizeof(tmp), PARTLIST_TMP_PREFIX "%s.tmp", lib->token);
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, package);
    if ((rc = ds_lib_open_part(lib->rootfd, package, shown, FIX_PKG, &pkgfd,
                               err)) < 0)
        goto out;
    if ((rc = ds_lib_lock_package(lib, package, pkgfd, "save part list",
                                  &lockfd, err)) < 0)
        goto out;
    if ((rc = ds_lib_check_parts(lib, package, pkgfd, &cur, err)) < 0)
        goto out;
    if (cur != version)
        goto out; /* a newer version won meanwhile: its list is the one */
    fd = openat(pkgfd, tmp,
                O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = ds_err_sys(err, "io-error", "create %s/%s/%s", lib->root, package,
                        tmp);
        goto out;
    }
    if (ds_write_all(fd, buf, len) < 0) {
        rc = ds_err_sys(err, "io-error", "write %s/%s/%s", lib->root, package,
                        tmp);
        goto out;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) < 0) {
        rc = ds_err_sys(err, "io-error", "close %s/%s/%s", lib->root, package,
                        tmp);
        goto out;
    }
    if (renameat(pkgfd, tmp, pkgfd, PARTLIST_NAME) < 0) {
        rc = ds_err_sys(err, "io-error", "rename %s/%s/%s to " PARTLIST_NAME,
                        lib->root, package, tmp);
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0 && pkgfd >= 0)
        unlinkat(pkgfd, tmp, 0); /* best effort: start-up sweeps it too */
    ds_lib_close_fd(lockfd);
    ds_lib_close_fd(pkgfd);
    return rc;
}

int ds_library_load_partlist(ds_library *lib, const char *package, size_t max,
                             uint8_t **buf, size_t *len, ds_err *err)
{
    char shown[PATH_MAX + 64];
    *buf = NULL;
    *len = 0;
    int rc = ds_lib_check_package(package, err);
    if (rc < 0)
        return rc;
    snprintf(shown, sizeof(shown), "%s/%s/" PARTLIST_NAME, lib->root, package);
    int pkgfd = -1;
    char pshown[PATH_MAX + 64];
    snprintf(pshown, sizeof(pshown), "%s/%s", lib->root, package);
    if ((rc = ds_lib_open_part(lib->rootfd, package, pshown, FIX_PKG, &pkgfd,
                               err)) < 0)
        return rc == -ENOENT ? 0 : rc;
    int fd = openat(pkgfd, PARTLIST_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ds_lib_close_fd(pkgfd);
    if (fd < 0)
        return errno == ENOENT ? 0
                               : ds_err_sys(err, "io-error", "open %s", shown);
    struct stat st;
    uint8_t *b = NULL;
    if (fstat(fd, &st) < 0) {
        rc = ds_err_sys(err, "io-error", "stat %s", shown);
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        rc = ds_err_set(err, -EINVAL, "bad-partlist",
                        "%s: not a regular file of at most %zu bytes", shown,
                        max);
        goto out;
    }
    size_t n = (size_t)st.st_size;
    if ((b = malloc(n ? n : 1)) == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal",
                        "read %s: out of memory for %zu bytes", shown, n);
        goto out;
    }
    for (size_t at = 0; at < n;) {
        ssize_t r = read(fd, b + at, n - at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? ds_err_sys(err, "io-error", "read %s", shown)
                       : ds_err_set(err, -EIO, "bad-partlist",
                                    "read %s: shorter than its size", shown);
            goto out;
        }
        at += (size_t)r;
    }
    *buf = b;
    *len = n;
    b = NULL;
out:
    free(b);
    close(fd);
    return rc;
}

int ds_library_version_path(const ds_library *lib, const char *package,
                            uint64_t version, char *path, size_t n, ds_err *err)
{
    int rc = ds_lib_check_package(package, err);
    if (rc < 0)
        return rc;
    int w = snprintf(path, n, "%s/%s/versions/%llu", lib->root, package,
                     (unsigned long long)version);
    if (w < 0 || (size_t)w >= n)
        return ds_err_set(err, -ENAMETOOLONG, "internal",
                          "path of %s/%s/versions/%llu: too long", lib->root,
                          package, (unsigned long long)version);
    return 0;
}
