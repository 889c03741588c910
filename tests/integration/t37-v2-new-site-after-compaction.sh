#!/usr/bin/env bash
# Schema v2's promise to a site started late: after compaction,
# pkg.updates is a catalog of one manifest per live package, and a new
# site installs exactly the newest version of each, from parts that
# survived compaction at their original offsets, and never sees a
# retired package.
# With aggressive compaction on pkg.updates and pkg.content (compact_fast:
# segment.ms 1 s, no compaction lag, tombstones kept 1 s), three packages get 3 versions
# each, of ~1-2 MiB incompressible trees (so each version takes parts):
# P1 and P2 change every byte per version (every older part dropped), P3
# keeps its first file (its first part is published with v1 and reused by
# v2 and v3); P4 gets 2 versions and is retired (pkgpub retire). Once the
# segments rolled and the cleaner ran: one record per package is left on
# pkg.updates (for P4 at most its tombstone), each package's v1 manifest
# offset now answers a later record (ktool get exit 3) and its v3 manifest
# is still at its own offset; on pkg.content exactly the parts of each v3
# remain (none of P4). Then a NEW site installs v3 of P1-P3, identical to
# its source, finalizing nothing else, with no other version directory in
# its library, no P4, lag 0 and no dead letter of these packages.
# Apache Kafka only (the embedded broker does not compact).
. "$(dirname "$0")/lib.sh"
[ "$BROKER_KIND" = kafka ] || { log "skipped: needs Apache Kafka (DESPOOL_BROKER=kafka)"; exit 77; }
# Until the schema v2 publisher is in the build. (Remove when it is.)

jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
P1=$(pkg one); P2=$(pkg two); P3=$(pkg three); P4=$(pkg retired)
S=$(site late); L=$T/lib

compact_fast pkg.updates pkg.content

# Sources: $T/src/<package>/<version>.
head -c 1048576 /dev/urandom >"$T/static.bin"
for v in 1 2 3; do
  make_random_tree "$T/src/$P1/$v" "$v" 1
  make_random_tree "$T/src/$P2/$v" "$((10 + v))" 2
  make_random_tree "$T/src/$P3/$v" "$((20 + v))" 1
  # First in the sorted tar ('A' < 'V'ERSION): with the same mtimes (in
  # the tar headers) for it and the root, the first part is the same in
  # every version.
  cp "$T/static.bin" "$T/src/$P3/$v/AAA-static.bin"
  touch -d @1700000000 "$T/src/$P3/$v/AAA-static.bin" "$T/src/$P3/$v"
done
for v in 1 2; do make_random_tree "$T/src/$P4/$v" "$((30 + v))" 1; done

for v in 1 2 3; do
  for p in "$P1" "$P2" "$P3" "$P4"; do
    [ "$p" = "$P4" ] && [ "$v" = 3 ] && continue
    publish "$p" "$v" "$T/src/$p/$v" >"$T/$p.$v.json"
    [ "$(jget "$T/$p.$v.json" schema)" = 2 ] && [ "$(jget "$T/$p.$v.json" form)" = parts ] ||
      fail "$p v$v: expected a schema 2 manifest in the parts form: $(cat "$T/$p.$v.json")"
  done
done
for v in 2 3; do
  r=$(jget "$T/$P3.$v.json" parts_reused)
  [ "$r" -ge 1 ] || fail "$P3 v$v reused no part of v$((v - 1)) (its first file is unchanged): $(cat "$T/$P3.$v.json")"
  t=$(jget "$T/$P1.$v.json" parts_tombstoned)
  [ "$t" = "$(jget "$T/$P1.$((v - 1)).json" parts)" ] ||
    fail "$P1 v$v tombstoned $t parts, expected all $(jget "$T/$P1.$((v - 1)).json" parts) of v$((v - 1))"
done
"$PKGPUB" retire -b "$B" -p "$P4" >"$T/retire.out" 2>>"$T/pkgpub.log" ||
  fail "pkgpub retire -p $P4 failed: $(tail -3 "$T/pkgpub.log")"
