/*
 * partfetch.h - the part fetcher (schema v2, schemas/v2/README.md section
 * 13): reads parts from pkg.content by (partition, offset) for the updates
 * in flight, many partitions at once, and hands each update its parts in
 * stream order, every one checked against its ref (key, package, id,
 * size, frame length) and against its bytes (decompressed, SHA-256 equal
 * to the id).
 *
 * One group-less, assign-only, read_committed consumer on its own thread
 * serves every open fetch. It is assigned all of pkg.content's partitions
 * once, paused, and reads only the partitions that hold a wanted part:
 * each open fetch wants the parts of its window after the one its reader
 * is at (DS_FETCH_WINDOW parts, and no more than 16 parts' worth of the
 * largest frames), and also takes later parts (up to 128 ahead) whose
 * records come by while their partition is read, as long as buffers
 * allow, so a partition read for a wanted part rarely has to be read
 * again. A partition is seeked to its lowest wanted offset and resumed,
 * and paused again once nothing in it is wanted or next; records that no
 * fetch wants are dropped as they arrive.
 *
 * A part is missing (reason "part-missing") when the first record read at
 * or after its offset is a later one (compacted away, or an aborted or
 * control record), when the partition ends before it, when its offset is
 * out of the partition's range, or when the partition does not exist.
 *
 * Threads: the fetcher thread reads and routes records; two verifier
 * threads check the parts that arrived (decompress, hash), earliest
 * first, ahead of the readers; ds_fetch_open / next / close are called by
 * the update's own thread (next from unpack's helper thread: one at a time
 * per fetch); ds_fetch_cancel from any thread. Memory per open fetch:
 * records wait in buffers of 900 KiB, reused as parts are checked and
 * freed at close: one for each wanted part, and the later parts' only
 * while all in use stay under 24 and their frames under 12 of the
 * largest (at most 56 buffers, whose pages hold only the frames they
 * got), plus up to 13 decompressed parts (the reader's and those checked
 * ahead, no more than six of the largest). Measured on the bench's 1 GiB
 * tree (4,633 parts of content-defined cuts, Kafka on the same 2 cores):
 * 8.9-10.5 s from commit to finalized, peak worker RSS 55 MiB; 58 MiB
 * for a 2 GiB update.
 */
#ifndef DS_PARTFETCH_H
#define DS_PARTFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "kconf.h"
#include "manifest.h"

/* Parts sought ahead of the reader, per open fetch, at most (fewer when
 * they are large: partfetch.c, WINDOW_BYTES). */
#define DS_FETCH_WINDOW 32

typedef struct ds_partfetch ds_partfetch;
typedef struct ds_fetch ds_fetch;

/* Create the fetcher for topic (pkg.content) with the user's Kafka
 * settings kc; its consumer and thread start with the first open. */
int ds_partfetch_new(const ds_kconf *kc, const char *topic, ds_partfetch **out,
                     ds_err *err);
/* Stop the thread and free; every fetch must be closed. NULL is fine. */
void ds_partfetch_free(ds_partfetch *pf);

/* Open a fetch of refs[0..n) (copied) of package, in that order. */
int ds_fetch_open(ds_partfetch *pf, const char *package,
                  const ds_part_ref *refs, size_t n, ds_fetch **out,
                  ds_err *err);

/* Wait for the next part: returns 1 with *buf / *len its uncompressed,
 * verified bytes (valid until the next call or close), 0 after the last
 * part, or a negative code: reason "part-missing" or "part-mismatch" (the
 * input's fault), "cancelled", or "internal" (out of memory, a zstd or
 * hash context). */
int ds_fetch_next(ds_fetch *f, const void **buf, size_t *len, ds_err *err);

/* Make a waiting or later next() return "cancelled". Any thread. */
void ds_fetch_cancel(ds_fetch *f);

/* Withdraw and free the fetch (NULL is fine). */
void ds_fetch_close(ds_fetch *f);

/* Numbers for the log and metrics: parts and frame bytes handed out,
 * records read and dropped (wanted by no fetch). */
typedef struct ds_partfetch_stats {
    uint64_t parts, bytes, records, dropped, seeks;
} ds_partfetch_stats;
void ds_partfetch_stats_get(ds_partfetch *pf, ds_partfetch_stats *st);

#endif
