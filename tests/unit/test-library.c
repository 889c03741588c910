/*
 * test-library.c - the site library and its finalize protocol: current
 * never moves backwards and never points at a partial tree, across
 * threads of events, concurrent processes and crashes at every step;
 * cleanup takes only dead workers' leftovers. Also the fsutil helpers.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "library.h"
#include "numparse.h"
#include "testutil.h"

#define PKG "app"

/* snprintf into an array, failing the test on truncation. */
#define PATHF(buf, ...)                                                        \
    cr_assert_lt(snprintf(buf, sizeof(buf), __VA_ARGS__), (int)sizeof(buf))
#define NFILES 5

/* ---- helpers (return int so forked children can use them too) ---------- */

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

static const char *file_name(int i)
{
    static const char *const names[NFILES] = {"a.txt", "b.bin", "c.cfg",
                                              "sub/d.dat", "sub/e.dat"};
    return names[i];
}

/* The content a version's file must have; large enough that a torn write
 * would show. attempt distinguishes two trees of the same version. */
static void file_content(char *buf, size_t n, uint64_t v, int i, int attempt)
{
    size_t off = 0;
    while (off + 64 < n) {
        int w = snprintf(buf + off, n - off, "v=%llu f=%s attempt=%d\n",
                         (unsigned long long)v, file_name(i), attempt);
        off += (size_t)w;
        if (off > 2048)
            break;
    }
}

/* Fill a staging dir with a version tree: NFILES files and a MANIFEST
 * naming them and the version. */
static int fill_tree(const char *dir, uint64_t v, int attempt)
{
    char buf[4096], sub[PATH_MAX], manifest[1024];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    if (mkdir(sub, 0755) < 0)
        return -1;
    int m = snprintf(manifest, sizeof(manifest), "version %llu\n",
                     (unsigned long long)v);
    for (int i = 0; i < NFILES; i++) {
        file_content(buf, sizeof(buf), v, i, attempt);
        if (write_file(dir, file_name(i), buf) < 0)
            return -1;
        m += snprintf(manifest + m, sizeof(manifest) - (size_t)m, "%s\n",
                      file_name(i));
    }
    return write_file(dir, "MANIFEST", manifest);
}

/* Stage, fill and finalize one version; returns finalize's rc. */
static int put_version(ds_library *lib, const char *pkg, uint64_t v,
                       int attempt, ds_finalize_result *res, ds_err *err)
{
    char staging[PATH_MAX], tag[64];
    ds_library_mark mk;
    snprintf(tag, sizeof(tag), "v%llu-a%d", (unsigned long long)v, attempt);
    int rc =
        ds_library_stage(lib, pkg, tag, staging, sizeof(staging), &mk, err);
    if (rc == 0)
        rc = fill_tree(staging, v, attempt) < 0 ? -EIO : 0;
    if (rc == 0)
        rc = ds_library_finalize(lib, pkg, v, staging, &mk, res, err);
    ds_library_mark_release(&mk);
    return rc;
}

/*
 * Check the tree open at dirfd: MANIFEST says version v and every file it
 * lists has the content of version v (any attempt if attempt < 0).
 * 0 complete, -1 not.
 */
static int check_tree_fd(int dirfd, uint64_t v, int attempt)
{
    char want[4096], got[4096];
    int fd = openat(dirfd, "MANIFEST", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, got, sizeof(got) - 1);
    close(fd);
    if (r <= 0)
        return -1;
    got[r] = '\0';
    char head[64];
    snprintf(head, sizeof(head), "version %llu\n", (unsigned long long)v);
    if (strncmp(got, head, strlen(head)) != 0)
        return -1;
    int listed = 0;
    char *save = NULL;
    for (char *line = strtok_r(got + strlen(head), "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        int i = 0;
        while (i < NFILES && strcmp(file_name(i), line) != 0)
            i++;
        if (i == NFILES)
            return -1;
        char data[4096];
        fd = openat(dirfd, line, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -1;
        r = read(fd, data, sizeof(data) - 1);
        close(fd);
        if (r < 0)
            return -1;
        data[r] = '\0';
        int ok = 0;
        for (int a = attempt < 0 ? 0 : attempt;
             a <= (attempt < 0 ? 9 : attempt) && !ok; a++) {
            file_content(want, sizeof(want), v, i, a);
            ok = strcmp(want, data) == 0;
        }
        if (!ok)
            return -1;
        listed++;
    }
    return listed == NFILES ? 0 : -1;
}

static int check_version_dir(const char *root, const char *pkg, uint64_t v,
                             int attempt)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s/versions/%llu", root, pkg,
             (unsigned long long)v);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = check_tree_fd(fd, v, attempt);
    close(fd);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted version numbers under <root>/<pkg>/versions into vs; count. */
static size_t list_versions(const char *root, const char *pkg, uint64_t *vs,
                            size_t max)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s/versions", root, pkg);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "opendir %s", path);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        uint64_t v;
        cr_assert_eq(ds_parse_u64(de->d_name, &v), 0, "odd entry %s",
                     de->d_name);
        cr_assert_lt(n, max);
        vs[n++] = v;
    }
    closedir(d);
    qsort(vs, n, sizeof(*vs), cmp_u64);
    return n;
}

/* Entries in dir whose name starts with prefix ("" for all but . and ..). */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static uint64_t current_of(ds_library *lib, const char *pkg)
{
    ds_err err;
    uint64_t v = 12345;
    cr_assert_eq(ds_library_current(lib, pkg, &v, &err), 0, "current: %s",
                 err.msg);
    return v;
}

static ds_library *open_lib(const char *root, unsigned keep)
{
    ds_library *lib = NULL;
    ds_err err;
    cr_assert_eq(ds_library_open(root, keep, true, &lib, &err), 0, "open: %s",
                 err.msg);
    cr_assert_not_null(lib);
    return lib;
}

static int wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- 0. a missing root ----------------------------------------------------
 */

/* Without create, a root that does not exist is refused and nothing is
 * made; with create, it is made, parents too. */
