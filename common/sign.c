/*
 * sign.c - Ed25519 signing and verification of v1 update headers and v2
 * manifests with OpenSSL's EVP interface; see sign.h.
 */
#include "sign.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "log.h"

struct ds_signer {
    EVP_PKEY *key;
    char key_id[DS_KEY_ID_MAX + 1];
};

typedef struct trusted {
    char key_id[DS_KEY_ID_MAX + 1];
    EVP_PKEY *key;
} trusted;

struct ds_keyring {
    trusted *k;
    int n;
};

/* OpenSSL's last error as text (its queue is per thread), or fallback. */
static const char *ossl_error(char *buf, size_t n, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(buf, n, "%s", fallback);
    } else {
        ERR_error_string_n(e, buf, n);
        ERR_clear_error();
    }
    return buf;
}

int ds_sig_message(const ds_event *ev, char *buf, size_t n, ds_err *err)
{
    char uid[2 * DS_UPDATE_ID_LEN + 1], sha[2 * DS_SHA256_LEN + 1];
    ds_hex(uid, ev->update_id, DS_UPDATE_ID_LEN);
    ds_hex(sha, ev->sha256, DS_SHA256_LEN);
    int len = snprintf(buf, n,
                       "despool-sig-v1\npackage=%s\nversion=%" PRIu64
                       "\nupdate_id=%s\nsize=%" PRIu64 "\nzsize=%" PRIu64
                       "\nsha256=%s\ncodec=%s\nchunks=%" PRIu32 "\n",
                       ev->package, ev->version, uid, ev->size, ev->zsize, sha,
                       ev->codec, ev->chunks);
    if (len < 0 || (size_t)len >= n)
        return ds_err_set(err, -ENOSPC, "internal",
                          "signature message of %s: longer than %zu bytes",
                          ev->package, n);
    return len;
}

/* ---- signer -------------------------------------------------------- */

static int signer_new(EVP_PKEY *key, const char *key_id, const char *what,
                      ds_signer **out, ds_err *err)
{
    if (!ds_key_id_valid(key_id, strlen(key_id))) {
        EVP_PKEY_free(key);
        return ds_err_set(err, -EINVAL, "usage",
                          "%s: key id \"%s\" is not [A-Za-z0-9][A-Za-z0-9._-]"
                          "{0,63}",
                          what, key_id);
    }
    ds_signer *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        EVP_PKEY_free(key);
        return ds_err_set(err, -ENOMEM, "internal", "%s: out of memory", what);
    }
    s->key = key;
    snprintf(s->key_id, sizeof(s->key_id), "%s", key_id);
    *out = s;
    return 0;
}

/* The key id a key file stands for: its name without directory and a
 * .key, .pem or .pub suffix. */
static void stem(const char *path, char *out, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    size_t len = strlen(out);
    static const char *const sfx[] = {".key", ".pem", ".pub"};
    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++)
        if (len > 4 && strcmp(out + len - 4, sfx[i]) == 0) {
            out[len - 4] = '\0';
            break;
        }
}

/* Read the Ed25519 key in PEM file path: private (PKCS#8) or public
 * (SubjectPublicKeyInfo). what names it in errors ("signing key"). */
static int read_ed25519(const char *path, int private, const char *what,
                        const char *hint, EVP_PKEY **out, ds_err *err)
{
    char e[256];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return ds_err_sys(err, "usage", "%s %s: open", what, path);
    EVP_PKEY *key = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
                            : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (key == NULL)
        return ds_err_set(err, -EINVAL, "usage", "%s %s: not a PEM %s key (%s)",
                          what, path, private ? "private" : "public",
                          ossl_error(e, sizeof(e), "unreadable"));
    if (!EVP_PKEY_is_a(key, "ED25519")) {
        EVP_PKEY_free(key);
        return ds_err_set(err, -EINVAL, "usage", "%s %s: not an Ed25519 key%s",
                          what, path, hint);
    }
    *out = key;
    return 0;
}

int ds_signer_load(const char *path, const char *key_id, ds_signer **out,
                   ds_err *err)
{
    char id[256];
    EVP_PKEY *key = NULL;
    int rc = read_ed25519(path, 1, "signing key",
                          " (make one with pkgpub keygen)", &key, err);
    if (rc < 0)
        return rc;
    if (key_id == NULL) {
        stem(path, id, sizeof(id));
        key_id = id;
    }
    char what[300];
    snprintf(what, sizeof(what), "signing key %s", path);
    return signer_new(key, key_id, what, out, err);
}

int ds_signer_from_seed(const uint8_t seed[32], const char *key_id,
                        ds_signer **out, ds_err *err)
{
    char e[256];
    EVP_PKEY *key =
        EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    if (key == NULL)
        return ds_err_set(err, -EINVAL, "internal", "Ed25519 seed: %s",
                          ossl_error(e, sizeof(e), "refused"));
    return signer_new(key, key_id, "Ed25519 seed", out, err);
}

