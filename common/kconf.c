/* kconf.c - -b/@FILE, -X and -F handling; see kconf.h. */
#include "kconf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int ds_kconf_bootstrap(ds_kconf *kc, const char *arg, ds_err *err)
{
    char *list = NULL;
    if (arg[0] == '@') {
        char *text = NULL;
        size_t len;
        int rc = ds_read_file(arg + 1, &text, &len, err);
        if (rc < 0)
            return rc;
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line != NULL;
             line = strtok_r(NULL, "\n", &save)) {
            char *t = trim(line);
            if (*t != '\0' && *t != '#') {
                list = strdup(t);
                break;
            }
        }
        free(text);
        if (list == NULL)
            return ds_err_set(err, -EINVAL, "usage",
                              "read bootstrap file %s: no broker list in it "
                              "(is the broker running?)",
                              arg + 1);
    } else {
        list = strdup(arg);
    }
    if (list == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "bootstrap: out of memory");
    free(kc->bootstrap);
    kc->bootstrap = list;
    kc->bootstrap_b = 1;
    return 0;
}

static int push_kv(ds_kconf *kc, const char *key, size_t klen,
                   const char *value, ds_err *err)
{
    ds_kconf_kv *nkv = realloc(kc->kv, (kc->n + 1) * sizeof(*nkv));
    if (nkv == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "config: out of memory");
    kc->kv = nkv;
    nkv[kc->n].key = strndup(key, klen);
    nkv[kc->n].value = strdup(value);
    if (nkv[kc->n].key == NULL || nkv[kc->n].value == NULL) {
        free(nkv[kc->n].key);
        free(nkv[kc->n].value);
        return ds_err_set(err, -ENOMEM, "internal", "config: out of memory");
    }
    kc->n++;
    return 0;
}

int ds_kconf_add(ds_kconf *kc, const char *kv, ds_err *err)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL || eq == kv)
        /* Not echoed: a mistyped -X may hold a password. */
        return ds_err_set(err, -EINVAL, "usage",
                          "-X: expected key=value (e.g. -X "
                          "security.protocol=SSL), got %s",
                          eq == kv ? "no key before '='" : "no '='");
    return push_kv(kc, kv, (size_t)(eq - kv), eq + 1, err);
}

int ds_kconf_add_file(ds_kconf *kc, const char *path, ds_err *err)
{
    char *text = NULL;
    size_t len;
    int rc = ds_read_file(path, &text, &len, err);
    if (rc < 0)
        return rc;
    char *save = NULL;
    unsigned lineno = 0;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *t = trim(line);
        if (*t == '\0' || *t == '#' || *t == '!')
            continue;
        char *eq = strchr(t, '=');
        if (eq == NULL || eq == t) {
            rc =
                ds_err_set(err, -EINVAL, "usage",
                           "read %s line %u: expected key=value", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(t), *value = trim(eq + 1);
        if (strcmp(key, "bootstrap.servers") == 0) {
            /* Kept as the broker list, not as an override: -b, given before
             * or after -F, must win over it. */
            if (kc->bootstrap_b)
                continue;
            char *list = strdup(value);
            if (list == NULL) {
                rc = ds_err_set(err, -ENOMEM, "internal",
                                "read %s: out of memory", path);
                break;
            }
            free(kc->bootstrap);
            kc->bootstrap = list;
            continue;
        }
        rc = push_kv(kc, key, strlen(key), value, err);
        if (rc < 0)
            break;
    }
    free(text);
    return rc;
}

int ds_kconf_option(ds_kconf *kc, int opt, const char *arg, ds_err *err)
{
    int rc;
    switch (opt) {
    case 'b':
        rc = ds_kconf_bootstrap(kc, arg, err);
        break;
    case 'X':
        rc = ds_kconf_add(kc, arg, err);
        break;
    case 'F':
        rc = ds_kconf_add_file(kc, arg, err);
        break;
    default:
        return 0;
    }
    return rc < 0 ? rc : 1;
}

void ds_kconf_free(ds_kconf *kc)
{
    if (kc == NULL)
        return;
    for (size_t i = 0; i < kc->n; i++) {
        free(kc->kv[i].key);
        free(kc->kv[i].value);
    }
    free(kc->kv);
    free(kc->bootstrap);
    memset(kc, 0, sizeof(*kc));
}

/* librdkafka's message with every copy of value replaced by "***": a
 * setting's value may be a password (sasl.password, ssl.key.password), and
 * errors go to logs and terminals. */
static void redact(char *out, size_t n, const char *msg, const char *value)
{
    size_t vlen = strlen(value), o = 0;
    while (*msg != '\0' && o + 1 < n) {
        if (vlen > 0 && strncmp(msg, value, vlen) == 0) {
            for (const char *r = "***"; *r != '\0' && o + 1 < n; r++)
                out[o++] = *r;
            msg += vlen;
        } else {
            out[o++] = *msg++;
        }
    }
    out[o] = '\0';
}

int ds_kconf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                 ds_err *err)
{
    char errstr[512], shown[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        redact(shown, sizeof(shown), errstr, value);
        return ds_err_set(err, -EINVAL, "usage",
                          "kafka setting %s (value not shown): %s", key, shown);
    }
    return 0;
}