Test(library, missing_root_needs_create)
{
    char *base = tu_tmpdir("library");
    char root[PATH_MAX];
    snprintf(root, sizeof(root), "%s/a/b", base);
    ds_library *lib = NULL;
    ds_err err;
    cr_assert_eq(ds_library_open(root, 2, false, &lib, &err), -ENOENT);
    cr_assert_null(lib);
    cr_assert_str_eq(err.reason, "usage");
    cr_assert(strstr(err.msg, root) != NULL &&
                  strstr(err.msg, "--create-library"),
              "message: %s", err.msg);
    struct stat st;
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s/a", base);
    cr_assert_eq(stat(parent, &st), -1, "a parent was created");
    cr_assert_eq(ds_library_open(root, 2, true, &lib, &err), 0, "open: %s",
                 err.msg);
    ds_library_close(lib);
    cr_assert_eq(stat(root, &st), 0);
    /* It exists now: opening without create works. */
    cr_assert_eq(ds_library_open(root, 2, false, &lib, &err), 0, "open: %s",
                 err.msg);
    ds_library_close(lib);
    tu_rm(base);
}

/* ---- 1. first finalize -------------------------------------------------- */

Test(library, first_finalize)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 2);
    ds_err err;
    ds_library_mark mk = {.fd = -1};
    cr_assert_eq(current_of(lib, PKG), 0, "no package yet");

    char staging[PATH_MAX];
    cr_assert_eq(ds_library_stage(lib, PKG, "first", staging, sizeof(staging),
                                  &mk, &err),
                 0, "stage: %s", err.msg);
    char prefix[PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%s/%s/.staging/", ds_library_root(lib),
             PKG);
    cr_assert_eq(strncmp(staging, prefix, strlen(prefix)), 0, "%s", staging);
    cr_assert_eq(fill_tree(staging, 1, 0), 0);
    cr_assert_eq(ds_library_sync(lib, staging, &mk, &err), 0, "sync: %s",
                 err.msg);
    ds_finalize_result res = 0;
    cr_assert_eq(ds_library_finalize(lib, PKG, 1, staging, &mk, &res, &err), 0,
                 "finalize: %s", err.msg);
    cr_assert_eq(res, DS_FINALIZED);

    char link[PATH_MAX], target[64];
    snprintf(link, sizeof(link), "%s/%s/current", root, PKG);
    ssize_t r = readlink(link, target, sizeof(target) - 1);
    cr_assert_gt(r, 0, "readlink %s", link);
    target[r] = '\0';
    cr_assert_str_eq(target, "versions/1");
    cr_assert_eq(check_version_dir(root, PKG, 1, 0), 0, "tree incomplete");
    cr_assert_eq(current_of(lib, PKG), 1);
    struct stat st;
    cr_assert_neq(stat(staging, &st), 0, "staging must be gone");
    /* The temporary symlink was renamed over current, none is left. */
    char pkgdir[PATH_MAX];
    snprintf(pkgdir, sizeof(pkgdir), "%s/%s", root, PKG);
    cr_assert_eq(count_entries(pkgdir, ".current."), 0);

    /* Staging the same tag twice is refused: never reuse a dirty dir. */
    cr_assert_eq(ds_library_stage(lib, PKG, "again", staging, sizeof(staging),
                                  &mk, &err),
                 0);
    char again[PATH_MAX];
    cr_assert_lt(
        ds_library_stage(lib, PKG, "again", again, sizeof(again), &mk, &err),
        0);
    cr_assert_eq(err.code, -EEXIST, "%s", err.msg);
    cr_assert_eq(ds_library_discard(lib, staging, &err), 0, "%s", err.msg);
    cr_assert_neq(stat(staging, &st), 0, "discarded staging must be gone");

    ds_library_close(lib);
    tu_rm(root);
}

/* ---- 2. stale and duplicate --------------------------------------------- */

Test(library, stale_and_duplicate)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 5);
    ds_err err;
    ds_library_mark mk = {.fd = -1};
    ds_finalize_result res = 0;
    cr_assert_eq(put_version(lib, PKG, 2, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res, DS_FINALIZED);

    uint64_t v[8];
    cr_assert_eq(list_versions(root, PKG, v, 8), 1);

    struct {
        uint64_t version;
        int attempt;
    } cases[] = {{1, 1}, {2, 2}};
    for (size_t i = 0; i < 2; i++) {
        char staging[PATH_MAX];
        cr_assert_eq(ds_library_stage(lib, PKG, i ? "dup" : "stale", staging,
                                      sizeof(staging), &mk, &err),
                     0);
        cr_assert_eq(fill_tree(staging, cases[i].version, cases[i].attempt), 0);
        res = 0;
        cr_assert_eq(ds_library_finalize(lib, PKG, cases[i].version, staging,
                                         &mk, &res, &err),
                     0, "%s", err.msg);
        cr_assert_eq(res, DS_STALE, "version %llu",
                     (unsigned long long)cases[i].version);
        struct stat st;
        cr_assert_neq(stat(staging, &st), 0, "stale staging removed");
        cr_assert_eq(current_of(lib, PKG), 2);
        cr_assert_eq(list_versions(root, PKG, v, 8), 1);
        cr_assert_eq(v[0], 2);
        /* The duplicate did not touch the live tree (attempt 0). */
        cr_assert_eq(check_version_dir(root, PKG, 2, 0), 0);
    }
    char st_dir[PATH_MAX];
    snprintf(st_dir, sizeof(st_dir), "%s/%s/.staging", root, PKG);
    cr_assert_eq(count_entries(st_dir, ""), 0);
    ds_library_close(lib);
    tu_rm(root);
}

/* ---- 3. never downgrade ------------------------------------------------- */

