/*
 * despooler.c - the command line of the despooler program: parses
 * options, installs signal handlers, and hands over to the worker, the
 * lag reader or the embedded broker. Only this file exits the process.
 */
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "devbroker.h"
#include "fsutil.h"
#include "kconf.h"
#include "lag.h"
#include "status.h"
#include "worker.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void usage(FILE *out)
{
    fputs("Usage: despooler COMMAND [OPTIONS]\n"
          "\n"
          "Turn package updates from Kafka into verified, atomically switched\n"
          "versions in a site's content library.\n"
          "\n"
          "Commands:\n"
          "  run         consume pkg.updates as site SITE into library DIR\n"
          "  lag         consumer lag of a site, per partition\n"
          "  status      version matrix: package x site, from pkg.status\n"
          "  dev-broker  run the embedded Kafka-protocol broker (for trying "
          "out)\n"
          "\n"
          "Run 'despooler COMMAND --help' for the options of a command.\n",
          out);
}

static void usage_run(FILE *out)
{
    fputs(
        "Usage: despooler run -b BOOTSTRAP --site SITE --library DIR "
        "[OPTIONS]\n"
        "\n"
        "Kafka:\n"
        "  -b, --bootstrap LIST      brokers host:port[,..], or @FILE\n"
        "  -X KEY=VALUE              librdkafka setting (repeatable)\n"
        "  -F FILE                   librdkafka settings file (key=value)\n"
        "Site:\n"
        "  -s, --site SITE           site name; consumer group despool.SITE\n"
        "  -l, --library DIR         the site's content library\n"
        "  -k, --keep-versions N     versions kept per package (default 2)\n"
        "Limits:\n"
        "  --incomplete-timeout SEC  dead-letter an update whose chunks stop\n"
        "                            arriving for SEC seconds (default 300)\n"
        "  --max-update-size BYTES   refuse larger updates (K/M/G suffix;\n"
        "                            default 0 = no cap)\n"
        "  --max-entries N           refuse archives with more entries\n"
        "  --max-window-log N        zstd window limit (default 27)\n"
        "Monitoring:\n"
        "  --metrics HOST:PORT       serve Prometheus /metrics and /healthz\n"
        "                            (:PORT = every interface; port 0 = any\n"
        "                            free port, logged as metrics-listening)\n"
        "  -h, --help                this text\n"
        "\n"
        "SIGTERM/SIGINT: finish or abandon in-flight work, commit, leave the\n"
        "group, exit 0.\n",
        out);
}

static void usage_lag(FILE *out)
{
    fputs("Usage: despooler lag -b BOOTSTRAP --site SITE [OPTIONS]\n"
          "\n"
          "Lag of consumer group despool.SITE on pkg.updates, per partition,\n"
          "with the columns of kafka-consumer-groups.sh --describe plus\n"
          "TIME-LAG (age of the oldest unconsumed event), from committed\n"
          "offsets: a site with no running worker is reported too.\n"
          "\n"
          "  -b, --bootstrap LIST      brokers host:port[,..], or @FILE\n"
          "  -X KEY=VALUE, -F FILE     librdkafka settings\n"
          "  -s, --site SITE           site (consumer group despool.SITE)\n"
          "      --json                one JSON object instead of a table\n"
          "      --warn-lag N          exit 1 when total lag >= N events\n"
          "      --crit-lag N          exit 2 when total lag >= N events\n"
          "      --max-time-lag SEC    exit 2 when an event waits > SEC\n"
          "  -h, --help                this text\n"
          "\n"
          "Exit: 0 OK, 1 warning, 2 critical, 3 broker unreachable.\n",
          out);
}

static void usage_status(FILE *out)
{
    fputs("Usage: despooler status -b BOOTSTRAP [OPTIONS]\n"
          "\n"
          "Read pkg.status to its end and print the newest version of every\n"
          "package at every site, the published version first. Marks: behind\n"
          "(older than published), late (behind or silent for longer than\n"
          "--max-behind), failed (the site's last attempt failed).\n"
          "\n"
          "  -b, --bootstrap LIST      brokers host:port[,..], or @FILE\n"
          "  -X KEY=VALUE, -F FILE     librdkafka settings\n"
          "  -p, --package PACKAGE     only this package\n"
          "  -s, --site SITE           only this site\n"
          "      --max-behind SEC      late after SEC seconds (default 3600)\n"
          "      --json                one JSON object instead of a table\n"
          "  -h, --help                this text\n"
          "\n"
          "Exit: 0 all current or catching up, 1 a site late or failed,\n"
          "3 the broker cannot be reached.\n",
          out);
}

