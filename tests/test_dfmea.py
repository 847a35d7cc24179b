"""Guards of the DFMEA case study (ftlab/dfmea.py, notebooks/dfmea.ipynb).

The checker must accept the reference tables and catch each kind of broken table an
engineer would reject; the retrieval baseline must return the rows of the most similar
past component. Nothing here trains a model, except the last test, which checks on the
cached lab tokenizer that the chat request and the table fit the SFT helpers.
"""

from __future__ import annotations

import pytest

import ftlab
from ftlab import dfmea


def reference(item: str):
    return [r for r in ftlab.dfmea_rows() if r.item == item]


@pytest.fixture
def chain():
    """The reference table of the chain, as a model should write it."""
    return dfmea.format_table(reference("chain"))


def test_every_reference_table_passes_every_check():
    for item in dict.fromkeys(r.item for r in ftlab.dfmea_rows()):
        check = dfmea.check_table(dfmea.format_table(reference(item)), reference(item))
        assert check.summary() == {"parses": 1.0, "filled": 1.0, "ratings_ok": 1.0, "rpn_ok": 1.0, "content": 1.0}
        assert check.problems == []
        assert len(check.rows) == len(reference(item))


def test_the_table_round_trips_through_the_parser(chain):
    rows = dfmea.parse_table(chain)
    assert [r["failure_mode"] for r in rows] == ["chain breaks", "chain slips"]
    assert rows[0]["rpn"] == "108" and rows[0]["severity"] == "9"
    # Leading and trailing pipes, as in Markdown, and extra spaces are accepted.
    markdown = "\n".join(f"| {line} |" for line in chain.splitlines())
    assert dfmea.parse_table(markdown.replace(" | ", "  |  ")) == rows


def test_a_wrong_rpn_is_caught(chain):
    check = dfmea.check_table(chain.replace("| 108", "| 100"), reference("chain"))
    assert check.parses and check.ratings_ok == 1.0
    assert check.rpn_ok == 0.5  # one row of two
    assert check.content == 1.0  # the RPN is not part of the content score
    assert any("108" in p for p in check.problems)


@pytest.mark.parametrize("bad", ["0", "11", "x", "4.5", "-3"])
def test_a_rating_out_of_1_to_10_is_caught(chain, bad):
    text = chain.replace("| 9 | worn link |", f"| {bad} | worn link |")
    check = dfmea.check_table(text, reference("chain"))
    assert check.parses
    assert check.ratings_ok == 0.5
    assert check.rpn_ok == 0.5  # the RPN of a row with a bad rating cannot be right
    assert check.content < 1.0


def test_a_missing_field_is_caught(chain):
    emptied = dfmea.check_table(chain.replace("| loss of drive |", "|  |"), reference("chain"))
    assert emptied.parses and emptied.filled == 0.5
    assert any("effect" in p for p in emptied.problems)
    dropped = chain.replace("loss of drive | ", "")  # a row of 9 cells
    assert dfmea.parse_table(dropped) is None
    assert not dfmea.check_table(dropped).parses


@pytest.mark.parametrize("text", [
    "",
    "A chain can break or slip; check it often.",
    "item | function | failure mode | effect | S | cause | O | control | D | RPN",  # header only
    "chain | move the wheel | chain breaks | rider falls | 9 | worn link | 3 | tensile test | 4 | 108",  # no header
])
def test_unparsable_tables_score_zero(text):
    check = dfmea.check_table(text, reference("chain"))
    assert not check.parses and check.rows == []
    assert check.summary() == {"parses": 0.0, "filled": 0.0, "ratings_ok": 0.0, "rpn_ok": 0.0, "content": 0.0}


def test_the_content_score_sees_a_well_formed_table_of_the_wrong_component():
    motor = dfmea.format_table(reference("motor"))
    check = dfmea.check_table(motor, reference("chain"))
    assert check.summary()["rpn_ok"] == 1.0 and check.filled == 1.0  # the form is perfect
    assert check.content < 0.3  # the content is not (a few ratings agree by chance)


