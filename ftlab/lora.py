"""LoRA: fine-tune a model through a small low-rank update of its weight matrices.

* :class:`LoRASettings` - rank, alpha, target modules, dropout (one comment per field),
  turned into a peft ``LoraConfig`` by :meth:`LoRASettings.to_peft`;
* :func:`lora_recipe` - the SFT recipe with the learning rate that suits LoRA;
* :func:`add_lora` - a copy of a model with LoRA adapters (a peft ``PeftModel``);
* :func:`target_linears` and :func:`lora_parameter_count` - the count of LoRA parameters
  worked out by hand, to check against peft's;
* :func:`optimizer_state_bytes` - the memory AdamW really allocates for a model;
* :func:`saved_bytes` - the size on disk of ``save_pretrained`` (a full model or an adapter);
* :func:`max_logit_difference` - how far apart the logits of two models are;
* :func:`token_losses` - which tokens of the replies carry the loss.

Introduced in notebooks/lora.ipynb.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import short_traceback

__all__ = [
    "LoRASettings",
    "lora_recipe",
    "add_lora",
    "target_linears",
    "lora_parameter_count",
    "optimizer_state_bytes",
    "saved_bytes",
    "max_logit_difference",
    "token_losses",
]


@dataclass(frozen=True)
class LoRASettings:
    """The settings of the LoRA adapters added to a model.

    A frozen weight matrix ``W`` (``out x in``) is used as ``W + (alpha / r) * B @ A``, where
    ``A`` is ``r x in`` (random at the start) and ``B`` is ``out x r`` (zeros at the start).
    Introduced in notebooks/lora.ipynb.
    """

    r: int = 8  # rank of the update B @ A: the width of the bottleneck between A and B
    alpha: float = 16.0  # the update is multiplied by alpha / r (here 2)
    targets: tuple[str, ...] | str = "all-linear"  # module names to adapt, or "all-linear" (every Linear but the output layer)
    dropout: float = 0.0  # dropout on the input of A during training (0: none; the lab data is small and clean)
    trainable_token_ids: tuple[int, ...] = ()  # tokens whose embedding rows are trained as well (new chat tokens)
    rslora: bool = False  # rank-stabilized LoRA: scale the update by alpha / sqrt(r) instead of alpha / r

    @property
    def scale(self) -> float:
        """alpha / r (alpha / sqrt(r) with ``rslora``): the factor applied to ``B @ A``."""
        return self.alpha / (self.r ** 0.5 if self.rslora else self.r)

    def to_peft(self):
        """The equivalent ``peft.LoraConfig`` for a causal language model."""
        from peft import LoraConfig

        targets = self.targets if isinstance(self.targets, str) else list(self.targets)
        tokens = {"embed_tokens": list(self.trainable_token_ids)} if self.trainable_token_ids else None
        return LoraConfig(r=self.r, lora_alpha=self.alpha, target_modules=targets, lora_dropout=self.dropout,
                          bias="none", task_type="CAUSAL_LM", trainable_token_indices=tokens,
                          use_rslora=self.rslora)


def lora_recipe():
    """The recipe of the LoRA runs: :func:`ftlab.sft_recipe` with a learning rate of 5e-3
    for the lab model (the adapters start at zero and must move fast; full fine-tuning uses
    1e-3) or 2e-4 with ``FTLAB_MODEL`` set, the usual value for LoRA on a real model.
    Introduced in notebooks/lora.ipynb.
    """
    from .real import real_model_id
    from .sft import sft_recipe

    return replace(sft_recipe(), lr=2e-4 if real_model_id() else 5e-3)


@short_traceback
def add_lora(model, settings: LoRASettings | None = None, copy_model: bool = True, seed: int = 0,
             adapter_name: str = "default"):
    """``model`` with LoRA adapters, as a peft ``PeftModel``: only the adapters are trainable.

    The model is deep-copied first unless ``copy_model=False`` (peft modifies the model it
    wraps). ``seed`` fixes the random initial ``A`` matrices, so that runs are repeatable.
    Introduced in notebooks/lora.ipynb.
    """
    from peft import get_peft_model

    from .device import set_seed

    settings = settings or LoRASettings()
    set_seed(seed)
    return get_peft_model(copy.deepcopy(model) if copy_model else model, settings.to_peft(), adapter_name=adapter_name)


def target_linears(model, settings: LoRASettings | None = None) -> dict[str, tuple[int, int]]:
    """The linear layers LoRA adapts, by name, with their ``(in_features, out_features)``.

    Follows peft's rule: a layer is adapted when its name ends with one of the target names;
    ``"all-linear"`` means every ``nn.Linear`` except the output layer (``lm_head``).
    Introduced in notebooks/lora.ipynb.
    """
    import torch

    settings = settings or LoRASettings()
    found = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        last = name.split(".")[-1]
        if settings.targets == "all-linear" or last in settings.targets:
            found[name] = (module.in_features, module.out_features)
    return found


def lora_parameter_count(model, settings: LoRASettings | None = None) -> int:
    """The number of trainable parameters of LoRA, by hand: ``r * (in + out)`` per adapted
    layer (``A`` is ``r x in``, ``B`` is ``out x r``), plus one embedding row per trainable
    token. Introduced in notebooks/lora.ipynb.
    """
    settings = settings or LoRASettings()
    rows = len(settings.trainable_token_ids) * model.get_input_embeddings().embedding_dim
    return rows + sum(settings.r * (n_in + n_out) for n_in, n_out in target_linears(model, settings).values())


def optimizer_state_bytes(model) -> int:
    """Bytes of optimizer state that AdamW allocates for ``model``'s trainable parameters.

    Measured, not computed: an AdamW over the parameters with ``requires_grad`` takes one
    step with zero gradients (which leaves the weights unchanged), and the bytes of every
    state tensor are added up: two moments per parameter, plus a step counter per tensor.
    Introduced in notebooks/lora.ipynb.
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    opt = torch.optim.AdamW(params, lr=0.0, weight_decay=0.0)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    total = sum(t.numel() * t.element_size() for state in opt.state.values() for t in state.values()
                if torch.is_tensor(t))
    for p, g in zip(params, saved):
        p.grad = g
    return total


