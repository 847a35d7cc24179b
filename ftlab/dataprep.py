"""Preparing fine-tuning data: formats, deduplication, filters, decontamination, lengths, mixing.

* :func:`to_prompt_completion`, :func:`to_messages`, :func:`to_text`,
  :func:`to_implicit_preference` - conversions between TRL's dataset formats;
* :func:`exact_duplicates` and :func:`near_duplicates` (MinHash, ``datasketch``) - duplicates;
* :func:`language_of` and :func:`length_filter` - simple quality filters;
* :func:`ngram_keys`, :func:`sum_keys` and :func:`contamination` - overlap between the
  training data and the held-out data;
* :func:`pad_batches` and :func:`pack` - the tokens a batch holds with padding and with
  packing, and :func:`padding_tokens`;
* :func:`mix` - a narrow data set with a share of general data mixed in.

Introduced in notebooks/data.ipynb.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "to_prompt_completion",
    "to_messages",
    "to_text",
    "to_implicit_preference",
    "normalize",
    "exact_duplicates",
    "near_duplicates",
    "language_of",
    "length_filter",
    "ngram_keys",
    "sum_keys",
    "contamination",
    "Leak",
    "pad_batches",
    "pack",
    "padding_tokens",
    "packed_inputs",
    "padded_inputs",
    "mix",
]


# --------------------------------------------------------------------------------------
# Formats (TRL's dataset formats: "messages", "prompt"/"completion", "prompt"/"chosen"/"rejected")
# --------------------------------------------------------------------------------------


def to_prompt_completion(row: dict) -> dict:
    """A conversational row ``{"messages": [...]}`` as TRL's conversational prompt-completion
    format: ``{"prompt": every message before the last, "completion": [the last message]}``.

    The last message must be the assistant's: it is what the loss trains on (TRL trains on
    the completion only by default). Introduced in notebooks/data.ipynb.
    """
    messages = list(row["messages"])
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("the last message of a conversation to split must be the assistant's")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def to_messages(row: dict) -> dict:
    """The inverse of :func:`to_prompt_completion`: ``{"messages": prompt + completion}``.

    Introduced in notebooks/data.ipynb.
    """
    return {"messages": list(row["prompt"]) + list(row["completion"])}


def to_text(row: dict, tok) -> dict:
    """A conversational row as TRL's *standard* language-modelling format ``{"text": ...}``:
    the conversation written out by the chat template of ``tok``. Nothing marks the
    assistant's part any more, so a trainer given this text trains on every token.
    Introduced in notebooks/data.ipynb.
    """
    return {"text": tok.apply_chat_template(row["messages"], tokenize=False)}


def to_implicit_preference(row: dict) -> dict:
    """A preference row with an explicit prompt (``prompt``, ``chosen``, ``rejected``) as the
    *implicit prompt* form: ``chosen`` and ``rejected`` hold the whole conversations.
    ``trl.extract_prompt`` goes back. Introduced in notebooks/data.ipynb.
    """
    return {"chosen": list(row["prompt"]) + list(row["chosen"]),
            "rejected": list(row["prompt"]) + list(row["rejected"])}


# --------------------------------------------------------------------------------------
# Duplicates
# --------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Lower case, accents and punctuation removed, spaces collapsed: what an exact-duplicate
    check compares. Introduced in notebooks/data.ipynb.
    """
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[^\w+]+", " ", text)
    return " ".join(text.split())


def exact_duplicates(texts) -> list[tuple[int, int]]:
    """The pairs ``(first, duplicate)`` of indices whose :func:`normalize` forms are equal
    (a hash of each normalized text, as data pipelines do). Each duplicate is listed once,
    paired with its first occurrence: drop the second index of every pair.
    Introduced in notebooks/data.ipynb.
    """
    first: dict[str, int] = {}
    pairs = []
    for i, text in enumerate(texts):
        digest = hashlib.sha1(normalize(text).encode()).hexdigest()
        if digest in first:
            pairs.append((first[digest], i))
        else:
            first[digest] = i
    return pairs


def _shingles(text: str, k: int) -> set[str]:
    """The character k-grams of the normalized text (the whole text when it is shorter)."""
    text = normalize(text)
    return {text[i : i + k] for i in range(max(1, len(text) - k + 1))}


