/*
 * publish.c - what both schemas' publications share before they part:
 * the package id check, a fresh update id, the transactional id; then
 * the schema's own publication (publish_v1.c, publish_v2.c), a v2 one run
 * again when a failover aborted its transaction.
 */
#include "publish.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"

int ds_publish(const ds_publish_opts *o, ds_publish_result *r, ds_err *err)
{
    memset(r, 0, sizeof(*r));
    r->schema = o->schema;
    r->partition = -1;
    r->first_offset = r->last_offset = -1;
    if (o->schema != 1 && o->schema != 2)
        return ds_err_set(err, -EINVAL, "usage", "schema %d: expected 1 or 2",
                          o->schema);
    if (!ds_package_valid(o->package, strlen(o->package)))
        return ds_err_set(err, -EINVAL, "usage",
                          "package id \"%s\": expected [A-Za-z0-9]"
                          "[A-Za-z0-9._-]{0,127}",
                          o->package);
    if (getrandom(r->update_id, sizeof(r->update_id), 0) !=
        (ssize_t)sizeof(r->update_id))
        return ds_err_sys(err, "io-error", "getrandom for update id");
    if (o->transactional_id != NULL) {
        snprintf(r->transactional_id, sizeof(r->transactional_id), "%s",
                 o->transactional_id);
    } else if (o->schema == 2) {
        /* The package alone: a second publisher of the package fences the
         * first, wherever it runs (schemas/v2/README.md section 10, "One
         * publisher per package"). */
        snprintf(r->transactional_id, sizeof(r->transactional_id), "pkgpub-%s",
                 o->package);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        /* Same host + package = same id: a re-run fences a crashed run's
         * open transaction instead of waiting for it to time out. */
        snprintf(r->transactional_id, sizeof(r->transactional_id),
                 "pkgpub-%s-%s", host, o->package);
    }
    ds_info("publish-started",
            "package=%s version=%" PRIu64 " schema=%d source=%s "
            "transactional_id=%s cut=%s",
            o->package, o->version, o->schema, DS_LV(o->source),
            DS_LV(r->transactional_id),
            o->schema == 1             ? "chunks"
            : o->cut == DS_CUT_CONTENT ? "content"
                                       : "fixed");
    if (o->schema == 1)
        return ds_publish_v1(o, r, err);
    /* A transaction a failover aborted (nothing of it visible) is run
     * again, the whole publication: packed from the source again, parts
     * the store holds reused, a fresh producer (init_transactions waits
     * for the new coordinator). An error of the input, or a transaction
     * left open or fenced, is reported at once. */
    ds_publish_result first = *r;
    int rc = 0;
    for (int attempt = 1; attempt <= DS_PUBLISH_ATTEMPTS; attempt++) {
        *r = first;
        r->attempts = attempt;
        rc = ds_publish_v2(o, r, err);
        if (rc == 0 || !r->retry || attempt == DS_PUBLISH_ATTEMPTS)
            break;
        char q[DS_ERRMSG_MAX + 64];
        ds_warn("publish-retry",
                "package=%s version=%" PRIu64 " attempt=%d of=%d error=%s",
                o->package, o->version, attempt + 1, DS_PUBLISH_ATTEMPTS,
                ds_log_quote(q, sizeof(q), err->msg));
        if (getrandom(first.update_id, sizeof(first.update_id), 0) !=
            (ssize_t)sizeof(first.update_id))
            return ds_err_sys(err, "io-error", "getrandom for update id");
    }
    if (rc == 0)
        ds_info("published",
                "package=%s version=%" PRIu64 " schema=2 parts=%" PRIu64
                " parts_sent=%" PRIu64 " parts_reused=%" PRIu64
                " sent_bytes=%" PRIu64 " reused_bytes=%" PRIu64,
                o->package, o->version, r->parts, r->parts_sent,
                r->parts_reused, r->content_bytes, r->reused_bytes);
    return rc;
}
