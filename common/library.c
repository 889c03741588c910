/*
 * library.c - a site's content library on disk: the per-worker token that
 * marks staging directories, start-up cleanup of dead workers' leftovers
 * (one package at a time: an odd package is refused, the others start),
 * and the finalize protocol that moves a fully written, synced staging
 * tree to versions/<V> and swaps current to it, durably and never
 * backwards. Layout and protocol: library.h and DESIGN.md. What happens
 * to a retired package (kept and marked, or removed) is retire.c's; the
 * two share the handle and a few helpers through library_int.h.
 *
 * Durability: every update's three durability points (the staged tree,
 * its versions/ entry, the swap of current) and the directory syncs among
 * them check the update's own window, from its mark (ds_library_stage,
 * before its first write) to that point. On the library's filesystem they
 * are waits on the group sync with the mark's ticket: they fail if any
 * syncfs of the group since the mark reported an error, whichever round
 * it reached (the argument is at the top of groupsync.c). A package on
 * another filesystem (a mount at <root>/<pkg>) has no group: its mark
 * holds a descriptor of the package directory opened before the first
 * write, and each durability point is a syncfs on THAT descriptor, whose
 * own errseq cursor reports every writeback error on that filesystem since
 * the mark (once; the update fails at the first). A directory that is on
 * neither filesystem when it is synced (the layout changed under the
 * update) fails the update. Nothing durable relies on an fsync of a
 * descriptor opened after the writes: its cursor would start after an
 * error somebody else already saw.
 */
#include "library.h"
#include "library_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "groupsync.h"
#include "log.h"
#include "numparse.h"

#define NAME_MAX_TAG     128
#define VERSION_NAME_MAX 21 /* UINT64_MAX has 20 digits */
/* Staging entry: <token>-<tag>; also <token>-prune-<V> while pruning. */
#define STAGE_NAME_MAX (TOKEN_LEN + 1 + NAME_MAX_TAG + 1)
#define TMP_PREFIX     ".current."
#define TMP_SUFFIX     ".tmp"

struct refusal {
    char pkg[NAME_MAX_PKG + 1];
    char why[DS_ERRMSG_MAX];
};

/* ---- names ------------------------------------------------------------ */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

/* [A-Za-z0-9][A-Za-z0-9._-]{0,max-1}: a single path component that is
 * never ".", ".." or hidden, and has no '/'. */
static bool valid_name(const char *s, size_t max)
{
    if (s == NULL || !is_alnum(s[0]))
        return false;
    size_t i = 1;
    for (; s[i] != '\0'; i++) {
        if (i >= max)
            return false;
        if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    }
    return true;
}

int ds_lib_check_package(const char *pkg, ds_err *err)
{
    if (!valid_name(pkg, NAME_MAX_PKG))
        return ds_err_set(err, -EINVAL, "internal",
                          "library: invalid package name \"%s\"",
                          pkg ? pkg : "(null)");
    return 0;
}

bool ds_lib_is_token(const char *s, size_t len)
{
    if (len != TOKEN_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* A version directory name or symlink target tail: canonical decimal
 * (no sign, no leading zero), >= 1. Anything else is not ours. */
static bool parse_version(const char *s, uint64_t *v)
{
    if (s[0] == '0')
        return false;
    return ds_parse_u64(s, v) == 0 && *v >= 1;
}

/*
 * Split a staging path into its package and entry name. It must be
 * exactly <root>/<package>/.staging/<entry>, with each part a plain
 * component, so finalize and discard can never be pointed outside the
 * library or at a package's own versions.
 */
static int parse_staging(const ds_library *lib, const char *path,
                         char pkg[NAME_MAX_PKG + 1],
                         char name[STAGE_NAME_MAX + 1], ds_err *err)
{
    size_t rl = strcmp(lib->root, "/") == 0 ? 0 : strlen(lib->root);
    const char *p = path;
    if (p == NULL || strncmp(p, lib->root, rl) != 0 || p[rl] != '/')
        goto bad;
    p += rl + 1;
    const char *slash = strchr(p, '/');
    if (slash == NULL || (size_t)(slash - p) > NAME_MAX_PKG)
        goto bad;
    memcpy(pkg, p, (size_t)(slash - p));
    pkg[slash - p] = '\0';
    if (!valid_name(pkg, NAME_MAX_PKG))
        goto bad;
    p = slash + 1;
    if (strncmp(p, ".staging/", 9) != 0)
        goto bad;
    p += 9;
    if (!valid_name(p, STAGE_NAME_MAX))
        goto bad;
    strcpy(name, p);
    return 0;
bad:
    return ds_err_set(err, -EINVAL, "internal",
                      "library: %s is not a staging directory of %s",
                      path ? path : "(null)", lib->root);
}

/* ---- small wrappers ----------------------------------------------------- */

/* mkdirat that accepts an existing entry (checked by the O_NOFOLLOW open
 * that always follows). */
static int mkdir_at(int dirfd, const char *name, const char *shown, ds_err *err)
{
    if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
        return ds_err_sys(err, "io-error", "mkdir %s", shown);
    return 0;
}

static int open_dir_at(int dirfd, const char *name, const char *shown, int *out,
                       ds_err *err)
{
    *out = openat(dirfd, name, OPEN_DIR);
    if (*out < 0)
        return ds_err_sys(err, "io-error", "open %s", shown);
    return 0;
}

/* What name under dirfd is, for a message: "a regular file", "a symlink
 * to \"/tmp\"", ... into buf. */
const char *ds_lib_describe(int dirfd, const char *name, char *buf, size_t n)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        snprintf(buf, n, "unreadable (%s)", strerror(errno));
        return buf;
    }
    if (S_ISLNK(st.st_mode)) {
        char target[256];
        ssize_t r = readlinkat(dirfd, name, target, sizeof(target) - 1);
        target[r < 0 ? 0 : r] = '\0';
        snprintf(buf, n, "a symlink to \"%s\"", target);
    } else {
        snprintf(buf, n, "%s",
                 S_ISREG(st.st_mode)    ? "a regular file"
                 : S_ISDIR(st.st_mode)  ? "a directory"
                 : S_ISFIFO(st.st_mode) ? "a fifo"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                                        : "a device node");
    }
    return buf;
}

