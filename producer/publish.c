/*
 * publish.c - pack, spool, chunk and send one update in one transaction;
 * see publish.h. Errors from the transactional API are sorted as
 * librdkafka's examples/transactions.c does: retriable (try the same step
 * again), requires-abort (abort, report), fatal (report).
 */
#include "publish.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "progress.h"

typedef struct send_state {
    uint32_t delivered;
    uint32_t failed;
    int32_t partition;
    int64_t first_offset, last_offset;
    rd_kafka_resp_err_t first_err;
} send_state;

/* The opaque of each chunk event is its index + 1 (0 = the status). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    send_state *s = opaque;
    uintptr_t idx = (uintptr_t)m->_private;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (s->failed++ == 0)
            s->first_err = m->err;
        return;
    }
    if (idx == 0)
        return;
    s->delivered++;
    s->partition = m->partition;
    if (s->first_offset < 0 || m->offset < s->first_offset)
        s->first_offset = m->offset;
    if (m->offset > s->last_offset)
        s->last_offset = m->offset;
}

static int spool_open(ds_err *err)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
    /* Unnamed: the spool vanishes with the process, even after kill -9. */
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[4096];
    snprintf(path, sizeof(path), "%s/pkgpub.XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return ds_err_sys(err, "io-error", "create spool file in %s", dir);
    unlink(path);
    return fd;
}

static void pack_progress(void *ctx, uint64_t done, uint64_t total)
{
    ds_progress_update(ctx, done, total);
}

/* Run a transactional step; on a retriable error try again. */
static int txn_step(rd_kafka_t *rk, const char *step, rd_kafka_error_t *e,
                    ds_err *err)
{
    (void)rk;
    if (e == NULL)
        return 0;
    int rc;
    if (rd_kafka_error_is_fatal(e))
        rc = ds_err_set(err, -EIO, "kafka", "%s: fatal: %s", step,
                        rd_kafka_error_string(e));
    else if (rd_kafka_error_txn_requires_abort(e))
        rc = ds_err_set(err, -ECANCELED, "kafka", "%s: %s (aborted)", step,
                        rd_kafka_error_string(e));
    else if (rd_kafka_error_is_retriable(e))
        rc = -EAGAIN;
    else
        rc = ds_err_set(err, -EIO, "kafka", "%s: %s", step,
                        rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return rc;
}

static int produce_one(rd_kafka_t *rk, const char *topic, const char *key,
                       uint8_t *val, size_t len, uintptr_t idx, ds_err *err)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(val, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_OPAQUE((void *)idx), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            free(val);
            return ds_err_set(err, -EIO, "kafka", "produce to %s key %s: %s",
                              topic, key, rd_kafka_err2str(e));
        }
        rd_kafka_poll(rk, 50); /* local queue full: let it drain */
    }
}

static int send_update(rd_kafka_t *rk, const ds_publish_opts *o, int fd,
                       ds_publish_result *r, send_state *s, ds_err *err)
{
    int rc;
    ds_progress bar;
    ds_progress_init(&bar, "send", o->progress);
    uint8_t *buf = malloc(o->chunk_size);
    if (buf == NULL)
        return ds_err_set(err, -ENOMEM, "io-error",
                          "chunk buffer: out of "
                          "memory");
    /* A broker that cannot be reached shows up here as a timeout: say so
     * with the bootstrap list rather than retrying forever. */
    rc = txn_step(rk, "init transactions",
                  rd_kafka_init_transactions(rk, o->timeout_ms), err);
    if (rc == -EAGAIN)
        rc = ds_err_set(err, -ETIMEDOUT, "kafka",
                        "init transactions: no answer from the broker "
                        "within %d ms (is %s reachable? is "
                        "transaction.state.log.min.isr satisfiable?)",
                        o->timeout_ms,
                        o->kc->bootstrap ? o->kc->bootstrap : "-b");
    if (rc < 0)
        goto out;
    if ((rc = txn_step(rk, "begin transaction", rd_kafka_begin_transaction(rk),
                       err)) < 0)
        goto out;

    ds_event ev = {
        .schema = DS_SCHEMA_V1,
        .version = o->version,
        .chunks = r->chunks,
        .size = r->st.size,
        .zsize = r->st.zsize,
        .created_ms = ds_now_ms(),
    };
    snprintf(ev.package, sizeof(ev.package), "%s", o->package);
    snprintf(ev.codec, sizeof(ev.codec), "zstd");
    memcpy(ev.update_id, r->update_id, DS_UPDATE_ID_LEN);
    memcpy(ev.sha256, r->st.sha256, DS_SHA256_LEN);
    /* One signature over the header; every chunk carries it. */
    if (o->signer != NULL) {
        if ((rc = ds_sign_event(o->signer, &ev, err)) < 0)
            goto abort;
        snprintf(r->signed_by, sizeof(r->signed_by), "%s", ev.key_id);
        memcpy(r->sig, ev.sig, DS_SIG_LEN);
    }
    for (uint32_t i = 0; i < r->chunks; i++) {
        uint64_t off = (uint64_t)i * o->chunk_size;
        size_t len = r->st.zsize - off < o->chunk_size
                         ? (size_t)(r->st.zsize - off)
                         : o->chunk_size;
        ssize_t got = pread(fd, buf, len, (off_t)off);
        if (got != (ssize_t)len) {
            rc = ds_err_sys(err, "io-error", "read spool at offset %" PRIu64,
                            off);
            goto abort;
        }
        ev.chunk = i;
        ev.data = buf;
        ev.data_len = len;
        uint8_t *val = NULL;
        size_t vlen = 0;
        if ((rc = ds_event_encode(&ev, &val, &vlen, err)) < 0)
            goto abort;
        if ((rc = produce_one(rk, DS_TOPIC_UPDATES, o->package, val, vlen,
                              (uintptr_t)i + 1, err)) < 0)
            goto abort;
        rd_kafka_poll(rk, 0);
        ds_progress_update(&bar, off + len, r->st.zsize);
    }
    ds_status st = {.version = o->version, .at_ms = ds_now_ms()};
    snprintf(st.site, sizeof(st.site), "_published");
    snprintf(st.package, sizeof(st.package), "%s", o->package);
    snprintf(st.state, sizeof(st.state), "published");
    uint8_t *sval = NULL;
    size_t slen = 0;
    char skey[DS_PACKAGE_MAX + 16];
    snprintf(skey, sizeof(skey), "_published/%s", o->package);
    if ((rc = ds_status_encode(&st, &sval, &slen, err)) < 0 ||
        (rc = produce_one(rk, DS_TOPIC_STATUS, skey, sval, slen, 0, err)) < 0)
        goto abort;
    /* commit_transaction flushes and waits for every delivery report. */
    /* Retriable commit errors are retried, a bounded number of times. */
    for (int tries = 0; tries < 5; tries++) {
        rc = txn_step(rk, "commit transaction",
                      rd_kafka_commit_transaction(rk, o->timeout_ms), err);
        if (rc != -EAGAIN)
            break;
    }
    if (rc == -EAGAIN)
        rc = ds_err_set(err, -ETIMEDOUT, "kafka",
                        "commit transaction: still retriable after 5 tries");
    ds_progress_finish(&bar);
    if (rc == -ECANCELED)
        goto abort;
    if (rc == 0 && s->failed > 0)
        rc = ds_err_set(err, -EIO, "kafka", "%u event(s) not delivered: %s",
                        s->failed, rd_kafka_err2str(s->first_err));
    goto out;
abort:
    ds_progress_finish(&bar);
    {
        rd_kafka_error_t *e = rd_kafka_abort_transaction(rk, o->timeout_ms);
        if (e != NULL)
            rd_kafka_error_destroy(e);
    }
out:
    free(buf);
    return rc;
}

