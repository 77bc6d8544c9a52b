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


# --- a hard cap (issue 15 item 5, issue 16 item 7) -------------------------------------------

LONG_SPEC = """version: 1
kind: pairwise
backend: mock
model: m
template: prompt.j2
order: both
max_tokens: 400
expected_completion_tokens: 8
concurrency: 64
prices: {input: 5.0, output: 15.0}
backend_options:
  latency_s: 0.02
  cut_at_max_tokens: true  # as a server does: never more than max_tokens
  text: "%s\\n[[A]]"
"""


def _args(*argv):
    import argparse

    from judge_rl.commands._judge_options import add_judge_options

    p = argparse.ArgumentParser()
    add_judge_options(p)
    return p.parse_args(list(argv))


def _many(n):
    from tests.judge.conftest import make_comparison

    return [
        make_comparison(f"answer {i} " * 3, f"other {i}", prompt=f"q {i}", i=i) for i in range(n)
    ]


def test_max_cost_is_a_hard_cap_with_64_in_flight_and_long_completions(write_spec):
    """Completions 50x longer than expected (max_tokens 400 vs 8), 64 calls in flight, a $0.01
    cap: the run spends at most the cap. Before: every call reserved 8 completion tokens and the
    run spent several times the cap."""
    from judge_rl.commands._judge_options import judge_from_args

    spec = write_spec("long", LONG_SPEC % ("x" * 3000))
    judge, budget, _ = judge_from_args(_args("--judge", spec, "--max-cost", "0.01", "--no-cache"))
    js = compare_sync(judge, _many(100))
    assert budget.calls >= 1  # one call's worst case ($0.0066) fits
    assert budget.cost <= 0.01, budget.cost
    assert budget.overrun == 0
    assert budget.exhausted and budget.status == "exhausted"
    assert any(j.error_kind == "budget" for j in js)


def test_worst_case_reservations_hold_under_concurrency():
    """64 concurrent callers reserving the worst case: spent <= cap whatever each call costs."""
    import asyncio
    import random

    from judge_rl.judge.budget import worst_case_cost

    prices = {"input": 3.0, "output": 15.0}
    budget = Budget(max_cost=0.01)
    rng = random.Random(0)

    async def call():
        worst = worst_case_cost(100, 256, prices)
        if not budget.reserve(worst, worst_case=True):
            return
        await asyncio.sleep(rng.random() / 100)
        actual = price_of(100, rng.randint(1, 256), prices)
        budget.settle(worst, actual, worst_case=True)

    async def main():
        await asyncio.gather(*(call() for _ in range(64)))

    asyncio.run(main())
    assert budget.calls >= 1 and budget.cost <= 0.01 and budget.refused


@pytest.mark.parametrize(
    "bad", [{"max_cost": float("nan")}, {"max_cost": -1.0}, {"max_cost": float("inf")}]
)
def test_budget_refuses_non_finite_or_negative_caps(bad):
    from judge_rl.errors import ConfigError

    with pytest.raises(ConfigError):
        Budget(**bad)


@pytest.mark.parametrize(
    "flag", [["--max-cost", "nan"], ["--prices", "-1,2"], ["--prices", "nan,1"]]
)
def test_cli_refuses_nan_cap_and_negative_prices_with_exit_2(cli, tmp_path, flag):
    inp = tmp_path / "pairs.jsonl"
    inp.write_text('{"prompt": "p", "response_a": "a", "response_b": "bb"}\n')
    out = tmp_path / "out.jsonl"
    r = cli("label", "--judge", "mock-pairwise", "--input", str(inp), "--output", str(out), *flag)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert flag[0] in r.stderr
    assert not out.exists()


def test_negative_prices_in_a_spec_are_refused(write_spec):
    from judge_rl.commands._judge_options import judge_from_args
    from judge_rl.errors import ConfigError

    spec = write_spec(
        "neg",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n"
        "prices: {input: -1.0, output: 2.0}\n",
    )
    with pytest.raises(ConfigError, match="prices"):
        judge_from_args(_args("--judge", spec, "--no-cache"))
    hf_spec = write_spec(  # a backend that takes no prices: the judge's own estimate would go
        "neg-hf",  # negative; refused by the command-line options all the same
        "version: 1\nkind: pairwise\nbackend: hf\nmodel: embedded\ntemplate: prompt.j2\n"
        "prices: {input: 1.0, output: -2.0}\n",
    )
    with pytest.raises(ConfigError, match="neg-hf.*prices: output"):
        judge_from_args(_args("--judge", hf_spec, "--no-cache"))


