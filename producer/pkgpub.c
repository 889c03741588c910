/*
 * pkgpub.c - the command line of pkgpub: publish one version of one
 * package from a directory or a tar file (ds_publish), retire a package
 * (ds_retire), make a signing key pair. Parses options, prints what was
 * done. Only this file exits.
 */
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "jsonout.h"
#include "kconf.h"
#include "log.h"
#include "publish.h"
#include "sign.h"
#include "numparse.h"

static void usage(FILE *out)
{
    fputs(
        "Usage: pkgpub -b BOOTSTRAP -p PACKAGE -V VERSION [OPTIONS] SOURCE\n"
        "       pkgpub retire -b BOOTSTRAP -p PACKAGE [-t ID] [--timeout S] "
        "[--json]\n"
        "       pkgpub keygen --key-id ID [--dir DIR]\n"
        "\n"
        "Publish VERSION of PACKAGE from SOURCE (a directory or a tar file)\n"
        "in one Kafka transaction. Schema 2 (the default): the tar stream\n"
        "cut into parts of 128-896 KiB where its content says (so a change\n"
        "moves only the cuts near it) on pkg.content (parts the package's\n"
        "newest manifest already references are reused, not sent), a\n"
        "manifest on pkg.updates keyed by PACKAGE, tombstones for the parts\n"
        "it no longer references; up to 256 KiB compressed, the manifest\n"
        "carries the bytes itself. Schema 1: chunk events on pkg.updates.\n"
        "\n"
        "Kafka:\n"
        "  -b, --bootstrap LIST      brokers host:port[,..], or @FILE\n"
        "  -X KEY=VALUE              librdkafka setting (repeatable)\n"
        "  -F FILE                   librdkafka settings file (key=value);\n"
        "                            its bootstrap.servers serves when -b\n"
        "                            is not given (-b wins)\n"
        "  -t, --transactional-id ID (default pkgpub-PACKAGE, schema 1:\n"
        "                            pkgpub-HOST-PACKAGE). Schema 2 needs\n"
        "                            one publisher per package: the same id\n"
        "                            everywhere fences a concurrent one\n"
        "      --timeout SECONDS     how long a step waits for the cluster\n"
        "                            (metadata, init transactions, the\n"
        "                            package's newest record, a flush, the\n"
        "                            commit) before pkgpub gives up: no\n"
        "                            answer (1..3600, default 30)\n"
        "  transaction.timeout.ms (the coordinator aborts a transaction still\n"
        "  open that long) is sized to the upload: 30 s plus the compressed\n"
        "  size (schema 2: the tar's size, known before sending) at 2 MiB/s,\n"
        "  at least 60 s, at most the brokers' transaction.max.timeout.ms\n"
        "  (default 15 min, reached at 1.7 GiB; beyond, a slower upload is\n"
        "  aborted: pkgpub warns). -X transaction.timeout.ms=MS wins. A\n"
        "  failed transaction is aborted (retried up to 2 min while the\n"
        "  broker does not answer), or pkgpub says that it is still open,\n"
        "  what holds it and what ends it. A schema 2 publication whose\n"
        "  transaction the cluster aborted (a partition leader or the\n"
        "  coordinator moved: a broker failed) is run again, up to 3\n"
        "  attempts in all (log line publish-retry; --json: attempts).\n"
        "  The embedded broker (despooler dev-broker) keeps 5 MiB per\n"
        "  partition: pkgpub refuses there, before sending, a schema 1\n"
        "  update over 4 MiB, or a schema 2 version whose new parts would\n"
        "  put over 4 MiB into one pkg.content partition or over 1 MiB per\n"
        "  partition into all (24 MiB with 24); use Apache Kafka for more:\n"
        "  scripts/kafka start.\n"
        "Update:\n"
        "  -p, --package PACKAGE     [A-Za-z0-9][A-Za-z0-9._-]{0,127}\n"
        "  -V, --version N           positive integer, increasing per package\n"
        "      --schema 1|2          event schema (default 2)\n"
        "  -L, --level N             zstd level 1..19 (default 3)\n"
        "  -T, --threads N           zstd threads (default 0: schema 1 one,\n"
        "                            schema 2 one per core)\n"
        "      --chunk-size BYTES    schema 1: chunk payload (default and max\n"
        "                            921600)\n"
        "      --cut content|fixed   schema 2: where parts end: content\n"
        "                            (default; schemas/v2 section 8) or every\n"
        "                            896 KiB (every --part-size BYTES)\n"
        "      --part-size BYTES     schema 2, --cut fixed: parts of BYTES\n"
        "                            (1024 .. 917504, the default; tests)\n"
        "Signing (Ed25519; sites with --trusted-keys require it):\n"
        "      --sign-key FILE       private key (PEM), e.g. from pkgpub "
        "keygen\n"
        "      --key-id ID           key id sent with the signature (default:\n"
        "                            FILE's name without .key/.pem)\n"
        "Output:\n"
        "      --json                print one JSON object\n"
        "      --progress            progress bar even when not a terminal\n"
        "      --no-progress         never a progress bar\n"
        "      --log-level LEVEL     error, warn, info (default) or debug\n"
        "  -h, --help                this text\n"
        "      --version             (alone) print pkgpub's version\n"
        "\n"
        "retire writes, in one transaction, a tombstone for PACKAGE on\n"
        "pkg.updates (sites drop or keep it as configured), tombstones for\n"
        "the parts of its newest manifest and the status `retired`. A package\n"
        "already retired, or never published: nothing to do, exit 0.\n"
        "keygen writes DIR/ID.key (private, mode 0600: keep it with the\n"
        "publisher) and DIR/ID.pub (public: copy it into each site's\n"
        "--trusted-keys directory). DIR defaults to the current directory.\n",
        out);
}

