"""Learning from preferences: a reward model trained on ranked answers, and DPO.

* :func:`pairwise_loss` - the reward model's loss ``-log σ(r_chosen - r_rejected)``;
* :func:`preference_dataset` - the lab's (chosen, rejected) pairs in TRL's format;
* :class:`RewardRecipe` - the settings of one reward-model run, one comment per field;
* :func:`reward_model_from` - a causal language model with its vocabulary head replaced
  by a scalar head (``AutoModelForSequenceClassification`` with one label);
* :func:`train_reward_model` - its training with TRL's ``RewardTrainer``;
* :func:`rewards` and :func:`pair_margins` - what a reward model says of answers and pairs;
* :func:`ranking_accuracy` - the share of pairs whose margin agrees with the human ranking;
* :func:`dpo_loss` - the DPO loss and the implicit rewards, from sequence log-probabilities;
* :class:`DPORecipe` and :func:`train_dpo` - DPO with TRL's ``DPOTrainer``;
* :func:`answer_logprobs` - ``log π(answer | question)`` of a causal model, summed over the
  answer's tokens (its ``<|im_end|>`` included);
* :func:`first_token_probs` - how likely a model is to start its answer with given tokens;
* :func:`dpo_margins` - DPO's implicit rewards of a policy against its reference, per pair.

The notation, for a question ``x`` with a preferred answer ``y_w`` and a worse one ``y_l``::

    reward model:  loss = -log σ(r(x, y_w) - r(x, y_l))            σ(m) = 1 / (1 + e^-m)
    DPO:           r̂(x, y) = β (log π(y | x) - log π_ref(y | x))   implicit reward
                   loss = -log σ(r̂(x, y_w) - r̂(x, y_l))

Introduced in notebooks/reward-model.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import SYSTEM_PROMPT
from .errors import short_traceback

__all__ = [
    "pairwise_loss",
    "preference_dataset",
    "RewardRecipe",
    "reward_recipe",
    "reward_model_from",
    "train_reward_model",
    "rewards",
    "pair_margins",
    "ranking_accuracy",
    "dpo_loss",
    "DPORecipe",
    "dpo_recipe",
    "train_dpo",
    "answer_logprobs",
    "first_token_probs",
    "dpo_margins",
]


def pairwise_loss(chosen_rewards, rejected_rewards, reduction: str = "mean"):
    """The reward model's loss ``-log σ(r_chosen - r_rejected)`` (Bradley-Terry), from tensors.

    The margin ``m = r_chosen - r_rejected`` can be any real number, but ``σ(m)``, the
    probability that the model gives to the human's preference, always lies strictly
    between 0 and 1, so the loss is always positive: ``log 2`` at ``m = 0``, close to 0
    for a large positive margin, close to ``-m`` for a large negative one. Computed with
    ``logsigmoid``, which stays exact for large margins. ``reduction="none"`` returns one
    loss per pair. Introduced in notebooks/reward-model.ipynb.
    """
    import torch.nn.functional as F

    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return losses.mean() if reduction == "mean" else losses


def preference_dataset(split: str = "train", system: str | None = SYSTEM_PROMPT):
    """The lab's preference pairs of one split as a ``datasets.Dataset`` in TRL's format.

    Columns ``prompt`` (system and user messages), ``chosen`` and ``rejected`` (one
    assistant message each), built from :func:`ftlab.preference_pairs`: every ranking
    R1 > R2 > R3 gives three pairs. Introduced in notebooks/reward-model.ipynb.
    """
    from datasets import Dataset

    from .data import preference_pairs

    return Dataset.from_list([p.to_trl(system) for p in preference_pairs(split)])


@dataclass(frozen=True)
class RewardRecipe:
    """The settings of one reward-model run of :func:`train_reward_model`.

    With the defaults and the lab's SFT model, training takes about 8 s on one CPU core.
    Introduced in notebooks/reward-model.ipynb.
    """

    steps: int = 100  # optimizer steps; the learning rate decays linearly to 0 over them
    batch_size: int = 8  # preference pairs per step (each pair: two forward passes)
    lr: float = 1e-4  # peak learning rate (TRL's default for reward models)
    log_every: int = 10  # TRL reports the mean loss, accuracy and margin over this many steps
    seed: int = 0  # initial weights of the scalar head and order of the pairs


def reward_recipe() -> RewardRecipe:
    """The recipe of the notebooks: :class:`RewardRecipe` for the lab model; with
    ``FTLAB_MODEL`` set, a learning rate of 1e-5, usual for a real pretrained model.
    Introduced in notebooks/reward-model.ipynb.
    """
    from .real import real_model_id

    return RewardRecipe(lr=1e-5, steps=30) if real_model_id() else RewardRecipe()  # fewer steps: CPU cost


@short_traceback
def reward_model_from(checkpoint, tok, seed: int = 0):
    """A reward model: the checkpoint's network with a scalar head instead of its vocabulary head.

    ``checkpoint`` is a :class:`ftlab.Checkpoint` of a causal language model (e.g.
    :func:`ftlab.get_sft_model`). Its transformer layers are loaded as they are; the
    head that gave one score per token of the vocabulary is dropped, and a new linear
    layer ``score`` gives one number per sequence, read at its last token. That layer
    starts random (transformers reports ``score.weight`` as newly initialised; that is
    expected, DESIGN pitfall 9), so the untrained reward model ranks answers at random.
    Introduced in notebooks/reward-model.ipynb.
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from .device import get_device, get_dtype

    torch.manual_seed(seed)  # the random initial weights of the scalar head
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # silence the expected "score.weight newly initialized" report
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            checkpoint.path, num_labels=1, dtype=get_dtype(), use_safetensors=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tok.pad_token_id  # finds each sequence's last real token
    return model.to(get_device()).eval()


