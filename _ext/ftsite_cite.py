"""Citations: one role for .rst pages and notebooks, and "Cited in" under each reference.

``docs/references.rst`` holds the entries as reStructuredText citations,
``.. [Hu2021] Edward J. Hu, …``. Any page cites one with the role ``:cite:`Hu2021```
(in a notebook's Markdown, ``{cite}`Hu2021```), shown as a link ``[Hu2021]``. The role
makes the same node as the native ``[Hu2021]_`` (which works in .rst only): Sphinx
warns, and the -W build fails, on a label that does not exist and on an entry that no
page cites; in French, a translation that drops or changes a citation fails too.

Sphinx drops the back-links of citations cited from other pages; here each entry gets a
line "Cited in: <page>, <page>" with links, in the page's language. When a page starts
or stops citing a reference, the references page is rewritten.
"""

from __future__ import annotations

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms.post_transforms import SphinxPostTransform

CITED_IN = {"en": "Cited in: ", "fr": "Cité dans\u00a0: "}


def cite_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``:cite:`Hu2021``` -> a link ``[Hu2021]`` to the entry of the references page."""
    label = text.strip()
    node = addnodes.pending_xref(rawtext, refdomain="citation", reftype="ref", reftarget=label,
                                 refwarn=True, support_smartquotes=False)
    node += nodes.inline(label, f"[{label}]")
    node.source, node.line = inliner.reporter.get_source_and_line(lineno)
    inliner.document.settings.env.domains["citation"].note_citation_reference(node)
    return [node], []


class CitedIn(SphinxPostTransform):
    default_priority = 900

    def run(self, **kwargs) -> None:
        domain = self.env.domains["citation"]
        builder = self.app.builder
        label_text = CITED_IN.get((self.config.language or "en")[:2], CITED_IN["en"])
        for citation in self.document.findall(nodes.citation):
            label = citation[0].astext() if citation.children else ""
            pages = sorted(domain.citation_refs.get(label, ()), key=self._order)
            if not pages:
                continue
            line = nodes.paragraph(classes=["ftsite-cited-in"])
            line += nodes.Text(label_text)
            for index, docname in enumerate(pages):
                if index:
                    line += nodes.Text(", ")
                title = self.env.titles[docname].astext() if docname in self.env.titles else docname
                line += nodes.reference("", title, internal=True,
                                        refuri=builder.get_relative_uri(self.env.docname, docname))
            citation += line

    def _order(self, docname: str) -> tuple[int, str]:
        """Pages in reading order (the order of the toctrees), then by name."""
        order = getattr(self.env, "ftsite_reading_order", None)
        if order is None:
            order = self.env.ftsite_reading_order = _reading_order(self.env)
        return (order.get(docname, len(order)), docname)


def _reading_order(env: BuildEnvironment) -> dict[str, int]:
    order: list[str] = []

    def walk(docname: str) -> None:
        if docname in order:
            return
        order.append(docname)
        for child in env.toctree_includes.get(docname, []):
            walk(child)

    walk(env.config.root_doc)
    return {docname: index for index, docname in enumerate(order)}


def _outdated(app: Sphinx, env: BuildEnvironment, added, changed, removed) -> list[str]:
    """A page read again may cite other references: rewrite the pages that hold citations."""
    env.ftsite_reading_order = None
    if not (added or changed or removed):
        return []
    domain = env.domains["citation"]
    return sorted({docname for docname, _id, _line in domain.citations.values()} - set(removed))


def setup(app: Sphinx) -> dict:
    app.add_role("cite", cite_role)
    app.add_post_transform(CitedIn)
    app.connect("env-get-outdated", _outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
