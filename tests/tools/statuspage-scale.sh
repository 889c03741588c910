#!/usr/bin/env bash
# statuspage-scale.sh [PACKAGES] [SITES]: how the status page behaves with
# many packages x sites (default 5,000 x 50), on a real Apache Kafka
# (scripts/kafka, started here and removed after). Writes synthetic
# pkg.status records (what PACKAGES publishers and SITES workers would
# have written: most current, some behind, late, failed, missing,
# retired), starts `despooler status --serve`, and prints: how long the
# server takes to read the topic, the size and time of /api/view (the
# page's data) and /api/status (the status --json shape), the server's
# RSS, and in headless Chromium the time from navigation to the matrix
# shown, the DOM size, and the time of a filter keystroke. Numbers only:
# nothing is asserted. Needs a build (scripts/build release) and the
# browser packages (scripts/deps with DESPOOL_WITH_BROWSER=1). SHOT=FILE
# also saves a screenshot of the page (docs/status-page.png is one).
set -euo pipefail
cd "$(dirname "$0")/../.."
NP=${1:-5000}; NS=${2:-50}
W=$(mktemp -d /dev/shm/statuspage-scale.XXXXXX)
trap 'kill $SERVE 2>/dev/null || true; scripts/kafka stop --dir "$W/kafka" --wipe >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
SERVE=
scripts/kafka start --dir "$W/kafka" >/dev/null
B=@$W/kafka/bootstrap
python3 - "$W" "$NP" "$NS" <<'PY'
import os, random, sys, time
w, np_, ns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(7)
def s(b):
    return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b
def u(v):
    return b"\xcf" + v.to_bytes(8, "big")
now = int(time.time() * 1000)
os.makedirs(f"{w}/r")
n = 0
lst = open(f"{w}/status.list", "w")
def put(site, pkg, v, state, detail, at):
    global n
    rec = (b"\x86" + s(b"site") + s(site.encode()) + s(b"package") + s(pkg.encode())
           + s(b"version") + u(v) + s(b"state") + s(state.encode())
           + s(b"detail") + s(detail.encode()) + s(b"at_ms") + u(at))
    open(f"{w}/r/{n}", "wb").write(rec)
    lst.write(f"{site}/{pkg} {w}/r/{n}\n")
    n += 1
for p in range(np_):
    pkg = "pkg-%05d" % p
    v = random.randint(2, 40)
    old = random.random() < 0.1                 # published 2 h ago: behind is late
    pub_at = now - (7200_000 if old else random.randint(0, 1800_000))
    retired = random.random() < 0.01
    put("_published", pkg, v, "retired" if retired else "published", "", pub_at)
    for k in range(ns):
        site = "site-%02d" % k
        x = random.random()
        if x < 0.02:
            continue                                          # missing
        if retired:
            put(site, pkg, v, "retired", "kept", pub_at + 1000)
        elif x < 0.03:
            put(site, pkg, v, "failed", "sha256-mismatch: part 3", pub_at + 5000)
        elif x < 0.08:
            put(site, pkg, v - 1, "installed", "", pub_at - 86400_000)
        else:
            put(site, pkg, v, "installed", "", pub_at + random.randint(1000, 600_000))
lst.close()
print("records: %d (%d packages x %d sites, about 2%% of the cells without a record, + %d published)"
      % (n, np_, ns, np_))
PY
t0=$(date +%s.%N)
build/tests/ktool put -b "$B" -t pkg.status -l "$W/status.list" >/dev/null
t1=$(date +%s.%N)
printf 'write records (ktool put): %.1f s\n' "$(awk "BEGIN{print $t1 - $t0}")"
# The baseline: the command-line table and --json over the same records.
for mode in table --json; do
  t0=$(date +%s.%N)
  build/despooler status -b "$B" $([ $mode = --json ] && echo --json) >"$W/cli.out" || true
  t1=$(date +%s.%N)
  printf 'baseline: despooler status (%s): %.1f s, %s bytes\n' "$mode" \
    "$(awk "BEGIN{print $t1 - $t0}")" "$(wc -c <"$W/cli.out")"
done
build/despooler status -b "$B" --serve 127.0.0.1:0 --lag-every 30 --log-level debug 2>"$W/serve.log" &
SERVE=$!
for _ in $(seq 600); do grep -qs msg=serving "$W/serve.log" && break; sleep 0.1; done
URL=$(sed -n 's/.*msg=serving url=\([^ ]*\).*/\1/p' "$W/serve.log" | head -1)
t0=$(date +%s.%N)
for _ in $(seq 1200); do curl -s "$URL"healthz | grep -q caught-up && break; sleep 0.1; done
t1=$(date +%s.%N)
printf 'server reads pkg.status to its end: %.1f s\n' "$(awk "BEGIN{print $t1 - $t0}")"
for api in api/view api/status "api/package?name=pkg-00042" api/sites; do
  for i in 1 2; do
    curl -s -o /dev/null -w "GET /$api (request $i): %{size_download} bytes in %{time_total} s\n" "$URL$api"
    sleep 1.1 # past the server's one-second copy of /api/view
  done
  curl -s --compressed -o /dev/null -w "    gzipped: %{size_download} bytes in %{time_total} s\n" "$URL$api"
done
for _ in $(seq 1200); do grep -q msg=lag-round "$W/serve.log" && break; sleep 0.1; done
sed -n 's/.*msg=lag-round \(.*\)/lag sampling round (each site group: committed offsets, watermarks, time lag): \1/p' "$W/serve.log" | head -1
curl -s -o /dev/null -w "GET /api/sites after it: %{size_download} bytes in %{time_total} s\n" "$URL"api/sites
grep VmRSS /proc/$SERVE/status | sed 's/^/server /'
/usr/bin/python3 - "$URL" "${SHOT:-}" <<'PY'
import sys, time
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
o = Options()
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1000"):
    o.add_argument(a)
o.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
try:
    for run in (1, 2):
        t0 = time.time()
        d.get(sys.argv[1])
        while d.execute_script("return document.body.dataset.ready") != "1":
            time.sleep(0.02)
        print("chromium: navigation to matrix shown: %.2f s (load %d)" % (time.time() - t0, run))
    nodes = d.execute_script("return document.getElementsByTagName('*').length")
    rows = len(d.find_elements(By.CSS_SELECTOR, ".row"))
    heap = d.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : -1")
    print("chromium: %d DOM elements, %d rows rendered, JS heap %.1f MiB" % (nodes, rows, heap / 1048576))
    box = d.find_element(By.CSS_SELECTOR, "#filter-package")
    t0 = time.time()
    box.send_keys("pkg-0004")
    only = "var r = [...document.querySelectorAll('.row')]; " \
           "return r.length > 0 && r.every(e => e.dataset.package.startsWith('pkg-0004'))"
    while not d.execute_script(only):
        time.sleep(0.01)
    print("chromium: filter typed and shown: %.0f ms (incl. the 150 ms debounce and WebDriver)" % ((time.time() - t0) * 1000))
    print("chromium: %s" % d.find_element(By.CSS_SELECTOR, "#matrix-count").text)
    if sys.argv[2]:  # SHOT=FILE: the whole estate, sorted by a site's worst cells
        d.get(sys.argv[1] + "#sort=site-07")
        d.refresh()
        while d.execute_script("return document.body.dataset.ready") != "1" or \
                d.execute_script("return document.body.dataset.sitesReady") != "1":
            time.sleep(0.05)
        time.sleep(0.5)
        d.save_screenshot(sys.argv[2])
        print("screenshot: %s" % sys.argv[2])
finally:
    d.quit()
PY
