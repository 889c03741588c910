#!/usr/bin/env python3
"""statuspage.py URL PACKAGE PACKAGE2 SITE_CURRENT SITE_BEHIND SCREENSHOT

The status page in headless Chromium (Debian's chromium and
chromedriver, driven by python3-selenium), checked for what a person
would see: PACKAGE's cell at SITE_BEHIND is marked behind at version 1,
at SITE_CURRENT current at 2; both sites' lag verdicts (ERR for the
stopped one, OK for the other); the package filter (typed, and from the
URL's hash) and the site filter; the package's history and dead letter
in its detail panel. No error in the browser's console. Writes a
screenshot. Exit 1 with the reason on the first failed check.
"""
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

url, pkg, pkg2, cur, behind, shot = sys.argv[1:7]


def fail(msg):
    print("statuspage: FAIL: " + msg, flush=True)
    try:
        drv.save_screenshot(shot)
    except Exception:
        pass
    sys.exit(1)


def wait(what, fn, timeout=30):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # the DOM changed under us: ask again
            last = e
        time.sleep(0.2)
    fail("%s (waited %ds; last error: %s)" % (what, timeout, last))


def css(sel):
    return drv.find_elements(By.CSS_SELECTOR, sel)


def cell(p, s):
    c = css('.row[data-package="%s"] [data-site="%s"]' % (p, s))
    return c[0] if c else None


opts = Options()
for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
          "--disable-dev-shm-usage", "--window-size=1600,1000"):
    opts.add_argument(a)
opts.binary_location = "/usr/bin/chromium"
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
try:
    t0 = time.time()
    drv.get(url)
    wait("the page never got its data (body data-ready)",
         lambda: drv.execute_script("return document.body.dataset.ready") == "1")
    print("statuspage: data shown %.2f s after navigation" % (time.time() - t0))
    if drv.title != "despool status":
        fail("title is %r" % drv.title)

    # The behind cell and the current one, as coloured and labelled.
    c = wait("no cell for %s at %s" % (pkg, behind), lambda: cell(pkg, behind))
    if "mark-behind" not in c.get_attribute("class").split():
        fail("%s at %s has class %r, expected mark-behind" %
             (pkg, behind, c.get_attribute("class")))
    if c.text.strip() != "1":
        fail("%s at %s shows %r, expected 1" % (pkg, behind, c.text))
    c = cell(pkg, cur)
    if c is None or "mark-ok" not in c.get_attribute("class").split() \
            or c.text.strip() != "2":
        fail("%s at %s: %r %r, expected mark-ok 2" %
             (pkg, cur, c and c.get_attribute("class"), c and c.text))
    pub = css('.row[data-package="%s"] .pub' % pkg)
    if not pub or pub[0].text.strip() != "2":
        fail("published cell of %s: %r" % (pkg, pub and pub[0].text))
    bg = drv.execute_script(
        "return getComputedStyle(arguments[0]).backgroundColor", cell(pkg, behind))
    bg_ok = drv.execute_script(
        "return getComputedStyle(arguments[0]).backgroundColor", cell(pkg, cur))
    if bg == bg_ok:
        fail("the behind cell is coloured like the current one (%s)" % bg)

    # The verdicts, per site card.
    def verdict(site):
        v = css('#sites .site[data-site="%s"] .verdict' % site)
        return v[0].text.strip() if v else None
    wait("site %s never showed verdict ERR (shows %r)" % (behind, verdict(behind)),
         lambda: verdict(behind) == "ERR", timeout=60)
    wait("site %s never showed verdict OK (shows %r)" % (cur, verdict(cur)),
         lambda: verdict(cur) == "OK", timeout=30)
    spark = css('#sites .site[data-site="%s"] svg.spark' % behind)
    if not spark:
        fail("no sparkline for %s" % behind)

    # The package filter, typed: only the matching package's row.
    box = css("#filter-package")
    if not box:
        fail("no #filter-package")
    box[0].clear()
    box[0].send_keys(pkg2)
    wait("typing %s in the package filter did not leave only its row" % pkg2,
         lambda: [r.get_attribute("data-package") for r in css(".row")] == [pkg2])
    box[0].send_keys(Keys.CONTROL, "a")
    box[0].send_keys(Keys.DELETE)
    wait("clearing the filter did not bring %s back" % pkg,
         lambda: cell(pkg, behind) is not None)

    # The filters from the URL's hash (a link to a view): one package, one
    # site column.
    drv.get(url + "#package=%s&site=%s" % (pkg, behind))
    drv.refresh()
    wait("the hash's filters: expected only %s with only %s's column" % (pkg, behind),
         lambda: [r.get_attribute("data-package") for r in css(".row")] == [pkg]
         and cell(pkg, behind) is not None and cell(pkg, cur) is None)

    # The package's detail: its history and its dead letter.
    css('.row[data-package="%s"] .pkg' % pkg)[0].click()
    wait("the detail panel did not show the history of versions 2 and 1",
         lambda: css("#detail") and css("#detail")[0].is_displayed()
         and "bad-schema" in css("#detail .dead-letters")[0].text
         and cur in css("#detail .history")[0].text
         and behind in css("#detail .history")[0].text)
    drv.save_screenshot(shot)

    errors = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    if errors:
        fail("errors in the browser console: %r" % errors)
    print("statuspage: ok (behind cell, verdicts ERR/OK, filters, history, "
          "dead letter); screenshot %s" % shot)
finally:
    drv.quit()
