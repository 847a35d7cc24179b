"""Supervised fine-tuning (SFT): from a base model to an assistant.

* :class:`SFTRecipe` - the settings of one SFT run, one comment per field;
* :func:`sft_dataset` - chat conversations built from :func:`ftlab.qa_pairs`;
* :func:`sft_example` - one conversation as ``input_ids`` and ``labels``, with the
  labels set to -100 (ignored by the loss) outside the assistant's reply;
* :func:`train_sft_trl` - the training with TRL's ``SFTTrainer`` and ``assistant_only_loss``;
* :func:`train_sft_loop` - the same training as a short plain PyTorch loop;
* :func:`get_sft_model` - the fine-tuned lab model, trained once with TRL and then loaded
  from the disk cache (the LoRA, hallucination and DPO notebooks start from it);
* :func:`fact_probe` - does a base model complete, as plain text, the fact behind a question?

Introduced in notebooks/sft.ipynb.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .data import SYSTEM_PROMPT
from .errors import short_traceback

__all__ = [
    "SFT_CODE_VERSION",
    "SFTRecipe",
    "sft_recipe",
    "sft_dataset",
    "sft_example",
    "sft_loss",
    "train_sft_trl",
    "train_sft_loop",
    "get_sft_model",
    "fact_probe",
]


#: Part of the cache key of :func:`get_sft_model`: bump it when :func:`train_sft_trl` changes what it trains.
SFT_CODE_VERSION = "1"


@dataclass(frozen=True)
class SFTRecipe:
    """The settings of one supervised fine-tuning run of the lab model.

    With the defaults and the ``"small"`` base model, training takes about 8 s with TRL
    (set-up included) and 4 s with the plain loop on 2 CPU cores. Introduced in
    notebooks/sft.ipynb.
    """

    steps: int = 150  # optimizer steps; the learning rate decays linearly to 0 over them
    batch_size: int = 8  # conversations per step
    lr: float = 1e-3  # peak learning rate: tiny models need far more than the 2e-5 of TRL's default
    eval_every: int = 25  # measure the loss on the held-out conversations every this many steps
    log_every: int = 5  # TRL reports the mean training loss over this many steps
    seed: int = 0  # order of the conversations in the batches
    kinds: tuple[str, ...] = ("city", "capital", "arithmetic")  # question kinds of ftlab.qa_pairs
    max_grad_norm: float = 1.0  # gradient clipping, as in transformers' Trainer


def sft_recipe() -> SFTRecipe:
    """The recipe of the notebooks: :class:`SFTRecipe` as is for the lab model; with
    ``FTLAB_MODEL`` set, the learning rate becomes 2e-5, TRL's default, which suits a real
    pretrained model (1e-3 would wreck it), and the run is 40 steps of 4 conversations: a
    real chat model learns the reply format in a few steps, and on a CPU each step of a
    real model costs a hundred of the lab's. Introduced in notebooks/sft.ipynb.
    """
    from .real import real_model_id

    return SFTRecipe(lr=2e-5, steps=40, batch_size=4, eval_every=10) if real_model_id() else SFTRecipe()


@short_traceback
def sft_dataset(split: str = "train", kinds: tuple[str, ...] = SFTRecipe.kinds, system: str | None = SYSTEM_PROMPT):
    """The chat conversations of one split as a ``datasets.Dataset`` with a ``messages`` column.

    Each row is ``{"messages": [system, user, assistant]}``, TRL's conversational format,
    built from :func:`ftlab.qa_pairs` (``split`` is ``"train"`` or ``"heldout"``).
    Introduced in notebooks/sft.ipynb.
    """
    from datasets import Dataset

    from .data import conversations, qa_pairs

    return Dataset.from_list(conversations(qa_pairs(split, kinds=kinds), system=system))


def sft_example(tok, messages) -> dict:
    """One conversation as token ids, with the labels of supervised fine-tuning.

    Returns ``{"input_ids", "labels", "assistant_mask"}`` (lists of ints): the chat template
    gives the tokens, :func:`ftlab.assistant_mask` marks the assistant's replies and their
    end-of-turn token (with any template: the lab's, SmolLM2's, Qwen's…); ``labels`` copies
    ``input_ids`` where the mask is 1 and is -100 elsewhere, so the loss counts only what the
    model must learn to write. Introduced in notebooks/sft.ipynb.
    """
    from .tokenizer import assistant_mask

    ids, mask = assistant_mask(tok, messages)
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)], "assistant_mask": mask}


def _tokenized(tok, rows):
    """A conversational dataset as TRL's already-processed format: ``input_ids`` and ``labels``."""
    from datasets import Dataset

    examples = [sft_example(tok, row["messages"]) for row in rows]
    return Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])


