"""Accessibility (WCAG 2.1 AA) of every page, in the page's language.

What the theme and Sphinx leave out, added here so that new pages get it with nothing
to write (``tests/test_browser.py`` runs axe-core on every page of both languages):

* **Skip link and labels**: ``_templates/layout.html`` writes a "Skip to content" link
  and the page's landmarks from ``MESSAGES`` (one dict per language, as in the other
  extensions: a new page needs no new message).
* **Keyboard and screen readers**: ``_static/ftsite-a11y.js`` gives each region that
  scrolls (code, outputs, formulas, wide tables) a tab stop and a name, and announces
  what copy buttons and the search did. Its strings come from ``MESSAGES`` too, written
  into the page as JSON (``ftsite_a11y_messages``).
* **Markup**, fixed in each page's HTML:

  - docutils marks citations ``role="doc-biblioentry"``, a role ARIA 1.2 deprecated,
    inside a ``role="list"`` that then has no list items: they become ``listitem``;
  - Sphinx writes a toctree's caption as ``role="heading"`` without the ``aria-level``
    ARIA requires: it gets the level below the heading it follows (the sidebar's
    captions are done in the template);
  - myst-nb labels the ``<summary>`` of hidden cells "Toggle hidden content", in English,
    over its visible prompt: the label goes, the prompt names it.

Colours, underlines and the focus outline are in ``_static/ftsite.css``.
"""

from __future__ import annotations

import json
import re

from markupsafe import Markup
from sphinx.application import Sphinx

MESSAGES = {
    "en": {
        "skip": "Skip to content",
        "code": "Code, scrollable",
        "output": "Output, scrollable",
        "formula": "Formula, scrollable",
        "table": "Table, scrollable",
        "region": "Scrollable area",
        "expand": "Open/close menu",
    },
    "fr": {
        "skip": "Aller au contenu",
        "code": "Code, défilant",
        "output": "Sortie, défilante",
        "formula": "Formule, défilante",
        "table": "Tableau, défilant",
        "region": "Zone défilante",
        "expand": "Ouvrir ou fermer le menu",
    },
}


def messages(language: str | None) -> dict[str, str]:
    """The strings of one language (English when the language has none)."""
    return MESSAGES.get((language or "en")[:2], MESSAGES["en"])


# A heading of the page, or a toctree caption that acts as one.
_HEADING_OR_CAPTION = re.compile(r'<h([1-6])[\s>]|<p class="caption" role="heading">')


def level_captions(body: str) -> str:
    """Give each toctree caption an ``aria-level``: one below the heading before it."""
    level = 1

    def replace(match: re.Match) -> str:
        nonlocal level
        if match.group(1):
            level = int(match.group(1))
            return match.group(0)
        return f'<p class="caption" role="heading" aria-level="{min(level + 1, 6)}">'

    return _HEADING_OR_CAPTION.sub(replace, body)


def _page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if app.builder.name == "html":  # not in e-books: no sidebar to skip, no script
        words = messages(app.config.language)
        context["ftsite_a11y"] = words
        # JSON inside <script>: "</" would end the element early, so it is escaped.
        context["ftsite_a11y_messages"] = Markup(json.dumps(words, ensure_ascii=False).replace("</", "<\\/"))
    if "body" in context:
        body = context["body"].replace('role="doc-biblioentry"', 'role="listitem"')
        # myst-nb names the <summary> of hidden cells "Toggle hidden content", in English,
        # over its visible prompt ("Afficher la cellule masquée"): let the prompt name it.
        body = body.replace('<summary aria-label="Toggle hidden content">', "<summary>")
        context["body"] = level_captions(body)


def _add_script(app: Sphinx) -> None:
    if app.builder.name == "html":
        # "defer": runs once the page is parsed, before the "load" event the tests wait for.
        app.add_js_file("ftsite-a11y.js", loading_method="defer")


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", _add_script)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
