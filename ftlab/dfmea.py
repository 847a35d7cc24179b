"""The DFMEA case study: write, check and compare design FMEA tables.

* :data:`HEADER`, :func:`format_table` - the plain-text table a model must write, one row
  per line, cells separated by ``|``;
* :func:`parse_table` and :func:`check_table` - what an engineer checks first: the table
  parses, every cell is filled, ratings are integers from 1 to 10, RPN = S x O x D, and
  the content matches a reference (:class:`TableCheck`);
* :class:`RowRetriever` - a lexical retriever: the rows of the past components most
  similar to a new one (retrieval-augmented generation without a network);
* :class:`DfmeaPrompts` - the four routes' requests: few-shot and retrieval prompts for a
  base model, a short chat request for a fine-tuned one;
* :func:`dfmea_dataset`, :func:`dfmea_recipe`, :func:`unseen_tokens` - the training
  tables as chat conversations, the SFT/LoRA recipe, the tokens the base model never read;
* :func:`generate_tables` and :func:`score_tables` - run the requests, count the tokens each
  one costs, and average the checks over them;
* :data:`COLUMN_LABELS` - the column names of a table in English and French.

Introduced in notebooks/dfmea.ipynb.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .data import SYSTEM_PROMPT, DfmeaRow, dfmea_rows
from .display import T

__all__ = [
    "FIELDS",
    "RATINGS",
    "HEADER",
    "format_row",
    "format_table",
    "parse_table",
    "TableCheck",
    "check_table",
    "RowRetriever",
    "DfmeaPrompts",
    "dfmea_request",
    "dfmea_dataset",
    "dfmea_recipe",
    "unseen_tokens",
    "Generation",
    "generate_tables",
    "score_tables",
    "table_rates",
    "COLUMN_LABELS",
]

#: The columns of a table, in order: the fields of :class:`ftlab.data.DfmeaRow` (split excluded).
FIELDS = ("item", "function", "failure_mode", "effect", "severity", "cause", "occurrence",
          "current_control", "detection", "rpn")

#: The three ratings, integers from 1 to 10.
RATINGS = ("severity", "occurrence", "detection")

#: The first line of every table: the column names an engineer reads.
HEADER = "item | function | failure mode | effect | S | cause | O | control | D | RPN"

#: The columns as a page shows them, in English and French (AMDEC: G, O, D and IPR).
COLUMN_LABELS = {
    "item": T("item", "élément"),
    "function": T("function", "fonction"),
    "failure_mode": T("failure mode", "mode de défaillance"),
    "effect": T("effect", "effet"),
    "severity": T("S", "G"),
    "cause": T("cause", "cause"),
    "occurrence": T("O", "O"),
    "current_control": T("current control", "maîtrise actuelle"),
    "detection": T("D", "D"),
    "rpn": T("RPN", "IPR"),
}


def format_row(row: DfmeaRow | dict) -> str:
    """One row as a line of cells separated by `` | ``. Introduced in notebooks/dfmea.ipynb."""
    values = row.to_dict() if isinstance(row, DfmeaRow) else row
    return " | ".join(str(values[name]) for name in FIELDS)


def format_table(rows) -> str:
    """The header line and one line per row: the text a model must write.

    Introduced in notebooks/dfmea.ipynb.
    """
    return "\n".join([HEADER, *(format_row(r) for r in rows)])


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_table(text: str) -> list[dict] | None:
    """The rows of a generated table as dicts of strings, or None if it does not parse.

    A table parses when its first non-empty line is :data:`HEADER` (spaces ignored), at
    least one row follows, and every row has exactly the 10 cells of :data:`FIELDS`.
    Introduced in notebooks/dfmea.ipynb.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2 or _cells(lines[0]) != _cells(HEADER):
        return None
    rows = [_cells(line) for line in lines[1:]]
    if any(len(cells) != len(FIELDS) for cells in rows):
        return None
    return [dict(zip(FIELDS, cells)) for cells in rows]


def _rating(value: str) -> int | None:
    """The integer of a rating cell, or None if it is not an integer from 1 to 10."""
    return int(value) if re.fullmatch(r"\d{1,2}", value) and 1 <= int(value) <= 10 else None


def _same(a, b) -> bool:
    return " ".join(str(a).split()).casefold() == " ".join(str(b).split()).casefold()


