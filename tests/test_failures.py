"""Small projects: bad input gets one clear message; glue and math behave."""

from __future__ import annotations

import re

import nbformat

from conftest import code_cell_notebook, pasted_values, run_site


def test_failing_cell_fails_the_build_naming_notebook_and_cell(mini_project):
    nbformat.write(code_cell_notebook("x = 1", "y = x / 0"), mini_project / "notebooks" / "small.ipynb")
    build = mini_project / "_build"
    result = run_site(["build", "en"], build, cwd=mini_project, check=False)
    assert result.returncode != 0
    message = result.stderr
    assert "notebooks/small.ipynb" in message
    assert "cell 3" in message  # markdown cell 1, code cells 2 and 3
    assert "ZeroDivisionError" in message
    assert "Traceback" not in message, "one clear message, not a traceback"
    assert len(message.strip().splitlines()) <= 3
    assert not (build / "html" / "en" / "index.html").exists(), "a failed build must not look complete"


def test_glued_number_follows_its_notebook_in_an_incremental_build(mini_project):
    build = mini_project / "_build"
    run_site(["build", "en"], build, cwd=mini_project)
    page = build / "html" / "en" / "docs" / "page.html"
    assert pasted_values(page.read_text()) == ["1"]
    nbformat.write(code_cell_notebook("from myst_nb import glue\nglue('value', 2, display=False)"),
                   mini_project / "notebooks" / "small.ipynb")
    run_site(["build", "en"], build, cwd=mini_project)  # incremental: same build folder
    assert pasted_values(page.read_text()) == ["2"]


def test_malformed_po_stops_the_french_build_with_one_clear_message(mini_project):
    po = mini_project / "docs" / "locale" / "fr" / "LC_MESSAGES" / "docs" / "page.po"
    po.parent.mkdir(parents=True)
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                  'msgid "Page"\nmsgstr "Page\n', encoding="utf-8")  # unterminated string
    result = run_site(["build", "fr"], mini_project / "_build", cwd=mini_project, check=False)
    assert result.returncode != 0
    assert "docs/locale/fr/LC_MESSAGES/docs/page.po" in result.stderr
    assert "malformed" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_reference_is_reported_with_its_file(mini_project):
    page = mini_project / "docs" / "page.rst"
    page.write_text(page.read_text() + "\nSee :doc:`/docs/missing`.\n", encoding="utf-8")
    result = run_site(["build", "en"], mini_project / "_build", cwd=mini_project, check=False)
    assert result.returncode != 0
    assert "docs/page.rst" in result.stderr and "missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_math_becomes_mathml_with_no_script(mini_project):
    page = mini_project / "docs" / "page.rst"
    page.write_text(page.read_text() + "\n.. math::\n\n   -\\log \\sigma(r_w - r_l)\n", encoding="utf-8")
    run_site(["build", "en"], mini_project / "_build", cwd=mini_project)
    html = (mini_project / "_build" / "html" / "en" / "docs" / "page.html").read_text()
    assert re.search(r'<math [^>]*display="block"', html) and "<mi>&#x003C3;</mi>" in html
    assert "mathjax" not in html.lower()


def test_cell_timeout_gets_its_own_message(tmp_path):
    """A cell stopped by nb_execution_timeout (a busy CPU, an endless loop) is named as such,
    not by the ZMQ error that follows the kernel's interruption."""
    from conftest import tool

    log = (
        "notebooks/lora.ipynb: WARNING: Executing notebook failed: CellTimeoutError\n"
        "nbclient.exceptions.CellTimeoutError: A cell timed out while it was being executed, after 300 seconds.\n"
        "zmq.error.ZMQError: Socket operation on non-socket\n"
        "myst_nb.core.execute.base.ExecutionError: notebooks/lora.ipynb\n"
    )
    message = tool().explain_failure(log, "en", tmp_path / "en.log")
    assert message.startswith("notebooks/lora.ipynb: a cell ran longer than 300 s")
    assert "nb_execution_timeout" in message and "ZMQ" not in message
