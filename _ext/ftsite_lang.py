"""Language switch, ``hreflang`` links and French number formatting.

The site is built once per language into ``_build/html/<lang>/`` (or, on Read the
Docs, as one project per language). Every page links to the same page in the other
languages with a *relative* URL, so the switch works over http and from ``file://``.
The links themselves are written by ``_templates/layout.html`` from the context set here.
"""

from __future__ import annotations

import os
import re

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


def _page_context(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Give the template the other languages and the prefix that leads to them."""
    current = app.config.language or "en"
    languages = app.config.ftsite_languages
    if os.environ.get("READTHEDOCS"):
        # https://<project>.readthedocs.io/<lang>/<version>/<page>.html
        version = os.environ.get("READTHEDOCS_VERSION", "latest")
        prefix = "../../{code}/" + version + "/"
    else:
        prefix = "../{code}/"  # _build/html/<lang>/<page>.html
    context["ftsite_current_language"] = current
    context["ftsite_baseurl"] = (app.config.html_baseurl or "").rstrip("/")
    context["ftsite_languages"] = [
        {"code": code, "name": name, "prefix": prefix.format(code=code)}
        for code, name in languages.items()
    ]


def _translate_title(app: Sphinx, config) -> None:
    """The site's name in the build's language (``ftsite_titles``), e.g. in the sidebar."""
    title = config.ftsite_titles.get((config.language or "en")[:2])
    if title:
        config.project = config.html_title = title


def setup(app: Sphinx) -> dict:
    app.add_config_value("ftsite_languages", {"en": "English", "fr": "Français"}, "html")
    app.add_config_value("ftsite_titles", {}, "html")
    app.connect("config-inited", _translate_title)
    app.add_post_transform(FrenchGluedNumbers)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