Test(library, never_downgrade_random_orders)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 3);
    unsigned seed;
    cr_assert_eq(getrandom(&seed, sizeof(seed), 0), (ssize_t)sizeof(seed));
    cr_log_info("seed %u", seed);
    for (int round = 0; round < 6; round++) {
        char pkg[32];
        snprintf(pkg, sizeof(pkg), "pkg-%d", round);
        uint64_t order[40];
        size_t n = 40;
        for (size_t i = 0; i < n; i++)
            order[i] = i + 1;
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)rand_r(&seed) % (i + 1);
            uint64_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        uint64_t max = 0;
        for (size_t i = 0; i < n; i++) {
            ds_err err;
            ds_finalize_result res = 0;
            cr_assert_eq(put_version(lib, pkg, order[i], 0, &res, &err), 0,
                         "%s", err.msg);
            cr_assert_eq(res, order[i] > max ? DS_FINALIZED : DS_STALE,
                         "seed %u round %d version %llu max %llu", seed, round,
                         (unsigned long long)order[i], (unsigned long long)max);
            if (order[i] > max)
                max = order[i];
            cr_assert_eq(current_of(lib, pkg), max, "seed %u", seed);
            cr_assert_eq(check_version_dir(root, pkg, max, 0), 0);
        }
        cr_assert_eq(max, 40);
        uint64_t vs[64];
        size_t nv = list_versions(root, pkg, vs, 64);
        cr_assert_leq(nv, 3, "keep_versions 3, have %zu", nv);
        cr_assert_eq(vs[nv - 1], 40);
    }
    ds_library_close(lib);
    tu_rm(root);
}

/* ---- 4. two processes finalizing concurrently --------------------------- */

#define CONC_MAX  200
#define CONC_KEEP 3

/* Child: finalize versions first, first+2, ... <= CONC_MAX in its own
 * library handle. Exit 0, or 10+ on failure. */
static void finalizer_child(const char *root, uint64_t first)
{
    ds_library *lib = NULL;
    ds_err err;
    if (ds_library_open(root, CONC_KEEP, true, &lib, &err) < 0) {
        fprintf(stderr, "child open: %s\n", err.msg);
        _exit(10);
    }
    for (uint64_t v = first; v <= CONC_MAX; v += 2) {
        ds_finalize_result res = 0;
        if (put_version(lib, PKG, v, 0, &res, &err) < 0) {
            fprintf(stderr, "child finalize %llu: %s\n", (unsigned long long)v,
                    err.msg);
            _exit(11);
        }
        if (res != DS_FINALIZED && res != DS_STALE)
            _exit(12);
    }
    ds_library_close(lib);
    _exit(0);
}

/*
 * Sampler: about every millisecond, resolve current and check that it
 * never went backwards and that the tree it names is complete. A tree can
 * be pruned while we read it; retire() renames it out of versions/ before
 * deleting, so an incomplete read is a failure only if the directory we
 * read is still versions/<V>. Exit 0 when it has seen CONC_MAX; 20+ on a
 * failure; writes the number of samples and distinct versions to out_fd.
 */
static void sampler_child(const char *root, int out_fd)
{
    char link[PATH_MAX], vdir[PATH_MAX], target[64];
    snprintf(link, sizeof(link), "%s/%s/current", root, PKG);
    uint64_t last = 0;
    unsigned samples = 0, distinct = 0, inconclusive = 0;
    struct timespec tick = {0, 1000000};
    for (long i = 0; i < 120000 && last < CONC_MAX; i++) {
        nanosleep(&tick, NULL);
        ssize_t r = readlink(link, target, sizeof(target) - 1);
        if (r < 0) {
            if (errno == ENOENT && last == 0)
                continue; /* nothing finalized yet */
            fprintf(stderr, "sampler: readlink %s: %s\n", link,
                    strerror(errno));
            _exit(20);
        }
        target[r] = '\0';
        uint64_t v;
        if (strncmp(target, "versions/", 9) != 0 ||
            ds_parse_u64(target + 9, &v) < 0) {
            fprintf(stderr, "sampler: bad target %s\n", target);
            _exit(21);
        }
        if (v < last) {
            fprintf(stderr, "sampler: current went from %llu back to %llu\n",
                    (unsigned long long)last, (unsigned long long)v);
            _exit(22);
        }
        samples++;
        if (v != last)
            distinct++;
        last = v;
        snprintf(vdir, sizeof(vdir), "%s/%s/%s", root, PKG, target);
        int fd = open(vdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            /* Allowed only if current has moved on and v was pruned. */
            uint64_t now = 0;
            r = readlink(link, target, sizeof(target) - 1);
            if (r > 9) {
                target[r] = '\0';
                ds_parse_u64(target + 9, &now);
            }
            if (now == v) {
                fprintf(stderr, "sampler: current -> missing %s\n", vdir);
                _exit(23);
            }
            inconclusive++;
            continue;
        }
        if (check_tree_fd(fd, v, 0) < 0) {
            struct stat a, b;
            int still = fstat(fd, &a) == 0 && stat(vdir, &b) == 0 &&
                        a.st_ino == b.st_ino && a.st_dev == b.st_dev;
            if (still) {
                fprintf(stderr, "sampler: incomplete tree %s\n", vdir);
                _exit(24);
            }
            inconclusive++;
        }
        close(fd);
    }
    dprintf(out_fd, "%u %u %u\n", samples, distinct, inconclusive);
    _exit(last == CONC_MAX ? 0 : 25);
}

