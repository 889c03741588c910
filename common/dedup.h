/*
 * dedup.h - single-instance storage on a site (issue "ship only what
 * changed"): while a new version is extracted, a regular file whose bytes
 * and metadata equal those of the installed version's file at the same
 * path becomes a hardlink to that file instead of a copy, so two retained
 * versions share the blocks of what did not change. Versions stay
 * immutable (nothing ever writes into a finalized file: unpack creates
 * every file it writes with O_EXCL, and a shared one is only linked), and
 * pruning the older version removes its names, not the shared inodes.
 *
 * Equal means: a regular file (no symlink followed anywhere on its path,
 * which must stay beneath the installed version's root), the entry's
 * size, permission bits and mtime (seconds and nanoseconds), and the same
 * bytes, compared as the entry's data arrives. Until the first difference
 * nothing is written; at a difference the caller creates the file, copies
 * the equal prefix from the installed file and goes on writing.
 *
 * One ds_dedup per extraction, used by one thread. No Kafka here.
 */
#ifndef DS_DEDUP_H
#define DS_DEDUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "err.h"

typedef struct ds_dedup ds_dedup;

/* Compare against the tree at root (the installed version). NULL (*out)
 * when root cannot be opened: extraction then writes every file. */
void ds_dedup_open(const char *root, ds_dedup **out);
void ds_dedup_close(ds_dedup *d); /* NULL is fine */

/* A candidate for one entry. */
typedef struct ds_dedup_file {
    int fd;    /* the installed file, read-only; -1: no candidate */
    int dirfd; /* its parent directory (borrowed from the cache) */
    char base[256];
    struct stat st;
} ds_dedup_file;

/* Look for the installed file at path (normalised, relative) with this
 * size, perm and mtime: 1 with f filled, 0 none (f->fd = -1). Never an
 * error: anything that does not fit is "none". */
int ds_dedup_begin(ds_dedup *d, const char *path, int64_t size, mode_t perm,
                   const struct timespec *mtime, ds_dedup_file *f);

/* Are buf[0..len) the installed file's bytes at off? 1 yes, 0 no (or the
 * file could not be read: then it is written instead). */
int ds_dedup_same(ds_dedup *d, ds_dedup_file *f, const void *buf, size_t len,
                  int64_t off);

/* Copy the installed file's first n bytes into fd (the new file): 0, or
 * -errno (the message in err names both paths). */
int ds_dedup_copy(ds_dedup_file *f, int fd, int64_t n, const char *name,
                  ds_err *err);

/* Link the installed file as dirfd/base: 0 done, or -errno of linkat
 * (EEXIST: the name is taken; EXDEV, EMLINK, ENOENT, EPERM: copy instead
 * with ds_dedup_copy). The link is checked to be the inode compared. */
int ds_dedup_link(ds_dedup_file *f, int dirfd, const char *base);

void ds_dedup_end(ds_dedup_file *f); /* closes f->fd */

#endif
