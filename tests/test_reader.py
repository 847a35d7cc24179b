"""What a reader gets on every page, in both languages, checked on the built files.

The session's ``site`` build (conftest.py) is read; nothing here builds the HTML again,
except the e-book test, which reuses the build's notebook cache. The same checks in a
real browser are in test_browser.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from datetime import datetime
from html import unescape
from pathlib import Path
from xml.etree import ElementTree

import nbformat
import polib
import pytest

from conftest import ROOT, notebooks, run_site

sys.path.insert(0, str(ROOT / "_ext"))
import ftsite_meta  # noqa: E402
from ftsite_glossary import sort_key  # noqa: E402
from ftsite_lang import french_date, language_path, site_url  # noqa: E402

LANGS = ["en", "fr"]
WORDS = {
    "en": {"objectives": "By the end of this chapter, you will be able to:", "summary": "Summary",
           "exercises": "Exercises", "solution": "Solution", "updated": "Last updated on {}."},
    "fr": {"objectives": "À la fin de ce chapitre, vous saurez", "summary": "Résumé",
           "exercises": "Exercices", "solution": "Solution", "updated": "Mis à jour le {}."},
}


def chapters() -> list[str]:
    """The chapters of the home page's learning path (docs/*.rst), in reading order."""
    index = (ROOT / "index.rst").read_text(encoding="utf-8")
    path = index.split("Learning path\n", 1)[1].split("\n.. ", 1)[0]
    return re.findall(r"^#\. :doc:`(?:[^`<]*<)?/?(docs/[\w-]+)>?`", path, re.M)


def page(site, lang: str, pagename: str) -> str:
    return site.page(lang, pagename)


def test_the_learning_path_lists_the_chapters():
    assert {"docs/what-is-fine-tuning", "docs/base-models", "docs/sft"} <= set(chapters())


@pytest.mark.parametrize("lang", LANGS)
def test_every_chapter_has_objectives_a_summary_and_hidden_solutions(site, lang):
    words = WORDS[lang]
    for chapter in chapters():
        html = page(site, lang, chapter)
        assert words["objectives"] in html, f"{lang}/{chapter}: no objectives"
        headings = re.findall(r"<h2>(.*?)<a class=\"headerlink\"", html)
        assert headings[-2:] == [words["summary"], words["exercises"]], f"{lang}/{chapter} ends with {headings[-2:]}"
        exercises = html.split(f"<h2>{words['exercises']}", 1)[1]
        solutions = re.findall(r'<details class="admonition dropdown">\s*<summary class="admonition-title">'
                               + words["solution"] + "</summary>", exercises)
        assert solutions, f"{lang}/{chapter}: no hidden solution"
        assert 'class="dropdown admonition"' not in html, f"{lang}/{chapter}: a solution is not hidden"


# -- Notebook pages --------------------------------------------------------------------

def executed_seconds(site) -> dict[str, float]:
    """Each notebook's execution time, as the execution step's log reports it (tools/execute.py)."""
    runs = re.findall(r"(notebooks/[\w-]+)\.ipynb: Executed notebook in ([\d.]+) seconds", site.log("execute"))
    return {name: float(seconds) for name, seconds in runs}


