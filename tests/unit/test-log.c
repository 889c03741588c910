/* test-log.c - logfmt value quoting and the level threshold. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "log.h"

static const char *lv(const char *s)
{
    static char buf[256]; /* test only */
    return ds_log_value(buf, sizeof(buf), s);
}

Test(log, bare_when_logfmt_allows)
{
    cr_assert_str_eq(lv("abc"), "abc");
    cr_assert_str_eq(lv("/srv/lib/x-1.2"), "/srv/lib/x-1.2");
    cr_assert_str_eq(lv("a\\b"), "a\\b"); /* a backslash alone stays bare */
}

Test(log, quoted_when_needed)
{
    cr_assert_str_eq(lv(""), "\"\"");
    cr_assert_str_eq(lv(NULL), "\"\"");
    cr_assert_str_eq(lv("a b"), "\"a b\"");
    cr_assert_str_eq(lv("k=v"), "\"k=v\"");
    cr_assert_str_eq(lv("say \"hi\""), "\"say \\\"hi\\\"\"");
    cr_assert_str_eq(lv("a\\\"b c"), "\"a\\\\\\\"b c\"");
    cr_assert_str_eq(lv("l1\nl2"), "\"l1\\nl2\"");
    cr_assert_str_eq(lv("t\tx"), "\"t\\tx\"");
    cr_assert_str_eq(lv("bell\a"), "\"bell\\u0007\"");
    cr_assert_str_eq(lv("del\x7f"), "\"del\\u007f\"");
}

Test(log, truncation_keeps_the_quotes)
{
    char buf[10];
    ds_log_value(buf, sizeof(buf), "a b c d e f g h");
    cr_assert_eq(buf[0], '"');
    cr_assert_eq(buf[strlen(buf) - 1], '"');
    cr_assert_lt(strlen(buf), sizeof(buf));
    /* An escape is never cut in half. */
    ds_log_value(buf, sizeof(buf), "\"\"\"\"\"\"\"");
    cr_assert_str_eq(buf, "\"\\\"\"");
}

Test(log, level_threshold_from_the_environment)
{
    cr_assert_eq(ds_log_level_set("loud"), -EINVAL);
    unsetenv("DESPOOL_LOG_LEVEL");
    cr_assert(ds_log_enabled("info"));
    cr_assert_not(ds_log_enabled("debug"));
    cr_assert_eq(ds_log_level_set("warn"), 0);
    cr_assert_str_eq(getenv("DESPOOL_LOG_LEVEL"), "warn");
    cr_assert(ds_log_enabled("error"));
    cr_assert(ds_log_enabled("warn"));
    cr_assert_not(ds_log_enabled("info"));
    cr_assert_eq(ds_log_level_set("debug"), 0);
    cr_assert(ds_log_enabled("debug"));
    setenv("DESPOOL_LOG_LEVEL", "nonsense", 1); /* unknown: info */
    cr_assert(ds_log_enabled("info"));
    cr_assert_not(ds_log_enabled("debug"));
}
