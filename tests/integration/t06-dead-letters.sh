#!/usr/bin/env bash
# A corrupt event and an update with a wrong sha256 land in the DLQ with
# the right reason and the source position; the worker goes on and
# installs a good update afterwards; the bad events are committed.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/lib
start_worker w1 "$S" "$L"
head -c 300 /dev/urandom >"$T/garbage"
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/garbage" || fail "put garbage"

make_tree "$T/src" 3 10 16
tar -C "$T/src" -cf "$T/src.tar" .
python3 "$SRC/tests/integration/mkevent.py" --package "$P" --version 5 \
  --tar "$T/src.tar" --out "$T/badsha" --chunks 3 \
  --sha256 "$(printf '0%.0s' $(seq 64))" >/dev/null
for i in 0 1 2; do "$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/badsha.$i"; done

wait_log w1 'msg=dead-lettered .*reason=bad-schema'
wait_log w1 'msg=dead-lettered .*reason=sha256-mismatch'
publish "$P" 6 "$T/src" >/dev/null
wait_current "$L" "$P" 6
assert_same_tree "$T/src" "$L/$P/current/"
[ -d "$L/$P/versions/5" ] && fail "the wrong-sha256 version was installed"
wait_lag0 "$S"

"$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq"
grep -q "key=$P .*h.despool.reason=\"bad-schema\".*h.despool.site=\"$S\".*h.despool.topic=\"pkg.updates\"" "$T/dlq" ||
  fail "no bad-schema dead letter: $(cat "$T/dlq")"
n=$(grep -c "key=$P .*h.despool.reason=\"sha256-mismatch\"" "$T/dlq" || true)
[ "$n" = 3 ] || fail "expected all 3 chunks of the bad update dead-lettered, got $n"
grep -q 'len=300 ' "$T/dlq" || fail "garbage event not dead-lettered unchanged"
no_staging_left "$L"
stop_worker w1
log "PASS"