static int fail(const char *msg)
{
    fprintf(stderr, "pkgpub: %s\n", msg);
    return 2;
}

/* --timeout SECONDS into milliseconds; 2 (usage) when out of range. */
static int parse_timeout(const char *arg, int *ms)
{
    uint64_t v;
    if (ds_parse_u64(arg, &v) < 0 || v < 1 || v > 3600)
        return fail("--timeout: expected seconds, 1..3600");
    *ms = (int)v * 1000;
    return 0;
}

enum {
    OPT_JSON = 256,
    OPT_PROGRESS,
    OPT_NO_PROGRESS,
    OPT_CHUNK,
    OPT_SIGN_KEY,
    OPT_KEY_ID,
    OPT_DIR,
    OPT_SCHEMA,
    OPT_PART_SIZE,
    OPT_CUT,
    OPT_TIMEOUT,
    OPT_LOG_LEVEL,
};

/* --log-level LEVEL: DESPOOL_LOG_LEVEL for ds_log (log.h), set while
 * parsing, before any thread starts. Returns 0 or 2 (usage). */
static int log_level_opt(const char *level)
{
    if (ds_log_level_set(level) < 0)
        return fail("--log-level: expected error, warn, info or debug");
    return 0;
}

static const char *form_name(int form)
{
    return form == DS_FORM_INLINE  ? "inline"
           : form == DS_FORM_PARTS ? "parts"
           : form == DS_FORM_INDEX ? "index"
                                   : "?";
}

