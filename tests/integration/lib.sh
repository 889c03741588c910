# lib.sh - shared helpers for the integration tests (sourced, not run).
#
# Each test gets a scratch directory $T, its own broker unless
# DESPOOL_BOOTSTRAP names one (then package and site names carry a random
# suffix so tests sharing a broker never see each other's packages), and a
# trap that stops every process it started. Any failed check ends the test
# with a message and the tail of the workers' logs.
set -euo pipefail

BIN=${DESPOOL_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
SRC=${DESPOOL_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DESPOOLER=$BIN/despooler
PKGPUB=$BIN/pkgpub
KTOOL=$BIN/tests/ktool
T=$(mktemp -d /tmp/despool-it.XXXXXX)
RUN=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
PIDS=()
AT_EXIT=() # commands the exit trap runs after stopping PIDS (e.g. umount)
TEST_NAME=$(basename "$0" .sh)

log() { printf '[%s %s %s] %s\n' "$TEST_NAME" "${DESPOOL_BROKER:-embedded}" "$(date +%T)" "$*"; }

cleanup() {
  local rc=$?
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]:-}"; do
    for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ $rc -ne 0 ]; then
    for f in "$T"/*.log; do
      [ -f "$f" ] || continue
      echo "---- tail of $f"; tail -n 25 "$f"
    done
  fi
  for c in "${AT_EXIT[@]:-}"; do [ -n "$c" ] && eval "$c" >/dev/null 2>&1 || true; done
  if [ -n "${KAFKA_STATE:-}" ]; then
    "$SRC/scripts/kafka" stop --dir "$KAFKA_STATE" >/dev/null 2>&1 || true
  fi
  [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
  exit $rc
}
trap cleanup EXIT

fail() { log "FAIL: $*"; exit 1; }

# Broker: the one named by DESPOOL_BOOTSTRAP; or, with DESPOOL_BROKER=kafka,
# a fresh single-node Apache Kafka for this test (scripts/kafka, ~10 s), or
# a fresh three-node cluster when the test set BROKERS=3 before sourcing
# this file (~25 s; such a test kills and restarts brokers, so it needs its
# own cluster: skipped on the embedded broker and with DESPOOL_BOOTSTRAP);
# else a fresh embedded one (despooler dev-broker).
BROKER_KIND=${DESPOOL_BROKER:-embedded}
BROKERS=${BROKERS:-1}
if [ "$BROKERS" != 1 ]; then
  if [ "$BROKER_KIND" != kafka ] || [ -n "${DESPOOL_BOOTSTRAP:-}" ]; then
    log "skipped: needs its own $BROKERS-broker Apache Kafka cluster (DESPOOL_BROKER=kafka, no DESPOOL_BOOTSTRAP)"
    rm -rf "$T"; trap - EXIT; exit 77
  fi
fi
if [ -n "${DESPOOL_BOOTSTRAP:-}" ]; then
  B=$DESPOOL_BOOTSTRAP
elif [ "$BROKER_KIND" = kafka ]; then
  KAFKA_STATE=$T/kafka
  "$SRC/scripts/kafka" start --dir "$KAFKA_STATE" --brokers "$BROKERS" >/dev/null 2>"$T/kafka-start.log" ||
    { cat "$T/kafka-start.log"; fail "scripts/kafka start failed"; }
  B=@$KAFKA_STATE/bootstrap
  # scripts/kafka creates pkg.updates with 6 partitions; tests that need
  # one partition put their events into partition 0 explicitly.
else
  "$DESPOOLER" dev-broker --partitions "${PARTITIONS:-6}" \
    --bootstrap-file "$T/bootstrap" >"$T/broker.out" 2>"$T/broker.log" &
  BROKER_PID=$!; PIDS+=($!)
  for _ in $(seq 100); do [ -s "$T/bootstrap" ] && break; sleep 0.05; done
  [ -s "$T/bootstrap" ] || fail "dev-broker did not start"
  B=@$T/bootstrap
fi

pkg() { echo "$1-$RUN"; }       # package id unique to this run
site() { echo "$1-$RUN"; }      # site name unique to this run

# publish PACKAGE VERSION SOURCE [pkgpub options...]: prints pkgpub --json.
publish() {
  local p=$1 v=$2 s=$3; shift 3
  "$PKGPUB" -b "$B" -p "$p" -V "$v" --json --no-progress "$@" "$s" \
    2>>"$T/pkgpub.log" || fail "pkgpub $p v$v failed"
}

# start_worker NAME SITE LIBRARY [options...]: background worker, log in
# $T/NAME.log, pid in variable WPID_NAME.
start_worker() {
  local name=$1 s=$2 lib=$3; shift 3
  "$DESPOOLER" run -b "$B" --site "$s" --library "$lib" --create-library "$@" \
    >>"$T/$name.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  eval "WPID_${name//-/_}=$pid"
}
wpid() { eval "echo \$WPID_${1//-/_}"; }

# stop_worker NAME: SIGTERM, and it must exit 0 within 30 s.
stop_worker() {
  local pid; pid=$(wpid "$1")
  kill -TERM "$pid" 2>/dev/null || true
  local rc=0
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "worker $1 did not stop within 30 s of SIGTERM"
  wait "$pid" || rc=$?
  [ $rc -eq 0 ] || fail "worker $1 exited $rc after SIGTERM"
}

kill9_worker() { kill -KILL "$(wpid "$1")" 2>/dev/null || true; wait "$(wpid "$1")" 2>/dev/null || true; }

# current_version LIBRARY PACKAGE: the version `current` points at, or 0.
current_version() {
  local t; t=$(readlink "$1/$2/current" 2>/dev/null) || { echo 0; return; }
  echo "${t#versions/}"
}

# wait_current LIBRARY PACKAGE VERSION [SECONDS]
wait_current() {
  local lib=$1 p=$2 v=$3 secs=${4:-60}
  for _ in $(seq $((secs * 10))); do
    [ "$(current_version "$lib" "$p")" = "$v" ] && return 0
    sleep 0.1
  done
  fail "$lib/$p/current is $(current_version "$lib" "$p"), expected $v after ${secs}s"
}

# wait_log NAME PATTERN [SECONDS]: a worker log line matching PATTERN.
wait_log() {
  local name=$1 pat=$2 secs=${3:-60}
  for _ in $(seq $((secs * 10))); do
    grep -qE "$pat" "$T/$name.log" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no log line /$pat/ in $name.log after ${secs}s"
}

# total lag of SITE (committed offsets vs high watermark).
lag_total() {
  "$DESPOOLER" lag -b "$B" --site "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_lag"])'
}

# wait_lag0 SITE [SECONDS]
wait_lag0() {
  local s=$1 secs=${2:-30} l=
  for _ in $(seq $((secs * 5))); do
    l=$(lag_total "$s") && [ "$l" = 0 ] && return 0
    sleep 0.2
  done
  fail "lag of site $s is $l, expected 0 after ${secs}s"
}

# assert_same_tree A B: content, types, modes and symlinks identical.
assert_same_tree() {
  diff -r --no-dereference "$1" "$2" >/dev/null || fail "trees differ: $1 vs $2"
  local ma mb
  ma=$(cd "$1" && find . -printf '%p %y %m %l\n' | sort)
  mb=$(cd "$2" && find . -printf '%p %y %m %l\n' | sort)
  [ "$ma" = "$mb" ] || fail "types/modes/links differ: $1 vs $2"
}

# make_tree DIR SEED FILES KBYTES: a deterministic tree with FILES files
# of KBYTES KiB each, nested dirs, a symlink and an executable. Contents
# are mostly text (1/64 random bytes), so a tree compresses to a few
# percent of its size: the embedded broker keeps only 5 MiB per partition
# (librdkafka's mock cluster), real Kafka has no such cap.
make_tree() {
  local d=$1 seed=$2 n=$3 kb=$4
  python3 - "$d" "$seed" "$n" "$kb" <<'PY'
import os, random, sys
d, seed, n, kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
os.makedirs(d, exist_ok=True)
size = kb * 1024
for i in range(n):
    sub = os.path.join(d, "dir%02d" % (i % 7), "sub%d" % (i % 3))
    os.makedirs(sub, exist_ok=True)
    noise = rnd.randbytes(size // 64)
    text = (("seed %d file %d " % (seed, i)) * (size // 12 + 1)).encode()
    with open(os.path.join(sub, "file%05d.dat" % i), "wb") as f:
        f.write(noise + text[: size - len(noise)])
with open(os.path.join(d, "VERSION"), "w") as f:
    f.write("seed %d\n" % seed)
os.symlink("VERSION", os.path.join(d, "VERSION.link"))
with open(os.path.join(d, "run.sh"), "w") as f:
    f.write("#!/bin/sh\necho seed %d\n" % seed)
os.chmod(os.path.join(d, "run.sh"), 0o755)
PY
}

# no_staging_left LIBRARY: no work-in-progress directories remain.
no_staging_left() {
  local left
  left=$(find "$1" -path '*/.staging/*' -maxdepth 3 2>/dev/null | head -5)
  [ -z "$left" ] || fail "staging left behind in $1: $left"
}

# ---- chaos-test helpers (t10-t14) ----------------------------------------

# make_trees FILES KBYTES DIR:SEED...: like make_tree for many trees in one
# python process (the same layout and content for the same seed).
make_trees() {
  local n=$1 kb=$2; shift 2
  python3 - "$n" "$kb" "$@" <<'PY'
import os, random, sys
n, kb = int(sys.argv[1]), int(sys.argv[2])
size = kb * 1024
for spec in sys.argv[3:]:
    d, seed = spec.rsplit(":", 1)
    seed = int(seed)
    rnd = random.Random(seed)
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        sub = os.path.join(d, "dir%02d" % (i % 7), "sub%d" % (i % 3))
        os.makedirs(sub, exist_ok=True)
        noise = rnd.randbytes(size // 64)
        text = (("seed %d file %d " % (seed, i)) * (size // 12 + 1)).encode()
        with open(os.path.join(sub, "file%05d.dat" % i), "wb") as f:
            f.write(noise + text[: size - len(noise)])
    with open(os.path.join(d, "VERSION"), "w") as f:
        f.write("seed %d\n" % seed)
    os.symlink("VERSION", os.path.join(d, "VERSION.link"))
    with open(os.path.join(d, "run.sh"), "w") as f:
        f.write("#!/bin/sh\necho seed %d\n" % seed)
    os.chmod(os.path.join(d, "run.sh"), 0o755)
PY
}

# make_random_tree DIR SEED MBYTES: a tree of incompressible data (zstd
# output ~ input size: real Kafka only), plus the VERSION and run.sh files
# the sampler checks.
make_random_tree() {
  local d=$1 seed=$2 mb=$3 i
  mkdir -p "$d/data"
  for i in $(seq 0 $(((mb + 7) / 8 - 1))); do
    head -c $((mb * 1048576 / ((mb + 7) / 8))) /dev/urandom >"$d/data/blob$i.bin"
  done
  printf 'seed %d\n' "$seed" >"$d/VERSION"
  printf '#!/bin/sh\necho seed %d\n' "$seed" >"$d/run.sh"
  chmod 755 "$d/run.sh"
}

# forget_pid PID: drop an exited process from PIDS (long loops start many;
# the exit trap must never signal a recycled pid).
# Background jobs that run for minutes (publisher loops) record their exit
# status in $T/NAME.rc: started as
#   ( ( BODY ) && echo 0 >"$T/NAME.rc" || echo $? >"$T/NAME.rc" ) &
# This machine reuses PIDs within minutes (pid_max 32768, and Kafka's
# threads take PIDs too), so `wait PID` or `kill -0 PID` long after a job
# ended may name another process.
job_done() { [ -e "$T/$1.rc" ]; }
# wait_job NAME SECONDS: until NAME has ended; fail unless it exited 0.
wait_job() {
  local end=$((SECONDS + $2))
  while ! job_done "$1"; do
    [ $SECONDS -lt $end ] || fail "$1 still running after $2 s"
    sleep 0.1
  done
  [ "$(cat "$T/$1.rc")" = 0 ] || fail "$1 exited $(cat "$T/$1.rc")"
}

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && [ "$p" != "$1" ] && keep+=("$p"); done
  PIDS=("${keep[@]:-}")
}

# start_sampler NAME LIBRARY SRCROOT PACKAGE...: a background reader of
# every PACKAGE's `current` in LIBRARY every ~4 ms. SRCROOT/<package>/<v>
# is the source of version v. It counts a downgrade (current older than
# one it saw before) and a partial or mixed tree (VERSION or run.sh, the
# first and last entries of the sorted tar, differ from the source of the
# version current points at while current still points there). Summary:
# $T/NAME.samples, first line "samples=N downgrades=N partial=N".
start_sampler() {
  local name=$1 lib=$2 srcroot=$3; shift 3
  rm -f "$T/$name.stop"
  python3 - "$T/$name.samples" "$T/$name.stop" "$lib" "$srcroot" "$@" <<'PY' &
import os, sys, time
out, stopf, lib, srcroot = sys.argv[1:5]
pkgs = sys.argv[5:]
files = ("VERSION", "run.sh")
expected, maxv, seen = {}, {}, {p: set() for p in pkgs}
n, down, bad = 0, [], []

def want(p, v):
    if (p, v) not in expected:
        try:
            expected[(p, v)] = tuple(
                open(os.path.join(srcroot, p, str(v), f), "rb").read() for f in files)
        except OSError:
            expected[(p, v)] = None
    return expected[(p, v)]

while True:
    last = os.path.exists(stopf)
    for p in pkgs:
        cur = os.path.join(lib, p, "current")
        try:
            t = os.readlink(cur)
        except OSError:
            continue
        n += 1
        if not t.startswith("versions/") or not t[9:].isdigit():
            bad.append("%s current -> %r" % (p, t))
            continue
        v = int(t[9:])
        seen[p].add(v)
        if v < maxv.get(p, 0):
            down.append("%s %d -> %d" % (p, maxv[p], v))
        maxv[p] = max(maxv.get(p, 0), v)
        try:
            got = tuple(open(os.path.join(lib, p, t, f), "rb").read() for f in files)
        except OSError:
            got = None
        if got == want(p, v):
            continue
        if got is None:  # pruned after current moved on: not what readers see
            try:
                if os.readlink(cur) != t:
                    continue
            except OSError:
                pass
        bad.append("%s version %d: %s" % (p, v, "missing files" if got is None
                                          else "content differs from its source"))
    if last:
        break
    time.sleep(0.004)
with open(out + ".tmp", "w") as f:
    f.write("samples=%d downgrades=%d partial=%d\n" % (n, len(down), len(bad)))
    for p in pkgs:
        f.write("seen %s %s\n" % (p, ",".join(map(str, sorted(seen[p])))))
    for d in down[:20]:
        f.write("downgrade %s\n" % d)
    for b in bad[:20]:
        f.write("partial %s\n" % b)
os.rename(out + ".tmp", out)
PY
  local pid=$!
  PIDS+=($pid)
  eval "SAMPLER_${name//-/_}=$pid"
}

# stop_sampler NAME: stop it (bounded); sampler_summary NAME then prints
# its summary line. (Not in $(...): the sampler is this shell's child.)
stop_sampler() {
  local pid; pid=$(eval "echo \$SAMPLER_${1//-/_}")
  touch "$T/$1.stop"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && fail "sampler $1 did not stop within 30 s"
  wait "$pid" || fail "sampler $1 failed"
  forget_pid "$pid"
  [ -s "$T/$1.samples" ] || fail "sampler $1 wrote no summary"
}
sampler_summary() { head -1 "$T/$1.samples"; }

# assert_sampler_clean NAME: stop it; it saw samples, no downgrade and no
# partial or mixed tree.
assert_sampler_clean() {
  local s; stop_sampler "$1"; s=$(sampler_summary "$1")
  log "sampler $1: $s"
  case $s in
    "samples=0 "*) fail "sampler $1 never saw a current symlink" ;;
    *" downgrades=0 partial=0") ;;
    *) grep -E '^(downgrade|partial) ' "$T/$1.samples" | head -10
       fail "sampler $1: $s" ;;
  esac
}

# assert_finalized_at_most_once LOG...: `current` only moves forward, so a
# (package, version) is finalized at most once in one library.
assert_finalized_at_most_once() {
  local dup
  dup=$(cat "$@" | grep -h 'msg=finalized ' |
        sed -E 's/.* package=([^ ]+) version=([0-9]+).*/\1 \2/' | sort | uniq -d | head -5)
  [ -z "$dup" ] || fail "finalized more than once: $dup"
}

