#!/usr/bin/env bash
# Cluster (issue 16): kill -9 the transaction coordinator of a running
# pkgpub. On a three-node cluster, version 1 of a package is published
# (small), which fixes the transactional id pkgpub-<package> and its
# coordinator (the leader of its __transaction_state partition). Version 2
# (~48 MiB, incompressible: its parts take a while to send) is published
# in the background; while it sends, the coordinator's broker is killed -9
# and restarted 15 s later. pkgpub must either finish (exit 0: its
# transaction committed through the new coordinator, perhaps on a second
# attempt when the failover aborted the first: librdkafka's
# OUT_OF_ORDER_SEQUENCE_NUMBER after a partition leader moved) or fail loudly (exit
# non-zero, an error naming the step) and leave nothing visible (no
# version 2 manifest on pkg.updates); then the same publish is run again.
# Either way the site ends at version 2, byte-identical, finalized once,
# with no downgrade or mixed tree seen by a sampler, lag 0.
BROKERS=3
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/lib
make_tree "$T/src/$P/1" 1 20 16
make_random_tree "$T/src/$P/2" 2 48
publish "$P" 1 "$T/src/$P/1" >/dev/null
coord=
for _ in $(seq 20); do coord=$(txn_coordinator "pkgpub-$P") && [[ $coord =~ ^[123]$ ]] && break; sleep 1; done
[[ $coord =~ ^[123]$ ]] || fail "no coordinator for pkgpub-$P: $(cat "$T/kafka-txn.out")"
log "transaction coordinator of pkgpub-$P: broker $coord"
start_sampler smp "$L" "$T/src" "$P"
start_worker w1 "$S" "$L"
wait_current "$L" "$P" 1 90

( rc=0; "$PKGPUB" -b "$B" -p "$P" -V 2 --json --no-progress "$T/src/$P/2" \
    >"$T/pub2.json" 2>"$T/pub2.err" || rc=$?; echo $rc >"$T/pub2.rc" ) &
PUB=$!; PIDS+=($PUB)
# Kill once it is sending parts (the first part's delivery is logged by
# nothing, so: once it has read the package's previous record, plus a bit).
for _ in $(seq 300); do grep -q 'msg=previous-record' "$T/pub2.err" 2>/dev/null && break; sleep 0.1; done
sleep 1
job_done pub2 && fail "pkgpub finished before the kill: make version 2 bigger"
t0=$SECONDS
kill_broker "$coord"
log "killed broker $coord (the coordinator) while pkgpub was sending"
sleep 15
start_broker "$coord"
log "broker $coord back $((SECONDS - t0)) s after the kill"
for _ in $(seq 3000); do job_done pub2 && break; sleep 0.1; done
job_done pub2 || fail "pkgpub still running 300 s after the kill"
rc=$(cat "$T/pub2.rc")
took=$(( $(stat -c %Y "$T/pub2.rc") - $(date +%s) + SECONDS - t0 ))
if [ "$rc" = 0 ]; then
  log "pkgpub finished through the failover, $took s after the kill, attempts $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["attempts"])' "$T/pub2.json") ($(grep -c 'msg=publish-retry' "$T/pub2.err" || true) publish-retry line(s))"
else
  msg=$(grep -v 'msg=kafka-log\|msg=kafka-error' "$T/pub2.err" | grep -m1 '^pkgpub' || true)
  log "pkgpub failed (exit $rc) $took s after the kill: $msg"
  [ -n "$msg" ] || fail "pkgpub failed without an error line: $(tail -3 "$T/pub2.err")"
  sleep 2
  n=$("$KTOOL" dump -b "$B" -t pkg.updates | grep -c " key=$P " || true)
  [ "$n" = 1 ] || fail "the failed publish left $((n - 1)) visible record(s) of $P on pkg.updates"
  [ "$(current_version "$L" "$P")" = 1 ] || fail "current moved after a failed publish"
  publish "$P" 2 "$T/src/$P/2" >/dev/null
  log "published again after the failure"
fi
wait_current "$L" "$P" 2 180
log "site at version 2 $((SECONDS - t0)) s after the kill"
assert_same_tree "$T/src/$P/2" "$L/$P/current/"
wait_lag0_bounded "$S" 90
assert_sampler_clean smp
assert_finalized_at_most_once "$T/w1.log"
n=$("$KTOOL" dump -b "$B" -t pkg.updates | grep -c " key=$P " || true)
[ "$n" = 2 ] || fail "$n committed records of $P on pkg.updates, expected 2 (versions 1 and 2)"
if grep -E 'msg=dead-letter|part-missing|part-mismatch' "$T/w1.log" | head -3 | grep .; then
  fail "an update was lost to the coordinator's failover: see above"
fi
kill -0 "$(wpid w1)" || fail "worker died"
stop_worker w1
no_staging_left "$L"
log "PASS"
