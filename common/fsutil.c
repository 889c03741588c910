/*
 * fsutil.c - filesystem helpers shared by the library and the tools:
 * recursive removal that never follows a symlink (it walks directories
 * through O_NOFOLLOW descriptors, so a symlink planted anywhere in a tree
 * is removed itself and its target is left alone), directory fsync,
 * mkdir -p, whole-file reads and strict decimal parsing.
 */
#include "fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest path we build for messages; removal itself works on descriptors
 * and does not depend on it. */
#define SHOWN_MAX 4096

static void join(char *out, const char *dir, const char *name)
{
    if (dir[0] == '\0')
        snprintf(out, SHOWN_MAX, "%s", name);
    else
        snprintf(out, SHOWN_MAX, "%s/%s", dir, name);
}

/*
 * Remove name (relative to parent) and, if it is a directory, everything
 * below it. shown is name's full path, for messages only. Entries that
 * vanish under us (another cleaner racing on the same tree) are not errors.
 */
static int rm_rf_rec(int parent, const char *name, const char *shown,
                     ds_err *err)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        return ds_err_sys(err, "io-error", "stat %s", shown);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
            return ds_err_sys(err, "io-error", "unlink %s", shown);
        return 0;
    }

    /* O_NOFOLLOW: if name was swapped for a symlink since the fstatat, the
     * open fails instead of descending into the symlink's target. */
    int fd =
        openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return ds_err_sys(err, "io-error", "open %s", shown);
    }
    /* A directory without owner write/search permission (an archive may
     * carry one) would make its entries impossible to unlink. */
    if ((st.st_mode & S_IRWXU) != S_IRWXU && fchmod(fd, S_IRWXU) < 0) {
        int rc = ds_err_sys(err, "io-error", "chmod %s", shown);
        close(fd);
        return rc;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int rc = ds_err_sys(err, "io-error", "opendir %s", shown);
        close(fd);
        return rc;
    }

    int rc = 0;
    char *child = malloc(SHOWN_MAX);
    if (child == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal", "rm -rf %s: out of memory",
                        shown);
        goto out;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                rc = ds_err_sys(err, "io-error", "readdir %s", shown);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        join(child, shown, de->d_name);
        rc = rm_rf_rec(dirfd(d), de->d_name, child, err);
        if (rc < 0)
            break;
    }
out:
    free(child);
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = ds_err_sys(err, "io-error", "rmdir %s", shown);
    return rc;
}

int ds_rm_rf_at(int dirfd, const char *name, ds_err *err)
{
    if (name == NULL || name[0] == '\0')
        return ds_err_set(err, -EINVAL, "internal", "rm -rf: empty path");
    return rm_rf_rec(dirfd, name, name, err);
}

int ds_rm_rf(const char *path, ds_err *err)
{
    return ds_rm_rf_at(AT_FDCWD, path, err);
}

int ds_fsync_dir(const char *path, ds_err *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ds_err_sys(err, "io-error", "open %s", path);
    int rc = 0;
    if (fsync(fd) < 0)
        rc = ds_err_sys(err, "io-error", "fsync %s", path);
    close(fd);
    return rc;
}

/* mkdir one level; an existing directory (or a symlink to one, as the
 * caller named it) is fine, an existing non-directory is not. */
static int mkdir_one(const char *path, ds_err *err)
{
    if (mkdir(path, 0755) == 0)
        return 0;
    if (errno != EEXIST)
        return ds_err_sys(err, "io-error", "mkdir %s", path);
    struct stat st;
    if (stat(path, &st) < 0)
        return ds_err_sys(err, "io-error", "stat %s", path);
    if (!S_ISDIR(st.st_mode))
        return ds_err_set(err, -ENOTDIR, "io-error",
                          "mkdir %s: exists and is not a directory", path);
    return 0;
}

int ds_mkdir_p(const char *path, ds_err *err)
{
    if (path == NULL || path[0] == '\0')
        return ds_err_set(err, -EINVAL, "internal", "mkdir: empty path");
    char *buf = strdup(path);
    if (buf == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "mkdir %s: out of memory",
                          path);
    int rc = 0;
    /* Create each prefix ending before a '/', then the whole path. */
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/' || p[-1] == '/')
            continue;
        *p = '\0';
        rc = mkdir_one(buf, err);
        *p = '/';
        if (rc < 0)
            goto out;
    }
    rc = mkdir_one(buf, err);
out:
    free(buf);
    return rc;
}

int ds_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int ds_read_file(const char *path, char **out, size_t *len, ds_err *err)
{
    *out = NULL;
    if (len != NULL)
        *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ds_err_sys(err, "io-error", "open %s", path);

    int rc = 0;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal", "read %s: out of memory",
                        path);
        goto out;
    }
    for (;;) {
        if (cap - n < 2) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = ds_err_set(err, -ENOMEM, "internal",
                                "read %s: out of memory", path);
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = ds_err_sys(err, "io-error", "read %s", path);
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (len != NULL)
        *len = n;
out:
    free(buf);
    close(fd);
    return rc;
}
