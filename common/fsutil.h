/*
 * fsutil.h - small filesystem helpers with despool's error convention:
 * recursive removal that never follows symlinks, directory fsync, mkdir -p,
 * whole-file reads. Every failure names the operation and the path.
 */
#ifndef DS_FSUTIL_H
#define DS_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* rm -rf path without following symlinks (a symlink is removed, not its
 * target). A missing path is success. */
int ds_rm_rf(const char *path, ds_err *err);

/* Same, relative to directory fd dirfd. */
int ds_rm_rf_at(int dirfd, const char *name, ds_err *err);

/* open(path, O_RDONLY|O_DIRECTORY) + fsync + close. The descriptor is
 * new, so its error cursor starts now: an earlier writeback error already
 * reported to another descriptor is not seen. Not a check of earlier
 * writes; the library's durability points do not use it (library.c). */
int ds_fsync_dir(const char *path, ds_err *err);

/* mkdir -p with mode 0755; existing directories are fine. */
int ds_mkdir_p(const char *path, ds_err *err);

/* write(2) all n bytes of p to fd, again after EINTR and short writes:
 * 0, or -1 with errno set (the caller names the file in its message). */
int ds_write_all(int fd, const void *p, size_t n);

/* Read a whole (small) file into a malloc'd NUL-terminated buffer. */
int ds_read_file(const char *path, char **out, size_t *len, ds_err *err);

#endif