def near_duplicates(texts, threshold: float = 0.8, k: int = 5, num_perm: int = 128, seed: int = 1) -> list[tuple[int, int, float]]:
    """Pairs of texts whose character ``k``-gram sets overlap by about ``threshold`` or more
    (Jaccard similarity), found with MinHash and locality-sensitive hashing (``datasketch``).

    Returns ``(i, j, jaccard)`` with ``i < j``; ``jaccard`` is the exact similarity of the
    two shingle sets, computed for the candidates LSH proposes, and pairs below
    ``threshold`` are dropped (LSH only proposes). Exact duplicates are near duplicates too.
    Introduced in notebooks/data.ipynb.
    """
    from datasketch import MinHash, MinHashLSH

    texts = list(texts)
    sets = [_shingles(t, k) for t in texts]
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    pairs = set()
    for i, shingles in enumerate(sets):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([s.encode() for s in shingles])
        for j in lsh.query(m):
            pairs.add((j, i))
        lsh.insert(i, m)
    out = []
    for i, j in sorted(pairs):
        jaccard = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        if jaccard >= threshold:
            out.append((i, j, round(jaccard, 3)))
    return out


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------

#: Short function words of each language: :func:`language_of` counts them.
_FUNCTION_WORDS = {
    "en": frozenset("the a an is are of in to and it what where which who how this that was be at by for with".split()),
    "fr": frozenset("le la les un une est sont de des du dans et il elle que qui quelle où ce cette au aux pour avec".split()),
}


def language_of(text: str) -> str:
    """``"en"``, ``"fr"`` or ``"?"``: the language whose function words the text holds more of.

    A toy language identifier that is enough for the course's data; real pipelines use a
    trained classifier (fastText's language identification, for example).
    Introduced in notebooks/data.ipynb.
    """
    words = normalize(text).split()
    counts = {lang: sum(w in vocab for w in words) for lang, vocab in _FUNCTION_WORDS.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] > min(counts.values()) else "?"


def length_filter(lengths, low: int, high: int) -> list[bool]:
    """``True`` for each length (in tokens) from ``low`` to ``high`` included.

    Introduced in notebooks/data.ipynb.
    """
    return [low <= n <= high for n in lengths]


# --------------------------------------------------------------------------------------
# Decontamination
# --------------------------------------------------------------------------------------


def ngram_keys(text: str, n: int = 8) -> set[str]:
    """The word ``n``-grams of the normalized text; a text shorter than ``n`` words is one key,
    itself. Two texts that share a key overlap by ``n`` words in a row (or are equal).
    Introduced in notebooks/data.ipynb.
    """
    words = normalize(text).split()
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


_SUM = re.compile(r"(\d+)\s*\+\s*(\d+)")


def sum_keys(text: str) -> set[str]:
    """A key per addition in the text that does not depend on the order of the operands:
    "What is 3 + 4?" and "What is 4 + 3?" both give ``{"sum 3 4"}``; other text gives
    :func:`ngram_keys`. A check by meaning for one kind of data, where words in a row miss
    a commuted sum. Introduced in notebooks/data.ipynb.
    """
    sums = _SUM.findall(text)
    if not sums:
        return ngram_keys(text)
    return {"sum " + " ".join(sorted((a, b), key=int)) for a, b in sums}


@dataclass(frozen=True)
class Leak:
    """A held-out text that shares a key with a training text. Introduced in notebooks/data.ipynb."""

    heldout: int  # index of the held-out text
    train: int  # index of a training text it overlaps with
    key: str  # the shared key (an n-gram, or a sum's operands)


def contamination(train_texts, heldout_texts, keys=ngram_keys) -> list[Leak]:
    """Every held-out text that shares a key (``keys(text)`` -> set of strings) with a
    training text, with the first such training text. An empty list: the split is clean
    for this check. Introduced in notebooks/data.ipynb.
    """
    index: dict[str, int] = {}
    for i, text in enumerate(train_texts):
        for key in keys(text):
            index.setdefault(key, i)
    leaks = []
    for j, text in enumerate(heldout_texts):
        shared = sorted(k for k in keys(text) if k in index)
        if shared:
            leaks.append(Leak(j, index[shared[0]], shared[0]))
    return leaks