@pytest.mark.parametrize("lang", LANGS)
def test_every_notebook_page_has_its_bar(site, lang):
    seconds = executed_seconds(site)
    for name in notebooks():
        html = page(site, lang, name)
        bar = re.search(r'<div class="ftsite-notebook-bar">(.*?)</details></div>', html, re.S)
        assert bar, f"{lang}/{name}: no notebook bar"
        bar = bar.group(1)
        # The download link serves the notebook's source, next to the page.
        file = Path(name).name + ".ipynb"
        assert f'href="{file}" download="{file}"' in bar
        served = site.html / lang / f"{name}.ipynb"
        assert served.read_bytes() == (ROOT / f"{name}.ipynb").read_bytes()
        nbformat.validate(nbformat.read(served, as_version=4))
        # "Run it locally": make lab, or pip, for this very notebook.
        assert "<pre>make lab</pre>" in bar
        assert "pip install -r requirements.txt" in bar and f"jupyter lab {name}.ipynb" in bar
        # The execution line: the time the log measured, the device the notebook printed.
        line = re.search(r'<p class="ftsite-execution">(.*?)</p>', bar).group(1)
        pattern = {"en": r"Executed in (\d+\.\d) s on a CPU \(", "fr": r"Exécuté en (\d+,\d)\u00a0s sur un CPU \("}[lang]
        shown = re.match(pattern, line)
        assert shown, f"{lang}/{name}: {line!r}"
        assert abs(float(shown.group(1).replace(",", ".")) - seconds[name]) <= 0.06, \
            f"{lang}/{name}: {line!r}, but the log says {seconds[name]} s"
        device = {"en": r"ftlab: device cpu, float32, (\d+) threads?",  # ftlab.setup()'s line, translated on
                  "fr": r"ftlab\u00a0: appareil cpu, float32, (\d+) threads?"}[lang]  # French pages
        threads = re.search(device, html).group(1)
        words = "thread" if threads == "1" else "threads"
        assert f"({threads}\u00a0{words})" in line or f"({threads} {words})" in line
        date = {"en": r"\d{4}-\d\d-\d\d", "fr": r"(1er|[1-9]\d?)\u00a0[a-zéû]+ \d{4}"}[lang]
        assert re.search(rf", (on|le) {date}\.$", line), line  # French dates in words


def test_the_notebook_bar_is_added_to_notebooks_only(site):
    for lang in LANGS:
        for chapter in chapters() + ["index", "docs/glossary"]:
            assert "ftsite-notebook-bar" not in page(site, lang, chapter)


# -- Glossary and references -------------------------------------------------------------

def glossary_ids(site, lang: str) -> dict[str, str]:
    html = page(site, lang, "docs/glossary")
    return dict(re.findall(r'<dt id="(term-[^"]+)">(.*?)<a class="headerlink"', html))


def test_glossary_terms_are_sorted_in_each_language_with_the_same_anchors(site):
    en, fr = glossary_ids(site, "en"), glossary_ids(site, "fr")
    assert len(en) > 50 and en.keys() == fr.keys()
    assert en["term-fine-tuning"] == "fine-tuning" and fr["term-fine-tuning"] == "affinage"
    for lang in LANGS:
        entries = page(site, lang, "docs/glossary").split("<dd>")[:-1]  # each ends with its terms
        first_terms = [re.findall(r'<dt id="term-[^"]+">(.*?)<a class="headerlink"', entry)[0] for entry in entries]
        assert len(first_terms) > 50
        assert first_terms == sorted(first_terms, key=sort_key), lang


@pytest.mark.parametrize("chapter", chapters())
def test_chapters_link_glossary_terms_and_cite_references_in_both_languages(site, chapter):
    links = {}
    for lang in LANGS:
        html = page(site, lang, chapter)
        terms = re.findall(r'href="glossary\.html#(term-[^"]+)"', html)
        cites = re.findall(r'href="references\.html#([a-z0-9]+)"[^>]*><span>\[', html)
        assert set(terms) <= glossary_ids(site, lang).keys()
        links[lang] = (sorted(terms), sorted(cites))
    assert len(set(links["en"][0])) >= 5, f"{chapter} links few glossary terms: {links['en'][0]}"
    assert links["en"][1], f"{chapter} cites no reference"
    assert links["en"] == links["fr"], f"{chapter}: the French page lost or added links"


def test_references_page_has_the_required_entries_each_cited(site):
    required = ["hu2021", "dettmers2023", "ouyang2022", "rafailov2023", "shao2024", "deepseekai2025",
                "hinton2015", "dettmers2022", "vaswani2017"]
    for lang, cited_in in [("en", "Cited in: "), ("fr", "Cité dans\u00a0: ")]:
        html = page(site, lang, "docs/references")
        # role="listitem": _ext/ftsite_a11y.py replaces docutils' deprecated doc-biblioentry
        entries = re.findall(r'<div class="citation" id="([a-z0-9]+)" role="listitem">(.*?)</div>', html, re.S)
        ids = [ident for ident, _ in entries]
        assert set(required) <= set(ids), set(required) - set(ids)
        for ident, body in entries:
            assert cited_in in body, f"{lang}: [{ident}] says nowhere where it is cited"


