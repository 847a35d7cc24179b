"""Check the French message catalogs: well formed, complete, markup intact.

Used by ``tools/ftsite.py check-po`` (part of ``make test``) and, for syntax only, before
every French build. Each problem is one line ``file:line: what is wrong: "message"``.
"""

from __future__ import annotations

import re
from pathlib import Path

import polib

LANGUAGE = "fr"

# Markup a translation must keep byte for byte: glued values and inline code.
_KEEP = [
    re.compile(r":glue(?::\w+)?:`[^`]+`"),  # :glue:text:`/notebooks/x.ipynb::key:.1f`
    re.compile(r"\{glue(?::\w+)?\}`[^`]+`"),  # the MyST form, in notebooks
    re.compile(r"``[^`]+``"),  # ``inline code`` (reStructuredText)
]


# Links whose target a translation keeps while it translates their text: in .rst,
# :term:`affinage <fine-tuning>` for :term:`fine-tuning`; in notebooks (MyST), {term}`…`.
# Citations (:cite:`Hu2021`) and document links keep their target too.
_XREF = re.compile(r"(?::(term|doc|ref|cite|numref):|\{(term|doc|ref|cite|numref)\})`([^`]+)`")


def _xref_targets(text: str) -> list[str]:
    """``:term:`affinage <fine-tuning>``` -> ``:term: fine-tuning`` (sorted, one per link)."""
    found = []
    for rst_role, myst_role, content in _XREF.findall(text):
        target = re.search(r"<([^<>]+)>\s*$", content)
        found.append(f":{rst_role or myst_role}: {(target.group(1) if target else content).strip()}")
    return sorted(found)


def _xref_problem(msgid: str, msgstr: str) -> str | None:
    """What a translation did wrong with the links of its message, if anything."""
    wanted, got = _xref_targets(msgid), _xref_targets(msgstr)
    for item in wanted:
        if item in got:
            got.remove(item)
            continue
        role, target = item.split(" ", 1)
        if role == ":term:":
            return f"the translation must link {role}`{target}`: write :term:`<texte français> <{target}>`"
        return f"the translation must keep the target of {role}`{target}`"
    if got:
        return f"the translation links {got[0]}, which the English message does not"
    return None


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _kept_markup(text: str) -> list[str]:
    return [m for pattern in _KEEP for m in pattern.findall(text)]


# What a line of a .po file may be: a comment, a keyword with a string, or a string.
_STRING = r'"(?:[^"\\]|\\.)*"'
_LINE = re.compile(
    rf"^\s*$|^#.*$|^(?:msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+{_STRING}\s*$|^\s*{_STRING}\s*$"
)


def load(path: Path) -> polib.POFile:
    """Parse one .po file; raise ValueError with the file and line on a syntax error.

    polib quietly accepts some broken lines (an unterminated string loses its last
    character), so every line is first checked against the .po grammar.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: is not valid UTF-8 ({exc.reason})") from None
    for number, line in enumerate(lines, start=1):
        if not _LINE.match(line):
            raise ValueError(f"{path}:{number}: syntax error (an unterminated or unescaped string?): {line.strip()[:60]}")
    try:
        return polib.pofile(str(path), wrapwidth=0)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be parsed: {exc}") from None


def check_catalogs(locale_dir: Path, syntax_only: bool = False,
                   pot_dir: Path | None = None) -> list[str]:
    """Return every problem found in ``<locale_dir>/fr/LC_MESSAGES/**/*.po``."""
    base = Path(locale_dir) / LANGUAGE / "LC_MESSAGES"
    problems: list[str] = []
    catalogs: dict[str, polib.POFile] = {}
    for path in sorted(base.rglob("*.po")):
        shown = _display(path)
        try:
            catalogs[path.relative_to(base).with_suffix("").as_posix()] = po = load(path)
        except ValueError as exc:
            problems.append(str(exc).replace(str(path), shown))
            continue
        if syntax_only:
            continue
        for entry in po:
            if entry.obsolete or not entry.msgid:
                continue
            where = f"{shown}:{entry.linenum}"
            if "fuzzy" in entry.flags:
                problems.append(f'{where}: fuzzy (check, then remove the flag): "{_short(entry.msgid)}"')
            elif not entry.msgstr:
                problems.append(f'{where}: untranslated: "{_short(entry.msgid)}"')
            else:
                lost = [m for m in _kept_markup(entry.msgid) if m not in entry.msgstr]
                if lost:
                    problems.append(f'{where}: the translation must keep {lost[0]} exactly: "{_short(entry.msgid)}"')
                elif (problem := _xref_problem(entry.msgid, entry.msgstr)):
                    problems.append(f'{where}: {problem}: "{_short(entry.msgid)}"')
    if pot_dir is not None and not syntax_only:
        problems += _against_templates(Path(pot_dir), catalogs, base)
    return problems


def _against_templates(pot_dir: Path, catalogs: dict[str, polib.POFile], base: Path) -> list[str]:
    """Every message of the current English sources must be in the French catalogs."""
    problems = []
    for pot_path in sorted(pot_dir.rglob("*.pot")):
        doc = pot_path.relative_to(pot_dir).with_suffix("").as_posix()
        po = catalogs.get(doc)
        if po is None:
            problems.append(f"{_display(base / (doc + '.po'))}: missing: no French file for {doc} (run 'make update-po')")
            continue
        known = {(e.msgctxt, e.msgid) for e in po if not e.obsolete}
        for entry in polib.pofile(str(pot_path), wrapwidth=0):
            if entry.msgid and (entry.msgctxt, entry.msgid) not in known:
                problems.append(
                    f'{_display(base / (doc + ".po"))}: new English text not yet in the French file '
                    f'(run \'make update-po\'): "{_short(entry.msgid)}"'
                )
    return problems


def _display(path: Path) -> str:
    root = Path(__file__).resolve().parent.parent
    path = Path(path).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
