"""ftlab.say: printed lines in both languages, with each language's numbers."""

from __future__ import annotations

import ftlab
from ftlab.display import fmt

NNBSP, NBSP = "\u202f", "\u00a0"


def test_say_formats_numbers_per_language():
    line = ftlab.say("vocabulary: {n:,} tokens, {p:.1%}, {x:.2f}", "vocabulaire : {n:,} jetons, {p:.1%}, {x:.2f}",
                     n=1323, p=0.0773, x=7.5)
    assert line.text == "vocabulary: 1,323 tokens, 7.7%, 7.50"
    assert f"vocabulaire{NBSP}: 1{NNBSP}323 jetons, 7,7{NNBSP}%, 7,50" in line.fr_html
    assert "1,323" in line.en_html and 'class="ftlab-i18n"' in line.html
    bundle = line._repr_mimebundle_()
    assert bundle["text/plain"] == line.text  # Jupyter without the site's CSS: English


def test_say_keeps_text_values_and_lists():
    line = ftlab.say("{} {}", "{} {}", ["city", "capital"], [0.5, -0.25])
    assert "[&#x27;city&#x27;, &#x27;capital&#x27;]" in line.fr_html  # words stay as they are
    assert "[0,5 ; -0,25]" in line.fr_html and "[0.5, -0.25]" in line.en_html
    assert "[1077, 261]" in ftlab.say("{}", "{}", [1077, 261]).fr_html  # integers: no decimal comma to avoid


def test_fmt_and_french_typography():
    assert fmt("{:,.0f}", "fr", 94208.4) == f"94{NNBSP}208"
    assert fmt("{:.1e}", "fr", 1.5e-6) == "1,5e-06"
    assert fmt("{:d} steps", "fr", 150) == "150 steps"
    assert f"a{NBSP}; b{NBSP}?" in ftlab.say("a; b?", "a ; b ?").fr_html


def test_table_shows_a_missing_column_as_empty_cells():
    table = ftlab.results_table([{"a": 1}], columns={"a": ("a", "a"), "item": ("item", "élément")})
    assert "élément" in table.fr_html
