/*
 * flights.c - the flight table: one entry per update whose chunks are
 * being seen on an assigned partition, from its chunk 0 until its last
 * chunk has passed (or, for an update whose chunks stopped coming, until
 * it timed out: flow.c). While ACTIVE its chunks go to its thread; once
 * retired its later chunks meet its fate (discarded quietly, or
 * dead-lettered with its reason).
 *
 * A retired update's settled offsets are held, not marked done, until the
 * flight is forgotten: the commit point then never lands between its
 * chunks, and a restart reads it again from chunk 0 instead of meeting
 * its later chunks without one.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "progress.h"
#include "worker_state.h"

/* Flights of an older generation of the partition (before a rewind or a
 * re-assignment) never match: their events are read again and start
 * afresh. */
flight *flight_find(worker *w, int32_t partition, const uint8_t *id)
{
    part *p = part_get(w, partition);
    for (flight *f = w->flights; f != NULL; f = f->next)
        if (f->partition == partition && p != NULL && f->gen == p->gen &&
            memcmp(f->hdr.update_id, id, DS_UPDATE_ID_LEN) == 0)
            return f;
    return NULL;
}

bool flight_current(worker *w, const flight *f)
{
    part *p = part_get(w, f->partition);
    return p != NULL && p->assigned && p->gen == f->gen;
}

flight *flight_new(worker *w, const rd_kafka_message_t *m, const ds_event *ev,
                   part *p)
{
    flight *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->partition = m->partition;
    f->gen = p->gen;
    f->hdr = *ev;
    f->hdr.data = NULL;
    f->hdr.data_len = 0;
    flight_touch(w, f);
    f->next = w->flights;
    w->flights = f;
    return f;
}

/* Free f without settling anything (its partition was rewound or given
 * up: its events are read again). */
void flight_unlink(worker *w, flight *f)
{
    for (flight **pp = &w->flights; *pp != NULL; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    free(f->offsets);
    free(f->held);
    free(f);
}

/* f is done with: its held offsets count as done now. */
void flight_forget(worker *w, flight *f)
{
    for (uint32_t i = 0; i < f->nheld; i++)
        mark_done(w, f->partition, f->gen, f->held[i]);
    flight_unlink(w, f);
}

static int grow(int64_t **v, uint32_t *cap, uint32_t n)
{
    if (n < *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : 8;
    int64_t *nv = realloc(*v, ncap * sizeof(*nv));
    if (nv == NULL)
        return -ENOMEM;
    *v = nv;
    *cap = ncap;
    return 0;
}

int flight_add_offset(flight *f, int64_t off)
{
    if (grow(&f->offsets, &f->cap, f->noffsets) < 0)
        return -ENOMEM;
    f->offsets[f->noffsets++] = off;
    return 0;
}

void flight_hold(worker *w, flight *f, int64_t off)
{
    if (grow(&f->held, &f->heldcap, f->nheld) < 0) {
        /* Out of memory: done at once (only a restart can tell). */
        mark_done(w, f->partition, f->gen, off);
        return;
    }
    f->held[f->nheld++] = off;
}

bool all_chunks_seen(const flight *f)
{
    return f->next_chunk >= f->hdr.chunks;
}

void flight_touch(worker *w, flight *f)
{
    f->last_ms = ds_mono_ms();
    f->throttle_mark = throttled_ms(w, f->last_ms);
}

/* The update is no longer active: later chunks meet fate. Once all of its
 * chunks have passed, nothing more can refer to it. */
void flight_retire(worker *w, flight *f, fate fate, const char *reason,
                   const char *detail)
{
    f->fate = fate;
    f->u = NULL;
    snprintf(f->reason, sizeof(f->reason), "%s", reason ? reason : "");
    snprintf(f->detail, sizeof(f->detail), "%s", detail ? detail : "");
    flight_touch(w, f);
    if (all_chunks_seen(f))
        flight_forget(w, f);
}

const char *hexid(char buf[2 * DS_UPDATE_ID_LEN + 1], const flight *f)
{
    return ds_hex(buf, f->hdr.update_id, DS_UPDATE_ID_LEN);
}
