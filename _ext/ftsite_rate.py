"""``:rate:`` and ``:rate-ci:``: a measured rate in the prose, always with its count.

A notebook glues a rate with :meth:`ftlab.Rate.glue` (``r.glue("heldout_capital")`` gives
``heldout_capital_pct``, ``_k``, ``_n``, ``_lo`` and ``_hi``). A page then writes::

    :rate:`/notebooks/sft.ipynb::heldout_capital`          -> 75% (3/4)        | 75 % (3/4)
    :rate:`/notebooks/sft.ipynb::heldout_capital:.1f`      -> 75.0% (3/4)
    :rate-ci:`/notebooks/sft.ipynb::heldout_capital`       -> 75% (3/4; 95% CI 30–95%)
                                                               | 75 % (3/4 ; IC à 95 % 30–95 %)

so that a percentage never appears without the count it rests on. The parts are myst-nb
glue references, resolved (and written the French way) like ``:glue:text:``;
``tests/test_rates.py`` fails when a page glues a ``*_pct`` or ``*_acc`` number bare.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxRole

try:
    from myst_nb.ext.glue.utils import PendingGlueReferenceError, create_pending_glue_ref
except ImportError:  # pragma: no cover - myst-nb is pinned in requirements.txt
    create_pending_glue_ref = None

NARROW_NBSP = "\u202f"


class RateRole(SphinxRole):
    """``:rate:`path::name[:fmt]``` (see the module docstring); ``interval`` adds the 95 % CI."""

    def __init__(self, interval: bool):
        self.interval = interval

    def run(self):
        text = self.text.strip()
        fmt = ".0f"
        if text.count(":") >= 3:  # path::name:fmt
            text, fmt = text.rsplit(":", 1)
        if "::" not in text or create_pending_glue_ref is None:
            return self._error(f"write :{self.name}:`/notebooks/<name>.ipynb::<rate name>` (got {self.text!r})")
        path, name = text.split("::", 1)
        french = (self.config.language or "en").startswith("fr")
        percent = NARROW_NBSP + "%" if french else "%"

        def ref(part: str, spec: str):
            return create_pending_glue_ref(self.inliner.document, self.env.docname, self.lineno, path,
                                           f"{name}_{part}", inline=True, gtype="text", fmt_spec=spec)

        try:
            parts = [ref("pct", fmt), nodes.Text(percent + " ("), ref("k", "d"), nodes.Text("/"), ref("n", "d")]
            if self.interval:
                parts += [nodes.Text(f"{NARROW_NBSP}; IC à 95{NARROW_NBSP}% " if french else "; 95% CI "),
                          ref("lo", ".0f"), nodes.Text("–"), ref("hi", ".0f"), nodes.Text(percent)]
        except PendingGlueReferenceError as exc:
            return self._error(str(exc))
        parts.append(nodes.Text(")"))
        return [nodes.inline("", "", *parts, classes=["ftlab-rate"])], []

    def _error(self, message: str):
        msg = self.inliner.reporter.warning(message, line=self.lineno)
        return [nodes.problematic(self.rawtext, self.rawtext)], [msg]


def setup(app: Sphinx) -> dict:
    app.add_role("rate", RateRole(interval=False))
    app.add_role("rate-ci", RateRole(interval=True))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
