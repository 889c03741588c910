/*
 * assets.h - the status page's files (worker/assets/), compiled into
 * despooler by cmake/embed.cmake, so that the page needs nothing but the
 * binary: no CDN, no files to install beside it.
 */
#ifndef DS_ASSETS_H
#define DS_ASSETS_H

#include <stddef.h>

typedef struct ds_asset {
    const char *path; /* the URL path: "/" for index.html */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} ds_asset;

extern const ds_asset ds_assets[]; /* ends with a NULL path */

#endif
