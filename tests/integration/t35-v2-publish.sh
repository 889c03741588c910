#!/usr/bin/env bash
# pkgpub writes schema v2 (schemas/v2/README.md sections 10 and 11), checked
# on the topics themselves (the worker in this tree reads v1 only):
#  - --schema 1 still round-trips through a worker;
#  - version 1, a tiny tree: an inline manifest, no part sent;
#  - version 2, a ~3 MiB random tree: parts on pkg.content, all sent;
#  - version 3, the same tree with the tar's LAST file changed: the
#    leading parts are reused (same record: same partition and offset),
#    the changed tail is sent, the part dropped gets a tombstone in its
#    own partition;
#  - retire: a null on pkg.updates and nulls for every part of version 3;
#    retiring again, or a package never published: nothing to do, exit 0;
#  - a publication failing after its transaction began (here: fixed-size
#    parts over the producer's message.max.bytes) is aborted and says so;
#    nothing of it is committed;
#  - the previous manifest is found behind 300 later records of other
#    keys in its partition (read backward in growing windows);
#  - the index form (forced with --part-size 1024: > 8192 parts): the
#    next version reads the previous index back from pkg.content (every
#    part but the changed tail reused), retire tombstones the index part
#    too;
#  - Apache Kafka only: one publisher per package: a second pkgpub of
#    the package (same default transactional id pkgpub-<package>, from
#    anywhere) fences a slow first one, which fails saying so; the
#    second's manifest is the package's newest, the first's parts never
#    become visible;
#  - every ref of every manifest points at a record keyed
#    <package>/<part id hex> at exactly its (partition, offset), the
#    manifests are keyed by the package in one partition, in order, and the
#    status records say published, then retired.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); Q=$(pkg old); N=$(pkg never); X=$(pkg idx); W=$(pkg far); S=$(site s1); L=$T/lib
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

# --schema 1: chunk events a worker installs, as before.
make_tree "$T/src/$Q/1" 1 3 16
publish "$Q" 1 "$T/src/$Q/1" --schema 1 >"$T/q1.json"
[ "$(jget "$T/q1.json" schema)" = 1 ] || fail "--schema 1 published schema $(jget "$T/q1.json" schema)"
[ "$(jget "$T/q1.json" chunks)" -ge 1 ] || fail "--schema 1: no chunks"
start_worker w1 "$S" "$L"
wait_current "$L" "$Q" 1 60
assert_same_tree "$T/src/$Q/1" "$L/$Q/current/"
stop_worker w1
log "schema 1 round trip: ok"

make_tree "$T/src/$P/1" 1 2 1
make_random_tree "$T/src/$P/2" 2 3
cp -a "$T/src/$P/2" "$T/src/$P/3"
# run.sh sorts last (after data/): only the tail of the tar changes.
printf '#!/bin/sh\necho seed 3, changed at the end of the tar\n' >"$T/src/$P/3/run.sh"

for v in 1 2 3; do
  publish "$P" "$v" "$T/src/$P/$v" >"$T/v$v.json"
  log "v$v: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(" ".join("%s=%s" % (k, j[k]) for k in ("form","parts","parts_sent","parts_reused","parts_tombstoned","content_bytes","partition","first_offset")))' "$T/v$v.json")"
done
"$PKGPUB" retire -b "$B" -p "$P" --json >"$T/retire.json" 2>>"$T/pkgpub.log" ||
  fail "pkgpub retire failed: $(tail -3 "$T/pkgpub.log")"
"$PKGPUB" retire -b "$B" -p "$P" --json >"$T/retire2.json" 2>>"$T/pkgpub.log" ||
  fail "pkgpub retire of a retired package exited non-zero"
"$PKGPUB" retire -b "$B" -p "$N" >"$T/retire3.txt" 2>>"$T/pkgpub.log" ||
  fail "pkgpub retire of a package never published exited non-zero"
