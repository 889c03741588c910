#!/usr/bin/env bash
# Signed updates. `pkgpub keygen` makes two key pairs; a site trusts only
# the first (--trusted-keys holds its .pub). An update signed by it
# installs; an unsigned one, one signed by the untrusted key, one whose
# header was changed after signing (the real signature replayed on
# another version), and one with a flipped signature bit are each
# refused at their first chunk: every chunk goes to pkg.updates.dlq with
# reason bad-signature, nothing reaches the library, and the site then
# installs the next good signed update. A site without --trusted-keys
# installs the unsigned update (signatures are the site's policy).
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); S2=$(site open); L=$T/lib; L2=$T/lib-open
mkdir -p "$T/keys" "$T/trusted"
"$PKGPUB" keygen --key-id release --dir "$T/keys" >"$T/keygen.out" || fail "keygen failed"
"$PKGPUB" keygen --key-id intruder --dir "$T/keys" >/dev/null || fail "keygen failed"
[ "$(stat -c %a "$T/keys/release.key")" = 600 ] || fail "private key is not mode 600"
"$PKGPUB" keygen --key-id release --dir "$T/keys" 2>"$T/keygen2.err" &&
  fail "keygen overwrote an existing key"
grep -q 'release.key: File exists' "$T/keygen2.err" || fail "keygen over a key: unclear error: $(cat "$T/keygen2.err")"
cp "$T/keys/release.pub" "$T/trusted/"

# A bad --trusted-keys is a clear start-up error, not a silent open door.
rc=0; "$DESPOOLER" run -b "$B" --site "$S" --library "$L" --create-library --trusted-keys "$T/nonexistent" \
  2>"$T/bad-dir.err" || rc=$?
[ $rc = 2 ] && grep -q 'trusted-keys .*nonexistent' "$T/bad-dir.err" ||
  fail "--trusted-keys of a missing directory: exit $rc, $(cat "$T/bad-dir.err")"
mkdir "$T/empty"
rc=0; "$DESPOOLER" run -b "$B" --site "$S" --library "$L" --create-library --trusted-keys "$T/empty" \
  2>"$T/empty.err" || rc=$?
[ $rc = 2 ] && grep -q 'no public key' "$T/empty.err" || fail "empty --trusted-keys: exit $rc, $(cat "$T/empty.err")"

start_worker w1 "$S" "$L" --trusted-keys "$T/trusted"
start_worker w2 "$S2" "$L2"
wait_log w1 'msg=trusted-keys .*keys=release' 30
wait_log w1 'msg=assigned ' 60
wait_log w2 'msg=assigned ' 60
for v in 1 2 3 4 5; do make_tree "$T/src/$v" "$v" 20 16; done

# 1: signed by the trusted key, in 3 chunks (schema v1; 3 and 5 are v2
# manifests, signed as schema v2 section 9 says).
publish "$P" 1 "$T/src/1" --sign-key "$T/keys/release.key" --chunk-size 1024 --schema 1 >"$T/pub1.json"
read -r KID SIG CH1 < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["key_id"], j["sig"], j["chunks"])' "$T/pub1.json")
[ "$KID" = release ] || fail "pkgpub --json key_id is $KID"
[ "$CH1" -ge 2 ] || fail "expected several chunks, got $CH1"
wait_current "$L" "$P" 1 60
assert_same_tree "$T/src/1" "$L/$P/current/"
log "signed by a trusted key: installed ($CH1 chunks)"

# 2: unsigned. 3: signed by a key the site does not trust.
publish "$P" 2 "$T/src/2" --chunk-size 1024 --schema 1 >"$T/pub2.json"
# The open site installs 2 before 3 arrives: published back to back, a
# newer version could finish first and 2 would be discarded as stale.
wait_current "$L2" "$P" 2 60
publish "$P" 3 "$T/src/3" --sign-key "$T/keys/intruder.key" >/dev/null
# 4: version 1's real signature replayed on version 4 (a header it does
# not cover: forgery). 5: version 5 signed, one bit of the signature
# flipped in transit.
tar -C "$T/src/4" -cf "$T/src4.tar" .
python3 "$SRC/tests/integration/mkevent.py" --package "$P" --version 4 --tar "$T/src4.tar" \
  --out "$T/forged" --sig "$SIG" --key-id release >/dev/null
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/forged.0" || fail "put forged"
publish "$P" 5 "$T/src/5" --sign-key "$T/keys/release.key" >"$T/pub5.json"
read -r SIG5 U5 < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["sig"], j["update_id"])' "$T/pub5.json")
FLIP=$(python3 -c 'import sys; b=bytearray.fromhex(sys.argv[1]); b[10]^=1; print(b.hex())' "$SIG5")
tar -C "$T/src/5" -cf "$T/src5.tar" .
python3 "$SRC/tests/integration/mkevent.py" --package "$P" --version 6 --tar "$T/src5.tar" \
  --out "$T/flipped" --sig "$FLIP" --key-id release >/dev/null
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/flipped.0" || fail "put flipped"

# Version 5 is good and signed: it installs; 2, 3, 4 and the flipped 6
# never do.
wait_current "$L" "$P" 5 60
assert_same_tree "$T/src/5" "$L/$P/current/"
wait_log w1 "msg=dead-lettered .*reason=bad-signature .*version 6: signature by key" 60
wait_lag0_bounded "$S" 60
for v in 2 3 4 6; do
  [ ! -e "$L/$P/versions/$v" ] || fail "refused version $v is in the library"
done
grep -q "msg=update-started .*package=$P version=[2346] " "$T/w1.log" &&
  fail "the worker started extracting a refused update"

"$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq" || fail "dump dlq"
CH2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunks"])' "$T/pub2.json")
n=$(grep -c "key=$P .*h.despool.reason=\"bad-signature\"" "$T/dlq" || true)
[ "$n" = $((CH2 + 3)) ] || fail "expected $((CH2 + 3)) bad-signature dead letters (unsigned: $CH2 chunks, + 3), got $n"
for what in 'unsigned update' 'which this site does not trust' 'does not verify'; do
  grep -q "h.despool.detail=\"[^\"]*$what" "$T/dlq" || fail "no dead letter saying \"$what\""
done
grep -q "h.despool.site=\"$S\"" "$T/dlq" || fail "dead letters do not name the site"
log "refused to the DLQ: unsigned ($CH2 chunks), untrusted key, replayed signature, flipped bit: $n dead letters"

# The site that checks no signatures installs the unsigned version 2 on
# its way to 6 (the forged 4 and 6 are well-formed; it has no policy).
wait_current "$L2" "$P" 6 60
grep -q "msg=finalized .*package=$P version=2 " "$T/w2.log" || fail "site without --trusted-keys did not install unsigned v2"
[ -z "$(grep -E 'msg=(dead-lettered|rejected) ' "$T/w2.log" || true)" ] ||
  fail "site without --trusted-keys refused something: $(grep -m1 -E 'msg=(dead-lettered|rejected) ' "$T/w2.log")"
stop_worker w1
stop_worker w2
no_staging_left "$L"
log "PASS"