# wait_versions LIBRARY SECONDS PACKAGE=VERSION...: all of them reached,
# one deadline for all.
wait_versions() {
  local lib=$1 secs=$2; shift 2
  local behind= spec end=$((SECONDS + secs))
  while :; do
    behind=
    for spec in "$@"; do
      [ "$(current_version "$lib" "${spec%=*}")" = "${spec##*=}" ] ||
        behind="$behind ${spec%=*}@$(current_version "$lib" "${spec%=*}")/${spec##*=}"
    done
    [ -z "$behind" ] && return 0
    [ $SECONDS -ge $end ] && break
    sleep 0.2
  done
  fail "after ${secs}s, packages behind (have/want):$behind"
}

# lag_total_bounded SITE: like lag_total, but a `despooler lag` that does
# not answer within 30 s fails the test (instead of hanging it), and a
# partition without a committed offset counts its whole log-end offset
# (total_lag leaves such partitions out, as Kafka's tool shows "-").
lag_total_bounded() {
  local out rc=0
  out=$(timeout 30 "$DESPOOLER" lag -b "$B" --site "$1" --json) || rc=$?
  if [ $rc = 124 ]; then # in $(...): say it on stderr, the caller exits
    log "FAIL: despooler lag --site $1 hung (no answer within 30 s)" >&2
    exit 1
  fi
  python3 -c '
import json, sys
j = json.loads(sys.argv[1])
print(sum(max(p["lag"], 0) if p["current_offset"] is not None
          else p["log_end_offset"] for p in j["partitions"]))' "$out"
}

