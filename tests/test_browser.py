"""What a reader sees in a real browser: headless Debian Chromium driven by Playwright.

The browser is the system's (``/usr/bin/chromium``, installed by ``.ci/run``); no tool
ever downloads one. Pages are served on 127.0.0.1 and every request is recorded.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("FTSITE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

CHAPTER = "docs/what-is-fine-tuning"
NOTEBOOK = "notebooks/first-look"


@pytest.fixture(scope="session")
def server(site):
    """Serve the built site on 127.0.0.1 (a free port) for the whole session."""
    handler = functools.partial(_QuietHandler, directory=str(site.html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's browser "
                    "(apt-get install chromium) or set FTSITE_CHROMIUM; the tests never download one.",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:  # launch() gives the browser a fresh, temporary profile
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """Open pages in a fresh context with a given browser language; record every request."""
    contexts = []

    def _open(url: str, locale: str = "en-US", javascript: bool = True):
        context = browser.new_context(locale=locale, java_script_enabled=javascript)
        contexts.append(context)
        page = context.new_page()
        page.requests = []
        page.on("request", lambda request: page.requests.append(request.url))
        page.goto(url)
        page.wait_for_load_state("load")
        return page

    yield _open
    for context in contexts:
        context.close()


@pytest.mark.parametrize("locale, expected", [("fr-FR", "fr"), ("fr", "fr"), ("en-GB", "en"), ("de-DE", "en")])
def test_root_redirect_follows_the_browser_language(server, open_page, locale, expected):
    page = open_page(server + "/", locale=locale)
    page.wait_for_url(f"**/{expected}/index.html")
    assert page.locator("html").get_attribute("lang") == expected


def test_root_without_javascript_falls_back_to_english(server, open_page):
    page = open_page(server + "/", locale="fr-FR", javascript=False)
    page.wait_for_url("**/en/index.html")


@pytest.mark.parametrize("pagename", [CHAPTER, NOTEBOOK])
def test_switch_leads_to_the_same_page_in_the_other_language_and_back(server, open_page, pagename):
    page = open_page(f"{server}/fr/{pagename}.html", locale="fr-FR")
    assert page.locator("html").get_attribute("lang") == "fr"
    page.locator(".ftsite-lang-switch a[hreflang=en]").click()
    page.wait_for_url(f"{server}/en/{pagename}.html")
    assert page.locator("html").get_attribute("lang") == "en"
    page.locator(".ftsite-lang-switch a[hreflang=fr]").click()
    page.wait_for_url(f"{server}/fr/{pagename}.html")


def test_switch_works_from_file_urls(site, open_page):
    page = open_page((site.html / "fr" / f"{CHAPTER}.html").as_uri())
    page.locator(".ftsite-lang-switch a[hreflang=en]").click()
    page.wait_for_url((site.html / "en" / f"{CHAPTER}.html").as_uri())


@pytest.mark.parametrize("pagename", ["index", CHAPTER, NOTEBOOK, "docs/glossary", "docs/build-report"])
@pytest.mark.parametrize("lang", ["en", "fr"])
def test_no_request_leaves_localhost(server, open_page, lang, pagename):
    page = open_page(f"{server}/{lang}/{pagename}.html")
    page.wait_for_load_state("networkidle")
    assert page.requests, "the page made requests (at least itself)"
    foreign = [u for u in page.requests
               if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname != "127.0.0.1"]
    assert foreign == [], f"{lang}/{pagename} requested third-party URLs: {foreign}"

