#!/usr/bin/env bash
# Fan-out: every site (consumer group) receives every update. Three sites,
# each with its own library and worker, and two more sites whose workers
# share ONE library, all running while versions 1..8 of four packages are
# published back to back. Every library ends at the newest version of
# every package, byte-identical; samplers on all four libraries see no
# downgrade and no partial or mixed tree (in the shared one, two workers
# race to finalize the same versions: the per-package lock must keep
# `current` monotonic and each version is finalized once); every site's
# lag is 0; no staging is left after a clean stop.
. "$(dirname "$0")/lib.sh"

NP=4; NV=8
PKGS=(); specs=()
for i in $(seq $NP); do
  P=$(pkg p$i); PKGS+=("$P")
  for v in $(seq $NV); do specs+=("$T/src/$P/$v:$((100 * i + v))"); done
done
make_trees 300 16 "${specs[@]}"

SITES=(); LIBS=()
for s in a b c; do SITES+=("$(site $s)"); LIBS+=("$T/lib-$s"); done
SITES+=("$(site d)" "$(site e)"); LIBS+=("$T/lib-shared" "$T/lib-shared")
for k in 0 1 2 3 4; do start_worker "w$k" "${SITES[$k]}" "${LIBS[$k]}"; done
for k in 0 1 2 3 4; do wait_log "w$k" 'msg=assigned .*partitions=[0-9]' 60; done
for s in a b c shared; do start_sampler "smp-$s" "$T/lib-$s" "$T/src" "${PKGS[@]}"; done

# One publisher loop per package, versions in order, no pause.
for i in $(seq $NP); do
  ( (
    P=$(pkg p$i)
    for v in $(seq $NV); do
      "$PKGPUB" -b "$B" -p "$P" -V "$v" --json --no-progress "$T/src/$P/$v" \
        >>"$T/pub$i.out" 2>>"$T/pkgpub.log" || exit 1
    done
  ) && echo 0 >"$T/pub$i.rc" || echo $? >"$T/pub$i.rc" ) &
  PIDS+=($!)   # the exit trap stops them too
done
for i in $(seq $NP); do wait_job "pub$i" 300; done
log "published $NP x $NV versions"

want=(); for P in "${PKGS[@]}"; do want+=("$P=$NV"); done
for s in a b c shared; do
  wait_versions "$T/lib-$s" 120 "${want[@]}"
  for P in "${PKGS[@]}"; do assert_same_tree "$T/src/$P/$NV" "$T/lib-$s/$P/current/"; done
done
for k in 0 1 2 3 4; do wait_lag0_bounded "${SITES[$k]}" 60; done
sleep 0.3
for s in a b c shared; do assert_sampler_clean "smp-$s"; done

# Each site read every version (started or discarded: nothing skipped by
# a lost event), and each library finalized a version at most once.
for k in 0 1 2 3 4; do
  for P in "${PKGS[@]}"; do
    seen=$(grep -E "msg=(update-started|discarded) .*package=$P " "$T/w$k.log" |
           sed -E 's/.* version=([0-9]+).*/\1/' | sort -un | wc -l)
    [ "$seen" = $NV ] || fail "site ${SITES[$k]} saw $seen of $NV versions of $P"
  done
done
for k in 0 1 2; do assert_finalized_at_most_once "$T/w$k.log"; done
assert_finalized_at_most_once "$T/w3.log" "$T/w4.log"
f3=$(grep -c 'msg=finalized ' "$T/w3.log" || true)
f4=$(grep -c 'msg=finalized ' "$T/w4.log" || true)
log "shared library: finalized by site d: $f3, by site e: $f4 (the rest discarded as duplicate or stale)"
bad=$(cat "$T"/w[0-4].log | grep -E 'msg=(rejected|dead-lettered|local-error) ' | head -3 || true)
[ -z "$bad" ] || fail "unexpected: $bad"
for k in 0 1 2 3 4; do stop_worker "w$k"; done
for s in a b c shared; do no_staging_left "$T/lib-$s"; done
log "PASS"
