/*
 * worker_state.h - the consumer thread's state, shared by the modules that
 * make up `despooler run` (as Redis's server.h is shared by its files):
 *
 *   worker.c      the main loop, events -> flights, completions
 *   flights.c     the flight table: one entry per update seen, its fate
 *   partitions.c  per-partition offset tracking, rewinds, commits
 *   deadletter.c  dead letters (with re-reads by offset) and status records
 *   flow.c        --max-in-flight and incomplete timeouts
 *   rebalance.c   assign / revoke (eager and cooperative)
 *   clients.c     the Kafka clients' set-up
 *   wmetrics.c    gauges, label seeding, /healthz
 *   manifests.c   schema v2: manifests, retires, parts gone missing
 *   partfetch.c   schema v2: parts read from pkg.content (own thread)
 *
 * Everything here is touched by the consumer thread only (update threads
 * talk to it through ds_completions). Kafka callbacks (delivery reports,
 * rebalances, commits) run on it too, from inside rd_kafka_poll and
 * rd_kafka_consumer_poll: a callback never frees a flight or rewinds a
 * partition itself; it sets a flag that the main loop acts on at a safe
 * point (apply_rewinds), so no caller's flight pointer goes stale under it.
 */
#ifndef DS_WORKER_STATE_H
#define DS_WORKER_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "dlq.h"
#include "library.h"
#include "metrics.h"
#include "metricsd.h"
#include "notify.h"
#include "offsets.h"
#include "partfetch.h"
#include "refetch.h"
#include "sign.h"
#include "update.h"
#include "worker.h"

/* What happens to later chunks of an update that is no longer active. */
typedef enum fate {
    ACTIVE,  /* chunks go to its thread */
    DISCARD, /* stale or superseded: later chunks are done quietly */
    DEAD,    /* rejected: later chunks are dead-lettered too */
} fate;

typedef struct flight {
    struct flight *next;
    int32_t partition;
    unsigned gen;     /* partition generation it belongs to */
    ds_event hdr;     /* chunk 0's header (data not kept) */
    int64_t *offsets; /* offsets of chunks taken so far */
    uint32_t noffsets, cap;
    /* Offsets of a retired update that are settled (discarded, or their
     * dead letter delivered) but not yet marked done: they are marked
     * done together when the flight is forgotten, so that the commit
     * point never lands inside an update whose later chunks are still to
     * come (after a restart they would arrive without chunk 0). */
    int64_t *held;
    uint32_t nheld, heldcap;
    uint32_t next_chunk;    /* index expected next */
    uint64_t last_ms;       /* monotonic time of the last chunk */
    uint64_t throttle_mark; /* throttled_ms() at the last chunk */
    ds_update *u;           /* thread while ACTIVE, else NULL */
    fate fate;
    char reason[DS_REASON_MAX];
    char detail[DS_ERRMSG_MAX];
    bool revoked, superseded, timed_out, shutdown;
    /* Schema v2: a part of it was missing and no newer record of the
     * package was known: it waits for one (superseded then) until the
     * consumer reaches the end of the partition as it was (await_hi),
     * then it is dead-lettered part-missing (manifests.c). */
    bool awaiting;
    int64_t await_hi;
    bool fetches; /* its thread fetches parts (v2 parts or index form) */
} flight;

typedef struct part {
    ds_offsets *trk;
    bool assigned;
    unsigned gen;         /* bumped at each assignment and rewind */
    int64_t committed;    /* last offset we committed, -1 none */
    int64_t group_offset; /* the group's, asked once for metrics; -1 */
    bool group_asked;
    bool paused;           /* paused by rewind_partition, not yet resumed */
    bool rewind_due;       /* a callback asked for a rewind (apply_rewinds) */
    uint64_t resume_at_ms; /* paused after a local error until then */
    uint64_t backoff_ms;
    bool seek_pending; /* the seek back to seek_to failed: try again */
    int64_t seek_to;
    int64_t expect;  /* offset the next event should have, -1 unknown */
    int64_t gap_end; /* first offset after the last events-missing gap */
    bool gap_before; /* records were removed right before the last one */
    bool compacted_logged;
    uint64_t wm_query_ms; /* last watermark query for a gap */
    bool at_eof;          /* the last thing read was the partition's end */
    int64_t eof_offset;
} part;

typedef struct counters {
    uint64_t finalized, stale, dead, ioerrors, rebalances;
} counters;

typedef struct dl_job dl_job;         /* deadletter.c */
typedef struct status_rec status_rec; /* deadletter.c */
typedef struct rf_pos rf_pos;         /* deadletter.c */

