/*
 * unpack.c - the worker's payload: pulls compressed pieces from a source
 * callback, decompresses them with zstd into one output buffer that is
 * hashed, counted against the declared size and handed to libarchive's tar
 * reader, and extracts every entry with its own small writer under one
 * destination directory descriptor.
 *
 * Why our own writer rather than archive_write_disk: several threads
 * unpack at once, and archive_write_disk touches process-wide state
 * (archive_write_disk_new calls umask() twice, and paths longer than
 * PATH_MAX make it fchdir()); it also resolves paths by name from the cwd.
 * Here every file is created with *at() calls relative to descriptors of
 * directories we created or opened with O_NOFOLLOW, new files with O_EXCL,
 * so neither the cwd nor a symlink planted by an earlier entry can steer a
 * write outside the destination. Directory modes and mtimes are applied at
 * the end, children before parents, after all content is written.
 */
#include "unpack.h"

#include "dedup.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#define UNPACK_OUT_BUF  (256 * 1024)
#define UNPACK_PATH_MAX 4096 /* longest entry path or link target accepted */
#define UNPACK_NAME_MAX 255  /* longest path component accepted */
/* Most names one file may have: ext4's limit, the lowest of the common
 * filesystems', so an archive is accepted or refused alike on all. */
#define UNPACK_LINK_MAX 65000

/* Streams declaring more than PIPE_MIN_SIZE bytes (by default) are
 * decompressed and hashed by a helper thread while the calling thread
 * parses the tar and writes files: PIPE_SLOTS output buffers of PIPE_SLOT
 * bytes between them. Small streams stay on the calling thread: a thread
 * costs more than it saves there. */
#define PIPE_MIN_SIZE (1024 * 1024)
#define PIPE_SLOTS    4
#define PIPE_SLOT     (1024 * 1024)

/* Streams declaring more than KICK_MIN_SIZE bytes start the writeback of
 * each file's pages as soon as KICK_EVERY bytes of it (or all of it) are
 * written: sync_file_range(SYNC_FILE_RANGE_WRITE), as git's batch fsync
 * mode does. The update's syncfs still makes them durable; it then waits
 * for I/O that ran beside the extraction instead of starting all of it at
 * the end (1 GiB: 3.7 s of syncfs before). Small updates leave it to the
 * group's shared syncfs, which merges their writes. */
#define KICK_MIN_SIZE (1024 * 1024)
#define KICK_EVERY    (8 * 1024 * 1024)

/* A directory whose mode and mtime are applied once its content is in. */
typedef struct dir_fixup {
    size_t path_off; /* into fixbuf, NUL-terminated */
    size_t seq;      /* archive order, so a repeated entry's last one wins */
    mode_t mode;
    int has_mtime;
    struct timespec mtime;
} dir_fixup;

/*
 * The decompression side: source pieces in, verified uncompressed bytes
 * out. Used by one thread at a time: the calling thread for small streams,
 * else only the helper thread until it is joined. It alone calls the
 * source, so the source is never called from two threads at once.
 */
typedef struct zsrc {
    const char *dest;
    const ds_unpack_opts *opts;
    ds_err *err; /* the caller's for small streams, the pipe's otherwise */
    int rc;      /* first failure, sticky */
    ds_unpack_read_fn rd;
    void *rd_ctx;
    atomic_int *stop; /* pipe: set once the tar side has stopped reading */

    ZSTD_DCtx *dctx;
    ZSTD_inBuffer in;
    int in_eof;     /* rd returned 0 */
    int frame_done; /* ZSTD_decompressStream returned 0: frame complete */
    EVP_MD_CTX *md;
    uint64_t size, zsize;
} zsrc;

/*
 * The hand-over between the helper thread (producer: fills slots with
 * zsrc_next) and the calling thread (consumer: gives them to libarchive).
 * Slots are taken in ring order; nfull counts slots published and not yet
 * released, including the one libarchive holds (its buffer stays valid
 * until the next read callback, which releases it).
 */
typedef struct zpipe {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t filled; /* producer -> consumer: a slot, or done */
    pthread_cond_t freed;  /* consumer -> producer: a slot, or stop */
    uint8_t *slot[PIPE_SLOTS];
    size_t len[PIPE_SLOTS];
    unsigned rd, wr, nfull;
    int held;        /* consumer holds slot rd */
    int done;        /* producer finished: end of stream, or prc < 0 */
    int prc;         /* producer's failure, described in perr */
    ds_err perr;     /* the producer's own: the consumer may be writing err */
    atomic_int stop; /* consumer gave up: producer exits, calls rd no more */
} zpipe;

typedef struct unpacker {
    const char *dest;
    const ds_unpack_opts *opts;
    ds_err *err;
    int rc; /* first failure raised inside the read callback */
    zsrc z;
    zpipe *p;     /* NULL: decompression runs on this thread, into out */
    uint8_t *out; /* small streams only: outcap bytes */
    size_t outcap;
    uint64_t entries;
    uint64_t tree; /* sum of the sizes of the regular files so far */
    int kick;      /* start each file's writeback early (KICK_MIN_SIZE) */
    ds_dedup *dd;  /* opts->link_from, NULL when not sharing */
    uint64_t linked, linked_bytes;

    int dest_fd;
    /* The last parent directory opened, kept open: entries arrive depth
     * first, so most share (or descend from) the previous one's parent. */
    int cache_fd;
    size_t cache_len;
    char cache_path[UNPACK_PATH_MAX + 1];
    char path[UNPACK_PATH_MAX + 1];   /* normalised entry path */
    char target[UNPACK_PATH_MAX + 1]; /* normalised hardlink target */
    char link[UNPACK_PATH_MAX + 1];   /* symlink text read back */

    dir_fixup *fix;
    size_t nfix, capfix;
    char *fixbuf;
    size_t fixlen, capfixbuf;
} unpacker;

/* Start writing back [from, to) of fd (to = 0: to its end). Only a hint:
 * a filesystem without it (EINVAL, ESPIPE) just writes at the syncfs, and
 * a write error is reported there too (syncfs reads the filesystem's
 * error cursor), so a failure here changes nothing and is not reported. */
