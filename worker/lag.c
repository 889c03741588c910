/*
 * lag.c - consumer lag of one site from committed offsets; see lag.h.
 *
 * Numbers come from where Kafka's own kafka-consumer-groups.sh takes them:
 * the group's committed offsets, the partitions' high watermarks (a
 * read_uncommitted query, so transaction markers count, as in Kafka's
 * tool), and the group description (members, their hosts, client ids and
 * assignments). TIME-LAG is the age of the oldest unconsumed event: now
 * minus the timestamp of the event at the committed offset.
 */
#include "lag.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <librdkafka/rdkafka.h>

#include "kmeta.h"
#include "progress.h"

static rd_kafka_t *client(const ds_lag_opts *o, const char *group,
                          const char *isolation, ds_err *err)
{
    char errstr[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    /* These handles never subscribe, so they never join the group: they
     * only read its committed offsets and describe it. */
    if (ds_kconf_set(c, "group.id", group, err) < 0 ||
        ds_kconf_set(c, "enable.auto.commit", "false", err) < 0 ||
        ds_kconf_set(c, "isolation.level", isolation, err) < 0 ||
        ds_kconf_set(c, "log_level", "3", err) < 0 ||
        ds_kconf_apply(o->kc, c, err) < 0) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(c);
        ds_err_set(err, -EINVAL, "kafka", "create client: %s", errstr);
    }
    return rk;
}

/* A handle for admin requests. A producer: a consumer handle with an
 * admin request in flight can hang in close (librdkafka 2.0.2). */
static rd_kafka_t *admin_client(const ds_lag_opts *o, ds_err *err)
{
    char errs[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (ds_kconf_set(c, "log_level", "3", err) < 0 ||
        ds_kconf_apply(o->kc, c, err) < 0) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errs, sizeof(errs));
    if (rk == NULL) {
        rd_kafka_conf_destroy(c);
        ds_err_set(err, -EINVAL, "kafka", "create client: %s", errs);
    }
    return rk;
}

/* Members and assignment from DescribeConsumerGroups. The embedded broker
 * does not implement it: then r->members stays -1 and a note says so. */
