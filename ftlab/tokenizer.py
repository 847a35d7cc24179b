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
    "assistant_mask",
    "end_of_turn",
    "end_of_turn_id",
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
    """Make any tokenizer ready to chat; returns how many tokens were added.

    * A tokenizer **with** a chat template (a real chat model: SmolLM2, Qwen, Llama…)
      keeps its template and its own tokens; nothing is added. Its end of turn is found
      from the template (:func:`end_of_turn_id`). Only a missing pad token is set, to the
      end-of-sequence token (padding is masked out anyway).
    * A tokenizer **without** one (a base model) gets the lab's chat tokens that it lacks,
      the tags, a pad token and the lab's template; ``<|im_end|>`` becomes its end of
      sequence. Resize the model's embeddings when the result is > 0
      (:func:`ftlab.load_real_model` does it); the new rows are learned by fine-tuning.

    Introduced in notebooks/chat-templates.ipynb.
    """
    from tokenizers import AddedToken

    if tok.chat_template:
        if tok.pad_token is None and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        return 0
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
    tok.chat_template = CHAT_TEMPLATE
    tok.eos_token = IM_END  # our template ends each message with <|im_end|>: the end of a reply
    return n


#: A reply that no template changes, used to find where a template puts the end of a turn.
_PROBE_REPLY = "PROBE-REPLY-7"


def _render(tok, messages, add_generation_prompt: bool = False) -> str:
    return tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def end_of_turn(tok) -> str:
    """The text a chat template writes right after an assistant's reply: ``<|im_end|>`` for
    ChatML models (SmolLM2, Qwen) and for the lab, ``<|eot_id|>`` for Llama 3…

    Found by rendering a probe conversation; when the template writes a special token
    there, that token; else the tokenizer's end-of-sequence token. Introduced in
    notebooks/real-model.ipynb.
    """
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE_REPLY}]
    text = _render(tok, msgs)
    after = text[text.rindex(_PROBE_REPLY) + len(_PROBE_REPLY):]
    for token in sorted(tok.all_special_tokens, key=len, reverse=True):
        if token and after.startswith(token):
            return token
    if tok.eos_token:
        return tok.eos_token
    from .errors import FtlabError

    raise FtlabError("This tokenizer's chat template writes no special token after a reply and it has no "
                     "end-of-sequence token: set tok.eos_token to the token that ends a turn.")


def end_of_turn_id(tok) -> int:
    """The id of :func:`end_of_turn` (one token). Introduced in notebooks/real-model.ipynb."""
    return tok.convert_tokens_to_ids(end_of_turn(tok))


def assistant_mask(tok, messages) -> tuple[list[int], list[int]]:
    """Token ids of a conversation, and a mask that is 1 on the assistant's replies and
    their end-of-turn token, 0 everywhere else.

    Works with any chat template, with or without ``{% generation %}`` (DESIGN pitfall 16:
    SmolLM2's, Qwen's and Llama 3's have none, and transformers then returns an all-zero
    mask). For each assistant message, the conversation up to it is rendered with the
    generation prompt: everything after that text, up to and including the end-of-turn
    token, is the reply. The newline that ChatML writes after ``<|im_end|>`` stays at 0.
    Returns ``(input_ids, mask)``. Introduced in notebooks/sft.ipynb.
    """
    from .errors import FtlabError

    messages = list(messages)
    text = _render(tok, messages)
    eot = end_of_turn(tok)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = _render(tok, messages[:i], add_generation_prompt=True)
        if not text.startswith(prefix):
            raise FtlabError("This chat template renders a conversation differently once a reply follows "
                             "(it is not prefix-preserving): ftlab cannot tell the reply's tokens apart.")
        start = len(prefix)
        end = text.find(eot, start + len(message["content"]))
        spans.append((start, len(text) if end < 0 else end + len(eot)))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [int(any(a <= s < b for a, b in spans)) for s, _e in enc["offset_mapping"]]
    return ids, mask
