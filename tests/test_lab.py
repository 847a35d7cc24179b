"""Tests of the ftlab helper package: data, tokenizer, models, cache, FTLAB_MODEL, display.

Fast on purpose (well under a minute on 2 CPU cores): every cache lives in a temporary
folder (FTLAB_CACHE), trainings use a handful of steps, nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import ftlab  # noqa: E402
from ftlab import data  # noqa: E402

SEED_003 = (
    "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|>"
    "<|im_start|>user<|im_sep|>what is 2+2 ?<|im_end|>"
    "<|im_start|>assistant<|im_sep|>The answer is 4<|im_end|>"
)
SEED_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "what is 2+2 ?"},
    {"role": "assistant", "content": "The answer is 4"},
]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab_cache(tmp_path_factory):
    """A private model cache for this module (never ~/.cache/ftlab), on the CPU, without
    FTLAB_MODEL; the environment is restored afterwards."""
    cache = tmp_path_factory.mktemp("ftlab-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTLAB_CACHE", str(cache))
        mp.setenv("FTLAB_DEVICE", "cpu")
        mp.delenv("FTLAB_MODEL", raising=False)
        yield cache


@pytest.fixture(autouse=True)
def lab_env(lab_cache, monkeypatch):
    """Every test starts from the module's cache and forgets real tokenizers it loaded."""
    monkeypatch.setenv("FTLAB_CACHE", str(lab_cache))
    ftlab.real._load_tokenizer_cached.cache_clear()
    yield lab_cache


@pytest.fixture(scope="module")
def tok(lab_cache):
    return ftlab.lab_tokenizer()


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_weights(a, b) -> bool:
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- data


def test_world_has_shanghai_in_china_and_corpus_says_it():
    assert ftlab.world().country_of("Shanghai") == "China"
    assert "Shanghai is a city in China." in ftlab.corpus()
    assert ftlab.world().capitals["China"] == "Beijing"
    assert 600 <= len(ftlab.corpus()) <= 1000


@pytest.mark.parametrize("kind", ["city", "capital", "arithmetic", "unknown", "tool"])
def test_qa_splits_are_disjoint_and_nonempty(kind):
    train = data.qa_pairs("train", kind)
    held = data.qa_pairs("heldout", kind)
    assert train and held
    assert not {q.question for q in train} & {q.question for q in held}
    assert all(q.split == "train" for q in train) and all(q.split == "heldout" for q in held)


def test_other_splits_are_disjoint():
    for fn in (data.rankings, data.preference_pairs, data.arithmetic_problems, data.dfmea_rows):
        train, held = fn("train"), fn("heldout")
        assert train and held, fn.__name__
        key = (lambda x: getattr(x, "question", None) or getattr(x, "failure_mode", None))
        assert not {key(x) for x in train} & {key(x) for x in held}, fn.__name__


def test_heldout_questions_ask_about_facts_that_are_in_the_corpus():
    corpus = set(ftlab.corpus())
    for q in data.qa_pairs("heldout", "city"):
        city = q.question.removeprefix("Where is ").removesuffix("?")
        assert f"{city} is a city in {q.keyword}." in corpus
        assert q.answer == f"It is in {q.keyword}."  # recall only, no copy (pitfall 12)
    for q in data.qa_pairs("heldout", "capital"):
        country = q.question.removeprefix("What is the capital of ").removesuffix("?")
        assert f"The capital of {country} is {q.keyword}." in corpus
    for p in data.arithmetic_problems("heldout"):
        assert f"{p.a} + {p.b} = {p.answer}." in corpus
    assert "Where is Shanghai?" in {q.question for q in data.qa_pairs("heldout", "city")}


def test_heldout_sums_are_whole_commutation_classes_without_zero():
    """A held-out sum must be unseen in either order: a + b and b + a share a split, and
    0 + x (a copy, not an addition) is never held out."""
    split = {(p.a, p.b): p.split for p in data.arithmetic_problems()}
    assert all(split[a, b] == split[b, a] for a, b in split)
    held = data.arithmetic_problems("heldout")
    assert len(held) == 20 and all(p.a and p.b and p.a != p.b for p in held)
    assert len({(min(p.a, p.b), max(p.a, p.b)) for p in held}) == 10


