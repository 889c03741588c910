#!/usr/bin/env bash
# Faults around the broker (Apache Kafka only: the embedded broker can be
# neither reconfigured nor restarted on its port).
# 1. Broker unreachable at start: the worker says so in its log within
#    seconds (kafka-error naming the broker), keeps retrying, and once the
#    broker is up it joins and installs what was published.
# 2. A dead-letter queue that cannot be written (pkg.updates.dlq's
#    max.message.bytes set to 64, so every dead letter is refused): the
#    rejected event is never dropped nor committed (its partition keeps a
#    lag, the DLQ stays empty), the partition rewinds and retries with
#    backoff, and once the topic accepts it again the dead letter is
#    written, and the partition commits and moves on. (v2, published
#    behind the event, may install meanwhile: the offset rule lets later
#    updates finish; only the commit point waits.)
if [ "${DESPOOL_BROKER:-embedded}" != kafka ] || [ -n "${DESPOOL_BOOTSTRAP:-}" ]; then
  echo "[t21-dlq-and-broker-faults] SKIP: needs its own Apache Kafka (DESPOOL_BROKER=kafka, no DESPOOL_BOOTSTRAP)"
  exit 77
fi
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/lib
BS=$(cat "$KAFKA_STATE/bootstrap")
make_tree "$T/src1" 1 5 8
make_tree "$T/src2" 2 5 8

# 1. Broker down at start.
"$SRC/scripts/kafka" stop --dir "$KAFKA_STATE" >/dev/null 2>&1 || fail "scripts/kafka stop failed"
t0=$SECONDS
start_worker w1 "$S" "$L"
wait_log w1 "msg=kafka-error .*$BS" 10
log "broker down at start: logged after $((SECONDS - t0)) s: $(grep -m1 'msg=kafka-error ' "$T/w1.log" | cut -c1-200)"
sleep 3
kill -0 "$(wpid w1)" || fail "worker gave up while the broker was down"
"$SRC/scripts/kafka" start --dir "$KAFKA_STATE" >/dev/null 2>"$T/kafka-start2.log" ||
  { cat "$T/kafka-start2.log"; fail "scripts/kafka start failed"; }
wait_log w1 'msg=assigned ' 90
publish "$P" 1 "$T/src1" >/dev/null
wait_current "$L" "$P" 1 60
log "broker up: worker joined and installed v1"

# 2. The DLQ refuses every write.
kcfg() { "$SRC/scripts/kafka" cli kafka-configs --bootstrap-server "$BS" --entity-type topics \
           --entity-name pkg.updates.dlq --alter "$@" >>"$T/kafka-configs.log" 2>&1; }
kcfg --add-config max.message.bytes=64 || fail "kafka-configs failed: $(tail -3 "$T/kafka-configs.log")"
printf 'not an event, and too big for a 64-byte DLQ' >"$T/garbage"
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/garbage" || fail "put garbage"
publish "$P" 2 "$T/src2" >"$T/pub2.json"
PART=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["partition"])' "$T/pub2.json")
wait_log w1 'msg=dead-letter-failed .*note="not committed; the partition rewinds' 60
wait_log w1 "msg=partition-paused partition=$PART " 30
sleep 4
n1=$(grep -c 'msg=dead-letter-failed ' "$T/w1.log" || true)
"$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq1" || fail "dump dlq"
[ "$(grep -c "key=$P " "$T/dlq1" || true)" = 0 ] || fail "a dead letter was written to a DLQ that refuses it?"
lag=$(lag_total_bounded "$S")
[ "$lag" -ge 2 ] || fail "lag $lag while the garbage event could not be dead-lettered: committed past it?"
kill -0 "$(wpid w1)" || fail "worker died"
log "DLQ unwritable: $n1 failed attempt(s), nothing committed (lag $lag), partition $PART paused and retried"

kcfg --delete-config max.message.bytes || fail "kafka-configs --delete-config failed"
wait_current "$L" "$P" 2 120
wait_lag0_bounded "$S" 90
"$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq2" || fail "dump dlq"
n=$(grep -c "key=$P .*h.despool.reason=\"bad-schema\"" "$T/dlq2" || true)
[ "$n" -ge 1 ] || fail "the dead letter never reached the DLQ"
log "DLQ writable again: dead letter written ($n), v2 installed, lag 0"
stop_worker w1
log "PASS"