/*
 * Open directory name under dirfd (a package directory, its .staging or
 * versions), or say in the error what is there instead and what the
 * operator should do (fix): the library never follows a symlink and never
 * takes over a non-directory. ENOENT is returned as is (callers decide).
 */
int ds_lib_open_part(int dirfd, const char *name, const char *shown,
                     const char *fix, int *out, ds_err *err)
{
    *out = openat(dirfd, name, OPEN_DIR);
    if (*out >= 0)
        return 0;
    int e = errno;
    if (e == ENOTDIR || e == ELOOP) {
        char kind[320];
        ds_lib_describe(dirfd, name, kind, sizeof(kind));
        return ds_err_set(err, -ENOTDIR, "io-error",
                          "open %s: it is %s, not a directory%s; %s", shown,
                          kind,
                          strncmp(kind, "a symlink", 9) == 0
                              ? " (the library never follows symlinks)"
                              : "",
                          fix);
    }
    errno = e;
    if (e == EACCES || e == EPERM)
        return ds_err_sys(err, "io-error",
                          "open %s (give the worker's user rwx on it)", shown);
    return ds_err_sys(err, "io-error", "open %s", shown);
}

#define FIX_STAGING                                                            \
    "remove it (.staging only ever holds work in progress; a restart "         \
    "removes it too)"
#define FIX_VERSIONS                                                           \
    "move it out of the package directory (versions/ holds the finalized "     \
    "versions)"

/* rm -rf name under dirfd; the message names the full path. */
int ds_lib_rm_in(const char *dir, int dirfd, const char *name, ds_err *err)
{
    ds_err inner;
    ds_err_clear(&inner);
    int rc = ds_rm_rf_at(dirfd, name, &inner);
    if (rc < 0)
        return ds_err_set(err, rc, "io-error", "rm -rf %s/%s: %s", dir, name,
                          inner.msg);
    return 0;
}

void ds_lib_close_fd(int fd)
{
    if (fd >= 0)
        close(fd);
}

static int fault(ds_library *lib, const char *point, const char *pkg,
                 uint64_t version, ds_err *err)
{
    if (lib->fault == NULL)
        return 0;
    int rc = lib->fault(lib->fault_ctx, point);
    if (rc == 0)
        return 0;
    return ds_err_set(err, rc < 0 ? rc : -rc, "io-error",
                      "finalize %s/%s version %llu: fault injected at %s",
                      lib->root, pkg, (unsigned long long)version, point);
}

/* ---- open / close ------------------------------------------------------- */

static int new_token(char token[TOKEN_LEN + 1], ds_err *err)
{
    unsigned char raw[TOKEN_BYTES];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t r = getrandom(raw + got, sizeof(raw) - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return ds_err_sys(err, "io-error", "getrandom");
        }
        got += (size_t)r;
    }
    ds_hex(token, raw, sizeof(raw));
    return 0;
}

/*
 * Create and lock <token>.lock. A cleaner that finds a lock file it can
 * lock unlinks it while holding the lock; if that happened between our
 * create and our flock, we now hold a lock on an unlinked file that
 * nobody can see, so check that the name still points at our inode and
 * start over with a new token otherwise.
 */
static int take_token(ds_library *lib, ds_err *err)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        int rc = new_token(lib->token, err);
        if (rc < 0)
            return rc;
        char name[TOKEN_LEN + 8];
        snprintf(name, sizeof(name), "%s.lock", lib->token);
        int fd =
            openat(lib->workersfd, name,
                   O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            if (errno == EEXIST)
                continue; /* a token collision: draw again */
            return ds_err_sys(err, "io-error", "create %s/.despool/workers/%s",
                              lib->root, name);
        }
        while ((rc = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
            ;
        if (rc < 0) {
            rc = ds_err_sys(err, "io-error", "flock %s/.despool/workers/%s",
                            lib->root, name);
            close(fd);
            return rc;
        }
        struct stat mine, named;
        if (fstat(fd, &mine) == 0 &&
            fstatat(lib->workersfd, name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
            mine.st_dev == named.st_dev && mine.st_ino == named.st_ino) {
            lib->tokenfd = fd;
            return 0;
        }
        close(fd);
    }
    return ds_err_set(err, -EAGAIN, "io-error",
                      "library %s: could not take a worker token", lib->root);
}

int ds_library_open(const char *root, unsigned keep_versions, bool create,
                    ds_library **out, ds_err *err)
{
    *out = NULL;
    if (root == NULL || root[0] == '\0')
        return ds_err_set(err, -EINVAL, "usage", "library: empty root path");
    if (keep_versions < 1)
        return ds_err_set(err, -EINVAL, "usage",
                          "library %s: keep_versions must be >= 1", root);
    ds_library *lib = calloc(1, sizeof(*lib));
    if (lib == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "library %s: out of memory",
                          root);
    lib->rootfd = lib->workersfd = lib->tokenfd = -1;
    lib->keep = keep_versions;
    int dfd = -1;
    char shown[PATH_MAX + 32];

    struct stat st;
    int rc = 0;
    if (create)
        rc = ds_mkdir_p(root, err);
    else if (stat(root, &st) < 0 && errno == ENOENT)
        rc = ds_err_set(err, -ENOENT, "usage",
                        "library %s: no such directory (--create-library "
                        "creates it)",
                        root);
    if (rc < 0)
        goto fail;
    lib->root = realpath(root, NULL);
    if (lib->root == NULL) {
        rc = ds_err_sys(err, "io-error", "realpath %s", root);
        goto fail;
    }
    lib->rootfd = open(lib->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lib->rootfd < 0) {
        rc = ds_err_sys(err, "io-error", "open %s", lib->root);
        goto fail;
    }
    snprintf(shown, sizeof(shown), "%s/.despool", lib->root);
    if ((rc = mkdir_at(lib->rootfd, ".despool", shown, err)) < 0 ||
        (rc = open_dir_at(lib->rootfd, ".despool", shown, &dfd, err)) < 0)
        goto fail;
    snprintf(shown, sizeof(shown), "%s/.despool/workers", lib->root);
    if ((rc = mkdir_at(dfd, "workers", shown, err)) < 0 ||
        (rc = open_dir_at(dfd, "workers", shown, &lib->workersfd, err)) < 0)
        goto fail;
    if ((rc = take_token(lib, err)) < 0)
        goto fail;
    if (fstat(lib->rootfd, &st) < 0) {
        rc = ds_err_sys(err, "io-error", "stat %s", lib->root);
        goto fail;
    }
    lib->dev = st.st_dev;
    if ((rc = ds_groupsync_new(lib->rootfd, lib->root, NULL, NULL, &lib->gs,
                               err)) < 0)
        goto fail;
    close(dfd);
    *out = lib;
    return 0;
fail:
    ds_lib_close_fd(dfd);
    ds_library_close(lib);
    return rc;
}

void ds_library_close(ds_library *lib)
{
    if (lib == NULL)
        return;
    if (lib->tokenfd >= 0) {
        /* Unlink while still holding the lock (the same rule cleaners
         * follow), then release it by closing. Our staging leftovers, if
         * any, now belong to a dead token and the next cleanup takes them.
         */
        char name[TOKEN_LEN + 8];
        snprintf(name, sizeof(name), "%s.lock", lib->token);
        unlinkat(lib->workersfd, name, 0);
        close(lib->tokenfd);
    }
    ds_lib_close_fd(lib->workersfd);
    ds_groupsync_free(lib->gs);
    free(lib->refused);
    ds_lib_close_fd(lib->rootfd);
    free(lib->root);
    free(lib);
}

const char *ds_library_root(const ds_library *lib)
{
    return lib->root;
}

void ds_library_set_fault(ds_library *lib, ds_library_fault_fn fn, void *ctx)
{
    lib->fault = fn;
    lib->fault_ctx = ctx;
}

/* ---- current ------------------------------------------------------------ */

/* Read <pkg>/current under pkgfd. A missing link is version 0; anything
 * but "versions/<canonical decimal>" is an error, never guessed at. */
static int read_current(const ds_library *lib, const char *pkg, int pkgfd,
                        uint64_t *version, ds_err *err)
{
    char target[64];
    *version = 0;
    ssize_t r = readlinkat(pkgfd, "current", target, sizeof(target));
    if (r < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == EINVAL) {
            char kind[320];
            return ds_err_set(
                err, -EINVAL, "io-error",
                "readlink %s/%s/current: it is %s, not a "
                "symlink; move it out of the package directory "
                "(current is the symlink to the live version)",
                lib->root, pkg,
                ds_lib_describe(pkgfd, "current", kind, sizeof(kind)));
        }
        return ds_err_sys(err, "io-error", "readlink %s/%s/current", lib->root,
                          pkg);
    }
    if ((size_t)r >= sizeof(target))
        return ds_err_set(err, -EINVAL, "io-error",
                          "readlink %s/%s/current: target too long", lib->root,
                          pkg);
    target[r] = '\0';
    if (strncmp(target, "versions/", 9) != 0 ||
        !parse_version(target + 9, version)) {
        *version = 0;
        return ds_err_set(err, -EINVAL, "io-error",
                          "readlink %s/%s/current: unexpected target \"%s\" "
                          "(want versions/<number>)",
                          lib->root, pkg, target);
    }
    return 0;
}

