/*
 * despooler.c - the command line of the despooler program: parses
 * options, installs signal handlers, and hands over to the worker, the
 * lag reader or the embedded broker. Only this file exits the process.
 */
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "devbroker.h"
#include "fsutil.h"
#include "kconf.h"
#include "lag.h"
#include "library.h"
#include "log.h"
#include "progress.h"
#include "listen.h"
#include "status.h"
#include "statusd.h"
#include "statusfeed.h"
#include "worker.h"
#include "numparse.h"

/* The handlers only set these; `run` passes them to the worker. stop_flag
 * holds the stopping signal's number, stop_sender the pid that sent it
 * (0: the kernel, or not known), for the log. */
static volatile sig_atomic_t stop_flag, stop_sender, reload_flag;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sig == SIGHUP) {
        reload_flag = 1;
        return;
    }
    stop_sender = si != NULL ? (sig_atomic_t)si->si_pid : 0;
    stop_flag = sig;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Under a file-size limit (ulimit -f) a write past it must fail with
     * EFBIG, which the extraction reports as the archive's fault
     * (too-large), not kill the worker. */
    signal(SIGXFSZ, SIG_IGN);
}

/* `run` only: SIGHUP re-reads --trusted-keys instead of ending the
 * process (the other commands keep its default action). SA_RESTART: it
 * lands on any thread, in the middle of a read or write of an update
 * thread too, which must carry on, not fail with EINTR. */
static void install_reload_signal(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
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
          "Run 'despooler COMMAND --help' for the options of a command.\n"
          "'despooler --version' prints the version.\n",
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
        "  -F FILE                   librdkafka settings file (key=value);\n"
        "                            its bootstrap.servers serves when -b\n"
        "                            is not given (-b wins)\n"
        "Site:\n"
        "  -s, --site SITE           site name; consumer group despool.SITE\n"
        "  -l, --library DIR         the site's content library (must exist)\n"
        "      --create-library      create DIR (and parents) if missing\n"
        "  -k, --keep-versions N     versions kept per package (default 2)\n"
        "Limits:\n"
        "  --incomplete-timeout SEC  dead-letter an update whose chunks stop\n"
        "                            arriving for SEC seconds (default 300)\n"
        "  --max-update-size BYTES   refuse larger updates (K/M/G suffix;\n"
        "                            default 0 = no cap)\n"
        "  --max-entries N           refuse archives with more entries\n"
        "  --max-window-log N        zstd window limit (default 27)\n"
        "Throughput:\n"
        "  --max-in-flight N         updates extracted at once once all their\n"
        "                            chunks are in (default 16); at the limit\n"
        "                            fetching pauses until one finishes\n"
        "  --trusted-keys DIR        require updates signed (Ed25519) by a\n"
        "                            key in DIR/<key_id>.pub; others go to\n"
        "                            the DLQ as bad-signature\n"
        "Retired packages (a tombstone, null value, on pkg.updates):\n"
        "  --on-retire keep|remove   keep (default): leave the files, current\n"
        "                            stays readable, DIR/<package>/retired\n"
        "                            marks it; a newer version revives it.\n"
        "                            remove: delete the package from DIR\n"
        "                            (in one step: readers see all or none).\n"
        "                            Either way pkg.status gets state\n"
        "                            \"retired\" (detail kept or removed)\n"
        "Monitoring:\n"
        "  --metrics HOST:PORT       serve Prometheus /metrics and /healthz\n"
        "                            (:PORT = every interface; port 0 = any\n"
        "                            free port, logged as metrics-listening)\n"
        "      --log-level LEVEL     error, warn, info (default) or debug\n"
        "  -h, --help                this text\n"
        "\n"
        "SIGTERM/SIGINT: finish or abandon in-flight work, commit, leave the\n"
        "group, exit 0. SIGHUP: re-read --trusted-keys (kept if unreadable).\n"
        "Under systemd (NOTIFY_SOCKET): READY=1 once assigned, STOPPING=1,\n"
        "WATCHDOG=1 pings (WATCHDOG_USEC).\n",
        out);
}

