"""Reinforcement learning with verifiable rewards: GRPO on the lab's additions.

* :func:`split_reply` - a reply cut into its reasoning (inside ``<think>...</think>``) and its answer;
* :func:`format_reward` - 1 if the reply has the ``<think>`` format; with
  ``require_reasoning=True`` the reasoning must also be non-empty (the guard against the
  reward hacking the notebook observes);
* :func:`correctness_reward` - 1 if the answer after ``</think>`` is the right number;
* :func:`group_advantages` - GRPO's group-relative advantage ``(r - mean) / std`` within each group
  (``scale=False``: ``r - mean``, as Dr. GRPO);
* :func:`grpo_loss` - the policy-gradient loss of one batch of replies, normalized per token of the
  batch (TRL's default, ``loss_type="dapo"``), per reply (the GRPO paper, ``"grpo"``) or by a
  constant (Dr. GRPO, ``"dr_grpo"``);
* :func:`reasoning_example` - an addition written in the reasoning format, for the warm-up SFT;
* :func:`get_reasoning_model` - the SFT model after a short warm-up on that format, cached;
* :class:`GRPORecipe` - the settings of one GRPO run, one comment per field (:func:`grpo_recipe`
  gives the notebook's, adapted to ``FTLAB_MODEL``);
* :func:`sample_groups` - a group of sampled replies for each prompt, with their tokens;
* :func:`grpo_loop` - GRPO as a plain PyTorch loop, with each reward component logged;
* :func:`evaluate_reasoning` - accuracy, format and empty-reasoning rate of greedy replies;
* :func:`prompt_dataset` and :func:`trl_rewards` - the same problems and rewards in the form TRL's
  ``GRPOTrainer`` takes.

The reply format, one line, the lab's tags being single tokens (DESIGN pitfall 2)::

    <think>3 + 4 = 7</think>The answer is 7.

Introduced in notebooks/grpo.ipynb.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass

from .errors import short_traceback
from .tokenizer import THINK_END, THINK_START

__all__ = [
    "RL_CODE_VERSION",
    "split_reply",
    "extract_answer",
    "format_reward",
    "correctness_reward",
    "is_empty_reasoning",
    "group_advantages",
    "LOSS_TYPES",
    "grpo_loss",
    "reasoning_example",
    "reasoning_dataset",
    "WarmupRecipe",
    "warmup_recipe",
    "get_reasoning_model",
    "GRPORecipe",
    "grpo_recipe",
    "sample_groups",
    "grpo_loop",
    "evaluate_reasoning",
    "prompt_dataset",
    "trl_rewards",
]

#: Part of the cache key of :func:`get_reasoning_model`: bump it when the warm-up changes.
RL_CODE_VERSION = "3"

_THINK = re.compile(re.escape(THINK_START) + r"(.*?)" + re.escape(THINK_END), re.DOTALL)
_ANSWER = re.compile(r"answer is (-?\d+)")


def split_reply(text: str) -> tuple[str | None, str]:
    """``(reasoning, answer)`` of a reply: the text inside the first ``<think>...</think>``
    block and everything after it. A reply that does not START with a complete block has
    no reasoning (``None``) and its whole text is the answer.
    Introduced in notebooks/grpo.ipynb.
    """
    text = text.strip()
    m = _THINK.match(text)
    if m is None:
        return None, text
    return m.group(1), text[m.end():]


def extract_answer(text: str) -> int | None:
    """The number after "answer is" in the answer part of a reply, or ``None``.

    ``"<think>3 + 4 = 7</think>The answer is 7."`` gives 7. Introduced in notebooks/grpo.ipynb.
    """
    _reasoning, answer = split_reply(text)
    m = _ANSWER.search(answer)
    return int(m.group(1)) if m else None


def format_reward(text: str, require_reasoning: bool = False) -> float:
    """1.0 if the reply is a ``<think>...</think>`` block followed by a non-empty answer, else 0.0.

    With ``require_reasoning=False`` an empty block, ``<think></think>``, passes: the
    loophole that the notebook watches GRPO find. With ``require_reasoning=True`` the
    block must contain something other than spaces. Introduced in notebooks/grpo.ipynb.
    """
    reasoning, answer = split_reply(text)
    if reasoning is None or not answer.strip() or THINK_START in answer or THINK_END in answer:
        return 0.0
    if require_reasoning and not reasoning.strip():
        return 0.0
    return 1.0


def correctness_reward(text: str, answer: int) -> float:
    """1.0 if the reply's answer (see :func:`extract_answer`) equals ``answer``, else 0.0.

    A rule anyone can check: no model judges the reply. Introduced in notebooks/grpo.ipynb.
    """
    return 1.0 if extract_answer(text) == answer else 0.0


def is_empty_reasoning(text: str) -> bool:
    """True for a reply whose ``<think>`` block is there but empty: the reward hack.

    Introduced in notebooks/grpo.ipynb.
    """
    reasoning, _answer = split_reply(text)
    return reasoning is not None and not reasoning.strip()


def group_advantages(rewards, group_size: int, eps: float = 1e-4, scale: bool = True):
    """GRPO's advantage: each reward minus the mean of its group, divided by the group's std.

    ``rewards`` is a flat sequence whose consecutive blocks of ``group_size`` values are the
    replies to one prompt. The standard deviation is the sample one (divided by n - 1), as
    in TRL; ``eps`` avoids a division by zero. A group whose replies all earn the same
    reward gets advantages of 0: it teaches nothing. ``scale=False`` skips the division, as
    Dr. GRPO recommends (TRL: ``scale_rewards="none"``); the default is TRL's
    ``scale_rewards="group"``. Returns a float tensor of the same length.
    Introduced in notebooks/grpo.ipynb.
    """
    import torch

    r = torch.as_tensor(rewards, dtype=torch.float32).view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if not scale:
        return centred.view(-1)
    std = r.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(centred[:, :1])
    return (centred / (std + eps)).view(-1)


#: How :func:`grpo_loss` averages the per-token terms; the names are those of TRL's ``GRPOConfig.loss_type``.
LOSS_TYPES = ("dapo", "grpo", "dr_grpo")


def grpo_loss(logp, mask, advantages, loss_type: str = "dapo", max_completion_length: int | None = None):
    """The GRPO loss of one batch of replies sampled by the model being trained (one gradient step
    per batch, so PPO's ratio is 1 and its clipping never acts; no KL term).

    ``logp`` holds the log-probability of each reply token (replies x tokens), ``mask`` is 1
    on the reply's tokens, ``advantages`` has one value per reply. Every token of reply i
    gets the term ``-A_i log π(token)``; ``loss_type`` says how they are averaged:

    * ``"dapo"`` (TRL's default): the sum over every token of the batch, divided by the number
      of tokens, so each token weighs the same and a long reply weighs more than a short one
      (DAPO's token-level loss);
    * ``"grpo"``: the mean over each reply's tokens, then the mean over the replies, as in the
      GRPO paper, so each reply weighs the same and the tokens of a short reply weigh more;
    * ``"dr_grpo"``: the sum divided by a constant, replies x ``max_completion_length``
      (Dr. GRPO), which removes the dependence on the lengths altogether.

    With replies of equal length, the three differ only by a constant factor.
    Introduced in notebooks/grpo.ipynb.
    """
    mask = mask.float()
    per_token = -advantages.unsqueeze(1) * logp * mask
    if loss_type == "dapo":
        return per_token.sum() / mask.sum().clamp(min=1)
    if loss_type == "grpo":
        return (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    if loss_type == "dr_grpo":
        if not max_completion_length:
            raise ValueError("loss_type='dr_grpo' divides by max_completion_length: give it")
        return per_token.sum() / (mask.shape[0] * max_completion_length)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def reasoning_example(problem, empty: bool = False) -> dict:
    """One :class:`ftlab.data.ArithmeticProblem` as a conversation whose reply reasons first:
    ``<think>3 + 4 = 7</think>The answer is 7.``; with ``empty=True`` the block is left empty:
    ``<think></think>The answer is 7.``. Introduced in notebooks/grpo.ipynb.
    """
    from .data import SYSTEM_PROMPT

    # " 3 + 4 = 7": the space makes the digits the same tokens as in the question ("Ġ3")
    reasoning = "" if empty else " " + problem.reasoning
    reply = f"{THINK_START}{reasoning}{THINK_END}The answer is {problem.answer}."
    return {"messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": problem.question},
                         {"role": "assistant", "content": reply}]}


def reasoning_dataset(split: str = "train", empty_every: int = 0):
    """The additions of one split as reasoning conversations (a ``datasets.Dataset``).

    With ``empty_every=k > 0``, one reply in k (every k-th problem) has an empty ``<think>``
    block, as in a hastily assembled data set. Introduced in notebooks/grpo.ipynb.
    """
    from datasets import Dataset

    from .data import arithmetic_problems

    problems = arithmetic_problems(split)
    return Dataset.from_list([reasoning_example(p, empty=bool(empty_every) and i % empty_every == 0)
                              for i, p in enumerate(problems)])


@dataclass(frozen=True)
class WarmupRecipe:
    """The short SFT that teaches the reply format before GRPO (DeepSeek-R1's "cold start").

    Introduced in notebooks/grpo.ipynb.
    """

    steps: int = 100  # optimizer steps: enough to learn the format
    empty_every: int = 2  # one warm-up reply in this many has an empty <think> block (0: none)
    batch_size: int = 8  # conversations per step
    lr: float = 1e-3  # peak learning rate, decaying linearly to 0
    seed: int = 0  # order of the conversations


def warmup_recipe() -> WarmupRecipe:
    """The warm-up of the notebook: :class:`WarmupRecipe` as is for the lab model; with
    ``FTLAB_MODEL`` set, a learning rate of 2e-5, as in :func:`ftlab.sft_recipe`.
    Introduced in notebooks/grpo.ipynb.
    """
    from .real import real_model_id

    return WarmupRecipe(lr=2e-5, steps=30) if real_model_id() else WarmupRecipe()  # fewer steps: CPU cost


@short_traceback
def get_reasoning_model(sft=None, tok=None, recipe: WarmupRecipe | None = None):
    """The SFT model after a short warm-up on the reasoning format, trained once and cached.

    ``sft`` defaults to :func:`ftlab.get_sft_model`; it is not modified (a copy is trained
    with :func:`ftlab.train_sft_loop` on :func:`reasoning_dataset`). Returns a
    :class:`ftlab.Checkpoint`. Introduced in notebooks/grpo.ipynb.
    """
    from .cache import cached_model, load_checkpoint
    from .data import data_fingerprint
    from .sft import SFTRecipe, get_sft_model, train_sft_loop
    from .tokenizer import get_tokenizer, tokenizer_fingerprint

    sft = sft if sft is not None else get_sft_model()
    tok = tok if tok is not None else (sft.tokenizer or get_tokenizer())
    recipe = recipe or warmup_recipe()
    key = {"sft": sft.hash, "recipe": asdict(recipe), "data": data_fingerprint(), "code": RL_CODE_VERSION,
           "tokenizer": tokenizer_fingerprint(tok)}

    def train():
        # a fresh copy from disk, not copy.deepcopy(sft.model): when get_sft_model has just trained the SFT
        # model with TRL in this process, a deep copy still calls the original's modules and never learns
        # (DESIGN pitfall 14)
        model = load_checkpoint(sft.path).model
        sft_recipe = SFTRecipe(steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, seed=recipe.seed)
        history = train_sft_loop(model, tok, reasoning_dataset("train", recipe.empty_every), recipe=sft_recipe)
        return model, history["train"]

    return cached_model("grpo-warmup", key, train, tokenizer=tok)


@dataclass(frozen=True)
class GRPORecipe:
    """The settings of one run of :func:`grpo_loop`.

    Introduced in notebooks/grpo.ipynb.
    """

    steps: int = 50  # optimizer steps; each samples new replies with the current model
    prompts_per_step: int = 4  # distinct problems per step
    group_size: int = 8  # replies sampled per problem: the "group" of GRPO
    lr: float = 2e-4  # learning rate (constant), lower than SFT's: the rewards are noisy
    temperature: float = 1.0  # sampling temperature: diversity within a group is what GRPO learns from
    max_new_tokens: int = 16  # longest reply; a full reply is 12 tokens and <|im_end|>
    require_reasoning: bool = False  # False: an empty <think></think> earns the format reward
    format_weight: float = 1.0  # weight of the format reward in the total reward
    correct_weight: float = 1.0  # weight of the correctness reward in the total reward
    loss_type: str = "dapo"  # how the token terms are averaged (grpo_loss); "dapo" is TRL's default
    scale_rewards: bool = True  # divide the advantages by the group's std (TRL's default); False: Dr. GRPO
    max_grad_norm: float = 1.0  # gradient clipping
    seed: int = 0  # problems drawn and tokens sampled


def grpo_recipe(**changes) -> GRPORecipe:
    """The GRPO settings of the notebook, with ``changes`` applied: :class:`GRPORecipe` as is
    for the lab model; with ``FTLAB_MODEL`` set, a learning rate of 1e-6 (TRL's default),
    as a real model would be wrecked by 2e-4. Introduced in notebooks/grpo.ipynb.
    """
    from dataclasses import replace

    from .real import real_model_id

    return replace(GRPORecipe(lr=1e-6, steps=10) if real_model_id() else GRPORecipe(), **changes)  # fewer steps: CPU cost


def _prompt_texts(tok, problems) -> list[str]:
    from .evaluate import _as_messages
    from .data import SYSTEM_PROMPT

    return [tok.apply_chat_template(_as_messages(p.question, SYSTEM_PROMPT), tokenize=False, add_generation_prompt=True)
            for p in problems]


def sample_groups(model, tok, problems, group_size: int, temperature: float = 1.0, max_new_tokens: int = 16,
                  greedy: bool = False) -> dict:
    """Sample ``group_size`` replies to each problem with the model as it is now.

    Returns ``{"texts", "input_ids", "attention_mask", "completion_mask", "prompt_len"}``:
    the replies (cut before ``<|im_end|>``) in problem order, each problem's replies
    consecutive, and the token tensors of prompt + reply; ``completion_mask`` is 1 on the
    reply's tokens up to and including ``<|im_end|>``. Introduced in notebooks/grpo.ipynb.
    """
    import torch

    from .evaluate import _decoding, _stop_ids

    device = next(model.parameters()).device
    stop = _stop_ids(tok)
    prompts = [t for t in _prompt_texts(tok, problems) for _ in range(group_size)]
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(device)
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=tok.pad_token_id,
                             **_decoding(greedy, temperature))
    prompt_len = enc["input_ids"].shape[1]
    completion = out[:, prompt_len:]
    is_stop = torch.isin(completion, torch.tensor(stop, device=device))
    # keep the tokens up to and including the first stop token
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0
    completion_mask = (~after_stop).long()
    specials = set(tok.all_special_ids)
    texts = []
    for row, mask in zip(completion.tolist(), completion_mask.tolist()):
        kept = [t for t, m in zip(row, mask) if m and t not in specials]
        texts.append(tok.decode(kept, skip_special_tokens=False).strip())
    return {
        "texts": texts,
        "input_ids": out,
        "attention_mask": torch.cat([enc["attention_mask"], completion_mask], dim=1),
        "completion_mask": completion_mask,
        "prompt_len": prompt_len,
    }


def _completion_logprobs(model, batch):
    """Log-probability of every reply token under ``model`` (shape: replies x reply length)."""
    ids, attn = batch["input_ids"], batch["attention_mask"]
    position_ids = (attn.cumsum(dim=1) - 1).clamp(min=0)  # left padding: positions start at the first real token
    logits = model(input_ids=ids, attention_mask=attn, position_ids=position_ids).logits
    p = batch["prompt_len"]
    logits = logits[:, p - 1 : -1].float()  # the logits at t predict the token at t + 1
    return logits.log_softmax(dim=-1).gather(-1, ids[:, p:].unsqueeze(-1)).squeeze(-1)


def grpo_loop(model, tok, problems, recipe: GRPORecipe | None = None) -> dict:
    """Train ``model`` in place with GRPO on ``problems`` (:class:`ftlab.data.ArithmeticProblem`).

    Each step draws ``prompts_per_step`` problems, samples ``group_size`` replies to each,
    scores them with :func:`format_reward` and :func:`correctness_reward`, turns the total
    rewards into :func:`group_advantages`, and takes one gradient step on :func:`grpo_loss`
    (by default TRL's: the mean of ``-advantage x log-probability`` over every reply token
    of the step). With one step per sample the policy ratio of PPO/GRPO is 1, so its
    clipping never acts; there is no KL term (TRL's ``beta=0``) and no value network.
    Returns a history of lists, one value per
    step: ``format``, ``correct`` (mean rewards), ``reward`` (their weighted sum),
    ``empty`` (fraction of replies with an empty ``<think>``), ``loss``; plus ``seconds``.
    Introduced in notebooks/grpo.ipynb.
    """
    import random

    import torch

    recipe = recipe or GRPORecipe()
    rng = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr, weight_decay=0.0)
    history: dict = {"format": [], "correct": [], "reward": [], "empty": [], "loss": [], "seconds": 0.0}
    start = time.perf_counter()
    for _step in range(recipe.steps):
        chosen = rng.sample(list(problems), recipe.prompts_per_step)
        batch = sample_groups(model, tok, chosen, recipe.group_size, recipe.temperature, recipe.max_new_tokens)
        answers = [p.answer for p in chosen for _ in range(recipe.group_size)]
        fmt = [format_reward(t, recipe.require_reasoning) for t in batch["texts"]]
        cor = [correctness_reward(t, a) for t, a in zip(batch["texts"], answers)]
        total = [recipe.format_weight * f + recipe.correct_weight * c for f, c in zip(fmt, cor)]
        adv = group_advantages(total, recipe.group_size, scale=recipe.scale_rewards).to(batch["input_ids"].device)
        model.train()
        logp = _completion_logprobs(model, batch)
        loss = grpo_loss(logp, batch["completion_mask"], adv, recipe.loss_type, recipe.max_new_tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
        opt.step()
        opt.zero_grad()
        n = len(total)
        history["format"].append(sum(fmt) / n)
        history["correct"].append(sum(cor) / n)
        history["reward"].append(sum(total) / n)
        history["empty"].append(sum(is_empty_reasoning(t) for t in batch["texts"]) / n)
        history["loss"].append(round(loss.item(), 5))
    history["seconds"] = time.perf_counter() - start
    model.eval()
    return history


def evaluate_reasoning(model, tok, problems, require_reasoning: bool = True) -> dict:
    """Greedy replies to ``problems`` and their scores.

    Returns ``{"accuracy", "format", "empty", "table"}``: the fractions of correct answers,
    of replies that pass :func:`format_reward` (with ``require_reasoning``), of replies
    with an empty ``<think>`` block, and a DataFrame (question, reply, correct, format, empty).
    Introduced in notebooks/grpo.ipynb.
    """
    import pandas as pd

    problems = list(problems)
    texts = sample_groups(model, tok, problems, 1, greedy=True)["texts"]
    table = pd.DataFrame({
        "question": [p.question for p in problems],
        "reply": texts,
        "correct": [correctness_reward(t, p.answer) == 1.0 for t, p in zip(texts, problems)],
        "format": [format_reward(t, require_reasoning) == 1.0 for t in texts],
        "empty": [is_empty_reasoning(t) for t in texts],
    })
    n = max(1, len(table))
    return {"accuracy": float(table["correct"].sum() / n), "format": float(table["format"].sum() / n),
            "empty": float(table["empty"].sum() / n), "table": table}


def prompt_dataset(split: str = "train"):
    """The additions of one split as TRL's ``GRPOTrainer`` takes them: a ``datasets.Dataset`` with a
    ``prompt`` column (the system and user messages, conversational format) and an ``answer``
    column, which TRL passes to the reward functions by name. Introduced in notebooks/grpo.ipynb.
    """
    from datasets import Dataset

    from .data import SYSTEM_PROMPT, arithmetic_problems

    return Dataset.from_list([{"prompt": [{"role": "system", "content": SYSTEM_PROMPT},
                                          {"role": "user", "content": p.question}], "answer": p.answer}
                              for p in arithmetic_problems(split)])


def trl_rewards(require_reasoning: bool = False) -> list:
    """:func:`format_reward` and :func:`correctness_reward` as TRL's reward functions.

    TRL calls each with the batch's ``completions`` (for a conversational data set, each one
    a list holding the assistant message) and the data set's other columns as keyword
    arguments (here ``answer``), and wants one number per completion. It logs each function
    under its name (``rewards/format/mean``, ``rewards/correctness/mean``).
    Introduced in notebooks/grpo.ipynb.
    """

    def format(completions, **kwargs):  # noqa: A001 - the name TRL logs
        return [format_reward(c[0]["content"], require_reasoning) for c in completions]

    def correctness(completions, answer, **kwargs):
        return [correctness_reward(c[0]["content"], a) for c, a in zip(completions, answer)]

    return [format, correctness]
