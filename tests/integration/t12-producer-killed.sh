#!/usr/bin/env bash
# pkgpub killed (kill -9) in the middle of its transaction (Apache Kafka
# only: the embedded broker shows aborted transactions). A ~30 MiB update
# in 64 KiB chunks is sent with a throttled producer (one event at a time,
# each lingering 50 ms: -X queue.buffering.max.messages=1 -X linger.ms=50,
# ~30 s for all 481 chunks); once some chunks are in the log it is killed. A worker running all along must never see them (read_committed:
# no update-started); the partition's commit point stays before the open
# transaction. Re-publishing the same version (same transactional id, so
# the zombie transaction is fenced and aborted) installs it normally, only
# the new update id is ever started, and the site ends at lag 0.
if [ "${DESPOOL_BROKER:-embedded}" != kafka ]; then
  echo "[t12-producer-killed] SKIP: needs Apache Kafka (DESPOOL_BROKER=kafka); the embedded broker shows aborted transactions"
  exit 77
fi
. "$(dirname "$0")/lib.sh"

P=$(pkg big); Q=$(pkg warm); S=$(site dp); L=$T/lib
make_random_tree "$T/src/$P/1" 1 30
make_trees 5 8 "$T/src/$Q/1:1"
MIN_CHUNKS=$((30 * 1048576 / 65536))

start_worker w1 "$S" "$L"
wait_log w1 'msg=assigned' 60
start_sampler smp "$L" "$T/src" "$P" "$Q"
# Warm-up: the site is consuming and caught up before the zombie starts.
publish "$Q" 1 "$T/src/$Q/1" >/dev/null
wait_current "$L" "$Q" 1 60
wait_lag0_bounded "$S" 60

"$PKGPUB" -b "$B" -p "$P" -V 1 --chunk-size 65536 --schema 1 --no-progress \
  -X queue.buffering.max.messages=1 -X linger.ms=50 "$T/src/$P/1" \
  >"$T/zombie.out" 2>"$T/zombie.err" &
ZPID=$!; PIDS+=($ZPID)
# Chunks in the log show as lag (the high watermark counts an open
# transaction's events). Freeze pkgpub, check it is mid-way, kill it.
lag=0
for _ in $(seq 60); do
  kill -0 $ZPID 2>/dev/null || fail "pkgpub ended before it could be killed: $(cat "$T/zombie.out" "$T/zombie.err")"
  lag=$(lag_total_bounded "$S")
  [ "$lag" -ge 20 ] && break
  sleep 0.2
done
[ "$lag" -ge 20 ] || fail "no chunks of the zombie update in the log after 60 polls (lag $lag)"
kill -STOP $ZPID
lag=$(lag_total_bounded "$S")
kill -KILL $ZPID
rc=0; { wait $ZPID; } 2>/dev/null || rc=$?
forget_pid $ZPID
[ $rc = 137 ] || fail "pkgpub exited $rc, expected death by SIGKILL (137)"
grep -q published "$T/zombie.out" && fail "pkgpub printed 'published': the kill came after the commit"
[ "$lag" -lt "$MIN_CHUNKS" ] ||
  fail "lag $lag >= $MIN_CHUNKS chunks at the kill: all chunks were sent, the commit may have been under way"
log "pkgpub killed mid-transaction with $lag chunk(s) in the log (of >= $MIN_CHUNKS)"

# The open transaction blocks read_committed readers at its first event:
# the worker sees nothing of it, and the commit point stays before it.
sleep 4
grep -q "msg=update-started .*package=$P " "$T/w1.log" &&
  fail "worker started the killed, uncommitted update: $(grep -m1 "msg=update-started .*package=$P " "$T/w1.log")"
lag2=$(lag_total_bounded "$S")
[ "$lag2" -ge "$lag" ] || fail "lag fell from $lag to $lag2: offsets committed past an open transaction"
kill -0 "$(wpid w1)" || fail "worker died"

# Re-publish: same transactional id (default pkgpub-<host>-<package>):
# init_transactions fences the zombie and aborts its transaction.
publish "$P" 1 "$T/src/$P/1" --chunk-size 65536 --schema 1 >"$T/pub.json"
U2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["update_id"])' "$T/pub.json")
C2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunks"])' "$T/pub.json")
wait_current "$L" "$P" 1 120
assert_same_tree "$T/src/$P/1" "$L/$P/current/"
wait_lag0_bounded "$S" 60
started=$(grep "msg=update-started .*package=$P " "$T/w1.log" | grep -oE 'update_id=[0-9a-f]+' | sort -u)
[ "$started" = "update_id=$U2" ] ||
  fail "worker started update(s) [$(echo $started)], expected only the re-published $U2"
n=$(grep -c "msg=finalized .*package=$P .*update_id=$U2" "$T/w1.log" || true)
[ "$n" = 1 ] || fail "re-published update finalized $n times"
bad=$(grep -E 'msg=(rejected|dead-lettered) ' "$T/w1.log" | head -3 || true)
[ -z "$bad" ] || fail "unexpected: $bad"

# Kafka's view: read_committed shows only the re-published chunks; the
# zombie's chunks are in the log, aborted.
"$KTOOL" dump -b "$B" -t pkg.updates >"$T/committed.dump" || fail "ktool dump failed"
"$KTOOL" dump -b "$B" -t pkg.updates -X isolation.level=read_uncommitted \
  >"$T/all.dump" || fail "ktool dump (read_uncommitted) failed"
nc=$(grep -c "key=$P " "$T/committed.dump" || true)
na=$(grep -c "key=$P " "$T/all.dump" || true)
[ "$nc" = "$C2" ] || fail "read_committed shows $nc events of $P, expected $C2"
[ "$na" -gt "$nc" ] || fail "read_uncommitted shows $na events of $P: where did the zombie's chunks go?"
log "events of $P: $nc committed, $((na - nc)) aborted (the zombie's)"
assert_sampler_clean smp
stop_worker w1
no_staging_left "$L"
log "PASS"