/*
 * The parts of an open package directory that updates use, each absent or
 * of the right kind: .staging and versions directories we can open, .lock
 * and the retired marker regular files, current a symlink to versions/<n>
 * (its version in *cur).
 * The error names the path, what is there and what to do.
 */
int ds_lib_check_parts(const ds_library *lib, const char *pkg, int pkgfd,
                       uint64_t *cur, ds_err *err)
{
    static const struct {
        const char *name, *fix;
    } dirs[] = {{".staging", FIX_STAGING}, {"versions", FIX_VERSIONS}};
    char shown[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        int fd;
        snprintf(shown, sizeof(shown), "%s/%s/%s", lib->root, pkg,
                 dirs[i].name);
        int rc =
            ds_lib_open_part(pkgfd, dirs[i].name, shown, dirs[i].fix, &fd, err);
        if (rc < 0 && rc != -ENOENT)
            return rc;
        ds_lib_close_fd(fd);
    }
    static const struct {
        const char *name, *fix;
    } files[] = {
        {".lock", "the package's finalize lock is recreated"},
        {RETIRED_NAME, "the marker of a kept retired package; a retire "
                       "writes it again"},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct stat st;
        if (fstatat(pkgfd, files[i].name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            !S_ISREG(st.st_mode)) {
            char kind[320];
            return ds_err_set(
                err, -EINVAL, "io-error",
                "check %s/%s/%s: it is %s, not a regular file; remove it (%s)",
                lib->root, pkg, files[i].name,
                ds_lib_describe(pkgfd, files[i].name, kind, sizeof(kind)),
                files[i].fix);
        }
    }
    return read_current(lib, pkg, pkgfd, cur, err);
}

int ds_library_current(ds_library *lib, const char *package, uint64_t *version,
                       ds_err *err)
{
    *version = 0;
    int rc = ds_lib_check_package(package, err);
    if (rc < 0)
        return rc;
    char shown[PATH_MAX + 32];
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, package);
    int pkgfd;
    rc = ds_lib_open_part(lib->rootfd, package, shown, FIX_PKG, &pkgfd, err);
    if (rc == -ENOENT)
        return 0; /* no package yet */
    if (rc < 0)
        return rc;
    rc = ds_lib_check_parts(lib, package, pkgfd, version, err);
    if (rc < 0)
        *version = 0;
    close(pkgfd);
    return rc;
}

/* ---- stage / sync / discard --------------------------------------------- */

void ds_library_mark_release(ds_library_mark *mark)
{
    if (mark == NULL)
        return;
    ds_lib_close_fd(mark->fd);
    mark->fd = -1;
}

int ds_lib_mark_fs(ds_library *lib, int pkgfd, const char *shown,
                   ds_library_mark *mark, ds_err *err)
{
    /* A package on another filesystem (a mount at <root>/<pkg>): the group
     * does not cover it; a descriptor of its own, opened before the first
     * write there, carries the error cursor its syncs will read. */
    struct stat st;
    if (fstat(pkgfd, &st) < 0)
        return ds_err_sys(err, "io-error", "stat %s", shown);
    if (st.st_dev == lib->dev || mark->fd >= 0)
        return 0;
    mark->fd = openat(pkgfd, ".", OPEN_DIR);
    if (mark->fd < 0)
        return ds_err_sys(err, "io-error", "open %s", shown);
    mark->dev = (uint64_t)st.st_dev;
    return 0;
}

