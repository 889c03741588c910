/*
 * kmeta.c - a topic's metadata, waiting out a topic's creation; a
 * partition's watermarks, waiting out a leader's move; see kmeta.h.
 */
#include "kmeta.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RETRY_MS      200
#define SLICE_MS      2000 /* one watermark query */
#define META_SLICE_MS 4000 /* one metadata request */

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
        /* In slices: a request sent to a broker that is shutting down or
         * just died may never be answered; the next one goes to a broker
         * that is up. */
        long left = timeout_ms - since_ms(&t0);
        long slice = left < META_SLICE_MS ? left : META_SLICE_MS;
        e = rd_kafka_metadata(rk, 0, rkt, &m, slice > 100 ? (int)slice : 100);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (!ds_kmeta_transient(e) ||
                since_ms(&t0) + RETRY_MS >= timeout_ms)
                break;
            struct timespec nap = {0, RETRY_MS * 1000000L};
            nanosleep(&nap, NULL);
            continue;
        }
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

int ds_kmeta_transient(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        return 1;
    default:
        return 0;
    }
}

/* 1 when host:port accepts a TCP connection within ms. */
static int reachable(const char *host, int port, int ms)
{
    char serv[16];
    snprintf(serv, sizeof(serv), "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, serv, &hints, &ai) != 0)
        return 0;
    int ok = 0;
    for (struct addrinfo *a = ai; a != NULL && !ok; a = a->ai_next) {
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            ok = 1;
        } else if (errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int soerr = 0;
            socklen_t len = sizeof(soerr);
            ok = poll(&pfd, 1, ms) == 1 &&
                 getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 &&
                 soerr == 0;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

/* Where partition's leader is, from fresh metadata: NO_ERROR when it
 * answers a TCP connection, else why not (transient). */
static rd_kafka_resp_err_t leader_up(rd_kafka_t *rk, const char *topic,
                                     int32_t partition, int ms)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL)
        return RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, ms);
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return e;
    e = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
    for (int t = 0; t < md->topic_cnt; t++)
        for (int p = 0; p < md->topics[t].partition_cnt; p++) {
            const rd_kafka_metadata_partition_t *mp =
                &md->topics[t].partitions[p];
            if (mp->id != partition || mp->leader < 0)
                continue;
            for (int b = 0; b < md->broker_cnt; b++)
                if (md->brokers[b].id == mp->leader)
                    e = reachable(md->brokers[b].host, md->brokers[b].port, ms)
                            ? RD_KAFKA_RESP_ERR_NO_ERROR
                            : RD_KAFKA_RESP_ERR__TRANSPORT;
        }
    rd_kafka_metadata_destroy(md);
    return e;
}

rd_kafka_resp_err_t ds_kmeta_watermarks(rd_kafka_t *rk, const char *topic,
                                        int32_t partition, int64_t *lo,
                                        int64_t *hi, int timeout_ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        /* librdkafka 2.0.2 sends the query to the leader its metadata
         * cache names, and waits without a timeout while that broker is
         * down: ask only a leader that the cluster names now and that
         * accepts a connection. Kafka elects a new leader for a dead
         * one's partitions after broker.session.timeout.ms (9 s). */
        long left = timeout_ms - since_ms(&t0);
        int slice = left < SLICE_MS ? (left > 100 ? (int)left : 100) : SLICE_MS;
        rd_kafka_resp_err_t e = leader_up(rk, topic, partition, slice);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            e = rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi,
                                                 slice);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || !ds_kmeta_transient(e) ||
            since_ms(&t0) + RETRY_MS >= timeout_ms)
            return e;
        struct timespec nap = {0, RETRY_MS * 1000000L};
        nanosleep(&nap, NULL);
    }
}
