/*
 * numparse.h - numbers from the command line and from files, parsed
 * strictly: the whole string, digits only (a decimal point where a
 * fraction makes sense), so "", " 5", "+5", "-1", "5x", "1e3", "0x10",
 * "nan" and "inf" are all refused instead of read as something else.
 */
#ifndef DS_NUMPARSE_H
#define DS_NUMPARSE_H

#include <stdint.h>

/* A decimal uint64 that fills the whole string; 0, or -EINVAL (not a
 * number) or -ERANGE (over UINT64_MAX). */
int ds_parse_u64(const char *s, uint64_t *out);

/* A non-negative decimal with an optional fraction ("30", "0.25", "1.5"),
 * digits on both sides of the point, at most 1e9; 0 or -EINVAL. For
 * seconds and the like. */
int ds_parse_decimal(const char *s, double *out);

#endif
