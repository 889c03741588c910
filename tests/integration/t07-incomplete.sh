#!/usr/bin/env bash
# An update whose chunks stop arriving does not hold the commit point:
# after --incomplete-timeout it is dead-lettered as incomplete, lag goes
# to 0, and a later complete update installs.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/lib
start_worker w1 "$S" "$L" --incomplete-timeout 2
make_tree "$T/src" 4 10 16
tar -C "$T/src" -cf "$T/src.tar" .
python3 "$SRC/tests/integration/mkevent.py" --package "$P" --version 1 \
  --tar "$T/src.tar" --out "$T/part" --chunks 3 --only 0,1 >/dev/null
for i in 0 1; do "$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/part.$i"; done
wait_log w1 "msg=dead-lettered .*reason=incomplete" 30
wait_lag0 "$S"
[ "$(current_version "$L" "$P")" = 0 ] || fail "incomplete update installed"
"$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq"
n=$(grep -c 'h.despool.reason="incomplete"' "$T/dlq" || true)
[ "$n" = 2 ] || fail "expected 2 incomplete dead letters, got $n"
publish "$P" 2 "$T/src" >/dev/null
wait_current "$L" "$P" 2
no_staging_left "$L"
stop_worker w1
log "PASS"
