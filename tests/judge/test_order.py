"""Position control by identity: fixed / random / both, failures never flipped."""

from __future__ import annotations

import pytest

from judge_rl.backends.base import ChatRequest
from judge_rl.backends.mock import MockBackend
from judge_rl.judge import LLMJudge, OrderedJudge, compare_sync
from judge_rl.judge.order import combine_orders
from judge_rl.types import JudgeFingerprint, Judgment


def ordered(rule, template, order="both", **kw):
    backend = MockBackend(rule=rule, confidence=kw.pop("confidence", 0.8))
    judge = LLMJudge(backend, template, label_probs=kw.pop("label_probs", False))
    return OrderedJudge(judge, order, **kw), backend


def test_both_orders_consistent_judge(comparisons, pairwise_template):
    judge, backend = ordered("longer", pairwise_template)
    js = compare_sync(judge, comparisons)
    assert backend.calls == 2 * len(comparisons)
    assert [j.winner for j in js] == ["a", "a", "a", "b", "b", "b"]
    for j, c in zip(js, comparisons, strict=True):
        assert j.consistent is True and j.order == "both"
        assert [call.first_id for call in j.calls] == [c.a.id, c.b.id]
        assert [call.winner for call in j.calls] == [j.winner, j.winner]  # mapped back by id


def test_position_biased_judge_becomes_ties(comparisons, pairwise_template):
    judge, _ = ordered("first", pairwise_template)
    js = compare_sync(judge, comparisons)
    assert all(j.winner == "tie" and j.consistent is False for j in js)
    # each call says "the one I saw first": by identity, a then b
    assert all([c.winner for c in j.calls] == ["a", "b"] for j in js)


def test_inconsistent_average_uses_probabilities(comparisons, pairwise_template):
    judge, _ = ordered("first", pairwise_template, inconsistent="average", label_probs=True)
    js = compare_sync(judge, comparisons)
    for j in js:
        assert j.consistent is False
        assert j.p_a == pytest.approx(0.5) and j.winner == "tie"


def test_fixed_shows_a_first_random_is_seeded(comparisons, pairwise_template):
    fixed, _ = ordered("longer", pairwise_template, order="fixed")
    assert all(
        j.calls[0].first_id == c.a.id
        for j, c in zip(compare_sync(fixed, comparisons), comparisons, strict=True)
    )
    r1, _ = ordered("first", pairwise_template, order="random", seed=3)
    r2, _ = ordered("first", pairwise_template, order="random", seed=3)
    j1, j2 = compare_sync(r1, comparisons), compare_sync(r2, comparisons)
    firsts = [j.calls[0].first_id for j in j1]
    assert firsts == [j.calls[0].first_id for j in j2]
    # the position-biased judge picks whichever it saw first: by identity that is first_id
    for j, c in zip(j1, comparisons, strict=True):
        assert j.winner == ("a" if j.calls[0].first_id == c.a.id else "b")
        assert j.order == "random"
    many = [c.model_copy(update={"id": f"p{i}"}) for i, c in enumerate(comparisons * 10)]
    shown_b = sum(r1.swap_first(c) for c in many)
    assert 15 < shown_b < 45


def test_random_mapping_is_correct_for_a_real_preference(comparisons, pairwise_template):
    judge, _ = ordered("longer", pairwise_template, order="random", seed=1)
    assert [j.winner for j in compare_sync(judge, comparisons)] == ["a", "a", "a", "b", "b", "b"]


def test_failed_half_stays_a_failure(comparisons, pairwise_template):
    def fn(req: ChatRequest) -> str:
        first, _ = req.metadata["judge"]["responses"]
        return "no idea" if first == comparisons[0].b.response else "[[A]]"

    judge = OrderedJudge(LLMJudge(MockBackend(fn=fn), pairwise_template), "both")
    js = compare_sync(judge, comparisons[:2])
    j = js[0]
    assert j.winner is None and j.p_a is None and j.consistent is None
    assert j.error_kind == "parse"
    assert j.calls[0].winner == "a" and j.calls[1].error.startswith("parse")
    assert js[1].winner == "tie"  # "[[A]]" in both orders: inconsistent by identity


def test_combine_orders_rules():
    fp = JudgeFingerprint(name="x")

    def j(w, p=None, err=None):
        return Judgment(comparison_id="c", a_id="x", b_id="y", winner=w, p_a=p, judge=fp, error=err)

    assert combine_orders(j("a", 0.9), j("a", 0.7)).p_a == pytest.approx(0.8)
    assert combine_orders(j("a"), j("b")).winner == "tie"
    avg = combine_orders(j("a", 0.9), j("b", 0.3), "average")
    assert avg.winner == "a" and avg.p_a == pytest.approx(0.6)
    bad = combine_orders(j(None, err="timeout: slow"), j("a"))
    assert bad.winner is None and bad.error == "timeout: slow"
