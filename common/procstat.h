/*
 * procstat.h - the standard process_* metrics of the Prometheus client
 * libraries, read from Linux's /proc/self/stat and /proc/self/fd, the
 * boot time from CLOCK_BOOTTIME, and getrlimit(RLIMIT_NOFILE). No state: each
 * read is a fresh look.
 */
#ifndef DS_PROCSTAT_H
#define DS_PROCSTAT_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef struct ds_procstat {
    double cpu_seconds;   /* user + system CPU time */
    uint64_t rss_bytes;   /* resident set size */
    uint64_t vsize_bytes; /* virtual memory size */
    uint64_t open_fds;    /* entries of /proc/self/fd */
    uint64_t max_fds;     /* RLIMIT_NOFILE soft limit */
    double start_time;    /* unix seconds the process started */
} ds_procstat;

/* Parse the text of /proc/<pid>/stat into cpu_seconds, rss_bytes,
 * vsize_bytes and start_time, with the clock ticks per second, the page
 * size and the boot time (unix seconds). The command
 * name (field 2) may hold spaces and parentheses: fields are counted from
 * its last ')'. -EINVAL when the text is not in that format. */
int ds_procstat_parse(const char *stat, long ticks, long pagesize, double btime,
                      ds_procstat *out, ds_err *err);

/* Everything, for this process. */
int ds_procstat_read(ds_procstat *out, ds_err *err);

/* Write the six series (HELP, TYPE, sample) in Prometheus' text format. */
void ds_procstat_render(const ds_procstat *p, FILE *f);

#endif
