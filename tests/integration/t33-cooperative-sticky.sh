#!/usr/bin/env bash
# Regression (issue 11, defect 8c): -X partition.assignment.strategy=
# cooperative-sticky is either supported (incremental assign/unassign in
# the rebalance callback) or refused at start with a clear error. The old
# worker called the eager rd_kafka_assign() from its rebalance callback:
# librdkafka refused it ("Changes to the current assignment must be made
# using incremental_assign() when rebalance protocol type is
# COOPERATIVE"), so the worker ran with nothing assigned: no update ever
# installed, no error on its side.
# Either outcome passes:
#  - refused: the worker exits non-zero within 15 s of its start, its log
#    naming partition.assignment.strategy or cooperative;
#  - supported: two workers of one site (one library) with that setting,
#    packages on every partition published while one worker runs, while
#    both run, and after the second left; every package installs once,
#    the site ends at lag 0, both workers stop cleanly, and no error
#    lines (level=error, a failed assign) appear in their logs.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
COOP=(-X partition.assignment.strategy=cooperative-sticky)
start_worker w1 "$S" "$L" "${COOP[@]}"
end=$((SECONDS + 15))
while [ $SECONDS -lt $end ]; do
  kill -0 "$(wpid w1)" 2>/dev/null || break
  grep -q 'msg=assigned ' "$T/w1.log" && break
  sleep 0.1
done
if ! kill -0 "$(wpid w1)" 2>/dev/null; then
  rc=0; wait "$(wpid w1)" || rc=$?
  [ $rc != 0 ] || fail "the worker exited 0 at start with cooperative-sticky"
  grep -qiE 'partition\.assignment\.strategy|cooperative' "$T/w1.log" ||
    fail "the worker exited $rc without naming the setting: $(tail -3 "$T/w1.log")"
  log "refused: exit $rc: $(grep -iE 'partition\.assignment\.strategy|cooperative' "$T/w1.log" | tail -1 | cut -c1-240)"
  log "PASS"
  exit 0
fi
wait_log w1 'msg=assigned ' 60
log "w1 runs with cooperative-sticky: $(grep 'msg=assigned ' "$T/w1.log" | tail -1 | grep -o 'partitions=.*')"

make_tree "$T/src" 1 3 4
N=0; specs=()
publish_batch() { # COUNT
  local i p
  for i in $(seq "$1"); do
    N=$((N + 1)); p=$(pkg p$N)
    publish "$p" 1 "$T/src" >/dev/null
    specs+=("$p=1")
  done
}
publish_batch 8
wait_versions "$L" 30 "${specs[@]}"
log "8 packages installed by w1 alone"

start_worker w2 "$S" "$L" "${COOP[@]}"
wait_log w2 'msg=assigned .*partitions=[0-9]' 60
sleep 1
publish_batch 8
wait_versions "$L" 30 "${specs[@]}"
log "8 more installed by w1 and w2 (w2 $(grep 'msg=assigned ' "$T/w2.log" | tail -1 | grep -o 'partitions=.*'))"
stop_worker w2
sleep 1
publish_batch 8
wait_versions "$L" 30 "${specs[@]}"
log "8 more installed after w2 left"
wait_lag0_bounded "$S" 30
assert_finalized_at_most_once "$T/w1.log" "$T/w2.log"
stop_worker w1
errs=$(grep -hE 'level=error|assign\(\) call failed|incremental_assign' "$T/w1.log" "$T/w2.log" | head -3 || true)
[ -z "$errs" ] || fail "errors in the workers' logs: $errs"
log "PASS"
