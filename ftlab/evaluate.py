"""Evaluation helpers shared by all notebooks: generate, score, look inside the model.

* :func:`chat` / :func:`chat_batch` - ask questions in the chat format; generation stops
  at ``<|im_end|>`` (greedy by default) and each :class:`Reply` says whether it did;
* :func:`exact_match`, :func:`keyword_accuracy`, :func:`format_compliance` - scores of a
  list of replies; :func:`evaluate_chat` computes all three on Q&A data;
* :func:`complete`, :func:`fact_completions`, :func:`fact_accuracy` - a base model
  continues plain text ("Shanghai is a city in" -> " China");
* :func:`perplexity` - how surprised a model is by texts;
* :func:`next_token_probs`, :func:`token_table`, :func:`chat_token_table` - tokens, ids,
  next-token probabilities and the assistant mask, as tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .data import SYSTEM_PROMPT

__all__ = [
    "Reply",
    "ChatReport",
    "chat",
    "chat_batch",
    "exact_match",
    "keyword_accuracy",
    "format_compliance",
    "evaluate_chat",
    "complete",
    "fact_completions",
    "fact_accuracy",
    "perplexity",
    "next_token_probs",
    "show_token",
    "token_table",
    "chat_token_table",
]


@dataclass(frozen=True)
class Reply:
    """A generated chat reply. Introduced in notebooks/chat-templates.ipynb."""

    text: str  # the reply, cut before <|im_end|>, special tokens removed
    stopped: bool  # True if the model ended its reply with <|im_end|> (or its eos)
    raw: str  # everything generated, special tokens included
    n_tokens: int  # number of generated tokens

    def __str__(self) -> str:
        return self.text


def _stop_ids(tok) -> list[int]:
    """Token ids that end a reply: the template's end of turn (<|im_end|> for ChatML) and the eos."""
    from .tokenizer import end_of_turn_id

    ids = [end_of_turn_id(tok)]
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids.append(tok.eos_token_id)
    return ids


def _as_messages(question: str | Sequence[dict], system: str | None) -> list[dict]:
    if isinstance(question, str):
        msgs = [{"role": "system", "content": system}] if system else []
        return msgs + [{"role": "user", "content": question}]
    return list(question)


def _decoding(greedy: bool, temperature: float) -> dict[str, Any]:
    """generate() options: greedy (always the most likely token) or plain sampling at a temperature."""
    if greedy:
        return dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    return dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)


def _model_device(model):
    return next(model.parameters()).device


def chat_batch(
    model,
    tok,
    questions: Iterable[str | Sequence[dict]],
    system: str | None = SYSTEM_PROMPT,
    max_new_tokens: int = 32,
    greedy: bool = True,
    temperature: float = 1.0,
    batch_size: int = 32,
    seed: int | None = None,
) -> list[Reply]:
    """Ask several questions (strings, or lists of chat messages) and return one :class:`Reply` each.

    Each question is wrapped in the chat template with ``system`` and the generation
    prompt ``<|im_start|>assistant<|im_sep|>``; generation stops at ``<|im_end|>`` or
    after ``max_new_tokens``. Greedy decoding by default (reproducible); with
    ``greedy=False`` tokens are sampled at ``temperature`` (set ``seed`` to repeat a draw).
    Prompts are left-padded and run in batches for speed. Introduced in
    notebooks/chat-templates.ipynb.
    """
    import torch

    questions = list(questions)
    stop = _stop_ids(tok)
    device = _model_device(model)
    specials = set(tok.all_special_ids)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else stop[0]
    replies: list[Reply] = []
    was_training = model.training
    model.eval()
    if seed is not None:
        torch.manual_seed(seed)
    for i in range(0, len(questions), batch_size):
        chunk = questions[i : i + batch_size]
        texts = [tok.apply_chat_template(_as_messages(q, system), tokenize=False, add_generation_prompt=True) for q in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(device)
        kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=pad_id, **_decoding(greedy, temperature))
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            cut = next((j for j, t in enumerate(row) if t in stop), None)
            body = row if cut is None else row[:cut]
            n = len(row) if cut is None else cut + 1
            raw = tok.decode(row[:n], skip_special_tokens=False)
            text = tok.decode([t for t in body if t not in specials], skip_special_tokens=False)
            replies.append(Reply(text=text.strip(), stopped=cut is not None, raw=raw, n_tokens=n))
    if was_training:
        model.train()
    return replies


