#!/usr/bin/env bash
# Schema v2, a site reuses what it holds (issue "ship only what changed"):
#  - a minor version (one file changed in place, one inserted in the
#    middle of the tar order, one deleted) installs byte-identical while
#    fetching exactly the parts pkgpub sent; every other part is
#    re-created from the installed version;
#  - unchanged files are hardlinks to the installed version's (single-
#    instance storage), changed ones are not;
#  - a new site (nothing installed) fetches every part of its first
#    version;
#  - a damaged installed file is detected (local-part-mismatch), its part
#    fetched, and the next version still installs byte-identical;
#  - a file shared by two versions survives the pruning of the older one.
. "$(dirname "$0")/lib.sh"

SA=$(site reuse-a); SB=$(site reuse-b); LA=$T/lib-a; LB=$T/lib-b
P=$(pkg reuse)
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
# field NAME KEY: KEY's value on NAME.log's finalized line for version $V.
field() {
  grep "msg=finalized .*package=$P version=$V " "$T/$1.log" | tail -1 |
    tr ' ' '\n' | sed -n "s/^$2=//p"
}
ino() { stat -c %i "$1"; }

# 10 files of 1 MiB random bytes and a few small ones: part sizes are
# bytes, so the counts below are exact.
mkdir -p "$T/v1/d" "$T/v1/e"
for i in $(seq 10 19); do head -c 1048576 /dev/urandom >"$T/v1/d/f$i.bin"; done
for i in 1 2 3; do echo "small $i" >"$T/v1/e/s$i.txt"; done
chmod 755 "$T/v1/e/s1.txt"
cp -a "$T/v1" "$T/v2"
# Mtimes are put back: only the bytes change.
head -c 4096 /dev/urandom | dd of="$T/v2/d/f12.bin" bs=4096 seek=100 conv=notrunc status=none
touch -r "$T/v1/d/f12.bin" "$T/v2/d/f12.bin"
head -c 30000 /dev/urandom >"$T/v2/d/f15a.bin"
touch -r "$T/v1/d/f15.bin" "$T/v2/d/f15a.bin"
rm "$T/v2/d/f17.bin"
touch -r "$T/v1/d" "$T/v2/d"
cp -a "$T/v2" "$T/v3"
head -c 4096 /dev/urandom | dd of="$T/v3/d/f18.bin" bs=4096 seek=10 conv=notrunc status=none
touch -r "$T/v2/d/f18.bin" "$T/v3/d/f18.bin"

start_worker wa "$SA" "$LA" --metrics 127.0.0.1:0
wait_log wa 'msg=metrics-listening ' 30
A=$(grep -m1 'msg=metrics-listening ' "$T/wa.log" | sed -E 's/.* addr=([^ ]+).*/\1/')
value() { awk -v s="$2" '$1 == s { print $2; f = 1 } END { if (!f) print "none" }' "$T/$1.prom"; }
publish "$P" 1 "$T/v1" >"$T/p1.json"
wait_current "$LA" "$P" 1 90
V=1
[ "$(field wa parts_local)" = 0 ] || fail "version 1 re-created parts with nothing installed"
[ "$(field wa parts_fetched)" = "$(jget "$T/p1.json" parts)" ] ||
  fail "version 1: fetched $(field wa parts_fetched) of $(jget "$T/p1.json" parts) parts"
[ -f "$LA/$P/.partlist" ] || fail "no part list kept beside $LA/$P"

publish "$P" 2 "$T/v2" >"$T/p2.json"
wait_current "$LA" "$P" 2 90
assert_same_tree "$T/v2" "$LA/$P/current/"
V=2
n=$(jget "$T/p2.json" parts); sent=$(jget "$T/p2.json" parts_sent)
fetched=$(field wa parts_fetched); local_=$(field wa parts_local)
log "version 2: $n parts, pkgpub sent $sent; site A fetched $fetched, re-created $local_, linked $(field wa files_linked) files"
[ "$sent" -ge 2 ] && [ "$sent" -le 8 ] || fail "pkgpub sent $sent of $n parts for three edits"
[ "$fetched" = "$sent" ] || fail "site A fetched $fetched parts, pkgpub sent $sent (the rest are on its disk)"
[ $((fetched + local_)) = "$n" ] || fail "fetched $fetched + re-created $local_ != $n parts"
[ "$(field wa local_bytes)" -gt "$(field wa fetched_bytes)" ] || fail "more bytes fetched than re-created"

# Single-instance storage: unchanged files share the inode, changed ones
# and the new one do not.
V1=$LA/$P/versions/1; V2=$LA/$P/versions/2
for f in d/f10.bin d/f19.bin e/s1.txt e/s3.txt; do
  [ "$(ino "$V1/$f")" = "$(ino "$V2/$f")" ] || fail "$f is not shared by versions 1 and 2"
