"""Sphinx configuration of the site.

The whole repository is the Sphinx source folder (conf.py and index.rst sit at its
root), so sources are whitelisted with ``include_patterns``. Every choice that is not
obvious says *why* next to it. Nothing here has side effects: the build folder, the
language and the notebook cache are passed in by ``tools/ftsite.py`` (run by ``make``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "_ext"))  # the site's own small Sphinx extensions

# -- Project -------------------------------------------------------------------------
project = "Fine-Tuning by Doing"
author = "The Fine-Tuning by Doing authors"
copyright = "2026, " + author

# The language is given per build (``-D language=fr``); Read the Docs sets
# READTHEDOCS_LANGUAGE for each of its projects (one project per language).
language = os.environ.get("READTHEDOCS_LANGUAGE", "en")
ftsite_languages = {"en": "English", "fr": "Français"}  # every language the site is built in
ftsite_titles = {"en": project, "fr": "L'affinage par la pratique"}  # the site's name per language

# -- Sources -------------------------------------------------------------------------
# Without a whitelist, README.md or a stray .md inside .venv fails the -W build
# ("document isn't included in any toctree").
root_doc = "index"
include_patterns = ["index.rst", "404.rst", "docs/**", "notebooks/**"]
exclude_patterns = ["_build", "docs/locale", "**/.ipynb_checkpoints"]

extensions = [
    "myst_nb",            # notebooks (.ipynb) as pages, executed at build time
    "sphinx_copybutton",  # a copy button on every code block
    "ftsite_lang",        # language switch, hreflang links, French number format
    "ftsite_glue",        # pages that glue a notebook's numbers follow its re-execution
    "ftsite_rate",        # :rate: / :rate-ci: - a glued rate with its count (and its 95 % interval)
    "ftsite_math",        # math rendered to MathML at build time: no MathJax from a CDN
    "ftsite_report",      # the build report: each notebook's execution time and status
    "ftsite_realcheck",   # "Run on a real model": the results of make real-check (docs/real-check.json)
    "ftsite_order",       # pages are read (notebooks executed) in the course's order
    "ftsite_notebook",    # every notebook page: download link, "run it locally", execution line
    "ftsite_dropdown",    # exercise solutions hidden in <details> (":class: dropdown")
    "ftsite_glossary",    # the glossary sorted in the page's language
    "ftsite_cite",        # the references page lists the pages that cite each entry
    "ftsite_meta",        # last updated (git), description, Open Graph, sitemap.xml, 404 page
    "ftsite_a11y",        # WCAG 2.1 AA: skip link, labels in the page's language, keyboard access
]

# -- Notebooks (myst-nb) -------------------------------------------------------------
# "cache": a notebook executes only when its code changed; the gettext, English and
# French builds share ONE jupyter-cache folder, so it executes once for all of them.
nb_execution_mode = "cache"
nb_execution_raise_on_error = True   # a failing cell fails the build (tools/ftsite.py names it)
nb_execution_show_tb = True          # the traceback goes to the build log
nb_execution_timeout = 300           # seconds per cell; the budget per notebook is 60 s


def _lab_fingerprint() -> str:
    """Hash of the helper package and the pinned requirements.

    jupyter-cache keys a notebook by its code cells only; the numbers also depend on
    ``ftlab`` and on library versions. Putting this hash into the cache folder name
    re-executes the notebooks when either changes (a changed nb_* setting re-reads
    every document), and never otherwise.
    """
    digest = hashlib.sha256()
    for path in sorted((ROOT / "ftlab").rglob("*.py")) + [ROOT / "requirements.txt", ROOT / "requirements-nodeps.txt"]:
        if path.exists():
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


_cache_root = Path(os.environ.get("FTSITE_CACHE_DIR", ROOT / "_build" / ".jupyter_cache"))
nb_execution_cache_path = str(_cache_root / _lab_fingerprint())
nb_merge_streams = True  # one block per cell for stdout, not one per print call

# -- Translation (sphinx-intl) -------------------------------------------------------
locale_dirs = ["docs/locale/"]
gettext_compact = False        # one .po per source document, paths mirror the sources
gettext_uuid = False
gettext_location = False       # no line numbers in .po files: smaller diffs
figure_language_filename = "{root}.{language}{ext}"  # images/x.fr.svg replaces images/x.svg

# -- HTML ----------------------------------------------------------------------------
html_theme = "sphinx_rtd_theme"
html_theme_options = {
    "navigation_depth": 3,
    "collapse_navigation": False,
    "prev_next_buttons_location": "both",
}
html_title = project
html_math_renderer = "mathml"  # see _ext/ftsite_math.py: no MathJax from a CDN
html_static_path = ["_static"]
html_css_files = ["ftsite.css"]
templates_path = ["_templates"]
html_last_updated_fmt = "%Y-%m-%d"  # per page, from git: see _ext/ftsite_meta.py
html_show_sourcelink = False
html_copy_source = False
# html_baseurl (canonical links, sitemap, Open Graph) is set per language by _ext/ftsite_lang.py
# from FTSITE_BASEURL, the public address of the folder that holds en/ and fr/.
# html_search_language is left to follow `language`: French pages get French stemming.

# -- EPUB (make epub) -----------------------------------------------------------------
epub_basename = "fine-tuning-by-doing"  # _build/epub/<lang>/fine-tuning-by-doing-<lang>.epub
epub_author = author
epub_show_urls = "no"         # no URL printed after every link
epub_exclude_files = ["search.html", "404.html"]

# Copy buttons copy the code, not the prompts or the outputs.
copybutton_exclude = ".linenos, .gp, .go"

# Headings get stable anchors; keep warnings strict but ignore myst-nb's own
# "mime type" notices for outputs we deliberately leave as text.
suppress_warnings = ["mystnb.unknown_mime_type"]

# -- MyST (notebook markdown) --------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
