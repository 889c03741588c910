/*
 * wmetrics.c - what the worker shows about itself (--metrics): counters
 * seeded with every label value, gauges sampled on the consumer thread
 * (updates in flight, each assigned partition's lag), and /healthz.
 */
#include <stdio.h>

#include "worker_state.h"

#define HEALTH_TIMEOUT_MS 2000
/* Asking the group's offsets blocks the consumer thread: briefly. */
#define GROUP_OFFSET_TIMEOUT_MS 500

void count_finalized(worker *w, const ds_event *h, double fin_secs,
                     double upd_secs)
{
    ds_metrics_add(w->met, DS_C_FINALIZED, 1);
    ds_metrics_add(w->met, DS_C_EXTRACTED_BYTES, h->size);
    ds_metrics_observe(w->met, DS_H_FINALIZE, fin_secs);
    ds_metrics_observe(w->met, DS_H_UPDATE, upd_secs);
}

/* Every label value the worker can produce starts at 0, so that rate()
 * and alerts see a series before its first event. */
void seed_labels(ds_metrics *m)
{
    static const char *const discarded[] = {"stale", "duplicate", "superseded"};
    static const char *const dead[] = {
        "bad-schema",   "sha256-mismatch", "size-mismatch",
        "corrupt-zstd", "corrupt-tar",     "unsafe-path",
        "too-large",    "bad-signature",   "incomplete"};
    static const char *const errors[] = {"kafka", "local", "commit",
                                         "dead-letter"};
    for (size_t i = 0; i < sizeof(discarded) / sizeof(*discarded); i++)
        ds_metrics_add_label(m, DS_L_DISCARDED, discarded[i], 0);
    for (size_t i = 0; i < sizeof(dead) / sizeof(*dead); i++)
        ds_metrics_add_label(m, DS_L_DEAD, dead[i], 0);
    for (size_t i = 0; i < sizeof(errors) / sizeof(*errors); i++)
        ds_metrics_add_label(m, DS_L_ERRORS, errors[i], 0);
    ds_metrics_add_label(m, DS_L_PART_BYTES, "fetched", 0);
    ds_metrics_add_label(m, DS_L_PART_BYTES, "local", 0);
}

void count_reuse(worker *w, const ds_update_reuse_stats *r)
{
    ds_metrics_add(w->met, DS_C_PARTS_LOCAL, r->local_parts);
    ds_metrics_add_label(w->met, DS_L_PART_BYTES, "local", r->local_bytes);
    ds_metrics_add(w->met, DS_C_LINKED_BYTES, r->linked_bytes);
}

/* Gauges sampled now and then on the consumer thread: updates in flight,
 * and each assigned partition's lag: the high watermark librdkafka last
 * saw in a fetch response (the figure its statistics report as hi_offset;
 * no request is sent) minus the group's committed offset: this worker's
 * last commit, or until it made one, the group's as the coordinator
 * reports it (asked once per assignment; a partition the group never
 * committed counts from its log start, as auto.offset.reset=earliest
 * will read it). */
void update_gauges(worker *w)
{
    if (w->met == NULL)
        return;
    unsigned in_flight = 0;
    for (flight *f = w->flights; f != NULL; f = f->next)
        in_flight += f->u != NULL;
    ds_metrics_set(w->met, DS_G_IN_FLIGHT, in_flight);
    if (w->pf != NULL) {
        ds_partfetch_stats st;
        ds_partfetch_stats_get(w->pf, &st);
        ds_metrics_add(w->met, DS_C_PARTS, st.parts - w->pf_seen.parts);
        ds_metrics_add_label(w->met, DS_L_PART_BYTES, "fetched",
                             st.bytes - w->pf_seen.bytes);
        w->pf_seen = st;
    }
    rd_kafka_topic_partition_list_t *ask =
        rd_kafka_topic_partition_list_new(w->nparts > 0 ? w->nparts : 1);
    for (int32_t i = 0; i < w->nparts; i++)
        if (w->parts[i].assigned && w->parts[i].committed < 0 &&
            !w->parts[i].group_asked)
            rd_kafka_topic_partition_list_add(ask, DS_TOPIC_UPDATES, i);
    if (ask->cnt > 0 &&
        rd_kafka_committed(w->consumer, ask, GROUP_OFFSET_TIMEOUT_MS) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < ask->cnt; i++) {
            part *p = &w->parts[ask->elems[i].partition];
            p->group_asked = true;
            p->group_offset = ask->elems[i].err ? -1 : ask->elems[i].offset;
            if (p->group_offset < 0) /* none yet: from the log start */
                p->group_offset = RD_KAFKA_OFFSET_BEGINNING;
        }
    rd_kafka_topic_partition_list_destroy(ask);
    for (int32_t i = 0; i < w->nparts; i++) {
        const part *p = &w->parts[i];
        int64_t lo = -1, hi = -1, lag = -1;
        if (p->assigned &&
            rd_kafka_get_watermark_offsets(w->consumer, DS_TOPIC_UPDATES, i,
                                           &lo,
                                           &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi >= 0) {
            int64_t from = p->committed >= 0 ? p->committed
                           : p->group_offset == RD_KAFKA_OFFSET_BEGINNING
                               ? lo
                               : p->group_offset;
            if (from >= 0)
                lag = hi > from ? hi - from : 0;
        }
        ds_metrics_set_lag(w->met, i, lag);
    }
}

/* /healthz, on the HTTP thread: healthy when the member holds an
 * assignment (it may be empty when the group has more members than
 * partitions) and a broker answers a metadata request now. */
int health(void *ctx, char *why, size_t n)
{
    worker *w = ctx;
    int assigned = atomic_load(&w->assigned);
    if (assigned < 0) {
        snprintf(why, n,
                 "site=%s no partition assignment (joining or "
                 "rebalancing)",
                 w->o->site);
        return 0;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e =
        rd_kafka_metadata(w->consumer, 0, NULL, &md, HEALTH_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(why, n, "site=%s broker unreachable: metadata request: %s",
                 w->o->site, rd_kafka_err2str(e));
        return 0;
    }
    int brokers = md->broker_cnt;
    rd_kafka_metadata_destroy(md);
    snprintf(why, n, "site=%s partitions=%d brokers=%d", w->o->site, assigned,
             brokers);
    return 1;
}