done
[ "$(ino "$V1/d/f12.bin")" != "$(ino "$V2/d/f12.bin")" ] || fail "the changed f12.bin is shared"
[ "$(field wa files_linked)" -ge 11 ] || fail "only $(field wa files_linked) files linked"
[ "$(stat -c %a "$V2/e/s1.txt")" = 755 ] || fail "the shared s1.txt lost its mode"
du1=$(du -sk "$V1" | cut -f1); du12=$(du -sk "$LA/$P/versions" | cut -f1)
log "disk: version 1 ${du1} KiB, versions 1+2 ${du12} KiB"
[ "$du12" -lt $((du1 * 13 / 10)) ] || fail "two versions take ${du12} KiB, one ${du1} KiB"

# A new site: nothing installed, its first version fetches every part.
start_worker wb "$SB" "$LB"
wait_current "$LB" "$P" 2 90
assert_same_tree "$T/v2" "$LB/$P/current/"
first=$(grep -m1 "msg=finalized .*package=$P " "$T/wb.log")
fv=$(echo "$first" | tr ' ' '\n' | sed -n 's/^version=//p')
[ -n "$fv" ] || fail "site B logged no finalized line"
echo "$first" | grep -q " parts_local=0 " || fail "new site B re-created parts of its first version: $first"
fn=$(jget "$T/p$fv.json" parts)
echo "$first" | grep -q " parts_fetched=$fn " || fail "new site B did not fetch all $fn parts: $first"
stop_worker wb

# Damage an installed file of site A (same size and mtime: only the bytes
# differ), then version 3: the part over the damage does not match its
# id and is fetched; version 3 is still byte-identical.
printf 'damaged' | dd of="$LA/$P/current/d/f14.bin" bs=1 seek=5000 conv=notrunc status=none
touch -r "$T/v2/d/f14.bin" "$LA/$P/current/d/f14.bin"
publish "$P" 3 "$T/v3" >"$T/p3.json"
wait_current "$LA" "$P" 3 90
assert_same_tree "$T/v3" "$LA/$P/current/"
grep -q "msg=local-part-mismatch .*package=$P version=3 " "$T/wa.log" ||
  fail "the damaged file was not reported (local-part-mismatch)"
V=3
sent3=$(jget "$T/p3.json" parts_sent)
[ "$(field wa parts_fetched)" -gt "$sent3" ] ||
  fail "version 3 fetched $(field wa parts_fetched) parts, no more than the $sent3 sent: the damaged part was not fetched"
[ "$(ino "$V2/d/f14.bin")" != "$(ino "$LA/$P/versions/3/d/f14.bin")" ] ||
  fail "version 3 shares the damaged f14.bin"

# Pruning (keep 2): version 1 is gone, the files it shared live on.
[ ! -e "$V1" ] || fail "version 1 was not pruned"
cmp -s "$T/v1/d/f10.bin" "$LA/$P/versions/3/d/f10.bin" || fail "f10.bin changed after pruning version 1"
[ "$(ino "$V2/d/f10.bin")" = "$(ino "$LA/$P/versions/3/d/f10.bin")" ] ||
  fail "f10.bin is not shared by versions 2 and 3"
# The metrics count both sources: the local bytes are the finalized
# lines' sums; the fetched ones at least theirs (the fetcher's count,
# which the worker samples every few seconds).
lsum=$(grep "msg=finalized .*package=$P " "$T/wa.log" | tr ' ' '\n' | sed -n 's/^local_bytes=//p' | awk '{ s += $1 } END { print s + 0 }')
fsum=$(grep "msg=finalized .*package=$P " "$T/wa.log" | tr ' ' '\n' | sed -n 's/^fetched_bytes=//p' | awk '{ s += $1 } END { print s + 0 }')
for _ in $(seq 30); do
  curl -fsS --max-time 10 "http://$A/metrics" >"$T/m.prom" || fail "scrape /metrics failed"
  mf=$(value m 'despool_part_bytes_total{source="fetched"}')
  [ "$mf" != none ] && [ "$mf" -ge "$fsum" ] && break
  sleep 0.5
done
[ "$(value m 'despool_part_bytes_total{source="local"}')" = "$lsum" ] ||
  fail "despool_part_bytes_total{source=\"local\"} is $(value m 'despool_part_bytes_total{source="local"}'), the log says $lsum"
[ "$mf" != none ] && [ "$mf" -ge "$fsum" ] || fail "despool_part_bytes_total{source=\"fetched\"} is $mf, the log says $fsum"
[ "$(value m despool_linked_bytes_total)" -gt 0 ] || fail "despool_linked_bytes_total is $(value m despool_linked_bytes_total)"
stop_worker wa

log "PASS: version 2 fetched $fetched of $n parts (pkgpub sent $sent), the rest re-created; $(field wa files_linked) files shared; a new site fetched all; a damaged file's part fetched; shared files survive pruning"