static void kick_writeback(int fd, int64_t from, int64_t to)
{
    (void)sync_file_range(fd, from, to > from ? to - from : 0,
                          SYNC_FILE_RANGE_WRITE);
}

/* --- decompression: the read side of libarchive ------------------------- */

static int fail_z(zsrc *z, int rc)
{
    z->rc = rc;
    return rc;
}

/*
 * The raw stream (opts->raw: the source gives the uncompressed tar bytes,
 * already checked piece by piece): copy, hash and count the next bytes of
 * z->in (at least one is there) into dst. Returns their number (> 0) or a
 * negative code, with the same bound on the declared size as zsrc_next.
 */
static ssize_t raw_copy(zsrc *z, uint8_t *dst, size_t cap)
{
    size_t avail = z->in.size - z->in.pos;
    uint64_t room = z->opts->size - z->size;
    if (room == 0)
        return fail_z(z,
                      ds_err_set(z->err, -EFBIG, "too-large",
                                 "unpack %s: uncompressed stream exceeds "
                                 "the declared size of %llu bytes",
                                 z->dest, (unsigned long long)z->opts->size));
    size_t n = avail < cap ? avail : cap;
    if (n > room)
        n = (size_t)room;
    memcpy(dst, (const uint8_t *)z->in.src + z->in.pos, n);
    z->in.pos += n;
    if (EVP_DigestUpdate(z->md, dst, n) != 1)
        return fail_z(z, ds_err_set(z->err, -EIO, "internal",
                                    "unpack %s: sha256 update", z->dest));
    z->size += n;
    return (ssize_t)n;
}

/*
 * Produce the next piece of the uncompressed stream into dst (cap > 0
 * bytes). Returns its length (> 0), 0 at the end (the frame is complete
 * and rd has no more bytes), or a negative code with z->rc set and z->err
 * filled. Every byte returned has been hashed and counted, and never takes
 * the total past the declared size: the output window is clipped to one
 * byte past it, so decompression stops as soon as it would be exceeded.
 */
static ssize_t zsrc_next(zsrc *z, uint8_t *dst, size_t cap)
{
    if (z->rc != 0)
        return z->rc;
    for (;;) {
        if (z->in.pos == z->in.size && !z->in_eof) {
            /* The tar side failed: its error stands, and the source is not
             * asked for more (its next piece may never come). */
            if (z->stop != NULL && atomic_load(z->stop))
                return fail_z(z, -ECANCELED);
            const void *buf = NULL;
            ssize_t n = z->rd(z->rd_ctx, &buf);
            if (n < 0)
                return fail_z(z, ds_err_set(z->err, -ECANCELED, "cancelled",
                                            "unpack %s: source aborted after "
                                            "%llu compressed bytes (code %zd)",
                                            z->dest,
                                            (unsigned long long)z->zsize, n));
            if (n == 0) {
                z->in_eof = 1;
            } else {
                z->in = (ZSTD_inBuffer){buf, (size_t)n, 0};
                z->zsize += (uint64_t)n;
            }
        }
        if (z->opts->raw) {
            if (z->in.pos < z->in.size)
                return raw_copy(z, dst, cap);
            if (z->in_eof)
                return 0;
            continue;
        }
        if (z->frame_done && z->in.pos < z->in.size && z->opts->multi_frame) {
            /* More input after a frame's end: the next frame (the dctx
             * starts one on the next call). */
            z->frame_done = 0;
        }
        if (z->frame_done) {
            /* The payload is exactly one frame: anything after it (a second
             * frame, a skippable frame, junk) means the stream is not what
             * the producer wrote. */
            if (z->in.pos < z->in.size)
                return fail_z(
                    z, ds_err_set(z->err, -EBADMSG, "corrupt-zstd",
                                  "unpack %s: data after the end of the zstd "
                                  "frame at compressed offset %llu",
                                  z->dest,
                                  (unsigned long long)(z->zsize - z->in.size +
                                                       z->in.pos)));
            if (z->in_eof)
                return 0;
            continue;
        }
        /* The frame's own content size is the sender's claim too: only the
         * declared size bounds what we accept. */
        uint64_t room = z->opts->size - z->size;
        ZSTD_outBuffer out = {dst, room < cap ? (size_t)room + 1 : cap, 0};
        size_t r = ZSTD_decompressStream(z->dctx, &out, &z->in);
        if (ZSTD_isError(r) &&
            ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
            return fail_z(z, ds_err_set(z->err, -EFBIG, "too-large",
                                        "unpack %s: the zstd frame needs a "
                                        "window larger than 2^%u bytes "
                                        "(--max-window-log)",
                                        z->dest,
                                        z->opts->max_window_log
                                            ? z->opts->max_window_log
                                            : 27));
        if (ZSTD_isError(r))
            return fail_z(z, ds_err_set(z->err, -EBADMSG, "corrupt-zstd",
                                        "unpack %s: zstd decompress near "
                                        "compressed offset %llu: %s",
                                        z->dest, (unsigned long long)z->zsize,
                                        ZSTD_getErrorName(r)));
        if (r == 0)
            z->frame_done = 1;
        if (out.pos > 0) {
            if (out.pos > room)
                return fail_z(
                    z, ds_err_set(z->err, -EFBIG, "too-large",
                                  "unpack %s: uncompressed stream exceeds the "
                                  "declared size of %llu bytes",
                                  z->dest, (unsigned long long)z->opts->size));
            if (EVP_DigestUpdate(z->md, dst, out.pos) != 1)
                return fail_z(z,
                              ds_err_set(z->err, -EIO, "internal",
                                         "unpack %s: sha256 update", z->dest));
            z->size += out.pos;
            return (ssize_t)out.pos;
        }
        if (!z->frame_done && z->in_eof && z->in.pos == z->in.size)
            return fail_z(z, ds_err_set(z->err, -EBADMSG, "corrupt-zstd",
                                        "unpack %s: zstd stream truncated "
                                        "after %llu compressed bytes",
                                        z->dest, (unsigned long long)z->zsize));
    }
}

/* --- the pipe: decompression on a helper thread -------------------------- */

/* The helper thread: fill free slots until the stream ends, fails, or the
 * consumer stops. A slot is published once full, at the end, or when the
 * source's piece is used up, so libarchive gets large pieces and pwrite
 * large blocks, and never waits on output that is already decompressed. */
static void *pipe_main(void *arg)
{
    unpacker *u = arg;
    zpipe *p = u->p;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->nfull == PIPE_SLOTS && !atomic_load(&p->stop))
            pthread_cond_wait(&p->freed, &p->mu);
        unsigned w = p->wr;
        pthread_mutex_unlock(&p->mu);
        if (atomic_load(&p->stop))
            break;
        /* Slot w is ours until published: the consumer reads only slots
         * counted in nfull. */
        size_t fill = 0;
        ssize_t n = 1;
        while (fill < PIPE_SLOT && !atomic_load(&p->stop)) {
            /* Out of input: the next piece may take long to come (or
             * never), so hand over what is here first; the tar side may
             * find this piece's fault without waiting for the next. */
            if (fill > 0 && u->z.in.pos == u->z.in.size && !u->z.in_eof)
                break;
            n = zsrc_next(&u->z, p->slot[w] + fill, PIPE_SLOT - fill);
            if (n <= 0)
                break;
            fill += (size_t)n;
        }
        pthread_mutex_lock(&p->mu);
        if (fill > 0) {
            p->len[w] = fill;
            p->wr = (w + 1) % PIPE_SLOTS;
            p->nfull++;
        }
        if (n <= 0) {
            p->done = 1;
            p->prc = (int)n;
        }
        pthread_cond_signal(&p->filled);
        pthread_mutex_unlock(&p->mu);
        if (n <= 0)
            break;
    }
    return NULL;
}

