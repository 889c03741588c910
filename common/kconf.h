/*
 * kconf.h - the Kafka client settings a user gives on the command line,
 * shared by pkgpub and despooler: -b BOOTSTRAP (or -b @FILE, the file that
 * `despooler dev-broker --bootstrap-file` and `scripts/kafka` write),
 * -X key=value and -F file.properties, applied in command-line order over
 * each program's own defaults, so the user always has the last word;
 * librdkafka's log lines become logfmt lines like the programs' own.
 * Also the topic names of the contract.
 */
#ifndef DS_KCONF_H
#define DS_KCONF_H

#include <librdkafka/rdkafka.h>

#include "err.h"

#define DS_TOPIC_UPDATES "pkg.updates"
#define DS_TOPIC_DLQ     "pkg.updates.dlq"
#define DS_TOPIC_STATUS  "pkg.status"
#define DS_TOPIC_CONTENT "pkg.content" /* schema v2's parts */

/* The embedded broker (`despooler dev-broker`) is librdkafka's mock
 * cluster. Each partition keeps at most DS_EMBEDDED_PARTITION_BYTES of
 * record batches (hard-coded in librdkafka 2.0.2, rdkafka_mock.c) and
 * silently drops the oldest beyond that. pkgpub refuses, before sending,
 * an update whose events would take more than DS_EMBEDDED_UPDATE_MAX
 * there: the last MiB is left for other packages' events on the same
 * partition. Apache Kafka has no such limit. */
#define DS_EMBEDDED_PARTITION_BYTES (5u << 20)
#define DS_EMBEDDED_UPDATE_MAX      (4u << 20)

typedef struct ds_kconf_kv {
    char *key;
    char *value;
} ds_kconf_kv;

typedef struct ds_kconf {
    char *bootstrap; /* resolved list (after @FILE) or NULL */
    int bootstrap_b; /* bootstrap came from -b: -F's bootstrap.servers loses */
    ds_kconf_kv *kv; /* user overrides in order */
    size_t n;
} ds_kconf;

/* Set the bootstrap list from a -b argument; "@FILE" reads the first
 * non-empty line of FILE. It wins over a -F file's bootstrap.servers. */
int ds_kconf_bootstrap(ds_kconf *kc, const char *arg, ds_err *err);

/* Add "key=value" from -X. */
int ds_kconf_add(ds_kconf *kc, const char *kv, ds_err *err);

/* Add every "key=value" line of a Java-style properties file (-F);
 * blank lines and lines starting with # or ! are skipped. A
 * bootstrap.servers line is the broker list (as kcat takes it) unless -b
 * gave one, before or after this file: -b wins. */
int ds_kconf_add_file(ds_kconf *kc, const char *path, ds_err *err);

/* The command-line options every program shares: 'b' (-b), 'X' and 'F'.
 * Returns 1 when opt was one of them and was taken, 0 when opt is not a
 * Kafka option, or a negative code (err says why). */
int ds_kconf_option(ds_kconf *kc, int opt, const char *arg, ds_err *err);

void ds_kconf_free(ds_kconf *kc);

/* Set one property on conf, with the error naming key and value. */
int ds_kconf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                 ds_err *err);

/* An error_cb that logs the error as one logfmt line (kafka-error). */
void ds_kconf_log_error(rd_kafka_t *rk, int err, const char *reason,
                        void *opaque);

/* The log_cb ds_kconf_apply installs: one logfmt line (kafka-log) per
 * librdkafka log line. */
void ds_kconf_log(const rd_kafka_t *rk, int level, const char *fac,
                  const char *buf);

/* Apply bootstrap and the user's overrides onto conf (which holds the
 * program's defaults). Fails if no bootstrap was given. */
int ds_kconf_apply(const ds_kconf *kc, rd_kafka_conf_t *conf, ds_err *err);

/* Which cluster rk is connected to: DS_CLUSTER_EMBEDDED (the mock
 * cluster: its cluster id starts with "mockCluster"), DS_CLUSTER_KAFKA
 * (any other), or -1 when no broker answered within timeout_ms. */
#define DS_CLUSTER_KAFKA    0
#define DS_CLUSTER_EMBEDDED 1
int ds_kconf_cluster_kind(rd_kafka_t *rk, int timeout_ms);

#endif
