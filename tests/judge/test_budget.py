"""Budget: estimates before a run; clean stops before the call that would exceed a limit."""

from __future__ import annotations

import pytest

from judge_rl.backends.mock import MockBackend
from judge_rl.errors import BudgetExceeded, JudgeRLError
from judge_rl.judge import (
    Budget,
    CachedJudge,
    JudgmentCache,
    LLMJudge,
    OrderedJudge,
    compare_sync,
    estimate,
)
from judge_rl.judge.budget import price_of

PRICES = {"input": 1.0, "output": 2.0}


def judge_with(budget, template, cache=None, **kw):
    backend = MockBackend(**kw)
    llm = LLMJudge(backend, template, budget=budget, prices=PRICES, max_tokens=40)
    return OrderedJudge(CachedJudge(llm, cache), "both"), backend


def test_estimate_counts_calls_tokens_cost(comparisons, pairwise_template, cache_path):
    judge, _ = judge_with(None, pairwise_template, cache=JudgmentCache(cache_path))
    est = estimate(judge, comparisons)
    assert est.comparisons == 6 and est.calls == 12 and est.cached == 0
    assert est.completion_tokens == 12 * 40  # worst case: max_tokens
    assert est.cost == pytest.approx(price_of(est.prompt_tokens, est.completion_tokens, PRICES))
    compare_sync(judge, comparisons[:2])
    est2 = estimate(judge, comparisons)
    assert est2.calls == 8 and est2.cached == 4


def test_max_calls_stops_cleanly_and_resumes(comparisons, pairwise_template, cache_path):
    cache = JudgmentCache(cache_path)
    budget = Budget(max_calls=5)
    judge, backend = judge_with(budget, pairwise_template, cache=cache)
    js = compare_sync(judge, comparisons)
    assert backend.calls == 5 and budget.calls == 5 and budget.exhausted
    assert sum(j.ok for j in js) == 2  # two complete pairs; the third has one half only
    refused = [j for j in js if not j.ok]
    assert all(j.error_kind == "budget" for j in refused)
    assert len(cache) == 5  # finished calls kept, budget refusals not cached
    with pytest.raises(BudgetExceeded) as exc:
        budget.check()
    assert isinstance(exc.value, JudgeRLError) and "--max-calls 5" in str(exc.value)
    judge2, backend2 = judge_with(Budget(max_calls=100), pairwise_template, cache=cache)
    js2 = compare_sync(judge2, comparisons)
    assert backend2.calls == 7 and all(j.ok for j in js2)


def test_max_cost_never_exceeded(comparisons, pairwise_template):
    per_call = price_of(200, 40, PRICES)  # generous worst case of one call
    budget = Budget(max_cost=per_call * 3)
    judge, backend = judge_with(budget, pairwise_template)
    compare_sync(judge, comparisons)
    assert 0 < backend.calls < 12
    assert budget.cost <= budget.max_cost
    assert budget.refused == 12 - backend.calls


def test_zero_budget_makes_no_call(comparisons, pairwise_template):
    judge, backend = judge_with(Budget(max_calls=0), pairwise_template)
    js = compare_sync(judge, comparisons)
    assert backend.calls == 0 and all(j.error_kind == "budget" for j in js)
