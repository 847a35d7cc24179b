"""What a reader sees in a real browser: headless Debian Chromium driven by Playwright.

The browser is the system's (``/usr/bin/chromium``, installed by ``.ci/run``); no tool
ever downloads one. Pages are served on 127.0.0.1 like a static host serves them (a
missing address gets its language's 404 page) and every request is recorded.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import shutil
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import nbformat
import pytest

from conftest import ROOT, notebooks

sys.path.insert(0, str(ROOT / "_ext"))
from ftsite_lang import site_url  # noqa: E402

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
    """Serves the site as GitHub Pages or Read the Docs do: a missing page gets a 404 page."""

    def log_message(self, *args) -> None:
        pass

    def send_error(self, code, message=None, explain=None) -> None:
        root = Path(self.directory)
        language = urlparse(self.path).path.lstrip("/").split("/", 1)[0]
        page = root / language / "404.html"
        if not (language and page.is_file()):
            page = root / "404.html"
        if code != 404 or self.command not in ("GET", "HEAD") or not page.is_file():
            return super().send_error(code, message, explain)
        body = page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)


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

    def _open(url: str, locale: str = "en-US", javascript: bool = True, **options):
        context = browser.new_context(locale=locale, java_script_enabled=javascript, **options)
        contexts.append(context)
        page = context.new_page()
        page.requests, page.failed = [], []
        page.on("request", lambda request: page.requests.append(request.url))
        page.on("response", lambda response: response.status >= 400 and page.failed.append(response.url))
        page.response = page.goto(url)
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


@pytest.mark.parametrize("pagename", ["index", CHAPTER, NOTEBOOK, "docs/glossary", "docs/build-report",
                                      "docs/references", "search.html?q=model", "404", "missing/page"])
@pytest.mark.parametrize("lang", ["en", "fr"])
def test_no_request_leaves_localhost(server, open_page, lang, pagename):
    suffix = "" if "." in pagename else ".html"
    page = open_page(f"{server}/{lang}/{pagename}{suffix}")
    page.wait_for_load_state("networkidle")
    assert page.requests, "the page made requests (at least itself)"
    foreign = [u for u in page.requests
               if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname != "127.0.0.1"]
    assert foreign == [], f"{lang}/{pagename} requested third-party URLs: {foreign}"



# -- What a learner expects from a course site ---------------------------------------------

def search(open_page, server: str, lang: str, words: str) -> list[str]:
    """Search the site in one language; return the result links (page addresses)."""
    page = open_page(f"{server}/{lang}/search.html?q={words}")
    page.wait_for_selector("#search-results .search-summary", timeout=20000)
    links = page.locator("#search-results ul.search li a").evaluate_all("as => as.map(a => a.href)")
    assert not page.failed and all(urlparse(u).hostname == "127.0.0.1" for u in page.requests)
    return [urlparse(u).path for u in links]


def test_search_for_a_french_inflected_word_finds_the_french_chapter(site, server, open_page):
    """French stemming: « affinages » and « affinerez » match « affinage » and « affiner »."""
    chapter = site.page("fr", CHAPTER).lower()
    for words in ["affinages", "affinerez"]:
        assert words not in chapter, "the word itself is absent: only stemming can find the page"
        found = search(open_page, server, "fr", words)
        assert f"/fr/{CHAPTER}.html" in found, f"{words}: {found}"


def test_search_in_english_finds_chapters(server, open_page):
    found = search(open_page, server, "en", "tokenizers")
    assert "/en/docs/base-models.html" in found, found


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_copy_button_copies_the_code_of_a_cell(server, open_page, lang):
    page = open_page(f"{server}/{lang}/{NOTEBOOK}.html",
                     permissions=["clipboard-read", "clipboard-write"])
    cell = page.locator("div.cell_input div.highlight").first
    cell.hover()
    cell.locator("button.copybtn").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    source = next(c.source for c in nbformat.read(ROOT / f"{NOTEBOOK}.ipynb", as_version=4).cells
                  if c.cell_type == "code")
    assert copied.strip() == source.strip()


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_download_link_serves_the_notebook(server, open_page, tmp_path, lang):
    page = open_page(f"{server}/{lang}/{NOTEBOOK}.html", accept_downloads=True)
    with page.expect_download() as download:
        page.locator(".ftsite-notebook-bar a.download").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == Path(NOTEBOOK).name + ".ipynb"
    notebook = nbformat.read(saved, as_version=4)
    nbformat.validate(notebook)
    assert notebook == nbformat.read(ROOT / f"{NOTEBOOK}.ipynb", as_version=4)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_solutions_stay_hidden_until_the_reader_opens_them(server, open_page, lang):
    page = open_page(f"{server}/{lang}/{CHAPTER}.html")
    solution = page.locator("details.dropdown").first
    answer = solution.locator("p").first
    assert answer.text_content().strip() and not answer.is_visible()
    solution.locator("summary").click()
    assert answer.is_visible()


@pytest.mark.parametrize("lang, heading", [("en", "Learning path"), ("fr", "Parcours d’apprentissage")])
def test_home_page_says_it_all_in_one_laptop_screen(server, open_page, lang, heading):
    """1366 × 768: what it teaches, for whom, CPU and GPU, and the start of the learning path."""
    page = open_page(f"{server}/{lang}/index.html", viewport={"width": 1366, "height": 768})
    first_chapter = page.locator("section.ftsite-home ol li").first
    assert page.get_by_role("heading", name=heading).is_visible()
    box = first_chapter.bounding_box()
    assert box and box["y"] + box["height"] <= 768, f"the learning path starts below the first screen: {box}"
    text = page.locator("section.ftsite-home").inner_text()
    assert "CPU" in text and "GPU" in text


@pytest.mark.parametrize("lang, title", [("en", "Page not found"), ("fr", "Page introuvable")])
def test_a_missing_page_gets_the_404_page_of_its_language(server, open_page, lang, title):
    page = open_page(f"{server}/{lang}/docs/no/such/page.html")
    assert page.response.status == 404
    assert page.locator("h1").first.inner_text().startswith(title)
    page.wait_for_load_state("networkidle")
    assert page.failed == [f"{server}/{lang}/docs/no/such/page.html"], "its styles and scripts load"
    page.locator("[itemprop=articleBody] a[href='index.html']").first.click()
    page.wait_for_url(f"{server}/{lang}/index.html")


class _Links(html.parser.HTMLParser):
    """The addresses a page refers to: links, stylesheets, scripts, pictures; and its ids."""

    def __init__(self):
        super().__init__()
        self.urls, self.ids, self.base = [], set(), None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and "name" in attrs:
            self.ids.add(attrs["name"])
        if tag == "base":
            self.base = attrs.get("href")
        for name in ("href", "src"):
            if attrs.get(name) and tag in ("a", "link", "script", "img", "source", "iframe"):
                self.urls.append(attrs[name])
        if tag == "meta" and attrs.get("property") in ("og:url", "og:image"):
            self.urls.append(attrs["content"])


def test_every_internal_link_of_both_languages_resolves(site, server):
    """Each address used by any page (and the sitemaps) answers 200, and each #anchor exists."""
    published = site_url()
    pages = sorted(site.html.rglob("*.html"))
    parsed: dict[str, _Links] = {}

    def fetch(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.read()

    def local(url: str) -> str | None:
        if url.startswith(published):  # absolute links (canonical, hreflang, og:url) to the site
            return server + "/" + url[len(published):]
        return url if urlparse(url).hostname == "127.0.0.1" else None

    targets: dict[str, set[str]] = {}
    for path in pages:
        url = server + "/" + path.relative_to(site.html).as_posix()
        links = _Links()
        links.feed(path.read_text(encoding="utf-8"))
        parsed[url] = links
        base = urljoin(server + "/", links.base) if links.base else url
        for href in links.urls:
            if href.startswith(("mailto:", "data:", "javascript:")):
                continue
            absolute = local(urljoin(base, href))
            if absolute:
                targets.setdefault(absolute, set()).add(path.relative_to(site.html).as_posix())
    for sitemap in site.html.rglob("sitemap.xml"):
        for loc in re.findall(r'(?:<loc>|href=")([^<"]+)', sitemap.read_text(encoding="utf-8")):
            targets.setdefault(local(loc), set()).add(sitemap.relative_to(site.html).as_posix())
    assert len(pages) >= 25 and len(targets) > 100
    broken, missing_anchors = [], []
    for target, sources in sorted(targets.items()):
        address, fragment = urldefrag(target)
        try:
            body = fetch(address)
        except urllib.error.HTTPError as error:
            broken.append(f"{target} ({error.code}) from {sorted(sources)[:3]}")
            continue
        if fragment and address.endswith(".html"):
            ids = parsed[address].ids if address in parsed else set()
            if fragment not in ids:
                missing_anchors.append(f"{target} from {sorted(sources)[:3]}")
        assert body is not None
    assert broken == [], "\n".join(broken[:20])
    assert missing_anchors == [], "\n".join(missing_anchors[:20])


def test_no_page_loads_anything_from_another_host(site):
    """Every built page, both languages: stylesheets, scripts, pictures and frames are local."""
    foreign = []
    for path in site.html.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        for tag, url in re.findall(r'<(script|img|iframe|source|link rel="stylesheet")[^>]*?(?:src|href)="(https?://[^"]+)"', text):
            foreign.append(f"{path.relative_to(site.html)}: {tag} {url}")
    assert foreign == []


# -- Accessibility: WCAG 2.1 AA, keyboard, screen readers ---------------------------------------

# axe-core, the checker browsers' own accessibility tools use, pinned in package.json and
# package-lock.json and installed by `make test` (npm ci) into node_modules/. The tests
# inject its source into each page: the page fetches nothing from anywhere.
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21aa"]  # WCAG 2.0 and 2.1, levels A and AA (France's RGAA)


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE.relative_to(ROOT)}): run 'make test', or 'npm ci' "
                    "(installs the version pinned in package-lock.json; needs node and npm).", pytrace=False)
    return AXE.read_text(encoding="utf-8")


