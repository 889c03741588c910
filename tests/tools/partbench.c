/*
 * partbench.c - the publisher's packing alone, without Kafka: a directory
 * or tar file is packed by ds_pack_parts into a part cutter whose callback
 * only counts the parts (what pkgpub v2 does before producing them), or
 * with -m stream by ds_pack into /dev/null (one zstd stream, v1). Prints
 * wall time, CPU time (user + system, all threads), MiB/s of tar stream,
 * peak RSS, parts and compression ratio.
 *
 *   partbench [-m parts|stream] [-l LEVEL] [-T THREADS] [-s PART_SIZE]
 *             SOURCE
 *
 * -T 0 (the default) is one thread per core in both modes. Not a test: it
 * asserts nothing about speed; it fails if the pack fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "pack.h"
#include "parts.h"
#include "benchclock.h"

typedef struct counter {
    uint64_t parts, next, zsize, zmax;
} counter;

/* Checks order and the frame bound; keeps nothing. */
static int count_part(void *ctx, const ds_cut_part *p, ds_err *err)
{
    counter *c = ctx;
    if (p->index != c->next || p->zsize > DS_PART_ZMAX)
        return ds_err_set(err, -EINVAL, "internal",
                          "partbench: part %llu out of order or too large "
                          "(%zu bytes)",
                          (unsigned long long)p->index, p->zsize);
    c->next++;
    c->parts++;
    c->zsize += p->zsize;
    if (p->zsize > c->zmax)
        c->zmax = p->zsize;
    return 0;
}

static int ncores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    return 1;
}

int main(int argc, char **argv)
{
    const char *mode = "parts";
    int level = 3, threads = 0;
    size_t part_size = 0;
    int c;
    while ((c = getopt(argc, argv, "m:l:T:s:")) != -1) {
        switch (c) {
        case 'm':
            mode = optarg;
            break;
        case 'l':
            level = atoi(optarg);
            break;
        case 'T':
            threads = atoi(optarg);
            break;
        case 's':
            part_size = strtoul(optarg, NULL, 0);
            break;
        default:
            goto usage;
        }
    }
    int stream = strcmp(mode, "stream") == 0;
    if (argc - optind != 1 || (!stream && strcmp(mode, "parts") != 0) ||
        threads < 0)
        goto usage;
    const char *source = argv[optind];
    if (threads == 0)
        threads = ncores();

    ds_err err;
    ds_err_clear(&err);
    ds_pack_stats st = {0};
    counter cnt = {0};
    double t0 = now_s(), c0 = cpu_s();
    int rc;
    if (stream) {
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "partbench: open /dev/null: %s\n", strerror(errno));
            return 1;
        }
        ds_pack_opts o = {.level = level, .threads = threads};
        rc = ds_pack(source, &o, fd, &st, &err);
        close(fd);
    } else {
        ds_parts_opts po = {.level = level,
                            .threads = threads,
                            .part_size = part_size,
                            .name = source};
        ds_parts *sink = NULL;
        rc = ds_parts_new(&po, count_part, &cnt, &sink, &err);
        if (rc == 0)
            rc = ds_pack_parts(source, NULL, sink, &st, &err);
        ds_parts_free(sink);
    }
    double t1 = now_s(), c1 = cpu_s();
    if (rc < 0) {
        fprintf(stderr, "partbench: %s: %s\n", err.reason, err.msg);
        return 1;
    }
    if (!stream && (cnt.parts != st.parts || cnt.zsize != st.zsize)) {
        fprintf(stderr, "partbench: stats disagree with the parts seen\n");
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double wall = t1 - t0;
    printf("mode=%s level=%d threads=%d size=%llu zsize=%llu files=%llu "
           "parts=%llu zmax=%llu\n",
           mode, level, threads, (unsigned long long)st.size,
           (unsigned long long)st.zsize, (unsigned long long)st.files,
           (unsigned long long)st.parts, (unsigned long long)cnt.zmax);
    printf("wall_s=%.3f cpu_s=%.3f mib_s=%.1f ratio=%.3f maxrss_mib=%.1f\n",
           wall, c1 - c0, (double)st.size / wall / 1048576.0,
           st.zsize ? (double)st.size / (double)st.zsize : 0.0,
           (double)ru.ru_maxrss / 1024);
    return 0;
usage:
    fprintf(stderr, "usage: partbench [-m parts|stream] [-l LEVEL] "
                    "[-T THREADS] [-s PART_SIZE] SOURCE\n");
    return 2;
}
