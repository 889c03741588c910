/* Unit tests for kconf.c: -b and a -F file's bootstrap.servers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kconf.h"

static char *props(const char *text)
{
    char tmpl[] = "/tmp/despool-test-kconf-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert_geq(fd, 0, "mkstemp");
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return strdup(tmpl);
}

static void option(ds_kconf *kc, int opt, const char *arg)
{
    ds_err err;
    cr_assert_eq(ds_kconf_option(kc, opt, arg, &err), 1, "-%c %s: %s", opt, arg,
                 err.msg);
}

/* Without -b, the file's bootstrap.servers is the broker list, and it is
 * not kept as an override. */
Test(kconf, file_bootstrap_alone)
{
    char *f = props("# c\nbootstrap.servers = h1:9092,h2:9092\nacks=all\n");
    ds_kconf kc = {0};
    option(&kc, 'F', f);
    cr_assert_str_eq(kc.bootstrap, "h1:9092,h2:9092");
    cr_assert_eq(kc.n, 1);
    cr_assert_str_eq(kc.kv[0].key, "acks");
    ds_kconf_free(&kc);
    unlink(f);
    free(f);
}

/* -b wins, given before or after -F. */
Test(kconf, b_wins_either_order)
{
    char *f = props("bootstrap.servers=from-file:1\n");
    ds_kconf kc = {0};
    option(&kc, 'b', "from-b:1");
    option(&kc, 'F', f);
    cr_assert_str_eq(kc.bootstrap, "from-b:1");
    cr_assert_eq(kc.n, 0);
    ds_kconf_free(&kc);
    option(&kc, 'F', f);
    option(&kc, 'b', "from-b:2");
    cr_assert_str_eq(kc.bootstrap, "from-b:2");
    cr_assert_eq(kc.n, 0);
    /* Applied: the broker list is -b's. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ds_err err;
    cr_assert_eq(ds_kconf_apply(&kc, conf, &err), 0, "apply: %s", err.msg);
    char v[64];
    size_t n = sizeof(v);
    cr_assert_eq(rd_kafka_conf_get(conf, "bootstrap.servers", v, &n),
                 RD_KAFKA_CONF_OK);
    cr_assert_str_eq(v, "from-b:2");
    rd_kafka_conf_destroy(conf);
    ds_kconf_free(&kc);
    unlink(f);
    free(f);
}
