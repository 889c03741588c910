#!/usr/bin/env bash
# Regression (issue 11, defect 8b): a status record that cannot be
# produced is retried, not dropped. Apache Kafka only (it deletes and
# recreates pkg.status; the embedded broker cannot delete a topic).
# The worker runs with -X allow.auto.create.topics=false (its producer must
# not recreate the topic as a plain one) and
# -X topic.metadata.refresh.interval.ms=1000 (it learns at once that the
# topic is gone). v1 installs and its status record appears; pkg.status
# is deleted; v2 (sent with ktool: pkgpub writes pkg.status too) installs
# while the record cannot be written (the old worker logged status-failed
# or produce-failed and forgot it); pkg.status is created again (compacted,
# as scripts/kafka makes it). Check: within 30 s, `despooler status` shows
# the site at v2, installed, without a restart or a new update.
# Then the same with a failed delivery instead of a refused produce:
# pkg.status gets max.message.bytes=64 (every record refused by the
# broker: the old worker logged produce-failed and forgot it), v3
# installs, the setting is removed. Check: within 30 s pkg.status shows
# v3, installed.
if [ "${DESPOOL_BROKER:-embedded}" != kafka ] || [ -n "${DESPOOL_BOOTSTRAP:-}" ]; then
  echo "[t32-status-retry] SKIP: needs its own Apache Kafka (DESPOOL_BROKER=kafka, no DESPOOL_BOOTSTRAP): the embedded broker cannot delete pkg.status"
  exit 77
fi
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/lib
BS=$(cat "$KAFKA_STATE/bootstrap")
ktopics() { "$SRC/scripts/kafka" cli kafka-topics --bootstrap-server "$BS" "$@" >>"$T/kafka-topics.log" 2>&1; }
# site_version: the version pkg.status shows for site S and package P
# ("none" without a record; "-" if pkg.status cannot be read).
site_version() {
  "$DESPOOLER" status -b "$B" --package "$P" --json 2>>"$T/status.err" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    print("-"); sys.exit()
for p in d.get("packages", []):
    for s in p.get("sites", []):
        if s["site"] == sys.argv[1]:
            print(s["version"], s.get("state", "")); sys.exit()
print("none")' "$S"
}
wait_site_version() { # VERSION SECONDS
  local v end=$((SECONDS + $2))
  while :; do
    v=$(site_version)
    [ "${v%% *}" = "$1" ] && return 0
    [ $SECONDS -ge $end ] && break
    sleep 0.5
  done
  fail "pkg.status shows site $S at '$v' for $P, expected $1 after $2 s"
}

make_tree "$T/src" 2 5 8
tar -C "$T/src" -cf "$T/src.tar" .
python3 "$SRC/tests/integration/mkevent.py" --package "$P" --version 2 \
  --tar "$T/src.tar" --out "$T/v2" >/dev/null || fail "mkevent"
start_worker w1 "$S" "$L" -X allow.auto.create.topics=false -X topic.metadata.refresh.interval.ms=1000
wait_log w1 'msg=assigned .*partitions=[0-9]' 60
publish "$P" 1 "$T/src" >/dev/null
wait_current "$L" "$P" 1 60
wait_site_version 1 30
log "v1 installed and reported: $(site_version)"

ktopics --delete --topic pkg.status || fail "kafka-topics --delete failed: $(tail -3 "$T/kafka-topics.log")"
sleep 3 # the worker's producer learns within a second
log "pkg.status deleted"
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/v2.0" || fail "put v2"
wait_current "$L" "$P" 2 60
wait_log w1 "msg=(status-failed|produce-failed) .*(package=$P|topic=pkg.status)" 30
log "v2 installed, its status record failed: $(grep -m1 -E 'msg=(status-failed|produce-failed) ' "$T/w1.log" | cut -c1-220)"
sleep 2
ktopics --create --topic pkg.status --partitions 1 --replication-factor 1 --config cleanup.policy=compact ||
  fail "kafka-topics --create failed: $(tail -3 "$T/kafka-topics.log")"
log "pkg.status created again"
wait_site_version 2 30
v=$(site_version)
[ "${v#* }" = installed ] || fail "the status record of v2 says '$v', expected installed"
log "the status record of v2 was written after pkg.status came back: $v"

python3 "$SRC/tests/integration/mkevent.py" --package "$P" --version 3 \
  --tar "$T/src.tar" --out "$T/v3" >/dev/null || fail "mkevent"
kcfg() { "$SRC/scripts/kafka" cli kafka-configs --bootstrap-server "$BS" --entity-type topics \
           --entity-name pkg.status --alter "$@" >>"$T/kafka-configs.log" 2>&1; }
kcfg --add-config max.message.bytes=64 || fail "kafka-configs failed: $(tail -3 "$T/kafka-configs.log")"
log "pkg.status refuses every record (max.message.bytes=64)"
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/v3.0" || fail "put v3"
wait_current "$L" "$P" 3 60
wait_log w1 "msg=(status-failed|produce-failed) .*(package=$P .*Broker|topic=pkg.status .*Broker)" 30
log "v3 installed, its status record refused: $(grep -E 'msg=(status-failed|produce-failed) .*Broker' "$T/w1.log" | head -1 | cut -c1-220)"
kcfg --delete-config max.message.bytes || fail "kafka-configs --delete-config failed"
log "pkg.status accepts records again"
wait_site_version 3 30
v=$(site_version)
[ "${v#* }" = installed ] || fail "the status record of v3 says '$v', expected installed"
log "the status record of v3 was written after pkg.status accepted records again: $v"
kill -0 "$(wpid w1)" || fail "worker died"
wait_lag0_bounded "$S" 30
stop_worker w1
log "PASS"
