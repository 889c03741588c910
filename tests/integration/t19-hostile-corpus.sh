#!/usr/bin/env bash
# The hostile-input corpus (tests/hostile/make_corpus.py) through a real
# worker: archives that climb out of the library (absolute paths, '..',
# symlinks and hardlinks outside, a directory swapped for a symlink),
# overlong names and link targets (pax and GNU long names), device nodes
# and FIFOs, sparse files claiming 32 TiB (old GNU, pax 0.1 and 1.0),
# 65,001 hardlinks to one file, entry-count and size caps, zstd bombs and a
# 1 GiB window, truncated and bit-flipped streams, lying sha256 and sizes,
# broken reassembly (missing chunks, mixed headers), and events that are
# not events (every invalid vector of schemas/v1). Each event must land in
# pkg.updates.dlq with the reason the manifest names, nothing may be
# written outside the library (a filesystem-wide search for the names the
# attacks plant), nothing of a refused update may stay in it, setuid,
# setgid and sticky bits are stripped, the worker never exits, its offsets
# are all committed, and afterwards it installs a good update.
. "$(dirname "$0")/lib.sh"

S=$(site dp); L=$T/lib; GOOD=$(pkg good)
python3 "$SRC/tests/hostile/make_corpus.py" "$T/corpus" "$RUN" >"$T/corpus.out" ||
  fail "make_corpus.py failed"
log "corpus: $(cat "$T/corpus.out")"
touch "$T/marker"
start_worker w1 "$S" "$L" --max-update-size 16M --max-entries 1000 --incomplete-timeout 3
W=$(wpid w1)
wait_log w1 'msg=assigned ' 60

expected=0
while IFS=$'\t' read -r case cls p n expect detail; do
  "$KTOOL" put -b "$B" -t pkg.updates -k "$p" $(ls "$T/corpus/$case"/event.* | sort -t. -k2 -n) ||
    fail "put $case"
  case $expect in installed:*) ;; *) expected=$((expected + n)) ;; esac
done <"$T/corpus/manifest.tsv"
log "put every case; expecting $expected dead letters"

# Wait for every dead letter (bounded), the worker alive all along.
got=0
for _ in $(seq 240); do
  kill -0 "$W" 2>/dev/null || fail "worker exited during the corpus"
  "$KTOOL" dump -b "$B" -t pkg.updates.dlq >"$T/dlq" 2>/dev/null || true
  got=$(grep -c "key=h[0-9]*-$RUN " "$T/dlq" || true)
  [ "$got" -ge "$expected" ] && break
  sleep 0.5
done
[ "$got" -ge "$expected" ] || fail "only $got of $expected dead letters after 120 s"
wait_lag0_bounded "$S" 60

# Escapes: any file anywhere named like what an attack tried to plant.
find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o \
  -name 'despool-pwned*' -newer "$T/marker" -print 2>/dev/null >"$T/escapes" || true
find "$L" -name 'despool-pwned*' >"$T/leftovers" 2>/dev/null || true

python3 - "$T/corpus/manifest.tsv" "$T/dlq" "$L" "$T/escapes" "$T/leftovers" <<'PY' >"$T/report" || { cat "$T/report"; fail "corpus outcomes differ from the manifest (above)"; }
import collections, os, re, stat, sys
manifest, dlq, lib, escapes, leftovers = sys.argv[1:6]
seen = collections.defaultdict(list)
for line in open(dlq):
    m = re.search(r'key=(\S+) .*h\.despool\.reason="([^"]*)"', line)
    if m:
        seen[m.group(1)].append(m.group(2))
bad = 0
by_class = collections.OrderedDict()
for row in open(manifest):
    case, cls, pkg, n, expect, detail = row.rstrip("\n").split("\t")
    n = int(n)
    c = by_class.setdefault(cls, [0, 0])
    c[0] += n
    reasons = seen.get(pkg, [])
    installed = os.path.islink(os.path.join(lib, pkg, "current"))
    if expect.startswith("installed:"):
        want = expect.split(":")[1]
        mode = "-"
        if installed:
            mode = "%o" % stat.S_IMODE(os.stat(os.path.join(lib, pkg, "current", "tool")).st_mode)
            dmode = stat.S_IMODE(os.stat(os.path.join(lib, pkg, "current", "sticky")).st_mode)
            if dmode & (stat.S_ISVTX | stat.S_ISUID | stat.S_ISGID):
                mode += "/dir %o" % dmode
        ok = installed and mode == want and not reasons
        c[1] += n if ok else 0
        print("%-26s %-16s %-18s %s" % (case, cls, expect, "ok" if ok else "FAIL: installed=%s mode=%s dlq=%s" % (installed, mode, reasons)))
    else:
        ok = len(reasons) == n and all(r == expect for r in reasons) and not installed \
            and not os.path.exists(os.path.join(lib, pkg, "versions", "1"))
        c[1] += sum(1 for r in reasons if r == expect) if not installed else 0
        print("%-26s %-16s %-18s %s" % (case, cls, expect, "ok (%d)" % n if ok else
              "FAIL: %d of %d dead-lettered, reasons %s, installed=%s" % (len(reasons), n, sorted(set(reasons)), installed)))
    bad += not ok
esc = [l for l in open(escapes).read().splitlines() if l]
left = [l for l in open(leftovers).read().splitlines() if l]
print()
print("%-18s %6s %14s" % ("class", "tried", "expected-seen"))
for cls, (tried, good) in by_class.items():
    print("%-18s %6d %14d" % (cls, tried, good))
print("escapes (files planted outside the library): %d %s" % (len(esc), esc[:3]))
print("leftovers of refused updates in the library: %d %s" % (len(left), left[:3]))
sys.exit(1 if bad or esc or left else 0)
PY
cat "$T/report"
kill -0 "$W" 2>/dev/null || fail "worker died"
no_staging_left "$L"
grep -qE 'msg=dead-lettered .*reason=unsafe-path .*detail="[^"]*entry ' "$T/w1.log" ||
  fail "unsafe-path dead letters do not name the entry"

# Still working: a good update installs.
make_tree "$T/src" 7 5 8
publish "$GOOD" 1 "$T/src" >/dev/null
wait_current "$L" "$GOOD" 1 60
assert_same_tree "$T/src" "$L/$GOOD/current/"
wait_lag0_bounded "$S" 60
stop_worker w1
log "worker crashes: 0; PASS"