grep -q "no record on pkg.updates.*nothing to do" "$T/retire3.txt" ||
  fail "retire of a package never published says: $(cat "$T/retire3.txt")"

# A failure after begin: aborted, nothing committed.
A=$(pkg abort)
rc=0
"$PKGPUB" -b "$B" -p "$A" -V 1 --no-progress --cut fixed -X message.max.bytes=500000 \
  "$T/src/$P/2" >"$T/abort.out" 2>"$T/abort.err" || rc=$?
[ $rc = 1 ] || fail "pkgpub with parts over message.max.bytes exited $rc: $(cat "$T/abort.out")"
grep -Eq "^pkgpub: .*produce to pkg.content partition [0-9]+ key $A/" "$T/abort.err" ||
  fail "the error does not name the part: $(grep '^pkgpub' "$T/abort.err")"
grep -q "^pkgpub: the transaction (transactional id pkgpub-$A) was aborted" "$T/abort.err" ||
  fail "pkgpub does not say the transaction was aborted: $(grep '^pkgpub' "$T/abort.err")"
"$KTOOL" dump -b "$B" -t pkg.updates >"$T/abort.dump"
grep -q "key=$A " "$T/abort.dump" && fail "a record of the aborted publication is on pkg.updates"
log "failure after begin: aborted ($(grep -o 'Broker: .*\|Local: [^:]*' "$T/abort.err" | head -1))"

# The previous manifest far back: 300 records of another key after it.
make_random_tree "$T/src/$W/1" 4 2
cp -a "$T/src/$W/1" "$T/src/$W/2"
echo changed >>"$T/src/$W/2/run.sh"
publish "$W" 1 "$T/src/$W/1" >"$T/w1.json"
echo filler >"$T/filler"
files=(); for _ in $(seq 300); do files+=("$T/filler"); done
"$KTOOL" put -b "$B" -t pkg.updates -p "$(jget "$T/w1.json" partition)" \
  -k "filler-$RUN" "${files[@]}" || fail "ktool put filler"
publish "$W" 2 "$T/src/$W/2" >"$T/w2.json"
[ "$(jget "$T/w2.json" parts_reused)" -ge 1 ] && [ "$(jget "$T/w2.json" parts_tombstoned)" -ge 1 ] ||
  fail "the manifest behind 300 records was not found: $(cat "$T/w2.json")"
grep -q "msg=previous-record package=$W .*offset=$(jget "$T/w1.json" first_offset) kind=\"v2 parts\"" "$T/pkgpub.log" ||
  fail "pkgpub did not log the previous record of $W at offset $(jget "$T/w1.json" first_offset)"
log "previous manifest behind 300 records: found (reused $(jget "$T/w2.json" parts_reused), tombstoned $(jget "$T/w2.json" parts_tombstoned))"

# The index form: 8.5 MiB in parts of 1 KiB.
mkdir -p "$T/src/$X/1/data"
head -c 8700000 /dev/urandom >"$T/src/$X/1/data/blob.bin"
echo one >"$T/src/$X/1/zz-last"
cp -a "$T/src/$X/1" "$T/src/$X/2"
echo two >"$T/src/$X/2/zz-last"
publish "$X" 1 "$T/src/$X/1" --part-size 1024 >"$T/x1.json"
publish "$X" 2 "$T/src/$X/2" --part-size 1024 >"$T/x2.json"
"$PKGPUB" retire -b "$B" -p "$X" --json >"$T/xretire.json" 2>>"$T/pkgpub.log" ||
  fail "pkgpub retire $X failed"
python3 - "$T" <<'PY' || fail "index form"
import json, sys
t = sys.argv[1]
a, b, r = (json.load(open("%s/%s.json" % (t, n))) for n in ("x1", "x2", "xretire"))
bad = []
if not (a["form"] == "index" and a["parts"] > 8192 and a["index_parts"] >= 1
        and a["parts_sent"] == a["parts"]):
    bad.append("v1: %s" % a)