static void print_human(const ds_publish_opts *o, const ds_publish_result *r)
{
    char id[2 * DS_UPDATE_ID_LEN + 1], sha[2 * DS_SHA256_LEN + 1];
    double ratio =
        r->st.size ? 100.0 * (double)r->st.zsize / (double)r->st.size : 0.0;
    printf("published %s version %" PRIu64 "\n", o->package, o->version);
    printf("  update_id   %s\n", ds_hex(id, r->update_id, DS_UPDATE_ID_LEN));
    printf("  files       %" PRIu64 "\n", r->st.files);
    printf("  bytes       %" PRIu64 " -> %" PRIu64 " zstd (%.1f%%)\n",
           r->st.size, r->st.zsize, ratio);
    if (r->schema == 2) {
        printf("  schema      2, form %s\n", form_name(r->form));
        printf("  parts       %" PRIu64 " (sent %" PRIu64 ", reused %" PRIu64
               ", tombstoned %" PRIu64 ")",
               r->parts, r->parts_sent, r->parts_reused, r->parts_tombstoned);
        if (r->index_parts > 0)
            printf(", index %" PRIu64 " parts", r->index_parts);
        printf("\n");
        printf("  sent        %" PRIu64 " bytes to %s, referenced %" PRIu64
               " bytes it holds\n",
               r->content_bytes, DS_TOPIC_CONTENT, r->reused_bytes);
        printf("  manifest    %s partition %" PRId32 " offset %" PRId64 "\n",
               DS_TOPIC_UPDATES, r->partition, r->first_offset);
    } else {
        printf("  chunks      %" PRIu32 "\n", r->chunks);
        printf("  partition   %" PRId32 "\n", r->partition);
        printf("  offsets     %" PRId64 "..%" PRId64 "\n", r->first_offset,
               r->last_offset);
    }
    printf("  sha256      %s\n", ds_hex(sha, r->st.sha256, DS_SHA256_LEN));
    if (r->signed_by[0] != '\0')
        printf("  signed by   %s (Ed25519)\n", r->signed_by);
    printf("  took        pack %.2fs, send %.2fs\n", r->pack_secs,
           r->send_secs);
    printf("  txn timeout %d ms\n", r->txn_timeout_ms);
}

/* The publish result as one JSON object (keys in the documented order). */
static int print_json(const ds_publish_opts *o, const ds_publish_result *r)
{
    char id[2 * DS_UPDATE_ID_LEN + 1], sha[2 * DS_SHA256_LEN + 1];
    json_t *j = json_object();
    if (j == NULL)
        return -1;
    int e = 0;
    e |= json_object_set_new(j, "package", ds_json_text(o->package));
    e |=
        json_object_set_new(j, "version", json_integer((json_int_t)o->version));
    e |= json_object_set_new(
        j, "update_id",
        json_string(ds_hex(id, r->update_id, DS_UPDATE_ID_LEN)));
    e |= json_object_set_new(j, "files", json_integer((json_int_t)r->st.files));
    e |= json_object_set_new(j, "size", json_integer((json_int_t)r->st.size));
    e |= json_object_set_new(j, "zsize", json_integer((json_int_t)r->st.zsize));
    e |= json_object_set_new(j, "chunks", json_integer(r->chunks));
    e |= json_object_set_new(j, "topic", json_string(DS_TOPIC_UPDATES));
    e |= json_object_set_new(j, "partition", json_integer(r->partition));
    e |= json_object_set_new(j, "first_offset", json_integer(r->first_offset));
    e |= json_object_set_new(j, "last_offset", json_integer(r->last_offset));
    e |= json_object_set_new(
        j, "sha256", json_string(ds_hex(sha, r->st.sha256, DS_SHA256_LEN)));
    e |= json_object_set_new(j, "transactional_id",
                             ds_json_text(r->transactional_id));
    e |= json_object_set_new(j, "transaction_timeout_ms",
                             json_integer(r->txn_timeout_ms));
    e |= json_object_set_new(j, "pack_seconds", ds_json_secs(r->pack_secs));
    e |= json_object_set_new(j, "send_seconds", ds_json_secs(r->send_secs));
    if (r->signed_by[0] != '\0') {
        char sig[2 * DS_SIG_LEN + 1];
        e |= json_object_set_new(j, "key_id", ds_json_text(r->signed_by));
        e |= json_object_set_new(j, "sig",
                                 json_string(ds_hex(sig, r->sig, DS_SIG_LEN)));
    }
    e |= json_object_set_new(j, "schema", json_integer(r->schema));
    if (r->schema == 2) {
        e |= json_object_set_new(j, "form", json_string(form_name(r->form)));
        e |=
            json_object_set_new(j, "parts", json_integer((json_int_t)r->parts));
        e |= json_object_set_new(j, "parts_sent",
                                 json_integer((json_int_t)r->parts_sent));
        e |= json_object_set_new(j, "parts_reused",
                                 json_integer((json_int_t)r->parts_reused));
        e |= json_object_set_new(j, "parts_tombstoned",
                                 json_integer((json_int_t)r->parts_tombstoned));
        e |= json_object_set_new(j, "index_parts",
                                 json_integer((json_int_t)r->index_parts));
        e |= json_object_set_new(j, "content_bytes",
                                 json_integer((json_int_t)r->content_bytes));
        e |= json_object_set_new(j, "reused_bytes",
                                 json_integer((json_int_t)r->reused_bytes));
        e |= json_object_set_new(j, "attempts", json_integer(r->attempts));
    }
    if (e != 0) {
        json_decref(j);
        return -1;
    }
    return ds_json_print(j, 1);
}

