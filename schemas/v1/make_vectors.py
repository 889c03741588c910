#!/usr/bin/env python3
"""Write schemas/v1/vectors.txt: test vectors for schema v1 of despool's
pkg.updates event and pkg.status record (format: schemas/v1/README.md).

Python 3 standard library only, with its own small msgpack encoder: this
script is also the proof that a publisher can be written from the spec
alone. Its encoder uses the canonical form of the spec (fields in the
documented order, smallest msgpack format for every int, str, bin and map),
so a conforming encoder that re-encodes a decoded canonical vector must
reproduce its bytes exactly.

Output is deterministic (fixed ids, digests and timestamps): re-running the
script must not change vectors.txt.

    python3 make_vectors.py          # (re)write vectors.txt next to this file
    python3 make_vectors.py --check  # exit 1 if vectors.txt is out of date
"""

import hashlib
import os
import struct
import sys

# --- A tiny msgpack encoder --------------------------------------------


class Raw:
    """Bytes copied verbatim into the output (for deliberately odd forms)."""

    def __init__(self, data):
        self.data = bytes(data)


class Pairs:
    """A map given as a list of (key, value) pairs: allows duplicate and
    non-str keys, which a dict cannot hold."""

    def __init__(self, pairs):
        self.pairs = list(pairs)


class Float:
    """A float64 value (Python floats would work too; this is explicit)."""

    def __init__(self, value):
        self.value = float(value)


def _len_header(n, small_base, small_max, forms):
    """Header for a length n: a fix form when n <= small_max, else the first
    of forms [(type byte, struct format, max)] that fits."""
    if small_base is not None and n <= small_max:
        return bytes([small_base | n])
    for tb, fmt, top in forms:
        if n <= top:
            return bytes([tb]) + struct.pack(fmt, n)
    raise ValueError("length %d too large for msgpack" % n)


def pack(obj):
    """Canonical msgpack: smallest format for each int, str, bin and map."""
    if isinstance(obj, Raw):
        return obj.data
    if obj is None:
        return b"\xc0"
    if obj is True:
        return b"\xc3"
    if obj is False:
        return b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj <= 0x7F:
            return bytes([obj])
        if 0 <= obj <= 0xFF:
            return b"\xcc" + struct.pack(">B", obj)
        if 0 <= obj <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", obj)
        if 0 <= obj <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", obj)
        if 0 <= obj <= 0xFFFFFFFFFFFFFFFF:
            return b"\xcf" + struct.pack(">Q", obj)
        if -32 <= obj < 0:
            return struct.pack(">b", obj)
        if -0x80 <= obj < 0:
            return b"\xd0" + struct.pack(">b", obj)
        if -0x8000 <= obj < 0:
            return b"\xd1" + struct.pack(">h", obj)
        if -0x80000000 <= obj < 0:
            return b"\xd2" + struct.pack(">i", obj)
        if -0x8000000000000000 <= obj < 0:
            return b"\xd3" + struct.pack(">q", obj)
        raise ValueError("int %d out of msgpack range" % obj)
    if isinstance(obj, (float, Float)):
        v = obj.value if isinstance(obj, Float) else obj
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(obj, str):
        b = obj.encode("utf-8")
        return (
            _len_header(
                len(b),
                0xA0,
                31,
                [(0xD9, ">B", 0xFF), (0xDA, ">H", 0xFFFF), (0xDB, ">I", 0xFFFFFFFF)],
            )
            + b
        )
    if isinstance(obj, (bytes, bytearray)):
        return (
            _len_header(
                len(obj),
                None,
                0,
                [(0xC4, ">B", 0xFF), (0xC5, ">H", 0xFFFF), (0xC6, ">I", 0xFFFFFFFF)],
            )
            + bytes(obj)
        )
    if isinstance(obj, (list, tuple)):
        head = _len_header(
            len(obj), 0x90, 15, [(0xDC, ">H", 0xFFFF), (0xDD, ">I", 0xFFFFFFFF)]
        )
        return head + b"".join(pack(x) for x in obj)
    if isinstance(obj, dict):
        obj = Pairs(obj.items())
    if isinstance(obj, Pairs):
        head = _len_header(
            len(obj.pairs), 0x80, 15, [(0xDE, ">H", 0xFFFF), (0xDF, ">I", 0xFFFFFFFF)]
        )
        return head + b"".join(pack(k) + pack(v) for k, v in obj.pairs)
    raise TypeError("cannot pack %r" % (obj,))


