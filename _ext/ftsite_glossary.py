"""The glossary in the alphabetical order of the page's language.

``docs/glossary.rst`` lists its terms in English order. In the French build the terms are
translated (``affinage`` for *fine-tuning*), so here the entries of every ``glossary`` are
sorted again by their translated term, ignoring case and accents (``époque`` sorts
with the e's). Anchors keep their English ids (``#term-fine-tuning``) in both languages,
so links and the language switch still land on the same entry.
"""

from __future__ import annotations

import unicodedata

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform


def sort_key(text: str) -> str:
    """``Époque`` -> ``epoque``: lower case, accents removed, for a dictionary order."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class SortGlossaries(SphinxPostTransform):
    default_priority = 500

    def run(self, **kwargs) -> None:
        for glossary in self.document.findall(addnodes.glossary):
            for entries in glossary.findall(nodes.definition_list):
                items = list(entries.children)
                items.sort(key=lambda item: sort_key(next(iter(item.findall(nodes.term))).astext()))
                entries.children = []
                entries.extend(items)


def setup(app: Sphinx) -> dict:
    app.add_post_transform(SortGlossaries)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
