#!/usr/bin/env bash
# Cluster (issue 16): two of three brokers down. With replication factor 3
# and min.insync.replicas=2 a write needs two in-sync replicas, and the
# controller quorum (3 voters) needs two of them: with one broker left,
# nothing can be written. Checks, on a three-node cluster (scripts/kafka
# start --brokers 3):
#   - pkgpub fails within its timeout with an error that names the cause
#     (no answer from the cluster / not enough in-sync replicas), exit
#     status non-zero, and nothing it tried to write is ever visible;
#   - the worker keeps running and keeps what it has (version 1 current,
#     byte-identical; nothing half-written);
#   - once both brokers are back, the same publish succeeds and the site
#     converges: version 2 current, byte-identical, finalized once, no
#     downgrade or mixed tree seen by a sampler, lag 0.
BROKERS=3
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/lib
make_tree "$T/src/$P/1" 1 60 32
make_tree "$T/src/$P/2" 2 60 32
publish "$P" 1 "$T/src/$P/1" >"$T/pub1.json"
start_sampler smp "$L" "$T/src" "$P"
start_worker w1 "$S" "$L"
wait_current "$L" "$P" 1 90
assert_same_tree "$T/src/$P/1" "$L/$P/current/"
wait_lag0_bounded "$S" 60
log "version 1 installed on the three-node cluster"

# The two brokers that do not lead the package's partition: the worker's
# own reads of that partition would keep working as long as they could.
part=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["partition"])' "$T/pub1.json")
lead=$(partition_leader pkg.updates "$part")
down=(); for n in 1 2 3; do [ "$n" = "$lead" ] || down+=("$n"); done
t0=$SECONDS
kill_broker "${down[0]}"; kill_broker "${down[1]}"
log "killed brokers ${down[*]} (broker $lead, leader of pkg.updates partition $part, stays up)"

# pkgpub: must fail, clearly, within its own timeouts (--timeout 10: 10 s a
# step).
rc=0
"$PKGPUB" -b "$B" -p "$P" -V 2 --timeout 10 --json --no-progress \
  "$T/src/$P/2" >"$T/pub-down.json" 2>"$T/pub-down.err" || rc=$?
log "pkgpub with two brokers down: exit $rc after $((SECONDS - t0)) s"
[ "$rc" != 0 ] || fail "pkgpub succeeded with two of three brokers down"
msg=$(grep -m1 '^pkgpub: ' "$T/pub-down.err" || true)
log "its error: $msg"
echo "$msg" | grep -qiE 'in-sync|min.isr|no answer|timed out' ||
  fail "pkgpub's error does not name the cause: $(tail -3 "$T/pub-down.err")"
kill -0 "$(wpid w1)" || fail "the worker died with two brokers down"
[ "$(current_version "$L" "$P")" = 1 ] || fail "current moved while two brokers were down"
assert_same_tree "$T/src/$P/1" "$L/$P/current/"
grep -q 'msg=kafka-error ' "$T/w1.log" || fail "the worker did not log the outage (kafka-error)"

# Both back (one at a time: the second start needs the quorum the first
# restores).
start_broker "${down[0]}"; start_broker "${down[1]}"
t1=$SECONDS
log "brokers ${down[*]} back after $((t1 - t0)) s"
publish "$P" 2 "$T/src/$P/2" >/dev/null
wait_current "$L" "$P" 2 120
log "site converged $((SECONDS - t1)) s after the brokers came back"
assert_same_tree "$T/src/$P/2" "$L/$P/current/"
wait_lag0_bounded "$S" 60
assert_sampler_clean smp
assert_finalized_at_most_once "$T/w1.log"
n=$(grep -c "msg=finalized .*package=$P version=2 " "$T/w1.log" || true)
[ "$n" = 1 ] || fail "version 2 finalized $n times"
# Nothing of the failed attempt is visible: the package's committed
# records on pkg.updates are version 1's manifest and version 2's (the
# second publish's), none from the first attempt.
n=$("$KTOOL" dump -b "$B" -t pkg.updates | grep -c " key=$P " || true)
[ "$n" = 2 ] || fail "$n committed records of $P on pkg.updates, expected 2: $("$KTOOL" dump -b "$B" -t pkg.updates | grep " key=$P ")"
kill -0 "$(wpid w1)" || fail "worker died"
stop_worker w1
no_staging_left "$L"
log "PASS"
