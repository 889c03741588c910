/*
 * lagwatch.h - Burrow-style evaluation of a consumer group's lag from
 * samples taken over time (`despooler lag --watch`). No Kafka here: the
 * caller feeds (time, committed offset, lag) per partition.
 *
 * Over the last `window` samples of a partition, and only while its
 * latest lag is above 0:
 *   REWIND  the committed offset went back;
 *   STOP    the committed offset has not moved for longer than stop_after;
 *   STALL   it did not move in any sample of a full window;
 *   WARN    the lag never decreased and grew across the window;
 *   OK      otherwise (and whenever the latest lag is 0).
 * Before a partition has two samples its verdict is NONE ("-").
 * The group's status is its worst partition's: OK, WARN or ERR (ERR for
 * STALL, STOP and REWIND).
 */
#ifndef DS_LAGWATCH_H
#define DS_LAGWATCH_H

#include <stdint.h>

#include "err.h"

typedef enum ds_verdict {
    DS_V_NONE = 0,
    DS_V_OK,
    DS_V_WARN,
    DS_V_REWIND,
    DS_V_STALL,
    DS_V_STOP,
} ds_verdict;

typedef struct ds_lagwatch ds_lagwatch;

int ds_lagwatch_new(int window, uint64_t stop_after_ms, ds_lagwatch **out,
                    ds_err *err);
void ds_lagwatch_free(ds_lagwatch *lw); /* NULL is fine */

/* One sample of a partition: committed offset (-1 when the group has none)
 * and lag in events (>= 0). Samples of a partition come in time order. */
int ds_lagwatch_add(ds_lagwatch *lw, int32_t partition, uint64_t now_ms,
                    int64_t committed, int64_t lag, ds_err *err);

ds_verdict ds_lagwatch_verdict(const ds_lagwatch *lw, int32_t partition);

/* "-", "OK", "WARN", "REWIND", "STALL", "STOP". */
const char *ds_verdict_name(ds_verdict v);

/* The group's status from its partitions' verdicts: "OK", "WARN", "ERR";
 * exit code 0, 1, 2 to match. */
const char *ds_verdict_group_name(ds_verdict worst);
int ds_verdict_exit_code(ds_verdict worst);

#endif
