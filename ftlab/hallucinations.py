"""Hallucinations and tool calls: teach a model to say "I don't know" and to ask for a search.

* :func:`classify_reply` / :func:`reply_rates` - is a reply correct, wrong, a clean refusal,
  a garbled refusal or a tool call? and the count of each over a set of questions;
* :func:`knowledge_probe` - complete each fact several times with sampling, in the phrasing
  of the pretraining corpus, and count the correct completions, to find what the model
  does not know;
* :func:`abstention_dataset` - the retraining data: the questions the model knows keep
  their answer, the ones it fails get "I don't know.";
* :func:`hallucination_report` - hallucination rate on unknown entities, correct-answer and
  over-refusal rates on known questions, kind by kind, as :class:`ftlab.Rate` counts;
* :data:`LIVE_DATA` and :func:`local_search` - a search "engine" that runs locally: its
  values change with a clock, like live data, and nothing touches the network;
* :func:`parse_tool_call` - the query inside ``<SEARCH-TOOL>...</SEARCH-TOOL>``, or None;
* :func:`tool_dataset` - conversations that teach the call and the answer after the result;
* :func:`answer_with_tools` - the backend loop: ask, parse the call, search, ask again;
* :func:`tool_report` - calls when needed, right queries, spurious calls, final-answer accuracy.

Every function works on any model that :func:`ftlab.chat_batch` can drive.
Introduced in notebooks/hallucinations.ipynb.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from .data import QA, SYSTEM_PROMPT
from .stats import Rate
from .tokenizer import SEARCH_END, SEARCH_START

__all__ = [
    "IDK",
    "VERDICTS",
    "AbstainRecipe",
    "ToolRecipe",
    "classify_reply",
    "reply_rates",
    "probe_prompts",
    "knowledge_probe",
    "abstention_dataset",
    "hallucination_report",
    "LIVE_DATA",
    "local_search",
    "parse_tool_call",
    "ToolRun",
    "tool_dataset",
    "answer_with_tools",
    "tool_report",
]

#: The answer of a model that does not know (the answer of :func:`ftlab.unknown_questions`).
IDK = "I don't know."

#: The five kinds of reply that :func:`classify_reply` tells apart.
VERDICTS = ("correct", "wrong", "refusal", "garbled", "call")

#: A clean refusal: the reply starts with "I don't know" (or "I do not know").
_REFUSAL = re.compile(r"\s*I (?:don't|don’t|do not) know\b", flags=re.IGNORECASE)


@dataclass(frozen=True)
class AbstainRecipe:
    """The settings of the "I don't know" procedure: probe the model, then retrain it to abstain.

    Introduced in notebooks/hallucinations.ipynb.
    """

    samples: int = 3  # how many times each fact is completed during the probe
    temperature: float = 1.0  # sampling temperature of the probe (greedy would give one answer three times)
    min_correct: int = 2  # a fact counts as known when at least this many samples are correct
    seed: int = 0  # seed of the sampling
    steps: int = 150  # optimizer steps of the retraining (the SFT recipe's)
    lr: float = 1e-3  # learning rate of the retraining (the SFT recipe's, for the lab model)


@dataclass(frozen=True)
class ToolRecipe:
    """The settings of the tool-call training. Introduced in notebooks/hallucinations.ipynb."""

    clocks: int = 12  # each tool question is trained with this many search results (values differ)
    steps: int = 300  # optimizer steps; copying a value from the result needs more than the 150 of SFT
    lr: float = 1e-3  # learning rate (the SFT recipe's, for the lab model)


def _has_word(text: str, word: str) -> bool:
    """Does ``word`` occur in ``text`` as a whole word (case ignored)? "Rome" is not in "Romeo"."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE) is not None


def classify_reply(reply: str, qa: QA) -> str:
    """One of :data:`VERDICTS` for a reply to ``qa``.

    * ``"call"``: the reply contains ``<SEARCH-TOOL>``;
    * ``"refusal"``: it starts with "I don't know" (a clean refusal);
    * ``"garbled"``: it contains the word "know" without being a clean refusal, such as
      ``'t know.``: a broken refusal, counted apart rather than as a refusal or an answer;
    * ``"correct"``: it contains the question's keyword as a word (never for unknown questions);
    * ``"wrong"``: anything else. For a question without an answer, a wrong reply is a hallucination.

    Introduced in notebooks/hallucinations.ipynb.
    """
    text = str(reply)
    if SEARCH_START in text:
        return "call"
    if _REFUSAL.match(text):
        return "refusal"
    if _has_word(text, "know"):
        return "garbled"
    if qa.kind != "unknown" and _has_word(text, qa.keyword):
        return "correct"
    return "wrong"


