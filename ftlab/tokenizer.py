"""The lab's tokenizer: byte-level BPE trained in a second on the corpus, plus chat tokens.

* Byte-level BPE (like GPT-2, Llama 3, Qwen): any text can be encoded, unseen words
  split into smaller pieces, down to single bytes.
* Chat tokens of seed 003, each ONE id: ``<|im_start|>``, ``<|im_end|>``, ``<|im_sep|>``
  (special: hidden by ``decode(..., skip_special_tokens=True)``), and the tags
  ``<SEARCH-TOOL>``, ``</SEARCH-TOOL>``, ``<think>``, ``</think>`` added as *non-special*
  tokens so that TRL's decoding keeps them for reward functions (DESIGN pitfall 2).
* ``<|pad|>`` pads batches; the end-of-sequence token is ``<|im_end|>``: a chat model
  stops when it has finished its reply.
* A chat template that writes seed 003's layout exactly, without newlines::

    <|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|><|im_start|>user<|im_sep|>what is 2+2 ?<|im_end|><|im_start|>assistant<|im_sep|>The answer is 4<|im_end|>

  The assistant's content and its ``<|im_end|>`` sit inside ``{% generation %}`` so that
  ``return_assistant_tokens_mask=True`` and TRL's ``assistant_only_loss`` know which
  tokens the model must learn to write (DESIGN pitfall 5).

Remember (DESIGN pitfall 1): with transformers 5, ``apply_chat_template(tokenize=True)``
returns a BatchEncoding (index it with ``["input_ids"]``), and ``tok.vocab_size`` leaves
out added tokens: size models with ``len(tok)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import short_traceback

__all__ = [
    "IM_START",
    "IM_END",
    "IM_SEP",
    "PAD",
    "SEARCH_START",
    "SEARCH_END",
    "THINK_START",
    "THINK_END",
    "CHAT_SPECIAL_TOKENS",
    "TAG_TOKENS",
    "CHAT_TEMPLATE",
    "VOCAB_SIZE",
    "train_tokenizer",
    "lab_tokenizer",
    "get_tokenizer",
    "add_chat_tokens",
    "load_tokenizer_folder",
    "tokenizer_fingerprint",
]

IM_START = "<|im_start|>"  # opens a message; followed by the role
IM_SEP = "<|im_sep|>"  # separates the role from the content
IM_END = "<|im_end|>"  # closes a message; also the end-of-sequence token
PAD = "<|pad|>"  # fills short sequences in a batch
SEARCH_START, SEARCH_END = "<SEARCH-TOOL>", "</SEARCH-TOOL>"  # a call to the search tool
THINK_START, THINK_END = "<think>", "</think>"  # a reasoning block (GRPO notebook)

#: Special tokens: single ids, removed by ``skip_special_tokens=True``.
CHAT_SPECIAL_TOKENS = (IM_START, IM_END, IM_SEP)
#: Tags: single ids, but NOT special, so decoded text keeps them (DESIGN pitfall 2).
TAG_TOKENS = (SEARCH_START, SEARCH_END, THINK_START, THINK_END)

#: Seed 003's layout, no newlines; the assistant part is marked for the assistant mask.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '<|im_sep|>' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}"
    "{{ message['content'] + '<|im_end|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}"
)

#: Upper bound of the BPE vocabulary; on this corpus training saturates below it.
VOCAB_SIZE = 1536


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers.

    Returns a ``PreTrainedTokenizerFast`` with the chat tokens, pad/eos and the chat
    template. Deterministic: the same texts give the same vocabulary. Not cached - use
    :func:`get_tokenizer` in notebooks. Introduced in notebooks/first-look.ipynb.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    # No prefix space: a text starts without one, as after <|im_sep|> in a chat.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, *CHAT_SPECIAL_TOKENS],  # ids 0, 1, 2, 3
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token=PAD,
        eos_token=IM_END,
        extra_special_tokens=[IM_START, IM_SEP],
        chat_template=CHAT_TEMPLATE,
        padding_side="right",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )


def tokenizer_fingerprint(tok) -> str:
    """A hash of a tokenizer's definition (vocabulary, merges, added tokens, template).

    Padding and truncation settings are left out: encoding a batch changes them, not the tokens.

    Introduced in notebooks/pretraining.ipynb.
    """
    import json

    from .cache import fingerprint

    spec = json.loads(tok.backend_tokenizer.to_str())
    spec.pop("padding", None)
    spec.pop("truncation", None)
    return fingerprint({"tokenizer": spec, "template": tok.chat_template})


def load_tokenizer_folder(path: str | os.PathLike):
    """Load a tokenizer saved with ``save_pretrained`` (local folder only, nothing downloaded).

    Introduced in notebooks/chat-templates.ipynb.
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


@short_traceback
def lab_tokenizer():
    """The lab's own tokenizer, trained on :func:`ftlab.data.tokenizer_texts` and cached on disk.

    A cache hit loads in a few tens of milliseconds; a miss trains in about a second.
    Introduced in notebooks/first-look.ipynb.
    """
    import tokenizers

    from .cache import cached_dir
    from .data import data_fingerprint, tokenizer_texts

    key = {"data": data_fingerprint(), "vocab_size": VOCAB_SIZE, "template": CHAT_TEMPLATE,
           "tokens": [PAD, *CHAT_SPECIAL_TOKENS, *TAG_TOKENS], "tokenizers": tokenizers.__version__}

    def build(tmp: Path) -> dict:
        tok = train_tokenizer(tokenizer_texts())
        tok.save_pretrained(str(tmp))
        return {"vocab": len(tok)}

    path, _meta, _hit = cached_dir("tokenizer", key, build)
    return load_tokenizer_folder(path)


@short_traceback
def get_tokenizer():
    """The tokenizer of the notebooks: the lab's own, or the real model's when ``FTLAB_MODEL`` is set.

    With ``FTLAB_MODEL``, the real tokenizer gets the chat tokens and the chat template
    when it lacks them (see :func:`add_chat_tokens`). Introduced in notebooks/first-look.ipynb.
    """
    from .real import real_model_id, load_real_tokenizer

    model_id = real_model_id()
    if model_id:
        return load_real_tokenizer(model_id)
    return lab_tokenizer()


def add_chat_tokens(tok) -> int:
    """Give any tokenizer the lab's chat tokens, a pad token and, if it has none, the chat template.

    Returns how many tokens were added (resize the model's embeddings when it is > 0;
    :func:`ftlab.get_base_model` does it). Existing tokens and templates are kept: a
    real chat model keeps its own format. Introduced in notebooks/chat-templates.ipynb.
    """
    from tokenizers import AddedToken

    vocab = tok.get_vocab()
    n = 0
    special = [t for t in CHAT_SPECIAL_TOKENS if t not in vocab]
    if special:
        n += tok.add_special_tokens({"extra_special_tokens": special}, replace_extra_special_tokens=False)
    tags = [t for t in TAG_TOKENS if t not in vocab]
    if tags:
        n += tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in tags])
    if tok.pad_token is None:
        n += tok.add_special_tokens({"pad_token": PAD})
    if not tok.chat_template:
        tok.chat_template = CHAT_TEMPLATE
        # Our template ends each message with <|im_end|>: make it the end of a reply.
        tok.eos_token = IM_END
    return n
