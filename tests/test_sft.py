"""Guards of the claims of docs/sft.rst and notebooks/sft.ipynb, at the level of ftlab's functions.

If a change to the data, the model or the training breaks one of the chapter's claims (the
base model does not answer, SFT teaches the format, held-out cities are answered but
held-out capitals are not, the held-out loss has a minimum...), a test here fails, not
just a sentence of the site. The base model comes from the normal cache (pretrained once,
about 30 s, shared with the notebooks); the trainings use their own copies of it.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import ftlab  # noqa: E402


@pytest.fixture(scope="module")
def trl_sft(lab):
    """A copy of the base model fine-tuned with the chapter's recipe and TRL (about 5 s)."""
    tok, base = lab
    model = copy.deepcopy(base.model)
    history = ftlab.train_sft_trl(model, tok, ftlab.sft_dataset("train"), ftlab.sft_dataset("heldout"),
                                  ftlab.SFTRecipe())
    return model, history


def scores(model, tok, split, kind):
    """The ChatReport of a model on the questions of one split and one kind."""
    return ftlab.evaluate_chat(model, tok, ftlab.qa_pairs(split, kind))


def test_labels_are_ignored_exactly_outside_the_assistant_reply(lab):
    tok, _ = lab
    im_end = tok.convert_tokens_to_ids(ftlab.IM_END)
    for row, qa in zip(ftlab.sft_dataset("train"), ftlab.qa_pairs("train")):
        example = ftlab.sft_example(tok, row["messages"])
        ids, labels, mask = example["input_ids"], example["labels"], example["assistant_mask"]
        assert len(ids) == len(labels) == len(mask)
        assert labels == [t if m else -100 for t, m in zip(ids, mask)]
        kept = [t for t in labels if t != -100]
        assert tok.decode(kept, skip_special_tokens=False) == qa.answer + ftlab.IM_END  # the reply, then the stop
        assert kept[-1] == im_end and ids[-1] == im_end


def test_base_model_does_not_answer(lab):
    tok, base = lab
    report = ftlab.evaluate_chat(base.model, tok, ftlab.qa_pairs("heldout"))
    assert report.format <= 0.1  # it never writes <|im_end|>
    assert report.exact <= 0.1


def test_base_model_knows_cities_and_capitals_as_text(lab):
    tok, base = lab
    # Every question of the world (the held-out split alone has 8 capitals: one miss is 12.5
    # points, and which one the model misses changes with the CPU's floating-point kernels).
    probe = ftlab.fact_probe(base.model, tok, ftlab.qa_pairs("train") + ftlab.qa_pairs("heldout"))
    by_kind = probe.groupby("kind")["correct"].mean()
    assert by_kind["city"] >= 0.9 and by_kind["capital"] >= 0.75
    assert by_kind["arithmetic"] <= 0.8  # the sums are the weak spot of pretraining


def test_sft_teaches_the_format_and_the_held_out_cities(lab, trl_sft):
    tok, _ = lab
    model, _ = trl_sft
    assert ftlab.evaluate_chat(model, tok, ftlab.qa_pairs("heldout")).format >= 0.9
    assert scores(model, tok, "heldout", "city").keyword >= 0.8
    assert scores(model, tok, "train", "capital").exact >= 0.9


def test_sft_does_not_bring_out_the_held_out_capitals(lab, trl_sft):
    """The chapter's "format more than knowledge": the base completes these capitals, the
    fine-tuned model answers them with capitals from its training answers."""
    tok, _ = lab
    model, _ = trl_sft
    report = scores(model, tok, "heldout", "capital")
    assert report.exact <= 0.5
    train_answers = {qa.answer for qa in ftlab.qa_pairs("train")}
    assert report.table["reply"].isin(train_answers).mean() >= 0.5
    assert scores(model, tok, "heldout", "arithmetic").exact <= 0.5  # nor the sums pretraining taught poorly


def test_sft_makes_the_model_forget_capitals_as_text(lab, trl_sft):
    tok, _ = lab
    model, _ = trl_sft
    probe = ftlab.fact_probe(model, tok, ftlab.qa_pairs("heldout", "capital"))
    assert probe["correct"].mean() <= 0.5


