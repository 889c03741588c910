#!/usr/bin/env bash
# despooler status: after two sites installed different versions, the
# matrix shows the published version and each site's, marks the one
# behind, exits 1 once it is behind longer than --max-behind, and --json
# parses with the same numbers. Retired packages (hand-made status
# records): the publisher's retire and each site's (kept, removed, or not
# yet) are shown in the matrix and in --json.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S1=$(site east); S2=$(site west)
make_tree "$T/src" 1 5 8
publish "$P" 1 "$T/src" >/dev/null
start_worker e "$S1" "$T/east"; start_worker w "$S2" "$T/west"
wait_current "$T/east" "$P" 1; wait_current "$T/west" "$P" 1
stop_worker w                         # west stays at 1
publish "$P" 2 "$T/src" >/dev/null
wait_current "$T/east" "$P" 2
sleep 1                               # east's status record is produced after the switch

"$DESPOOLER" status -b "$B" --package "$P" >"$T/out" || fail "status exited $?: $(cat "$T/out")"
cat "$T/out"
row=$(grep "^$P " "$T/out") || fail "no row for $P"
# columns: package, published, then sites in name order (east, west)
read -r _ pubv c1 c2 c3 <<<"$row"
[ "$pubv" = 2 ] || fail "published column is $pubv, expected 2"
[ "$c1" = 2 ] || fail "east shows '$c1', expected 2"
[ "$c2 $c3" = "1 behind" ] || fail "west shows '$c2 $c3', expected '1 behind'"

rc=0; "$DESPOOLER" status -b "$B" --package "$P" --max-behind 0 >/dev/null || rc=$?
[ $rc = 1 ] || fail "--max-behind 0 with a site behind: exit $rc, expected 1"

"$DESPOOLER" status -b "$B" --package "$P" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d["packages"][0]
sites = {s["site"]: s for s in p["sites"]}
assert p["published"] == 2, p
assert sites[sys.argv[1]]["version"] == 2 and sites[sys.argv[1]]["mark"] == "ok", sites
assert sites[sys.argv[2]]["version"] == 1 and sites[sys.argv[2]]["mark"] == "behind", sites
' "$S1" "$S2" || fail "--json does not match"

# Retired packages (schema v2 section 11), from hand-made status records:
# tool retired by the publisher, kept at east, not yet acted on at west;
# lib retired, removed at east, never at west.
P2=$(pkg tool); P3=$(pkg lib)
put_status_records <<EOF
_published	$P2	3	retired	
$S1	$P2	3	retired	kept
$S2	$P2	3	installed	
_published	$P3	1	retired	
$S1	$P3	1	retired	removed
EOF
"$DESPOOLER" status -b "$B" --package "$P2" >"$T/out2" 2>"$T/err2" || fail "status exited $?: $(cat "$T/out2" "$T/err2")"
cat "$T/out2"
[ ! -s "$T/err2" ] || fail "status complained: $(cat "$T/err2")"
row=$(grep "^$P2 " "$T/out2") || fail "no row for $P2"
read -r _ pubv pubm c1 c2 c3 c4 <<<"$row"
[ "$pubv $pubm" = "3 retired" ] || fail "published column of $P2 is '$pubv $pubm', expected '3 retired'"
[ "$c1 $c2" = "3 retired" ] || fail "east shows '$c1 $c2' for $P2, expected '3 retired' (kept)"
[ "$c3 $c4" = "3 behind" ] || fail "west shows '$c3 $c4' for $P2, expected '3 behind' (not retired yet)"
row=$("$DESPOOLER" status -b "$B" --package "$P3" | grep "^$P3 ") || fail "no row for $P3"
read -r _ pubv pubm c1 c2 <<<"$row"
[ "$pubv $pubm $c1 $c2" = "1 retired retired -" ] ||
  fail "$P3 shows '$pubv $pubm $c1 $c2', expected '1 retired retired -' (removed at east)"
# A retired site is no problem; a site that has not acted on the retire
# for longer than --max-behind is late, as for a new version.
rc=0; "$DESPOOLER" status -b "$B" --package "$P3" --max-behind 0 >/dev/null || rc=$?
[ $rc = 0 ] || fail "--max-behind 0 with $P3 retired or absent everywhere: exit $rc, expected 0"
rc=0; "$DESPOOLER" status -b "$B" --package "$P2" --max-behind 0 >/dev/null || rc=$?
[ $rc = 1 ] || fail "--max-behind 0 with west not retired: exit $rc, expected 1"
"$DESPOOLER" status -b "$B" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
east, west, app, tool, lib = sys.argv[1:]
pk = {p["package"]: p for p in d["packages"]}
assert pk[app]["retired"] is False and pk[app]["published"] == 2, pk[app]
t = pk[tool]
assert t["retired"] is True and t["published"] == 3, t
sites = {s["site"]: s for s in t["sites"]}
assert sites[east]["state"] == "retired" and sites[east]["mark"] == "retired", sites
assert sites[east]["detail"] == "kept" and sites[east]["version"] == 3, sites
assert sites[west]["mark"] == "behind" and sites[west]["state"] == "installed", sites
l = {s["site"]: s for s in pk[lib]["sites"]}
assert pk[lib]["retired"] is True and l[east]["detail"] == "removed", pk[lib]
assert l[east]["mark"] == "retired" and l[west]["mark"] == "missing", l
' "$S1" "$S2" "$P" "$P2" "$P3" || fail "--json does not show the retired packages"

rc=0; "$DESPOOLER" status -b 127.0.0.1:1 >/dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "unreachable broker: exit $rc, expected 3"
stop_worker e
log "PASS"
