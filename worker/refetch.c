/* refetch.c - re-reading events by offset; see refetch.h. */
#include "refetch.h"

#include <stdlib.h>

#include "codec.h"

struct ds_refetch {
    rd_kafka_t *rk;
};

int ds_refetch_new(const ds_kconf *kc, ds_refetch **out, ds_err *err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = 0;
    /* librdkafka 2.0.2 refuses assign() on a consumer without group.id
     * ("Unknown group"), so this handle names one; it never subscribes or
     * commits, so it never joins it (on a secured cluster it needs
     * Describe on group despool.refetch, see docs/DEPLOY.md). */
    if ((rc = ds_kconf_set(conf, "group.id", "despool.refetch", err)) < 0 ||
        (rc = ds_kconf_set(conf, "enable.auto.commit", "false", err)) < 0 ||
        (rc = ds_kconf_set(conf, "isolation.level", "read_committed", err)) <
            0 ||
        /* Only a few chunks are wanted at a time: keep the prefetch small. */
        (rc = ds_kconf_set(conf, "queued.max.messages.kbytes", "8192", err)) <
            0 ||
        (rc = ds_kconf_apply(kc, conf, err)) < 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return ds_err_set(err, -EINVAL, "kafka", "create refetch consumer: %s",
                          errstr);
    }
    ds_refetch *rf = calloc(1, sizeof(*rf));
    if (rf == NULL) {
        rd_kafka_destroy(rk);
        return ds_err_set(err, -ENOMEM, "internal", "refetch: out of memory");
    }
    rf->rk = rk;
    *out = rf;
    return 0;
}

void ds_refetch_free(ds_refetch *rf)
{
    if (rf == NULL)
        return;
    /* Assign-only: never joined a group, nothing to close (and 2.0.2's
     * consumer close can hang on such a handle). */
    rd_kafka_destroy_flags(rf->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    free(rf);
}

int ds_refetch_assign(ds_refetch *rf, const int32_t *partitions,
                      const int64_t *offsets, int n, ds_err *err)
{
    rd_kafka_resp_err_t e;
    if (n == 0) {
        e = rd_kafka_assign(rf->rk, NULL);
    } else {
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(n);
        for (int i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES,
                                              partitions[i])
                ->offset = offsets[i];
        e = rd_kafka_assign(rf->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EIO, "kafka", "re-read %s: assign %d: %s",
                          DS_TOPIC_UPDATES, n, rd_kafka_err2str(e));
    return 0;
}

rd_kafka_message_t *ds_refetch_next(ds_refetch *rf)
{
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rf->rk, 0);
        if (m == NULL || m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            return m;
        rd_kafka_message_destroy(m);
    }
}
