#!/usr/bin/env bash
# The command line: --help on stdout within 80 columns, unknown options
# and missing arguments fail with exit 2 and say what is wrong, an
# unreachable broker gives a clear error, not a hang.
. "$(dirname "$0")/lib.sh"

for c in "$DESPOOLER --help" "$DESPOOLER run --help" "$DESPOOLER lag --help" \
         "$DESPOOLER dev-broker --help" "$DESPOOLER status --help" "$PKGPUB --help"; do
  out=$($c) || fail "$c exited non-zero"
  [ -n "$out" ] || fail "$c printed nothing"
  w=$(printf '%s\n' "$out" | awk '{ if (length > m) m = length } END { print m }')
  [ "$w" -le 80 ] || fail "$c: help is $w columns wide"
done
expect_fail() { # CODE PATTERN CMD...
  local code=$1 pat=$2; shift 2
  local rc=0 out
  out=$("$@" 2>&1) || rc=$?
  [ $rc -eq "$code" ] || fail "'$*' exited $rc, expected $code: $out"
  grep -qiE -e "$pat" <<<"$out" || fail "'$*' said '$out', expected /$pat/"
}
expect_fail 2 "unrecognized|invalid" "$DESPOOLER" run --bogus
expect_fail 2 "unknown command" "$DESPOOLER" frobnicate
expect_fail 2 "site" "$DESPOOLER" run -b "$B" --library "$T/l"
expect_fail 2 "library" "$DESPOOLER" run -b "$B" --site s1
expect_fail 2 "-b BOOTSTRAP" "$DESPOOLER" run --site s1 --library "$T/l"
expect_fail 2 "no broker list|No such file" "$DESPOOLER" run -b @"$T/missing" --site s1 --library "$T/l"
expect_fail 2 "version" "$PKGPUB" -b "$B" -p app "$T"
expect_fail 2 "package id|PACKAGE" "$PKGPUB" -b "$B" -V 1 "$T"
expect_fail 1 "package id" "$PKGPUB" -b "$B" -p ../etc -V 1 "$T"
expect_fail 1 "No such file|stat|open" "$PKGPUB" -b "$B" -p app -V 1 "$T/nope"
expect_fail 2 "expected key=value" "$PKGPUB" -b "$B" -X nonsense -p app -V 1 "$T"
# Unreachable broker: lag must fail fast with a clear message and exit 3.
start=$(date +%s)
expect_fail 3 "broker|metadata|transport|timed out" "$DESPOOLER" lag -b 127.0.0.1:1 --site s1
[ $(( $(date +%s) - start )) -le 20 ] || fail "lag took too long to give up"
# Bad-flag messages name the program and the command.
expect_fail 2 "^despooler run: unrecognized option" "$DESPOOLER" run --bogus
expect_fail 2 "^pkgpub: unrecognized option" "$PKGPUB" --bogus
expect_fail 2 "^pkgpub retire: unrecognized option" "$PKGPUB" retire --bogus
# lag's usage errors exit 3 (UNKNOWN, as monitoring plugins expect), never
# 2 (CRITICAL).
expect_fail 3 "^despooler lag: unrecognized option" "$DESPOOLER" lag --bogus
expect_fail 3 "site SITE or --all-sites" "$DESPOOLER" lag -b "$B"
expect_fail 3 "^despooler lag: --watch: expected" "$DESPOOLER" lag -b "$B" --site s1 --watch nan
# Numbers are parsed strictly: nothing that strtod would half-read.
for n in nan inf "" " 5" 1e3 0x10 -1 5s; do
  expect_fail 3 "max-time-lag: expected" "$DESPOOLER" lag -b "$B" --site s1 --max-time-lag "$n"
  expect_fail 2 "incomplete-timeout: expected" "$DESPOOLER" run -b "$B" --site s1 --library "$T/l" --incomplete-timeout "$n"
  expect_fail 2 "keep-versions: expected" "$DESPOOLER" run -b "$B" --site s1 --library "$T/l" --keep-versions "$n"
  expect_fail 2 "level: expected" "$PKGPUB" -b "$B" -p app -V 1 -L "$n" "$T"
done
# A mistyped -X key, or a value librdkafka refuses, never echoes the value:
# it may be a password.
secret=Hunter2-$RUN
mkdir -p "$T/one"; echo one >"$T/one/f"
for x in "sasl.pasword=$secret" "enable.auto.commit=$secret" "nokeyvalue$secret"; do
  for c in "$DESPOOLER run -b $B --site s1 --library $T/l --create-library" "$PKGPUB -b $B -p app -V 1 $T/one"; do
    rc=0; out=$($c -X "$x" 2>&1) || rc=$?
    [ $rc = 2 ] || [ $rc = 1 ] || fail "'$c -X ...' exited $rc"
    grep -qiE "kafka setting|expected key=value" <<<"$out" || fail "'$c -X $x' did not name the setting: $out"
    ! grep -q "$secret" <<<"$out" || fail "'$c -X $x' echoed the value: $out"
  done
done
expect_fail 2 "kafka setting enable.auto.commit" "$DESPOOLER" run -b "$B" --site s1 --library "$T/l" --create-library -X enable.auto.commit=maybe
# pkgpub's --timeout bounds each step: a 2 s timeout gives up on an
# unreachable broker well before the default's 30 s.
expect_fail 2 "--timeout: expected" "$PKGPUB" --timeout 0 -b "$B" -p app -V 1 "$T"
expect_fail 2 "--timeout: expected" "$PKGPUB" retire --timeout 1h -b "$B" -p app
start=$(date +%s)
expect_fail 1 "metadata|transport|no answer" "$PKGPUB" --timeout 2 -b 127.0.0.1:1 -p app -V 1 --no-progress "$T"
[ $(( $(date +%s) - start )) -le 15 ] || fail "pkgpub --timeout 2 took $(( $(date +%s) - start )) s to give up"
log "PASS"
