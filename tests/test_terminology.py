"""One term, one translation: the French catalogs follow the glossary's choices.

The glossary (``docs/glossary.rst`` and its ``.po``) records each term's French; these
rules catch the variants that crept in before, and French number formats. A rule looks
at the *prose* of a French message: inline code, glued values, link targets and citations
are removed first (they are code or English by design). Formulas are checked by the
number rules only.

To add a rule: a regular expression that must not match the French prose, a short reason
that names the glossary's choice, and optionally ``unless``, a regular expression on the
English message under which the variant is right (``jeu de test`` where the English says
*test set*). Where the French strings of the notebooks' code (bilingual labels) can hold
the same variant, the rule applies to them too (``code=True``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "docs" / "locale" / "fr" / "LC_MESSAGES"
CATALOGS = sorted(LOCALE.rglob("*.po"))


@dataclass(frozen=True)
class Rule:
    pattern: str  # must not match the French prose (case-insensitive unless it has (?-i))
    reason: str  # the glossary's choice
    unless: str | None = None  # regular expression on the English message that allows it
    code: bool = False  # also applies to the French labels in the notebooks' code

    def regex(self) -> re.Pattern:
        return re.compile(self.pattern, re.I)


RULES = [
    # held-out: validation (chooses) or test (final measurement); "données réservées" in general
    Rule(r"\bjeux? de test\b|\bdonnées de test\b",
         "held-out data are « données réservées »; a « jeu de validation » when they guide a choice; "
         "« jeu de test » only for a test set", unless=r"\btest sets?\b", code=True),
    Rule(r"\bpertes? (?:de test|sur (?:le jeu de|les données de) test)\b",
         "the held-out loss watched during training, which chooses the checkpoint, is a « perte de validation »",
         code=True),
    # few-shot prompting: the prompt is an « invite »; « requête » is a request
    Rule(r"\brequêtes? (?:avec|à) quelques exemples\b|\binvites? à quelques exemples\b",
         "few-shot prompting is « invite avec quelques exemples »", code=True),
    # chat template vs chat model
    Rule(r"\bmodèles? de conversation\b",
         "chat template is « gabarit de conversation »; « modèle conversationnel » is a chat model", code=True),
    # DFMEA
    Rule(r"\btables?\b", "a DFMEA (or any) table is a « tableau »"),
    Rule(r"\b(?:la|une|les|des|cette) tables?\b", "a table is a « tableau », in the figures' labels too", code=True),
    # step
    Rule(r"\b(?:chaque|par|un|seul|premier|dernier|quelques|dizaines de|centaines de|\d+)\s+pas\b(?!\s+de\s+quantification)",
         "a training step is an « étape »; « pas » is kept for the quantization step"),
    Rule(r"\bpas (?:de gradient|d'AdamW|d'optimisation|d'entraînement)\b(?! checkpointing)",
         "a gradient step is an « étape de gradient »"),
    # one spelling
    Rule(r"\bpré-entraîn", "« préentraînement », « préentraîné » in one word", code=True),
    Rule(r"\bauto-supervis", "« autosupervisé » in one word", code=True),
    Rule(r"\bgénération augmentée par (?!la recherche)",
         "retrieval-augmented generation is « génération augmentée par la recherche (RAG) »", code=True),
    # one gender per acronym: le SFT, le RAG, le DPO, le GRPO, le RLHF, le PPO
    Rule(r"(?-i:\b(?:[Ll]a|[Uu]ne|[Cc]ette|[Pp]remière|[Ss]eule|[Dd]ernière)\s+(?:SFT|RAG|DPO|GRPO|RLHF|PPO)\b)",
         "acronyms of methods are masculine: le SFT, le RAG, le DPO, le GRPO, le RLHF, le PPO", code=True),
    Rule(r"(?-i:\b(?:SFT|RAG|DPO|GRPO)\s+(?:courte|longue|première)\b)",
         "acronyms of methods are masculine (un SFT court)", code=True),
    # meaning
    Rule(r"\bl'y charg", "« load it from there » is « l'en charger »"),
    Rule(r"\bsuit LoRA\b", "« keeps up with LoRA » is « fait jeu égal avec LoRA »"),
    Rule(r"\bparamètres entraînés\b", "trainable parameters are « paramètres entraînables »",
         unless=r"\btrained (?:parameters|weights)\b", code=True),
    Rule(r"\bn'apprend rien\b", "« teaches nothing » is « n'enseigne rien »", unless=r"\blearns nothing\b"),
    # natural French
    Rule(r"\b(?:que|qu')\s*(?:le modèle|il|elle|ils|elles)\s+échou|\ben échoue\b",
         "« échouer » is intransitive: « les questions où le modèle échoue »"),
    Rule(r"\bpasses? (?:laxiste|stricte)s?\b", "« l'entraînement avec la règle laxiste / stricte »"),
    Rule(r"\bréponses? gloutonnes?\b", "« les réponses en décodage glouton »", code=True),
    Rule(r"\bplanning\b", "« le taux d'apprentissage décroît… »"),
    Rule(r"\bjournalise\b|\bjournaliser\b|\bentraîneurs?\b", "« enregistre », « le Trainer » / « l'algorithme »"),
    Rule(r",\s+aussi\.", "no trailing « , aussi. »"),
    Rule(r"\bEn mots\b", "« Concrètement » or « Autrement dit »"),
    Rule(r"\bEntraînez les données\b", "one trains a model on data: « Entraînez le modèle sur les données »"),
    Rule(r"\bbackend\b", "the code around the model is « l'application »", code=True),
    Rule(r"\bservir (?:le|un|des|plusieurs|de nombreuses)\b|\bà servir\b|\bsert tous\b",
         "a model is « déployé » or « mis en production », not « servi »"),
]

# -- Extracting the prose of a message --------------------------------------------------

_CODE = re.compile(r"``[^`]+``|(?<![:}\w])`[^`]+`")  # ``rst literal`` or `markdown code`
_GLUE = re.compile(r":glue(?::\w+)?:`[^`]+`|\{glue(?::\w+)?\}`[^`]+`")
_ROLE = re.compile(r"(?::(?:term|doc|ref|cite|numref):|\{(?:term|doc|ref|cite|numref)\})`([^`]+)`")
_MATH = re.compile(r":math:`[^`]+`|\{math\}`[^`]+`|\$\$?[^$]+\$\$?")


def _link_text(match: re.Match) -> str:
    content = match.group(1)
    target = re.search(r"\s*<[^<>]+>\s*$", content)
    return content[: target.start()] if target else ""  # a bare target is the English term


def prose(text: str) -> str:
    """The French words of a message: no code, glue, math, link targets or citations."""
    text = _GLUE.sub(" ", text)
    text = _MATH.sub(" ", text)
    text = _ROLE.sub(_link_text, text)
    return _CODE.sub(" ", text)


def formulas(text: str) -> list[str]:
    return [m.group(0) for m in _MATH.finditer(_GLUE.sub(" ", text))]


def entries():
    for path in CATALOGS:
        for entry in polib.pofile(str(path)):
            if entry.msgstr and not entry.obsolete:
                yield path.relative_to(LOCALE).as_posix(), entry


def notebook_french_labels() -> list[tuple[str, str]]:
    """The French halves of the bilingual labels in the notebooks' code (and ftlab.display):
    every string literal of the code that holds a French accented letter or a French word."""
    found = []
    sources = [(p.name, "\n".join("".join(c["source"]) for c in json.loads(p.read_text(encoding="utf-8"))["cells"]
                                   if c["cell_type"] == "code"))
               for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    sources.append(("ftlab/display.py", (ROOT / "ftlab" / "display.py").read_text(encoding="utf-8")))
    for name, code in sources:
        for literal in re.findall(r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'', code):
            text = literal[0] or literal[1]
            if re.search(r"[àâçéèêëîïôûùœ]|\b(?:le|la|les|des|du|une?)\b", text):
                found.append((name, text))
    return found


# -- Tests ------------------------------------------------------------------------------


def test_the_catalogs_are_found():
    assert len(CATALOGS) >= 20


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.pattern[:40])
def test_french_messages_follow_the_glossary(rule):
    bad = []
    for where, entry in entries():
        if rule.unless and re.search(rule.unless, entry.msgid, re.I):
            continue
        match = rule.regex().search(prose(entry.msgstr))
        if match:
            bad.append(f"{where}:{entry.linenum}: « {match.group(0)} » in: {entry.msgstr[:120]}")
    if rule.code:
        for where, text in notebook_french_labels():
            match = rule.regex().search(text)
            if match:
                bad.append(f"{where}: « {match.group(0)} » in the label {text!r}")
    assert not bad, f"{rule.reason}:\n" + "\n".join(bad)


def test_the_glossary_records_the_choices():
    glossary = {e.msgid: e.msgstr for e in polib.pofile(str(LOCALE / "docs" / "glossary.po"))}
    assert glossary["chat template"] == "gabarit de conversation"
    assert glossary["chat model"] == "modèle conversationnel"
    assert glossary["few-shot prompting"] == "invite avec quelques exemples"
    assert glossary["held-out set"] == "données réservées"
    assert glossary["validation set"] == "jeu de validation"
    assert glossary["step"] == "étape"
    assert glossary["pretraining"] == "préentraînement"
    assert glossary["self-supervised learning"] == "apprentissage autosupervisé"
    assert glossary["retrieval-augmented generation (RAG)"] == "génération augmentée par la recherche (RAG)"


def test_the_held_out_loss_is_a_validation_loss():
    """The held-out loss is watched to choose the checkpoint: in French, « perte de validation »."""
    bad = [f"{where}:{entry.linenum}: {entry.msgstr[:100]}" for where, entry in entries()
           if re.search(r"\bheld-out loss", entry.msgid, re.I)
           and not re.search(r"\bpertes? de validation\b", entry.msgstr)]
    assert not bad, "\n".join(bad)


# -- Numbers ----------------------------------------------------------------------------

_EN_THOUSANDS = re.compile(r"(?<![\d,.])\d{1,3}(?:,\d{3})+(?![\d,])")  # 45,088,768
_EN_MATH_THOUSANDS = re.compile(r"\d\{,\}\d{3}(?:\{,\}\d{3})*(?!\d)")  # 45{,}088{,}768
_EN_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")  # 0.54


def test_french_prose_has_no_english_thousands_separators():
    """« 241,664 paramètres » reads as a decimal in French: 241 664 (narrow no-break space)."""
    bad = []
    for where, entry in entries():
        for number in _EN_THOUSANDS.findall(prose(entry.msgid)):
            if number in prose(entry.msgstr):
                bad.append(f"{where}:{entry.linenum}: {number}")
    assert not bad, "\n".join(bad)


def test_french_thousands_use_a_narrow_no_break_space():
    """Written numbers group their digits as the glued ones do: U+202F, not a space or U+00A0."""
    bad = [f"{where}:{entry.linenum}: {m.group(0)!r}" for where, entry in entries()
           for m in re.finditer(r"\d[ \u00a0]\d{3}(?!\d)", prose(entry.msgstr))]
    assert not bad, "\n".join(bad)


def test_french_formulas_use_decimal_commas_and_thin_spaces():
    """In formulas too: 0{,}5 and 241\\,664, not 0.5 and 241{,}664."""
    bad = []
    for where, entry in entries():
        english = " ".join(formulas(entry.msgid))
        for formula in formulas(entry.msgstr):
            decimals = [d for d in _EN_DECIMAL.findall(formula) if d in english]
            grouped = [g for g in _EN_MATH_THOUSANDS.findall(formula) if g in english]
            if decimals or grouped:
                bad.append(f"{where}:{entry.linenum}: {formula}")
    assert not bad, "\n".join(bad)


def test_french_prose_has_decimal_commas():
    """A decimal number of the English prose is written with a comma in French (names such
    as « Qwen 2.5 » or « bitsandbytes 0.50 » are versions, and stay)."""
    version = re.compile(r"[A-Za-z][\w-]*\s+$")
    bad = []
    for where, entry in entries():
        english = prose(entry.msgid)
        french = prose(entry.msgstr)
        for m in _EN_DECIMAL.finditer(french):
            if m.group(0) in english and not version.search(french[: m.start()]):
                bad.append(f"{where}:{entry.linenum}: {french[max(0, m.start() - 30):m.end() + 10]}")
    assert not bad, "\n".join(bad)


def test_the_rules_catch_what_they_are_for():
    """Each rule fails on a planted example, so that a broken regular expression cannot pass."""
    planted = {
        r"\bjeux? de test\b": "la perte sur le jeu de test",
        r"\bpertes? (?:de test": "la perte de test remonte",
        r"\brequêtes? (?:avec": "une requête avec quelques exemples",
        r"\bmodèles? de conversation\b": "le modèle de conversation",
        r"\btables?\b": "les tables d'AMDEC",
        r"\b(?:chaque|par|un|seul": "à chaque pas, le modèle",
        r"\bpas (?:de gradient": "faire un pas de gradient",
        r"\bpré-entraîn": "le pré-entraînement",
        r"(?-i:\b(?:[Ll]a|[Uu]ne": "après la SFT",
        r"\bbackend\b": "le backend envoie",
        r"\b(?:que|qu')\s*(?:le modèle": "la question que le modèle échoue",
    }
    for start, example in planted.items():
        rule = next(r for r in RULES if r.pattern.startswith(start))
        assert rule.regex().search(prose(example)), (rule.pattern, example)
    step = next(r for r in RULES if r.pattern.startswith(r"\b(?:chaque|par|un|seul"))
    assert not step.regex().search("un pas de quantification")
    assert not RULES[0].regex().search(prose(":term:`données réservées <held-out set>`"))