# --- Schema v1 -----------------------------------------------------------

# Canonical field order (schemas/v1/README.md, "Canonical encoding").
EVENT_ORDER = [
    "schema",
    "package",
    "version",
    "update_id",
    "chunk",
    "chunks",
    "codec",
    "size",
    "zsize",
    "sha256",
    "created_ms",
    "sig",
    "key_id",
    "data",
]
EVENT_REQUIRED = [f for f in EVENT_ORDER if f not in ("sig", "key_id")]
STATUS_ORDER = ["site", "package", "version", "state", "detail", "at_ms"]

UPDATE_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
SHA = hashlib.sha256(b"despool schema v1 test vector").digest()
CREATED = 1764064800000  # 2025-11-25T10:00:00Z
# data is arbitrary bytes here: the codec does not decompress. It starts
# with the zstd frame magic only to look plausible.
DATA = bytes.fromhex("28b52ffd04")
SIG = bytes((i * 7 + 3) & 0xFF for i in range(64))
DROP = object()  # marker: leave the field out


def event(**over):
    """A valid single-chunk event with `over` applied, in canonical order.
    over[name] = DROP removes a field; unknown names are appended."""
    ev = {
        "schema": 1,
        "package": "app",
        "version": 3,
        "update_id": UPDATE_ID,
        "chunk": 0,
        "chunks": 1,
        "codec": "zstd",
        "size": 10240,
        "zsize": len(DATA),
        "sha256": SHA,
        "created_ms": CREATED,
        "data": DATA,
    }
    extra = {}
    for k, v in over.items():
        if k in ev or k in EVENT_ORDER:
            ev[k] = v
        else:
            extra[k] = v
    out = {k: ev[k] for k in EVENT_ORDER if k in ev and ev[k] is not DROP}
    out.update(extra)
    return out


def status(**over):
    st = {
        "site": "dp-eu-1",
        "package": "app",
        "version": 3,
        "state": "installed",
        "detail": "",
        "at_ms": CREATED + 2500,
    }
    st.update(over)
    return {k: v for k, v in st.items() if v is not DROP}


def meaning(fields, order):
    """field=value lines for a valid vector, in canonical order."""
    lines = []
    for k in order:
        if k not in fields:
            continue
        v = fields[k]
        if isinstance(v, (bytes, bytearray)):
            v = v.hex()
        lines.append("%s=%s" % (k, v))
    return lines


VECTORS = []


def add(name, kind, value, valid, comment, error_field=None, canonical=True,
        meaning_of=None):
    """Record one vector. value is a Python object to pack, or Raw bytes.
    meaning_of (valid vectors) is the dict of decoded field values."""
    raw = pack(value)
    block = ["# " + line for line in comment.split("\n")]
    block += ["name: " + name, "kind: " + kind]
    if valid:
        block += ["valid: yes", "canonical: " + ("yes" if canonical else "no")]
    else:
        block += ["valid: no", "error-field: " + error_field]
    block.append("hex: " + raw.hex())
    if valid:
        src = meaning_of if meaning_of is not None else value
        order = EVENT_ORDER if kind == "event" else STATUS_ORDER
        block += meaning(src, order)
    VECTORS.append("\n".join(block))


def valid_event(name, comment, canonical=True, value=None, **over):
    ev = event(**over)
    add(name, "event", value if value is not None else ev, True, comment,
        canonical=canonical, meaning_of=ev)


def bad_event(name, field, comment, **over):
    add(name, "event", event(**over), False, comment, error_field=field)


def bad_event_raw(name, field, comment, value):
    add(name, "event", value, False, comment, error_field=field)


def valid_status(name, comment, canonical=True, value=None, **over):
    st = status(**over)
    add(name, "status", value if value is not None else st, True, comment,
        canonical=canonical, meaning_of=st)


def bad_status(name, field, comment, **over):
    add(name, "status", status(**over), False, comment, error_field=field)


