/*
 * jsonout.h - JSON output through jansson (Debian's libjansson-dev): the
 * commands build a json_t next to their other output code and print it
 * here, so every string is escaped and the result is always valid JSON.
 * Object keys keep their insertion order (jansson >= 2.8), which the
 * documented outputs rely on.
 */
#ifndef DS_JSONOUT_H
#define DS_JSONOUT_H

#include <stdio.h>
#include <jansson.h>

/* A JSON string of s: s itself when it is valid UTF-8, else a copy with
 * each byte outside ASCII as '?' (a record may hold anything; the output
 * must stay valid JSON). NULL s gives JSON null. NULL only when out of
 * memory. */
json_t *ds_json_text(const char *s);

/* A number with at most 3 decimals (seconds with milliseconds). */
json_t *ds_json_secs(double v);

/* Print v compact on stdout, followed by newline when nl, and release v.
 * Returns 0, or -1 when v is NULL (building it failed: out of memory) or
 * the dump fails; the caller reports that. */
int ds_json_print(json_t *v, int nl);

/* For outputs too big for a json_t tree (status of 250,000 cells):
 * write s to f as a JSON string, escaped as jansson escapes it, with
 * ds_json_text's rule for bytes that are not UTF-8; NULL s writes null.
 * Returns 0 or -1 when writing fails. */
int ds_json_put_str(FILE *f, const char *s);

#endif
