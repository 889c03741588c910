/*
 * test-numparse.c - strict numbers: what a command line may say, and every
 * near miss that strtoull/strtod would have read as something.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include "numparse.h"

Test(numparse, u64_whole_string_digits_only)
{
    uint64_t v = 7;
    cr_assert_eq(ds_parse_u64("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(ds_parse_u64("18446744073709551615", &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    cr_assert_eq(ds_parse_u64("18446744073709551616", &v), -ERANGE);
    static const char *bad[] = {"",   " 5",   "5 ",  "+5",  "-1",
                                "5x", "0x10", "1e3", "nan", "1.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 42;
        cr_assert_eq(ds_parse_u64(bad[i], &v), -EINVAL, "'%s' accepted",
                     bad[i]);
        cr_assert_eq(v, 42, "'%s' wrote the output", bad[i]);
    }
    cr_assert_eq(ds_parse_u64(NULL, &v), -EINVAL);
}

Test(numparse, decimal_seconds)
{
    double d = -1;
    cr_assert_eq(ds_parse_decimal("30", &d), 0);
    cr_assert_float_eq(d, 30.0, 1e-12);
    cr_assert_eq(ds_parse_decimal("0.25", &d), 0);
    cr_assert_float_eq(d, 0.25, 1e-12);
    cr_assert_eq(ds_parse_decimal("0", &d), 0);
    cr_assert_float_eq(d, 0.0, 1e-12);
    cr_assert_eq(ds_parse_decimal("1000000000", &d), 0);
    static const char *bad[] = {
        "",    " 1",  "1 ",  "+1",   "-1",  ".5",    "5.", "1e3",
        "nan", "NaN", "inf", "0x10", "1,5", "1.2.3", "1s", "10000000000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = 42;
        cr_assert_eq(ds_parse_decimal(bad[i], &d), -EINVAL, "'%s' accepted",
                     bad[i]);
        cr_assert_float_eq(d, 42.0, 1e-12, "'%s' wrote the output", bad[i]);
    }
    cr_assert_eq(ds_parse_decimal(NULL, &d), -EINVAL);
}
