#!/usr/bin/env bash
# Cluster (issue 16): kill -9 a leader while a big schema v2 update is
# being fetched, restart it later. On a three-node cluster (replication 3,
# min ISR 2) a ~40 MiB incompressible update is published; the site reads
# it slowly: a client quota (consumer_byte_rate, 2 MiB/s per broker) holds
# the fetch to ~7 s. (fetch.min.bytes with fetch.wait.max.ms did not: a
# broker answers a fetch at once while it has data, and the update came
# in 2 s, sometimes before the kill could land.) Once the worker has
# started the update, the broker leading the manifest's pkg.updates
# partition (and a third of pkg.content's partitions, so of the parts
# still to come) is killed -9;
# the fetches of those partitions must move to the new leaders (elected
# after the controller notices, broker.session.timeout.ms 9 s), with no
# part called missing or mismatched. The broker is started again 15 s
# later and version 2 is published through the healed cluster. Right
# after the kill, another package on the same pkg.updates partition is
# published: pkgpub must find the new leader (its first read, the
# partition's last stable offset, goes to the dead one until the
# controller fences it).
# Checks: version 1 then 2 current, byte-identical, each finalized once;
# nothing dead-lettered; a sampler saw no downgrade and no mixed tree; lag
# 0; the worker never exited.
BROKERS=3
. "$(dirname "$0")/lib.sh"

P=$(pkg big); S=$(site dp); L=$T/lib
make_random_tree "$T/src/$P/1" 1 40
make_tree "$T/src/$P/2" 2 40 32
publish "$P" 1 "$T/src/$P/1" >"$T/pub1.json"
part=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["partition"]); print(j["parts"], "parts,", j["zsize"], "bytes", file=sys.stderr)' "$T/pub1.json" 2>"$T/pub1.desc")
log "published version 1: $(cat "$T/pub1.desc"), manifest on pkg.updates partition $part"
lead=$(partition_leader pkg.updates "$part")
[[ $lead =~ ^[123]$ ]] || fail "no leader for pkg.updates partition $part: '$lead'"
led=$(leaders_of pkg.content "$lead")
[ -n "$led" ] || fail "broker $lead leads no pkg.content partition"

# A second package on the same pkg.updates partition, published right
# after the kill: until the controller fences the dead broker (9 s), the
# cluster's metadata still names it the partition's leader, and pkgpub's
# first reads (the package's newest record) go there.
Q= np=$(partition_count pkg.updates)
for i in $(seq 200); do
  c=$(pkg other$i)
  [ "$("$KTOOL" partition "$np" "$c")" = "$part" ] && { Q=$c; break; }
done
[ -n "$Q" ] || fail "no package name on pkg.updates partition $part in 200 tries"
make_tree "$T/src/$Q/1" 3 20 16

start_sampler smp "$L" "$T/src" "$P" "$Q"
kafka_client_quota consumer_byte_rate=2097152 >"$T/quota.out"
start_worker w1 "$S" "$L"
wait_log w1 "msg=update-started .*package=$P version=1" 90
sleep 2
grep -q "msg=finalized .*package=$P version=1 " "$T/w1.log" &&
  fail "version 1 finalized before the kill: make the fetch slower or the tree bigger"
t0=$SECONDS
kill_broker "$lead"
log "killed broker $lead mid-fetch (leader of pkg.updates partition $part and pkg.content partitions $led)"
( rc=0; "$PKGPUB" -b "$B" -p "$Q" -V 1 --json --no-progress "$T/src/$Q/1" \
    >"$T/pubq.json" 2>"$T/pubq.err" || rc=$?; echo $rc >"$T/pubq.rc" ) &
PIDS+=($!)
sleep 1
grep -q "msg=finalized .*package=$P version=1 " "$T/w1.log" &&
  fail "version 1 finalized right at the kill: not mid-fetch; make the tree bigger"
# Mid-fetch for sure: the rest may come at full speed (the parts of the
# dead leader's partitions still wait for the new leaders).
kafka_client_quota_clear consumer_byte_rate >>"$T/quota.out"

wait_current "$L" "$P" 1 180
t1=$SECONDS
log "version 1 current $((t1 - t0)) s after the kill"
for _ in $(seq 600); do job_done pubq && break; sleep 0.1; done
job_done pubq || fail "pkgpub of $Q still running $((SECONDS - t0)) s after the kill"
[ "$(cat "$T/pubq.rc")" = 0 ] ||
  fail "pkgpub of $Q (partition $part, its leader just killed) failed: $(grep -v 'msg=kafka' "$T/pubq.err" | tail -2)"
wait_current "$L" "$Q" 1 60
assert_same_tree "$T/src/$Q/1" "$L/$Q/current/"
log "$Q (same partition, published right after the kill) installed $((SECONDS - t0)) s after the kill"
assert_same_tree "$T/src/$P/1" "$L/$P/current/"
sleep $((15 - (SECONDS - t0) > 0 ? 15 - (SECONDS - t0) : 0))
start_broker "$lead"
log "broker $lead back $((SECONDS - t0)) s after the kill"
publish "$P" 2 "$T/src/$P/2" >/dev/null
wait_current "$L" "$P" 2 120
assert_same_tree "$T/src/$P/2" "$L/$P/current/"
wait_lag0_bounded "$S" 90
assert_sampler_clean smp
assert_finalized_at_most_once "$T/w1.log"
for v in 1 2; do
  n=$(grep -c "msg=finalized .*package=$P version=$v " "$T/w1.log" || true)
  [ "$n" = 1 ] || fail "version $v finalized $n times"
done
if grep -E 'msg=dead-letter|part-missing|part-mismatch' "$T/w1.log" | head -3 | grep .; then
  fail "the failover cost an update: see above"
fi
kill -0 "$(wpid w1)" || fail "worker died"
stop_worker w1
log "kafka-error lines: $(grep -c 'msg=kafka-error ' "$T/w1.log" || true); stopped: $(grep -m1 'msg=stopped' "$T/w1.log" | grep -oE '(parts_fetched|part_seeks|part_records_read)=[0-9]+' | tr '\n' ' ')"
no_staging_left "$L"
log "PASS"