@dataclass
class TableCheck:
    """The checks of one generated table. Shares are fractions of the table's rows (0 when
    it does not parse). Introduced in notebooks/dfmea.ipynb.
    """

    parses: bool  # the header and rows of 10 cells are there
    rows: list[dict]  # the parsed rows (empty when the table does not parse)
    filled: float  # share of rows whose 10 cells are all non-empty
    ratings_ok: float  # share of rows whose S, O and D are integers from 1 to 10
    rpn_ok: float  # share of rows whose RPN is exactly S x O x D
    content: float  # share of the reference's cells (RPN excluded) that the table gets right
    problems: list[str] = field(default_factory=list)  # what is wrong, one short sentence each

    def summary(self) -> dict:
        """The scores as a dict (for a results table)."""
        return {"parses": float(self.parses), "filled": self.filled, "ratings_ok": self.ratings_ok,
                "rpn_ok": self.rpn_ok, "content": self.content}


def check_table(text: str, reference=None) -> TableCheck:
    """Check a generated table as an engineer would, against ``reference`` rows if given.

    ``content`` pairs each reference row with the generated row of the same failure mode
    (or, failing that, the row at the same position) and counts the cells that are equal,
    text and ratings alike, the RPN excepted (it is checked by ``rpn_ok``); it is 0 without
    a reference. Introduced in notebooks/dfmea.ipynb.
    """
    rows = parse_table(text)
    if rows is None:
        return TableCheck(False, [], 0.0, 0.0, 0.0, 0.0, ["the table does not parse"])
    problems = []
    filled = ratings = rpns = 0
    for i, row in enumerate(rows, 1):
        empty = [name for name in FIELDS if not row[name]]
        filled += not empty
        if empty:
            problems.append(f"row {i}: empty {', '.join(empty)}")
        values = [_rating(row[name]) for name in RATINGS]
        if None in values:
            problems.append(f"row {i}: a rating is not an integer from 1 to 10")
            continue
        ratings += 1
        if row["rpn"] == str(math.prod(values)):
            rpns += 1
        else:
            problems.append(f"row {i}: RPN {row['rpn']!r} is not {' x '.join(map(str, values))} = {math.prod(values)}")
    n = len(rows)
    content = 0.0
    if reference:
        compared = [name for name in FIELDS if name != "rpn"]
        right = 0
        for i, ref in enumerate(r.to_dict() if isinstance(r, DfmeaRow) else r for r in reference):
            match = next((row for row in rows if _same(row["failure_mode"], ref["failure_mode"])),
                         rows[i] if i < n else None)
            if match is not None:
                right += sum(_same(match[name], ref[name]) for name in compared)
        content = right / (len(compared) * len(reference))
    return TableCheck(True, rows, filled / n, ratings / n, rpns / n, content, problems)


_STOPWORDS = frozenset({"a", "an", "the", "of", "to", "is", "by", "in", "on", "for", "and", "no"})


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.casefold()) if w not in _STOPWORDS}


class RowRetriever:
    """A lexical retriever over past DFMEA rows, grouped by component.

    Each component is a bag of the words of its rows (function, failure modes, effects,
    causes, controls). A query is scored against each component by the cosine similarity
    of the two sets of words, ``|q & d| / sqrt(|q| |d|)``, stop words removed; ties keep
    the order of the rows. No embedding model and no network: a first baseline that a
    vector database would replace at scale. Introduced in notebooks/dfmea.ipynb.
    """

    def __init__(self, rows):
        self.rows = list(rows)  # the knowledge base: past rows
        self.components: dict[str, set[str]] = {}  # component -> its words
        for r in self.rows:
            text = " ".join(str(getattr(r, name)) for name in FIELDS if name not in RATINGS + ("rpn",))
            self.components.setdefault(r.item, set()).update(_words(text))

    def scores(self, query: str) -> dict[str, float]:
        """The similarity of ``query`` to each component, best first."""
        q = _words(query)
        out = {c: len(q & d) / math.sqrt(len(q) * len(d)) if q and d else 0.0 for c, d in self.components.items()}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))  # stable: ties keep the rows' order

    def retrieve(self, query: str, k: int = 1) -> list[DfmeaRow]:
        """The rows of the ``k`` components most similar to ``query``."""
        best = list(self.scores(query))[:k]
        return [r for c in best for r in self.rows if r.item == c]


def dfmea_request(item: str, function: str) -> str:
    """What an engineer asks: ``Write the DFMEA of the chain (function: move the wheel).``

    Introduced in notebooks/dfmea.ipynb.
    """
    return f"Write the DFMEA of the {item} (function: {function})."


