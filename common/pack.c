/*
 * pack.c - the publisher's payload: walks a directory (or copies a tar
 * file's entries) into a pax-restricted tar stream written by libarchive
 * through our own block callback, which hashes every tar byte (SHA-256)
 * and feeds it to one zstd compression stream written to the output fd.
 * Everything that could vary between two runs over the same tree (entry
 * order, owners, atime/ctime, locale collation) is fixed here, so the
 * sha256 identifies the content. Memory is constant: one read buffer, one
 * compressed buffer, libarchive's 64 KiB block, and one sorted name list
 * per directory on the current path. ds_pack_parts sends the same tar
 * bytes to a part cutter instead (parts.c), which hashes the stream and
 * compresses its parts; the packer then neither hashes nor compresses.
 */
#include "pack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "fsutil.h"

#define PACK_BLOCK         (64 * 1024)   /* libarchive output block */
#define PACK_READ_BUF      (256 * 1024)  /* file reads */
#define PACK_PROGRESS_STEP (1024 * 1024) /* report at most every 1 MiB */

typedef struct packer {
    const char *source;
    int level, threads;
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
    ds_err *err;
    int rc; /* first failure recorded by a callback, 0 if none */
    int out_fd;
    ds_parts *sink; /* ds_pack_parts: the tar bytes go here, not to out_fd */
    ds_pack_out_fn out; /* ds_pack_stream: or here */
    void *out_ctx;
    ZSTD_CCtx *cctx;
    EVP_MD_CTX *md;
    uint8_t *zbuf;
    size_t zcap;
    uint8_t *rbuf;
    struct archive *aw;
    struct archive_entry *entry;
    uint64_t files, size, zsize;
    uint64_t done, total, reported;
    uint64_t counted;    /* entries the pre-walk saw */
    char path[PATH_MAX]; /* relative path of the entry being handled */
} packer;

/* Feed n tar bytes (or the end of the frame) to zstd and write whatever it
 * produces. With ZSTD_e_continue zstd may keep input buffered: the loop
 * only guarantees all of buf was consumed; ZSTD_e_end loops until the
 * frame (with its checksum) is fully flushed. */
static int compress_out(packer *p, const void *buf, size_t n,
                        ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {buf, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {p->zbuf, p->zcap, 0};
        size_t r = ZSTD_compressStream2(p->cctx, &out, &in, mode);
        if (ZSTD_isError(r))
            return ds_err_set(p->err, -EIO, "internal",
                              "pack %s: zstd compress: %s", p->source,
                              ZSTD_getErrorName(r));
        if (out.pos > 0) {
            if (ds_write_all(p->out_fd, p->zbuf, out.pos) < 0)
                return ds_err_sys(p->err, "io-error",
                                  "pack %s: write compressed stream to fd %d",
                                  p->source, p->out_fd);
            p->zsize += out.pos;
        }
        if (mode == ZSTD_e_end ? r == 0 : in.pos == in.size)
            return 0;
    }
}

/* libarchive's output callback: one block of tar bytes. */
static la_ssize_t tar_block(struct archive *a, void *ctx, const void *buf,
                            size_t n)
{
    (void)a;
    packer *p = ctx;
    if (p->rc != 0)
        return -1;
    if (p->cancelled != NULL && p->cancelled(p->cancel_ctx)) {
        p->rc = ds_err_set(p->err, -ECANCELED, "cancelled",
                           "pack %s: cancelled", p->source);
        return -1;
    }
    if (p->sink != NULL || p->out != NULL) {
        int rc = p->sink != NULL ? ds_parts_write(p->sink, buf, n, p->err)
                                 : p->out(p->out_ctx, buf, n, p->err);
        if (rc < 0) {
            p->rc = rc;
            return -1;
        }
        p->size += n;
        return (la_ssize_t)n;
    }
    if (EVP_DigestUpdate(p->md, buf, n) != 1) {
        p->rc = ds_err_set(p->err, -EIO, "internal", "pack %s: sha256 update",
                           p->source);
        return -1;
    }
    p->size += n;
    int rc = compress_out(p, buf, n, ZSTD_e_continue);
    if (rc < 0) {
        p->rc = rc;
        return -1;
    }
    return (la_ssize_t)n;
}

