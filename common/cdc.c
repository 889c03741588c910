/* cdc.c - content-defined part boundaries; see cdc.h. */
#include "cdc.h"

#include <errno.h>
#include <openssl/evp.h>

#include "manifest.h"

_Static_assert(DS_CDC_MAX == DS_PART_SIZE_MAX, "DS_CDC_MAX is DS_PART_MAX");
_Static_assert(DS_CDC_MIN > 64 && DS_CDC_MIN < DS_CDC_AVG &&
                   DS_CDC_AVG < DS_CDC_MAX,
               "MIN < AVG < MAX");

/* Top 19 bits before DS_CDC_AVG (a cut about 2.6x less likely than at
 * the average's own 17.6), top 16 after (3x more likely): sizes gather
 * around the average (FastCDC's normalization), and almost no part
 * reaches the maximum, whose cut depends on where the part began, not on
 * the bytes. A minimum of a third of the average (not a half) skips fewer
 * of the cuts that let two versions fall in step again after an edit:
 * measured on trees of 24 files of 1 MiB with five edits, 6.2 parts
 * changed per version instead of 9.8 with a half and a stricter mask.
 * The sizes themselves (a mean of about 224 KiB, half of the first
 * rule's 455 KiB with 128/384 KiB and 20/17 bits) are what a small edit
 * costs: the part it falls in, about 140 KiB compressed; on the bench's
 * 1 GiB tree with 1% of its files edited, 4.9% of the bytes were sent
 * with the first rule. Bit k of h depends on the last k + 1 bytes: the
 * top bits see the most of them. */
#define MASK_BEFORE (~UINT64_C(0) << (64 - 19))
#define MASK_AFTER  (~UINT64_C(0) << (64 - 16))
#define WARM        (DS_CDC_MIN - 64) /* hashing starts at this position */

int ds_cdc_init(ds_cdc *c, ds_err *err)
{
    for (unsigned i = 0; i < 256; i++) {
        unsigned char b = (unsigned char)i, md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        if (EVP_Digest(&b, 1, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8)
            return ds_err_set(err, -EINVAL, "internal",
                              "content-defined cutting: SHA-256 of byte %u "
                              "failed",
                              i);
        uint64_t g = 0;
        for (int k = 0; k < 8; k++)
            g = g << 8 | md[k];
        c->gear[i] = g;
    }
    c->hash = 0;
    c->pending = 0;
    return 0;
}

size_t ds_cdc_cut(void *ctx, const uint8_t *buf, size_t n, size_t have)
{
    ds_cdc *c = ctx;
    if (have == 0) {
        c->hash = 0;
        c->pending = 0;
    } else if (c->pending) {
        /* The cut fell after the last byte of the previous offer, where
         * "no boundary" and "boundary" read the same (k == n). */
        c->pending = 0;
        return 0;
    }
    size_t i = 0;
    if (have < WARM) {
        if (n <= WARM - have)
            return n;
        i = WARM - have;
    }
    uint64_t h = c->hash;
    for (; i < n; i++) {
        h = (h << 1) + c->gear[buf[i]];
        size_t len = have + i + 1; /* the part's length if cut here */
        if (len < DS_CDC_MIN)
            continue;
        if ((h & (len < DS_CDC_AVG ? MASK_BEFORE : MASK_AFTER)) == 0) {
            c->hash = 0;
            if (i + 1 < n)
                return i + 1;
            c->pending = 1;
            return n;
        }
    }
    c->hash = h;
    return n;
}
