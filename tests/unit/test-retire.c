/*
 * test-retire.c - retired packages in the site library (retire.c): keep
 * marks the package and leaves what readers read, remove takes the whole
 * package away in one step, a finalize revives a kept package, start-up
 * deletes what a removal left, and every failure names its path.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "library.h"
#include "testutil.h"

#define PKG "app"

/* snprintf into an array, failing the test on truncation. */
#define PATHF(buf, ...)                                                        \
    cr_assert_lt(snprintf(buf, sizeof(buf), __VA_ARGS__), (int)sizeof(buf))

/* ---- helpers ------------------------------------------------------------ */

static ds_library *open_lib(const char *root)
{
    ds_library *lib = NULL;
    ds_err err;
    cr_assert_eq(ds_library_open(root, 2, true, &lib, &err), 0, "open: %s",
                 err.msg);
    return lib;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

/* The content file "data" of version v has. */
static void content_of(char *buf, size_t n, uint64_t v)
{
    snprintf(buf, n, "package " PKG " version %llu\n", (unsigned long long)v);
}

/* Stage a tree with one file for version v (tag makes it unique). */
static void stage_version(ds_library *lib, const char *pkg, uint64_t v,
                          const char *tag, char *staging, size_t n,
                          ds_library_mark *mk)
{
    ds_err err;
    char path[PATH_MAX], text[128];
    cr_assert_eq(ds_library_stage(lib, pkg, tag, staging, n, mk, &err), 0,
                 "stage: %s", err.msg);
    PATHF(path, "%s/data", staging);
    content_of(text, sizeof(text), v);
    cr_assert_eq(write_file(path, text), 0, "write %s", path);
    cr_assert_eq(ds_library_sync(lib, staging, mk, &err), 0, "sync: %s",
                 err.msg);
}

/* Stage and finalize version v; returns finalize's result. */
static ds_finalize_result put_version(ds_library *lib, const char *pkg,
                                      uint64_t v)
{
    char staging[PATH_MAX], tag[32];
    ds_library_mark mk;
    ds_err err;
    ds_finalize_result res = 0;
    snprintf(tag, sizeof(tag), "v%llu", (unsigned long long)v);
    stage_version(lib, pkg, v, tag, staging, sizeof(staging), &mk);
    cr_assert_eq(ds_library_finalize(lib, pkg, v, staging, &mk, &res, &err), 0,
                 "finalize %s v%llu: %s", pkg, (unsigned long long)v, err.msg);
    ds_library_mark_release(&mk);
    return res;
}

static uint64_t current_of(ds_library *lib, const char *pkg)
{
    ds_err err;
    uint64_t v = 12345;
    cr_assert_eq(ds_library_current(lib, pkg, &v, &err), 0, "current: %s",
                 err.msg);
    return v;
}

static int retired_of(ds_library *lib, const char *pkg)
{
    ds_err err;
    int r = 7;
    cr_assert_eq(ds_library_retired(lib, pkg, &r, &err), 0, "retired: %s",
                 err.msg);
    return r;
}

static int retire(ds_library *lib, const char *pkg, int action, uint64_t *cur,
                  ds_err *err)
{
    *cur = 12345;
    ds_err_clear(err);
    return ds_library_retire(lib, pkg, action, cur, err);
}

/* What a reader finds at <root>/<pkg>/current/data ("" if nothing). */
static void read_current_data(const char *root, const char *pkg, char *buf,
                              size_t n)
{
    char path[PATH_MAX];
    PATHF(path, "%s/%s/current/data", root, pkg);
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    buf[r < 0 ? 0 : r] = '\0';
}

/* Entries in dir, . and .. aside (0 when dir does not exist). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Run the start-up cleanup with stderr caught: returns its log lines. */
static char *cleanup_logged(ds_library *lib, unsigned *removed)
{
    char tmpl[] = "/tmp/despool-test-log-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert_geq(fd, 0);
    unlink(tmpl);
    int saved = dup(STDERR_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
    ds_err err;
    int rc = ds_library_cleanup_staging(lib, removed, &err);
    dup2(saved, STDERR_FILENO);
    close(saved);
    cr_assert_eq(rc, 0, "cleanup: %s", err.msg);
    off_t len = lseek(fd, 0, SEEK_END);
    cr_assert_geq(len, 0);
    char *buf = calloc(1, (size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    return buf;
}

static int fault_at(void *ctx, const char *point)
{
    return strcmp(point, (const char *)ctx) == 0 ? -ECANCELED : 0;
}

static int wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- keep -----------------------------------------------------------------
 */

Test(retire, keep_leaves_the_files_and_marks_the_package)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char want[128], got[128], path[PATH_MAX];
    put_version(lib, PKG, 1);
    put_version(lib, PKG, 2);
    cr_assert_eq(retired_of(lib, PKG), 0, "not retired before");

    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cur, 2, "the version current pointed at");
    cr_assert_eq(retired_of(lib, PKG), 1);
    cr_assert_eq(current_of(lib, PKG), 2, "current untouched");
    content_of(want, sizeof(want), 2);
    read_current_data(root, PKG, got, sizeof(got));
    cr_assert_str_eq(got, want, "a reader still reads version 2");
    /* The marker says which version was retired, and no temporary file
     * is left. */
    char *text = NULL;
    PATHF(path, "%s/%s/retired", root, PKG);
    cr_assert_eq(ds_read_file(path, &text, NULL, &err), 0, "%s", err.msg);
    cr_assert_str_eq(text, "current=2\n");
    free(text);
    PATHF(path, "%s/%s", root, PKG);
    cr_assert_eq(count_entries(path), 5,
                 "versions, current, .staging, .lock, retired");

    /* The library still takes the package as sound at start-up. */
    ds_library_close(lib);
    lib = open_lib(root);
    unsigned removed = 9;
    char *log = cleanup_logged(lib, &removed);
    cr_assert_null(ds_library_refused(lib, 0, NULL), "refused: %s", log);
    free(log);
    cr_assert_eq(removed, 0);
    cr_assert_eq(current_of(lib, PKG), 2);
    cr_assert_eq(retired_of(lib, PKG), 1, "retired survives a restart");
    ds_library_close(lib);
    tu_rm(root);
}

Test(retire, keep_twice_writes_nothing_more)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char path[PATH_MAX];
    put_version(lib, PKG, 3);
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    PATHF(path, "%s/%s/retired", root, PKG);
    struct stat a, b;
    cr_assert_eq(stat(path, &a), 0);
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cur, 3);
    cr_assert_eq(stat(path, &b), 0);
    /* A rewrite would have renamed a new inode over it. */
    cr_assert_eq(a.st_ino, b.st_ino, "the marker was written again");
    cr_assert_eq(retired_of(lib, PKG), 1);
    ds_library_close(lib);
    tu_rm(root);
}

