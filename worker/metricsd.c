/*
 * metricsd.c - /metrics and /healthz over HTTP with libmicrohttpd.
 *
 * The listening socket is bound here, not by libmicrohttpd, so that a bad
 * or busy address fails `despooler run` at start-up with a message naming
 * it ("bind 0.0.0.0:9100: Address already in use"), and so that port 0
 * can be resolved to the port actually bound.
 */
#include "metricsd.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct ds_metricsd {
    struct MHD_Daemon *mhd;
    int fd;
    ds_metrics *m;
    ds_health_fn health;
    void *ctx;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *type, char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status,
                                  const char *fmt, const char *arg)
{
    char *body = NULL;
    int n = asprintf(&body, fmt, arg);
    if (n < 0)
        return MHD_NO;
    return reply(c, status, "text/plain; charset=utf-8", body, (size_t)n);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **req)
{
    (void)version;
    (void)upload;
    ds_metricsd *d = cls;
    if (*req == NULL) { /* first call: headers only; answer on the next */
        *req = d;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0; /* a body is not expected: ignore it */
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                          "method %s not allowed: GET /metrics or /healthz\n",
                          method);
    if (strcmp(url, "/metrics") == 0) {
        char *text = NULL;
        size_t len = 0;
        ds_err err;
        if (ds_metrics_render(d->m, &text, &len, &err) < 0)
            return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s\n",
                              err.msg);
        return reply(c, MHD_HTTP_OK, CONTENT_TYPE_METRICS, text, len);
    }
    if (strcmp(url, "/healthz") == 0) {
        char why[256] = "";
        int ok = d->health ? d->health(d->ctx, why, sizeof(why)) : 1;
        return reply_text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                          ok ? "ok %s\n" : "unhealthy: %s\n", why);
    }
    return reply_text(c, MHD_HTTP_NOT_FOUND,
                      "%s: not found (try /metrics or /healthz)\n", url);
}

/* Split "HOST:PORT", "[V6]:PORT" or ":PORT" into host (NULL = any) and
 * port. */
static int split_addr(const char *addr, char *host, size_t hn, char *port,
                      size_t pn, ds_err *err)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= pn)
        return ds_err_set(err, -EINVAL, "usage",
                          "--metrics %s: expected HOST:PORT or :PORT", addr);
    const char *h = addr;
    size_t len = (size_t)(colon - addr);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
        h++;
        len -= 2;
    }
    if (len >= hn)
        return ds_err_set(err, -EINVAL, "usage", "--metrics %s: host too long",
                          addr);
    memcpy(host, h, len);
    host[len] = '\0';
    snprintf(port, pn, "%s", colon + 1);
    return 0;
}

static int listen_on(const char *addr, int *out, char *bound, size_t bn,
                     ds_err *err)
{
    char host[256], port[16];
    int rc = split_addr(addr, host, sizeof(host), port, sizeof(port), err);
    if (rc < 0)
        return rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0)
        return ds_err_set(err, -EINVAL, "usage", "--metrics %s: %s", addr,
                          gai_strerror(gai));
    int fd = -1;
    rc = 0;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        fd =
            socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            rc = ds_err_sys(err, "io-error", "--metrics %s: socket", addr);
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 32) == 0) {
            rc = 0;
            break;
        }
        rc = ds_err_sys(err, "io-error", "--metrics: bind %s", addr);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return rc < 0 ? rc
                      : ds_err_set(err, -EINVAL, "usage",
                                   "--metrics %s: no usable address", addr);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char h[128] = "?", p[16] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(bound, bn, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
    *out = fd;
    return 0;
}

int ds_metricsd_start(const char *addr, ds_metrics *m, ds_health_fn health,
                      void *ctx, ds_metricsd **out, char *bound, size_t n,
                      ds_err *err)
{
    ds_metricsd *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "metrics: out of memory");
    *d = (ds_metricsd){.fd = -1, .m = m, .health = health, .ctx = ctx};
    int rc = listen_on(addr, &d->fd, bound, n, err);
    if (rc < 0) {
        free(d);
        return rc;
    }
    d->mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL,
                              on_request, d, MHD_OPTION_LISTEN_SOCKET, d->fd,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                              MHD_OPTION_END);
    if (d->mhd == NULL) {
        rc = ds_err_sys(err, "internal", "--metrics %s: start HTTP server",
                        bound);
        close(d->fd);
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void ds_metricsd_stop(ds_metricsd *d)
{
    if (d == NULL)
        return;
    MHD_stop_daemon(d->mhd); /* does not close a socket it was given */
    close(d->fd);
    free(d);
}
