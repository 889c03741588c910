/*
 * rebalance.c - the consumer group's assign and revoke callbacks, for
 * both rebalance protocols: EAGER (the default range/roundrobin
 * assignors: every rebalance revokes everything, then assigns) and
 * COOPERATIVE (-X partition.assignment.strategy=cooperative-sticky: only
 * the partitions that move are revoked or assigned, incrementally).
 *
 * On revoke, in-flight updates of the revoked partitions are cancelled
 * (staging removed, nothing committed for them); updates that got past
 * the point of no return finish, and their offsets and delivered dead
 * letters are committed before the partitions go (not when the
 * assignment was lost: another member may own them already).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "worker_state.h"

/* librdkafka answers a committed-offsets request within this, or the
 * first gap check of the partition is skipped. */
#define COMMITTED_TIMEOUT_MS 2000

static void part_list_str(const rd_kafka_topic_partition_list_t *l, char *buf,
                          size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < l->cnt && o + 12 < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%d", i ? "," : "",
                              (int)l->elems[i].partition);
}

/* The partitions held now (with the cooperative protocol, more than the
 * last increment), "0,1,2", or "none". */
static void held_str(const worker *w, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < w->nparts && o + 12 < n; i++)
        if (w->parts[i].assigned)
            o += (size_t)snprintf(buf + o, n - o, "%s%d", o ? "," : "", (int)i);
    if (o == 0)
        snprintf(buf, n, "none");
}

static int count_assigned(const worker *w)
{
    int n = 0;
    for (int32_t i = 0; i < w->nparts; i++)
        n += w->parts[i].assigned;
    return n;
}

/* Give up the partitions in l: cancel their in-flight updates, wait for
 * their threads (an update past the point of no return finishes), wait for
 * their dead letters to be delivered, commit, forget. */
static void release_partitions(worker *w,
                               const rd_kafka_topic_partition_list_t *l,
                               bool lost)
{
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL && rd_kafka_topic_partition_list_find(
                                l, DS_TOPIC_UPDATES, f->partition)) {
            f->revoked = true;
            ds_update_cancel(f->u);
        }
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->u != NULL && f->revoked)
            ds_update_join(f->u);
    handle_completions(w);
    if (!lost) {
        rd_kafka_flush(w->producer, 10000);
        commit(w, true, false, l);
    }
    /* librdkafka keeps an application pause across unassign/assign: a
     * partition this worker paused (rewind_partition) would never fetch
     * again once assigned back. Its pause is lifted while it is still
     * assigned. (Not after the next assign: a resume of a partition that
     * is not paused still bumps its op version in librdkafka 2.0, and the
     * reply to the assign's committed-offset fetch is then dropped as
     * outdated: the partition stalls.) */
    rd_kafka_topic_partition_list_t *paused =
        rd_kafka_topic_partition_list_new(l->cnt > 0 ? l->cnt : 1);
    for (int i = 0; i < l->cnt; i++) {
        part *p = part_get(w, l->elems[i].partition);
        if (p != NULL && p->paused)
            rd_kafka_topic_partition_list_add(paused, DS_TOPIC_UPDATES,
                                              l->elems[i].partition);
    }
    if (paused->cnt > 0)
        rd_kafka_resume_partitions(w->consumer, paused);
    rd_kafka_topic_partition_list_destroy(paused);
    for (int i = 0; i < l->cnt; i++) {
        part *p = part_get(w, l->elems[i].partition);
        if (p == NULL)
            continue;
        p->assigned = false;
        part_reset(p);
    }
    for (flight *f = w->flights, *nx; f != NULL; f = nx) {
        nx = f->next;
        if (f->u == NULL && rd_kafka_topic_partition_list_find(
                                l, DS_TOPIC_UPDATES, f->partition))
            flight_unlink(w, f);
    }
}

/* Take on the partitions in parts (the whole new assignment, or with
 * the cooperative protocol what is added to it). */
static int take_partitions(worker *w, rd_kafka_topic_partition_list_t *parts)
{
    /* Where each partition starts: the group's committed offset, so that
     * the first event read can tell whether the broker deleted events
     * before it (partitions.c, note_offset). Asked on a copy: offsets in
     * the list given to assign would be taken as start positions. */
    rd_kafka_topic_partition_list_t *c =
        rd_kafka_topic_partition_list_copy(parts);
    bool have = rd_kafka_committed(w->consumer, c, COMMITTED_TIMEOUT_MS) ==
                RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < parts->cnt; i++) {
        part *p = part_get(w, parts->elems[i].partition);
        if (p == NULL) {
            rd_kafka_topic_partition_list_destroy(c);
            return -ENOMEM;
        }
        p->assigned = true;
        p->gen++;
        part_reset(p);
        if (have && c->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
            c->elems[i].offset >= 0)
            p->expect = c->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(c);
    return 0;
}

void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                  rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    worker *w = opaque;
    char list[512];
    part_list_str(parts, list, sizeof(list));
    w->n.rebalances++;
    ds_metrics_add(w->met, DS_C_REBALANCES, 1);
    const char *proto = rd_kafka_rebalance_protocol(rk);
    bool coop = proto != NULL && strcmp(proto, "COOPERATIVE") == 0;
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t ae = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (take_partitions(w, parts) < 0) {
            ds_error("out-of-memory", "site=%s op=assign", w->o->site);
            w->fatal = true;
        }
        ds_info("assigned", "site=%s partitions=%s protocol=%s", w->o->site,
                list[0] ? list : "none", coop ? "cooperative" : "eager");
        /* READY=1 the first time (an empty assignment too: a member of a
         * group with more members than partitions is ready, idle). */
        char held[512];
        held_str(w, held, sizeof(held));
        ds_notify_assigned(&w->notify, w->o->site, held);
        if (coop)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            ae = rd_kafka_assign(rk, parts);
    } else {
        bool lost = rd_kafka_assignment_lost(rk);
        ds_info("revoked", "site=%s partitions=%s lost=%s", w->o->site,
                list[0] ? list : "none", lost ? "true" : "false");
        release_partitions(w, parts, lost);
        if (coop)
            e = rd_kafka_incremental_unassign(rk, parts);
        else
            ae = rd_kafka_assign(rk, NULL);
        for (int i = 0; i < parts->cnt; i++)
            ds_metrics_set_lag(w->met, parts->elems[i].partition, -1);
    }
    if (e != NULL) {
        ds_error("assign-failed", "site=%s partitions=%s error=%s", w->o->site,
                 list, DS_LV(rd_kafka_error_string(e)));
        rd_kafka_error_destroy(e);
        w->fatal = true;
    } else if (ae != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ds_error("assign-failed", "site=%s partitions=%s error=%s", w->o->site,
                 list, DS_LV(rd_kafka_err2str(ae)));
        w->fatal = true;
    }
    /* Eager: nothing is assigned between a revoke and the next assign
     * (/healthz says rebalancing); cooperative: what stays, stays. */
    int n = count_assigned(w);
    atomic_store(&w->assigned,
                 err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS || coop ? n : -1);
    ds_metrics_set(w->met, DS_G_ASSIGNED, n);
}
