"""Language switch, ``hreflang`` links, French numbers and dates, the theme's labels.

The site is built once per language into ``_build/html/<lang>/`` (or, on Read the
Docs, as one project per language). Every page links to the same page in the other
languages with a *relative* URL, so the switch works over http and from ``file://``.
The links themselves are written by ``_templates/layout.html`` from the context set here.

French pages are French everywhere, the theme's frame included: sphinx-rtd-theme's own
catalog lacks its accessibility labels ("Navigation menu"…), so ``THEME_MESSAGES`` adds
them; the footer's copyright line names the authors in the page's language
(``AUTHORS``); dates are written ``le 3 décembre 2026`` (``french_date``).
"""

from __future__ import annotations

import gettext
import os
import re
from datetime import date as Date

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

# A glued plain number such as "1,150,000", "12.5" or "-0.25" (Python's format output).
_NUMBER = re.compile(r"^-?\d{1,3}(,\d{3})*(\.\d+)?$|^-?\d+(\.\d+)?$")
NARROW_NBSP = "\u202f"  # French thousands separator (espace fine insécable)


def french_number(text: str) -> str:
    """Write a number the French way: ``1,150,000.5`` -> ``1 150 000,5``."""
    if not _NUMBER.match(text):
        return text
    return text.replace(",", NARROW_NBSP).replace(".", ",")


class FrenchGluedNumbers(SphinxPostTransform):
    """In the French build, glued numbers take a decimal comma (runs after myst-nb's glue)."""

    default_priority = 6  # myst-nb replaces cross-document glue at priority 5

    def run(self, **kwargs) -> None:
        if not (self.config.language or "en").startswith("fr"):
            return
        for node in list(self.document.findall(nodes.inline)):
            if "pasted-text" in node["classes"] and len(node.children) == 1:
                text = node.astext()
                if french_number(text) != text:
                    node.replace(node.children[0], nodes.Text(french_number(text)))


# -- Dates ----------------------------------------------------------------------------

FRENCH_MONTHS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
                 "septembre", "octobre", "novembre", "décembre"]


def french_date(day: Date) -> str:
    """``2026-12-03`` -> ``3 décembre 2026``; the first of a month is ``1er``.

    Written by hand rather than with ``strftime("%B")``, which follows the machine's
    locale (English on CI) and writes ``03``.
    """
    number = "1er" if day.day == 1 else str(day.day)
    return f"{number}\u00a0{FRENCH_MONTHS[day.month - 1]} {day.year}"


def format_date(day: Date, language: str | None, english_format: str = "%Y-%m-%d") -> str:
    """A date as a reader of ``language`` writes it: French in words, English as ``english_format``."""
    if (language or "en").startswith("fr"):
        return french_date(day)
    return day.strftime(english_format)


# -- The theme's labels and the footer ---------------------------------------------------

# Strings of sphinx-rtd-theme 3.1.0's templates that its French catalog does not translate
# (screen readers announce them). "Home" is written in English in breadcrumbs.html, outside
# any catalog: _templates/layout.html passes it through _() so that it lands here too.
THEME_MESSAGES = {
    "fr": {
        "Home": "Accueil",
        "Navigation menu": "Menu de navigation",
        "Mobile navigation menu": "Menu de navigation mobile",
        "Page navigation": "Fil d'Ariane",
        "Sequential page navigation": "Navigation entre les pages",
    },
}

# myst-nb's prompts of cells tagged hide-input / hide-output / hide-cell ("Show code cell
# {type}", {type} being an English word): one French prompt for every kind of cell.
NOTEBOOK_PROMPTS = {"fr": ("Afficher la cellule masquée", "Masquer la cellule")}

# Who holds the copyright, in each language: conf.py's ``author`` in the footer's
# "© Copyright 2026, <author>." is replaced by it (Sphinx translates the rest of the line).
AUTHORS = {"fr": "les auteurs de L'affinage par la pratique"}


