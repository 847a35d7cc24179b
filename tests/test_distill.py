"""Guards of the distillation losses (ftlab/distill.py) and of the claims of docs/distillation.rst.

The loss tests use small random tensors and check the formulas by hand. The lab tests use
the cached "small" base model as the teacher (pretrained once, about 30 s, shared with
the notebooks) and train "tiny" students for a few dozen steps.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import ftlab  # noqa: E402

V = 7  # vocabulary size of the hand-made examples


def random_logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# -- The losses, on small tensors --------------------------------------------------------------


def test_kl_of_a_distribution_with_itself_is_zero_at_every_temperature():
    logits = random_logits(2, 5, V)
    for tau in (0.5, 1.0, 2.0, 4.0):
        assert ftlab.kl_loss(logits, logits.clone(), temperature=tau).item() == pytest.approx(0.0, abs=1e-6)
    student = logits.clone().requires_grad_()
    ftlab.kl_loss(student, logits, temperature=2.0).backward()
    assert student.grad.abs().max().item() < 1e-6  # nothing to learn from a perfect copy


def test_kl_is_positive_and_not_symmetric():
    a, b = random_logits(1, 4, V, seed=1), random_logits(1, 4, V, seed=2)
    assert ftlab.kl_loss(a, b).item() > 0 and ftlab.kl_loss(b, a).item() > 0
    assert ftlab.kl_loss(a, b).item() != pytest.approx(ftlab.kl_loss(b, a).item(), rel=1e-3)


def test_temperature_scaled_kl_matches_the_formula_by_hand():
    """τ² · Σ_i p_T,i (log p_T,i − log p_S,i), with p = softmax(z / τ), averaged over positions."""
    student, teacher = random_logits(2, 3, V, seed=3), random_logits(2, 3, V, seed=4)
    tau = 2.5
    expected = []
    for b in range(2):
        for t in range(3):
            zs, zt = student[b, t].tolist(), teacher[b, t].tolist()
            ps = [math.exp(z / tau) / sum(math.exp(y / tau) for y in zs) for z in zs]
            pt = [math.exp(z / tau) / sum(math.exp(y / tau) for y in zt) for z in zt]
            expected.append(tau**2 * sum(q * (math.log(q) - math.log(p)) for p, q in zip(ps, pt)))
    assert ftlab.kl_loss(student, teacher, temperature=tau).item() == pytest.approx(sum(expected) / 6, rel=1e-5)
    exps = [math.exp(z / tau) for z in teacher[0, 0].tolist()]
    assert ftlab.soft_targets(teacher, tau)[0, 0].tolist() == pytest.approx([e / sum(exps) for e in exps], rel=1e-5)


def test_alpha_zero_is_the_models_own_cross_entropy():
    """α = 0: exactly the loss of ``model(input_ids, labels=labels)``, padding (-100) ignored."""
    tok = ftlab.lab_tokenizer()
    model = ftlab.build_model("tiny", tok)
    ids = torch.tensor(tok(["Lyon is a city in France.", "3 + 4 = 7."], padding=True)["input_ids"])
    labels = ids.masked_fill(ids == tok.pad_token_id, -100)
    assert (labels == -100).any(), "the example should have padding"
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
        teacher = random_logits(*out.logits.shape, seed=5)
    loss = ftlab.distillation_loss(out.logits, teacher, labels, alpha=0.0, temperature=3.0)
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-6)


def test_alpha_mixes_the_two_terms_and_masks_the_same_positions():
    student, teacher = random_logits(2, 6, V, seed=6), random_logits(2, 6, V, seed=7)
    labels = torch.randint(V, (2, 6), generator=torch.Generator().manual_seed(8))
    labels[0, 4:] = -100  # padding at the end of the first row
    kept = labels[:, 1:] != -100  # the logits at t predict labels[t + 1]
    ce = torch.nn.functional.cross_entropy(student[:, :-1][kept], labels[:, 1:][kept])
    kl = ftlab.kl_loss(student[:, :-1][kept][None], teacher[:, :-1][kept][None], temperature=2.0)
    assert ftlab.kl_loss(student, teacher, labels, 2.0).item() == pytest.approx(kl.item(), rel=1e-6)
    for alpha in (0.0, 0.3, 1.0):
        mixed = ftlab.distillation_loss(student, teacher, labels, alpha=alpha, temperature=2.0)
        assert mixed.item() == pytest.approx(alpha * kl.item() + (1 - alpha) * ce.item(), rel=1e-6)
    changed = teacher.clone()
    changed[0, 3:] += 10 * torch.randn(3, V)  # positions whose next label is -100: ignored
    assert ftlab.distillation_loss(student, changed, labels, 1.0, 2.0).item() == pytest.approx(
        ftlab.distillation_loss(student, teacher, labels, 1.0, 2.0).item(), rel=1e-6)


def test_gradient_is_tau_times_the_difference_of_soft_targets():
    """d(τ² KL)/dz_S = τ (p_S^τ − p_T^τ) per position (before the mean over positions)."""
    student = random_logits(1, 1, V, seed=9).requires_grad_()
    teacher = random_logits(1, 1, V, seed=10)
    for tau in (1.0, 3.0):
        student.grad = None
        ftlab.kl_loss(student, teacher, temperature=tau).backward()
        expected = tau * (ftlab.soft_targets(student.detach(), tau) - ftlab.soft_targets(teacher, tau))
        assert student.grad.flatten().tolist() == pytest.approx(expected.flatten().tolist(), abs=1e-6)


def test_tau_squared_keeps_the_gradient_scale_at_high_temperature():
    """Without τ² the gradient shrinks like 1/τ²; with it, it tends to (z_S − z_T) / V (logit matching)."""
    student = random_logits(1, 1, V, seed=11)
    teacher = random_logits(1, 1, V, seed=12)
    student, teacher = student - student.mean(), teacher - teacher.mean()  # zero-mean logits
    grads = {}
    for tau in (10.0, 20.0, 40.0):
        s = student.clone().requires_grad_()
        ftlab.kl_loss(s, teacher, temperature=tau).backward()
        grads[tau] = s.grad.flatten()
    limit = ((student - teacher) / V).flatten()
    for tau, g in grads.items():
        assert torch.allclose(g, limit, rtol=0.1, atol=0.1 * limit.abs().max().item()), tau
    assert grads[40.0].norm().item() == pytest.approx(grads[10.0].norm().item(), rel=0.05)


# -- The lab: teacher, student and the chapter's claims -------------------------------------------


@pytest.fixture(scope="module")
def lab():
    """Tokenizer, corpus windows, the cached "small" teacher and its logits on every window."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTLAB_DEVICE", "cpu")
        mp.delenv("FTLAB_MODEL", raising=False)
        ftlab.setup(verbose=False)
        tok = ftlab.get_tokenizer()
        teacher = ftlab.pretrain("small").model
        ids, starts = ftlab.corpus_token_ids(tok)
        stored = ftlab.window_logits(teacher, ids, starts)
        yield tok, teacher, ids, starts, stored


