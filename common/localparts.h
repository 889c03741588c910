/*
 * localparts.h - a new version's parts re-created from the installed one
 * (schema v2; issue "ship only what changed"): the site re-packs the
 * directory current points at into the same deterministic tar stream
 * pkgpub made of it (pack.h), cuts it where the installed version's part
 * list says (partlist.h), and hands over the slices the new manifest
 * names by id, so that only the other parts are fetched.
 *
 * Every slice is checked against its id (SHA-256) before it is handed
 * over; one that does not match is reported as "local-mismatch" for that
 * part alone (the caller fetches it), never used. A tree that cannot be
 * re-packed (a file gone, unreadable, shrinking) stops the source: every
 * later call returns that error and the caller fetches the rest.
 *
 * The stream is re-created once, front to back: the plan takes a part
 * from it only when its slice lies after the previous planned one's, so
 * a file moved earlier in the sorted order is fetched instead. Re-packing
 * stops after the last planned slice.
 *
 * Threads: the packer runs on a thread of its own, hashing each slice;
 * next, cancel and close are called by the consumer (cancel from any
 * thread). Memory: three slices of at most DS_PART_SIZE_MAX bytes, plus
 * the plan (about 50 bytes per planned part).
 * No Kafka here.
 */
#ifndef DS_LOCALPARTS_H
#define DS_LOCALPARTS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "manifest.h"
#include "partlist.h"

typedef struct ds_local ds_local;

/* Which of the new version's refs[0..n) to re-create from the installed
 * version described by old: use[i] = 1 for those (0 for the rest); *nlocal
 * counts them. Fails only for want of memory. */
int ds_local_plan(const ds_partlist *old, const ds_part_ref *refs, size_t n,
                  uint8_t *use, size_t *nlocal, ds_err *err);

/* Start re-creating the parts of refs[0..n) marked in use (as ds_local_plan
 * set it) from dir, the installed version old describes. */
int ds_local_open(const char *dir, const ds_partlist *old,
                  const ds_part_ref *refs, size_t n, const uint8_t *use,
                  ds_local **out, ds_err *err);

/* The next planned part, in refs order: 1 with its verified bytes (valid
 * until the next call or close), 0 after the last one, or < 0: reason
 * "local-mismatch" (this part only: the next call goes on with the next
 * one), else the re-pack's own failure (sticky) or "cancelled". */
int ds_local_next(ds_local *l, const void **buf, size_t *len, ds_err *err);

/* Make a waiting or later next() return "cancelled". Any thread. */
void ds_local_cancel(ds_local *l);

/* Stop the packer and free (NULL is fine). */
void ds_local_close(ds_local *l);

#endif
