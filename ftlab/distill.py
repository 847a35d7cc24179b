"""Knowledge distillation: a small *student* learns from a larger *teacher*'s probabilities.

* :func:`soft_targets` - the teacher's probabilities softened by a temperature;
* :func:`kl_loss` - the temperature-scaled KL divergence ``τ² · KL(p_T^τ || p_S^τ)``;
* :func:`distillation_loss` - its mix with the ordinary cross-entropy on the hard labels;
* :func:`soft_target_table` - a model's most likely next tokens at several temperatures;
* :class:`DistillRecipe` - the settings of one student run, one comment per field;
* :func:`corpus_windows` - every window of the corpus a training step can draw;
* :func:`window_logits` - a model's logits on every training window, computed once;
* :func:`forward_speed` - how many tokens per second a model reads (median over repeats);
* :func:`training_flops` - the compute of a training step, counted in operations (FLOPs);
* :func:`distill_loop` - pretraining of a student on the lab corpus, with hard labels,
  soft targets or a mix of both, timed step by step.

The notation, for one position of a text (``z`` are logits, ``V`` the vocabulary)::

    p^τ_i = exp(z_i / τ) / Σ_j exp(z_j / τ)                         softmax at temperature τ
    KL(p_T^τ || p_S^τ) = Σ_i p^τ_T,i · (log p^τ_T,i - log p^τ_S,i)
    loss = α · τ² · KL(p_T^τ || p_S^τ) + (1 - α) · CE(y, p_S)         y: the hard label

Introduced in notebooks/distillation.ipynb.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = [
    "DistillRecipe",
    "soft_targets",
    "kl_loss",
    "distillation_loss",
    "soft_target_table",
    "corpus_windows",
    "window_logits",
    "forward_speed",
    "training_flops",
    "distill_loop",
]


@dataclass(frozen=True)
class DistillRecipe:
    """The settings of one student run of :func:`distill_loop`.

    The batches and the optimizer are those of the lab's pretraining
    (:func:`ftlab.pretrain_loop`), so that runs differ only by their loss. The learning
    rate stays constant after the warm-up by default.
    Introduced in notebooks/distillation.ipynb.
    """

    alpha: float = 0.0  # weight of the distillation term: 0 = hard labels only, 1 = teacher only
    temperature: float = 1.0  # τ: above 1 the teacher's distribution is flatter (softer targets)
    steps: int = 200  # optimizer steps; each sees batch_size windows of seq_len tokens
    batch_size: int = 16  # windows per step
    seq_len: int = 64  # tokens per window; each window starts at the start of a corpus line
    lr: float = 6e-3  # learning rate (the "tiny" preset's pretraining rate)
    warmup_steps: int = 20  # linear warm-up from 0 to lr
    min_lr_ratio: float = 1.0  # lr x this at the end of a cosine decay; 1 = constant lr, so that
    # curves of runs of different costs compare at any step or second, not only at their end
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 1.0  # gradient norm clipping
    seed: int = 0  # seeds the student's initial weights and the order of the batches
    eval_every: int = 25  # measure the student every this many steps (not counted as training time)


def soft_targets(logits, temperature: float = 1.0):
    """Probabilities ``softmax(logits / τ)`` over the last dimension.

    ``τ = 1`` gives the model's own distribution; a larger ``τ`` flattens it, so that the
    small probabilities of the wrong tokens become visible; ``τ → 0`` tends to the one-hot
    vector of the most probable token. Introduced in notebooks/distillation.ipynb.
    """
    return (logits.float() / temperature).softmax(dim=-1)


def _next_labels(labels):
    """The label that each position predicts: ``labels`` moved one step left, -100 at the end.

    transformers scores the logits at position t against ``labels[t + 1]``. Moving the
    labels, not the logits, keeps the logits as they are (no copy of a ``V``-wide tensor).
    """
    import torch.nn.functional as F

    return F.pad(labels[:, 1:], (0, 1), value=-100)


def kl_loss(student_logits, teacher_logits, labels=None, temperature: float = 1.0):
    """Temperature-scaled distillation loss: the mean over positions of ``τ² · KL(p_T^τ || p_S^τ)``.

    ``student_logits`` and ``teacher_logits`` have the shape ``(batch, length, V)``.
    With ``labels`` (``(batch, length)``, transformers' convention: unshifted, -100 =
    ignored, e.g. padding or prompt tokens), the logits at position t count where
    ``labels[t + 1]`` is not -100, as in the model's own loss; without, every position counts.

    The factor ``τ²`` keeps the size of the gradient independent of τ: the gradient of
    ``KL(p_T^τ || p_S^τ)`` with respect to the student's logits is ``(p_S^τ - p_T^τ) / τ``,
    and the differences of probabilities shrink like ``1 / τ`` as τ grows (Hinton et al., 2015).
    The KL divergence is 0 when the two distributions are equal, and positive otherwise.
    Introduced in notebooks/distillation.ipynb.
    """
    log_p_student = (student_logits.float() / temperature).log_softmax(dim=-1)
    log_p_teacher = (teacher_logits.float() / temperature).log_softmax(dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)  # one value per position
    if labels is None:
        return temperature**2 * kl.mean()
    keep = _next_labels(labels) != -100
    return temperature**2 * (kl * keep).sum() / keep.sum()


def distillation_loss(student_logits, teacher_logits, labels, alpha: float = 0.5, temperature: float = 1.0):
    """``α · τ² · KL(p_T^τ || p_S^τ) + (1 - α) · CE(labels, p_S)``, averaged over the kept positions.

    The cross-entropy uses the hard labels and the student's distribution at τ = 1, exactly
    as ``model(input_ids, labels=labels).loss`` does; the KL term uses the teacher's
    distribution softened by τ (see :func:`kl_loss`). Labels -100 are ignored by both terms.
    ``α = 0`` is ordinary training, ``α = 1`` learns from the teacher only.
    Introduced in notebooks/distillation.ipynb.
    """
    import torch.nn.functional as F

    kl = kl_loss(student_logits, teacher_logits, labels, temperature) if alpha > 0 else 0.0
    ce = F.cross_entropy(student_logits.float().flatten(0, 1), _next_labels(labels).flatten()) if alpha < 1 else 0.0
    return alpha * kl + (1 - alpha) * ce


def soft_target_table(model, tok, prompt: str, temperatures=(1.0, 2.0, 4.0), k: int = 5):
    """The ``k`` most likely next tokens after ``prompt``, with their probability at each temperature.

    Returns a DataFrame: token (spaces shown as ``␣``), then one column of probabilities
    per temperature, named ``"τ=1"``, ``"τ=2"``... Introduced in notebooks/distillation.ipynb.
    """
    import pandas as pd
    import torch

    from .evaluate import show_token

    ids = tok(prompt, return_tensors="pt")["input_ids"].to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    model.train(was_training)
    top = logits.topk(k).indices
    table = {"token": [show_token(tok.decode([i])) for i in top.tolist()]}
    for t in temperatures:
        table[f"τ={t:g}"] = soft_targets(logits, t)[top].tolist()
    return pd.DataFrame(table)


def corpus_windows(token_ids, line_starts, seq_len: int = 64):
    """Every window a training step can draw: ``seq_len`` tokens from each line start.

    ``token_ids`` and ``line_starts`` come from :func:`ftlab.corpus_token_ids`; the stream
    wraps around, as in :func:`ftlab.pretrain_loop`. Returns a ``(len(line_starts), seq_len)``
    tensor of token ids. Introduced in notebooks/distillation.ipynb.
    """
    import torch

    stream = torch.cat([token_ids, token_ids[:seq_len]])
    return stream[line_starts[:, None] + torch.arange(seq_len)]


def window_logits(model, token_ids, line_starts, seq_len: int = 64, batch_size: int = 32):
    """A model's logits on every window a student run can draw, computed once.

    A run draws its windows among ``len(line_starts)`` possible ones (one per corpus line),
    so the teacher's outputs on all of them can be stored and looked up at every step
    (``stored[pick]`` for the windows ``pick`` of a batch). Returns a
    ``(len(line_starts), seq_len, V)`` float32 tensor on the CPU.
    Introduced in notebooks/distillation.ipynb.
    """
    import torch

    device = next(model.parameters()).device
    windows = corpus_windows(token_ids, line_starts, seq_len)
    model.eval()
    with torch.no_grad():
        parts = [model(input_ids=windows[i : i + batch_size].to(device)).logits.float().cpu()
                 for i in range(0, len(windows), batch_size)]
    return torch.cat(parts)


def forward_speed(model, windows, batch_size: int = 16, repeats: int = 5) -> float:
    """Tokens per second that ``model`` reads in forward passes over ``windows`` (a 2-D tensor of ids).

    The windows are read ``repeats`` times, in batches of ``batch_size``, and the median
    pass counts: one pass slowed down (or not) by other programs on a shared machine does
    not decide the result. Introduced in notebooks/distillation.ipynb.
    """
    import statistics

    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    passes = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(windows), batch_size):
                model(input_ids=windows[i : i + batch_size].to(device))
            passes.append(time.perf_counter() - start)
    model.train(was_training)
    return windows.numel() / statistics.median(passes)


def training_flops(student_params: int, tokens: int, teacher_params: int = 0) -> float:
    """The operations (FLOPs) of one training step on ``tokens`` tokens, by the usual rule of thumb.

    A forward pass costs about ``2 N`` operations per token for a model of ``N`` parameters
    (one multiplication and one addition per weight), and a training step about ``6 N``
    (the backward pass costs twice the forward). A distillation step adds the teacher's
    forward pass, ``2 N_teacher`` per token::

        6 · N_student · tokens  +  2 · N_teacher · tokens

    The attention scores (small for short windows) and the loss over the vocabulary are left
    out. Unlike a wall-clock time, the count does not depend on the machine or on what else
    runs on it. Introduced in notebooks/distillation.ipynb.
    """
    return 6.0 * student_params * tokens + 2.0 * teacher_params * tokens


def distill_loop(student, token_ids, line_starts, recipe: DistillRecipe, stored_logits=None,
                 teacher_seconds_per_step: float = 0.0, evaluate=None, teacher_params: int = 0) -> list[dict]:
    """Train ``student`` in place on the corpus windows; returns its learning curve.

    Each step draws ``batch_size`` windows exactly as :func:`ftlab.pretrain_loop` does
    (same seeded generator, same learning-rate schedule, AdamW), and minimises
    :func:`distillation_loss` with the teacher's logits looked up in ``stored_logits``
    (from :func:`window_logits`; not needed when ``recipe.alpha`` is 0).

    The compute time of a step is measured around the student's forward and backward
    passes and the optimizer step; a distillation step adds ``teacher_seconds_per_step``,
    the time the teacher needs to score one batch, since a real run pays for it.
    The compute is also counted in operations (:func:`training_flops`): ``6 N`` per token
    for the student, plus ``2 N`` per token for the teacher (``teacher_params``) in a step
    that uses it. ``evaluate(student)``, called every ``eval_every`` steps and at the end
    (its time is not counted), returns a dict of measures. Returns one dict per measurement:
    ``{"step", "seconds", "step_ms", "flops", "loss", **evaluate(student)}``, where ``seconds``
    is the cumulated time, ``step_ms`` the median time of the student's steps so far (the
    teacher excluded) and ``flops`` the cumulated operations. Introduced in notebooks/distillation.ipynb.
    """
    import statistics

    import torch

    from .models import _lr_at

    if recipe.alpha > 0 and stored_logits is None:
        raise ValueError("distill_loop: a recipe with alpha > 0 needs the teacher's stored_logits")
    device = next(student.parameters()).device
    windows = corpus_windows(token_ids, line_starts, recipe.seq_len)
    gen = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.AdamW(student.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=recipe.weight_decay)
    curve: list[dict] = []
    seconds = 0.0
    step_times: list[float] = []
    flops_per_step = training_flops(sum(p.numel() for p in student.parameters()), recipe.batch_size * recipe.seq_len,
                                    teacher_params if recipe.alpha > 0 else 0)
    student.train()
    for step in range(1, recipe.steps + 1):
        start = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step - 1, recipe)
        pick = torch.randint(len(line_starts), (recipe.batch_size,), generator=gen)
        batch = windows[pick].to(device)
        logits = student(input_ids=batch).logits
        teacher = stored_logits[pick].to(device) if recipe.alpha > 0 else None
        loss = distillation_loss(logits, teacher, batch, recipe.alpha, recipe.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), recipe.grad_clip)
        opt.step()
        step_times.append(time.perf_counter() - start)
        seconds += step_times[-1] + (teacher_seconds_per_step if recipe.alpha > 0 else 0.0)
        if evaluate is not None and (step % recipe.eval_every == 0 or step == recipe.steps):
            curve.append({"step": step, "seconds": seconds, "step_ms": 1000 * statistics.median(step_times),
                          "flops": step * flops_per_step, "loss": float(loss.detach()), **evaluate(student)})
            student.train()
    student.eval()
    return curve
