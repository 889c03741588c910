/*
 * statusfeed_int.h - the feed's state, shared by statusfeed.c (which
 * writes it) and statusapi.c (which renders it). Everything below mu is
 * read and written only with mu held.
 */
#ifndef DS_STATUSFEED_INT_H
#define DS_STATUSFEED_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "codec.h"
#include "lagwatch.h"
#include "pkghist.h"
#include "statusfeed.h"
#include "statustab.h"

#define LAG_HOUR_MS (3600 * 1000ull)

typedef struct lag_sample {
    uint64_t at_ms;
    long long total_lag;
    int64_t max_time_lag_ms;
} lag_sample;

typedef struct site_lag {
    char name[DS_SITE_MAX + 1];
    ds_lagwatch *watch;
    char *json;      /* `lag --json --watch`'s object, or NULL */
    char status[8];  /* OK, WARN, ERR or - */
    char error[512]; /* the last sample's failure, or "" */
    char state[32];  /* the group's */
    int members;     /* -1 unknown */
    char note[256];
    long long total_lag;
    int64_t max_time_lag_ms;
    lag_sample *ring; /* the last hour, oldest at head */
    size_t nring, head, cap;
} site_lag;

struct ds_feed {
    ds_feed_opts o;
    atomic_int stop;
    pthread_t reader, lagger;
    int reader_started, lagger_started;

    pthread_mutex_t mu;
    ds_stab tab;
    ds_snames names; /* of tab, valid while names_gen == tab.gen */
    uint64_t names_gen;
    int names_ok;
    ds_pkghist *hist;
    uint64_t records, bad_records, dead_letters;
    int caught_up;
    char error[512];  /* the reader's last failure, "" while it reads */
    site_lag **sites; /* sorted by name */
    size_t nsites;
    uint64_t lag_at_ms; /* the last lag round's end, 0 before */
};

/* The names of f->tab, recomputed when a key was added (mu held); -1 when
 * out of memory. */
int ds_feed_names(ds_feed *f);

#endif