def _trainer_args(config_cls, recipe, **extra):
    """TRL settings shared by the reward and DPO trainers, as the CPU needs them (DESIGN pitfall 4)."""
    import torch

    from .device import get_device, get_dtype

    return config_cls(
        max_steps=recipe.steps,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.lr,
        lr_scheduler_type="linear",
        seed=recipe.seed,
        logging_steps=recipe.log_every,
        bf16=get_dtype() == torch.bfloat16,  # TRL's default is True: wrong on a CPU
        gradient_checkpointing=False,  # TRL's default is True: slower, useless for small models
        use_cpu=get_device().type == "cpu",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
        **extra,
    )


def _train(trainer) -> list[dict]:
    """Run a TRL trainer quietly and return its log lines (one dict per ``log_every`` steps)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # with disable_tqdm it would print every log line
    trainer.train()
    trainer.model.eval()
    return [e for e in trainer.state.log_history if "loss" in e]


@short_traceback
def train_reward_model(model, tok, train, recipe: RewardRecipe | None = None) -> list[dict]:
    """Train a reward model in place with TRL's ``RewardTrainer``; returns its log.

    ``model`` comes from :func:`reward_model_from`, ``train`` from
    :func:`preference_dataset`. TRL scores the chosen and the rejected conversation of each
    pair and minimises :func:`pairwise_loss`. Returns one dict per ``log_every`` steps:
    ``step``, ``loss``, ``accuracy`` (share of the pairs ranked right) and ``margin``
    (mean ``r_chosen - r_rejected``), averaged over those steps.
    Introduced in notebooks/reward-model.ipynb.
    """
    import tempfile

    from trl import RewardConfig, RewardTrainer

    recipe = recipe or reward_recipe()
    with tempfile.TemporaryDirectory(prefix="ftlab-reward-") as out:
        args = _trainer_args(RewardConfig, recipe, output_dir=out)
        trainer = RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tok)
        logs = _train(trainer)
    return [{"step": e["step"], "loss": e["loss"], "accuracy": e["accuracy"], "margin": e["margin"]} for e in logs]


def _conversation_ids(tok, question: str, answer: str | None, system: str | None) -> list[int]:
    """Token ids of a chat: the question, and the answer with its ``<|im_end|>`` if given,
    else the generation prompt. Exactly what TRL's trainers build."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": question})
    if answer is None:
        return list(tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])
    msgs.append({"role": "assistant", "content": answer})
    return list(tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"])


def _padded(rows: list[list[int]], pad_id: int, device):
    """Right-padded ``input_ids`` and ``attention_mask`` tensors."""
    import torch

    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (n - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows], device=device)
    return ids, mask


