"""Guards of ftlab/hallucinations.py and of the claims of docs/hallucinations.rst.

The unit tests check the call parser, the local search and the reply classifier on
hand-made strings. The lab tests run the chapter's procedure on the cached SFT model
(seconds, once per module): the "I don't know" retraining must lower hallucinations
without refusing most known questions, and the tool loop must hand the search result back
to the model and return an answer built on it.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import partial

import pytest

pytest.importorskip("torch")

import ftlab  # noqa: E402
from ftlab.data import QA  # noqa: E402

# -- The call parser -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, query",
    [
        ("<SEARCH-TOOL>bitcoin price today</SEARCH-TOOL>", "bitcoin price today"),
        ("<SEARCH-TOOL>  bitcoin \n price   today </SEARCH-TOOL>", "bitcoin price today"),  # spaces normalised
        ("Let me look. <SEARCH-TOOL>weather today</SEARCH-TOOL> One moment.", "weather today"),  # text around
        ("<SEARCH-TOOL>time now</SEARCH-TOOL><SEARCH-TOOL>news today</SEARCH-TOOL>", "time now"),  # first call wins
    ],
)
def test_parse_tool_call_finds_the_query(reply, query):
    assert ftlab.parse_tool_call(reply) == query


@pytest.mark.parametrize(
    "reply",
    [
        "It is in France.",  # a direct answer
        "<SEARCH-TOOL>bitcoin price today",  # the call is not closed
        "bitcoin price today</SEARCH-TOOL>",  # the call is not opened
        "<SEARCH-TOOL>   </SEARCH-TOOL>",  # an empty query
        "</SEARCH-TOOL>time now<SEARCH-TOOL>",  # tags in the wrong order
    ],
)
def test_parse_tool_call_returns_none_without_a_complete_call(reply):
    assert ftlab.parse_tool_call(reply) is None


def test_the_tags_are_single_tokens_kept_by_decoding(lab):
    tok, _base = lab
    call = "<SEARCH-TOOL>bitcoin price today</SEARCH-TOOL>"
    ids = tok(call, add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids(ftlab.SEARCH_START) == ids[0]
    assert tok.convert_tokens_to_ids(ftlab.SEARCH_END) == ids[-1]
    assert ftlab.parse_tool_call(tok.decode(ids, skip_special_tokens=True)) == "bitcoin price today"


# -- The local search and the classifier ---------------------------------------------------------


def test_local_search_is_local_deterministic_and_live():
    assert ftlab.local_search("bitcoin price today", 3) == ftlab.local_search("Bitcoin  price today", 3)
    values = {ftlab.local_search("bitcoin price today", clock) for clock in range(6)}
    assert len(values) >= 3  # the value changes with the clock, like live data
    assert ftlab.local_search("capital of Velmora") == "No result."
    for q in ftlab.tool_questions(split=None):  # every query the data teaches has a result
        assert ftlab.local_search(q.keyword) != "No result."


def test_classify_reply():
    city = QA("Where is Lyon?", "It is in France.", "city", "France", "train")
    unknown = QA("Where is Velmora?", "I don't know.", "unknown", "know", "train")
    assert ftlab.classify_reply("It is in France.", city) == "correct"
    assert ftlab.classify_reply("It is in Frances.", city) == "wrong"  # a whole word only
    assert ftlab.classify_reply("I don't know.", city) == "refusal"
    assert ftlab.classify_reply("<SEARCH-TOOL>news today</SEARCH-TOOL>", city) == "call"
    assert ftlab.classify_reply("It is in Peru.", unknown) == "wrong"  # a hallucination
    assert ftlab.classify_reply("I don't know.", unknown) == "refusal"
    assert ftlab.classify_reply("i do not know where it is", unknown) == "refusal"
    rates = ftlab.reply_rates(["It is in France.", "I don't know.", "It is in Peru.", "x"], [city] * 4)
    assert {v: (r.k, r.n) for v, r in rates.items()} == {"correct": (1, 4), "wrong": (2, 4), "refusal": (1, 4),
                                                       "garbled": (0, 4), "call": (0, 4)}


@pytest.mark.parametrize("reply", ["'t know.", "know.", "It is in know.", "Iknow", "I know.", "You don't know."])
def test_a_garbled_fragment_is_not_a_refusal(reply):
    """Issue 16: a broken fragment such as `'t know.` was counted as a refusal by a substring match."""
    unknown = QA("Where is Velmora?", "I don't know.", "unknown", "know", "train")
    assert ftlab.classify_reply(reply, unknown) != "refusal"
    assert ftlab.classify_reply("'t know.", unknown) == "garbled"


# -- The claims of the chapter, on the lab model -------------------------------------------------


@pytest.fixture(scope="module")
def procedure(lab):
    """The notebook's steps: the SFT model, the probe, the retrained abstainer, the tool assistant."""
    tok, base = lab
    sft = ftlab.get_sft_model(base, tok)
    known, unknown = ftlab.qa_pairs("heldout"), ftlab.unknown_questions(split=None)
    recipe = ftlab.AbstainRecipe()
    probe_questions = ftlab.qa_pairs("train")  # probed as corpus text, disjoint from the evaluation
    assert not {q.question for q in probe_questions} & {q.question for q in known + unknown}
    probe = ftlab.knowledge_probe(sft.model, tok, probe_questions, recipe)
    data = ftlab.abstention_dataset(probe_questions, probe)
    abstainer = copy.deepcopy(sft.model)
    ftlab.train_sft_loop(abstainer, tok, data, recipe=replace(ftlab.SFTRecipe(), steps=recipe.steps, lr=recipe.lr))
    before = ftlab.hallucination_report(sft.model, tok, known, unknown)
    after = ftlab.hallucination_report(abstainer, tok, known, unknown, before=before)
    return {"tok": tok, "sft": sft.model, "probe": probe, "data": data, "abstainer": abstainer,
            "before": before, "after": after, "known": known, "unknown": unknown}