const char *ds_signer_key_id(const ds_signer *s)
{
    return s->key_id;
}

void ds_signer_free(ds_signer *s)
{
    if (s == NULL)
        return;
    EVP_PKEY_free(s->key);
    free(s);
}

/* Sign msg[0..len) with s's key into sig; what names the update. */
static int sign_bytes(const ds_signer *s, const char *msg, int len,
                      uint8_t sig[DS_SIG_LEN], const char *package,
                      uint64_t version, ds_err *err)
{
    char e[256];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t siglen = DS_SIG_LEN;
    int ok =
        ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) == 1 &&
        EVP_DigestSign(ctx, sig, &siglen, (const uint8_t *)msg, (size_t)len) ==
            1 &&
        siglen == DS_SIG_LEN;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return ds_err_set(err, -EIO, "internal",
                          "sign %s version %" PRIu64 " with key %s: %s",
                          package, version, s->key_id,
                          ossl_error(e, sizeof(e), "failed"));
    return 0;
}

int ds_sign_event(const ds_signer *s, ds_event *ev, ds_err *err)
{
    char msg[DS_SIG_MSG_MAX];
    int len = ds_sig_message(ev, msg, sizeof(msg), err);
    if (len < 0)
        return len;
    int rc = sign_bytes(s, msg, len, ev->sig, ev->package, ev->version, err);
    if (rc < 0)
        return rc;
    snprintf(ev->key_id, sizeof(ev->key_id), "%s", s->key_id);
    ev->has_sig = 1;
    return 0;
}

int ds_sign_manifest(const ds_signer *s, ds_manifest *m, ds_err *err)
{
    char msg[DS_SIG2_MSG_MAX];
    int len = ds_manifest_sig_message(m, msg, sizeof(msg), err);
    if (len < 0)
        return len;
    int rc = sign_bytes(s, msg, len, m->sig, m->package, m->version, err);
    if (rc < 0)
        return rc;
    snprintf(m->key_id, sizeof(m->key_id), "%s", s->key_id);
    m->has_sig = 1;
    return 0;
}

/* ---- keyring ------------------------------------------------------- */

int ds_keyring_new(ds_keyring **out, ds_err *err)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return ds_err_set(err, -ENOMEM, "internal", "keyring: out of memory");
    return 0;
}

static int keyring_add(ds_keyring *kr, const char *key_id, EVP_PKEY *key,
                       const char *what, ds_err *err)
{
    for (int i = 0; i < kr->n; i++)
        if (strcmp(kr->k[i].key_id, key_id) == 0) {
            EVP_PKEY_free(key);
            return ds_err_set(err, -EEXIST, "usage", "%s: key id %s twice",
                              what, key_id);
        }
    trusted *nk = realloc(kr->k, (size_t)(kr->n + 1) * sizeof(*nk));
    if (nk == NULL) {
        EVP_PKEY_free(key);
        return ds_err_set(err, -ENOMEM, "internal", "%s: out of memory", what);
    }
    kr->k = nk;
    snprintf(kr->k[kr->n].key_id, sizeof(kr->k[kr->n].key_id), "%s", key_id);
    kr->k[kr->n].key = key;
    kr->n++;
    return 0;
}

int ds_keyring_add_raw(ds_keyring *kr, const char *key_id,
                       const uint8_t pub[32], ds_err *err)
{
    char e[256];
    if (!ds_key_id_valid(key_id, strlen(key_id)))
        return ds_err_set(err, -EINVAL, "usage", "key id \"%s\" is invalid",
                          key_id);
    EVP_PKEY *key =
        EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    if (key == NULL)
        return ds_err_set(err, -EINVAL, "usage", "public key %s: %s", key_id,
                          ossl_error(e, sizeof(e), "refused"));
    return keyring_add(kr, key_id, key, "keyring", err);
}

static int load_pub(ds_keyring *kr, const char *dir, const char *name,
                    ds_err *err)
{
    char path[4096], id[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    stem(name, id, sizeof(id));
    if (!ds_key_id_valid(id, strlen(id)))
        return ds_err_set(err, -EINVAL, "usage",
                          "trusted key %s: \"%s\" is not a key id "
                          "([A-Za-z0-9][A-Za-z0-9._-]{0,63})",
                          path, id);
    EVP_PKEY *key = NULL;
    int rc = read_ed25519(path, 0, "trusted key", "", &key, err);
    return rc < 0 ? rc : keyring_add(kr, id, key, path, err);
}

int ds_keyring_load(const char *dir, ds_keyring **out, ds_err *err)
{
    ds_keyring *kr;
    int rc = ds_keyring_new(&kr, err);
    if (rc < 0)
        return rc;
    DIR *d = opendir(dir);
    if (d == NULL) {
        ds_keyring_free(kr);
        return ds_err_sys(err, "usage", "--trusted-keys %s: open directory",
                          dir);
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".pub") == 0)
            rc = load_pub(kr, dir, de->d_name, err);
    }
    closedir(d);
    if (rc == 0 && kr->n == 0)
        rc = ds_err_set(err, -ENOENT, "usage",
                        "--trusted-keys %s: no public key (<key_id>.pub) in "
                        "it",
                        dir);
    if (rc < 0) {
        ds_keyring_free(kr);
        return rc;
    }
    *out = kr;
    return 0;
}

