#!/usr/bin/env bash
# Regression (issue 11, defect 2): no use-after-free when a dead letter
# cannot be delivered. Runs the ASan+UBSan build of the worker
# (DESPOOL_ASAN_BIN, default $SRC/build-asan: scripts/test builds it; a
# missing or non-ASan binary fails this test, it is never skipped).
# Apache Kafka only: the DLQ is made unwritable the way a partition
# without a leader is (a dead letter waits until message.timeout.ms, then
# fails): pkg.updates.dlq is deleted, and the worker runs with
# -X allow.auto.create.topics=false so that its producer does not create
# it again; it is created again later. (On one broker min.insync.replicas
# cannot refuse: Kafka caps it at the replica count. The embedded broker
# cannot take a partition's leader away from outside: that would need a
# test hook in `despooler dev-broker`.)
# The worker runs with -X queue.buffering.max.messages=1
# -X message.timeout.ms=1500 --max-update-size 100 and gets a 5-chunk update
# (refused as too-large at chunk 0). Chunk 0's dead letter fills the
# producer queue; dead_letter() for chunk 1 polls the producer while the
# queue is full, the poll delivers chunk 0's failure, on_delivery rewinds
# the partition and frees the update's flight, which chunk_to_flight (and
# refuse_update, dead_letter_consumed) then used: an ASan report.
# Checks: no ASan/UBSan report, the worker keeps running, nothing of the
# rejected update is committed while the DLQ is missing (lag >= 5); once
# the DLQ exists again, all 5 chunks are
# dead-lettered (reason too-large, one per source offset at least), the
# site reaches lag 0 without a restart, and the worker stops cleanly.
if [ "${DESPOOL_BROKER:-embedded}" != kafka ] || [ -n "${DESPOOL_BOOTSTRAP:-}" ]; then
  echo "[t29-dlq-undeliverable-asan] SKIP: needs its own Apache Kafka (DESPOOL_BROKER=kafka, no DESPOOL_BOOTSTRAP): the embedded broker cannot take a DLQ partition's leader away"
  exit 77
fi
. "$(dirname "$0")/lib.sh"

ASAN_BIN=${DESPOOL_ASAN_BIN:-$SRC/build-asan}
[ -x "$ASAN_BIN/despooler" ] ||
  fail "no ASan build at $ASAN_BIN/despooler (bash scripts/build asan, or set DESPOOL_ASAN_BIN)"
{ ldd "$ASAN_BIN/despooler" || true; } >"$T/ldd.txt"; grep -q libasan "$T/ldd.txt" ||
  fail "$ASAN_BIN/despooler is not an ASan build (no libasan)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

P=$(pkg big); S=$(site dp); L=$T/lib
BS=$(cat "$KAFKA_STATE/bootstrap")
ktopics() { "$SRC/scripts/kafka" cli kafka-topics --bootstrap-server "$BS" "$@" >>"$T/kafka-topics.log" 2>&1; }
# The report's first line and the first frames of its first stack.
sanitizer_report() {
  grep -qE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$T/w1.log" || return 0
  grep -m1 -E 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$T/w1.log"
  grep -m6 -E '^ +#[0-9]+ ' "$T/w1.log" || true
}

make_tree "$T/src" 1 20 16
tar -C "$T/src" -cf "$T/src.tar" .
python3 "$SRC/tests/integration/mkevent.py" --package "$P" --version 1 \
  --tar "$T/src.tar" --out "$T/ev" --chunks 5 >/dev/null || fail "mkevent"

DESPOOLER=$ASAN_BIN/despooler start_worker w1 "$S" "$L" --max-update-size 100 \
  -X queue.buffering.max.messages=1 -X message.timeout.ms=1500 \
  -X allow.auto.create.topics=false
wait_log w1 'msg=assigned .*partitions=[0-9]' 60
ktopics --delete --topic pkg.updates.dlq || fail "kafka-topics --delete failed: $(tail -3 "$T/kafka-topics.log")"
log "pkg.updates.dlq deleted: dead letters time out"

"$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$P" "$T"/ev.{0,1,2,3,4} || fail "put the 5 chunks"
# Chunk 0's dead letter fails after 1.5 s; let several rewinds and retries run.
sleep 10
r=$(sanitizer_report)
[ -z "$r" ] || fail "sanitizer report while the DLQ was missing: $r"
kill -0 "$(wpid w1)" 2>/dev/null || fail "worker died while the DLQ was missing writes"
nfail=$(grep -c 'msg=dead-letter-failed ' "$T/w1.log" || true)
[ "$nfail" -ge 1 ] || fail "no dead-letter-failed logged: was the DLQ really refusing?"
lag=$(lag_total_bounded "$S")
[ "$lag" -ge 5 ] || fail "lag $lag while the dead letters could not be written: the rejected update was committed"
ktopics --list
grep -qx pkg.updates.dlq "$T/kafka-topics.log" && fail "pkg.updates.dlq exists again (auto-created?)"
log "DLQ missing: $nfail dead-letter-failed line(s), worker alive, lag $lag, no sanitizer report"

ktopics --create --topic pkg.updates.dlq --partitions 6 --replication-factor 1 ||
  fail "kafka-topics --create failed: $(tail -3 "$T/kafka-topics.log")"
log "pkg.updates.dlq created again"
wait_lag0_bounded "$S" 60
"$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq2" || fail "dump dlq"
offs=$(grep "key=$P .*h.despool.reason=\"too-large\"" "$T/dlq2" |
       grep -o 'h.despool.offset="[0-9]*"' | sort -u | tr -d '\n' || true)
want='h.despool.offset="0"h.despool.offset="1"h.despool.offset="2"h.despool.offset="3"h.despool.offset="4"'
[ "$offs" = "$want" ] || fail "dead letters of offsets 0-4 expected in the DLQ, got: ${offs:-none}"
n=$(grep -c "key=$P " "$T/dlq2" || true)
log "DLQ writable again: $n dead letter(s) for the 5 chunks, lag 0"
r=$(sanitizer_report)
[ -z "$r" ] || fail "sanitizer report: $r"
stop_worker w1
r=$(sanitizer_report)
[ -z "$r" ] || fail "sanitizer report at exit: $r"
log "PASS"