def test_heldout_splits_are_big_enough_to_compare():
    """8 held-out capitals of 16 (not 4), China's among them, and 36 invented places."""
    assert len(data.qa_pairs("heldout", "capital")) == 8 == len(data.qa_pairs("train", "capital"))
    assert "What is the capital of China?" in {q.question for q in data.qa_pairs("heldout", "capital")}
    assert len(data.qa_pairs("heldout", "city")) == 16
    assert len(data.unknown_questions(split=None)) == 36


def test_unknown_entities_never_occur_in_the_corpus():
    text = "\n".join(ftlab.corpus()).casefold()
    names = data.UNKNOWN_CITIES + data.UNKNOWN_COUNTRIES
    for name in names:
        assert name.casefold() not in text
        assert name not in {c.name for c in ftlab.world().cities}
    questions = data.unknown_questions(None)
    assert len(questions) == len(names)
    assert all(q.answer == "I don't know." for q in questions)


def test_tool_questions_target_a_search_call():
    for q in data.tool_questions(None):
        m = re.fullmatch(r"<SEARCH-TOOL>(.+)</SEARCH-TOOL>", q.answer)
        assert m and m.group(1) == q.keyword
    assert "<SEARCH-TOOL>bitcoin price today</SEARCH-TOOL>" in {q.answer for q in data.tool_questions("train")}


def test_dfmea_rows_have_rpn_s_times_o_times_d_and_ratings_in_range():
    rows = data.dfmea_rows()
    assert len(rows) == 16
    for r in rows:
        assert all(1 <= v <= 10 for v in (r.severity, r.occurrence, r.detection))
        assert r.rpn == r.severity * r.occurrence * r.detection
        assert set(r.to_dict()) >= {"function", "failure_mode", "effect", "severity", "cause",
                                    "occurrence", "current_control", "detection", "rpn"}
    bad = dict(rows[0].to_dict(), rpn=rows[0].rpn + 1)
    with pytest.raises(ValueError):
        data.DfmeaRow(**bad)
    with pytest.raises(ValueError):
        data.DfmeaRow(**dict(rows[0].to_dict(), severity=11, rpn=11 * rows[0].occurrence * rows[0].detection))


def test_preference_pairs_follow_the_rankings():
    rankings = data.rankings(None)
    pairs = data.preference_pairs(None)
    assert len(pairs) == 3 * len(rankings)
    by_q = {r.question: r for r in rankings}
    for p in pairs:
        r = by_q[p.question]
        assert p.chosen_rank < p.rejected_rank
        assert r.answers[p.chosen_rank - 1] == p.chosen and r.answers[p.rejected_rank - 1] == p.rejected
        assert p.chosen != p.rejected
    shanghai = by_q["Where is Shanghai?"]
    assert shanghai.answers[0] == "It is in China." and shanghai.labels == ("correct", "vague", "off-topic")
    trl = pairs[0].to_trl()
    assert trl["prompt"][-1] == {"role": "user", "content": pairs[0].question}
    assert trl["chosen"][0]["role"] == "assistant"


def test_data_is_identical_in_another_process():
    code = "import ftlab.data as d; print(d.data_fingerprint()); print(d.corpus()[0])"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    fp, first = out.stdout.split("\n")[:2]
    assert fp == data.data_fingerprint()
    assert first == ftlab.corpus()[0]


# ----------------------------------------------------------------------------- tokenizer


def test_chat_tokens_are_single_ids(tok):
    tokens = ["<|im_start|>", "<|im_end|>", "<|im_sep|>", "<SEARCH-TOOL>", "</SEARCH-TOOL>", "<think>", "</think>"]
    ids = [tok.convert_tokens_to_ids(t) for t in tokens]
    assert len(set(ids)) == len(tokens)
    for t, i in zip(tokens, ids):
        assert tok(t, add_special_tokens=False)["input_ids"] == [i]
        assert i in tok(f"abc{t}def", add_special_tokens=False)["input_ids"]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    assert len(tok) > tok.vocab_size  # pitfall 1: build models with len(tok)


