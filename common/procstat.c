/* procstat.c - process_* metrics from /proc; see procstat.h. */
#include "procstat.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int ds_procstat_parse(const char *stat, long ticks, long pagesize, double btime,
                      ds_procstat *out, ds_err *err)
{
    const char *p = strrchr(stat, ')');
    if (p == NULL || ticks <= 0 || pagesize <= 0)
        return ds_err_set(err, -EINVAL, "local",
                          "parse /proc/self/stat: no ')' after the command");
    /* After ") ": field 3 (state) onwards; utime is field 14, stime 15,
     * starttime 22, vsize 23, rss 24 (proc(5)). */
    unsigned long long f[25] = {0};
    int field = 3;
    p++;
    while (field <= 24) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        if (field == 3) { /* the state letter */
            p++;
        } else {
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || errno != 0)
                break;
            f[field] = v < 0 ? 0 : (unsigned long long)v;
            p = end;
        }
        field++;
    }
    if (field <= 24)
        return ds_err_set(err, -EINVAL, "local",
                          "parse /proc/self/stat: field %d missing or not a "
                          "number",
                          field);
    out->cpu_seconds = (double)(f[14] + f[15]) / (double)ticks;
    out->start_time = btime + (double)f[22] / (double)ticks;
    out->vsize_bytes = f[23];
    out->rss_bytes = f[24] * (unsigned long long)pagesize;
    return 0;
}

/* Read a small /proc file whole into buf (NUL-terminated). */
static int read_small(const char *path, char *buf, size_t n, ds_err *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return ds_err_sys(err, "local", "open %s", path);
    size_t got = fread(buf, 1, n - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return ds_err_set(err, -EIO, "local", "read %s", path);
    buf[got] = '\0';
    return 0;
}

/* The boot time in unix seconds: now minus the time since boot
 * (CLOCK_BOOTTIME, the clock /proc/self/stat's starttime counts on). Not
 * /proc/stat's btime: the unit's ProcSubset=pid hides that file. */
static int boot_time(double *btime, ds_err *err)
{
    struct timespec now, up;
    if (clock_gettime(CLOCK_REALTIME, &now) < 0 ||
        clock_gettime(CLOCK_BOOTTIME, &up) < 0)
        return ds_err_sys(err, "local", "clock_gettime");
    *btime = (double)(now.tv_sec - up.tv_sec) +
             (double)(now.tv_nsec - up.tv_nsec) / 1e9;
    return 0;
}

static int count_fds(uint64_t *n, ds_err *err)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return ds_err_sys(err, "local", "open /proc/self/fd");
    uint64_t c = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            c++;
    closedir(d);
    *n = c > 0 ? c - 1 : 0; /* not the descriptor opendir itself holds */
    return 0;
}

int ds_procstat_read(ds_procstat *out, ds_err *err)
{
    char stat[4096];
    double btime = 0;
    struct rlimit rl;
    int rc = read_small("/proc/self/stat", stat, sizeof(stat), err);
    if (rc == 0)
        rc = boot_time(&btime, err);
    if (rc == 0)
        rc = ds_procstat_parse(stat, sysconf(_SC_CLK_TCK),
                               sysconf(_SC_PAGESIZE), btime, out, err);
    if (rc == 0)
        rc = count_fds(&out->open_fds, err);
    if (rc == 0 && getrlimit(RLIMIT_NOFILE, &rl) < 0)
        rc = ds_err_sys(err, "local", "getrlimit RLIMIT_NOFILE");
    if (rc == 0)
        out->max_fds =
            rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    return rc;
}

void ds_procstat_render(const ds_procstat *p, FILE *f)
{
    fprintf(f,
            "# HELP process_cpu_seconds_total Total user and system CPU time "
            "spent in seconds.\n"
            "# TYPE process_cpu_seconds_total counter\n"
            "process_cpu_seconds_total %.17g\n"
            "# HELP process_resident_memory_bytes Resident memory size in "
            "bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\n"
            "process_resident_memory_bytes %" PRIu64 "\n"
            "# HELP process_virtual_memory_bytes Virtual memory size in "
            "bytes.\n"
            "# TYPE process_virtual_memory_bytes gauge\n"
            "process_virtual_memory_bytes %" PRIu64 "\n"
            "# HELP process_open_fds Number of open file descriptors.\n"
            "# TYPE process_open_fds gauge\n"
            "process_open_fds %" PRIu64 "\n"
            "# HELP process_max_fds Maximum number of open file "
            "descriptors.\n"
            "# TYPE process_max_fds gauge\n"
            "process_max_fds %" PRIu64 "\n"
            "# HELP process_start_time_seconds Start time of the process "
            "since unix epoch in seconds.\n"
            "# TYPE process_start_time_seconds gauge\n"
            "process_start_time_seconds %.17g\n",
            p->cpu_seconds, p->rss_bytes, p->vsize_bytes, p->open_fds,
            p->max_fds, p->start_time);
}