def test_the_sft_model_hallucinates_on_unknown_entities(procedure):
    assert float(procedure["before"]["hallucination"]) >= 0.8
    assert procedure["before"]["over_refusal"].k == 0 and procedure["before"]["hallucination"].n == 36


def test_sampling_reveals_uncertainty_that_greedy_hides(procedure):
    probe = procedure["probe"]
    mixed = probe["n_correct"].between(1, 2)
    assert mixed.mean() >= 0.1  # the same question is sometimes right, sometimes wrong
    assert 0.1 <= (~probe["known"]).mean() <= 0.8  # a failure set, but not everything


def test_retraining_on_i_dont_know_lowers_hallucinations(procedure):
    before, after = procedure["before"], procedure["after"]
    assert after["hallucination"].differs_from(before["hallucination"])
    assert float(after["hallucination"]) <= float(before["hallucination"]) - 0.4
    assert float(after["wrong"]) < float(before["wrong"])


def test_the_refused_known_questions_are_the_sums_it_got_wrong(procedure):
    """The chapter's per-kind table: the SFT model lost the sums as text, the probe finds it, and
    the retrained model refuses the held-out sums it used to get wrong; capitals stay wrong."""
    probe, before, after = procedure["probe"], procedure["before"], procedure["after"]
    assert probe[probe["kind"] == "arithmetic"]["known"].mean() < 0.5
    assert float(before["by_kind"]["arithmetic"]["wrong"]) >= 0.75
    assert float(after["by_kind"]["arithmetic"]["over_refusal"]) >= 0.75
    assert float(after["by_kind"]["capital"]["correct"]) <= 0.25


def test_over_refusal_stays_bounded(procedure):
    """Refusals mostly replace wrong answers: few questions answered correctly before are refused now."""
    before, after = procedure["before"], procedure["after"]
    assert float(after["over_refusal"]) <= float(before["wrong"]) + 0.15
    assert float(after["lost"]) <= 0.15
    assert float(after["correct"]) >= 0.5 * float(before["correct"])


@pytest.fixture(scope="module")
def assistant(procedure):
    tok = procedure["tok"]
    recipe = ftlab.ToolRecipe()
    tools = ftlab.tool_dataset(ftlab.tool_questions("train"), clocks=range(recipe.clocks))
    from datasets import concatenate_datasets

    model = copy.deepcopy(procedure["abstainer"])
    ftlab.train_sft_loop(model, tok, concatenate_datasets([procedure["data"], tools]),
                         recipe=replace(ftlab.SFTRecipe(), steps=recipe.steps, lr=recipe.lr))
    return model


def test_the_tool_loop_returns_the_backends_answer(procedure, assistant):
    tok = procedure["tok"]
    live = ftlab.tool_questions("heldout") + ftlab.tool_questions("train")
    seen: list[str] = []

    def spy_search(query: str) -> str:  # records what the backend asked, answers with new values
        seen.append(query)
        return ftlab.local_search(query, clock=500)

    runs = ftlab.answer_with_tools(assistant, tok, [q.question for q in live], search=spy_search)
    called = [r for r in runs if r.query is not None]
    assert len(called) >= 0.8 * len(runs)
    assert seen == [r.query for r in called]  # one search per call, with the parsed query
    for r in called:
        assert r.result == ftlab.local_search(r.query, clock=500)
        assert ftlab.SEARCH_START not in r.final  # the final answer is not another call
    report = ftlab.tool_report(runs, [q.keyword for q in live])
    assert float(report["faithful"]) >= 0.5  # most final answers give the number the search returned


def test_tool_calls_stay_away_from_known_questions(procedure, assistant):
    runs = ftlab.answer_with_tools(assistant, procedure["tok"], [q.question for q in procedure["known"]])
    assert sum(r.query is not None for r in runs) <= 0.1 * len(runs)
    assert all(r.final == r.first for r in runs if r.query is None)  # no call: the first reply is final
