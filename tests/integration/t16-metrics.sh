#!/usr/bin/env bash
# `despooler run --metrics`: /metrics in Prometheus' text format and
# /healthz. A worker serves on a free port; a scrape before and after an
# update, a duplicate and a garbage event shows the counters move by
# exactly what happened; the per-partition lag gauge sums to the events
# published and then falls to 0; /healthz is 200 while the worker holds its
# assignment and the broker answers, and 503 (naming the cause) while the
# broker is down; on Apache Kafka it is 200 again once the broker is back.
# The standard process_* series are there with sane values (the worker's
# descriptors and start time as /proc and ps see them), and
# despool_build_info carries the version `despooler --version` prints.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/lib
make_tree "$T/src/1" 1 20 8

start_worker w1 "$S" "$L" --metrics 127.0.0.1:0
wait_log w1 'msg=metrics-listening ' 30
A=$(grep -m1 'msg=metrics-listening ' "$T/w1.log" | sed -E 's/.* addr=([^ ]+).*/\1/')
log "metrics at http://$A"

scrape() { curl -fsS --max-time 10 "http://$A/metrics" >"$T/$1.prom" || fail "scrape /metrics failed"; }
# value SCRAPE SERIES: the sample's value, or "none".
value() { awk -v s="$2" '$1 == s { print $2; f = 1 } END { if (!f) print "none" }' "$T/$1.prom"; }
lag_sum() { awk '$1 ~ /^despool_consumer_lag\{/ { s += $2; n++ } END { print n ? s : "none" }' "$T/$1.prom"; }
healthz() { curl -s -o "$T/healthz.body" -w '%{http_code}' --max-time 15 "http://$A/healthz" || true; }
wait_health() { # CODE SECONDS
  local c=
  for _ in $(seq $(($2 * 2))); do
    c=$(healthz); [ "$c" = "$1" ] && return 0
    sleep 0.5
  done
  fail "/healthz is $c ($(cat "$T/healthz.body" 2>/dev/null)), expected $1 after $2 s"
}

wait_log w1 'msg=assigned ' 60
wait_health 200 30
log "healthz: $(cat "$T/healthz.body")"
scrape before
# The exposition format: every sample is NAME[{LABELS}] VALUE, every
# family has HELP and TYPE, counters end in _total.
python3 - "$T/before.prom" <<'PY' || fail "malformed exposition (see above)"
import re, sys
typed, bad = {}, []
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    m = re.match(r"# TYPE (\S+) (counter|gauge|histogram)$", line)
    if m:
        typed[m.group(1)] = m.group(2); continue
    if line.startswith("# HELP ") or not line:
        continue
    m = re.match(r'([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+]+|\+Inf)$', line)
    if not m:
        bad.append(line); continue
    name = m.group(1)
    fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
    if fam not in typed:
        bad.append("untyped: " + line)
    elif typed[fam] == "counter" and not name.endswith("_total"):
        bad.append("counter without _total: " + line)
for b in bad:
    print("bad line:", b)
sys.exit(1 if bad or len(typed) < 12 else 0)
PY
for s in despool_updates_finalized_total despool_events_received_total \
         despool_extracted_bytes_total despool_finalize_duration_seconds_count \
         'despool_events_dead_lettered_total{reason="bad-schema"}' \
         'despool_updates_discarded_total{reason="duplicate"}'; do
  [ "$(value before "$s")" = 0 ] || fail "before any update: $s is $(value before "$s"), expected 0"
done
[ "$(value before despool_assigned_partitions)" -ge 1 ] || fail "no partition assigned in the scrape"
# The standard process_* series and the build's version.
python3 - "$T/before.prom" "$(wpid w1)" "$("$DESPOOLER" --version | sed -n '1s/^despooler //p')" <<'PY' ||
import os, sys, time
prom, pid, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
v = {}
for line in open(prom):
    if not line.startswith("#") and " " in line:
        k, x = line.rsplit(" ", 1)
        v[k] = float(x)
bad = []
need = ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
        "process_open_fds", "process_max_fds", "process_start_time_seconds"]
for n in need:
    if n not in v:
        bad.append("missing " + n)
if not bad:
    if not v["process_resident_memory_bytes"] > 0: bad.append("rss not > 0")
    if not v["process_virtual_memory_bytes"] >= v["process_resident_memory_bytes"]: bad.append("vsize < rss")
    if not 0 < v["process_open_fds"] <= v["process_max_fds"]: bad.append("open fds not in 1..max")
    # The worker's own descriptors, as the kernel counts them (+-2 for the
    # scrape's socket and the read of /proc/self/fd).
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    if abs(v["process_open_fds"] - fds) > 2: bad.append(f"open fds {v['process_open_fds']} vs /proc: {fds}")
    if not 0 <= v["process_cpu_seconds_total"] < 3600: bad.append("cpu seconds out of range")
    now = time.time()
    if not now - 3600 < v["process_start_time_seconds"] <= now + 1: bad.append("start time not within the last hour")
    # The start time /proc says, via ps(1)'s etimes (seconds since start).
    et = float(os.popen(f"ps -o etimes= -p {pid}").read())
    if abs(now - et - v["process_start_time_seconds"]) > 2: bad.append(f"start time vs ps etimes {et}")
key = f'despool_build_info{{version="{version}"}}'
if v.get(key) != 1:
    bad.append(f"no {key} 1 (version from despooler --version)")
