#!/usr/bin/env bash
# Chunks of two packages interleaved in ONE partition (partition 0) (A0 B0 A1 B1 ...,
# as two publishers writing at once produce them): the worker reassembles
# both by update id and installs both, byte-identical.
PARTITIONS=1
. "$(dirname "$0")/lib.sh"

A=$(pkg alpha); Bp=$(pkg beta); S=$(site dp); L=$T/lib
make_tree "$T/a" 11 60 64 & g1=$!; make_tree "$T/b" 12 60 64 & g2=$!; wait $g1 $g2
tar -C "$T/a" -cf "$T/a.tar" .; tar -C "$T/b" -cf "$T/b.tar" .
N=6
python3 "$SRC/tests/integration/mkevent.py" --package "$A" --version 1 \
  --tar "$T/a.tar" --out "$T/ea" --chunks $N >/dev/null
python3 "$SRC/tests/integration/mkevent.py" --package "$Bp" --version 1 \
  --tar "$T/b.tar" --out "$T/eb" --chunks $N >/dev/null
for i in $(seq 0 $((N - 1))); do
  "$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$A" "$T/ea.$i" || fail "put"
  "$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$Bp" "$T/eb.$i" || fail "put"
done
"$KTOOL" dump -b "$B" -t pkg.updates >"$T/dump"
runs=$(grep '^partition=0 ' "$T/dump" | awk '{print $3}' | uniq | wc -l)
[ "$runs" = $((2 * N)) ] || fail "expected $((2 * N)) alternating runs, got $runs"

start_worker w1 "$S" "$L"
wait_current "$L" "$A" 1; wait_current "$L" "$Bp" 1
# mkevent packs with plain tar (owner, ./ prefix): compare the content.
assert_same_tree "$T/a" "$L/$A/current/"
assert_same_tree "$T/b" "$L/$Bp/current/"
wait_lag0 "$S"
stop_worker w1
log "PASS"