int ds_publish(const ds_publish_opts *o, ds_publish_result *r, ds_err *err)
{
    char errstr[512], host[64] = "host";
    memset(r, 0, sizeof(*r));
    if (!ds_package_valid(o->package, strlen(o->package)))
        return ds_err_set(err, -EINVAL, "usage",
                          "package id \"%s\": expected [A-Za-z0-9]"
                          "[A-Za-z0-9._-]{0,127}",
                          o->package);
    int fd = spool_open(err);
    if (fd < 0)
        return fd;
    ds_progress bar;
    ds_progress_init(&bar, "pack", o->progress);
    ds_pack_opts po = {
        .level = o->level,
        .threads = o->threads,
        .progress = pack_progress,
        .progress_ctx = &bar,
    };
    uint64_t t0 = ds_mono_ms();
    int rc = ds_pack(o->source, &po, fd, &r->st, err);
    ds_progress_finish(&bar);
    r->pack_secs = (double)(ds_mono_ms() - t0) / 1000.0;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    if (getrandom(r->update_id, sizeof(r->update_id), 0) !=
        (ssize_t)sizeof(r->update_id)) {
        close(fd);
        return ds_err_sys(err, "io-error", "getrandom for update id");
    }
    r->chunks = (uint32_t)((r->st.zsize + o->chunk_size - 1) / o->chunk_size);
    if (o->transactional_id != NULL) {
        snprintf(r->transactional_id, sizeof(r->transactional_id), "%s",
                 o->transactional_id);
    } else {
        gethostname(host, sizeof(host) - 1);
        /* Same host + package = same id: a re-run fences a crashed run's
         * open transaction instead of waiting for it to time out. */
        snprintf(r->transactional_id, sizeof(r->transactional_id),
                 "pkgpub-%s-%s", host, o->package);
    }

    send_state s = {.partition = -1, .first_offset = -1, .last_offset = -1};
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(c, &s);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_error_cb(c, ds_kconf_log_error);
    if ((rc = ds_kconf_set(c, "transactional.id", r->transactional_id, err)) <
            0 ||
        (rc = ds_kconf_set(c, "enable.idempotence", "true", err)) < 0 ||
        (rc = ds_kconf_set(c, "acks", "all", err)) < 0 ||
        /* The partition a Java client would choose for the same key. */
        (rc = ds_kconf_set(c, "partitioner", "murmur2_random", err)) < 0 ||
        (rc = ds_kconf_set(c, "linger.ms", "20", err)) < 0 ||
        (rc = ds_kconf_set(c, "queue.buffering.max.kbytes", "32768", err)) <
            0 ||
        (rc = ds_kconf_apply(o->kc, c, err)) < 0) {
        rd_kafka_conf_destroy(c);
        close(fd);
        return rc;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(c);
        close(fd);
        return ds_err_set(err, -EINVAL, "kafka", "create producer: %s", errstr);
    }
    t0 = ds_mono_ms();
    rc = send_update(rk, o, fd, r, &s, err);
    r->send_secs = (double)(ds_mono_ms() - t0) / 1000.0;
    r->partition = s.partition;
    r->first_offset = s.first_offset;
    r->last_offset = s.last_offset;
    rd_kafka_destroy(rk);
    close(fd);
    return rc;
}