Test(library, two_processes_concurrent_finalize, .timeout = 240)
{
    char *root = tu_tmpdir("library");
    /* Create the library before forking so all three see the same root. */
    ds_library *lib = open_lib(root, CONC_KEEP);
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);

    pid_t sampler = fork();
    cr_assert_geq(sampler, 0);
    if (sampler == 0) {
        close(pfd[0]);
        sampler_child(root, pfd[1]);
    }
    close(pfd[1]);
    pid_t a = fork();
    cr_assert_geq(a, 0);
    if (a == 0)
        finalizer_child(root, 1);
    pid_t b = fork();
    cr_assert_geq(b, 0);
    if (b == 0)
        finalizer_child(root, 2);

    int ra = wait_child(a), rb = wait_child(b);
    int rs = wait_child(sampler);
    char line[128] = "";
    ssize_t r = read(pfd[0], line, sizeof(line) - 1);
    close(pfd[0]);
    if (r > 0)
        line[r] = '\0';
    cr_log_info("sampler: samples distinct inconclusive = %s", line);
    cr_assert_eq(ra, 0, "odd finalizer failed (%d)", ra);
    cr_assert_eq(rb, 0, "even finalizer failed (%d)", rb);
    cr_assert_eq(rs, 0, "sampler failed (%d)", rs);
    unsigned samples = 0, distinct = 0, inconclusive = 0;
    cr_assert_eq(sscanf(line, "%u %u %u", &samples, &distinct, &inconclusive),
                 3);
    cr_assert_geq(distinct, 2, "the sampler must have seen current move");

    cr_assert_eq(current_of(lib, PKG), CONC_MAX);
    uint64_t vs[CONC_MAX];
    size_t nv = list_versions(root, PKG, vs, CONC_MAX);
    cr_assert_geq(nv, 1);
    cr_assert_leq(nv, CONC_KEEP, "keep_versions %d, have %zu", CONC_KEEP, nv);
    cr_assert_eq(vs[nv - 1], CONC_MAX);
    for (size_t i = 0; i < nv; i++)
        cr_assert_eq(check_version_dir(root, PKG, vs[i], 0), 0,
                     "version %llu incomplete", (unsigned long long)vs[i]);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s/.staging", root, PKG);
    cr_assert_eq(count_entries(dir, ""), 0, "no staging leftovers");
    snprintf(dir, sizeof(dir), "%s/%s", root, PKG);
    cr_assert_eq(count_entries(dir, ".current."), 0, "no temp symlinks");
    ds_library_close(lib);
    tu_rm(root);
}

/* ---- 5. crashes -----------------------------------------------------------
 */

static int fault_at(void *ctx, const char *point)
{
    return strcmp(point, (const char *)ctx) == 0 ? -ECANCELED : 0;
}