static void pipe_free(zpipe *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < PIPE_SLOTS; i++)
        free(p->slot[i]);
    pthread_cond_destroy(&p->freed);
    pthread_cond_destroy(&p->filled);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Start the helper. On failure nothing is running and u->p stays NULL:
 * the stream is then decompressed on this thread, as a small one is. */
static void pipe_start(unpacker *u)
{
    zpipe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->filled, NULL);
    pthread_cond_init(&p->freed, NULL);
    atomic_init(&p->stop, 0);
    for (int i = 0; i < PIPE_SLOTS; i++) {
        p->slot[i] = malloc(PIPE_SLOT);
        if (p->slot[i] == NULL) {
            pipe_free(p);
            return;
        }
    }
    u->p = p;
    u->z.err = &p->perr;
    u->z.stop = &p->stop;
    /* With every signal blocked: they stay with the threads that expect
     * them (a signal handler's flag, a poll interrupted). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thread, NULL, pipe_main, u);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        u->p = NULL;
        u->z.err = u->err;
        u->z.stop = NULL;
        pipe_free(p);
    }
}

/* Stop the helper (wherever it is: waiting for a slot, decompressing, or
 * in the source, which it leaves at its next return) and join it. After
 * this u->z belongs to the calling thread again. */
static void pipe_stop(unpacker *u)
{
    zpipe *p = u->p;
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->freed);
    pthread_mutex_unlock(&p->mu);
    /* It may be waiting in the source for a piece (the stream's sender may
     * be gone): ask the source to let go. */
    if (u->opts->interrupt != NULL)
        u->opts->interrupt(u->z.rd_ctx);
    pthread_join(p->thread, NULL);
    u->z.err = u->err;
    u->z.stop = NULL;
    u->p = NULL;
    pipe_free(p);
}

/* The consumer's next piece: release the slot libarchive held (it has
 * asked for more, so it is done with it) and take the next one. Returns
 * its length with *buf set, 0 at the end, or the producer's failure
 * (copied to u->err) once every slot before it has been taken: failures
 * surface in stream order, as on one thread. */
