"""ftlab.dataprep, the mechanisms behind docs/data.rst: duplicates, decontamination, formats, packing."""

from __future__ import annotations

import pytest

import ftlab
from ftlab import dataprep


# --- duplicates --------------------------------------------------------------------------

TEXTS = [
    "The brake stops the bike when the rider pulls the lever, even on a wet road in winter.",
    "The battery stores electric energy for the motor and is charged by the charger at night.",
    "A chain breaks when a worn link can no longer carry the force of the rider's legs.",
    "The display shows the speed, the battery level and the assist mode chosen by the rider.",
]


def test_exact_duplicates_finds_a_planted_copy_with_other_case_and_punctuation():
    dirty = TEXTS + ["THE BATTERY stores electric energy for the motor, and is charged by the charger at night!"]
    assert dataprep.exact_duplicates(dirty) == [(1, 4)]
    assert dataprep.exact_duplicates(TEXTS) == []


def test_near_duplicates_finds_a_reworded_copy_that_the_exact_check_misses():
    reworded = TEXTS[0].replace("pulls the lever", "pulls the brake lever")
    dirty = TEXTS + [reworded]
    assert dataprep.exact_duplicates(dirty) == []
    near = dataprep.near_duplicates(dirty, threshold=0.8)
    assert [(i, j) for i, j, _ in near] == [(0, 4)]
    assert 0.8 <= near[0][2] < 1.0
    assert dataprep.near_duplicates(TEXTS, threshold=0.8) == []


def test_near_duplicates_reports_exact_similarity_of_the_pair():
    a, b = "abcdefghij", "abcdefghij"
    assert dataprep.near_duplicates([a, b, "zzzzzzzzzz"], threshold=0.5) == [(0, 1, 1.0)]


# --- filters -------------------------------------------------------------------------------


def test_language_of_tells_the_course_questions_from_french_ones():
    assert {dataprep.language_of(q.question + " " + q.answer) for q in ftlab.qa_pairs(None)} == {"en"}
    assert dataprep.language_of("Où est Lyon ? Elle est en France.") == "fr"
    assert dataprep.language_of("Lyon") == "?"


def test_length_filter_bounds_are_included():
    assert dataprep.length_filter([3, 4, 9, 10, 11], 4, 10) == [False, True, True, True, False]


# --- decontamination ----------------------------------------------------------------------


def test_the_course_split_is_clean_for_both_checks():
    train = [q.question for q in ftlab.qa_pairs("train", kinds=None)]
    heldout = [q.question for q in ftlab.qa_pairs("heldout", kinds=None)]
    assert dataprep.contamination(train, heldout) == []
    assert dataprep.contamination(train, heldout, keys=dataprep.sum_keys) == []


def test_a_planted_copy_is_found_by_ngrams():
    train = [q.question for q in ftlab.qa_pairs("train")]
    heldout = [q.question for q in ftlab.qa_pairs("heldout")]
    leaks = dataprep.contamination(train + [heldout[3].upper()], heldout)
    assert [(x.heldout, x.train) for x in leaks] == [(3, len(train))]


def test_a_commuted_sum_escapes_ngrams_and_is_found_by_sum_keys():
    train = ["What is 4 + 3?", "Where is Lyon?"]
    heldout = ["What is 3 + 4?", "Where is Paris?"]
    assert dataprep.contamination(train, heldout) == []
    leaks = dataprep.contamination(train, heldout, keys=dataprep.sum_keys)
    assert [(x.heldout, x.train, x.key) for x in leaks] == [(0, 0, "sum 3 4")]


def test_long_texts_leak_through_a_shared_ngram_only():
    train = ["one two three four five six seven eight nine ten"]
    assert dataprep.contamination(train, ["zero three four five six seven eight nine ten eleven"], keys=dataprep.ngram_keys)
    assert not dataprep.contamination(train, ["zero three four five six seven eight nine eleven"])


# --- formats -------------------------------------------------------------------------------


def test_prompt_completion_round_trips_every_course_conversation():
    rows = list(ftlab.sft_dataset("train", kinds=None)) + list(ftlab.tool_dataset(ftlab.tool_questions("train")))
    for row in rows:
        pc = dataprep.to_prompt_completion(row)
        assert pc["completion"][0]["role"] == "assistant" and len(pc["completion"]) == 1
        assert dataprep.to_messages(pc) == row


def test_prompt_completion_refuses_a_conversation_that_ends_with_the_user():
    with pytest.raises(ValueError):
        dataprep.to_prompt_completion({"messages": [{"role": "user", "content": "Hi"}]})


def test_implicit_preference_round_trips_through_trl_extract_prompt():
    from trl import extract_prompt

    for pair in ftlab.preference_pairs(None):
        row = pair.to_trl()
        assert extract_prompt(dataprep.to_implicit_preference(row)) == row