def test_retrieval_returns_the_rows_of_the_most_similar_component():
    retriever = dfmea.RowRetriever(ftlab.dfmea_rows("train"))
    # "move the wheel" shares "wheel" with the motor's "turn the wheel".
    assert [r.item for r in retriever.retrieve("chain move the wheel")] == ["motor", "motor"]
    assert retriever.retrieve("chain move the wheel") == reference("motor")
    # The display's "speed" is in the controller's "wrong speed limit".
    assert {r.item for r in retriever.retrieve("display show the speed")} == {"controller"}
    # Words of a component's rows find it; k components give all their rows, best first.
    assert {r.item for r in retriever.retrieve("worn pad caliper")} == {"brake"}
    two = retriever.retrieve("fire risk of a cell, worn brake pad", k=2)
    best = list(retriever.scores("fire risk of a cell, worn brake pad"))[:2]
    assert set(best) == {"battery", "brake"}
    assert two == reference(best[0]) + reference(best[1])
    scores = retriever.scores("chain move the wheel")
    assert list(scores)[0] == "motor" and scores["motor"] > 0 == scores["battery"]


def test_prompts_hold_the_examples_and_end_with_the_request():
    prompts = dfmea.DfmeaPrompts()
    few = prompts.few_shot("chain", "move the wheel")
    rag = prompts.retrieval("chain", "move the wheel")
    assert few.endswith("DFMEA of the chain (function: move the wheel):\n")
    assert rag.endswith("DFMEA of the chain (function: move the wheel):\n")
    assert few.count(dfmea.HEADER) == prompts.examples and rag.count(dfmea.HEADER) == prompts.retrieved
    assert dfmea.format_table(reference("motor")) in rag
    assert "chain breaks" not in few + rag  # the answer never leaks into the prompt
    assert prompts.chat("chain", "move the wheel")[-1]["content"] == "Write the DFMEA of the chain (function: move the wheel)."


def test_the_training_conversations_hold_the_training_tables_only():
    data = dfmea.dfmea_dataset("train")
    items = {r.item for r in ftlab.dfmea_rows("train")}
    assert len(data) == len(items)
    replies = [row["messages"][-1]["content"] for row in data]
    assert all(dfmea.check_table(t).rpn_ok == 1.0 for t in replies)
    assert not any("chain" in t or "display" in t for t in replies)


def test_scores_average_the_checks_and_count_tokens(chain):
    gens = [dfmea.Generation(chain, 10, 5), dfmea.Generation("no table", 20, 1)]
    score = dfmea.score_tables(gens, [reference("chain"), reference("chain")])
    assert score["parses"] == 0.5 and score["content"] == 0.5
    assert score["prompt_tokens"] == 15 and score["output_tokens"] == 3 and score["tokens"] == 18


def test_table_rates_count_requests_rows_and_cells(chain):
    gens = [dfmea.Generation(chain, 10, 5), dfmea.Generation("no table", 20, 1)]
    rates = dfmea.table_rates(gens, [reference("chain"), reference("chain")])
    n_rows = len(reference("chain"))
    assert (rates["format"].k, rates["format"].n) == (1, 2)
    for name in ("filled", "ratings", "rpn"):
        assert (rates[name].k, rates[name].n) == (n_rows, n_rows)
    assert (rates["content"].k, rates["content"].n) == (9 * n_rows, 2 * 9 * n_rows)


def test_the_recipe_puts_every_training_table_in_every_step(monkeypatch):
    monkeypatch.delenv("FTLAB_MODEL", raising=False)
    full, lora = dfmea.dfmea_recipe(), dfmea.dfmea_recipe(lora=True)
    assert full.batch_size == lora.batch_size == len(dfmea.dfmea_dataset("train"))
    assert full.steps == lora.steps
    assert lora.lr > full.lr  # LoRA's adapters start at zero and need a larger step


def test_unseen_tokens_are_the_table_tokens_missing_from_the_corpus(lab):
    tok, _base = lab
    new = dfmea.unseen_tokens(tok, dfmea.dfmea_dataset("train"))
    pipe = tok(" |", add_special_tokens=False)["input_ids"]
    assert set(pipe) & set(new), "the cell separator never occurs in the pretraining corpus"
    corpus_ids = {t for line in ftlab.corpus() for t in tok(line)["input_ids"]}
    assert new and not set(new) & corpus_ids
