/*
 * lagwatch.c - per-partition sample windows and Burrow-style verdicts;
 * see lagwatch.h for the rules.
 */
#include "lagwatch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct sample {
    uint64_t ms;
    int64_t committed, lag;
} sample;

typedef struct series {
    int32_t partition;
    sample *ring; /* window entries, oldest at (head - n) */
    int head, n;
    int64_t last_committed;
    uint64_t moved_ms; /* when the committed offset was last seen to change */
} series;

struct ds_lagwatch {
    int window;
    uint64_t stop_after_ms;
    series *s;
    int ns;
};

int ds_lagwatch_new(int window, uint64_t stop_after_ms, ds_lagwatch **out,
                    ds_err *err)
{
    if (window < 2)
        return ds_err_set(err, -EINVAL, "usage",
                          "lag window: %d samples, need at least 2", window);
    ds_lagwatch *lw = calloc(1, sizeof(*lw));
    if (lw == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "lagwatch: out of memory");
    lw->window = window;
    lw->stop_after_ms = stop_after_ms;
    *out = lw;
    return 0;
}

void ds_lagwatch_free(ds_lagwatch *lw)
{
    if (lw == NULL)
        return;
    for (int i = 0; i < lw->ns; i++)
        free(lw->s[i].ring);
    free(lw->s);
    free(lw);
}

static series *find(const ds_lagwatch *lw, int32_t partition)
{
    for (int i = 0; i < lw->ns; i++)
        if (lw->s[i].partition == partition)
            return &lw->s[i];
    return NULL;
}

int ds_lagwatch_add(ds_lagwatch *lw, int32_t partition, uint64_t now_ms,
                    int64_t committed, int64_t lag, ds_err *err)
{
    series *s = find(lw, partition);
    if (s == NULL) {
        series *ns = realloc(lw->s, (size_t)(lw->ns + 1) * sizeof(*ns));
        if (ns == NULL)
            return ds_err_set(err, -ENOMEM, "internal",
                              "lagwatch: out of memory");
        lw->s = ns;
        s = &lw->s[lw->ns];
        memset(s, 0, sizeof(*s));
        s->ring = calloc((size_t)lw->window, sizeof(*s->ring));
        if (s->ring == NULL)
            return ds_err_set(err, -ENOMEM, "internal",
                              "lagwatch: out of memory");
        lw->ns++;
        s->partition = partition;
        s->last_committed = committed;
        s->moved_ms = now_ms;
    }
    if (committed != s->last_committed) {
        s->last_committed = committed;
        s->moved_ms = now_ms;
    }
    s->ring[s->head] = (sample){now_ms, committed, lag < 0 ? 0 : lag};
    s->head = (s->head + 1) % lw->window;
    if (s->n < lw->window)
        s->n++;
    return 0;
}

/* The i-th sample of the window, 0 = oldest. */
static const sample *at(const ds_lagwatch *lw, const series *s, int i)
{
    return &s->ring[(s->head - s->n + i + lw->window) % lw->window];
}

ds_verdict ds_lagwatch_verdict(const ds_lagwatch *lw, int32_t partition)
{
    const series *s = find(lw, partition);
    if (s == NULL || s->n < 2)
        return DS_V_NONE;
    const sample *first = at(lw, s, 0), *last = at(lw, s, s->n - 1);
    if (last->lag == 0)
        return DS_V_OK;
    bool moved = false, rewound = false, lag_fell = false;
    for (int i = 1; i < s->n; i++) {
        const sample *a = at(lw, s, i - 1), *b = at(lw, s, i);
        rewound |= b->committed < a->committed;
        moved |= b->committed != a->committed;
        lag_fell |= b->lag < a->lag;
    }
    if (rewound)
        return DS_V_REWIND;
    if (last->ms - s->moved_ms > lw->stop_after_ms)
        return DS_V_STOP;
    if (!moved && s->n == lw->window)
        return DS_V_STALL;
    if (!lag_fell && last->lag > first->lag)
        return DS_V_WARN;
    return DS_V_OK;
}

const char *ds_verdict_name(ds_verdict v)
{
    static const char *const names[] = {"-",      "OK",    "WARN",
                                        "REWIND", "STALL", "STOP"};
    return v >= DS_V_NONE && v <= DS_V_STOP ? names[v] : "?";
}

const char *ds_verdict_group_name(ds_verdict worst)
{
    return worst >= DS_V_REWIND ? "ERR" : worst == DS_V_WARN ? "WARN" : "OK";
}

int ds_verdict_exit_code(ds_verdict worst)
{
    return worst >= DS_V_REWIND ? 2 : worst == DS_V_WARN ? 1 : 0;
}
