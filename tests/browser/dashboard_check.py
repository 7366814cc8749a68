"""The operator dashboard as a person uses it, in headless Chromium: a wrong
admin key is refused with a clear message, the right one shows the target's
breaker closed, and once the upstream fails the same row turns open.

Usage:
  dashboard_check.py --keel URL --admin-key K --tenant-key T --mock URL
                     --mock-model UPSTREAM_MODEL --public-model PUBLIC
                     --target PROVIDER/UPSTREAM_MODEL --screenshot PATH.png

Exit status: 0 and one line `ok: breaker closed -> open` on success; 1 with
the reason on stderr on failure (a screenshot is still written when the page
could be opened); 77 when /usr/bin/chromium is missing (the browser is
Debian's, never one Playwright downloads). Every wait is bounded: a passing
run takes about 5 to 15 seconds, a failing one stops at its first failed step,
and no run can exceed about 3 minutes.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

CHROMIUM = "/usr/bin/chromium"
EXIT_SKIP = 77
# How long the page may take to show a state; it polls every 2 s.
SHOW_TIMEOUT_S = 15
# Breaking the upstream: at most this many requests, within this many seconds.
MAX_REQUESTS = 200
BREAK_TIMEOUT_S = 30
# One request to Keel or the mock; Keel's own retries on a failing upstream fit in it.
HTTP_TIMEOUT_S = 10
PAGE_TEXT_LIMIT = 4000


class CheckFailed(Exception):
    """The dashboard did not behave; the message says how."""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("keel", "admin-key", "tenant-key", "mock", "mock-model", "public-model", "target", "screenshot"):
        parser.add_argument("--" + name, required=True)
    return parser.parse_args()


def http(method, url, body=None, headers=None, timeout=HTTP_TIMEOUT_S):
    """Sends one request and returns its status; an HTTP error status is an answer, not a failure."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as answer:
        answer.read()
        return answer.code


