#!/usr/bin/env bash
# Cluster soak (issue 16; runs with DESPOOL_LONG=1, scripts/test --long):
# cycles of broker faults under load on a three-node cluster. Two sites:
# dp-a with two workers sharing a library, dp-b with one worker. Each
# cycle publishes a new version of every package (2 pkgpub loops) and,
# while they publish, takes one broker down, at random kill -9 or a clean
# stop, brings it back 8-15 s later, and waits until both sites have the
# cycle's version of every package. Every 4th cycle also kill -9s a
# worker (restarted at once). Checks, at the end and for every cycle:
# every publish succeeded (one broker down leaves two in-sync replicas),
# both sites at the newest version, byte-identical; the samplers saw no
# downgrade and no mixed tree; nothing finalized twice per library, no
# update rejected; lag 0. Prints cycles, updates, the convergence time
# after each fault (max and mean), lost/downgraded/partial (all 0).
# DESPOOL_CLUSTER_CYCLES (default 20), DESPOOL_SEED replays a run.
if [ "${DESPOOL_LONG:-0}" != 1 ]; then
  echo "[t48-cluster-soak] SKIP: the cluster soak runs with DESPOOL_LONG=1 (scripts/test --long)"
  exit 77
fi
BROKERS=3
. "$(dirname "$0")/lib.sh"

