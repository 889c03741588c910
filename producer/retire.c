/*
 * retire.c - retire a package (schemas/v2/README.md section 11): in one
 * transaction, a null value on pkg.updates keyed by the package (to the
 * partition its records are in), a null value on pkg.content for every
 * part of its newest manifest (index parts included, each to its ref's
 * partition) and the `_published/<package>` status record with state
 * `retired`. The transactional id is the v2 publisher's (pkgpub-<package>
 * by default): a retire fences a publication of the package under way,
 * and is fenced by a later one.
 *
 * A package whose newest record is already a tombstone, or that has no
 * record at all, needs nothing: no transaction is begun and the result
 * says why (pkgpub exits 0: retiring is idempotent, and compaction turns
 * "already retired" into "no record" once the tombstone's
 * delete.retention.ms has passed).
 */
#include "publish.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "partset.h"
#include "progress.h"
#include "session.h"

#define TAG_OTHER     0
#define TAG_TOMBSTONE 1 /* the package's, on pkg.updates */

typedef struct retire {
    ds_session s;
    unsigned failed;
    rd_kafka_resp_err_t first_err;
    int32_t partition;
    int64_t offset;
    ds_err *err;
    const char *package;
} retire;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    retire *c = opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (c->failed++ == 0)
            c->first_err = m->err;
        return;
    }
    if ((uintptr_t)m->_private == TAG_TOMBSTONE) {
        c->partition = m->partition;
        c->offset = m->offset;
    }
}

static int part_tombstone(void *ctx, const ds_partset_entry *e)
{
    retire *c = ctx;
    char key[DS_PART_KEY_MAX + 1];
    int rc = ds_part_key(key, sizeof(key), c->package, e->id, c->err);
    if (rc >= 0)
        rc = ds_txn_produce(&c->s.t, c->s.t.content, e->partition, key, NULL, 0,
                            0, (void *)(uintptr_t)TAG_OTHER, c->err);
    if (rc < 0) {
        char what[DS_PART_KEY_MAX + 64];
        snprintf(what, sizeof(what), "send tombstone %s to %s partition %d",
                 key, DS_TOPIC_CONTENT, (int)e->partition);
        return ds_txn_produce_failed(&c->s.t, c->failed, c->first_err, rc, what,
                                     c->err);
    }
    rd_kafka_poll(c->s.t.rk, 0);
    return 0;
}

/* The transaction's records; the tombstones of the parts counted in
 * *parts. */
static int send_retire(retire *c, const ds_publish_opts *o, uint64_t *parts,
                       ds_err *err)
{
    const ds_prev *p = &c->s.prev;
    ds_partset *set = NULL;
    char what[DS_PACKAGE_MAX + 64];
    int rc = ds_partset_new(p->nparts + p->nindex, &set, err);
    for (size_t i = 0; rc == 0 && i < p->nparts; i++)
        rc = ds_partset_hold(set, &p->parts[i], err);
    for (size_t i = 0; rc == 0 && i < p->nindex; i++)
        rc = ds_partset_hold(set, &p->index[i], err);
    if (rc == 0 && (rc = ds_txn_produce(
                        &c->s.t, c->s.t.updates, p->partition, o->package, NULL,
                        0, 0, (void *)(uintptr_t)TAG_TOMBSTONE, err)) < 0) {
        snprintf(what, sizeof(what), "send the tombstone of %s to %s",
                 o->package, DS_TOPIC_UPDATES);
        rc = ds_txn_produce_failed(&c->s.t, c->failed, c->first_err, rc, what,
                                   err);
    }
    if (rc == 0) {
        /* Nothing placed: every part held is dropped. */
        long n = ds_partset_dropped(set, part_tombstone, c);
        if (n < 0)
            rc = (int)n;
        else
            *parts = (uint64_t)n;
    }
    ds_partset_free(set);
    if (rc < 0)
        return rc;
    ds_status st = {.version = p->version, .at_ms = ds_now_ms()};
    snprintf(st.site, sizeof(st.site), "_published");
    snprintf(st.package, sizeof(st.package), "%s", o->package);
    snprintf(st.state, sizeof(st.state), "retired");
    snprintf(st.detail, sizeof(st.detail), "retired by pkgpub");
    uint8_t *val = NULL;
    size_t len = 0;
    char key[DS_PACKAGE_MAX + 16];
    snprintf(key, sizeof(key), "_published/%s", o->package);
    if ((rc = ds_status_encode(&st, &val, &len, err)) < 0)
        return rc;
    if ((rc = ds_txn_produce(&c->s.t, c->s.t.status, RD_KAFKA_PARTITION_UA, key,
                             val, len, RD_KAFKA_MSG_F_FREE,
                             (void *)(uintptr_t)TAG_OTHER, err)) < 0) {
        snprintf(what, sizeof(what), "send %s to %s", key, DS_TOPIC_STATUS);
        return ds_txn_produce_failed(&c->s.t, c->failed, c->first_err, rc, what,
                                     err);
    }
    return 0;
}

