"""Guards of the preference losses (ftlab/preferences.py) and of the claims of docs/rlhf.rst.

The loss tests check the formulas by hand on small tensors, including the analysis the
chapter makes of -log σ(m). The lab tests start from the cached SFT model (trained once by
the SFT notebook, about 10 s otherwise) and train a reward model and two DPO policies with
the notebooks' recipes, about 30 s in all on one core.
"""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import mean

import pytest

torch = pytest.importorskip("torch")

import ftlab  # noqa: E402


def loss_at(m: float) -> float:
    return ftlab.pairwise_loss(torch.tensor([m]), torch.tensor([0.0])).item()


# -- The reward model's loss -log σ(m) -------------------------------------------------------------


def test_pairwise_loss_at_known_margins():
    assert loss_at(0.0) == pytest.approx(math.log(2), rel=1e-6)  # a tie: σ = 1/2
    for m in (-3.0, -1.0, 0.5, 2.0, 4.0):
        assert loss_at(m) == pytest.approx(math.log(1 + math.exp(-m)), rel=1e-6)  # -log σ(m) = log(1 + e^-m)
    chosen, rejected = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([1.0, 1.0, 0.3])
    expected = [math.log(1 + math.exp(-m)) for m in (1.0, -2.0, 0.0)]
    assert ftlab.pairwise_loss(chosen, rejected, reduction="none").tolist() == pytest.approx(expected, rel=1e-6)
    assert ftlab.pairwise_loss(chosen, rejected).item() == pytest.approx(sum(expected) / 3, rel=1e-6)


def test_pairwise_loss_is_always_positive_and_decreasing():
    """Seed 003 claims a negative loss for a negative margin: σ is in (0, 1), so -log σ > 0 always."""
    margins = torch.linspace(-40, 15, 2201)
    losses = ftlab.pairwise_loss(margins, torch.zeros_like(margins), reduction="none")
    sigma = torch.sigmoid(margins[margins > -15])
    assert (sigma > 0).all() and (sigma < 1).all()
    assert torch.isfinite(losses).all() and (losses > 0).all()
    assert (losses[1:] < losses[:-1]).all()  # strictly decreasing in the margin


def test_pairwise_loss_limits():
    assert loss_at(10.0) < 1e-4  # tends to 0 as the margin grows
    assert loss_at(-30.0) == pytest.approx(30.0, rel=1e-6)  # ~ -m for a large negative margin: no overflow
    assert loss_at(50.0) >= 0.0


def test_pairwise_loss_gradient_is_minus_sigma_of_minus_m():
    """dL/dm = -(1 - σ(m)) = -σ(-m): about -1 for a wrong pair, about 0 for a well-ranked one."""
    m = torch.tensor([-4.0, 0.0, 4.0], requires_grad=True)
    ftlab.pairwise_loss(m, torch.zeros(3), reduction="none").sum().backward()
    assert m.grad.tolist() == pytest.approx((-torch.sigmoid(-m.detach())).tolist(), rel=1e-6)
    assert m.grad[1].item() == pytest.approx(-0.5)


def test_only_differences_of_rewards_count():
    chosen, rejected = torch.tensor([0.2, 1.5]), torch.tensor([-0.4, 2.0])
    shifted = ftlab.pairwise_loss(chosen + 100.0, rejected + 100.0)
    assert shifted.item() == pytest.approx(ftlab.pairwise_loss(chosen, rejected).item(), rel=1e-5)


def test_ranking_accuracy_counts_ties_as_wrong():
    assert ftlab.ranking_accuracy([1.0, -1.0, 0.0, 2.0]) == 0.5
    assert ftlab.ranking_accuracy([0.0] * 4) == 0.0


# -- DPO ----------------------------------------------------------------------------------------


def test_dpo_loss_at_the_start_is_log_2():
    """Policy = reference: every implicit reward is 0, every margin 0, the loss log 2."""
    logp_chosen, logp_rejected = torch.tensor([-3.0, -10.0]), torch.tensor([-7.0, -2.0])
    loss, rc, rr = ftlab.dpo_loss(logp_chosen, logp_rejected, logp_chosen.clone(), logp_rejected.clone(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-6)
    assert rc.abs().max().item() == 0.0 and rr.abs().max().item() == 0.0


def test_dpo_loss_matches_the_formula_by_hand():
    pc, pr, rc_, rr_ = torch.tensor([-5.0]), torch.tensor([-9.0]), torch.tensor([-6.0]), torch.tensor([-7.0])
    beta = 0.5
    margin = beta * ((-5.0) - (-6.0)) - beta * ((-9.0) - (-7.0))  # 0.5 + 1.0
    loss, chosen_reward, rejected_reward = ftlab.dpo_loss(pc, pr, rc_, rr_, beta)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-margin)), rel=1e-6)
    assert chosen_reward.item() == pytest.approx(0.5) and rejected_reward.item() == pytest.approx(-1.0)


def test_dpo_rewards_a_gap_even_when_both_answers_become_less_likely():
    """The chapter: lowering both log-probabilities, the rejected one more, lowers the loss."""
    ref_c, ref_r = torch.tensor([-10.0]), torch.tensor([-20.0])
    start, _, _ = ftlab.dpo_loss(ref_c, ref_r, ref_c, ref_r)
    both_down, rc, _ = ftlab.dpo_loss(ref_c - 5.0, ref_r - 30.0, ref_c, ref_r)
    assert both_down.item() < start.item() and rc.item() < 0


# -- Models: the scalar head and the log-probabilities ---------------------------------------------


