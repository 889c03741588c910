#!/usr/bin/env bash
# Two workers of one site share the partitions; every package lands once.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
start_worker w1 "$S" "$L"
start_worker w2 "$S" "$L"
wait_log w1 'msg=assigned .*partitions=[0-9]'
wait_log w2 'msg=assigned .*partitions=[0-9]'
N=12
for i in $(seq $N); do
  make_tree "$T/src$i" "$i" 5 8
  publish "$(pkg p$i)" 1 "$T/src$i" >/dev/null
done
for i in $(seq $N); do
  wait_current "$L" "$(pkg p$i)" 1
  assert_same_tree "$T/src$i" "$L/$(pkg p$i)/current/"
done
for i in $(seq $N); do
  c=$(cat "$T/w1.log" "$T/w2.log" | grep -c "msg=finalized .*package=$(pkg p$i) ")
  [ "$c" = 1 ] || fail "package $(pkg p$i) finalized $c times"
done
c1=$(grep -c 'msg=finalized' "$T/w1.log" || true)
c2=$(grep -c 'msg=finalized' "$T/w2.log" || true)
log "finalized by w1: $c1, by w2: $c2"
[ "$c1" -gt 0 ] && [ "$c2" -gt 0 ] || fail "one worker did all the work"
wait_lag0 "$S"
stop_worker w1; stop_worker w2
log "PASS"
