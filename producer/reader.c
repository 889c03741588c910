/*
 * reader.c - pkgpub's reads of Kafka; see reader.h.
 */
#include "reader.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmeta.h"
#include "log.h"
#include "progress.h"

#define POLL_MS 100 /* consume and wait in slices */

struct ds_reader {
    rd_kafka_t *rc; /* read_committed */
    rd_kafka_t *ru; /* read_uncommitted: the high watermark */
};

/* The user's -X/-F settings are meant for the producer too: librdkafka's
 * warnings that a producer property is ignored by these consumers are
 * noise. */
static void reader_log(const rd_kafka_t *rk, int level, const char *fac,
                       const char *buf)
{
    if (strcmp(fac, "CONFWARN") != 0)
        ds_kconf_log(rk, level, fac, buf);
}

static int consumer_new(const ds_kconf *kc, const char *isolation,
                        rd_kafka_t **out, ds_err *err)
{
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int rc;
    rd_kafka_conf_set_error_cb(c, ds_kconf_log_error);
    /* Simple consumer: no group joined, no offset stored or committed. A
     * record is at most ~1 MB (a v1 chunk, a part): a small prefetch. */
    if ((rc = ds_kconf_set(c, "enable.auto.commit", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.offset.store", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.partition.eof", "true", err)) < 0 ||
        (rc = ds_kconf_set(c, "auto.offset.reset", "error", err)) < 0 ||
        (rc = ds_kconf_set(c, "isolation.level", isolation, err)) < 0 ||
        (rc = ds_kconf_set(c, "queued.max.messages.kbytes", "4096", err)) < 0 ||
        /* The end of a partition is reached when a fetch comes back
         * empty: the broker holds such a fetch up to this long. */
        (rc = ds_kconf_set(c, "fetch.wait.max.ms", "10", err)) < 0 ||
        /* A request to a partition leader that just died waits this long
         * (librdkafka 2.0.2's offset queries ignore their own timeout
         * while the broker is down); then the query is asked again of the
         * new leader (ds_kmeta_watermarks). Kafka elects it after
         * broker.session.timeout.ms, 9 s by default. */
        (rc = ds_kconf_set(c, "socket.timeout.ms", "10000", err)) < 0 ||
        (rc = ds_kconf_apply(kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    rd_kafka_conf_set_log_cb(c, reader_log);
    *out = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (*out == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka", "create reader: %s", errstr);
    }
    return 0;
}

int ds_reader_new(const ds_kconf *kc, ds_reader **out, ds_err *err)
{
    *out = NULL;
    ds_reader *rd = calloc(1, sizeof(*rd));
    if (rd == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "reader: out of memory");
    int rc = consumer_new(kc, "read_committed", &rd->rc, err);
    if (rc == 0)
        rc = consumer_new(kc, "read_uncommitted", &rd->ru, err);
    if (rc < 0) {
        ds_reader_free(rd);
        return rc;
    }
    *out = rd;
    return 0;
}

void ds_reader_free(ds_reader *rd)
{
    if (rd == NULL)
        return;
    /* Never joined a group: nothing to close. */
    if (rd->rc != NULL)
        rd_kafka_destroy_flags(rd->rc, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    if (rd->ru != NULL)
        rd_kafka_destroy_flags(rd->ru, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    free(rd);
}

rd_kafka_t *ds_reader_handle(ds_reader *rd)
{
    return rd->rc;
}

int ds_reader_partitions(ds_reader *rd, const char *topic, int timeout_ms,
                         int32_t *count, int32_t *broker_id, ds_err *err)
{
    const rd_kafka_metadata_t *md = NULL;
    int rc = ds_kmeta_topic(rd->rc, topic, timeout_ms, &md, err);
    if (rc < 0)
        return rc;
    *count = md->topics[0].partition_cnt;
    if (broker_id != NULL)
        *broker_id = md->broker_cnt > 0 ? md->brokers[0].id : -1;
    rd_kafka_metadata_destroy(md);
    return 0;
}

int ds_reader_committed_end(ds_reader *rd, const char *topic, int32_t partition,
                            int timeout_ms, int64_t *lo, int64_t *end,
                            ds_err *err)
{
    int64_t ulo = 0, hw = 0;
    rd_kafka_resp_err_t e =
        ds_kmeta_watermarks(rd->ru, topic, partition, &ulo, &hw, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EIO, "kafka",
                          "%s partition %d: high watermark: %s", topic,
                          (int)partition, rd_kafka_err2str(e));
    uint64_t deadline = ds_mono_ms() + (uint64_t)timeout_ms;
    for (int tries = 0;; tries++) {
        e = ds_kmeta_watermarks(rd->rc, topic, partition, lo, end, timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            return ds_err_set(err, -EIO, "kafka",
                              "%s partition %d: last stable offset: %s", topic,
                              (int)partition, rd_kafka_err2str(e));
        if (*end >= hw)
            return 0;
        if (ds_mono_ms() >= deadline)
            return ds_err_set(
                err, -ETIMEDOUT, "kafka",
                "%s partition %d: a transaction open since offset %" PRId64
                " (the partition ends at %" PRId64 ") still holds back what "
                "was committed after it, %d ms on: its producer (another "
                "publisher) has not committed or aborted; run again once it "
                "has",
                topic, (int)partition, *end, hw, timeout_ms);
        if (tries == 0)
            ds_info("waiting-for-transaction",
                    "topic=%s partition=%d last_stable_offset=%" PRId64
                    " high_watermark=%" PRId64,
                    topic, (int)partition, *end, hw);
        rd_kafka_poll(rd->rc, 200);
    }
}

/* Start reading topic's partition at offset: the topic handle, or NULL. */
static rd_kafka_topic_t *start(ds_reader *rd, const char *topic,
                               int32_t partition, int64_t offset, ds_err *err)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rd->rc, topic, NULL);
    if (rkt == NULL) {
        ds_err_set(err, -EIO, "kafka", "topic handle for %s: %s", topic,
                   rd_kafka_err2str(rd_kafka_last_error()));
        return NULL;
    }
    if (rd_kafka_consume_start(rkt, partition, offset) == -1) {
        ds_err_set(err, -EIO, "kafka",
                   "read %s partition %d from offset %" PRId64 ": %s", topic,
                   (int)partition, offset,
                   rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_topic_destroy(rkt);
        return NULL;
    }
    return rkt;
}

static void stop(rd_kafka_topic_t *rkt, int32_t partition)
{
    rd_kafka_consume_stop(rkt, partition);
    rd_kafka_topic_destroy(rkt);
}

/* The next message (data, EOF or error), or NULL after timeout_ms. */
static rd_kafka_message_t *next(ds_reader *rd, rd_kafka_topic_t *rkt,
                                int32_t partition, int timeout_ms)
{
    uint64_t deadline = ds_mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consume(rkt, partition, POLL_MS);
        if (m != NULL || ds_mono_ms() >= deadline)
            return m;
        rd_kafka_poll(rd->rc, 0); /* errors and logs */
    }
}

int ds_reader_scan(ds_reader *rd, const char *topic, int32_t partition,
                   int64_t from, int64_t to, int timeout_ms, ds_reader_fn fn,
                   void *ctx, ds_err *err)
{
    rd_kafka_topic_t *rkt = start(rd, topic, partition, from, err);
    if (rkt == NULL)
        return err != NULL ? err->code : -EIO;
    int rc = 0;
    for (;;) {
        rd_kafka_message_t *m = next(rd, rkt, partition, timeout_ms);
        if (m == NULL) {
            rc = ds_err_set(err, -ETIMEDOUT, "kafka",
                            "read %s partition %d offsets %" PRId64 "..%" PRId64
                            ": nothing within %d ms",
                            topic, (int)partition, from, to, timeout_ms);
            break;
        }
        int done = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            done = 1;
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = ds_err_set(
                err, -EIO, "kafka",
                "read %s partition %d offsets %" PRId64 "..%" PRId64 ": %s",
                topic, (int)partition, from, to, rd_kafka_message_errstr(m));
            done = 1;
        } else if (m->offset >= to) {
            done = 1;
        } else if ((rc = fn(ctx, m)) < 0) {
            done = 1;
        }
        rd_kafka_message_destroy(m);
        if (done)
            break;
    }
    stop(rkt, partition);
    return rc;
}

int ds_reader_get(ds_reader *rd, const char *topic, int32_t partition,
                  int64_t offset, int timeout_ms, rd_kafka_message_t **out,
                  ds_err *err)
{
    *out = NULL;
    rd_kafka_topic_t *rkt = start(rd, topic, partition, offset, err);
    if (rkt == NULL)
        return err != NULL ? err->code : -EIO;
    int rc = 0;
    rd_kafka_message_t *m = next(rd, rkt, partition, timeout_ms);
    if (m == NULL)
        rc = ds_err_set(err, -ETIMEDOUT, "kafka",
                        "read %s partition %d offset %" PRId64
                        ": nothing within %d ms",
                        topic, (int)partition, offset, timeout_ms);
    else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
             m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
             m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE ||
             (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset != offset))
        rc = ds_err_set(
            err, -ENOENT, "part-missing",
            "read %s partition %d offset %" PRId64 ": no record there (%s)",
            topic, (int)partition, offset,
            m->err ? rd_kafka_err2str(m->err) : "the next one is later");
    else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = ds_err_set(err, -EIO, "kafka",
                        "read %s partition %d offset %" PRId64 ": %s", topic,
                        (int)partition, offset, rd_kafka_message_errstr(m));
    if (rc == 0)
        *out = m;
    else if (m != NULL)
        rd_kafka_message_destroy(m);
    stop(rkt, partition);
    return rc;
}
