/*
 * ktool.c - test helper, not installed: put a raw event on a topic, dump
 * a topic (read_committed, from the beginning to its end) one line per
 * message with its headers, or get the record at one offset. Lets
 * integration tests send malformed events and tombstones, read dead
 * letters and status records without kcat, and look at what compaction
 * left of a topic.
 *
 *   ktool put  -b BOOTSTRAP -t TOPIC -k KEY [-p PARTITION] FILE...
 *              (one event per FILE, in order, one producer)
 *   ktool put  -b BOOTSTRAP -t TOPIC -k KEY [-p PARTITION] -n
 *              (one record with a null value: a tombstone)
 *   ktool put  -b BOOTSTRAP -t TOPIC -l LIST [-r PER_SECOND]
 *              (LIST: lines "KEY FILE"; at most PER_SECOND events a
 *              second; prints "delivered partition=P offset=O key=K
 *              ts=MS" per event, MS the wall clock when it was produced,
 *              also its create time: for benchmarks)
 *   ktool dump -b BOOTSTRAP -t TOPIC [-p PARTITION]   (until end of topic,
 *              or of that one partition)
 *   ktool partition COUNT KEY...
 *              (the partition librdkafka's default partitioner,
 *              murmur2_random, and so pkgpub, puts KEY in of a topic
 *              with COUNT partitions, one line per KEY; no broker)
 *   ktool get  -b BOOTSTRAP -t TOPIC -p PARTITION -o OFFSET [-x]
 *              (the first record at or after OFFSET; exit 0 if it is at
 *              exactly OFFSET, 3 if it is at a later offset or there is
 *              none up to the partition's end, 1 on errors)
 *
 * dump and get print one line per record:
 *   partition=P offset=O key=K len=N|null h.NAME="VALUE" ...
 * len=null is a null value (a tombstone), len=0 an empty one. get -x adds
 * value_hex=HEX (the whole value; nothing for a null value). When get
 * finds no record it prints "partition=P offset=none from=O end=E" (E the
 * partition's end as read_committed sees it, or "out-of-range").
 * (One line per record with its key and null|len is what a "keys" command
 * would print: dump is that command.) dump -m: after each schema v2
 * manifest's line, "manifest version=V form=F nparts=N zsize=Z refs=R"
 * and one "ref I id=HEX size=S zsize=Z partition=P offset=O" line per
 * entry of its parts or index array ("manifest invalid: ..." if it does
 * not decode); after each status record's line, "status site=S
 * package=P version=V state=T".
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <librdkafka/rdkafka.h>

#include "fsutil.h"
#include "kconf.h"
#include "kmeta.h"
#include "log.h"
#include "manifest.h"

typedef struct put_state {
    int failed;
    int verbose; /* print a line per delivered event */
} put_state;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
    (void)rk;
    put_state *ps = opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "ktool put: delivery failed: %s\n",
                rd_kafka_err2str(m->err));
        ps->failed++;
    } else if (ps->verbose) {
        /* The produce time travels as the message's opaque: the
         * embedded broker answers every produce with a fixed
         * LogAppendTime, which replaces the create time here. */
        printf("delivered partition=%d offset=%lld key=%.*s ts=%lld\n",
               (int)m->partition, (long long)m->offset, (int)m->key_len,
               (const char *)m->key, (long long)(intptr_t)m->_private);
    }
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* keys[i] may be NULL: then key. files[i] NULL: a null value (tombstone).
 * rate > 0: at most rate events a second. */
