#!/usr/bin/env bash
# Soak (long: not in the default run; exits 77 = skipped unless
# DESPOOL_LONG=1 or --long). Three workers of one site are killed (kill -9)
# and restarted over and over, DESPOOL_SOAK_CYCLES times (default 1000):
# each cycle picks a random worker, lets it live a random 50-500 ms more,
# kills it and restarts it at once. Two publisher loops meanwhile publish
# random updates of 10 small packages. Every DESPOOL_SOAK_CALM_EVERY
# cycles (default 50) the storm pauses until the group has made progress
# again (a dead member blocks a rebalance for its 10 s session timeout, so
# a non-stop storm would only ever test the queue, not the work). At the
# end all packages must be at their newest published version (lost=0),
# the sampler must have seen no downgrade and no partial tree, every site
# offset committed (lag 0), and nothing left in staging. Prints
#   updates=N kills=N lost=0 downgrades=0 partial=0
# DESPOOL_SEED=N replays the random choices.
if [ "${DESPOOL_LONG:-0}" != 1 ] && [ "${1:-}" != --long ]; then
  echo "[t14-soak] skipped: run with DESPOOL_LONG=1 (or: bash t14-soak.sh --long)"
  exit 77
fi
. "$(dirname "$0")/lib.sh"

CYCLES=${DESPOOL_SOAK_CYCLES:-1000}
CALM_EVERY=${DESPOOL_SOAK_CALM_EVERY:-50}
NP=10
S=$(site dp); L=$T/lib
SEED=${DESPOOL_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$SEED
log "soak: $CYCLES kill -9 cycles, calm every $CALM_EVERY, seed $SEED"
PKGS=(); for i in $(seq $NP); do PKGS+=("$(pkg p$i)"); done

rand_sleep() { # MIN_MS SPREAD_MS
  local ms=$(($1 + RANDOM % $2))
  sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
}

# Tree sizes: big enough that extraction takes a moment (kills land
# inside it) on Kafka; smaller on the embedded broker (5 MiB kept per
# partition).
if [ "$BROKER_KIND" = kafka ]; then FMIN=20 FSPREAD=130 FKB=16; else FMIN=5 FSPREAD=35 FKB=8; fi

# Publishers: loop k owns packages k, k+2, ... (a package's publishes never
# overlap: one transactional id per package). Each publish: a random
# package of its own, next version, a fresh small tree. Successful
# publishes are listed in $T/publishedK as "package version".
for k in 1 2; do
  ( (
    RANDOM=$((SEED + k)); declare -A ver
    mine=(); for i in $(seq $k 2 $NP); do mine+=("$(pkg p$i)"); done
    while [ -d "$T" ] && [ ! -e "$T/stop-publishing" ]; do
      P=${mine[$((RANDOM % ${#mine[@]}))]}
      v=$((${ver[$P]:-0} + 1))
      make_trees $((FMIN + RANDOM % FSPREAD)) "$FKB" "$T/src/$P/$v:$((RANDOM * 1000 + v))"
      if "$PKGPUB" -b "$B" -p "$P" -V "$v" --no-progress "$T/src/$P/$v" \
           >/dev/null 2>>"$T/pkgpub$k.log"; then
        ver[$P]=$v; echo "$P $v" >>"$T/published$k"
      else
        echo "pkgpub $P v$v failed" >>"$T/pub-failures"
      fi
      rand_sleep 0 500
    done
  ) && echo 0 >"$T/pub$k.rc" || echo $? >"$T/pub$k.rc" ) &
  PIDS+=($!)   # the exit trap stops them too
done

start_sampler smp "$L" "$T/src" "${PKGS[@]}"
W=(); STARTS=0
slot_start() {
  start_worker "w$1" "$S" "$L"
  W[$1]=$(wpid "w$1"); STARTS=$((STARTS + 1))
}
for i in 1 2 3; do slot_start $i; done
wait_log w1 'msg=assigned' 60

finals() { cat "$T"/w[123].log | grep -c 'msg=finalized ' || true; }
KILLS=0; CALMS=0; t0=$SECONDS
for c in $(seq "$CYCLES"); do
  i=$((RANDOM % 3 + 1))
  rand_sleep 50 451
  kill -KILL "${W[$i]}" 2>/dev/null || fail "worker w$i (pid ${W[$i]}) died on its own"
  { wait "${W[$i]}"; } 2>/dev/null || true
  forget_pid "${W[$i]}"; KILLS=$((KILLS + 1))
  slot_start $i
  if [ $((c % CALM_EVERY)) = 0 ]; then
    # Calm: wait (bounded) until a finalize shows the group working again.
    f=$(finals); end=$((SECONDS + 45)); CALMS=$((CALMS + 1))
    while [ "$(finals)" = "$f" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
    log "cycle $c/$CYCLES: $KILLS kills, $(cat "$T"/published* 2>/dev/null | wc -l) updates published, $(finals) finalized, $((SECONDS - t0)) s"
  fi
done

touch "$T/stop-publishing"
for k in 1 2; do wait_job "pub$k" 60; done
[ -e "$T/pub-failures" ] && fail "publish failures: $(head -3 "$T/pub-failures")"
UPDATES=$(cat "$T"/published* | wc -l)
# The newest published version of each package.
want=()
for P in "${PKGS[@]}"; do
  v=$(awk -v p="$P" '$1 == p && $2 > m { m = $2 } END { print m + 0 }' "$T"/published*)
  [ "$v" -gt 0 ] && want+=("$P=$v")
done

# Convergence (bounded): then count what is not at its newest version.
end=$((SECONDS + 180))
while [ $SECONDS -lt $end ]; do
  lost=0
  for s in "${want[@]}"; do
    [ "$(current_version "$L" "${s%=*}")" = "${s##*=}" ] || lost=$((lost + 1))
  done
  [ $lost = 0 ] && break
  sleep 0.5
done
for s in "${want[@]}"; do
  [ "$(current_version "$L" "${s%=*}")" = "${s##*=}" ] ||
    log "lost: ${s%=*} is at $(current_version "$L" "${s%=*}"), newest published ${s##*=}"
done
sleep 0.3
stop_sampler smp
read -r _ down part <<<"$(sampler_summary smp | tr '=' ' ' | awk '{ print $2, $4, $6 }')"
log "updates=$UPDATES kills=$KILLS lost=$lost downgrades=$down partial=$part"
log "calm phases: $CALMS; worker starts: $STARTS; finalized: $(finals); staging dirs removed at start-up: \
$(cat "$T"/w[123].log | grep -oE 'staging_removed=[0-9]+' | awk -F= '{ s += $2 } END { print s + 0 }')"
[ "$lost" = 0 ] || fail "lost=$lost"
[ "$down" = 0 ] && [ "$part" = 0 ] || { grep -E '^(downgrade|partial) ' "$T/smp.samples" | head; fail "sampler: downgrades=$down partial=$part"; }
for s in "${want[@]}"; do
  assert_same_tree "$T/src/${s%=*}/${s##*=}" "$L/${s%=*}/current/"
done
wait_lag0_bounded "$S" 120
assert_finalized_at_most_once "$T"/w[123].log
bad=$(cat "$T"/w[123].log | grep -E 'msg=(rejected|dead-lettered|local-error) ' | head -3 || true)
[ -z "$bad" ] || fail "unexpected: $bad"
for i in 1 2 3; do kill -TERM "${W[$i]}"; done
for i in 1 2 3; do stop_worker "w$i"; done
no_staging_left "$L"
log "PASS"
