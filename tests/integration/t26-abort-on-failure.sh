#!/usr/bin/env bash
# A transaction that fails is ended, not left open (Apache Kafka only: the
# embedded broker cannot be stopped and restarted, and shows aborted
# transactions). pkgpub sends a ~30 MiB update slowly (one 64 KiB event
# at a time, each lingering 50 ms), with -X message.timeout.ms=5000 (its
# events fail 5 s into an outage) and -X transaction.timeout.ms=300000
# (the coordinator would not abort it by itself within this test). Mid-
# send the broker is stopped for 40 s (longer than the 30 s pkgpub gave
# its one abort before; pkgpub now retries the abort up to 2 min), then
# started again from the same directory. pkgpub must exit non-zero saying
# that the transaction (naming its transactional id) was aborted; the
# coordinator must show it ended (TransactionsCommand describe), and a
# later version of the same package (same partition) published with
# another transactional id must install at once: a read_committed
# consumer is not held back by the failed transaction.
if [ "${DESPOOL_BROKER:-embedded}" != kafka ]; then
  echo "[t26-abort-on-failure] SKIP: needs Apache Kafka (DESPOOL_BROKER=kafka); the embedded broker cannot be restarted"
  exit 77
fi
if [ -n "${DESPOOL_BOOTSTRAP:-}" ]; then
  echo "[t26-abort-on-failure] SKIP: restarts its own broker; unset DESPOOL_BOOTSTRAP"
  exit 77
fi
. "$(dirname "$0")/lib.sh"

P=$(pkg app); Q=$(pkg warm); S=$(site s1); L=$T/lib; TXID=failing-$RUN
make_random_tree "$T/src/$P/1" 1 30
make_trees 5 8 "$T/src/$P/2:2" "$T/src/$Q/1:3"
BS=$(cat "${B#@}")
txn_state() { # TRANSACTIONAL-ID -> TransactionState at the coordinator
  "$SRC/scripts/kafka" cli org.apache.kafka.tools.TransactionsCommand \
    --bootstrap-server "$BS" describe --transactional-id "$1" 2>"$T/txn.err" |
    awk 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "TransactionState") c = i }
         NR == 2 && c { print $c }'
}

start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned' 60
publish "$Q" 1 "$T/src/$Q/1" >/dev/null
wait_current "$L" "$Q" 1 60
wait_lag0_bounded "$S" 60

"$PKGPUB" -b "$B" -p "$P" -V 1 -t "$TXID" --chunk-size 65536 --schema 1 --no-progress \
  -X queue.buffering.max.messages=1 -X linger.ms=50 \
  -X message.timeout.ms=5000 -X transaction.timeout.ms=300000 \
  "$T/src/$P/1" >"$T/failing.out" 2>"$T/failing.err" &
FPID=$!; PIDS+=($FPID)
lag=0
for _ in $(seq 60); do
  kill -0 $FPID 2>/dev/null || fail "pkgpub ended before the outage: $(cat "$T/failing.out" "$T/failing.err")"
  lag=$(lag_total_bounded "$S")
  [ "$lag" -ge 20 ] && break
  sleep 0.2
done
[ "$lag" -ge 20 ] || fail "no chunks of the update in the log after 60 polls (lag $lag)"
"$SRC/scripts/kafka" stop --dir "$KAFKA_STATE" >"$T/kafka-stop.log" 2>&1 ||
  { cat "$T/kafka-stop.log"; fail "scripts/kafka stop failed"; }
t0=$SECONDS
log "broker stopped with $lag chunk(s) of the update in the log"
sleep 40
kill -0 $FPID 2>/dev/null ||
  log "pkgpub gave up while the broker was down (so it could not abort): $(grep '^pkgpub' "$T/failing.err" | cut -c1-200)"
"$SRC/scripts/kafka" start --dir "$KAFKA_STATE" >/dev/null 2>"$T/kafka-start2.log" ||
  { cat "$T/kafka-start2.log"; fail "scripts/kafka restart failed"; }
log "broker up again after $((SECONDS - t0)) s"

rc=
for _ in $(seq 900); do
  kill -0 $FPID 2>/dev/null || { rc=0; wait $FPID || rc=$?; break; }
  sleep 0.1
done
[ -n "$rc" ] || fail "pkgpub still running 90 s after the broker came back"
forget_pid $FPID
# Ended: CompleteAbort, or Empty when the abort went through the epoch
# bump that librdkafka does after timed-out events (the coordinator
# aborts the transaction as part of InitProducerId); never Ongoing.
state=$(txn_state "$TXID")
case $state in
  CompleteAbort|Empty) log "transaction $TXID at the coordinator: $state" ;;
  *) fail "transaction $TXID is '$state' at the coordinator, expected it ended (CompleteAbort or Empty) ($(cat "$T/txn.err"))" ;;
esac

[ "$rc" != 0 ] || fail "pkgpub exited 0 after its transaction failed: $(cat "$T/failing.out")"
grep -q "published" "$T/failing.out" && fail "pkgpub printed 'published': $(cat "$T/failing.out")"
grep -q "^pkgpub: .*transactional id $TXID) was aborted" "$T/failing.err" ||
  fail "pkgpub does not say that transaction $TXID was aborted: $(grep '^pkgpub' "$T/failing.err")"
log "pkgpub exited $rc: $(grep '^pkgpub' "$T/failing.err" | cut -c1-200 | tr '\n' '|')"

# Same package (same partition), another transactional id: installs at
# once; an open transaction would hold it back for 300 s.
publish "$P" 2 "$T/src/$P/2" -t "other-$RUN" >/dev/null
wait_current "$L" "$P" 2 30
assert_same_tree "$T/src/$P/2" "$L/$P/current/"
wait_lag0_bounded "$S" 60
grep -q "msg=update-started .*package=$P version=1 " "$T/w1.log" &&
  fail "the worker started the aborted update: $(grep -m1 "msg=update-started .*package=$P version=1 " "$T/w1.log")"
stop_worker w1
no_staging_left "$L"
log "PASS"
