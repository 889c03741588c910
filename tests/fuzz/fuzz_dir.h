/*
 * fuzz_dir.h - a scratch destination for the extraction fuzz targets,
 * three directories deep, so that an entry escaping it shows up as a
 * second name in one of its parents (an oracle that needs no scan of the
 * whole filesystem); and the apparent size of what was written, to hold
 * it to the declared size.
 */
#ifndef DS_FUZZ_DIR_H
#define DS_FUZZ_DIR_H

#include <dirent.h>
#include <fcntl.h>
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

/* Files with more than one name, collected once per name. */
typedef struct fuzz_inodes {
    struct stat *v;
    size_t n, cap;
} fuzz_inodes;

static inline int fuzz_ino_cmp(const void *a, const void *b)
{
    const struct stat *x = a, *y = b;
    return x->st_ino < y->st_ino ? -1 : x->st_ino > y->st_ino;
}

/* Sum the sizes of the regular files under dir (an open descriptor,
 * consumed) with one name, and collect those with several in *multi. */
static inline unsigned long long fuzz_walk(int dir, fuzz_inodes *multi)
{
    DIR *dp = fdopendir(dir);
    if (dp == NULL)
        abort();
    unsigned long long sum = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(dp), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            abort();
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(dp), e->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (sub < 0)
                continue; /* mode 0 after the fixups: nothing we can read */
            sum += fuzz_walk(sub, multi);
        } else if (S_ISREG(st.st_mode) && st.st_nlink == 1) {
            sum += (unsigned long long)st.st_size;
        } else if (S_ISREG(st.st_mode)) {
            if (multi->n == multi->cap) {
                multi->cap = multi->cap ? 2 * multi->cap : 64;
                multi->v = realloc(multi->v, multi->cap * sizeof(*multi->v));
                if (multi->v == NULL)
                    abort();
            }
            multi->v[multi->n++] = st;
        }
    }
    closedir(dp);
    return sum;
}

/* The apparent size of the tree under dest: its regular files' sizes,
 * each file once however many names it has. */
static inline unsigned long long fuzz_dir_tree_bytes(const fuzz_dir *d)
{
    int fd = open(d->dest, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        abort();
    fuzz_inodes multi = {0};
    unsigned long long sum = fuzz_walk(fd, &multi);
    if (multi.n > 0)
        qsort(multi.v, multi.n, sizeof(*multi.v), fuzz_ino_cmp);
    for (size_t i = 0; i < multi.n; i++)
        if (i == 0 || multi.v[i].st_ino != multi.v[i - 1].st_ino)
            sum += (unsigned long long)multi.v[i].st_size;
    free(multi.v);
    return sum;
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
