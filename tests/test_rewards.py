"""Guards of the GRPO helpers (ftlab/rl.py) and of the claims of docs/rl-verifiable-rewards.rst.

The reward tests use hand-made replies, including the ones a reward must NOT pay (the
reward hacks); the advantage tests use values computed by hand. The lab tests start from
the cached warm-up model (the SFT model plus a short SFT on the reply format) and run
GRPO with the notebook's recipe.
"""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")

import ftlab  # noqa: E402
from ftlab import rl  # noqa: E402

GOOD = "<think> 3 + 4 = 7</think>The answer is 7."


# -- The rewards, on hand-made replies -----------------------------------------------------------


@pytest.mark.parametrize(
    "reply, lax, strict",
    [
        (GOOD, 1.0, 1.0),  # the intended reply
        ("<think> 3 + 4 = 8</think>The answer is 8.", 1.0, 1.0),  # well formed, wrong: format is not correctness
        ("  <think> 3 + 4 = 7</think>The answer is 7.  ", 1.0, 1.0),  # surrounding spaces do not matter
        ("The answer is 7.", 0.0, 0.0),  # no block
        ("<think> 3 + 4 = 7 The answer is 7.", 0.0, 0.0),  # the block is never closed
        ("<think> 3 + 4 = 7</think>", 0.0, 0.0),  # no answer after the block
        ("<think> 3 + 4 = 7</think>   ", 0.0, 0.0),  # only spaces after the block
        ("The answer is 7.<think> 3 + 4 = 7</think>", 0.0, 0.0),  # the block must come first
        ("<think> 3 + 4</think><think>= 7</think>The answer is 7.", 0.0, 0.0),  # a second block
        ("<think></think>The answer is 7.", 1.0, 0.0),  # THE hack: an empty block
        ("<think>   </think>The answer is 7.", 1.0, 0.0),  # the same hack with spaces
    ],
)
def test_format_reward_on_crafted_replies(reply, lax, strict):
    assert rl.format_reward(reply) == lax
    assert rl.format_reward(reply, require_reasoning=True) == strict


def test_the_hack_is_detected_and_only_the_hack():
    assert rl.is_empty_reasoning("<think></think>The answer is 7.")
    assert rl.is_empty_reasoning("<think> </think>The answer is 7.")
    assert not rl.is_empty_reasoning(GOOD)
    assert not rl.is_empty_reasoning("The answer is 7.")  # no block at all is a format failure, not this hack


@pytest.mark.parametrize(
    "reply, answer, expected",
    [
        (GOOD, 7, 1.0),
        (GOOD, 8, 0.0),
        ("<think> 3 + 4 = 7</think>The answer is 8.", 7, 0.0),  # the right number in the reasoning does not count
        ("<think> 9 + 9 = 18</think>The answer is 18.", 18, 1.0),  # two digits
        ("The answer is 7.", 7, 1.0),  # correctness does not depend on the format
        ("<think></think>The answer is 7.", 7, 1.0),
        ("<think> 3 + 4 = 7</think>It is 7.", 7, 0.0),  # no "answer is": nothing to check
        ("<think> 3 + 4 = 7</think>The answer is 17.", 7, 0.0),  # a longer number is another number
        ("<think> 3 + 4 = 7</think>", 7, 0.0),
        ("<think> 1 2 3 4 5 6 7 8 9</think>The answer is 0.", 7, 0.0),  # exercise 2: "7 appears somewhere" is not enough
    ],
)
def test_correctness_reward_on_crafted_replies(reply, answer, expected):
    assert rl.correctness_reward(reply, answer) == expected


def test_split_reply_and_extract_answer():
    assert rl.split_reply(GOOD) == (" 3 + 4 = 7", "The answer is 7.")
    assert rl.split_reply("The answer is 7.") == (None, "The answer is 7.")
    assert rl.extract_answer(GOOD) == 7
    assert rl.extract_answer("<think> 1 + 1 = 2</think>I do not know.") is None


