"""Read (and so execute) the pages in the order of the course, not in alphabetical order.

Sphinx reads changed documents in alphabetical order, and myst-nb executes a notebook when
it reads it. The notebooks share trained models through ftlab's disk cache: ``lora`` loads
the base model that ``pretraining`` trains. Alphabetically ``lora`` would come first and
pay for the pretraining itself on an empty cache; in the order of the home page's
toctrees, every notebook finds what its predecessors cached, and each one's execution
time measures its own work.

The order is the order in which ``index.rst`` lists the pages in its toctrees; pages it
does not list keep their alphabetical order, after the listed ones.
"""

from __future__ import annotations

import re
from pathlib import Path

#: A toctree entry of index.rst: an indented "docs/x" or "notebooks/x" line.
_ENTRY = re.compile(r"^\s+((?:docs|notebooks)/[\w./-]+)\s*$", re.MULTILINE)


def course_order(srcdir: str | Path) -> list[str]:
    """The docnames listed in the toctrees of ``index.rst``, in order."""
    index = Path(srcdir) / "index.rst"
    if not index.exists():
        return []
    text = index.read_text(encoding="utf-8")
    names: list[str] = []
    for block in re.split(r"^\.\. toctree::", text, flags=re.MULTILINE)[1:]:
        body = re.split(r"^\S", block, maxsplit=1, flags=re.MULTILINE)[0]  # up to the next unindented line
        names += [m for m in _ENTRY.findall(body) if m not in names]
    return names


def _reorder(app, env, docnames: list[str]) -> None:
    rank = {name: i for i, name in enumerate(course_order(app.srcdir))}
    docnames.sort(key=lambda name: (rank.get(name, len(rank)), name))


def setup(app):
    app.connect("env-before-read-docs", _reorder)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
