"""What each page tells browsers, search engines and link previews; sitemap.xml; the 404 page.

* **Last updated**: the theme's footer shows, per page, the date of the last git commit
  that changed its source; on a French page, of its source or of its ``.po`` file,
  whichever is later. A file with uncommitted changes, or a build outside a git clone,
  uses the file's modification date instead. French pages write it in words
  (``le 3 décembre 2026``), English pages as ``html_last_updated_fmt`` says.
* **Description and Open Graph**: ``<meta name="description">`` and ``og:*`` tags (title,
  description, URL, language, a picture), made from the page itself: nothing is fetched.
* **sitemap.xml** in each language's folder, with the other language of each page as an
  alternate; ``tools/ftsite.py root-index`` adds the index of both and ``robots.txt``.
* **404.html**: the page ``404.rst`` is served for any missing address, at any depth, so
  its relative links would break; a ``<base>`` element makes them absolute.

Absolute URLs come from ``html_baseurl``, which ``ftsite_lang`` sets from ``FTSITE_BASEURL``.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse
from xml.sax.saxutils import escape, quoteattr

from docutils import nodes
from markupsafe import Markup
from sphinx.application import Sphinx
from sphinx.util import logging

from ftsite_lang import format_date, language_path, site_url

logger = logging.getLogger(__name__)

NOT_FOUND = "404"  # the docname of the "page not found" page: no sitemap entry, no index
NO_SITEMAP = {NOT_FOUND}
OG_LOCALES = {"en": "en_US", "fr": "fr_FR"}
CARD = "_static/ftsite-card.{lang}.png"  # the picture of link previews, 1200 × 630
DESCRIPTION_LENGTH = 200


# -- Dates ----------------------------------------------------------------------------

def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_dates(folder: Path) -> dict[Path, str | None]:
    """Each file's last commit date (``YYYY-MM-DD``); ``None`` for files changed since.

    One ``git log`` for the whole repository. Empty outside a git clone (or without git).
    """
    top = _git(["rev-parse", "--show-toplevel"], folder)
    if not top:
        return {}
    top_path = Path(top.strip())
    dates: dict[Path, str | None] = {}
    log = _git(["log", "--format=%x00%cs", "--name-only", "--no-renames"], top_path) or ""
    for commit in log.split("\0")[1:]:
        date, *files = commit.strip().splitlines()
        for name in files:
            if name:
                dates.setdefault((top_path / name).resolve(), date)
    status = _git(["status", "--porcelain", "-z", "--untracked-files=all"], top_path) or ""
    for entry in status.split("\0"):
        if len(entry) > 3:
            dates[(top_path / entry[3:]).resolve()] = None  # changed since its last commit
    return dates


def file_date(path: Path, dates: dict[Path, str | None]) -> str | None:
    """The git date of a file, else its modification date; ``None`` if it does not exist."""
    path = Path(path).resolve()
    if dates.get(path):
        return dates[path]
    if path.exists():
        return datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d")
    return None


def page_date(app: Sphinx, docname: str) -> str | None:
    """When the page last changed: its source, and in a translated build its .po file too."""
    dates = getattr(app, "_ftsite_git_dates", None)
    if dates is None:
        dates = app._ftsite_git_dates = git_dates(Path(app.srcdir))
    found = [file_date(app.env.doc2path(docname), dates)]
    language = app.config.language or "en"
    if language != "en":
        for locale_dir in app.config.locale_dirs:
            po = Path(app.srcdir) / locale_dir / language / "LC_MESSAGES" / f"{docname}.po"
            found.append(file_date(po, dates) if po.exists() else None)
    found = [d for d in found if d]
    return max(found) if found else None


# -- Description -----------------------------------------------------------------------

def description(doctree: nodes.document | None, limit: int = DESCRIPTION_LENGTH) -> str:
    """The page's first real paragraph, cut at a word before ``limit`` characters."""
    if doctree is None:
        return ""
    for paragraph in doctree.findall(nodes.paragraph):
        if not isinstance(paragraph.parent, nodes.section):
            continue  # skip lists, tables, admonitions, notebook outputs
        text = " ".join(paragraph.astext().split())
        if len(text) < 40:
            continue
        if len(text) > limit:
            text = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
        return text
    return ""


# -- Page context ------------------------------------------------------------------------

def _page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if app.builder.name != "html":
        return
    language = (app.config.language or "en")[:2]
    if pagename in app.env.all_docs:
        date = page_date(app, pagename)
        if date and app.config.html_last_updated_fmt is not None:
            fmt = app.config.html_last_updated_fmt or "%b %d, %Y"
            day = datetime.strptime(date, "%Y-%m-%d").date()
            context["last_updated"] = format_date(day, language, fmt)
    base = app.config.html_baseurl
    url = base + pagename + context.get("file_suffix", ".html")
    text = description(doctree)
    title = Markup(context.get("title") or "").striptags()
    meta = [
        ("property", "og:title", title),
        ("property", "og:type", "website" if pagename == app.config.root_doc else "article"),
        ("property", "og:url", url),
        ("property", "og:site_name", app.config.project),
        ("property", "og:locale", OG_LOCALES.get(language, language)),
        *[("property", "og:locale:alternate", OG_LOCALES.get(code, code))
          for code in app.config.ftsite_languages if code != language],
        ("property", "og:image", base + CARD.format(lang=language)),
        ("property", "og:image:width", "1200"),
        ("property", "og:image:height", "630"),
        ("property", "og:image:alt", app.config.project),
        ("name", "twitter:card", "summary_large_image"),
    ]
    if text:
        meta += [("name", "description", text), ("property", "og:description", text)]
    context["ftsite_meta"] = meta
    if pagename == NOT_FOUND:
        context["ftsite_base"] = urlparse(base).path or "/"


# -- Sitemap ---------------------------------------------------------------------------

def write_sitemap(app: Sphinx, exception: Exception | None) -> None:
    """``sitemap.xml`` of this language, each page with its other languages as alternates."""
    if exception is not None or app.builder.name != "html":
        return
    root = site_url()
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
             'xmlns:xhtml="http://www.w3.org/1999/xhtml">']
    for docname in sorted(app.env.found_docs):
        if docname in NO_SITEMAP:
            continue
        page = docname + app.builder.out_suffix
        lines.append(f"  <url><loc>{escape(app.config.html_baseurl + page)}</loc>")
        date = page_date(app, docname)
        if date:
            lines.append(f"    <lastmod>{date}</lastmod>")
        for code in app.config.ftsite_languages:
            href = quoteattr(root + language_path(code) + page)
            lines.append(f'    <xhtml:link rel="alternate" hreflang="{code}" href={href}/>')
        lines.append("  </url>")
    lines.append("</urlset>")
    (Path(app.outdir) / "sitemap.xml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _epub_version(app: Sphinx) -> None:
    """EPUB 3 wants a version; the site has none: the e-book is dated by its build."""
    if app.builder.name == "epub" and not app.config.version:
        app.config.version = datetime.now().strftime("%Y-%m-%d")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _epub_version, priority=400)  # before the EPUB builder's check
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", write_sitemap)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
