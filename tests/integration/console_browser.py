#!/usr/bin/python3
"""console_browser.py: drives orderflow-console in headless Chromium (Debian's chromium,
chromium-driver and python3-selenium), for tests/integration/test_console.sh and for
ops/console-screenshots.

  console_browser.py check URL CHECKS.json   runs the checks CHECKS.json names and prints
                                             one "ok - ..." or "not ok - ..." line each
  console_browser.py shots URL DIR ORDER DLQ saves screenshots of the main pages into DIR

CHECKS.json: {"correlation": ce_id of an order that is CONFIRMED, "hostile_dlq": id of the
dead letter whose record carries markup, "redrive_dlq": id of a dead letter that applies
when redriven, "token": the console's token}.
"""
import json
import os
import re
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

FAILED = 0


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER",
                                                                      "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=opts, service=service)


def check(desc, cond, got=""):
    global FAILED
    if cond:
        print("ok - %s" % desc)
    else:
        FAILED += 1
        print("not ok - %s%s" % (desc, (": got %r" % (got,)) if got != "" else ""))


def wait(d, css, secs=20):
    return WebDriverWait(d, secs).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def wait_text(d, css, text, secs=30):
    try:
        WebDriverWait(d, secs).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
        return True
    except TimeoutException:
        return False


