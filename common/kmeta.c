/*
 * kmeta.c - a topic's metadata, waiting out a topic's creation; see
 * kmeta.h.
 */
#include "kmeta.h"

#include <errno.h>
#include <time.h>

#define RETRY_MS 200

static int settling(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
}

static long since_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000L +
           (t1.tv_nsec - t0->tv_nsec) / 1000000L;
}

int ds_kmeta_topic(rd_kafka_t *rk, const char *topic, int timeout_ms,
                   const rd_kafka_metadata_t **md, ds_err *err)
{
    *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL)
        return ds_err_set(err, -ENOMEM, "kafka", "topic handle for %s: %s",
                          topic, rd_kafka_err2str(rd_kafka_last_error()));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const rd_kafka_metadata_t *m = NULL;
    rd_kafka_resp_err_t e;
    rd_kafka_resp_err_t te = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (;;) {
        long left = timeout_ms - since_ms(&t0);
        e = rd_kafka_metadata(rk, 0, rkt, &m, left > 100 ? (int)left : 100);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        te = m->topic_cnt == 1 ? m->topics[0].err
                               : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        if (te == RD_KAFKA_RESP_ERR_NO_ERROR && m->topics[0].partition_cnt < 1)
            te = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
        if (te == RD_KAFKA_RESP_ERR_NO_ERROR || !settling(te) ||
            since_ms(&t0) + RETRY_MS >= timeout_ms)
            break;
        rd_kafka_metadata_destroy(m);
        m = NULL;
        struct timespec nap = {0, RETRY_MS * 1000000L};
        nanosleep(&nap, NULL);
    }
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EHOSTUNREACH, "kafka",
                          "read metadata of %s: %s (is the broker running and "
                          "-b right?)",
                          topic, rd_kafka_err2str(e));
    if (te != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(m);
        return ds_err_set(err, -ENOENT, "kafka",
                          "metadata of %s: %s after %d ms (create it: "
                          "scripts/kafka start does, so does despooler "
                          "dev-broker; docs/DEPLOY.md lists the topics)",
                          topic, rd_kafka_err2str(te), timeout_ms);
    }
    *md = m;
    return 0;
}
