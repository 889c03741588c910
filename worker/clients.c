/*
 * clients.c - the worker's Kafka clients: the group consumer of
 * pkg.updates (read_committed, manual commits, bounded prefetch) and the
 * idempotent producer of dead letters and status records, each with the
 * settings despool relies on, then the user's -X/-F on top.
 */
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "worker_state.h"

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    worker *w = opaque;
    char q[600];
    ds_metrics_add_label(w->met, DS_L_ERRORS, "kafka", 1);
    ds_warn("kafka-error", "site=%s error=%s detail=%s", w->o->site,
            rd_kafka_err2name((rd_kafka_resp_err_t)err),
            ds_log_quote(q, sizeof(q), reason));
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        w->fatal = true;
}

int make_clients(worker *w, ds_err *err)
{
    char errstr[512], group[DS_SITE_MAX + 16], host[64] = "host",
                                               cid[DS_SITE_MAX + 96];
    gethostname(host, sizeof(host) - 1);
    snprintf(group, sizeof(group), "despool.%s", w->o->site);
    snprintf(cid, sizeof(cid), "despooler-%s-%s-%d", w->o->site, host,
             (int)getpid());
    int rc;

    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(c, w);
    rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(c, on_commit);
    rd_kafka_conf_set_error_cb(c, on_error);
    if ((rc = ds_kconf_set(c, "group.id", group, err)) < 0 ||
        (rc = ds_kconf_set(c, "client.id", cid, err)) < 0 ||
        (rc = ds_kconf_set(c, "isolation.level", "read_committed", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.commit", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.offset.store", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "auto.offset.reset", "earliest", err)) < 0 ||
        /* The partition's end is how a version whose part went missing
         * learns that no newer record replaced it (manifests.c). */
        (rc = ds_kconf_set(c, "enable.partition.eof", "true", err)) < 0 ||
        /* A dead worker's partitions move on after 10 s, not 45. */
        (rc = ds_kconf_set(c, "session.timeout.ms", "10000", err)) < 0 ||
        (rc = ds_kconf_set(c, "heartbeat.interval.ms", "1000", err)) < 0 ||
        /* Bound what librdkafka prefetches: memory stays flat. Not less:
         * librdkafka 2.0 stops fetching for a whole second once this
         * queue is full, and a big update then waits for its chunks
         * (512 MiB update, measured: 16 MiB -> 3.8-6.8 s, RSS 45 MiB;
         * 32 MiB -> 3.8 s, RSS 63 MiB; 64 MiB -> 2.9 s, RSS 101 MiB). */
        (rc = ds_kconf_set(c, "queued.max.messages.kbytes", "32768", err)) <
            0 ||
        (rc = ds_kconf_apply(w->o->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    w->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (w->consumer == NULL) {
        rd_kafka_conf_destroy(c);
        return ds_err_set(err, -EINVAL, "kafka", "create consumer: %s", errstr);
    }

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(pc, w);
    rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
    rd_kafka_conf_set_error_cb(pc, on_error);
    if ((rc = ds_kconf_set(pc, "client.id", cid, err)) < 0 ||
        (rc = ds_kconf_set(pc, "enable.idempotence", "true", err)) < 0 ||
        (rc = ds_kconf_set(pc, "linger.ms", "5", err)) < 0 ||
        /* A dead letter not delivered within a minute fails, and its
         * partition rewinds to it (on_delivery), rather than holding the
         * commit point silently for librdkafka's default 5 minutes. */
        (rc = ds_kconf_set(pc, "message.timeout.ms", "60000", err)) < 0 ||
        (rc = ds_kconf_apply(w->o->kc, pc, err)) < 0) {
        rd_kafka_conf_destroy(pc);
        return rc;
    }
    w->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    if (w->producer == NULL) {
        rd_kafka_conf_destroy(pc);
        return ds_err_set(err, -EINVAL, "kafka", "create producer: %s", errstr);
    }
    /* Topic handles ask for the topics' metadata at once: librdkafka
     * otherwise holds the first message to a topic it does not know until
     * its next metadata scan (up to a second), and the first status record
     * or dead letter would lag its finalize or rejection by that much. */
    w->out_topics[0] = rd_kafka_topic_new(w->producer, DS_TOPIC_DLQ, NULL);
    w->out_topics[1] = rd_kafka_topic_new(w->producer, DS_TOPIC_STATUS, NULL);

    rd_kafka_poll_set_consumer(w->consumer);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, DS_TOPIC_UPDATES,
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(w->consumer, t);
    rd_kafka_topic_partition_list_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return ds_err_set(err, -EINVAL, "kafka", "subscribe %s: %s",
                          DS_TOPIC_UPDATES, rd_kafka_err2str(e));
    w->cqueue = rd_kafka_queue_get_consumer(w->consumer);
    return 0;
}
