"""tools/execute.py: notebooks executed several at a time, once, for every Sphinx build."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import nbformat

from conftest import ROOT, code_cell_notebook, run_site


def test_parallel_execution_runs_each_notebook_once_and_sphinx_reads_the_cache(mini_project):
    # Two notebooks that each take a second: run two at a time, they overlap.
    for name in ("small", "second"):
        nbformat.write(code_cell_notebook("import time\nstart = time.time()\ntime.sleep(1.5)",
                                          f"from myst_nb import glue\nglue('value', 1, display=False)"),
                       mini_project / "notebooks" / f"{name}.ipynb")
    index = mini_project / "index.rst"
    index.write_text(index.read_text() + "   notebooks/second\n", encoding="utf-8")
    build = mini_project / "_build"
    process = subprocess.run([sys.executable, "tools/ftsite.py", "--build-dir", str(build), "build", "en"],
                             cwd=mini_project, capture_output=True, text=True,
                             env={**__import__("os").environ, "FTSITE_JOBS": "2"})
    assert process.returncode == 0, process.stderr
    log = (build / "logs" / "execute.log").read_text()
    assert "2 notebook(s), 2 at a time" in log
    assert log.count("Executed notebook in") == 2
    sphinx_log = (build / "logs" / "en.log").read_text()
    assert sphinx_log.count("Using cached notebook") == 2 and "Executing notebook" not in sphinx_log
    again = run_site(["build", "en"], build, cwd=mini_project)
    assert "nothing to execute" in again.stdout


def test_a_cache_entry_is_built_once_when_two_processes_need_it(tmp_path):
    """ftlab's cache lock: a notebook that needs a model another notebook is training waits
    for it and loads it, instead of training it a second time."""
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from ftlab.cache import cached_dir

        def build(folder):
            with open({str(tmp_path / "builds.txt")!r}, "a") as f:
                f.write("built\\n")
            time.sleep(1.5)
            (folder / "weights").write_text("w")

        path, meta, hit = cached_dir("shared", {{"k": 1}}, build)
        print(path, hit)
    """)
    env = {**__import__("os").environ, "FTLAB_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert (tmp_path / "builds.txt").read_text().count("built") == 1
    assert outputs[0][0] == outputs[1][0]
    assert sorted(o[1] for o in outputs) == ["False", "True"]