static void usage_devbroker(FILE *out)
{
    fputs(
        "Usage: despooler dev-broker [--partitions N] [--bootstrap-file "
        "FILE]\n"
        "\n"
        "Start librdkafka's built-in Kafka-protocol broker in memory on\n"
        "loopback ports, create pkg.updates, pkg.updates.dlq and pkg.status,\n"
        "print the bootstrap list (and write it to FILE for -b @FILE), and\n"
        "serve until SIGINT/SIGTERM. For trying despool out and for tests;\n"
        "production uses Apache Kafka.\n"
        "\n"
        "  -p, --partitions N        partitions of pkg.updates (default 6)\n"
        "  -o, --bootstrap-file FILE also write the bootstrap list to FILE\n"
        "  -h, --help                this text\n",
        out);
}

static int fail(const char *cmd, const char *msg)
{
    fprintf(stderr, "despooler %s: %s\n", cmd, msg);
    return 2;
}

/* Parse a byte count with an optional K/M/G/T suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
    char num[32];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, s, n + 1);
    uint64_t mul = 1;
    switch (num[n - 1]) {
    case 'K':
    case 'k':
        mul = 1ull << 10;
        break;
    case 'M':
    case 'm':
        mul = 1ull << 20;
        break;
    case 'G':
    case 'g':
        mul = 1ull << 30;
        break;
    case 'T':
    case 't':
        mul = 1ull << 40;
        break;
    default:
        break;
    }
    if (mul != 1)
        num[n - 1] = '\0';
    uint64_t v;
    if (ds_parse_u64(num, &v) < 0 || (v && mul > UINT64_MAX / v))
        return -1;
    *out = v * mul;
    return 0;
}

/* -b/-X/-F, shared by the commands that talk to Kafka. 1 = handled (on
 * failure *rc is the exit code). */
static int kafka_opt(int c, const char *cmd, ds_kconf *kc, int *rc)
{
    ds_err err;
    int r = ds_kconf_option(kc, c, optarg, &err);
    if (r < 0)
        *rc = fail(cmd, err.msg);
    return r != 0;
}