def _title(item: str, function: str) -> str:
    return f"DFMEA of the {item} (function: {function}):"


@dataclass(frozen=True)
class DfmeaPrompts:
    """How each route asks for the table of one component. Introduced in notebooks/dfmea.ipynb."""

    examples: int = 2  # solved components (all their rows) in a few-shot prompt, always the same
    retrieved: int = 1  # components that the retriever puts in a retrieval prompt, the most similar first
    retriever_rows: tuple = ()  # the knowledge base of the retriever (default: the training rows)

    def _knowledge(self) -> list[DfmeaRow]:
        return list(self.retriever_rows) or dfmea_rows("train")

    def _with_examples(self, example_rows, item: str, function: str) -> str:
        blocks = []
        for c in dict.fromkeys(r.item for r in example_rows):  # components in order, once each
            rows = [r for r in example_rows if r.item == c]
            blocks.append(f"{_title(c, rows[0].function)}\n{format_table(rows)}")
        return "\n\n".join([*blocks, _title(item, function)]) + "\n"

    def few_shot(self, item: str, function: str) -> str:
        """Plain text for a base model: the tables of the first ``examples`` training
        components, always the same, then the title of the requested one."""
        rows = self._knowledge()
        first = list(dict.fromkeys(r.item for r in rows))[: self.examples]
        return self._with_examples([r for r in rows if r.item in first], item, function)

    def retrieval(self, item: str, function: str) -> str:
        """Like :meth:`few_shot`, with the ``retrieved`` components most similar to the
        requested one (by :class:`RowRetriever`) instead of fixed ones."""
        found = RowRetriever(self._knowledge()).retrieve(f"{item} {function}", k=self.retrieved)
        return self._with_examples(found, item, function)

    def chat_few_shot(self, item: str, function: str) -> list[dict]:
        """Few-shot prompting the way chat models are prompted: the first ``examples`` training
        components as earlier turns of the conversation (request, then table), then the request.
        Introduced in notebooks/real-model.ipynb."""
        rows = self._knowledge()
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        for c in list(dict.fromkeys(r.item for r in rows))[: self.examples]:
            mine = [r for r in rows if r.item == c]
            messages += [{"role": "user", "content": dfmea_request(c, mine[0].function)},
                         {"role": "assistant", "content": format_table(mine)}]
        return messages + [{"role": "user", "content": dfmea_request(item, function)}]

    def chat(self, item: str, function: str) -> list[dict]:
        """The chat messages for a fine-tuned model: the system prompt and the request alone."""
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": dfmea_request(item, function)}]


def dfmea_dataset(split: str = "train"):
    """One chat conversation per component of ``split``: the request, and the component's
    table as the assistant's reply (a ``datasets.Dataset`` with a ``messages`` column, the
    input of :func:`ftlab.train_sft_loop`). Introduced in notebooks/dfmea.ipynb.
    """
    from datasets import Dataset

    rows = dfmea_rows(split)
    out = []
    for c in dict.fromkeys(r.item for r in rows):
        mine = [r for r in rows if r.item == c]
        out.append({"messages": [*DfmeaPrompts().chat(c, mine[0].function),
                                 {"role": "assistant", "content": format_table(mine)}]})
    return Dataset.from_list(out)