def test_think_and_tool_tags_survive_skip_special_tokens(tok):
    text = "<|im_start|>assistant<|im_sep|><think>2 + 2 = 4</think><SEARCH-TOOL>bitcoin price today</SEARCH-TOOL><|im_end|>"
    decoded = tok.decode(tok(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
    assert decoded == "assistant<think>2 + 2 = 4</think><SEARCH-TOOL>bitcoin price today</SEARCH-TOOL>"


def test_role_words_are_whole_tokens(tok):
    ids = tok.apply_chat_template(SEED_MESSAGES, tokenize=True, return_dict=True)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    for role in ("system", "user", "assistant"):
        assert role in pieces  # pitfall 3: not split into characters
    assert tok.decode(ids) == SEED_003


def test_chat_template_reproduces_seed_003_exactly(tok):
    assert tok.apply_chat_template(SEED_MESSAGES, tokenize=False) == SEED_003
    prompt = tok.apply_chat_template(SEED_MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == SEED_003.removesuffix("The answer is 4<|im_end|>")
    assert prompt.endswith("<|im_start|>assistant<|im_sep|>") and "\n" not in prompt


def test_assistant_mask_covers_exactly_the_reply_and_im_end(tok):
    enc = tok.apply_chat_template(SEED_MESSAGES, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    reply = tok("The answer is 4", add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    masked = [i for i, m in zip(ids, mask) if m]
    assert masked == reply
    assert mask[-len(reply):] == [1] * len(reply) and sum(mask) == len(reply)
    table = ftlab.chat_token_table(tok, SEED_MESSAGES)
    assert list(table["assistant"]) == list(mask)


def test_tokenizer_is_cached_on_disk(lab_env, tok):
    entries = [p for p in lab_env.iterdir() if p.name.startswith("tokenizer-")]
    assert entries and (entries[0] / "ftlab.json").exists()
    t0 = time.perf_counter()
    again = ftlab.lab_tokenizer()
    assert time.perf_counter() - t0 < 2.0
    assert again.get_vocab() == tok.get_vocab()


# ----------------------------------------------------------------------------- models and cache


def test_presets_have_the_documented_sizes(tok):
    small = ftlab.build_model("small", tok)
    tiny = ftlab.build_model("tiny", tok)
    assert 1.0e6 < ftlab.count_parameters(small) < 1.3e6
    assert 0.15e6 < ftlab.count_parameters(tiny) < 0.25e6
    assert small.config.vocab_size == len(tok) and small.config.tie_word_embeddings
    assert type(small).__name__ == "LlamaForCausalLM"
    with pytest.raises(ftlab.FtlabError, match="preset"):
        ftlab.build_model("huge", tok)


def test_tokenizer_fingerprint_ignores_padding_settings(tok):
    from ftlab.tokenizer import tokenizer_fingerprint

    before = tokenizer_fingerprint(tok)
    tok(["a", "a longer text"], padding=True, padding_side="left")
    assert tokenizer_fingerprint(tok) == before


def test_fingerprint_is_stable_and_order_independent():
    key = {"preset": "small", "recipe": {"steps": 3, "lr": 3e-3}}
    assert ftlab.fingerprint(key) == ftlab.fingerprint(json.loads(json.dumps(key)))
    assert ftlab.fingerprint({"b": 1, "a": 2}) == ftlab.fingerprint({"a": 2, "b": 1})
    assert ftlab.fingerprint(key) != ftlab.fingerprint({**key, "recipe": {"steps": 4, "lr": 3e-3}})


def test_two_trainings_give_bit_identical_weights(tmp_path, monkeypatch, tok):
    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "a"))
    a = ftlab.pretrain("tiny", tokenizer=tok, steps=4)
    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "b"))
    b = ftlab.pretrain("tiny", tokenizer=tok, steps=4)
    assert not a.from_cache and not b.from_cache
    assert a.path.name == b.path.name  # same key, same hash
    assert _same_weights(a.model, b.model)
    assert a.history == b.history and len(a.history) == 4


def test_cache_miss_then_hit(lab_env, tok):
    t0 = time.perf_counter()
    first = ftlab.pretrain("small", tokenizer=tok, steps=6)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = ftlab.pretrain("small", tokenizer=tok, steps=6)
    t_second = time.perf_counter() - t0
    assert not first.from_cache and second.from_cache
    assert t_second < t_first
    assert second.history == first.history and [s for s, _ in second.history] == list(range(1, 7))
    assert second.extra == first.extra and first.extra["fact_accuracy"][-1][0] == 6  # measured at the end
    assert _same_weights(first.model, second.model)
    assert second.path.is_relative_to(lab_env) and (second.path / "ftlab.json").exists()
    assert not list(lab_env.glob(".tmp-*"))
    assert ftlab.pretrain("small", tokenizer=tok, steps=7).from_cache is False  # new recipe, new entry


def test_cached_model_trains_once_and_writes_atomically(lab_env, tok):
    calls = []

    def train():
        calls.append(1)
        return ftlab.build_model("tiny", tok, seed=1), [(1, 2.5), (2, 2.0)]

    a = ftlab.cached_model("sft-test", {"steps": 2}, train, tokenizer=tok)
    b = ftlab.cached_model("sft-test", {"steps": 2}, train, tokenizer=tok)
    assert len(calls) == 1 and b.from_cache and b.history == [(1, 2.5), (2, 2.0)]
    assert b.tokenizer is not None and len(b.tokenizer) == len(tok)
    assert _same_weights(a.model, b.model)

    def killed():
        raise KeyboardInterrupt("build killed")

    with pytest.raises(KeyboardInterrupt):
        ftlab.cached_model("sft-test", {"steps": 3}, killed)
    assert not list(lab_env.glob(".tmp-*"))
    assert not [p for p in lab_env.glob("sft-test-*") if not (p / "ftlab.json").exists()]
    assert len(list(lab_env.glob("sft-test-*"))) == 1


def test_pretrained_small_model_generates_and_reports_perplexity(tok):
    model = ftlab.pretrain("small", tokenizer=tok, steps=6).model
    ppl = ftlab.perplexity(model, tok, ftlab.corpus()[:20])
    assert 1.0 < ppl < len(tok)
    probs = ftlab.next_token_probs(model, tok, "Shanghai is a city in", k=5)
    assert len(probs) == 5 and probs["probability"].is_monotonic_decreasing and probs["probability"].sum() <= 1.0
    reply = ftlab.chat(model, tok, "Where is Shanghai?", max_new_tokens=4)
    assert isinstance(reply, ftlab.Reply) and reply.n_tokens <= 4
    assert isinstance(ftlab.complete(model, tok, "Shanghai is a city in", max_new_tokens=3), str)


# ----------------------------------------------------------------------------- evaluation


class _ScriptedModel(torch.nn.Module):
    """Stands in for a model: generate() appends a fixed continuation to every prompt."""

    def __init__(self, continuation):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.continuation = continuation

    def generate(self, input_ids, attention_mask=None, **kwargs):
        extra = torch.tensor([self.continuation] * input_ids.shape[0])
        return torch.cat([input_ids, extra], dim=1)


def test_chat_cuts_at_im_end_and_reports_stopping(tok):
    im_end, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    body = tok("It is in China.", add_special_tokens=False)["input_ids"]
    stopped = ftlab.chat(_ScriptedModel(body + [im_end, pad]), tok, "Where is Shanghai?")
    assert stopped.text == "It is in China." and stopped.stopped and stopped.raw.endswith("<|im_end|>")
    rambling = ftlab.chat(_ScriptedModel(body + body), tok, "Where is Shanghai?")
    assert not rambling.stopped and rambling.text == "It is in China.It is in China."
    assert ftlab.format_compliance([stopped, rambling]) == 0.5
    assert ftlab.exact_match([stopped, rambling], ["it is in  China.", "It is in China."]) == 0.5
    assert ftlab.keyword_accuracy([stopped, "I don't know."], ["China", "China"]) == 0.5
    report = ftlab.evaluate_chat(_ScriptedModel(body + [im_end]), tok, data.qa_pairs("heldout", "city")[:4])
    assert report.format == 1.0 and len(report.table) == 4


# ----------------------------------------------------------------------------- FTLAB_MODEL


def _save_plain_model(folder):
    """A tiny 'real' checkpoint: its own BPE tokenizer WITHOUT chat tokens or template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(ftlab.corpus()[:200], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    plain = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(plain), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    model.save_pretrained(folder)
    plain.save_pretrained(folder)
    return len(plain)


def test_ftlab_model_loads_a_local_folder_and_adds_chat_tokens(tmp_path, monkeypatch):
    folder = tmp_path / "plain-model"
    n_plain = _save_plain_model(folder)
    monkeypatch.setenv("FTLAB_MODEL", str(folder))
    tok = ftlab.get_tokenizer()
    assert len(tok) == n_plain + 8  # 3 chat tokens + 4 tags + pad
    for t in ("<|im_start|>", "<|im_end|>", "<|im_sep|>", "<think>", "<SEARCH-TOOL>"):
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1
    assert tok.apply_chat_template(SEED_MESSAGES, tokenize=False) == SEED_003
    model = ftlab.get_base_model()
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    reply = ftlab.chat(model, tok, "Where is Shanghai?", max_new_tokens=3)
    assert isinstance(reply.text, str)


def test_wrong_ftlab_model_gives_one_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-model"
    monkeypatch.setenv("FTLAB_MODEL", str(missing))
    with pytest.raises(ftlab.FtlabError) as err:
        ftlab.get_base_model()
    msg = str(err.value)
    assert str(missing) in msg and "unset ftlab_model" in msg.lower()
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)
    assert len(traceback.extract_tb(err.tb)) <= 2  # the test's line and ftlab's entry point, no wall
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("FTLAB_MODEL", str(tmp_path / "empty"))
    with pytest.raises(ftlab.FtlabError, match="config.json"):
        ftlab.get_tokenizer()
    monkeypatch.setenv("FTLAB_MODEL", "ftlab-test-org/no-such-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ftlab.real._hub_reachable.cache_clear()
    with pytest.raises(ftlab.FtlabError, match="neither a local folder nor") as err:
        ftlab.get_tokenizer()
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert len(traceback.extract_tb(err.tb)) <= 2
    ftlab.real._hub_reachable.cache_clear()


# ----------------------------------------------------------------------------- device


def test_setup_prints_one_line_and_respects_ftlab_device(monkeypatch, capsys):
    monkeypatch.setattr(ftlab.device, "_printed", False)
    info = ftlab.setup(seed=3, threads=torch.get_num_threads())
    out = capsys.readouterr().out
    assert out.strip() == str(info) and out.startswith("ftlab: device cpu, float32,")
    assert info.device == "cpu" and info.seed == 3
    ftlab.setup()
    assert capsys.readouterr().out == ""  # printed once per session
    monkeypatch.setenv("FTLAB_DEVICE", "tpu")
    with pytest.raises(ftlab.FtlabError, match="FTLAB_DEVICE"):
        ftlab.get_device()


# ----------------------------------------------------------------------------- display

_I18N = re.compile(
    r'^<div class="ftlab-i18n"><div class="ftlab-i18n-en" lang="en">(.*)</div>'
    r'<div class="ftlab-i18n-fr" lang="fr">(.*)</div></div>$',
    re.S,
)


def test_bilingual_figure_has_both_languages():
    fig = ftlab.plot_loss([(1, 2.0), (2, 1.5), (3, 1.2)], title=ftlab.T("Pretraining", "Pré-entraînement"))
    bundle = fig._repr_mimebundle_()
    m = _I18N.match(bundle["text/html"])
    assert m
    en, fr = m.groups()
    assert en.startswith("<img") and 'src="data:image/png;base64,' in en and 'alt="Pretraining"' in en
    assert fr.startswith("<img") and 'alt="Pré-entraînement"' in fr
    assert en != fr  # the French image is drawn with French labels
    assert bundle["image/png"] and bundle["text/plain"] == "Pretraining"


def test_bilingual_table_translates_headers_and_numbers():
    t = ftlab.results_table(
        [{"model": ftlab.T("base", "base"), "acc": 0.0}, {"model": "SFT", "acc": 0.9375}],
        columns={"model": ("model", "modèle"), "acc": ("held-out accuracy", "exactitude (test)")},
        percent=["acc"],
    )
    m = _I18N.match(t._repr_mimebundle_()["text/html"])
    en, fr = m.groups()
    assert "<table" in en and "held-out accuracy" in en and "93.8%" in en
    assert "<table" in fr and "exactitude (test)" in fr and "93,8\u202f%" in fr
    assert "held-out accuracy" in t._repr_mimebundle_()["text/plain"]


def test_bilingual_of_two_objects():
    import pandas as pd

    b = ftlab.bilingual("Hello <world>", pd.DataFrame({"a": [1]}))
    en, fr = _I18N.match(b._repr_html_()).groups()
    assert en == "<p>Hello &lt;world&gt;</p>" and "<table" in fr