static void describe(const ds_lag_opts *o, ds_lag_report *r)
{
    const char *groups[] = {r->group};
    ds_err err;
    rd_kafka_t *rk = admin_client(o, &err);
    if (rk == NULL) {
        snprintf(r->note, sizeof(r->note), "members unknown: %.200s", err.msg);
        return;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    char errstr[256];
    rd_kafka_AdminOptions_set_request_timeout(ao, o->timeout_ms, errstr,
                                              sizeof(errstr));
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, o->timeout_ms + 1000);
    const char *why = "no answer";
    if (ev != NULL && rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR)
        why = rd_kafka_event_error_string(ev);
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        ev ? rd_kafka_event_DescribeConsumerGroups_result(ev) : NULL;
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **d =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;
    if (n == 1 && rd_kafka_ConsumerGroupDescription_error(d[0]) == NULL) {
        snprintf(r->state, sizeof(r->state), "%s",
                 rd_kafka_consumer_group_state_name(
                     rd_kafka_ConsumerGroupDescription_state(d[0])));
        size_t members = rd_kafka_ConsumerGroupDescription_member_count(d[0]);
        r->members = (int)members;
        for (size_t i = 0; i < members; i++) {
            const rd_kafka_MemberDescription_t *m =
                rd_kafka_ConsumerGroupDescription_member(d[0], i);
            const rd_kafka_topic_partition_list_t *parts =
                rd_kafka_MemberAssignment_partitions(
                    rd_kafka_MemberDescription_assignment(m));
            for (int j = 0; parts && j < parts->cnt; j++) {
                if (strcmp(parts->elems[j].topic, DS_TOPIC_UPDATES) != 0)
                    continue;
                for (int k = 0; k < r->n; k++) {
                    ds_lag_row *row = &r->rows[k];
                    if (row->partition != parts->elems[j].partition)
                        continue;
                    snprintf(row->consumer_id, sizeof(row->consumer_id), "%s",
                             rd_kafka_MemberDescription_consumer_id(m));
                    snprintf(row->host, sizeof(row->host), "%s",
                             rd_kafka_MemberDescription_host(m));
                    snprintf(row->client_id, sizeof(row->client_id), "%s",
                             rd_kafka_MemberDescription_client_id(m));
                }
            }
        }
    } else {
        if (n == 1)
            why = rd_kafka_error_string(
                rd_kafka_ConsumerGroupDescription_error(d[0]));
        snprintf(r->note, sizeof(r->note),
                 "members and state unknown: DescribeConsumerGroups failed "
                 "(%s)%s",
                 why,
                 strstr(why, "nsupported") || strstr(why, "not supported")
                     ? "; the embedded broker does not implement it"
                     : "");
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* TIME-LAG: read the event at each lagging partition's committed offset
 * (read_committed: the oldest event the site still has to consume) and
 * take its timestamp. */
static void time_lag(const ds_lag_opts *o, ds_lag_report *r, ds_err *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    int want = 0;
    for (int i = 0; i < r->n; i++) {
        ds_lag_row *row = &r->rows[i];
        /* Nothing committed: the group will start at the log start. */
        int64_t from = row->committed >= 0 ? row->committed : row->low;
        int behind = row->high > from;
        row->time_lag_ms = behind ? -1 : 0;
        if (behind) {
            rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES,
                                              row->partition)
                ->offset = from;
            want++;
        }
    }
    if (want == 0) {
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    char group[300];
    snprintf(group, sizeof(group), "%s.lag-reader", r->group);
    rd_kafka_t *rk = client(o, group, "read_committed", err);
    if (rk == NULL) {
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    rd_kafka_assign(rk, l);
    uint64_t now = ds_now_ms(), deadline = ds_mono_ms() + 3000;
    while (want > 0 && ds_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        for (int i = 0; m->err == RD_KAFKA_RESP_ERR_NO_ERROR && i < r->n; i++) {
            ds_lag_row *row = &r->rows[i];
            if (row->partition != m->partition || row->time_lag_ms != -1)
                continue;
            int64_t ts = rd_kafka_message_timestamp(m, NULL);
            row->time_lag_ms = ts > 0 && (uint64_t)ts < now
                                   ? (int64_t)(now - (uint64_t)ts)
                                   : 0;
            want--;
            /* Stop fetching it: one event per partition is enough. */
            rd_kafka_topic_partition_list_t *p =
                rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(p, DS_TOPIC_UPDATES,
                                              m->partition);
            rd_kafka_pause_partitions(rk, p);
            rd_kafka_topic_partition_list_destroy(p);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

int ds_lag_collect(const ds_lag_opts *o, ds_lag_report *r, ds_err *err)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->group, sizeof(r->group), "despool.%s", o->site);
    snprintf(r->state, sizeof(r->state), "-");
    r->members = -1;
    /* read_uncommitted: watermark queries then return the high watermark
     * (Kafka's LOG-END-OFFSET), not the last stable offset. */
    rd_kafka_t *rk = client(o, r->group, "read_uncommitted", err);
    if (rk == NULL)
        return -EINVAL;
    int rc = 0;
    rd_kafka_topic_partition_list_t *l = NULL;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t e;
    if ((rc = ds_kmeta_topic(rk, DS_TOPIC_UPDATES, o->timeout_ms, &md, err)) <
        0)
        goto out;
    int np = md->topics[0].partition_cnt;
    l = rd_kafka_topic_partition_list_new(np);
    for (int i = 0; i < np; i++)
        rd_kafka_topic_partition_list_add(l, DS_TOPIC_UPDATES,
                                          md->topics[0].partitions[i].id);
    rd_kafka_topic_partition_list_sort(l, NULL, NULL);
    /* The group's coordinator moving or loading (a broker restarted or
     * frozen, a failover) answers for a moment with these: asked again
     * within the timeout, not failed at once. */
    uint64_t until = ds_mono_ms() + (uint64_t)o->timeout_ms;
    while ((e = rd_kafka_committed(rk, l, (int)(until - ds_mono_ms()))) ==
               RD_KAFKA_RESP_ERR_NOT_COORDINATOR ||
           e == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
           e == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE) {
        if (ds_mono_ms() + 200 >= until)
            break;
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rc = ds_err_set(err, -EIO, "kafka", "read committed offsets of %s: %s",
                        r->group, rd_kafka_err2str(e));
        goto out;
    }
    r->rows = calloc((size_t)np, sizeof(*r->rows));
    if (r->rows == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal", "out of memory");
        goto out;
    }
    r->n = np;
    for (int i = 0; i < np; i++) {
        ds_lag_row *row = &r->rows[i];
        row->partition = l->elems[i].partition;
        row->committed = l->elems[i].offset >= 0 ? l->elems[i].offset : -1;
        e = ds_kmeta_watermarks(rk, DS_TOPIC_UPDATES, row->partition, &row->low,
                                &row->high, o->timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rc = ds_err_set(err, -EIO, "kafka",
                            "read watermarks of %s [%d]: %s", DS_TOPIC_UPDATES,
                            (int)row->partition, rd_kafka_err2str(e));
            goto out;
        }
        /* No committed offset: Kafka's tool shows "-", so does the row;
         * but the group starts such a partition at its earliest offset
         * (auto.offset.reset=earliest), so every event in it is still to
         * be consumed, and the total counts them: a site that never
         * committed must not look caught up. */
        row->lag = row->committed >= 0 ? row->high - row->committed : -1;
        r->total_lag += row->lag >= 0 ? row->lag : row->high - row->low;
        snprintf(row->consumer_id, sizeof(row->consumer_id), "-");
        snprintf(row->host, sizeof(row->host), "-");
        snprintf(row->client_id, sizeof(row->client_id), "-");
    }
    if (ds_kconf_cluster_kind(rk, o->timeout_ms) == DS_CLUSTER_EMBEDDED)
        snprintf(r->note, sizeof(r->note),
                 "members and state unknown: the embedded broker does not "
                 "implement DescribeConsumerGroups");
    else
        describe(o, r);
    time_lag(o, r, err);
    for (int i = 0; i < r->n; i++)
        if (r->rows[i].time_lag_ms > r->max_time_lag_ms)
            r->max_time_lag_ms = r->rows[i].time_lag_ms;
out:
    if (l != NULL)
        rd_kafka_topic_partition_list_destroy(l);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    /* Never joined the group: nothing to close, and 2.0.2's close can
     * hang on a handle that never subscribed. */
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return rc;
}

void ds_lag_free(ds_lag_report *r)
{
    free(r->rows);
    r->rows = NULL;
    r->n = 0;
}

static const char *num(char *buf, size_t n, long long v)
{
    if (v < 0)
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%lld", v);
    return buf;
}

static ds_verdict worst_of(const ds_lag_report *r, const ds_verdict *v)
{
    ds_verdict worst = DS_V_NONE;
    for (int i = 0; v != NULL && i < r->n; i++)
        if (v[i] > worst)
            worst = v[i];
    return worst;
}

/* An offset or lag, or null when unknown (-1). */
static json_t *num_or_null(long long v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

json_t *ds_lag_json(const ds_lag_report *r, const ds_verdict *v)
{
    json_t *j = json_object(), *parts = json_array();
    int e = 0;
    e |= json_object_set_new(j, "group", ds_json_text(r->group));
    e |= json_object_set_new(j, "topic", json_string(DS_TOPIC_UPDATES));
    e |= json_object_set_new(j, "state", ds_json_text(r->state));
    e |= json_object_set_new(j, "members", json_integer(r->members));
    e |= json_object_set_new(j, "total_lag", json_integer(r->total_lag));
    e |= json_object_set_new(j, "max_time_lag_ms",
                             json_integer(r->max_time_lag_ms));
    if (v != NULL)
        e |= json_object_set_new(
            j, "group_status",
            json_string(ds_verdict_group_name(worst_of(r, v))));
    e |= json_object_set_new(j, "note", ds_json_text(r->note));
    for (int i = 0; i < r->n; i++) {
        const ds_lag_row *w = &r->rows[i];
        json_t *p = json_object();
        e |= json_object_set_new(p, "partition", json_integer(w->partition));
        e |=
            json_object_set_new(p, "current_offset", num_or_null(w->committed));
        e |= json_object_set_new(p, "log_end_offset", json_integer(w->high));
        e |= json_object_set_new(p, "lag", num_or_null(w->lag));
        e |=
            json_object_set_new(p, "consumer_id", ds_json_text(w->consumer_id));
        e |= json_object_set_new(p, "host", ds_json_text(w->host));
        e |= json_object_set_new(p, "client_id", ds_json_text(w->client_id));
        e |= json_object_set_new(p, "time_lag_ms", num_or_null(w->time_lag_ms));
        if (v != NULL)
            e |= json_object_set_new(p, "status",
                                     json_string(ds_verdict_name(v[i])));
        e |= json_array_append_new(parts, p);
    }
    e |= json_object_set_new(j, "partitions", parts);
    if (e != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

void ds_lag_print(const ds_lag_report *r, const ds_verdict *v)
{
    char a[24], b[24]; /* one per %s of a printf: never shared */
    printf("\n%-24s %-12s %9s %14s %14s %8s %-20s %-16s %-20s %9s%s\n", "GROUP",
           "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
           "CONSUMER-ID", "HOST", "CLIENT-ID", "TIME-LAG", v ? " STATUS" : "");
    for (int i = 0; i < r->n; i++) {
        const ds_lag_row *w = &r->rows[i];
        char tl[24];
        if (w->time_lag_ms < 0)
            snprintf(tl, sizeof(tl), "-");
        else
            snprintf(tl, sizeof(tl), "%.1fs", (double)w->time_lag_ms / 1000);
        printf("%-24s %-12s %9d %14s %14lld %8s %-20s %-16s %-20s %9s",
               r->group, DS_TOPIC_UPDATES, (int)w->partition,
               num(a, sizeof(a), w->committed), (long long)w->high,
               num(b, sizeof(b), w->lag), w->consumer_id, w->host, w->client_id,
               tl);
        if (v != NULL)
            printf(" %s", ds_verdict_name(v[i]));
        printf("\n");
    }
    printf("\nGROUP %s STATE %s MEMBERS %s TOTAL-LAG %lld MAX-TIME-LAG "
           "%.1fs",
           r->group, r->state,
           r->members >= 0 ? num(a, sizeof(a), r->members) : "-", r->total_lag,
           (double)r->max_time_lag_ms / 1000);
    if (v != NULL)
        printf(" STATUS %s", ds_verdict_group_name(worst_of(r, v)));
    printf("\n");
    if (r->note[0] != '\0')
        printf("note: %s\n", r->note);
}

int ds_lag_list_sites(const ds_lag_opts *o, char ***sites, int *n, ds_err *err)
{
    *sites = NULL;
    *n = 0;
    rd_kafka_t *rk = admin_client(o, err);
    if (rk == NULL)
        return err && err->code ? err->code : -EINVAL;
    int rc = 0, kind = ds_kconf_cluster_kind(rk, o->timeout_ms);
    if (kind < 0) {
        rc = ds_err_set(err, -EHOSTUNREACH, "kafka",
                        "list groups: no broker answered within %d ms (is "
                        "the broker running and -b right?)",
                        o->timeout_ms);
        goto out;
    }
    if (kind == DS_CLUSTER_EMBEDDED) {
        rc = ds_err_set(err, -ENOTSUP, "kafka",
                        "--all-sites: the embedded broker does not implement "
                        "ListGroups; name the sites with --site (repeatable)");
        goto out;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao =
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS);
    char errstr[256];
    rd_kafka_AdminOptions_set_request_timeout(ao, o->timeout_ms, errstr,
                                              sizeof(errstr));
    rd_kafka_ListConsumerGroups(rk, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, o->timeout_ms + 1000);
    const rd_kafka_ListConsumerGroups_result_t *res =
        ev ? rd_kafka_event_ListConsumerGroups_result(ev) : NULL;
    if (res == NULL || rd_kafka_event_error(ev)) {
        rc = ds_err_set(err, -EIO, "kafka", "list groups: %s",
                        ev ? rd_kafka_event_error_string(ev) : "no answer");
    } else {
        size_t cnt = 0;
        const rd_kafka_ConsumerGroupListing_t **g =
            rd_kafka_ListConsumerGroups_result_valid(res, &cnt);
        char **out = calloc(cnt ? cnt : 1, sizeof(*out));
        if (out == NULL)
            rc = ds_err_set(err, -ENOMEM, "internal", "out of memory");
        for (size_t i = 0; out != NULL && i < cnt; i++) {
            const char *gid = rd_kafka_ConsumerGroupListing_group_id(g[i]);
            /* despool.<site>, not its helpers (despool.<site>.lag-reader,
             * despool.refetch): a site name never holds a dot-suffix of
             * those. */
            if (strncmp(gid, "despool.", 8) != 0 ||
                strcmp(gid, "despool.refetch") == 0 ||
                strstr(gid, ".lag-reader") != NULL)
                continue;
            if ((out[*n] = strdup(gid + 8)) == NULL) {
                rc = ds_err_set(err, -ENOMEM, "internal", "out of memory");
                break;
            }
            (*n)++;
        }
        *sites = out;
        for (int i = 1; i < *n; i++) /* sorted, for a stable table order */
            for (int j = i; j > 0 && strcmp(out[j - 1], out[j]) > 0; j--) {
                char *t = out[j];
                out[j] = out[j - 1];
                out[j - 1] = t;
            }
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
out:
    rd_kafka_destroy(rk);
    return rc;
}
