/* dlq.c - producing dead letters and status records; see dlq.h. */
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
                      const char *detail, void *opaque, ds_err *err)
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
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_OPAQUE(opaque),
        RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(val);
        return ds_err_set(err, -EAGAIN, "kafka", "produce status %s: %s", key,
                          rd_kafka_err2str(e));
    }
    return 0;
}
