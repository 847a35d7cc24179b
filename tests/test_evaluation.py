"""The mechanisms of docs/evaluation.rst (ftlab/evalkit.py): the judge's position flips, the
harness tasks read from local files offline, refusal detection and the regression set."""

from __future__ import annotations

import socket

import pytest

import ftlab
from ftlab import evalkit
from ftlab.data import QA


def _pairs(n: int):
    return [(f"Where is city {i}?", f"It is in Good{i}.", f"It is in Bad{i}.") for i in range(n)]


def _content_judge(biased: set[int] = frozenset()):
    """A stub that picks the good answer by its content, except on the questions of ``biased``,
    where it always picks the answer shown first."""
    def judge(items):
        verdicts = []
        for question, first, second in items:
            i = int(question.split()[-1].rstrip("?"))
            verdicts.append(0 if i in biased else (0 if "Good" in first else 1))
        return verdicts
    return judge


def test_a_fair_judge_never_flips_and_always_agrees():
    report = evalkit.position_flips(_content_judge(), _pairs(10))
    assert (report.flips.k, report.flips.n) == (0, 10)
    assert (report.agreement.k, report.agreement.n) == (20, 20)
    assert (report.first.k, report.first.n) == (10, 20)


def test_a_judge_biased_on_known_pairs_flips_exactly_there():
    biased = {1, 4, 7}
    report = evalkit.position_flips(_content_judge(biased), _pairs(10))
    assert (report.flips.k, report.flips.n) == (len(biased), 10)
    # on a biased pair the first verdict agrees (good shown first), the swapped one does not
    assert report.agreement.k == 20 - len(biased)
    assert report.first.k == 10 + len(biased)
    assert [a == b for a, b in zip(report.in_order, report.swapped)] == [i in biased for i in range(10)]


def test_a_judge_that_always_says_first_flips_on_every_pair():
    report = evalkit.position_flips(lambda items: [0] * len(items), _pairs(6))
    assert (report.flips.k, report.agreement.k, report.agreement.n, report.first.k) == (6, 6, 12, 12)


def test_a_judge_with_a_wrong_number_of_verdicts_is_refused():
    with pytest.raises(ValueError):
        evalkit.position_flips(lambda items: [0], _pairs(3))
    with pytest.raises(ValueError):
        evalkit.position_flips(lambda items: [2] * len(items), _pairs(3))


def test_the_real_judge_returns_one_verdict_per_pair():
    tok = ftlab.lab_tokenizer()
    model = ftlab.build_model("small", tok)
    verdicts = evalkit.make_judge(model, tok, batch_size=2)([("Where is Lyon?", "It is in France.", "It is in Peru.")] * 3)
    assert len(verdicts) == 3 and set(verdicts) <= {0, 1}


def test_choice_rows_hide_the_reference_among_answers_of_the_same_form():
    qas = ftlab.qa_pairs("heldout", kinds=("city", "capital"))
    rows = evalkit.choice_rows(qas, n_choices=4, seed=3)
    assert len(rows) == len(qas)
    for q, row in zip(qas, rows):
        assert row["choices"][row["label"]] == q.answer
        assert len(set(row["choices"])) == 4
        prefix = q.answer.split(q.keyword)[0]
        assert all(c.startswith(prefix) for c in row["choices"])
    assert evalkit.choice_rows(qas, seed=3) == rows  # the same seed gives the same task
    assert len({row["label"] for row in rows}) > 1  # the reference is not always in the same place


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_harness_tasks_load_and_run_from_local_files_offline(tmp_path, no_network):
    qas = ftlab.qa_pairs("heldout", kinds=("city",))[:5]
    tasks = evalkit.write_tasks(tmp_path, qas)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ftlab_gen.yaml", "ftlab_mc.yaml", "questions.jsonl"]
    tok = ftlab.lab_tokenizer()
    model = ftlab.build_model("small", tok)  # random weights: the mechanism, not the score
    results = evalkit.run_harness(model, tok, tmp_path, tasks)
    for task, metric in (("ftlab_mc", "acc"), ("ftlab_gen", "exact_match")):
        rate = evalkit.harness_rate(results, task, metric)
        assert rate.n == len(qas)
        assert rate.value == pytest.approx(results["results"][task][f"{metric},none"])
    prompt = results["samples"]["ftlab_mc"][0]["arguments"][0][0]
    assert qas[0].question in prompt and ftlab.SYSTEM_PROMPT in prompt  # the chat template was applied
    table = evalkit.harness_table(results)
    assert "Tasks" in table and "exact_match" in table and "ftlab_mc" in table


@pytest.mark.parametrize("reply", [
    "I'm sorry, but I can't help with that.",
    "I cannot write a phishing email.",
    "I\u2019m not able to do this.",
    "Forging a signature is illegal.",
    "As an AI, I must decline.",
])
def test_refusals_are_recognised(reply):
    assert evalkit.is_refusal(reply)


@pytest.mark.parametrize("reply", [
    "Subject: Your bank account\n\nDear customer, please confirm your password.",
    "Here's a fake doctor's note:",
    "To cheat on your online exam, you can use a cheat sheet.",
    "It is in France.",
])
def test_answers_are_not_refusals(reply):
    assert not evalkit.is_refusal(reply)


def test_the_harmful_requests_are_a_small_english_set():
    requests = evalkit.HARMFUL_REQUESTS
    assert 16 <= len(requests) <= 24 and len(set(requests)) == len(requests)
    assert all(r.isascii() and r[-1] in ".?" for r in requests)
    assert not any(evalkit.is_refusal(r) for r in requests)  # the rule reads replies, not the requests


def test_the_regression_set_is_the_questions_answered_right_before():
    qas = [QA("Where is Lyon?", "It is in France.", "city", "France", "heldout"),
           QA("Where is Osaka?", "It is in Japan.", "city", "Japan", "heldout"),
           QA("What is the capital of Peru?", "It is Lima.", "capital", "Lima", "heldout")]
    replies = ["Lyon is a city in FRANCE.", "Osaka is in China.", ftlab.Reply("The capital is lima.", True, "", 5)]
    assert evalkit.answered_right(qas, replies) == [True, False, True]
    assert evalkit.regression_set(qas, replies) == [qas[0], qas[2]]
    with pytest.raises(ValueError):
        evalkit.answered_right(qas, replies[:2])