Test(retire, finalize_revives_a_kept_package)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char path[PATH_MAX];
    put_version(lib, PKG, 1);
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(retired_of(lib, PKG), 1);

    /* A stale or duplicate version does not revive it. */
    cr_assert_eq(put_version(lib, PKG, 1), DS_STALE);
    cr_assert_eq(retired_of(lib, PKG), 1);

    cr_assert_eq(put_version(lib, PKG, 2), DS_FINALIZED);
    cr_assert_eq(retired_of(lib, PKG), 0, "revived");
    PATHF(path, "%s/%s/retired", root, PKG);
    cr_assert(!exists(path), "the marker is removed");
    cr_assert_eq(current_of(lib, PKG), 2);

    /* A marker a crash left behind (between the swap and its unlink)
     * names an older version: it does not count. */
    cr_assert_eq(write_file(path, "current=1\n"), 0);
    cr_assert_eq(retired_of(lib, PKG), 0);
    /* And a retire of the revived package marks the new version. */
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cur, 2);
    cr_assert_eq(retired_of(lib, PKG), 1);
    ds_library_close(lib);
    tu_rm(root);
}

/* A worker killed between writing the marker's temporary file and the
 * rename: the package is not retired (the tombstone is read again), and
 * the next start-up sweeps the dead worker's temporary file. */