def axe_violations(page, axe_source: str, name: str) -> list[str]:
    """Check the page with axe-core, every solution open; one line per failing element."""
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.evaluate("window.ftsiteA11y && window.ftsiteA11y.refresh()")  # code inside solutions
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(content=axe_source)
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags},"
                           " resultTypes: ['violations']})", AXE_TAGS)
    lines = []
    for rule in result["violations"]:
        for node in rule["nodes"]:
            why = " ".join(node["failureSummary"].split("\n")[1:2]).strip()
            lines.append(f"{name}: {rule['id']} ({rule['impact']}) at {' '.join(map(str, node['target']))}"
                         f" {node['html'][:100]!r}: {why}")
    return lines


def site_pages(site, lang: str) -> list[str]:
    """Every page of one language, as addresses under the site: ``fr/docs/sft.html``…"""
    pages = sorted(p.relative_to(site.html).as_posix() for p in (site.html / lang).rglob("*.html"))
    return pages + [f"{lang}/search.html?q=model"]  # the search page with its results shown


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_every_page_passes_axe_core_wcag_2_1_aa(site, server, browser, axe_source, lang):
    """axe-core finds no WCAG 2.1 A or AA problem on any page of the language, notebooks included."""
    context = browser.new_context(locale=f"{lang}-{lang.upper()}")
    page = context.new_page()
    pages = site_pages(site, lang) + (["404.html"] if lang == "en" else [])  # and the root 404
    problems = []
    try:
        for name in pages:
            page.goto(f"{server}/{name}")
            page.wait_for_load_state("load")
            if "search.html?q=" in name:
                page.wait_for_selector("#search-results .search-summary", timeout=20000)
            problems += axe_violations(page, axe_source, name)
    finally:
        context.close()
    assert len(pages) > 25
    assert problems == [], f"{len(problems)} WCAG violation(s) on {lang} pages:\n" + "\n".join(problems[:40])


