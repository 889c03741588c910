#!/usr/bin/env bash
# systemd's notify protocol without systemd: NOTIFY_SOCKET names a unix
# datagram socket a small listener reads (one datagram per message, as
# systemd reads it). Worker w1 (WATCHDOG_USEC=2 s, WATCHDOG_PID unset)
# sends READY=1 only once its consumer got its first assignment (the
# listener checks that w1's log already holds msg=assigned when READY=1
# arrives), a STATUS= line naming site and partitions, WATCHDOG=1 at
# least every ~1 s (half the interval) while it works, and STOPPING=1
# after SIGTERM, then exits 0. Worker w2 of the same site (on the
# embedded broker's single partition its first assignment is empty) is
# ready too, and sends no WATCHDOG=1: its WATCHDOG_PID is another
# process's. Site S2's workers w3 and w4 use the cooperative protocol
# (incremental assignments): both are ready too, on the embedded broker
# one of them with an empty assignment.
PARTITIONS=1
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site dp); L=$T/lib; S2=$(site coop); L2=$T/lib2

# listen.py SOCKET OUT WORKERLOG: one line per message of a datagram:
# "<monotonic seconds> <message> assigned=<yes|no>", assigned saying
# whether WORKERLOG held msg=assigned when the datagram arrived.
cat >"$T/listen.py" <<'PY'
import os, socket, sys, time
sock, out, wlog = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock)
with open(out, "a", buffering=1) as f:
    while True:
        data = s.recv(65536).decode()
        t = time.monotonic()
        try:
            seen = "msg=assigned " in open(wlog).read()
        except FileNotFoundError:
            seen = False
        for line in data.split("\n"):
            f.write("%.3f %s assigned=%s\n" % (t, line, "yes" if seen else "no"))
PY
listen() { # N: socket $T/notifyN.sock, messages in $T/notifyN.out
  python3 "$T/listen.py" "$T/notify$1.sock" "$T/notify$1.out" "$T/w$1.log" &
  PIDS+=($!)
  for _ in $(seq 50); do [ -S "$T/notify$1.sock" ] && return; sleep 0.1; done
  fail "listener $1 did not bind $T/notify$1.sock"
}
wait_msg() { # N PATTERN SECONDS
  for _ in $(seq $(($3 * 10))); do
    grep -qE "$2" "$T/notify$1.out" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no message /$2/ on notify$1 after $3 s: $(tr '\n' '|' <"$T/notify$1.out" 2>/dev/null)"
}
for i in 1 2 3 4; do listen $i; done

# client.id: the range assignor gives the single partition to the member
# whose id sorts first, w1.
NOTIFY_SOCKET=$T/notify1.sock WATCHDOG_USEC=2000000 \
  start_worker w1 "$S" "$L" -X client.id=a-w1
wait_msg 1 '^[0-9.]+ READY=1 ' 60
grep -q ' READY=1 assigned=yes$' "$T/notify1.out" ||
  fail "READY=1 came before the worker's msg=assigned: $(grep READY "$T/notify1.out")"
[ "$(grep -c ' READY=1 ' "$T/notify1.out")" = 1 ] || fail "READY=1 sent more than once"
grep -qE "^[0-9.]+ STATUS=site $S: partitions [0-9]" "$T/notify1.out" ||
  fail "no STATUS= line with site and partitions: $(grep STATUS "$T/notify1.out")"
grep -q 'msg=watchdog .*interval_ms=2000 ping_every_ms=1000' "$T/w1.log" ||
  fail "w1 did not log its watchdog"
ready1=$(awk '/ READY=1 /{print $1; exit}' "$T/notify1.out")
log "w1 ready after its assignment ($(grep -m1 -o 'STATUS=.* assigned' "$T/notify1.out" | sed 's/ assigned$//'))"

# w2: WATCHDOG_PID names another process (pid 1): no watchdog for it.
NOTIFY_SOCKET=$T/notify2.sock WATCHDOG_USEC=2000000 WATCHDOG_PID=1 \
  start_worker w2 "$S" "$L" -X client.id=z-w2
wait_msg 2 '^[0-9.]+ READY=1 ' 60
grep -q ' READY=1 assigned=yes$' "$T/notify2.out" ||
  fail "w2: READY=1 came before its msg=assigned"
if [ "$BROKER_KIND" = embedded ]; then
  first=$(grep -m1 'msg=assigned ' "$T/w2.log")
  grep -q 'partitions=none' <<<"$first" ||
    fail "w2's first assignment was not empty: $first"
  grep -qE "STATUS=site $S: partitions none" "$T/notify2.out" ||
    fail "w2: no STATUS= line for its empty assignment"
  log "w2 ready on an empty assignment"
fi

# Cooperative: w3 and w4 start together and join the same generation.
COOP=(-X partition.assignment.strategy=cooperative-sticky)
NOTIFY_SOCKET=$T/notify3.sock start_worker w3 "$S2" "$L2" "${COOP[@]}"
NOTIFY_SOCKET=$T/notify4.sock start_worker w4 "$S2" "$L2" "${COOP[@]}"
for i in 3 4; do
  wait_msg $i '^[0-9.]+ READY=1 ' 60
  grep -q ' READY=1 assigned=yes$' "$T/notify$i.out" ||
    fail "w$i: READY=1 came before its msg=assigned"
  log "cooperative: w$i ready: $(grep -m1 -o 'msg=assigned .*' "$T/w$i.log")"
done

# Work while the watchdog runs.
make_tree "$T/src1" 1 30 64
publish "$P" 1 "$T/src1" >/dev/null
wait_current "$L" "$P" 1 60
# At least 6 s of pings after READY.
while python3 -c 'import sys,time; sys.exit(0 if time.monotonic() - float(sys.argv[1]) < 6.5 else 1)' "$ready1"; do
  sleep 0.2
done
awk -v r="$ready1" '/ WATCHDOG=1 /{ if ($1 >= r) print $1 }' "$T/notify1.out" >"$T/pings"
read -r n maxgap span < <(awk 'NR == 1 { f = $1 } NR > 1 { g = $1 - p; if (g > m) m = g } { p = $1 } END { printf "%d %.3f %.1f\n", NR, m, p - f }' "$T/pings")
[ "$n" -ge 5 ] || fail "only $n WATCHDOG=1 in the 6.5 s (at least) after READY"
awk -v m="$maxgap" 'BEGIN { exit !(m <= 1.6) }' ||
  fail "a gap of $maxgap s between WATCHDOG=1 pings (every 1 s expected)"
first_ping=$(awk '/ WATCHDOG=1 /{print $1; exit}' "$T/notify1.out")
log "w1: $n watchdog pings over $span s after READY, longest gap $maxgap s"
grep -q 'WATCHDOG=1' "$T/notify2.out" && fail "w2 pinged a watchdog meant for another pid"
grep -q 'msg=watchdog ' "$T/w2.log" && fail "w2 enabled a watchdog meant for another pid"

grep -q 'STOPPING=1' "$T/notify1.out" && fail "STOPPING=1 before SIGTERM"
stop_worker w1
wait_msg 1 '^[0-9.]+ STOPPING=1 ' 5
grep -q 'msg=stopped ' "$T/w1.log" || fail "w1 did not log msg=stopped"
stop_worker w2
wait_msg 2 '^[0-9.]+ STOPPING=1 ' 5
stop_worker w3
stop_worker w4
log "STOPPING=1 after SIGTERM, both exited 0 (w1: first ping at $first_ping, READY at $ready1)"
log "PASS"