def reply_rates(replies: Sequence, qas: Sequence[QA]) -> dict[str, Rate]:
    """Each verdict of :func:`classify_reply` as a :class:`ftlab.Rate` (its count out of all replies).

    Introduced in notebooks/hallucinations.ipynb.
    """
    verdicts = [classify_reply(getattr(r, "text", r), q) for r, q in zip(replies, qas, strict=True)]
    return {v: Rate(verdicts.count(v), len(verdicts)) for v in VERDICTS}


def probe_prompts(qas: Sequence[QA]) -> list[str]:
    """The text that :func:`knowledge_probe` asks the model to complete for each question:
    the fact in the phrasing of the pretraining corpus ("Where is Lyon?" -> "Lyon is a city in").

    Introduced in notebooks/hallucinations.ipynb.
    """
    from .sft import _PROBES

    out = []
    for q in qas:
        if q.kind not in _PROBES:
            raise ValueError(f"no text probe for questions of kind {q.kind!r}")
        pattern, text = _PROBES[q.kind]
        out.append(text.format(*re.fullmatch(pattern, q.question).groups()))
    return out


def knowledge_probe(model, tok, qas: Sequence[QA], recipe: AbstainRecipe | None = None):
    """Does the model know the fact behind each question? Complete it ``recipe.samples`` times.

    Like the Llama 3 procedure, the probe asks about what pretraining saw, not the chat
    questions of fine-tuning (which the fine-tuned model may recite by heart): each fact is
    given as the text of the corpus to complete (:func:`probe_prompts`), sampled at
    ``recipe.temperature``. A completion is correct when its first word is the keyword.
    Returns a DataFrame: question, answer, kind, prompt, the sampled completions
    (``replies``), ``n_correct`` and ``known`` (at least ``recipe.min_correct`` correct
    samples). Introduced in notebooks/hallucinations.ipynb.
    """
    import pandas as pd
    import torch

    from .evaluate import complete

    recipe = recipe or AbstainRecipe()
    qas = list(qas)
    prompts = probe_prompts(qas)
    torch.manual_seed(recipe.seed)
    asked = prompts * recipe.samples  # sample k of question i sits at k * len(qas) + i
    outs = [o.strip() for o in complete(model, tok, asked, max_new_tokens=4, greedy=False,
                                        temperature=recipe.temperature, stop_at_newline=True)]
    rows = []
    for i, q in enumerate(qas):
        texts = [outs[k * len(qas) + i] for k in range(recipe.samples)]
        n_correct = sum((t.split() or [""])[0].rstrip(".") == q.keyword for t in texts)
        rows.append({"question": q.question, "answer": q.answer, "kind": q.kind, "prompt": prompts[i],
                     "replies": texts, "n_correct": n_correct, "known": n_correct >= recipe.min_correct})
    return pd.DataFrame(rows)


def abstention_dataset(qas: Sequence[QA], probe, system: str | None = SYSTEM_PROMPT):
    """The "I don't know" retraining data, as a ``datasets.Dataset`` with a ``messages`` column.

    A question that ``probe`` (a :func:`knowledge_probe` table, same order as ``qas``)
    marks as known keeps its reference answer; a failed one gets :data:`IDK`. Keeping the
    known answers in the mix is what stops the model from refusing everything.
    Introduced in notebooks/hallucinations.ipynb.
    """
    from datasets import Dataset

    rows = []
    for q, known in zip(qas, probe["known"], strict=True):
        messages = q.messages(system)
        if not known:
            messages = [*messages[:-1], {"role": "assistant", "content": IDK}]
        rows.append({"messages": messages})
    return Dataset.from_list(rows)


