/*
 * library_int.h - what library.c (layout, finalize, start-up) and retire.c
 * (retired packages) share inside the library module: the handle's
 * fields and the helpers both sides use. Not an API: nothing outside
 * common/library.c and common/retire.c includes it.
 */
#ifndef DS_LIBRARY_INT_H
#define DS_LIBRARY_INT_H

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "groupsync.h"
#include "library.h"

#define TOKEN_BYTES  8
#define TOKEN_LEN    (2 * TOKEN_BYTES)
#define NAME_MAX_PKG 128 /* [A-Za-z0-9][A-Za-z0-9._-]{0,127} */
#define OPEN_DIR     (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

/* The retired marker of a kept package and its temporary name while it is
 * written (.retired.<token>.tmp, swept like .current.<token>.tmp). */
#define RETIRED_NAME       "retired"
#define RETIRED_TMP_PREFIX ".retired."

/* The part list of current (library_partlist.c) and its temporary name. */
#define PARTLIST_NAME       ".partlist"
#define PARTLIST_TMP_PREFIX ".partlist."

#define FIX_PKG                                                                \
    "move it out of the library (this path is the package's directory)"

/*
 * Everything is done with *at() calls relative to descriptors opened with
 * O_NOFOLLOW, so a symlink planted in the library (a package directory,
 * .staging, versions) is refused instead of followed. The struct is
 * immutable after open and the start-up cleanup (except the test-only
 * fault hook and the group sync, which has its own lock), so threads may
 * share one handle; every call opens its own descriptors, including the
 * package lock, whose flock is per open file description and therefore
 * excludes threads of one process as well as other processes.
 */
struct ds_library {
    char *root;    /* realpath of the library root */
    int rootfd;    /* the root directory */
    int workersfd; /* <root>/.despool/workers */
    int tokenfd;   /* <token>.lock, flock(LOCK_EX) held until close */
    char token[TOKEN_LEN + 1];
    unsigned keep;
    dev_t dev;        /* the root's filesystem */
    ds_groupsync *gs; /* group commit of syncfs on it, shared by threads */
    ds_library_fault_fn fault;
    void *fault_ctx;
    /* Packages refused by the last start-up cleanup (written there only,
     * before threads share the handle). */
    struct refusal *refused;
    size_t nrefused;
};

/* ---- library.c --------------------------------------------------------- */

/* A valid package id, else an internal error naming it. */
int ds_lib_check_package(const char *pkg, ds_err *err);

/* TOKEN_LEN lowercase hex digits. */
bool ds_lib_is_token(const char *s, size_t len);

/* What name under dirfd is ("a regular file", "a symlink to \"x\"", ...),
 * into buf; returns buf. */
const char *ds_lib_describe(int dirfd, const char *name, char *buf, size_t n);

/* Open directory name under dirfd, never following a symlink; the error
 * says what is there instead and fix (what the operator should do).
 * -ENOENT is returned as is. shown is the path for messages. */
int ds_lib_open_part(int dirfd, const char *name, const char *shown,
                     const char *fix, int *out, ds_err *err);

/* The layout updates rely on, in the open package directory pkgfd (see
 * ds_library_cleanup_staging); *cur gets the version current points at. */
int ds_lib_check_parts(const ds_library *lib, const char *pkg, int pkgfd,
                       uint64_t *cur, ds_err *err);

/* Take the package lock (flock on <pkg>/.lock, created if missing) of the
 * package directory open as pkgfd, then check that <root>/<pkg> is still
 * that directory: a removal (retire.c) moves it away under the same lock,
 * so a caller that waited for the lock must not go on in the moved tree.
 * *lockfd holds the lock until closed. op names the caller in errors. */
int ds_lib_lock_package(ds_library *lib, const char *pkg, int pkgfd,
                        const char *op, int *lockfd, ds_err *err);

/* Complete a mark whose group ticket is taken: a package directory pkgfd
 * on another filesystem gets its own descriptor (see ds_library_mark).
 * Call before the first write under pkgfd. */
int ds_lib_mark_fs(ds_library *lib, int pkgfd, const char *shown,
                   ds_library_mark *mark, ds_err *err);

/* Everything written since mark on fd's filesystem is durable (a group
 * syncfs, or the mark's own descriptor); shown names the step. */
int ds_lib_durable(ds_library *lib, const ds_library_mark *mark, int fd,
                   const char *shown, ds_err *err);

/* rm -rf name under dirfd (dir is its path, for the message). */
int ds_lib_rm_in(const char *dir, int dirfd, const char *name, ds_err *err);

/* 1 when the worker holding token tok is alive, 0 dead, < 0 error. */
int ds_lib_token_live(const ds_library *lib, const char *tok, ds_err *err);

void ds_lib_close_fd(int fd); /* -1 is fine */

/* opendir of the directory open as dirfd (which stays open). */
int ds_lib_open_dirstream(int dirfd, const char *shown, DIR **out, ds_err *err);

/* readdir without . and ..; NULL at the end or on error (*rc set). */
struct dirent *ds_lib_next_entry(DIR *d, const char *shown, int *rc,
                                 ds_err *err);

/* ---- retire.c ---------------------------------------------------------- */

/* Called by finalize, under the package lock, once the swap of current to
 * a new version is durable: unlink the package's retired marker, if any.
 * A failure is only logged (the marker names an older version than
 * current now, so the package reads as not retired anyway). */
void ds_lib_retire_revive(ds_library *lib, const char *pkg, int pkgfd);

/* Start-up: delete what removals of dead workers left in
 * <root>/.despool/trash. Problems are warnings (logged): only space is
 * wasted. */
void ds_lib_retire_sweep_trash(ds_library *lib);

#endif
