/*
 * publish.c - what both schemas' publications share before they part:
 * the package id check, a fresh update id, the transactional id; then
 * the schema's own publication (publish_v1.c, publish_v2.c).
 */
#include "publish.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

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
    return o->schema == 2 ? ds_publish_v2(o, r, err) : ds_publish_v1(o, r, err);
}
