/* test-metrics.c - the Prometheus text exposition of the worker's metrics:
 * names, labels, cumulative histogram buckets, bounded label sets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(ds_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    ds_err err;
    cr_assert_eq(ds_metrics_render(m, &text, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(strlen(text), len);
    return text;
}

/* The value of the sample line that starts with series + ' ', or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;
         p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

Test(metrics, counters_and_types)
{
    ds_metrics *m;
    cr_assert_eq(ds_metrics_new("dp1", &m, NULL), 0);
    ds_metrics_add(m, DS_C_FINALIZED, 2);
    ds_metrics_add(m, DS_C_FINALIZED, 1);
    ds_metrics_add(m, DS_C_RECEIVED_BYTES, 1000);
    ds_metrics_set(m, DS_G_IN_FLIGHT, 4);
    char *t = render(m);
    cr_assert_eq(sample(t, "despool_updates_finalized_total"), 3);
    cr_assert_eq(sample(t, "despool_received_bytes_total"), 1000);
    cr_assert_eq(sample(t, "despool_updates_in_flight"), 4);
    cr_assert_eq(sample(t, "despool_worker_info{site=\"dp1\"}"), 1);
    cr_assert(strstr(t, "# TYPE despool_updates_finalized_total counter\n"));
    cr_assert(strstr(t, "# TYPE despool_updates_in_flight gauge\n"));
    cr_assert_eq(ds_metrics_get(m, DS_C_FINALIZED), 3);
    /* The build and the standard process series. */
    cr_assert_eq(
        sample(t, "despool_build_info{version=\"" DESPOOL_VERSION "\"}"), 1);
    cr_assert_gt(sample(t, "process_resident_memory_bytes"), 0);
    cr_assert_gt(sample(t, "process_open_fds"), 0);
    cr_assert(strstr(t, "# TYPE process_cpu_seconds_total counter\n"));
    /* Every sample line: name{labels} value; every family typed once. */
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        cr_assert(strncmp(line, "despool_", 8) == 0 ||
                      strncmp(line, "process_", 8) == 0,
                  "line: %s", line);
        cr_assert(strchr(line, ' ') != NULL, "line: %s", line);
    }
    free(t);
    ds_metrics_free(m);
}

Test(metrics, labels_are_escaped_and_bounded)
{
    ds_metrics *m;
    cr_assert_eq(ds_metrics_new("we\"ird\\site", &m, NULL), 0);
    ds_metrics_add_label(m, DS_L_DEAD, "bad-schema", 1);
    ds_metrics_add_label(m, DS_L_DEAD, "bad-schema", 2);
    ds_metrics_add_label(m, DS_L_ERRORS, "kafka", 0);
    char *t = render(m);
    cr_assert_eq(
        sample(t, "despool_events_dead_lettered_total{reason=\"bad-schema\"}"),
        3);
    cr_assert_eq(sample(t, "despool_errors_total{kind=\"kafka\"}"), 0,
                 "a label seeded with 0 is rendered");
    cr_assert(strstr(t, "despool_worker_info{site=\"we\\\"ird\\\\site\"} 1"),
              "%s", t);
    free(t);
    /* Far more distinct values than slots: the rest lands in "other",
     * and nothing is lost from the total. */
    for (int i = 0; i < 500; i++) {
        char r[16];
        snprintf(r, sizeof(r), "r%d", i);
        ds_metrics_add_label(m, DS_L_DISCARDED, r, 1);
    }
    t = render(m);
    double total = 0;
    int series = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"))
        if (strncmp(line, "despool_updates_discarded_total{", 32) == 0) {
            total += strtod(strchr(line, ' ') + 1, NULL);
            series++;
        }
    cr_assert_eq(total, 500);
    cr_assert_leq(series, DS_METRICS_MAX_LABELS);
    free(t);
    ds_metrics_free(m);
}

Test(metrics, histogram_buckets_are_cumulative)
{
    ds_metrics *m;
    cr_assert_eq(ds_metrics_new("s", &m, NULL), 0);
    ds_metrics_observe(m, DS_H_FINALIZE, 0.003); /* le 0.005 */
    ds_metrics_observe(m, DS_H_FINALIZE, 0.2);   /* le 0.25 */
    ds_metrics_observe(m, DS_H_FINALIZE, 0.25);  /* le 0.25: bounds inclusive */
    ds_metrics_observe(m, DS_H_FINALIZE, 500);   /* only +Inf */
    char *t = render(m);
    const char *h = "despool_finalize_duration_seconds";
    char s[128];
    snprintf(s, sizeof(s), "%s_bucket{le=\"0.005\"}", h);
    cr_assert_eq(sample(t, s), 1);
    snprintf(s, sizeof(s), "%s_bucket{le=\"0.1\"}", h);
    cr_assert_eq(sample(t, s), 1);
    snprintf(s, sizeof(s), "%s_bucket{le=\"0.25\"}", h);
    cr_assert_eq(sample(t, s), 3);
    snprintf(s, sizeof(s), "%s_bucket{le=\"60\"}", h);
    cr_assert_eq(sample(t, s), 3);
    snprintf(s, sizeof(s), "%s_bucket{le=\"+Inf\"}", h);
    cr_assert_eq(sample(t, s), 4);
    snprintf(s, sizeof(s), "%s_count", h);
    cr_assert_eq(sample(t, s), 4);
    snprintf(s, sizeof(s), "%s_sum", h);
    cr_assert_float_eq(sample(t, s), 500.453, 1e-6);
    cr_assert(
        strstr(t, "# TYPE despool_finalize_duration_seconds histogram\n"));
    free(t);
    ds_metrics_free(m);
}

Test(metrics, lag_series_come_and_go)
{
    ds_metrics *m;
    cr_assert_eq(ds_metrics_new("s", &m, NULL), 0);
    ds_metrics_set_lag(m, 3, 7);
    ds_metrics_set_lag(m, 0, 0);
    char *t = render(m);
    cr_assert_eq(
        sample(t,
               "despool_consumer_lag{topic=\"pkg.updates\",partition=\"3\"}"),
        7);
    cr_assert_eq(
        sample(t,
               "despool_consumer_lag{topic=\"pkg.updates\",partition=\"0\"}"),
        0);
    cr_assert_eq(
        sample(t,
               "despool_consumer_lag{topic=\"pkg.updates\",partition=\"1\"}"),
        -1, "a partition never set has no series");
    free(t);
    ds_metrics_set_lag(m, 3, -1); /* revoked */
    t = render(m);
    cr_assert_eq(
        sample(t,
               "despool_consumer_lag{topic=\"pkg.updates\",partition=\"3\"}"),
        -1);
    free(t);
    ds_metrics_free(m);
}

Test(metrics, null_registry_is_a_no_op)
{
    ds_metrics_add(NULL, DS_C_FINALIZED, 1);
    ds_metrics_add_label(NULL, DS_L_DEAD, "x", 1);
    ds_metrics_observe(NULL, DS_H_UPDATE, 1);
    ds_metrics_set_lag(NULL, 0, 1);
    cr_assert_eq(ds_metrics_get(NULL, DS_C_FINALIZED), 0);
}