Test(retire, crash_while_marking_leaves_no_marker)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char pkgdir[PATH_MAX];
    put_version(lib, PKG, 1);
    ds_library_set_fault(lib, fault_at, (void *)"retire-before-marker");
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), -ECANCELED);
    cr_assert_str_eq(err.reason, "io-error");
    cr_assert(strstr(err.msg, "retire-before-marker") != NULL, "%s", err.msg);
    ds_library_set_fault(lib, NULL, NULL);
    cr_assert_eq(retired_of(lib, PKG), 0);
    PATHF(pkgdir, "%s/%s", root, PKG);
    cr_assert_eq(count_entries(pkgdir), 5,
                 "versions current .staging .lock "
                 "and the temporary marker");
    ds_library_close(lib); /* our token is dead now */

    lib = open_lib(root);
    unsigned removed;
    free(cleanup_logged(lib, &removed));
    cr_assert_eq(count_entries(pkgdir), 4, "the temporary marker is swept");
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(retired_of(lib, PKG), 1);
    ds_library_close(lib);
    tu_rm(root);
}

/* ---- remove ---------------------------------------------------------------
 */

Test(retire, remove_deletes_the_package)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char path[PATH_MAX], trash[PATH_MAX], got[128];
    put_version(lib, PKG, 1);
    put_version(lib, PKG, 4);
    put_version(lib, "other", 1);

    cr_assert_eq(retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cur, 4);
    PATHF(path, "%s/%s", root, PKG);
    cr_assert(!exists(path), "the package directory is gone");
    PATHF(trash, "%s/.despool/trash", root);
    cr_assert_eq(count_entries(trash), 0, "and its tree deleted");
    cr_assert_eq(current_of(lib, PKG), 0);
    cr_assert_eq(retired_of(lib, PKG), 0);
    read_current_data(root, PKG, got, sizeof(got));
    cr_assert_str_eq(got, "");
    cr_assert_eq(current_of(lib, "other"), 1, "other packages untouched");

    /* Again: nothing to do. */
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cur, 0);

    /* Its next version starts a fresh package: any version goes in. */
    cr_assert_eq(put_version(lib, PKG, 1), DS_FINALIZED);
    cr_assert_eq(current_of(lib, PKG), 1);

    /* Removing a kept retired package works too. */
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cur, 1);
    cr_assert(!exists(path));
    ds_library_close(lib);
    tu_rm(root);
}

Test(retire, missing_package_creates_nothing)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char path[PATH_MAX];
    for (int action = DS_RETIRE_KEEP; action <= DS_RETIRE_REMOVE; action++) {
        cr_assert_eq(retire(lib, PKG, action, &cur, &err), 0, "%s", err.msg);
        cr_assert_eq(cur, 0);
    }
    PATHF(path, "%s/%s", root, PKG);
    cr_assert(!exists(path), "no package directory created");
    PATHF(path, "%s/.despool/trash", root);
    cr_assert(!exists(path), "no trash created");
    cr_assert_eq(retired_of(lib, PKG), 0);

    /* A package directory without a current (only staging leftovers)
     * has nothing to keep: no marker. Remove clears it out. */
    char staging[PATH_MAX];
    ds_library_mark mk;
    stage_version(lib, PKG, 1, "left", staging, sizeof(staging), &mk);
    ds_library_mark_release(&mk);
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cur, 0);
    PATHF(path, "%s/%s/retired", root, PKG);
    cr_assert(!exists(path), "a marker for nothing");
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err), 0, "%s",
                 err.msg);
    PATHF(path, "%s/%s", root, PKG);
    cr_assert(!exists(path));

    /* Arguments are checked like everywhere in the library. */
    cr_assert_lt(retire(lib, "../etc", DS_RETIRE_REMOVE, &cur, &err), 0);
    cr_assert_str_eq(err.reason, "internal");
    cr_assert_lt(retire(lib, PKG, 2, &cur, &err), 0);
    cr_assert_str_eq(err.reason, "internal");
    int r;
    cr_assert_lt(ds_library_retired(lib, ".hidden", &r, &err), 0);
    ds_library_close(lib);
    tu_rm(root);
}

