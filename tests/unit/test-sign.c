/* test-sign.c - signed updates: the canonical message, Ed25519 against
 * schemas/v1/signature.txt (signed by the openssl CLI), and every way a
 * signature must be refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "sign.h"

typedef struct vec {
    char key_id[80], message[600];
    uint8_t seed[32], pub[32], sig[64];
    uint8_t event[1024];
    size_t event_len;
} vec;

static size_t unhex(const char *s, uint8_t *out, size_t max)
{
    size_t n = 0;
    while (s[0] && s[1] && s[0] != '\n' && n < max) {
        unsigned v;
        cr_assert_eq(sscanf(s, "%2x", &v), 1);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void load(vec *v)
{
    FILE *f = fopen(DESPOOL_SOURCE_DIR "/schemas/v1/signature.txt", "r");
    cr_assert_not_null(f);
    char line[4096];
    memset(v, 0, sizeof(*v));
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *val = strstr(line, ": ");
        if (line[0] == '#' || val == NULL)
            continue;
        *val = '\0';
        val += 2;
        if (strcmp(line, "key_id") == 0)
            snprintf(v->key_id, sizeof(v->key_id), "%s", val);
        else if (strcmp(line, "seed") == 0)
            cr_assert_eq(unhex(val, v->seed, 32), 32);
        else if (strcmp(line, "public") == 0)
            cr_assert_eq(unhex(val, v->pub, 32), 32);
        else if (strcmp(line, "sig") == 0)
            cr_assert_eq(unhex(val, v->sig, 64), 64);
        else if (strcmp(line, "event") == 0)
            v->event_len = unhex(val, v->event, sizeof(v->event));
        else if (strcmp(line, "message") == 0) {
            size_t o = 0; /* \n -> line feed */
            for (char *p = val; *p && o + 1 < sizeof(v->message); p++) {
                if (p[0] == '\\' && p[1] == 'n') {
                    v->message[o++] = '\n';
                    p++;
                } else {
                    v->message[o++] = *p;
                }
            }
        }
    }
    fclose(f);
    cr_assert(v->event_len > 0 && v->key_id[0] && v->message[0]);
}

static ds_keyring *ring(const vec *v)
{
    ds_keyring *kr;
    ds_err err;
    cr_assert_eq(ds_keyring_new(&kr, &err), 0);
    cr_assert_eq(ds_keyring_add_raw(kr, v->key_id, v->pub, &err), 0, "%s",
                 err.msg);
    return kr;
}