# wait_lag0_bounded SITE [SECONDS]: wait_lag0 built on lag_total_bounded.
wait_lag0_bounded() {
  local s=$1 secs=${2:-30} l= end=$((SECONDS + ${2:-30}))
  while :; do
    l=$(lag_total_bounded "$s") || fail "despooler lag --site $s failed"
    [ "$l" = 0 ] && return 0
    [ $SECONDS -ge $end ] && break
    sleep 0.2
  done
  fail "lag of site $s is $l, expected 0 after ${secs}s"
}

# ---- schema v2 helpers: topic configs, record counts, compaction ---------

# kafka_bootstrap: $B as a host:port list (B may be @FILE).
kafka_bootstrap() {
  if [ "${B#@}" != "$B" ]; then cat "${B#@}"; else echo "$B"; fi
}

# kafka_cli TOOL ARGS...: a Kafka CLI tool (scripts/kafka cli) against
# this test's broker; its output in $T/kafka-cli.out. Apache Kafka only.
kafka_cli() {
  [ "$BROKER_KIND" = kafka ] || fail "kafka_cli $1: needs Apache Kafka (DESPOOL_BROKER=kafka)"
  local tool=$1; shift
  "$SRC/scripts/kafka" cli "$tool" --bootstrap-server "$(kafka_bootstrap)" "$@" \
    >"$T/kafka-cli.out" 2>&1 || { cat "$T/kafka-cli.out"; fail "scripts/kafka cli $tool $* failed"; }
}

