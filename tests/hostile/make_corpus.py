#!/usr/bin/env python3
"""Generate the hostile-input corpus: pkg.updates events that a despooler
must refuse, each with the dead-letter reason it must give.

  make_corpus.py OUTDIR SUFFIX

Writes OUTDIR/<case>/event.<i> (msgpack values, in the order to produce
them) and OUTDIR/manifest.tsv, one line per case:

  case  class  package  events  expect  detail

`expect` is a dead-letter reason (every event of the case must reach
pkg.updates.dlq with it, and nothing may be installed) or `installed:MODE`
(the update installs; MODE is the octal mode its file `tool` must have).
Package ids are h<NN>-SUFFIX, so runs on a shared broker stay apart.

The worker under test runs with --max-update-size 16M --max-entries 1000
--incomplete-timeout 3 and the default --max-window-log 27. Every file
name an attack tries to plant starts with "despool-pwned": the test
searches the whole filesystem for such names afterwards (escapes).
"""
import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "schemas", "v1"))
import make_vectors as mv  # noqa: E402

RND = random.Random(20261125)  # the corpus is the same on every run
PWN = "despool-pwned"


def zstd(raw, *args):
    return subprocess.run(["zstd", "-q", "-c", *args], input=raw, check=True,
                          stdout=subprocess.PIPE).stdout


def tar_of(entries):
    """entries: list of (TarInfo, bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def tar_gnu(entries):
    """Like tar_of, in GNU format (long names as ././@LongLink entries)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def ti(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, link=""):
    t = tarfile.TarInfo(name)
    t.type = kind
    t.mode = mode
    t.linkname = link
    t.size = len(data) if kind == tarfile.REGTYPE else 0
    t.mtime = 1764064800
    return (t, data if kind == tarfile.REGTYPE else None)


def ok_file(name="VERSION", data=b"hostile corpus\n"):
    return ti(name, data=data)


EOA = bytes(1024)  # the end-of-archive blocks


def tar_num(n, width):
    """A tar number field: octal and NUL, or base-256 when too big."""
    s = b"%0*o" % (width - 1, n)
    if len(s) <= width - 1:
        return s + b"\0"
    return b"\x80" + n.to_bytes(width - 1, "big")


def header(name, kind, size=0, link=b"", magic=b"ustar\x0000", fields=()):
    """One 512-byte tar header, by hand (tarfile writes no GNU sparse and
    is slow for 65,000 entries); fields: (offset, bytes) to set too."""
    h = bytearray(512)
    for off, b in ((0, name), (100, tar_num(0o644, 8)), (108, tar_num(0, 8)),
                   (116, tar_num(0, 8)), (124, tar_num(size, 12)),
                   (136, tar_num(1764064800, 12)), (156, kind), (157, link),
                   (257, magic)) + tuple(fields):
        h[off:off + len(b)] = b
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def hardlinks(n, target="%s-linked" % PWN):
    """A ustar archive: one file, then n hardlinks to it."""
    out = [header(target.encode(), b"0", 1), b"x" + bytes(511)]
    for i in range(n):
        out.append(header(b"l%06d" % i, b"1", link=target.encode()))
    return b"".join(out) + EOA


def old_gnu_sparse(name, realsize, extents, data):
    """An old-GNU sparse entry (type 'S'): up to 4 (offset, length) extents
    in the header, the file's apparent size in `realsize`, and only the
    extents' bytes (data) stored."""
    f = [(483, tar_num(realsize, 12))]
    for i, (o, n) in enumerate(extents):
        f += [(386 + 24 * i, tar_num(o, 12)), (398 + 24 * i, tar_num(n, 12))]
    return (header(name.encode(), b"S", len(data), magic=b"ustar  \0", fields=f)
            + data + bytes(-len(data) % 512))


def pax_sparse(name, pax, data):
    """A GNU sparse entry in pax form: its GNU.sparse.* attributes in pax,
    data as stored (for 1.0, the map in front of the extents' bytes)."""
    t = tarfile.TarInfo(name)
    t.size, t.mtime, t.pax_headers = len(data), 1764064800, pax
    return tar_of([(t, data)])


