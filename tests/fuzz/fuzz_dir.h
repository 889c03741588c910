/*
 * fuzz_dir.h - a scratch destination for the extraction fuzz targets,
 * three directories deep, so that an entry escaping it shows up as a
 * second name in one of its parents (an oracle that needs no scan of the
 * whole filesystem).
 */
#ifndef DS_FUZZ_DIR_H
#define DS_FUZZ_DIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

typedef struct fuzz_dir {
    char root[64], level[3][96], dest[128];
} fuzz_dir;

static inline void fuzz_dir_make(fuzz_dir *d)
{
    /* tmpfs when there is one: thousands of runs a second create and
     * remove these. */
    snprintf(d->root, sizeof(d->root), "%s/despool-fuzz-%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             (int)getpid());
    snprintf(d->level[0], sizeof(d->level[0]), "%s/a", d->root);
    snprintf(d->level[1], sizeof(d->level[1]), "%s/a/b", d->root);
    snprintf(d->level[2], sizeof(d->level[2]), "%s/a/b/c", d->root);
    snprintf(d->dest, sizeof(d->dest), "%s/a/b/c/dest", d->root);
    ds_rm_rf(d->root, NULL);
    if (mkdir(d->root, 0755) != 0 || mkdir(d->level[0], 0755) != 0 ||
        mkdir(d->level[1], 0755) != 0 || mkdir(d->level[2], 0755) != 0 ||
        mkdir(d->dest, 0755) != 0)
        abort();
}

static inline int entries(const char *dir)
{
    DIR *dp = opendir(dir);
    if (dp == NULL)
        abort();
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dp);
    return n;
}

/* Abort if anything but the one child exists at any level above dest. */
static inline void fuzz_dir_check_and_remove(fuzz_dir *d)
{
    if (entries(d->root) != 1 || entries(d->level[0]) != 1 ||
        entries(d->level[1]) != 1 || entries(d->level[2]) != 1)
        abort(); /* an entry escaped the destination */
    if (ds_rm_rf(d->root, NULL) != 0)
        abort();
}

#endif
