#!/usr/bin/env bash
# despooler status: after two sites installed different versions, the
# matrix shows the published version and each site's, marks the one
# behind, exits 1 once it is behind longer than --max-behind, and --json
# parses with the same numbers.
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
rc=0; "$DESPOOLER" status -b 127.0.0.1:1 >/dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "unreachable broker: exit $rc, expected 3"
stop_worker e
log "PASS"
