#!/usr/bin/env bash
# Regression (issue 11, defect 3): an archive whose content the library's
# filesystem cannot hold wedged its partition for good. A ~290-byte event
# (an old-GNU sparse file claiming 2^45 bytes: ext4 answers EFBIG) and a
# 65,001-hardlink archive (ext4 holds 65,000 names per file: EMLINK) were
# local errors ("io-error"): never dead-lettered, the partition rewound
# and retried for ever (backoff up to 60 s), and every package behind
# them on that partition waited. Now both are the archive's fault: the
# sparse one is refused at its header (corrupt-tar), the hardlinks at the
# 65,001st name (too-large), both dead-lettered naming the entry, and the
# good package behind them on the same partition (partition 0) installs.
# The library is on the test's scratch directory (ext4 here; on tmpfs or
# xfs the same events would write a 32 TiB file instead: t23).
PARTITIONS=1
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib; SP=$(pkg sparse); HL=$(pkg links); GOOD=$(pkg good)
python3 - "$SRC" "$T" <<'PY' || fail "building the archives failed"
import sys
sys.path.insert(0, sys.argv[1] + "/tests/hostile")
import make_corpus as mc
t = sys.argv[2]
open(t + "/sparse.tar", "wb").write(
    mc.old_gnu_sparse("big.img", 1 << 45, [(0, 1)], b"x") + mc.EOA)
open(t + "/links.tar", "wb").write(mc.hardlinks(65001, "linked"))
PY
make_tree "$T/src" 3 4 8
tar -C "$T/src" -cf "$T/good.tar" .
for p in "sparse:$SP" "links:$HL" "good:$GOOD"; do
  python3 "$SRC/tests/integration/mkevent.py" --package "${p#*:}" --version 1 \
    --tar "$T/${p%%:*}.tar" --out "$T/ev-${p%%:*}" >/dev/null || fail "mkevent ${p%%:*}"
done
log "events: sparse $(stat -c %s "$T/ev-sparse.0") bytes, hardlinks $(stat -c %s "$T/ev-links.0") bytes"
# In this order, all on partition 0: the good update comes last.
"$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$SP" "$T/ev-sparse.0" >/dev/null || fail "put sparse"
"$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$HL" "$T/ev-links.0" >/dev/null || fail "put links"
"$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$GOOD" "$T/ev-good.0" >/dev/null || fail "put good"

start_worker w1 "$S" "$L" --max-update-size 64M
W=$(wpid w1)
# Done when both are dead-lettered, the good package is installed and
# the site's lag is 0: the partition's commits moved past both (a wedged
# partition never commits offset 0, whatever it installs meanwhile).
# 45 s is ample (it takes ~3 s) and covers a wedged partition's first
# retries (1 s, 2 s, 4 s, ...).
end=$((SECONDS + 45))
while :; do
  kill -0 "$W" 2>/dev/null || fail "worker exited"
  "$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq" 2>/dev/null || true
  dsp=$(grep -c "key=$SP .*h\.despool\.reason=\"corrupt-tar\"" "$T/dlq" || true)
  dhl=$(grep -c "key=$HL .*h\.despool\.reason=\"too-large\"" "$T/dlq" || true)
  good=$(current_version "$L" "$GOOD")
  lag=$(lag_total_bounded "$S") || fail "despooler lag failed"
  [ "$dsp" = 1 ] && [ "$dhl" = 1 ] && [ "$good" = 1 ] && [ "$lag" = 0 ] && break
  if [ $SECONDS -ge $end ]; then
    n=$(grep -c "msg=local-error .*package=\($SP\|$HL\) " "$T/w1.log" || true)
    fail "after 45 s: sparse dead-lettered as corrupt-tar: $dsp, hardlinks as too-large: $dhl, good package at v$good, site lag $lag, $n local errors for the sparse/hardlink updates (a wedged partition)"
  fi
  sleep 0.5
done
assert_same_tree "$T/src" "$L/$GOOD/current/"
log "both dead-lettered, the good package behind them on partition 0 installed, lag 0"

# Named in the log as the archive's fault, with the entry.
l1=$(grep -m1 "msg=dead-lettered .*reason=corrupt-tar" "$T/w1.log") || fail "no corrupt-tar dead letter in the log"
echo "$l1" | grep -q 'entry big.img: sparse file' || fail "sparse dead letter does not name the entry: $l1"
l2=$(grep -m1 "msg=dead-lettered .*reason=too-large" "$T/w1.log") || fail "no too-large dead letter in the log"
echo "$l2" | grep -q 'entry l064999: hardlink target linked has 65000 names' ||
  fail "hardlink dead letter does not name the entry and count: $l2"
log "dead letters: $(echo "$l1" | grep -o 'detail="[^"]*"' | cut -c1-160)"
log "              $(echo "$l2" | grep -o 'detail="[^"]*"' | cut -c1-160)"
grep -q "msg=local-error .*package=\($SP\|$HL\) " "$T/w1.log" &&
  fail "an archive's fault was treated as a local error"
[ "$(current_version "$L" "$SP")" = 0 ] && [ "$(current_version "$L" "$HL")" = 0 ] ||
  fail "a refused update was installed"
no_staging_left "$L"
big=$(find "$L" -type f -size +1M | head -3)
[ -z "$big" ] || fail "files over 1 MiB in the library: $big"
kill -0 "$W" 2>/dev/null || fail "worker died"
stop_worker w1
log "PASS"