def css_string(value):
    """`value` as a double-quoted CSS string, for an attribute selector."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def page_text(page):
    try:
        text = page.inner_text("body", timeout=2000)
    except Exception as error:  # the page may be gone; the reason is still worth printing
        return f"(page text unavailable: {error})"
    text = " ".join(text.split())
    return text if len(text) <= PAGE_TEXT_LIMIT else text[:PAGE_TEXT_LIMIT] + " …"


def submit_key(page, key, press_enter):
    page.wait_for_selector("#key-form #admin-key", state="visible", timeout=SHOW_TIMEOUT_S * 1000)
    page.fill("#admin-key", key)
    if press_enter:
        page.press("#admin-key", "Enter")
    else:
        page.click("#key-form [type=submit]")


def wait_for_breaker(page, target, state, what):
    selector = f"[data-target={css_string(target)}] [data-breaker={css_string(state)}]"
    try:
        page.wait_for_selector(selector, timeout=SHOW_TIMEOUT_S * 1000)
    except Exception as error:
        raise CheckFailed(f"{what}: no {selector} within {SHOW_TIMEOUT_S} s ({error.__class__.__name__}); "
                          f"page text: {page_text(page)}") from None


def check(page, args, outside):
    keel = args.keel.rstrip("/")
    answer = page.goto(keel + "/dashboard", wait_until="load", timeout=SHOW_TIMEOUT_S * 1000)
    if answer is None or answer.status != 200:
        raise CheckFailed(f"GET /dashboard answered {answer.status if answer else 'nothing'}")
    content_type = answer.headers.get("content-type", "")
    if not content_type.startswith("text/html"):
        raise CheckFailed(f"GET /dashboard has content-type {content_type!r}, not text/html")

    # A wrong key: the page says so and asks again.
    submit_key(page, args.admin_key + "-wrong", press_enter=True)
    try:
        page.wait_for_function(
            "() => document.body.innerText.toLowerCase().includes('wrong admin key')"
            " && !!document.querySelector('#key-form') && document.querySelector('#key-form').offsetParent !== null",
            timeout=SHOW_TIMEOUT_S * 1000)
    except Exception:
        raise CheckFailed(f"a wrong admin key did not bring back the key form with 'wrong admin key'; "
                          f"page text: {page_text(page)}") from None

    # The right key, then a reload: the key is kept for the tab.
    submit_key(page, args.admin_key, press_enter=False)
    wait_for_breaker(page, args.target, "closed", "with the right key")
    page.reload(wait_until="load", timeout=SHOW_TIMEOUT_S * 1000)
    wait_for_breaker(page, args.target, "closed", "after a reload (the key should be kept)")

    # Break the upstream and drive traffic until the dashboard shows the breaker open.
    status = http("PUT", f"{args.mock.rstrip('/')}/_mock/faults/{urllib.parse.quote(args.mock_model, safe='/')}",
                  {"fail": {"status": 503, "count": 1000}})
    if not 200 <= status < 300:
        raise CheckFailed(f"the mock refused the fault plan: PUT /_mock/faults answered {status}")
    open_selector = f"[data-target={css_string(args.target)}] [data-breaker=\"open\"]"
    chat = {"model": args.public_model, "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {args.tenant_key}"}
    started, sent, statuses = time.monotonic(), 0, {}
    while page.locator(open_selector).count() == 0:
        left = BREAK_TIMEOUT_S - (time.monotonic() - started)
        if left <= 0:
            raise CheckFailed(f"the breaker of {args.target} did not show open within {BREAK_TIMEOUT_S} s "
                              f"and {sent} requests (statuses {statuses}); page text: {page_text(page)}")
        if sent < MAX_REQUESTS:
            try:
                status = http("POST", keel + "/v1/chat/completions", chat, auth, timeout=min(HTTP_TIMEOUT_S, left))
            except OSError as error:  # a time-out or reset; the breaker may count it too
                status = error.__class__.__name__
            statuses[status] = statuses.get(status, 0) + 1
            sent += 1
        else:
            # Every request is spent: give the page's 2 s poll the time that is left.
            page.wait_for_timeout(200)

    if outside:
        raise CheckFailed(f"the page loaded resources from elsewhere: {sorted(outside)[:5]}")


def main():
    args = parse_args()
    if not os.path.exists(CHROMIUM):
        print("skip: chromium not installed (apt-get install chromium)")
        return EXIT_SKIP
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("fail: the playwright package is missing (pip install -r tests/sdk/requirements.txt)", file=sys.stderr)
        return 1

    failure = None
    keel_origin = urllib.parse.urlsplit(args.keel)
    keel_origin = (keel_origin.scheme, keel_origin.netloc)
    outside, page_errors = set(), []
    try:
        with sync_playwright() as playwright:
            # Chromium refuses a few ports outright (ERR_UNSAFE_PORT); a test's Keel may land on one.
            port = urllib.parse.urlsplit(args.keel).port
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=[f"--explicitly-allowed-ports={port}"] if port else [])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(SHOW_TIMEOUT_S * 1000)

                def note_request(request):
                    # The page must work offline: nothing but Keel itself and inline data.
                    parts = urllib.parse.urlsplit(request.url)
                    if parts.scheme != "data" and (parts.scheme, parts.netloc) != keel_origin:
                        outside.add(request.url)

                page.on("request", note_request)
                page.on("pageerror", lambda error: page_errors.append(str(error)))
                try:
                    check(page, args, outside)
                    if page_errors:
                        raise CheckFailed(f"the page's script failed: {page_errors[:3]}")
                except CheckFailed as error:
                    failure = str(error)
                except Exception as error:  # Playwright's own errors and time-outs
                    failure = f"{error.__class__.__name__}: {error}; page text: {page_text(page)}"
                try:
                    page.screenshot(path=args.screenshot, full_page=True, timeout=SHOW_TIMEOUT_S * 1000)
                except Exception as error:
                    failure = failure or f"cannot save the screenshot to {args.screenshot}: {error}"
            finally:
                browser.close()
    except Exception as error:  # the browser did not start
        failure = failure or f"cannot drive {CHROMIUM}: {error.__class__.__name__}: {error}"
    finally:
        # Leave the upstream healthy for whatever runs next, even after a failure.
        try:
            http("DELETE", f"{args.mock.rstrip('/')}/_mock/faults")
        except OSError as error:
            failure = failure or f"cannot clear the mock's faults: {error}"

    if failure:
        print(f"fail: {failure}", file=sys.stderr)
        return 1
    print("ok: breaker closed -> open")
    return 0


if __name__ == "__main__":
    sys.exit(main())
