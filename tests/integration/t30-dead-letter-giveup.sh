#!/usr/bin/env bash
# Regression (issue 11, defect 4): a dead letter that cannot be written or
# whose event cannot be re-read for a while is retried (or its partition
# rewound), never dropped while its offset stays pending: the commit point
# must move on without a restart once the trouble is over. And the
# consumer thread stays responsive meanwhile.
# The old worker gave up silently: dead_letter() after 50 tries on a full
# producer queue, dead_letter_consumed() when a re-read failed (10 s
# timeout, on the consumer thread, per chunk); the offset stayed pending
# and nothing retried it, so the site kept a lag until a restart or a
# rebalance.
#
# A (Apache Kafka only: it deletes pkg.updates.dlq, which the embedded
#   broker cannot): worker with -X allow.auto.create.topics=false (so its
#   producer does not recreate the topic) and
#   -X topic.metadata.refresh.interval.ms=1000 (it learns at once that
#   the topic is gone). pkg.updates.dlq is deleted; a 4-chunk update with
#   a wrong sha256 (rejected at its end, after all chunks were consumed)
#   goes to partition 0. Every dead letter is refused (unknown topic); the
#   old worker gave up on each after 50 tries (5 s, the consumer thread
#   blocked all the while), with no retry. Checks: a package sent to partition 1
#   right after the rejection installs within 5 s (consumer responsive);
#   once the DLQ exists again, all 4 chunks are dead-lettered (reason
#   sha256-mismatch, every source offset) and the site reaches lag 0
#   within 60 s, same worker.
# B (both brokers): a 3-chunk update of which only chunks 0 and 1 arrive,
#   --incomplete-timeout 5: the worker re-reads them to dead-letter them
#   as incomplete. The broker is frozen (SIGSTOP) from before the timeout
#   until after the 10 s re-read of chunk 0 timed out (14 s; the worker
#   runs with -X session.timeout.ms=40000 so that the freeze costs no
#   rebalance, which would hide the defect). Checks: once the broker
#   runs again, both chunks are dead-lettered (reason incomplete, both
#   offsets) and the site reaches lag 0 within 60 s, same worker.
. "$(dirname "$0")/lib.sh"

mkev() { # PKG VERSION OUT CHUNKS [mkevent options]: events OUT.<i>
  local p=$1 v=$2 out=$3 n=$4; shift 4
  make_tree "$out.src" "$v" 8 16
  tar -C "$out.src" -cf "$out.tar" .
  python3 "$SRC/tests/integration/mkevent.py" --package "$p" --version "$v" \
    --tar "$out.tar" --out "$out" --chunks "$n" "$@" >/dev/null || fail "mkevent $p"
}
# offsets_in_dlq PKG REASON: the sorted source offsets of PKG's dead letters
offsets_in_dlq() {
  "$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq.txt" || fail "dump dlq"
  grep "key=$1 .*h.despool.reason=\"$2\"" "$T/dlq.txt" |
    grep -o 'h.despool.offset="[0-9]*"' | grep -o '[0-9]*' | sort -n -u | tr '\n' ' ' || true
}
now_ms() { date +%s%3N; }