/* pkgpub keygen --key-id ID [--dir DIR] */
static int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key-id", required_argument, NULL, OPT_KEY_ID},
        {"dir", required_argument, NULL, OPT_DIR},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *id = NULL, *dir = ".";
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_KEY_ID:
            id = optarg;
            break;
        case OPT_DIR:
            dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc)
        return fail("keygen: unexpected argument (see --help)");
    if (id == NULL)
        return fail("keygen: --key-id ID is required");
    char priv[4096], pub[4096];
    ds_err err;
    if (ds_keygen(dir, id, priv, pub, &err) < 0) {
        fprintf(stderr, "pkgpub: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s (private: keep it secret) and %s (public: copy it into "
           "each site's --trusted-keys directory)\n",
           priv, pub);
    return 0;
}

static int print_retire(const ds_publish_opts *o, const ds_retire_result *r,
                        int json)
{
    if (json) {
        json_t *j = json_object();
        int e = 0;
        e |= json_object_set_new(j, "package", ds_json_text(o->package));
        e |= json_object_set_new(j, "retired", json_boolean(r->retired));
        e |= json_object_set_new(j, "parts_tombstoned",
                                 json_integer((json_int_t)r->parts_tombstoned));
        e |= json_object_set_new(j, "partition", json_integer(r->partition));
        e |= json_object_set_new(j, "offset", json_integer(r->offset));
        if (r->nothing != NULL)
            e |= json_object_set_new(j, "nothing_to_do",
                                     ds_json_text(r->nothing));
        e |= json_object_set_new(j, "transactional_id",
                                 ds_json_text(r->transactional_id));
        if (e) {
            json_decref(j);
            return -1;
        }
        return ds_json_print(j, 1);
    }
    if (!r->retired) {
        if (r->offset >= 0)
            printf("%s: already retired (a tombstone at %s partition %" PRId32
                   " offset %" PRId64 "): nothing to do\n",
                   o->package, DS_TOPIC_UPDATES, r->partition, r->offset);
        else
            printf("%s: no record on %s (partition %" PRId32
                   "): nothing to do\n",
                   o->package, DS_TOPIC_UPDATES, r->partition);
        return 0;
    }
    printf("retired %s\n", o->package);
    printf("  tombstone   %s partition %" PRId32 " offset %" PRId64 "\n",
           DS_TOPIC_UPDATES, r->partition, r->offset);
    printf("  parts       %" PRIu64 " tombstoned on %s\n", r->parts_tombstoned,
           DS_TOPIC_CONTENT);
    if (r->version > 0)
        printf("  was version %" PRIu64 "\n", r->version);
    return 0;
}