@pytest.fixture(scope="module")
def sft(lab):
    """The lab tokenizer and the cached SFT model (conftest's ``lab``: CPU, no FTLAB_MODEL)."""
    tok, base = lab
    yield tok, ftlab.get_sft_model(base, tok)


def test_reward_model_has_a_scalar_head_instead_of_the_vocabulary(sft):
    tok, ckpt = sft
    model = ftlab.reward_model_from(ckpt, tok)
    assert model.score.out_features == 1 and model.score.in_features == model.config.hidden_size
    assert ckpt.model.get_output_embeddings().out_features == len(tok)
    body, lm_body = dict(model.model.named_parameters()), dict(ckpt.model.model.named_parameters())
    assert body.keys() == lm_body.keys()
    assert all(torch.equal(body[k], lm_body[k]) for k in body)  # the transformer layers are the SFT model's


def test_reward_is_read_at_the_last_real_token(sft):
    """A short conversation gets the same reward alone and right-padded in a batch with a longer one."""
    tok, ckpt = sft
    model = ftlab.reward_model_from(ckpt, tok, seed=3)
    alone = ftlab.rewards(model, tok, "Where is Lyon?", ["It is in France."])
    batch = ftlab.rewards(model, tok, "Where is Lyon?", ["It is in France.", "It is a place on the map, I think."])
    assert batch[0] == pytest.approx(alone[0], abs=1e-5)


def test_answer_logprobs_is_the_models_own_loss_on_the_answer(sft):
    """Sum of log p over the answer and its <|im_end|> = -(SFT loss x number of answer tokens)."""
    tok, ckpt = sft
    messages = ftlab.data.conversations(ftlab.qa_pairs("heldout", kinds=("city",))[:1])[0]["messages"]
    example = ftlab.sft_example(tok, messages)
    n = sum(label != -100 for label in example["labels"])
    with torch.no_grad():
        loss = ckpt.model(input_ids=torch.tensor([example["input_ids"]]), labels=torch.tensor([example["labels"]])).loss
    logp = ftlab.answer_logprobs(ckpt.model, tok, [messages[1]["content"]], [messages[2]["content"]])[0]
    assert logp == pytest.approx(-loss.item() * n, rel=1e-4)


# -- The lab: what the chapter claims -------------------------------------------------------------


def test_trained_reward_model_ranks_heldout_pairs_but_not_facts(sft):
    """The chapter: held-out accuracy far above chance after training; ranked answers ordered; a wrong
    country scores like the right one (no ranking contrasted them)."""
    tok, ckpt = sft
    model = ftlab.reward_model_from(ckpt, tok, seed=0)
    heldout = ftlab.preference_pairs("heldout")
    ftlab.train_reward_model(model, tok, ftlab.preference_dataset("train"), ftlab.RewardRecipe())
    assert ftlab.ranking_accuracy(ftlab.pair_margins(model, tok, heldout)) >= 0.9
    rankings = ftlab.rankings("heldout")
    questions = [r.question for r in rankings]
    correct, vague, off_topic = (mean(ftlab.rewards(model, tok, questions, [r.answers[i] for r in rankings]))
                                 for i in range(3))
    assert correct > vague > off_topic
    wrong = mean(ftlab.rewards(model, tok, questions, ["It is in Peru." if "Peru" not in r.answers[0] else
                                                       "It is in Egypt." for r in rankings]))
    assert abs(correct - wrong) < 0.2 * (correct - vague)


def test_dpo_widens_margins_lowers_chosen_logps_and_damages_other_answers(sft):
    """The chapter: DPO's held-out margins rise, the chosen answers become less likely, additions
    (no pair covers them) do not improve; an SFT term on the chosen answers keeps them."""
    tok, ckpt = sft
    reference = ckpt.model
    heldout = ftlab.preference_pairs("heldout")
    additions = ftlab.qa_pairs(None, kinds=("arithmetic",))
    recipe = ftlab.DPORecipe()
    before = ftlab.dpo_margins(reference, reference, tok, heldout, recipe.beta)
    sft_additions = ftlab.evaluate_chat(reference, tok, additions).exact

    policy = ftlab.get_sft_model().model  # a fresh copy
    ftlab.train_dpo(policy, reference, tok, ftlab.preference_dataset("train"), recipe)
    after = ftlab.dpo_margins(policy, reference, tok, heldout, recipe.beta)
    assert max(abs(m) for m in before["margin"]) == 0.0
    assert mean(after["margin"]) > 0.5 and ftlab.ranking_accuracy(after["margin"]) > 0.8
    assert mean(after["logp_rejected"]) < mean(before["logp_rejected"]) - 5
    assert mean(after["logp_chosen"]) < mean(before["logp_chosen"])
    # Whether plain DPO also breaks the additions depends on the SFT model it starts from, which
    # differs from one CPU to another (seen: 39 % -> 0 % on one machine, 15 % -> 15 % on another):
    # the test holds what every run showed, that DPO does not make them better.
    assert ftlab.evaluate_chat(policy, tok, additions).exact <= sft_additions + 0.05

    with_sft = ftlab.get_sft_model().model
    ftlab.train_dpo(with_sft, reference, tok, ftlab.preference_dataset("train"), replace(recipe, loss_type=("sigmoid", "sft")))
    assert mean(ftlab.dpo_margins(with_sft, reference, tok, heldout, recipe.beta)["margin"]) > 0
    assert ftlab.evaluate_chat(with_sft, tok, additions).exact > sft_additions - 0.1