enum {
    OPT_INCOMPLETE = 256,
    OPT_MAX_SIZE,
    OPT_MAX_ENTRIES,
    OPT_WINDOW,
    OPT_METRICS,
    OPT_JSON,
    OPT_MAX_BEHIND,
    OPT_WARN_LAG,
    OPT_CRIT_LAG,
    OPT_MAX_TIME_LAG
};

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},
        {"site", required_argument, NULL, 's'},
        {"library", required_argument, NULL, 'l'},
        {"keep-versions", required_argument, NULL, 'k'},
        {"incomplete-timeout", required_argument, NULL, OPT_INCOMPLETE},
        {"max-update-size", required_argument, NULL, OPT_MAX_SIZE},
        {"max-entries", required_argument, NULL, OPT_MAX_ENTRIES},
        {"max-window-log", required_argument, NULL, OPT_WINDOW},
        {"metrics", required_argument, NULL, OPT_METRICS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ds_kconf kc = {0};
    ds_worker_opts o = {
        .kc = &kc,
        .keep_versions = 2,
        .incomplete_timeout_ms = 300000,
        .max_window_log = 27,
        .stop = &stop_flag,
    };
    int c, rc = 0;
    uint64_t v;
    while (rc == 0 &&
           (c = getopt_long(argc, argv, "b:X:F:s:l:k:h", opts, NULL)) != -1) {
        if (kafka_opt(c, "run", &kc, &rc))
            continue;
        switch (c) {
        case 's':
            o.site = optarg;
            break;
        case 'l':
            o.library = optarg;
            break;
        case 'k':
            if (ds_parse_u64(optarg, &v) < 0 || v < 1 || v > 1000)
                rc = fail("run", "--keep-versions: expected 1..1000");
            o.keep_versions = (unsigned)v;
            break;
        case OPT_INCOMPLETE: {
            char *end;
            double secs = strtod(optarg, &end);
            if (*end != '\0' || secs <= 0 || secs > 86400 * 30)
                rc = fail("run", "--incomplete-timeout: expected seconds > 0");
            o.incomplete_timeout_ms = (uint64_t)(secs * 1000);
            break;
        }
        case OPT_MAX_SIZE:
            if (parse_size(optarg, &o.max_update_size) < 0)
                rc = fail("run", "--max-update-size: expected bytes, e.g. 4G");
            break;
        case OPT_MAX_ENTRIES:
            if (ds_parse_u64(optarg, &o.max_entries) < 0)
                rc = fail("run", "--max-entries: expected a number");
            break;
        case OPT_WINDOW:
            if (ds_parse_u64(optarg, &v) < 0 || v < 10 || v > 31)
                rc = fail("run", "--max-window-log: expected 10..31");
            o.max_window_log = (unsigned)v;
            break;
        case OPT_METRICS:
            o.metrics_addr = optarg;
            break;
        case 'h':
            usage_run(stdout);
            ds_kconf_free(&kc);
            return 0;
        default:
            usage_run(stderr);
            rc = 2;
            break;
        }
    }
    if (rc == 0 && optind < argc)
        rc = fail("run", "unexpected argument (see --help)");
    if (rc == 0 && (o.site == NULL || !ds_site_valid(o.site, strlen(o.site))))
        rc = fail("run", "--site SITE is required: letters, digits, . _ - "
                         "(at most 128), starting with a letter or digit");
    if (rc == 0 && o.library == NULL)
        rc = fail("run", "--library DIR is required");
    if (rc == 0 && kc.bootstrap == NULL)
        rc = fail("run", "-b BOOTSTRAP is required (host:port or @FILE)");
    if (rc == 0) {
        ds_err err;
        install_signals();
        if (ds_worker_run(&o, &err) < 0)
            rc = fail("run", err.msg), rc = 1;
    }
    ds_kconf_free(&kc);
    return rc;
}

/* Nagios-style verdict of a lag report: 0 OK, 1 WARNING, 2 CRITICAL. */
static int lag_verdict(const ds_lag_report *r, long long warn, long long crit,
                       double max_time_lag)
{
    if ((crit >= 0 && r->total_lag >= crit) ||
        (max_time_lag >= 0 &&
         (double)r->max_time_lag_ms / 1000.0 > max_time_lag))
        return 2;
    if (warn >= 0 && r->total_lag >= warn)
        return 1;
    return 0;
}

static int cmd_lag(int argc, char **argv)
{
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},
        {"site", required_argument, NULL, 's'},
        {"json", no_argument, NULL, OPT_JSON},
        {"warn-lag", required_argument, NULL, OPT_WARN_LAG},
        {"crit-lag", required_argument, NULL, OPT_CRIT_LAG},
        {"max-time-lag", required_argument, NULL, OPT_MAX_TIME_LAG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ds_kconf kc = {0};
    ds_lag_opts o = {.kc = &kc, .timeout_ms = 10000};
    long long warn = -1, crit = -1;
    double max_time_lag = -1;
    int c, rc = 0, json = 0;
    uint64_t v;
    while (rc == 0 &&
           (c = getopt_long(argc, argv, "b:X:F:s:h", opts, NULL)) != -1) {
        if (kafka_opt(c, "lag", &kc, &rc))
            continue;
        switch (c) {
        case 's':
            o.site = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_WARN_LAG:
        case OPT_CRIT_LAG:
            if (ds_parse_u64(optarg, &v) < 0 || v > (uint64_t)INT64_MAX)
                rc = fail("lag", "--warn-lag/--crit-lag: expected a number "
                                 "of events");
            *(c == OPT_WARN_LAG ? &warn : &crit) = (long long)v;
            break;
        case OPT_MAX_TIME_LAG: {
            char *end;
            max_time_lag = strtod(optarg, &end);
            if (*end != '\0' || max_time_lag < 0)
                rc = fail("lag", "--max-time-lag: expected seconds");
            break;
        }
        case 'h':
            usage_lag(stdout);
            ds_kconf_free(&kc);
            return 0;
        default:
            usage_lag(stderr);
            rc = 2;
            break;
        }
    }
    if (rc == 0 && optind < argc)
        rc = fail("lag", "unexpected argument (see --help)");
    if (rc == 0 && (o.site == NULL || !ds_site_valid(o.site, strlen(o.site))))
        rc = fail("lag", "--site SITE is required");
    if (rc == 0 && kc.bootstrap == NULL)
        rc = fail("lag", "-b BOOTSTRAP is required (host:port or @FILE)");
    if (rc == 0) {
        ds_err err;
        ds_lag_report r;
        if (ds_lag_collect(&o, &r, &err) < 0) {
            fprintf(stderr, "despooler lag: %s\n", err.msg);
            rc = 3;
        } else {
            ds_lag_print(&r, json);
            rc = lag_verdict(&r, warn, crit, max_time_lag);
        }
        ds_lag_free(&r);
    }
    ds_kconf_free(&kc);
    return rc;
}