def _collate(examples: list[dict], pad_id: int, device) -> dict:
    """Right-pad :func:`sft_example` dicts into a batch of tensors (padding masked out, labelled -100)."""
    import torch

    n = max(len(e["input_ids"]) for e in examples)

    def pad(seq: list[int], value: int) -> list[int]:
        return seq + [value] * (n - len(seq))

    return {
        "input_ids": torch.tensor([pad(e["input_ids"], pad_id) for e in examples], device=device),
        "attention_mask": torch.tensor([pad([1] * len(e["input_ids"]), 0) for e in examples], device=device),
        "labels": torch.tensor([pad(e["labels"], -100) for e in examples], device=device),
    }


def sft_loss(model, tok, conversations, batch_size: int = 64) -> float:
    """Mean loss per assistant token of ``model`` on conversations: rows with ``messages``
    (e.g. a :func:`sft_dataset`) or :func:`sft_example` dicts. Introduced in notebooks/sft.ipynb.
    """
    import torch

    examples = [e if "labels" in e else sft_example(tok, e["messages"]) for e in conversations]
    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = _collate(examples[i : i + batch_size], tok.pad_token_id, device)
            n = int((batch["labels"][:, 1:] != -100).sum())  # tokens the loss counts (after the shift)
            total += float(model(**batch).loss) * n
            count += n
    model.train(was_training)
    return total / max(1, count)


@short_traceback
def train_sft_trl(model, tok, train, heldout=None, recipe: SFTRecipe | None = None):
    """Fine-tune ``model`` in place with TRL's ``SFTTrainer``; returns the loss history.

    ``train`` and ``heldout`` are conversational datasets (see :func:`sft_dataset`).
    ``assistant_only_loss=True`` trains on the assistant's tokens only; it needs
    ``{% generation %}`` in the template (the lab's has it). For a template without it
    (SmolLM2's, Qwen's…, which TRL refuses or masks wrongly), the conversations are given
    to TRL already tokenized, with the labels of :func:`sft_example`: the same loss. The settings that
    differ from TRL's defaults are the ones a small model on a CPU needs (DESIGN pitfall 4):
    bf16 only on a GPU that supports it, no gradient checkpointing, a high learning rate,
    no progress bars, no reporting, nothing saved. Returns ``{"train": [(step, loss)],
    "eval": [(step, loss)]}``: the mean training loss every ``log_every`` steps and the
    held-out loss every ``eval_every`` steps. Introduced in notebooks/sft.ipynb.
    """
    import tempfile

    import torch
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from .device import get_device, get_dtype

    recipe = recipe or sft_recipe()
    device = get_device()
    marked = "{% generation %}" in (tok.chat_template or "").replace("{%- generation", "{% generation")
    if not marked:  # label the replies ourselves; TRL then uses the "labels" column as is
        train = _tokenized(tok, train)
        heldout = _tokenized(tok, heldout) if heldout is not None else None
    with tempfile.TemporaryDirectory(prefix="ftlab-sft-") as out:
        args = SFTConfig(
            output_dir=out,
            max_steps=recipe.steps,
            per_device_train_batch_size=recipe.batch_size,
            per_device_eval_batch_size=64,
            learning_rate=recipe.lr,
            lr_scheduler_type="linear",
            max_grad_norm=recipe.max_grad_norm,
            seed=recipe.seed,
            assistant_only_loss=marked,  # loss on the assistant's reply and its <|im_end|> only
            bf16=get_dtype() == torch.bfloat16,  # TRL's default is True: wrong on a CPU
            gradient_checkpointing=False,  # TRL's default is True: slower, useless for small models
            use_cpu=device.type == "cpu",
            logging_steps=recipe.log_every,
            eval_strategy="steps" if heldout is not None else "no",
            eval_steps=recipe.eval_every,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=False,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=heldout, processing_class=tok)
        trainer.remove_callback(PrinterCallback)  # with disable_tqdm it would print every log line
        trainer.train()
        if heldout is not None and recipe.steps % recipe.eval_every:
            trainer.evaluate()  # the loss at the last step too
    logs = trainer.state.log_history
    model.eval()
    return {
        "train": [(e["step"], round(e["loss"], 5)) for e in logs if "loss" in e],
        "eval": [(e["step"], round(e["eval_loss"], 5)) for e in logs if "eval_loss" in e],
    }


