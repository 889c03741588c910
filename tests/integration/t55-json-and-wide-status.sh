#!/usr/bin/env bash
# Every --json output is valid JSON whatever the strings hold (written by
# jansson): pkgpub publish and retire with a transactional id holding a
# quote, a backslash and a tab; despooler status with a status detail
# holding quotes, a backslash, a newline and bytes that are not UTF-8;
# despooler lag for one site and several ({"groups":[...]}). And
# `despooler status` never cuts a name: a 60-character site and a
# 100-character package are printed whole, the columns sized to them.
. "$(dirname "$0")/lib.sh"

P=$(pkg app); S=$(site js)
make_tree "$T/src" 1 3 8
TID=$(printf 'tx "q" \\ \t %s' "$RUN")
"$PKGPUB" -b "$B" -p "$P" -V 1 --json --no-progress -t "$TID" "$T/src" >"$T/pub.json" 2>>"$T/pkgpub.log" ||
  fail "pkgpub failed: $(tail -3 "$T/pkgpub.log")"
python3 - "$T/pub.json" "$TID" <<'PY' || fail "pkgpub --json: $(cat "$T/pub.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["transactional_id"] == sys.argv[2], j
keys = list(j)
assert keys[:3] == ["package", "version", "update_id"] and keys.index("attempts") == len(keys) - 1, keys
assert isinstance(j["pack_seconds"], float) and isinstance(j["partition"], int), j
PY
"$PKGPUB" retire -b "$B" -p "$P" -t "$TID" --json >"$T/retire.json" 2>>"$T/pkgpub.log" ||
  fail "pkgpub retire failed: $(tail -3 "$T/pkgpub.log")"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["transactional_id"] == sys.argv[2] and j["retired"] is True, j' \
  "$T/retire.json" "$TID" || fail "pkgpub retire --json: $(cat "$T/retire.json")"

# Hand-made status records: a long site name, a long package name, a
# detail with quotes, a backslash, a newline and invalid UTF-8.
LS=$(printf 'site-%s-%s' "$RUN" "$(printf 'x%.0s' $(seq 48))")   # 60 characters
LP=$(printf 'pkg-%s-%s' "$RUN" "$(printf 'y%.0s' $(seq 89))")    # 100 characters
[ ${#LS} = 60 ] && [ ${#LP} = 100 ] || fail "name lengths ${#LS} ${#LP}"
printf '_published\t%s\t12345\tinstalled\t\n%s\t%s\t12344\tfailed\tsay "no" \\\\ \\n \\xff\\xfe end\n' "$LP" "$LS" "$LP" | put_status_records
rc=0; "$DESPOOLER" status -b "$B" --package "$LP" >"$T/st.out" 2>"$T/st.err" || rc=$?
[ $rc = 1 ] || fail "status exited $rc (expected 1: a failed site): $(cat "$T/st.out" "$T/st.err")"
cat "$T/st.out"
python3 - "$T/st.out" "$LS" "$LP" <<'PY' || fail "status table cut or misaligned (above)"
import sys
lines = open(sys.argv[1]).read().splitlines()
site, pkg = sys.argv[2:]
head, row = lines[0].split(), next(l for l in lines if l.startswith(pkg + " "))
assert site in head, f"site {site} not whole in the header: {lines[0]!r}"
assert row.split()[:4] == [pkg, "12345", "12344", "failed"], row
# Columns line up: the site column ends at the same place in both lines.
end = lines[0].index(site) + len(site)
assert len(lines[0]) == end and len(row) == end, (len(lines[0]), len(row), end)
PY
"$DESPOOLER" status -b "$B" --json >"$T/st.json" 2>"$T/st.err" || true
python3 - "$T/st.json" "$LS" "$LP" <<'PY' || fail "status --json: $(head -c 600 "$T/st.json")"
import json, sys
site, pkg = sys.argv[2:]
raw = open(sys.argv[1], "rb").read()
raw.decode("utf-8")  # strict: the output is valid UTF-8
d = json.loads(raw)
p = next(p for p in d["packages"] if p["package"] == pkg)
c = next(c for c in p["sites"] if c["site"] == site)
assert c["mark"] == "failed" and c["version"] == 12344, c
assert c["detail"] == 'say "no" \\ \n ?? end', repr(c["detail"])
PY

# despooler lag --json: one site, and several.
"$DESPOOLER" lag -b "$B" --site "$S" --json >"$T/lag1.json" || true
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert "partitions" in j and j["topic"] == "pkg.updates", j' \
  "$T/lag1.json" || fail "lag --json: $(cat "$T/lag1.json")"
"$DESPOOLER" lag -b "$B" --site "$S" --site "$LS" --json >"$T/lag2.json" || true
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert len(j["groups"]) == 2, j' \
  "$T/lag2.json" || fail "lag --json, two sites: $(cat "$T/lag2.json")"
log "PASS"
