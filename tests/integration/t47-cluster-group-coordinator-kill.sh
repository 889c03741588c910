#!/usr/bin/env bash
# Cluster (issue 16): kill -9 the group coordinator of a site during a
# rebalance storm. On a three-node cluster, three workers of one site
# (one library) keep joining and leaving (kill -9, SIGTERM, restarts)
# while 40 updates (8 packages, versions 1..5, 4 pkgpub loops) go
# through. A few actions into the storm, the broker coordinating the
# site's consumer group (despool.<site>: the leader of its
# __consumer_offsets partition) is killed -9; the group moves to a new
# coordinator, where the workers' joins, syncs, heartbeats and commits
# must follow it; the broker is started again 15 s later, mid-storm.
# Checks: every package at version 5, byte-identical; a sampler saw no
# downgrade and no mixed tree; no (package, version) finalized twice;
# nothing rejected or dead-lettered; every offset committed (lag 0); a
# worker never exited unless told to.
BROKERS=3
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
NP=8; NV=5; NPUB=4
SEED=${DESPOOL_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$SEED
log "storm seed $SEED"
PKGS=(); specs=()
for i in $(seq $NP); do
  P=$(pkg p$i); PKGS+=("$P")
  for v in $(seq $NV); do specs+=("$T/src/$P/$v:$((100 * i + v))"); done
done
make_trees 40 16 "${specs[@]}"
start_sampler smp "$L" "$T/src" "${PKGS[@]}"

slot_start 1; slot_start 2; slot_start 3
wait_log w1 'msg=assigned ' 90
coord=
for _ in $(seq 20); do
  coord=$(group_coordinator "despool.$S") && [[ $coord =~ ^[123]$ ]] && break; sleep 1
done
[[ $coord =~ ^[123]$ ]] || fail "no coordinator for despool.$S: $(cat "$T/kafka-cli.out")"
log "group coordinator of despool.$S: broker $coord"

start_publishers $NPUB $NV $SEED
progress() { cat "$T"/w[123].log 2>/dev/null | grep -cE 'msg=(finalized|discarded) ' || true; }

# The storm: an action every 0.5-2.5 s; the coordinator dies at action 3
# and comes back 15 s later; at least 16 actions, and until the
# publishers are done.
actions=0; end=$((SECONDS + 300)); killed_at=; back_at=
while publishing || [ $actions -lt 16 ] || [ -z "$back_at" ]; do
  [ $SECONDS -lt $end ] || fail "storm still going after 300 s ($actions actions)"
  rand_sleep 500 2000
  reap_stopping
  if [ $actions = 3 ]; then
    kill_broker "$coord"; killed_at=$SECONDS
    log "killed broker $coord (the group coordinator) at storm action $actions"
  fi
  if [ -n "$killed_at" ] && [ -z "$back_at" ] && [ $((SECONDS - killed_at)) -ge 15 ]; then
    start_broker "$coord"; back_at=$SECONDS
    log "broker $coord back $((back_at - killed_at)) s after the kill (storm action $actions)"
  fi
  storm_action
  actions=$((actions + 1))
done
reap_stopping all
wait_publishers $((NP * NV))
log "published $((NP * NV)) updates; storm: $actions actions, $STARTS starts, $KILLS kill -9, $TERMS SIGTERM"
[ $KILLS -gt 0 ] && [ $TERMS -gt 0 ] || fail "storm lacked kill -9 or SIGTERM ($actions actions)"

t0=$SECONDS
for i in 1 2 3; do [ "${RUNNING[$i]}" = 1 ] || slot_start $i; done
want=(); for P in "${PKGS[@]}"; do want+=("$P=$NV"); done
wait_versions "$L" 180 "${want[@]}"
log "converged $((SECONDS - t0)) s after the storm ended ($((SECONDS - killed_at)) s after the kill)"
for P in "${PKGS[@]}"; do assert_same_tree "$T/src/$P/$NV" "$L/$P/current/"; done
wait_lag0_bounded "$S" 90
sleep 0.3
assert_sampler_clean smp
assert_finalized_at_most_once "$T"/w[123].log
bad=$(cat "$T"/w[123].log | grep -E 'msg=(rejected|dead-lettered|local-error) ' | head -3 || true)
[ -z "$bad" ] || fail "unexpected: $bad"
log "new coordinator: broker $(group_coordinator "despool.$S"); finalized lines: $(cat "$T"/w[123].log | grep -c 'msg=finalized ' || true), discarded: $(cat "$T"/w[123].log | grep -c 'msg=discarded ' || true)"
for i in 1 2 3; do slot_term $i; done
reap_stopping all
no_staging_left "$L"
log "PASS"