int ds_lib_lock_package(ds_library *lib, const char *pkg, int pkgfd,
                        const char *op, int *lockfd, ds_err *err)
{
    *lockfd =
        openat(pkgfd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (*lockfd < 0)
        return ds_err_sys(err, "io-error", "%s: open %s/%s/.lock", op,
                          lib->root, pkg);
    int rc;
    while ((rc = flock(*lockfd, LOCK_EX)) < 0 && errno == EINTR)
        ;
    if (rc < 0) {
        rc = ds_err_sys(err, "io-error", "%s: flock %s/%s/.lock", op, lib->root,
                        pkg);
        goto fail;
    }
    /* The lock is the directory's (.lock moves with it): if a removal
     * renamed the directory away while we waited, <root>/<pkg> is now
     * another directory or nothing, and work in the moved tree would be
     * deleted with it. */
    struct stat mine, named;
    if (fstat(pkgfd, &mine) < 0) {
        rc = ds_err_sys(err, "io-error", "%s: stat %s/%s", op, lib->root, pkg);
        goto fail;
    }
    if (fstatat(lib->rootfd, pkg, &named, AT_SYMLINK_NOFOLLOW) < 0 ||
        named.st_dev != mine.st_dev || named.st_ino != mine.st_ino) {
        rc = ds_err_set(err, -ESTALE, "io-error",
                        "%s %s/%s: the package directory was moved away while "
                        "waiting for its lock (the package was removed by a "
                        "retire); start over",
                        op, lib->root, pkg);
        goto fail;
    }
    return 0;
fail:
    close(*lockfd);
    *lockfd = -1;
    return rc;
}

int ds_library_stage(ds_library *lib, const char *package, const char *tag,
                     char *path, size_t n, ds_library_mark *mark, ds_err *err)
{
    int pkgfd = -1, stfd = -1;
    /* Before anything is written: from here on, every failed sync of the
     * group counts against this update. */
    *mark = (ds_library_mark){.fd = -1};
    ds_groupsync_begin(lib->gs, &mark->since);
    int rc = ds_lib_check_package(package, err);
    if (rc < 0)
        return rc;
    if (!valid_name(tag, NAME_MAX_TAG))
        return ds_err_set(err, -EINVAL, "internal",
                          "stage %s/%s: invalid tag \"%s\"", lib->root, package,
                          tag ? tag : "(null)");
    char name[STAGE_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%s-%s", lib->token, tag);
    int len = snprintf(path, n, "%s/%s/.staging/%s", lib->root, package, name);
    if (len < 0 || (size_t)len >= n)
        return ds_err_set(err, -ENAMETOOLONG, "internal",
                          "stage %s/%s: path buffer too small (%zu bytes)",
                          lib->root, package, n);

    char shown[PATH_MAX + 64];
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, package);
    if ((rc = mkdir_at(lib->rootfd, package, shown, err)) < 0 ||
        (rc = ds_lib_open_part(lib->rootfd, package, shown, FIX_PKG, &pkgfd,
                               err)) < 0)
        goto out;
    if ((rc = ds_lib_mark_fs(lib, pkgfd, shown, mark, err)) < 0)
        goto out;
    snprintf(shown, sizeof(shown), "%s/%s/versions", lib->root, package);
    int verfd = -1;
    rc = mkdir_at(pkgfd, "versions", shown, err);
    if (rc == 0)
        rc = ds_lib_open_part(pkgfd, "versions", shown, FIX_VERSIONS, &verfd,
                              err);
    ds_lib_close_fd(verfd); /* only checked: finalize needs it a directory */
    if (rc < 0)
        goto out;
    snprintf(shown, sizeof(shown), "%s/%s/.staging", lib->root, package);
    if ((rc = mkdir_at(pkgfd, ".staging", shown, err)) < 0 ||
        (rc = ds_lib_open_part(pkgfd, ".staging", shown, FIX_STAGING, &stfd,
                               err)) < 0)
        goto out;
    /* Fresh or nothing: an existing directory could hold another
     * attempt's files, which must never end up in a version. */
    if (mkdirat(stfd, name, 0755) < 0)
        rc = ds_err_sys(err, "io-error", "mkdir %s", path);
out:
    ds_lib_close_fd(stfd);
    ds_lib_close_fd(pkgfd);
    if (rc < 0 && n > 0)
        path[0] = '\0';
    return rc;
}

/*
 * Everything the update of mark wrote so far on the filesystem of fd is
 * durable when this returns 0, and no writeback error was reported on it
 * since the mark: on the library's filesystem one syncfs shared with
 * concurrent callers (failing if any sync of the group since the mark
 * failed), on the mark's own filesystem a syncfs of the mark's descriptor
 * (its cursor dates from the mark). Anything else means the layout
 * changed under the update: fail (a retry starts over). shown names the
 * step in the error.
 */
int ds_lib_durable(ds_library *lib, const ds_library_mark *mark, int fd,
                   const char *shown, ds_err *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return ds_err_sys(err, "io-error", "sync %s: stat", shown);
    if (st.st_dev == lib->dev) {
        ds_err gerr;
        int rc = ds_groupsync_wait(lib->gs, &mark->since, &gerr);
        if (rc < 0)
            return ds_err_set(err, rc, "io-error", "sync %s: %s", shown,
                              gerr.msg);
        return 0;
    }
    if (mark->fd >= 0 && (uint64_t)st.st_dev == mark->dev) {
        if (syncfs(mark->fd) < 0)
            return ds_err_sys(err, "io-error",
                              "syncfs %s (writes since the update began)",
                              shown);
        return 0;
    }
    return ds_err_set(err, -EXDEV, "io-error",
                      "sync %s: on a filesystem the update did not start on "
                      "(was something mounted in the library meanwhile?)",
                      shown);
}

int ds_library_sync(ds_library *lib, const char *staging,
                    const ds_library_mark *mark, ds_err *err)
{
    char pkg[NAME_MAX_PKG + 1], name[STAGE_NAME_MAX + 1];
    int rc = parse_staging(lib, staging, pkg, name, err);
    if (rc < 0)
        return rc;
    int fd = open(staging, OPEN_DIR);
    if (fd < 0)
        return ds_err_sys(err, "io-error", "open %s", staging);
    /*
     * fsync strategy (as ostree's commit): instead of one fsync per file
     * and per directory written by the extraction, ONE syncfs(2) on the
     * filesystem that holds the staging tree. It writes back every dirty
     * page and all metadata of that filesystem, so every file's data,
     * every inode and every directory entry created under staging is
     * durable when it returns. The trade-off: a tree of thousands of small
     * files costs one journal commit instead of thousands, but syncfs also
     * flushes unrelated dirty data on the same filesystem, which can make
     * it slow on a busy shared disk. (Since Linux 5.8 it also reports
     * writeback errors seen on that filesystem.)
     *
     * And because syncfs covers the whole filesystem, the threads of this
     * process that need it at the same moment share one call (group
     * commit, groupsync.h): a backlog of small updates pays one syncfs per
     * batch, not one per update. A shared syncfs reports a writeback
     * error once, to whoever syncs first, so the check is the update's
     * mark: any failed sync since it fails this one (see the top of this
     * file and of groupsync.c).
     */
    rc = ds_lib_durable(lib, mark, fd, staging, err);
    close(fd);
    return rc;
}

int ds_library_discard(ds_library *lib, const char *staging, ds_err *err)
{
    char pkg[NAME_MAX_PKG + 1], name[STAGE_NAME_MAX + 1];
    char shown[PATH_MAX + 64];
    int pkgfd = -1, stfd = -1;
    int rc = parse_staging(lib, staging, pkg, name, err);
    if (rc < 0)
        return rc;
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, pkg);
    if ((rc = ds_lib_open_part(lib->rootfd, pkg, shown, FIX_PKG, &pkgfd, err)) <
        0)
        goto out;
    snprintf(shown, sizeof(shown), "%s/%s/.staging", lib->root, pkg);
    if ((rc = ds_lib_open_part(pkgfd, ".staging", shown, FIX_STAGING, &stfd,
                               err)) < 0)
        goto out;
    rc = ds_lib_rm_in(shown, stfd, name, err);
out:
    ds_lib_close_fd(stfd);
    ds_lib_close_fd(pkgfd);
    return rc;
}