def test_every_french_term_link_keeps_its_english_target():
    """The .po files write :term:`texte <English term>`: check-po enforces it (test_translations)."""
    targets = set()
    for path in (ROOT / "docs" / "locale" / "fr" / "LC_MESSAGES").rglob("*.po"):
        for entry in polib.pofile(str(path)):
            targets |= set(re.findall(r":term:`[^`<]*<([^>]+)>`", entry.msgstr))
    glossary = (ROOT / "docs" / "glossary.rst").read_text(encoding="utf-8")
    defined = set(re.findall(r"^   (\S.*)$", glossary, re.M))
    assert targets and targets <= defined, targets - defined


# -- Search, sitemap, Open Graph, dates, 404 ---------------------------------------------

def test_each_language_is_searched_with_its_own_stemmer(site):
    for lang, stemmer in [("en", "EnglishStemmer"), ("fr", "FrenchStemmer")]:
        static = site.html / lang / "_static"
        assert f"LANGUAGE: '{lang}'" in (static / "documentation_options.js").read_text(encoding="utf-8")
        assert f"Stemmer = {stemmer}" in (static / "language_data.js").read_text(encoding="utf-8")


def built_pages(site, lang: str) -> set[str]:
    folder = site.html / lang
    return {p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.html")}


def test_sitemaps_list_every_page_with_its_alternates(site):
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9", "x": "http://www.w3.org/1999/xhtml"}
    root = site_url()
    index = ElementTree.parse(site.html / "sitemap.xml").getroot()
    assert [loc.text for loc in index.findall("s:sitemap/s:loc", ns)] == [
        f"{root}{language_path(lang)}sitemap.xml" for lang in LANGS]
    assert f"Sitemap: {root}sitemap.xml" in (site.html / "robots.txt").read_text(encoding="utf-8")
    for lang in LANGS:
        urls = ElementTree.parse(site.html / lang / "sitemap.xml").getroot().findall("s:url", ns)
        listed = set()
        for url in urls:
            loc = url.find("s:loc", ns).text
            assert loc.startswith(root + language_path(lang))
            pagename = loc[len(root + language_path(lang)):].removesuffix(".html")
            listed.add(pagename)
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", url.find("s:lastmod", ns).text)
            alternates = {a.get("hreflang"): a.get("href") for a in url.findall("x:link", ns)}
            assert alternates == {code: f"{root}{language_path(code)}{pagename}.html" for code in LANGS}
        assert listed == built_pages(site, lang) - {"404", "search", "genindex"}


@pytest.mark.parametrize("lang", LANGS)
def test_pages_have_open_graph_tags_and_a_description(site, lang):
    base = site_url() + language_path(lang)
    for pagename in ["index", *chapters(), *notebooks(), "docs/glossary"]:
        html = page(site, lang, pagename)
        meta = dict(re.findall(r'<meta (?:property|name)="([^"]+)" content="([^"]*)" />', html))
        assert meta["og:url"] == f"{base}{pagename}.html"
        assert f'<link rel="canonical" href="{base}{pagename}.html" />' in html
        assert meta["og:locale"] == {"en": "en_US", "fr": "fr_FR"}[lang]
        title = re.search(r"<title>(.*?) &mdash;", html) or re.search(r"<title>(.*?)</title>", html)
        assert meta["og:title"] == title.group(1)
        image = meta["og:image"].removeprefix(base)
        assert (site.html / lang / image).exists(), image
        description = unescape(meta["description"])
        assert 40 < len(description) <= 200 and meta["og:description"] == meta["description"]
        text = " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())
        assert " ".join(description.rstrip("…").split()) in text, f"{lang}/{pagename}: {description!r}"


def expected_date(path: Path) -> str:
    """The date the site should show for a file: its last commit, or its mtime if changed since."""
    rel = path.relative_to(ROOT).as_posix()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", rel], cwd=ROOT, capture_output=True, text=True).stdout
    committed = subprocess.run(["git", "log", "-1", "--format=%cs", "--", rel], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    if committed and not dirty.strip():
        return committed
    return datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d")


def test_each_page_shows_when_its_source_last_changed(site):
    locale = ROOT / "docs" / "locale" / "fr" / "LC_MESSAGES"
    for pagename in ["index", *chapters(), *notebooks()]:
        source = next(ROOT.glob(f"{pagename}.*[tb]"))  # .rst or .ipynb
        en = expected_date(source)
        fr = max(en, expected_date(locale / f"{pagename}.po"))
        assert WORDS["en"]["updated"].format(en) in page(site, "en", pagename), pagename
        fr = french_date(datetime.strptime(fr, "%Y-%m-%d").date())  # « le 3 décembre 2026 »
        assert WORDS["fr"]["updated"].format(fr) in page(site, "fr", pagename), pagename


def test_dates_come_from_git_commits_and_fall_back_to_file_times(tmp_path):
    """A file's commit date, not the build's; None if changed since; {} outside git."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def git(*args, date="2001-02-03T04:05:06"):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                       env={**env, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})

    git("init", "-q")
    (repo / "old.rst").write_text("old")
    (repo / "new.rst").write_text("new")
    git("add", ".")
    git("commit", "-qm", "first", date="2001-02-03T04:05:06")
    (repo / "new.rst").write_text("newer")
    git("commit", "-qam", "second", date="2002-03-04T05:06:07")
    (repo / "old.rst").write_text("edited, not committed")
    dates = ftsite_meta.git_dates(repo)
    assert dates[(repo / "new.rst").resolve()] == "2002-03-04"
    assert dates[(repo / "old.rst").resolve()] is None
    today = datetime.now().strftime("%Y-%m-%d")
    assert ftsite_meta.file_date(repo / "old.rst", dates) == today
    outside = tmp_path / "plain"
    outside.mkdir()
    assert ftsite_meta.git_dates(outside) == {}


def test_404_pages_resolve_their_links_from_the_site(site):
    from urllib.parse import urlparse

    for lang, title in [("en", "Page not found"), ("fr", "Page introuvable")]:
        html = page(site, lang, "404")
        assert f'<base href="{urlparse(site_url()).path}{language_path(lang)}" />' in html
        assert '<meta name="robots" content="noindex" />' in html
        assert f"<h1>{title}" in html
    root = (site.html / "404.html").read_text(encoding="utf-8")
    assert "Page not found" in root and "Page introuvable" in root


def test_epub_builds_in_each_language(site):
    """make epub: one e-book per language, from the notebook cache of the site's build."""
    for lang, title in [("en", "Fine-Tuning by Doing"), ("fr", "L&#x27;affinage par la pratique")]:
        run_site(["build", lang, "--epub"], site.build_dir)
        book = site.build_dir / "epub" / lang / f"fine-tuning-by-doing-{lang}.epub"
        with zipfile.ZipFile(book) as epub:
            assert epub.namelist()[0] == "mimetype" and epub.read("mimetype") == b"application/epub+zip"
            opf = epub.read("content.opf").decode()
            assert f"<dc:language>{lang}</dc:language>" in opf and f"<dc:title>{title}</dc:title>" in opf
            chapter = epub.read("docs/sft.xhtml").decode()
            assert WORDS[lang]["objectives"].replace("\u00a0", " ")[:20] in chapter
            assert "<details" in chapter and "ftsite-run-locally" in epub.read("notebooks/sft.xhtml").decode()
        assert "Executing notebook" not in site.log(f"epub-{lang}")


def test_make_help_lists_epub():
    output = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True).stdout
    assert re.search(r"^  epub\s+.*e-book", output, re.M)
