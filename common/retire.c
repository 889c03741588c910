/*
 * retire.c - what a site does with a retired package (schema v2 section
 * 11: a null value for the package's key on pkg.updates): keep its files
 * and mark it retired, or remove it from the library; and the two things
 * the rest of the library must do about it (a finalize revives a kept
 * package, start-up deletes what removals left in the trash).
 *
 * Keep: the files stay and <root>/<pkg>/retired says the package is
 * retired. It holds "current=<V>\n", V the version current pointed at when
 * the retire came, and the package counts as retired exactly while
 * current still points at V. That is what makes a revive safe without a
 * sync of its own: a finalize of a newer version unlinks the marker after
 * its swap is durable, and if a crash or power cut loses that unlink, the
 * marker left names an older version than current and does not count.
 * The marker is written as everything durable here: a temporary name
 * (carrying our token, so that start-up sweeps a dead worker's), synced,
 * renamed over the marker, synced; the syncs are the library's group
 * syncs since a mark taken before the first write (library.c).
 *
 * Remove: under the package lock, <root>/<pkg> is renamed to
 * <root>/.despool/trash/<token>-<pkg>-<inode>. One rename: a reader
 * resolving <root>/<pkg>/current sees the whole package or none, never a
 * half-deleted tree. The root is synced before the call returns, because
 * the caller commits the tombstone's offset next and a removal lost to a
 * power cut would otherwise bring the package back for good. Only then is
 * the tree deleted, outside the lock; a crash mid-delete leaves it in the
 * trash under our token, and start-up deletes dead tokens' trash. The name
 * is unique while the entry exists, since the entry holds that inode. A
 * finalize or retire that waited for the lock while the directory was
 * moved notices (ds_lib_lock_package) and fails instead of working in the
 * trash.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "library.h"
#include "library_int.h"
#include "log.h"
#include "numparse.h"

#define TMP_SUFFIX ".tmp"
#define TRASH      "trash"
#define FIX_TRASH                                                              \
    "remove it (.despool/trash only holds removed packages being deleted)"
#define MARKER_MAX 64 /* "current=" + 20 digits + "\n", with room */

/* Test seam: the library's fault hook at the retire's named points; a
 * non-zero return stops there as a crash would (before-delete: as if the
 * delete of the moved tree failed). */
static int fault(ds_library *lib, const char *point, const char *pkg,
                 ds_err *err)
{
    int rc = lib->fault != NULL ? lib->fault(lib->fault_ctx, point) : 0;
    if (rc == 0)
        return 0;
    return ds_err_set(err, rc < 0 ? rc : -rc, "io-error",
                      "retire %s/%s: fault injected at %s", lib->root, pkg,
                      point);
}

/* ---- the retired marker ------------------------------------------------- */

/* Read <pkg>/retired: *present 0 when there is none, else *version the
 * version it names. Anything but a regular file holding "current=<V>\n"
 * is an error naming it (never guessed at). */
static int read_marker(const ds_library *lib, const char *pkg, int pkgfd,
                       int *present, uint64_t *version, ds_err *err)
{
    char buf[MARKER_MAX + 1], kind[320];
    *present = 0;
    *version = 0;
    int fd = openat(pkgfd, RETIRED_NAME,
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == ELOOP)
            return ds_err_set(
                err, -EINVAL, "io-error",
                "read %s/%s/" RETIRED_NAME ": it is %s, not a regular file; "
                "remove it (a retire writes it again)",
                lib->root, pkg,
                ds_lib_describe(pkgfd, RETIRED_NAME, kind, sizeof(kind)));
        return ds_err_sys(err, "io-error", "open %s/%s/" RETIRED_NAME,
                          lib->root, pkg);
    }
    struct stat st;
    int rc = 0;
    ssize_t r = 0;
    if (fstat(fd, &st) < 0) {
        rc = ds_err_sys(err, "io-error", "stat %s/%s/" RETIRED_NAME, lib->root,
                        pkg);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ds_err_set(
            err, -EINVAL, "io-error",
            "read %s/%s/" RETIRED_NAME ": it is %s, not a regular file; "
            "remove it (a retire writes it again)",
            lib->root, pkg,
            ds_lib_describe(pkgfd, RETIRED_NAME, kind, sizeof(kind)));
        goto out;
    }
    while ((r = read(fd, buf, sizeof(buf) - 1)) < 0 && errno == EINTR)
        ;
    if (r < 0) {
        rc = ds_err_sys(err, "io-error", "read %s/%s/" RETIRED_NAME, lib->root,
                        pkg);
        goto out;
    }
    buf[r] = '\0';
    size_t len = (size_t)r;
    uint64_t v = 0;
    bool ok =
        len >= 10 && strncmp(buf, "current=", 8) == 0 && buf[len - 1] == '\n';
    if (ok) {
        buf[len - 1] = '\0';
        ok = ds_parse_u64(buf + 8, &v) == 0;
        buf[len - 1] = '\n';
    }
    if (!ok) {
        char ex[48];
        rc = ds_err_set(err, -EINVAL, "io-error",
                        "read %s/%s/" RETIRED_NAME ": unexpected content "
                        "\"%s\" (want current=<version>); remove it (a retire "
                        "writes it again)",
                        lib->root, pkg,
                        ds_err_excerpt(ex, sizeof(ex), buf, len));
        goto out;
    }
    *present = 1;
    *version = v;