/* ---- finalize ----------------------------------------------------------- */

/*
 * Take versions/<v> out of versions/ for good: rename it into .staging
 * first (one atomic step), then delete it there. A crash mid-delete thus
 * leaves a half-deleted tree in .staging under our token, which cleanup
 * removes once we are dead, never a half-deleted version under versions/.
 */
static int remove_version(ds_library *lib, const char *pkg, int verfd, int stfd,
                          uint64_t v, const char *why, ds_err *err)
{
    char vname[VERSION_NAME_MAX + 1], aside[STAGE_NAME_MAX + 1];
    char shown[PATH_MAX + 64];
    snprintf(vname, sizeof(vname), "%llu", (unsigned long long)v);
    snprintf(aside, sizeof(aside), "%s-%s-%s", lib->token, why, vname);
    snprintf(shown, sizeof(shown), "%s/%s/.staging", lib->root, pkg);
    /* A previous attempt of ours may have failed mid-delete. */
    int rc = ds_lib_rm_in(shown, stfd, aside, err);
    if (rc < 0)
        return rc;
    if (renameat(verfd, vname, stfd, aside) < 0)
        return ds_err_sys(err, "io-error", "rename %s/%s/versions/%s to %s/%s",
                          lib->root, pkg, vname, shown, aside);
    return ds_lib_rm_in(shown, stfd, aside, err);
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Keep the lib->keep highest versions and always current; called under the
 * package lock, after the swap is durable. Not fsynced: a prune lost to a
 * power cut only leaves an extra old version behind. */
static int prune(ds_library *lib, const char *pkg, int verfd, int stfd,
                 uint64_t current, ds_err *err)
{
    uint64_t *vs = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    int fd = openat(verfd, ".", OPEN_DIR);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        rc = ds_err_sys(err, "io-error", "opendir %s/%s/versions", lib->root,
                        pkg);
        ds_lib_close_fd(fd);
        return rc;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                rc = ds_err_sys(err, "io-error", "readdir %s/%s/versions",
                                lib->root, pkg);
            break;
        }
        uint64_t v;
        if (!parse_version(de->d_name, &v))
            continue; /* not a version of ours: leave it alone */
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(vs, nc * sizeof(*vs));
            if (nv == NULL) {
                rc = ds_err_set(err, -ENOMEM, "internal",
                                "prune %s/%s: out of memory", lib->root, pkg);
                break;
            }
            vs = nv;
            cap = nc;
        }
        vs[n++] = v;
    }
    closedir(d);
    if (rc == 0 && n > 0) {
        qsort(vs, n, sizeof(*vs), cmp_desc);
        for (size_t i = lib->keep; i < n && rc == 0; i++)
            if (vs[i] != current)
                rc = remove_version(lib, pkg, verfd, stfd, vs[i], "prune", err);
    }
    free(vs);
    return rc;
}