class _MessagesTranslations(gettext.NullTranslations):
    """A gettext catalog made of a dict: the last fallback of Sphinx's translator."""

    def __init__(self, messages: dict[str, str]):
        super().__init__()
        self._messages = messages

    def gettext(self, message: str) -> str:
        if message in self._messages:
            return self._messages[message]
        return super().gettext(message)


def _add_theme_messages(app: Sphinx) -> None:
    """Let the templates' ``_()`` find ``THEME_MESSAGES`` after every real catalog."""
    messages = THEME_MESSAGES.get((app.config.language or "en")[:2])
    if messages:
        app.translator.add_fallback(_MessagesTranslations(messages))


DEFAULT_SITE_URL = "http://127.0.0.1:8000/"  # where `make serve` serves the site


def site_url() -> str:
    """The public address of the folder that holds ``en/`` and ``fr/``, ending with ``/``.

    ``FTSITE_BASEURL`` (e.g. ``https://owner.github.io/repo/``); by default the address of
    ``make serve``. On Read the Docs, the project's canonical URL minus ``<lang>/<version>/``.
    Absolute links need it: the sitemap, the canonical link, ``hreflang`` and Open Graph URLs.
    """
    canonical = os.environ.get("READTHEDOCS_CANONICAL_URL")
    if canonical:
        root = canonical.rstrip("/") + "/"
        suffix = language_path(os.environ.get("READTHEDOCS_LANGUAGE", "en"))
        return root[: -len(suffix)] if root.endswith(suffix) else root
    return (os.environ.get("FTSITE_BASEURL") or DEFAULT_SITE_URL).rstrip("/") + "/"


def language_path(code: str) -> str:
    """Where a language's pages are, under the site's address: ``fr/`` (``fr/latest/`` on RTD)."""
    if os.environ.get("READTHEDOCS"):
        # https://<project>.readthedocs.io/<lang>/<version>/<page>.html
        return f"{code}/{os.environ.get('READTHEDOCS_VERSION', 'latest')}/"
    return f"{code}/"  # _build/html/<lang>/<page>.html


def _page_context(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Give the template the other languages: relative and absolute addresses of this page."""
    current = app.config.language or "en"
    up = "../" * language_path(current).count("/")  # from this language's root to the site's
    page = pagename + context.get("file_suffix", ".html")
    context["ftsite_current_language"] = current
    context["ftsite_languages"] = [
        {"code": code, "name": name, "prefix": up + language_path(code),
         "url": site_url() + language_path(code) + page}
        for code, name in app.config.ftsite_languages.items()
    ]


def _configure_language(app: Sphinx, config) -> None:
    """The site's name in the build's language (``ftsite_titles``), and this language's URL."""
    title = config.ftsite_titles.get((config.language or "en")[:2])
    if title:
        config.project = config.html_title = config.epub_title = title
    prompts = NOTEBOOK_PROMPTS.get((config.language or "en")[:2])
    if prompts:
        config.nb_code_prompt_show, config.nb_code_prompt_hide = prompts
    authors = AUTHORS.get((config.language or "en")[:2])
    if authors:
        config.copyright = config.copyright.replace(config.author, authors)
    # Sphinx writes <link rel="canonical"> from html_baseurl: the address of this language.
    config.html_baseurl = site_url() + language_path(config.language or "en")
    # One e-book per language (make epub), identified by the address of its language.
    config.epub_basename = f"{config.epub_basename}-{config.language or 'en'}"
    config.epub_identifier, config.epub_scheme = config.html_baseurl, "URL"
    config.epub_description = config.epub_title


def setup(app: Sphinx) -> dict:
    app.add_config_value("ftsite_languages", {"en": "English", "fr": "Français"}, "html")
    app.add_config_value("ftsite_titles", {}, "html")
    app.connect("config-inited", _configure_language)
    app.connect("builder-inited", _add_theme_messages)
    app.add_post_transform(FrenchGluedNumbers)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
