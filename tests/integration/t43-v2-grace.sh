#!/usr/bin/env bash
# Schema v2 grace time (Kafka only: the embedded broker does not
# compact): a slow site is fetching version 1's parts when version 2 is
# published, which tombstones version 1's parts, and the cleaner runs at
# once (min.compaction.lag.ms=0: no grace at all). The site converges on
# version 2 (it supersedes version 1 as soon as it reads the newer
# manifest, or finishes version 1 first): current is 2, byte for byte,
# and nothing is dead-lettered.
. "$(dirname "$0")/lib.sh"
[ "$BROKER_KIND" = kafka ] || { log "skipped: needs Apache Kafka's compaction"; exit 77; }

S=$(site dp); L=$T/lib; P=$(pkg app)
compact_fast pkg.content
make_random_tree "$T/v1" 1 40
make_random_tree "$T/v2" 2 40
publish "$P" 1 "$T/v1" >/dev/null
# A client quota of 8 MiB/s: a version takes ~5-10 s. (fetch.min.bytes with
# fetch.wait.max.ms did not slow it: the broker answers a fetch at once
# while it has data.)
kafka_client_quota consumer_byte_rate=8388608 >"$T/quota.out"
start_worker w1 "$S" "$L"
wait_log w1 "msg=update-started .*package=$P version=1 " 60
publish "$P" 2 "$T/v2" >"$T/pub2.json"
grep -q '"parts_tombstoned":[1-9]' "$T/pub2.json" || fail "version 2 tombstoned nothing: $(cat "$T/pub2.json")"
roll_segments pkg.content 1000
wait_current "$L" "$P" 2 120
assert_same_tree "$T/v2" "$L/$P/current/"
"$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq" 2>/dev/null || true
! grep -q "key=$P " "$T/dlq" || fail "dead letters for $P: $(grep "key=$P " "$T/dlq")"
how=superseded
grep -q "msg=finalized .*package=$P version=1 " "$T/w1.log" && how="finished version 1 first"
stop_worker w1
log "PASS: converged on version 2 ($how), no dead letters"