# kafka_topic_config TOPIC k=v[,k=v...]: alter TOPIC's configs (what is
# not named keeps its value). Apache Kafka only.
kafka_topic_config() {
  kafka_cli kafka-configs --alter --entity-type topics --entity-name "$1" --add-config "$2"
}

# kafka_broker_config k=v[,k=v...]: alter a cluster-wide dynamic broker
# config (e.g. log.cleaner.backoff.ms, which restarts the log cleaner
# with the new value). Apache Kafka only.
kafka_broker_config() {
  kafka_cli kafka-configs --alter --entity-type brokers --entity-default --add-config "$1"
}

# kafka_client_quota k=v[,k=v...]: a quota for every client of the
# cluster (entity clients, default), e.g. consumer_byte_rate=N: the
# brokers then hold each client's fetches to N bytes a second (per
# broker), the way a slow site's link would. Apache Kafka only.
kafka_client_quota() {
  kafka_cli kafka-configs --alter --entity-type clients --entity-default --add-config "$1"
}

# kafka_client_quota_clear KEY[,KEY...]: remove those quotas again.
kafka_client_quota_clear() {
  kafka_cli kafka-configs --alter --entity-type clients --entity-default --delete-config "$1"
}

# partition_count TOPIC (Apache Kafka only).
partition_count() {
  kafka_cli kafka-topics --describe --topic "$1"
  sed -nE 's/.*PartitionCount: *([0-9]+).*/\1/p' "$T/kafka-cli.out" | head -1
}

