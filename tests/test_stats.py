"""ftlab.stats: rates with their counts and 95 % Wilson intervals, in both languages."""

from __future__ import annotations

import math

import pytest

import ftlab
from ftlab.stats import Rate, wilson_interval


def test_wilson_interval_matches_hand_computed_values():
    # 19/40: p = 0.475, z = 1.96 -> (0.3291, 0.6254), as in Brown, Cai and DasGupta's tables.
    lo, hi = wilson_interval(19, 40)
    assert math.isclose(lo, 0.3291, abs_tol=5e-4) and math.isclose(hi, 0.6254, abs_tol=5e-4)
    assert wilson_interval(0, 4)[0] == 0.0 and math.isclose(wilson_interval(0, 4)[1], 0.4899, abs_tol=5e-4)
    assert wilson_interval(4, 4)[1] == 1.0 and wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(1, 2)  # the chapter's "from 9 to 91 percent"
    assert round(100 * lo) == 9 and round(100 * hi) == 91


def test_rate_text_in_both_languages():
    r = Rate(19, 40)
    assert r.text("en") == "47.5% (19/40)"
    assert r.text("fr") == "47,5\u202f% (19/40)"
    assert r.text("en", interval=True) == "47.5% (19/40; 95% CI 32.9–62.5%)"
    assert r.text("fr", interval=True) == "47,5\u202f% (19/40\u202f; IC à 95\u202f% 32,9–62,5\u202f%)"
    assert Rate(2, 2).text("en") == "100% (2/2)" and Rate(0, 3).text("en") == "0% (0/3)"
    assert r.pair() == (r.text("en"), r.text("fr"))
    assert float(r) == 0.475 and str(r) == r.text("en")


def test_rate_of_flags_and_differences():
    assert ftlab.rate([True, False, True, True]) == Rate(3, 4)
    assert not Rate(19, 40).differs_from(Rate(20, 40))  # one question apart: indistinguishable
    assert Rate(5, 100).differs_from(Rate(60, 100))
    with pytest.raises(ValueError):
        Rate(5, 4)


def test_claim_stops_the_build_and_reports_in_a_readers_run(monkeypatch, capsys):
    """The hidden checks: a false sentence fails the build (FTLAB_STRICT_CLAIMS=1, set by
    tools/execute.py), but only reports in a reader's run or on a reader's model."""
    monkeypatch.delenv("FTLAB_MODEL", raising=False)
    monkeypatch.setenv("FTLAB_STRICT_CLAIMS", "1")
    ftlab.claim(True, "docs/x.rst says it holds")  # nothing happens
    with pytest.raises(AssertionError, match="docs/x.rst says it fell"):
        ftlab.claim(False, "docs/x.rst says it fell")
    monkeypatch.setenv("FTLAB_MODEL", "Qwen/Qwen2.5-0.5B")
    ftlab.claim(False, "docs/x.rst says it fell")
    assert "FTLAB_MODEL=Qwen/Qwen2.5-0.5B" in capsys.readouterr().out
    monkeypatch.delenv("FTLAB_MODEL")
    monkeypatch.delenv("FTLAB_STRICT_CLAIMS")
    ftlab.claim(False, "docs/x.rst says it fell")
    assert "does not hold: docs/x.rst says it fell" in capsys.readouterr().out
