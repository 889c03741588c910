#!/usr/bin/env bash
# Logs are logfmt whatever the paths hold: a library and a source whose
# paths have a space, a quote and '=' (and a transactional id with a space)
# go through the worker's usual lines (started, update-started, finalized,
# a dead letter with its reason) and pkgpub's (publish-started); with an
# unreachable broker, librdkafka's lines (kafka-log, client.id with a
# space, a quote and '=') of despooler status; EVERY stderr line is
# parsed by a strict logfmt parser (key=bare or key="..." with \" \\ \n
# \r \t \uXXXX escapes, nothing else), and the library= and source=
# values read back equal the real paths.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site lf)
L="$T/lib dir \"q\" a=b"
SRCDIR="$T/src tree \"q\" x=y"
mkdir -p "$L"
make_tree "$SRCDIR" 1 5 8

start_worker w1 "$S" "$L"
wait_log w1 'msg=started ' 30
wait_log w1 'msg=assigned ' 60
"$PKGPUB" -b "$B" -p "$P" -V 1 --json --no-progress -t "pub lf $RUN" "$SRCDIR" \
  >"$T/pub.json" 2>"$T/pub.log" || fail "pkgpub failed: $(cat "$T/pub.log")"
python3 -m json.tool "$T/pub.json" >/dev/null || fail "pkgpub --json is not JSON: $(cat "$T/pub.json")"
wait_current "$L" "$P" 1 60
wait_log w1 "msg=finalized .*package=$P " 30
printf 'not msgpack' >"$T/garbage"
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/garbage" || fail "put garbage"
wait_log w1 'msg=dead-lettered .*reason=' 60
# An unreachable broker: librdkafka's own lines (kafka-log) carry its free
# text, and a client.id with a space, a quote and '='.
CID='st "c" x=1'
"$DESPOOLER" status -b 127.0.0.1:1 -X "client.id=$CID" >/dev/null 2>"$T/down.log" &&
  fail "status against 127.0.0.1:1 succeeded"
stop_worker w1

python3 - "$T/w1.log" "$T/pub.log" "$T/down.log" "$L" "$SRCDIR" "$CID" <<'PY' || fail "logs are not strict logfmt (above)"
import re, sys
w, pub, down, lib, src, cid = sys.argv[1:]
BARE = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=([^ "=\x00-\x1f\x7f]+)')
QUOT = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)="((?:[^"\\\x00-\x1f]|\\["\\nrt]|\\u[0-9a-f]{4})*)"')
def unq(s):
    return re.sub(r'\\(["\\nrt]|u[0-9a-f]{4})', lambda m: {'"': '"', '\\': '\\', 'n': '\n', 'r': '\r',
                  't': '\t'}.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), s)
def parse(line):
    out, i = {}, 0
    while i < len(line):
        m = QUOT.match(line, i)
        v = None
        if m:
            v = unq(m.group(2))
        else:
            m = BARE.match(line, i)
            if m:
                v = m.group(2)
        if m is None:
            raise ValueError(f"bad field at column {i}: {line[i:i+40]!r}")
        out[m.group(1)] = v
        i = m.end()
        if i < len(line):
            if line[i] != ' ':
                raise ValueError(f"no space after field at column {i}: {line[i:i+40]!r}")
            i += 1
    for k in ("ts", "level", "pid", "msg"):
        if k not in out:
            raise ValueError(f"no {k}")
    return out
bad, seen = 0, {}
for f in (w, pub, down):
    for n, line in enumerate(open(f, encoding="utf-8", errors="strict"), 1):
        line = line.rstrip("\n")
        if not line.startswith("ts="):
            continue  # the commands' own messages ("pkgpub: ...")
        try:
            d = parse(line)
        except ValueError as e:
            print(f"{f}:{n}: {e}\n  {line}"); bad += 1; continue
        seen.setdefault(d["msg"], []).append(d)
        if f == down and d["msg"] == "kafka-log":
            seen.setdefault("kafka-log-down", []).append(d)
for msg in ("started", "update-started", "finalized", "dead-lettered", "publish-started", "kafka-log"):
    if msg not in seen:
        print("no line msg=" + msg); bad += 1
got = [d["library"] for d in seen.get("started", []) if "library" in d]
if got != [lib]:
    print(f"library= {got!r}, expected [{lib!r}]"); bad += 1
got = [d["source"] for d in seen.get("publish-started", [])]
if not got or any(g != src for g in got):
    print(f"source= {got!r}, expected {src!r}"); bad += 1
if not any(d.get("transactional_id", "").startswith("pub lf ") for d in seen.get("publish-started", [])):
    print("transactional_id with a space not read back"); bad += 1
down_lines = seen.get("kafka-log-down", [])
if not down_lines or not all(d.get("client", "").startswith(cid + "#") and d.get("detail") for d in down_lines):
    print(f"kafka-log lines without client={cid!r} or a detail"); bad += 1
if not all(d.get("reason") for d in seen.get("dead-lettered", [])):
    print("dead-lettered without a reason"); bad += 1
print("parsed:", {k: len(v) for k, v in sorted(seen.items())})
sys.exit(1 if bad else 0)
PY
log "PASS"