/* An update of the package in progress (its staging directory, ours)
 * and a dead worker's leftover go with the package; the update's
 * finalize then fails with a local error, and its retry starts fresh. */
Test(retire, remove_while_a_staging_dir_exists)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char staging[PATH_MAX], path[PATH_MAX];
    ds_library_mark mk;
    put_version(lib, PKG, 1);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) { /* a worker that stages version 5 and dies */
        ds_library *cl = NULL;
        ds_library_mark cm = {.fd = -1};
        char p[PATH_MAX];
        if (ds_library_open(root, 2, true, &cl, &err) < 0 ||
            ds_library_stage(cl, PKG, "dead", p, sizeof(p), &cm, &err) < 0)
            _exit(1);
        _exit(0);
    }
    cr_assert_eq(wait_child(pid), 0);
    stage_version(lib, PKG, 2, "live", staging, sizeof(staging), &mk);
    PATHF(path, "%s/%s/.staging", root, PKG);
    cr_assert_eq(count_entries(path), 2);

    cr_assert_eq(retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cur, 1);
    PATHF(path, "%s/%s", root, PKG);
    cr_assert(!exists(path));
    PATHF(path, "%s/.despool/trash", root);
    cr_assert_eq(count_entries(path), 0);

    ds_finalize_result res = 0;
    cr_assert_lt(ds_library_finalize(lib, PKG, 2, staging, &mk, &res, &err), 0);
    cr_assert_str_eq(err.reason, "io-error");
    cr_assert(strstr(err.msg, root) != NULL, "names the path: %s", err.msg);
    ds_library_mark_release(&mk);
    cr_assert_eq(current_of(lib, PKG), 0, "nothing came back");
    cr_assert_eq(put_version(lib, PKG, 2), DS_FINALIZED, "the retry");
    cr_assert_eq(current_of(lib, PKG), 2);
    ds_library_close(lib);
    tu_rm(root);
}

/* The delete of the moved tree fails (fault point): the package is gone
 * all the same, the caller gets a warning; the tree stays in the trash
 * while its worker lives, and the next start-up deletes it. */
Test(retire, trash_leftover_is_deleted_at_start_up)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char path[PATH_MAX], trash[PATH_MAX];
    put_version(lib, PKG, 1);
    ds_library_set_fault(lib, fault_at, (void *)"retire-before-delete");
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err),
                 DS_RETIRE_LEFTOVER);
    ds_library_set_fault(lib, NULL, NULL);
    cr_assert_eq(cur, 1);
    cr_assert_str_eq(err.reason, "io-error");
    PATHF(path, "%s/%s", root, PKG);
    cr_assert(strstr(err.msg, path) != NULL, "names the package: %s", err.msg);
    cr_assert(!exists(path), "the package is gone");
    cr_assert_eq(current_of(lib, PKG), 0);
    PATHF(trash, "%s/.despool/trash", root);
    cr_assert_eq(count_entries(trash), 1, "the moved tree");
    /* Strangers in the trash are nobody's work. */
    PATHF(path, "%s/junk", trash);
    cr_assert_eq(mkdir(path, 0755), 0);

    /* A cleanup while the remover lives leaves its entry alone. */
    ds_library *other = open_lib(root);
    unsigned removed;
    char *log = cleanup_logged(other, &removed);
    cr_assert_eq(count_entries(trash), 1, "%s", log);
    cr_assert(!exists(path), "junk is deleted");
    free(log);
    ds_library_close(other);

    ds_library_close(lib);
    lib = open_lib(root);
    log = cleanup_logged(lib, &removed);
    cr_assert_eq(count_entries(trash), 0, "the dead worker's tree is deleted");
    cr_assert(strstr(log, "msg=trash-removed") != NULL, "%s", log);
    cr_assert_eq(removed, 0, "counted apart from staging directories");
    free(log);
    ds_library_close(lib);
    tu_rm(root);
}