Q=$(pkg quick); P=$(pkg badsha); R=$(pkg part)
if [ "$BROKER_KIND" = kafka ]; then
  # ---- A ----
  SA=$(site a); LA=$T/liba
  BS=$(cat "$KAFKA_STATE/bootstrap")
  ktopics() { "$SRC/scripts/kafka" cli kafka-topics --bootstrap-server "$BS" "$@" >>"$T/kafka-topics.log" 2>&1; }
  mkev "$P" 1 "$T/p" 4 --sha256 "$(printf '0%.0s' $(seq 64))"
  mkev "$Q" 1 "$T/q" 1
  start_worker wa "$SA" "$LA" -X allow.auto.create.topics=false \
    -X topic.metadata.refresh.interval.ms=1000
  wait_log wa 'msg=assigned .*partitions=[0-9]' 60
  ktopics --delete --topic pkg.updates.dlq || fail "kafka-topics --delete failed: $(tail -3 "$T/kafka-topics.log")"
  # Its producer learns within a second (metadata refresh): from then on a
  # dead letter is refused at once (unknown topic), no delivery report.
  sleep 3
  log "A: pkg.updates.dlq deleted"
  "$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$P" "$T"/p.{0,1,2,3} || fail "put $P"
  wait_log wa "msg=rejected .*package=$P .*reason=sha256-mismatch" 30
  t0=$(now_ms)
  "$KTOOL" put -b "$B" -t pkg.updates -p 1 -k "$Q" "$T/q.0" || fail "put $Q"
  wait_current "$LA" "$Q" 1 40
  dq=$(( $(now_ms) - t0 ))
  log "A: $Q (partition 1) installed $dq ms after it was sent, while partition 0's dead letters could not be written"
  sleep 2
  kill -0 "$(wpid wa)" 2>/dev/null || fail "A: worker died"
  lag=$(lag_total_bounded "$SA")
  [ "$lag" -ge 4 ] || fail "A: lag $lag while the DLQ is missing: the rejected update was committed"
  n=$(grep -c 'msg=dead-letter-failed ' "$T/wa.log" || true)
  log "A: DLQ missing: lag $lag, $n dead-letter-failed line(s)"
  ktopics --create --topic pkg.updates.dlq --partitions 6 --replication-factor 1 ||
    fail "kafka-topics --create failed: $(tail -3 "$T/kafka-topics.log")"
  log "A: pkg.updates.dlq created again"
  wait_lag0_bounded "$SA" 60
  got=$(offsets_in_dlq "$P" sha256-mismatch)
  [ "$got" = "0 1 2 3 " ] || fail "A: dead letters of $P's offsets 0-3 expected, got: ${got:-none}"
  log "A: all 4 chunks dead-lettered, lag 0, no restart"
  # (checked last, so that a run of the old worker shows both failures)
  [ "$dq" -le 5000 ] || fail "A: the consumer thread was blocked: $Q took $dq ms (> 5000) to install"
  stop_worker wa
else
  log "A: needs Apache Kafka (deletes pkg.updates.dlq): not run on the embedded broker"
fi

# ---- B ----
SB=$(site b); LB=$T/libb
if [ "$BROKER_KIND" = kafka ]; then FROZEN=$(cat "$KAFKA_STATE/kafka.pid"); else FROZEN=$BROKER_PID; fi
AT_EXIT+=("kill -CONT $FROZEN")
mkev "$R" 1 "$T/r" 3 --only 0,1
start_worker wb "$SB" "$LB" --incomplete-timeout 5 -X session.timeout.ms=40000
wait_log wb 'msg=assigned .*partitions=[0-9]' 60
if [ "$BROKER_KIND" = kafka ]; then # A's events first: dead-lettered again, installed
  wait_current "$LB" "$Q" 1 60
  wait_lag0_bounded "$SB" 60
fi
"$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$R" "$T"/r.{0,1} || fail "put $R"
wait_log wb "msg=update-started .*package=$R " 30
t0=$SECONDS
sleep 3
kill -STOP "$FROZEN"
log "B: broker frozen; incomplete timeout due in ~2 s, then the re-read of chunk 0 (10 s)"
sleep 14
kill -CONT "$FROZEN"
log "B: broker running again after 14 s"
kill -0 "$(wpid wb)" 2>/dev/null || fail "B: worker died"
grep 'msg=dead-letter-failed ' "$T/wb.log" | tail -2 | cut -c1-220 || true
# Real Kafka fences itself after a freeze and reloads the group
# coordinator: `despooler lag` says "Not coordinator" for a moment.
for _ in $(seq 60); do
  "$DESPOOLER" lag -b "$B" --site "$SB" --json >/dev/null 2>&1 && break; sleep 0.5
done
wait_lag0_bounded "$SB" 60
got=$(offsets_in_dlq "$R" incomplete)
nr=$(grep -c "key=$R .*h.despool.site=\"$SB\"" "$T/dlq.txt" || true)
log "B: dead letters of $R from site $SB: $nr, offsets: $got"
[ "$(echo "$got" | wc -w)" = 2 ] || fail "B: both chunks of $R expected dead-lettered as incomplete, got offsets: ${got:-none}"
grep -q 'msg=revoked' "$T/wb.log" && fail "B: the worker was revoked during the freeze: the scenario did not hold"
log "B: both chunks dead-lettered, lag 0, no restart ($((SECONDS - t0)) s)"
stop_worker wb
log "PASS"