def chat(model, tok, question: str | Sequence[dict], system: str | None = SYSTEM_PROMPT, **kwargs) -> Reply:
    """Ask one question in the chat format; returns a :class:`Reply` (``.text``, ``.stopped``).

    Same options as :func:`chat_batch`. Introduced in notebooks/chat-templates.ipynb.
    """
    return chat_batch(model, tok, [question], system=system, **kwargs)[0]


def _norm(s: str) -> str:
    return " ".join(str(s).split()).casefold()


def _texts(replies: Iterable) -> list[str]:
    return [r.text if isinstance(r, Reply) else str(r) for r in replies]


def exact_match(replies: Iterable, targets: Iterable[str]) -> float:
    """Fraction of replies equal to their target (case and extra spaces ignored).

    Introduced in notebooks/chat-templates.ipynb.
    """
    pairs = list(zip(_texts(replies), targets, strict=True))
    return sum(_norm(r) == _norm(t) for r, t in pairs) / max(1, len(pairs))


def keyword_accuracy(replies: Iterable, keywords: Iterable[str]) -> float:
    """Fraction of replies that contain their keyword (case ignored), e.g. "China".

    Kinder than exact match: "China, of course." counts. Introduced in notebooks/chat-templates.ipynb.
    """
    pairs = list(zip(_texts(replies), keywords, strict=True))
    return sum(_norm(k) in _norm(r) for r, k in pairs) / max(1, len(pairs))


def format_compliance(replies: Iterable[Reply]) -> float:
    """Fraction of replies that end properly with ``<|im_end|>`` (did the model learn to stop?).

    Introduced in notebooks/chat-templates.ipynb.
    """
    replies = list(replies)
    return sum(bool(r.stopped) for r in replies) / max(1, len(replies))


@dataclass
class ChatReport:
    """Scores of a model on Q&A data, and the table behind them.

    Introduced in notebooks/chat-templates.ipynb.
    """

    exact: float  # exact-match accuracy
    keyword: float  # keyword accuracy
    format: float  # format compliance: fraction of replies that stop at <|im_end|>
    table: Any  # pandas DataFrame: question, expected, reply, stopped, exact, keyword

    def summary(self) -> dict:
        """The three scores as a dict (handy for a results table)."""
        return {"exact": self.exact, "keyword": self.keyword, "format": self.format}

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def __repr__(self) -> str:
        return f"ChatReport(exact={self.exact:.2f}, keyword={self.keyword:.2f}, format={self.format:.2f}, n={len(self.table)})"


def evaluate_chat(model, tok, qas: Sequence, system: str | None = SYSTEM_PROMPT, **kwargs) -> ChatReport:
    """Ask every :class:`ftlab.data.QA` question, compare with its answer and keyword.

    Returns a :class:`ChatReport` with exact-match, keyword accuracy, format compliance and
    a per-question table. Options as :func:`chat_batch`. Introduced in notebooks/chat-templates.ipynb.
    """
    import pandas as pd

    replies = chat_batch(model, tok, [q.question for q in qas], system=system, **kwargs)
    table = pd.DataFrame(
        {
            "question": [q.question for q in qas],
            "expected": [q.answer for q in qas],
            "reply": [r.text for r in replies],
            "stopped": [r.stopped for r in replies],
            "exact": [_norm(r.text) == _norm(q.answer) for r, q in zip(replies, qas)],
            "keyword": [_norm(q.keyword) in _norm(r.text) for r, q in zip(replies, qas)],
        }
    )
    n = max(1, len(table))
    return ChatReport(float(table["exact"].sum() / n), float(table["keyword"].sum() / n), float(table["stopped"].sum() / n), table)


def complete(model, tok, prompt: str | list[str], max_new_tokens: int = 8, greedy: bool = True,
             temperature: float = 1.0, stop_at_newline: bool = False):
    """Let a model continue plain text, e.g. ``complete(m, tok, "Shanghai is a city in")`` -> ``" China."``.

    No chat template: this is what a base model does. Returns the continuation (a string,
    or a list for a list of prompts); ``stop_at_newline`` cuts it at the first line break.
    Introduced in notebooks/pretraining.ipynb.
    """
    import torch

    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    device = _model_device(model)
    # add_special_tokens: a real model that expects a begin-of-text token gets it (the lab's adds none)
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=True).to(device)
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=_stop_ids(tok),
                  **_decoding(greedy, temperature))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, **kwargs)
    if was_training:
        model.train()
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    if stop_at_newline:
        texts = [t.split("\n", 1)[0] for t in texts]
    return texts[0] if isinstance(prompt, str) else texts


