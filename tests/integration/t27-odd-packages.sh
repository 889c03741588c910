#!/usr/bin/env bash
# One odd package does not stop a site (issue 11, defect 8). A library
# where package A's .staging is a plain file, package C's versions is a
# plain file and a file sits where a package directory could be: the
# worker starts anyway. A's .staging (work in progress is only ever a
# directory, and ours) is removed with a warning and A installs its next
# version; C is refused with a warning naming the path; package B, sound,
# publishes and installs. C's update then fails with a local error naming
# C/versions (the partition pauses and retries) until the operator removes
# the file, after which C installs without a restart. Before the fix the
# worker exited at start-up: "open <lib>/A/.staging: Not a directory".
. "$(dirname "$0")/lib.sh"

A=$(pkg a); BP=$(pkg b); C=$(pkg c); S=$(site dp); L=$T/lib
for v in 1 2; do make_tree "$T/src/a$v" "$v" 6 4; done
make_tree "$T/src/b1" 11 6 4
make_tree "$T/src/c1" 21 6 4

# A's version 1 goes in while all is well.
start_worker w0 "$S" "$L"
wait_log w0 'msg=assigned ' 60
publish "$A" 1 "$T/src/a1" >/dev/null
wait_current "$L" "$A" 1 60
stop_worker w0

# The oddities.
rm -rf "$L/$A/.staging"
echo "not a directory" >"$L/$A/.staging"
mkdir "$L/$C"
echo "not a directory" >"$L/$C/versions"
echo "a stray file" >"$L/stray-file"

start_worker w1 "$S" "$L"
for _ in $(seq 300); do
  grep -q 'msg=started ' "$T/w1.log" && break
  kill -0 "$(wpid w1)" 2>/dev/null ||
    fail "the worker did not start: $(grep -v level=info "$T/w1.log" | tail -2)"
  sleep 0.1
done
wait_log w1 'msg=started ' 1
grep -qE "msg=staging-replaced package=$A path=$L/$A/.staging was=\"a regular file\"" "$T/w1.log" ||
  fail "no staging-replaced warning for $A"
[ ! -e "$L/$A/.staging" ] || [ -d "$L/$A/.staging" ] || fail "$A/.staging is still not a directory"
grep -qE "level=warn .*msg=package-refused package=$C path=$L/$C error=\".*$L/$C/versions: it is a regular file, not a directory" "$T/w1.log" ||
  fail "no package-refused warning naming $C/versions"
grep -qE "msg=package-refused package=stray-file .*$L/stray-file: it is a regular file" "$T/w1.log" ||
  fail "no warning for the stray file"
[ -f "$L/stray-file" ] && [ -f "$L/$C/versions" ] || fail "a refused path was touched"
wait_log w1 'msg=assigned ' 60
log "started despite the odd packages"

publish "$BP" 1 "$T/src/b1" >/dev/null
wait_current "$L" "$BP" 1 60
assert_same_tree "$T/src/b1" "$L/$BP/current/"
publish "$A" 2 "$T/src/a2" >/dev/null
wait_current "$L" "$A" 2 60
assert_same_tree "$T/src/a2" "$L/$A/current/"
log "B installed; A, its bad .staging removed, installed v2"

publish "$C" 1 "$T/src/c1" >/dev/null
wait_log w1 "msg=local-error package=$C error=\".*$L/$C/versions: it is a regular file" 60
wait_log w1 'msg=partition-paused ' 10
[ "$(current_version "$L" "$C")" = 0 ] || fail "$C installed while refused"
kill -0 "$(wpid w1)" || fail "worker died on the refused package"
log "C refused with a local error naming $C/versions; the operator fixes it"
rm "$L/$C/versions"
wait_current "$L" "$C" 1 90
assert_same_tree "$T/src/c1" "$L/$C/current/"
no_staging_left "$L"
stop_worker w1
log "PASS"
