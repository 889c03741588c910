/*
 * listen.c - the HTTP servers' listening socket; see listen.h.
 */
#include "listen.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Split "HOST:PORT", "[V6]:PORT" or ":PORT" into host (NULL = any) and
 * port. */
static int split_addr(const char *opt, const char *addr, char *host, size_t hn,
                      char *port, size_t pn, ds_err *err)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= pn)
        return ds_err_set(err, -EINVAL, "usage",
                          "%s %s: expected HOST:PORT or :PORT", opt, addr);
    const char *h = addr;
    size_t len = (size_t)(colon - addr);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
        h++;
        len -= 2;
    }
    if (len >= hn)
        return ds_err_set(err, -EINVAL, "usage", "%s %s: host too long", opt,
                          addr);
    memcpy(host, h, len);
    host[len] = '\0';
    snprintf(port, pn, "%s", colon + 1);
    return 0;
}

int ds_listen(const char *opt, const char *addr, int *out, char *bound,
              size_t bn, ds_err *err)
{
    char host[256], port[16];
    int rc = split_addr(opt, addr, host, sizeof(host), port, sizeof(port), err);
    if (rc < 0)
        return rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0)
        return ds_err_set(err, -EINVAL, "usage", "%s %s: %s", opt, addr,
                          gai_strerror(gai));
    int fd = -1;
    rc = 0;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        fd =
            socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            rc = ds_err_sys(err, "io-error", "%s %s: socket", opt, addr);
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 32) == 0) {
            rc = 0;
            break;
        }
        rc = ds_err_sys(err, "io-error", "%s: bind %s", opt, addr);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return rc < 0 ? rc
                      : ds_err_set(err, -EINVAL, "usage",
                                   "%s %s: no usable address", opt, addr);
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
