#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, written to OUTDIR/{decode,update,
extract}/ (generated at run time: nothing binary is checked in).

  decode   every vector of schemas/v1/vectors.txt and signature.txt,
           and of schemas/v2/vectors.txt
  update   each case of the hostile corpus (tests/hostile) as one event
           sequence, plus good updates of 1 and 3 chunks
  extract  the uncompressed tar of every single-chunk corpus case, plus
           small tars with every entry type
"""
import hashlib
import io
import os
import struct
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "schemas", "v1"))
import make_vectors as mv  # noqa: E402


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def records(events):
    return b"".join(len(e).to_bytes(2, "big") + e for e in events if len(e) < 65536)


def tar_bytes(build):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        build(t)
    return buf.getvalue()


def good_update(raw, chunks, package="app", version=1):
    z = subprocess.run(["zstd", "-q", "-c", "-1"], input=raw, check=True,
                       stdout=subprocess.PIPE).stdout
    step = max(1, (len(z) + chunks - 1) // chunks)
    uid = hashlib.md5(raw).digest()
    return [mv.pack(mv.event(package=package, version=version, update_id=uid,
                             chunk=i, chunks=chunks, size=len(raw), zsize=len(z),
                             sha256=hashlib.sha256(raw).digest(),
                             data=z[i * step:(i + 1) * step]))
            for i in range(chunks)]


def sample_tars():
    def entries(t):
        def add(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode = kind, link, mode
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("dir", tarfile.DIRTYPE, mode=0o755)
        add("dir/file.txt", data=b"hello\n" * 50)
        add("dir/link", tarfile.SYMTYPE, link="file.txt")
        add("dir/hard", tarfile.LNKTYPE, link="dir/file.txt")
        add("exec.sh", data=b"#!/bin/sh\n", mode=0o755)
        add("x" * 120 + "/long-name-" + "y" * 100, data=b"long")
    yield tar_bytes(entries)
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("pax/" + "é" * 60)
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"abc"))
    yield pax.getvalue()


def partlist(version, sizes):
    """A site's part list (common/partlist.h) of parts of these sizes."""
    body = b"despool-partlist 1\n" + struct.pack(
        "<QQ", version, sum(sizes)) + hashlib.sha256(b"stream").digest() + \
        struct.pack("<I", len(sizes))
    for k, n in enumerate(sizes):
        body += hashlib.sha256(b"part%d" % k).digest() + struct.pack("<I", n)
    return body + hashlib.sha256(body).digest()


def main():
    out = sys.argv[1]
    n = 0
    for sub, fname in (("v1", "vectors.txt"), ("v1", "signature.txt"),
                       ("v2", "vectors.txt")):
        for line in open(os.path.join(ROOT, "schemas", sub, fname)):
            for key in ("hex: ", "event: "):
                if line.startswith(key):
                    write(os.path.join(out, "decode"), "v%03d" % n,
                          bytes.fromhex(line[len(key):].strip()))
                    n += 1
    for i, sizes in enumerate(([], [5], [917504, 1, 65536])):
        write(os.path.join(out, "decode"), "partlist%d" % i,
              partlist(7 + i, sizes))
    tars = list(sample_tars())
    for i, raw in enumerate(tars):
        write(os.path.join(out, "extract"), "sample%d.tar" % i, raw)
        for chunks in (1, 3):
            write(os.path.join(out, "update"), "good%d-%d" % (i, chunks),
                  records(good_update(raw, chunks)))
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "hostile", "make_corpus.py"),
                        d, "seed"], check=True, stdout=subprocess.DEVNULL)
        for case in sorted(os.listdir(d)):
            p = os.path.join(d, case)
            if not os.path.isdir(p):
                continue
            evs = [open(os.path.join(p, f), "rb").read()
                   for f in sorted(os.listdir(p), key=lambda s: int(s.split(".")[1]))]
            write(os.path.join(out, "update"), case, records(evs))
            if len(evs) == 1:
                r = subprocess.run(["zstd", "-q", "-d", "-c", "--long=31"],
                                   input=_data_of(evs[0]), stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
                if r.returncode == 0 and 0 < len(r.stdout) <= (1 << 20):
                    write(os.path.join(out, "extract"), case + ".tar", r.stdout)
    for k in ("decode", "update", "extract"):
        print("%s: %d seeds" % (k, len(os.listdir(os.path.join(out, k)))))


def _data_of(event):
    """The `data` field of an encoded event (the last field, bin)."""
    i = event.rfind(b"\xa4data")
    if i < 0:
        return b""
    j = i + 5
    tag = event[j]
    if tag == 0xc4:
        n, j = event[j + 1], j + 2
    elif tag == 0xc5:
        n, j = int.from_bytes(event[j + 1:j + 3], "big"), j + 3
    elif tag == 0xc6:
        n, j = int.from_bytes(event[j + 1:j + 5], "big"), j + 5
    else:
        return b""
    return event[j:j + n]


if __name__ == "__main__":
    main()