def test_trl_losses_fall(trl_sft):
    _, history = trl_sft
    train, held = [loss for _, loss in history["train"]], [loss for _, loss in history["eval"]]
    assert [s for s, _ in history["eval"]] == list(range(25, 151, 25))
    assert train[-1] < 0.2 * train[0]
    assert held[-1] < held[0]


def test_plain_loop_lowers_the_loss(lab):
    tok, base = lab
    model = copy.deepcopy(base.model)
    heldout = ftlab.sft_dataset("heldout")
    before = ftlab.sft_loss(model, tok, heldout)
    history = ftlab.train_sft_loop(model, tok, ftlab.sft_dataset("train"), heldout,
                                   replace(ftlab.SFTRecipe(), steps=40, eval_every=20))
    assert len(history["train"]) == 40 and [s for s, _ in history["eval"]] == [20, 40]
    first = sum(loss for _, loss in history["train"][:5]) / 5
    last = sum(loss for _, loss in history["train"][-5:]) / 5
    assert last < 0.3 * first
    assert history["eval"][-1][1] == pytest.approx(ftlab.sft_loss(model, tok, heldout), rel=1e-4)
    assert history["eval"][-1][1] < 0.5 * before
    assert ftlab.evaluate_chat(model, tok, ftlab.qa_pairs("heldout")).format >= 0.9  # the stop comes early


def test_training_too_long_overfits(lab):
    """The notebook's overfitting section: 4x the steps, the held-out loss has its minimum
    well before the end and ends higher, while the training loss keeps falling; fewer
    held-out cities are answered, the training sums are recited but the held-out sums (whole
    commutation classes, never asked in either order) are not learned, and the facts are
    forgotten as text."""
    tok, base = lab
    model = copy.deepcopy(base.model)
    recipe = replace(ftlab.SFTRecipe(), steps=4 * ftlab.SFTRecipe().steps, eval_every=50)
    history = ftlab.train_sft_loop(model, tok, ftlab.sft_dataset("train"), ftlab.sft_dataset("heldout"), recipe)
    best_step, best = min(history["eval"], key=lambda point: point[1])
    # Where the minimum falls varies with the CPU (seen at step 225 on one machine, 350 on another).
    assert best_step <= 0.75 * recipe.steps
    assert history["eval"][-1][1] > 1.1 * best
    assert sum(loss for _, loss in history["train"][-50:]) / 50 < 0.1
    assert scores(model, tok, "heldout", "city").exact <= 0.8
    assert scores(model, tok, "train", "arithmetic").exact >= 0.8  # the training sums, by heart
    assert scores(model, tok, "heldout", "arithmetic").exact <= 0.35  # 7 of 20 at most: no addition learned
    probe = ftlab.fact_probe(model, tok, ftlab.qa_pairs("heldout", "city"))
    assert probe["correct"].mean() <= 0.5


def test_get_sft_model_trains_once_then_loads(lab, tmp_path, monkeypatch):
    tok, base = lab
    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path))
    recipe = replace(ftlab.SFTRecipe(), steps=10, eval_every=5)
    first = ftlab.get_sft_model(base, tok, recipe)
    second = ftlab.get_sft_model(base, tok, recipe)
    assert not first.from_cache and second.from_cache
    assert second.history == first.history and len(second.history) == 2
    assert second.extra["eval_loss"] == first.extra["eval_loss"] and len(second.extra["eval_loss"]) == 2
    ids = torch.tensor([tok("Where is Lyon?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(first.model(input_ids=ids).logits, second.model(input_ids=ids).logits, atol=1e-5)
    for p_base, p_sft in zip(base.model.parameters(), first.model.parameters()):
        if not torch.equal(p_base, p_sft):
            break
    else:
        pytest.fail("the fine-tuned model has the base model's weights")
    assert ftlab.get_sft_model(base, tok, replace(recipe, lr=5e-4)).from_cache is False  # the recipe is in the key