/* pkgpub retire -b B -p PACKAGE [-t ID] [-X ..] [-F ..] [--json] */
static int cmd_retire(int argc, char **argv)
{
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},
        {"package", required_argument, NULL, 'p'},
        {"transactional-id", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", no_argument, NULL, OPT_JSON},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ds_kconf kc = {0};
    ds_publish_opts o = {.kc = &kc, .schema = 2, .timeout_ms = 30000};
    int c, rc = 0, json = 0;
    ds_err err;
    while (rc == 0 &&
           (c = getopt_long(argc, argv, "b:X:F:p:t:h", opts, NULL)) != -1) {
        int k = ds_kconf_option(&kc, c, optarg, &err);
        if (k < 0)
            rc = fail(err.msg);
        if (k != 0)
            continue;
        switch (c) {
        case 'p':
            o.package = optarg;
            break;
        case 't':
            o.transactional_id = optarg;
            break;
        case OPT_TIMEOUT:
            rc = parse_timeout(optarg, &o.timeout_ms);
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_LOG_LEVEL:
            rc = log_level_opt(optarg);
            break;
        case 'h':
            usage(stdout);
            ds_kconf_free(&kc);
            return 0;
        default:
            usage(stderr);
            rc = 2;
            break;
        }
    }
    if (rc == 0 && optind != argc)
        rc = fail("retire: unexpected argument (see --help)");
    if (rc == 0 && o.package == NULL)
        rc = fail("retire: -p PACKAGE is required");
    if (rc == 0 && kc.bootstrap == NULL)
        rc = fail("retire: -b BOOTSTRAP is required (host:port or @FILE; "
                  "or bootstrap.servers in -F FILE)");
    if (rc == 0) {
        ds_retire_result r;
        if (ds_retire(&o, &r, &err) < 0) {
            fprintf(stderr, "pkgpub: retire %s: %s\n", o.package, err.msg);
            if (r.hint[0] != '\0')
                fprintf(stderr, "pkgpub: %s\n", r.hint);
            rc = 1;
        } else if (print_retire(&o, &r, json) < 0) {
            fprintf(stderr,
                    "pkgpub: retire %s: writing the JSON result "
                    "failed (out of memory)\n",
                    o.package);
            rc = 1;
        }
    }
    ds_kconf_free(&kc);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},
        {"package", required_argument, NULL, 'p'},
        {"version", required_argument, NULL, 'V'},
        {"level", required_argument, NULL, 'L'},
        {"threads", required_argument, NULL, 'T'},
        {"transactional-id", required_argument, NULL, 't'},
        {"chunk-size", required_argument, NULL, OPT_CHUNK},
        {"json", no_argument, NULL, OPT_JSON},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
        {"sign-key", required_argument, NULL, OPT_SIGN_KEY},
        {"key-id", required_argument, NULL, OPT_KEY_ID},
        {"schema", required_argument, NULL, OPT_SCHEMA},
        {"part-size", required_argument, NULL, OPT_PART_SIZE},
        {"cut", required_argument, NULL, OPT_CUT},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* --version alone is the program's version; with an argument (or as
     * -V N) it stays the package version to publish. */
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("pkgpub %s\nlibrdkafka %s\n", DESPOOL_VERSION,
               rd_kafka_version_str());
        return 0;
    }
    /* getopt's messages name the program (argv[0] may be a path) and
     * the command: "pkgpub retire: unrecognized option ...". */
    char prog[] = "pkgpub", keygen[] = "pkgpub keygen",
         retire[] = "pkgpub retire";
    argv[0] = prog;
    if (argc > 1 && strcmp(argv[1], "keygen") == 0) {
        argv[1] = keygen;
        return cmd_keygen(argc - 1, argv + 1);
    }
    if (argc > 1 && strcmp(argv[1], "retire") == 0) {
        argv[1] = retire;
        return cmd_retire(argc - 1, argv + 1);
    }
    ds_kconf kc = {0};
    const char *sign_key = NULL, *key_id = NULL;
    ds_signer *signer = NULL;
    ds_publish_opts o = {
        .kc = &kc,
        .schema = 2,
        .level = 3,
        .chunk_size = DS_CHUNK_MAX,
        .timeout_ms = 30000,
    };
    int c, rc = 0, json = 0, cut = -1;
    uint64_t v;
    ds_err err;
    while (rc == 0 && (c = getopt_long(argc, argv, "b:X:F:p:V:L:T:t:h", opts,
                                       NULL)) != -1) {
        int k = ds_kconf_option(&kc, c, optarg, &err);
        if (k < 0)
            rc = fail(err.msg);
        if (k != 0)
            continue;
        switch (c) {
        case 'p':
            o.package = optarg;
            break;
        case 'V':
            if (ds_parse_u64(optarg, &o.version) < 0 || o.version == 0)
                rc = fail("--version: expected a positive integer");
            break;
        case 'L':
            if (ds_parse_u64(optarg, &v) < 0 || v < 1 || v > 19)
                rc = fail("--level: expected 1..19");
            o.level = (int)v;
            break;
        case 'T':
            if (ds_parse_u64(optarg, &v) < 0 || v > 64)
                rc = fail("--threads: expected 0..64");
            o.threads = (int)v;
            break;
        case 't':
            o.transactional_id = optarg;
            break;
        case OPT_CHUNK:
            if (ds_parse_u64(optarg, &v) < 0 || v < 1024 || v > DS_CHUNK_MAX)
                rc = fail("--chunk-size: expected 1024..921600");
            o.chunk_size = (size_t)v;
            break;
        case OPT_PART_SIZE:
            if (ds_parse_u64(optarg, &v) < 0 || v < 1024 || v > DS_PART_MAX)
                rc = fail("--part-size: expected 1024..917504");
            o.part_size = (size_t)v;
            break;
        case OPT_CUT:
            if (strcmp(optarg, "content") == 0)
                cut = DS_CUT_CONTENT;
            else if (strcmp(optarg, "fixed") == 0)
                cut = DS_CUT_FIXED;
            else
                rc = fail("--cut: expected content or fixed");
            break;
        case OPT_SCHEMA:
            if (strcmp(optarg, "1") == 0 || strcmp(optarg, "2") == 0)
                o.schema = optarg[0] - '0';
            else
                rc = fail("--schema: expected 1 or 2");
            break;
        case OPT_TIMEOUT:
            rc = parse_timeout(optarg, &o.timeout_ms);
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_PROGRESS:
            o.progress = 1;
            break;
        case OPT_NO_PROGRESS:
            o.progress = -1;
            break;
        case OPT_SIGN_KEY:
            sign_key = optarg;
            break;
        case OPT_KEY_ID:
            key_id = optarg;
            break;
        case OPT_LOG_LEVEL:
            rc = log_level_opt(optarg);
            break;
        case 'h':
            usage(stdout);
            ds_kconf_free(&kc);
            return 0;
        default:
            usage(stderr);
            rc = 2;
            break;
        }
    }
    if (rc == 0 && optind != argc - 1)
        rc = fail(optind >= argc ? "SOURCE is required (a directory or a tar "
                                   "file)"
                                 : "only one SOURCE may be given");
    if (rc == 0 && o.package == NULL)
        rc = fail("-p PACKAGE is required");
    if (rc == 0 && o.version == 0)
        rc = fail("-V VERSION is required");
    if (rc == 0 && kc.bootstrap == NULL)
        rc = fail("-b BOOTSTRAP is required (host:port or @FILE; or "
                  "bootstrap.servers in -F FILE)");
    if (rc == 0 && o.schema == 2 && o.chunk_size != DS_CHUNK_MAX)
        rc = fail("--chunk-size is for --schema 1 (schema 2 cuts parts of "
                  "896 KiB)");
    if (rc == 0 && o.schema == 1 && o.part_size != 0)
        rc = fail("--part-size is for --schema 2");
    if (rc == 0 && o.schema == 1 && cut >= 0)
        rc = fail("--cut is for --schema 2");
    if (rc == 0 && cut == DS_CUT_CONTENT && o.part_size != 0)
        rc = fail("--part-size is for --cut fixed");
    /* --part-size alone: fixed cuts of that size (what tests ask for). */
    o.cut = cut >= 0 ? cut : o.part_size != 0 ? DS_CUT_FIXED : DS_CUT_CONTENT;
    if (rc == 0 && key_id != NULL && sign_key == NULL)
        rc = fail("--key-id needs --sign-key");
    if (rc == 0 && sign_key != NULL &&
        ds_signer_load(sign_key, key_id, &signer, &err) < 0)
        rc = fail(err.msg);
    if (rc == 0) {
        o.source = argv[optind];
        o.signer = signer;
        ds_publish_result r;
        if (ds_publish(&o, &r, &err) < 0) {
            fprintf(stderr,
                    "pkgpub: publish %s version %" PRIu64 " from %s: "
                    "%s\n",
                    o.package, o.version, o.source, err.msg);
            if (r.hint[0] != '\0')
                fprintf(stderr, "pkgpub: %s\n", r.hint);
            rc = 1;
        } else if (json && print_json(&o, &r) < 0) {
            fprintf(stderr,
                    "pkgpub: publish %s version %" PRIu64 ": writing the JSON "
                    "result failed (out of memory)\n",
                    o.package, o.version);
            rc = 1;
        } else if (!json) {
            print_human(&o, &r);
        }
    }
    ds_signer_free(signer);
    ds_kconf_free(&kc);
    return rc;
}