CYCLES=${DESPOOL_CLUSTER_CYCLES:-20}
NP=6
SEED=${DESPOOL_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$SEED
log "soak seed $SEED, $CYCLES cycles"
SA=$(site dp-a); SB=$(site dp-b); LA=$T/lib-a; LB=$T/lib-b
PKGS=(); for i in $(seq $NP); do PKGS+=("$(pkg p$i)"); done
start_sampler sa "$LA" "$T/src" "${PKGS[@]}"
start_sampler sb "$LB" "$T/src" "${PKGS[@]}"
start_worker a1 "$SA" "$LA"; start_worker a2 "$SA" "$LA"; start_worker b1 "$SB" "$LB"

# Sources of cycle c's version c: small trees, and a bigger one for p1 (an
# incompressible 24 MiB) so that faults land in part fetches too.
make_version() { # VERSION
  local specs=() i
  for i in $(seq 2 $NP); do specs+=("$T/src/${PKGS[$((i - 1))]}/$1:$((1000 * i + $1))"); done
  make_trees 20 16 "${specs[@]}"
  make_random_tree "$T/src/${PKGS[0]}/$1" "$1" 24
}

conv=(); back=(); down=(); pubc=(); updates=0
for c in $(seq "$CYCLES"); do
  make_version "$c"
  n=$((RANDOM % 3 + 1)); how=$((RANDOM % 2))
  ( rc=0
    for ((i = 0; i < NP; i += 2)); do
      "$PKGPUB" -b "$B" -p "${PKGS[$i]}" -V "$c" --json --no-progress "$T/src/${PKGS[$i]}/$c" \
        >>"$T/pubs.out" 2>>"$T/pkgpub.log" || { echo "pkgpub ${PKGS[$i]} v$c failed" >>"$T/pub.err"; rc=1; }
    done; date +%s.%N >"$T/puba.end"; echo $rc >"$T/puba.rc" ) & PIDS+=($!)
  ( rc=0
    for ((i = 1; i < NP; i += 2)); do
      "$PKGPUB" -b "$B" -p "${PKGS[$i]}" -V "$c" --json --no-progress "$T/src/${PKGS[$i]}/$c" \
        >>"$T/pubs.out" 2>>"$T/pkgpub.log" || { echo "pkgpub ${PKGS[$i]} v$c failed" >>"$T/pub.err"; rc=1; }
    done; date +%s.%N >"$T/pubb.end"; echo $rc >"$T/pubb.rc" ) & PIDS+=($!)
  rand_sleep 300 2000
  t0=$SECONDS
  if [ $how = 0 ]; then kill_broker "$n"; what="kill -9"; else
    "$SRC/scripts/kafka" stop-broker "$n" --dir "$KAFKA_STATE" 2>>"$T/kafka-chaos.log" ||
      fail "stop-broker $n failed"; what="stop"
  fi
  if [ $((c % 4)) = 0 ]; then kill9_worker a1; start_worker a1 "$SA" "$LA"; what="$what + worker a1 kill -9"; fi
  rand_sleep 8000 7000
  start_broker "$n"; tb=$SECONDS
  for j in a b; do
    for _ in $(seq 3000); do [ -e "$T/pub$j.rc" ] && break; sleep 0.1; done
    [ -e "$T/pub$j.rc" ] || fail "cycle $c: pkgpub loop $j still running after 300 s"
    [ "$(cat "$T/pub$j.rc")" = 0 ] || fail "cycle $c: $(cat "$T/pub.err") (one broker down must not fail a publish; see pkgpub.log)"
    cat "$T/pub$j.end" >>"$T/cycle$c.ends"
    rm -f "$T/pub$j.rc" "$T/pub$j.end"
  done
  want=(); for P in "${PKGS[@]}"; do want+=("$P=$c"); done
  wait_versions "$LA" 240 "${want[@]}"
  wait_versions "$LB" 240 "${want[@]}"
  # When each site really had the cycle's version: its workers' last
  # `finalized ... version=c` line, against the end of the cycle's last
  # publish (the check above runs only once the broker is back).
  afterpub=$(python3 - "$c" "$T/cycle$c.ends" "$T"/a[12].log -- "$T"/b1.log <<'PY'
import datetime, re, sys
c, ends = sys.argv[1], sys.argv[2]
last = max(float(x) for x in open(ends).read().split())
sites, cur = [[]], 0
for a in sys.argv[3:]:
    if a == "--":
        sites.append([])
    else:
        sites[-1].append(a)
worst = 0.0
for logs in sites:
    t = 0.0
    for f in logs:
        for line in open(f, errors="replace"):
            if "msg=finalized " in line and re.search(r" version=%s " % c, line):
                ts = re.search(r"ts=(\S+?)Z", line).group(1)
                t = max(t, datetime.datetime.fromisoformat(ts).replace(
                    tzinfo=datetime.timezone.utc).timestamp())
    worst = max(worst, t - last)
print("%.1f" % worst)
PY
)
  conv+=($((SECONDS - t0))); back+=($((SECONDS - tb))); down+=($((tb - t0)))
  pubc+=($afterpub); updates=$((updates + NP))
  log "cycle $c: broker $n $what for $((tb - t0)) s (restart included); both sites at version $c $((SECONDS - t0)) s after the fault, each site had it $afterpub s after the cycle's last publish ended (checked $((SECONDS - tb)) s after the broker's return)"
done
for P in "${PKGS[@]}"; do
  assert_same_tree "$T/src/$P/$CYCLES" "$LA/$P/current/"
  assert_same_tree "$T/src/$P/$CYCLES" "$LB/$P/current/"
done
wait_lag0_bounded "$SA" 90; wait_lag0_bounded "$SB" 90
assert_sampler_clean sa; assert_sampler_clean sb
assert_finalized_at_most_once "$T"/a[12].log
assert_finalized_at_most_once "$T"/b1.log
bad=$(cat "$T"/a[12].log "$T"/b1.log | grep -E 'msg=(rejected|dead-lettered) ' | head -3 || true)
[ -z "$bad" ] || fail "unexpected: $bad"
stats() { python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print("max %.1f s, mean %.1f s" % (max(v), sum(v) / len(v)))' "$@"; }
log "soak: $CYCLES cycles, $updates updates to 2 sites; broker down (restart included) $(stats "${down[@]}"); checked converged after each fault in $(stats "${conv[@]}"); each site had the cycle's versions $(stats "${pubc[@]}") after its last publish ended; lost 0, downgraded 0, partial 0; publish retries $(grep -c 'msg=publish-retry' "$T/pkgpub.log" || true)"
stop_worker a1; stop_worker a2; stop_worker b1
no_staging_left "$LA"; no_staging_left "$LB"
log "PASS"
