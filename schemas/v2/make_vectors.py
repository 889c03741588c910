#!/usr/bin/env python3
"""Write schemas/v2/vectors.txt: test vectors for schema v2 of despool
(manifests on pkg.updates, parts on pkg.content, part keys, tombstones,
v2 signatures; format: schemas/v2/README.md, section "Test vectors").

Python 3 standard library only. Everything in the vectors is real: the
tar archives are written by a small ustar writer below, the zstd frames by
a small frame writer (raw and RLE blocks, RFC 8878), the signatures by a
small Ed25519 signer (RFC 8032) checked against RFC 8032's TEST 1. A
consumer can therefore run every manifest vector end to end: fetch the
parts by id from the part vectors, decompress, compare with `sha256`.
The msgpack encoder is schema v1's (../v1/make_vectors.py): canonical
form, smallest format for every int, str, bin, array and map.

Output is deterministic: re-running the script must not change vectors.txt.

    python3 make_vectors.py          # (re)write vectors.txt next to this file
    python3 make_vectors.py --check  # exit 1 if vectors.txt is out of date
"""

import hashlib
import importlib.util
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_v1():
    path = os.path.join(HERE, "..", "v1", "make_vectors.py")
    spec = importlib.util.spec_from_file_location("v1_make_vectors", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_v1 = _load_v1()
Float, Pairs, Raw, pack = _v1.Float, _v1.Pairs, _v1.Raw, _v1.pack

# --- Limits (README.md, section "Limits") ---------------------------------

PART_SIZE_MAX = 917504  # 896 KiB of uncompressed bytes per part
PART_ZSIZE_MAX = PART_SIZE_MAX + (PART_SIZE_MAX >> 8)  # ZSTD_COMPRESSBOUND
INLINE_MAX = 262144  # compressed bytes a manifest may carry inline
MANIFEST_MAX = 524288  # bytes of an encoded manifest
REFS_MAX = 8192  # entries of a manifest's parts or index array
NPARTS_MAX = 1048576  # parts of one version
assert PART_ZSIZE_MAX == 921088

# --- Ed25519 (RFC 8032, pure), for the signature vectors ------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _x_of(y, sign):
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * _SQRT_M1 % _P
    assert (x * x - xx) % _P == 0
    return _P - x if (x & 1) != sign else x


_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = _x_of(_BY, 0)
_BASE = (_BX, _BY, 1, _BX * _BY % _P)


def _point_add(a, b):
    """Extended twisted Edwards coordinates; also doubles (a == b)."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    pa = (y1 - x1) * (y2 - x2) % _P
    pb = (y1 + x1) * (y2 + x2) % _P
    pc = 2 * t1 * t2 * _D % _P
    pd = 2 * z1 * z2 % _P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _scalar_mult(k, pt):
    acc = (0, 1, 1, 0)
    while k:
        if k & 1:
            acc = _point_add(acc, pt)
        pt = _point_add(pt, pt)
        k >>= 1
    return acc


def _encode_point(pt):
    x, y, z, _ = pt
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _secret(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    return a, h[32:]


def ed25519_public(seed):
    return _encode_point(_scalar_mult(_secret(seed)[0], _BASE))


def ed25519_sign(seed, msg):
    a, prefix = _secret(seed)
    pub = _encode_point(_scalar_mult(a, _BASE))
    r = int.from_bytes(hashlib.sha512(prefix + msg).digest(), "little") % _L
    big_r = _encode_point(_scalar_mult(r, _BASE))
    k = int.from_bytes(hashlib.sha512(big_r + pub + msg).digest(), "little")
    return big_r + ((r + k % _L * a) % _L).to_bytes(32, "little")


# RFC 8032 section 7.1 TEST 1: a published test key, never for real packages.
KEY_ID = "rfc8032-test1"
SEED = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUBLIC = bytes.fromhex(
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
assert ed25519_public(SEED) == PUBLIC
assert ed25519_sign(SEED, b"") == bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")

# --- murmur2 (Kafka's variant), for the partition of a part key -----------


def murmur2(data):
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = k * m & mask
        k ^= k >> 24
        k = k * m & mask
        h = (h * m & mask) ^ k
    tail = data[4 * n4:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = h * m & mask
    h ^= h >> 13
    h = h * m & mask
    h ^= h >> 15
    return h


assert murmur2(b"app") == 0xE5C12C07  # schemas/v1/README.md, section 1
CONTENT_PARTITIONS = 24


def partition_of(key):
    return (murmur2(key.encode()) & 0x7FFFFFFF) % CONTENT_PARTITIONS


# --- ustar (POSIX tar) writer ---------------------------------------------

MTIME = 1764064800  # 2025-11-25T10:00:00Z


def tar_entry(name, mode, data=b"", typeflag=b"0"):
    h = bytearray(512)

    def put(off, width, value):
        h[off:off + len(value)] = value
        assert len(value) <= width

    put(0, 100, name.encode())
    put(100, 8, b"%07o\0" % mode)
    put(108, 8, b"0000000\0")
    put(116, 8, b"0000000\0")
    put(124, 12, b"%011o\0" % len(data))
    put(136, 12, b"%011o\0" % MTIME)
    put(148, 8, b" " * 8)
    put(156, 1, typeflag)
    put(257, 6, b"ustar\0")
    put(263, 2, b"00")
    put(148, 8, b"%06o\0 " % sum(h))
    pad = b"\0" * (-len(data) % 512)
    return bytes(h) + data + pad


def tar(entries):
    return b"".join(entries) + b"\0" * 1024


README_TEXT = b"".join(
    b"line %04d: despool schema v2 test vector, a package's README.\n" % i
    for i in range(24))
APP_TAR = tar([
    tar_entry("README", 0o644, README_TEXT),
    tar_entry("bin/", 0o755, typeflag=b"5"),
    tar_entry("bin/run.sh", 0o755, b"#!/bin/sh\necho hello from despool\n"),
])
APP_TAR_V4 = tar([
    tar_entry("README", 0o644, README_TEXT.replace(b"README", b"readme")),
    tar_entry("bin/", 0o755, typeflag=b"5"),
    tar_entry("bin/run.sh", 0o755, b"#!/bin/sh\necho hello again\n"),
])
# A file of zeros: after its header, the stream is all zero bytes, so two
# parts of it can be the same part (one record, referenced twice).
ZERO_TAR = tar([tar_entry("zero.img", 0o644, b"\0" * 4096)])
# Exactly PART_SIZE_MAX bytes: the largest part there can be.
BIG_TAR = tar([tar_entry("big.img", 0o644, b"\0" * (PART_SIZE_MAX - 1536))])
assert len(BIG_TAR) == PART_SIZE_MAX

# --- zstd frames (RFC 8878): raw and RLE blocks -----------------------------

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BLOCK_MAX = 131072


def _blocks(content):
    """Cut content into blocks of <= 128 KiB at changes between runs of one
    byte and other bytes, so that runs become RLE blocks."""
    out, i = [], 0
    while i < len(content):
        j = i + 1
        if content[i:i + 64] == content[i:i + 1] * 64:
            while j < len(content) and j - i < BLOCK_MAX and \
                    content[j] == content[i]:
                j += 1
        else:
            while j < len(content) and j - i < BLOCK_MAX and \
                    content[j:j + 64] != content[j:j + 1] * 64:
                j += 1
        out.append(content[i:j])
        i = j
    return out


def zstd_frame(content, content_size=None, single_segment=True):
    """One zstd frame holding content. The header declares content_size
    (default: the real size) unless content_size is False."""
    n = len(content) if content_size is None else content_size
    if content_size is False:
        # No content size: a window descriptor instead (window 2^20).
        head = bytes([0x00, (20 - 10) << 3])
    elif n < 256 and single_segment:
        head = bytes([0x20, n])
    elif 256 <= n < 65536 + 256:
        head = bytes([0x60]) + struct.pack("<H", n - 256)
    else:
        head = bytes([0xA0]) + struct.pack("<I", n)
    blocks = _blocks(content) or [b""]
    body = b""
    for i, b in enumerate(blocks):
        last = i == len(blocks) - 1
        rle = len(b) >= 64 and b == b[:1] * len(b)
        hdr = int(last) | (1 if rle else 0) << 1 | len(b) << 3
        body += struct.pack("<I", hdr)[:3] + (b[:1] if rle else b)
    return ZSTD_MAGIC + head + body


# --- Schema v2 -------------------------------------------------------------

MANIFEST_ORDER = ["schema", "package", "version", "update_id", "codec",
                  "size", "zsize", "sha256", "created_ms", "sig", "key_id",
                  "nparts", "data", "parts", "index"]
MANIFEST_REQUIRED = ["schema", "package", "version", "update_id", "codec",
                     "size", "zsize", "sha256", "created_ms"]
PART_ORDER = ["schema", "package", "part", "size", "data"]

UPDATE_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
UPDATE_ID_4 = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
CREATED = 1764064800000  # 2025-11-25T10:00:00Z
DROP = object()  # marker: leave the field out


class Part:
    """One part: a slice of a tar stream, its frame and where it is."""

    def __init__(self, package, content, offset):
        self.package = package
        self.content = content
        self.id = hashlib.sha256(content).digest()
        self.frame = zstd_frame(content)
        self.key = "%s/%s" % (package, self.id.hex())
        self.partition = partition_of(self.key)
        self.offset = offset

    def ref(self):
        return [self.id, len(self.content), len(self.frame), self.partition,
                self.offset]

    def event(self):
        return {"schema": 2, "package": self.package, "part": self.id,
                "size": len(self.content), "data": self.frame}


def cut(package, stream, sizes, first_offset):
    """Parts of stream cut at the given sizes (the last takes the rest)."""
    parts, pos = [], 0
    for i, n in enumerate(sizes + [len(stream)]):
        if pos >= len(stream):
            break
        n = min(n, len(stream) - pos)
        parts.append(Part(package, stream[pos:pos + n], first_offset + i))
        pos += n
    return parts


def refs_digest(refs):
    h = hashlib.sha256()
    for r in refs:
        h.update(r[0] + struct.pack(">QQ", r[1], r[2]))
    return h.digest()


def signing_message(m):
    """README.md section 9: the text a v2 signature is made over."""
    if "data" in m:
        form, refs, nparts = "inline", [], 0
    elif "parts" in m:
        form, refs = "parts", m["parts"]
        nparts = len(refs)
    else:
        form, refs, nparts = "index", m["index"], m["nparts"]
    return ("despool-sig-v2\npackage=%s\nversion=%d\nupdate_id=%s\n"
            "codec=%s\nsize=%d\nzsize=%d\nsha256=%s\ncontent=%s\n"
            "nparts=%d\nrefs=%d\nrefs_sha256=%s\n" % (
                m["package"], m["version"], m["update_id"].hex(), m["codec"],
                m["size"], m["zsize"], m["sha256"].hex(), form, nparts,
                len(refs), refs_digest(refs).hex())).encode()


def ordered(d, order):
    out = {k: d[k] for k in order if k in d and d[k] is not DROP}
    out.update({k: v for k, v in d.items() if k not in order})
    return out


def manifest(stream, content, **over):
    """A valid manifest of stream with the given content form
    ({"data": ...} or {"parts": [...]} or {"index": [...], "nparts": n})."""
    m = {"schema": 2, "package": "app", "version": 3,
         "update_id": UPDATE_ID, "codec": "zstd", "size": len(stream),
         "sha256": hashlib.sha256(stream).digest(), "created_ms": CREATED}
    m.update(content)
    if "data" in content:
        m["zsize"] = len(content["data"])
    elif "parts" in content:
        m["zsize"] = sum(r[2] for r in content["parts"])
    m.update(over)
    return ordered(m, MANIFEST_ORDER)


def signed(m, seed=SEED, key_id=KEY_ID):
    m = dict(m)
    m["sig"] = ed25519_sign(seed, signing_message(m))
    m["key_id"] = key_id
    return ordered(m, MANIFEST_ORDER)


def meaning_lines(fields, order):
    lines = []
    for k in order:
        if k not in fields:
            continue
        v = fields[k]
        if k in ("parts", "index"):
            lines.append("%s=%d" % (k, len(v)))
            lines += ["ref=%s %d %d %d %d" % (r[0].hex(), r[1], r[2], r[3],
                                              r[4]) for r in v]
            continue
        if isinstance(v, (bytes, bytearray)):
            v = v.hex()
        lines.append("%s=%s" % (k, v))
    return lines


VECTORS = []


def add(name, kind, value, comment, valid=True, canonical=True,
        meaning=None, error_field=None, extra=()):
    """One vector. value: a Python object to pack, or Raw bytes. meaning
    (valid vectors): the dict of decoded field values, or a list of lines.
    extra: further (header, value) lines, after the hex."""
    block = ["# " + line for line in comment.split("\n")]
    block += ["name: " + name, "kind: " + kind]
    if valid:
        block.append("valid: yes")
        if value is not None:
            block.append("canonical: " + ("yes" if canonical else "no"))
    else:
        block += ["valid: no", "error-field: " + error_field]
    if value is not None:
        block.append("hex: " + pack(value).hex())
    block += ["%s: %s" % kv for kv in extra]
    if valid:
        if isinstance(meaning, list):
            block += meaning
        else:
            order = {"manifest": MANIFEST_ORDER, "part": PART_ORDER}[kind]
            src = meaning if meaning is not None else value
            block += meaning_lines(src, order)
    VECTORS.append("\n".join(block))


def esc(msg):
    assert b"\\" not in msg
    return msg.decode().replace("\n", "\\n")


def valid_manifest(name, comment, m, value=None, canonical=True, e2e=False,
                   signature=None):
    """signature: None (unsigned), "verifies" or "fails"."""
    extra = [("signing-message", esc(signing_message(m)))]
    if e2e:
        extra.append(("e2e", "yes"))
    if "sig" in m:
        extra += [("public-key", PUBLIC.hex()), ("signature", signature)]
    add(name, "manifest", value if value is not None else m, comment,
        canonical=canonical, meaning=m, extra=extra)


def bad_manifest(name, field, comment, value):
    add(name, "manifest", value, comment, valid=False, error_field=field)


def valid_part(name, comment, ev, value=None, canonical=True, verify="ok"):
    key = "%s/%s" % (ev["package"], ev["part"].hex())
    add(name, "part", value if value is not None else ev, comment,
        canonical=canonical, meaning=ev,
        extra=[("key", key), ("verify", verify)])


def bad_part(name, field, comment, value):
    add(name, "part", value, comment, valid=False, error_field=field)


def without(d, *names):
    return {k: v for k, v in d.items() if k not in names}


def build():
    # ---- the payloads and their parts
    inline_m = manifest(APP_TAR, {"data": zstd_frame(APP_TAR)}, version=2)
    app3 = cut("app", APP_TAR, [1000, 2500], 1000)
    parts_m = manifest(APP_TAR, {"parts": [p.ref() for p in app3]})
    app4 = cut("app", APP_TAR_V4, [1024, 1024, 1024], 2000)
    index_bytes = pack([p.ref() for p in app4])
    idx = cut("app", index_bytes, [100], 2100)
    index_m = manifest(APP_TAR_V4, {"index": [p.ref() for p in idx],
                                    "nparts": len(app4)},
                       version=4, update_id=UPDATE_ID_4,
                       zsize=sum(len(p.frame) for p in app4))
    zero = cut("data-zero", ZERO_TAR, [512, 2560], 0)
    assert zero[1].id == zero[2].id
    zero[2].offset = zero[1].offset  # one record, referenced twice
    zero = zero[:2] + [zero[1]]
    zero_m = manifest(ZERO_TAR, {"parts": [p.ref() for p in zero]},
                      package="data-zero", version=1)
    big = cut("data-big", BIG_TAR, [], 77)
    assert len(big) == 1 and len(big[0].content) == PART_SIZE_MAX
    big_m = manifest(BIG_TAR, {"parts": [p.ref() for p in big]},
                     package="data-big", version=1)

    # ---- valid manifests
    valid_manifest(
        "manifest-inline",
        "A small update: the whole zstd stream (one frame of the %d-byte\n"
        "tar of README, bin/, bin/run.sh) inline in the manifest." %
        len(APP_TAR),
        inline_m, e2e=True)
    valid_manifest(
        "manifest-parts",
        "The same tar as three parts of 1000, 2500 and 1108 bytes (cut\n"
        "positions are the publisher's choice; they need not fall on tar\n"
        "blocks). Partitions are murmur2(key) % 24; offsets in pkg.content.",
        parts_m, e2e=True)
    valid_manifest(
        "manifest-index",
        "Version 4 as four parts, listed through an index (forced here; a\n"
        "publisher uses the index form when the list would exceed 8192\n"
        "refs). The index is the msgpack array of the four refs (vector\n"
        "index-app-4), itself stored as two parts; nparts = 4.",
        index_m, e2e=True)
    valid_manifest(
        "manifest-repeated-part",
        "A tar whose stream after the header is 5120 zero bytes: parts 2 and\n"
        "3 are the same bytes, so the same part id and the same record.",
        zero_m, e2e=True)
    valid_manifest(
        "manifest-largest-part",
        "One part of exactly 917504 bytes (the maximum), RLE-compressed.",
        big_m, e2e=True)
    valid_manifest("manifest-inline-signed",
                   "manifest-inline signed with the RFC 8032 TEST 1 key.",
                   signed(inline_m), e2e=True, signature="verifies")
    sp = signed(parts_m)
    valid_manifest("manifest-parts-signed",
                   "manifest-parts signed with the RFC 8032 TEST 1 key.",
                   sp, e2e=True, signature="verifies")
    valid_manifest("manifest-index-signed",
                   "manifest-index signed with the RFC 8032 TEST 1 key.",
                   signed(index_m), e2e=True, signature="verifies")
    moved = dict(sp)
    moved["parts"] = [[r[0], r[1], r[2], r[3] + 100, r[4] + 5000000000]
                      for r in sp["parts"]]
    valid_manifest(
        "manifest-parts-signed-repointed",
        "manifest-parts-signed with other partitions and offsets (e.g. the\n"
        "parts copied to another cluster): the signature does not cover\n"
        "where parts are, only what they are, so it still verifies.",
        moved, signature="verifies")
    forged = dict(sp)
    forged["version"] = 9
    valid_manifest(
        "manifest-parts-signed-version-changed",
        "manifest-parts-signed with version 9: a valid manifest whose\n"
        "signature fails (reason bad-signature at a site that checks).",
        forged, signature="fails")
    swapped = dict(sp)
    r0 = list(sp["parts"][0])
    r0[0] = bytes(32)
    swapped["parts"] = [r0] + sp["parts"][1:]
    valid_manifest(
        "manifest-parts-signed-id-changed",
        "manifest-parts-signed with the first part id zeroed: signature\n"
        "fails (the ids are signed).",
        swapped, signature="fails")
    ext = dict(parts_m)
    ext["zz_future"] = {"a": [1, -2, 2.5, None, True]}
    ext["compression_level"] = 19
    valid_manifest("manifest-unknown-fields",
                   "Unknown fields of any type are ignored.\n"
                   "Not canonical: re-encoding drops them.",
                   parts_m, value=ext, canonical=False)
    valid_manifest("manifest-key-order",
                   "Fields in reverse order: order does not matter.",
                   parts_m, value=dict(reversed(list(parts_m.items()))),
                   canonical=False)
    r = parts_m["parts"]
    odd = Pairs([
        ("schema", Raw(b"\xd0\x02")),  # int 8 holding 2
        ("package", Raw(b"\xd9\x03app")),  # str 8 for 3 bytes
        ("version", Raw(b"\xcf" + struct.pack(">Q", 3))),
        ("update_id", Raw(b"\xc5\x00\x10" + UPDATE_ID)),  # bin 16
        ("codec", "zstd"),
        ("size", Raw(b"\xce" + struct.pack(">I", parts_m["size"]))),
        ("zsize", parts_m["zsize"]),
        ("sha256", parts_m["sha256"]),
        ("created_ms", CREATED),
        ("parts", Raw(b"\xdc\x00\x03" + b"".join(
            pack([Raw(b"\xc5\x00\x20" + x[0]),
                  Raw(b"\xd1" + struct.pack(">h", x[1])),
                  Raw(b"\xcf" + struct.pack(">Q", x[2])),
                  Raw(b"\xd0" + struct.pack(">b", x[3])),
                  Raw(b"\xd3" + struct.pack(">q", x[4]))]) for x in r))),
    ])
    valid_manifest(
        "manifest-noncanonical-forms",
        "Larger formats (int 8, str 8, uint 64, bin 16, uint 32, array 16,\n"
        "int 16, int 64) mean the same values.",
        parts_m, value=odd, canonical=False)
    longer = dict(parts_m)
    longer["parts"] = [x + ["future", {"k": 1}] for x in r]
    valid_manifest(
        "manifest-ref-extra-elements",
        "Refs with elements after the fifth: ignored (a later schema may\n"
        "add some). Not canonical.",
        parts_m, value=longer, canonical=False)
    ext_ref = [bytes(range(32)), PART_SIZE_MAX, PART_ZSIZE_MAX, 2**31 - 1,
               2**63 - 1]
    extremes = manifest(b"", {"parts": [ext_ref]},
                        package="p" + "a.b_c-D9" * 15 + "0123456",
                        version=2**64 - 1, created_ms=2**64 - 1,
                        size=PART_SIZE_MAX, sha256=bytes(range(32, 64)))
    valid_manifest(
        "manifest-extremes",
        "64-bit maxima, a 128-byte package id, the largest size, zsize,\n"
        "partition (2^31-1) and offset (2^63-1) a ref can hold.",
        extremes)
    many = manifest(b"", {"parts": [[bytes([i]) * 32, 1, 9, i % 24, i]
                                    for i in range(20)]},
                    size=20, sha256=bytes(32), version=5)
    valid_manifest("manifest-20-parts",
                   "20 one-byte parts: more than 15 refs, so array 16\n"
                   "(dc 00 14).", many)
    empty_inline = manifest(b"", {"data": zstd_frame(b"", 0)}, version=6)
    valid_manifest("manifest-inline-size-0",
                   "Inline: size 0 is allowed (a frame of no bytes).",
                   empty_inline, e2e=True)

    # ---- index content and its parts
    add("index-app-4", "index", [p.ref() for p in app4],
        "The index of manifest-index: the msgpack array of version 4's\n"
        "four part refs, in stream order. Its bytes are the content of the\n"
        "two index parts.",
        meaning=["refs=%d" % len(app4)] + [
            "ref=%s %d %d %d %d" % (x[0].hex(), x[1], x[2], x[3], x[4])
            for x in [p.ref() for p in app4]])
    add("index-not-array", "index", {"refs": []}, "A map, not an array.",
        valid=False, error_field="-")
    add("index-bad-ref", "index", [app4[0].ref(), [b"\x01" * 32, 0, 9, 0, 0]],
        "The second ref's size is 0.", valid=False, error_field="size")
    add("index-trailing", "index", Raw(index_bytes + b"\xc0"),
        "The index followed by a nil.", valid=False, error_field="-")

    # ---- part events
    seen = set()
    for label, plist in [("app-3", app3), ("app-4", app4),
                         ("app-4-index", idx), ("data-zero", zero),
                         ("data-big", big)]:
        for i, p in enumerate(plist):
            if p.id in seen:
                continue
            seen.add(p.id)
            valid_part("part-%s-%d" % (label, i),
                       "Part %d of %s: %d bytes, key %s." % (
                           i, label, len(p.content), p.key[:20] + "..."),
                       p.event())
    good = app3[0].event()
    wrong_id = dict(good)
    wrong_id["part"] = app3[1].id
    valid_part("part-id-mismatch",
               "A valid part event whose data is not its id's bytes: the\n"
               "consumer's check fails (reason part-mismatch).",
               wrong_id, verify="part-mismatch")
    valid_part("part-unknown-field", "Unknown fields are ignored.",
               good, value=dict(good, zz=[1, 2]), canonical=False)
    valid_part("part-key-order", "Reverse order.", good,
               value=dict(reversed(list(good.items()))), canonical=False)

    bad_part("part-schema-1", "schema", "Schema 1 is not a part.",
             dict(good, schema=1))
    for f in PART_ORDER:
        bad_part("part-missing-" + f, f, "Required field %s absent." % f,
                 without(good, f))
    bad_part("part-type-size", "size", "size as str.", dict(good, size="1000"))
    bad_part("part-type-part", "part", "part as str.",
             dict(good, part=good["part"].hex()))
    bad_part("part-id-31", "part", "part of 31 bytes.",
             dict(good, part=good["part"][:31]))
    bad_part("part-package-slash", "package", "package a/b.",
             dict(good, package="a/b"))
    bad_part("part-size-0", "size", "size 0.", dict(good, size=0))
    over = b"\0" * (PART_SIZE_MAX + 1)
    bad_part("part-size-917505", "size",
             "size 917505: one byte more than a part may hold (the frame\n"
             "holds 917505 zero bytes).",
             {"schema": 2, "package": "app",
              "part": hashlib.sha256(over).digest(),
              "size": PART_SIZE_MAX + 1, "data": zstd_frame(over)})
    bad_part("part-data-empty", "data", "data of 0 bytes.",
             dict(good, data=b""))
    bad_part("part-data-not-zstd", "data", "data is not a zstd frame.",
             dict(good, data=b"\x00" * 20))
    bad_part("part-data-two-frames", "data",
             "data is two frames (exactly one is allowed).",
             dict(good, data=zstd_frame(app3[0].content[:500]) +
                  zstd_frame(app3[0].content[500:])))
    bad_part("part-data-no-content-size", "data",
             "The frame does not declare its content size.",
             dict(good, data=zstd_frame(app3[0].content, False)))
    bad_part("part-data-content-size-differs", "data",
             "The frame declares 999 bytes, size says 1000.",
             dict(good, data=zstd_frame(app3[0].content[:999])))
    bad_part("part-data-truncated-frame", "data",
             "The frame without its last byte.",
             dict(good, data=app3[0].frame[:-1]))
    bad_part("part-data-trailing", "data", "The frame, then one byte.",
             dict(good, data=app3[0].frame + b"\x00"))
    bad_part("part-not-a-map", "-", "An array.", list(good.values()))
    bad_part("part-trailing", "-", "A part event, then a nil.",
             Raw(pack(good) + b"\xc0"))

    # ---- invalid manifests: structure
    gm = pack(parts_m)
    bad_manifest("manifest-empty-value", "-",
                 "Zero bytes (not a null value: that is a tombstone).",
                 Raw(b""))
    bad_manifest("manifest-trailing-bytes", "-", "A manifest, then a nil.",
                 Raw(gm + b"\xc0"))
    bad_manifest("manifest-truncated", "-", "Without its last byte.",
                 Raw(gm[:-1]))
    bad_manifest("manifest-not-a-map", "-", "An array.",
                 list(parts_m.values()))
    bad_manifest("manifest-int-key", "-", "An int key.",
                 Pairs(list(parts_m.items()) + [(7, 1)]))
    bad_manifest("manifest-invalid-type-byte", "-", "0xc1.",
                 Raw(b"\x81\xa6schema\xc1"))
    bad_manifest("manifest-huge-parts-count", "-",
                 "parts claims 4294967295 refs in a few bytes: truncated.",
                 Raw(b"\x82\xa6schema\x02\xa5parts\xdd\xff\xff\xff\xff\x90"))
    bad_manifest("manifest-duplicate-version", "version", "version twice.",
                 Pairs(list(parts_m.items()) + [("version", 3)]))
    bad_manifest("manifest-duplicate-parts", "parts", "parts twice.",
                 Pairs(list(parts_m.items()) + [("parts", parts_m["parts"])]))

    # ---- schema
    v1 = {"schema": 1, "package": "app", "version": 3, "update_id": UPDATE_ID,
          "chunk": 0, "chunks": 1, "codec": "zstd", "size": 10240,
          "zsize": 5, "sha256": bytes(32), "created_ms": CREATED,
          "data": bytes.fromhex("28b52ffd04")}
    bad_manifest("manifest-v1-event", "schema",
                 "A v1 event (schema 1) is not a manifest: a consumer reads it\n"
                 "as v1 (schemas/v1). The schema is reported first.", v1)
    bad_manifest("manifest-schema-3", "schema", "Schema 3 is unknown.",
                 dict(parts_m, schema=3))
    bad_manifest("manifest-schema-str", "schema", "schema as str.",
                 dict(parts_m, schema="2"))

    # ---- missing and mistyped fields
    for f in MANIFEST_REQUIRED:
        bad_manifest("manifest-missing-" + f, f,
                     "Required field %s absent." % f, without(parts_m, f))
    bad_manifest("manifest-no-content", "parts",
                 "None of data, parts, index.", without(parts_m, "parts"))
    wrong = [
        ("package", b"app", "bin instead of str"),
        ("version", "3", "str instead of uint"),
        ("update_id", UPDATE_ID.hex(), "str instead of bin"),
        ("codec", b"zstd", "bin instead of str"),
        ("size", Float(3584), "float instead of uint"),
        ("zsize", [1], "array instead of uint"),
        ("sha256", "x" * 32, "str instead of bin"),
        ("created_ms", {"ms": 1}, "map instead of uint"),
        ("parts", {"0": 1}, "map instead of array"),
    ]
    for f, v, why in wrong:
        bad_manifest("manifest-type-" + f, f, "%s: %s." % (f, why),
                     dict(parts_m, **{f: v}))
    bad_manifest("manifest-type-data", "data", "data as str.",
                 dict(inline_m, data="hello"))
    bad_manifest("manifest-type-index", "index", "index as bin.",
                 dict(index_m, index=b"\x90"))
    bad_manifest("manifest-type-nparts", "nparts", "nparts as str.",
                 dict(index_m, nparts="4"))
    bad_manifest("manifest-type-sig", "sig", "sig as str.",
                 dict(parts_m, sig="x" * 64, key_id="k1"))
    bad_manifest("manifest-type-key-id", "key_id", "key_id as int.",
                 dict(parts_m, sig=bytes(64), key_id=5))
    bad_manifest("manifest-negative-version", "version", "version -1.",
                 dict(parts_m, version=-1))

    # ---- header rules
    bad_manifest("manifest-version-0", "version", "version 0.",
                 dict(parts_m, version=0))
    bad_manifest("manifest-codec-gzip", "codec", "codec gzip.",
                 dict(parts_m, codec="gzip"))
    bad_manifest("manifest-update-id-15", "update_id", "update_id 15 bytes.",
                 dict(parts_m, update_id=UPDATE_ID[:15]))
    bad_manifest("manifest-sha256-33", "sha256", "sha256 33 bytes.",
                 dict(parts_m, sha256=parts_m["sha256"] + b"\0"))
    bad_manifest("manifest-package-slash", "package",
                 "package a/b (a / would make part keys ambiguous).",
                 dict(parts_m, package="a/b"))
    bad_manifest("manifest-package-129", "package", "package of 129 bytes.",
                 dict(parts_m, package="a" * 129))
    bad_manifest("manifest-sig-63", "sig", "sig of 63 bytes.",
                 dict(parts_m, sig=bytes(63), key_id="k1"))
    bad_manifest("manifest-sig-without-key-id", "key_id", "sig, no key_id.",
                 dict(parts_m, sig=bytes(64)))
    bad_manifest("manifest-key-id-without-sig", "sig", "key_id, no sig.",
                 dict(parts_m, key_id="k1"))
    bad_manifest("manifest-key-id-invalid", "key_id", "key_id -k1.",
                 dict(parts_m, sig=bytes(64), key_id="-k1"))

    # ---- content forms
    bad_manifest("manifest-data-and-parts", "parts",
                 "Two content forms: data and parts.",
                 dict(parts_m, data=inline_m["data"]))
    bad_manifest("manifest-parts-and-index", "index",
                 "Two content forms: parts and index.",
                 dict(parts_m, index=index_m["index"], nparts=4))
    bad_manifest("manifest-data-and-index", "index",
                 "Two content forms: data and index.",
                 dict(inline_m, index=index_m["index"], nparts=4))
    bad_manifest("manifest-inline-zsize-differs", "data",
                 "Inline data of %d bytes, zsize %d." %
                 (inline_m["zsize"], inline_m["zsize"] + 1),
                 dict(inline_m, zsize=inline_m["zsize"] + 1))
    bad_manifest("manifest-inline-empty", "data", "Inline data of 0 bytes.",
                 dict(inline_m, data=b"", zsize=0))
    bad_manifest("manifest-inline-nparts", "nparts",
                 "nparts belongs to the index form only.",
                 dict(inline_m, nparts=1))
    bad_manifest("manifest-parts-nparts", "nparts",
                 "nparts belongs to the index form only.",
                 dict(parts_m, nparts=3))
    bad_manifest("manifest-parts-empty", "parts", "parts is an empty array.",
                 dict(parts_m, parts=[], zsize=1))

    def bad_ref(name, why, ref_i, ref, **over):
        refs = list(parts_m["parts"])
        refs[ref_i] = ref
        bad_manifest("manifest-ref-" + name, "parts", why,
                     dict(parts_m, parts=refs, **over))

    r0 = parts_m["parts"][0]
    bad_ref("not-array", "A ref that is a map.", 0,
            {"id": r0[0], "size": r0[1]})
    bad_ref("4-elements", "A ref of 4 elements.", 1, r[1][:4])
    bad_ref("id-31", "A ref id of 31 bytes.", 0, [r0[0][:31]] + r0[1:])
    bad_ref("id-str", "A ref id as str.", 0, [r0[0].hex()] + r0[1:])
    bad_ref("size-0", "A ref of size 0.", 0, [r0[0], 0] + r0[2:],
            size=parts_m["size"] - r0[1])
    bad_ref("size-917505", "A ref of size 917505.", 0,
            [r0[0], PART_SIZE_MAX + 1] + r0[2:],
            size=parts_m["size"] - r0[1] + PART_SIZE_MAX + 1)
    bad_ref("zsize-0", "A ref of zsize 0.", 0, r0[:2] + [0] + r0[3:],
            zsize=parts_m["zsize"] - r0[2])
    bad_ref("zsize-921089", "A ref of zsize 921089.", 0,
            r0[:2] + [PART_ZSIZE_MAX + 1] + r0[3:],
            zsize=parts_m["zsize"] - r0[2] + PART_ZSIZE_MAX + 1)
    bad_ref("partition-2pow31", "A ref partition of 2^31.", 0,
            r0[:3] + [2**31, r0[4]])
    bad_ref("partition-negative", "A ref partition of -1.", 0,
            r0[:3] + [-1, r0[4]])
    bad_ref("offset-2pow63", "A ref offset of 2^63.", 0, r0[:4] + [2**63])
    bad_ref("offset-str", "A ref offset as str.", 0, r0[:4] + ["1000"])
    bad_manifest("manifest-parts-size-sum", "size",
                 "The refs' sizes add up to %d, size says %d." %
                 (len(APP_TAR), len(APP_TAR) + 1),
                 dict(parts_m, size=parts_m["size"] + 1))
    bad_manifest("manifest-parts-zsize-sum", "zsize",
                 "The refs' zsizes do not add up to zsize.",
                 dict(parts_m, zsize=parts_m["zsize"] - 1))
    bad_manifest("manifest-index-no-nparts", "nparts",
                 "The index form without nparts.", without(index_m, "nparts"))
    bad_manifest("manifest-index-nparts-0", "nparts", "nparts 0.",
                 dict(index_m, nparts=0))
    bad_manifest("manifest-index-nparts-too-many", "nparts",
                 "nparts 1048577: more than a version may have.",
                 dict(index_m, nparts=NPARTS_MAX + 1))
    bad_manifest("manifest-index-nparts-above-size", "nparts",
                 "nparts 5000 for a %d-byte stream (a part holds >= 1 byte)."
                 % len(APP_TAR_V4),
                 dict(index_m, nparts=5000, zsize=5000))
    bad_manifest("manifest-index-size-above-nparts", "size",
                 "size 917505 in 1 part (a part holds <= 917504 bytes).",
                 dict(index_m, nparts=1, size=PART_SIZE_MAX + 1))
    bad_manifest("manifest-index-empty", "index", "index is an empty array.",
                 dict(index_m, index=[]))
    bad_manifest("manifest-index-bad-ref", "index",
                 "An index ref of size 0.",
                 dict(index_m, index=[idx[0].ref(),
                                      [idx[1].id, 0] + idx[1].ref()[2:]]))

    # ---- part keys
    k = app3[0].key
    for name, key, why in [
        ("key-app", k, "A part of app."),
        ("key-long-package", "p" + "a.b_c-D9" * 15 + "0123456/" + "0" * 64,
         "A 128-byte package id: 193 bytes, the longest key."),
    ]:
        pkg, _, hx = key.partition("/")
        add(name, "key", None, why,
            extra=[("key", key), ("murmur2", "0x%08x" % murmur2(key.encode())),
                   ("partition-24", str(partition_of(key)))],
            meaning=["package=" + pkg, "part=" + hx])
    for name, key, why in [
        ("key-uppercase-hex", "app/" + app3[0].id.hex().upper(),
         "Hex digits are lowercase."),
        ("key-63-hex", k[:-1], "63 hex digits."),
        ("key-65-hex", k + "0", "65 hex digits."),
        ("key-no-slash", "app" + app3[0].id.hex(), "No slash."),
        ("key-two-slashes", "a/b/" + app3[0].id.hex(), "Two slashes."),
        ("key-empty-package", "/" + app3[0].id.hex(), "Empty package."),
        ("key-bad-package", ".app/" + app3[0].id.hex(), "Leading dot."),
        ("key-just-package", "app", "A package id alone."),
    ]:
        add(name, "key", None, why, valid=False, error_field="-",
            extra=[("key", key)])

    # ---- tombstones (null values)
    add("tombstone-retire", "tombstone", None,
        "pkg.updates, key app, null value: the package app is retired.",
        extra=[("topic", "pkg.updates"), ("key", "app"), ("value", "null")],
        meaning=["retire=app"])
    gone = app3[0]
    add("tombstone-part", "tombstone", None,
        "pkg.content, null value: a part of app that no retained manifest\n"
        "references (version 3's part 0, when version 4 replaced version 3).\n"
        "Produced to the partition the part's record is in (%d)." %
        gone.partition,
        extra=[("topic", "pkg.content"), ("key", gone.key), ("value", "null"),
               ("partition-24", str(gone.partition))],
        meaning=["package=app", "part=" + gone.id.hex()])
    add("tombstone-bad-key", "tombstone", None,
        "pkg.updates, key a/b (not a package id), null value: bad-schema.",
        valid=False, error_field="-",
        extra=[("topic", "pkg.updates"), ("key", "a/b"), ("value", "null")])


HEADER = """\
# despool schema v2 test vectors: manifests (pkg.updates), parts
# (pkg.content), index contents, part keys, tombstones, v2 signatures.
# Generated by make_vectors.py; do not edit by hand. Format and meaning:
# schemas/v2/README.md, section "Test vectors". Signed vectors use the
# RFC 8032 section 7.1 TEST 1 key (key id rfc8032-test1), public key
# d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a:
# a published test key, never for real packages.
"""


def render():
    VECTORS.clear()
    build()
    names = set()
    for v in VECTORS:
        name = [ln for ln in v.split("\n") if ln.startswith("name: ")][0]
        assert name not in names, name
        names.add(name)
    return HEADER + "\n" + "\n\n".join(VECTORS) + "\n"


def main(argv):
    path = os.path.join(HERE, "vectors.txt")
    text = render()
    if argv[1:] == ["--check"]:
        try:
            with open(path, encoding="utf-8") as f:
                same = f.read() == text
        except FileNotFoundError:
            same = False
        if not same:
            print("%s is out of date: run %s" % (path, argv[0]),
                  file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print("usage: %s [--check]" % argv[0], file=sys.stderr)
        return 2
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print("wrote %d vectors to %s" % (len(VECTORS), path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