static void usage_lag(FILE *out)
{
    fputs(
        "Usage: despooler lag -b BOOTSTRAP (--site SITE... | --all-sites) "
        "[OPTIONS]\n"
        "\n"
        "Lag of consumer group despool.SITE on pkg.updates, per partition,\n"
        "with the columns of kafka-consumer-groups.sh --describe plus\n"
        "TIME-LAG (age of the oldest unconsumed event), from committed\n"
        "offsets: a site with no running worker is reported too.\n"
        "\n"
        "  -b, --bootstrap LIST      brokers host:port[,..], or @FILE\n"
        "  -X KEY=VALUE, -F FILE     librdkafka settings (-F's\n"
        "                            bootstrap.servers serves without -b)\n"
        "  -s, --site SITE           site (consumer group despool.SITE);\n"
        "                            repeatable\n"
        "      --all-sites           every despool.* group on the cluster\n"
        "      --json                JSON instead of a table (several sites:\n"
        "                            {\"groups\":[...]}; one line per sample)\n"
        "      --warn-lag N          exit 1 when total lag >= N events\n"
        "      --crit-lag N          exit 2 when total lag >= N events\n"
        "      --max-time-lag SEC    exit 2 when an event waits > SEC\n"
        "Watch (Burrow-style evaluation over a window of samples):\n"
        "      --watch SEC           sample every SEC seconds; a STATUS per\n"
        "                            partition: OK, WARN (lag growing),\n"
        "                            STALL (lag > 0, committed offset not\n"
        "                            moving in the window), STOP (no commit\n"
        "                            for --stop-after), REWIND; group status\n"
        "                            OK, WARN or ERR\n"
        "      --window N            samples per window (default 10)\n"
        "      --stop-after SEC      STOP after SEC without a commit while\n"
        "                            lag > 0 (default 300)\n"
        "      --count N             stop after N samples (default: ^C)\n"
        "      --log-level LEVEL     error, warn, info (default) or debug\n"
        "  -h, --help                this text\n"
        "\n"
        "Exit: 0 OK, 1 warning (or WARN), 2 critical (or ERR), 3 broker\n"
        "unreachable or a usage error (UNKNOWN). With --watch, the exit\n"
        "code is the last sample's.\n",
        out);
}

