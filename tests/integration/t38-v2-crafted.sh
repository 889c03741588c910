#!/usr/bin/env bash
# Schema v2 records written by a second publisher (tests/integration/
# v2craft.py: from schemas/v2/README.md and the vector generator's own
# encoders, not pkgpub), through ktool: the worker installs a parts-form
# and an index-form manifest byte for byte; a part whose bytes are not
# its id is dead-lettered part-mismatch; a part that is not where its ref
# says, with no newer record of the package, is dead-lettered part-missing
# once the site has read to the partition's end; the package then installs
# its next version.
# All on partition 0 of pkg.updates, in order, so every check is also one
# of the commit point moving past it (lag 0 at the end).
PARTITIONS=1
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
OK=$(pkg parts); IX=$(pkg index); BAD=$(pkg bad); GONE=$(pkg gone)
make_tree "$T/src" 3 12 40
tar --format=ustar -C "$T/src" -cf "$T/tree.tar" .
log "tree: $(stat -c %s "$T/tree.tar") tar bytes"

# craft NAME PACKAGE VERSION [v2craft options]: parts on pkg.content, then
# the manifest on pkg.updates partition 0.
craft() {
  local n=$1 p=$2 v=$3; shift 3
  local d=$T/craft-$n
  python3 "$SRC/tests/integration/v2craft.py" parts "$d" "$p" "$v" \
    "$T/tree.tar" "$@" || fail "v2craft parts $n"
  "$KTOOL" put -b "$B" -t pkg.content -l "$d/parts.list" >"$d/delivered" ||
    fail "put parts $n"
  local rc=0
  python3 "$SRC/tests/integration/v2craft.py" manifest "$d" "$p" "$v" \
    "$T/tree.tar" "$d/delivered" "$d/manifest" >/dev/null || rc=$?
  if [ $rc = 3 ]; then # index form: the index parts first
    "$KTOOL" put -b "$B" -t pkg.content -l "$d/index.list" >>"$d/delivered" ||
      fail "put index parts $n"
    python3 "$SRC/tests/integration/v2craft.py" manifest "$d" "$p" "$v" \
      "$T/tree.tar" "$d/delivered" "$d/manifest" || fail "v2craft manifest $n"
  elif [ $rc != 0 ]; then
    fail "v2craft manifest $n"
  fi
  "$KTOOL" put -b "$B" -t pkg.updates -p 0 -k "$p" "$d/manifest" >/dev/null ||
    fail "put manifest $n"
}

craft ok "$OK" 1 --part-size 65536
craft ix "$IX" 1 --part-size 65536 --form index
craft bad "$BAD" 1 --part-size 65536 --corrupt 2
craft gone "$GONE" 1 --part-size 65536 --missing 3

start_worker w1 "$S" "$L"
wait_current "$L" "$OK" 1 60
wait_current "$L" "$IX" 1 60
assert_same_tree "$T/src" "$L/$OK/current/"
assert_same_tree "$T/src" "$L/$IX/current/"
wait_log w1 "msg=update-started .*package=$IX .*form=index" 5

dlq_reason() { # PACKAGE: the despool.reason of its dead letter, if any
  "$KTOOL" dump -b "$B" -t pkg.updates.dlq 2>/dev/null |
    grep "key=$1 " | sed -n 's/.*h\.despool\.reason="\([a-z-]*\)".*/\1/p' | head -1
}
end=$((SECONDS + 60))
until [ "$(dlq_reason "$BAD")" = part-mismatch ] &&
      [ "$(dlq_reason "$GONE")" = part-missing ]; do
  [ $SECONDS -lt $end ] || fail "after 60 s: $BAD dead-lettered '$(dlq_reason "$BAD")', $GONE '$(dlq_reason "$GONE")' (want part-mismatch, part-missing)"
  sleep 0.5
done
[ "$(current_version "$L" "$BAD")" = 0 ] || fail "$BAD was installed"
[ "$(current_version "$L" "$GONE")" = 0 ] || fail "$GONE was installed"
grep -q "msg=dead-lettered .*reason=part-missing .*is not at pkg.content partition" "$T/w1.log" ||
  fail "the part-missing dead letter does not say where the part was looked for"

# The package whose part went missing installs its next version.
craft gone2 "$GONE" 2 --part-size 65536

wait_current "$L" "$GONE" 2 60
assert_same_tree "$T/src" "$L/$GONE/current/"

end=$((SECONDS + 30))
until [ "$(lag_total_bounded "$S")" = 0 ]; do
  [ $SECONDS -lt $end ] || fail "site lag stays $(lag_total_bounded "$S")"
  sleep 0.5
done
no_staging_left "$L"
stop_worker w1
log "PASS: parts and index forms installed; part-mismatch and part-missing dead-lettered; next version installed; lag 0"