def rewards(model, tok, questions, answers, system: str | None = SYSTEM_PROMPT, batch_size: int = 64) -> list[float]:
    """The reward model's score of each (question, answer) conversation, as floats.

    ``questions`` and ``answers`` are lists of strings of the same length (a single
    question string is repeated for every answer). Introduced in notebooks/reward-model.ipynb.
    """
    import torch

    answers = list(answers)
    questions = [questions] * len(answers) if isinstance(questions, str) else list(questions)
    rows = [_conversation_ids(tok, q, a, system) for q, a in zip(questions, answers, strict=True)]
    device = next(model.parameters()).device
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            ids, mask = _padded(rows[i : i + batch_size], tok.pad_token_id, device)
            out += model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
    return out


def pair_margins(model, tok, pairs, system: str | None = SYSTEM_PROMPT) -> list[float]:
    """``r(chosen) - r(rejected)`` for each :class:`ftlab.data.PreferencePair`: positive when
    the reward model agrees with the human ranking. Introduced in notebooks/reward-model.ipynb.
    """
    pairs = list(pairs)
    scores = rewards(model, tok, [p.question for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
                     system)
    return [c - r for c, r in zip(scores[: len(pairs)], scores[len(pairs) :])]


def ranking_accuracy(margins) -> float:
    """The share of pairs ranked like the humans: margins ``r_chosen - r_rejected`` above 0.

    A tie (margin exactly 0, e.g. a DPO policy that is still its reference) counts as wrong.
    Introduced in notebooks/reward-model.ipynb.
    """
    margins = [float(m) for m in margins]
    return sum(m > 0 for m in margins) / max(1, len(margins))


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float = 0.1):
    """The DPO loss and the implicit rewards, from summed log-probabilities of the answers.

    Each argument is a tensor of ``log π(y | x)`` (one value per pair) under the policy
    being trained or the frozen reference. The implicit reward of an answer is
    ``β (log π(y | x) - log π_ref(y | x))``; the loss is :func:`pairwise_loss` of the
    implicit rewards of the chosen and rejected answers: the reward model's loss, with
    the policy itself in the role of the reward model. Returns ``(loss, chosen_rewards,
    rejected_rewards)``; the loss is the mean over the pairs.
    Introduced in notebooks/dpo.ipynb.
    """
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    return pairwise_loss(chosen_rewards, rejected_rewards), chosen_rewards, rejected_rewards


@dataclass(frozen=True)
class DPORecipe:
    """The settings of one DPO run of :func:`train_dpo`.

    With the defaults and the lab's SFT model, training takes about 7 s on one CPU core.
    Introduced in notebooks/dpo.ipynb.
    """

    steps: int = 50  # optimizer steps; the learning rate decays linearly to 0 over them
    batch_size: int = 8  # preference pairs per step
    lr: float = 1e-4  # peak learning rate; real models use far less (about 5e-7)
    beta: float = 0.1  # β: scale of the implicit reward; a larger β keeps the policy closer to the reference
    loss_type: tuple[str, ...] = ("sigmoid",)  # TRL's losses, summed: "sigmoid" is DPO's; add "sft" for the
    # supervised loss on the chosen answers as well
    log_every: int = 10  # TRL reports the mean loss and rewards over this many steps
    seed: int = 0  # order of the pairs in the batches


def dpo_recipe() -> DPORecipe:
    """The recipe of the notebooks: :class:`DPORecipe` for the lab model; with
    ``FTLAB_MODEL`` set, a learning rate of 5e-7, usual for DPO on a real model.
    Introduced in notebooks/dpo.ipynb.
    """
    from .real import real_model_id

    return DPORecipe(lr=5e-7, steps=20) if real_model_id() else DPORecipe()  # fewer steps: CPU cost