def dfmea_recipe(lora: bool = False):
    """The SFT recipe of the case study: 100 steps of 6 conversations (20 with ``FTLAB_MODEL``
    set), every training table at every step; the learning rate of :func:`ftlab.sft_recipe` (full fine-tuning) or of
    :func:`ftlab.lora_recipe` (``lora=True``), which adapt it to ``FTLAB_MODEL``.
    Introduced in notebooks/dfmea.ipynb.
    """
    from dataclasses import replace

    from .lora import lora_recipe
    from .sft import sft_recipe

    from .real import real_model_id

    steps = 20 if real_model_id() else 100  # a real model: the steps of notebooks/real-model.ipynb
    return replace(lora_recipe() if lora else sft_recipe(), steps=steps, batch_size=6, eval_every=max(1, steps // 4))


def unseen_tokens(tok, conversations) -> list[int]:
    """The tokens of the assistant's replies that never occur in the pretraining corpus
    (:func:`ftlab.corpus`): the base model's embeddings of them are still random, so LoRA
    must train them (see :doc:`/notebooks/lora`). Introduced in notebooks/dfmea.ipynb.
    """
    from .data import corpus
    from .sft import sft_example

    seen = {t for line in corpus() for t in tok(line)["input_ids"]}
    new = set()
    for row in conversations:
        example = sft_example(tok, row["messages"])
        new.update(t for t, m in zip(example["input_ids"], example["assistant_mask"]) if m and t not in seen)
    return sorted(new)


@dataclass(frozen=True)
class Generation:
    """One request and what it cost. Introduced in notebooks/dfmea.ipynb."""

    text: str  # the generated table, cut at its end
    prompt_tokens: int  # tokens sent to the model
    output_tokens: int  # tokens the model wrote (the cut-off ones excluded)

    @property
    def tokens(self) -> int:
        """Prompt and output tokens: what a provider bills for the request."""
        return self.prompt_tokens + self.output_tokens


def generate_tables(model, tok, requests, max_new_tokens: int = 128) -> list[Generation]:
    """Run requests and return a :class:`Generation` each (greedy decoding).

    A request is plain text (a few-shot or retrieval prompt, continued by a base model and
    cut at the first blank line, like an API's stop sequence) or a list of chat messages
    (answered up to ``<|im_end|>``). Introduced in notebooks/dfmea.ipynb.
    """
    from .evaluate import chat_batch, complete

    requests = list(requests)
    out: list[Generation | None] = [None] * len(requests)
    texts = [(i, r) for i, r in enumerate(requests) if isinstance(r, str)]
    chats = [(i, r) for i, r in enumerate(requests) if not isinstance(r, str)]
    if texts:
        continuations = complete(model, tok, [r for _, r in texts], max_new_tokens=max_new_tokens)
        for (i, prompt), cont in zip(texts, continuations):
            table = cont.split("\n\n", 1)[0].strip()
            out[i] = Generation(table, len(tok(prompt)["input_ids"]), len(tok(table)["input_ids"]))
    if chats:
        replies = chat_batch(model, tok, [r for _, r in chats], system=None, max_new_tokens=max_new_tokens)
        for (i, messages), reply in zip(chats, replies):
            prompt = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)
            out[i] = Generation(reply.text, len(prompt["input_ids"]), reply.n_tokens)
    return out


def score_tables(generations, references) -> dict:
    """The checks of :func:`check_table` averaged over requests, as fractions, plus the mean
    ``prompt_tokens``, ``output_tokens`` and ``tokens`` per request. ``references`` holds
    the reference rows of each request. Introduced in notebooks/dfmea.ipynb.
    """
    generations, references = list(generations), list(references)
    checks = [check_table(g.text, ref).summary() for g, ref in zip(generations, references, strict=True)]
    n = max(1, len(checks))
    out = {name: sum(c[name] for c in checks) / n for name in checks[0]} if checks else {}
    for name in ("prompt_tokens", "output_tokens", "tokens"):
        out[name] = sum(getattr(g, name) for g in generations) / n
    return out


def table_rates(generations, references) -> dict:
    """The checks of :func:`check_table` as counts, each a :class:`ftlab.Rate`:

    * ``"format"``: tables that parse, out of the requests;
    * ``"filled"``: rows whose ten cells are all filled, out of the rows of the tables that parse;
    * ``"ratings"``: rows whose S, O and D are integers from 1 to 10, out of the same rows;
    * ``"rpn"``: rows whose RPN is exactly S x O x D, out of the rows of the tables that parse;
    * ``"content"``: reference cells (RPN excepted) that the tables get right, out of all
      the reference cells.

    Introduced in notebooks/real-model.ipynb.
    """
    from .stats import Rate

    generations, references = list(generations), list(references)
    parsed = rows = filled = ratings = rpn = cells = right = 0
    for g, ref in zip(generations, references, strict=True):
        check = check_table(g.text, ref)
        n_cells = (len(FIELDS) - 1) * len(ref)
        cells += n_cells
        right += round(check.content * n_cells)
        if check.parses:
            parsed += 1
            rows += len(check.rows)
            filled += round(check.filled * len(check.rows))
            ratings += round(check.ratings_ok * len(check.rows))
            rpn += round(check.rpn_ok * len(check.rows))
    return {"format": Rate(parsed, len(references)), "filled": Rate(filled, rows), "ratings": Rate(ratings, rows),
            "rpn": Rate(rpn, rows), "content": Rate(right, cells)}
