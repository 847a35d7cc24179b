"""Checks for the notebooks' "write it yourself" exercises.

Each ``check_*`` function takes the reader's version of a core function, runs it on the
cases ftlab's own tests use (ordinary inputs, edge cases, random ones), compares it with
ftlab's implementation, and returns a bilingual verdict (see :mod:`ftlab.display`): which
case failed and what was expected, or how many cases passed. It never raises on a wrong
answer, so that a notebook still runs top to bottom; ``strict=True`` raises instead
(used by the tests).

    def my_advantages(rewards, group_size):
        ...
    ftlab.exercises.check_group_advantages(my_advantages)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .display import Bilingual, say

__all__ = ["Verdict", "check_label_mask", "check_pairwise_loss", "check_group_advantages", "check_lora_forward"]


@dataclass
class Verdict:
    """The result of a check: ``ok``, the number of cases, and the first failure if any."""

    ok: bool  # every case passed
    cases: int  # number of cases run
    failure_en: str = ""  # what went wrong, in English
    failure_fr: str = ""  # the same, in French

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return self.bilingual()._repr_mimebundle_(include, exclude)

    def bilingual(self) -> Bilingual:
        """The verdict as a bilingual printed line."""
        if self.ok:
            return say("✓ all {n} cases pass: your function matches ftlab's.",
                       "✓ les {n} cas passent : votre fonction donne les mêmes résultats que celle de ftlab.",
                       n=self.cases)
        return _two(self.failure_en, self.failure_fr or self.failure_en)

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return self.bilingual().text


def _two(en: str, fr: str) -> Bilingual:
    """A verdict whose English and French texts differ (not only by their numbers)."""
    import html

    return Bilingual(f'<pre class="ftlab-say">✗ {html.escape(en)}</pre>',
                     f'<pre class="ftlab-say">✗ {html.escape(fr)}</pre>', text=f"✗ {en}")


def _run(cases, reader: Callable, reference: Callable, same: Callable, strict: bool) -> Verdict:
    """Run ``reader`` and ``reference`` on every case (a tuple of arguments and its names)."""
    for i, (args, what_en, what_fr) in enumerate(cases, start=1):
        expected = reference(*args)
        try:
            got = reader(*args)
        except Exception as exc:  # the reader's code may raise anything
            detail = f": {exc}" if str(exc) else ""
            verdict = Verdict(False, len(cases), f"case {i} ({what_en}) raised {type(exc).__name__}{detail}",
                              f"le cas {i} ({what_fr}) lève {type(exc).__name__}{detail.replace(':', ' :', 1)}")
        else:
            if same(got, expected):
                continue
            verdict = Verdict(False, len(cases), f"case {i} ({what_en}): expected {_short(expected)}, got {_short(got)}",
                              f"cas {i} ({what_fr}) : attendu {_short(expected)}, obtenu {_short(got)}")
        if strict:
            raise AssertionError(verdict.failure_en)
        return verdict
    return Verdict(True, len(cases))


def _short(value, width: int = 120) -> str:
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = [round(v, 4) for v in value.detach().float().flatten().tolist()] if value.dim() else round(
                float(value), 4)
    except ImportError:  # pragma: no cover
        pass
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _close(got, expected, tol: float = 1e-4) -> bool:
    import torch

    try:
        got_t = torch.as_tensor(got, dtype=torch.float32)
    except Exception:
        return False
    expected_t = torch.as_tensor(expected, dtype=torch.float32)
    return got_t.shape == expected_t.shape and bool(torch.allclose(got_t, expected_t, atol=tol, rtol=tol))


# -- SFT: the labels of a conversation ---------------------------------------------------


def _reference_labels(input_ids, assistant_mask):
    return [t if m else -100 for t, m in zip(input_ids, assistant_mask)]


def check_label_mask(fn: Callable, tok=None, strict: bool = False) -> Verdict:
    """Check ``fn(input_ids, assistant_mask) -> labels``: a list as long as ``input_ids``
    that copies the id where the mask is 1 and holds -100 (ignored by the loss) elsewhere.

    Cases: hand-made ones (no assistant token, only assistant tokens, two replies), and
    with ``tok``, the first training conversations of the SFT notebook compared with
    :func:`ftlab.sft_example`. Introduced in notebooks/sft.ipynb.
    """
    cases = [
        (([5, 6, 7, 8], [0, 0, 1, 1]), "a reply at the end", "une réponse à la fin"),
        (([5, 6, 7], [0, 0, 0]), "no assistant token", "aucun jeton de l'assistant"),
        (([5, 6, 7], [1, 1, 1]), "only assistant tokens", "seulement des jetons de l'assistant"),
        (([1, 2, 3, 4, 5, 6], [0, 1, 1, 0, 1, 0]), "two replies", "deux réponses"),
        (([], []), "an empty conversation", "une conversation vide"),
    ]
    if tok is not None:
        from .sft import sft_dataset, sft_example

        for row in list(sft_dataset("train"))[:3]:
            example = sft_example(tok, row["messages"])
            cases.append(((example["input_ids"], example["assistant_mask"]),
                          "a training conversation", "une conversation d'entraînement"))
    return _run(cases, lambda i, m: list(fn(list(i), list(m))), _reference_labels, lambda a, b: list(a) == list(b),
                strict)


# -- Reward model: the pairwise loss -----------------------------------------------------


def check_pairwise_loss(fn: Callable, strict: bool = False) -> Verdict:
    """Check ``fn(chosen_rewards, rejected_rewards) -> loss``: the mean of
    ``-log σ(r_chosen - r_rejected)`` over the pairs, as :func:`ftlab.pairwise_loss`.

    Cases: a zero margin (log 2), large positive and negative margins (where a naive
    ``log(sigmoid(m))`` loses precision), and random batches. Introduced in notebooks/reward-model.ipynb.
    """
    import torch

    from .preferences import pairwise_loss

    gen = torch.Generator().manual_seed(0)
    cases = [
        ((torch.tensor([0.0]), torch.tensor([0.0])), "a zero margin", "une marge nulle"),
        ((torch.tensor([2.0, 1.0]), torch.tensor([-1.0, 1.5])), "two pairs", "deux paires"),
        ((torch.tensor([60.0]), torch.tensor([-60.0])), "a large positive margin", "une grande marge positive"),
        ((torch.tensor([-60.0]), torch.tensor([60.0])), "a large negative margin", "une grande marge négative"),
    ] + [((torch.randn(8, generator=gen) * 3, torch.randn(8, generator=gen) * 3), "a random batch", "un lot aléatoire")
         for _ in range(3)]
    return _run(cases, fn, pairwise_loss, lambda a, b: _close(a, b, 1e-4) and math.isfinite(float(a)), strict)


# -- GRPO: the group-relative advantage --------------------------------------------------


def check_group_advantages(fn: Callable, strict: bool = False) -> Verdict:
    """Check ``fn(rewards, group_size) -> advantages``: each reward minus the mean of its
    group (``group_size`` consecutive rewards), divided by the group's sample standard
    deviation plus ``1e-4``, as :func:`ftlab.group_advantages`.

    Cases: the notebook's group, a group whose rewards are all equal (advantages 0, not a
    division by zero), two groups at once, and random rewards. Introduced in notebooks/grpo.ipynb.
    """
    import torch

    from .rl import group_advantages

    gen = torch.Generator().manual_seed(0)
    cases = [
        (([1.0, 1.0, 0.5, 0.0], 4), "one group of four", "un groupe de quatre"),
        (([1.0] * 8, 8), "all rewards equal", "toutes les récompenses égales"),
        (([0.0, 1.0, 0.0, 1.0, 2.0, 2.0], 3), "two groups of three", "deux groupes de trois"),
        ((torch.rand(16, generator=gen).tolist(), 8), "random rewards", "des récompenses aléatoires"),
    ]
    return _run(cases, lambda r, g: fn(list(r), g), group_advantages, lambda a, b: _close(a, b, 1e-3), strict)


# -- LoRA: a layer's forward -------------------------------------------------------------


def _reference_lora_forward(x, W, A, B, alpha, r):
    return x @ W.T + (alpha / r) * (x @ A.T @ B.T)


def check_lora_forward(fn: Callable, strict: bool = False) -> Verdict:
    """Check ``fn(x, W, A, B, alpha, r) -> h``, a LoRA layer's output for a batch of rows
    ``x`` (shape ``(n, d_in)``): ``h = x Wᵀ + (alpha / r) · x Aᵀ Bᵀ``, that is
    ``W x + (alpha / r) B A x`` for each row, with ``W`` of shape ``(d_out, d_in)``, ``A``
    ``(r, d_in)`` and ``B`` ``(d_out, r)``.

    Cases: ``B = 0`` (the layer starts as the frozen one), a rank-1 update, and random
    shapes. Introduced in notebooks/lora.ipynb.
    """
    import torch

    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen)

    cases = [
        ((rand(3, 5), rand(4, 5), rand(2, 5), torch.zeros(4, 2), 4.0, 2), "B = 0 at the start", "B = 0 au départ"),
        ((rand(2, 3), rand(3, 3), rand(1, 3), rand(3, 1), 1.0, 1), "rank 1", "rang 1"),
        ((rand(5, 8), rand(6, 8), rand(4, 8), rand(6, 4), 16.0, 4), "rank 4, alpha 16", "rang 4, alpha 16"),
        ((rand(1, 16), rand(2, 16), rand(8, 16), rand(2, 8), 8.0, 8), "one row", "une seule ligne"),
    ]
    return _run(cases, fn, _reference_lora_forward, lambda a, b: _close(a, b, 1e-4), strict)
