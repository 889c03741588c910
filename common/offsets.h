/*
 * offsets.h - the commit point of one partition (DESIGN.md, offset rule).
 *
 * Every message the consumer hands to despool is added here, in increasing
 * offset order, and is marked done when its update is finalized or
 * deliberately discarded (stale, duplicate, dead-lettered and delivered).
 * The commit point is the lowest offset that is not yet done; with nothing
 * pending it is one past the highest offset seen. Completion may come in
 * any order. Memory is proportional to the pending window (from the lowest
 * pending offset to the highest seen), never to the partition's history.
 */
#ifndef DS_OFFSETS_H
#define DS_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct ds_offsets ds_offsets;

ds_offsets *ds_offsets_new(void);
void ds_offsets_free(ds_offsets *t);

/* Register offset off as pending. Offsets must increase; a lower or equal
 * offset than the last one added is an error (-EINVAL), unless the tracker
 * was reset. */
int ds_offsets_add(ds_offsets *t, int64_t off, ds_err *err);

/* Mark off done. Unknown or already-done offsets give -ENOENT. */
int ds_offsets_done(ds_offsets *t, int64_t off, ds_err *err);

/* The commit point: lowest pending offset, or one past the highest offset
 * seen when nothing is pending, or -1 when nothing was ever added. */
int64_t ds_offsets_commit_point(const ds_offsets *t);

/* Number of offsets added and not yet done. */
size_t ds_offsets_pending(const ds_offsets *t);

/* Forget everything (after a rewind or a revoke). */
void ds_offsets_reset(ds_offsets *t);

#endif
