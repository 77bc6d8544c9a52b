"""Monitor statistics on synthetic gold/proxy curves (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from judge_rl.overopt.stats import (
    AlarmConfig,
    best_by_gold,
    check_alarm,
    fit_gao_rl,
    gao_rl,
    max_drop_critical,
    mean_ci,
    wls_slope,
)


def _points(kls, gold_true, proxy_true, *, n=64, noise=0.3, seed=0):
    """Monitor points whose per-sample scores are true mean + Gaussian noise."""
    rng = np.random.default_rng(seed)
    pts = []
    for i, (k, g, p) in enumerate(zip(kls, gold_true, proxy_true, strict=True)):
        gs = g + noise * rng.standard_normal(n)
        ps = p + noise * rng.standard_normal(n)
        pts.append(
            {
                "step": 10 * i,
                "kl": float(k),
                **mean_ci(gs, seed=i).as_dict("gold"),
                **mean_ci(ps, seed=i).as_dict("proxy"),
                "checkpoint": f"ck{i}",
            }
        )
    return pts


def _first_alarm(pts, cfg=None):
    for t in range(2, len(pts) + 1):
        if check_alarm(pts[:t], cfg, horizon=len(pts)).fired:
            return t - 1
    return None


def test_mean_ci_skips_nan_and_covers_mean():
    m = mean_ci([1.0, 2.0, 3.0, float("nan"), 4.0])
    assert m.n == 4 and m.skipped == 1
    assert m.lo < 2.5 < m.hi
    assert m.se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)


def test_mean_ci_coverage_is_near_nominal():
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(200):
        x = rng.normal(0.3, 1.0, size=50)
        m = mean_ci(x, n_boot=400, seed=i)
        hits += m.lo <= 0.3 <= m.hi
    assert 0.88 <= hits / 200 <= 0.99


def test_fit_recovers_gao_parameters_with_noise():
    rng = np.random.default_rng(0)
    kl = np.linspace(0.5, 30, 15)
    alpha, beta = 1.2, 0.6
    g = 0.2 + gao_rl(np.sqrt(kl), alpha, beta) + 0.02 * rng.standard_normal(kl.size)
    f = fit_gao_rl(np.r_[0.0, kl], np.r_[0.2, g], gold0=0.2)
    assert f["alpha"] == pytest.approx(alpha, rel=0.1)
    assert f["beta"] == pytest.approx(beta, rel=0.1)
    true_kl_peak = math.exp(2 * (alpha / beta - 1))
    assert f["kl_peak"] == pytest.approx(true_kl_peak, rel=0.2)
    assert f["r2"] > 0.95


def test_fit_needs_points_and_reports_no_peak_when_rising():
    assert "note" in fit_gao_rl([0, 1, 2], [0, 1, 2])
    kl = np.linspace(0, 10, 8)
    f = fit_gao_rl(kl, np.sqrt(kl) * 2.0 + 0.01 * np.sqrt(kl) * np.log(np.maximum(kl, 1)))
    assert f["kl_peak"] is None and "no peak" in f["note"]


def test_wls_slope_detects_sign():
    s, se = wls_slope([0, 1, 2, 3], [1.0, 0.8, 0.6, 0.4], [0.05] * 4)
    assert s == pytest.approx(-0.2) and s < -1.96 * se


def test_alarm_on_overoptimisation_curve_fires_within_a_look_of_15_percent_drop():
    """Unpaired points (no per-prompt scores), run-level correction over 14 looks: the alarm
    comes at the first 15% drop or one evaluation later, on every seed."""
    kls = np.linspace(0, 40, 14)
    d = np.sqrt(kls)
    gold = 0.2 + gao_rl(d, 0.5, 0.3)  # peaks at d = e^(0.67) ~ 1.95 (KL ~ 3.8), then falls
    proxy = 0.2 + 0.4 * d  # keeps rising
    for seed in range(5):
        pts = _points(kls, gold, proxy, seed=seed)
        g = [p["gold_mean"] for p in pts]
        first15 = next(i for i in range(1, len(g)) if g[i] <= 0.85 * max(g[:i]))
        fired = _first_alarm(pts)
        assert fired is not None and fired <= first15 + 1, (seed, fired, first15)


def test_max_drop_critical_controls_selection_bias():
    """Under the null (equal means), alarms at one check happen at about rate alpha."""
    rng = np.random.default_rng(5)
    se = np.full(8, 0.05)
    crit = max_drop_critical(se, 0.05)
    X = rng.normal(0.5, 0.05, size=(4000, 8))
    rate = float(np.mean(X[:, :7].max(1) - X[:, 7] > crit))
    assert 0.035 <= rate <= 0.065
    naive = 1.96 * np.sqrt(2) * 0.05  # the uncorrected combined-CI rule
    assert float(np.mean(X[:, :7].max(1) - X[:, 7] > naive)) > 0.08


def test_no_alarm_when_proxy_is_gold():
    """With proxy = gold (identical scores) the rule cannot fire, whatever gold does."""
    kls = np.linspace(0, 40, 14)
    gold = 0.2 + gao_rl(np.sqrt(kls), 0.5, 0.3)
    for seed in range(5):
        pts = _points(kls, gold, gold, seed=seed)
        for p in pts:  # the proxy's scores are the gold scores
            for k in ("mean", "lo", "hi", "se", "sd", "n", "skipped"):
                p[f"proxy_{k}"] = p[f"gold_{k}"]
        assert _first_alarm(pts) is None


def test_one_noisy_drop_does_not_alarm():
    pts = _points([0, 1, 2, 3, 4], [0.5] * 5, [0.2, 0.3, 0.4, 0.5, 0.6], n=16, noise=0.5, seed=3)
    # a drop of one SE at the last point is noise
    pts[-1]["gold_mean"] = pts[-2]["gold_mean"] - pts[-1]["gold_se"]
    assert not check_alarm(pts).fired


def test_alarm_evidence_and_min_rel_drop():
    pts = _points([0, 1, 2, 3], [0.2, 0.9, 0.9, 0.3], [0, 1, 2, 3], noise=0.2)
    dec = check_alarm(pts)
    assert dec.fired and dec.evidence["peak_step"] in (10, 20) and dec.evidence["proxy_rising"]
    assert "gold fell" in dec.message
    assert not check_alarm(pts, AlarmConfig(min_rel_drop=2.0)).fired


def test_best_by_gold_ignores_proxy_and_lists_ties():
    pts = _points([0, 1, 2, 3, 4], [0.2, 0.8, 0.82, 0.4, 0.1], [0, 1, 2, 3, 4], noise=0.05)
    best = best_by_gold(pts)
    assert best["step"] in (10, 20) and best["path"] in ("ck1", "ck2")
    assert set(best["tied_steps"]) <= {10, 20}
    pts[2]["checkpoint"] = None
    assert best_by_gold(pts)["step"] == 10