if not (b["form"] == "index" and b["parts"] == a["parts"] and
        b["parts_reused"] >= b["parts"] - 3 and b["parts_sent"] >= 1 and
        b["parts_sent"] + b["parts_reused"] == b["parts"] and
        b["parts_tombstoned"] >= 2):
    bad.append("v2 (tail changed; the previous index read back): %s" % b)
if not (r["retired"] and r["parts_tombstoned"] == b["parts"] + b["index_parts"]):
    bad.append("retire: %s (v2: %d parts + %d index parts)" % (r, b["parts"], b["index_parts"]))
for x in bad:
    print("  " + x)
sys.exit(1 if bad else 0)
PY
log "index form: $(jget "$T/x1.json" parts) parts, $(jget "$T/x1.json" index_parts) index part(s); v2 reused $(jget "$T/x2.json" parts_reused), tombstoned $(jget "$T/x2.json" parts_tombstoned); retire tombstoned $(jget "$T/xretire.json" parts_tombstoned)"

"$KTOOL" dump -b "$B" -t pkg.updates -m >"$T/updates.dump" || fail "ktool dump pkg.updates failed"
"$KTOOL" dump -b "$B" -t pkg.content >"$T/content.dump" || fail "ktool dump pkg.content failed"
"$KTOOL" dump -b "$B" -t pkg.status -m >"$T/status.dump" || fail "ktool dump pkg.status failed"

python3 - "$T" "$P" <<'PY' || fail "the topics do not hold what was published (see above)"
import json, re, sys
t, pkg = sys.argv[1:3]
bad = []
def check(ok, what):
    if not ok:
        bad.append(what)
j = {v: json.load(open("%s/v%d.json" % (t, v))) for v in (1, 2, 3)}
ret = json.load(open(t + "/retire.json"))
ret2 = json.load(open(t + "/retire2.json"))

def fields(line):
    return dict(re.findall(r"(\w+)=(\S+)", line))

# pkg.updates: the package's records, each manifest with its refs.
recs, cur = [], None
for line in open(t + "/updates.dump"):
    if line.startswith("partition="):
        f = fields(line)
        cur = None
        if f["key"] == pkg:
            cur = {"partition": int(f["partition"]), "offset": int(f["offset"]),
                   "null": f["len"] == "null", "refs": [], "m": None}
            recs.append(cur)
    elif cur is not None and line.startswith("manifest "):
        cur["m"] = fields(line)
    elif cur is not None and line.startswith("ref "):
        f = fields(line)
        cur["refs"].append((f["id"], int(f["size"]), int(f["zsize"]),
                            int(f["partition"]), int(f["offset"])))
check(len(recs) == 4, "%d records keyed %s on pkg.updates, expected 3 "
      "manifests and a tombstone" % (len(recs), pkg))
check(len({r["partition"] for r in recs}) == 1, "the package's records are "
      "in more than one partition")
check([r["offset"] for r in recs] == sorted(r["offset"] for r in recs),
      "records out of order")
m = {}
for v, r in zip((1, 2, 3), recs[:3]):
    check(not r["null"] and r["m"] is not None and
          r["m"].get("version") == str(v), "record %d is not the v%d "
          "manifest: %s" % (r["offset"], v, r["m"]))
    check(r["partition"] == j[v]["partition"] and
          r["offset"] == j[v]["first_offset"] == j[v]["last_offset"],
          "v%d: pkgpub said partition %s offset %s, the manifest is at %d/%d"
          % (v, j[v]["partition"], j[v]["first_offset"], r["partition"],
             r["offset"]))
    check(j[v]["schema"] == 2 and j[v]["chunks"] == 1, "v%d: schema %s chunks "
          "%s" % (v, j[v]["schema"], j[v]["chunks"]))
    m[v] = r