def test_the_axe_check_reports_page_rule_and_element(server, open_page, axe_source):
    """The check itself: a picture without alt and grey-on-grey text are caught and named."""
    page = open_page(f"{server}/en/{CHAPTER}.html")
    page.evaluate("""() => document.querySelector('[itemprop=articleBody]').insertAdjacentHTML('afterbegin',
        '<img id="no-alt" src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><p id="pale" style="color:#bbb">pale</p>')""")
    problems = axe_violations(page, axe_source, f"en/{CHAPTER}.html")
    assert any(line.startswith(f"en/{CHAPTER}.html: image-alt (critical) at #no-alt") for line in problems), problems
    assert any("color-contrast (serious) at #pale" in line for line in problems), problems


A11Y_WORDS = {
    "en": {"skip": "Skip to content", "copy": "Copy to clipboard", "copied": "Copied!",
           "code": "Code, scrollable", "search": "Search finished", "frame": ["Home", "Navigation menu"]},
    "fr": {"skip": "Aller au contenu", "copy": "Copier dans le presse-papier", "copied": "Copié !",
           "code": "Code, défilant", "search": "Recherche terminée",
           "frame": ["Accueil", "Menu de navigation"]},
}


def tab_to(page, selector: str, limit: int = 300):
    """Press Tab until the focus is on an element matching ``selector``; return that element."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return page.locator(":focus")
    pytest.fail(f"{limit} presses of Tab never reached {selector}")


@pytest.mark.parametrize("pagename", [CHAPTER, "no/such/page"])  # the 404 page has a <base>
@pytest.mark.parametrize("lang", ["en", "fr"])
def test_skip_link_is_the_first_tab_stop_and_leads_to_the_text(server, open_page, lang, pagename):
    page = open_page(f"{server}/{lang}/{pagename}.html")
    page.keyboard.press("Tab")
    link = page.locator(":focus")
    assert link.get_attribute("class") == "ftsite-skip-link"
    assert link.inner_text() == A11Y_WORDS[lang]["skip"]
    box = link.bounding_box()
    assert box and box["y"] >= 0, "the skip link shows when it has the focus"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "ftsite-content"
    assert page.url == f"{server}/{lang}/{pagename}.html", "the skip link stays on the page"
    page.keyboard.press("Tab")  # the next stop is in the text, not in the sidebar
    assert page.evaluate("document.activeElement.closest('#ftsite-content') !== null")


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_focus_is_visible_on_links_and_buttons(server, open_page, lang):
    page = open_page(f"{server}/{lang}/{NOTEBOOK}.html")
    for selector in [".rst-content p a", "summary", "button.copybtn"]:
        element = tab_to(page, selector)
        page.wait_for_timeout(400)  # copy buttons fade in (a 0.3 s transition)
        outline = element.evaluate("e => { const s = getComputedStyle(e);"
                                   " return [s.outlineStyle, parseFloat(s.outlineWidth), s.opacity]; }")
        assert outline[0] != "none" and outline[1] >= 2, f"{selector}: outline {outline}"
        assert float(outline[2]) == 1.0, f"{selector} is transparent when focused"


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_language_switch_works_with_the_keyboard(server, open_page, lang):
    other = "fr" if lang == "en" else "en"
    page = open_page(f"{server}/{lang}/{CHAPTER}.html")
    link = tab_to(page, f".ftsite-lang-switch a[hreflang={other}]")
    assert link.get_attribute("lang") == other  # screen readers read "Français" in French
    label = page.locator(".ftsite-lang-switch").get_attribute("aria-label")
    assert label == {"en": "Language", "fr": "Langue"}[lang]
    page.keyboard.press("Enter")
    page.wait_for_url(f"{server}/{other}/{CHAPTER}.html")


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_search_works_with_the_keyboard_and_announces_its_results(server, open_page, lang):
    page = open_page(f"{server}/{lang}/{CHAPTER}.html")
    box = tab_to(page, "input[name=q]")
    assert box.get_attribute("aria-label") == {"en": "Search docs", "fr": "Rechercher docs"}[lang]
    page.keyboard.type("tokenizer")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/{lang}/search.html?q=tokenizer*")
    page.wait_for_selector("#search-results .search-summary", timeout=20000)
    announced = page.locator("#ftsite-announce")
    page.wait_for_function("() => document.getElementById('ftsite-announce').textContent.trim() !== ''")
    assert announced.get_attribute("role") == "status"
    assert A11Y_WORDS[lang]["search"] in announced.inner_text()


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_solutions_open_with_the_keyboard(server, open_page, lang):
    page = open_page(f"{server}/{lang}/{CHAPTER}.html")
    summary = tab_to(page, "details.dropdown > summary")
    details = page.locator("details.dropdown:has(> summary:focus)")
    assert details.evaluate("d => !d.open")
    page.keyboard.press("Enter")
    assert details.evaluate("d => d.open")
    assert summary.inner_text().strip() == "Solution"


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_copy_buttons_are_named_and_announce_in_the_page_language(server, open_page, lang):
    page = open_page(f"{server}/{lang}/{NOTEBOOK}.html", permissions=["clipboard-read", "clipboard-write"])
    button = tab_to(page, "div.cell_input button.copybtn")
    assert page.get_by_role("button", name=A11Y_WORDS[lang]["copy"]).count() > 3
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('ftsite-announce').textContent.trim() !== ''")
    assert page.locator("#ftsite-announce").inner_text() == A11Y_WORDS[lang]["copied"]
    assert page.evaluate("navigator.clipboard.readText()").strip()
    assert page.evaluate("document.activeElement.matches('button.copybtn')"), "the focus stays on the button"
    assert button.is_visible()


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_code_that_scrolls_takes_the_focus_and_is_named(server, open_page, lang):
    """On a narrow screen, each code block that scrolls is a tab stop named in the page's language."""
    page = open_page(f"{server}/{lang}/{NOTEBOOK}.html", viewport={"width": 420, "height": 800})
    regions = page.evaluate("""() => [...document.querySelectorAll('.rst-content pre')]
        .filter(e => e.scrollWidth > e.clientWidth + 1)
        .map(e => [e.getAttribute('tabindex'), e.getAttribute('aria-label')])""")
    assert regions, "some code scrolls on a narrow screen"
    labels = {A11Y_WORDS[lang]["code"], {"en": "Output, scrollable", "fr": "Sortie, défilante"}[lang]}
    assert all(tabindex == "0" and label in labels for tabindex, label in regions), regions


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_sidebar_buttons_speak_the_page_language(server, open_page, lang):
    page = open_page(f"{server}/{lang}/docs/sft.html")
    expected = {"en": "Open/close menu", "fr": "Ouvrir ou fermer le menu"}[lang]
    page.wait_for_selector("button.toctree-expand", state="attached")
    page.wait_for_function("""label => [...document.querySelectorAll('button.toctree-expand')]
        .every(b => b.title === label && b.getAttribute('aria-label') === label)""", arg=expected)


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_the_theme_frame_speaks_the_page_language(site, lang):
    """Landmarks, the footer's copyright and its date: French on French pages, English on English ones."""
    html = site.page(lang, CHAPTER)
    labels = set(re.findall(r'aria-label="([^"]*)"', html))
    english = {"Home", "Navigation menu", "Mobile navigation menu", "Page navigation",
               "Sequential page navigation"}
    if lang == "fr":
        assert not labels & english, labels & english
        assert {"Accueil", "Menu de navigation"} <= labels
        assert "les auteurs de L&#39;affinage par la pratique" in html
        assert re.search(r"Mis à jour le (1er|\d{1,2})\u00a0(janvier|février|mars|avril|mai|juin|juillet|août|"
                         r"septembre|octobre|novembre|décembre) \d{4}\.", html)
    else:
        assert {"Home", "Navigation menu"} <= labels
        assert "The Fine-Tuning by Doing authors" in html
        assert re.search(r"Last updated on \d{4}-\d\d-\d\d\.", html)


