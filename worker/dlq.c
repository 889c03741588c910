/* dlq.c - dead letters, status records and re-reading events; see dlq.h. */
#include "dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "progress.h"

int ds_dlq_produce(rd_kafka_t *producer, const char *site,
                   const ds_dead_letter *dl, void *opaque, ds_err *err)
{
    char part[16], off[24];
    snprintf(part, sizeof(part), "%" PRId32, dl->partition);
    snprintf(off, sizeof(off), "%" PRId64, dl->offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    rd_kafka_header_add(h, "despool.reason", -1, dl->reason, -1);
    rd_kafka_header_add(h, "despool.detail", -1, dl->detail, -1);
    rd_kafka_header_add(h, "despool.site", -1, site, -1);
    rd_kafka_header_add(h, "despool.topic", -1, DS_TOPIC_UPDATES, -1);
    rd_kafka_header_add(h, "despool.partition", -1, part, -1);
    rd_kafka_header_add(h, "despool.offset", -1, off, -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(DS_TOPIC_DLQ),
        RD_KAFKA_V_KEY(dl->key, dl->key_len),
        RD_KAFKA_V_VALUE((void *)dl->value, dl->value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h); /* not taken on failure */
        return ds_err_set(err, -EAGAIN, "kafka",
                          "produce dead letter for %s [%s] offset %s: %s",
                          DS_TOPIC_UPDATES, part, off, rd_kafka_err2str(e));
    }
    return 0;
}

int ds_status_produce(rd_kafka_t *producer, const char *site,
                      const char *package, uint64_t version, const char *state,
                      const char *detail, ds_err *err)
{
    ds_status st = {.version = version, .at_ms = ds_now_ms()};
    snprintf(st.site, sizeof(st.site), "%s", site);
    snprintf(st.package, sizeof(st.package), "%s", package);
    snprintf(st.state, sizeof(st.state), "%s", state);
    snprintf(st.detail, sizeof(st.detail), "%s", detail ? detail : "");
    uint8_t *val = NULL;
    size_t len = 0;
    int rc = ds_status_encode(&st, &val, &len, err);
    if (rc < 0)
        return rc;
    char key[DS_SITE_MAX + DS_PACKAGE_MAX + 2];
    snprintf(key, sizeof(key), "%s/%s", site, package);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(DS_TOPIC_STATUS),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(val);
        return ds_err_set(err, -EAGAIN, "kafka", "produce status %s: %s", key,
                          rd_kafka_err2str(e));
    }
    return 0;
}

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

int ds_refetch_get(ds_refetch *rf, int32_t partition, int64_t offset,
                   int timeout_ms, rd_kafka_message_t **msg, ds_err *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES, partition)->offset =
        offset;
    rd_kafka_resp_err_t e = rd_kafka_assign(rf->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EIO, "kafka",
                          "re-read %s [%d] offset %lld: assign: %s",
                          DS_TOPIC_UPDATES, (int)partition, (long long)offset,
                          rd_kafka_err2str(e));
    uint64_t deadline = ds_mono_ms() + (uint64_t)timeout_ms;
    while (ds_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rf->rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->partition == partition &&
            m->offset == offset) {
            *msg = m;
            return 0;
        }
        int past = m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset > offset;
        rd_kafka_message_destroy(m);
        if (past)
            break;
    }
    return ds_err_set(err, -ETIMEDOUT, "kafka",
                      "re-read %s [%d] offset %lld: not delivered within %d ms",
                      DS_TOPIC_UPDATES, (int)partition, (long long)offset,
                      timeout_ms);
}