if len(recs) == 4:
    check(recs[3]["null"], "the last record of the package is not a "
          "tombstone (null value)")
    check(ret["retired"] is True and ret["partition"] == recs[3]["partition"]
          and ret["offset"] == recs[3]["offset"], "retire said %s, the "
          "tombstone is at %d/%d" % (ret, recs[3]["partition"],
                                     recs[3]["offset"]))
check(ret2["retired"] is False and ret2.get("nothing_to_do") ==
      "already retired", "second retire: %s" % ret2)

# The forms and counts pkgpub reported.
check(j[1]["form"] == "inline" and j[1]["parts"] == 0 and
      j[1]["parts_sent"] == 0 and j[1]["content_bytes"] == 0 and
      m.get(1, {}).get("m", {}).get("form") == "inline", "v1 not inline: %s"
      % j[1])
check(j[2]["form"] == "parts" and j[2]["parts"] >= 4 and
      j[2]["parts_sent"] == j[2]["parts"] and j[2]["parts_reused"] == 0 and
      j[2]["parts_tombstoned"] == 0, "v2: %s" % j[2])
check(j[3]["form"] == "parts" and j[3]["parts_reused"] > 0 and
      j[3]["parts_sent"] >= 1 and j[3]["parts_tombstoned"] >= 1 and
      j[3]["parts_sent"] + j[3]["parts_reused"] == j[3]["parts"],
      "v3 (last file changed): %s" % j[3])
for v in (2, 3):
    refs = m.get(v, {}).get("refs", [])
    check(len(refs) == j[v]["parts"], "v%d: %d refs, pkgpub said %d parts"
          % (v, len(refs), j[v]["parts"]))
    check(sum(r[2] for r in refs) == j[v]["zsize"], "v%d: zsizes do not add "
          "up to zsize" % v)

# pkg.content: every ref'd part at its exact place, under its key.
content = {}
for line in open(t + "/content.dump"):
    f = fields(line)
    if f.get("key", "").startswith(pkg + "/"):
        content[(int(f["partition"]), int(f["offset"]))] = (f["key"], f["len"])
for v in (2, 3):
    for rid, size, zsize, p, o in m.get(v, {}).get("refs", []):
        got = content.get((p, o))
        check(got is not None and got[0] == "%s/%s" % (pkg, rid) and
              got[1] != "null" and int(got[1]) > zsize,
              "v%d: part %s: at %d/%d is %s" % (v, rid[:12], p, o, got))
r2 = {r[0]: r for r in m.get(2, {}).get("refs", [])}
r3 = {r[0]: r for r in m.get(3, {}).get("refs", [])}
reused = [i for i in r3 if i in r2]
check(len(reused) == j[3]["parts_reused"], "v3 shares %d parts with v2, "
      "pkgpub said %d reused" % (len(reused), j[3]["parts_reused"]))
for i in reused:
    check(r3[i][3:] == r2[i][3:], "v3 reuses part %s at %s, v2 had it at %s"
          % (i[:12], r3[i][3:], r2[i][3:]))
check(m.get(3) and m[3]["refs"][0][0] in r2, "v3's first part is not v2's")

# Tombstones: v2's dropped parts after v3, every v3 part after the retire,
# each in its own ref's partition after the record; no other null.
def tomb(rid, p, after):
    return any(k == "%s/%s" % (pkg, rid) and ln == "null" and pp == p and
               oo > after for (pp, oo), (k, ln) in content.items())
dropped = [i for i in r2 if i not in r3]
check(len(dropped) == j[3]["parts_tombstoned"], "v3 drops %d parts, pkgpub "
      "said %d tombstoned" % (len(dropped), j[3]["parts_tombstoned"]))
for i in dropped:
    check(tomb(i, r2[i][3], r2[i][4]), "no tombstone for dropped part %s in "
          "partition %d" % (i[:12], r2[i][3]))
