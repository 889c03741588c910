/*
 * sign.h - signed updates (schemas/v1/README.md, section 6; v2 manifests:
 * schemas/v2/README.md, section 9, "despool-sig-v2\n..."): Ed25519
 * (OpenSSL libcrypto) over a canonical text of the header fields that
 * define an update:
 *
 *   despool-sig-v1\npackage=app\nversion=3\nupdate_id=<hex>\nsize=N\n
 *   zsize=N\nsha256=<hex>\ncodec=zstd\nchunks=N\n
 *
 * A signer holds a private key and the key id published with it; a
 * keyring holds the public keys a site trusts, by key id. Key files are
 * PEM: <key_id>.key (private, mode 0600) and <key_id>.pub (public), as
 * `pkgpub keygen` writes them; a keyring directory holds *.pub files.
 * No Kafka here.
 */
#ifndef DS_SIGN_H
#define DS_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"
#include "manifest.h"

#define DS_SIG_MSG_MAX 512

/* The canonical text of ev's header into buf (size n). Returns its length,
 * or a negative code if it does not fit. */
int ds_sig_message(const ds_event *ev, char *buf, size_t n, ds_err *err);

typedef struct ds_signer ds_signer;

/* Load an Ed25519 private key (PEM). key_id NULL: the file name without
 * its directory and a .key or .pem suffix. */
int ds_signer_load(const char *path, const char *key_id, ds_signer **out,
                   ds_err *err);
/* From a raw 32-byte RFC 8032 seed (test vectors). */
int ds_signer_from_seed(const uint8_t seed[32], const char *key_id,
                        ds_signer **out, ds_err *err);
const char *ds_signer_key_id(const ds_signer *s);
void ds_signer_free(ds_signer *s); /* NULL is fine */

/* Sign ev's header: sets ev->sig, ev->key_id and ev->has_sig. */
int ds_sign_event(const ds_signer *s, ds_event *ev, ds_err *err);

/* Sign a v2 manifest (its form, refs and all, must be set: the text of
 * ds_manifest_sig_message covers them): sets m->sig, m->key_id and
 * m->has_sig. */
int ds_sign_manifest(const ds_signer *s, ds_manifest *m, ds_err *err);

typedef struct ds_keyring ds_keyring;

/* Every DIR/<key_id>.pub (Ed25519, PEM). Fails, naming the file, on an
 * unreadable directory or key, a key of another type, a file name that is
 * not a key id, or when there is no key at all. */
int ds_keyring_load(const char *dir, ds_keyring **out, ds_err *err);
/* An empty keyring, and raw 32-byte public keys added to it (tests). */
int ds_keyring_new(ds_keyring **out, ds_err *err);
int ds_keyring_add_raw(ds_keyring *kr, const char *key_id,
                       const uint8_t pub[32], ds_err *err);
/* Comma-separated key ids into buf (for the start-up log). */
const char *ds_keyring_ids(const ds_keyring *kr, char *buf, size_t n);
int ds_keyring_count(const ds_keyring *kr);
void ds_keyring_free(ds_keyring *kr); /* NULL is fine */

/* 0 when ev carries a signature by a trusted key that verifies; else
 * -EPERM with reason "bad-signature" and a message saying which: unsigned,
 * unknown key id, or signature does not verify. */
int ds_keyring_verify(const ds_keyring *kr, const ds_event *ev, ds_err *err);

/* The same for a v2 manifest (schemas/v2/README.md section 9). */
int ds_keyring_verify_manifest(const ds_keyring *kr, const ds_manifest *m,
                               ds_err *err);

/* Write a new key pair DIR/<key_id>.key (0600) and DIR/<key_id>.pub;
 * never overwrites. The paths written go to priv/pub (size >= 4096). */
int ds_keygen(const char *dir, const char *key_id, char *priv, char *pub,
              ds_err *err);

#endif
