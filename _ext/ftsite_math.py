"""Math rendered to MathML when the site is built.

Sphinx's default, MathJax, loads a script from a CDN on every page with math: a
third-party request we refuse (the course teaches fine-tuning for privacy). Browsers
render MathML natively (Chromium since 109, Firefox, Safari), so the formulas are
converted once, at build time, with the pure-Python ``latex2mathml``: no script at all.
"""

from __future__ import annotations

import html

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)


def to_mathml(latex: str, display: str, node: nodes.Node) -> str:
    """Convert one LaTeX formula; on failure warn (the -W build fails) and show the source."""
    try:
        return convert(latex.strip(), display=display)
    except Exception as exc:  # latex2mathml raises several exception types
        logger.warning("cannot convert math %r to MathML: %s", latex, exc, location=node)
        return f"<code>{html.escape(latex)}</code>"


def visit_inline_math(self, node: nodes.math) -> None:
    self.body.append(
        f'<span class="math notranslate">{to_mathml(node.astext(), "inline", node)}</span>'
    )
    raise nodes.SkipNode


def visit_block_math(self, node: nodes.math_block) -> None:
    # A block may hold several equations separated by blank lines, as in Sphinx.
    parts = [p for p in node.astext().split("\n\n") if p.strip()]
    html = "".join(to_mathml(p, "block", node) for p in parts)
    number = ""
    if node.get("number"):
        number = f'<span class="eqno">({node["number"]})</span>'
    ident = f' id="{node["ids"][0]}"' if node.get("ids") else ""
    self.body.append(f'<div class="math notranslate"{ident}>{number}{html}</div>\n')
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict:
    app.add_html_math_renderer(
        "mathml", (visit_inline_math, None), (visit_block_math, None)
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
