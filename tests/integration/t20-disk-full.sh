#!/usr/bin/env bash
# The library's filesystem fills up (a 6 MiB tmpfs mounted as the
# library; needs root, else skipped). An update that does not fit fails
# with a local error naming the path and "No space left on device"; it is
# not dead-lettered and not committed (its partition shows lag), the
# partition is paused and retried with backoff, the worker keeps running,
# and a package on another partition installs meanwhile. When space comes
# back (the tmpfs is grown) the update installs by itself, byte-identical,
# and the site ends at lag 0: nothing lost.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
mkdir -p "$L"
if ! mount -t tmpfs -o size=6m tmpfs "$L" 2>"$T/mount.err"; then
  echo "[t20-disk-full] SKIP: cannot mount a tmpfs here ($(cat "$T/mount.err")); needs root"
  exit 77
fi
AT_EXIT+=("umount -l '$L'")

A=$(pkg small); make_tree "$T/src-a" 1 10 32    # ~330 KiB
make_tree "$T/src-big" 2 120 96                  # ~11 MiB: does not fit
start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned ' 60
publish "$A" 1 "$T/src-a" >/dev/null
wait_current "$L" "$A" 1 60

# The big package, and a small one on another partition.
BIG=$(pkg big)
PB=$(publish "$BIG" 1 "$T/src-big" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partition"])')
wait_log w1 "msg=local-error .*package=$BIG .*No space left on device" 60
line=$(grep -m1 "msg=local-error .*package=$BIG " "$T/w1.log")
echo "$line" | grep -q "$L/$BIG" || fail "local error does not name the path: $line"
wait_log w1 "msg=partition-paused partition=$PB " 30
log "disk full: $(echo "$line" | cut -c1-240)"
for i in $(seq 1 40); do
  C=$(pkg other$i)
  make_tree "$T/src-c$i" "$((10 + i))" 2 8
  PC=$(publish "$C" 1 "$T/src-c$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partition"])')
  [ "$PC" != "$PB" ] && break
done
[ "$PC" != "$PB" ] || fail "no package name landed on a partition other than $PB"
wait_current "$L" "$C" 1 60
log "partition $PC kept going while partition $PB is paused"

sleep 3
kill -0 "$(wpid w1)" || fail "worker died on a full disk"
[ "$(current_version "$L" "$BIG")" = 0 ] || fail "big package installed on a full disk?"
grep -q "msg=dead-lettered .*package=$BIG\|msg=dead-lettered .*key=$BIG" "$T/w1.log" &&
  fail "a local error was dead-lettered"
"$DESPOOLER" lag -b "$B" --site "$S" --json >"$T/lag.json"
# Not committed: the partition's lag covers the update, or the group has
# no offset there at all (the update was its first event: Kafka shows -).
lagb=$(python3 -c '
import json, sys
p = [p for p in json.load(open(sys.argv[1]))["partitions"] if p["partition"] == int(sys.argv[2])][0]
print("none-committed" if p["current_offset"] is None else p["lag"])' "$T/lag.json" "$PB")
[ "$lagb" = none-committed ] || [ "$lagb" -ge 1 ] || fail "partition $PB shows lag $lagb: the failed update was committed"
no_staging_left "$L"
log "not committed: partition $PB lag $lagb; no staging left"

# Space comes back.
mount -o remount,size=64m "$L" || fail "remount failed"
wait_current "$L" "$BIG" 1 120
assert_same_tree "$T/src-big" "$L/$BIG/current/"
wait_lag0_bounded "$S" 60
n=$(grep -c "msg=local-error .*package=$BIG " "$T/w1.log" || true)
log "installed after space returned ($n failed attempt(s) before); lag 0"
stop_worker w1
log "PASS"
