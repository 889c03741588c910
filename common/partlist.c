/*
 * partlist.c - encoding of an installed version's part list (partlist.h).
 */
#include "partlist.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC     "despool-partlist 1\n"
#define MAGIC_LEN (sizeof(MAGIC) - 1)
#define HEAD_LEN  (MAGIC_LEN + 8 + 8 + DS_SHA256_LEN + 4)
#define ENTRY_LEN (DS_SHA256_LEN + 4)

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static int digest(const uint8_t *buf, size_t len, uint8_t out[DS_SHA256_LEN])
{
    unsigned mdlen = 0;
    return EVP_Digest(buf, len, out, &mdlen, EVP_sha256(), NULL) == 1 &&
                   mdlen == DS_SHA256_LEN
               ? 0
               : -1;
}

int ds_partlist_encode(uint64_t version, uint64_t size,
                       const uint8_t sha256[DS_SHA256_LEN],
                       const ds_part_ref *refs, size_t n, uint8_t **buf,
                       size_t *len, ds_err *err)
{
    *buf = NULL;
    *len = 0;
    if (n > DS_NPARTS_MAX)
        return ds_err_set(err, -EINVAL, "internal",
                          "encode part list of version %llu: %zu parts, at "
                          "most %u",
                          (unsigned long long)version, n, DS_NPARTS_MAX);
    size_t total = HEAD_LEN + n * ENTRY_LEN + DS_SHA256_LEN;
    uint8_t *b = malloc(total);
    if (b == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "encode part list of version %llu: out of memory "
                          "for %zu bytes",
                          (unsigned long long)version, total);
    uint8_t *p = b;
    memcpy(p, MAGIC, MAGIC_LEN);
    p += MAGIC_LEN;
    put64(p, version);
    put64(p + 8, size);
    memcpy(p + 16, sha256, DS_SHA256_LEN);
    put32(p + 16 + DS_SHA256_LEN, (uint32_t)n);
    p += 16 + DS_SHA256_LEN + 4;
    for (size_t i = 0; i < n; i++, p += ENTRY_LEN) {
        memcpy(p, refs[i].id, DS_SHA256_LEN);
        put32(p + DS_SHA256_LEN, refs[i].size);
    }
    if (digest(b, (size_t)(p - b), p) < 0) {
        free(b);
        return ds_err_set(err, -EIO, "internal",
                          "encode part list of version %llu: sha256 failed",
                          (unsigned long long)version);
    }
    *buf = b;
    *len = total;
    return 0;
}

static int bad(ds_err *err, const char *name, const char *what)
{
    return ds_err_set(err, -EBADMSG, "bad-partlist", "part list %s: %s", name,
                      what);
}

int ds_partlist_decode(const uint8_t *buf, size_t len, const char *name,
                       ds_partlist *out, ds_err *err)
{
    memset(out, 0, sizeof(*out));
    if (len < HEAD_LEN + DS_SHA256_LEN || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return bad(err, name, "not a part list (no magic, or too short)");
    const uint8_t *p = buf + MAGIC_LEN;
    uint32_t n = get32(p + 16 + DS_SHA256_LEN);
    if (n > DS_NPARTS_MAX ||
        len != HEAD_LEN + (size_t)n * ENTRY_LEN + DS_SHA256_LEN)
        return bad(err, name, "its length does not match its part count");
    uint8_t md[DS_SHA256_LEN];
    if (digest(buf, len - DS_SHA256_LEN, md) < 0)
        return ds_err_set(err, -EIO, "internal", "part list %s: sha256 failed",
                          name);
    if (memcmp(md, buf + len - DS_SHA256_LEN, DS_SHA256_LEN) != 0)
        return bad(err, name, "checksum mismatch (damaged)");
    ds_plpart *parts = malloc((n ? n : 1) * sizeof(*parts));
    if (parts == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "part list %s: out of memory for %u parts", name, n);
    out->version = get64(p);
    out->size = get64(p + 8);
    memcpy(out->sha256, p + 16, DS_SHA256_LEN);
    p = buf + HEAD_LEN;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++, p += ENTRY_LEN) {
        memcpy(parts[i].id, p, DS_SHA256_LEN);
        parts[i].size = get32(p + DS_SHA256_LEN);
        sum += parts[i].size;
        if (parts[i].size > DS_PART_SIZE_MAX) {
            free(parts);
            return bad(err, name, "a part is larger than the schema allows");
        }
    }
    if (sum != out->size) {
        free(parts);
        return bad(err, name, "its parts do not add up to its stream size");
    }
    out->n = n;
    out->parts = parts;
    return 0;
}

void ds_partlist_free(ds_partlist *pl)
{
    if (pl == NULL)
        return;
    free(pl->parts);
    pl->parts = NULL;
    pl->n = 0;
}