static int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},
        {"package", required_argument, NULL, 'p'},
        {"site", required_argument, NULL, 's'},
        {"max-behind", required_argument, NULL, OPT_MAX_BEHIND},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ds_kconf kc = {0};
    ds_status_opts o = {.kc = &kc, .max_behind_s = 3600, .timeout_ms = 10000};
    int c, rc = 0;
    while (rc == 0 &&
           (c = getopt_long(argc, argv, "b:X:F:p:s:h", opts, NULL)) != -1) {
        if (kafka_opt(c, "status", &kc, &rc))
            continue;
        switch (c) {
        case 'p':
            o.package = optarg;
            break;
        case 's':
            o.site = optarg;
            break;
        case OPT_MAX_BEHIND:
            if (ds_parse_u64(optarg, &o.max_behind_s) < 0)
                rc = fail("status", "--max-behind: expected seconds");
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case 'h':
            usage_status(stdout);
            ds_kconf_free(&kc);
            return 0;
        default:
            usage_status(stderr);
            rc = 2;
            break;
        }
    }
    if (rc == 0 && optind < argc)
        rc = fail("status", "unexpected argument (see --help)");
    if (rc == 0 && kc.bootstrap == NULL)
        rc = fail("status", "-b BOOTSTRAP is required (host:port or @FILE)");
    if (rc == 0) {
        ds_err err;
        int worst = 0;
        if (ds_status_run(&o, &worst, &err) < 0) {
            fprintf(stderr, "despooler status: %s\n", err.msg);
            rc = 3;
        } else {
            rc = worst;
        }
    }
    ds_kconf_free(&kc);
    return rc;
}

static int cmd_devbroker(int argc, char **argv)
{
    static const struct option opts[] = {
        {"partitions", required_argument, NULL, 'p'},
        {"bootstrap-file", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ds_devbroker_opts o = {.partitions = 6, .brokers = 1, .stop = &stop_flag};
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "p:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (ds_parse_u64(optarg, &v) < 0 || v < 1 || v > 1000)
                return fail("dev-broker", "--partitions: expected 1..1000");
            o.partitions = (int)v;
            break;
        case 'o':
            o.bootstrap_file = optarg;
            break;
        case 'h':
            usage_devbroker(stdout);
            return 0;
        default:
            usage_devbroker(stderr);
            return 2;
        }
    }
    if (optind < argc)
        return fail("dev-broker", "unexpected argument (see --help)");
    install_signals();
    ds_err err;
    if (ds_devbroker_run(&o, &err) < 0)
        return fail("dev-broker", err.msg), 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    /* getopt sees the command's own argv, with the command as argv[0]. */
    argc--;
    argv++;
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc, argv);
    if (strcmp(cmd, "lag") == 0)
        return cmd_lag(argc, argv);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc, argv);
    if (strcmp(cmd, "dev-broker") == 0)
        return cmd_devbroker(argc, argv);
    fprintf(stderr, "despooler: unknown command '%s' (try --help)\n", cmd);
    return 2;
}
