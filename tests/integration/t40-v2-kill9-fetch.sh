#!/usr/bin/env bash
# Schema v2: a worker killed (-9) while it fetches a version's parts
# leaves nothing committed for it; the restarted worker removes the dead
# staging tree, fetches the parts again and installs the version intact.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib; P=$(pkg big)
MB=40; [ "$BROKER_KIND" = kafka ] || MB=20 # the embedded broker takes 24 MiB of parts
make_random_tree "$T/src" 1 "$MB"
publish "$P" 1 "$T/src" >"$T/pub.json"
grep -q '"form":"parts"' "$T/pub.json" || fail "not a parts-form version: $(cat "$T/pub.json")"
# Slow enough to be caught mid-fetch: one part at a time per fetch.
start_worker w1 "$S" "$L" -X fetch.max.bytes=1048576 -X fetch.wait.max.ms=500
wait_log w1 "msg=update-started .*package=$P .*form=parts" 60
end=$((SECONDS + 30))
until [ -n "$(find "$L/$P/.staging" -mindepth 2 -type f 2>/dev/null | head -1)" ]; do
  [ $SECONDS -lt $end ] || fail "nothing staged within 30 s"
  sleep 0.05
done
kill9_worker w1
[ "$(current_version "$L" "$P")" = 0 ] || fail "finalized before the kill: make the test's version bigger"
start_worker w2 "$S" "$L"
wait_current "$L" "$P" 1 120
assert_same_tree "$T/src" "$L/$P/current/"
wait_log w2 "msg=started .*staging_removed=1" 1
end=$((SECONDS + 30))
until [ "$(lag_total_bounded "$S")" = 0 ]; do
  [ $SECONDS -lt $end ] || fail "site lag stays $(lag_total_bounded "$S")"
  sleep 0.5
done
no_staging_left "$L"
stop_worker w2
log "PASS: killed mid-fetch, restarted, installed intact"