# --------------------------------------------------------------------------------------
# Lengths: padding and packing
# --------------------------------------------------------------------------------------


def pad_batches(lengths, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Batches of indices, in a shuffled order, as a trainer draws them without packing:
    each batch is padded to its longest sequence. Introduced in notebooks/data.ipynb.
    """
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pack(lengths, max_length: int) -> list[list[int]]:
    """Best-fit decreasing: sequences (by length) put into rows of ``max_length`` tokens at
    most, each in the fullest row that still has room, longest first. Returns the rows as
    lists of indices. Sequences longer than ``max_length`` must be truncated first.
    TRL's ``pack_dataset(..., strategy="bfd")`` follows the same rule.
    Introduced in notebooks/data.ipynb.
    """
    lengths = list(lengths)
    if lengths and max(lengths) > max_length:
        raise ValueError(f"a sequence of {max(lengths)} tokens does not fit in rows of {max_length}: truncate first")
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [r for r in range(len(rows)) if room[r] >= lengths[i]]
        if fits:
            r = min(fits, key=lambda r: room[r])
            rows[r].append(i)
            room[r] -= lengths[i]
        else:
            rows.append([i])
            room.append(max_length - lengths[i])
    return rows


def padding_tokens(lengths, batches, width: int | None = None) -> tuple[int, int]:
    """``(padding tokens, all tokens)`` of the tensors that ``batches`` make.

    Without ``width``, each batch is one row per sequence, padded to its longest sequence
    (:func:`pad_batches`); with ``width``, each batch is one row of packed sequences padded
    to ``width`` (:func:`pack`, rows grouped by the caller). Exact counts: no sampling.
    Introduced in notebooks/data.ipynb.
    """
    pad = total = 0
    for batch in batches:
        if width is None:
            size = len(batch) * max(lengths[i] for i in batch)
            used = sum(lengths[i] for i in batch)
        else:
            size = len(batch) * width
            used = sum(lengths[i] for row in batch for i in row)
        pad += size - used
        total += size
    return pad, total


def packed_inputs(examples, rows, width: int, pad_id: int) -> dict:
    """The tensors of packed rows: ``input_ids``, ``labels`` (-100 on padding) and
    ``position_ids`` that restart at 0 at each sequence, so that transformers' attention
    keeps each sequence to itself (a block-diagonal mask), and ``use_cache=False``: with a
    cache of keys and values, transformers 5 does not look for packed sequences and every
    token would attend to the sequences before it in the row. ``examples`` are
    :func:`ftlab.sft_example` dicts. Introduced in notebooks/data.ipynb.
    """
    import torch

    ids, labels, positions = [], [], []
    for row in rows:
        i_row, l_row, p_row = [], [], []
        for i in row:
            i_row += examples[i]["input_ids"]
            l_row += examples[i]["labels"]
            p_row += list(range(len(examples[i]["input_ids"])))
        fill = width - len(i_row)
        ids.append(i_row + [pad_id] * fill)
        labels.append(l_row + [-100] * fill)
        positions.append(p_row + list(range(fill)))
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(positions),
            "use_cache": False}


def padded_inputs(examples, batch, pad_id: int) -> dict:
    """The tensors of one padded batch (indices into ``examples``, :func:`ftlab.sft_example`
    dicts): ``input_ids``, ``attention_mask`` and ``labels``, right-padded to the longest
    sequence, the padding labelled -100. Introduced in notebooks/data.ipynb.
    """
    from .sft import _collate

    return _collate([examples[i] for i in batch], pad_id, "cpu")


# --------------------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------------------


def mix(narrow, general, share: float, seed: int = 0) -> list:
    """``narrow`` with general rows added so that they make ``share`` of the result (0 <= share < 1),
    drawn without replacement from ``general`` (with replacement when it is too small), shuffled.

    ``share=0`` gives the narrow rows alone, shuffled. Introduced in notebooks/data.ipynb.
    """
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    rng = random.Random(seed)
    narrow, general = list(narrow), list(general)
    n_general = round(len(narrow) * share / (1 - share))
    if n_general <= len(general):
        extra = rng.sample(general, n_general)
    else:
        extra = [rng.choice(general) for _ in range(n_general)]
    rows = narrow + extra
    rng.shuffle(rows)
    return rows
