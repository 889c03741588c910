#!/usr/bin/env python3
"""Test helper: a second schema v2 publisher, written from
schemas/v2/README.md with the vector generator's own encoders (stdlib only),
so that the worker is tested against records pkgpub did not write, bad ones
included. Records go out through tests/tools/ktool (not transactional).

  v2craft.py parts  DIR PACKAGE VERSION TAR [--part-size N] [--corrupt I]
                    [--missing I] [--form parts|index]
      cut TAR into parts; write DIR/parts.list ("KEY FILE" lines for
      `ktool put -l`) and the part values.
  v2craft.py manifest DIR PACKAGE VERSION TAR DELIVERED OUT
      DELIVERED: ktool put -l's output for DIR/parts.list; write to OUT the
      manifest whose refs point where the parts were delivered (and, for
      --form index given to `parts`, the index parts: DIR/index.list must
      have been put and its output appended to DELIVERED).

--corrupt I: part I's frame holds other bytes than its id says
(part-mismatch). --missing I: part I's ref points 1,000,000 offsets past
where it was delivered (part-missing).
"""
import hashlib
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "mv2", os.path.join(HERE, "..", "..", "schemas", "v2", "make_vectors.py"))
mv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mv)


def opts(argv):
    o = {"part-size": 65536, "corrupt": -1, "missing": -1, "form": "parts"}
    rest = []
    i = 0
    while i < len(argv):
        if argv[i].startswith("--"):
            k = argv[i][2:]
            o[k] = argv[i + 1] if k == "form" else int(argv[i + 1])
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    return o, rest


def slices(data, n):
    return [data[i:i + n] for i in range(0, len(data), n)] or [b""]


def write_parts(d, package, chunks, name, corrupt=-1):
    """Part values for chunks into d; the list file; the part ids."""
    lines, ids = [], []
    for i, c in enumerate(chunks):
        pid = hashlib.sha256(c).digest()
        body = c
        if i == corrupt:
            body = bytes([c[0] ^ 1]) + c[1:]
        ev = {"schema": 2, "package": package, "part": pid,
              "size": len(c), "data": mv.zstd_frame(body)}
        path = os.path.join(d, "%s-%d.bin" % (name, i))
        with open(path, "wb") as f:
            f.write(mv.pack(mv.ordered(ev, mv.PART_ORDER)))
        lines.append("%s/%s %s\n" % (package, pid.hex(), path))
        ids.append(pid)
    with open(os.path.join(d, name + ".list"), "w") as f:
        f.writelines(lines)
    return ids


def delivered(path):
    """key -> (partition, offset) from ktool put -l output (last wins)."""
    at = {}
    for line in open(path):
        if not line.startswith("delivered "):
            continue
        kv = dict(x.split("=", 1) for x in line.split()[1:])
        at[kv["key"]] = (int(kv["partition"]), int(kv["offset"]))
    return at


def refs_of(package, chunks, corrupt, at, missing=-1):
    refs = []
    for i, c in enumerate(chunks):
        pid = hashlib.sha256(c).digest()
        p, off = at["%s/%s" % (package, pid.hex())]
        if i == missing:
            off += 1000000
        body = bytes([c[0] ^ 1]) + c[1:] if i == corrupt else c
        refs.append([pid, len(c), len(mv.zstd_frame(body)), p, off])
    return refs


def main(argv):
    o, a = opts(argv[1:])
    cmd, d, package, version, tarpath = a[0], a[1], a[2], int(a[3]), a[4]
    stream = open(tarpath, "rb").read()
    chunks = slices(stream, o["part-size"])
    state = os.path.join(d, "craft.json")
    if cmd == "parts":
        os.makedirs(d, exist_ok=True)
        write_parts(d, package, chunks, "parts", o["corrupt"])
        json.dump(o, open(state, "w"))
        return 0
    o = json.load(open(state))
    at = delivered(a[5])
    refs = refs_of(package, chunks, o["corrupt"], at, o["missing"])
    m = {"schema": 2, "package": package, "version": version,
         "update_id": os.urandom(16), "codec": "zstd", "size": len(stream),
         "sha256": hashlib.sha256(stream).digest(), "created_ms": 1,
         "zsize": sum(r[2] for r in refs)}
    if o["form"] == "index":
        index = mv.pack(refs)
        ichunks = slices(index, o["part-size"])
        if not os.path.exists(os.path.join(d, "index.list")):
            write_parts(d, package, ichunks, "index")
            print("put %s then run again" % os.path.join(d, "index.list"))
            return 3
        m["nparts"] = len(refs)
        m["index"] = refs_of(package, ichunks, -1, at)
    else:
        m["parts"] = refs
    with open(a[6], "wb") as f:
        f.write(mv.pack(mv.ordered(m, mv.MANIFEST_ORDER)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
