/*
 * fuzz-decode.c - libFuzzer target: arbitrary bytes as a pkg.updates event
 * and as a pkg.status record. Decoding must never crash or read out of
 * bounds; what decodes must survive a round trip (encode, decode again:
 * the same update, the same fields), so encoder and decoder agree on
 * every value the decoder accepts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ds_event ev, again;
    ds_err err;
    if (ds_event_decode(data, size, &ev, &err) == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ds_event_encode(&ev, &buf, &len, &err) != 0)
            abort(); /* decoded, so it is valid: it must encode */
        if (ds_event_decode(buf, len, &again, &err) != 0 ||
            !ds_event_same_update(&ev, &again) || ev.chunk != again.chunk ||
            ev.data_len != again.data_len ||
            memcmp(ev.data, again.data, ev.data_len) != 0)
            abort();
        free(buf);
    }
    ds_status st, st2;
    if (ds_status_decode(data, size, &st, &err) == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (ds_status_encode(&st, &buf, &len, &err) != 0 ||
            ds_status_decode(buf, len, &st2, &err) != 0 ||
            strcmp(st.site, st2.site) != 0 ||
            strcmp(st.package, st2.package) != 0 || st.version != st2.version ||
            strcmp(st.state, st2.state) != 0 ||
            strcmp(st.detail, st2.detail) != 0 || st.at_ms != st2.at_ms)
            abort();
        free(buf);
    }
    return 0;
}