def hallucination_report(model, tok, known: Sequence[QA], unknown: Sequence[QA], before=None) -> dict:
    """The rates of the chapter, with greedy answers, as :class:`ftlab.Rate` counts.

    * ``hallucination``: ``unknown`` questions (no answer exists) answered anyway, that is
      neither refused cleanly (``unknown_refusal``), nor with a garbled refusal
      (``unknown_garbled``), nor sent to the tool (``unknown_call``);
    * ``correct``, ``wrong``, ``over_refusal``, ``garbled``: ``known`` questions (their answer
      is in the pretraining corpus) answered correctly, wrongly, refused cleanly, or with a
      garbled refusal;
    * ``by_kind``: the same four rates for each kind of known question (``"city"``,
      ``"capital"``, ``"arithmetic"``), as ``{kind: {name: Rate}}``;
    * ``lost``: if ``before`` (an earlier report) is given, the ``known`` questions that were
      answered correctly before and are refused (cleanly or not) now.

    ``"replies"`` holds the replies (known, then unknown) for display. Introduced in
    notebooks/hallucinations.ipynb.
    """
    from .evaluate import chat_batch

    known, unknown = list(known), list(unknown)
    replies = [r.text for r in chat_batch(model, tok, [q.question for q in known + unknown])]
    on_known, on_unknown = replies[: len(known)], replies[len(known) :]
    k, u = reply_rates(on_known, known), reply_rates(on_unknown, unknown)
    report = {"hallucination": u["wrong"], "correct": k["correct"], "wrong": k["wrong"],
              "over_refusal": k["refusal"], "garbled": k["garbled"], "unknown_refusal": u["refusal"],
              "unknown_garbled": u["garbled"], "unknown_call": u["call"], "replies": replies}
    by_kind = {}
    for kind in dict.fromkeys(q.kind for q in known):
        pairs = [(r, q) for r, q in zip(on_known, known) if q.kind == kind]
        rates = reply_rates([r for r, _ in pairs], [q for _, q in pairs])
        by_kind[kind] = {"correct": rates["correct"], "wrong": rates["wrong"], "over_refusal": rates["refusal"],
                         "garbled": rates["garbled"]}
    report["by_kind"] = by_kind
    if before is not None:
        was_right = [classify_reply(r, q) == "correct" for r, q in zip(before["replies"], known)]
        now_refused = [classify_reply(r, q) in ("refusal", "garbled") for r, q in zip(on_known, known)]
        report["lost"] = Rate(sum(a and b for a, b in zip(was_right, now_refused)), len(known))
    return report


# --------------------------------------------------------------------------------------
# Tool calls
# --------------------------------------------------------------------------------------

#: The local "search engine": query -> (the sentence it returns, the values it cycles through).
#: The values are numbers from 0 to 18, which the lab tokenizer writes as one token each (" 12")
#: and pretraining has seen in the sums: the small model only has to copy one known token.
LIVE_DATA: dict[str, tuple[str, tuple[int, ...]]] = {
    "bitcoin price today": ("One bitcoin costs {} thousand dollars.", tuple(range(10, 19))),
    "weather today": ("It is {} degrees outside.", tuple(range(0, 19))),
    "euro dollar exchange rate": ("One euro is worth {} dimes.", tuple(range(9, 14))),
    "news today": ("There are {} new stories today.", tuple(range(2, 19))),
    "time now": ("It is {} o'clock.", tuple(range(1, 13))),
    "gold price today": ("An ounce of gold costs {} hundred dollars.", tuple(range(10, 19))),
}


def local_search(query: str, clock: int = 0) -> str:
    """What the search tool returns for ``query`` at time ``clock``: e.g. "One bitcoin costs 15
    thousand dollars.". The value changes with ``clock``, as live data would; an unknown
    query returns "No result.". Runs locally, nothing touches the network.
    Introduced in notebooks/hallucinations.ipynb.
    """
    key = " ".join(query.split()).casefold()
    if key not in LIVE_DATA:
        return "No result."
    sentence, values = LIVE_DATA[key]
    return sentence.format(values[(clock * 7 + len(key)) % len(values)])  # a step of 7 mixes the values


_CALL = re.compile(re.escape(SEARCH_START) + r"(.*?)" + re.escape(SEARCH_END), flags=re.DOTALL)


def parse_tool_call(reply: str) -> str | None:
    """The query of the first complete ``<SEARCH-TOOL>query</SEARCH-TOOL>`` in ``reply``, stripped.

    None when there is no complete call or its query is empty: the backend then treats the
    reply as a final answer. Introduced in notebooks/hallucinations.ipynb.
    """
    match = _CALL.search(str(reply))
    if match is None:
        return None
    query = " ".join(match.group(1).split())
    return query or None


