/*
 * mpwrite.c - msgpack writing helpers over msgpack-c's packer and
 * sbuffer (see mpwrite.h).
 */
#include "mpwrite.h"

#include <string.h>

void ds_mpw_init(ds_mpw *w)
{
    msgpack_sbuffer_init(&w->sb);
    msgpack_packer_init(&w->pk, &w->sb, msgpack_sbuffer_write);
}

int ds_mpw_begin(const char *op, int args_ok, uint8_t **out, size_t *out_len,
                 ds_err *err)
{
    if (!args_ok || out == NULL || out_len == NULL)
        return ds_err_set(err, -EINVAL, "bad-schema", "%s: NULL argument", op);
    *out = NULL;
    *out_len = 0;
    return 0;
}

int ds_mpw_str(msgpack_packer *pk, const char *s, size_t n)
{
    int rc = msgpack_pack_str(pk, n);
    return rc ? rc : msgpack_pack_str_body(pk, s, n);
}

int ds_mpw_bin(msgpack_packer *pk, const void *p, size_t n)
{
    int rc = msgpack_pack_bin(pk, n);
    return rc ? rc : msgpack_pack_bin_body(pk, p, n);
}

int ds_mpw_key(msgpack_packer *pk, const char *key)
{
    return ds_mpw_str(pk, key, strlen(key));
}

int ds_mpw_finish(const char *op, ds_mpw *w, int rc, int fail, uint8_t **out,
                  size_t *out_len, ds_err *err)
{
    if (rc != 0 || fail < 0) {
        msgpack_sbuffer_destroy(&w->sb);
        return fail < 0 ? fail
                        : ds_err_set(err, -ENOMEM, "io-error",
                                     "%s: out of memory", op);
    }
    *out_len = w->sb.size;
    *out = (uint8_t *)msgpack_sbuffer_release(&w->sb);
    msgpack_sbuffer_destroy(&w->sb);
    return 0;
}