check(ret["parts_tombstoned"] == len(r3), "retire tombstoned %s parts, v3 "
      "has %d distinct" % (ret["parts_tombstoned"], len(r3)))
for i in r3:
    check(tomb(i, r3[i][3], r3[i][4]), "retire: no tombstone for part %s in "
          "partition %d" % (i[:12], r3[i][3]))
nulls = sum(1 for k, ln in content.values() if ln == "null")
check(nulls == len(dropped) + len(r3), "%d tombstones on pkg.content, "
      "expected %d" % (nulls, len(dropped) + len(r3)))

# pkg.status: published 1, 2, 3, then retired.
states = []
for line in open(t + "/status.dump"):
    if line.startswith("status ") and ("package=%s " % pkg) in line:
        f = fields(line)
        states.append((f["version"], f["state"]))
check(states == [("1", "published"), ("2", "published"), ("3", "published"),
                 ("3", "retired")], "status records: %s" % states)
for b in bad:
    print("  " + b)
sys.exit(1 if bad else 0)
PY
# One publisher per package (Kafka: the embedded broker shows aborted
# transactions and does not fence).
if [ "$BROKER_KIND" = kafka ]; then
  F=$(pkg fenced)
  "$PKGPUB" -b "$B" -p "$F" -V 1 --part-size 1024 --no-progress \
    -X linger.ms=20 -X queue.buffering.max.messages=1 \
    "$T/src/$X/1" >"$T/slow.out" 2>"$T/slow.err" &
  SPID=$!; PIDS+=($SPID)
  # Wait until the slow one is sending (its parts are in the log).
  for _ in $(seq 150); do
    n=$("$KTOOL" dump -b "$B" -t pkg.content -X isolation.level=read_uncommitted 2>/dev/null |
        grep -c "key=$F/" || true)
    [ "$n" -ge 20 ] && break
    sleep 0.2
  done
  [ "$n" -ge 20 ] || fail "the slow publisher sent no parts ($(tail -2 "$T/slow.err"))"
  kill -0 $SPID 2>/dev/null || fail "the slow publisher ended early: $(tail -2 "$T/slow.err")"
  publish "$F" 2 "$T/src/$P/1" >"$T/f2.json"
  rc=
  for _ in $(seq 300); do
    kill -0 $SPID 2>/dev/null || { rc=0; wait $SPID || rc=$?; break; }
    sleep 0.1
  done
  [ -n "$rc" ] || fail "the fenced publisher still runs 30 s after the second one committed"
  forget_pid $SPID
  [ "$rc" != 0 ] || fail "the fenced publisher exited 0: $(cat "$T/slow.out")"
  grep -q "^pkgpub: another producer with transactional id pkgpub-$F .*took over" "$T/slow.err" ||
    fail "the fenced publisher does not say it was fenced: $(grep '^pkgpub' "$T/slow.err")"
  "$KTOOL" dump -b "$B" -t pkg.updates -m >"$T/fenced.dump"
  grep -A1 "key=$F " "$T/fenced.dump" | grep -q "^manifest version=2 form=inline" ||
    fail "the second publisher's manifest is not the package's: $(grep -A1 "key=$F " "$T/fenced.dump")"
  [ "$(grep -c "key=$F " "$T/fenced.dump")" = 1 ] || fail "more than one committed record of $F"
  n=$("$KTOOL" dump -b "$B" -t pkg.content | grep -c "key=$F/" || true)
  [ "$n" = 0 ] || fail "$n part(s) of the fenced publication are visible read_committed"
  log "one publisher per package: the second fenced the first ($(grep -o 'took over.*' "$T/slow.err" | cut -c1-60)...)"
fi

log "PASS (inline v1, parts v2, v3 reusing $(jget "$T/v3.json" parts_reused) of $(jget "$T/v3.json" parts) parts with $(jget "$T/v3.json" parts_tombstoned) tombstoned, retire tombstoned $(jget "$T/retire.json" parts_tombstoned))"
