#!/usr/bin/env bash
# despooler status --serve: the status page against a real broker with two
# sites, one behind. The JSON API matches `status --json` and carries the
# lag of both sites with their verdicts (the stopped site's lag does not
# move: ERR; the running one: OK); a package's history and dead letters
# are served; bad requests get 404/400/405 and the server keeps serving.
# Then headless Chromium (tests/integration/statuspage.py, Selenium)
# loads the page and checks what a person would see: the behind cell, the
# verdicts, the filters, the package's history; its screenshot is written
# to build/test-output/.
. "$(dirname "$0")/lib.sh"

for t in chromium chromedriver; do
  command -v $t >/dev/null || fail "$t is not installed (scripts/deps with DESPOOL_WITH_BROWSER=1 installs it)"
done
# Debian's python3-selenium is for Debian's python3, not one earlier in PATH.
SYSPY=/usr/bin/python3
"$SYSPY" -c 'import selenium' 2>/dev/null || fail "python3-selenium is not installed for $SYSPY (scripts/deps with DESPOOL_WITH_BROWSER=1)"

P=$(pkg app); P2=$(pkg tool); S1=$(site east); S2=$(site west)
make_tree "$T/src" 1 5 8
publish "$P" 1 "$T/src" >/dev/null
publish "$P2" 1 "$T/src" >/dev/null
start_worker e "$S1" "$T/east"; start_worker w "$S2" "$T/west"
wait_current "$T/east" "$P" 1; wait_current "$T/west" "$P" 1
wait_current "$T/east" "$P2" 1; wait_current "$T/west" "$P2" 1
stop_worker w                         # west stays at 1
publish "$P" 2 "$T/src" >/dev/null
wait_current "$T/east" "$P" 2
# A dead letter of the package: an event that is not one.
head -c 300 /dev/urandom >"$T/garbage"
"$KTOOL" put -b "$B" -t pkg.updates -k "$P" "$T/garbage" || fail "put garbage"
wait_log e 'msg=dead-lettered .*reason=bad-schema'
sleep 1                               # east's status record follows the switch

"$DESPOOLER" status -b "$B" --serve 127.0.0.1:0 --refresh 1 --lag-every 1 \
  --window 3 --stop-after 3 >"$T/serve.out" 2>"$T/serve.log" &
SERVE_PID=$!; PIDS+=($SERVE_PID)
for _ in $(seq 100); do grep -q 'msg=serving' "$T/serve.log" && break; sleep 0.1; done
URL=$(sed -n 's/.*msg=serving url=\([^ ]*\).*/\1/p' "$T/serve.log" | head -1)
[ -n "$URL" ] || fail "no msg=serving line: $(cat "$T/serve.log")"
log "page at $URL"

get() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }

# /api/status: the data of `despooler status --json`, once caught up.
for _ in $(seq 100); do
  [ "$(get "$URL"healthz)" = 200 ] && grep -q caught-up "$T/body" && break; sleep 0.2
done
grep -q caught-up "$T/body" || fail "healthz never says caught-up: $(cat "$T/body")"
[ "$(get "$URL"api/status)" = 200 ] || fail "/api/status: $(cat "$T/body")"
cp "$T/body" "$T/api-status.json"
"$DESPOOLER" status -b "$B" --json >"$T/cli-status.json" || true
python3 - "$T/api-status.json" "$T/cli-status.json" "$P" "$S1" "$S2" <<'PY' || fail "/api/status does not match status --json"
import json, sys
api, cli = (json.load(open(f)) for f in sys.argv[1:3])
p, east, west = sys.argv[3:]
def mine(d):  # this run's packages and sites only, on a shared broker
    return {x["package"]: {s["site"]: s for s in x["sites"] if s["site"] in (east, west)}
            for x in d["packages"] if x["package"].endswith(p[-6:])}