static void usage_status(FILE *out)
{
    fputs(
        "Usage: despooler status -b BOOTSTRAP [OPTIONS]\n"
        "\n"
        "Read pkg.status to its end and print the newest version of every\n"
        "package at every site, the published version first. Marks: behind\n"
        "(older than published), late (behind or silent for longer than\n"
        "--max-behind), failed (the site's last attempt failed), retired\n"
        "(the site retired the package: N retired = version N kept,\n"
        "retired alone = removed). A package its publisher retired shows\n"
        "retired as published; a site that has not retired it yet is\n"
        "behind, then late. --json adds \"retired\" per package and\n"
        "\"detail\" per site.\n"
        "\n"
        "  -b, --bootstrap LIST      brokers host:port[,..], or @FILE\n"
        "  -X KEY=VALUE, -F FILE     librdkafka settings (-F's\n"
        "                            bootstrap.servers serves without -b)\n"
        "  -p, --package PACKAGE     only this package\n"
        "  -s, --site SITE           only this site\n"
        "      --max-behind SEC      late after SEC seconds (default 3600)\n"
        "      --json                one JSON object instead of a table\n"
        "      --log-level LEVEL     error, warn, info (default) or debug\n"
        "  -h, --help                this text\n"
        "The status page (a browser, or scripts on /api/status, /api/lag):\n"
        "      --serve ADDR:PORT     serve it until SIGINT/SIGTERM (:PORT for\n"
        "                            every interface, port 0 = any free)\n"
        "      --refresh SEC         the page reloads its data every SEC\n"
        "                            (default 5)\n"
        "      --lag-every SEC       sample every site's lag every SEC\n"
        "                            (default 30); --window N (default 10)\n"
        "                            and --stop-after SEC (default 300) as\n"
        "                            for lag --watch\n"
        "\n"
        "Exit: 0 all current or catching up, 1 a site late or failed,\n"
        "3 the broker cannot be reached. With --serve: 0 once stopped by a\n"
        "signal, 2 a usage error or an address that cannot be bound.\n",
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
        "Limit: each partition keeps at most 5 MiB (and 100,000 batches) and\n"
        "silently drops the oldest events beyond that (librdkafka's mock\n"
        "cluster). pkgpub therefore refuses here, before sending, an update\n"
        "whose events would take more than 4 MiB (its compressed size plus\n"
        "at most 640 bytes per chunk), leaving 1 MiB for other packages'\n"
        "events on its partition. Bigger updates need Apache Kafka:\n"
        "scripts/kafka start runs one on this machine.\n"
        "\n"
        "  -p, --partitions N        partitions of pkg.updates (default 6)\n"
        "  -o, --bootstrap-file FILE also write the bootstrap list to FILE\n"
        "      --log-level LEVEL     error, warn, info (default) or debug\n"
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
    OPT_MAX_IN_FLIGHT,
    OPT_METRICS,
    OPT_TRUSTED_KEYS,
    OPT_ON_RETIRE,
    OPT_ALL_SITES,
    OPT_WATCH,
    OPT_WINDOW_SAMPLES,
    OPT_STOP_AFTER,
    OPT_COUNT,
    OPT_JSON,
    OPT_MAX_BEHIND,
    OPT_WARN_LAG,
    OPT_CRIT_LAG,
    OPT_MAX_TIME_LAG,
    OPT_LOG_LEVEL,
    OPT_CREATE_LIBRARY,
    OPT_SERVE,
    OPT_REFRESH,
    OPT_LAG_EVERY
};

/* --log-level LEVEL: DESPOOL_LOG_LEVEL for ds_log (log.h), set here, before
 * any thread starts. Returns the exit code (0 or usage). */
static int log_level_opt(const char *cmd, const char *level)
{
    if (ds_log_level_set(level) < 0)
        return fail(cmd, "--log-level: expected error, warn, info or debug");
    return 0;
}

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
        {"max-in-flight", required_argument, NULL, OPT_MAX_IN_FLIGHT},
        {"metrics", required_argument, NULL, OPT_METRICS},
        {"trusted-keys", required_argument, NULL, OPT_TRUSTED_KEYS},
        {"on-retire", required_argument, NULL, OPT_ON_RETIRE},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"create-library", no_argument, NULL, OPT_CREATE_LIBRARY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ds_kconf kc = {0};
    ds_worker_opts o = {
        .kc = &kc,
        .keep_versions = 2,
        .incomplete_timeout_ms = 300000,
        .max_window_log = 27,
        .max_in_flight = 16,
        .on_retire = DS_RETIRE_KEEP,
        .stop = &stop_flag,
        .stop_sender = &stop_sender,
        .reload = &reload_flag,
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
            double secs;
            if (ds_parse_decimal(optarg, &secs) < 0 || secs <= 0 ||
                secs > 86400 * 30)
                rc = fail("run", "--incomplete-timeout: expected seconds > 0 "
                                 "(at most 30 days)");
            else
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
        case OPT_MAX_IN_FLIGHT:
            if (ds_parse_u64(optarg, &v) < 0 || v < 1 || v > 1024)
                rc = fail("run", "--max-in-flight: expected 1..1024");
            o.max_in_flight = (unsigned)v;
            break;
        case OPT_METRICS:
            o.metrics_addr = optarg;
            break;
        case OPT_CREATE_LIBRARY:
            o.create_library = 1;
            break;
        case OPT_TRUSTED_KEYS:
            o.trusted_keys = optarg;
            break;
        case OPT_ON_RETIRE:
            if (strcmp(optarg, "keep") == 0)
                o.on_retire = DS_RETIRE_KEEP;
            else if (strcmp(optarg, "remove") == 0)
                o.on_retire = DS_RETIRE_REMOVE;
            else
                rc = fail("run", "--on-retire: expected keep or remove");
            break;
        case OPT_LOG_LEVEL:
            rc = log_level_opt("run", optarg);
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
        rc = fail("run", "-b BOOTSTRAP is required (host:port or @FILE; or "
                         "bootstrap.servers in -F FILE)");
    if (rc == 0) {
        ds_err err;
        install_signals();
        install_reload_signal();
        /* A setting librdkafka refused (-X, -F), a bad --metrics address
         * or --trusted-keys directory, a --library that does not exist:
         * usage errors too. */
        if (ds_worker_run(&o, &err) < 0) {
            fail("run", err.msg);
            rc = strcmp(err.reason, "usage") == 0 ? 2 : 1;
        }
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

#define LAG_MAX_SITES 256

typedef struct lag_cli {
    ds_lag_opts o;
    const char *sites[LAG_MAX_SITES];
    int nsites;
    int all_sites, json;
    long long warn, crit;
    double max_time_lag;
    double watch;        /* seconds between samples; 0 = once */
    int window;          /* samples per verdict window */
    double stop_after;   /* seconds without a commit: STOP */
    unsigned long count; /* samples to take in watch mode; 0 = until ^C */
} lag_cli;

/* One sample of every site: print it, feed the watches, return the exit
 * code (worst over the sites: 0 OK, 1 WARN, 2 CRIT/ERR, 3 unreachable). */
static int lag_sample(lag_cli *c, ds_lagwatch **watch)
{
    int rc = 0;
    int many = c->all_sites || c->nsites > 1;
    /* --json: one object per site, in {"groups":[...]} when several. */
    json_t *groups = c->json ? json_array() : NULL, *one = NULL;
    for (int i = 0; i < c->nsites; i++) {
        ds_err err;
        ds_lag_report r;
        c->o.site = c->sites[i];
        if (ds_lag_collect(&c->o, &r, &err) < 0) {
            fprintf(stderr, "despooler lag: site %s: %s\n", c->sites[i],
                    err.msg);
            ds_lag_free(&r);
            rc = 3;
            continue;
        }
        ds_verdict *v = calloc((size_t)(r.n > 0 ? r.n : 1), sizeof(*v)),
                   worst = DS_V_NONE;
        if (v == NULL) {
            fprintf(stderr, "despooler lag: out of memory\n");
            ds_lag_free(&r);
            rc = 3;
            continue;
        }
        if (watch != NULL) {
            uint64_t now = ds_mono_ms();
            for (int k = 0; k < r.n; k++) {
                const ds_lag_row *row = &r.rows[k];
                long long lag = row->lag >= 0 ? row->lag : row->high - row->low;
                if (ds_lagwatch_add(watch[i], row->partition, now,
                                    row->committed, lag, &err) < 0) {
                    fprintf(stderr, "despooler lag: %s\n", err.msg);
                    rc = 3;
                }
                v[k] = ds_lagwatch_verdict(watch[i], row->partition);
                if (v[k] > worst)
                    worst = v[k];
            }
        }
        if (c->json) {
            json_t *j = ds_lag_json(&r, watch ? v : NULL);
            if (j == NULL || json_array_append_new(groups, j) < 0) {
                fprintf(stderr,
                        "despooler lag: site %s: building the JSON "
                        "output failed (out of memory)\n",
                        c->sites[i]);
                rc = 3;
            }
        } else {
            ds_lag_print(&r, watch ? v : NULL);
        }
        int vr = lag_verdict(&r, c->warn, c->crit, c->max_time_lag);
        if (watch != NULL && ds_verdict_exit_code(worst) > vr)
            vr = ds_verdict_exit_code(worst);
        if (vr > rc)
            rc = vr;
        free(v);
        ds_lag_free(&r);
    }
    if (c->json) {
        if (many)
            one = json_pack("{so}", "groups", groups);
        else if (json_array_size(groups) > 0)
            one = json_incref(json_array_get(groups, 0));
        else
            one = json_object();
        if (!many)
            json_decref(groups);
        if (ds_json_print(one, 1) < 0) {
            fprintf(stderr, "despooler lag: writing the JSON output "
                            "failed\n");
            rc = 3;
        }
    }
    fflush(stdout);
    return rc;
}

static int lag_run(lag_cli *c)
{
    ds_err err;
    char **listed = NULL;
    int nlisted = 0, rc = 0;
    if (c->all_sites) {
        if (ds_lag_list_sites(&c->o, &listed, &nlisted, &err) < 0) {
            fprintf(stderr, "despooler lag: %s\n", err.msg);
            return 3;
        }
        for (int i = 0; i < nlisted && c->nsites < LAG_MAX_SITES; i++)
            c->sites[c->nsites++] = listed[i];
        if (c->nsites == 0)
            fprintf(stderr, "despooler lag: no site on this cluster "
                            "(no consumer group despool.*)\n");
    }
    ds_lagwatch *watch[LAG_MAX_SITES] = {0};
    for (int i = 0; c->watch > 0 && i < c->nsites; i++)
        if (ds_lagwatch_new(c->window, (uint64_t)(c->stop_after * 1000),
                            &watch[i], &err) < 0) {
            fprintf(stderr, "despooler lag: %s\n", err.msg);
            rc = 2;
            goto out;
        }
    int tty = isatty(STDOUT_FILENO) && !c->json;
    install_signals();
    for (unsigned long n = 1; !stop_flag; n++) {
        if (c->watch > 0 && !c->json) {
            char ts[32];
            time_t t = time(NULL);
            strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", localtime(&t));
            printf("%sdespooler lag: sample %lu, every %gs, window %d samples, "
                   "STOP after %gs without a commit  %s\n",
                   tty     ? "\033[H\033[2J"
                   : n > 1 ? "\n"
                           : "",
                   n, c->watch, c->window, c->stop_after, ts);
        }
        rc = lag_sample(c, c->watch > 0 ? watch : NULL);
        if (c->watch <= 0 || (c->count && n >= c->count))
            break;
        for (uint64_t end = ds_mono_ms() + (uint64_t)(c->watch * 1000);
             !stop_flag && ds_mono_ms() < end;)
            usleep(50000);
    }
out:
    for (int i = 0; i < c->nsites; i++)
        ds_lagwatch_free(watch[i]);
    for (int i = 0; i < nlisted; i++)
        free(listed[i]);
    free(listed);
    return rc;
}

static int cmd_lag(int argc, char **argv)
{
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},
        {"site", required_argument, NULL, 's'},
        {"all-sites", no_argument, NULL, OPT_ALL_SITES},
        {"json", no_argument, NULL, OPT_JSON},
        {"warn-lag", required_argument, NULL, OPT_WARN_LAG},
        {"crit-lag", required_argument, NULL, OPT_CRIT_LAG},
        {"max-time-lag", required_argument, NULL, OPT_MAX_TIME_LAG},
        {"watch", required_argument, NULL, OPT_WATCH},
        {"window", required_argument, NULL, OPT_WINDOW_SAMPLES},
        {"stop-after", required_argument, NULL, OPT_STOP_AFTER},
        {"count", required_argument, NULL, OPT_COUNT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ds_kconf kc = {0};
    lag_cli c = {
        .o = {.kc = &kc, .timeout_ms = 10000},
        .warn = -1,
        .crit = -1,
        .max_time_lag = -1,
        .window = 10,
        .stop_after = 300,
    };
    int opt, rc = 0;
    uint64_t v;
    while (rc == 0 &&
           (opt = getopt_long(argc, argv, "b:X:F:s:h", opts, NULL)) != -1) {
        if (kafka_opt(opt, "lag", &kc, &rc))
            continue;
        switch (opt) {
        case 's':
            if (!ds_site_valid(optarg, strlen(optarg)))
                rc = fail("lag", "--site: letters, digits, . _ - (at most "
                                 "128), starting with a letter or digit");
            else if (c.nsites == LAG_MAX_SITES)
                rc = fail("lag", "--site: too many sites");
            else
                c.sites[c.nsites++] = optarg;
            break;
        case OPT_ALL_SITES:
            c.all_sites = 1;
            break;
        case OPT_JSON:
            c.json = 1;
            break;
        case OPT_WARN_LAG:
        case OPT_CRIT_LAG:
            if (ds_parse_u64(optarg, &v) < 0 || v > (uint64_t)INT64_MAX)
                rc = fail("lag", "--warn-lag/--crit-lag: expected a number "
                                 "of events");
            *(opt == OPT_WARN_LAG ? &c.warn : &c.crit) = (long long)v;
            break;
        case OPT_MAX_TIME_LAG:
            if (ds_parse_decimal(optarg, &c.max_time_lag) < 0)
                rc = fail("lag", "--max-time-lag: expected seconds");
            break;
        case OPT_WATCH:
            if (ds_parse_decimal(optarg, &c.watch) < 0 || c.watch < 0.2 ||
                c.watch > 86400)
                rc = fail("lag", "--watch: expected seconds, 0.2 .. 86400");
            break;
        case OPT_WINDOW_SAMPLES:
            if (ds_parse_u64(optarg, &v) < 0 || v < 2 || v > 10000)
                rc = fail("lag", "--window: expected 2..10000 samples");
            c.window = (int)v;
            break;
        case OPT_STOP_AFTER:
            if (ds_parse_decimal(optarg, &c.stop_after) < 0 ||
                c.stop_after <= 0)
                rc = fail("lag", "--stop-after: expected seconds > 0");
            break;
        case OPT_COUNT:
            if (ds_parse_u64(optarg, &v) < 0 || v < 1)
                rc = fail("lag", "--count: expected a number >= 1");
            c.count = (unsigned long)v;
            break;
        case OPT_LOG_LEVEL:
            rc = log_level_opt("lag", optarg);
            break;
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
    if (rc == 0 && c.nsites == 0 && !c.all_sites)
        rc = fail("lag", "--site SITE or --all-sites is required");
    if (rc == 0 && c.nsites > 0 && c.all_sites)
        rc = fail("lag", "--site and --all-sites exclude each other");
    if (rc == 0 && (c.count || c.window != 10 || c.stop_after != 300) &&
        c.watch <= 0)
        rc = fail("lag", "--count, --window and --stop-after need --watch");
    if (rc == 0 && kc.bootstrap == NULL)
        rc = fail("lag", "-b BOOTSTRAP is required (host:port or @FILE; or "
                         "bootstrap.servers in -F FILE)");
    /* A usage error is UNKNOWN (3) here, as monitoring plugins expect, so
     * that a typo in a check's command line never reads as CRITICAL. */
    if (rc == 2)
        rc = 3;
    if (rc == 0)
        rc = lag_run(&c);
    ds_kconf_free(&kc);
    return rc;
}

/* --serve: the feed and the server until a signal. */
static int status_serve(const char *addr, ds_feed_opts *fo)
{
    ds_err err;
    ds_feed *f = NULL;
    ds_statusd *d = NULL;
    char bound[160];
    install_signals();
    /* The address first: a typo or a busy port fails before any thread
     * talks to the broker. */
    int fd = -1;
    if (ds_listen("--serve", addr, &fd, bound, sizeof(bound), &err) < 0) {
        fprintf(stderr, "despooler status: %s\n", err.msg);
        return 2;
    }
    if (ds_feed_start(fo, &f, &err) < 0) {
        close(fd);
        fprintf(stderr, "despooler status: %s\n", err.msg);
        return 2;
    }
    if (ds_statusd_start(fd, bound, f, &d, &err) < 0) {
        ds_feed_stop(f);
        fprintf(stderr, "despooler status: %s\n", err.msg);
        return 2;
    }
    char url[200];
    snprintf(url, sizeof(url), "http://%s/", bound);
    ds_info("serving", "url=%s refresh_s=%g lag_every_s=%g", url, fo->refresh_s,
            fo->lag_every_s);
    while (!stop_flag)
        usleep(100000);
    ds_info("stopping", "signal=%d", (int)stop_flag);
    ds_statusd_stop(d);
    ds_feed_stop(f);
    return 0;
}

static int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},
        {"package", required_argument, NULL, 'p'},
        {"site", required_argument, NULL, 's'},
        {"max-behind", required_argument, NULL, OPT_MAX_BEHIND},
        {"json", no_argument, NULL, OPT_JSON},
        {"serve", required_argument, NULL, OPT_SERVE},
        {"refresh", required_argument, NULL, OPT_REFRESH},
        {"lag-every", required_argument, NULL, OPT_LAG_EVERY},
        {"window", required_argument, NULL, OPT_WINDOW_SAMPLES},
        {"stop-after", required_argument, NULL, OPT_STOP_AFTER},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ds_kconf kc = {0};
    ds_status_opts o = {.kc = &kc, .max_behind_s = 3600, .timeout_ms = 10000};
    ds_feed_opts fo = {.kc = &kc,
                       .refresh_s = 5,
                       .lag_every_s = 30,
                       .window = 10,
                       .stop_after_s = 300,
                       .timeout_ms = 10000};
    const char *serve = NULL;
    int c, rc = 0, page_opts = 0;
    uint64_t v;
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
            if (ds_parse_u64(optarg, &o.max_behind_s) < 0 ||
                o.max_behind_s > UINT64_MAX / 1000)
                rc = fail("status", "--max-behind: expected seconds");
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case OPT_SERVE:
            serve = optarg;
            break;
        case OPT_REFRESH:
            page_opts = 1;
            if (ds_parse_decimal(optarg, &fo.refresh_s) < 0 ||
                fo.refresh_s < 0.5 || fo.refresh_s > 3600)
                rc = fail("status", "--refresh: expected seconds, 0.5 .. 3600");
            break;
        case OPT_LAG_EVERY:
            page_opts = 1;
            if (ds_parse_decimal(optarg, &fo.lag_every_s) < 0 ||
                fo.lag_every_s < 0.5 || fo.lag_every_s > 3600)
                rc = fail("status",
                          "--lag-every: expected seconds, 0.5 .. 3600");
            break;
        case OPT_WINDOW_SAMPLES:
            page_opts = 1;
            if (ds_parse_u64(optarg, &v) < 0 || v < 2 || v > 10000)
                rc = fail("status", "--window: expected 2..10000 samples");
            fo.window = (int)v;
            break;
        case OPT_STOP_AFTER:
            page_opts = 1;
            if (ds_parse_decimal(optarg, &fo.stop_after_s) < 0 ||
                fo.stop_after_s <= 0)
                rc = fail("status", "--stop-after: expected seconds > 0");
            break;
        case OPT_LOG_LEVEL:
            rc = log_level_opt("status", optarg);
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
    if (rc == 0 && serve == NULL && page_opts)
        rc = fail("status", "--refresh, --lag-every, --window and "
                            "--stop-after need --serve");
    if (rc == 0 && serve != NULL && (o.json || o.package || o.site))
        rc = fail("status", "--serve shows every package and site (the page "
                            "filters them); --json, --package and --site "
                            "are for the table");
    if (rc == 0 && kc.bootstrap == NULL)
        rc = fail("status", "-b BOOTSTRAP is required (host:port or @FILE; or "
                            "bootstrap.servers in -F FILE)");
    if (rc == 0 && serve != NULL) {
        fo.max_behind_s = o.max_behind_s;
        rc = status_serve(serve, &fo);
    } else if (rc == 0) {
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
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
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
        case OPT_LOG_LEVEL:
            if (log_level_opt("dev-broker", optarg) != 0)
                return 2;
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
    if (strcmp(cmd, "--version") == 0) {
        printf("despooler %s\nlibrdkafka %s\n", DESPOOL_VERSION,
               rd_kafka_version_str());
        return 0;
    }
    /* getopt sees the command's own argv, with "despooler COMMAND" as
     * argv[0]: its messages name the program and the command. */
    char prog[64];
    snprintf(prog, sizeof(prog), "despooler %s", cmd);
    argc--;
    argv++;
    argv[0] = prog;
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