# count_records TOPIC [KEY]: records currently in TOPIC (read_committed,
# tombstones included), or only those whose key is KEY. Use as
# n=$(count_records ...): a failed dump ends the test.
count_records() {
  local out
  if ! out=$("$KTOOL" dump -b "$B" -t "$1" 2>"$T/count_records.err"); then
    log "FAIL: ktool dump $1: $(cat "$T/count_records.err")" >&2
    exit 1
  fi
  printf '%s\n' "$out" | awk -v all=$(($# < 2)) -v k="key=${2:-}" \
    '/^partition=/ && (all || $3 == k) { n++ } END { print n + 0 }'
}

# wait_compacted TOPIC KEY MAX TIMEOUT_S: until at most MAX records with
# KEY remain in TOPIC (the log cleaner has run over them); fails after
# TIMEOUT_S. Sets COMPACTED_AFTER_S to the seconds it waited.
wait_compacted() {
  local topic=$1 key=$2 max=$3 secs=$4 n t0=$EPOCHREALTIME end=$((SECONDS + $4))
  while :; do
    n=$(count_records "$topic" "$key")
    if [ "$n" -le "$max" ]; then
      COMPACTED_AFTER_S=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
      return 0
    fi
    [ $SECONDS -lt $end ] || break
    sleep 0.5
  done
  fail "$topic: $n records with key $key after ${secs}s, expected at most $max (log cleaner not run?)"
}

# roll_segments TOPIC SEGMENT_MS: close the active segment of every
# partition of TOPIC (the log cleaner never cleans it): waits SEGMENT_MS,
# then puts a tombstone of key roll-$RUN into each partition (segment.ms
# rolls a segment at the first append after it). Apache Kafka only.
roll_segments() {
  local topic=$1 n i pids=() p
  n=$(partition_count "$topic")
  [ -n "$n" ] || fail "roll_segments: no partition count for $topic"
  sleep "$(awk -v ms="$2" 'BEGIN { printf "%.3f", ms / 1000 + 0.2 }')"
  for i in $(seq 0 $((n - 1))); do
    "$KTOOL" put -b "$B" -t "$topic" -k "roll-$RUN" -p "$i" -n 2>>"$T/roll.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || fail "roll_segments $topic: ktool put failed: $(cat "$T/roll.err")"; done
}

# compact_fast TOPIC...: make Apache Kafka's log cleaner compact TOPIC
# within seconds (tests only): segments roll after 1 s (at the next
# append: see roll_segments), no compaction lag, tombstones kept 1 s, and
# min.cleanable.dirty.ratio=0, so that any dirty record makes a partition
# cleanable. (With KAFKA-LOCAL.md's 0.01, a tombstone of a few hundred
# bytes after a 900 KB part is 0.0003 of the partition: the part would
# never go.) The broker's cleaner backs off 1 s instead of 15 s when it
# found nothing to clean (log.cleaner.backoff.ms, a dynamic config).
compact_fast() {
  local t
  for t in "$@"; do
    kafka_topic_config "$t" cleanup.policy=compact,segment.ms=1000,min.cleanable.dirty.ratio=0,delete.retention.ms=1000,min.compaction.lag.ms=0
  done
  grep -qs '^log.cleaner.backoff.ms=1000$' "${KAFKA_STATE:-/nonexistent}/server.properties" ||
    kafka_broker_config log.cleaner.backoff.ms=1000
}

# ---- cluster helpers (BROKERS=3) ------------------------------------------

# kill_broker N / start_broker N: kill -9 node N of this test's cluster;
# start it again (returns once it has started).
kill_broker() {
  "$SRC/scripts/kafka" kill-broker "$1" --dir "$KAFKA_STATE" 2>>"$T/kafka-chaos.log" ||
    fail "scripts/kafka kill-broker $1 failed: $(tail -3 "$T/kafka-chaos.log")"
}
start_broker() {
  "$SRC/scripts/kafka" start-broker "$1" --dir "$KAFKA_STATE" 2>>"$T/kafka-chaos.log" ||
    fail "scripts/kafka start-broker $1 failed: $(tail -3 "$T/kafka-chaos.log")"
}

# partition_leader TOPIC PARTITION: the node id leading it (-1: none).
partition_leader() {
  kafka_cli kafka-topics --describe --topic "$1"
  awk -v p="$2" '$3 == "Partition:" && $4 == p { print $6; exit }' "$T/kafka-cli.out"
}

# leaders_of TOPIC NODE: the partitions of TOPIC node NODE leads, comma-separated.
leaders_of() {
  kafka_cli kafka-topics --describe --topic "$1"
  awk -v n="$2" '$3 == "Partition:" && $6 == n { printf "%s%s", s, $4; s = "," }' "$T/kafka-cli.out"
}

# txn_coordinator TRANSACTIONAL_ID: the node id coordinating it; fails
# (status 1, no output) while the id is not known to the cluster yet.
txn_coordinator() {
  "$SRC/scripts/kafka" cli kafka-transactions --bootstrap-server "$(kafka_bootstrap)" \
    describe --transactional-id "$1" >"$T/kafka-txn.out" 2>&1 || return 1
  awk 'NR == 2 { print $1 }' "$T/kafka-txn.out"
}

# group_coordinator GROUP: the node id coordinating the consumer group.
group_coordinator() {
  kafka_cli kafka-consumer-groups --describe --group "$1" --state
  sed -nE 's/.*:[0-9]+ +\(([0-9]+)\).*/\1/p' "$T/kafka-cli.out" | head -1
}

# ---- storm helpers: worker slots of site $S on library $L ---------------

# Worker slots 1..3; each incarnation appends to $T/wN.log. SIGTERM is
# asynchronous (a new incarnation may join while the old one leaves); a
# stopping worker must exit 0 within 30 s (reaped by reap_stopping).
RUNNING=(0 0 0 0); STARTS=0; KILLS=0; TERMS=0; STOPPING=()
slot_start() {
  start_worker "w$1" "$S" "$L"
  RUNNING[$1]=1; STARTS=$((STARTS + 1))
}
# A worker must never exit unless told to.
assert_alive() { # SLOT PID
  kill -0 "$2" 2>/dev/null && return 0
  local rc=0; wait "$2" || rc=$?
  fail "worker w$1 (pid $2) exited on its own (status $rc); see w$1.log"
}
slot_kill9() {
  local pid; pid=$(wpid "w$1")
  assert_alive "$1" "$pid"
  kill9_worker "w$1"; forget_pid "$pid"
  RUNNING[$1]=0; KILLS=$((KILLS + 1))
}
slot_term() {
  local pid; pid=$(wpid "w$1")
  assert_alive "$1" "$pid"
  kill -TERM "$pid"; STOPPING+=("$pid:$((SECONDS + 30)):w$1")
  RUNNING[$1]=0; TERMS=$((TERMS + 1))
}
reap_stopping() { # [all]: with "all", wait for every stopping worker
  local keep=() e pid dl name rc
  for e in "${STOPPING[@]:-}"; do
    [ -n "$e" ] || continue
    IFS=: read -r pid dl name <<<"$e"
    while [ "${1:-}" = all ] && kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt "$dl" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      [ $SECONDS -lt "$dl" ] || fail "worker $name (pid $pid) did not stop within 30 s of SIGTERM"
      keep+=("$e"); continue
    fi
    rc=0; wait "$pid" || rc=$?
    [ $rc = 0 ] || fail "worker $name (pid $pid) exited $rc after SIGTERM"
    forget_pid "$pid"
  done
  STOPPING=("${keep[@]:-}")
}
# storm_action: one storm step on a random slot: a running worker is
# stopped (the first stop is a kill -9, the second a SIGTERM, then at
# random: every storm has both, whatever the seed), a stopped one started.
storm_action() {
  local i=$((RANDOM % 3 + 1))
  if [ "${RUNNING[$i]}" = 1 ]; then
    if [ $KILLS = 0 ] || { [ $TERMS != 0 ] && [ $((RANDOM % 2)) = 0 ]; }; then
      slot_kill9 $i
    else
      slot_term $i
    fi
  else
    slot_start $i
  fi
}
rand_sleep() { # MIN_MS SPREAD_MS
  local ms=$(($1 + RANDOM % $2))
  sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
}

# converged NV: every package of PKGS is at version NV in $L.
converged() {
  local P
  for P in "${PKGS[@]}"; do [ "$(current_version "$L" "$P")" = "$1" ] || return 1; done
}

# start_publishers NPUB NV SEED: NPUB background loops; loop k owns the
# packages PKGS[k-1], PKGS[k-1+NPUB], ... and publishes their versions
# 1..NV in order from $T/src/<package>/<version> (one transactional id per
# package: a package's publishes never overlap, or they would fence each
# other), with random pauses, so that updates keep coming during a storm.
# Loop k's pkgpub --json lines go to $T/pubk.out, its status to
# $T/pubk.rc; PUBLISHERS is NPUB.
PUBLISHERS=0
start_publishers() {
  local npub=$1 nv=$2 seed=$3 k
  PUBLISHERS=$npub
  for k in $(seq "$npub"); do
    ( (
      RANDOM=$((seed + k))
      for v in $(seq "$nv"); do
        for ((i = k - 1; i < ${#PKGS[@]}; i += npub)); do
          P=${PKGS[$i]}
          "$PKGPUB" -b "$B" -p "$P" -V "$v" --json --no-progress "$T/src/$P/$v" \
            >>"$T/pub$k.out" 2>>"$T/pkgpub.log" ||
            { echo "pkgpub $P v$v failed" >>"$T/pub$k.err"; exit 1; }
          rand_sleep 0 1500
        done
      done
    ) && echo 0 >"$T/pub$k.rc" || echo $? >"$T/pub$k.rc" ) &
    PIDS+=($!)   # the exit trap stops them too
  done
}

# publishing: a publisher loop is still running.
publishing() {
  local k
  for k in $(seq "$PUBLISHERS"); do job_done "pub$k" || return 0; done
  return 1
}

# wait_publishers COUNT: every loop ends (60 s each) without a failure,
# having published COUNT updates in all.
wait_publishers() {
  local k n
  for k in $(seq "$PUBLISHERS"); do
    job_done "pub$k" && [ "$(cat "$T/pub$k.rc")" != 0 ] &&
      fail "a publisher failed: $(cat "$T"/pub*.err 2>/dev/null)"
    wait_job "pub$k" 60
  done
  n=$(cat "$T"/pub*.out | grep -c '"package"' || true)
  [ "$n" = "$1" ] || fail "published $n updates, expected $1"
}

# put_status_records: write pkg.status records as a site's worker (or
# pkgpub, site _published) would, msgpack maps keyed SITE/PACKAGE, one
# per stdin line: SITE<TAB>PACKAGE<TAB>VERSION<TAB>STATE<TAB>DETAIL, where
# DETAIL takes Python bytes escapes (\n, \\, \xff) for what a shell
# cannot pass. at_ms is now. t09 and t55 use it.
put_status_records() {
  cat >"$T/status.tsv"
  python3 - "$T" <<'PY' || fail "put_status_records: bad input"
import codecs, sys, time
t = sys.argv[1]
def s(b):
    return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b
def u(v):
    return b"\xcf" + v.to_bytes(8, "big")
now = int(time.time() * 1000)
with open(f"{t}/status.list", "w") as lst:
    for i, line in enumerate(open(f"{t}/status.tsv").read().splitlines()):
        site, pkg, v, state, detail = line.split("\t")
        d = codecs.escape_decode(detail.encode())[0]
        rec = (b"\x86" + s(b"site") + s(site.encode()) + s(b"package") + s(pkg.encode())
               + s(b"version") + u(int(v)) + s(b"state") + s(state.encode())
               + s(b"detail") + s(d) + s(b"at_ms") + u(now))
        open(f"{t}/status.{i}", "wb").write(rec)
        lst.write(f"{site}/{pkg} {t}/status.{i}\n")
PY
  "$KTOOL" put -b "$B" -t pkg.status -l "$T/status.list" >/dev/null || fail "ktool put status records"
}