int ds_library_finalize(ds_library *lib, const char *package, uint64_t version,
                        const char *staging, const ds_library_mark *mark,
                        ds_finalize_result *result, ds_err *err)
{
    char spkg[NAME_MAX_PKG + 1], sname[STAGE_NAME_MAX + 1];
    char vname[VERSION_NAME_MAX + 1], target[VERSION_NAME_MAX + 16];
    char tmp[sizeof(TMP_PREFIX) + TOKEN_LEN + sizeof(TMP_SUFFIX)];
    char shown[PATH_MAX + 64];
    int pkgfd = -1, lockfd = -1, stfd = -1, verfd = -1;
    uint64_t cur = 0;

    int rc = ds_lib_check_package(package, err);
    if (rc < 0)
        return rc;
    if (version == 0)
        return ds_err_set(err, -EINVAL, "internal",
                          "finalize %s/%s: version 0 is reserved for none",
                          lib->root, package);
    if ((rc = parse_staging(lib, staging, spkg, sname, err)) < 0)
        return rc;
    if (strcmp(spkg, package) != 0)
        return ds_err_set(err, -EINVAL, "internal",
                          "finalize %s/%s: staging %s belongs to package %s",
                          lib->root, package, staging, spkg);
    snprintf(vname, sizeof(vname), "%llu", (unsigned long long)version);
    snprintf(target, sizeof(target), "versions/%s", vname);
    snprintf(tmp, sizeof(tmp), TMP_PREFIX "%s" TMP_SUFFIX, lib->token);

    snprintf(shown, sizeof(shown), "%s/%s", lib->root, package);
    if ((rc = ds_lib_open_part(lib->rootfd, package, shown, FIX_PKG, &pkgfd,
                               err)) < 0)
        goto out;

    /* Everything from reading current to the end of prune happens under
     * the package lock, so "current < V" still holds when we swap. */
    if ((rc = ds_lib_lock_package(lib, package, pkgfd, "finalize", &lockfd,
                                  err)) < 0)
        goto out;

    snprintf(shown, sizeof(shown), "%s/%s/.staging", lib->root, package);
    if ((rc = ds_lib_open_part(pkgfd, ".staging", shown, FIX_STAGING, &stfd,
                               err)) < 0)
        goto out;
    snprintf(shown, sizeof(shown), "%s/%s/versions", lib->root, package);
    if ((rc = ds_lib_open_part(pkgfd, "versions", shown, FIX_VERSIONS, &verfd,
                               err)) < 0)
        goto out;
    struct stat st;
    if (fstatat(stfd, sname, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        rc = ds_err_sys(err, "io-error", "stat %s", staging);
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        rc = ds_err_set(err, -ENOTDIR, "io-error",
                        "finalize %s: not a directory", staging);
        goto out;
    }

    if ((rc = read_current(lib, package, pkgfd, &cur, err)) < 0)
        goto out;
    if (cur >= version) {
        /* Stale or duplicate: nothing changes but the staging tree. */
        snprintf(shown, sizeof(shown), "%s/%s/.staging", lib->root, package);
        if ((rc = ds_lib_rm_in(shown, stfd, sname, err)) < 0)
            goto out;
        *result = DS_STALE;
        goto out;
    }

    /* versions/V can only exist here as the leftover of a crash between
     * the rename and the swap (current < V, so nothing points at it). Its
     * content may come from an older attempt: replace it with ours. */
    if (fstatat(verfd, vname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if ((rc = remove_version(lib, package, verfd, stfd, version, "old",
                                 err)) < 0)
            goto out;
    } else if (errno != ENOENT) {
        rc = ds_err_sys(err, "io-error", "stat %s/%s/versions/%s", lib->root,
                        package, vname);
        goto out;
    }

    if ((rc = fault(lib, "before-rename", package, version, err)) < 0)
        goto out;
    /* The caller synced the tree's content (ds_library_sync); the rename
     * moves it, complete, into versions/ in one atomic step. */
    if (renameat(stfd, sname, verfd, vname) < 0) {
        rc = ds_err_sys(err, "io-error", "rename %s to %s/%s/versions/%s",
                        staging, lib->root, package, vname);
        goto out;
    }
    /* Make the new entry in versions/ durable BEFORE current can point at
     * it: otherwise a power cut could leave current (once synced) pointing
     * at a name the directory never recorded. For a package's first
     * version the package directory itself is new; its entry in the root
     * must survive a power cut as well (one group sync covers both when
     * versions/ is on the root's filesystem: syncfs covers it all). */
    snprintf(shown, sizeof(shown), "%s/%s/versions", lib->root, package);
    if ((rc = ds_lib_durable(lib, mark, verfd, shown, err)) < 0)
        goto out;
    if (cur == 0 && (fstat(verfd, &st) < 0 || st.st_dev != lib->dev) &&
        (rc = ds_lib_durable(lib, mark, lib->rootfd, lib->root, err)) < 0)
        goto out;

    /* symlink(2) cannot replace an existing name, rename(2) can, and
     * atomically: readers see the old target or the new one, never no
     * current. The temporary name carries our token so that concurrent
     * workers never share it, and a dead worker's one is swept. */
    if (unlinkat(pkgfd, tmp, 0) < 0 && errno != ENOENT) {
        rc = ds_err_sys(err, "io-error", "unlink %s/%s/%s", lib->root, package,
                        tmp);
        goto out;
    }
    if (symlinkat(target, pkgfd, tmp) < 0) {
        rc = ds_err_sys(err, "io-error", "symlink %s/%s/%s", lib->root, package,
                        tmp);
        goto out;
    }
    if ((rc = fault(lib, "before-swap", package, version, err)) < 0)
        goto out;
    if (renameat(pkgfd, tmp, pkgfd, "current") < 0) {
        rc = ds_err_sys(err, "io-error", "rename %s/%s/%s to current",
                        lib->root, package, tmp);
        goto out;
    }
    if ((rc = fault(lib, "before-fsync", package, version, err)) < 0)
        goto out;
    /* Without this sync the swap of current can vanish after a power cut
     * even though the caller already committed the Kafka offset: the
     * update would be lost for good. Only after it may the offset move. */
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, package);
    if ((rc = ds_lib_durable(lib, mark, pkgfd, shown, err)) < 0)
        goto out;
    *result = DS_FINALIZED;
    /* A kept retired package is live again (retire.c). */
    ds_lib_retire_revive(lib, package, pkgfd);

    /* The version is live and durable; a failed prune only leaves extra
     * old versions, so it is reported in the log, not to the caller (who
     * would otherwise retry an update that is done). */
    ds_err perr;
    ds_err_clear(&perr);
    if (prune(lib, package, verfd, stfd, version, &perr) < 0) {
        char q[DS_ERRMSG_MAX + 16];
        ds_warn("prune-failed", "package=%s version=%llu error=%s", package,
                (unsigned long long)version,
                ds_log_quote(q, sizeof(q), perr.msg));
    }
out:
    ds_lib_close_fd(verfd);
    ds_lib_close_fd(stfd);
    ds_lib_close_fd(lockfd); /* releases the package lock */
    ds_lib_close_fd(pkgfd);
    return rc < 0 ? rc : 0;
}

/* ---- start-up cleanup --------------------------------------------------- */

/*
 * Is the worker with this token alive? 1 yes, 0 no, <0 error. A live
 * worker holds flock(LOCK_EX) on its lock file from open to close, so a
 * missing file or a lock we can take means it is gone. A dead token never
 * comes back: tokens are random and a worker only ever uses its own.
 */
int ds_lib_token_live(const ds_library *lib, const char *tok, ds_err *err)
{
    if (strcmp(tok, lib->token) == 0)
        return 1;
    char name[TOKEN_LEN + 8];
    snprintf(name, sizeof(name), "%s.lock", tok);
    int fd = openat(lib->workersfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return ds_err_sys(err, "io-error", "open %s/.despool/workers/%s",
                          lib->root, name);
    }
    int rc;
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR)
        ;
    if (rc < 0) {
        rc = errno == EWOULDBLOCK
                 ? 1
                 : ds_err_sys(err, "io-error", "flock %s/.despool/workers/%s",
                              lib->root, name);
        close(fd);
        return rc;
    }
    close(fd); /* the file itself goes in sweep_workers */
    return 0;
}

