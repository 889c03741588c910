#!/usr/bin/env bash
# Schema v2: a site that was down while six versions of a package were
# published reads the six manifests, supersedes the older five as soon as
# the newer ones are read, and installs only the newest: one finalize,
# and the parts it fetched are at most those of two versions (the first
# manifest may start fetching before the next one is read), not six.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib; P=$(pkg app)
N=6
for v in $(seq 1 $N); do
  make_random_tree "$T/src$v" "$v" 3
  publish "$P" "$v" "$T/src$v" >"$T/pub$v.json"
done
parts=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["parts"] if j.get("form") != "inline" else 0)' "$T/pub$N.json")
[ "$parts" -ge 2 ] || fail "the test needs a parts-form version: $(cat "$T/pub$N.json")"
log "published $N versions of $P, $parts parts each"

start_worker w1 "$S" "$L"
wait_current "$L" "$P" "$N" 90
assert_same_tree "$T/src$N" "$L/$P/current/"
end=$((SECONDS + 30))
until [ "$(lag_total_bounded "$S")" = 0 ]; do
  [ $SECONDS -lt $end ] || fail "site lag stays $(lag_total_bounded "$S")"
  sleep 0.5
done
stop_worker w1
fin=$(grep -c "msg=finalized .*package=$P " "$T/w1.log" || true)
[ "$fin" = 1 ] || fail "$fin finalizes of $P, expected 1 (the newest only)"
sup=$(grep -c "msg=discarded .*package=$P .*reason=superseded" "$T/w1.log" || true)
fetched=$(sed -n 's/.*msg=stopped .* parts_fetched=\([0-9]*\) .*/\1/p' "$T/w1.log" | tail -1)
[ -n "$fetched" ] || fail "no parts_fetched in the stopped line"
[ "$fetched" -le $((2 * parts)) ] ||
  fail "fetched $fetched parts to install one version of $parts parts"
[ -z "$(ls "$L/$P/versions" | grep -vx "$N")" ] || fail "other versions in the library: $(ls "$L/$P/versions")"
log "PASS: one finalize (v$N), $sup superseded, $fetched parts fetched for a version of $parts"
