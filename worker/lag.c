/* lag.c - consumer lag of one site from committed offsets; see lag.h. */
#include "lag.h"

#include <stdio.h>
#include <string.h>
#include <librdkafka/rdkafka.h>

int ds_lag_run(const ds_lag_opts *o, long long *total_lag, ds_err *err)
{
    char errstr[512], group[256];
    snprintf(group, sizeof(group), "despool.%s", o->site);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int rc;
    /* read_uncommitted: watermark queries then return the high watermark
     * (what Kafka's own tools call LOG-END-OFFSET), not the last stable
     * offset. This handle never subscribes, so it never joins the group. */
    if ((rc = ds_kconf_set(c, "group.id", group, err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.commit", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "isolation.level", "read_uncommitted", err)) <
            0 ||
        (rc = ds_kconf_set(c, "log_level", "3", err)) < 0 ||
        (rc = ds_kconf_apply(o->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka", "create client: %s", errstr);
    }
    rd_kafka_topic_partition_list_t *l = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, DS_TOPIC_UPDATES, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, o->timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = ds_err_set(err, -EHOSTUNREACH, "kafka",
                        "read metadata of %s: %s (is the broker running and "
                        "-b right?)",
                        DS_TOPIC_UPDATES, rd_kafka_err2str(e));
        goto out;
    }
    if (md->topic_cnt != 1 || md->topics[0].err) {
        rc =
            ds_err_set(err, -ENOENT, "kafka", "topic %s: %s", DS_TOPIC_UPDATES,
                       rd_kafka_err2str(md->topic_cnt ? md->topics[0].err : e));
        goto out;
    }
    l = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES,
                                          md->topics[0].partitions[i].id);
    rd_kafka_topic_partition_list_sort(l, NULL, NULL);
    e = rd_kafka_committed(rk, l, o->timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = ds_err_set(err, -EIO, "kafka", "read committed offsets of %s: %s",
                        group, rd_kafka_err2str(e));
        goto out;
    }
    long long total = 0;
    if (o->json)
        printf("{\"group\":\"%s\",\"topic\":\"%s\",\"partitions\":[", group,
               DS_TOPIC_UPDATES);
    else
        printf("\n%-24s %-12s %9s %14s %14s %8s\n", "GROUP", "TOPIC",
               "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG");
    for (int i = 0; i < l->cnt; i++) {
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, DS_TOPIC_UPDATES,
                                             l->elems[i].partition, &lo, &hi,
                                             o->timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = ds_err_set(err, -EIO, "kafka",
                            "read watermarks of %s [%d]: %s", DS_TOPIC_UPDATES,
                            (int)l->elems[i].partition, rd_kafka_err2str(e));
            goto out;
        }
        int64_t cur = l->elems[i].offset;
        /* No commit yet: the group would start from the earliest offset. */
        long long lag = cur >= 0 ? (long long)(hi - cur) : (long long)(hi - lo);
        total += lag;
        char curs[24];
        if (cur >= 0)
            snprintf(curs, sizeof(curs), "%lld", (long long)cur);
        else
            snprintf(curs, sizeof(curs), "-");
        if (o->json)
            printf("%s{\"partition\":%d,\"current_offset\":%s,"
                   "\"log_end_offset\":%lld,\"lag\":%lld}",
                   i ? "," : "", (int)l->elems[i].partition,
                   cur >= 0 ? curs : "null", (long long)hi, lag);
        else
            printf("%-24s %-12s %9d %14s %14lld %8lld\n", group,
                   DS_TOPIC_UPDATES, (int)l->elems[i].partition, curs,
                   (long long)hi, lag);
    }
    if (o->json)
        printf("],\"total_lag\":%lld}\n", total);
    else
        printf("\nTOTAL-LAG %lld\n", total);
    *total_lag = total;
out:
    if (l != NULL)
        rd_kafka_topic_partition_list_destroy(l);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return rc;
}
