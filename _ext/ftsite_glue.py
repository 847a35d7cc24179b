"""Keep glued numbers fresh in incremental builds.

A page that shows a notebook's value with the path form of glue
(``:glue:text:`/notebooks/x.ipynb::key```) depends on that notebook, but myst-nb does
not record it: after the notebook re-executes, the page would keep the old number.
Here each such page notes the notebook as a dependency, so Sphinx re-reads (and
re-writes) the page whenever the notebook changes.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx

try:  # the node myst-nb leaves for a cross-document glue reference
    from myst_nb.ext.glue.utils import PendingGlueReference
except ImportError:  # pragma: no cover - myst-nb is pinned in requirements.txt
    PendingGlueReference = None


def _note_glue_sources(app: Sphinx, doctree: nodes.document) -> None:
    """Record every notebook this page glues from as a dependency of the page."""
    if PendingGlueReference is None:
        return
    env = app.env
    for node in doctree.findall(PendingGlueReference):
        source = env.doc2path(node.refdoc)
        if source.exists():
            env.note_dependency(str(source))


def setup(app: Sphinx) -> dict:
    app.connect("doctree-read", _note_glue_sources)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
