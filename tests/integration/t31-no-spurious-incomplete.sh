#!/usr/bin/env bash
# Regression (issue 11, defect 5): no spurious `incomplete` dead letters
# for the later chunks of an update that was already discarded (stale) or
# rejected. The old worker forgot a retired flight --incomplete-timeout
# after its retirement: the time of its last chunk was not refreshed as
# later chunks passed, and time spent throttled (--max-in-flight) was not
# discounted; and its commit point could land inside a discarded update,
# so after a restart the rest of it was dead-lettered "arrived without
# chunk 0". Whole payloads were copied to the DLQ for nothing.
# Worker: --incomplete-timeout 3 --max-in-flight 1 --max-update-size 50M;
# the stale updates are v1 of packages already at v2. Every chunk goes to
# partition 0 (ktool -p 0), in order.
# a. Trickle: a stale 5-chunk update and a 5-chunk update refused as
#    too-large (declares 10 GB), their chunks 1.5 s apart (each gap under
#    the 3 s timeout, the whole update over it). Checks: no dead letter for
#    the stale one; the refused one's 5 dead letters all say too-large,
#    none incomplete.
# b. Throttled (needs root, a loop device and fsfreeze: the library lives
#    on a loop-mounted ext4, noatime): with the library frozen, chunk 0 of
#    a stale 2-chunk update, then a 1-chunk update of another package (its
#    thread blocks on the frozen filesystem: --max-in-flight 1 reached, the
#    consumer stops taking events), then the stale update's chunk 1. The
#    library thaws after 6 s (< the 10 s throttled poll), the stale
#    update's chunk 1 is taken. Check: no dead letter for it.
# c. Restart: chunks 0 and 1 of a stale 4-chunk update, the worker is
#    stopped (SIGTERM) and started again, then chunks 2 and 3. Check: no
#    dead letter for it.
# All: the site ends at lag 0, every stale package still at v2. The parts
# run one after the other and the test fails at the end with every part
# that failed.
. "$(dirname "$0")/lib.sh"

S=$(site dp); BAD=()
bad() { log "FAILED CHECK: $*"; BAD+=("$*"); }
P1=$(pkg stale-a); R=$(pkg big-a); P2=$(pkg stale-b); X=$(pkg other-b); P3=$(pkg stale-c)

# Library: on a freezable filesystem when possible (part b).
FREEZE=0
if [ "$(id -u)" = 0 ] && command -v fsfreeze >/dev/null && command -v mkfs.ext4 >/dev/null; then
  truncate -s 96M "$T/lib.img" && mkfs.ext4 -q "$T/lib.img" && mkdir -p "$T/mnt" &&
    mount -o loop,noatime "$T/lib.img" "$T/mnt" 2>"$T/mount.err" && FREEZE=1
fi
if [ $FREEZE = 1 ]; then
  AT_EXIT+=("fsfreeze -u '$T/mnt'" "umount -l '$T/mnt'")
  L=$T/mnt/lib
else
  L=$T/lib
fi

mkev() { # PKG VERSION OUT CHUNKS [mkevent options]: events OUT.<i>
  local p=$1 v=$2 out=$3 n=$4; shift 4
  make_tree "$out.src" "$v" 12 16
  tar -C "$out.src" -cf "$out.tar" .
  python3 "$SRC/tests/integration/mkevent.py" --package "$p" --version "$v" \
    --tar "$out.tar" --out "$out" --chunks "$n" "$@" >/dev/null || fail "mkevent $p"
}
put0() { "$KTOOL" put -b "$B" -t pkg.updates -p 0 "$@" >/dev/null || fail "ktool put $*"; }
# dlq_count KEY [REASON]: dead letters of KEY (with REASON) in the DLQ
dlq_count() {
  "$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq.txt" || fail "dump dlq"
  grep -c "key=$1 .*h.despool.reason=\"${2:-[a-z0-9-]*}\"" "$T/dlq.txt" || true
}
opts=(--incomplete-timeout 3 --max-in-flight 1 --max-update-size 50M)