Test(library, crash_after_staging_and_before_swap)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 3);
    ds_err err;
    ds_library_mark mk = {.fd = -1};
    ds_finalize_result res = 0;
    cr_assert_eq(put_version(lib, PKG, 1, 0, &res, &err), 0, "%s", err.msg);
    char stdir[PATH_MAX], pkgdir[PATH_MAX];
    snprintf(stdir, sizeof(stdir), "%s/%s/.staging", root, PKG);
    snprintf(pkgdir, sizeof(pkgdir), "%s/%s", root, PKG);

    /* Child 1 stages and writes version 2, then dies before finalize. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        ds_library *cl = NULL;
        char staging[PATH_MAX];
        if (ds_library_open(root, 3, true, &cl, &err) < 0 ||
            ds_library_stage(cl, PKG, "crash", staging, sizeof(staging), &mk,
                             &err) < 0 ||
            fill_tree(staging, 2, 1) < 0)
            _exit(1);
        _exit(0); /* a crash: no finalize, no close */
    }
    cr_assert_eq(wait_child(pid), 0);
    cr_assert_eq(count_entries(stdir, ""), 1, "the dead child's staging");

    /* Child 2 stages version 2 and crashes at "before-swap", i.e. after
     * the rename into versions/ and the temp symlink. */
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        ds_library *cl = NULL;
        if (ds_library_open(root, 3, true, &cl, &err) < 0)
            _exit(1);
        ds_library_set_fault(cl, fault_at, (void *)"before-swap");
        int rc = put_version(cl, PKG, 2, 2, &res, &err);
        _exit(rc == -ECANCELED ? 0 : 2);
    }
    cr_assert_eq(wait_child(pid), 0, "fault must abort with its code");

    /* current unchanged and complete; versions/2 exists but is not live. */
    cr_assert_eq(current_of(lib, PKG), 1);
    cr_assert_eq(check_version_dir(root, PKG, 1, 0), 0);
    uint64_t vs[8];
    cr_assert_eq(list_versions(root, PKG, vs, 8), 2);
    cr_assert_eq(count_entries(pkgdir, ".current."), 1, "temp symlink left");

    /* A re-open (new token) removes both dead children's leftovers. */
    unsigned removed = 99;
    ds_library *lib2 = open_lib(root, 3);
    cr_assert_eq(ds_library_cleanup_staging(lib2, &removed, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(removed, 1, "the crashed child's staging dir");
    cr_assert_eq(count_entries(stdir, ""), 0);
    cr_assert_eq(count_entries(pkgdir, ".current."), 0, "temp symlink swept");
    cr_assert_eq(current_of(lib2, PKG), 1);

    /* Version 2 again: the half-done attempt in versions/2 is replaced. */
    res = 0;
    cr_assert_eq(put_version(lib2, PKG, 2, 3, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res, DS_FINALIZED);
    cr_assert_eq(current_of(lib2, PKG), 2);
    cr_assert_eq(check_version_dir(root, PKG, 2, 3), 0, "the new attempt");
    cr_assert_eq(count_entries(stdir, ""), 0);

    ds_library_close(lib2);
    ds_library_close(lib);
    tu_rm(root);
}

Test(library, fault_points)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 5);
    ds_err err;
    ds_library_mark mk = {.fd = -1};
    ds_finalize_result res = 0;
    cr_assert_eq(put_version(lib, PKG, 1, 0, &res, &err), 0, "%s", err.msg);

    /* before-rename: nothing moved, the staging tree is still there. */
    char staging[PATH_MAX];
    cr_assert_eq(
        ds_library_stage(lib, PKG, "r", staging, sizeof(staging), &mk, &err),
        0);
    cr_assert_eq(fill_tree(staging, 2, 0), 0);
    ds_library_set_fault(lib, fault_at, (void *)"before-rename");
    cr_assert_eq(ds_library_finalize(lib, PKG, 2, staging, &mk, &res, &err),
                 -ECANCELED);
    cr_assert(strstr(err.msg, "before-rename") != NULL, "%s", err.msg);
    struct stat st;
    cr_assert_eq(stat(staging, &st), 0);
    cr_assert_eq(current_of(lib, PKG), 1);
    uint64_t vs[8];
    cr_assert_eq(list_versions(root, PKG, vs, 8), 1);

    /* before-fsync: the swap happened (in memory at least). */
    ds_library_set_fault(lib, fault_at, (void *)"before-fsync");
    cr_assert_eq(ds_library_finalize(lib, PKG, 2, staging, &mk, &res, &err),
                 -ECANCELED);
    cr_assert_eq(current_of(lib, PKG), 2);

    /* Without the hook, a retry of 2 is a duplicate. */
    ds_library_set_fault(lib, NULL, NULL);
    res = 0;
    cr_assert_eq(put_version(lib, PKG, 2, 1, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res, DS_STALE);
    cr_assert_eq(check_version_dir(root, PKG, 2, 0), 0);
    ds_library_close(lib);
    tu_rm(root);
}

/* ---- 6. a live worker's staging survives cleanup ------------------------ */

Test(library, cleanup_keeps_live_worker_staging)
{
    char *root = tu_tmpdir("library");
    ds_library *lib1 = open_lib(root, 2);
    ds_library *lib2 = open_lib(root, 2);
    ds_err err;
    ds_library_mark mk = {.fd = -1};
    char staging[PATH_MAX];
    cr_assert_eq(ds_library_stage(lib2, PKG, "live", staging, sizeof(staging),
                                  &mk, &err),
                 0, "%s", err.msg);
    cr_assert_eq(fill_tree(staging, 1, 0), 0);
    char mine[PATH_MAX];
    cr_assert_eq(
        ds_library_stage(lib1, PKG, "mine", mine, sizeof(mine), &mk, &err), 0);

    unsigned removed = 99;
    cr_assert_eq(ds_library_cleanup_staging(lib1, &removed, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(removed, 0);
    struct stat st;
    cr_assert_eq(stat(staging, &st), 0, "live worker's staging removed");
    cr_assert_eq(stat(mine, &st), 0, "own staging removed");
    char lockdir[PATH_MAX];
    snprintf(lockdir, sizeof(lockdir), "%s/.despool/workers", root);
    cr_assert_eq(count_entries(lockdir, ""), 2, "both token locks");

    /* Once lib2 is gone its staging is a dead worker's leftover. */
    ds_library_close(lib2);
    cr_assert_eq(ds_library_cleanup_staging(lib1, &removed, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(removed, 1);
    cr_assert_neq(stat(staging, &st), 0);
    cr_assert_eq(stat(mine, &st), 0);
    cr_assert_eq(count_entries(lockdir, ""), 1);

    /* A dead worker whose lock file is still there (killed): it is
     * unlocked, so it is dead too, and its lock file is swept. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        ds_library *cl = NULL;
        char p[PATH_MAX];
        if (ds_library_open(root, 2, true, &cl, &err) < 0 ||
            ds_library_stage(cl, PKG, "killed", p, sizeof(p), &mk, &err) < 0)
            _exit(1);
        _exit(0);
    }
    cr_assert_eq(wait_child(pid), 0);
    cr_assert_eq(count_entries(lockdir, ""), 2);
    cr_assert_eq(ds_library_cleanup_staging(lib1, &removed, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(removed, 1);
    cr_assert_eq(count_entries(lockdir, ""), 1);
    cr_assert_eq(stat(mine, &st), 0);

    /* Names off the scheme are leftovers too. */
    char junk[PATH_MAX];
    snprintf(junk, sizeof(junk), "%s/%s/.staging/junk", root, PKG);
    cr_assert_eq(mkdir(junk, 0755), 0);
    cr_assert_eq(ds_library_cleanup_staging(lib1, &removed, &err), 0);
    cr_assert_eq(removed, 1);
    cr_assert_neq(stat(junk, &st), 0);

    ds_library_close(lib1);
    cr_assert_eq(count_entries(lockdir, ""), 0, "close unlinks the lock");
    tu_rm(root);
}

/* ---- 7. prune ------------------------------------------------------------ */

Test(library, prune_keeps_highest)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 2);
    ds_err err;
    for (uint64_t v = 1; v <= 5; v++) {
        ds_finalize_result res = 0;
        cr_assert_eq(put_version(lib, PKG, v, 0, &res, &err), 0, "%s", err.msg);
        cr_assert_eq(res, DS_FINALIZED);
    }
    uint64_t vs[8];
    cr_assert_eq(list_versions(root, PKG, vs, 8), 2);
    cr_assert_eq(vs[0], 4);
    cr_assert_eq(vs[1], 5);
    cr_assert_eq(current_of(lib, PKG), 5);
    cr_assert_eq(check_version_dir(root, PKG, 4, 0), 0);
    char stdir[PATH_MAX];
    snprintf(stdir, sizeof(stdir), "%s/%s/.staging", root, PKG);
    cr_assert_eq(count_entries(stdir, ""), 0, "pruned trees deleted");
    ds_library_close(lib);
    tu_rm(root);
}

Test(library, prune_keeps_current_below_orphans)
{
    /* Orphans above current (crashes between rename and swap) are among
     * the highest; current must survive anyway. */
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 1);
    ds_err err;
    ds_finalize_result res = 0;
    cr_assert_eq(put_version(lib, PKG, 5, 0, &res, &err), 0, "%s", err.msg);
    char orphan[PATH_MAX];
    snprintf(orphan, sizeof(orphan), "%s/%s/versions/9", root, PKG);
    cr_assert_eq(mkdir(orphan, 0755), 0);
    cr_assert_eq(put_version(lib, PKG, 7, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res, DS_FINALIZED);
    uint64_t vs[8];
    cr_assert_eq(list_versions(root, PKG, vs, 8), 2);
    cr_assert_eq(vs[0], 7);
    cr_assert_eq(vs[1], 9);
    cr_assert_eq(check_version_dir(root, PKG, 7, 0), 0);
    ds_library_close(lib);
    tu_rm(root);
}

/* ---- 8. bogus current, path checks, fsutil ------------------------------ */

Test(library, current_rejects_bogus_targets)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 2);
    ds_err err;
    ds_library_mark mk = {.fd = -1};
    char pkgdir[PATH_MAX], link[PATH_MAX];
    snprintf(pkgdir, sizeof(pkgdir), "%s/%s", root, PKG);
    PATHF(link, "%s/current", pkgdir);
    cr_assert_eq(mkdir(pkgdir, 0755), 0);
    cr_assert_eq(current_of(lib, PKG), 0, "package without current");

    const char *bad[] = {
        "versions/abc", "../../etc",   "versions/01",
        "versions/0",   "versions/",   "versions/1/x",
        "/versions/1",  "versions/+1", "versions/99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unlink(link);
        cr_assert_eq(symlink(bad[i], link), 0);
        uint64_t v = 77;
        ds_err_clear(&err);
        cr_assert_lt(ds_library_current(lib, PKG, &v, &err), 0, "%s", bad[i]);
        cr_assert(strstr(err.msg, link) != NULL, "names the path: %s", err.msg);
        cr_assert(strstr(err.msg, bad[i]) != NULL, "names the target: %s",
                  err.msg);
    }
    unlink(link);
    cr_assert_eq(symlink("versions/42", link), 0);
    cr_assert_eq(current_of(lib, PKG), 42);

    /* And finalize refuses to build on a current it cannot read. */
    unlink(link);
    cr_assert_eq(symlink("versions/x", link), 0);
    ds_finalize_result res = 0;
    cr_assert_lt(put_version(lib, PKG, 1, 0, &res, &err), 0);

    /* Invalid package names never become paths. */
    const char *names[] = {".", "..", "", "a/b", ".hidden", "-x"};
    for (size_t i = 0; i < 6; i++) {
        uint64_t v;
        char p[PATH_MAX];
        cr_assert_lt(ds_library_current(lib, names[i], &v, &err), 0, "%s",
                     names[i]);
        cr_assert_lt(
            ds_library_stage(lib, names[i], "t", p, sizeof(p), &mk, &err), 0,
            "%s", names[i]);
    }
    ds_library_close(lib);
    tu_rm(root);
}

Test(library, staging_path_is_checked)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 2);
    ds_err err;
    ds_library_mark mk = {.fd = -1};
    char staging[PATH_MAX];
    cr_assert_eq(
        ds_library_stage(lib, PKG, "t", staging, sizeof(staging), &mk, &err),
        0);
    cr_assert_eq(fill_tree(staging, 1, 0), 0);
    char other[PATH_MAX];
    cr_assert_eq(
        ds_library_stage(lib, "other", "t", other, sizeof(other), &mk, &err),
        0);

    char bad[7][PATH_MAX];
    snprintf(bad[0], PATH_MAX, "%s/%s/versions", root, PKG);
    snprintf(bad[1], PATH_MAX, "%s/%s/.staging/../versions", root, PKG);
    snprintf(bad[2], PATH_MAX, "%s/%s/.staging", root, PKG);
    snprintf(bad[3], PATH_MAX, "/tmp/%s/.staging/x", PKG);
    snprintf(bad[4], PATH_MAX, "%s/%s/.staging/x/y", root, PKG);
    /* The real staging entry, but under a look-alike directory. */
    snprintf(bad[5], PATH_MAX, "%s/%s/_staging/%s", root, PKG,
             strrchr(staging, '/') + 1);
    snprintf(bad[6], PATH_MAX, "%s", other); /* another package's */
    for (int i = 0; i < 7; i++) {
        ds_finalize_result res = 0;
        cr_assert_lt(ds_library_finalize(lib, PKG, 1, bad[i], &mk, &res, &err),
                     0, "%s", bad[i]);
        if (i < 6)
            cr_assert_lt(ds_library_discard(lib, bad[i], &err), 0, "%s",
                         bad[i]);
    }
    struct stat st;
    cr_assert_eq(stat(staging, &st), 0);
    cr_assert_eq(stat(other, &st), 0);
    char versions[PATH_MAX];
    snprintf(versions, sizeof(versions), "%s/%s/versions", root, PKG);
    cr_assert_eq(stat(versions, &st), 0);
    cr_assert_eq(current_of(lib, PKG), 0);
    ds_library_close(lib);
    tu_rm(root);
}

