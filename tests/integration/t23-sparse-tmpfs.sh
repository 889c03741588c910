#!/usr/bin/env bash
# Regression (issue 11, defect 3), the other face of t22: on a filesystem
# that holds 32 TiB sparse files (tmpfs here, xfs alike) a ~290-byte
# event installed one. --max-update-size and the declared size bounded
# the tar stream, not the tree written from it. Now the files extracted
# add up to at most the declared size and sparse files are refused at
# their header: an old-GNU and a pax 1.0 sparse file claiming 2^45 bytes
# are dead-lettered (corrupt-tar), nothing of them is written, and the
# good package behind them on the same partition (0) installs. The
# library is a 64 MiB tmpfs (needs root, else skipped).
PARTITIONS=1
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib; G1=$(pkg gnu); P1=$(pkg pax); GOOD=$(pkg good)
mkdir -p "$L"
if ! mount -t tmpfs -o size=64m tmpfs "$L" 2>"$T/mount.err"; then
  echo "[t23-sparse-tmpfs] SKIP: cannot mount a tmpfs here ($(cat "$T/mount.err")); needs root"
  exit 77
fi
AT_EXIT+=("umount -l '$L'")

python3 - "$SRC" "$T" <<'PY' || fail "building the archives failed"
import sys
sys.path.insert(0, sys.argv[1] + "/tests/hostile")
import make_corpus as mc
t, big = sys.argv[2], 1 << 45
open(t + "/gnu.tar", "wb").write(
    mc.old_gnu_sparse("big.img", big, [(0, 1)], b"x") + mc.EOA)
m = b"1\n0\n1\n"
open(t + "/pax.tar", "wb").write(mc.pax_sparse(
    "GNUSparseFile.0/big.img",
    {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
     "GNU.sparse.name": "big.img", "GNU.sparse.realsize": str(big)},
    m + bytes(512 - len(m)) + b"x"))
PY
make_tree "$T/src" 4 4 8
tar -C "$T/src" -cf "$T/good.tar" .
for p in "gnu:$G1" "pax:$P1" "good:$GOOD"; do
  python3 "$SRC/tests/integration/mkevent.py" --package "${p#*:}" --version 1 \
    --tar "$T/${p%%:*}.tar" --out "$T/ev-${p%%:*}" >/dev/null || fail "mkevent ${p%%:*}"
  "$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "${p#*:}" "$T/ev-${p%%:*}.0" >/dev/null ||
    fail "put ${p%%:*}"
done
log "events on partition 0: old-GNU sparse $(stat -c %s "$T/ev-gnu.0") bytes, pax sparse $(stat -c %s "$T/ev-pax.0") bytes, then a good package"

start_worker w1 "$S" "$L" --max-update-size 1M
W=$(wpid w1)
end=$((SECONDS + 45))
while :; do
  kill -0 "$W" 2>/dev/null || fail "worker exited"
  "$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq" 2>/dev/null || true
  dg=$(grep -c "key=$G1 .*h\.despool\.reason=\"corrupt-tar\"" "$T/dlq" || true)
  dp=$(grep -c "key=$P1 .*h\.despool\.reason=\"corrupt-tar\"" "$T/dlq" || true)
  good=$(current_version "$L" "$GOOD")
  lag=$(lag_total_bounded "$S") || fail "despooler lag failed"
  [ "$dg" = 1 ] && [ "$dp" = 1 ] && [ "$good" = 1 ] && [ "$lag" = 0 ] && break
  largest=$(find "$L" -type f -printf '%s %P\n' 2>/dev/null | sort -n | tail -1)
  [ "$(current_version "$L" "$G1")$(current_version "$L" "$P1")" = 00 ] ||
    fail "a sparse update was installed (gnu v$(current_version "$L" "$G1"), pax v$(current_version "$L" "$P1")); largest file in the library: $largest"
  if [ $SECONDS -ge $end ]; then
    fail "after 45 s: old-GNU sparse dead-lettered as corrupt-tar: $dg, pax sparse: $dp, good package at v$good, site lag $lag; versions installed: gnu v$(current_version "$L" "$G1") pax v$(current_version "$L" "$P1"); largest file in the library: $largest"
  fi
  sleep 0.5
done
assert_same_tree "$T/src" "$L/$GOOD/current/"
log "both sparse updates dead-lettered, the good package behind them installed, lag 0"

n=$(grep -c 'msg=dead-lettered .*reason=corrupt-tar .*entry big.img: sparse file' "$T/w1.log" || true)
[ "$n" = 2 ] || fail "expected 2 dead letters naming the sparse entry in the log, saw $n"
[ "$(current_version "$L" "$G1")" = 0 ] && [ "$(current_version "$L" "$P1")" = 0 ] ||
  fail "a sparse update was installed"
# Nothing in the library larger than the cap, by apparent size.
largest=$(find "$L" -type f -printf '%s\n' | sort -n | tail -1)
[ "${largest:-0}" -le 1048576 ] || fail "the library holds a file of $largest bytes (cap 1 MiB)"
apparent=$(du -s --apparent-size -B1 "$L" | cut -f1)
log "largest file ${largest:-0} bytes, library apparent size $apparent bytes"
[ "$apparent" -le 4194304 ] || fail "library apparent size $apparent bytes"
no_staging_left "$L"
stop_worker w1
log "PASS"
