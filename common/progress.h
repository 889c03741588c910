/*
 * progress.h - a one-line progress bar for long operations, drawn on
 * stderr only when stderr is a terminal (logs stay clean otherwise), and
 * redrawn at most ten times a second.
 */
#ifndef DS_PROGRESS_H
#define DS_PROGRESS_H

#include <stdint.h>

typedef struct ds_progress {
    int enabled;
    const char *label;
    uint64_t last_ms;
    uint64_t start_ms;
    int drawn;
} ds_progress;

/* enabled only when force > 0, or force == 0 and stderr is a tty. */
void ds_progress_init(ds_progress *p, const char *label, int force);
void ds_progress_update(ds_progress *p, uint64_t done, uint64_t total);
void ds_progress_finish(ds_progress *p);

/* Milliseconds: wall clock (for event timestamps) and monotonic. */
uint64_t ds_now_ms(void);
uint64_t ds_mono_ms(void);

#endif
