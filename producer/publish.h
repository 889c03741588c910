/*
 * publish.h - one package version to Kafka, in ONE transaction (consumers
 * reading read_committed see all of it or nothing), and the retire of a
 * package. Two schemas:
 *
 *  - schema 1 (publish_v1.c): the tree packed into a zstd-compressed tar
 *    spooled to an unlinked temp file, sent as chunk events keyed by the
 *    package id on pkg.updates, plus the `_published/<package>` status
 *    record;
 *  - schema 2 (publish_v2.c, schemas/v2/README.md section 10): the tar
 *    stream cut into parts streamed to pkg.content (the parts the
 *    package's previous manifest references are reused, not sent), the
 *    manifest on pkg.updates, tombstones for the parts it no longer
 *    references, and the status record. Small versions go inline.
 *
 * retire.c: a null value on pkg.updates for the package, tombstones for
 * every part of its newest manifest, status `retired`.
 */
#ifndef DS_PUBLISH_H
#define DS_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"
#include "kconf.h"
#include "limits.h"
#include "pack.h"
#include "sign.h"

#define DS_CHUNK_MAX 921600 /* 900 KiB: under Kafka's 1 MB default */

/* Where v2 parts end (schemas/v2/README.md section 8). */
enum { DS_CUT_CONTENT = 0, DS_CUT_FIXED = 1 };

typedef struct ds_publish_opts {
    const ds_kconf *kc;
    int schema; /* 1 or 2 */
    const char *package;
    uint64_t version;
    const char *source; /* directory or tar file */
    int level;          /* zstd level */
    int threads;        /* v1: zstd threads (0: one); v2: compression
                           threads of the part cutter (0: one per core) */
    size_t chunk_size;  /* v1: <= DS_CHUNK_MAX */
    size_t part_size;   /* v2, DS_CUT_FIXED: parts of this size; 0:
                           DS_PART_MAX */
    int cut;            /* v2: DS_CUT_CONTENT (cdc.h) or DS_CUT_FIXED */
    /* NULL: pkgpub-<host>-<package> (v1), pkgpub-<package> (v2, retire:
     * one publisher per package, section 10 of schemas/v2/README.md). */
    const char *transactional_id;
    int progress;            /* 1 force, 0 auto (tty), -1 never */
    int timeout_ms;          /* transaction steps, reads of pkg.updates */
    const ds_signer *signer; /* sign the header / manifest, or NULL */
} ds_publish_opts;

typedef struct ds_publish_result {
    int schema;
    ds_pack_stats st; /* v2: st.zsize is the manifest's zsize */
    uint8_t update_id[DS_UPDATE_ID_LEN];
    uint32_t chunks; /* v1: chunk events; v2: 1 (the manifest) */
    int32_t partition;
    int64_t first_offset, last_offset; /* v2: both the manifest's */
    double pack_secs, send_secs;
    char transactional_id[256];
    char signed_by[DS_KEY_ID_MAX + 1]; /* key id, "" when unsigned */
    uint8_t sig[DS_SIG_LEN];
    int txn_timeout_ms; /* transaction.timeout.ms the producer used */
    /* v2 only */
    int form;              /* enum ds_form */
    uint64_t parts;        /* nparts (0 inline) */
    uint64_t parts_sent;   /* distinct part records produced */
    uint64_t parts_reused; /* refs to records the store held */
    uint64_t parts_tombstoned;
    uint64_t index_parts;   /* refs of the index (index form) */
    uint64_t content_bytes; /* compressed bytes produced to pkg.content */
    uint64_t reused_bytes;  /* frame bytes of the parts reused (not sent) */
    /* On failure after sending began: what became of the transaction and
     * what the user must check (printed after the error), or "". */
    char hint[1536];
    /* On failure: the transaction was aborted because of the cluster, not
     * the input (ds_txn_worth_retry): running it again may succeed. */
    int retry;
    int attempts; /* publications tried (ds_publish retries, up to
                     DS_PUBLISH_ATTEMPTS) */
} ds_publish_result;

/* Attempts of one publication whose transaction a failover aborted. */
#define DS_PUBLISH_ATTEMPTS 3

/* Publish o->source as o->package version o->version in schema o->schema. */
int ds_publish(const ds_publish_opts *o, ds_publish_result *r, ds_err *err);

/* The two schemas (called by ds_publish once the common checks passed:
 * valid package id, r->update_id and r->transactional_id set). */
int ds_publish_v1(const ds_publish_opts *o, ds_publish_result *r, ds_err *err);
int ds_publish_v2(const ds_publish_opts *o, ds_publish_result *r, ds_err *err);

typedef struct ds_retire_result {
    int retired;         /* 0: nothing to do (see nothing) */
    const char *nothing; /* "no record" or "already retired", else NULL */
    uint64_t version;    /* of the record retired (0 if unknown) */
    int32_t partition;   /* pkg.updates partition of the package */
    int64_t offset;      /* of the tombstone (retired) or of the newest record
                            (already retired), -1 when none */
    uint64_t parts_tombstoned;
    char transactional_id[256];
    int txn_timeout_ms;
    char hint[1536];
} ds_retire_result;

/* Retire o->package (o->kc, o->transactional_id, o->timeout_ms used). */
int ds_retire(const ds_publish_opts *o, ds_retire_result *r, ds_err *err);

#endif
