#!/usr/bin/env bash
# Regression (issue 11, defect 9b): the worker says plainly when events
# it was due to read are gone (its committed offset is older than the
# partition's first offset: retention deleted them, and the consumer's
# offset reset skipped them). The old worker went on from the first
# available offset without a word.
# A package is installed (the site commits offset 1 on partition 0) and
# the worker stops; four 3-chunk updates of ~2 MiB of random data follow
# on partition 0 (ktool -p 0). The oldest events then go: on the embedded
# broker by its own limit (it keeps ~5 MiB per partition, this is ~8 MiB);
# on Apache Kafka by kafka-delete-records up to the third update's first
# chunk. The worker starts again. Checks: one warning line
#   msg=events-missing partition=0 expected_offset=1 first_offset=Y missing=Y-1
# (Y the partition's first offset, read from the broker; other fields such
# as site= may come too, in any order), the updates
# whose events are all still there install, and the site ends at lag 0.
PARTITIONS=${PARTITIONS:-1}
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
mkev() { # PKG VERSION OUT CHUNKS SRC: events OUT.<i>
  tar -C "$5" -cf "$3.tar" .
  python3 "$SRC/tests/integration/mkevent.py" --package "$1" --version "$2" \
    --tar "$3.tar" --out "$3" --chunks "$4" >/dev/null || fail "mkevent $1"
}
put0() { "$KTOOL" put -b "$B" -t pkg.updates -p 0 "$@" >/dev/null || fail "ktool put $*"; }

P0=$(pkg first)
make_tree "$T/src0" 1 3 4
mkev "$P0" 1 "$T/e0" 1 "$T/src0"
start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned .*partitions=[0-9]' 60
put0 -k "$P0" "$T/e0.0"
wait_current "$L" "$P0" 1 60
wait_lag0_bounded "$S" 30
stop_worker w1
X=$("$DESPOOLER" lag -b "$B" --site "$S" --json | python3 -c '
import json, sys
print([p for p in json.load(sys.stdin)["partitions"] if p["partition"] == 0][0]["current_offset"])')
[ "$X" = 1 ] || fail "committed offset on partition 0 is $X, expected 1"
log "site committed offset $X on partition 0; worker stopped"

# Four updates, offsets 1-3, 4-6, 7-9, 10-12.
PK=()
for i in 1 2 3 4; do
  PK+=("$(pkg up$i)")
  make_random_tree "$T/src$i" "$i" 2
  mkev "${PK[-1]}" 1 "$T/e$i" 3 "$T/src$i"
  put0 -k "${PK[-1]}" "$T/e$i".{0,1,2}
done
if [ "$BROKER_KIND" = kafka ]; then
  BS=$(cat "$KAFKA_STATE/bootstrap")
  # Kafka refuses to delete records of a compact-only topic (pkg.updates
  # is compacted for schema v2): retention is what this scenario is about.
  kafka_topic_config pkg.updates 'cleanup.policy=[compact,delete]' 
  printf '{"version":1,"partitions":[{"topic":"pkg.updates","partition":0,"offset":7}]}\n' >"$T/del.json"
  "$SRC/scripts/kafka" cli org.apache.kafka.tools.DeleteRecordsCommand --bootstrap-server "$BS" \
    --offset-json-file "$T/del.json" >"$T/delete-records.log" 2>&1 ||
    fail "kafka-delete-records failed: $(tail -3 "$T/delete-records.log")"
  log "kafka-delete-records: partition 0 starts at offset 7"
fi
"$KTOOL" dump -b "$B" -t pkg.updates >"$T/dump" || fail "dump pkg.updates"
Y=$(grep -m1 '^partition=0 ' "$T/dump" | sed -E 's/.* offset=([0-9]+) .*/\1/')
[ -n "$Y" ] && [ "$Y" -gt "$X" ] || fail "partition 0 starts at offset '${Y}': nothing was deleted, the scenario does not hold"
log "partition 0 now starts at offset $Y: offsets $X-$((Y - 1)) are gone"

start_worker w2 "$S" "$L"
wait_log w2 'msg=assigned .*partitions=[0-9]' 60
want=()
for i in 1 2 3 4; do
  [ $((1 + 3 * (i - 1))) -ge "$Y" ] && want+=("${PK[i - 1]}=1")
done
[ ${#want[@]} -ge 1 ] || fail "no update left whole after offset $Y"
wait_versions "$L" 60 "${want[@]}"
wait_lag0_bounded "$S" 30
log "updates left whole installed: ${want[*]}"
line=$(grep -m1 'msg=events-missing ' "$T/w2.log" || true)
[ -n "$line" ] || fail "no msg=events-missing line: the worker skipped offsets $X-$((Y - 1)) of partition 0 silently"
log "$(echo "$line" | cut -c1-240)"
echo "$line" | grep -qE 'level=(warn|error) ' || fail "events-missing is not a warning or an error: $line"
for kv in partition=0 expected_offset=$X first_offset=$Y missing=$((Y - X)); do
  echo " $line " | grep -q " $kv " || fail "events-missing line does not say $kv: $line"
done
n=$(grep -c 'msg=events-missing ' "$T/w2.log" || true)
[ "$n" = 1 ] || fail "$n events-missing lines, expected one"
stop_worker w2
log "PASS"
