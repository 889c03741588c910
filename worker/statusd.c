/*
 * statusd.c - the status page's HTTP server; see statusd.h.
 *
 * Every answer is rendered when asked for, from the feed under its lock
 * (5,000 packages x 50 sites: tens of milliseconds), so the page never
 * shows a stale copy; the files are compiled in (assets.h).
 */
#include "statusd.h"

#include <ctype.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assets.h"
#include "codec.h"
#include "gzipbuf.h"
#include "jsonout.h"
#include "log.h"
#include "progress.h"

#define MAX_PATH  512  /* a longer path is not one of ours: 404 */
#define MAX_QUERY 2048 /* bytes of all query arguments together */
#define MAX_ARGS  8
#define TYPE_JSON "application/json"
#define TYPE_TEXT "text/plain; charset=utf-8"
/* The page loads nothing from elsewhere, and must not be made to. */
#define CSP                                                                    \
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "    \
    "data:; connect-src 'self'; frame-ancestors 'self'"

/* The page's matrix, rendered at most once a second however many
 * screens show it (at 5,000 x 50 a rendering takes about 0.3 s). */
#define VIEW_TTL_MS 1000

typedef struct body {
    char *raw;
    size_t len;
    void *gz; /* NULL when not worth it (under 256 bytes) */
    size_t gzlen;
} answer;

struct ds_statusd {
    struct MHD_Daemon *mhd;
    int fd;
    ds_feed *feed;
    pthread_mutex_t view_mu; /* held while rendering: one at a time */
    answer view;
    uint64_t view_ms; /* monotonic, when rendered; 0 = never */
};

static enum MHD_Result respond_enc(struct MHD_Connection *c, unsigned status,
                                   const char *type, void *body, size_t len,
                                   enum MHD_ResponseMemoryMode mode,
                                   const char *cache, const char *encoding)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (encoding != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, encoding);
    if (strcmp(type, TYPE_JSON) == 0)
        MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cache);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy", CSP);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status,
                               const char *type, void *body, size_t len,
                               enum MHD_ResponseMemoryMode mode,
                               const char *cache)
{
    return respond_enc(c, status, type, body, len, mode, cache, NULL);
}

/* An error as JSON for /api/ paths, as text elsewhere. */
static enum MHD_Result fail(struct MHD_Connection *c, unsigned status,
                            const char *url, const char *msg)
{
    char *body = NULL;
    int api = strncmp(url, "/api/", 5) == 0, n;
    if (api) {
        size_t len = 0;
        FILE *m = open_memstream(&body, &len);
        if (m == NULL)
            return MHD_NO;
        fputs("{\"error\":", m);
        ds_json_put_str(m, msg);
        fputs("}\n", m);
        if (fclose(m) != 0) {
            free(body);
            return MHD_NO;
        }
        n = (int)len;
    } else if ((n = asprintf(&body, "%s\n", msg)) < 0) {
        return MHD_NO;
    }
    return respond(c, status, api ? TYPE_JSON : TYPE_TEXT, body, (size_t)n,
                   MHD_RESPMEM_MUST_FREE, "no-store");
}

/* 1 when the client takes gzip (Accept-Encoding names it, not with
 * q=0). */
static int takes_gzip(struct MHD_Connection *c)
{
    const char *ae = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    const char *g = ae ? strstr(ae, "gzip") : NULL;
    if (g == NULL)
        return 0;
    g += 4;
    while (*g == ' ')
        g++;
    if (*g != ';')
        return 1;
    const char *q = strstr(g, "q=");
    const char *next = strchr(g, ',');
    /* gzip;q=0 (or 0.0, 0.000) refuses it; any other weight takes it. */
    return q == NULL || (next != NULL && q > next) || strtod(q + 2, NULL) > 0;
}

/* A rendered answer, gzipped too when that is worth it. */
static void body_gzip(answer *b)
{
    ds_err err;
    b->gz = NULL;
    b->gzlen = 0;
    if (b->len >= 256 &&
        ds_gzip(b->raw, b->len, 1, &b->gz, &b->gzlen, &err) < 0)
        b->gz = NULL; /* sent as it is */
}

static void body_free(answer *b)
{
    free(b->raw);
    free(b->gz);
    *b = (answer){0};
}

/* Send b (taking it), compressed when the client takes that. */
static enum MHD_Result send_body(struct MHD_Connection *c, answer *b)
{
    enum MHD_Result r;
    if (b->gz != NULL && takes_gzip(c)) {
        r = respond_enc(c, MHD_HTTP_OK, TYPE_JSON, b->gz, b->gzlen,
                        MHD_RESPMEM_MUST_FREE, "no-store", "gzip");
        b->gz = NULL;
    } else {
        r = respond(c, MHD_HTTP_OK, TYPE_JSON, b->raw, b->len,
                    MHD_RESPMEM_MUST_FREE, "no-store");
        b->raw = NULL;
    }
    body_free(b);
    return r;
}