assert mine(api) == mine(cli), (mine(api), mine(cli))
a = {x["package"]: x for x in api["packages"]}[p]
assert a["published"] == 2, a
cells = {s["site"]: s for s in a["sites"]}
assert cells[east]["mark"] == "ok" and cells[east]["version"] == 2, cells
assert cells[west]["mark"] == "behind" and cells[west]["version"] == 1, cells
PY
[ "$(get "$URL""api/status?package=$P&site=$S2")" = 200 ] || fail "/api/status?package&site: $(cat "$T/body")"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert [x["package"] for x in d["packages"]] == [sys.argv[2]], d
assert [s["site"] for s in d["packages"][0]["sites"]] == [sys.argv[3]], d
' "$T/body" "$P" "$S2" || fail "/api/status filters: $(cat "$T/body")"

# /api/lag: both groups, west lagging and ERR (its offset does not move),
# east OK, as `despooler lag --watch` would judge them.
ok=0
for _ in $(seq 60); do
  get "$URL"api/lag >/dev/null
  if python3 - "$T/body" "$S1" "$S2" 2>"$T/lagcheck.err" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
g = {x["group"]: x for x in d["groups"]}
e, w = g.get("despool." + sys.argv[2]), g.get("despool." + sys.argv[3])
assert e and w, list(g)
assert w["total_lag"] > 0 and w["group_status"] == "ERR", w
assert e["total_lag"] == 0 and e["group_status"] == "OK", e
PY
  then ok=1; break; fi
  sleep 0.5
done
[ $ok = 1 ] || fail "/api/lag never showed west ERR and east OK: $(tail -1 "$T/lagcheck.err")"
[ "$(get "$URL"api/sites)" = 200 ] || fail "/api/sites"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
s = {x["site"]: x for x in d["sites"]}
w = s[sys.argv[2]]
assert len(w["samples"]) >= 3 and all(x[1] > 0 for x in w["samples"]), w
' "$T/body" "$S2" || fail "/api/sites has no lag samples for west: $(cat "$T/body")"

# A package's history and its dead letter.
[ "$(get "$URL""api/package?name=$P")" = 200 ] || fail "/api/package: $(cat "$T/body")"
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
east, west = sys.argv[2:]
h = {x["version"]: x for x in d["history"]}
assert [x["version"] for x in d["history"]] == [2, 1], d["history"]
assert h[2]["published_at_ms"] and h[1]["published_at_ms"], h
assert {i["site"] for i in h[2]["installed"]} == {east}, h[2]
assert {i["site"] for i in h[1]["installed"]} == {east, west}, h[1]
assert any(x["reason"] == "bad-schema" and x["site"] == east for x in d["dead_letters"]), d["dead_letters"]
' "$T/body" "$S1" "$S2" || fail "/api/package: $(cat "$T/body")"

# Bad requests: 404, 400, 405; a huge query is refused, never a crash.
[ "$(get "$URL"nope)" = 404 ] || fail "GET /nope: not 404"
[ "$(get "$URL"api/nope)" = 404 ] || fail "GET /api/nope: not 404"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))["error"]' "$T/body" || fail "/api/nope: not a JSON error"
[ "$(get "$URL""api/package?name=nothing-$RUN")" = 404 ] || fail "unknown package: not 404"
[ "$(get "$URL"api/package)" = 400 ] || fail "/api/package without name: not 400"
[ "$(get "$URL""api/status?site=a%20b")" = 400 ] || fail "a site name with a space: not 400"
[ "$(get "$URL""api/status?bogus=1")" = 400 ] || fail "an unknown argument: not 400"
long=$(head -c 3000 /dev/zero | tr '\0' a)
[ "$(get "$URL""api/status?package=$long")" = 400 ] || fail "a 3000-byte query: not 400"
huge=$(head -c 100000 /dev/zero | tr '\0' a)
code=$(get "$URL""api/view?package=$huge")
case $code in 400 | 414 | 431) ;; *) fail "a 100 KB query: $code, expected 400/414/431" ;; esac
[ "$(get -X POST -d x=1 "$URL"api/status)" = 405 ] || fail "POST: not 405"
code=$(get --path-as-is "$URL"%00%ff/../../etc/passwd)
[ "$code" = 404 ] || fail "a hostile path: $code, not 404: $(cat "$T/body")"
kill -0 $SERVE_PID 2>/dev/null || fail "the server died on bad input"
[ "$(get "$URL"api/view)" = 200 ] || fail "/api/view after bad input"
[ "$(get -I "$URL")" = 200 ] || fail "HEAD /"
curl -s -D "$T/headers" -o /dev/null "$URL"
grep -qi '^content-security-policy: default-src .self.' "$T/headers" || fail "no CSP header on /"