static int put(const ds_kconf *kc, const char *topic, int32_t partition,
               const char *key, char **keys, char **files, int nfiles,
               double rate)
{
    char errstr[512];
    ds_err err;
    put_state ps = {0, keys != NULL};
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(c, &ps);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    if (ds_kconf_apply(kc, c, &err) < 0) {
        fprintf(stderr, "ktool put: %s\n", err.msg);
        rd_kafka_conf_destroy(c);
        return 1;
    }
    ds_kconf_set(c, "partitioner", "murmur2_random", NULL);
    /* Several files: they must land in the order given. */
    ds_kconf_set(c, "enable.idempotence", "true", NULL);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "ktool put: %s\n", errstr);
        return 1;
    }
    int rc = 0;
    uint64_t t0 = mono_ms();
    for (int i = 0; rc == 0 && i < nfiles; i++) {
        char *val = NULL;
        size_t len = 0;
        const char *k = keys != NULL ? keys[i] : key;
        while (rate > 0 && (double)(mono_ms() - t0) < 1000.0 * i / rate)
            rd_kafka_poll(rk, 1);
        rd_kafka_poll(rk, 0);
        if (files[i] != NULL && ds_read_file(files[i], &val, &len, &err) < 0) {
            fprintf(stderr, "ktool put: %s\n", err.msg);
            rc = 1;
            break;
        }
        int64_t now = wall_ms();
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(k, strlen(k)), RD_KAFKA_V_VALUE(val, len),
            RD_KAFKA_V_TIMESTAMP(now), RD_KAFKA_V_OPAQUE((void *)(intptr_t)now),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        free(val);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "ktool put: %s: %s\n",
                    files[i] ? files[i] : "(null value)", rd_kafka_err2str(e));
            rc = 1;
        }
    }
    if (rd_kafka_flush(rk, 15000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_outq_len(rk) > 0 || ps.failed > 0) {
        fprintf(stderr, "ktool put: not delivered to %s\n", topic);
        rc = 1;
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* One record as dump and get print it; hex: also the value in hex. */
static void print_record(const rd_kafka_message_t *m, int hex)
{
    printf("partition=%d offset=%lld key=%.*s", (int)m->partition,
           (long long)m->offset, (int)m->key_len,
           m->key ? (const char *)m->key : "");
    if (m->payload == NULL)
        printf(" len=null");
    else
        printf(" len=%zu", m->len);
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *v;
        size_t vs;
        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &vs) == 0;
             i++)
            printf(" h.%s=\"%.*s\"", name, (int)vs, v ? (const char *)v : "");
    }
    if (hex && m->payload != NULL) {
        const unsigned char *p = m->payload;
        printf(" value_hex=");
        for (size_t i = 0; i < m->len; i++)
            printf("%02x", p[i]);
    }
    printf("\n");
}

/* A consumer that only assigns (never joins "ktool"), read_committed
 * unless -X says otherwise, EOF events on. NULL on failure (said). */
static rd_kafka_t *consumer_new(const ds_kconf *kc, const char *what)
{
    char errstr[512];
    ds_err err;
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    ds_kconf_set(c, "group.id", "ktool", NULL);
    ds_kconf_set(c, "enable.auto.commit", "false", NULL);
    ds_kconf_set(c, "isolation.level", "read_committed", NULL);
    ds_kconf_set(c, "enable.partition.eof", "true", NULL);
    /* get: an offset below the log start or past the end is an error
     * event, not a silent jump to another offset. */
    ds_kconf_set(c, "auto.offset.reset", "error", NULL);
    if (ds_kconf_apply(kc, c, &err) < 0) {
        fprintf(stderr, "ktool %s: %s\n", what, err.msg);
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof(errstr));
    if (rk == NULL)
        fprintf(stderr, "ktool %s: %s\n", what, errstr);
    return rk;
}

