/*
 * prevmanifest.c - a package's newest committed record and the parts the
 * store holds for it; see prevmanifest.h.
 */
#include "prevmanifest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kconf.h"
#include "log.h"

#define WINDOW_FIRST 64
#define WINDOW_MAX   (1 << 20)

/* The newest record of the package seen so far in a window. */
typedef struct newest {
    const char *package;
    size_t plen;
    int kind;
    int64_t offset;
    uint64_t version;
    uint8_t *value; /* a copy of a v2 value, or NULL */
    size_t len;
} newest;

static int keep_newest(void *ctx, const rd_kafka_message_t *m)
{
    newest *n = ctx;
    if (m->key_len != n->plen || memcmp(m->key, n->package, n->plen) != 0)
        return 0;
    free(n->value);
    n->value = NULL;
    n->len = 0;
    n->offset = m->offset;
    n->version = 0;
    if (m->payload == NULL) {
        n->kind = DS_PREV_TOMBSTONE;
        return 0;
    }
    uint64_t schema = 0;
    ds_event ev;
    n->kind = DS_PREV_INVALID;
    if (ds_value_schema(m->payload, m->len, &schema, NULL) < 0)
        return 0;
    if (schema == DS_SCHEMA_V1) {
        if (ds_event_decode(m->payload, m->len, &ev, NULL) == 0) {
            n->kind = DS_PREV_V1;
            n->version = ev.version;
        }
        return 0;
    }
    if (schema != DS_SCHEMA_V2 || m->len > DS_MANIFEST_MAX)
        return 0;
    n->value = malloc(m->len);
    if (n->value == NULL)
        return -ENOMEM;
    memcpy(n->value, m->payload, m->len);
    n->len = m->len;
    n->kind = DS_PREV_V2; /* decoded once the newest is known */
    return 0;
}

/* The index content of index-form m, fetched and checked, into p->parts. */
static int load_index(ds_reader *rd, const ds_manifest *m, ds_prev *p,
                      int timeout_ms, ds_err *err)
{
    uint64_t len = 0;
    for (size_t i = 0; i < p->nindex; i++)
        len += p->index[i].size;
    uint8_t *buf = malloc(len ? len : 1);
    ds_part_ref *parts = calloc(m->nparts, sizeof(*parts));
    int rc = 0;
    if (buf == NULL || parts == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal",
                        "index of %s: %" PRIu64 " bytes, %" PRIu64
                        " refs: out of memory",
                        m->package, len, m->nparts);
        goto out;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < p->nindex && rc == 0; i++) {
        const ds_part_ref *r = &p->index[i];
        rd_kafka_message_t *msg = NULL;
        ds_part part;
        rc = ds_reader_get(rd, DS_TOPIC_CONTENT, r->partition, r->offset,
                           timeout_ms, &msg, err);
        if (rc == 0 && msg->payload == NULL)
            rc = ds_err_set(err, -ENOENT, "part-missing",
                            "index part %zu at %s partition %d offset %" PRId64
                            ": a tombstone",
                            i, DS_TOPIC_CONTENT, (int)r->partition, r->offset);
        if (rc == 0)
            rc = ds_part_decode(msg->payload, msg->len, &part, err);
        if (rc == 0)
            rc = ds_part_check(&part, msg->key, msg->key_len, m->package, r,
                               err);
        if (rc == 0)
            rc = ds_part_verify(&part, buf + off, len - off, err);
        off += r->size;
        if (msg != NULL)
            rd_kafka_message_destroy(msg);
    }
    if (rc == 0)
        rc = ds_manifest_check_index(m, buf, len, parts, m->nparts, err);
    if (rc == 0) {
        p->parts = parts;
        p->nparts = m->nparts;
        parts = NULL;
    }
out:
    free(buf);
    free(parts);
    return rc;
}

