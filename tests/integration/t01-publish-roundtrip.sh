#!/usr/bin/env bash
# Publish a tree, despool it: the finalized version equals the source
# byte for byte (diff -r, modes, symlinks), the status record says
# installed, lag is 0; a re-publish of the same version changes nothing
# and is still committed.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp1); L=$T/lib
make_tree "$T/src1" 1 40 64
publish "$P" 1 "$T/src1" >"$T/pub1.json"
grep -q '"chunks":[1-9]' "$T/pub1.json" || fail "pkgpub output: $(cat "$T/pub1.json")"

start_worker w1 "$S" "$L"
wait_current "$L" "$P" 1
assert_same_tree "$T/src1" "$L/$P/current/"
[ -d "$L/$P/versions/1" ] || fail "versions/1 missing"
wait_lag0 "$S"
log "v1 finalized, identical, lag 0"

# Same version again: a duplicate, discarded quietly, committed.
publish "$P" 1 "$T/src1" >/dev/null
wait_log w1 "msg=discarded .*package=$P version=1 .*reason=duplicate"
wait_lag0 "$S"
[ "$(current_version "$L" "$P")" = 1 ] || fail "current moved on a duplicate"

# Written by the worker after the finalize, delivered asynchronously.
for _ in $(seq 50); do
  "$KTOOL" dump -b "$B" -t pkg.status >"$T/status.txt"
  grep -q "key=$S/$P " "$T/status.txt" && break
  sleep 0.2
done
grep -q "key=$S/$P " "$T/status.txt" || fail "no status record for $S/$P"
grep -q "key=_published/$P " "$T/status.txt" || fail "no _published record"
stop_worker w1
no_staging_left "$L"
grep -q 'msg=stopped' "$T/w1.log" || fail "no clean stop logged"
log "PASS"