int ds_retire(const ds_publish_opts *o, ds_retire_result *r, ds_err *err)
{
    memset(r, 0, sizeof(*r));
    r->partition = -1;
    r->offset = -1;
    if (!ds_package_valid(o->package, strlen(o->package)))
        return ds_err_set(err, -EINVAL, "usage",
                          "package id \"%s\": expected [A-Za-z0-9]"
                          "[A-Za-z0-9._-]{0,127}",
                          o->package);
    if (o->transactional_id != NULL)
        snprintf(r->transactional_id, sizeof(r->transactional_id), "%s",
                 o->transactional_id);
    else
        snprintf(r->transactional_id, sizeof(r->transactional_id), "pkgpub-%s",
                 o->package);
    retire *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "retire: out of memory");
    c->package = o->package;
    c->err = err;
    c->partition = -1;
    c->offset = -1;
    c->s.t.kc = o->kc;
    c->s.t.package = o->package;
    c->s.t.step_timeout_ms = o->timeout_ms;
    c->s.t.partition = -1;
    snprintf(c->s.t.id, sizeof(c->s.t.id), "%s", r->transactional_id);
    /* Tombstones only: the floor of the transaction timeout. */
    int rc = ds_session_open(&c->s, 0, on_delivery, c, NULL, err);
    if (rc < 0)
        goto out;
    const ds_prev *p = &c->s.prev;
    r->partition = p->partition;
    r->version = p->version;
    if (p->kind == DS_PREV_NONE || p->kind == DS_PREV_TOMBSTONE) {
        r->nothing = p->kind == DS_PREV_NONE ? "no record" : "already retired";
        r->offset = p->offset;
        goto out;
    }
    if (p->note[0] != '\0')
        ds_warn("retire-parts-unknown",
                "package=%s detail=\"the newest manifest's index could not be "
                "read: its index parts are tombstoned, its other parts are "
                "left to the operator\"",
                o->package);
    if ((rc = ds_txn_begin(&c->s.t, err)) < 0)
        goto out;
    rc = send_retire(c, o, &r->parts_tombstoned, err);
    if (rc == 0)
        rc = ds_txn_commit(&c->s.t, &c->failed, &c->first_err, err);
    else
        ds_txn_abort(&c->s.t);
    if (rc < 0) {
        ds_txn_settle(&c->s.t,
                      c->s.t.rk != NULL && rd_kafka_outq_len(c->s.t.rk) > 0);
        goto out;
    }
    r->retired = 1;
    r->offset = c->offset;
    if (c->partition >= 0)
        r->partition = c->partition;
out:
    r->txn_timeout_ms = c->s.t.timeout_ms;
    snprintf(r->hint, sizeof(r->hint), "%s", c->s.t.hint);
    ds_session_close(&c->s);
    free(c);
    return rc;
}