def build():
    # ---- valid events
    valid_event("event-minimal", "Smallest valid event: one chunk, no signature.")
    valid_event(
        "event-multi-chunk-middle",
        "Chunk 1 of 3 of a larger update; data is 300 bytes (bin 16 form),\n"
        "version and zsize need uint 32, size uint 32.",
        version=70000,
        chunk=1,
        chunks=3,
        size=10_000_000,
        zsize=2_000_000,
        data=bytes((i * 31 + 7) & 0xFF for i in range(300)),
    )
    valid_event(
        "event-signed",
        "Signed update: sig (bin 64) and key_id, placed before data.",
        sig=SIG,
        key_id="release-2026.k1",
    )
    valid_event(
        "event-extremes",
        "64-bit maxima, the largest chunk index, a 128-byte package id (str 8).",
        package="p" + "a.b_c-D9" * 15 + "0123456",
        version=2**64 - 1,
        chunk=2**32 - 2,
        chunks=2**32 - 1,
        size=2**64 - 1,
        zsize=2**64 - 1,
        created_ms=2**64 - 1,
    )
    valid_event(
        "event-zeros",
        "One-character package, size 0 and created_ms 0 are allowed.",
        package="Z",
        size=0,
        created_ms=0,
        version=1,
    )
    valid_event(
        "event-uint-forms",
        "uint 8 and uint 16 forms (200, 300, 40000).",
        version=200,
        size=300,
        zsize=40000,
        chunks=2,
        chunk=1,
    )
    ev = event()
    withext = dict(ev)
    withext["compression_level"] = 19
    withext["labels"] = {"team": "tools", "list": [1, -2, 2.5, None, True]}
    withext["zz_future"] = b"\x01\x02"
    valid_event(
        "event-unknown-fields",
        "Unknown fields of any type are ignored (forward compatibility).\n"
        "Not canonical: re-encoding drops them.",
        canonical=False,
        value=withext,
    )
    valid_event(
        "event-key-order",
        "Fields in reverse order: order does not matter to a reader.",
        canonical=False,
        value=dict(reversed(list(ev.items()))),
    )
    odd = Pairs(
        [
            ("schema", 1),
            ("package", Raw(b"\xd9\x03app")),  # str 8 for a 3-byte string
            ("version", Raw(b"\xd0\x03")),  # int 8 holding 3
            ("update_id", UPDATE_ID),
            ("chunk", Raw(b"\xcf" + bytes(8))),  # uint 64 holding 0
            ("chunks", Raw(b"\xcd\x00\x01")),  # uint 16 holding 1
            ("codec", "zstd"),
            ("size", 10240),
            ("zsize", len(DATA)),
            ("sha256", Raw(b"\xc5\x00\x20" + SHA)),  # bin 16 for 32 bytes
            ("created_ms", CREATED),
            ("data", DATA),
        ]
    )
    valid_event(
        "event-noncanonical-forms",
        "Larger-than-needed formats (str 8, int 8, uint 64, uint 16, bin 16)\n"
        "mean the same values; a non-negative signed int is a valid uint.",
        canonical=False,
        value=odd,
    )

    # ---- invalid events: structure
    good = pack(event())
    bad_event_raw("event-empty-value", "-", "Zero bytes.", Raw(b""))
    bad_event_raw(
        "event-trailing-bytes", "-", "A valid event followed by one byte.",
        Raw(good + b"\xc0")
    )
    bad_event_raw(
        "event-truncated-last-byte", "-", "A valid event without its last byte.",
        Raw(good[:-1])
    )
    bad_event_raw(
        "event-truncated-header", "-", "Cut in the middle of the update_id field.",
        Raw(good[:40])
    )
    bad_event_raw(
        "event-huge-map-count", "-",
        "map 32 header claiming 4294967295 pairs, then 4 bytes: truncated.",
        Raw(b"\xdf\xff\xff\xff\xff\xa1a\x01\xc0")
    )
    bad_event_raw(
        "event-invalid-type-byte", "-", "0xc1 is never used by msgpack.",
        Raw(b"\x81\xa6schema\xc1")
    )
    bad_event_raw(
        "event-not-a-map", "-", "The field values as an array.",
        list(event().values())
    )
    bad_event_raw("event-nil", "-", "A lone nil.", None)
    bad_event_raw(
        "event-int-key", "-", "A map with an int key (besides valid fields).",
        Pairs(list(event().items()) + [(7, "x")])
    )
    bad_event_raw(
        "event-bin-key", "-", "A bin key spelled like a field name.",
        Pairs(list(event(version=DROP).items()) + [(b"version", 3)])
    )
    bad_event_raw(
        "event-duplicate-version", "version",
        "version appears twice (same value): rejected, readers could disagree.",
        Pairs(list(event().items()) + [("version", 3)])
    )
    bad_event_raw(
        "event-duplicate-data", "data", "data appears twice.",
        Pairs(list(event().items()) + [("data", DATA)])
    )

    # ---- missing fields, one per required field
    for f in EVENT_REQUIRED:
        bad_event("event-missing-" + f, f, "Required field %s absent." % f,
                  **{f: DROP})

    # ---- wrong types, one (or more) per field
    wrong = [
        ("schema", "1", "str instead of uint"),
        ("package", b"app", "bin instead of str"),
        ("version", "3", "str instead of uint"),
        ("update_id", UPDATE_ID.hex()[:16], "str of 16 chars instead of bin"),
        ("chunk", None, "nil instead of uint"),
        ("chunks", True, "bool instead of uint"),
        ("codec", b"zstd", "bin instead of str"),
        ("size", Float(10240), "float 64 instead of uint"),
        ("zsize", [5], "array instead of uint"),
        ("sha256", SHA.hex()[:32], "str instead of bin"),
        ("created_ms", {"ms": CREATED}, "map instead of uint"),
        ("data", "hello", "str instead of bin"),
        ("sig", "x" * 64, "str instead of bin (with a valid key_id)"),
        ("key_id", 5, "int instead of str (with a valid sig)"),
    ]
    for f, v, why in wrong:
        over = {f: v}
        if f == "sig":
            over["key_id"] = "k1"
        if f == "key_id":
            over["sig"] = SIG
        bad_event("event-type-" + f, f, "%s: %s." % (f, why), **over)
    bad_event(
        "event-float32-version", "version", "version as float 32.",
        version=Raw(b"\xca" + struct.pack(">f", 3.0))
    )
    bad_event("event-negative-version", "version", "version -1.", version=-1)
    bad_event("event-negative-created", "created_ms", "created_ms -1.",
              created_ms=-1)
    bad_event("event-negative-chunk", "chunk", "chunk -1 (int 8).",
              chunk=Raw(b"\xd0\xff"))

    # ---- rule violations
    bad_event("event-schema-2", "schema", "A later schema: not readable as v1.",
              schema=2)
    bad_event("event-schema-0", "schema", "Schema 0 does not exist.", schema=0)
    bad_event(
        "event-schema-2-sparse", "schema",
        "Schema 2 without v1's fields: the schema is reported, not a missing field.",
        data=DROP, codec=DROP, schema=2
    )
    for name, pkg, why in [
        ("empty", "", "empty"),
        ("leading-dot", ".app", "leading dot"),
        ("leading-dash", "-app", "leading dash"),
        ("leading-underscore", "_app", "leading underscore"),
        ("129-chars", "a" * 129, "129 bytes, one too many"),
        ("slash", "a/b", "contains a slash"),
        ("dotdot", "..", "the parent directory"),
        ("space", "my app", "contains a space"),
        ("non-ascii", "appé", "non-ASCII letter"),
        ("nul", "app\x00x", "contains a NUL byte"),
    ]:
        bad_event("event-package-" + name, "package",
                  "package id %r: %s." % (pkg, why), package=pkg)
    bad_event("event-version-0", "version", "version 0 (versions start at 1).",
              version=0)
    bad_event("event-chunk-equals-chunks", "chunk", "chunk 3 of chunks 3.",
              chunk=3, chunks=3)
    bad_event("event-chunk-above-chunks", "chunk", "chunk 9 of chunks 2.",
              chunk=9, chunks=2)
    bad_event("event-chunks-0", "chunks", "chunks 0.", chunks=0)
    bad_event("event-chunks-above-zsize", "chunks",
              "10 chunks for 5 compressed bytes.", chunks=10, chunk=0)
    bad_event("event-chunk-2pow32", "chunk",
              "chunk 4294967296 does not fit 32 bits.", chunk=2**32,
              chunks=2**32 - 1)
    bad_event("event-chunks-2pow32", "chunks",
              "chunks 4294967296 does not fit 32 bits.", chunks=2**32)
    bad_event("event-codec-gzip", "codec", "codec gzip.", codec="gzip")
    bad_event("event-codec-upper", "codec", "codec is case-sensitive.",
              codec="ZSTD")
    bad_event("event-codec-empty", "codec", "codec empty.", codec="")
    bad_event("event-update-id-15", "update_id", "update_id of 15 bytes.",
              update_id=UPDATE_ID[:15])
    bad_event("event-update-id-17", "update_id", "update_id of 17 bytes.",
              update_id=UPDATE_ID + b"\x00")
    bad_event("event-sha256-31", "sha256", "sha256 of 31 bytes.",
              sha256=SHA[:31])
    bad_event("event-sha256-33", "sha256", "sha256 of 33 bytes.",
              sha256=SHA + b"\x00")
    bad_event("event-zsize-0", "zsize", "zsize 0.", zsize=0)
    bad_event("event-data-empty", "data", "data of 0 bytes.", data=b"")
    bad_event("event-data-above-zsize", "data", "5 data bytes, zsize 4.",
              zsize=4)
    bad_event("event-sig-63", "sig", "sig of 63 bytes.", sig=SIG[:63],
              key_id="k1")
    bad_event("event-sig-without-key-id", "key_id", "sig but no key_id.",
              sig=SIG)
    bad_event("event-key-id-without-sig", "sig", "key_id but no sig.",
              key_id="k1")
    bad_event("event-key-id-invalid", "key_id", "key_id with a leading dash.",
              sig=SIG, key_id="-k1")
    bad_event("event-key-id-65", "key_id", "key_id of 65 bytes.", sig=SIG,
              key_id="k" * 65)

    # ---- valid status records
    valid_status(
        "status-published", "pkgpub's record, written with the update.",
        site="_published", state="published", at_ms=CREATED
    )
    valid_status("status-installed", "A site finalized version 3.",
                 detail="12 files, 10240 bytes")
    valid_status(
        "status-failed-256", "A failure; detail of exactly 256 bytes (str 16).",
        site="dp-us.2", state="failed", version=2**64 - 1,
        detail=("sha256-mismatch: " + "0123456789abcdef" * 15)[:256]
    )
    valid_status("status-failed-utf8", "detail is UTF-8 text.",
                 state="failed", detail="Prüfsumme falsch ✗")
    valid_status("status-version-0", "version 0: the version was unknown "
                 "(the event could not be read).", state="failed", version=0,
                 detail="bad-schema")
    st = status()
    st_ext = dict(st)
    st_ext["worker"] = "host-7"
    valid_status("status-unknown-field", "Unknown fields are ignored.",
                 canonical=False, value=st_ext)

    # ---- invalid status records
    for f in STATUS_ORDER:
        bad_status("status-missing-" + f, f, "Required field %s absent." % f,
                   **{f: DROP})
    bad_status("status-state-unknown", "state", "state deleted.",
               state="deleted")
    bad_status("status-state-case", "state", "state is case-sensitive.",
               state="Installed")
    bad_status("status-site-slash", "site", "site with a slash.", site="a/b")
    bad_status("status-site-underscore", "site",
               "Only _published may start with an underscore.", site="_other")
    bad_status("status-site-empty", "site", "site empty.", site="")
    bad_status("status-package-dot", "package", "package ..", package="..")
    bad_status("status-detail-257", "detail", "detail of 257 bytes.",
               detail="x" * 257)
    bad_status("status-detail-nul", "detail", "detail with a NUL byte.",
               detail="a\x00b")
    bad_status("status-version-str", "version", "version as str.",
               version="3")
    bad_status("status-at-negative", "at_ms", "at_ms -5.", at_ms=-5)
    bad_status("status-state-bin", "state", "state as bin.",
               state=b"installed")
    add("status-not-a-map", "status", ["dp-eu-1", "app", 3], False,
        "An array.", error_field="-")
    add("status-trailing", "status", Raw(pack(status()) + b"\x00"), False,
        "A valid record followed by a byte.", error_field="-")
    add("status-int-key", "status", Pairs(list(status().items()) + [(1, 2)]),
        False, "An int key.", error_field="-")
    add("status-duplicate-state", "status",
        Pairs(list(status().items()) + [("state", "failed")]), False,
        "state twice.", error_field="state")


HEADER = """\
# despool schema v1 test vectors (pkg.updates events, pkg.status records).
# Generated by make_vectors.py; do not edit by hand. Format and meaning:
# schemas/v1/README.md, section "Test vectors".
"""


def render():
    VECTORS.clear()
    build()
    names = set()
    for v in VECTORS:
        name = [l for l in v.split("\n") if l.startswith("name: ")][0]
        assert name not in names, name
        names.add(name)
    return HEADER + "\n" + "\n\n".join(VECTORS) + "\n"


def main(argv):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "vectors.txt")
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
