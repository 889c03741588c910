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

# Worker slots 1..3; each incarnation appends to $T/wN.log. SIGTERM is
# asynchronous (a new incarnation may join while the old one leaves); a
# stopping worker must exit 0 within 30 s (reaped by reap_stopping).
RUNNING=(0 0 0 0); STARTS=0; KILLS=0; TERMS=0; STOPPING=()
slot_start() {
  start_worker "w$1" "$S" "$L"
  RUNNING[$1]=1; STARTS=$((STARTS + 1))
}
# A worker must never exit unless told to.
assert_alive() { # SLOT PID
  kill -0 "$2" 2>/dev/null && return 0
  local rc=0; wait "$2" || rc=$?
  fail "worker w$1 (pid $2) exited on its own (status $rc); see w$1.log"
}
slot_kill9() {
  local pid; pid=$(wpid "w$1")
  assert_alive "$1" "$pid"
  kill9_worker "w$1"; forget_pid "$pid"
  RUNNING[$1]=0; KILLS=$((KILLS + 1))
}
slot_term() {
  local pid; pid=$(wpid "w$1")
  assert_alive "$1" "$pid"
  kill -TERM "$pid"; STOPPING+=("$pid:$((SECONDS + 30)):w$1")
  RUNNING[$1]=0; TERMS=$((TERMS + 1))
}
reap_stopping() { # [all]: with "all", wait for every stopping worker
  local keep=() e pid dl name rc
  for e in "${STOPPING[@]:-}"; do
    [ -n "$e" ] || continue
    IFS=: read -r pid dl name <<<"$e"
    while [ "${1:-}" = all ] && kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt "$dl" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      [ $SECONDS -lt "$dl" ] || fail "worker $name (pid $pid) did not stop within 30 s of SIGTERM"
      keep+=("$e"); continue
    fi
    rc=0; wait "$pid" || rc=$?
    [ $rc = 0 ] || fail "worker $name (pid $pid) exited $rc after SIGTERM"
    forget_pid "$pid"
  done
  STOPPING=("${keep[@]:-}")
}
rand_sleep() { # MIN_MS SPREAD_MS
  local ms=$(($1 + RANDOM % $2))
  sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
}
progress() { cat "$T"/w[123].log 2>/dev/null | grep -cE 'msg=(finalized|discarded) ' || true; }
converged() {
  local P
  for P in "${PKGS[@]}"; do [ "$(current_version "$L" "$P")" = $NV ] || return 1; done
}
publishing() {
  local k
  for k in $(seq $NPUB); do job_done "pub$k" || return 0; done
  return 1
}

slot_start 1; slot_start 2

# Publishers: loop k owns packages k and k+NPUB and publishes their
# versions in order (one transactional id per package: a package's
# publishes never overlap, or they would fence each other), with random
# pauses so that updates keep coming during the storm.
for k in $(seq $NPUB); do
  ( (
    RANDOM=$((SEED + k))
    for v in $(seq $NV); do
      for i in $k $((k + NPUB)); do
        P=$(pkg p$i)
        "$PKGPUB" -b "$B" -p "$P" -V "$v" --json --no-progress "$T/src/$P/$v" \
          >>"$T/pub$k.out" 2>>"$T/pkgpub.log" ||
          { echo "pkgpub $P v$v failed" >>"$T/pub$k.err"; exit 1; }
        rand_sleep 0 1500
      done
    done
  ) && echo 0 >"$T/pub$k.rc" || echo $? >"$T/pub$k.rc" ) &
  PIDS+=($!)   # the exit trap stops them too
done

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
    ! publishing && converged && break
    reap_stopping; sleep 0.1
  done
  rand_sleep 100 1500
  reap_stopping
  i=$((RANDOM % 3 + 1))
  if [ "${RUNNING[$i]}" = 1 ]; then
    # The first stop is a kill -9, the second a SIGTERM, then at random:
    # every storm has both, whatever the seed.
    if [ $KILLS = 0 ] || { [ $TERMS != 0 ] && [ $((RANDOM % 2)) = 0 ]; }; then
      slot_kill9 $i
    else
      slot_term $i
    fi
  else
    slot_start $i
  fi
  actions=$((actions + 1)); last=$(progress)
done
reap_stopping all
for k in $(seq $NPUB); do
  job_done "pub$k" && [ "$(cat "$T/pub$k.rc")" != 0 ] &&
    fail "a publisher failed: $(cat "$T"/pub*.err 2>/dev/null)"
  wait_job "pub$k" 60
done
n=$(cat "$T"/pub*.out | grep -c '"package"' || true)
[ "$n" = $((NP * NV)) ] || fail "published $n updates, expected $((NP * NV))"
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
