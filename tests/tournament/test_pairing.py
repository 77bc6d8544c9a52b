"""Pairing strategies, and the measured saving of adaptive pairing over round robin."""

from __future__ import annotations

import math

import numpy as np
import pytest

from judge_rl.tournament.pairing import (
    Adaptive,
    measure_adaptive_savings,
    round_robin,
    simulate_verdicts,
    stopping_error,
    vs_baseline,
)


def test_round_robin_and_vs_baseline_schedules():
    models, prompts = ["a", "b", "c", "d"], ["p1", "p2", "p3"]
    rr = round_robin(models, prompts, batch_size=5)
    seen = []
    while batch := rr.next_batch():
        seen += batch
    assert len(seen) == 6 * 3
    assert len({(m.prompt_id, frozenset((m.a, m.b))) for m in seen}) == 18
    assert rr.stop_reason == "schedule complete"
    assert len(round_robin(models, prompts, budget=7).schedule) == 7
    vb = vs_baseline(models, prompts, "a")
    assert len(vb.schedule) == 9 and all(m.b == "a" for m in vb.schedule)


def _run(ad, theta, seed=0):
    rng = np.random.default_rng(seed)
    while batch := ad.next_batch():
        ad.update(simulate_verdicts(batch, theta, rng))
    return ad


def test_adaptive_stops_when_top_k_is_separated_and_never_repeats_a_prompt_pair():
    models = [f"m{k}" for k in range(8)]
    theta = {m: (7 - k) * 150 * math.log(10) / 400 for k, m in enumerate(models)}  # 150 Elo gaps
    prompts = [f"q{k}" for k in range(200)]
    ad = _run(Adaptive(models, prompts, top_k=3, confidence=0.95, seed=1), theta)
    assert ad.stop_reason.startswith("top-3 order separated")
    assert ad.ranking()[:3] == models[:3]
    assert ad.calls < 28 * 200 / 5  # far below a round robin
    # budget stop
    ad2 = _run(Adaptive(models, prompts, top_k=8, confidence=0.999, budget=50, seed=1), theta)
    assert ad2.calls == 50 and "budget" in ad2.stop_reason


def test_adaptive_pairs_are_unique_per_prompt():
    models = ["a", "b", "c"]
    theta = {"a": 0.0, "b": 0.0, "c": 0.0}
    ad = Adaptive(models, ["p1", "p2"], top_k=2, confidence=0.99, seed=0)
    rng = np.random.default_rng(0)
    seen = []
    while batch := ad.next_batch():
        seen += batch
        ad.update(simulate_verdicts(batch, theta, rng))
    keys = [(m.prompt_id, frozenset((m.a, m.b))) for m in seen]
    assert len(keys) == len(set(keys)) == 6  # every (prompt, pair) once, then nothing left
    assert ad.stop_reason == "no informative (prompt, pair) left"


def test_adaptive_needs_at_most_a_third_of_round_robin_calls():
    # A leaderboard-like field (12 models, Elo ~ N(0, 200^2), seed 0), 100 prompts: top-3
    # accuracy of round robin (all 6600 comparisons) vs the adaptive curve, on the same verdict
    # tables (a cached judge gives the same verdict twice). Seeded; the benchmark
    # (benchmarks/bench_ratings.py) repeats this on more fields.
    res = measure_adaptive_savings(
        spread_elo=200.0, field_seed=0, seeds=6, step=100, batch_size=32, max_fraction=1 / 3
    )
    assert res["rr_accuracy"] > 0.9
    assert res["ratio"] <= 1 / 3, res


# -- issue 20 item 5: an adaptive stop whose error rate survives optional stopping ---------------


def _allowed(stopped: int, bound: float) -> float:
    """Largest observed error rate still consistent with a true rate <= bound (about 2 SE)."""
    return bound + 2 * math.sqrt(bound * (1 - bound) / max(stopped, 1))


def test_stop_is_calibrated_under_optional_stopping_fast():
    # Two leaders 10 (or 80) Elo apart and a clear third, top-1 at 95%, a look after every batch
    # of 8 verdicts. The old naive z-test named the wrong leader in 4 of its 16 early stops at
    # 10 Elo (see the slow test below); the confidence-sequence stop must stay within 5%.
    for gap, prompts in ((10, 150), (80, 300)):
        res = stopping_error(
            gap_elo=gap, elo=[gap, 0, -200], k=1, seeds=25, n_prompts=prompts, batch_size=8
        )
        stopped = int(res["stopped"])  # type: ignore[arg-type]
        assert int(res["wrong"]) <= _allowed(stopped, 0.05) * max(stopped, 1), res  # type: ignore[arg-type]
        if gap == 80:  # the guarantee is not bought by never stopping
            assert stopped >= 10, res  # measured: 15 of 25


@pytest.mark.slow
def test_naive_z_stop_is_not_calibrated():
    naive = stopping_error(
        gap_elo=10,
        elo=[10, 0, -200],
        k=1,
        seeds=40,
        n_prompts=300,
        batch_size=8,
        stopping="naive",
    )
    assert int(naive["stopped"]) > 0 and float(naive["error"]) > 0.1, naive  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("gap", [10, 25, 40, 80])
def test_stop_is_calibrated_top3_of_8_full(gap):
    res = stopping_error(gap_elo=gap, n_models=8, k=3, seeds=60, n_prompts=400, batch_size=16)
    stopped = int(res["stopped"])  # type: ignore[arg-type]
    assert int(res["wrong"]) <= _allowed(stopped, 0.05) * max(stopped, 1), res  # type: ignore[arg-type]
