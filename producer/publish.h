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
} ds_publish_result;

int ds_publish(const ds_publish_opts *o, ds_publish_result *r, ds_err *err);

#endif