typedef int (*render_fn)(ds_feed *f, FILE *out, const char *a, const char *b);

static int r_status(ds_feed *f, FILE *o, const char *a, const char *b)
{
    return ds_api_status(f, o, a, b);
}
static int r_lag(ds_feed *f, FILE *o, const char *a, const char *b)
{
    (void)a, (void)b;
    return ds_api_lag(f, o);
}
static int r_sites(ds_feed *f, FILE *o, const char *a, const char *b)
{
    (void)a, (void)b;
    return ds_api_sites(f, o);
}
static int r_package(ds_feed *f, FILE *o, const char *a, const char *b)
{
    (void)b;
    return ds_api_package(f, o, a);
}

static enum MHD_Result render(struct MHD_Connection *c, ds_feed *f,
                              const char *url, render_fn fn, const char *a,
                              const char *b)
{
    char *body = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&body, &len);
    if (m == NULL)
        return fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, url, "out of memory");
    int rc = fn(f, m, a, b);
    if (rc >= 0 && putc('\n', m) == EOF)
        rc = -1;
    if (fclose(m) != 0)
        rc = -1;
    if (rc != 0) {
        free(body);
        return rc > 0 ? fail(c, MHD_HTTP_NOT_FOUND, url, "no such package")
                      : fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, url,
                             "rendering failed (out of memory)");
    }
    answer ans = {.raw = body, .len = len};
    if (takes_gzip(c))
        body_gzip(&ans);
    return send_body(c, &ans);
}

static int copy_body(const answer *from, answer *to)
{
    *to = (answer){0};
    if ((to->raw = malloc(from->len)) == NULL)
        return -1;
    memcpy(to->raw, from->raw, from->len);
    to->len = from->len;
    if (from->gz != NULL && (to->gz = malloc(from->gzlen)) != NULL) {
        memcpy(to->gz, from->gz, from->gzlen);
        to->gzlen = from->gzlen;
    }
    return 0;
}

/* /api/view: from the copy of the last second, or rendered anew. */
static enum MHD_Result view(struct MHD_Connection *c, ds_statusd *d,
                            const char *url)
{
    answer b;
    pthread_mutex_lock(&d->view_mu);
    uint64_t now = ds_mono_ms();
    if (d->view_ms == 0 || now - d->view_ms >= VIEW_TTL_MS) {
        answer fresh = {0};
        FILE *m = open_memstream(&fresh.raw, &fresh.len);
        int rc = m == NULL ? -1 : ds_api_view(d->feed, m);
        if (m != NULL && ((rc == 0 && putc('\n', m) == EOF) || fclose(m) != 0))
            rc = -1;
        if (rc != 0) {
            pthread_mutex_unlock(&d->view_mu);
            free(fresh.raw);
            return fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, url,
                        "rendering failed (out of memory)");
        }
        body_gzip(&fresh);
        body_free(&d->view);
        d->view = fresh;
        d->view_ms = now;
    }
    int rc = copy_body(&d->view, &b);
    pthread_mutex_unlock(&d->view_mu);
    if (rc < 0)
        return fail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, url, "out of memory");
    return send_body(c, &b);
}

/* Sums the query's size and counts its arguments. */
typedef struct qsize {
    size_t bytes;
    int n;
    int bad; /* an argument we do not know */
} qsize;

static enum MHD_Result count_arg(void *cls, enum MHD_ValueKind kind,
                                 const char *key, const char *value)
{
    (void)kind;
    qsize *q = cls;
    q->bytes += strlen(key) + (value ? strlen(value) : 0) + 2;
    q->n++;
    if (strcmp(key, "name") != 0 && strcmp(key, "package") != 0 &&
        strcmp(key, "site") != 0 && strcmp(key, "_") != 0)
        q->bad = 1;
    return MHD_YES;
}

/* A query argument that must be a package id or site name, or absent;
 * *bad is set when present and not one. */