static void progress(packer *p, int force)
{
    if (p->progress == NULL)
        return;
    if (!force && p->done - p->reported < PACK_PROGRESS_STEP)
        return;
    p->reported = p->done;
    p->progress(p->progress_ctx, p->done, p->total);
}

/* A failed libarchive write call: report our callback's error if it was
 * ours, else libarchive's. */
static int write_failed(packer *p, const char *what, const char *name)
{
    if (p->rc != 0)
        return p->rc;
    return ds_err_set(p->err, -EIO, "internal", "pack %s: %s %s: %s", p->source,
                      what, name, archive_error_string(p->aw));
}

static int put_header(packer *p, struct archive_entry *e, const char *name)
{
    /* ARCHIVE_WARN: a name that is not valid in the locale's charset is
     * stored as raw bytes (hdrcharset=BINARY); the entry is still whole. */
    int r = archive_write_header(p->aw, e);
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
        return write_failed(p, "write tar header for", name);
    p->files++;
    return 0;
}

static int put_data(packer *p, const void *buf, size_t n, const char *name)
{
    la_ssize_t w = archive_write_data(p->aw, buf, n);
    if (w < 0 || (size_t)w != n)
        return write_failed(p, "write tar data for", name);
    return 0;
}

/* --- directory source ---------------------------------------------------
 *
 * Each directory is scanned (scandirat, byte-wise sorted) and its entries
 * are stat'ed and opened relative to the directory's own descriptor, so
 * the kernel resolves one name, not the whole relative path. Past
 * PACK_FD_DEPTH levels the walk stops opening descriptors and resolves
 * relative paths from the deepest one it holds, so depth never runs into
 * the descriptor limit. Hardlinked files are stored as separate regular
 * files: simpler, and no entry depends on another.
 */

#define PACK_FD_DEPTH 64

static int name_filter(const struct dirent *d)
{
    return !(d->d_name[0] == '.' &&
             (d->d_name[1] == '\0' ||
              (d->d_name[1] == '.' && d->d_name[2] == '\0')));
}

/* Byte-wise order, never the locale's collation (alphasort uses strcoll). */
static int name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int unsupported(packer *p, const char *name)
{
    return ds_err_set(p->err, -EINVAL, "unsupported-file",
                      "pack %s: %s is a device node, FIFO or socket: only "
                      "regular files, directories and symlinks can be packed",
                      p->source, name);
}

