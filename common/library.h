/*
 * library.h - a site's content library on disk and the finalize protocol
 * (DESIGN.md, "Site library on disk").
 *
 *   <root>/<package>/versions/<version>/...   immutable once finalized
 *   <root>/<package>/current -> versions/<version>
 *   <root>/<package>/.staging/<token>-<tag>/  work in progress
 *   <root>/<package>/.lock                    per-package finalize lock
 *   <root>/<package>/retired                  a kept retired package
 *   <root>/<package>/.partlist                current's parts (a cache)
 *   <root>/.despool/workers/<token>.lock      held (flock) by a live worker
 *   <root>/.despool/trash/<token>-<pkg>-<n>   a removed package being deleted
 *
 * Each open library has a random token; its staging directories carry it,
 * and the process holds an exclusive flock on the token's lock file for as
 * long as the library is open. Start-up cleanup removes staging directories
 * whose token lock is no longer held (the worker died), never a live
 * worker's work in progress. (ostree does the same with the boot id.)
 *
 * Finalize, under the package lock (flock on .lock, which excludes other
 * processes and other threads alike): if current points at a version >= V,
 * the staging tree is discarded (stale/duplicate, not an error); otherwise
 * staging is renamed to versions/V (made durable), a temporary symlink is
 * renamed over current, and that swap is made durable before finalize
 * returns. current never moves backwards and never points at a partial
 * tree.
 *
 * Durability points (the staged tree, the versions/ entry, the swap) are
 * syncfs(2) calls on the library's filesystem, shared by the threads that
 * reach one at the same moment (groupsync.h): under load many finalizes
 * cost one syncfs each step. Because a shared syncfs reports a writeback
 * error only once, to whichever round comes first, each update carries a
 * ds_library_mark taken before its first write, and each of its
 * durability points fails if ANY sync since the mark failed (groupsync.c
 * argues why that is enough). A package on another filesystem (a mount
 * inside the library) gets its own descriptor, opened before the first
 * write, whose syncfs reports every error since.
 *
 * Start-up (ds_library_cleanup_staging) copes with one package at a time:
 * a package whose layout is odd is refused with a warning and the others
 * start; only an unusable root stops it.
 */
#ifndef DS_LIBRARY_H
#define DS_LIBRARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "groupsync.h"

typedef struct ds_library ds_library;

/* One update's writes, from ds_library_stage (taken before its first
 * write) to its last durability point in ds_library_finalize. A value the
 * caller keeps; release it when the update is over. */
typedef struct ds_library_mark {
    ds_groupsync_ticket since; /* the library filesystem's group */
    int fd;       /* package on another filesystem: its directory, opened
                     before the first write (own error cursor); else -1 */
    uint64_t dev; /* that filesystem, when fd >= 0 */
} ds_library_mark;

typedef enum ds_finalize_result {
    DS_FINALIZED = 1, /* current now points at the new version */
    DS_STALE = 2,     /* current was already >= version; staging removed */
} ds_finalize_result;

/* Test seam: called at named points of finalize ("before-rename",
 * "before-swap", "before-fsync") and of a retire ("retire-before-marker":
 * the marker's temporary file written, not renamed; "retire-before-move";
 * "retire-before-delete": the package moved to the trash, as if deleting
 * it failed); a non-zero return aborts there with that code, as a crash
 * would, leaving the disk as it is. */
typedef int (*ds_library_fault_fn)(void *ctx, const char *point);

/* Open the library at root. keep_versions >= 1 is how many finalized
 * versions each package keeps (current included). create: make root (and
 * its parents) if missing; otherwise a missing root is an error (-ENOENT,
 * reason "usage"), so a mistyped path never becomes a new,
 * empty library. */
int ds_library_open(const char *root, unsigned keep_versions, bool create,
                    ds_library **out, ds_err *err);
void ds_library_close(ds_library *lib); /* NULL is fine */

const char *ds_library_root(const ds_library *lib); /* realpath of root */

void ds_library_set_fault(ds_library *lib, ds_library_fault_fn fn, void *ctx);

/*
 * Start-up: remove staging directories left by dead workers, in every
 * package; *removed counts them. Call it before the handle is shared by
 * threads (it records the refused packages in lib).
 *
 * Each package is dealt with on its own; a problem in one is a warning
 * (logfmt, naming the path, what is wrong and what to do) and the rest of
 * the library goes on:
 * - a <pkg>/.staging that is not a directory (a file, a symlink: work in
 *   progress is only ever a directory, and ours) is unlinked, never
 *   followed: msg=staging-replaced; the package starts normally;
 * - a package path that is not a directory (a file, a symlink), one that
 *   cannot be opened, a versions/ or .staging that is not a directory or
 *   cannot be opened, a .lock or retired that is not a regular file, a
 *   current that is not a symlink to versions/<n>: the package is refused
 *   (msg=package-refused), left as it is and listed by
 *   ds_library_refused(). Its updates fail with a local error naming the
 *   path (ds_library_current checks the same layout) until the operator
 *   fixes it; no restart is needed after the fix;
 * - a dead worker's leftover that cannot be removed: msg=cleanup-failed,
 *   the package still starts (the leftover is only wasted space).
 * Trees that dead workers' removals (ds_library_retire) left in
 * <root>/.despool/trash are deleted too (msg=trash-removed; a failure is
 * msg=cleanup-failed). Temporary names of dead workers (.current.<token>
 * .tmp, .retired.<token>.tmp) are unlinked.
 * Returns < 0 only when the library itself is unusable: its root or
 * .despool/workers cannot be read or changed.
 */