Test(sign, vector_message_signature_and_verification)
{
    vec v;
    load(&v);
    ds_event ev;
    ds_err err;
    cr_assert_eq(ds_event_decode(v.event, v.event_len, &ev, &err), 0, "%s",
                 err.msg);
    cr_assert(ev.has_sig);
    cr_assert_str_eq(ev.key_id, v.key_id);
    cr_assert_eq(memcmp(ev.sig, v.sig, 64), 0);

    char msg[DS_SIG_MSG_MAX];
    int len = ds_sig_message(&ev, msg, sizeof(msg), &err);
    cr_assert_eq(len, (int)strlen(v.message));
    cr_assert_str_eq(msg, v.message);

    /* Ed25519 is deterministic: our signature equals openssl's. */
    ds_signer *s;
    cr_assert_eq(ds_signer_from_seed(v.seed, v.key_id, &s, &err), 0);
    ds_event mine = ev;
    memset(mine.sig, 0, sizeof(mine.sig));
    mine.has_sig = 0;
    cr_assert_eq(ds_sign_event(s, &mine, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(mine.sig, v.sig, 64), 0);
    cr_assert(mine.has_sig);
    cr_assert_str_eq(mine.key_id, v.key_id);
    ds_signer_free(s);

    ds_keyring *kr = ring(&v);
    cr_assert_eq(ds_keyring_verify(kr, &ev, &err), 0, "%s", err.msg);
    ds_keyring_free(kr);
}

/* Every header field the signature covers, changed: refused. */
Test(sign, any_covered_field_changed_is_refused)
{
    vec v;
    load(&v);
    ds_event ev;
    ds_err err;
    cr_assert_eq(ds_event_decode(v.event, v.event_len, &ev, &err), 0);
    ds_keyring *kr = ring(&v);
    for (int k = 0; k < 9; k++) {
        ds_event x = ev;
        switch (k) {
        case 0:
            x.version++;
            break;
        case 1:
            x.package[0] = 'b';
            break;
        case 2:
            x.update_id[15] ^= 1;
            break;
        case 3:
            x.size++;
            break;
        case 4:
            x.zsize--;
            break;
        case 5:
            x.sha256[0] ^= 0x80;
            break;
        case 6:
            x.chunks = 3;
            break;
        case 7:
            snprintf(x.codec, sizeof(x.codec), "zstx");
            break;
        case 8:
            x.sig[63] ^= 1;
            break;
        }
        memset(&err, 0, sizeof(err));
        cr_assert_lt(ds_keyring_verify(kr, &x, &err), 0, "change %d passed", k);
        cr_assert_str_eq(err.reason, "bad-signature");
        cr_assert(strstr(err.msg, "does not verify"), "%s", err.msg);
    }
    /* The chunk index is not covered: every chunk of the update carries
     * the same signature (the reassembler checks the headers match). */
    ds_event y = ev;
    y.chunk = 1;
    cr_assert_eq(ds_keyring_verify(kr, &y, &err), 0);
    ds_keyring_free(kr);
}

Test(sign, unsigned_and_unknown_key_are_refused)
{
    vec v;
    load(&v);
    ds_event ev;
    ds_err err;
    cr_assert_eq(ds_event_decode(v.event, v.event_len, &ev, &err), 0);
    ds_keyring *kr = ring(&v);
    ds_event u = ev;
    u.has_sig = 0;
    cr_assert_lt(ds_keyring_verify(kr, &u, &err), 0);
    cr_assert_str_eq(err.reason, "bad-signature");
    cr_assert(strstr(err.msg, "unsigned"), "%s", err.msg);
    ds_event o = ev;
    snprintf(o.key_id, sizeof(o.key_id), "someone-else");
    cr_assert_lt(ds_keyring_verify(kr, &o, &err), 0);
    cr_assert(strstr(err.msg, "does not trust"), "%s", err.msg);
    ds_keyring_free(kr);
}

/* keygen -> PEM files -> signer and keyring loaded from them; a second
 * keygen never overwrites; a keyring of another key refuses. */
Test(sign, keygen_files_round_trip)
{
    char dir[] = "/tmp/despool-sign-XXXXXX", priv[4096], pub[4096];
    cr_assert_not_null(mkdtemp(dir));
    ds_err err;
    cr_assert_eq(ds_keygen(dir, "release-2026", priv, pub, &err), 0, "%s",
                 err.msg);
    struct stat st;
    cr_assert_eq(stat(priv, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "private key mode %o",
                 st.st_mode & 0777);
    cr_assert_lt(ds_keygen(dir, "release-2026", priv, pub, &err), 0,
                 "keygen overwrote a key");
    cr_assert_lt(ds_keygen(dir, "../evil", priv, pub, &err), 0);

    ds_signer *s;
    cr_assert_eq(ds_signer_load(priv, NULL, &s, &err), 0, "%s", err.msg);
    cr_assert_str_eq(ds_signer_key_id(s), "release-2026");
    ds_keyring *kr;
    cr_assert_eq(ds_keyring_load(dir, &kr, &err), 0, "%s", err.msg);
    cr_assert_eq(ds_keyring_count(kr), 1);
    char ids[128];
    cr_assert_str_eq(ds_keyring_ids(kr, ids, sizeof(ids)), "release-2026");

    vec v;
    load(&v);
    ds_event ev;
    cr_assert_eq(ds_event_decode(v.event, v.event_len, &ev, &err), 0);
    ev.has_sig = 0;
    cr_assert_eq(ds_sign_event(s, &ev, &err), 0);
    cr_assert_eq(ds_keyring_verify(kr, &ev, &err), 0, "%s", err.msg);
    /* The vector's key signed the same header under another id: the
     * keyring does not know it. */
    ds_keyring *other = ring(&v);
    cr_assert_lt(ds_keyring_verify(other, &ev, &err), 0);
    ds_keyring_free(other);
    ds_keyring_free(kr);
    ds_signer_free(s);

    /* A private key is no public key; an empty directory has no keys. */
    cr_assert_eq(unlink(pub), 0);
    cr_assert_lt(ds_keyring_load(dir, &kr, &err), 0);
    cr_assert(strstr(err.msg, "no public key"), "%s", err.msg);
    char wrong[4200];
    snprintf(wrong, sizeof(wrong), "%s/x.pub", dir);
    cr_assert_eq(rename(priv, wrong), 0);
    cr_assert_lt(ds_keyring_load(dir, &kr, &err), 0);
    cr_assert(strstr(err.msg, "x.pub"), "%s", err.msg);
    cr_assert_eq(unlink(wrong), 0);
    cr_assert_eq(rmdir(dir), 0);
}
