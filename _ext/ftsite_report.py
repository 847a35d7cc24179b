"""The build report: one row per notebook with its execution status and time.

``.. build-report::`` is replaced, at write time, by a table made from the execution
data myst-nb keeps for each notebook (read from jupyter-cache when the notebook did not
need to run again). The page is rewritten whenever a notebook re-executes.
"""

from __future__ import annotations

from datetime import datetime

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective

from myst_nb.sphinx_ import NbMetadataCollector

BUDGET_SECONDS = 60  # seconds a notebook should take on 2 quiet CPU cores, models cached (README)
#: Notebooks whose issue gave them more (the real model's includes its conversion).
LONGER_BUDGETS = {"notebooks/hallucinations": 90, "notebooks/dfmea": 90, "notebooks/real-model": 150,
                  "notebooks/data": 90, "notebooks/evaluation": 90, "notebooks/ship": 120}


def budget(docname: str) -> int:
    """The time budget of a notebook, in seconds (a benchmark target, not a test)."""
    return LONGER_BUDGETS.get(docname, BUDGET_SECONDS)


HEADERS = {
    "en": ["Notebook", "Status", "Execution time (s)", "Run", "Budget alone (s)", "Within budget", "Executed on"],
    "fr": ["Notebook", "État", "Durée d'exécution (s)", "Exécution", "Budget seul (s)", "Dans le budget", "Exécuté le"],
}
WORDS = {
    "en": {"ok": "✅ ran", "failed": "❌ failed", "yes": "yes", "no": "no", "alone": "alone, {t} thread{s}",
           "parallel": "{j} at a time, {t} thread{s} each", "sphinx": "by Sphinx"},
    "fr": {"ok": "✅ exécuté", "failed": "❌ échec", "yes": "oui", "no": "non", "alone": "seul, {t} thread{s}",
           "parallel": "{j} à la fois, {t} thread{s} chacun", "sphinx": "par Sphinx"},
}


def _how(env: BuildEnvironment, docname: str) -> dict:
    """How tools/execute.py ran the notebook (``jobs`` at a time, ``threads`` each), from the
    jupyter cache; empty when myst-nb executed it itself during the Sphinx build."""
    try:
        import nbformat
        from jupyter_cache import get_cache

        nb = nbformat.read(env.doc2path(docname), as_version=4)
        return dict(get_cache(env.config.nb_execution_cache_path).match_cache_notebook(nb).data or {})
    except Exception:  # noqa: BLE001 - the report never fails a build
        return {}


def _run_words(how: dict, words: dict) -> str:
    if "jobs" not in how:
        return words["sphinx"]
    jobs, threads = int(how["jobs"]), int(how["threads"])
    key = "alone" if jobs == 1 else "parallel"
    return words[key].format(j=jobs, t=threads, s="s" * (threads != 1))


class build_report_node(nodes.General, nodes.Element):
    """Placeholder replaced by the table once every notebook has been read."""


class BuildReportDirective(SphinxDirective):
    """``.. build-report::``: the table of notebook executions (no arguments)."""

    def run(self) -> list[nodes.Node]:
        self.env.ftsite_report_docs = getattr(self.env, "ftsite_report_docs", set())
        self.env.ftsite_report_docs.add(self.env.docname)
        return [build_report_node()]


def _number(seconds: float, language: str) -> str:
    text = f"{seconds:.1f}"
    return text.replace(".", ",") if language.startswith("fr") else text


def _when(mtime: float, lang: str) -> str:
    """When a notebook ran, as the page's readers write it: "2026-12-03 08:26" or "3 décembre 2026, 08 h 26"."""
    from ftsite_lang import format_date

    moment = datetime.fromtimestamp(mtime)
    if lang == "fr":
        return f"{format_date(moment.date(), 'fr')}, {moment:%H} h {moment:%M}"
    return moment.strftime("%Y-%m-%d %H:%M")


def _table(env: BuildEnvironment, fromdoc: str, language: str) -> nodes.table:
    lang = "fr" if language.startswith("fr") else "en"
    headers, words = HEADERS[lang], WORDS[lang]
    table = nodes.table(classes=["ftsite-build-report"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in headers]
    head = nodes.thead()
    group += head
    head += nodes.row("", *[nodes.entry("", nodes.paragraph(text=h)) for h in headers])
    body = nodes.tbody()
    group += body
    for docname, data in sorted(NbMetadataCollector.get_doc_data(env).items()):
        run = data.get("exec_data")
        if not run:
            continue
        link = nodes.reference("", env.titles[docname].astext() if docname in env.titles else docname,
                               internal=True, refuri=env.app.builder.get_relative_uri(fromdoc, docname))
        seconds = run.get("runtime")
        how = _how(env, docname)
        alone = how.get("jobs", 1) == 1  # a budget is for one notebook alone on 2 quiet cores
        cells = [
            nodes.paragraph("", "", link),
            nodes.paragraph(text=words["ok"] if run.get("succeeded") else words["failed"]),
            nodes.paragraph(text="–" if seconds is None else _number(seconds, lang)),
            nodes.paragraph(text=_run_words(how, words)),
            nodes.paragraph(text=str(budget(docname))),
            nodes.paragraph(text="–" if seconds is None or not alone
                            else words["yes" if seconds <= budget(docname) else "no"]),
            nodes.paragraph(text=_when(run["mtime"], lang) if run.get("mtime") else "–"),
        ]
        body += nodes.row("", *[nodes.entry("", c) for c in cells])
    return table


class BuildReportTransform(SphinxPostTransform):
    default_priority = 8

    def run(self, **kwargs) -> None:
        for node in list(self.document.findall(build_report_node)):
            node.replace_self(_table(self.env, self.env.docname, self.config.language or "en"))


def _outdated_reports(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """After a notebook re-executed, rewrite the pages that hold a report."""
    if NbMetadataCollector.new_exec_data(env):
        return sorted(getattr(env, "ftsite_report_docs", set()))
    return []


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    getattr(env, "ftsite_report_docs", set()).discard(docname)


def _merge(app, env, docnames, other) -> None:
    env.ftsite_report_docs = getattr(env, "ftsite_report_docs", set()) | getattr(other, "ftsite_report_docs", set())


def setup(app: Sphinx) -> dict:
    app.add_node(build_report_node)
    app.add_directive("build-report", BuildReportDirective)
    app.add_post_transform(BuildReportTransform)
    app.connect("env-updated", _outdated_reports)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
