#!/usr/bin/env bash
# Two start-up rules. (1) A -F properties file's bootstrap.servers is the
# broker list when -b is not given (as kcat takes it): pkgpub publishes,
# despooler run consumes, despooler lag and status report with only -F;
# -b given too wins over the file (one whose bootstrap.servers names a
# dead port), in either order; neither -b nor bootstrap.servers: a usage
# error (exit 2, lag 3) naming both. (2) A --library that does not exist
# is an error (exit 2, the message names the path and --create-library)
# and nothing is created; with --create-library it is created, parents
# too; once it exists, no --create-library is needed.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/a/b/lib
# The broker list, as -b @FILE would read it.
case $B in
  @*) list=$(grep -m1 -v '^[[:space:]]*\(#\|$\)' "${B#@}") ;;
  *) list=$B ;;
esac
printf '# client settings\nbootstrap.servers = %s\nclient.id=t51\n' "$list" >"$T/good.properties"
printf 'bootstrap.servers=127.0.0.1:1\n' >"$T/dead.properties"
printf 'client.id=t51\n' >"$T/none.properties"
F=$T/good.properties

expect_exit() { # CODE PATTERN CMD...: exit CODE, output matching PATTERN
  local code=$1 pat=$2; shift 2
  local rc=0 out
  out=$("$@" 2>&1) || rc=$?
  [ $rc -eq "$code" ] || fail "'$*' exited $rc, expected $code: $out"
  grep -qE -e "$pat" <<<"$out" || fail "'$*' said '$out', expected /$pat/"
}

# (2) Missing library: refused before any broker is contacted (timeout:
# a worker that went on anyway is ended, and exits 0, not 2).
expect_exit 2 "library $L: no such directory \(--create-library creates it\)" \
  timeout 20 "$DESPOOLER" run -F "$F" --site "$S" --library "$L"
[ ! -e "$T/a" ] || fail "a refused --library created $T/a"
log "missing --library: exit 2, nothing created"

# (1) No broker list at all.
expect_exit 2 "-b BOOTSTRAP is required .*bootstrap.servers in -F" \
  "$DESPOOLER" run -F "$T/none.properties" --site "$S" --library "$T"
# (lag's usage errors exit 3, UNKNOWN)
expect_exit 3 "-b BOOTSTRAP is required .*bootstrap.servers in -F" \
  "$DESPOOLER" lag -F "$T/none.properties" --site "$S"
expect_exit 2 "-b BOOTSTRAP is required .*bootstrap.servers in -F" \
  "$PKGPUB" -F "$T/none.properties" -p "$P" -V 1 "$T"

make_tree "$T/src1" 1 10 16
make_tree "$T/src2" 2 10 16
"$PKGPUB" -F "$F" -p "$P" -V 1 --no-progress "$T/src1" >/dev/null 2>>"$T/pkgpub.log" ||
  fail "pkgpub with only -F failed: $(tail -3 "$T/pkgpub.log")"
"$DESPOOLER" run -F "$F" --site "$S" --library "$L" --create-library \
  >>"$T/w1.log" 2>&1 &
PIDS+=($!); WPID_w1=$!
wait_current "$L" "$P" 1 60
assert_same_tree "$T/src1" "$L/$P/current/"
log "pkgpub and despooler run with only -F; --create-library made $L"

for _ in $(seq 150); do
  out=$("$DESPOOLER" lag -F "$F" --site "$S" --json 2>&1) &&
    [ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["total_lag"])' <<<"$out")" = 0 ] &&
    break
  sleep 0.2
done
python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["total_lag"] != 0)' <<<"$out" ||
  fail "despooler lag -F: $out"
out=$("$DESPOOLER" status -F "$F" -p "$P" --json 2>&1) || fail "despooler status -F: exit $?: $out"
grep -q "\"$S\"" <<<"$out" || fail "despooler status -F does not show site $S: $out"
log "lag and status with only -F"

# -b wins over the file's dead broker, before or after it.
"$DESPOOLER" lag -F "$T/dead.properties" -b "$B" --site "$S" >/dev/null 2>"$T/lag1.err" ||
  fail "lag -F dead -b good: exit $?: $(cat "$T/lag1.err")"
"$DESPOOLER" lag -b "$B" -F "$T/dead.properties" --site "$S" >/dev/null 2>"$T/lag2.err" ||
  fail "lag -b good -F dead: exit $?: $(cat "$T/lag2.err")"
"$PKGPUB" -F "$T/dead.properties" -b "$B" -p "$P" -V 2 --no-progress --timeout 10 \
  "$T/src2" >/dev/null 2>>"$T/pkgpub.log" || fail "pkgpub -F dead -b good failed"
wait_current "$L" "$P" 2 60
log "-b wins over -F's bootstrap.servers (lag, pkgpub)"

# The library exists now: no --create-library needed.
stop_worker w1
start=$(grep -c 'msg=started ' "$T/w1.log")
"$DESPOOLER" run -F "$F" --site "$S" --library "$L" >>"$T/w1.log" 2>&1 &
PIDS+=($!); WPID_w1=$!
for _ in $(seq 100); do
  [ "$(grep -c 'msg=started ' "$T/w1.log")" -gt "$start" ] && break
  kill -0 "$WPID_w1" 2>/dev/null || break
  sleep 0.1
done
[ "$(grep -c 'msg=started ' "$T/w1.log")" -gt "$start" ] ||
  fail "run on the existing library without --create-library did not start"
stop_worker w1
log "PASS"