/* Decode the newest record, a v2 manifest, and what it holds. */
static int load_manifest(ds_reader *rd, const char *package, const newest *n,
                         ds_prev *p, int timeout_ms, ds_err *err)
{
    ds_manifest m;
    ds_err derr;
    if (ds_manifest_decode(n->value, n->len, &m, &derr) < 0 ||
        strcmp(m.package, package) != 0) {
        p->kind = DS_PREV_INVALID;
        return 0;
    }
    p->version = m.version;
    p->form = m.form;
    if (m.form == DS_FORM_INLINE)
        return 0;
    ds_part_ref *refs = calloc(m.nrefs, sizeof(*refs));
    if (refs == NULL)
        return ds_err_set(err, -ENOMEM, "internal",
                          "manifest of %s: %u refs: out of memory", package,
                          (unsigned)m.nrefs);
    int rc = ds_manifest_refs(&m, refs, m.nrefs, err);
    if (rc < 0) {
        free(refs);
        return rc;
    }
    if (m.form == DS_FORM_PARTS) {
        p->parts = refs;
        p->nparts = m.nrefs;
        return 0;
    }
    p->index = refs;
    p->nindex = m.nrefs;
    rc = load_index(rd, &m, p, timeout_ms, &derr);
    if (rc == -ENOMEM) {
        *err = derr;
        return rc;
    }
    if (rc < 0) {
        /* Its index parts are known (they can be tombstoned), its stream
         * parts are not: none is reused, none is tombstoned. */
        snprintf(p->note, sizeof(p->note), "%s", derr.msg);
        char q[600];
        ds_warn("previous-index-unreadable",
                "package=%s partition=%d offset=%" PRId64 " detail=%s", package,
                (int)p->partition, p->offset,
                ds_log_quote(q, sizeof(q), derr.msg));
    }
    return 0;
}

int ds_prev_find(ds_reader *rd, const char *package, int32_t partitions,
                 int timeout_ms, ds_prev *p, ds_err *err)
{
    memset(p, 0, sizeof(*p));
    p->offset = -1;
    size_t plen = strlen(package);
    p->partition = rd_kafka_msg_partitioner_murmur2_random(
        NULL, package, plen, partitions, NULL, NULL);
    int64_t lo = 0, end = 0;
    int rc = ds_reader_committed_end(rd, DS_TOPIC_UPDATES, p->partition,
                                     timeout_ms, &lo, &end, err);
    if (rc < 0)
        return rc;
    newest n = {.package = package, .plen = plen, .offset = -1};
    int64_t hi = end, window = WINDOW_FIRST;
    while (hi > lo && n.offset < 0) {
        int64_t from = hi - window > lo ? hi - window : lo;
        rc = ds_reader_scan(rd, DS_TOPIC_UPDATES, p->partition, from, hi,
                            timeout_ms, keep_newest, &n, err);
        if (rc == -ENOMEM)
            rc = ds_err_set(err, rc, "internal",
                            "read %s partition %d: out of memory",
                            DS_TOPIC_UPDATES, (int)p->partition);
        if (rc < 0)
            break;
        hi = from;
        if (window < WINDOW_MAX)
            window *= 2;
    }
    if (rc == 0 && n.offset >= 0) {
        p->kind = n.kind;
        p->offset = n.offset;
        p->version = n.version;
        if (n.kind == DS_PREV_V2)
            rc = load_manifest(rd, package, &n, p, timeout_ms, err);
    }
    free(n.value);
    if (rc < 0)
        ds_prev_free(p);
    return rc;
}

void ds_prev_free(ds_prev *p)
{
    free(p->parts);
    free(p->index);
    p->parts = p->index = NULL;
    p->nparts = p->nindex = 0;
}

const char *ds_prev_describe(const ds_prev *p)
{
    switch (p->kind) {
    case DS_PREV_NONE:
        return "none";
    case DS_PREV_TOMBSTONE:
        return "tombstone";
    case DS_PREV_V1:
        return "v1";
    case DS_PREV_V2:
        return p->form == DS_FORM_INLINE  ? "v2 inline"
               : p->form == DS_FORM_PARTS ? "v2 parts"
                                          : "v2 index";
    default:
        return "invalid";
    }
}