/* A finalize that waited for the package lock while the package was
 * removed must not finalize into the moved tree. */
struct finalize_job {
    ds_library *lib;
    char staging[PATH_MAX];
    ds_library_mark mk;
    int rc;
    ds_err err;
};

static void *finalize_thread(void *arg)
{
    struct finalize_job *j = arg;
    ds_finalize_result res = 0;
    j->rc =
        ds_library_finalize(j->lib, PKG, 2, j->staging, &j->mk, &res, &j->err);
    return NULL;
}

Test(retire, finalize_waiting_for_the_lock_sees_the_removal)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    char lock[PATH_MAX], path[PATH_MAX], moved[PATH_MAX];
    put_version(lib, PKG, 1);
    static struct finalize_job j;
    memset(&j, 0, sizeof(j));
    j.lib = lib;
    stage_version(lib, PKG, 2, "w", j.staging, sizeof(j.staging), &j.mk);

    /* Hold the package lock as a removal does, start the finalize, move
     * the directory away, release. */
    PATHF(lock, "%s/%s/.lock", root, PKG);
    int fd = open(lock, O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(flock(fd, LOCK_EX), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, finalize_thread, &j), 0);
    usleep(200 * 1000); /* let it block on the lock */
    PATHF(path, "%s/%s", root, PKG);
    PATHF(moved, "%s/.moved", root);
    cr_assert_eq(rename(path, moved), 0);
    close(fd);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(j.rc, -ESTALE, "finalize: %d %s", j.rc, j.err.msg);
    cr_assert_str_eq(j.err.reason, "io-error");
    cr_assert(strstr(j.err.msg, path) != NULL, "%s", j.err.msg);
    ds_library_mark_release(&j.mk);
    char target[64];
    PATHF(path, "%s/current", moved);
    ssize_t r = readlink(path, target, sizeof(target) - 1);
    cr_assert_gt(r, 0);
    target[r] = '\0';
    cr_assert_str_eq(target, "versions/1", "nothing finalized in the tree");
    ds_library_close(lib);
    tu_rm(root);
}

/* ---- errors ---------------------------------------------------------------
 */