/* librdkafka's own log lines, as logfmt. Connection failures (facility
 * FAIL) are left out: they reach the program as error events, which it
 * logs once with its own context. Called from librdkafka's threads:
 * ds_log keeps no state and writes each line with one write(2). */
void ds_kconf_log(const rd_kafka_t *rk, int level, const char *fac,
                  const char *buf)
{
    if (strcmp(fac, "FAIL") == 0)
        return;
    char q[1024];
    /* librdkafka's syslog levels: 7 debug, 6 and 5 info, 4 warn, <= 3
     * error; ds_log drops those above --log-level. */
    ds_log(level <= 3   ? "error"
           : level == 4 ? "warn"
           : level >= 7 ? "debug"
                        : "info",
           "kafka-log", "client=%s facility=%s detail=%s",
           DS_LV(rd_kafka_name(rk)), DS_LV(fac),
           ds_log_quote(q, sizeof(q), buf));
}

void ds_kconf_log_error(rd_kafka_t *rk, int err, const char *reason,
                        void *opaque)
{
    (void)opaque;
    char q[1024];
    ds_log(err == RD_KAFKA_RESP_ERR__FATAL ? "error" : "warn", "kafka-error",
           "client=%s error=%s detail=%s", DS_LV(rd_kafka_name(rk)),
           rd_kafka_err2name((rd_kafka_resp_err_t)err),
           ds_log_quote(q, sizeof(q), reason));
}

int ds_kconf_apply(const ds_kconf *kc, rd_kafka_conf_t *conf, ds_err *err)
{
    rd_kafka_conf_set_log_cb(conf, ds_kconf_log);
    int have_bootstrap = kc->bootstrap != NULL;
    if (kc->bootstrap != NULL) {
        int rc = ds_kconf_set(conf, "bootstrap.servers", kc->bootstrap, err);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < kc->n; i++) {
        int rc = ds_kconf_set(conf, kc->kv[i].key, kc->kv[i].value, err);
        if (rc < 0)
            return rc;
        if (strcmp(kc->kv[i].key, "bootstrap.servers") == 0)
            have_bootstrap = 1;
    }
    if (!have_bootstrap)
        return ds_err_set(err, -EINVAL, "usage",
                          "no broker given: pass -b HOST:PORT or -b @FILE "
                          "(the file `despooler dev-broker "
                          "--bootstrap-file FILE` writes)");
    return 0;
}

/* The mock cluster names itself "mockCluster<hex>" (rdkafka_mock.c); a
 * real cluster id is a base64 UUID of 22 characters. The mock implements
 * neither ListGroups nor DescribeConsumerGroups (librdkafka 2.0.2 trips
 * an internal assertion when asked anyway), and keeps only
 * DS_EMBEDDED_PARTITION_BYTES per partition. */
int ds_kconf_cluster_kind(rd_kafka_t *rk, int timeout_ms)
{
    char *id = rd_kafka_clusterid(rk, timeout_ms);
    if (id == NULL)
        return -1;
    int mock = strncmp(id, "mockCluster", 11) == 0;
    rd_kafka_mem_free(rk, id);
    return mock ? DS_CLUSTER_EMBEDDED : DS_CLUSTER_KAFKA;
}
