/*
 * follow.c - a topic read from its beginning and followed; see follow.h.
 */
#include "follow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmeta.h"
#include "progress.h"

struct ds_follow {
    rd_kafka_t *rk;
    char *topic;
    int parts;
    unsigned char *eof; /* per partition index: its end was reached */
    int eofs;
    char trouble[256]; /* the client's last transport error, until a read */
    uint64_t probe_ms; /* when to ask the brokers again whether they answer */
};

/* The client retries a lost broker by itself, and says so to no one who
 * polls an idle topic: every few seconds a metadata request (brokers
 * only, 2 s) says whether one answers, as the worker's /healthz asks. */
static void probe(ds_follow *f)
{
    uint64_t now = ds_mono_ms();
    if (now < f->probe_ms)
        return;
    f->probe_ms = now + 5000;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(f->rk, 0, NULL, &md, 2000);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        f->trouble[0] = '\0';
    } else {
        snprintf(f->trouble, sizeof(f->trouble),
                 "read %s: no broker answers a metadata request (%s)", f->topic,
                 rd_kafka_err2str(e));
    }
}

int ds_follow_open(const ds_kconf *kc, const char *topic, const char *group,
                   int timeout_ms, ds_follow **out, ds_err *err)
{
    char errstr[512];
    int rc;
    *out = NULL;
    ds_follow *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->topic = strdup(topic)) == NULL) {
        free(f);
        return ds_err_set(err, -ENOMEM, "internal", "follow %s: out of memory",
                          topic);
    }
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    /* librdkafka 2.0.2 needs a group.id even to assign(); nothing is ever
     * committed under it. Records of pkg.updates.dlq carry the rejected
     * event whole: a bounded prefetch keeps that memory small. */
    if ((rc = ds_kconf_set(c, "group.id", group, err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.auto.commit", "false", err)) < 0 ||
        (rc = ds_kconf_set(c, "enable.partition.eof", "true", err)) < 0 ||
        (rc = ds_kconf_set(c, "isolation.level", "read_committed", err)) < 0 ||
        (rc = ds_kconf_set(c, "queued.max.messages.kbytes", "16384", err)) <
            0 ||
        (rc = ds_kconf_set(c, "log_level", "3", err)) < 0 ||
        (rc = ds_kconf_apply(kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        ds_follow_close(f);
        return rc;
    }
    f->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (f->rk == NULL) {
        rd_kafka_conf_destroy(c);
        ds_follow_close(f);
        return ds_err_set(err, -EINVAL, "kafka", "create client: %s", errstr);
    }
    const rd_kafka_metadata_t *md = NULL;
    if ((rc = ds_kmeta_topic(f->rk, topic, timeout_ms, &md, err)) < 0) {
        ds_follow_close(f);
        return rc;
    }
    f->parts = md->topics[0].partition_cnt;
    f->eof = calloc((size_t)(f->parts > 0 ? f->parts : 1), 1);
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(f->parts);
    for (int i = 0; i < f->parts; i++)
        rd_kafka_topic_partition_list_add(l, topic,
                                          md->topics[0].partitions[i].id)
            ->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);
    rd_kafka_resp_err_t e = rd_kafka_assign(f->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (f->eof == NULL || e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = f->eof == NULL ? ds_err_set(err, -ENOMEM, "internal",
                                         "follow %s: out of memory", topic)
                            : ds_err_set(err, -EIO, "kafka", "assign %s: %s",
                                         topic, rd_kafka_err2str(e));
        ds_follow_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int ds_follow_poll(ds_follow *f, int wait_ms, ds_follow_fn fn, void *ctx,
                   ds_err *err)
{
    int n = 0, rc = 0;
    uint64_t end = ds_mono_ms() + (uint64_t)(wait_ms > 0 ? wait_ms : 0);
    for (;;) {
        uint64_t now = ds_mono_ms();
        /* After the first record, only what is already here. */
        int t = n > 0 ? 0 : now < end ? (int)(end - now) : 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(f->rk, t);
        if (m == NULL)
            break;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR ||
            m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            f->trouble[0] = '\0';
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < f->parts &&
                !f->eof[m->partition]) {
                f->eof[m->partition] = 1;
                f->eofs++;
            }
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* The client retries transport errors itself; a topic that
             * went away is the caller's to hear about. */
            if (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                rc = ds_err_set(err, -EIO, "kafka", "read %s: %s", f->topic,
                                rd_kafka_message_errstr(m));
            else
                snprintf(f->trouble, sizeof(f->trouble), "read %s: %s",
                         f->topic, rd_kafka_message_errstr(m));
        } else {
            n++;
            rc = fn(ctx, m, err);
        }
        rd_kafka_message_destroy(m);
        if (rc < 0)
            return rc;
        if (n >= 10000) /* let the caller publish what it has */
            break;
    }
    return n;
}

const char *ds_follow_trouble(ds_follow *f)
{
    probe(f);
    return f->trouble[0] ? f->trouble : NULL;
}

int ds_follow_caught_up(const ds_follow *f)
{
    return f->eofs >= f->parts;
}

void ds_follow_close(ds_follow *f)
{
    if (f == NULL)
        return;
    /* Assign-only: never joined a group, nothing to close (and 2.0.2's
     * consumer close can hang on such a handle). */
    if (f->rk != NULL)
        rd_kafka_destroy_flags(f->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    free(f->eof);
    free(f->topic);
    free(f);
}
