#!/usr/bin/env bash
# kill -9 of a worker in the middle of an extraction, then a restart:
# nothing was committed for the unfinished update, the restarted worker
# removes the dead one's staging and converges to the published version.
. "$(dirname "$0")/lib.sh"

P=$(pkg big); S=$(site dp); L=$T/lib
make_tree "$T/src" 7 600 128
start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned'
publish "$P" 1 "$T/src" >/dev/null
wait_log w1 "msg=update-started .*package=$P"
# Wait until extraction has written something into staging, then kill.
for _ in $(seq 200); do
  n=$(find "$L/$P/.staging" -type f 2>/dev/null | wc -l)
  [ "$n" -gt 5 ] && break; sleep 0.02
done
[ "$(current_version "$L" "$P")" = 0 ] || fail "finalized before the kill; make the tree bigger"
kill9_worker w1
[ -n "$(ls -A "$L/$P/.staging" 2>/dev/null)" ] || fail "no staging to clean up: kill came too late"
lag=$(lag_total "$S")
[ "$lag" -gt 0 ] || fail "lag is $lag after kill -9 mid-update: something was committed"
log "killed mid-extraction; lag $lag, staging present"

start_worker w2 "$S" "$L"
wait_log w2 'msg=started .*staging_removed=[1-9]'
wait_current "$L" "$P" 1 120
assert_same_tree "$T/src" "$L/$P/current/"
wait_lag0 "$S"
stop_worker w2
no_staging_left "$L"
log "PASS"