def test_every_picture_has_a_text_alternative_in_the_page_language(site, server, browser):
    """Figures and plots: each visible picture has an alt text, not a file name, and a
    French page's differ from the same English page's (so they are not left in English)."""
    context = browser.new_context()
    page = context.new_page()
    visible_alts = {}
    try:
        for lang in ["en", "fr"]:
            for path in sorted((site.html / lang).rglob("*.html")):
                name = path.relative_to(site.html / lang).as_posix()
                page.goto(f"{server}/{lang}/{name}")
                page.wait_for_load_state("load")
                page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
                visible_alts[lang, name] = page.evaluate("""() => [...document.images]
                    .filter(i => i.getClientRects().length > 0)
                    .map(i => [i.getAttribute('alt') || '', i.getAttribute('src').slice(0, 60)])""")
    finally:
        context.close()
    assert sum(len(alts) for alts in visible_alts.values()) > 40
    bad = [f"{lang}/{name}: {src} has alt {alt!r}" for (lang, name), alts in visible_alts.items()
           for alt, src in alts if len(alt.strip()) < 3 or re.search(r"\.(png|svg|jpe?g|gif)$", alt)]
    assert bad == [], "pictures without a real text alternative:\n" + "\n".join(bad)
    english = [f"fr/{name}: {alt!r}" for (lang, name), alts in visible_alts.items() if lang == "fr"
               for alt, _ in alts if alt in {a for a, _ in visible_alts.get(("en", name), [])}]
    assert english == [], "French pages show pictures described in English:\n" + "\n".join(english)