int ds_library_cleanup_staging(ds_library *lib, unsigned *removed, ds_err *err);

/* The i-th package refused by the last ds_library_cleanup_staging (in the
 * order found), or NULL past the end. *why (if why is not NULL) gets the
 * problem, naming the path. Valid until the next cleanup or close. */
const char *ds_library_refused(const ds_library *lib, size_t i,
                               const char **why);

/* The version current points at, or 0 when the package has none. Fails
 * (io-error, naming the path and what to do) when the package's layout is
 * one updates cannot use (see ds_library_cleanup_staging): callers use it
 * to refuse an update before any work. */
int ds_library_current(ds_library *lib, const char *package, uint64_t *version,
                       ds_err *err);

/* Create a fresh, empty staging directory for package; tag (e.g. the
 * update id in hex) makes the name unique. Writes its absolute path to
 * path (size n). Takes *mark before the first write (on failure too:
 * release it in every case; a zeroed mark with fd -1 is fine to release). */
int ds_library_stage(ds_library *lib, const char *package, const char *tag,
                     char *path, size_t n, ds_library_mark *mark, ds_err *err);

/* Make everything written under staging durable: one syncfs(2) on its
 * filesystem (ostree's strategy), which covers every file and directory
 * written into it, shared with concurrent callers. Fails if any writeback
 * error was reported on that filesystem since mark was taken. */
int ds_library_sync(ds_library *lib, const char *staging,
                    const ds_library_mark *mark, ds_err *err);

/* Finalize staging as version of package (see above), then prune versions
 * beyond keep_versions. *result tells which way it went. Its durability
 * points fail as ds_library_sync does, since the same mark. */
int ds_library_finalize(ds_library *lib, const char *package, uint64_t version,
                        const char *staging, const ds_library_mark *mark,
                        ds_finalize_result *result, ds_err *err);

/* Close what the mark holds (its fd, if any); the mark is then unset.
 * NULL is fine. */
void ds_library_mark_release(ds_library_mark *mark);

/* Remove a staging directory (abandoned or failed update). */
int ds_library_discard(ds_library *lib, const char *staging, ds_err *err);

/*
 * The part list of current (library_partlist.c; the bytes are partlist.h's,
 * opaque here): a cache beside the package, for re-creating the next
 * version's parts from disk. Save writes it, under the package lock, only
 * while current is version (else it does nothing: a newer version won);
 * not synced. Load reads it into a new buffer (free() it); no list (no
 * package, no file) is 0 with *buf NULL; a file that is not regular or is
 * over max bytes is reason "bad-partlist".
 */
int ds_library_save_partlist(ds_library *lib, const char *package,
                             uint64_t version, const uint8_t *buf, size_t len,
                             ds_err *err);
int ds_library_load_partlist(ds_library *lib, const char *package, size_t max,
                             uint8_t **buf, size_t *len, ds_err *err);

/* <root>/<package>/versions/<version> into path (n bytes). */
int ds_library_version_path(const ds_library *lib, const char *package,
                            uint64_t version, char *path, size_t n,
                            ds_err *err);

/*
 * Retired packages (schema v2 section 11; retire.c). A retire is a
 * tombstone on pkg.updates; the site either keeps the package's files or
 * removes the package.
 */
typedef enum ds_retire_action {
    DS_RETIRE_KEEP = 0,   /* leave the files, mark the package retired */
    DS_RETIRE_REMOVE = 1, /* delete the package from the library */
} ds_retire_action;

/* ds_library_retire's return when the package is gone but the moved tree
 * could not be deleted (see there). */
#define DS_RETIRE_LEFTOVER 1

/*
 * Retire package (action: ds_retire_action). *current gets the version
 * current pointed at before (0 if none). Both are done under the
 * package's lock (finalize's), and durable when this returns 0 or
 * DS_RETIRE_LEFTOVER: the caller may commit the tombstone's offset.
 *
 * KEEP: current and versions stay as they are (readers go on reading);
 * <root>/<package>/retired is written (a regular file, "current=<V>\n":
 * written under a temporary name, synced, renamed, synced) and
 * ds_library_retired reports 1 while current still points at V. Again
 * on a retired package: nothing is written. A package with no current
 * has nothing to keep: nothing is written.
 *
 * REMOVE: <root>/<package> is renamed into <root>/.despool/trash in one
 * step (a reader sees the whole package or no package), the root is
 * synced, then the moved tree is deleted. If that delete fails the
 * package is gone all the same: the call returns DS_RETIRE_LEFTOVER with
 * err describing it (a warning for the caller to log, nothing to retry);
 * start-up cleanup deletes the leftover. An update of the package in
 * progress loses its staging directory with the package: its finalize
 * fails (io-error) and a retry starts afresh. The next version of a
 * removed package starts a fresh package directory.
 *
 * A package that does not exist: 0, *current = 0, nothing created.
 * Errors: an invalid package id or action (internal); a package whose
 * layout updates cannot use (see ds_library_cleanup_staging) or any
 * failed step (io-error naming the path: the site's fault, retry), and
 * then nothing was changed that a reader could see.
 */
int ds_library_retire(ds_library *lib, const char *package, int action,
                      uint64_t *current, ds_err *err);

/* *retired = 1 when package is kept retired: its retired marker names the
 * version current points at. A finalize of a newer version revives the
 * package (removes the marker; a marker left behind by a crash names an
 * older version and does not count). 0 for a package that does not exist.
 * Errors as ds_library_current's, and a marker that cannot be read or
 * holds something else (io-error naming it). */
int ds_library_retired(ds_library *lib, const char *package, int *retired,
                       ds_err *err);

#endif