def run_checks(url, spec):
    d = browser()
    try:
        # Executions: the list, then a search by correlation id.
        d.get(url + "/#/executions")
        wait(d, "#executions")
        rows = d.find_elements(By.CSS_SELECTOR, "#executions tbody tr")
        check("the executions page lists executions", len(rows) > 0, len(rows))
        check("with counts per status", "total:" in d.find_element(By.ID, "counts").text,
              d.find_element(By.ID, "counts").text)
        box = d.find_element(By.ID, "search")
        box.send_keys(spec["correlation"])
        d.find_element(By.ID, "search-go").click()
        wait_text(d, "#executions", spec["correlation"])
        rows = d.find_elements(By.CSS_SELECTOR, "#executions tbody tr")
        machines = sorted(r.find_elements(By.TAG_NAME, "td")[1].text for r in rows)
        check("searching the order's correlation id finds its two executions",
              machines == ["OrderProcess", "OrderUpdate"], machines)
        # The OrderProcess execution: the diagram with CONFIRMED lit, the path, the history.
        for r in rows:
            if r.find_elements(By.TAG_NAME, "td")[1].text == "OrderProcess":
                r.find_element(By.TAG_NAME, "a").click()
                break
        wait(d, "#diagram")
        current = [e.get_attribute("data-state")
                   for e in d.find_elements(By.CSS_SELECTOR, "#diagram g.state.current")]
        check("the diagram lights the current state CONFIRMED", current == ["CONFIRMED"], current)
        taken = sorted("%s>%s" % (e.get_attribute("data-from"), e.get_attribute("data-to"))
                       for e in d.find_elements(By.CSS_SELECTOR, "#diagram g.edge.taken"))
        check("and draws the path taken", taken == [">CREATED", "CREATED>INVENTORY_RESERVED",
                                                     "INVENTORY_RESERVED>CONFIRMED"], taken)
        steps = [r.find_elements(By.TAG_NAME, "td")[2].text
                 for r in d.find_elements(By.CSS_SELECTOR, "#history tbody tr")]
        check("the history lists its steps in order",
              steps == ["CreateOrder", "UpdateInventory", "OrderCompleted"], steps)
        cells = d.find_element(By.ID, "history").text
        check("with event ids and topic/partition/offset", spec["correlation"] in cells
              and "order.created" in cells, cells[:200])
        heads = [h.text for h in d.find_elements(By.CSS_SELECTOR, "#history thead th")]
        span_at = heads.index("span") if "span" in heads else -1
        spans = [r.find_elements(By.TAG_NAME, "td")[span_at].text
                 for r in d.find_elements(By.CSS_SELECTOR, "#history tbody tr")] if span_at >= 0 else []
        check("and every row's span (trace context)", len(spans) == 3 and
              all(re.fullmatch("[0-9a-f]{16}", x) for x in spans), (heads, spans))

        # An order cancelled with a reason that carries markup: its OrderUpdate history.
        d.get(url + "/#/executions?q=%s&machine=OrderUpdate" % spec["hostile_order"])
        wait_text(d, "#executions", spec["hostile_order"])
        d.find_element(By.CSS_SELECTOR, "#executions tbody a").click()
        wait(d, "#history")
        hist = d.find_element(By.ID, "history").text
        check("a hostile cancellation reason is shown as text in the history",
              "<img src=x onerror=window.__pwned=3>" in hist, hist[-300:])
        check("and none of it became an element or ran",
              d.execute_script("return document.querySelectorAll('main img, main script').length") == 0
              and d.execute_script("return window.__pwned === undefined"))

        # A dead letter whose record carries markup: shown as text, nothing runs.
        d.get(url + "/#/dlq/%s" % spec["hostile_dlq"])
        wait(d, "#payload")
        payload = d.find_element(By.ID, "payload").text
        check("a hostile payload is shown as text", "<img src=x onerror=" in payload, payload[:120])
        check("and no markup of it became an element",
              d.execute_script("return document.querySelectorAll('main img').length") == 0)
        check("nothing of it ran (window.__pwned is unset)",
              d.execute_script("return window.__pwned === undefined"))
        d.get(url + "/#/dlq")
        wait(d, "#dead-letters")
        ids = [r.find_elements(By.TAG_NAME, "td")[0].text
               for r in d.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")]
        check("the dead-letter list shows it, and nothing of it ran",
              str(spec["hostile_dlq"]) in ids
              and d.execute_script("return window.__pwned === undefined"), ids)
        bad = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"
               and "Content Security Policy" not in e.get("message", "")]
        check("no script error in the browser console", not bad, bad[:2])

        # Redrive: a dry run, then the real one with the token and a confirmation.
        d.get(url + "/#/dlq/%s" % spec["redrive_dlq"])
        wait(d, "#dry-run").click()
        check("the dry run says what would be redriven",
              wait_text(d, "#redrive-out", "would redrive dead letter %s" % spec["redrive_dlq"]),
              d.find_element(By.ID, "redrive-out").text[:200])
        d.find_element(By.ID, "token").send_keys("wrong")
        d.find_element(By.ID, "redrive").click()
        wait(d, "#confirm-yes").click()
        check("a wrong token is refused", wait_text(d, "#redrive-out", "token"),
              d.find_element(By.ID, "redrive-out").text[:200])
        tok = d.find_element(By.ID, "token")
        tok.clear()
        tok.send_keys(spec["token"])
        d.find_element(By.ID, "redrive").click()
        wait(d, "#confirm-yes").click()
        check("the redrive with the token runs", wait_text(d, "#redrive-out", "redrove dead letter"),
              d.find_element(By.ID, "redrive-out").text[:200])
        processed = False
        for _ in range(60):
            d.refresh()
            wait(d, "#dead-letter")
            if "processed" in d.find_element(By.TAG_NAME, "main").text:
                processed = True
                break
            time.sleep(1)
        check("and the console shows the redriven record processed", processed)

        # Parked keys and figures render.
        d.get(url + "/#/parked")
        check("the parked page renders", wait_text(d, "main h1", "Parked keys"),
              d.find_element(By.TAG_NAME, "h1").text)
        d.get(url + "/#/figures")
        wait(d, "#charts")
        figs = [e.get_attribute("data-figure") for e in d.find_elements(By.CSS_SELECTOR, "#charts > div")]
        check("the figures page draws its charts",
              figs == ["events_per_s", "lag", "oldest_outbox_s", "dead_per_min", "parked"], figs)
    finally:
        d.quit()
    return FAILED


def shots(url, out, order_ce, dlq):
    os.makedirs(out, exist_ok=True)
    d = browser()
    try:
        pages = [("executions", "/#/executions", "#executions"),
                 ("execution", None, "#diagram"),
                 ("dead-letters", "/#/dlq", "#dead-letters"),
                 ("dead-letter", "/#/dlq/%s" % dlq, "#payload"),
                 ("figures", "/#/figures", "#charts")]
        for name, path, css in pages:
            if path is None:
                d.get(url + "/#/executions?q=%s" % order_ce)
                wait(d, "#executions a")
                d.find_elements(By.CSS_SELECTOR, "#executions tbody a")[-1].click()
            else:
                d.get(url + path)
            wait(d, css)
            time.sleep(0.5)
            target = os.path.join(out, "console-%s.png" % name)
            d.save_screenshot(target)
            print("wrote %s" % target)
    finally:
        d.quit()


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        with open(sys.argv[3]) as f:
            sys.exit(1 if run_checks(sys.argv[2], json.load(f)) else 0)
    if len(sys.argv) == 6 and sys.argv[1] == "shots":
        shots(*sys.argv[2:])
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
