#!/usr/bin/env bash
# SIGHUP re-reads --trusted-keys (key rotation without a restart). The
# site trusts key A only: a version signed by B is refused (dead letter,
# bad-signature). B.pub added, SIGHUP: a version signed by B installs.
# A.pub removed, SIGHUP: a version signed by A is refused. A broken .pub
# added, SIGHUP: an error naming the file and the cause, and the previous
# keys (B only) stay: an unsigned version is still refused, the next one
# signed by B installs. A site without --trusted-keys logs that there is
# nothing to reload. Neither worker ever exits until SIGTERM (exit 0).
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); S2=$(site open); L=$T/lib; L2=$T/lib-open
mkdir -p "$T/keys" "$T/trusted"
for k in keya keyb; do
  "$PKGPUB" keygen --key-id $k --dir "$T/keys" >/dev/null || fail "keygen $k"
done
cp "$T/keys/keya.pub" "$T/trusted/"
for v in 1 2 3 4 5; do make_tree "$T/src/$v" "$v" 8 16; done

start_worker w1 "$S" "$L" --trusted-keys "$T/trusted"
start_worker w2 "$S2" "$L2"
wait_log w1 'msg=trusted-keys .*keys=keya$' 30
wait_log w1 'msg=assigned ' 60
wait_log w2 'msg=assigned ' 60
alive() {
  kill -0 "$(wpid w1)" 2>/dev/null || fail "w1 exited ($1)"
  kill -0 "$(wpid w2)" 2>/dev/null || fail "w2 exited ($1)"
}
# refused V: version V of P went to the DLQ as bad-signature.
refused() {
  wait_log w1 "msg=dead-lettered .*reason=bad-signature .*$P version $1" 60
}
# reloads N: the worker logged its Nth successful reload.
reloads() {
  for _ in $(seq 100); do
    [ "$(grep -c 'msg=trusted-keys-reloaded ' "$T/w1.log")" -ge "$1" ] && return
    sleep 0.1
  done
  fail "no reload number $1 in w1.log"
}

publish "$P" 1 "$T/src/1" --sign-key "$T/keys/keyb.key" >/dev/null
refused 1
log "trusting keya only: version 1 signed by keyb refused"

cp "$T/keys/keyb.pub" "$T/trusted/"
kill -HUP "$(wpid w1)"
reloads 1
grep 'msg=trusted-keys-reloaded ' "$T/w1.log" | tail -1 |
  grep -qE "dir=$T/trusted keys=(keya,keyb|keyb,keya)$" ||
  fail "reload 1 did not log keys=keya,keyb: $(grep 'msg=trusted-keys-reloaded' "$T/w1.log")"
publish "$P" 2 "$T/src/2" --sign-key "$T/keys/keyb.key" >/dev/null
wait_current "$L" "$P" 2 60
assert_same_tree "$T/src/2" "$L/$P/current/"
log "keyb.pub added, SIGHUP: version 2 signed by keyb installed"

rm "$T/trusted/keya.pub"
kill -HUP "$(wpid w1)"
reloads 2
grep 'msg=trusted-keys-reloaded ' "$T/w1.log" | tail -1 | grep -q " keys=keyb$" ||
  fail "reload 2 did not log keys=keyb"
publish "$P" 3 "$T/src/3" --sign-key "$T/keys/keya.key" >/dev/null
refused 3
log "keya.pub removed, SIGHUP: version 3 signed by keya refused"

printf 'not a key\n' >"$T/trusted/broken.pub"
kill -HUP "$(wpid w1)"
wait_log w1 "level=error .*msg=trusted-keys-reload-failed .*keys=keyb .*$T/trusted/broken.pub" 10
grep 'msg=trusted-keys-reload-failed ' "$T/w1.log" | grep -q 'previous keys kept' ||
  fail "the reload error does not say the previous keys are kept"
alive "after a failed reload"
publish "$P" 4 "$T/src/4" >/dev/null
refused 4
publish "$P" 5 "$T/src/5" --sign-key "$T/keys/keyb.key" >/dev/null
wait_current "$L" "$P" 5 60
[ "$(grep -c 'msg=trusted-keys-reloaded ' "$T/w1.log")" = 2 ] ||
  fail "the broken reload was counted as a success"
for v in 1 3 4; do
  [ ! -e "$L/$P/versions/$v" ] || fail "refused version $v is in the library"
done
log "broken.pub, SIGHUP: $(grep -m1 -o 'error=.*' "$T/w1.log" | cut -c1-110)"

kill -HUP "$(wpid w2)"
wait_log w2 'msg=reload .*no --trusted-keys: nothing to reload' 10
wait_current "$L2" "$P" 5 60
alive "at the end"
stop_worker w1
stop_worker w2
log "PASS"