typedef struct worker {
    const ds_worker_opts *o;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t *out_topics[2]; /* DLQ, status: metadata known early */
    rd_kafka_queue_t *cqueue;
    ds_library *lib;
    ds_refetch *refetch;
    ds_partfetch *pf;           /* schema v2's parts (partfetch.h) */
    ds_partfetch_stats pf_seen; /* counted into metrics so far */
    dl_job *jobs;               /* dead letters waiting for a re-read */
    rf_pos *rfpos;              /* where the refetch consumer reads */
    int nrfpos;
    uint64_t pump_after_ms;  /* dead letters wait until then */
    uint64_t rf_assigned_ms; /* last change of the refetch assignment */
    uint64_t rf_idle_since;  /* no jobs since then (0: there are) */
    status_rec *statuses;    /* status records not yet delivered */
    uint64_t status_seq;     /* numbers status records, for retries */
    uint64_t last_retry_ms;  /* last pass over statuses to retry */
    ds_completions comp;
    part *parts;
    int32_t nparts;
    flight *flights;
    uint64_t last_commit_ms;
    bool dirty;
    bool fatal;
    bool throttled; /* --max-in-flight reached: not taking events */
    uint64_t throttle_since, throttle_total_ms, last_poll_ms;
    unsigned peak_ready; /* most updates extracting at once, for the log */
    counters n;
    /* --trusted-keys, or NULL: signatures unchecked. Read on the consumer
     * thread only (start_flight, handle_manifest), where SIGHUP's reload
     * swaps it too (reload_keys): no lock, and a verification never sees
     * a half-loaded keyring. */
    ds_keyring *keys;
    ds_metrics *met;     /* NULL without --metrics */
    ds_metricsd *httpd;  /* serves met on its own thread */
    atomic_int assigned; /* partitions; -1 before the first assignment */
    uint64_t last_gauge_ms;
    ds_notify notify; /* systemd: READY, STOPPING, watchdog (notify.h) */
} worker;

/* partitions.c */
part *part_get(worker *w, int32_t p);
void mark_done(worker *w, int32_t partition, unsigned gen, int64_t off);
void part_reset(part *p);
void rewind_partition(worker *w, int32_t partition);
void request_rewind(worker *w, int32_t partition, unsigned gen);
void apply_rewinds(worker *w);
void resume_due(worker *w);
void note_offset(worker *w, int32_t partition, int64_t offset);
void commit(worker *w, bool sync, bool positions,
            const rd_kafka_topic_partition_list_t *only);
void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
               rd_kafka_topic_partition_list_t *offsets, void *opaque);

/* flights.c */
flight *flight_find(worker *w, int32_t partition, const uint8_t *id);
bool flight_current(worker *w, const flight *f);
flight *flight_new(worker *w, const rd_kafka_message_t *m, const ds_event *ev,
                   part *p);
int flight_add_offset(flight *f, int64_t off);
bool all_chunks_seen(const flight *f);
void flight_hold(worker *w, flight *f, int64_t off);
void flight_retire(worker *w, flight *f, fate fate, const char *reason,
                   const char *detail);
void flight_forget(worker *w, flight *f);
void flight_unlink(worker *w, flight *f);
void flight_touch(worker *w, flight *f);
const char *hexid(char buf[2 * DS_UPDATE_ID_LEN + 1], const flight *f);

/* flow.c */
uint64_t throttled_ms(const worker *w, uint64_t now);
void flow_control(worker *w);
void check_timeouts(worker *w);

/* deadletter.c */
/* Dead-letter m; in: the retired (DEAD) flight it is a chunk of, or NULL. */
void dead_letter(worker *w, const rd_kafka_message_t *m, const flight *in,
                 const char *reason, const char *detail);
void dead_letter_consumed(worker *w, flight *f, const char *reason,
                          const char *detail);
void dead_letters_pump(worker *w);
void report_status(worker *w, const char *package, uint64_t version,
                   const char *state, const char *detail);
void statuses_retry(worker *w);
void statuses_free(worker *w);
void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* rebalance.c */
void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                  rd_kafka_topic_partition_list_t *parts, void *opaque);

/* clients.c */
int make_clients(worker *w, ds_err *err);

/* wmetrics.c */
void count_reuse(worker *w, const ds_update_reuse_stats *r);
void count_finalized(worker *w, const ds_event *h, double fin_secs,
                     double upd_secs);
void seed_labels(ds_metrics *m);
void update_gauges(worker *w);
int health(void *ctx, char *why, size_t n);

/* worker.c */
void handle_completions(worker *w);
bool key_matches(worker *w, rd_kafka_message_t *m, const char *package);
void refuse_update(worker *w, rd_kafka_message_t *m, const ds_event *ev,
                   part *p, const char *reason, const char *detail);
flight *admit_update(worker *w, rd_kafka_message_t *m, const ds_event *ev,
                     part *p);
void local_failure(worker *w, rd_kafka_message_t *m, flight *f,
                   const char *package, const char *msg);
void chunk_to_flight(worker *w, flight *f, rd_kafka_message_t *m,
                     const ds_event *ev);

/* manifests.c */
void handle_manifest(worker *w, rd_kafka_message_t *m, part *p);
void handle_retire(worker *w, rd_kafka_message_t *m, part *p);
bool part_missing_wait(worker *w, flight *f, const char *detail);
void check_awaiting(worker *w);
void on_partition_eof(worker *w, int32_t partition, int64_t offset);

#endif