def test_prices_come_from_the_cli_the_table_or_zero_for_local_and_unknown():
    from judge_rl.commands._judge_options import judge_overrides, resolve_prices
    from judge_rl.judge.budget import table_prices

    # The shipped pairwise spec is priced for gpt-4o-mini; --model gpt-4o takes gpt-4o's prices.
    prices, note = resolve_prices(_args("--judge", "pairwise", "--model", "gpt-4o"))
    assert prices == table_prices("gpt-4o") and prices["output"] > 10 * 0.6
    assert "gpt-4o" in note and "read" in note
    assert judge_overrides(_args("--judge", "pairwise", "--model", "gpt-4o"))["prices"] == prices
    # An unknown model costs 0, with a note.
    prices, note = resolve_prices(_args("--judge", "pairwise", "--model", "my-finetune"))
    assert prices == {"input": 0.0, "output": 0.0} and "my-finetune" in note
    # A local vLLM URL is not charged invented dollars.
    for url in ("http://localhost:8000/v1", "http://10.1.2.3:8000/v1"):
        prices, note = resolve_prices(_args("--judge", "pairwise", "--base-url", url))
        assert prices == {"input": 0.0, "output": 0.0} and "local" in note
    # --prices wins over everything.
    prices, note = resolve_prices(
        _args("--judge", "pairwise", "--base-url", "http://localhost:1/v1", "--prices", "1,2")
    )
    assert prices == {"input": 1.0, "output": 2.0} and note is None
    # No override: the spec's own prices stand.
    assert resolve_prices(_args("--judge", "pairwise")) == (None, None)


def test_price_table_is_data_with_its_date():
    import json

    from judge_rl.judge.budget import PRICE_TABLE, table_prices

    data = json.loads(PRICE_TABLE.read_text())
    assert data["read"] and data["models"]["gpt-4o-mini"] == {"input": 0.15, "output": 0.60}
    assert table_prices("openai/gpt-4o-mini") == {"input": 0.15, "output": 0.6}
    assert table_prices("gpt-4o-2024-08-06") == table_prices("gpt-4o")


def test_audit_honours_the_budget_and_exits_with_its_status(cli, tmp_path):
    """`judge-rl audit --max-calls 3` stops at the budget, saves its run log and exits 2 with the
    budget line (before: it ignored the stop and exited 0)."""
    from tests.conftest import ROOT

    human = ROOT / "judge_rl" / "_builtin" / "human" / "hh-short.jsonl"
    out = tmp_path / "run"
    r = cli(
        "audit", "--judge", "mock-pairwise", "--human", str(human), "--no-cache",
        "--no-injection", "--bootstrap", "20", "--max-calls", "3", "--output", str(out),
    )  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "budget reached" in r.stderr and "Traceback" not in r.stderr
    assert (out / "log.json").exists()  # the finished work is saved before the budget exit


def test_library_llm_judge_with_a_budget_is_a_hard_cap_without_cover(pairwise_template):
    """Library use, no CLI and no ``Budget.cover``: an LLMJudge sharing a $0.01 Budget, 64 calls
    in flight, completions 50x longer than expected: spent <= cap. Before: each call reserved
    only ``expected_completion_tokens`` and the run spent several times the cap."""
    budget = Budget(max_cost=0.01)
    prices = {"input": 5.0, "output": 15.0}
    backend = MockBackend(
        text="x" * 3000 + "\n[[A]]", latency_s=0.02, cut_at_max_tokens=True, concurrency=64
    )
    llm = LLMJudge(
        backend,
        pairwise_template,
        budget=budget,
        prices=prices,
        max_tokens=400,
        expected_completion_tokens=8,
    )
    js = compare_sync(OrderedJudge(llm, "both"), _many(100))
    assert budget.calls >= 1
    assert budget.cost <= 0.01, budget.cost
    assert budget.overrun == 0
    assert budget.exhausted and any(j.error_kind == "budget" for j in js)


def test_hard_cap_holds_for_prompts_of_many_tokens_per_character():
    """Prompts in Chinese: about one token per character, not four characters per token. The
    reservation's prompt estimate must not undercount them: spent <= cap, no overrun. Before:
    each call reserved a quarter of its prompt and the run passed the cap."""
    from judge_rl.backends.base import ChatResult

    prices = {"input": 5.0, "output": 15.0}

    class PerChar:
        name = "per-char"
        model = "per-char"
        concurrency = 64

        def __init__(self):
            self.calls = 0

        async def chat(self, requests):
            import asyncio

            await asyncio.sleep(0.01)
            self.calls += len(requests)
            out = []
            for r in requests:
                pt = sum(len(m["content"]) for m in r.messages)  # one token per character
                out.append(
                    ChatResult(
                        texts=["[[A]]"],
                        prompt_tokens=pt,
                        completion_tokens=3,
                        cost=price_of(pt, 3, prices),
                    )
                )
            return out

        async def aclose(self):
            return None

    from tests.judge.conftest import make_comparison

    comps = [
        make_comparison("答案" * 300 + str(i), "回答" * 300, prompt="问题", i=i) for i in range(60)
    ]
    budget = Budget(max_cost=0.01)
    backend = PerChar()
    llm = LLMJudge(
        backend,
        "{{ prompt }} {{ response_a }} {{ response_b }}",
        budget=budget,
        prices=prices,
        max_tokens=8,
    )
    compare_sync(llm, comps)
    assert backend.calls >= 1 and budget.exhausted
    assert budget.cost <= 0.01, budget.cost
    assert budget.overrun == 0