log "published 3 versions of $P1 $P2 $P3 and 2 of $P4, retired $P4" \
  "(parts of v3: $(jget "$T/$P1.3.json" parts) $(jget "$T/$P2.3.json" parts) $(jget "$T/$P3.3.json" parts)," \
  "$P3 v3 reused $(jget "$T/$P3.3.json" parts_reused))"

# The cleaner never cleans a partition's open segment.
roll_segments pkg.updates 1000
roll_segments pkg.content 1000
t0=$SECONDS
for p in "$P1" "$P2" "$P3" "$P4"; do wait_compacted pkg.updates "$p" 1 90; done
"$KTOOL" dump -b "$B" -t pkg.updates >"$T/updates.dump" || fail "dump pkg.updates"
grep " key=$P4 " "$T/updates.dump" | grep -qv ' len=null' &&
  fail "a manifest of retired $P4 is left on pkg.updates: $(grep " key=$P4 " "$T/updates.dump")"
for p in "$P1" "$P2" "$P3"; do
  part=$(jget "$T/$p.3.json" partition)
  "$KTOOL" get -b "$B" -t pkg.updates -p "$part" -o "$(jget "$T/$p.3.json" first_offset)" >"$T/get.out" ||
    fail "$p v3's manifest is not at its offset any more: $(cat "$T/get.out")"
  grep -q " key=$p len=[0-9]" "$T/get.out" || fail "$p v3's offset holds another record: $(cat "$T/get.out")"
  rc=0
  "$KTOOL" get -b "$B" -t pkg.updates -p "$(jget "$T/$p.1.json" partition)" \
    -o "$(jget "$T/$p.1.json" first_offset)" >"$T/get.out" || rc=$?
  [ $rc = 3 ] || fail "$p v1's manifest is still there after compaction (ktool get exit $rc): $(cat "$T/get.out")"
done
# Dropped and retired parts: only the parts of each v3 are left.
live_parts() { # PACKAGE: non-null records of pkg.content keyed PACKAGE/...
  "$KTOOL" dump -b "$B" -t pkg.content 2>/dev/null |
    awk -v k="key=$1/" 'index($3, k) == 1 && $4 != "len=null" { n++ } END { print n + 0 }'
}
end=$((SECONDS + 90))
while :; do
  left=
  for p in "$P1" "$P2" "$P3" "$P4"; do
    want=0; [ "$p" = "$P4" ] || want=$(jget "$T/$p.3.json" parts)
    n=$(live_parts "$p"); [ "$n" = "$want" ] || left="$left $p:$n/$want"
  done
  [ -z "$left" ] && break
  [ $SECONDS -lt $end ] || fail "pkg.content after 90 s, package:parts left/expected:$left"
  sleep 1
done
log "compacted in $((SECONDS - t0)) s: one record per package on pkg.updates, only v3's parts on pkg.content"

# A site started now.
start_worker w1 "$S" "$L"
wait_versions "$L" 120 "$P1=3" "$P2=3" "$P3=3"
for p in "$P1" "$P2" "$P3"; do
  assert_same_tree "$T/src/$p/3" "$L/$p/current/"
  vs=$(ls "$L/$p/versions")
  [ "$vs" = 3 ] || fail "$L/$p/versions holds $(echo $vs), expected only 3"
  n=$(grep -c "msg=finalized .*package=$p " "$T/w1.log" || true)
  [ "$n" = 1 ] || fail "$p finalized $n times at the new site, expected once (v3)"
  grep -q "msg=finalized .*package=$p version=3 " "$T/w1.log" || fail "$p: the version finalized is not 3"
done
[ ! -e "$L/$P4" ] || fail "retired $P4 is in the new site's library: $(ls -la "$L/$P4")"
[ ! -e "$L/roll-$RUN" ] || fail "the segment-rolling tombstones made $L/roll-$RUN"
wait_lag0_bounded "$S" 60
"$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq" || fail "dump pkg.updates.dlq"
dead=$(grep -E " key=($P1|$P2|$P3|$P4|roll-$RUN) " "$T/dlq" || true)
[ -z "$dead" ] || fail "dead letters at the new site: $dead"
stop_worker w1
no_staging_left "$L"
log "new site: v3 of $P1 $P2 $P3 only, identical to the sources, no $P4, lag 0, no dead letter"
