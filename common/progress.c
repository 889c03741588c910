/* progress.c - terminal progress bar and clocks; see progress.h. */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

uint64_t ds_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t ds_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ds_progress_init(ds_progress *p, const char *label, int force)
{
    p->enabled = force > 0 || (force == 0 && isatty(STDERR_FILENO));
    p->label = label;
    p->last_ms = 0;
    p->start_ms = ds_mono_ms();
    p->drawn = 0;
}

static void draw(ds_progress *p, uint64_t done, uint64_t total, uint64_t now)
{
    double secs = (double)(now - p->start_ms) / 1000.0;
    double mib = (double)done / (1024.0 * 1024.0);
    double rate = secs > 0 ? mib / secs : 0;
    if (total > 0) {
        int pct = (int)(done * 100 / total);
        int fill = pct * 30 / 100;
        char bar[31];
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3d%% %8.1f MiB %7.1f MiB/s", p->label, bar,
                pct, mib, rate);
    } else {
        fprintf(stderr, "\r%s %8.1f MiB %7.1f MiB/s", p->label, mib, rate);
    }
    fflush(stderr);
    p->drawn = 1;
}

void ds_progress_update(ds_progress *p, uint64_t done, uint64_t total)
{
    if (!p->enabled)
        return;
    uint64_t now = ds_mono_ms();
    /* Throttled, except the last step, so the bar always ends at 100%. */
    if (p->drawn && now - p->last_ms < 100 && (total == 0 || done < total))
        return;
    p->last_ms = now;
    draw(p, done, total, now);
}

void ds_progress_finish(ds_progress *p)
{
    if (p->enabled && p->drawn)
        fputs("\n", stderr);
    p->drawn = 0;
}
