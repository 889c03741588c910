#!/usr/bin/env python3
"""Craft pkg.updates events by hand for integration tests (wrong digests,
missing chunks, garbage), using the schema's own reference encoder in
schemas/v1/make_vectors.py.

  mkevent.py --package P --version V --tar FILE.tar --out PREFIX
             [--chunks N] [--only 0,2] [--sha256 HEX] [--size N]
             [--sig HEX --key-id ID] [--update-id HEX]

Compresses FILE.tar with the zstd CLI, splits the stream into N chunks and
writes PREFIX.<i> for each chunk index kept (all, or --only's list). The
declared sha256/size default to the true ones; override them to craft a
lying update; --sig/--key-id attach a signature (a replayed or forged
one: nothing here signs). Prints the update id (hex).
"""
import argparse
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "schemas", "v1"))
import make_vectors as mv  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", required=True)
    ap.add_argument("--version", type=int, required=True)
    ap.add_argument("--tar", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--chunks", type=int, default=1)
    ap.add_argument("--only", default=None)
    ap.add_argument("--sha256", default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--sig", default=None)
    ap.add_argument("--key-id", default=None)
    ap.add_argument("--update-id", default=None)
    a = ap.parse_args()
    raw = open(a.tar, "rb").read()
    z = subprocess.run(["zstd", "-q", "-c", "-3", a.tar], check=True,
                       stdout=subprocess.PIPE).stdout
    uid = bytes.fromhex(a.update_id) if a.update_id else os.urandom(16)
    signed = {}
    if a.sig is not None:
        signed = dict(sig=bytes.fromhex(a.sig), key_id=a.key_id)
    n = a.chunks
    step = (len(z) + n - 1) // n
    keep = range(n) if a.only is None else [int(x) for x in a.only.split(",")]
    sha = bytes.fromhex(a.sha256) if a.sha256 else hashlib.sha256(raw).digest()
    for i in keep:
        ev = mv.event(package=a.package, version=a.version, update_id=uid,
                      chunk=i, chunks=n, size=a.size if a.size is not None
                      else len(raw), zsize=len(z), sha256=sha,
                      data=z[i * step:(i + 1) * step], **signed)
        with open("%s.%d" % (a.out, i), "wb") as f:
            f.write(mv.pack(ev))
    print(uid.hex())


if __name__ == "__main__":
    main()
