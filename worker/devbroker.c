/* devbroker.c - the embedded broker; see devbroker.h. */
#include "devbroker.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kconf.h"
#include "log.h"

/* Write the bootstrap list to path via a temp file + rename, so a reader
 * polling for the file never sees it half-written. */
static int write_bootstrap(const char *path, const char *list, ds_err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return ds_err_sys(err, "io-error", "write bootstrap file %s", tmp);
    int ok = fprintf(f, "%s\n", list) > 0;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) < 0) {
        int rc = ds_err_sys(err, "io-error", "write bootstrap file %s", path);
        unlink(tmp);
        return rc;
    }
    return 0;
}

int ds_devbroker_run(const ds_devbroker_opts *o, ds_err *err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only hosts the mock cluster; keep it quiet. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return ds_err_set(err, -EINVAL, "kafka", "dev-broker: %s", errstr);
    }
    rd_kafka_mock_cluster_t *mc =
        rd_kafka_mock_cluster_new(rk, o->brokers > 0 ? o->brokers : 1);
    if (mc == NULL) {
        rd_kafka_destroy(rk);
        return ds_err_set(err, -EIO, "kafka",
                          "dev-broker: cannot start the mock cluster (no "
                          "free loopback port?)");
    }
    const struct {
        const char *name;
        int partitions;
    } topics[] = {
        {DS_TOPIC_UPDATES, o->partitions},
        {DS_TOPIC_DLQ, o->partitions},
        {DS_TOPIC_STATUS, 1},
        /* schema v2's parts (schemas/v2/README.md section 12: >= 24) */
        {DS_TOPIC_CONTENT, 24},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(
            mc, topics[i].name, topics[i].partitions, 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = ds_err_set(err, -EIO, "kafka",
                            "dev-broker: create topic %s: "
                            "%s",
                            topics[i].name, rd_kafka_err2str(e));
            goto out;
        }
    }
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
    if (o->bootstrap_file != NULL &&
        (rc = write_bootstrap(o->bootstrap_file, bs, err)) < 0)
        goto out;
    printf("%s\n", bs);
    fflush(stdout);
    /* librdkafka's mock cluster keeps at most 5 MiB (and 100000 record
     * batches) per partition and drops the oldest beyond that, like a
     * tiny retention (rdkafka_mock.c): say so. pkgpub refuses an update
     * over DS_EMBEDDED_UPDATE_MAX here. */
    ds_info("dev-broker-ready",
            "bootstrap=%s partitions=%d topics=%s,%s,%s bootstrap_file=%s "
            "partition_limit_bytes=%u update_limit_bytes=%u "
            "detail=\"each partition keeps 5 MiB and drops the oldest "
            "events beyond it; pkgpub refuses updates over 4 MiB here; "
            "bigger ones need Apache Kafka (scripts/kafka start)\"",
            DS_LV(bs), o->partitions, DS_TOPIC_UPDATES, DS_TOPIC_DLQ,
            DS_TOPIC_STATUS, DS_LV(o->bootstrap_file ? o->bootstrap_file : "-"),
            DS_EMBEDDED_PARTITION_BYTES, DS_EMBEDDED_UPDATE_MAX);
    while (!*o->stop)
        usleep(100 * 1000);
    ds_info("dev-broker-stopping", "bootstrap=%s", DS_LV(bs));
out:
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    if (o->bootstrap_file != NULL)
        unlink(o->bootstrap_file);
    return rc;
}
