"""A French notebook page shows no English output outside code and quoted examples.

The notebooks execute once and their outputs appear on both pages. Figures, tables and
printed lines are therefore bilingual (``ftlab.say``, ``ftlab.table``…, see
``ftlab/display.py``) and the site's CSS shows the page's language. What may stay English
on a French page:

* the **data and code** that a cell shows on purpose: the lab's texts (questions, corpus
  lines, chat templates, the model's replies, which are English because the lab model only
  reads and writes English), source code, reprs. A cell whose printed output is such a
  quoted example carries the tag ``english-output``; the tag says nothing about its code;
* the **cells of a table** (``<td>``): data. Its headers and caption must be French;
* text between quotation marks (« The capital of », “…”): a quoted example.

Everything else is checked, line by line: a line with two or more words of a list of
common English words, or a number with English thousands separators (``1,323``), fails.
"""

from __future__ import annotations

import re

import pytest

from conftest import notebooks

ENGLISH_TAG = "english-output"
# Words that are English and not French (nor code identifiers the outputs show).
ENGLISH_WORDS = {
    "the", "of", "and", "with", "tokens", "parameters", "layers", "vocabulary", "lines", "before", "after",
    "replies", "reply", "loss", "training", "held-out", "accuracy", "largest", "difference", "shuffled",
    "blocks", "share", "hand", "components", "answers", "adapters", "loaded", "perplexity", "levels", "scale",
    "back", "same", "rewards", "advantages", "written", "them", "teacher", "student", "untrained", "order",
    "per", "row", "tensor", "outlier", "final", "head", "language", "end", "by", "at", "start", "gap", "between",
    "layer", "formula", "step", "lab", "other", "decoded", "tokenizer", "all", "cases", "pass", "your",
    "function", "matches", "expected", "got", "case", "raised", "model", "exact", "seconds", "state", "saved",
}
ENGLISH_THOUSANDS = re.compile(r"(?<![\d.,-])[1-9]\d{0,2}(?:,\d{3})+(?![\d,])")  # not 0,001: a French decimal


def english_lines(page_html: str) -> list[str]:
    """The output lines of a French notebook page that are English, by the rules above."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page_html, "html.parser")
    found = []
    for cell in soup.select("div.cell"):
        if f"tag_{ENGLISH_TAG}" in cell.get("class", []):
            continue
        for output in cell.select("div.cell_output"):
            for hidden in output.select(".ftlab-i18n-en, [lang='en'], td"):
                hidden.decompose()
            for line in output.get_text("\n").splitlines():
                line = line.strip()
                line = re.sub(r"«[^»]*»|“[^”]*”", " ", line)  # quoted examples
                if not line:
                    continue
                words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]*", line)}
                if len(words & ENGLISH_WORDS) >= 2 or ENGLISH_THOUSANDS.search(line):
                    found.append(line)
    return found


def test_the_detector_finds_english_and_spares_french():
    page = """<div class="cell"><div class="cell_output"><pre>vocabulary: 1,323 tokens</pre>
      <div class="ftlab-i18n"><div class="ftlab-i18n-en"><pre>by hand: 94,208 tokens</pre></div>
      <div class="ftlab-i18n-fr"><pre>à la main : 94 208 jetons</pre></div></div>
      <table><tr><th>question</th></tr><tr><td>What is the capital of France?</td></tr></table>
      </div></div>
      <div class="cell tag_english-output"><div class="cell_output"><pre>the capital of France</pre></div></div>"""
    assert english_lines(page) == ["vocabulary: 1,323 tokens"]


@pytest.mark.parametrize("docname", notebooks())
def test_french_notebook_pages_show_no_english_output(site, docname):
    bad = english_lines(site.page("fr", docname))
    assert not bad, (f"{docname}: English output on the French page (use ftlab.say, or tag the cell "
                     f"'{ENGLISH_TAG}' if it quotes the lab's English data or code):\n" + "\n".join(bad))
