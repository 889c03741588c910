#!/usr/bin/env bash
# despooler lag --watch: Burrow-style verdicts over a window of samples.
# A caught-up site is OK (exit 0). A frozen worker (SIGSTOP) with updates
# published behind it is STALL within one window (group ERR, exit 2),
# then STOP once --stop-after passes without a commit. Thawed, it catches
# up and the verdict returns to OK. Several sites at once: --site twice,
# and --all-sites on Apache Kafka (the embedded broker lacks ListGroups
# and says so, exit 3). --json: one object per sample, stable fields.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); S2=$(site idle); L=$T/lib
make_tree "$T/src" 1 3 4
start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned ' 60
publish "$P" 1 "$T/src" >/dev/null
wait_current "$L" "$P" 1 60
wait_lag0_bounded "$S" 60

# watch SAMPLES EXTRA...: JSON lines into $T/watch.out; exit code in $WRC.
watch() {
  local n=$1; shift
  WRC=0
  "$DESPOOLER" lag -b "$B" --site "$S" --json --watch 1 --count "$n" "$@" \
    >"$T/watch.out" 2>"$T/watch.err" || WRC=$?
  [ "$(wc -l <"$T/watch.out")" = "$n" ] || fail "watch printed $(wc -l <"$T/watch.out") lines for $n samples: $(cat "$T/watch.err")"
}
# last_status: group status and the set of partition statuses of the
# last sample, e.g. "ERR STALL,OK".
last_status() {
  tail -1 "$T/watch.out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(j["group_status"], ",".join(sorted({p["status"] for p in j["partitions"]})))'
}

watch 3 --window 3
[ "$(last_status)" = "OK OK" ] || fail "caught up: expected OK, got $(last_status)"
[ $WRC = 0 ] || fail "caught up: exit $WRC, expected 0"
first=$(head -1 "$T/watch.out" | python3 -c 'import json,sys; print(",".join(sorted({p["status"] for p in json.load(sys.stdin)["partitions"]})))')
[ "$first" = "-" ] || fail "first sample has verdicts before a window: $first"
log "caught up: OK, exit 0"

# Freeze the worker, publish behind it.
kill -STOP "$(wpid w1)"
publish "$P" 2 "$T/src" >/dev/null
publish "$P" 3 "$T/src" >/dev/null
watch 4 --window 3 --stop-after 60
[ "$(last_status)" = "ERR OK,STALL" ] || fail "frozen worker: expected ERR OK,STALL, got $(last_status)"
[ $WRC = 2 ] || fail "frozen worker: exit $WRC, expected 2"
log "frozen worker: STALL within the window, group ERR, exit 2"
watch 4 --window 3 --stop-after 2
[ "$(last_status)" = "ERR OK,STOP" ] || fail "frozen worker, --stop-after 2: expected ERR OK,STOP, got $(last_status)"
log "no commit for longer than --stop-after: STOP"

# The table shows the same, with a STATUS column and the group's status.
"$DESPOOLER" lag -b "$B" --site "$S" --watch 1 --count 3 --window 2 >"$T/watch.txt" 2>&1 || true
grep -qE 'pkg\.updates +[0-9]+ .* STALL$' "$T/watch.txt" || fail "table has no STALL row: $(tail -12 "$T/watch.txt")"
grep -qE '^GROUP .* STATUS ERR$' "$T/watch.txt" || fail "table has no group STATUS ERR"

kill -CONT "$(wpid w1)"
wait_current "$L" "$P" 3 90
wait_lag0_bounded "$S" 90
watch 3 --window 3
[ "$(last_status)" = "OK OK" ] || fail "after catching up: expected OK, got $(last_status)"
[ $WRC = 0 ] || fail "after catching up: exit $WRC"
log "thawed and caught up: OK, exit 0"

# Several sites: S is caught up, S2 never consumed anything (lag = every
# event still in the topic: its partitions STALL, group ERR).
rc=0
"$DESPOOLER" lag -b "$B" --site "$S" --site "$S2" --json --watch 1 --count 3 --window 2 \
  >"$T/two.out" 2>"$T/two.err" || rc=$?
python3 - "$T/two.out" "$S" "$S2" <<'PY' || fail "two sites: unexpected output (above)"
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
g = {x["group"]: x for x in last["groups"]}
s, s2 = g["despool." + sys.argv[2]], g["despool." + sys.argv[3]]
print("two sites:", s["group_status"], s2["group_status"], s2["total_lag"])
assert s["group_status"] == "OK" and s["total_lag"] == 0
assert s2["group_status"] == "ERR" and s2["total_lag"] >= 3
PY
[ $rc = 2 ] || fail "two sites, one ERR: exit $rc, expected 2"

rc=0
"$DESPOOLER" lag -b "$B" --all-sites --json >"$T/all.out" 2>"$T/all.err" || rc=$?
if [ "$BROKER_KIND" = kafka ]; then
  [ $rc = 0 ] || fail "--all-sites: exit $rc: $(cat "$T/all.err")"
  python3 -c 'import json,sys; g=[x["group"] for x in json.load(open(sys.argv[1]))["groups"]]; sys.exit(0 if "despool."+sys.argv[2] in g else 1)' \
    "$T/all.out" "$S" || fail "--all-sites does not list despool.$S: $(cat "$T/all.out")"
  log "--all-sites lists despool.$S"
else
  [ $rc = 3 ] || fail "--all-sites on the embedded broker: exit $rc, expected 3"
  grep -q 'does not implement ListGroups' "$T/all.err" || fail "--all-sites: no clear message: $(cat "$T/all.err")"
  log "--all-sites on the embedded broker: exit 3, $(cat "$T/all.err")"
fi
stop_worker w1
log "PASS"
