"""Every rate the prose compares shows the count it rests on (issue 16's rule).

A page writes a measured rate with ``:rate:`/notebooks/x.ipynb::name``` (``_ext/ftsite_rate.py``:
"75% (3/4)"; in a notebook's markdown, ``{rate}`/notebooks/x.ipynb::name```), or glues its ``name_pct`` next to ``name_k`` and ``name_n`` in the same paragraph
or table row. A glued ``*_pct``, ``*_acc`` or ``*_rate`` number standing alone fails here,
in the chapters, the notebooks' markdown and the French catalogs alike, so the rule holds for new chapters.
Percentages that are not rates measured on a sample (a share of parameters, computed exactly)
are listed in NOT_RATES with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The reStructuredText form (chapters, .po files) and the MyST form (notebook markdown).
GLUE = re.compile(r"(?::glue:text:|\{glue:text\})`[^`]*?::(?P<key>[A-Za-z0-9_]+)(?::[^`]*)?`")
RATE_KEY = re.compile(r"^(?P<base>.+)_(?:pct|acc|rate)$")
RATE_ROLE = re.compile(r":rate(?:-ci)?:`[^`]*?::(?P<base>[A-Za-z0-9_]+)(?::[^`]*)?`")

#: Glued percentages that are not rates measured on a sample, with the reason.
NOT_RATES = {
    "trainable_pct": "the share of the model's parameters that LoRA trains: an exact ratio",
    "loss_token_pct": "the share of the training tokens inside the loss: an exact ratio of the data set",
}


def blocks(text: str):
    """Paragraphs (blank-line separated) and, inside tables, rows (``* -`` starts one)."""
    for para in re.split(r"\n\s*\n", text):
        yield from re.split(r"\n\s*\* - ", para)


def bare_rates(text: str) -> list[str]:
    """The glued rate keys of ``text`` that have no count beside them."""
    problems = []
    for block in blocks(text):
        keys = {m["key"] for m in GLUE.finditer(block)}
        for key in sorted(keys):
            m = RATE_KEY.match(key)
            if not m or key in NOT_RATES:
                continue
            if f"{m['base']}_n" not in keys:
                problems.append(key)
    return problems


def sources():
    for path in sorted((ROOT / "docs").glob("*.rst")) + [ROOT / "index.rst"]:
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        yield path.relative_to(ROOT).as_posix(), "\n\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for path in sorted((ROOT / "docs" / "locale" / "fr" / "LC_MESSAGES").rglob("*.po")):
        texts = [entry.msgstr for entry in polib.pofile(str(path)) if entry.msgstr]
        yield path.relative_to(ROOT).as_posix(), "\n\n".join(texts)


SOURCES = list(sources())


@pytest.mark.parametrize("name,text", SOURCES, ids=[name for name, _ in SOURCES])
def test_every_glued_rate_has_its_count(name, text):
    problems = bare_rates(text)
    assert not problems, (
        f"{name}: these glued rates have no count beside them: {', '.join(problems)}. "
        "Glue them with ftlab.Rate(k, n).glue(name) and write :rate:`/notebooks/x.ipynb::name` "
        "(or glue name_k and name_n in the same sentence)."
    )


def test_the_rule_catches_a_bare_rate_and_accepts_a_counted_one():
    bare = "It answers :glue:text:`/notebooks/sft.ipynb::heldout_capital_pct:.0f` percent."
    counted = ("It answers :glue:text:`/notebooks/x.ipynb::a_pct:.0f` percent "
               "(:glue:text:`/notebooks/x.ipynb::a_k:d`/:glue:text:`/notebooks/x.ipynb::a_n:d`).")
    role = "It answers :rate:`/notebooks/x.ipynb::a` of them."
    assert bare_rates(bare) == ["heldout_capital_pct"]
    assert bare_rates(counted) == [] and bare_rates(role) == []
    # a count in another paragraph or table row does not count
    assert bare_rates(bare + "\n\n:glue:text:`/notebooks/sft.ipynb::heldout_capital_n:d`") == ["heldout_capital_pct"]


def test_rate_role_keys_exist_in_their_notebook():
    """Every :rate: names a rate its notebook glues (pct, k, n, lo, hi): a typo fails here, not silently."""
    for name, text in sources():
        if not name.endswith(".rst"):
            continue
        for m in re.finditer(r":rate(?:-ci)?:`(?P<path>[^`:]+)::(?P<base>[A-Za-z0-9_]+)", text):
            nb = json.loads((ROOT / m["path"].lstrip("/")).read_text(encoding="utf-8"))
            source = "\n".join("".join(c.get("source", "")) for c in nb["cells"])
            assert m["base"] in source, f"{name}: {m['path']} never glues a rate named {m['base']!r}"