/* Which temporary name of ours name is: 1 when it starts with prefix
 * (.current. or .retired.), and then its token goes into tok if it is
 * exactly <prefix><token>.tmp (tok[0] = '\0' otherwise: nobody's). */
static bool tmp_token(const char *name, const char *prefix,
                      char tok[TOKEN_LEN + 1])
{
    size_t pl = strlen(prefix), sl = strlen(TMP_SUFFIX);
    size_t len = strlen(name);
    tok[0] = '\0';
    if (strncmp(name, prefix, pl) != 0)
        return false;
    if (len == pl + TOKEN_LEN + sl &&
        strcmp(name + len - sl, TMP_SUFFIX) == 0 &&
        ds_lib_is_token(name + pl, TOKEN_LEN)) {
        memcpy(tok, name + pl, TOKEN_LEN);
        tok[TOKEN_LEN] = '\0';
    }
    return true;
}

int ds_lib_open_dirstream(int dirfd, const char *shown, DIR **out, ds_err *err)
{
    int fd = openat(dirfd, ".", OPEN_DIR);
    *out = fd < 0 ? NULL : fdopendir(fd);
    if (*out == NULL) {
        int rc = ds_err_sys(err, "io-error", "opendir %s", shown);
        ds_lib_close_fd(fd);
        return rc;
    }
    return 0;
}

/* readdir that skips . and ..; NULL at the end or on error (rc set). */
struct dirent *ds_lib_next_entry(DIR *d, const char *shown, int *rc,
                                 ds_err *err)
{
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                *rc = ds_err_sys(err, "io-error", "readdir %s", shown);
            return NULL;
        }
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            return de;
    }
}

/* A leftover of a package that could not be removed: a warning, the
 * package still starts (it only wastes space; the next start-up tries
 * again). */
static void cleanup_failed(const char *pkg, const ds_err *perr)
{
    char q[DS_ERRMSG_MAX + 16];
    ds_warn("cleanup-failed",
            "package=%s error=%s note=\"left in place; the package is served, "
            "the next start-up tries again\"",
            pkg, ds_log_quote(q, sizeof(q), perr->msg));
}

/* Refuse package pkg at start-up: log what is wrong (perr names the path)
 * and what to do, and record it for ds_library_refused. < 0 only when out
 * of memory. */
static int refuse(ds_library *lib, const char *pkg, const ds_err *perr,
                  ds_err *err)
{
    char q[DS_ERRMSG_MAX + 16], path[PATH_MAX + 256];
    snprintf(path, sizeof(path), "%s/%s", lib->root, pkg);
    ds_warn("package-refused",
            "package=%s path=%s error=%s note=\"the other packages are "
            "served; updates of this one fail with a local error (retried, "
            "later events of its partition wait) until the path is fixed; no "
            "restart needed\"",
            pkg, DS_LV(path), ds_log_quote(q, sizeof(q), perr->msg));
    struct refusal *nr =
        realloc(lib->refused, (lib->nrefused + 1) * sizeof(*nr));
    if (nr == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "cleanup %s: out of memory",
                          lib->root);
    lib->refused = nr;
    snprintf(nr[lib->nrefused].pkg, sizeof(nr->pkg), "%s", pkg);
    snprintf(nr[lib->nrefused].why, sizeof(nr->why), "%s", perr->msg);
    lib->nrefused++;
    return 0;
}

const char *ds_library_refused(const ds_library *lib, size_t i,
                               const char **why)
{
    if (i >= lib->nrefused)
        return NULL;
    if (why != NULL)
        *why = lib->refused[i].why;
    return lib->refused[i].pkg;
}

/*
 * Start-up cleanup of one package. Every problem here is the package's
 * own: it is logged and the caller goes on with the next package; only
 * running out of memory is returned (< 0).
 */
