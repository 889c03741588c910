#!/usr/bin/env bash
# Schema v2 retire: `pkgpub retire -p A` writes A's tombstone. A site run
# with --on-retire keep leaves A's files and marks it retired, one with
# --on-retire remove deletes A from its library; both report state
# retired to pkg.status (despooler status shows it), both commit past the
# tombstone, and another package B is untouched. A later version of A
# revives it at both sites.
. "$(dirname "$0")/lib.sh"

SK=$(site keep); SR=$(site remove); LK=$T/lk; LR=$T/lr
A=$(pkg app); Bp=$(pkg other)
make_random_tree "$T/a1" 1 2
make_random_tree "$T/b1" 2 1
make_random_tree "$T/a2" 3 2
publish "$A" 1 "$T/a1" >/dev/null
publish "$Bp" 1 "$T/b1" >/dev/null
start_worker wk "$SK" "$LK"
start_worker wr "$SR" "$LR" --on-retire remove
for l in "$LK" "$LR"; do wait_current "$l" "$A" 1 60; wait_current "$l" "$Bp" 1 60; done

"$PKGPUB" retire -b "$B" -p "$A" --json >"$T/retire.json" 2>>"$T/pkgpub.log" ||
  fail "pkgpub retire failed: $(tail -3 "$T/pkgpub.log")"
log "retire: $(cat "$T/retire.json")"
wait_log wk "msg=retired .*package=$A action=keep" 60
wait_log wr "msg=retired .*package=$A action=remove" 60
[ "$(current_version "$LK" "$A")" = 1 ] || fail "keep site lost $A"
assert_same_tree "$T/a1" "$LK/$A/current/"
[ ! -e "$LR/$A" ] || fail "remove site still has $LR/$A: $(ls -a "$LR/$A")"
[ "$(current_version "$LR" "$Bp")" = 1 ] || fail "remove site lost $Bp"
end=$((SECONDS + 30))
until "$DESPOOLER" status -b "$B" --package "$A" --json >"$T/status.json" 2>/dev/null &&
      python3 - "$T/status.json" "$SK" "$SR" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
text = json.dumps(d)
sys.exit(0 if text.count('"retired"') >= 2 and sys.argv[2] in text and sys.argv[3] in text else 1)
PY
do
  [ $SECONDS -lt $end ] || fail "status does not show $A retired at both sites: $(cat "$T/status.json")"
  sleep 1
done
for s in "$SK" "$SR"; do
  end=$((SECONDS + 30))
  until [ "$(lag_total_bounded "$s")" = 0 ]; do
    [ $SECONDS -lt $end ] || fail "site $s lag stays $(lag_total_bounded "$s")"
    sleep 0.5
  done
done

publish "$A" 2 "$T/a2" >/dev/null
wait_current "$LK" "$A" 2 60
wait_current "$LR" "$A" 2 60
assert_same_tree "$T/a2" "$LK/$A/current/"
assert_same_tree "$T/a2" "$LR/$A/current/"
stop_worker wk
stop_worker wr
log "PASS: retire kept at one site, removed at the other, status shows it, v2 revives"