def saved_bytes(model) -> int:
    """Size on disk of ``model.save_pretrained``: the weights files (safetensors) only.

    For a ``PeftModel`` this is the adapter alone; for a transformers model, all its
    weights. Introduced in notebooks/lora.ipynb.
    """
    with tempfile.TemporaryDirectory(prefix="ftlab-size-") as folder:
        model.save_pretrained(folder)
        return sum(f.stat().st_size for f in Path(folder).rglob("*.safetensors"))


def max_logit_difference(model_a, model_b, tok, texts) -> float:
    """The largest absolute difference between the logits of two models on ``texts``.

    Introduced in notebooks/lora.ipynb.
    """
    import torch

    enc = tok(list(texts), return_tensors="pt", padding=True, padding_side="right")
    mask = enc["attention_mask"].bool()
    with torch.no_grad():
        a = model_a(**enc.to(next(model_a.parameters()).device)).logits.float().cpu()
        b = model_b(**enc.to(next(model_b.parameters()).device)).logits.float().cpu()
    return float((a - b).abs()[mask].max())


def token_losses(model, tok, conversations, batch_size: int = 64):
    """The SFT loss split by target token: for every token the assistant must write, how
    often it occurs in ``conversations`` and its mean loss (negative log-probability).

    ``conversations`` are rows with ``messages`` (e.g. :func:`ftlab.sft_dataset`). Returns
    a DataFrame sorted by share of the total loss: token, count, mean_loss, share.
    Introduced in notebooks/lora.ipynb.
    """
    import pandas as pd
    import torch

    from .sft import _collate, sft_example

    examples = [sft_example(tok, row["messages"]) for row in conversations]
    device = next(model.parameters()).device
    losses: dict[int, list[float]] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = _collate(examples[i : i + batch_size], tok.pad_token_id, device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
            labels = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
            for t, value in zip(labels[labels != -100].tolist(), nll[labels != -100].tolist()):
                losses.setdefault(t, []).append(value)
    model.train(was_training)
    total = sum(sum(v) for v in losses.values())
    df = pd.DataFrame([{"token": tok.convert_ids_to_tokens(t), "count": len(v), "mean_loss": sum(v) / len(v),
                        "share": sum(v) / total} for t, v in losses.items()])
    return df.sort_values("share", ascending=False, ignore_index=True)
