#!/usr/bin/env bash
# Schema v2, content-defined cuts (schemas/v2 section 8): a second version
# with 4 KiB of one file changed in place, one file inserted first in the
# tar order and one file deleted sends only the parts around the three
# edits and references the rest of version 1's parts; a site installs it
# byte-identical. The same edits under --cut fixed (the control: the
# insertion shifts every later cut) reuse almost nothing.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

# 12 files of 1 MiB random bytes (incompressible: part sizes are bytes).
mkdir -p "$T/v1/d"
for i in $(seq 10 21); do head -c 1048576 /dev/urandom >"$T/v1/d/f$i.bin"; done
cp -a "$T/v1" "$T/v2"
# 4 KiB changed in place in the middle of one file, a file inserted first
# in the sorted order, a file deleted.
# The mtimes are put back: only the bytes change (a new mtime changes the
# entry's tar header too, an edit of its own).
head -c 4096 /dev/urandom | dd of="$T/v2/d/f14.bin" bs=4096 seek=100 conv=notrunc status=none
touch -r "$T/v1/d/f14.bin" "$T/v2/d/f14.bin"
head -c 20000 /dev/urandom >"$T/v2/d/a0.bin"
touch -r "$T/v1/d/f10.bin" "$T/v2/d/a0.bin"
rm "$T/v2/d/f18.bin"
touch -r "$T/v1/d" "$T/v2/d"

# One package at a time, each installed before the next is published: the
# embedded broker keeps 5 MiB per partition and drops the oldest records,
# version 1's parts among them, once four publications share 24.
start_worker w1 "$S" "$L"
for cut in content fixed; do
  P=$(pkg "cut-$cut")
  publish "$P" 1 "$T/v1" --cut "$cut" >"$T/$cut-1.json"
  publish "$P" 2 "$T/v2" --cut "$cut" >"$T/$cut-2.json"
  [ "$(jget "$T/$cut-2.json" form)" = parts ] ||
    fail "$cut: version 2 is not in the parts form: $(cat "$T/$cut-2.json")"
  n=$(jget "$T/$cut-2.json" parts)
  sent=$(jget "$T/$cut-2.json" parts_sent)
  reused=$(jget "$T/$cut-2.json" parts_reused)
  [ $((sent + reused)) -le "$n" ] || fail "$cut: $sent sent + $reused reused > $n parts"
  eval "N_$cut=$n SENT_$cut=$sent REUSED_$cut=$reused"
  log "$cut cuts: version 2 has $n parts, $sent sent, $reused reused"
  wait_current "$L" "$P" 2 90
  assert_same_tree "$T/v2" "$L/$P/current/"
done
stop_worker w1
grep -q "msg=publish-started .*cut=content" "$T/pkgpub.log" ||
  fail "no publish-started line with cut=content"

# Content cuts: an edit changes the part it falls in, and now and then
# the next one or two (the cuts fall in step again at the first cut both
# versions make: 64 KiB or more after a part's start, under a mask that
# depends on that distance): at most 8 for three edits, of about 52
# parts (4-6 measured).
[ "$SENT_content" -le 8 ] ||
  fail "content cuts sent $SENT_content of $N_content parts for three edits"
[ "$REUSED_content" -ge $((N_content - 8)) ] ||
  fail "content cuts reused only $REUSED_content of $N_content parts"
# The control: fixed cuts after an insertion at the start share nothing.
[ "$REUSED_fixed" -le 1 ] ||
  fail "fixed cuts reused $REUSED_fixed parts after an insertion at the start: the test's edit does not shift the stream"

log "PASS: content cuts sent $SENT_content of $N_content parts ($REUSED_content reused), fixed cuts $SENT_fixed of $N_fixed; both installed byte-identical"
