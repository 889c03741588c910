/*
 * session.h - what a schema v2 publication and a retire set up before
 * they write: a reader, the topics' partition counts, the kind of cluster
 * (the embedded broker's limits), the transactional producer with its
 * init_transactions done (which fences any other producer with the
 * package's transactional id), and then, read after that, the package's
 * newest committed record and the parts the store holds (prevmanifest.h).
 */
#ifndef DS_SESSION_H
#define DS_SESSION_H

#include <stdatomic.h>
#include <stdint.h>

#include "err.h"
#include "prevmanifest.h"
#include "reader.h"
#include "txn.h"

typedef struct ds_session {
    ds_txn t; /* t.kc, t.id, t.package, t.step_timeout_ms: set first */
    ds_reader *rd;
    int32_t updates_partitions, content_partitions;
    int32_t broker_id; /* a broker of the cluster, or -1 */
    int kind;          /* DS_CLUSTER_*, or -1 when not known */
    ds_prev prev;
} ds_session;

/* Open s (s->t's fields above set by the caller, the rest zero).
 * upload_bound: at most how many bytes the transaction sends, which sizes
 * transaction.timeout.ms (limits.h; clamped to the brokers' maximum).
 * dr/opaque: the producer's delivery reports. cancel (may be NULL): give
 * up when it becomes non-zero. */
int ds_session_open(ds_session *s, uint64_t upload_bound, ds_txn_dr_fn dr,
                    void *opaque, atomic_int *cancel, ds_err *err);

/* Free everything (the producer last but one, the reader last). */
void ds_session_close(ds_session *s);

#endif
