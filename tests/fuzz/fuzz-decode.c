/*
 * fuzz-decode.c - libFuzzer target: arbitrary bytes as a pkg.updates event
 * and as a pkg.status record (schema v1), and as a manifest, a part event,
 * an index content and a part key (schema v2), and as a site's part list
 * (partlist.h, a file beside a package). Decoding must never crash
 * or read out of bounds; what decodes must survive a round trip (encode,
 * decode again: the same values), so encoder and decoder agree on every
 * value the decoder accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "manifest.h"
#include "partlist.h"

/* Two decoded manifests mean the same: the signing text covers every
 * signed field and the refs' ids and sizes; the rest is compared here. */
static int same_manifest(const ds_manifest *a, const ds_manifest *b)
{
    char ma[DS_SIG2_MSG_MAX], mb[DS_SIG2_MSG_MAX];
    int la = ds_manifest_sig_message(a, ma, sizeof(ma), NULL);
    int lb = ds_manifest_sig_message(b, mb, sizeof(mb), NULL);
    if (la < 0 || la != lb || memcmp(ma, mb, (size_t)la) != 0 ||
        a->created_ms != b->created_ms || a->has_sig != b->has_sig ||
        a->form != b->form || a->nrefs != b->nrefs || a->nparts != b->nparts)
        return 0;
    if (a->has_sig && (memcmp(a->sig, b->sig, DS_SIG_LEN) != 0 ||
                       strcmp(a->key_id, b->key_id) != 0))
        return 0;
    if (a->form == DS_FORM_INLINE)
        return a->data_len == b->data_len &&
               memcmp(a->data, b->data, a->data_len) == 0;
    ds_part_ref *ra = calloc(a->nrefs, sizeof(*ra));
    ds_part_ref *rb = calloc(b->nrefs, sizeof(*rb));
    int ok = ra && rb &&
             ds_manifest_refs(a, ra, a->nrefs, NULL) == (int)a->nrefs &&
             ds_manifest_refs(b, rb, b->nrefs, NULL) == (int)b->nrefs &&
             memcmp(ra, rb, a->nrefs * sizeof(*ra)) == 0;
    free(ra);
    free(rb);
    return ok;
}

static void fuzz_v2(const uint8_t *data, size_t size)
{
    ds_err err;
    ds_manifest m, m2;
    if (ds_manifest_decode(data, size, &m, &err) == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ds_manifest_encode(&m, &buf, &len, &err) != 0 ||
            ds_manifest_decode(buf, len, &m2, &err) != 0 ||
            !same_manifest(&m, &m2))
            abort();
        free(buf);
    }
    ds_part p, p2;
    if (ds_part_decode(data, size, &p, &err) == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ds_part_encode(&p, &buf, &len, &err) != 0 ||
            ds_part_decode(buf, len, &p2, &err) != 0 ||
            strcmp(p.package, p2.package) != 0 ||
            memcmp(p.id, p2.id, DS_SHA256_LEN) != 0 || p.size != p2.size ||
            p.data_len != p2.data_len ||
            memcmp(p.data, p2.data, p.data_len) != 0)
            abort();
        free(buf);
        uint8_t *out = malloc(p.size);
        if (out == NULL)
            abort();
        (void)ds_part_verify(&p, out, p.size, &err); /* any frame: no crash */
        free(out);
    }
    size_t n = 0;
    if (ds_index_decode(data, size, NULL, 0, &n, &err) == 0) {
        ds_part_ref *refs = calloc(n, sizeof(*refs));
        uint8_t *buf = NULL;
        size_t len = 0, n2 = 0;
        if (refs == NULL || ds_index_decode(data, size, refs, n, &n2, &err) ||
            n2 != n || ds_index_encode(refs, n, &buf, &len, &err) != 0)
            abort();
        ds_part_ref *again = calloc(n, sizeof(*again));
        if (again == NULL ||
            ds_index_decode(buf, len, again, n, &n2, &err) != 0 ||
            memcmp(refs, again, n * sizeof(*refs)) != 0)
            abort();
        free(again);
        free(buf);
        free(refs);
    }
    char pkg[DS_PACKAGE_MAX + 1], key[DS_PART_KEY_MAX + 1];
    uint8_t id[DS_SHA256_LEN];
    if (ds_part_key_parse(data, size, pkg, id, &err) == 0 &&
        (ds_part_key(key, sizeof(key), pkg, id, &err) != (int)size ||
         memcmp(key, data, size) != 0))
        abort();
    uint64_t schema;
    (void)ds_value_schema(data, size, &schema, &err);
}

/* A part list that decodes encodes to the same bytes. */
static void fuzz_partlist(const uint8_t *data, size_t size)
{
    ds_err err;
    ds_partlist pl;
    if (ds_partlist_decode(data, size, "fuzz", &pl, &err) != 0)
        return;
    ds_part_ref *refs = calloc(pl.n ? pl.n : 1, sizeof(*refs));
    if (refs == NULL)
        abort();
    for (size_t i = 0; i < pl.n; i++) {
        memcpy(refs[i].id, pl.parts[i].id, DS_SHA256_LEN);
        refs[i].size = pl.parts[i].size;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (ds_partlist_encode(pl.version, pl.size, pl.sha256, refs, pl.n, &buf,
                           &len, &err) != 0 ||
        len != size || memcmp(buf, data, size) != 0)
        abort();
    free(buf);
    free(refs);
    ds_partlist_free(&pl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_event ev, again;
    ds_err err;
    fuzz_partlist(data, size);
    if (ds_event_decode(data, size, &ev, &err) == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ds_event_encode(&ev, &buf, &len, &err) != 0)
            abort(); /* decoded, so it is valid: it must encode */
        if (ds_event_decode(buf, len, &again, &err) != 0 ||
            !ds_event_same_update(&ev, &again) || ev.chunk != again.chunk ||
            ev.data_len != again.data_len ||
            memcmp(ev.data, again.data, ev.data_len) != 0)
            abort();
        free(buf);
    }
    ds_status st, st2;
    if (ds_status_decode(data, size, &st, &err) == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ds_status_encode(&st, &buf, &len, &err) != 0 ||
            ds_status_decode(buf, len, &st2, &err) != 0 ||
            strcmp(st.site, st2.site) != 0 ||
            strcmp(st.package, st2.package) != 0 || st.version != st2.version ||
            strcmp(st.state, st2.state) != 0 ||
            strcmp(st.detail, st2.detail) != 0 || st.at_ms != st2.at_ms)
            abort();
        free(buf);
    }
    fuzz_v2(data, size);
    return 0;
}