def test_stored_logits_are_the_teachers_own(lab):
    tok, teacher, ids, starts, stored = lab
    window = torch.cat([ids, ids])[starts[5] : starts[5] + 64]
    with torch.no_grad():
        direct = teacher(input_ids=window[None]).logits[0]
    assert torch.allclose(stored[5], direct, atol=1e-4)


def test_alpha_zero_loop_trains_like_pretraining(lab):
    """distill_loop with α = 0 is ftlab.pretrain_loop: same batches, same losses."""
    tok, _, ids, starts, stored = lab
    recipe = ftlab.DistillRecipe(alpha=0.0, steps=5, min_lr_ratio=0.1)
    a, b = ftlab.build_model("tiny", tok), ftlab.build_model("tiny", tok)
    curve = ftlab.distill_loop(a, ids, starts, recipe, evaluate=lambda m: {})
    history = ftlab.pretrain_loop(b, ids, starts, ftlab.PretrainRecipe(steps=5, lr=recipe.lr, min_lr_ratio=0.1))
    assert curve[-1]["loss"] == pytest.approx(history[-1][1], rel=1e-4)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_teacher_targets_are_nearly_one_hot_at_most_positions(lab):
    """The chapter: on this synthetic corpus the teacher is sure of most next tokens."""
    *_, stored = lab
    top = ftlab.soft_targets(stored[::7], 1.0).max(dim=-1).values
    assert (top > 0.9).float().mean().item() > 0.5


def test_teacher_forward_costs_more_than_a_student_step_in_flops(lab):
    """The chapter: per token, a teacher forward (2 P_T) costs more than a student training step (6 P_S)."""
    tok, teacher, *_ = lab
    p_teacher, p_student = ftlab.count_parameters(teacher), ftlab.count_parameters(ftlab.build_model("tiny", tok))
    assert 2 * p_teacher > 6 * p_student
    assert p_teacher > 4 * p_student


def test_training_flops_counts_6n_per_student_token_and_2n_per_teacher_token():
    """The chapter's rule of thumb, as ftlab.training_flops computes it."""
    assert ftlab.training_flops(1000, 64) == 6 * 1000 * 64
    assert ftlab.training_flops(1000, 64, teacher_params=5000) == 6 * 1000 * 64 + 2 * 5000 * 64


def test_distill_loop_counts_the_teachers_operations_only_when_it_uses_it(lab):
    tok, teacher, ids, starts, stored = lab
    n_teacher, n_student = ftlab.count_parameters(teacher), ftlab.count_parameters(ftlab.build_model("tiny", tok))
    tokens = 4 * 64
    for alpha, expected in ((0.0, 6 * n_student * tokens), (1.0, 6 * n_student * tokens + 2 * n_teacher * tokens)):
        recipe = ftlab.DistillRecipe(alpha=alpha, steps=3, batch_size=4, eval_every=3)
        curve = ftlab.distill_loop(ftlab.build_model("tiny", tok), ids, starts, recipe, stored,
                                   evaluate=lambda m: {}, teacher_params=n_teacher)
        assert curve[-1]["flops"] == 3 * expected
        assert curve[-1]["step_ms"] > 0


def test_a_hot_temperature_slows_a_small_student_down(lab):
    """The chapter: at τ = 4 the tiny student learns far more slowly than with hard labels or τ = 1."""
    tok, _, ids, starts, stored = lab
    lines = ftlab.corpus()
    ppl = {}
    for alpha, tau in [(0.0, 1.0), (1.0, 1.0), (1.0, 4.0)]:
        recipe = ftlab.DistillRecipe(alpha=alpha, temperature=tau, steps=60)
        student = ftlab.build_model("tiny", tok, seed=recipe.seed)
        ftlab.distill_loop(student, ids, starts, recipe, stored)
        ppl[(alpha, tau)] = ftlab.perplexity(student, tok, lines, batch_size=256)
    assert ppl[(1.0, 4.0)] > 2 * ppl[(0.0, 1.0)]
    assert ppl[(1.0, 4.0)] > 2 * ppl[(1.0, 1.0)]


def test_the_student_reads_faster_than_the_teacher(lab):
    """The chapter: the student is smaller and faster (best of three passes, on the same windows)."""
    tok, teacher, ids, starts, _ = lab
    windows = ftlab.corpus_windows(ids, starts)[:64]
    assert ftlab.forward_speed(ftlab.build_model("tiny", tok), windows) > 1.5 * ftlab.forward_speed(teacher, windows)