int ds_keyring_count(const ds_keyring *kr)
{
    return kr ? kr->n : 0;
}

const char *ds_keyring_ids(const ds_keyring *kr, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; kr && i < kr->n && o + 1 < n; i++) {
        int w = snprintf(buf + o, n - o, "%s%s", i ? "," : "", kr->k[i].key_id);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return buf;
}

void ds_keyring_free(ds_keyring *kr)
{
    if (kr == NULL)
        return;
    for (int i = 0; i < kr->n; i++)
        EVP_PKEY_free(kr->k[i].key);
    free(kr->k);
    free(kr);
}

/* The signature sig by key_id over msg[0..len): 0 or bad-signature. */
static int verify_bytes(const ds_keyring *kr, int has_sig,
                        const uint8_t sig[DS_SIG_LEN], const char *key_id,
                        const char *msg, int len, const char *package,
                        uint64_t version, ds_err *err)
{
    if (!has_sig)
        return ds_err_set(err, -EPERM, "bad-signature",
                          "%s version %" PRIu64 ": unsigned update, and this "
                          "site requires signatures (--trusted-keys)",
                          package, version);
    const trusted *t = NULL;
    for (int i = 0; i < kr->n; i++)
        if (strcmp(kr->k[i].key_id, key_id) == 0)
            t = &kr->k[i];
    if (t == NULL)
        return ds_err_set(err, -EPERM, "bad-signature",
                          "%s version %" PRIu64 ": signed with key %s, "
                          "which this site does not trust",
                          package, version, key_id);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL &&
             EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, t->key) == 1 &&
             EVP_DigestVerify(ctx, sig, DS_SIG_LEN, (const uint8_t *)msg,
                              (size_t)len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (!ok)
        return ds_err_set(err, -EPERM, "bad-signature",
                          "%s version %" PRIu64 ": signature by key %s "
                          "does not verify (header altered or forged)",
                          package, version, key_id);
    return 0;
}

int ds_keyring_verify(const ds_keyring *kr, const ds_event *ev, ds_err *err)
{
    char msg[DS_SIG_MSG_MAX];
    int len = 0;
    if (ev->has_sig && (len = ds_sig_message(ev, msg, sizeof(msg), err)) < 0)
        return len;
    return verify_bytes(kr, ev->has_sig, ev->sig, ev->key_id, msg, len,
                        ev->package, ev->version, err);
}

int ds_keyring_verify_manifest(const ds_keyring *kr, const ds_manifest *m,
                               ds_err *err)
{
    char msg[DS_SIG2_MSG_MAX];
    int len = 0;
    if (m->has_sig &&
        (len = ds_manifest_sig_message(m, msg, sizeof(msg), err)) < 0)
        return len;
    return verify_bytes(kr, m->has_sig, m->sig, m->key_id, msg, len, m->package,
                        m->version, err);
}

/* ---- keygen -------------------------------------------------------- */

static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, int priv,
                     ds_err *err)
{
    char e[256];
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return ds_err_sys(err, "io-error", "keygen: create %s", path);
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int rc = ds_err_sys(err, "io-error", "keygen: fdopen %s", path);
        close(fd);
        unlink(path);
        return rc;
    }
    int ok = priv ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_PUBKEY(f, key);
    ok = ok && fflush(f) == 0 && fsync(fd) == 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        unlink(path);
        return ds_err_set(err, -EIO, "io-error", "keygen: write %s: %s", path,
                          ossl_error(e, sizeof(e), "write failed"));
    }
    return 0;
}

int ds_keygen(const char *dir, const char *key_id, char *priv, char *pub,
              ds_err *err)
{
    char e[256];
    if (!ds_key_id_valid(key_id, strlen(key_id)))
        return ds_err_set(err, -EINVAL, "usage",
                          "keygen: key id \"%s\" is not [A-Za-z0-9][A-Za-z0-9."
                          "_-]{0,63}",
                          key_id);
    snprintf(priv, 4096, "%s/%s.key", dir, key_id);
    snprintf(pub, 4096, "%s/%s.pub", dir, key_id);
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (key == NULL)
        return ds_err_set(err, -EIO, "internal", "keygen: %s",
                          ossl_error(e, sizeof(e), "Ed25519 key generation"));
    int rc = write_pem(priv, 0600, key, 1, err);
    if (rc == 0 && (rc = write_pem(pub, 0644, key, 0, err)) < 0)
        unlink(priv);
    EVP_PKEY_free(key);
    return rc;
}