# Gzipped for a client that takes it, and the same data.
curl -s -H 'Accept-Encoding: gzip' -D "$T/gzh" -o "$T/view.gz" "$URL"api/view
grep -qi '^content-encoding: gzip' "$T/gzh" || fail "/api/view not gzipped for Accept-Encoding: gzip"
curl -s -H 'Accept-Encoding: gzip;q=0, identity' -D "$T/gzh0" -o "$T/view.json" "$URL"api/view
grep -qi '^content-encoding' "$T/gzh0" && fail "/api/view gzipped for a client that refuses it (gzip;q=0)"
python3 - "$T/view.gz" "$T/view.json" "$P" "$S2" <<'PY' || fail "gzipped /api/view differs"
import gzip, json, sys
a, b = json.loads(gzip.open(sys.argv[1]).read()), json.load(open(sys.argv[2]))
for d in (a, b):
    i = d["sites"].index(sys.argv[4])
    p = {x["n"]: x for x in d["packages"]}[sys.argv[3]]
    assert p["p"] == 2 and p["v"][i] == 1 and p["m"][i] == "b", p
assert a["packages"] == b["packages"]
PY

# The page, in a real browser.
OUT=${DESPOOL_TEST_OUT:-$BIN/test-output}
mkdir -p "$OUT"
SHOT=$OUT/$TEST_NAME-$BROKER_KIND.png
timeout 180 "$SYSPY" "$SRC/tests/integration/statuspage.py" "$URL" "$P" "$P2" "$S1" "$S2" "$SHOT" \
  >"$T/browser.log" 2>&1 || { cat "$T/browser.log"; fail "the page in Chromium"; }
cat "$T/browser.log"
[ -s "$SHOT" ] || fail "no screenshot at $SHOT"
log "screenshot: $SHOT"

# The broker goes away: the server keeps serving what it had, and says
# why (healthz 503, reader.error in /api/view); on Apache Kafka the broker
# comes back and so does the reader. Not with a shared broker.
if [ -z "${DESPOOL_BOOTSTRAP:-}" ]; then
  stop_worker e
  if [ "$BROKER_KIND" = kafka ]; then kill_broker 1; else kill -KILL "$BROKER_PID"; fi
  for _ in $(seq 150); do [ "$(get "$URL"healthz)" = 503 ] && break; sleep 0.2; done
  [ "$(get "$URL"healthz)" = 503 ] || fail "healthz with the broker gone: $(cat "$T/body")"
  log "broker gone: healthz says $(cat "$T/body")"
  [ "$(get "$URL"api/view)" = 200 ] || fail "/api/view with the broker gone"
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["reader"]["error"], d["reader"]
assert sys.argv[2] in [p["n"] for p in d["packages"]], "the last data is gone"
' "$T/body" "$P" || fail "/api/view with the broker gone: $(head -c 400 "$T/body")"
  if [ "$BROKER_KIND" = kafka ]; then
    start_broker 1
    for _ in $(seq 300); do [ "$(get "$URL"healthz)" = 200 ] && break; sleep 0.2; done
    [ "$(get "$URL"healthz)" = 200 ] || fail "healthz after the broker came back: $(cat "$T/body")"
    log "broker back: healthz says $(cat "$T/body")"
  fi
fi

kill -TERM $SERVE_PID
for _ in $(seq 50); do kill -0 $SERVE_PID 2>/dev/null || break; sleep 0.1; done
kill -0 $SERVE_PID 2>/dev/null && fail "the server did not stop on SIGTERM"
wait $SERVE_PID || fail "the server exited $? on SIGTERM"
grep -q 'msg=stopping' "$T/serve.log" || fail "no msg=stopping line"
log "ok"
