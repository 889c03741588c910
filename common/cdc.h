/*
 * cdc.h - content-defined part boundaries for schema v2 (schemas/v2/
 * README.md section 8): where pkgpub cuts a version's tar stream into
 * parts, so that a change moves only the boundaries near it and the
 * parts before and after it keep their ids (the previous version's
 * records are then referenced, not sent again).
 *
 * The rule (FastCDC's gear hash with normalized cutting, as casync and
 * restic use rolling hashes): a part ends after its j-th byte at the
 * first j >= DS_CDC_MIN where the gear hash of the 64 bytes ending there,
 *   h = 0; for each byte b: h = (h << 1) + gear[b]   (mod 2^64),
 * has its top 19 bits zero (j < DS_CDC_AVG) or its top 16 bits zero
 * (j >= DS_CDC_AVG); at DS_CDC_MAX bytes otherwise (the cutter's own
 * maximum). gear[i] is the first 8 bytes, big-endian, of SHA-256 of the
 * single byte i. Only the 64 bytes before a candidate cut decide it, so
 * the rule is a function of the bytes alone: hashing starts 64 bytes
 * before DS_CDC_MIN and the first DS_CDC_MIN - 64 bytes of each part are
 * not read at all (over a quarter of the stream, on average).
 *
 * A plug-in for ds_parts_opts.cut (parts.h); one ds_cdc per cutter.
 */
#ifndef DS_CDC_H
#define DS_CDC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DS_CDC_MIN (64u * 1024)  /* no part is cut shorter (but the last) */
#define DS_CDC_AVG (192u * 1024) /* where the stricter mask gives way */
#define DS_CDC_MAX 917504u       /* DS_PART_MAX: the cutter's own limit */

typedef struct ds_cdc {
    uint64_t gear[256];
    uint64_t hash; /* over the current part's bytes read so far */
    int pending;   /* a cut right after the last byte offered */
} ds_cdc;

/* Fill the gear table. Returns 0, or a negative code (reason
 * "internal": no SHA-256 from libcrypto). */
int ds_cdc_init(ds_cdc *c, ds_err *err);

/* ds_parts_cut_fn: ctx is a ds_cdc. */
size_t ds_cdc_cut(void *ctx, const uint8_t *buf, size_t n, size_t have);

#endif