Test(retire, errors_name_the_path)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    ds_err err;
    uint64_t cur;
    char path[PATH_MAX], trash[PATH_MAX];

    /* A file where the package directory should be: refused, untouched. */
    PATHF(path, "%s/%s", root, PKG);
    cr_assert_eq(write_file(path, "not a package"), 0);
    for (int action = DS_RETIRE_KEEP; action <= DS_RETIRE_REMOVE; action++) {
        cr_assert_lt(retire(lib, PKG, action, &cur, &err), 0);
        cr_assert_str_eq(err.reason, "io-error");
        cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
        cr_assert(strstr(err.msg, "a regular file") != NULL, "%s", err.msg);
        cr_assert_eq(cur, 0);
    }
    struct stat st;
    cr_assert(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
    cr_assert_eq(unlink(path), 0);

    /* A file where the trash should be: the removal fails before
     * anything moved. */
    put_version(lib, PKG, 1);
    PATHF(trash, "%s/.despool/trash", root);
    cr_assert_eq(write_file(trash, "x"), 0);
    cr_assert_lt(retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err), 0);
    cr_assert_str_eq(err.reason, "io-error");
    cr_assert(strstr(err.msg, trash) != NULL, "%s", err.msg);
    cr_assert_eq(current_of(lib, PKG), 1, "the package is still there");
    cr_assert_eq(unlink(trash), 0);

    /* A marker that is no regular file: the package is refused like any
     * odd layout; one with odd content is an error of retired() and is
     * rewritten by the next keep. */
    PATHF(path, "%s/%s/retired", root, PKG);
    cr_assert_eq(mkdir(path, 0755), 0);
    uint64_t v;
    cr_assert_lt(ds_library_current(lib, PKG, &v, &err), 0);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "a directory, not a regular file") != NULL, "%s",
              err.msg);
    cr_assert_lt(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert_eq(rmdir(path), 0);
    cr_assert_eq(write_file(path, "garbage"), 0);
    int r;
    cr_assert_lt(ds_library_retired(lib, PKG, &r, &err), 0);
    cr_assert_str_eq(err.reason, "io-error");
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "garbage") != NULL, "shows it: %s", err.msg);
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(retired_of(lib, PKG), 1);

    /* A removal stopped before its rename changed nothing. */
    ds_library_set_fault(lib, fault_at, (void *)"retire-before-move");
    cr_assert_eq(retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err), -ECANCELED);
    ds_library_set_fault(lib, NULL, NULL);
    cr_assert_eq(current_of(lib, PKG), 1);
    cr_assert_eq(retired_of(lib, PKG), 1);
    cr_assert_eq(count_entries(trash), 0);
    ds_library_close(lib);
    tu_rm(root);
}

/* A package directory, then a root, the worker may not write: io-error
 * naming the path, nothing changed. Root ignores permissions, so as root
 * the checks run in a child that becomes nobody (exit code: the failed
 * check's number). */
static int read_only_checks(const char *root)
{
    ds_library *lib = NULL;
    ds_err err;
    uint64_t cur;
    int r;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", root, PKG);
    if (ds_library_open(root, 2, true, &lib, &err) < 0)
        return 10;
    if (chmod(path, 0555) < 0)
        return 11;
    if (ds_library_retire(lib, PKG, DS_RETIRE_KEEP, &cur, &err) >= 0)
        return 12;
    if (strcmp(err.reason, "io-error") != 0 || strstr(err.msg, path) == NULL)
        return 13;
    if (ds_library_retired(lib, PKG, &r, &err) < 0 || r != 0)
        return 14;
    if (chmod(path, 0755) < 0 || chmod(root, 0555) < 0)
        return 15;
    if (ds_library_retire(lib, PKG, DS_RETIRE_REMOVE, &cur, &err) >= 0)
        return 16;
    if (strcmp(err.reason, "io-error") != 0 || strstr(err.msg, root) == NULL)
        return 17;
    if (chmod(root, 0755) < 0)
        return 18;
    if (ds_library_current(lib, PKG, &cur, &err) < 0 || cur != 1)
        return 19;
    ds_library_close(lib);
    return 0;
}

static int chown_tree(const char *root, uid_t uid, gid_t gid)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "chown -R %d:%d '%s'", (int)uid, (int)gid, root);
    return system(cmd) == 0 ? 0 : -1;
}

Test(retire, read_only_directories)
{
    char *root = tu_tmpdir("retire");
    ds_library *lib = open_lib(root);
    put_version(lib, PKG, 1);
    ds_library_close(lib);
    if (geteuid() != 0) {
        cr_assert_eq(read_only_checks(root), 0);
    } else {
        const uid_t nobody = 65534;
        cr_assert_eq(chown_tree(root, nobody, nobody), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            if (setgid(nobody) < 0 || setuid(nobody) < 0)
                _exit(2);
            _exit(read_only_checks(root));
        }
        cr_assert_eq(wait_child(pid), 0, "check failed (see the number)");
        cr_assert_eq(chown_tree(root, 0, 0), 0);
    }
    tu_rm(root);
}
