"""Shared fixtures: one full build of the site, and small throw-away projects.

``site`` builds gettext, English and French ONCE per test session into a temporary
folder, with an empty notebook cache, exactly as a fresh clone would; the tests then
read its pages and logs. ``mini_project`` copies the site's machinery (conf.py, the
extensions, the templates, the tools) next to a one-notebook source tree, for tests
that must break or edit things without touching the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE_TOOL = ROOT / "tools" / "ftsite.py"


def tool():
    """The ``tools/ftsite.py`` module, imported (for its functions)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("ftsite_tool", SITE_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_site(args: list[str], build_dir: Path, cwd: Path = ROOT, check: bool = True,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``tools/ftsite.py`` of the project at ``cwd`` and return the finished process."""
    process = subprocess.run(
        [sys.executable, str(cwd / "tools" / "ftsite.py"), "--build-dir", str(build_dir), *args],
        cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )
    if check and process.returncode != 0:
        pytest.fail(f"ftsite.py {' '.join(args)} failed:\n{process.stdout}\n{process.stderr}")
    return process


@dataclass
class SiteBuild:
    """A full build of the site in a temporary folder, with its logs and timings."""

    build_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def html(self) -> Path:
        return self.build_dir / "html"

    def log(self, target: str) -> str:
        return (self.build_dir / "logs" / f"{target}.log").read_text(encoding="utf-8")

    def page(self, lang: str, pagename: str) -> str:
        return (self.html / lang / f"{pagename}.html").read_text(encoding="utf-8")


def notebooks() -> list[str]:
    """Docnames of the site's notebooks, e.g. ``notebooks/first-look``."""
    return sorted(p.relative_to(ROOT).with_suffix("").as_posix()
                  for p in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> SiteBuild:
    """Build gettext, English and French from empty caches, as CI does on a fresh clone."""
    build = SiteBuild(tmp_path_factory.mktemp("site") / "_build")
    for target in ["gettext", "en", "fr"]:
        start = time.perf_counter()
        run_site(["build", target], build.build_dir)
        build.seconds[target] = time.perf_counter() - start
    run_site(["root-index"], build.build_dir)
    return build


# -- Small projects -------------------------------------------------------------------

MACHINERY = ["conf.py", "_ext", "_templates", "_static", "tools", "requirements.txt", "ftlab"]


def code_cell_notebook(*cells: str, markdown: str = "# A small notebook") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(markdown)] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def mini_project(tmp_path) -> Path:
    """A copy of the site's machinery with one page and one notebook of its own."""
    project = tmp_path / "project"
    project.mkdir()
    for name in MACHINERY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / name)
    (project / "docs").mkdir()
    (project / "notebooks").mkdir()
    (project / "docs" / "locale" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (project / "index.rst").write_text(
        "Mini\n====\n\n.. toctree::\n\n   docs/page\n   notebooks/small\n", encoding="utf-8")
    (project / "docs" / "page.rst").write_text(
        "Page\n====\n\nThe value is :glue:text:`/notebooks/small.ipynb::value:d`.\n", encoding="utf-8")
    nbformat.write(code_cell_notebook("from myst_nb import glue\nglue('value', 1, display=False)"),
                   project / "notebooks" / "small.ipynb")
    return project


def pasted_values(html: str) -> list[str]:
    """The glued values shown in a page."""
    return re.findall(r'class="pasted-text">([^<]*)<', html)


# -- The lab model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab():
    """The lab tokenizer and the cached "small" base model, on the CPU, without FTLAB_MODEL
    (shared by the tests that guard the chapters' claims)."""
    import ftlab

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTLAB_DEVICE", "cpu")
        mp.delenv("FTLAB_MODEL", raising=False)
        ftlab.setup(verbose=False)
        tok = ftlab.get_tokenizer()
        yield tok, ftlab.pretrain("small")
