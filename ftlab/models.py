"""The lab's models: real ``LlamaForCausalLM`` networks, small enough to pretrain in seconds.

Two presets (:data:`PRESETS`):

* ``"small"`` - the main model of every notebook: hidden size 128, 4 layers, MLP 512,
  tied input/output embeddings, about 1.2 million parameters (170 thousand of them in the
  embedding matrix of the ~1,300-token vocabulary);
* ``"tiny"`` - the student of the distillation notebook: hidden size 64, 2 layers,
  about 0.2 million parameters.

They are ordinary transformers models: ``save_pretrained``/``from_pretrained``,
``generate``, peft (LoRA) and TRL trainers work on them as on any Llama checkpoint.

:func:`pretrain` trains a preset on :func:`ftlab.data.corpus` with a fixed recipe
(:data:`RECIPES`) and caches the result on disk (see :mod:`ftlab.cache`): the first call
trains (about 30 s for ``"small"`` on 2 CPU cores), later calls load in a fraction of a
second. Training is deterministic: the same recipe gives bit-identical weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

from .errors import FtlabError, short_traceback

__all__ = [
    "ModelPreset",
    "PretrainRecipe",
    "PRESETS",
    "RECIPES",
    "build_model",
    "count_parameters",
    "corpus_token_ids",
    "pretrain_loop",
    "pretrain",
    "get_base_model",
]


@dataclass(frozen=True)
class ModelPreset:
    """The shape of a lab model; :meth:`to_config` turns it into a ``LlamaConfig``.

    Introduced in notebooks/pretraining.ipynb.
    """

    hidden_size: int = 128  # width of every token vector (the embedding dimension)
    num_layers: int = 4  # number of transformer blocks stacked on top of each other
    num_heads: int = 4  # attention heads per block (hidden_size must divide by it)
    num_kv_heads: int = 4  # key/value heads (fewer than num_heads = grouped-query attention)
    intermediate_size: int = 512  # width of the MLP inside each block (usually 4 x hidden)
    max_positions: int = 512  # longest sequence the model is meant to read (RoPE, no weights)
    tie_embeddings: bool = True  # the output layer reuses the input embedding matrix
    rope_theta: float = 10000.0  # base of the rotary position encoding
    rms_norm_eps: float = 1e-5  # epsilon of the RMSNorm layers
    initializer_range: float = 0.02  # std of the random initial weights

    def to_config(self, tokenizer):
        """A ``LlamaConfig`` for this shape, sized to ``len(tokenizer)`` (not ``vocab_size``)."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=len(tokenizer),  # DESIGN pitfall 1: len() counts the added tokens
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_positions,
            tie_word_embeddings=self.tie_embeddings,
            rope_theta=self.rope_theta,
            rms_norm_eps=self.rms_norm_eps,
            initializer_range=self.initializer_range,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,  # the lab tokenizer adds no begin-of-sequence token
        )


@dataclass(frozen=True)
class PretrainRecipe:
    """How a preset is pretrained. Same recipe + same data = bit-identical weights.

    Introduced in notebooks/pretraining.ipynb.
    """

    steps: int = 360  # optimizer steps (each sees batch_size x seq_len tokens)
    batch_size: int = 16  # sequences per step
    seq_len: int = 64  # tokens per sequence; each one starts at the start of a corpus line
    lr: float = 3e-3  # peak learning rate (tiny models like large ones)
    warmup_steps: int = 20  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr x min_lr_ratio
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 1.0  # gradient norm clipping
    seed: int = 0  # seeds the initial weights and the order of the batches


#: Named model shapes. "small" is the main model, "tiny" the distillation student.
PRESETS: dict[str, ModelPreset] = {
    "small": ModelPreset(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=4, intermediate_size=512),
    "tiny": ModelPreset(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=256),
}

#: The pretraining recipe of each preset. Steps were measured on 2 CPU cores: "small"
#: completes all 80 "<city> is a city in" facts by step ~240 and all 16 capitals by ~300,
#: and 360 steps take about 30 s; "tiny" learns them by step ~280 and 400 steps take ~10 s.
RECIPES: dict[str, PretrainRecipe] = {
    "small": PretrainRecipe(steps=360, lr=3e-3),
    "tiny": PretrainRecipe(steps=400, lr=6e-3),
}


#: Pretraining measures the fact accuracy every FACT_EVERY steps (about 0.03 s each).
FACT_EVERY = 20


def _preset(preset: str | ModelPreset) -> ModelPreset:
    if isinstance(preset, ModelPreset):
        return preset
    if preset not in PRESETS:
        raise FtlabError(f"Unknown model preset {preset!r}: use one of {sorted(PRESETS)} or a ModelPreset(...).")
    return PRESETS[preset]


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of parameters of a model (tied weights counted once).

    Introduced in notebooks/pretraining.ipynb.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@short_traceback
def build_model(preset: str | ModelPreset = "small", tokenizer=None, seed: int = 0):
    """A freshly initialised (untrained) ``LlamaForCausalLM`` of a preset, in float32 on the CPU.

    The initial weights depend only on ``seed``. Introduced in notebooks/pretraining.ipynb.
    """
    import torch
    from transformers import LlamaForCausalLM

    from .tokenizer import lab_tokenizer

    tok = tokenizer if tokenizer is not None else lab_tokenizer()
    config = _preset(preset).to_config(tok)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model.float()


