#!/usr/bin/env bash
# Broker restart in the middle of an update (Apache Kafka only: the
# embedded broker keeps nothing across a restart). A ~64 MiB
# incompressible update is published; the site reads it at 6 MiB/s (a
# client quota, consumer_byte_rate: a schema 2 version's parts otherwise
# came in ~1 s, before the broker was down). When the worker has started
# it, the broker is frozen for a moment (SIGSTOP), then stopped with
# scripts/kafka stop (a controlled shutdown still serves fetches for a
# second or two), kept down ~5 s and started again from the same directory
# (same ports, topics, offsets, quota). The update must still be
# unfinished when the broker is down.
# The worker must say so in its log (kafka-error), recover by itself,
# finalize the update exactly once, byte-identical, and commit: lag 0.
if [ "${DESPOOL_BROKER:-embedded}" != kafka ]; then
  echo "[t11-broker-restart] SKIP: needs Apache Kafka (DESPOOL_BROKER=kafka); the embedded broker cannot be restarted"
  exit 77
fi
if [ -n "${DESPOOL_BOOTSTRAP:-}" ]; then
  echo "[t11-broker-restart] SKIP: restarts its own broker; unset DESPOOL_BOOTSTRAP"
  exit 77
fi
. "$(dirname "$0")/lib.sh"

P=$(pkg big); S=$(site dp); L=$T/lib
# Many 8 KiB files of random data that zstd cannot shrink.
python3 - "$T/src/$P/1" "${DESPOOL_T11_FILES:-8000}" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(int(sys.argv[2])):
    sub = os.path.join(d, "d%02d" % (i % 40))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%05d.bin" % i), "wb") as f:
        f.write(os.urandom(8192))
with open(os.path.join(d, "VERSION"), "w") as f:
    f.write("seed 1\n")
with open(os.path.join(d, "run.sh"), "w") as f:
    f.write("#!/bin/sh\necho seed 1\n")
os.chmod(os.path.join(d, "run.sh"), 0o755)
PY
publish "$P" 1 "$T/src/$P/1" >"$T/pub.json"
log "published: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["chunks"], "chunks,", j["zsize"], "bytes")' "$T/pub.json")"

kafka_client_quota consumer_byte_rate=6291456 >"$T/quota.out"
start_sampler smp "$L" "$T/src" "$P"
start_worker w1 "$S" "$L"
W=$(wpid w1)
wait_log w1 "msg=update-started .*package=$P version=1" 60
KPID=$(cat "$KAFKA_STATE/kafka.pid")
kill -STOP "$KPID"
sleep 0.5
grep -q "msg=finalized .*package=$P " "$T/w1.log" &&
  fail "update finalized before the broker went down; make the tree bigger or the quota smaller"
t0=$SECONDS
"$SRC/scripts/kafka" stop --dir "$KAFKA_STATE" >"$T/kafka-stop.log" 2>&1 & STOPPER=$!
sleep 0.3
kill -CONT "$KPID"
wait $STOPPER || { cat "$T/kafka-stop.log"; fail "scripts/kafka stop failed"; }
grep -q "msg=finalized .*package=$P " "$T/w1.log" &&
  fail "update finalized while the broker was shutting down: not mid-update at the outage; make the tree bigger (DESPOOL_T11_FILES) or the quota smaller"
log "broker stopped in $((SECONDS - t0)) s with the update unfinished"
sleep 5
kill -0 "$W" 2>/dev/null || fail "worker died while the broker was down"
"$SRC/scripts/kafka" start --dir "$KAFKA_STATE" >/dev/null 2>"$T/kafka-start2.log" ||
  { cat "$T/kafka-start2.log"; fail "scripts/kafka restart failed"; }
log "broker up again after $((SECONDS - t0)) s"

wait_log w1 "msg=kafka-error " 30
log "outage logged: $(grep -m1 'msg=kafka-error ' "$T/w1.log" | cut -c1-200)"
wait_current "$L" "$P" 1 120
assert_same_tree "$T/src/$P/1" "$L/$P/current/"
wait_lag0_bounded "$S" 90
sleep 1
n=$(grep -c "msg=finalized .*package=$P " "$T/w1.log" || true)
[ "$n" = 1 ] || fail "update finalized $n times, expected exactly once"
assert_sampler_clean smp
log "update-started lines: $(grep -c "msg=update-started .*package=$P " "$T/w1.log" || true), \
kafka-error lines: $(grep -c 'msg=kafka-error ' "$T/w1.log" || true)"
stop_worker w1
no_staging_left "$L"
log "PASS"