def fact_completions(model, tok, cities: Sequence | None = None, template: str = "{city} is a city in"):
    """Complete "<city> is a city in" for every city (greedy) and check the country.

    Returns a DataFrame: prompt, expected, completion, correct. ``cities`` defaults to
    every city of :func:`ftlab.data.world`. Introduced in notebooks/pretraining.ipynb.
    """
    import pandas as pd

    from .data import world

    cities = list(world().cities if cities is None else cities)
    prompts = [template.format(city=c.name) for c in cities]
    outs = complete(model, tok, prompts, max_new_tokens=4, stop_at_newline=True)
    return pd.DataFrame(
        {
            "prompt": prompts,
            "expected": [c.country for c in cities],
            "completion": outs,
            "correct": [o.strip().startswith(c.country) for o, c in zip(outs, cities)],
        }
    )


def fact_accuracy(model, tok, cities: Sequence | None = None) -> float:
    """Fraction of the world's cities whose country a base model completes correctly.

    Introduced in notebooks/pretraining.ipynb.
    """
    return float(fact_completions(model, tok, cities)["correct"].mean())


def perplexity(model, tok, texts: Sequence[str], batch_size: int = 32) -> float:
    """exp(mean negative log-likelihood per predicted token) of ``texts``: 1 is a perfect guess,
    ``len(tok)`` is a uniform guess. Each text is scored on its own.

    Introduced in notebooks/pretraining.ipynb.
    """
    import math

    import torch

    device = _model_device(model)
    total_nll, total_n = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(list(texts[i : i + batch_size]), return_tensors="pt", padding=True, padding_side="right",
                      add_special_tokens=True).to(device)
            logits = model(**enc).logits[:, :-1].float()
            target = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].bool()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            total_nll += float(nll[mask].sum())
            total_n += int(mask.sum())
    if was_training:
        model.train()
    return math.exp(total_nll / max(1, total_n))


def show_token(s: str) -> str:
    """A token's text made visible in a table: a space becomes ``␣`` and a line break ``↵``.

    Introduced in notebooks/first-look.ipynb.
    """
    return s.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def next_token_probs(model, tok, prompt: str, k: int = 10, chat_format: bool = False):
    """The ``k`` most likely next tokens after ``prompt`` with their probabilities.

    Returns a DataFrame: rank, token (spaces shown as ``␣``), id, probability. With
    ``chat_format=True`` the prompt is wrapped as a user message plus the generation
    prompt. Introduced in notebooks/first-look.ipynb.
    """
    import pandas as pd
    import torch

    if chat_format:
        prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=not chat_format)["input_ids"].to(_model_device(model))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
    if was_training:
        model.train()
    top = torch.topk(probs, k)
    return pd.DataFrame(
        {
            "rank": range(1, k + 1),
            "token": [show_token(tok.decode([i])) for i in top.indices.tolist()],
            "id": top.indices.tolist(),
            "probability": [round(p, 4) for p in top.values.tolist()],
        }
    )


def token_table(tok, text_or_ids: str | Sequence[int], mask: Sequence[int] | None = None):
    """One row per token: position, token (spaces as ``␣``), id, whether it is special,
    and, if ``mask`` is given, the mask value. Introduced in notebooks/first-look.ipynb.
    """
    import pandas as pd

    ids = tok(text_or_ids, add_special_tokens=False)["input_ids"] if isinstance(text_or_ids, str) else list(text_or_ids)
    specials = set(tok.all_special_ids)
    added = {i for i in tok.added_tokens_decoder}
    df = pd.DataFrame(
        {
            "position": range(len(ids)),
            "token": [show_token(tok.decode([i])) for i in ids],
            "id": ids,
            "special": [i in specials for i in ids],
            "added": [i in added for i in ids],
        }
    )
    if mask is not None:
        df["assistant"] = list(mask)
    return df


def chat_token_table(tok, messages: Sequence[dict]):
    """The tokens of a conversation with the assistant mask (1 = a token the model learns to write).

    The mask (:func:`ftlab.assistant_mask`) covers the assistant's reply and its end-of-turn
    token, with any chat template. Introduced in notebooks/chat-templates.ipynb.
    """
    from .tokenizer import assistant_mask

    ids, mask = assistant_mask(tok, messages)
    return token_table(tok, ids, mask)
