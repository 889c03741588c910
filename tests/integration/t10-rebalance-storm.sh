#!/usr/bin/env bash
# Rebalance storm: three workers of one site keep joining and leaving
# (SIGTERM, kill -9, restarts, at random) while 200 updates (20 packages,
# versions 1..10, published by 10 pkgpub loops in parallel) go through.
# At the end every package is at version 10, byte-identical to its source;
# a sampler reading every `current` every few ms saw no downgrade and no
# partial tree; no (package, version) was finalized twice; nothing was
# rejected; lag is 0; after a clean stop no staging is left.
# DESPOOL_SEED=N replays a storm (the seed is logged).
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
NP=20; NV=10; NPUB=10
# Fewer actions on the embedded broker: its rebalances take 10-20 s.
if [ "$BROKER_KIND" = kafka ]; then MIN_ACTIONS=24; else MIN_ACTIONS=8; fi
MIN_ACTIONS=${DESPOOL_STORM_ACTIONS:-$MIN_ACTIONS}
SEED=${DESPOOL_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$SEED
log "storm seed $SEED"

# Sources: $T/src/<package>/<version>, VERSION "seed 100*i+v". Two
# packages are bigger (extraction takes a moment, so kills land inside
# it); all stay far below the embedded broker's 5 MiB per partition.
PKGS=(); big=(); small=()
for i in $(seq $NP); do
  P=$(pkg p$i); PKGS+=("$P")
  for v in $(seq $NV); do
    if [ "$i" -le 2 ]; then big+=("$T/src/$P/$v:$((100 * i + v))")
    else small+=("$T/src/$P/$v:$((100 * i + v))"); fi
  done
done
make_trees 150 32 "${big[@]}" & g1=$!
make_trees 12 8 "${small[@]}" & g2=$!
wait $g1 $g2

start_sampler smp "$L" "$T/src" "${PKGS[@]}"

progress() { cat "$T"/w[123].log 2>/dev/null | grep -cE 'msg=(finalized|discarded) ' || true; }
slot_start 1; slot_start 2

# Publishers: loop k owns packages k and k+NPUB (start_publishers).
start_publishers $NPUB $NV $SEED

# The storm: each action waits until some work was done since the last
# one (or 45 s; the embedded broker's rebalances take 10-20 s), then a
# random 0.1-1.6 s, so that kills land in the middle of extractions,
# finalizes and commits, not only on idle workers.
actions=0; end=$((SECONDS + 240)); last=$(progress)
while publishing || [ $actions -lt "$MIN_ACTIONS" ]; do
  [ $SECONDS -lt $end ] || fail "storm still going after 240 s ($actions actions)"
  gate=$((SECONDS + 45))
  while [ "$(progress)" = "$last" ] && [ $SECONDS -lt $gate ]; do
    [ "${RUNNING[1]}${RUNNING[2]}${RUNNING[3]}" = 000 ] && break
    ! publishing && converged $NV && break
    reap_stopping; sleep 0.1
  done
  rand_sleep 100 1500
  reap_stopping
  storm_action
  actions=$((actions + 1)); last=$(progress)
done
reap_stopping all
wait_publishers $((NP * NV))
n=$((NP * NV))
log "published $n updates; storm: $actions actions, $STARTS starts, $KILLS kill -9, $TERMS SIGTERM"
[ $KILLS -gt 0 ] && [ $TERMS -gt 0 ] || fail "storm lacked kill -9 or SIGTERM ($actions actions)"

# Calm: at least one worker (here: all three) runs; everything converges.
for i in 1 2 3; do [ "${RUNNING[$i]}" = 1 ] || slot_start $i; done
want=(); for P in "${PKGS[@]}"; do want+=("$P=$NV"); done
wait_versions "$L" 120 "${want[@]}"
for P in "${PKGS[@]}"; do assert_same_tree "$T/src/$P/$NV" "$L/$P/current/"; done
wait_lag0_bounded "$S" 60
sleep 0.3
assert_sampler_clean smp
assert_finalized_at_most_once "$T"/w[123].log
bad=$(cat "$T"/w[123].log | grep -E 'msg=(rejected|dead-lettered|local-error) ' | head -3 || true)
[ -z "$bad" ] || fail "unexpected: $bad"
for i in 1 2 3; do slot_term $i; done
reap_stopping all
no_staging_left "$L"
log "finalized lines: $(cat "$T"/w[123].log | grep -c 'msg=finalized ' || true), \
discarded: $(cat "$T"/w[123].log | grep -c 'msg=discarded ' || true), \
abandoned: $(cat "$T"/w[123].log | grep -c 'msg=abandoned ' || true)"
log "PASS"
