#!/usr/bin/env bash
# Regression (issue 11, defect 1): a partition paused after a local error
# resumes after a rebalance hands it back to the same worker.
# A local error (the package's `versions` is a plain file, so nothing can
# be installed) pauses the partition (rewind_partition). A second worker
# of the same site (same library) joins and leaves: every partition is
# revoked from the first worker and assigned to it again. librdkafka
# keeps the application's pause across unassign/assign, while the worker
# forgot it had paused it (resume_at_ms = 0), so nothing ever resumed it:
# the update never installed once the cause was gone, and the lag grew.
# Checks: after the second worker left and the plain files are removed,
# every update installs (within 45 s: the backoff restarts after a
# reassignment, a few short retries) and the site ends at lag 0.
# One package per partition: the embedded broker has one partition; real
# Kafka has 6, the packages cover all of them, so whichever partitions the
# first worker keeps while the second is in the group, they are revoked
# and assigned to it again (and all of them are its own at the end).
PARTITIONS=${PARTITIONS:-1}
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
NP=$("$DESPOOLER" lag -b "$B" --site "$S" --json |
     python3 -c 'import json,sys; print(len(json.load(sys.stdin)["partitions"]))') ||
  fail "despooler lag failed"
[ "$NP" -ge 1 ] || fail "pkg.updates has no partitions?"
log "pkg.updates has $NP partition(s)"

start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned .*partitions=[0-9]' 60
make_tree "$T/src" 1 5 8

# Packages whose `versions` is a plain file, until every partition has one.
PKGS=(); declare -A COVER=()
for i in $(seq 1 40); do
  P=$(pkg app$i)
  mkdir -p "$L/$P"; : >"$L/$P/versions"
  part=$(publish "$P" 1 "$T/src" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partition"])')
  PKGS+=("$P"); COVER[$part]=$P
  [ "${#COVER[@]}" -ge "$NP" ] && break
done
[ "${#COVER[@]}" -ge "$NP" ] || fail "40 package names covered only partitions ${!COVER[*]} of $NP"
log "${#PKGS[@]} package(s) published, partitions ${!COVER[*]} covered"
for part in "${!COVER[@]}"; do
  wait_log w1 "msg=partition-paused partition=$part " 60
done
grep -m1 'msg=local-error ' "$T/w1.log" | cut -c1-240 || true
log "every partition paused after a local error"

# A second worker of the site joins, then leaves.
na=$(grep -c 'msg=assigned ' "$T/w1.log")
start_worker w2 "$S" "$L"
wait_log w2 'msg=assigned ' 60
for _ in $(seq 600); do
  [ "$(grep -c 'msg=assigned ' "$T/w1.log")" -gt "$na" ] && break; sleep 0.1
done
[ "$(grep -c 'msg=assigned ' "$T/w1.log")" -gt "$na" ] || fail "w1 was not reassigned when w2 joined"
log "while w2 is in the group: w1 $(grep 'msg=assigned ' "$T/w1.log" | tail -1 | grep -o 'partitions=.*'), w2 $(grep 'msg=assigned ' "$T/w2.log" | tail -1 | grep -o 'partitions=.*')"
na=$(grep -c 'msg=assigned ' "$T/w1.log")
stop_worker w2
for _ in $(seq 600); do
  [ "$(grep -c 'msg=assigned ' "$T/w1.log")" -gt "$na" ] && break; sleep 0.1
done
[ "$(grep -c 'msg=assigned ' "$T/w1.log")" -gt "$na" ] || fail "w1 was not reassigned when w2 left"
last=$(grep 'msg=assigned ' "$T/w1.log" | tail -1 | grep -o 'partitions=[0-9,]*' | cut -d= -f2 || true)
for part in "${!COVER[@]}"; do
  echo ",$last," | grep -q ",$part," || fail "w1 does not own partition $part after w2 left: $last"
done
log "w2 left: w1 owns partitions $last again"

# The cause goes away: every update must install without a restart.
for P in "${PKGS[@]}"; do rm -f "$L/$P/versions"; done
t0=$SECONDS
specs=(); for P in "${PKGS[@]}"; do specs+=("$P=1"); done
wait_versions "$L" 45 "${specs[@]}"
log "all ${#PKGS[@]} update(s) installed $((SECONDS - t0)) s after the cause was removed"
for P in "${PKGS[@]}"; do assert_same_tree "$T/src" "$L/$P/current/"; done
wait_lag0_bounded "$S" 30
kill -0 "$(wpid w1)" || fail "w1 died"
no_staging_left "$L"
stop_worker w1
log "PASS"