/* The partition count of topic, or -1 (said). */
static int partition_count(rd_kafka_t *rk, const char *topic)
{
    const rd_kafka_metadata_t *md;
    ds_err err;
    if (ds_kmeta_topic(rk, topic, 10000, &md, &err) < 0) {
        fprintf(stderr, "ktool: %s\n", err.msg);
        return -1;
    }
    int n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Every record of topic (or of one partition: partition >= 0) from the
 * beginning to the end. */
/* dump -m: a v2 manifest's refs, one line each. */
static void print_manifest(const rd_kafka_message_t *m)
{
    uint64_t schema = 0;
    ds_manifest mf;
    ds_err err;
    if (m->payload == NULL ||
        ds_value_schema(m->payload, m->len, &schema, NULL) < 0 ||
        schema != DS_SCHEMA_V2)
        return;
    if (ds_manifest_decode(m->payload, m->len, &mf, &err) < 0) {
        printf("manifest invalid: %s\n", err.msg);
        return;
    }
    static const char *const forms[] = {"?", "inline", "parts", "index"};
    printf("manifest version=%llu form=%s nparts=%llu zsize=%llu refs=%u\n",
           (unsigned long long)mf.version, forms[mf.form],
           (unsigned long long)mf.nparts, (unsigned long long)mf.zsize,
           (unsigned)mf.nrefs);
    if (mf.nrefs == 0)
        return;
    ds_part_ref *refs = calloc(mf.nrefs, sizeof(*refs));
    if (refs == NULL || ds_manifest_refs(&mf, refs, mf.nrefs, &err) < 0) {
        printf("manifest invalid: refs\n");
        free(refs);
        return;
    }
    for (uint32_t i = 0; i < mf.nrefs; i++) {
        char hex[2 * DS_SHA256_LEN + 1];
        printf("ref %u id=%s size=%u zsize=%u partition=%d offset=%lld\n",
               (unsigned)i, ds_hex(hex, refs[i].id, DS_SHA256_LEN),
               (unsigned)refs[i].size, (unsigned)refs[i].zsize,
               (int)refs[i].partition, (long long)refs[i].offset);
    }
    free(refs);
}

/* dump -m: a status record's fields. */
static void print_status(const rd_kafka_message_t *m)
{
    ds_status st;
    if (m->payload != NULL &&
        ds_status_decode(m->payload, m->len, &st, NULL) == 0)
        printf("status site=%s package=%s version=%llu state=%s\n", st.site,
               st.package, (unsigned long long)st.version, st.state);
}

static int dump(const ds_kconf *kc, const char *topic, int32_t partition,
                int manifests)
{
    rd_kafka_t *rk = consumer_new(kc, "dump");
    if (rk == NULL)
        return 1;
    int n = partition_count(rk, topic);
    if (n < 0 || partition >= n) {
        if (n >= 0)
            fprintf(stderr, "ktool dump: %s has %d partitions, no %d\n", topic,
                    n, (int)partition);
        rd_kafka_destroy(rk);
        return 1;
    }
    int first = partition >= 0 ? partition : 0;
    int last = partition >= 0 ? partition : n - 1;
    int want = last - first + 1;
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(want);
    for (int i = first; i <= last; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    int eof = 0, idle = 0;
    while (eof < want && idle < 100) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL) {
            idle++;
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            eof++;
        else if (m->err)
            fprintf(stderr, "ktool dump: %s [%d]: %s\n", topic,
                    (int)m->partition, rd_kafka_message_errstr(m));
        else {
            print_record(m, 0);
            if (manifests && strcmp(topic, DS_TOPIC_STATUS) == 0)
                print_status(m);
            else if (manifests)
                print_manifest(m);
        }
        rd_kafka_message_destroy(m);
    }
    if (eof < want)
        fprintf(stderr,
                "ktool dump: %s: %d of %d partitions not read to their end "
                "(10 s without a message)\n",
                topic, want - eof, want);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return eof < want ? 1 : 0;
}

/* The first record of topic [partition] at or after offset: 0 at exactly
 * offset, 3 at a later one or none, 1 on errors. */
static int get(const ds_kconf *kc, const char *topic, int32_t partition,
               int64_t offset, int hex)
{
    rd_kafka_t *rk = consumer_new(kc, "get");
    if (rk == NULL)
        return 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int rc = 1;
    for (int idle = 0; idle < 100;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL) {
            idle++;
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            print_record(m, hex);
            rc = m->offset == offset ? 0 : 3;
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            printf("partition=%d offset=none from=%lld end=%lld\n",
                   (int)partition, (long long)offset, (long long)m->offset);
            rc = 3;
        } else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                   m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
            printf("partition=%d offset=none from=%lld end=out-of-range\n",
                   (int)partition, (long long)offset);
            rc = 3;
        } else {
            fprintf(stderr, "ktool get: %s [%d] offset %lld: %s\n", topic,
                    (int)partition, (long long)offset,
                    rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
        break;
    }
    if (rc == 1)
        fprintf(stderr,
                "ktool get: %s [%d] offset %lld: no record, end or error "
                "within 10 s\n",
                topic, (int)partition, (long long)offset);
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return rc;
}

/* LIST: one "KEY FILE" per line. Fills *keys and *files (malloc'd). */
static int read_list(const char *path, char ***keys, char ***files, int *n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    char line[8192], k[1024], file[4096];
    int cap = 0;
    *n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "%1023s %4095s", k, file) != 2)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 1024;
            char **nk = realloc(*keys, (size_t)cap * sizeof(*nk));
            char **nf = nk ? realloc(*files, (size_t)cap * sizeof(*nf)) : NULL;
            if (nk != NULL)
                *keys = nk;
            if (nk == NULL || nf == NULL) {
                fclose(f);
                return -1;
            }
            *files = nf;
        }
        (*keys)[*n] = strdup(k);
        (*files)[*n] = strdup(file);
        (*n)++;
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: ktool put -b B -t TOPIC -k KEY [-p P] FILE...|-n\n"
                "       ktool put -b B -t TOPIC -l LIST [-r PER_SECOND]\n"
                "       ktool dump -b B -t TOPIC [-p P] [-m]\n"
                "       ktool get -b B -t TOPIC -p P -o OFFSET [-x]\n"
                "       ktool partition COUNT KEY...\n");
        return 2;
    }
    if (strcmp(argv[1], "partition") == 0) {
        int n = argc > 2 ? atoi(argv[2]) : 0;
        if (n < 1 || argc < 4) {
            fprintf(stderr, "usage: ktool partition COUNT KEY...\n");
            return 2;
        }
        for (int i = 3; i < argc; i++)
            printf("%d\n", (int)rd_kafka_msg_partitioner_murmur2_random(
                               NULL, argv[i], strlen(argv[i]), n, NULL, NULL));
        return 0;
    }
    const char *mode = argv[1], *topic = NULL, *key = "", *list = NULL;
    double rate = 0;
    int32_t partition = RD_KAFKA_PARTITION_UA;
    int64_t offset = -1;
    int hex = 0, null_value = 0, manifests = 0;
    ds_kconf kc = {0};
    ds_err err;
    int c;
    argc--;
    argv++;
    while ((c = getopt(argc, argv, "b:t:k:p:X:l:r:o:xnm")) != -1) {
        switch (c) {
        case 'o':
            offset = strtoll(optarg, NULL, 10);
            break;
        case 'x':
            hex = 1;
            break;
        case 'n':
            null_value = 1;
            break;
        case 'm':
            manifests = 1;
            break;
        case 'l':
            list = optarg;
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 'b':
            if (ds_kconf_bootstrap(&kc, optarg, &err) < 0) {
                fprintf(stderr, "ktool: %s\n", err.msg);
                return 2;
            }
            break;
        case 't':
            topic = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'p':
            partition = (int32_t)atoi(optarg);
            break;
        case 'X':
            ds_kconf_add(&kc, optarg, NULL);
            break;
        default:
            fprintf(stderr, "ktool: unknown option\n");
            return 2;
        }
    }
    int rc;
    if (topic == NULL)
        rc = 2;
    else if (strcmp(mode, "put") == 0 && list != NULL) {
        char **keys = NULL, **files = NULL;
        int n = 0;
        rc = read_list(list, &keys, &files, &n) < 0
                 ? 2
                 : put(&kc, topic, partition, NULL, keys, files, n, rate);
        for (int i = 0; i < n; i++) {
            free(keys[i]);
            free(files[i]);
        }
        free(keys);
        free(files);
    } else if (strcmp(mode, "put") == 0 && null_value && optind == argc) {
        char *none[1] = {NULL};
        rc = put(&kc, topic, partition, key, NULL, none, 1, rate);
    } else if (strcmp(mode, "put") == 0 && !null_value && optind < argc)
        rc = put(&kc, topic, partition, key, NULL, argv + optind, argc - optind,
                 rate);
    else if (strcmp(mode, "dump") == 0)
        rc = dump(&kc, topic, partition, manifests);
    else if (strcmp(mode, "get") == 0 && partition >= 0 && offset >= 0)
        rc = get(&kc, topic, partition, offset, hex);
    else
        rc = 2;
    ds_kconf_free(&kc);
    return rc;
}
