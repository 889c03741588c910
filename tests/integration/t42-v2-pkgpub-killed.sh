#!/usr/bin/env bash
# Schema v2: a pkgpub killed (-9) while it sends a version's parts leaves
# no manifest: the running site keeps the version it has, and nothing of
# the killed publication is ever installed. The next publication of the
# package (same transactional id: it fences the dead one's transaction)
# references only parts that are committed and where its refs say, and
# the site installs it byte for byte.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib; P=$(pkg app)
MB=60; [ "$BROKER_KIND" = kafka ] || MB=20 # the embedded broker takes 24 MiB of parts
make_random_tree "$T/v1" 1 2
make_random_tree "$T/v2" 2 "$MB"
publish "$P" 1 "$T/v1" >/dev/null
start_worker w1 "$S" "$L"
wait_current "$L" "$P" 1 60

# zstd level 19: slow packing, so parts go out over seconds while the
# transaction is open.
"$PKGPUB" -b "$B" -p "$P" -V 2 -L 19 -T 1 --no-progress "$T/v2" >"$T/killed.out" 2>"$T/killed.err" &
PUB=$!
PIDS+=($PUB)
# Killed once it has begun sending (its log says so), before it ends.
end=$((SECONDS + 60))
until grep -q "msg=embedded-check-passed\|msg=previous-record" "$T/killed.err"; do
  kill -0 $PUB 2>/dev/null || fail "pkgpub ended before it could be killed: $(tail -3 "$T/killed.err")"
  [ $SECONDS -lt $end ] || fail "pkgpub did not start sending"
  sleep 0.02
done
sleep 0.5
kill -KILL $PUB 2>/dev/null || fail "pkgpub finished before the kill: make v2 bigger"
wait $PUB 2>/dev/null || true
grep -q '^published' "$T/killed.out" && fail "the killed pkgpub says it published"
sleep 3
[ "$(current_version "$L" "$P")" = 1 ] || fail "the site left version 1 after the kill"
grep -q "msg=update-started .*package=$P version=2" "$T/w1.log" &&
  fail "the site started a version 2 that was never committed"

publish "$P" 2 "$T/v2" >"$T/pub2.json"
"$KTOOL" dump -b "$B" -t pkg.updates -m >"$T/updates.dump" || fail "ktool dump"
# Every ref of the newest manifest of P is a committed record at its place.
python3 - "$T/updates.dump" "$P" >"$T/refs" <<'PY' || fail "no manifest of version 2 in pkg.updates"
import sys
lines, p = open(sys.argv[1]).read().splitlines(), sys.argv[2]
cur, refs = None, {}
for l in lines:
    if l.startswith("partition="):
        cur = l if (" key=%s " % p) in l else None
    elif l.startswith("manifest version=") and cur is not None:
        v = int(l.split()[1].split("=")[1]); refs[v] = []; cur = v
    elif l.startswith("ref ") and isinstance(cur, int):
        kv = dict(x.split("=", 1) for x in l.split()[2:])
        refs[cur].append((kv["partition"], kv["offset"]))
if 2 not in refs:
    sys.exit(1)
for pp, o in refs[2]:
    print(pp, o)
PY
n=0
while read -r pp o; do
  "$KTOOL" get -b "$B" -t pkg.content -p "$pp" -o "$o" >/dev/null ||
    fail "version 2 refers to partition $pp offset $o, which holds no committed part"
  n=$((n + 1))
done <"$T/refs"
[ "$n" -ge 2 ] || fail "version 2 has $n refs"
wait_current "$L" "$P" 2 120
assert_same_tree "$T/v2" "$L/$P/current/"
stop_worker w1
log "PASS: killed pkgpub left no manifest; the next publish's $n refs are all committed; installed intact"
