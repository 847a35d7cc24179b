"""The support matrix of "Run on a real model": ``.. real-check:: docs/real-check.json``.

``make real-check`` (tools/real_check.py) executes every notebook with ``FTLAB_MODEL`` set
and writes its results, with the date, the commit, the model and the machine of each run,
to a JSON file kept in git. This directive shows that file as a table in the page's
language; the words of the table are translated here, like the build report's.
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

HEADERS = {
    "en": ["Notebook", "Result", "Time (s)", "Model", "Machine", "Run on", "Commit"],
    "fr": ["Notebook", "Résultat", "Durée (s)", "Modèle", "Machine", "Exécuté le", "Commit"],
}
STATUS = {
    "en": {"ran": "✅ runs", "lab-only": "➖ lab model by design", "failed": "❌ fails", "timeout": "⏱ stopped after {timeout} s",
           "missing": "not run yet"},
    "fr": {"ran": "✅ s'exécute", "lab-only": "➖ modèle du laboratoire, à dessein", "failed": "❌ échoue",
           "timeout": "⏱ arrêté après {timeout} s", "missing": "pas encore exécuté"},
}
MACHINE = {"en": ("CPU cores", "no GPU"), "fr": ("cœurs de CPU", "sans GPU")}


def _number(seconds: float, lang: str) -> str:
    text = f"{seconds:,.0f}"
    return text.replace(",", "\u202f") if lang == "fr" else text


class RealCheckDirective(SphinxDirective):
    """``.. real-check:: <json file, relative to the source folder>``."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = Path(self.env.srcdir) / self.arguments[0]
        self.env.note_dependency(str(path))  # the page is rebuilt when the file changes
        lang = "fr" if (self.config.language or "en").startswith("fr") else "en"
        if not path.exists():
            return [self.state.document.reporter.warning(f"real-check: {path} not found: run 'make real-check'",
                                                         line=self.lineno)]
        results = json.loads(path.read_text(encoding="utf-8")).get("results", {})
        headers = HEADERS[lang]
        table = nodes.table(classes=["ftsite-real-check"])
        group = nodes.tgroup(cols=len(headers))
        table += group
        group += [nodes.colspec(colwidth=1) for _ in headers]
        group += nodes.thead("", nodes.row("", *[nodes.entry("", nodes.paragraph(text=h)) for h in headers]))
        body = nodes.tbody()
        group += body
        cores, no_gpu = MACHINE[lang]
        from ftsite_order import course_order

        names = [d.split("/", 1)[1] for d in course_order(self.env.srcdir) if d.startswith("notebooks/")]
        for name in names + [n for n in results if n not in names]:
            r = results.get(name, {"status": "missing", "seconds": None})
            docname = f"notebooks/{name}"
            link = nodes.paragraph()
            link += nodes.reference("", name, internal=True,
                                    refuri=self.env.app.builder.get_relative_uri(self.env.docname, docname)
                                    if docname in self.env.found_docs else "")
            status = STATUS[lang].get(r["status"], r["status"]).format(timeout=_number(r.get("timeout", 0), lang))
            machine = r.get("machine", "").replace("CPU cores", cores).replace("no GPU", no_gpu)
            if r.get("threads"):
                machine += f", {r['threads']} thread{'s' * (r['threads'] != 1)}"
            day = r.get("date", "")
            if day and lang == "fr":
                from datetime import date

                from ftsite_lang import format_date

                day = format_date(date.fromisoformat(day), "fr")
            seconds = "–" if r["seconds"] is None else _number(r["seconds"], lang)
            cells = [link, nodes.paragraph(text=status), nodes.paragraph(text=seconds),
                     nodes.literal(text=r.get("model", "")), nodes.paragraph(text=machine),
                     nodes.paragraph(text=day), nodes.literal(text=r.get("commit", ""))]
            body += nodes.row("", *[nodes.entry("", c) for c in cells])
        return [table]


def setup(app: Sphinx) -> dict:
    app.add_directive("real-check", RealCheckDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