out:
    close(fd);
    return rc;
}

/* Write <pkg>/retired naming version cur, durably (see the top). */
static int write_marker(ds_library *lib, const char *pkg, int pkgfd,
                        uint64_t cur, const ds_library_mark *mark, ds_err *err)
{
    char tmp[sizeof(RETIRED_TMP_PREFIX) + TOKEN_LEN + sizeof(TMP_SUFFIX)];
    char text[MARKER_MAX], shown[PATH_MAX + 64];
    snprintf(tmp, sizeof(tmp), RETIRED_TMP_PREFIX "%s" TMP_SUFFIX, lib->token);
    int len =
        snprintf(text, sizeof(text), "current=%llu\n", (unsigned long long)cur);
    int fd =
        openat(pkgfd, tmp,
               O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return ds_err_sys(err, "io-error", "create %s/%s/%s", lib->root, pkg,
                          tmp);
    int rc = 0;
    for (int off = 0; off < len && rc == 0;) {
        ssize_t w = write(fd, text + off, (size_t)(len - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            rc = ds_err_sys(err, "io-error", "write %s/%s/%s", lib->root, pkg,
                            tmp);
        else
            off += (int)w;
    }
    if (close(fd) < 0 && rc == 0)
        rc = ds_err_sys(err, "io-error", "close %s/%s/%s", lib->root, pkg, tmp);
    if (rc < 0)
        goto fail;
    /* The content first: renamed before it is durable, a power cut could
     * leave an empty marker under the real name. */
    snprintf(shown, sizeof(shown), "%s/%s/%s", lib->root, pkg, tmp);
    if ((rc = ds_lib_durable(lib, mark, pkgfd, shown, err)) < 0)
        goto fail;
    if ((rc = fault(lib, "retire-before-marker", pkg, err)) < 0)
        return rc; /* as a crash: the temporary file stays */
    if (renameat(pkgfd, tmp, pkgfd, RETIRED_NAME) < 0) {
        rc = ds_err_sys(err, "io-error", "rename %s/%s/%s to " RETIRED_NAME,
                        lib->root, pkg, tmp);
        goto fail;
    }
    /* And the name: durable before the caller commits the tombstone. */
    snprintf(shown, sizeof(shown), "%s/%s/" RETIRED_NAME, lib->root, pkg);
    return ds_lib_durable(lib, mark, pkgfd, shown, err);
fail:
    unlinkat(pkgfd, tmp, 0); /* best effort: start-up sweeps it too */
    return rc;
}

void ds_lib_retire_revive(ds_library *lib, const char *pkg, int pkgfd)
{
    if (unlinkat(pkgfd, RETIRED_NAME, 0) == 0 || errno == ENOENT)
        return;
    ds_err e;
    char q[DS_ERRMSG_MAX + 16];
    ds_err_sys(&e, "io-error", "unlink %s/%s/" RETIRED_NAME, lib->root, pkg);
    ds_warn("revive-failed",
            "package=%s error=%s note=\"the package is live (the marker names "
            "an older version than current, so it does not count); remove "
            "the file when convenient\"",
            pkg, ds_log_quote(q, sizeof(q), e.msg));
}

/* ---- remove ------------------------------------------------------------- */

/* Open <root>/.despool/trash, creating it if needed. */
static int open_trash(ds_library *lib, int *trashfd, ds_err *err)
{
    char shown[PATH_MAX + 32];
    *trashfd = -1;
    snprintf(shown, sizeof(shown), "%s/.despool", lib->root);
    int dfd = openat(lib->rootfd, ".despool", OPEN_DIR);
    if (dfd < 0)
        return ds_err_sys(err, "io-error", "open %s", shown);
    snprintf(shown, sizeof(shown), "%s/.despool/" TRASH, lib->root);
    int rc = 0;
    if (mkdirat(dfd, TRASH, 0755) < 0 && errno != EEXIST)
        rc = ds_err_sys(err, "io-error", "mkdir %s", shown);
    else
        rc = ds_lib_open_part(dfd, TRASH, shown, FIX_TRASH, trashfd, err);
    close(dfd);
    return rc;
}

/* Rename <root>/<pkg> (open as pkgfd, locked) into the trash as name, and
 * make that durable. On failure nothing moved, or (a failed sync) the
 * package is gone from readers' view but the caller must not commit. */
static int move_to_trash(ds_library *lib, const char *pkg, int pkgfd,
                         int trashfd, const ds_library_mark *mark, char *name,
                         size_t n, ds_err *err)
{
    struct stat st;
    if (fstat(pkgfd, &st) < 0)
        return ds_err_sys(err, "io-error", "stat %s/%s", lib->root, pkg);
    snprintf(name, n, "%s-%s-%llu", lib->token, pkg,
             (unsigned long long)st.st_ino);
    int rc = fault(lib, "retire-before-move", pkg, err);
    if (rc < 0)
        return rc;
    if (renameat(lib->rootfd, pkg, trashfd, name) < 0) {
        int e = errno;
        rc = ds_err_sys(err, "io-error",
                        "rename %s/%s to %s/.despool/" TRASH "/%s%s", lib->root,
                        pkg, lib->root, name,
                        e == EBUSY || e == EXDEV
                            ? " (a mount point cannot be moved: unmount it, "
                              "or remove the package by hand)"
                            : "");
        return rc;
    }
    return ds_lib_durable(lib, mark, lib->rootfd, lib->root, err);
}

/* ---- the entry points --------------------------------------------------- */

int ds_library_retire(ds_library *lib, const char *package, int action,
                      uint64_t *current, ds_err *err)
{
    char shown[PATH_MAX + 64], name[TOKEN_LEN + NAME_MAX_PKG + 32];
    int pkgfd = -1, lockfd = -1, trashfd = -1;
    uint64_t cur = 0;
    /* Before the first write: every failed group sync from here on counts
     * against this retire. */
    ds_library_mark mark = {.fd = -1};
    ds_groupsync_begin(lib->gs, &mark.since);
    *current = 0;
    int rc = ds_lib_check_package(package, err);
    if (rc < 0)
        return rc;
    if (action != DS_RETIRE_KEEP && action != DS_RETIRE_REMOVE)
        return ds_err_set(err, -EINVAL, "internal",
                          "retire %s/%s: unknown action %d", lib->root, package,
                          action);
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, package);
    rc = ds_lib_open_part(lib->rootfd, package, shown, FIX_PKG, &pkgfd, err);
    if (rc == -ENOENT)
        return 0; /* never installed here, or removed already */
    if (rc < 0)
        return rc;
    if ((rc = ds_lib_mark_fs(lib, pkgfd, shown, &mark, err)) < 0 ||
        (rc = ds_lib_lock_package(lib, package, pkgfd, "retire", &lockfd,
                                  err)) < 0 ||
        (rc = ds_lib_check_parts(lib, package, pkgfd, &cur, err)) < 0)
        goto out;

    if (action == DS_RETIRE_KEEP) {
        int present;
        uint64_t mv;
        if (cur == 0) /* nothing installed: nothing to keep */
            goto out;
        if ((rc = read_marker(lib, package, pkgfd, &present, &mv, err)) < 0 &&
            rc != -EINVAL) /* an odd marker is rewritten */
            goto out;
        if (rc == 0 && present && mv == cur)
            goto out; /* retired already */
        rc = write_marker(lib, package, pkgfd, cur, &mark, err);
        goto out;
    }

    if ((rc = open_trash(lib, &trashfd, err)) < 0 ||
        (rc = move_to_trash(lib, package, pkgfd, trashfd, &mark, name,
                            sizeof(name), err)) < 0)
        goto out;
    /* Gone, durably. The delete needs no lock: nobody reaches the tree
     * by the package's name any more. */
    ds_lib_close_fd(lockfd);
    lockfd = -1;
    snprintf(shown, sizeof(shown), "%s/.despool/" TRASH, lib->root);
    ds_err derr;
    ds_err_clear(&derr);
    int drc = fault(lib, "retire-before-delete", package, &derr);
    if (drc == 0)
        drc = ds_lib_rm_in(shown, trashfd, name, &derr);
    if (drc < 0) {
        ds_err_set(err, drc, "io-error",
                   "retire %s/%s: removed, but deleting the moved tree "
                   "failed (start-up cleanup deletes it): %s",
                   lib->root, package, derr.msg);
        rc = DS_RETIRE_LEFTOVER;
    }
out:
    if (rc >= 0)
        *current = cur;
    ds_lib_close_fd(trashfd);
    ds_lib_close_fd(lockfd); /* releases the package lock */
    ds_lib_close_fd(pkgfd);
    ds_library_mark_release(&mark);
    return rc;
}

int ds_library_retired(ds_library *lib, const char *package, int *retired,
                       ds_err *err)
{
    char shown[PATH_MAX + 32];
    int pkgfd = -1, present = 0;
    uint64_t cur = 0, mv = 0;
    *retired = 0;
    int rc = ds_lib_check_package(package, err);
    if (rc < 0)
        return rc;
    snprintf(shown, sizeof(shown), "%s/%s", lib->root, package);
    rc = ds_lib_open_part(lib->rootfd, package, shown, FIX_PKG, &pkgfd, err);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if ((rc = ds_lib_check_parts(lib, package, pkgfd, &cur, err)) == 0 &&
        (rc = read_marker(lib, package, pkgfd, &present, &mv, err)) == 0)
        *retired = present && cur != 0 && mv == cur;
    close(pkgfd);
    return rc;
}

/* ---- start-up ----------------------------------------------------------- */

void ds_lib_retire_sweep_trash(ds_library *lib)
{
    char shown[PATH_MAX + 32], tok[TOKEN_LEN + 1], q[DS_ERRMSG_MAX + 16];
    int dfd = -1, trashfd = -1, rc = 0;
    DIR *d = NULL;
    ds_err e;
    ds_err_clear(&e);
    snprintf(shown, sizeof(shown), "%s/.despool/" TRASH, lib->root);
    dfd = openat(lib->rootfd, ".despool", OPEN_DIR);
    if (dfd < 0) {
        rc = ds_err_sys(&e, "io-error", "open %s/.despool", lib->root);
        goto out;
    }
    rc = ds_lib_open_part(dfd, TRASH, shown, FIX_TRASH, &trashfd, &e);
    if (rc == -ENOENT) {
        rc = 0; /* nothing was ever removed */
        goto out;
    }
    if (rc < 0 || (rc = ds_lib_open_dirstream(trashfd, shown, &d, &e)) < 0)
        goto out;
    struct dirent *de;
    while ((de = ds_lib_next_entry(d, shown, &rc, &e)) != NULL) {
        int live = 0;
        char path[sizeof(shown) + 258];
        snprintf(path, sizeof(path), "%s/%s", shown, de->d_name);
        /* <token>-<pkg>-<inode>; other names are nobody's. */
        if (strlen(de->d_name) > TOKEN_LEN + 1 &&
            de->d_name[TOKEN_LEN] == '-' &&
            ds_lib_is_token(de->d_name, TOKEN_LEN)) {
            memcpy(tok, de->d_name, TOKEN_LEN);
            tok[TOKEN_LEN] = '\0';
            live = ds_lib_token_live(lib, tok, &e);
        }
        if (live < 0) { /* not known dead: keep it */
            ds_warn("cleanup-failed", "path=%s error=%s", DS_LV(path),
                    ds_log_quote(q, sizeof(q), e.msg));
            continue;
        }
        if (live)
            continue; /* a live worker is deleting it */
        if (ds_lib_rm_in(shown, trashfd, de->d_name, &e) < 0) {
            ds_warn("cleanup-failed",
                    "path=%s error=%s note=\"a removed package's tree; "
                    "only space is wasted, the next start-up tries again\"",
                    DS_LV(path), ds_log_quote(q, sizeof(q), e.msg));
            continue;
        }
        ds_info("trash-removed", "path=%s", DS_LV(path));
    }
out:
    if (rc < 0)
        ds_warn("cleanup-failed",
                "path=%s error=%s note=\"removed packages' trees may be left "
                "there; only space is wasted\"",
                DS_LV(shown), ds_log_quote(q, sizeof(q), e.msg));
    if (d != NULL)
        closedir(d);
    ds_lib_close_fd(trashfd);
    ds_lib_close_fd(dfd);
}