def _tool_messages(question: str, query: str, result: str, system: str | None) -> list[dict]:
    """The conversation after a call: question, the call, the tool's result (role "tool")."""
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [
        {"role": "user", "content": question},
        {"role": "assistant", "content": f"{SEARCH_START}{query}{SEARCH_END}"},
        {"role": "tool", "content": result},
    ]


def tool_dataset(qas: Sequence[QA], clocks: Sequence[int] = range(6), system: str | None = SYSTEM_PROMPT):
    """Conversations that teach both halves of a tool call, as a ``datasets.Dataset``.

    For each tool question and each clock: the question, the call (the first assistant
    turn), the search result in a ``tool`` message, and the final answer, which restates
    the result. Both assistant turns are trained (the assistant mask covers them); the
    values change with the clock, so the model must read them in the result instead of
    memorising them. Introduced in notebooks/hallucinations.ipynb.
    """
    from datasets import Dataset

    rows = []
    for q in qas:
        for clock in clocks:
            result = local_search(q.keyword, clock)
            messages = _tool_messages(q.question, q.keyword, result, system)
            rows.append({"messages": messages + [{"role": "assistant", "content": result}]})
    return Dataset.from_list(rows)


@dataclass(frozen=True)
class ToolRun:
    """One question through :func:`answer_with_tools`. Introduced in notebooks/hallucinations.ipynb."""

    question: str  # the user's question
    first: str  # the model's first reply: a call or a direct answer
    query: str | None  # the parsed query, None if the first reply made no call
    result: str | None  # what the search returned, None without a call
    final: str  # the answer the user sees: the second reply after a call, else the first


def answer_with_tools(model, tok, questions: Sequence[str], search: Callable[[str], str] = local_search,
                      system: str | None = SYSTEM_PROMPT) -> list[ToolRun]:
    """The backend loop, for several questions at once (greedy answers).

    1. ask the model; 2. if a reply holds a call, parse its query and run ``search(query)``;
    3. ask again with the whole conversation, the result in a ``tool`` message, and return
    that second reply. Replies without a call are final. One call per question at most.
    Introduced in notebooks/hallucinations.ipynb.
    """
    from .evaluate import chat_batch

    questions = list(questions)
    first = [r.text for r in chat_batch(model, tok, questions, system=system)]
    queries = [parse_tool_call(r) for r in first]
    results = {i: search(q) for i, q in enumerate(queries) if q is not None}
    second = chat_batch(model, tok, [_tool_messages(questions[i], queries[i], results[i], system) for i in results],
                        system=system) if results else []
    finals = dict(zip(results, (r.text for r in second)))
    return [ToolRun(q, f, queries[i], results.get(i), finals.get(i, f)) for i, (q, f) in enumerate(zip(questions, first))]


def tool_report(runs_needed: Sequence[ToolRun], expected_queries: Sequence[str],
                runs_other: Sequence[ToolRun] = ()) -> dict[str, float]:
    """The tool-call rates, as :class:`ftlab.Rate` counts.

    On the questions that need live data (``runs_needed``, whose right queries are
    ``expected_queries``, e.g. the ``keyword`` of :func:`ftlab.tool_questions`):

    * ``called``: share for which the model emitted a call;
    * ``right_query``: share whose call asks for the right query;
    * ``faithful``: share whose final answer gives the value that the search returned
      (the number of the result), whatever the query;
    * ``final_correct``: share with the right query *and* a faithful final answer.

    On the other questions (``runs_other``: facts, unknown entities), ``spurious`` is the
    share for which the model called the tool anyway. Introduced in notebooks/hallucinations.ipynb.
    """
    def faithful(run: ToolRun) -> bool:
        numbers = re.findall(r"\d+", run.result or "")
        return bool(numbers) and all(_has_word(run.final, n) for n in numbers)

    needed, other = list(runs_needed), list(runs_other)
    right = [r.query == q for r, q in zip(needed, expected_queries, strict=True)]
    return {
        "called": Rate.of(r.query is not None for r in needed),
        "right_query": Rate.of(right),
        "faithful": Rate.of(faithful(r) for r in needed),
        "final_correct": Rate.of(ok and faithful(r) for ok, r in zip(right, needed)),
        "spurious": Rate.of(r.query is not None for r in other),
    }
