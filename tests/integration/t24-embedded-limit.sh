#!/usr/bin/env bash
# An update the broker cannot keep is never reported as published. The
# embedded broker (librdkafka's mock cluster) keeps about 5 MiB per
# partition and silently drops the oldest events beyond it: there pkgpub
# must refuse a 40 MiB incompressible package before sending anything,
# with a message naming the limit and the way out (scripts/kafka start);
# nothing of it may reach pkg.updates or pkg.status, and a package under
# the limit (3 MiB) still publishes and installs. On Apache Kafka there is
# no such limit: the same 40 MiB package publishes and installs,
# byte-identical.
. "$(dirname "$0")/lib.sh"

P=$(pkg big); Q=$(pkg small); S=$(site s1); L=$T/lib
make_random_tree "$T/src/$P/1" 1 40
make_random_tree "$T/src/$Q/1" 2 3
start_worker w1 "$S" "$L"

if [ "$BROKER_KIND" = kafka ]; then
  publish "$P" 1 "$T/src/$P/1" >"$T/big.json"
  log "published: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["chunks"], "chunks,", j["zsize"], "bytes")' "$T/big.json")"
  wait_current "$L" "$P" 1 120
  assert_same_tree "$T/src/$P/1" "$L/$P/current/"
  log "PASS (Apache Kafka: the 40 MiB update installs)"
  exit 0
fi

rc=0
"$PKGPUB" -b "$B" -p "$P" -V 1 --json --no-progress "$T/src/$P/1" \
  >"$T/big.out" 2>"$T/big.err" || rc=$?
[ $rc -ne 0 ] || fail "pkgpub published a 40 MiB incompressible update to the embedded broker: $(cat "$T/big.out")"
[ -s "$T/big.out" ] && fail "pkgpub printed a result for a refused update: $(cat "$T/big.out")"
msg=$(grep "^pkgpub: " "$T/big.err" || true)
for want in "embedded broker" "5 MiB per partition" "4194304" "Nothing was sent" "scripts/kafka start"; do
  grep -qF "$want" <<<"$msg" || fail "refusal does not say \"$want\": $msg"
done
log "refused: $(cut -c1-160 <<<"$msg")..."

# Nothing of it on either topic, even uncommitted.
"$KTOOL" dump -b "$B" -t pkg.updates -X isolation.level=read_uncommitted \
  >"$T/updates.dump" || fail "ktool dump pkg.updates failed"
"$KTOOL" dump -b "$B" -t pkg.status -X isolation.level=read_uncommitted \
  >"$T/status.dump" || fail "ktool dump pkg.status failed"
n=$(grep -c "key=$P " "$T/updates.dump" || true)
[ "$n" = 0 ] || fail "$n event(s) of the refused update reached pkg.updates"
grep -q "key=_published/$P " "$T/status.dump" &&
  fail "a _published record of the refused update reached pkg.status"

# Under the limit: published and installed.
publish "$Q" 1 "$T/src/$Q/1" >"$T/small.json"
wait_current "$L" "$Q" 1 60
assert_same_tree "$T/src/$Q/1" "$L/$Q/current/"
wait_lag0 "$S" 30
grep -q "msg=update-started .*package=$P " "$T/w1.log" &&
  fail "the worker saw the refused update"
stop_worker w1
log "PASS (embedded: 40 MiB refused before sending, 3 MiB installed)"