static const char *name_arg(struct MHD_Connection *c, const char *key, int *bad)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
    if (v != NULL && (v[0] == '\0' || strlen(v) > DS_PACKAGE_MAX ||
                      !ds_site_valid(v, strlen(v))))
        *bad = 1;
    return v;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **req)
{
    (void)version;
    (void)upload;
    ds_statusd *d = cls;
    if (*req == NULL) { /* first call: headers only; answer on the next */
        *req = d;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0; /* a body is not expected: ignore it */
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return fail(c, MHD_HTTP_METHOD_NOT_ALLOWED, url,
                    "method not allowed: GET or HEAD");
    if (strlen(url) > MAX_PATH)
        return fail(c, MHD_HTTP_NOT_FOUND, url, "not found");
    qsize q = {0};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, count_arg, &q);
    if (q.bytes > MAX_QUERY || q.n > MAX_ARGS)
        return fail(c, MHD_HTTP_BAD_REQUEST, url,
                    "query too long (at most 2048 bytes, 8 arguments)");
    if (q.bad)
        return fail(c, MHD_HTTP_BAD_REQUEST, url,
                    "unknown query argument (name, package, site)");
    for (const ds_asset *a = ds_assets; a->path != NULL; a++)
        if (strcmp(url, a->path) == 0 ||
            (strcmp(url, "/index.html") == 0 && strcmp(a->path, "/") == 0))
            return respond(c, MHD_HTTP_OK, a->type, (void *)a->data, a->len,
                           MHD_RESPMEM_PERSISTENT, "no-cache");
    int bad = 0;
    if (strcmp(url, "/api/view") == 0)
        return view(c, d, url);
    if (strcmp(url, "/api/lag") == 0)
        return render(c, d->feed, url, r_lag, NULL, NULL);
    if (strcmp(url, "/api/sites") == 0)
        return render(c, d->feed, url, r_sites, NULL, NULL);
    if (strcmp(url, "/api/status") == 0) {
        const char *p = name_arg(c, "package", &bad),
                   *s = name_arg(c, "site", &bad);
        if (bad)
            return fail(c, MHD_HTTP_BAD_REQUEST, url,
                        "package and site are names: letters, digits, . _ - "
                        "(at most 128)");
        return render(c, d->feed, url, r_status, p, s);
    }
    if (strcmp(url, "/api/package") == 0) {
        const char *p = name_arg(c, "name", &bad);
        if (bad || p == NULL)
            return fail(c, MHD_HTTP_BAD_REQUEST, url,
                        "name=PACKAGE is required (letters, digits, . _ -, at "
                        "most 128)");
        return render(c, d->feed, url, r_package, p, NULL);
    }
    if (strcmp(url, "/healthz") == 0) {
        char why[600];
        int ok = ds_feed_health(d->feed, why, sizeof(why));
        char *body = NULL;
        int n = asprintf(&body, "%s%s\n", ok ? "ok " : "unhealthy: ", why);
        if (n < 0)
            return MHD_NO;
        return respond(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                       TYPE_TEXT, body, (size_t)n, MHD_RESPMEM_MUST_FREE,
                       "no-store");
    }
    return fail(c, MHD_HTTP_NOT_FOUND, url,
                "not found (the page is /; JSON under /api/status, "
                "/api/lag)");
}

/* libmicrohttpd's own unescaping turns %00 into a NUL that ends the
 * path ("/%00anything" would be "/"): this one leaves %00 as it is, so
 * such a path matches nothing. Decodes in place; returns the length. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        int hi, lo;
        if (r[0] == '%' &&
            (hi = ds_hex_digit((char)tolower((unsigned char)r[1]))) >= 0 &&
            (lo = ds_hex_digit((char)tolower((unsigned char)r[2]))) >= 0 &&
            (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

int ds_statusd_start(int fd, const char *bound, ds_feed *feed, ds_statusd **out,
                     ds_err *err)
{
    ds_statusd *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        close(fd);
        return ds_err_set(err, -ENOMEM, "internal", "--serve: out of memory");
    }
    *d = (ds_statusd){.fd = fd, .feed = feed};
    pthread_mutex_init(&d->view_mu, NULL);
    int rc;
    /* Two threads: a slow client or a big rendering never holds up the
     * other. A request line and headers up to 64 KiB reach on_request
     * (which refuses long queries with 400); libmicrohttpd answers
     * longer ones itself (414/431). */
    d->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
        on_request, d, MHD_OPTION_LISTEN_SOCKET, d->fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)256, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_END);
    if (d->mhd == NULL) {
        rc =
            ds_err_sys(err, "internal", "--serve %s: start HTTP server", bound);
        close(d->fd);
        pthread_mutex_destroy(&d->view_mu);
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void ds_statusd_stop(ds_statusd *d)
{
    if (d == NULL)
        return;
    MHD_stop_daemon(d->mhd); /* does not close a socket it was given */
    close(d->fd);
    body_free(&d->view);
    pthread_mutex_destroy(&d->view_mu);
    free(d);
}