class Corpus:
    def __init__(self, out, suffix):
        self.out, self.suffix, self.n, self.rows = out, suffix, 0, []

    def package(self):
        self.n += 1
        return "h%02d-%s" % (self.n, self.suffix)

    def add(self, case, cls, expect, events, detail, package):
        d = os.path.join(self.out, case)
        os.makedirs(d, exist_ok=True)
        for i, ev in enumerate(events):
            with open(os.path.join(d, "event.%d" % i), "wb") as f:
                f.write(ev)
        self.rows.append((case, cls, package, len(events), expect, detail))

    def update(self, case, cls, expect, raw_tar, detail, z=None, chunks=1,
               only=None, **over):
        """An update of one tar (compressed unless z is given), split into
        chunks; `over` overrides header fields (size, sha256, ...)."""
        p = self.package()
        z = zstd(raw_tar) if z is None else z
        uid = bytes(RND.getrandbits(8) for _ in range(16))
        step = max(1, (len(z) + chunks - 1) // chunks)
        hdr = dict(package=p, version=1, update_id=uid, chunks=chunks,
                   size=len(raw_tar), zsize=len(z),
                   sha256=hashlib.sha256(raw_tar).digest())
        hdr.update(over)
        evs = []
        for i in range(chunks) if only is None else only:
            evs.append(mv.pack(mv.event(chunk=i, data=z[i * step:(i + 1) * step] or b"\0",
                                        **hdr)))
        self.add(case, cls, expect, evs, detail, p)
        return p

    def raw(self, case, cls, expect, values, detail):
        self.add(case, cls, expect, values, detail, self.package())


def build(c):
    # --- unsafe archives: extraction must refuse them (unsafe-path) ------
    U = "unsafe-path"
    c.update("abs-path", "unsafe-archive", U,
             tar_of([ok_file(), ti("/tmp/%s-abs" % PWN, data=b"x")]),
             "absolute path /tmp/despool-pwned-abs")
    c.update("dotdot", "unsafe-archive", U,
             tar_of([ok_file(), ti("a/../../../../%s-dotdot" % PWN, data=b"x")]),
             "'..' components climbing out")
    c.update("dotdot-only", "unsafe-archive", U,
             tar_of([ti("../%s-up" % PWN, data=b"x")]), "leading '..'")
    c.update("symlink-out-then-write", "unsafe-archive", U,
             tar_of([ti("link", tarfile.SYMTYPE, link="../../../../../tmp"),
                     ti("link/%s-through-link" % PWN, data=b"x")]),
             "symlink pointing outside, then a file through it")
    c.update("symlink-absolute", "unsafe-archive", U,
             tar_of([ti("etc", tarfile.SYMTYPE, link="/etc")]),
             "symlink to an absolute path")
    c.update("symlink-dotdot-after-name", "unsafe-archive", U,
             tar_of([ti("d/l", tarfile.SYMTYPE, link="x/../../../..")]),
             "symlink target with '..' after a name")
    c.update("hardlink-out", "unsafe-archive", U,
             tar_of([ti("hl", tarfile.LNKTYPE, link="../../../../etc/passwd")]),
             "hardlink to a file outside")
    c.update("hardlink-absolute", "unsafe-archive", U,
             tar_of([ti("hl", tarfile.LNKTYPE, link="/etc/passwd")]),
             "hardlink to an absolute path")
    c.update("dir-replaced-by-symlink", "unsafe-archive", U,
             tar_of([ti("d", tarfile.DIRTYPE, mode=0o755),
                     ti("d", tarfile.SYMTYPE, link="../../../../../tmp"),
                     ti("d/%s-swap" % PWN, data=b"x")]),
             "directory entry, then a symlink of the same name, then a file below")
    for kind, name in ((tarfile.CHRTYPE, "chardev"), (tarfile.BLKTYPE, "blockdev"),
                       (tarfile.FIFOTYPE, "fifo")):
        c.update(name, "special-file", U,
                 tar_of([ok_file(), ti("%s-%s" % (PWN, name), kind)]),
                 "%s entry" % name)
    c.update("long-path", "unsafe-archive", U,
             tar_of([ti("/".join(["d" * 200] * 25) + "/" + PWN, data=b"x")]),
             "entry path of 5,000+ bytes")
    c.update("long-component", "unsafe-archive", U,
             tar_of([ti("a" * 300, data=b"x")]), "one path component of 300 bytes")

    c.update("long-name-gnu", "unsafe-archive", U,
             tar_gnu([ti("%s-%s" % (PWN, "n" * 300), data=b"x")]),
             "GNU long-name entry (././@LongLink) with a 300-byte component")
    c.update("long-dir-component", "unsafe-archive", U,
             tar_of([ti("d" * 256, tarfile.DIRTYPE, mode=0o755),
                     ti("d" * 256 + "/" + PWN, data=b"x")]),
             "a directory named by a 256-byte component, then a file in it")
    c.update("long-symlink-target", "unsafe-archive", U,
             tar_of([ti("%s-l" % PWN, tarfile.SYMTYPE, link="a/" * 2100)]),
             "symlink whose target is 4,200 bytes")
    c.update("long-hardlink-target", "unsafe-archive", U,
             tar_of([ok_file(), ti("%s-h" % PWN, tarfile.LNKTYPE,
                                   link="/".join(["d" * 250] * 20))]),
             "hardlink whose target path is 5,000+ bytes")

    # --- sparse files: a few stored bytes claiming terabytes on disk ------
    # (ext4 answers EFBIG at 16 TiB, xfs and tmpfs write them). Refused
    # at the header, whatever the size: corrupt-tar; with no extents at
    # all the file is just larger than the declared size: too-large.
    C, TB32 = "corrupt-tar", 1 << 45
    c.update("sparse-old-gnu-32tib", "sparse", C,
             old_gnu_sparse("%s-sparse" % PWN, TB32, [(0, 1)], b"x") + EOA,
             "old-GNU sparse file claiming 2^45 bytes (32 TiB), 1 byte stored")
    c.update("sparse-old-gnu-data-at-32tib", "sparse", C,
             old_gnu_sparse("%s-sparse" % PWN, TB32, [(TB32 - 1, 1)], b"x") + EOA,
             "old-GNU sparse file: its one stored byte at offset 2^45 - 1")
    c.update("sparse-old-gnu-no-extents", "sparse", "too-large",
             old_gnu_sparse("%s-sparse" % PWN, TB32, [], b"") + EOA,
             "old-GNU sparse file of 2^45 bytes with no extent at all")
    c.update("sparse-old-gnu-small", "sparse", C,
             old_gnu_sparse("%s-sparse" % PWN, 8192, [(4096, 1)], b"x") + EOA,
             "old-GNU sparse file of 8 KiB, within the declared size")
    m10 = b"1\n0\n1\n"
    c.update("sparse-pax-1.0", "sparse", C,
             pax_sparse("GNUSparseFile.0/%s-sparse" % PWN,
                        {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                         "GNU.sparse.name": "%s-sparse" % PWN,
                         "GNU.sparse.realsize": str(TB32)},
                        m10 + bytes(512 - len(m10)) + b"x"),
             "pax GNU sparse 1.0 file claiming 2^45 bytes, 1 byte stored")
    c.update("sparse-pax-0.1", "sparse", C,
             pax_sparse("%s-sparse" % PWN,
                        {"GNU.sparse.size": str(TB32), "GNU.sparse.numblocks": "1",
                         "GNU.sparse.map": "0,1", "GNU.sparse.name": "%s-sparse" % PWN},
                        b"x"),
             "pax GNU sparse 0.1 file claiming 2^45 bytes, 1 byte stored")

    # --- hardlink counts ------------------------------------------------
    # Hardlinks store no data: 65,001 of them to one file (ext4 holds
    # 65,000 names per file) are 33 MB of tar, ~300 KB compressed. Here
    # --max-entries 1000 refuses it first; t23 runs it without a cap.
    c.update("hardlinks-65001", "hardlink-count", "too-large",
             hardlinks(65001), "65,001 hardlinks to one file, over --max-entries 1000")

    # --- caps (too-large) -----------------------------------------------
    T = "too-large"
    c.update("too-many-entries", "cap", T,
             tar_of([ti("f%05d" % i) for i in range(1500)]),
             "1,500 entries, --max-entries 1000")
    zeros = bytes(64 << 20)
    c.update("zstd-bomb-small-claim", "zstd-bomb", T,
             tar_of([ti("%s-bomb" % PWN, data=zeros)]),
             "64 MiB of zeros declared as 1 MiB", size=1 << 20)
    c.update("zstd-bomb-honest", "zstd-bomb", T,
             tar_of([ti("%s-bomb" % PWN, data=zeros)]),
             "64 MiB declared honestly, over --max-update-size 16M")
    c.update("zsize-over-cap", "oversized-count", T,
             tar_of([ok_file()]), "zsize declared 1 TiB (chunks 1)",
             zsize=1 << 40)
    raw = tar_of([ok_file("big.bin", (b"abcdefgh" * 1000 + bytes(range(256))) * 500)])
    c.update("window-too-large", "zstd-bomb", T, raw,
             "zstd frame with a 1 GiB window (--long=30, streamed)",
             z=subprocess.run(["sh", "-c", "cat | zstd -q -c --long=30"],
                              input=raw, check=True, stdout=subprocess.PIPE).stdout)

    # --- corrupt streams ---------------------------------------------------
    good = tar_of([ok_file(), ti("data.bin", data=bytes(RND.getrandbits(8) for _ in range(20000)))])
    gz = zstd(good)
    c.update("zstd-truncated", "truncated", "corrupt-zstd", good,
             "compressed stream cut 16 bytes short", z=gz[:-16])
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0x40
    c.update("zstd-bitflip", "bit-flip", "corrupt-zstd", good,
             "one bit flipped mid-stream", z=bytes(flipped))
    c.update("zstd-trailing-junk", "corrupt-stream", "corrupt-zstd", good,
             "bytes after the end of the frame", z=gz + b"JUNKJUNK")
    c.update("not-zstd", "corrupt-stream", "corrupt-zstd", good,
             "random bytes instead of zstd", z=bytes(RND.getrandbits(8) for _ in range(3000)))
    noise = bytes(RND.getrandbits(8) for _ in range(10240))
    c.update("not-tar", "corrupt-stream", "corrupt-tar", noise, "zstd of random bytes, not tar")
    c.update("tar-truncated", "truncated", "corrupt-tar", good[:700],
             "tar cut inside a file's data")

    # --- lies about content ---------------------------------------------
    c.update("wrong-sha256", "wrong-digest", "sha256-mismatch", good,
             "declared sha256 of other bytes", sha256=hashlib.sha256(b"other").digest())
    c.update("size-larger-than-real", "wrong-size", "size-mismatch", good,
             "declared size 1 KiB more than the stream", size=len(good) + 1024)
    c.update("size-smaller-than-real", "wrong-size", T, good,
             "declared size 1 KiB less than the stream", size=len(good) - 1024)

    # --- reassembly -------------------------------------------------------
    big = tar_of([ok_file(), ti("r.bin", data=bytes(RND.getrandbits(8) for _ in range(30000)))])
    c.update("chunk-without-first", "reassembly", "incomplete", big,
             "chunk 1 of 3 without chunk 0", chunks=3, only=[1])
    c.update("chunk-gap", "reassembly", "incomplete", big,
             "chunks 0 and 2 of 3: 1 never comes", chunks=3, only=[0, 2])
    c.update("chunks-stop", "oversized-count", "incomplete", big,
             "claims 1,000 chunks, sends 2", chunks=1000, only=[0, 1],
             zsize=1000 * ((len(zstd(big)) + 999) // 1000))
    # Mix-and-match (the seed's defect): chunk 1 carries another
    # version's header under the same update id.
    p = c.package()
    zb = zstd(big)
    half = (len(zb) + 1) // 2
    uid = bytes(RND.getrandbits(8) for _ in range(16))
    hdr = dict(package=p, update_id=uid, chunks=2, size=len(big), zsize=len(zb),
               sha256=hashlib.sha256(big).digest())
    c.add("mix-and-match", "reassembly", "bad-schema",
          [mv.pack(mv.event(version=1, chunk=0, data=zb[:half], **hdr)),
           mv.pack(mv.event(version=2, chunk=1, data=zb[half:], **hdr))],
          "chunk 1 with another version's header, same update id", p)

    # --- events that are not events (bad-schema) ------------------------
    bad = []
    vec = open(os.path.join(HERE, "..", "..", "schemas", "v1", "vectors.txt")).read()
    for block in vec.split("\n\n"):
        f = dict(l.split(": ", 1) for l in block.splitlines() if ": " in l)
        if f.get("kind") == "event" and f.get("valid") == "no":
            bad.append(bytes.fromhex(f["hex"]))
    c.raw("schema-vectors", "wrong-types", "bad-schema", bad,
          "every invalid event of schemas/v1/vectors.txt (%d)" % len(bad))
    c.raw("garbage", "wrong-types", "bad-schema",
          [b"not msgpack at all", b"\xc1", b"\x91\x01", b"\x80",
           bytes(RND.getrandbits(8) for _ in range(512))],
          "garbage, a reserved byte, an array, an empty map, random bytes")
    p = c.package()
    c.add("key-mismatch", "wrong-types", "bad-schema",
          [mv.pack(mv.event(package="not-" + p))],
          "event whose package differs from its Kafka key", p)

    # --- hostile bits that must be neutralised, not refused ---------------
    c.update("setuid-stripped", "special-bits", "installed:755",
             tar_of([ti("tool", data=b"#!/bin/sh\necho hi\n", mode=0o6755),
                     ti("sticky", tarfile.DIRTYPE, mode=0o1777)]),
             "setuid+setgid file and sticky dir: installed without those bits")


def main():
    out, suffix = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    c = Corpus(out, suffix)
    build(c)
    with open(os.path.join(out, "manifest.tsv"), "w") as f:
        for r in c.rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    print("%d cases, %d events" % (len(c.rows), sum(r[3] for r in c.rows)))


if __name__ == "__main__":
    main()
