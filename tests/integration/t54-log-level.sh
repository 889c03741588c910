#!/usr/bin/env bash
# --log-level error|warn|info|debug (default info) for despooler and
# pkgpub, and DESPOOL_LOG_LEVEL in the environment: warn hides the info
# lines and keeps the warnings; librdkafka's debug lines (-X debug=...)
# are level=debug, shown at --log-level debug and hidden by default; a bad
# level is a usage error (exit 2; 3 in lag, UNKNOWN) that names the option.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site ll)
make_tree "$T/src" 1 3 8
mkdir -p "$T/lib"

# A bad level: usage error, names the option, before anything runs.
for cmd in "$DESPOOLER run -b $B --site $S --library $T/lib" "$DESPOOLER status -b $B" \
           "$DESPOOLER dev-broker" "$PKGPUB -b $B -p $P -V 1 $T/src" "$PKGPUB retire -b $B -p $P"; do
  rc=0; $cmd --log-level loud >"$T/bad.out" 2>&1 || rc=$?
  [ $rc = 2 ] || fail "$cmd --log-level loud: exit $rc, expected 2: $(cat "$T/bad.out")"
  grep -q -- '--log-level' "$T/bad.out" || fail "$cmd --log-level loud: the message does not name --log-level: $(cat "$T/bad.out")"
done
rc=0; "$DESPOOLER" lag -b "$B" --site "$S" --log-level loud >"$T/bad.out" 2>&1 || rc=$?
[ $rc = 3 ] && grep -q -- '--log-level' "$T/bad.out" ||
  fail "lag --log-level loud: exit $rc, expected 3 (UNKNOWN, lag's usage error): $(cat "$T/bad.out")"

# warn: the worker's info lines are gone, its warnings stay.
start_worker w1 "$S" "$T/lib" --log-level warn
"$PKGPUB" -b "$B" -p "$P" -V 1 --no-progress --log-level warn "$T/src" >/dev/null 2>"$T/pub-warn.log" ||
  fail "pkgpub failed: $(cat "$T/pub-warn.log")"
wait_current "$T/lib" "$P" 1 60
printf 'not msgpack' >"$T/garbage"
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/garbage" || fail "put garbage"
wait_log w1 'level=warn .*msg=dead-lettered ' 60
stop_worker w1
grep 'level=info\|level=debug' "$T/w1.log" && fail "--log-level warn: the worker logged info or debug lines (above)"
grep 'level=info\|level=debug' "$T/pub-warn.log" && fail "--log-level warn: pkgpub logged info or debug lines (above)"
# The same from the environment (a unit's Environment=DESPOOL_LOG_LEVEL=).
DESPOOL_LOG_LEVEL=warn "$PKGPUB" -b "$B" -p "$P" -V 2 --no-progress "$T/src" >/dev/null 2>"$T/pub-env.log" ||
  fail "pkgpub failed: $(cat "$T/pub-env.log")"
grep 'level=info' "$T/pub-env.log" && fail "DESPOOL_LOG_LEVEL=warn: pkgpub logged info lines (above)"
# By default pkgpub does log at info (so the checks above can fail).
"$PKGPUB" -b "$B" -p "$P" -V 3 --no-progress "$T/src" >/dev/null 2>"$T/pub-info.log" ||
  fail "pkgpub failed: $(cat "$T/pub-info.log")"
grep -q 'level=info .*msg=publish-started ' "$T/pub-info.log" || fail "default level: no info line from pkgpub: $(cat "$T/pub-info.log")"

# librdkafka's debug lines: level=debug at --log-level debug, hidden by
# default (the same -X debug=broker both times).
"$DESPOOLER" status -b "$B" -X debug=broker --log-level debug >/dev/null 2>"$T/st-debug.log" ||
  fail "status failed: $(tail -3 "$T/st-debug.log")"
n=$(grep -c '^ts=.* level=debug .*msg=kafka-log ' "$T/st-debug.log" || true)
[ "$n" -ge 1 ] || fail "--log-level debug -X debug=broker: no level=debug kafka-log line: $(head -3 "$T/st-debug.log")"
grep 'msg=kafka-log .*facility=BROKER\|msg=kafka-log .*facility=CONNECT' "$T/st-debug.log" | grep -v 'level=debug' &&
  fail "librdkafka debug lines not at level=debug (above)"
"$DESPOOLER" status -b "$B" -X debug=broker >/dev/null 2>"$T/st-default.log" ||
  fail "status failed: $(tail -3 "$T/st-default.log")"
grep 'level=debug' "$T/st-default.log" && fail "default level: debug lines shown (above)"
log "debug: $n librdkafka lines at level=debug; none by default"
log "PASS"
