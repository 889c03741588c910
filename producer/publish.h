/*
 * publish.h - one package version to pkg.updates: pack the source into a
 * zstd-compressed tar spooled to an unlinked temp file (memory stays
 * constant whatever the size), then send it as chunk events keyed by the
 * package id, plus the `_published/<package>` status record, all in ONE
 * Kafka transaction: consumers reading read_committed see all or nothing.
 */
#ifndef DS_PUBLISH_H
#define DS_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"
#include "kconf.h"
#include "pack.h"
#include "sign.h"

#define DS_CHUNK_MAX 921600 /* 900 KiB: under Kafka's 1 MB default */

/* transaction.timeout.ms, unless the user sets it (-X/-F): the
 * coordinator aborts a transaction still open that long after its first
 * event, so it must cover the whole send. pkgpub assumes the upload runs
 * at DS_TXN_RATE (2 MiB/s, about 17 Mbit/s) and allows DS_TXN_MARGIN_MS
 * more, never less than librdkafka's default DS_TXN_FLOOR_MS:
 *   max(60 s, 30 s + compressed bytes / 2 MiB/s)
 * (60 s up to 60 MiB, 542 s for 1 GiB), clamped to the brokers'
 * transaction.max.timeout.ms (Kafka's default 15 min: reached at 1.7 GiB;
 * beyond it an upload slower than the clamp is aborted). */
#define DS_TXN_FLOOR_MS  60000
#define DS_TXN_MARGIN_MS 30000
#define DS_TXN_RATE      (2u << 20)
/* How long pkgpub keeps retrying the abort of a failed transaction while
 * the broker does not answer (it may be restarting). */
#define DS_TXN_ABORT_WAIT_MS 120000

typedef struct ds_publish_opts {
    const ds_kconf *kc;
    const char *package;
    uint64_t version;
    const char *source;           /* directory or tar file */
    int level;                    /* zstd level */
    int threads;                  /* zstd threads */
    size_t chunk_size;            /* <= DS_CHUNK_MAX */
    const char *transactional_id; /* NULL: pkgpub-<host>-<package> */
    int progress;                 /* 1 force, 0 auto (tty), -1 never */
    int timeout_ms;               /* transaction steps */
    const ds_signer *signer;      /* sign the header, or NULL */
} ds_publish_opts;

/* The transaction timeout the rule above gives for zsize bytes. */
int ds_txn_timeout_for(uint64_t zsize);

typedef struct ds_publish_result {
    ds_pack_stats st;
    uint8_t update_id[DS_UPDATE_ID_LEN];
    uint32_t chunks;
    int32_t partition;
    int64_t first_offset, last_offset;
    double pack_secs, send_secs;
    char transactional_id[256];
    char signed_by[DS_KEY_ID_MAX + 1]; /* key id, "" when unsigned */
    uint8_t sig[DS_SIG_LEN];
    int txn_timeout_ms; /* transaction.timeout.ms the producer used */
    /* On failure after sending began: what became of the transaction and
     * what the user must check (printed after the error), or "". */
    char hint[1536];
} ds_publish_result;

int ds_publish(const ds_publish_opts *o, ds_publish_result *r, ds_err *err);

#endif
