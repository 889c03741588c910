/*
 * library.h - a site's content library on disk and the finalize protocol
 * (DESIGN.md, "Site library on disk").
 *
 *   <root>/<package>/versions/<version>/...   immutable once finalized
 *   <root>/<package>/current -> versions/<version>
 *   <root>/<package>/.staging/<token>-<tag>/  work in progress
 *   <root>/<package>/.lock                    per-package finalize lock
 *   <root>/.despool/workers/<token>.lock      held (flock) by a live worker
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
 * cost one syncfs each step. A directory on another filesystem (a mount
 * inside the library) is fsynced on its own.
 */
#ifndef DS_LIBRARY_H
#define DS_LIBRARY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct ds_library ds_library;

typedef enum ds_finalize_result {
    DS_FINALIZED = 1, /* current now points at the new version */
    DS_STALE = 2,     /* current was already >= version; staging removed */
} ds_finalize_result;

/* Test seam: called at named points of finalize ("before-rename",
 * "before-swap", "before-fsync"); a non-zero return aborts finalize there
 * with that code, as a crash would, leaving the disk as it is. */
typedef int (*ds_library_fault_fn)(void *ctx, const char *point);

/* Open (creating if needed) the library at root. keep_versions >= 1 is how
 * many finalized versions each package keeps (current included). */
int ds_library_open(const char *root, unsigned keep_versions, ds_library **out,
                    ds_err *err);
void ds_library_close(ds_library *lib); /* NULL is fine */

const char *ds_library_root(const ds_library *lib); /* realpath of root */

void ds_library_set_fault(ds_library *lib, ds_library_fault_fn fn, void *ctx);

/* Remove staging directories left by dead workers, in every package.
 * *removed counts them. */
int ds_library_cleanup_staging(ds_library *lib, unsigned *removed, ds_err *err);

/* The version current points at, or 0 when the package has none. */
int ds_library_current(ds_library *lib, const char *package, uint64_t *version,
                       ds_err *err);

/* Create a fresh, empty staging directory for package; tag (e.g. the
 * update id in hex) makes the name unique. Writes its absolute path to
 * path (size n). */
int ds_library_stage(ds_library *lib, const char *package, const char *tag,
                     char *path, size_t n, ds_err *err);

/* Make everything written under staging durable: one syncfs(2) on its
 * filesystem (ostree's strategy), which covers every file and directory
 * written into it, shared with concurrent callers. */
int ds_library_sync(ds_library *lib, const char *staging, ds_err *err);

/* Finalize staging as version of package (see above), then prune versions
 * beyond keep_versions. *result tells which way it went. */
int ds_library_finalize(ds_library *lib, const char *package, uint64_t version,
                        const char *staging, ds_finalize_result *result,
                        ds_err *err);

/* Remove a staging directory (abandoned or failed update). */
int ds_library_discard(ds_library *lib, const char *staging, ds_err *err);

#endif