def test_to_text_writes_the_chat_template():
    tok = ftlab.get_tokenizer()
    row = ftlab.sft_dataset("train")[0]
    text = dataprep.to_text(row, tok)["text"]
    assert text == tok.apply_chat_template(row["messages"], tokenize=False)
    assert row["messages"][-1]["content"] in text


# --- packing -------------------------------------------------------------------------------


def test_pack_fits_every_sequence_once_and_within_the_width():
    lengths = [150, 30, 70, 64, 28, 27, 100, 55, 26, 149]
    rows = dataprep.pack(lengths, 160)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 160 for row in rows)
    with pytest.raises(ValueError):
        dataprep.pack([161], 160)


def test_padding_tokens_counts_what_the_tensors_hold():
    lengths = [10, 4, 6, 8]
    assert dataprep.padding_tokens(lengths, [[0, 1], [2, 3]]) == ((10 - 4) + (8 - 6), 2 * 10 + 2 * 8)
    rows = dataprep.pack(lengths, 14)  # best fit decreasing: [10, 4] and [8, 6]
    assert sorted(sorted(lengths[i] for i in row) for row in rows) == [[4, 10], [6, 8]]
    assert dataprep.padding_tokens(lengths, [rows], width=14) == (0, 28)


def test_packing_removes_the_padding_as_computed_on_the_course_data():
    tok = ftlab.get_tokenizer()
    rows = list(ftlab.sft_dataset("train", kinds=None)) + list(ftlab.tool_dataset(ftlab.tool_questions("train")))
    examples = [ftlab.sft_example(tok, r["messages"]) for r in rows]
    lengths = [len(e["input_ids"]) for e in examples]
    padded = dataprep.pad_batches(lengths, batch_size=8)
    pad, total = dataprep.padding_tokens(lengths, padded)
    tensors = [dataprep.padded_inputs(examples, b, tok.pad_token_id) for b in padded]
    assert pad == sum(int((t["attention_mask"] == 0).sum()) for t in tensors)
    assert total == sum(t["input_ids"].numel() for t in tensors)
    packed = dataprep.pack(lengths, 80)
    ppad, ptotal = dataprep.padding_tokens(lengths, [[row] for row in packed], width=80)
    inputs = dataprep.packed_inputs(examples, packed, 80, tok.pad_token_id)
    assert ptotal == inputs["input_ids"].numel() and ppad == int((inputs["labels"] == -100).sum()) - sum(
        e["labels"].count(-100) for e in examples)
    assert ptotal - ppad == sum(lengths) == total - pad
    assert ppad / ptotal < pad / total


def test_trl_packs_the_course_data_into_as_many_rows():
    from datasets import Dataset
    from trl import pack_dataset

    tok = ftlab.get_tokenizer()
    rows = list(ftlab.sft_dataset("train", kinds=None)) + list(ftlab.tool_dataset(ftlab.tool_questions("train")))
    ids = [ftlab.sft_example(tok, r["messages"])["input_ids"] for r in rows]
    packed = pack_dataset(Dataset.from_list([{"input_ids": x} for x in ids]), 80, strategy="bfd")
    assert len(packed) == len(dataprep.pack([len(x) for x in ids], 80))


def test_packed_rows_compute_what_separate_sequences_compute():
    import torch

    tok = ftlab.get_tokenizer()
    model = ftlab.build_model("tiny", tok)
    rows = list(ftlab.sft_dataset("train"))[:3]
    examples = [ftlab.sft_example(tok, r["messages"]) for r in rows]
    inputs = dataprep.packed_inputs(examples, [[0, 1, 2]], 96, tok.pad_token_id)
    model.eval()
    with torch.no_grad():
        packed = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], use_cache=False).logits[0]
        start = 0
        for e in examples:
            alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0]
            n = len(e["input_ids"])
            assert torch.allclose(packed[start : start + n], alone, atol=1e-4)
            start += n
        # with a cache (the default of generation), transformers does not look for packed sequences
        cached = model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"], use_cache=True).logits[0]
    n0 = len(examples[0]["input_ids"])
    assert not torch.allclose(cached[n0 : 2 * n0], packed[n0 : 2 * n0], atol=1e-4)
    assert inputs["use_cache"] is False


# --- mixing --------------------------------------------------------------------------------


def test_mix_adds_the_asked_share_of_general_rows():
    narrow, general = [f"n{i}" for i in range(30)], [f"g{i}" for i in range(100)]
    rows = dataprep.mix(narrow, general, 0.25)
    assert sorted(r for r in rows if r.startswith("n")) == sorted(narrow)
    assert sum(r.startswith("g") for r in rows) == 10 and len(set(rows)) == 40
    assert sorted(dataprep.mix(narrow, general, 0.0)) == sorted(narrow)
    with pytest.raises(ValueError):
        dataprep.mix(narrow, general, 1.0)