static ssize_t pipe_next(unpacker *u, const void **buf)
{
    zpipe *p = u->p;
    pthread_mutex_lock(&p->mu);
    if (p->held) {
        p->held = 0;
        p->rd = (p->rd + 1) % PIPE_SLOTS;
        p->nfull--;
        pthread_cond_signal(&p->freed);
    }
    while (p->nfull == 0 && !p->done)
        pthread_cond_wait(&p->filled, &p->mu);
    ssize_t n = 0;
    if (p->nfull > 0) {
        p->held = 1;
        *buf = p->slot[p->rd];
        n = (ssize_t)p->len[p->rd];
    } else if (p->prc < 0) {
        if (u->err != NULL)
            *u->err = p->perr;
        n = p->prc;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* The next piece of the uncompressed stream, from whichever side runs
 * decompression. Negative: u->rc is set and u->err describes it. */
static ssize_t next_output(unpacker *u, const void **buf)
{
    if (u->rc != 0)
        return u->rc;
    ssize_t n;
    if (u->p != NULL) {
        n = pipe_next(u, buf);
    } else {
        n = zsrc_next(&u->z, u->out, u->outcap);
        *buf = u->out;
    }
    if (n < 0)
        u->rc = (int)n;
    return n;
}

static la_ssize_t tar_read(struct archive *a, void *ctx, const void **buf)
{
    (void)a;
    unpacker *u = ctx;
    ssize_t n = next_output(u, buf);
    return n < 0 ? ARCHIVE_FATAL : (la_ssize_t)n;
}

/* --- path checks ---------------------------------------------------------- */

static int unsafe(unpacker *u, const char *name, const char *why)
{
    return ds_err_set(u->err, -EPERM, "unsafe-path", "unpack %s: entry %s: %s",
                      u->dest, name, why);
}

/* --- whose fault a failed filesystem call is ----------------------------- */

const char *ds_unpack_fs_reason(int errnum, int names)
{
    switch (errnum) {
    case EFBIG:  /* a file larger than the filesystem (or RLIMIT_FSIZE) */
    case EMLINK: /* more names for one file, or subdirectories in one */
        return "too-large";
    case ENAMETOOLONG: /* a name longer than this filesystem stores */
    case EILSEQ:       /* not valid in its encoding (strict casefolding) */
        return "unsafe-path";
    case EINVAL: /* a name it refuses (vfat and ntfs: "a:b", "nul") */
        return names ? "unsafe-path" : "io-error";
    default: /* ENOSPC, EDQUOT, EIO, EACCES, EPERM, EROFS, EMFILE, ... */
        return "io-error";
    }
}

/* Whether a call creates a name taken from the archive (for EINVAL). */
enum { NO_NAME = 0, NEW_NAME = 1 };

/* Record a failed filesystem call (errno set) with the reason
 * ds_unpack_fs_reason gives: every extraction call but the opening of
 * the destination itself ends here. */
static int fs_fail(unpacker *u, int names, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fs_fail(unpacker *u, int names, const char *fmt, ...)
{
    int saved = errno;
    char what[DS_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    errno = saved;
    return ds_err_sys(u->err, ds_unpack_fs_reason(saved, names), "%s", what);
}

/*
 * Copy the relative path p into out without "." or empty components.
 * Absolute paths, ".." anywhere, overlong paths or components are refused
 * (*why says which). *ncomp receives the number of components; an entry
 * naming the destination itself ("./") normalises to "" with 0 components.
 */
static int normalise(const char *p, char *out, size_t *outlen, int *ncomp,
                     const char **why)
{
    size_t plen = strlen(p);
    if (plen == 0) {
        *why = "empty path";
        return -1;
    }
    if (plen > UNPACK_PATH_MAX) {
        *why = "path longer than 4096 bytes";
        return -1;
    }
    if (p[0] == '/') {
        *why = "absolute path";
        return -1;
    }
    size_t o = 0;
    int n = 0;
    while (*p != '\0') {
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            *why = "'..' in path";
            return -1;
        }
        if (len > UNPACK_NAME_MAX) {
            *why = "path component longer than 255 bytes";
            return -1;
        }
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
            n++;
        }
        p = *end ? end + 1 : end;
    }
    out[o] = '\0';
    *outlen = o;
    *ncomp = n;
    return 0;
}

/*
 * A symlink whose directory is depth components below dest must resolve
 * inside dest. Lexically: no absolute target, and its leading ".." must
 * not climb above dest. Stricter than that, ".." is refused after a name:
 * "d/s/.." goes to the parent of wherever d/s points once d/s is itself a
 * symlink, which no lexical check can see; with ".." only in front, the
 * climb happens through real directories (the link's own parents, which we
 * created without following symlinks) and every symlink reached below is
 * held to the same rule, so resolution never leaves dest.
 */
static const char *check_symlink(const char *t, int depth)
{
    if (t == NULL || t[0] == '\0')
        return "empty symlink target";
    if (strlen(t) > UNPACK_PATH_MAX)
        return "symlink target longer than 4096 bytes";
    if (t[0] == '/')
        return "symlink to an absolute path";
    int named = 0;
    while (*t != '\0') {
        const char *end = strchrnul(t, '/');
        size_t len = (size_t)(end - t);
        if (len == 2 && t[0] == '.' && t[1] == '.') {
            if (named)
                return "symlink target has '..' after a name";
            if (--depth < 0)
                return "symlink points outside the destination";
        } else if (len > 0 && !(len == 1 && t[0] == '.')) {
            named = 1;
            depth++;
        }
        t = *end ? end + 1 : end;
    }
    return NULL;
}

/* --- directory descriptors ------------------------------------------------ */

/*
 * Open directory path[0..len) (relative to dest, normalised) and return a
 * borrowed descriptor in *fd: dest_fd for "", else the cached one, which
 * stays valid until the next call. Components are opened one at a time
 * with O_NOFOLLOW, so a symlink (or a file) in the way is refused rather
 * than followed; missing ones are created (mode 0755) when create is set.
 * name is the entry, for messages.
 */
static int open_dir(unpacker *u, const char *path, size_t len, int create,
                    const char *name, int *fd)
{
    if (len == 0) {
        *fd = u->dest_fd;
        return 0;
    }
    if (u->cache_fd >= 0 && u->cache_len == len &&
        memcmp(u->cache_path, path, len) == 0) {
        *fd = u->cache_fd;
        return 0;
    }
    int cur = u->dest_fd;
    size_t pos = 0;
    if (u->cache_fd >= 0 && u->cache_len < len && path[u->cache_len] == '/' &&
        memcmp(u->cache_path, path, u->cache_len) == 0) {
        cur = u->cache_fd;
        pos = u->cache_len + 1;
    }
    while (pos < len) {
        const char *slash = memchr(path + pos, '/', len - pos);
        size_t clen = slash ? (size_t)(slash - (path + pos)) : len - pos;
        char comp[UNPACK_NAME_MAX + 1];
        memcpy(comp, path + pos, clen);
        comp[clen] = '\0';
        int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        int nfd = openat(cur, comp, flags);
        if (nfd < 0 && errno == ENOENT && create) {
            if (mkdirat(cur, comp, 0755) < 0 && errno != EEXIST) {
                int rc = fs_fail(u, NEW_NAME, "unpack %s: entry %s: mkdir %.*s",
                                 u->dest, name, (int)(pos + clen), path);
                if (cur != u->dest_fd && cur != u->cache_fd)
                    close(cur);
                return rc;
            }
            nfd = openat(cur, comp, flags);
        }
        int saved = errno;
        if (cur != u->dest_fd && cur != u->cache_fd)
            close(cur);
        if (nfd < 0) {
            errno = saved;
            if (errno == ELOOP || errno == ENOTDIR)
                return ds_err_set(u->err, -ENOTDIR, "unsafe-path",
                                  "unpack %s: entry %s: %.*s is not a "
                                  "directory (a symlink or file is in the way)",
                                  u->dest, name, (int)(pos + clen), path);
            if (errno == ENOENT)
                return ds_err_set(u->err, -ENOENT, "corrupt-tar",
                                  "unpack %s: entry %s: %.*s does not exist",
                                  u->dest, name, (int)(pos + clen), path);
            return fs_fail(u, NEW_NAME, "unpack %s: entry %s: open %.*s",
                           u->dest, name, (int)(pos + clen), path);
        }
        cur = nfd;
        pos += clen + 1;
    }
    if (u->cache_fd >= 0)
        close(u->cache_fd);
    u->cache_fd = cur;
    memcpy(u->cache_path, path, len);
    u->cache_len = len;
    *fd = cur;
    return 0;
}

/* Make room for a new non-directory name: a non-directory already there is
 * replaced (the later entry wins, as with tar); a directory is not. */
static int make_room(unpacker *u, int dirfd, const char *base, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return fs_fail(u, NO_NAME, "unpack %s: stat %s", u->dest, name);
    if (S_ISDIR(st.st_mode))
        return unsafe(u, name, "would replace a directory");
    if (unlinkat(dirfd, base, 0) < 0)
        return fs_fail(u, NO_NAME, "unpack %s: unlink %s", u->dest, name);
    return 0;
}

/* --- entries -------------------------------------------------------------- */

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_OMIT;
    if (archive_entry_mtime_is_set(e)) {
        ts[1].tv_sec = archive_entry_mtime(e);
        ts[1].tv_nsec = archive_entry_mtime_nsec(e);
    } else {
        ts[1].tv_sec = 0;
        ts[1].tv_nsec = UTIME_OMIT;
    }
}

/* A failed libarchive call while reading: our callback's error if the
 * stream failed underneath, else the tar data is bad. */
static int read_failed(unpacker *u, struct archive *a, const char *what)
{
    if (u->rc != 0)
        return u->rc;
    return ds_err_set(u->err, -EBADMSG, "corrupt-tar", "unpack %s: %s: %s",
                      u->dest, what, archive_error_string(a));
}

/*
 * A regular file's claim on the disk, checked at its header before any of
 * it is written. The tree's apparent size (the sum of its files' sizes,
 * each counted once per entry) is bounded by the declared size: every byte
 * of a plain file is a byte of the tar stream, so an honest tree is never
 * larger. A sparse file breaks that (its holes cost nothing in the
 * stream: 280 compressed bytes can claim 32 TiB, which ext4 refuses with
 * EFBIG and xfs or tmpfs write), and pkgpub never writes one (pack.c
 * stores files whole): it is refused outright, whatever its size.
 */
static int check_file(unpacker *u, struct archive_entry *e, const char *name)
{
    int64_t size = archive_entry_size(e);
    /* libarchive reports a "sparse" map of one extent covering the whole
     * file as no map: such a file is stored whole. */
    if (archive_entry_sparse_count(e) > 0)
        return ds_err_set(u->err, -EBADMSG, "corrupt-tar",
                          "unpack %s: entry %s: sparse file (apparent size "
                          "%lld bytes): sparse entries are not accepted",
                          u->dest, name, (long long)size);
    if (!archive_entry_size_is_set(e) || size < 0)
        return ds_err_set(u->err, -EBADMSG, "corrupt-tar",
                          "unpack %s: entry %s: no valid size", u->dest, name);
    if ((uint64_t)size > u->opts->size - u->tree)
        return ds_err_set(u->err, -EFBIG, "too-large",
                          "unpack %s: entry %s: its %lld bytes take the "
                          "extracted files past the declared size of %llu "
                          "bytes",
                          u->dest, name, (long long)size,
                          (unsigned long long)u->opts->size);
    u->tree += (uint64_t)size;
    return 0;
}

static int create_file(unpacker *u, int dirfd, const char *base,
                       const char *name, int *out)
{
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(dirfd, base, flags, 0600);
    if (fd < 0 && errno == EEXIST) {
        int rc = make_room(u, dirfd, base, name);
        if (rc < 0)
            return rc;
        fd = openat(dirfd, base, flags, 0600);
    }
    if (fd < 0)
        return fs_fail(u, NEW_NAME, "unpack %s: create %s", u->dest, name);
    *out = fd;
    return 0;
}

/* Every byte of the entry equalled the installed file's: link it (or,
 * where a link cannot be made, copy it from there). */
static int share_file(unpacker *u, ds_dedup_file *df, int dirfd,
                      const char *base, const char *name, int *fd)
{
    int r = ds_dedup_link(df, dirfd, base);
    if (r == -EEXIST) {
        int rc = make_room(u, dirfd, base, name);
        if (rc < 0)
            return rc;
        r = ds_dedup_link(df, dirfd, base);
    }
    if (r == 0) {
        u->linked++;
        u->linked_bytes += (uint64_t)df->st.st_size;
        return 0;
    }
    int rc = create_file(u, dirfd, base, name, fd);
    if (rc == 0)
        rc = ds_dedup_copy(df, *fd, (int64_t)df->st.st_size, name, u->err);
    return rc;
}

static int put_file(unpacker *u, struct archive *a, struct archive_entry *e,
                    int dirfd, const char *base, const char *name)
{
    /* check_file accepted size; sparse entries are refused, so the data
     * comes in order and fills [0, size) exactly: nothing is written
     * beyond the size that was counted against the declared one. */
    int64_t size = archive_entry_size(e);
    struct timespec ts[2];
    entry_times(e, ts);
    ds_dedup_file df = {.fd = -1};
    int fd = -1, rc = 0;
    if (ts[1].tv_nsec == UTIME_OMIT ||
        !ds_dedup_begin(u->dd, u->path, size, archive_entry_perm(e), &ts[1],
                        &df)) {
        if ((rc = create_file(u, dirfd, base, name, &fd)) < 0)
            return rc;
    }
    int64_t end = 0, kicked = 0;
    for (;;) {
        const void *buf;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(a, &buf, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            char what[64 + UNPACK_PATH_MAX];
            snprintf(what, sizeof(what), "read data of %s", name);
            rc = read_failed(u, a, what);
            goto out;
        }
        if (off != end || (uint64_t)len > (uint64_t)(size - end)) {
            rc = ds_err_set(u->err, -EBADMSG, "corrupt-tar",
                            "unpack %s: entry %s: %zu bytes of data at offset "
                            "%lld, where offset %lld of its %lld was due (a "
                            "sparse or malformed entry)",
                            u->dest, name, len, (long long)off, (long long)end,
                            (long long)size);
            goto out;
        }
        if (fd < 0) {
            /* Still equal to the installed file so far: nothing written. */
            if (ds_dedup_same(u->dd, &df, buf, len, (int64_t)off)) {
                end += (int64_t)len;
                continue;
            }
            if ((rc = create_file(u, dirfd, base, name, &fd)) < 0 ||
                (rc = ds_dedup_copy(&df, fd, end, name, u->err)) < 0)
                goto out;
            ds_dedup_end(&df);
        }
        if (len > 0 && pwrite_all(fd, buf, len, (off_t)off) < 0) {
            rc = fs_fail(u, NO_NAME, "unpack %s: write %s", u->dest, name);
            goto out;
        }
        end += (int64_t)len;
        if (u->kick && end - kicked >= KICK_EVERY) {
            kick_writeback(fd, kicked, end);
            kicked = end;
        }
    }
    if (end != size) {
        rc = ds_err_set(u->err, -EBADMSG, "corrupt-tar",
                        "unpack %s: entry %s: %lld bytes of data, its header "
                        "says %lld",
                        u->dest, name, (long long)end, (long long)size);
        goto out;
    }
    if (fd < 0) {
        /* The same file as the installed version's: shared, not written. */
        if ((rc = share_file(u, &df, dirfd, base, name, &fd)) < 0 || fd < 0)
            goto out;
    }
    if (u->kick && end > kicked)
        kick_writeback(fd, kicked, 0);
    if (fchmod(fd, archive_entry_perm(e) & 0777) < 0 || futimens(fd, ts) < 0) {
        rc = fs_fail(u, NO_NAME, "unpack %s: set mode/mtime of %s", u->dest,
                     name);
        goto out;
    }
out:
    ds_dedup_end(&df);
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = fs_fail(u, NO_NAME, "unpack %s: close %s", u->dest, name);
    return rc;
}

static int add_fixup(unpacker *u, const char *path, size_t len,
                     struct archive_entry *e)
{
    if (u->nfix == u->capfix) {
        size_t cap = u->capfix ? 2 * u->capfix : 64;
        dir_fixup *f = realloc(u->fix, cap * sizeof(*f));
        if (f == NULL)
            goto oom;
        u->fix = f;
        u->capfix = cap;
    }
    if (u->fixlen + len + 1 > u->capfixbuf) {
        size_t cap = u->capfixbuf ? 2 * u->capfixbuf : 4096;
        while (cap < u->fixlen + len + 1)
            cap *= 2;
        char *b = realloc(u->fixbuf, cap);
        if (b == NULL)
            goto oom;
        u->fixbuf = b;
        u->capfixbuf = cap;
    }
    dir_fixup *f = &u->fix[u->nfix];
    f->path_off = u->fixlen;
    f->seq = u->nfix;
    f->mode = archive_entry_perm(e) & 0777;
    f->has_mtime = archive_entry_mtime_is_set(e);
    f->mtime.tv_sec = archive_entry_mtime(e);
    f->mtime.tv_nsec = archive_entry_mtime_nsec(e);
    memcpy(u->fixbuf + u->fixlen, path, len + 1);
    u->fixlen += len + 1;
    u->nfix++;
    return 0;
oom:
    return ds_err_set(u->err, -ENOMEM, "internal",
                      "unpack %s: out of memory recording directory %s",
                      u->dest, path);
}

static int put_dir(unpacker *u, struct archive_entry *e, int dirfd,
                   const char *base, const char *name, size_t len)
{
    /* 0700 until the end: the archive's mode may deny us writing into it. */
    if (mkdirat(dirfd, base, 0700) < 0) {
        if (errno != EEXIST)
            return fs_fail(u, NEW_NAME, "unpack %s: mkdir %s", u->dest, name);
        struct stat st;
        if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return fs_fail(u, NO_NAME, "unpack %s: stat %s", u->dest, name);
        if (!S_ISDIR(st.st_mode)) {
            int rc = make_room(u, dirfd, base, name);
            if (rc < 0)
                return rc;
            if (mkdirat(dirfd, base, 0700) < 0)
                return fs_fail(u, NEW_NAME, "unpack %s: mkdir %s", u->dest,
                               name);
        }
    }
    return add_fixup(u, u->path, len, e);
}

static int put_symlink(unpacker *u, struct archive_entry *e, int dirfd,
                       const char *base, const char *name, const char *target)
{
    if (symlinkat(target, dirfd, base) < 0) {
        if (errno != EEXIST)
            return fs_fail(u, NEW_NAME, "unpack %s: symlink %s", u->dest, name);
        int rc = make_room(u, dirfd, base, name);
        if (rc < 0)
            return rc;
        if (symlinkat(target, dirfd, base) < 0)
            return fs_fail(u, NEW_NAME, "unpack %s: symlink %s", u->dest, name);
    }
    struct timespec ts[2];
    entry_times(e, ts);
    if (utimensat(dirfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return fs_fail(u, NO_NAME, "unpack %s: set mtime of %s", u->dest, name);
    return 0;
}

/* Hardlink name (depth components deep) to target: an earlier entry,
 * reached with the same no-follow walk. A hardlink to a symlink is a
 * symlink in a new directory, so its text is checked again from there. */
static int put_hardlink(unpacker *u, const char *hl, const char *name,
                        size_t len, int ncomp)
{
    const char *why;
    size_t tlen;
    int tcomp = -1;
    if (normalise(hl, u->target, &tlen, &tcomp, &why) < 0 || tcomp == 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "hardlink target: %s",
                 tcomp == 0 ? "the destination itself" : why);
        return unsafe(u, name, msg);
    }
    if (tlen == len && memcmp(u->target, u->path, len) == 0)
        return 0; /* linked to itself: already there */

    const char *tslash = strrchr(u->target, '/');
    const char *tbase = tslash ? tslash + 1 : u->target;
    size_t tplen = tslash ? (size_t)(tslash - u->target) : 0;
    int tfd;
    int rc = open_dir(u, u->target, tplen, 0, name, &tfd);
    if (rc < 0)
        return rc;
    /* Our own descriptor: opening the link's parent may evict the cache. */
    tfd = fcntl(tfd, F_DUPFD_CLOEXEC, 0);
    if (tfd < 0)
        return fs_fail(u, NO_NAME, "unpack %s: dup", u->dest);

    struct stat st;
    if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            rc = ds_err_set(u->err, -ENOENT, "corrupt-tar",
                            "unpack %s: entry %s: hardlink target %s does not "
                            "exist",
                            u->dest, name, u->target);
        else
            rc = fs_fail(u, NO_NAME, "unpack %s: stat %s", u->dest, u->target);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = unsafe(u, name, "hardlink to a directory");
        goto out;
    }
    /* Every name of the file is one of this archive's entries (the tree
     * is new), so the entry cap bounds the links in all; this bounds them
     * per file, before the filesystem's own limit (EMLINK) would. */
    if (st.st_nlink >= UNPACK_LINK_MAX) {
        rc = ds_err_set(u->err, -EMLINK, "too-large",
                        "unpack %s: entry %s: hardlink target %s has %llu "
                        "names already, at most %d are accepted",
                        u->dest, name, u->target,
                        (unsigned long long)st.st_nlink, UNPACK_LINK_MAX);
        goto out;
    }
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlinkat(tfd, tbase, u->link, sizeof(u->link) - 1);
        if (n < 0) {
            rc = fs_fail(u, NO_NAME, "unpack %s: readlink %s", u->dest,
                         u->target);
            goto out;
        }
        u->link[n] = '\0';
        const char *bad = check_symlink(u->link, ncomp - 1);
        if (bad != NULL) {
            rc = unsafe(u, name, bad);
            goto out;
        }
    }

    const char *slash = strrchr(u->path, '/');
    const char *base = slash ? slash + 1 : u->path;
    int dirfd;
    rc = open_dir(u, u->path, slash ? (size_t)(slash - u->path) : 0, 1, name,
                  &dirfd);
    if (rc < 0)
        goto out;
    if (linkat(tfd, tbase, dirfd, base, 0) < 0) {
        if (errno != EEXIST) {
            rc = fs_fail(u, NEW_NAME, "unpack %s: link %s to %s", u->dest, name,
                         u->target);
            goto out;
        }
        rc = make_room(u, dirfd, base, name);
        if (rc == 0 && linkat(tfd, tbase, dirfd, base, 0) < 0)
            rc = fs_fail(u, NEW_NAME, "unpack %s: link %s to %s", u->dest, name,
                         u->target);
    }
out:
    close(tfd);
    return rc;
}