def train_sft_loop(model, tok, train, heldout=None, recipe: SFTRecipe | None = None) -> dict:
    """What ``SFTTrainer`` does, as a plain PyTorch loop; returns the loss history.

    Same arguments and result as :func:`train_sft_trl`, except that the training loss is
    recorded at every step, and ``"seconds"`` holds the time spent training (the held-out
    evaluations excluded). Only the parameters with ``requires_grad`` are optimized, so the
    same loop trains a LoRA model (:doc:`/notebooks/lora`). Introduced in notebooks/sft.ipynb.
    """
    import time

    import torch

    recipe = recipe or sft_recipe()
    device = next(model.parameters()).device
    examples = [sft_example(tok, row["messages"]) for row in train]  # labels = -100 outside the reply
    evals = [sft_example(tok, row["messages"]) for row in heldout] if heldout is not None else []
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / recipe.steps)  # linear decay to 0
    gen = torch.Generator().manual_seed(recipe.seed)
    order: list[int] = []
    history: dict = {"train": [], "eval": [], "seconds": 0.0}
    model.train()
    start = time.perf_counter()
    for step in range(1, recipe.steps + 1):
        if len(order) < recipe.batch_size:  # a new epoch: shuffle the conversations again
            order += torch.randperm(len(examples), generator=gen).tolist()
        batch = _collate([examples[i] for i in order[: recipe.batch_size]], tok.pad_token_id, device)
        order = order[recipe.batch_size :]
        loss = model(**batch).loss  # cross-entropy of each next token, labels -100 ignored
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, recipe.max_grad_norm)
        opt.step()
        schedule.step()
        opt.zero_grad()
        history["train"].append((step, round(loss.item(), 5)))
        if evals and (step % recipe.eval_every == 0 or step == recipe.steps):
            paused = time.perf_counter()
            history["eval"].append((step, round(sft_loss(model, tok, evals), 5)))
            start += time.perf_counter() - paused  # evaluation time is not training time
    history["seconds"] = time.perf_counter() - start
    model.eval()
    return history


@short_traceback
def get_sft_model(base=None, tok=None, recipe: SFTRecipe | None = None):
    """The base model after supervised fine-tuning with TRL, trained once and then cached.

    ``base`` is a :class:`ftlab.Checkpoint` (default: ``ftlab.pretrain("small")``, the real
    model when ``FTLAB_MODEL`` is set) and is not modified: a copy is trained. Returns a
    :class:`ftlab.Checkpoint` whose ``.history`` is the training loss and
    ``.extra["eval_loss"]`` the held-out loss, both ``[(step, loss)]``. The cache key holds
    the base model, the recipe, the data, the tokenizer and the TRL version.
    Introduced in notebooks/sft.ipynb.
    """
    import copy

    import trl

    from .cache import cached_model
    from .data import data_fingerprint
    from .models import pretrain
    from .tokenizer import get_tokenizer, tokenizer_fingerprint

    base = base if base is not None else pretrain("small")
    tok = tok if tok is not None else (base.tokenizer or get_tokenizer())
    recipe = recipe or sft_recipe()
    key = {"base": base.hash, "recipe": asdict(recipe), "data": data_fingerprint(), "code": SFT_CODE_VERSION,
           "tokenizer": tokenizer_fingerprint(tok), "trl": trl.__version__}

    def train():
        model = copy.deepcopy(base.model)
        train_data, heldout_data = sft_dataset("train", recipe.kinds), sft_dataset("heldout", recipe.kinds)
        history = train_sft_trl(model, tok, train_data, heldout_data, recipe)
        return model, history["train"], {"eval_loss": history["eval"]}

    return cached_model("sft", key, train, tokenizer=tok)


#: How each question kind is asked to a base model as plain text: (question pattern, text to complete).
_PROBES = {
    "city": (r"Where is (\w+)\?", "{0} is a city in"),
    "capital": (r"What is the capital of (\w+)\?", "The capital of {0} is"),
    "arithmetic": (r"What is (\d) \+ (\d)\?", "{0} + {1} ="),
}


def fact_probe(model, tok, qas):
    """Does ``model`` complete, as plain text, the fact behind each question?

    "Where is Lyon?" becomes "Lyon is a city in", "What is the capital of Peru?" becomes
    "The capital of Peru is", "What is 3 + 4?" becomes "3 + 4 =": the phrasings of the
    pretraining corpus. A completion is correct when its first word is the question's keyword.
    Returns a DataFrame: question, kind, prompt, keyword, completion, correct. Questions of
    other kinds are skipped. Introduced in notebooks/sft.ipynb.
    """
    import pandas as pd

    from .evaluate import complete

    rows = []
    for q in qas:
        if q.kind in _PROBES:
            pattern, text = _PROBES[q.kind]
            rows.append({"question": q.question, "kind": q.kind, "keyword": q.keyword,
                         "prompt": text.format(*re.fullmatch(pattern, q.question).groups())})
    df = pd.DataFrame(rows, columns=["question", "kind", "prompt", "keyword"])
    outs = complete(model, tok, list(df["prompt"]), max_new_tokens=4, stop_at_newline=True) if len(df) else []
    df["completion"] = [o.strip() for o in outs]
    df["correct"] = [(o.split() or [""])[0].rstrip(".") == k for o, k in zip(df["completion"], df["keyword"])]
    return df