def corpus_token_ids(tokenizer, lines: list[str] | None = None):
    """The corpus as one long tensor of token ids (lines separated by newlines), and the
    position where each line starts. Introduced in notebooks/pretraining.ipynb."""
    import torch

    from .data import corpus

    lines = corpus() if lines is None else lines
    ids: list[int] = []
    starts: list[int] = []
    for line in lines:
        starts.append(len(ids))
        ids += tokenizer(line + "\n", add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(starts, dtype=torch.long)


def _lr_at(step: int, recipe: PretrainRecipe) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * cosine)


def pretrain_loop(model, token_ids, line_starts, recipe: PretrainRecipe, device=None, callback=None) -> list[tuple[int, float]]:
    """Next-token-prediction training of ``model`` on a token stream; returns ``[(step, loss)]``.

    Each step takes ``batch_size`` windows of ``seq_len`` tokens starting at random line
    starts (drawn from a generator seeded by ``recipe.seed``, so the batches are the same
    on every run), and does one AdamW step. ``callback(step, loss, model)``, if given, is
    called after every step (e.g. to measure fact accuracy during training).
    Introduced in notebooks/pretraining.ipynb.
    """
    import torch

    device = device or next(model.parameters()).device
    gen = torch.Generator().manual_seed(recipe.seed)
    # Wrap the stream around so that a window may start on the last lines.
    stream = torch.cat([token_ids, token_ids[: recipe.seq_len]])
    offsets = torch.arange(recipe.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=recipe.weight_decay)
    history: list[tuple[int, float]] = []
    model.train()
    for step in range(recipe.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, recipe)
        pick = torch.randint(len(line_starts), (recipe.batch_size,), generator=gen)
        batch = stream[line_starts[pick][:, None] + offsets].to(device)
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        history.append((step + 1, round(float(loss.detach()), 5)))
        if callback is not None:
            callback(step + 1, history[-1][1], model)
    model.eval()
    return history


@short_traceback
def pretrain(preset: str = "small", recipe: PretrainRecipe | None = None, tokenizer=None, **recipe_changes):
    """The pretrained base model of a preset, trained once and then loaded from the cache.

    Returns a :class:`ftlab.cache.Checkpoint`: ``.model`` (on ftlab's device, eval mode),
    ``.tokenizer``, ``.history`` (``[(step, loss)]`` for the loss curve),
    ``.extra["fact_accuracy"]`` (``[(step, fraction)]``: how many "<city> is a city in"
    facts the model completed correctly, measured every 20 steps), ``.train_seconds``,
    ``.from_cache``. ``recipe`` defaults to ``RECIPES[preset]``; keyword arguments change
    single fields, e.g. ``pretrain("small", steps=50)``. The cache key covers the preset,
    the recipe, the data, the tokenizer and the library versions.

    With ``FTLAB_MODEL`` set, ``"small"`` is the real model (nothing is trained, history is
    empty) and ``"tiny"`` is trained with the real model's tokenizer, so teacher and
    student still share a vocabulary. Introduced in notebooks/pretraining.ipynb.
    """
    from .cache import Checkpoint, cached_model
    from .data import data_fingerprint
    from .device import get_device
    from .real import load_real_model, real_model_id
    from .tokenizer import get_tokenizer, tokenizer_fingerprint

    if isinstance(preset, str) and preset not in PRESETS:
        _preset(preset)  # raises a clear FtlabError
    if preset == "small" and real_model_id() and recipe is None and not recipe_changes:
        t0 = time.perf_counter()
        model, tok = load_real_model(real_model_id())
        return Checkpoint(name=real_model_id(), path=None, model=model, tokenizer=tok, from_cache=True,
                          load_seconds=time.perf_counter() - t0, info={"hash": real_model_id()})
    shape = _preset(preset)
    recipe = replace(recipe or RECIPES.get(preset, PretrainRecipe()), **recipe_changes)
    tok = tokenizer if tokenizer is not None else get_tokenizer()
    key = {
        "preset": asdict(shape),
        "recipe": asdict(recipe),
        "data": data_fingerprint(),
        "tokenizer": tokenizer_fingerprint(tok),
    }

    def train():
        from .evaluate import fact_accuracy

        device = get_device()
        model = build_model(shape, tok, seed=recipe.seed).to(device)
        ids, starts = corpus_token_ids(tok)
        facts: list[tuple[int, float]] = []  # (step, fraction of city facts completed correctly)

        def measure(step, loss, m):
            if step % FACT_EVERY == 0 or step == recipe.steps:
                facts.append((step, round(fact_accuracy(m, tok), 4)))
                m.train()

        history = pretrain_loop(model, ids, starts, recipe, device=device, callback=measure)
        return model, history, {"fact_accuracy": facts}

    name = f"base-{preset}" if isinstance(preset, str) else "base-custom"
    return cached_model(name, key, train, tokenizer=tok)


@short_traceback
def get_base_model(preset: str = "small"):
    """The pretrained base model (a ``LlamaForCausalLM``), from the cache or trained now.

    Shortcut for ``pretrain(preset).model``; with ``FTLAB_MODEL`` set, the real model.
    Introduced in notebooks/pretraining.ipynb.
    """
    return pretrain(preset).model
