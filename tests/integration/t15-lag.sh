#!/usr/bin/env bash
# despooler lag: while a worker runs and after it stopped and N updates
# were published, the numbers equal those of Kafka's own
# kafka-consumer-groups --describe for the same group at the same moment
# (real Kafka: every column they share); thresholds give exit 1 and 2;
# TIME-LAG grows while behind; after catching up, lag 0 and exit 0.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib; G=despool.$S
make_tree "$T/src" 1 3 4
lagjson() { "$DESPOOLER" lag -b "$B" --site "$S" --json; }

# compare_with_kafka: parse both tools' output and compare per partition.
compare_with_kafka() {
  [ "$BROKER_KIND" = kafka ] || return 0
  local bs; bs=$(cat "$KAFKA_STATE/bootstrap")
  "$SRC/scripts/kafka" cli kafka-consumer-groups --bootstrap-server "$bs" \
    --describe --group "$G" >"$T/kcg.txt" 2>/dev/null || fail "kafka-consumer-groups failed"
  lagjson >"$T/ours.json"
  python3 - "$T/kcg.txt" "$T/ours.json" "$1" <<'PY' || fail "lag differs from kafka-consumer-groups (see above)"
import json, sys
kcg, ours, members = open(sys.argv[1]).read().splitlines(), json.load(open(sys.argv[2])), sys.argv[3]
rows = [l.split() for l in kcg if l.startswith("despool.")]
assert rows, "kafka-consumer-groups printed no rows:\n" + "\n".join(kcg)
mine = {p["partition"]: p for p in ours["partitions"]}
val = lambda v: "-" if v is None else str(v)
bad = 0
for r in rows:
    part = int(r[2])
    m = mine[part]
    theirs = {"current_offset": r[3], "log_end_offset": r[4], "lag": r[5]}
    if members == "members":
        theirs.update(consumer_id=r[6], host=r[7], client_id=r[8])
    for k, v in theirs.items():
        if val(m[k]) != v:
            print(f"partition {part} {k}: kafka-consumer-groups {v}, despooler lag {val(m[k])}")
            bad = 1
print(f"compared {len(rows)} partitions with kafka-consumer-groups ({members})")
sys.exit(bad)
PY
}

start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned .*partitions=[0-9]'
for i in 1 2 3; do publish "$(pkg p$i)" 1 "$T/src" >/dev/null; done
for i in 1 2 3; do wait_current "$L" "$(pkg p$i)" 1; done
wait_lag0 "$S"
compare_with_kafka members

stop_worker w1
N=6
for i in 1 2 3; do for v in 2 3; do publish "$(pkg p$i)" $v "$T/src" >/dev/null; done; done
sleep 2
lagjson >"$T/behind.json"
python3 - "$T/behind.json" "$N" "$BROKER_KIND" <<'PY' || fail "lag while behind is wrong"
import json, sys
d, n, kind = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
# each publish is one chunk event (+ one transaction marker on real Kafka)
want = n * (2 if kind == "kafka" else 1)
assert d["total_lag"] == want, (d["total_lag"], want)
assert sum(p["lag"] or 0 for p in d["partitions"]) == want
assert d["max_time_lag_ms"] >= 1500, d["max_time_lag_ms"]
for p in d["partitions"]:
    if p["lag"]:
        assert p["time_lag_ms"] is not None and p["time_lag_ms"] >= 1500, p
print("total lag", d["total_lag"], "max time lag ms", d["max_time_lag_ms"])
PY
compare_with_kafka no-members

rc=0; "$DESPOOLER" lag -b "$B" --site "$S" --warn-lag 1 >/dev/null || rc=$?
[ $rc = 1 ] || fail "--warn-lag 1 while behind: exit $rc, expected 1"
rc=0; "$DESPOOLER" lag -b "$B" --site "$S" --warn-lag 1 --crit-lag 2 >/dev/null || rc=$?
[ $rc = 2 ] || fail "--crit-lag 2 while behind: exit $rc, expected 2"
rc=0; "$DESPOOLER" lag -b "$B" --site "$S" --max-time-lag 1 >/dev/null || rc=$?
[ $rc = 2 ] || fail "--max-time-lag 1 while 2 s behind: exit $rc, expected 2"

start_worker w2 "$S" "$L"
for i in 1 2 3; do wait_current "$L" "$(pkg p$i)" 3; done
wait_lag0 "$S"
rc=0; "$DESPOOLER" lag -b "$B" --site "$S" --warn-lag 1 --crit-lag 2 --max-time-lag 60 >"$T/ok.txt" || rc=$?
[ $rc = 0 ] || fail "caught up: exit $rc, expected 0: $(cat "$T/ok.txt")"
compare_with_kafka members
grep -q "GROUP $G STATE" "$T/ok.txt" || fail "no group line"
stop_worker w2
log "PASS"