def test_the_think_tags_survive_decoding_for_the_rewards():
    """DESIGN pitfall 2: the tags are single tokens that decoding keeps, so rewards can see them."""
    tok = ftlab.lab_tokenizer()
    ids = tok(GOOD, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids(ftlab.THINK_START)
    assert tok.convert_tokens_to_ids(ftlab.THINK_END) in ids
    assert tok.decode(ids, skip_special_tokens=True) == GOOD


# -- The group-relative advantage, by hand -------------------------------------------------------


def test_advantage_of_one_success_among_four():
    # rewards 1, 0, 0, 0: mean 0.25; sample std sqrt((0.75² + 3 · 0.25²) / 3) = 0.5
    adv = rl.group_advantages([1.0, 0.0, 0.0, 0.0], group_size=4, eps=0.0)
    assert adv.tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5])


def test_advantages_are_computed_within_each_group():
    # group 1: 2, 0 -> mean 1, sample std sqrt(2); group 2: 1, 1 -> no signal (eps avoids 0 / 0)
    adv = rl.group_advantages([2.0, 0.0, 1.0, 1.0], group_size=2)
    assert adv[:2].tolist() == pytest.approx([1 / math.sqrt(2), -1 / math.sqrt(2)], rel=1e-3)
    assert adv[2:].tolist() == [0.0, 0.0]


def test_advantages_do_not_depend_on_the_scale_or_offset_of_the_rewards():
    rewards = [2.0, 1.0, 1.0, 0.0, 1.0, 2.0, 1.0, 1.0]
    adv = rl.group_advantages(rewards, group_size=8)
    assert adv.sum().item() == pytest.approx(0.0, abs=1e-5)
    assert rl.group_advantages([10 * r + 3 for r in rewards], group_size=8).tolist() == pytest.approx(adv.tolist(), rel=1e-3)
    assert adv[0].item() == pytest.approx(0.875 / math.sqrt(2.875 / 7), rel=1e-3)  # (2 - mean 1.125) / sample std


def test_a_group_that_all_succeeds_teaches_nothing():
    assert rl.group_advantages([2.0] * 8, group_size=8).tolist() == [0.0] * 8


def test_dr_grpo_advantages_are_not_scaled():
    """Dr. GRPO (TRL: scale_rewards="none"): reward minus the group's mean, no division by the std."""
    adv = rl.group_advantages([1.0, 0.0, 0.0, 0.0, 3.0, 1.0], group_size=2, scale=False)
    assert adv.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0, 1.0, -1.0])


# -- The loss: per token, per reply, or by a constant (docs/rl-verifiable-rewards.rst) ----------


def _batch():
    """Two replies, of 3 and 1 tokens (the second row padded), with advantages +1 and -1."""
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -9.0, -9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    return logp, mask, torch.tensor([1.0, -1.0])


def test_grpo_loss_by_hand():
    logp, mask, adv = _batch()
    # token terms -A log p: reply 1: 1, 2, 3; reply 2: -4
    assert rl.grpo_loss(logp, mask, adv, "dapo").item() == pytest.approx((1 + 2 + 3 - 4) / 4)  # per token
    assert rl.grpo_loss(logp, mask, adv, "grpo").item() == pytest.approx(((1 + 2 + 3) / 3 - 4 / 1) / 2)  # per reply
    assert rl.grpo_loss(logp, mask, adv, "dr_grpo", max_completion_length=3).item() == pytest.approx((6 - 4) / (2 * 3))
    with pytest.raises(ValueError):
        rl.grpo_loss(logp, mask, adv, "dr_grpo")
    with pytest.raises(ValueError):
        rl.grpo_loss(logp, mask, adv, "sum")


def test_the_three_losses_agree_up_to_a_constant_when_replies_have_one_length():
    logp = -torch.rand(4, 5)
    mask, adv = torch.ones(4, 5), torch.tensor([1.0, -0.5, 0.25, -0.75])
    dapo = rl.grpo_loss(logp, mask, adv, "dapo").item()
    assert rl.grpo_loss(logp, mask, adv, "grpo").item() == pytest.approx(dapo, rel=1e-5)
    assert rl.grpo_loss(logp, mask, adv, "dr_grpo", max_completion_length=10).item() == pytest.approx(dapo / 2, rel=1e-5)


