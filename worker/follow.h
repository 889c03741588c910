/*
 * follow.h - read a whole topic from its beginning and keep following it
 * (pkg.status for `despooler status` and its page, pkg.updates.dlq for
 * the page's dead letters): an assign-only read_committed consumer on
 * every partition, which never joins a group and never commits.
 */
#ifndef DS_FOLLOW_H
#define DS_FOLLOW_H

#include <librdkafka/rdkafka.h>

#include "err.h"
#include "kconf.h"

typedef struct ds_follow ds_follow;

/* One record; an error returned stops ds_follow_poll with it. */
typedef int (*ds_follow_fn)(void *ctx, const rd_kafka_message_t *m,
                            ds_err *err);

/* group names the (never joined) group librdkafka 2.0.2 needs for assign;
 * timeout_ms bounds the metadata request. */
int ds_follow_open(const ds_kconf *kc, const char *topic, const char *group,
                   int timeout_ms, ds_follow **out, ds_err *err);

/* Hand every record read within about wait_ms to fn (a poll returns as
 * soon as it has read what the client had fetched). Returns the number of
 * records, or an error (fn's, or the client's). */
int ds_follow_poll(ds_follow *f, int wait_ms, ds_follow_fn fn, void *ctx,
                   ds_err *err);

/* Why the topic cannot be read while the client retries by itself: no
 * broker answered the last probe (a metadata request, made here at most
 * every 5 s, so only a follower whose trouble is asked for sends it), or a
 * transport error; cleared by a probe, a record or a partition's end that
 * succeeds. NULL when none. */
const char *ds_follow_trouble(ds_follow *f);

/* 1 once every partition has been read to its end at least once. */
int ds_follow_caught_up(const ds_follow *f);

void ds_follow_close(ds_follow *f); /* NULL is fine */

#endif
