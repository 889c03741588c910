/* test-gzipbuf.c - one gzip member from a buffer, read back with zlib's
 * own gzip decoder. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gzipbuf.h"

static void round_trip(const unsigned char *in, size_t n)
{
    void *gz;
    size_t gzlen;
    ds_err err;
    cr_assert_eq(ds_gzip(in, n, 1, &gz, &gzlen, &err), 0);
    const unsigned char *g = gz;
    cr_assert_geq(gzlen, 18);
    cr_assert(g[0] == 0x1f && g[1] == 0x8b, "not a gzip header");
    unsigned char *out = malloc(n + 1);
    z_stream z = {0};
    cr_assert_eq(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = gz;
    z.avail_in = (uInt)gzlen;
    z.next_out = out;
    z.avail_out = (uInt)(n + 1);
    cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
    cr_assert_eq(z.total_out, n);
    cr_assert_eq(z.avail_in, 0, "one member, nothing after it");
    inflateEnd(&z);
    cr_assert(n == 0 || memcmp(in, out, n) == 0);
    free(out);
    free(gz);
}

Test(gzipbuf, round_trips)
{
    round_trip((const unsigned char *)"", 0);
    const char *j = "{\"packages\":[{\"n\":\"app\",\"p\":3,\"v\":[3,3,2]}]}";
    round_trip((const unsigned char *)j, strlen(j));
    size_t n = 3 << 20;
    unsigned char *big = malloc(n);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* incompressible */
        big[i] = (unsigned char)x;
    }
    round_trip(big, n);
    free(big);
}

Test(gzipbuf, json_shrinks)
{
    size_t n = 0, cap = 1 << 20;
    char *j = malloc(cap);
    while (n + 32 < cap)
        n += (size_t)snprintf(
            j + n, cap - n, "{\"n\":\"pkg-%05zu\",\"m\":\"oooob\"},", n % 5000);
    void *gz;
    size_t gzlen;
    ds_err err;
    cr_assert_eq(ds_gzip(j, n, 1, &gz, &gzlen, &err), 0);
    cr_assert_lt(gzlen, n / 4, "%zu of %zu", gzlen, n);
    free(gz);
    free(j);
}