make_tree "$T/v2" 2 5 8
for p in "$P1" "$P2" "$P3"; do publish "$p" 2 "$T/v2" >/dev/null; done
start_worker w1 "$S" "$L" "${opts[@]}"
wait_log w1 'msg=assigned .*partitions=[0-9]' 60
for p in "$P1" "$P2" "$P3"; do wait_current "$L" "$p" 2 60; done

# ---- a. trickle
mkev "$P1" 1 "$T/a" 5
mkev "$R" 1 "$T/r" 5 --size 10000000000
: >"$T/a.list"
for i in 0 1 2 3 4; do printf '%s %s\n%s %s\n' "$P1" "$T/a.$i" "$R" "$T/r.$i" >>"$T/a.list"; done
log "a: two 5-chunk updates (stale, too-large), one chunk every 0.75 s"
"$KTOOL" put -b "$B" -t pkg.updates -p 0 -l "$T/a.list" -r 1.333 >/dev/null || fail "ktool put list"
sleep 4
wait_lag0_bounded "$S" 30
n=$(dlq_count "$P1"); [ "$n" = 0 ] || bad "a: $n dead letter(s) for the stale update $P1 (chunks 1.5 s apart, timeout 3 s)"
nt=$(dlq_count "$R" too-large); ni=$(dlq_count "$R" incomplete)
[ "$nt" = 5 ] && [ "$ni" = 0 ] || bad "a: the refused update $R: $nt too-large and $ni incomplete dead letter(s), expected 5 and 0"
grep 'arrived without chunk 0' "$T/w1.log" | head -2 | cut -c1-250 || true
log "a: stale $P1: $n dead letter(s); refused $R: $nt too-large, $ni incomplete"

# ---- b. throttled
if [ $FREEZE = 1 ]; then
  mkev "$P2" 1 "$T/b" 2
  mkev "$X" 1 "$T/x" 1
  fsfreeze -f "$T/mnt" || fail "fsfreeze -f failed"
  log "b: library frozen"
  put0 -k "$P2" "$T/b.0"
  put0 -k "$X" "$T/x.0"
  put0 -k "$P2" "$T/b.1"
  wait_log w1 "msg=update-started .*package=$X " 30
  sleep 6
  fsfreeze -u "$T/mnt" || fail "fsfreeze -u failed"
  log "b: library thawed after 6 s"
  wait_current "$L" "$X" 1 30
  sleep 1
  wait_lag0_bounded "$S" 30
  n=$(dlq_count "$P2"); [ "$n" = 0 ] || bad "b: $n dead letter(s) for the stale update $P2 (time throttled counted against it)"
  log "b: stale $P2: $n dead letter(s)"
else
  log "b: NOT RUN: needs root, a loop device and fsfreeze ($(cat "$T/mount.err" 2>/dev/null))"
fi

# ---- c. restart in the middle of a discarded update
mkev "$P3" 1 "$T/c" 4
put0 -k "$P3" "$T/c.0" "$T/c.1"
wait_log w1 "msg=discarded .*package=$P3 .*reason=stale" 30
sleep 2 # commits run every 0.2-1 s
stop_worker w1
log "c: worker stopped after chunks 0 and 1 of the stale update"
start_worker w1b "$S" "$L" "${opts[@]}"
wait_log w1b 'msg=assigned .*partitions=[0-9]' 60
put0 -k "$P3" "$T/c.2" "$T/c.3"
sleep 3
wait_lag0_bounded "$S" 30
n=$(dlq_count "$P3"); [ "$n" = 0 ] || bad "c: $n dead letter(s) for the stale update $P3 after a restart in its middle"
grep 'arrived without chunk 0' "$T/w1b.log" | head -2 | cut -c1-250 || true
log "c: stale $P3: $n dead letter(s)"

for p in "$P1" "$P2" "$P3"; do
  [ "$(current_version "$L" "$p")" = 2 ] || bad "$p is at $(current_version "$L" "$p"), expected 2"
done
no_staging_left "$L"
stop_worker w1b
[ ${#BAD[@]} = 0 ] || fail "${#BAD[@]} check(s) failed: $(printf '%s; ' "${BAD[@]}")"
log "PASS"