static int put_entry(unpacker *u, struct archive *a, struct archive_entry *e)
{
    const char *name = archive_entry_pathname(e);
    if (name == NULL)
        name = "";
    /* Every check runs before anything is written for this entry. */
    const char *why;
    size_t len;
    int ncomp;
    if (normalise(name, u->path, &len, &ncomp, &why) < 0)
        return unsafe(u, name, why);

    const char *hl = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    if (hl == NULL && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
        return unsafe(u, name,
                      "not a regular file, directory, symlink or hardlink");
    if (ncomp == 0) {
        /* "." or "./": the destination itself, which exists already. */
        if (hl == NULL && type == AE_IFDIR)
            return 0;
        return unsafe(u, name, "names the destination itself");
    }
    if (hl != NULL)
        return put_hardlink(u, hl, name, len, ncomp);
    if (type == AE_IFREG) {
        int rc = check_file(u, e, name);
        if (rc < 0)
            return rc;
    }
    const char *target = NULL;
    if (type == AE_IFLNK) {
        target = archive_entry_symlink(e);
        const char *bad = check_symlink(target, ncomp - 1);
        if (bad != NULL)
            return unsafe(u, name, bad);
    }

    const char *slash = strrchr(u->path, '/');
    const char *base = slash ? slash + 1 : u->path;
    int dirfd;
    int rc = open_dir(u, u->path, slash ? (size_t)(slash - u->path) : 0, 1,
                      name, &dirfd);
    if (rc < 0)
        return rc;
    if (type == AE_IFDIR)
        return put_dir(u, e, dirfd, base, name, len);
    if (type == AE_IFLNK)
        return put_symlink(u, e, dirfd, base, name, target);
    return put_file(u, a, e, dirfd, base, name);
}

/* Children before parents (a child's path extends its parent's, so it
 * sorts after it: descending order puts it first); for one path, archive
 * order, so the last entry's values stay. */
static int fixup_cmp(const void *pa, const void *pb, void *ctx)
{
    const dir_fixup *a = pa, *b = pb;
    const char *buf = ctx;
    int c = strcmp(buf + b->path_off, buf + a->path_off);
    if (c != 0)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int apply_fixups(unpacker *u)
{
    if (u->nfix == 0)
        return 0; /* (fix is NULL: not for qsort_r) */
    qsort_r(u->fix, u->nfix, sizeof(*u->fix), fixup_cmp, u->fixbuf);
    for (size_t i = 0; i < u->nfix; i++) {
        const dir_fixup *f = &u->fix[i];
        const char *path = u->fixbuf + f->path_off;
        int fd;
        int rc = open_dir(u, path, strlen(path), 0, path, &fd);
        if (rc < 0)
            return rc;
        struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
        if (f->has_mtime)
            ts[1] = f->mtime;
        if (fchmod(fd, f->mode) < 0 || futimens(fd, ts) < 0)
            return fs_fail(u, NO_NAME,
                           "unpack %s: set mode/mtime of directory %s", u->dest,
                           path);
    }
    return 0;
}

/* --- entry point ---------------------------------------------------------- */

static int verify(unpacker *u)
{
    const ds_unpack_opts *o = u->opts;
    if (u->z.size != o->size)
        return ds_err_set(u->err, -EBADMSG, "size-mismatch",
                          "unpack %s: uncompressed size is %llu bytes, the "
                          "event declares %llu",
                          u->dest, (unsigned long long)u->z.size,
                          (unsigned long long)o->size);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (EVP_DigestFinal_ex(u->z.md, md, &mdlen) != 1 || mdlen != DS_SHA256_LEN)
        return ds_err_set(u->err, -EIO, "internal", "unpack %s: sha256 final",
                          u->dest);
    if (memcmp(md, o->sha256, DS_SHA256_LEN) != 0) {
        static const char hx[] = "0123456789abcdef";
        char got[2 * DS_SHA256_LEN + 1], want[2 * DS_SHA256_LEN + 1];
        for (int i = 0; i < DS_SHA256_LEN; i++) {
            got[2 * i] = hx[md[i] >> 4];
            got[2 * i + 1] = hx[md[i] & 15];
            want[2 * i] = hx[o->sha256[i] >> 4];
            want[2 * i + 1] = hx[o->sha256[i] & 15];
        }
        got[2 * DS_SHA256_LEN] = want[2 * DS_SHA256_LEN] = '\0';
        return ds_err_set(u->err, -EBADMSG, "sha256-mismatch",
                          "unpack %s: sha256 of the tar stream is %s, the "
                          "event declares %s",
                          u->dest, got, want);
    }
    return 0;
}

static int unpacker_init(unpacker *u)
{
    u->dest_fd = open(u->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u->dest_fd < 0)
        return ds_err_sys(u->err, "io-error", "unpack: open destination %s",
                          u->dest);
    zsrc *z = &u->z;
    z->dctx = ZSTD_createDCtx();
    z->md = EVP_MD_CTX_new();
    if (z->dctx == NULL || z->md == NULL)
        return ds_err_set(u->err, -ENOMEM, "internal",
                          "unpack %s: out of memory", u->dest);
    if (EVP_DigestInit_ex(z->md, EVP_sha256(), NULL) != 1)
        return ds_err_set(u->err, -EIO, "internal",
                          "unpack %s: sha256 init failed", u->dest);
    if (u->opts->max_window_log != 0) {
        size_t r = ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax,
                                          (int)u->opts->max_window_log);
        if (ZSTD_isError(r))
            return ds_err_set(u->err, -EINVAL, "internal",
                              "unpack %s: zstd window log %u: %s", u->dest,
                              u->opts->max_window_log, ZSTD_getErrorName(r));
    }
    uint64_t above =
        u->opts->thread_above ? u->opts->thread_above : PIPE_MIN_SIZE;
    if (u->opts->size > above)
        pipe_start(u);
    u->kick = u->opts->size > KICK_MIN_SIZE;
    if (u->opts->link_from != NULL)
        ds_dedup_open(u->opts->link_from, &u->dd);
    if (u->p == NULL) {
        /* No larger than the stream needs: small updates come by the
         * thousand, some at once. */
        u->outcap =
            u->opts->size < UNPACK_OUT_BUF ? u->opts->size + 1 : UNPACK_OUT_BUF;
        u->out = malloc(u->outcap);
        if (u->out == NULL)
            return ds_err_set(u->err, -ENOMEM, "internal",
                              "unpack %s: out of memory", u->dest);
    }
    return 0;
}

int ds_unpack(const char *dest, ds_unpack_read_fn rd, void *rd_ctx,
              const ds_unpack_opts *opts, ds_unpack_stats *st, ds_err *err)
{
    if (dest == NULL || rd == NULL || opts == NULL || opts->sha256 == NULL)
        return ds_err_set(err, -EINVAL, "internal",
                          "unpack: missing destination, source, size or "
                          "sha256");
    unpacker *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "unpack %s: out of memory",
                          dest);
    u->dest = dest;
    u->opts = opts;
    u->err = err;
    u->cache_fd = -1;
    u->z = (zsrc){
        .dest = dest, .opts = opts, .err = err, .rd = rd, .rd_ctx = rd_ctx};
    struct archive *a = NULL;
    /* As in pack.c: names in pax headers are UTF-8 (or BINARY); read them
     * in C.UTF-8 on this thread so they come back as the producer's bytes
     * whatever the process locale. */
    locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    locale_t old = utf8 != (locale_t)0 ? uselocale(utf8) : (locale_t)0;

    int rc = unpacker_init(u);
    if (rc < 0)
        goto out;

    a = archive_read_new();
    if (a == NULL) {
        rc = ds_err_set(err, -ENOMEM, "internal", "unpack %s: out of memory",
                        dest);
        goto out;
    }
    /* Tar only, no filters: the bytes are ours, already decompressed. */
    archive_read_support_format_tar(a);
    if (archive_read_open(a, u, NULL, tar_read, NULL) != ARCHIVE_OK) {
        rc = read_failed(u, a, "open tar stream");
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            char what[64];
            snprintf(what, sizeof(what), "read tar header after %llu entries",
                     (unsigned long long)u->entries);
            rc = read_failed(u, a, what);
            goto out;
        }
        if (opts->max_entries != 0 && u->entries >= opts->max_entries) {
            rc = ds_err_set(
                err, -EFBIG, "too-large",
                "unpack %s: more than %llu entries (at %s)", dest,
                (unsigned long long)opts->max_entries,
                archive_entry_pathname(e) ? archive_entry_pathname(e) : "?");
            goto out;
        }
        rc = put_entry(u, a, e);
        if (rc < 0)
            goto out;
        u->entries++;
    }
    if (u->rc != 0) {
        rc = u->rc;
        goto out;
    }
    /* libarchive stops at the end-of-archive blocks; the rest of the stream
     * (padding, the frame's end and checksum) must still be decompressed,
     * hashed and checked. */
    for (;;) {
        const void *buf;
        ssize_t n = next_output(u, &buf);
        if (n < 0) {
            rc = (int)n;
            goto out;
        }
        if (n == 0)
            break;
    }
    pipe_stop(u); /* it has finished: from here u->z is this thread's */
    rc = verify(u);
    if (rc < 0)
        goto out;
    rc = apply_fixups(u);
out:
    /* libarchive may still point into a slot: free it first; then stop the
     * helper (wherever it is) and join it before its counts are read. */
    archive_read_free(a);
    pipe_stop(u);
    if (st != NULL) {
        st->entries = u->entries;
        st->size = u->z.size;
        st->zsize = u->z.zsize;
        st->linked = u->linked;
        st->linked_bytes = u->linked_bytes;
    }
    ds_dedup_close(u->dd);
    if (u->cache_fd >= 0)
        close(u->cache_fd);
    if (u->dest_fd >= 0)
        close(u->dest_fd);
    free(u->fix);
    free(u->fixbuf);
    free(u->out);
    EVP_MD_CTX_free(u->z.md);
    ZSTD_freeDCtx(u->z.dctx);
    free(u);
    if (utf8 != (locale_t)0) {
        uselocale(old);
        freelocale(utf8);
    }
    return rc;
}