for b in bad:
    print("process/build series:", b)
sys.exit(1 if bad or not version else 0)
PY
  fail "process_* or despool_build_info series wrong (above)"

# One update, one duplicate of it, one garbage event.
publish "$P" 1 "$T/src/1" >"$T/pub.json"
read -r SIZE ZSIZE CHUNKS < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["size"], j["zsize"], j["chunks"])' "$T/pub.json")
wait_current "$L" "$P" 1 60
publish "$P" 1 "$T/src/1" >/dev/null
printf 'not msgpack' >"$T/garbage"
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/garbage" || fail "put garbage"
wait_log w1 "msg=discarded .*package=$P .*reason=duplicate" 60
wait_log w1 'msg=dead-lettered .*reason=bad-schema' 60
wait_lag0_bounded "$S" 60
# Gauges are sampled every second: wait for the lag gauge to reach 0.
for _ in $(seq 40); do
  scrape after
  [ "$(lag_sum after)" = 0 ] && break
  sleep 0.5
done
[ "$(lag_sum after)" = 0 ] || fail "despool_consumer_lag sums to $(lag_sum after) after lag 0 in Kafka"
check() { # SERIES EXPECTED
  local v; v=$(value after "$1")
  [ "$v" = "$2" ] || fail "after: $1 is $v, expected $2"
}
check despool_updates_finalized_total 1
check despool_extracted_bytes_total "$SIZE"
check despool_events_received_total $((2 * CHUNKS + 1))
check despool_finalize_duration_seconds_count 1
check despool_update_duration_seconds_count 1
check 'despool_finalize_duration_seconds_bucket{le="+Inf"}' 1
check 'despool_updates_discarded_total{reason="duplicate"}' 1
check 'despool_events_dead_lettered_total{reason="bad-schema"}' 1
check despool_updates_in_flight 0
rb=$(value after despool_received_bytes_total)
[ "$rb" -gt $((2 * ZSIZE)) ] || fail "received bytes $rb, expected > 2 x zsize $ZSIZE"
log "after: finalized=1 received_bytes=$rb extracted_bytes=$SIZE commits=$(value after despool_offset_commits_total)"

# An update whose chunks stop after chunk 0 holds its partition's commit
# point: the lag gauge shows it, partition by partition exactly as
# `despooler lag` reads it from the group, and in_flight is 1.
tar -C "$T/src/1" -cf "$T/src.tar" .
python3 "$SRC/tests/integration/mkevent.py" --package "$P" --version 9 \
  --tar "$T/src.tar" --out "$T/part" --chunks 3 --only 0 >/dev/null
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/part.0" || fail "put chunk 0"
wait_log w1 "msg=update-started .*package=$P version=9 " 60
ok=0
for _ in $(seq 40); do
  sleep 0.5
  scrape held
  "$DESPOOLER" lag -b "$B" --site "$S" --json >"$T/lag.json" || continue
  python3 - "$T/held.prom" "$T/lag.json" <<'PY' && { ok=1; break; }
import json, re, sys
gauge = {}
for line in open(sys.argv[1]):
    m = re.match(r'despool_consumer_lag\{topic="pkg.updates",partition="(\d+)"\} (\d+)$', line)
    if m:
        gauge[int(m.group(1))] = int(m.group(2))
# A partition the group never committed: Kafka shows "-"; the gauge
# counts it from the log start (0 here: nothing was deleted).
kafka = {r["partition"]: r["lag"] if r["lag"] is not None else r["log_end_offset"]
         for r in json.load(open(sys.argv[2]))["partitions"]}
sys.exit(0 if sum(gauge.values()) >= 1 and gauge == kafka else 1)
PY
done
[ $ok = 1 ] || fail "lag gauge $(grep '^despool_consumer_lag{' "$T/held.prom" | tr '\n' ' ') differs from despooler lag: $(cat "$T/lag.json")"
[ "$(value held despool_updates_in_flight)" = 1 ] || fail "in_flight is $(value held despool_updates_in_flight), expected 1"
log "held: lag gauge = despooler lag per partition (total $(lag_sum held)), in_flight 1"

# Broker down: /healthz says so; the worker keeps running.
if [ "$BROKER_KIND" = kafka ]; then
  "$SRC/scripts/kafka" stop --dir "$KAFKA_STATE" >/dev/null 2>&1 || fail "scripts/kafka stop failed"
else
  kill -TERM "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; forget_pid "$BROKER_PID"
fi
wait_health 503 30
log "broker down: healthz 503: $(cat "$T/healthz.body")"
grep -q 'broker unreachable' "$T/healthz.body" || fail "503 body does not name the broker: $(cat "$T/healthz.body")"
kill -0 "$(wpid w1)" || fail "worker died with the broker down"
scrape down
[ "$(value down 'despool_errors_total{kind="kafka"}')" -ge 1 ] || fail "kafka errors not counted while the broker is down"
if [ "$BROKER_KIND" = kafka ]; then
  "$SRC/scripts/kafka" start --dir "$KAFKA_STATE" >/dev/null 2>"$T/kafka-start2.log" ||
    { cat "$T/kafka-start2.log"; fail "scripts/kafka restart failed"; }
  wait_health 200 90
  log "broker back: healthz 200: $(cat "$T/healthz.body")"
  stop_worker w1
else
  kill9_worker w1 # the embedded broker cannot come back on its port
fi
log "PASS"