static int cleanup_package(ds_library *lib, const char *pkg, unsigned *removed,
                           ds_err *err)
{
    char shown[PATH_MAX + 64], tok[TOKEN_LEN + 1], kind[320];
    int pkgfd = -1, stfd = -1, rc = 0;
    uint64_t cur;
    ds_err perr;
    ds_err_clear(&perr);
    DIR *d = NULL;
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, pkg);
    rc = ds_lib_open_part(lib->rootfd, pkg, shown, FIX_PKG, &pkgfd, &perr);
    if (rc == -ENOENT)
        return 0; /* gone since readdir */
    if (rc < 0)
        return refuse(lib, pkg, &perr, err);

    /* A .staging that is not a directory holds nobody's work (a worker's
     * is only ever a directory) and is ours by contract: unlink it.
     * unlinkat removes a symlink itself, never what it points at, and
     * pkgfd was opened O_NOFOLLOW, so nothing outside the library is
     * touched. */
    snprintf(shown, sizeof(shown), "%s/%s/.staging", lib->root, pkg);
    struct stat st;
    if (fstatat(pkgfd, ".staging", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        !S_ISDIR(st.st_mode)) {
        ds_lib_describe(pkgfd, ".staging", kind, sizeof(kind));
        if (unlinkat(pkgfd, ".staging", 0) < 0 && errno != ENOENT) {
            ds_err_sys(&perr, "io-error",
                       "unlink %s (it is %s, not a directory; remove it)",
                       shown, kind);
            rc = refuse(lib, pkg, &perr, err);
            goto out;
        }
        char q[400];
        ds_warn("staging-replaced",
                "package=%s path=%s was=%s note=\"not a directory, so no "
                "work in progress: removed (its target, if a symlink, is "
                "untouched); the package is served\"",
                pkg, DS_LV(shown), ds_log_quote(q, sizeof(q), kind));
    }
    /* The rest as updates need it (the check ds_library_current makes
     * before every update). */
    if (ds_lib_check_parts(lib, pkg, pkgfd, &cur, &perr) < 0) {
        rc = refuse(lib, pkg, &perr, err);
        goto out;
    }

    /* Temporary symlinks of workers that died between symlink and swap,
     * and temporary retired markers of workers that died writing one. */
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, pkg);
    if (ds_lib_open_dirstream(pkgfd, shown, &d, &perr) < 0) {
        cleanup_failed(pkg, &perr);
        goto out;
    }
    struct dirent *de;
    int lrc = 0;
    while ((de = ds_lib_next_entry(d, shown, &lrc, &perr)) != NULL) {
        if (!tmp_token(de->d_name, TMP_PREFIX, tok) &&
            !tmp_token(de->d_name, RETIRED_TMP_PREFIX, tok) &&
            !tmp_token(de->d_name, PARTLIST_TMP_PREFIX, tok))
            continue;
        int live = tok[0] != '\0' ? ds_lib_token_live(lib, tok, &perr) : 0;
        if (live < 0) {
            cleanup_failed(pkg, &perr); /* not known dead: keep it */
            continue;
        }
        if (!live && unlinkat(pkgfd, de->d_name, 0) < 0 && errno != ENOENT) {
            ds_err_sys(&perr, "io-error", "unlink %s/%s", shown, de->d_name);
            cleanup_failed(pkg, &perr);
        }
    }
    if (lrc < 0)
        cleanup_failed(pkg, &perr);
    closedir(d);
    d = NULL;

    snprintf(shown, sizeof(shown), "%s/%s/.staging", lib->root, pkg);
    if (ds_lib_open_part(pkgfd, ".staging", shown, FIX_STAGING, &stfd, &perr) <
        0) {
        if (perr.code != -ENOENT)
            cleanup_failed(pkg, &perr);
        goto out;
    }
    if (ds_lib_open_dirstream(stfd, shown, &d, &perr) < 0) {
        cleanup_failed(pkg, &perr);
        goto out;
    }
    /* Removing entries already returned by readdir does not make it skip
     * others (POSIX leaves only removed/added entries unspecified). */
    lrc = 0;
    while ((de = ds_lib_next_entry(d, shown, &lrc, &perr)) != NULL) {
        int live = 0;
        /* Names off the <token>-<tag> scheme are nobody's work. */
        if (strlen(de->d_name) > TOKEN_LEN + 1 &&
            de->d_name[TOKEN_LEN] == '-' &&
            ds_lib_is_token(de->d_name, TOKEN_LEN)) {
            memcpy(tok, de->d_name, TOKEN_LEN);
            tok[TOKEN_LEN] = '\0';
            live = ds_lib_token_live(lib, tok, &perr);
        }
        if (live < 0) {
            cleanup_failed(pkg, &perr); /* not known dead: keep it */
            continue;
        }
        if (live)
            continue;
        if (ds_lib_rm_in(shown, stfd, de->d_name, &perr) < 0) {
            cleanup_failed(pkg, &perr);
            continue;
        }
        ds_info("staging-removed", "package=%s entry=%s", pkg,
                DS_LV(de->d_name));
        (*removed)++;
    }
    if (lrc < 0)
        cleanup_failed(pkg, &perr);
out:
    if (d != NULL)
        closedir(d);
    ds_lib_close_fd(stfd);
    ds_lib_close_fd(pkgfd);
    return rc;
}

/*
 * Unlink the lock files of dead workers. Only while holding the lock: a
 * worker in ds_library_open may have created its file and not yet locked
 * it; it notices the unlink when it checks its file after locking (see
 * take_token), which is why the unlink must happen under the lock.
 */
static int sweep_workers(ds_library *lib, ds_err *err)
{
    char shown[PATH_MAX + 32];
    DIR *d = NULL;
    snprintf(shown, sizeof(shown), "%s/.despool/workers", lib->root);
    int rc = ds_lib_open_dirstream(lib->workersfd, shown, &d, err);
    if (rc < 0)
        return rc;
    struct dirent *de;
    while ((de = ds_lib_next_entry(d, shown, &rc, err)) != NULL) {
        const char *n = de->d_name;
        if (strlen(n) != TOKEN_LEN + 5 || strcmp(n + TOKEN_LEN, ".lock") != 0 ||
            !ds_lib_is_token(n, TOKEN_LEN) ||
            strncmp(n, lib->token, TOKEN_LEN) == 0)
            continue;
        int fd = openat(lib->workersfd, n, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue; /* gone already, or not a lock file we can take */
        struct stat mine, named;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &mine) == 0 &&
            fstatat(lib->workersfd, n, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
            mine.st_dev == named.st_dev && mine.st_ino == named.st_ino &&
            unlinkat(lib->workersfd, n, 0) < 0 && errno != ENOENT) {
            rc = ds_err_sys(err, "io-error", "unlink %s/%s", shown, n);
            close(fd);
            break;
        }
        close(fd);
    }
    closedir(d);
    return rc;
}

int ds_library_cleanup_staging(ds_library *lib, unsigned *removed, ds_err *err)
{
    unsigned count = 0;
    DIR *d = NULL;
    free(lib->refused);
    lib->refused = NULL;
    lib->nrefused = 0;
    /* Failing to read the root itself is the one thing that stops the
     * start: the library as a whole is unusable. */
    int rc = ds_lib_open_dirstream(lib->rootfd, lib->root, &d, err);
    if (rc < 0)
        goto out;
    struct dirent *de;
    while ((de = ds_lib_next_entry(d, lib->root, &rc, err)) != NULL) {
        /* Only package-shaped names; this skips .despool and strangers. */
        if (!valid_name(de->d_name, NAME_MAX_PKG))
            continue;
        if ((rc = cleanup_package(lib, de->d_name, &count, err)) < 0)
            break;
    }
    closedir(d);
    /* What removals of dead workers left (retire.c): warnings only. */
    if (rc == 0)
        ds_lib_retire_sweep_trash(lib);
    /* After the staging pass: a missing lock file also means dead. */
    if (rc == 0)
        rc = sweep_workers(lib, err);
out:
    if (removed != NULL)
        *removed = count;
    return rc;
}
