/*
 * listen.h - a listening TCP socket for the HTTP servers (`run --metrics`,
 * `status --serve`), bound here rather than by libmicrohttpd so that a bad
 * or busy address fails at start-up with a message naming it ("--metrics:
 * bind 0.0.0.0:9100: Address already in use"), and so that port 0 can be
 * resolved to the port actually bound.
 */
#ifndef DS_LISTEN_H
#define DS_LISTEN_H

#include <stddef.h>

#include "err.h"

/* Listen on addr ("HOST:PORT", "[V6]:PORT" or ":PORT" for every
 * interface; port 0 picks a free one). opt names the option in messages
 * ("--metrics"). bound receives "HOST:PORT" as actually bound. */
int ds_listen(const char *opt, const char *addr, int *fd, char *bound, size_t n,
              ds_err *err);

#endif
