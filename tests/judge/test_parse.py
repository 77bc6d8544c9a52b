"""Verdict parsing: every accepted form, and failures that stay failures."""

from __future__ import annotations

import pytest

from judge_rl.judge.parse import (
    ParseError,
    parse_pairwise,
    parse_rubric,
    parse_score,
    parse_yesno,
    verdict_from_probs,
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("[[A]]", "A"),
        ("reasoning...\n[[B]]", "B"),
        ("[[C]]", "tie"),
        ("[[ tie ]]", "tie"),
        ("[[a]]", "A"),
        ('{"winner": "A", "reason": "x"}', "A"),
        ('Here:\n{"verdict": "tie"}', "tie"),
        ('{"preferred": "Response B"}', "B"),
        ('```json\n{"better": "assistant a"}\n```', "A"),
        ("Verdict: B", "B"),
        ("Final verdict: A.", "A"),
        ("**Winner:** Response A", "A"),
        ("Output (b)", "B"),
        ("A", "A"),
        ("(B)", "B"),
        ("Tie", "tie"),
        ("Response B is better overall.", "B"),
        # a rubric line naming both tokens, then the verdict on its own line
        ("Write [[A]] if A wins or [[B]] if B wins.\n[[A]]", "A"),
    ],
)
def test_pairwise_forms(text, want):
    assert parse_pairwise(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot decide.",
        "Both are good in different ways [[A]] and also [[B]] hmm",
        '{"winner": "Z"}',
        "Response A has a typo and response B is long.",
    ],
)
def test_pairwise_failures_raise(text):
    with pytest.raises(ParseError):
        parse_pairwise(text)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("[[9]]", 9.0),
        ("Rating: [[7.5]]", 7.5),
        ("[[8/10]]", 8.0),
        ('{"rating": "6"}', 6.0),
        ("Score: 3 out of 10", 3.0),
        ("ok\n10/10", 10.0),
    ],
)
def test_score_forms(text, want):
    assert parse_score(text, 1, 10) == want


@pytest.mark.parametrize("text", ["[[0]]", "Rating: 12", "no number", "[[2]] [[3]]"])
def test_score_failures(text):
    with pytest.raises(ParseError):
        parse_score(text, 1, 10)


def test_yesno_and_rubric():
    assert parse_yesno("Yes.") == 1.0
    assert parse_yesno("[[no]]") == 0.0
    crit = [("wrong_facts", "yesno"), ("clarity", "scale5")]
    text = 'Thinking...\n{"Wrong facts": "yes", "clarity": {"answer": 5}}'
    assert parse_rubric(text, crit) == {"wrong_facts": 1.0, "clarity": 5.0}
    with pytest.raises(ParseError, match="wrong_facts"):
        parse_rubric('{"wrong_facts": "perhaps", "clarity": 2}', crit)


def test_verdict_from_probs_ties_split():
    verdict, p = verdict_from_probs({"A": 0.2, "B": 0.2, "C": 0.6})
    assert verdict == "tie" and p == pytest.approx(0.5)
    verdict, p = verdict_from_probs({"A": 3.0, "B": 1.0})  # unnormalised input is renormalised
    assert verdict == "A" and p == pytest.approx(0.75)


def test_bare_number_line_is_not_a_verdict():
    with pytest.raises(ParseError):
        parse_pairwise("Two points:\n1. clear\n2")