@short_traceback
def train_dpo(model, ref_model, tok, train, recipe: DPORecipe | None = None) -> list[dict]:
    """Train ``model`` (the policy) in place with TRL's ``DPOTrainer``; returns its log.

    ``ref_model`` is the frozen reference, usually a copy of the same model before
    training; ``train`` comes from :func:`preference_dataset`. Returns one dict per
    ``log_every`` steps: ``step``, ``loss``, ``accuracy`` (share of the pairs whose
    implicit reward ranks the chosen answer first), ``margin`` (mean implicit reward
    margin), ``logp_chosen`` and ``logp_rejected`` (mean summed log-probabilities under
    the policy). Introduced in notebooks/dpo.ipynb.
    """
    import tempfile

    from trl import DPOConfig, DPOTrainer

    recipe = recipe or dpo_recipe()
    with tempfile.TemporaryDirectory(prefix="ftlab-dpo-") as out:
        args = _trainer_args(DPOConfig, recipe, output_dir=out, beta=recipe.beta,
                              loss_type=list(recipe.loss_type))
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train, processing_class=tok)
        logs = _train(trainer)
    return [{"step": e["step"], "loss": e["loss"], "accuracy": e["rewards/accuracies"], "margin": e["rewards/margins"],
             "logp_chosen": e["logps/chosen"], "logp_rejected": e["logps/rejected"]} for e in logs]


def answer_logprobs(model, tok, questions, answers, system: str | None = SYSTEM_PROMPT, batch_size: int = 64) -> list[float]:
    """``log π(answer | question)`` for each pair of strings: the sum, over the answer's tokens
    and its ``<|im_end|>``, of the log-probability that ``model`` gives to each token.

    Introduced in notebooks/dpo.ipynb.
    """
    import torch

    questions, answers = list(questions), list(answers)
    prompts = [_conversation_ids(tok, q, None, system) for q in questions]
    fulls = [_conversation_ids(tok, q, a, system) for q, a in zip(questions, answers, strict=True)]
    device = next(model.parameters()).device
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(fulls), batch_size):
            rows = fulls[i : i + batch_size]
            ids, mask = _padded(rows, tok.pad_token_id, device)
            logp = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
            token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]  # log p of each next token
            for j, (prompt, full) in enumerate(zip(prompts[i : i + batch_size], rows)):
                assert full[: len(prompt)] == prompt, "the answer must extend the prompt's tokens"
                out.append(float(token_logp[j, len(prompt) - 1 : len(full) - 1].sum()))
    return out


def first_token_probs(model, tok, question: str, words, system: str | None = SYSTEM_PROMPT) -> dict[str, float]:
    """The probability that ``model`` starts its answer to ``question`` with each of ``words``.

    Each word must be one token of the tokenizer (e.g. ``"It"``, ``"The"``, ``" is"``).
    Introduced in notebooks/dpo.ipynb.
    """
    import torch

    ids = torch.tensor([_conversation_ids(tok, question, None, system)], device=next(model.parameters()).device)
    with torch.no_grad():
        probs = model(input_ids=ids).logits[0, -1].float().softmax(-1)
    out = {}
    for w in words:
        token = tok(w, add_special_tokens=False)["input_ids"]
        assert len(token) == 1, f"{w!r} is not a single token"
        out[w] = float(probs[token[0]])
    return out


def dpo_margins(policy, reference, tok, pairs, beta: float = 0.1, system: str | None = SYSTEM_PROMPT) -> dict:
    """DPO's view of a policy on :class:`ftlab.data.PreferencePair` s, against its reference.

    Returns a dict of lists, one value per pair: ``logp_chosen`` and ``logp_rejected``
    (under the policy), ``reward_chosen`` and ``reward_rejected`` (implicit rewards
    ``β (log π - log π_ref)``), ``margin`` (their difference) and ``loss`` (the DPO loss
    of the pair). Introduced in notebooks/dpo.ipynb.
    """
    import torch

    pairs = list(pairs)
    questions = [p.question for p in pairs] * 2
    answers = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    n = len(pairs)
    pol = torch.tensor(answer_logprobs(policy, tok, questions, answers, system))
    ref = torch.tensor(answer_logprobs(reference, tok, questions, answers, system))
    loss, rc, rr = dpo_loss(pol[:n], pol[n:], ref[:n], ref[n:], beta)
    return {"logp_chosen": pol[:n].tolist(), "logp_rejected": pol[n:].tolist(), "reward_chosen": rc.tolist(),
            "reward_rejected": rr.tolist(), "margin": (rc - rr).tolist(),
            "loss": pairwise_loss(rc, rr, reduction="none").tolist()}