def test_the_loop_uses_trls_defaults():
    """The chapter says the notebook's loop does what TRL's GRPOTrainer does by default: token-level
    loss (loss_type="dapo"), advantages divided by the group's std (scale_rewards="group"), no KL
    term (beta=0), one gradient step per batch of replies (num_iterations=1). A new TRL that changes
    a default fails here, not silently in the prose."""
    import dataclasses

    from trl import GRPOConfig

    defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    recipe = rl.GRPORecipe()
    assert defaults["loss_type"] == recipe.loss_type == "dapo"
    assert defaults["scale_rewards"] == "group" and recipe.scale_rewards is True
    assert defaults["beta"] == 0.0 and defaults["num_iterations"] == 1
    assert defaults["learning_rate"] == 1e-6


def test_trl_reward_functions_read_the_conversational_completions():
    fmt, correct = rl.trl_rewards(require_reasoning=True)
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "<think></think>The answer is 7."}]]
    assert fmt(completions) == [1.0, 0.0]
    assert correct(completions, answer=[7, 8]) == [1.0, 0.0]
    assert (fmt.__name__, correct.__name__) == ("format", "correctness")
    row = rl.prompt_dataset("heldout")[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and isinstance(row["answer"], int)


# -- The warm-up data ----------------------------------------------------------------------------


def test_warm_up_data_has_one_empty_block_in_two():
    rows = rl.reasoning_dataset("train", empty_every=2)
    replies = [row["messages"][-1]["content"] for row in rows]
    assert len(replies) == len(ftlab.arithmetic_problems("train"))
    assert all(rl.format_reward(r) == 1.0 for r in replies)
    empty = sum(rl.is_empty_reasoning(r) for r in replies)
    assert empty == math.ceil(len(replies) / 2)
    problems = ftlab.arithmetic_problems("train")
    assert all(rl.correctness_reward(r, p.answer) == 1.0 for r, p in zip(replies, problems))


# -- The lab: GRPO with the notebook's recipe ----------------------------------------------------


@pytest.fixture(scope="module")
def warm(lab):
    tok, _base = lab
    return tok, rl.get_reasoning_model(tok=tok)


@pytest.fixture(scope="module")
def runs(warm):
    """The two GRPO runs of the notebook: lax and strict format reward."""
    tok, model = warm
    problems = ftlab.arithmetic_problems("train")
    out = {}
    for name, recipe in (("lax", rl.grpo_recipe()), ("strict", rl.grpo_recipe(require_reasoning=True))):
        out[name] = rl.grpo_loop(copy.deepcopy(model.model), tok, problems, recipe)
    return out


def first_last(values, n=10):
    return sum(values[:n]) / n, sum(values[-n:]) / n


def first_last_rates(values, recipe, n=10):
    """The replies of the first and of the last n steps with a property, as counts (as the notebook)."""
    per_step = recipe.prompts_per_step * recipe.group_size
    return (ftlab.Rate(round(sum(values[:n]) * per_step), n * per_step),
            ftlab.Rate(round(sum(values[-n:]) * per_step), n * per_step))


def test_the_format_reward_rises_and_the_answers_do_not_improve(runs):
    """The chapter: under the lax rule the format reward goes up while skipping the reasoning does not
    help the answers (the correctness reward does not rise measurably)."""
    start, end = first_last(runs["lax"]["format"])
    assert end > start
    first, last = first_last_rates(runs["lax"]["correct"], rl.grpo_recipe())
    assert not (last.differs_from(first) and last.value > first.value)


def test_lax_format_reward_is_hacked_and_the_strict_one_is_not(runs):
    """The notebook's observed hack: with the lax rule, empty blocks spread (a difference that the counts of
    sampled replies support, and a majority at the end); with the strict one, they vanish."""
    first, last = first_last_rates(runs["lax"]["empty"], rl.grpo_recipe())
    assert last.value > 0.5 and last.value > first.value and last.differs_from(first)
    strict_start, strict_end = first_last(runs["strict"]["empty"])
    assert strict_end < 0.05 and strict_end <= strict_start


def test_correctness_rises_when_few_problems_repeat(warm):
    """The loop does learn the answers when each problem is drawn often (exercise of the chapter)."""
    tok, model = warm
    few = ftlab.arithmetic_problems("train")[::20][:4]
    recipe = rl.grpo_recipe(steps=50, require_reasoning=True)  # 30 steps gave +0.10 on one CPU: too close to call
    history = rl.grpo_loop(copy.deepcopy(model.model), tok, few, recipe)
    start, end = first_last(history["correct"], n=5)
    assert end > start + 0.1
