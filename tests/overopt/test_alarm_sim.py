"""The alarm as a sequential test: its run-level false-alarm rate over every look, and its power.

Simulated runs (judge_rl.overopt.simulate) have fixed held-out prompts of varied difficulty, a
pass/fail gold and a rising proxy; the alarm is checked after every evaluation as in a run. The
default suite runs a fast subset; ``pytest -m slow tests/overopt/test_alarm_sim.py -s`` runs the
full tables (also printed by ``benchmarks/sim_alarm.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from judge_rl.overopt.simulate import (
    SimConfig,
    drop_power,
    false_alarm_rate,
    flat,
    improving,
    simulate_points,
)
from judge_rl.overopt.stats import AlarmConfig, check_alarm, max_drop_critical, run_critical

ALPHA = 0.05


def _bar(runs: int, alpha: float = ALPHA) -> float:
    """alpha plus 2.33 Monte Carlo standard errors (a one-sided 99% allowance)."""
    return alpha + 2.33 * math.sqrt(alpha * (1 - alpha) / runs)


@pytest.mark.parametrize("curve", [flat, improving], ids=["flat", "improving"])
def test_run_level_false_alarm_rate_at_most_alpha(curve):
    """20 evaluations, the alarm checked after each: P(any alarm) <= alpha (+ MC allowance).
    The per-look rule this replaced alarmed in about 11% of 14-look runs."""
    rate = false_alarm_rate(curve, 20, 300, seed=1)
    assert rate <= _bar(300), rate


def test_per_look_rule_would_fail_the_same_bar():
    """The control: testing each look at level alpha (the one-look max-drop critical value,
    the rule before) over the same simulated runs exceeds the bar, so the test above can fail."""
    rng = np.random.default_rng(1)
    sim = SimConfig()
    T, runs, fired = 20, 300, 0
    theta, rho = flat(T)
    for _ in range(runs):
        pts = simulate_points(theta, rho, sim, rng)
        g = np.array([p["gold_mean"] for p in pts])
        se = np.array([p["gold_se"] for p in pts])
        for t in range(1, T):
            if g[:t].max() - g[t] > max_drop_critical(se[: t + 1], ALPHA, n_sim=2000, seed=t):
                fired += 1
                break
    assert fired / runs > _bar(runs)


def test_critical_value_does_not_grow_within_a_run():
    """The drop needed to fire is the same at the first and at the 50th look of a 50-look run
    (the bar is set once for the run, not raised at each look)."""
    rng = np.random.default_rng(0)
    theta, rho = flat(50)
    pts = simulate_points(theta, rho, SimConfig(), rng)
    crits = set()
    for t in (1, 10, 49):
        ev = check_alarm(pts[: t + 1], AlarmConfig(), horizon=50).evidence
        if "gold_drop_critical_z" in ev:
            crits.add(round(ev["gold_drop_critical_z"], 9))
    assert len(crits) == 1 and crits.pop() == pytest.approx(run_critical(50))


def test_run_critical_matches_its_definition_by_fresh_simulation():
    """An independent Monte Carlo of max_t max_{j<t} (Z_j - Z_t)/sqrt(2) exceeds the critical
    value in about alpha of runs."""
    rng = np.random.default_rng(123)
    T = 12
    c = run_critical(T)
    Z = rng.standard_normal((20000, T))
    stat = np.max([(Z[:, :t].max(1) - Z[:, t]) / math.sqrt(2) for t in range(1, T)], axis=0)
    assert abs(float((stat > c).mean()) - ALPHA) < 0.008


def test_power_against_realistic_drops():
    """A drop of 4 SE of one evaluation's gold (halfway through a 20-look run, persisting, the
    proxy still rising) is detected in >= 90% of runs; 2 SE in >= 50%; none alarm before it."""
    p4 = drop_power(4.0, 20, 60, seed=2)
    p2 = drop_power(2.0, 20, 60, seed=3)
    assert p4["detected"] >= 0.9, p4
    assert p2["detected"] >= 0.5, p2
    assert p4["alarm_before_drop"] <= 0.1 and p2["alarm_before_drop"] <= 0.1


def test_no_alarm_without_a_rising_proxy():
    """Gold falls by 4 SE but the proxy falls too: not over-optimisation, no alarm."""
    rng = np.random.default_rng(4)
    T = 12
    theta = np.where(np.arange(T) >= 6, -1.0, 0.0)
    pts = simulate_points(theta, theta.copy(), SimConfig(), rng)
    assert not any(check_alarm(pts[: t + 1], AlarmConfig(), horizon=T).fired for t in range(1, T))


@pytest.mark.slow
@pytest.mark.parametrize("T", [5, 10, 20, 50, 100])
@pytest.mark.parametrize("curve", [flat, improving], ids=["flat", "improving"])
def test_run_level_false_alarm_rate_full(curve, T):
    runs = 1000 if T <= 20 else 400
    rate = false_alarm_rate(curve, T, runs, seed=T)
    print(f"\nfalse alarms, {curve.__name__}, {T} evaluations: {rate:.3f} of {runs} runs")
    assert rate <= _bar(runs), rate


@pytest.mark.slow
@pytest.mark.parametrize("k", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("T", [10, 20, 50])
def test_power_table(k, T):
    r = drop_power(k, T, 200, seed=int(10 * k) + T)
    print(f"\npower, drop {k:g} SE, {T} evaluations: {r}")
    assert r["alarm_before_drop"] <= _bar(200)