/* Pack the regular file p->path, named rel relative to dfd. */
static int pack_file(packer *p, int dfd, const char *rel)
{
    int rc = 0;
    int fd = openat(dfd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return ds_err_sys(p->err, "io-error", "pack %s: open %s", p->source,
                          p->path);
    /* The header is built from the open file, so what we describe is what
     * we read even if the name was replaced since the directory scan. */
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = ds_err_sys(p->err, "io-error", "pack %s: stat %s", p->source,
                        p->path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = unsupported(p, p->path);
        goto out;
    }
    if (st.st_size > PACK_READ_BUF)
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

    struct archive_entry *e = p->entry;
    archive_entry_clear(e);
    archive_entry_copy_pathname(e, p->path);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, st.st_mode & 07777);
    archive_entry_set_size(e, st.st_size);
    archive_entry_set_mtime(e, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    rc = put_header(p, e, p->path);
    if (rc < 0)
        goto out;

    /* Exactly st_size bytes: the header is written already, so a file that
     * shrank is an error (libarchive would pad it with zeros) and bytes
     * appended since are left out. */
    uint64_t left = (uint64_t)st.st_size;
    while (left > 0) {
        size_t want = left < PACK_READ_BUF ? (size_t)left : PACK_READ_BUF;
        ssize_t n = read(fd, p->rbuf, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = ds_err_sys(p->err, "io-error", "pack %s: read %s", p->source,
                            p->path);
            goto out;
        }
        if (n == 0) {
            rc = ds_err_set(p->err, -EIO, "io-error",
                            "pack %s: %s shrank while being packed (%llu "
                            "bytes missing): retry when it is stable",
                            p->source, p->path, (unsigned long long)left);
            goto out;
        }
        rc = put_data(p, p->rbuf, (size_t)n, p->path);
        if (rc < 0)
            goto out;
        left -= (uint64_t)n;
        p->done += (uint64_t)n;
        progress(p, 0);
    }
out:
    close(fd);
    return rc;
}

/* Directory or symlink p->path, named rel relative to dfd. */
static int pack_other(packer *p, int dfd, const char *rel,
                      const struct stat *st)
{
    struct archive_entry *e = p->entry;
    archive_entry_clear(e);
    archive_entry_copy_pathname(e, p->path);
    archive_entry_set_perm(e, st->st_mode & 07777);
    archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    archive_entry_set_size(e, 0);
    if (S_ISDIR(st->st_mode)) {
        archive_entry_set_filetype(e, AE_IFDIR);
    } else {
        char target[PATH_MAX];
        ssize_t n = readlinkat(dfd, rel, target, sizeof(target));
        if (n < 0)
            return ds_err_sys(p->err, "io-error", "pack %s: readlink %s",
                              p->source, p->path);
        if ((size_t)n >= sizeof(target))
            return ds_err_set(p->err, -ENAMETOOLONG, "io-error",
                              "pack %s: readlink %s: target too long",
                              p->source, p->path);
        target[n] = '\0';
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_copy_symlink(e, target);
    }
    return put_header(p, e, p->path);
}

/*
 * Depth-first over the directory p->path[0..len) ("" is the root). Names
 * below it are resolved as p->path + off relative to dfd; own says dfd is
 * this directory itself (else it is an ancestor's).
 * count_only: the pre-walk that sums regular file sizes for progress and
 * finds unsupported files before anything is written.
 */
static int walk(packer *p, int dfd, int own, size_t off, size_t len, int depth,
                int count_only)
{
    struct dirent **list = NULL;
    int n =
        scandirat(dfd, own ? "." : p->path + off, &list, name_filter, name_cmp);
    if (n < 0)
        return ds_err_sys(p->err, "io-error", "pack %s: scan directory %s",
                          p->source, len ? p->path : ".");
    int rc = 0, i;
    for (i = 0; i < n && rc == 0; i++) {
        const char *name = list[i]->d_name;
        size_t nlen = strlen(name);
        size_t clen = len + (len ? 1 : 0) + nlen;
        if (clen >= sizeof(p->path)) {
            rc = ds_err_set(p->err, -ENAMETOOLONG, "io-error",
                            "pack %s: path of %s/%s is too long", p->source,
                            len ? p->path : ".", name);
            break;
        }
        if (len)
            p->path[len] = '/';
        memcpy(p->path + len + (len ? 1 : 0), name, nlen + 1);
        const char *rel = p->path + off;

        struct stat st;
        unsigned char dt = list[i]->d_type;
        if (count_only && (dt == DT_DIR || dt == DT_LNK)) {
            st.st_mode = dt == DT_DIR ? S_IFDIR : S_IFLNK;
        } else if (count_only && dt != DT_REG && dt != DT_UNKNOWN) {
            rc = unsupported(p, p->path);
            break;
        } else if (fstatat(dfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = ds_err_sys(p->err, "io-error", "pack %s: stat %s", p->source,
                            p->path);
            break;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) &&
            !S_ISLNK(st.st_mode)) {
            rc = unsupported(p, p->path);
            break;
        }
        if (count_only) {
            p->counted++;
            if (S_ISREG(st.st_mode))
                p->total += (uint64_t)st.st_size;
        } else if (S_ISREG(st.st_mode)) {
            rc = pack_file(p, dfd, rel);
        } else {
            rc = pack_other(p, dfd, rel, &st);
        }
        if (rc == 0 && S_ISDIR(st.st_mode)) {
            if (depth < PACK_FD_DEPTH) {
                int cfd = openat(
                    dfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd < 0) {
                    rc = ds_err_sys(p->err, "io-error",
                                    "pack %s: open directory %s", p->source,
                                    p->path);
                    break;
                }
                rc = walk(p, cfd, 1, clen + 1, clen, depth + 1, count_only);
                close(cfd);
            } else {
                rc = walk(p, dfd, 0, off, clen, depth + 1, count_only);
            }
        }
        if (rc == 0)
            p->path[len] = '\0';
    }
    for (i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return rc;
}

static int pack_dir(packer *p)
{
    int root_fd = open(p->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return ds_err_sys(p->err, "io-error", "pack: open directory %s",
                          p->source);
    p->path[0] = '\0';
    int rc = 0;
    /* The pre-walk costs a second scan of the tree: only for progress. */
    if (p->progress != NULL) {
        rc = walk(p, root_fd, 1, 0, 0, 0, 1);
        p->path[0] = '\0';
        if (rc == 0)
            progress(p, 1);
    }
    if (rc == 0)
        rc = walk(p, root_fd, 1, 0, 0, 0, 0);
    close(root_fd);
    return rc;
}

/* --- tar source ---------------------------------------------------------
 *
 * Entries are copied in the input's order with the same normalisation as a
 * directory walk: owners, atime/ctime/birthtime, xattrs, ACLs, file flags
 * and sparse maps dropped (sparse files are written out whole).
 */

static int pack_tar(packer *p)
{
    int rc = 0;
    struct archive *ar = archive_read_new();
    if (ar == NULL)
        return ds_err_set(p->err, -ENOMEM, "internal",
                          "pack %s: archive_read_new: out of memory",
                          p->source);
    archive_read_support_filter_all(ar);
    archive_read_support_format_all(ar);
    if (archive_read_open_filename(ar, p->source, PACK_BLOCK) != ARCHIVE_OK) {
        rc = ds_err_set(p->err, -EINVAL, "corrupt-tar", "pack %s: open: %s",
                        p->source, archive_error_string(ar));
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(ar, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = ds_err_set(p->err, -EINVAL, "corrupt-tar",
                            "pack %s: read header after %llu entries: %s",
                            p->source, (unsigned long long)p->files,
                            archive_error_string(ar));
            goto out;
        }
        const char *name = archive_entry_pathname(e);
        if (name == NULL || name[0] == '\0') {
            rc = ds_err_set(p->err, -EINVAL, "corrupt-tar",
                            "pack %s: entry %llu has no path", p->source,
                            (unsigned long long)p->files);
            goto out;
        }
        int hardlink = archive_entry_hardlink(e) != NULL;
        mode_t type = archive_entry_filetype(e);
        if (!hardlink && type != AE_IFREG && type != AE_IFDIR &&
            type != AE_IFLNK) {
            rc = unsupported(p, name);
            goto out;
        }
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        archive_entry_copy_uname(e, NULL);
        archive_entry_copy_gname(e, NULL);
        archive_entry_unset_atime(e);
        archive_entry_unset_ctime(e);
        archive_entry_unset_birthtime(e);
        archive_entry_xattr_clear(e);
        archive_entry_acl_clear(e);
        archive_entry_sparse_clear(e);
        archive_entry_set_fflags(e, 0, 0);
        archive_entry_copy_mac_metadata(e, NULL, 0);
        if (hardlink || type != AE_IFREG)
            archive_entry_set_size(e, 0);
        rc = put_header(p, e, name);
        if (rc < 0)
            goto out;
        if (hardlink || type != AE_IFREG)
            continue;
        for (;;) {
            la_ssize_t n = archive_read_data(ar, p->rbuf, PACK_READ_BUF);
            if (n == 0)
                break;
            if (n < 0) {
                rc = ds_err_set(p->err, -EINVAL, "corrupt-tar",
                                "pack %s: read data of %s: %s", p->source, name,
                                archive_error_string(ar));
                goto out;
            }
            rc = put_data(p, p->rbuf, (size_t)n, name);
            if (rc < 0)
                goto out;
            p->done = (uint64_t)archive_filter_bytes(ar, -1);
            progress(p, 0);
        }
    }
    p->done = (uint64_t)archive_filter_bytes(ar, -1);
out:
    archive_read_free(ar);
    return rc;
}

/* --- entry point --------------------------------------------------------- */

/* ds_pack's own compression stream and digest. */
static int stream_init(packer *p)
{
    p->cctx = ZSTD_createCCtx();
    p->md = EVP_MD_CTX_new();
    p->zcap = ZSTD_CStreamOutSize();
    p->zbuf = malloc(p->zcap);
    if (p->cctx == NULL || p->md == NULL || p->zbuf == NULL)
        return ds_err_set(p->err, -ENOMEM, "internal", "pack %s: out of memory",
                          p->source);
    if (EVP_DigestInit_ex(p->md, EVP_sha256(), NULL) != 1)
        return ds_err_set(p->err, -EIO, "internal",
                          "pack %s: sha256 init failed", p->source);

    size_t r =
        ZSTD_CCtx_setParameter(p->cctx, ZSTD_c_compressionLevel, p->level);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(p->cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r) && p->threads > 0)
        r = ZSTD_CCtx_setParameter(p->cctx, ZSTD_c_nbWorkers, p->threads);
    if (ZSTD_isError(r))
        return ds_err_set(p->err, -EINVAL, "bad-option",
                          "pack %s: zstd level %d, threads %d: %s", p->source,
                          p->level, p->threads, ZSTD_getErrorName(r));
    return 0;
}

static int packer_init(packer *p)
{
    p->rbuf = malloc(PACK_READ_BUF);
    p->entry = archive_entry_new();
    p->aw = archive_write_new();
    if (p->rbuf == NULL || p->entry == NULL || p->aw == NULL)
        return ds_err_set(p->err, -ENOMEM, "internal", "pack %s: out of memory",
                          p->source);
    if (p->sink == NULL && p->out == NULL) {
        int rc = stream_init(p);
        if (rc < 0)
            return rc;
    }

    /* pax restricted: plain ustar headers unless an entry needs more (long
     * or non-ASCII names, big sizes), and libarchive names its extension
     * headers "<dir>/PaxHeader/<name>" without a pid, so the bytes depend
     * only on the entries. No padding after the end-of-archive blocks. */
    if (archive_write_set_format_pax_restricted(p->aw) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(p->aw, PACK_BLOCK) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(p->aw, 1) != ARCHIVE_OK ||
        archive_write_open(p->aw, p, NULL, tar_block, NULL) != ARCHIVE_OK)
        return write_failed(p, "open tar writer", "");
    return 0;
}

static void packer_free(packer *p)
{
    archive_write_free(p->aw);
    archive_entry_free(p->entry);
    free(p->rbuf);
    free(p->zbuf);
    EVP_MD_CTX_free(p->md);
    ZSTD_freeCCtx(p->cctx);
}

/* The stream's end: ds_pack ends its zstd frame and its digest, the sink
 * cuts its last part and emits the rest. Fills size, zsize, sha256 and
 * parts of st (may be NULL). */
static int finish(packer *p, ds_pack_stats *st)
{
    ds_pack_stats r = {.files = p->files, .size = p->size};
    if (p->sink != NULL) {
        ds_parts_totals t;
        int rc = ds_parts_finish(p->sink, &t, p->err);
        if (rc < 0)
            return rc;
        if (t.size != p->size)
            return ds_err_set(p->err, -EIO, "internal",
                              "pack %s: the part cutter saw %llu bytes of "
                              "%llu",
                              p->source, (unsigned long long)t.size,
                              (unsigned long long)p->size);
        r.zsize = t.zsize;
        r.parts = t.parts;
        memcpy(r.sha256, t.sha256, DS_SHA256_LEN);
    } else if (p->out != NULL) {
        r.zsize = 0; /* neither hashed nor compressed here */
    } else {
        int rc = compress_out(p, NULL, 0, ZSTD_e_end);
        if (rc < 0)
            return rc;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        if (EVP_DigestFinal_ex(p->md, md, &mdlen) != 1 ||
            mdlen != DS_SHA256_LEN)
            return ds_err_set(p->err, -EIO, "internal", "pack %s: sha256 final",
                              p->source);
        r.zsize = p->zsize;
        memcpy(r.sha256, md, DS_SHA256_LEN);
    }
    if (st != NULL)
        *st = r;
    return 0;
}

static int pack_run(const char *source, const ds_pack_opts *opts, int out_fd,
                    ds_parts *sink, ds_pack_out_fn out, void *out_ctx,
                    ds_pack_stats *st, ds_err *err)
{
    packer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "pack %s: out of memory",
                          source);
    p->source = source;
    p->err = err;
    p->out_fd = out_fd;
    p->sink = sink;
    p->out = out;
    p->out_ctx = out_ctx;
    p->level = opts && opts->level ? opts->level : 3;
    p->threads = opts ? opts->threads : 0;
    p->progress = opts ? opts->progress : NULL;
    p->progress_ctx = opts ? opts->progress_ctx : NULL;
    p->cancelled = opts ? opts->cancelled : NULL;
    p->cancel_ctx = opts ? opts->cancel_ctx : NULL;

    /* Names are bytes, but libarchive converts them from the locale's
     * charset to UTF-8 for pax headers: under "C" every non-ASCII name
     * would become hdrcharset=BINARY, under a UTF-8 locale it would not, so
     * the same tree would hash differently per environment. This thread
     * (only) runs in C.UTF-8: valid UTF-8 names are stored as UTF-8, other
     * bytes as BINARY, whatever the caller's locale. */
    locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    locale_t old = utf8 != (locale_t)0 ? uselocale(utf8) : (locale_t)0;

    int rc = packer_init(p);
    if (rc < 0)
        goto out;

    struct stat sst;
    if (stat(source, &sst) < 0) {
        rc = ds_err_sys(err, "io-error", "pack: stat %s", source);
        goto out;
    }
    if (S_ISDIR(sst.st_mode)) {
        rc = pack_dir(p);
    } else if (S_ISREG(sst.st_mode)) {
        p->total = (uint64_t)sst.st_size;
        progress(p, 1);
        rc = pack_tar(p);
    } else {
        rc = ds_err_set(err, -EINVAL, "unsupported-file",
                        "pack %s: neither a directory nor a tar file", source);
    }
    if (rc < 0)
        goto out;

    /* Writes the end-of-archive blocks and flushes the last block through
     * tar_block; only then is the zstd frame ended (the last part cut). */
    if (archive_write_close(p->aw) != ARCHIVE_OK) {
        rc = write_failed(p, "close tar writer", "");
        goto out;
    }
    rc = finish(p, st);
    if (rc < 0)
        goto out;
    progress(p, 1);
out:
    /* After a failure, archive_write_free's implicit close must not push
     * the end of the tar through tar_block into out_fd or the sink, and
     * the sink emits nothing more. */
    if (rc < 0 && p->rc == 0)
        p->rc = rc;
    if (rc < 0 && sink != NULL)
        ds_parts_cancel(sink);
    packer_free(p);
    free(p);
    if (utf8 != (locale_t)0) {
        uselocale(old);
        freelocale(utf8);
    }
    return rc;
}

int ds_pack(const char *source, const ds_pack_opts *opts, int out_fd,
            ds_pack_stats *st, ds_err *err)
{
    if (source == NULL || out_fd < 0)
        return ds_err_set(err, -EINVAL, "internal",
                          "pack: missing source or output");
    return pack_run(source, opts, out_fd, NULL, NULL, NULL, st, err);
}

int ds_pack_parts(const char *source, const ds_pack_opts *opts, ds_parts *sink,
                  ds_pack_stats *st, ds_err *err)
{
    if (source == NULL || sink == NULL)
        return ds_err_set(err, -EINVAL, "internal",
                          "pack: missing source or part cutter");
    return pack_run(source, opts, -1, sink, NULL, NULL, st, err);
}

int ds_pack_stream(const char *source, const ds_pack_opts *opts,
                   ds_pack_out_fn out, void *out_ctx, ds_pack_stats *st,
                   ds_err *err)
{
    if (source == NULL || out == NULL)
        return ds_err_set(err, -EINVAL, "internal",
                          "pack: missing source or output callback");
    return pack_run(source, opts, -1, NULL, out, out_ctx, st, err);
}

/* Per entry of the tar stream, at most: its header block, a pax extended
 * header (header block + up to 2 blocks of records for long names or
 * links) and the padding of its data to a block. */
#define PACK_ENTRY_BOUND (5 * 512)

int ds_pack_source_bytes(const char *source, uint64_t *bytes, ds_err *err)
{
    struct stat sst;
    *bytes = 0;
    if (stat(source, &sst) < 0)
        return ds_err_sys(err, "io-error", "pack: stat %s", source);
    if (S_ISREG(sst.st_mode)) {
        *bytes = (uint64_t)sst.st_size;
        return 0;
    }
    if (!S_ISDIR(sst.st_mode))
        return ds_err_set(err, -EINVAL, "unsupported-file",
                          "pack %s: neither a directory nor a tar file",
                          source);
    packer p = {.source = source, .err = err};
    int root_fd = open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return ds_err_sys(err, "io-error", "pack: open directory %s", source);
    int rc = walk(&p, root_fd, 1, 0, 0, 0, 1);
    close(root_fd);
    if (rc == 0)
        *bytes = p.total + (p.counted + 2) * PACK_ENTRY_BOUND;
    return rc;
}
