/*
 * metricsd.c - /metrics and /healthz over HTTP with libmicrohttpd, on a
 * socket bound by listen.c.
 */
#include "metricsd.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "listen.h"

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

int ds_metricsd_start(const char *addr, ds_metrics *m, ds_health_fn health,
                      void *ctx, ds_metricsd **out, char *bound, size_t n,
                      ds_err *err)
{
    ds_metricsd *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "metrics: out of memory");
    *d = (ds_metricsd){.fd = -1, .m = m, .health = health, .ctx = ctx};
    int rc = ds_listen("--metrics", addr, &d->fd, bound, n, err);
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
