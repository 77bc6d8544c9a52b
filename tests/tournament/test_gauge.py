"""Issue 20 items 1 and 3: the sum-to-zero gauge, exact MLE at scale, centred SEs, the default
prior's effect, and weights honoured in counts, win rates and the bootstrap."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from judge_rl.tournament import bradley_terry as bt
from judge_rl.tournament import synthetic as sy


def _counts(n_models: int, n_battles: int, seed: int, spread: float = 200.0) -> bt.PairCounts:
    theta = sy.strengths(n_models, spread_elo=spread, seed=seed)
    a, b, w = sy.simulate(theta, n_battles, nu=0.5, seed=seed + 1)
    return bt.aggregate_codes(a, b, w, sy.model_names(n_models))


def _fisher_pinv_se(counts: bt.PairCounts, theta: np.ndarray) -> np.ndarray:
    """Centred Laplace SE (Elo) computed independently: Moore-Penrose inverse of the Fisher
    information of the ties-half likelihood at ``theta``."""
    n = counts.n_models
    info = np.zeros((n, n))
    for p in range(len(counts.i)):
        i, j = int(counts.i[p]), int(counts.j[p])
        q = 1.0 / (1.0 + np.exp(-(theta[i] - theta[j])))
        f = counts.cells[p].sum() * q * (1 - q)
        info[i, i] += f
        info[j, j] += f
        info[i, j] -= f
        info[j, i] -= f
    return bt.ELO_PER_UNIT * np.sqrt(np.diag(np.linalg.pinv(info, rcond=1e-15)))


def test_prior0_exact_mle_at_one_million_battles_ten_models():
    counts = _counts(10, 1_000_000, seed=7)
    f = bt.fit(counts, prior=0.0)  # raised LinAlgError: Singular matrix
    assert f.prior == 0.0 and not f.warnings
    assert abs(f.theta.sum()) < 1e-9
    g, _ = bt.half_grad_hess(f.theta[None], counts.cells[None], counts.incidence(), 0.0, False)
    assert np.max(np.abs(g)) < 1e-6 * counts.n_battles**0.5


@pytest.mark.parametrize("n_battles", [30_000, 300_000])
def test_laplace_interval_width_is_exact(n_battles):
    counts = _counts(10, n_battles, seed=3)
    lb = bt.leaderboard(counts, prior=0.0, bootstrap_rounds=0)
    z = NormalDist().inv_cdf(0.975)
    ref = _fisher_pinv_se(counts, lb.fit.theta)
    for row in lb.rows:
        k = counts.models.index(str(row["model"]))
        half = (float(row["hi"]) - float(row["lo"])) / 2  # type: ignore[arg-type]
        assert half == pytest.approx(z * ref[k], rel=1e-6), (row["model"], half, z * ref[k])


def test_se_is_centred_not_gauge_variance():
    counts = _counts(8, 3_000, seed=5)
    f = bt.fit(counts)
    ref = _fisher_pinv_se(counts, f.theta)
    assert np.allclose(f.se(), ref, rtol=1e-6)  # was ~1000 Elo: the prior's variance of the mean
    assert f.se().max() < 50


def test_se_relative_to_anchor():
    counts = _counts(6, 5_000, seed=9)
    f = bt.fit(counts, anchor="model-02")
    assert f.se()[2] == 0.0 and np.all(np.delete(f.se(), 2) > 0)


def test_default_prior_moves_ratings_less_than_a_tenth_of_an_elo():
    # Small, well-connected field with a wide spread: a fixed ridge moved ratings by > 0.1 Elo.
    counts = _counts(10, 400, seed=21, spread=400.0)
    assert not bt.diagnose(counts)
    mle = bt.fit(counts, prior=0.0).ratings
    default = bt.fit(counts).ratings
    assert np.max(np.abs(default - mle)) < 0.1


def test_default_prior_falls_back_when_mle_does_not_exist():
    a, b, w = np.array([0, 0, 1, 1]), np.array([1, 2, 2, 2]), np.array([0, 0, 0, 1])
    f = bt.fit(bt.aggregate_codes(a, b, w, ["x", "y", "z"]))  # x never lost
    assert f.prior == bt.DEFAULT_PRIOR and any("MLE does not exist" in m for m in f.warnings)
    assert np.all(np.isfinite(f.ratings))


def test_anchor_value_pins_the_anchor():
    counts = _counts(5, 2_000, seed=2)
    lb = bt.leaderboard(counts, anchor="model-01", anchor_value=1114.0, bootstrap_rounds=20)
    row = next(r for r in lb.rows if r["model"] == "model-01")
    assert row["rating"] == pytest.approx(1114.0)
    assert row["lo"] == pytest.approx(1114.0) and row["hi"] == pytest.approx(1114.0)


# -- item 3: weights ---------------------------------------------------------------------------


def test_weighted_win_rate_never_exceeds_one():
    # a beats b twice with weight 3; b beats a once with weight 1.
    counts = bt.aggregate_codes(
        np.array([0, 0, 1]),
        np.array([1, 1, 0]),
        np.array([0, 0, 0]),
        ["a", "b"],
        weight=np.array([3.0, 3.0, 1.0]),
    )
    lb = bt.leaderboard(counts, bootstrap_rounds=0)
    rows = {r["model"]: r for r in lb.rows}
    assert rows["a"]["win_rate"] == pytest.approx(6 / 7)  # was 6 / 3 = 2.0
    assert rows["b"]["win_rate"] == pytest.approx(1 / 7)
    assert rows["a"]["battles"] == 3 and rows["a"]["weight"] == pytest.approx(7.0)


def test_weight_zero_counts_as_zero_in_records():
    from judge_rl.types import Battle

    bs = [
        Battle(model_a="a", model_b="b", winner="a", weight=0.0),
        Battle(model_a="a", model_b="b", winner="b", weight=1.0),
    ]
    c = bt.aggregate(bs)
    assert c.cells.sum() == pytest.approx(1.0)  # weight 0 was read as 1


def test_weighted_bootstrap_keeps_each_battles_weight():
    # One cell holds battles of weight 0.1 and 10: the per-round total weight of that cell must
    # vary with how many heavy battles were drawn (a mean-weight resample cannot show that).
    rng = np.random.default_rng(0)
    n = 400
    a = np.zeros(n, int)
    b = np.ones(n, int)
    w = (rng.random(n) < 0.5).astype(int)
    wt = np.where(rng.random(n) < 0.5, 0.1, 10.0)
    counts = bt.aggregate_codes(a, b, w, ["a", "b"], weight=wt)
    cells = bt.resample_cells(counts, 500, np.random.default_rng(1), by="battles")  # (R, 1, 3)
    tot = cells.sum(axis=(1, 2))
    # Total weight of a resample = sum of N draws from the weights: sd = sqrt(N) * sd(weights).
    assert np.std(tot) == pytest.approx(np.sqrt(n) * np.std(wt), rel=0.15)
    assert np.mean(tot) == pytest.approx(wt.sum(), rel=0.02)


def test_online_elo_honours_weights():
    from judge_rl.tournament.elo import elo_leaderboard

    a, b, w = np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([0, 0, 0])
    rows = {
        r["model"]: r
        for r in elo_leaderboard(a, b, w, ["a", "b"], weight=np.array([3.0, 3.0, 1.0]))
    }
    assert rows["a"]["win_rate"] == pytest.approx(6 / 7) and rows["a"]["battles"] == 3
    # weight 2 moves ratings as far as the same battle twice (first step)
    one = elo_leaderboard(
        np.array([0]), np.array([1]), np.array([0]), ["a", "b"], weight=np.array([2.0])
    )
    assert one[0]["rating"] == pytest.approx(1000 + 2 * 4 * 0.5)
