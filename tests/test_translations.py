"""The French translation is complete, and the check that says so can fail."""

from __future__ import annotations

import shutil
import sys

import polib
import pytest

from conftest import ROOT, run_site

sys.path.insert(0, str(ROOT / "tools"))
from check_po import check_catalogs  # noqa: E402

LOCALE = ROOT / "docs" / "locale"
CHAPTER_PO = "fr/LC_MESSAGES/docs/what-is-fine-tuning.po"


def test_french_catalogs_are_complete_for_the_current_sources(site):
    problems = check_catalogs(LOCALE, pot_dir=site.build_dir / "gettext")
    assert problems == [], "\n".join(problems)


@pytest.fixture
def locale_copy(tmp_path):
    copy = tmp_path / "locale"
    shutil.copytree(LOCALE, copy, ignore=shutil.ignore_patterns("*.mo"))
    return copy


def _plant(locale_copy, **entry) -> str:
    path = locale_copy / CHAPTER_PO
    po = polib.pofile(str(path), wrapwidth=0)
    po.append(polib.POEntry(**entry))
    po.save(str(path))
    return str(path)


def test_check_fails_on_a_planted_untranslated_message(tmp_path):
    """On a complete catalog, one planted empty msgstr fails the check, named."""
    locale = tmp_path / "locale"
    path = locale / CHAPTER_PO
    path.parent.mkdir(parents=True)
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": "fr"}
    po.append(polib.POEntry(msgid="What is fine-tuning?", msgstr="Qu'est-ce que l'affinage ?"))
    po.save(str(path))
    assert run_site(["check-po", "--locale-dir", str(locale)], tmp_path / "b", check=False).returncode == 0
    _plant(locale, msgid="A planted sentence nobody translated.", msgstr="")
    result = run_site(["check-po", "--locale-dir", str(locale)], tmp_path / "b", check=False)
    assert result.returncode == 1
    assert "what-is-fine-tuning.po" in result.stderr
    assert 'untranslated: "A planted sentence nobody translated."' in result.stderr
    assert "make update-po" in result.stderr


def test_check_flags_fuzzy_messages(locale_copy):
    _plant(locale_copy, msgid="A planted fuzzy one.", msgstr="Une traduction approximative.", flags=["fuzzy"])
    problems = check_catalogs(locale_copy)
    assert any("fuzzy" in p and "A planted fuzzy one." in p for p in problems)


def test_check_flags_a_translation_that_lost_a_glued_value(locale_copy):
    _plant(locale_copy, msgid="It has :glue:text:`/notebooks/first-look.ipynb::n_params:,` weights.",
           msgstr="Il a beaucoup de poids.")
    problems = check_catalogs(locale_copy)
    assert any("must keep :glue:text:" in p for p in problems)


def test_check_flags_english_text_missing_from_the_french_file(locale_copy, tmp_path):
    pot_dir = tmp_path / "gettext" / "docs"
    pot_dir.mkdir(parents=True)
    pot = polib.POFile()
    pot.append(polib.POEntry(msgid="A sentence added to the English source.", msgstr=""))
    pot.save(str(pot_dir / "what-is-fine-tuning.pot"))
    problems = check_catalogs(locale_copy, pot_dir=tmp_path / "gettext")
    assert any("new English text" in p and "A sentence added" in p for p in problems)


def test_check_reports_a_malformed_file_with_its_line(locale_copy):
    path = locale_copy / CHAPTER_PO
    path.write_text(path.read_text(encoding="utf-8") + '\nmsgid "broken\nmsgstr ""\n', encoding="utf-8")
    problems = check_catalogs(locale_copy, syntax_only=True)
    assert len(problems) == 1 and "what-is-fine-tuning.po:" in problems[0] and "syntax error" in problems[0]


def test_check_flags_a_glossary_link_whose_target_was_translated(locale_copy):
    """In French, :term:`affinage <fine-tuning>` keeps the English target; :term:`affinage` breaks."""
    _plant(locale_copy, msgid="Planted: :term:`fine-tuning` changes weights.",
           msgstr="Planté : :term:`affinage` modifie les poids.")
    problems = check_catalogs(locale_copy)
    assert any("must link :term:`fine-tuning`" in p and "<fine-tuning>" in p for p in problems)


def test_check_accepts_a_translated_link_text_and_flags_a_lost_citation(locale_copy):
    _plant(locale_copy, msgid="Planted: :term:`LoRA <low-rank adaptation (LoRA)>` :cite:`Hu2021`.",
           msgstr="Planté : :term:`LoRA <low-rank adaptation (LoRA)>` :cite:`Hu2021`.")
    assert check_catalogs(locale_copy) == []
    _plant(locale_copy, msgid="Another planted one :cite:`Hu2021`.", msgstr="Un autre, sans citation.")
    problems = check_catalogs(locale_copy)
    assert len(problems) == 1 and ":cite:`Hu2021`" in problems[0]
