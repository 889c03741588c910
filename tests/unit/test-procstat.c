/* test-procstat.c - /proc/self/stat parsing and a live read. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"

/* A command name with spaces and a ')' inside: fields count from the last
 * ')'. utime 250, stime 150 (ticks of 100/s), starttime 1000, vsize
 * 123456789, rss 42 pages. */
static const char stat_line[] =
    "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 "
    "3 0 1000 123456789 42 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 "
    "1 0 0 0 0 0\n";

Test(procstat, parses_fields_after_the_last_paren)
{
    ds_procstat p = {0};
    ds_err err;
    cr_assert_eq(
        ds_procstat_parse(stat_line, 100, 4096, 1700000000.0, &p, &err), 0,
        "%s", err.msg);
    cr_assert_float_eq(p.cpu_seconds, 4.0, 1e-9);
    cr_assert_float_eq(p.start_time, 1700000010.0, 1e-6);
    cr_assert_eq(p.vsize_bytes, 123456789);
    cr_assert_eq(p.rss_bytes, 42 * 4096);
}

Test(procstat, rejects_short_or_garbled_text)
{
    ds_procstat p = {0};
    ds_err err;
    cr_assert_lt(ds_procstat_parse("4242 (x) S 1 2 3", 100, 4096, 0, &p, &err),
                 0);
    cr_assert_lt(ds_procstat_parse("no paren here", 100, 4096, 0, &p, &err), 0);
    cr_assert_lt(ds_procstat_parse("1 (x) S 1 2 3 4 5 6 7 8 9 10 zz", 100, 4096,
                                   0, &p, &err),
                 0);
}

Test(procstat, reads_this_process)
{
    ds_procstat a = {0}, b = {0};
    ds_err err;
    cr_assert_eq(ds_procstat_read(&a, &err), 0, "%s", err.msg);
    cr_assert_gt(a.rss_bytes, 0);
    cr_assert_geq(a.vsize_bytes, a.rss_bytes);
    cr_assert_geq(a.open_fds, 3); /* stdin, stdout, stderr at least */
    cr_assert_geq(a.max_fds, a.open_fds);
    double now = (double)time(NULL);
    cr_assert(a.start_time <= now + 1 && a.start_time > now - 3600,
              "start time %f, now %f", a.start_time, now);
    /* One more open descriptor shows. */
    int fd = open("/dev/null", O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ds_procstat_read(&b, &err), 0, "%s", err.msg);
    close(fd);
    cr_assert_eq(b.open_fds, a.open_fds + 1);
}
