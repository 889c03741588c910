/*
 * devbroker.h - `despooler dev-broker`: librdkafka's built-in mock Kafka
 * cluster (in memory, loopback ports) with despool's three topics, for
 * trying despool out and for tests. It is not Apache Kafka: it writes no
 * transaction markers, does not hide aborted transactions, has no
 * ListGroups/DescribeGroups and keeps nothing after it exits.
 */
#ifndef DS_DEVBROKER_H
#define DS_DEVBROKER_H

#include <signal.h>

#include "err.h"

typedef struct ds_devbroker_opts {
    int partitions;             /* of pkg.updates (and the DLQ) */
    int brokers;                /* mock brokers, default 1 */
    const char *bootstrap_file; /* written atomically, or NULL */
    volatile sig_atomic_t *stop;
} ds_devbroker_opts;

int ds_devbroker_run(const ds_devbroker_opts *o, ds_err *err);

#endif