/* ---- 9. start-up copes with one odd package at a time ------------------- */

/* A worker (a child) that stages package pkg and dies: its staging is a
 * dead worker's leftover. */
static void dead_staging(const char *root, const char *pkg)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        ds_library *cl = NULL;
        ds_library_mark mk = {.fd = -1};
        ds_err err;
        char p[PATH_MAX];
        if (ds_library_open(root, 2, true, &cl, &err) < 0 ||
            ds_library_stage(cl, pkg, "dead", p, sizeof(p), &mk, &err) < 0 ||
            fill_tree(p, 9, 0) < 0)
            _exit(1);
        _exit(0);
    }
    cr_assert_eq(wait_child(pid), 0);
}

/* Run the start-up cleanup with stderr caught: returns its log lines. */
static char *cleanup_logged(ds_library *lib, unsigned *removed, int *rc,
                            ds_err *err)
{
    char tmpl[] = "/tmp/despool-test-log-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert_geq(fd, 0);
    unlink(tmpl);
    int saved = dup(STDERR_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
    *rc = ds_library_cleanup_staging(lib, removed, err);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    cr_assert_geq(len, 0);
    char *buf = calloc(1, (size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    return buf;
}

/* A library with a sound package "good" (v1, plus a dead worker's
 * staging) and package "bad" (v1) about to be made odd. */
static char *odd_library(void)
{
    char *root = tu_tmpdir("library");
    ds_library *lib = open_lib(root, 2);
    ds_err err;
    ds_finalize_result res = 0;
    cr_assert_eq(put_version(lib, "good", 1, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(put_version(lib, "bad", 1, 0, &res, &err), 0, "%s", err.msg);
    ds_library_close(lib);
    dead_staging(root, "good");
    return root;
}

/* The start-up went on past the odd package: good's leftover is gone and
 * good takes a new version. */
static void good_was_cleaned(const char *root, ds_library *lib)
{
    char stdir[PATH_MAX];
    PATHF(stdir, "%s/good/.staging", root);
    cr_assert_eq(count_entries(stdir, ""), 0, "good's leftover removed");
    ds_err err;
    ds_finalize_result res = 0;
    cr_assert_eq(put_version(lib, "good", 2, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(current_of(lib, "good"), 2);
}

/* .staging a plain file, or a symlink out of the library: nobody's work
 * in progress, so it is removed (the symlink itself, never its target)
 * with a warning, and the package is served. Before issue 11 either one
 * made the cleanup fail ("open <root>/bad/.staging: Not a directory") and
 * the worker did not start. */
Test(library, startup_removes_a_staging_that_is_no_directory)
{
    for (int kind = 0; kind < 2; kind++) {
        char *root = odd_library();
        char bad[PATH_MAX], outside[PATH_MAX], keep[PATH_MAX];
        PATHF(bad, "%s/bad/.staging", root);
        PATHF(outside, "%s/.outside", root); /* hidden: not a package */
        PATHF(keep, "%s/keep", outside);
        cr_assert_eq(ds_rm_rf(bad, NULL), 0);
        cr_assert_eq(mkdir(outside, 0755), 0);
        cr_assert_eq(write_file(outside, "keep", "precious"), 0);
        if (kind == 0)
            cr_assert_eq(write_file(root, "bad/.staging", "junk"), 0);
        else
            cr_assert_eq(symlink(outside, bad), 0);

        ds_library *lib = open_lib(root, 2);
        ds_err err;
        unsigned removed = 99;
        int rc;
        char *log = cleanup_logged(lib, &removed, &rc, &err);
        cr_assert_eq(rc, 0, "cleanup: %s", err.msg);
        cr_assert_eq(removed, 1, "good's leftover");
        cr_assert_null(ds_library_refused(lib, 0, NULL), "nothing refused");
        cr_assert(strstr(log, "msg=staging-replaced package=bad") != NULL, "%s",
                  log);
        cr_assert(strstr(log, bad) != NULL, "names the path: %s", log);
        cr_assert(strstr(log, kind == 0 ? "a regular file" : "a symlink to") !=
                      NULL,
                  "says what it was: %s", log);
        free(log);
        struct stat st;
        cr_assert_neq(lstat(bad, &st), 0, "the odd .staging is gone");
        char *text = NULL;
        cr_assert_eq(ds_read_file(keep, &text, NULL, &err), 0, "%s", err.msg);
        cr_assert_str_eq(text, "precious", "the symlink was not followed");
        free(text);
        good_was_cleaned(root, lib);
        /* bad is served: a new version goes in. */
        ds_finalize_result res = 0;
        cr_assert_eq(put_version(lib, "bad", 2, 0, &res, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(current_of(lib, "bad"), 2);
        ds_library_close(lib);
        tu_rm(root);
    }
}

/*
 * Odd packages the library does not own enough to repair: a package path
 * that is a file or a symlink, a versions/ that is a file, a .lock that is
 * a directory, a current that is a file. Each is refused (warning, listed
 * by ds_library_refused, left as it is), the others start; each one's
 * updates fail with a local error naming the path until it is fixed, and
 * the fix needs no restart.
 */
Test(library, startup_refuses_odd_packages_and_starts_the_rest)
{
    char *root = odd_library();
    ds_err err;
    ds_finalize_result res = 0;
    char path[PATH_MAX], outside[PATH_MAX];
    ds_library *lib = open_lib(root, 2);
    cr_assert_eq(put_version(lib, "ver", 1, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(put_version(lib, "lck", 1, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(put_version(lib, "cur", 1, 0, &res, &err), 0, "%s", err.msg);
    ds_library_close(lib);
    cr_assert_eq(write_file(root, "afile", "not a package"), 0);
    PATHF(outside, "%s/.outside", root);
    cr_assert_eq(mkdir(outside, 0755), 0);
    PATHF(path, "%s/alink", root);
    cr_assert_eq(symlink(outside, path), 0);
    PATHF(path, "%s/ver/versions", root);
    cr_assert_eq(ds_rm_rf(path, NULL), 0);
    cr_assert_eq(write_file(root, "ver/versions", "x"), 0);
    PATHF(path, "%s/lck/.lock", root);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkdir(path, 0755), 0);
    PATHF(path, "%s/cur/current", root);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(write_file(root, "cur/current", "versions/1"), 0);

    struct {
        const char *pkg, *path, *what;
    } want[] = {
        {"afile", "afile", "a regular file, not a directory"},
        {"alink", "alink", "a symlink to"},
        {"ver", "ver/versions", "a regular file, not a directory"},
        {"lck", "lck/.lock", "a directory, not a regular file"},
        {"cur", "cur/current", "a regular file, not a symlink"},
    };
    enum { NW = sizeof(want) / sizeof(want[0]) };

    lib = open_lib(root, 2);
    unsigned removed = 99;
    int rc;
    char *log = cleanup_logged(lib, &removed, &rc, &err);
    cr_assert_eq(rc, 0, "cleanup: %s", err.msg);
    cr_assert_eq(removed, 1, "good's leftover");
    good_was_cleaned(root, lib);
    cr_assert_eq(current_of(lib, "bad"), 1, "the sound packages start");

    size_t n = 0;
    while (ds_library_refused(lib, n, NULL) != NULL)
        n++;
    cr_assert_eq(n, NW, "refused %zu packages", n);
    for (size_t i = 0; i < NW; i++) {
        char full[PATH_MAX], line[PATH_MAX + 64];
        PATHF(full, "%s/%s", root, want[i].path);
        /* Listed, with why naming the path and what is there. */
        const char *why = NULL;
        bool listed = false;
        for (size_t j = 0; j < n; j++) {
            const char *pkg = ds_library_refused(lib, j, &why);
            if (strcmp(pkg, want[i].pkg) == 0) {
                listed = true;
                break;
            }
        }
        cr_assert(listed, "%s refused", want[i].pkg);
        cr_assert(strstr(why, full) != NULL, "%s: %s", want[i].pkg, why);
        cr_assert(strstr(why, want[i].what) != NULL, "%s: %s", want[i].pkg,
                  why);
        /* Logged as a warning naming the package. */
        PATHF(line, "level=warn pid=%d msg=package-refused package=%s",
              (int)getpid(), want[i].pkg);
        cr_assert(strstr(log, line) != NULL, "no %s in %s", line, log);
        /* Its updates fail before any work, naming the path. */
        uint64_t v = 77;
        ds_err_clear(&err);
        cr_assert_lt(ds_library_current(lib, want[i].pkg, &v, &err), 0, "%s",
                     want[i].pkg);
        cr_assert_str_eq(err.reason, "io-error");
        cr_assert(strstr(err.msg, full) != NULL, "%s", err.msg);
        cr_assert_eq(v, 0);
        cr_assert_lt(put_version(lib, want[i].pkg, 2, 0, &res, &err), 0, "%s",
                     want[i].pkg);
    }
    free(log);
    /* Nothing of theirs was touched. */
    struct stat st;
    PATHF(path, "%s/afile", root);
    cr_assert(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
    PATHF(path, "%s/alink", root);
    cr_assert(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
    PATHF(path, "%s/ver/versions", root);
    cr_assert(lstat(path, &st) == 0 && S_ISREG(st.st_mode));

    /* The operator fixes ver: its next update goes in, no restart. */
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(put_version(lib, "ver", 2, 1, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(current_of(lib, "ver"), 2);
    ds_library_close(lib);
    tu_rm(root);
}

/* A package on another filesystem (a tmpfs mounted at <root>/<pkg>): the
 * group does not cover it, so its mark holds a descriptor opened before
 * the first write and the durability points sync that. Needs root. */
Test(library, package_on_another_filesystem)
{
    char *root = tu_tmpdir("library");
    char pkgdir[PATH_MAX], cmd[PATH_MAX + 64];
    PATHF(pkgdir, "%s/%s", root, PKG);
    cr_assert_eq(mkdir(pkgdir, 0755), 0);
    PATHF(cmd, "mount -t tmpfs -o size=4m tmpfs '%s' 2>/dev/null", pkgdir);
    if (system(cmd) != 0) {
        tu_rm(root);
        cr_skip_test("cannot mount a tmpfs (needs root)");
    }
    ds_library *lib = open_lib(root, 2);
    ds_err err;
    ds_library_mark mk;
    char staging[PATH_MAX];
    cr_assert_eq(
        ds_library_stage(lib, PKG, "mnt", staging, sizeof(staging), &mk, &err),
        0, "%s", err.msg);
    cr_assert_geq(mk.fd, 0, "a cursor of its own on the other filesystem");
    cr_assert_eq(fill_tree(staging, 1, 0), 0);
    cr_assert_eq(ds_library_sync(lib, staging, &mk, &err), 0, "%s", err.msg);
    ds_finalize_result res = 0;
    cr_assert_eq(ds_library_finalize(lib, PKG, 1, staging, &mk, &res, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(res, DS_FINALIZED);
    ds_library_mark_release(&mk);
    cr_assert_eq(mk.fd, -1);
    cr_assert_eq(check_version_dir(root, PKG, 1, 0), 0);
    cr_assert_eq(current_of(lib, PKG), 1);
    /* On the library's own filesystem a mark has no descriptor. */
    cr_assert_eq(ds_library_stage(lib, "plain", "t", staging, sizeof(staging),
                                  &mk, &err),
                 0, "%s", err.msg);
    cr_assert_eq(mk.fd, -1);
    ds_library_close(lib);
    PATHF(cmd, "umount '%s'", pkgdir);
    cr_assert_eq(system(cmd), 0);
    tu_rm(root);
}

Test(fsutil, rm_rf_does_not_follow_symlinks)
{
    char *base = tu_tmpdir("library");
    char outside[PATH_MAX], tree[PATH_MAX], path[PATH_MAX];
    snprintf(outside, sizeof(outside), "%s/outside", base);
    snprintf(tree, sizeof(tree), "%s/tree", base);
    cr_assert_eq(mkdir(outside, 0755), 0);
    cr_assert_eq(write_file(outside, "keep", "precious"), 0);
    PATHF(path, "%s/deep/er", tree);
    ds_err err;
    cr_assert_eq(ds_mkdir_p(path, &err), 0, "%s", err.msg);
    cr_assert_eq(ds_mkdir_p(path, &err), 0, "existing is fine");
    cr_assert_eq(write_file(path, "f", "x"), 0);
    PATHF(path, "%s/deep/link", tree);
    cr_assert_eq(symlink(outside, path), 0);
    PATHF(path, "%s/deep/er/filelink", tree);
    char keep[PATH_MAX];
    PATHF(keep, "%s/keep", outside);
    cr_assert_eq(symlink(keep, path), 0);
    /* A read-only directory inside is still removable. */
    PATHF(path, "%s/ro", tree);
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_assert_eq(write_file(path, "f", "x"), 0);
    cr_assert_eq(chmod(path, 0500), 0);

    cr_assert_eq(ds_rm_rf(tree, &err), 0, "%s", err.msg);
    struct stat st;
    cr_assert_neq(lstat(tree, &st), 0, "tree removed");
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(ds_read_file(keep, &text, &len, &err), 0, "%s", err.msg);
    cr_assert_str_eq(text, "precious");
    cr_assert_eq(len, 8);
    free(text);
    cr_assert_eq(ds_rm_rf(tree, &err), 0, "missing is success");

    /* A symlink given directly is removed itself. */
    snprintf(path, sizeof(path), "%s/toplink", base);
    cr_assert_eq(symlink(outside, path), 0);
    cr_assert_eq(ds_rm_rf(path, &err), 0);
    cr_assert_neq(lstat(path, &st), 0);
    cr_assert_eq(stat(keep, &st), 0);

    cr_assert_lt(ds_read_file(path, &text, &len, &err), 0);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert_eq(ds_fsync_dir(outside, &err), 0, "%s", err.msg);
    tu_rm(base);
}

Test(fsutil, parse_u64_edges)
{
    uint64_t v = 0;
    cr_assert_eq(ds_parse_u64("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(ds_parse_u64("42", &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(ds_parse_u64("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    v = 7;
    const char *bad[] = {"",
                         "+1",
                         "-1",
                         " 1",
                         "1 ",
                         "12a",
                         "0x1",
                         "1.5",
                         "18446744073709551616",
                         "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_lt(ds_parse_u64(bad[i], &v), 0, "\"%s\"", bad[i]);
        cr_assert_eq(v, 7, "untouched on error");
    }
    cr_assert_eq(ds_parse_u64("18446744073709551616", &v), -ERANGE);
    cr_assert_eq(ds_parse_u64("12a", &v), -EINVAL);
}
