"""The visible code of a notebook page is the lesson; the exercises check the reader's code.

**How the share of lesson code is measured** (from the ``.ipynb`` files, no build needed).
Visible code is every code cell without a ``remove-input``, ``hide-input`` or
``remove-cell`` tag (myst-nb shows those cells' outputs, or nothing, but not their code),
first cell excluded (``ftlab.setup()``, the same in every notebook). Its lines are counted
without blank lines and comment-only lines. A visible line is *presentation*, not lesson, when
the top-level statement it belongs to

* calls ``glue`` or ``display``, or one of ftlab's display helpers (``ftlab.say``,
  ``ftlab.table``, ``ftlab.results_table``, ``ftlab.figure``, ``ftlab.plot_*``,
  ``ftlab.bilingual``), or
* holds a bilingual label: a pair of string literals one of which has a non-ASCII letter or
  a space, such as ``("held-out loss", "perte de validation")``, or
* defines a figure's ``draw`` function.

The rest does the lesson's work (data, models, training, measures, and the ``print`` of what
the lesson looks at). Every notebook page must have at least 80 % of lesson lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HIDDEN_TAGS = {"remove-input", "hide-input", "remove-cell"}
DISPLAY_HELPERS = {"say", "table", "results_table", "figure", "plot_loss", "plot_lines", "plot_bars", "bilingual"}
MIN_LESSON_SHARE = 0.80


def _is_label_pair(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Tuple) and len(node.elts) == 2):
        return False
    if not all(isinstance(e, ast.JoinedStr) or (isinstance(e, ast.Constant) and isinstance(e.value, str))
               for e in node.elts):
        return False
    text = "".join(e.value if isinstance(e, ast.Constant) else ast.unparse(e) for e in node.elts)
    return any(ord(ch) > 127 for ch in text) or " " in text


def _is_presentation(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.FunctionDef) and stmt.name == "draw":
        return True
    for node in ast.walk(stmt):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("glue", "display"):
                return True
            if isinstance(func, ast.Attribute) and func.attr in DISPLAY_HELPERS and isinstance(func.value, ast.Name) \
                    and func.value.id in ("ftlab", "display"):
                return True
        if _is_label_pair(node):
            return True
    return False


def visible_cells(path: Path) -> list[nbformat.NotebookNode]:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    return [c for c in code[1:] if not HIDDEN_TAGS & set(c.metadata.get("tags", []))]


def line_counts(path: Path) -> tuple[int, int]:
    """(lesson lines, visible lines) of a notebook, by the rule above."""
    lesson = visible = 0
    for cell in visible_cells(path):
        lines = cell.source.split("\n")
        counted = {i for i, line in enumerate(lines, start=1) if line.strip() and not line.strip().startswith("#")}
        presentation = set()
        for stmt in ast.parse(cell.source).body:
            if _is_presentation(stmt):
                start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
                presentation |= set(range(start, stmt.end_lineno + 1))
        visible += len(counted)
        lesson += len(counted - presentation)
    return lesson, visible


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_visible_code_is_mostly_the_lesson(path):
    lesson, visible = line_counts(path)
    assert visible > 0, f"{path.name}: no visible code at all"
    assert lesson / visible >= MIN_LESSON_SHARE, (
        f"{path.name}: {lesson} of {visible} visible code lines do the lesson's work ({lesson / visible:.0%}); "
        "move glue calls, bilingual labels and figure drawing into a cell tagged remove-input or an ftlab helper")


def test_the_rule_sees_presentation():
    source = 'x = train(model)\nglue("x", x, display=False)\nftlab.table(df, columns={"a": ("loss", "perte")})\n'
    stmts = ast.parse(source).body
    assert [_is_presentation(s) for s in stmts] == [False, True, True]
    assert not _is_presentation(ast.parse('split = ("train", "heldout")').body[0])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_hidden_cells_are_presentation_only(path):
    """A remove-input cell must not hide the lesson: no training or model loading there."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "remove-input" in cell.metadata.get("tags", []):
            for word in ("train_sft_loop(", "pretrain(", "get_sft_model(", "train_reward_model(", "train_dpo(",
                         "grpo_loop(", "distill_loop(", ".backward("):
                assert word not in cell.source, f"{path.name}: a hidden cell runs {word}: show it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_hidden_checks_of_the_text_use_claim(path):
    """A hidden check of a sentence is ``ftlab.claim(holds, "docs/x.rst says ...")``, not ``assert``:
    it fails the build on the model the text describes and only reports with ``FTLAB_MODEL`` set,
    where the reader's model may well behave otherwise (a bare ``assert`` would stop their notebook)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "remove-cell" in cell.metadata.get("tags", []):
            for node in ast.walk(ast.parse(cell.source)):
                assert not (isinstance(node, ast.Assert) and node.msg is not None), \
                    f"{path.name}: hidden `assert ..., {ast.unparse(node.msg)[:60]}`: write ftlab.claim(...)"


# -- Exercises --------------------------------------------------------------------------

EXERCISES = {  # notebook: the check it calls
    "sft": "check_label_mask",
    "reward-model": "check_pairwise_loss",
    "grpo": "check_group_advantages",
    "lora": "check_lora_forward",
}


@pytest.mark.parametrize("name,check", EXERCISES.items())
def test_the_exercise_cells_are_in_the_notebooks(name, check):
    """The reader writes the function in a visible cell, a check cell runs ftlab's check, and
    the solution is a hidden (dropdown) admonition."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    sources = [c.source for c in nb.cells]
    checks = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and f"exercises.{check}(" in c.source]
    assert checks, f"{name}: no cell calls ftlab.exercises.{check}"
    assert any(":class: dropdown" in s and "Solution" in s for s in sources), f"{name}: no hidden solution"
    cell = nb.cells[checks[0]]
    assert not HIDDEN_TAGS & set(cell.metadata.get("tags", [])), f"{name}: the check cell must be visible"


def test_the_checks_accept_ftlab_and_reject_wrong_code():
    import torch

    import ftlab
    from ftlab import exercises

    assert exercises.check_group_advantages(ftlab.group_advantages, strict=True)
    assert exercises.check_pairwise_loss(ftlab.pairwise_loss, strict=True)
    assert exercises.check_label_mask(lambda ids, mask: [t if m else -100 for t, m in zip(ids, mask)], strict=True)
    assert exercises.check_lora_forward(lambda x, W, A, B, alpha, r: x @ W.T + alpha / r * (x @ A.T @ B.T),
                                        strict=True)
    wrong = [
        exercises.check_group_advantages(lambda rewards, g: torch.tensor(rewards) - 0.5),
        exercises.check_pairwise_loss(lambda c, r: -torch.log(torch.sigmoid(c - r)).mean()),  # overflows
        exercises.check_label_mask(lambda ids, mask: [t if m else 0 for t, m in zip(ids, mask)]),
        exercises.check_lora_forward(lambda x, W, A, B, alpha, r: x @ W.T + x @ A.T @ B.T),  # forgets alpha / r
        exercises.check_label_mask(lambda ids, mask: 1 / 0),
    ]
    assert not any(wrong)
    verdict = wrong[2].bilingual()
    assert "expected" in verdict.en_html and "attendu" in verdict.fr_html
    with pytest.raises(AssertionError):
        exercises.check_pairwise_loss(lambda c, r: (c - r).mean(), strict=True)
