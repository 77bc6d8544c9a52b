"""Bradley-Terry on counts: recovery, coverage, a published example, invariances, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from judge_rl.tournament import bradley_terry as bt
from judge_rl.tournament import synthetic as sy


def test_recovers_known_strengths_30_models_with_ties():
    theta = sy.strengths(30, spread_elo=300, seed=11)
    a, b, w = sy.simulate(theta, 100_000, nu=0.5, seed=12)
    assert 0.1 < np.mean(w == 2) < 0.4  # ties present
    counts = bt.aggregate_codes(a, b, w, sy.model_names(30))
    for ties in ("half", "davidson"):
        f = bt.fit(counts, ties=ties)
        rho = spearmanr(f.theta, theta)[0]
        assert rho >= 0.98, (ties, rho)
    # Davidson is the generating model: strengths and tie parameter come back.
    f = bt.fit(counts, ties="davidson")
    assert np.max(np.abs(f.theta - theta)) < 0.1
    assert f.nu == pytest.approx(0.5, abs=0.05)


def test_bootstrap_intervals_cover_the_truth_about_95_percent():
    # 30 independent data sets x 20 models = 600 intervals, each from 100 bootstrap rounds.
    theta = sy.strengths(20, spread_elo=250, seed=3)
    truth = bt.to_ratings(theta, sy.model_names(20), None)
    covered = total = 0
    for rep in range(30):
        a, b, w = sy.simulate(theta, 6_000, nu=0.5, seed=100 + rep)
        counts = bt.aggregate_codes(a, b, w, sy.model_names(20))
        lb = bt.leaderboard(counts, ties="davidson", bootstrap_rounds=100, seed=rep)
        for row in lb.rows:
            k = sy.model_names(20).index(row["model"])
            covered += row["lo"] <= truth[k] <= row["hi"]
            total += 1
    rate = covered / total
    assert 0.92 <= rate <= 0.98, rate


def test_wikipedia_worked_example():
    # Wikipedia, "Bradley-Terry model", section "Worked example of solution procedure": four
    # teams, 22 games; wins of the row team over the column team. The iteration there converges
    # to p = (0.139, 0.226, 0.143, 0.492), normalised to sum to one.
    wins = np.array([[0, 2, 0, 1], [3, 0, 5, 0], [0, 3, 0, 1], [4, 0, 3, 0]])
    a, b, w = [], [], []
    for i in range(4):
        for j in range(4):
            for _ in range(wins[i, j]):
                a.append(i)
                b.append(j)
                w.append(0)
    counts = bt.aggregate_codes(np.array(a), np.array(b), np.array(w), list("ABCD"))
    f = bt.fit(counts, prior=0.0)
    assert not f.warnings
    p = np.exp(f.theta) / np.exp(f.theta).sum()
    np.testing.assert_allclose(p, [0.139, 0.226, 0.143, 0.492], atol=5e-4)
    # and on the Elo scale: 400 / ln 10 per unit
    assert f.rating_of("D") - f.rating_of("A") == pytest.approx(
        400 * math.log10(0.49213336 / 0.13869244), abs=0.01
    )


def _battles(seed=0, n=2000):
    theta = sy.strengths(6, seed=seed)
    return sy.simulate(theta, n, nu=0.5, seed=seed + 1)


def test_invariant_to_swapping_sides_and_to_order():
    a, b, w = _battles()
    names = sy.model_names(6)
    base = bt.fit(bt.aggregate_codes(a, b, w, names), ties="davidson").ratings
    flipped = np.where(w == 0, 1, np.where(w == 1, 0, 2))
    swapped = bt.fit(bt.aggregate_codes(b, a, flipped, names), ties="davidson").ratings
    np.testing.assert_allclose(swapped, base, atol=1e-9)
    perm = np.random.default_rng(5).permutation(len(a))
    shuffled = bt.fit(bt.aggregate_codes(a[perm], b[perm], w[perm], names), ties="davidson").ratings
    np.testing.assert_allclose(shuffled, base, atol=1e-9)


def test_online_elo_is_order_dependent():
    from judge_rl.tournament.elo import online_elo

    a, b, w = _battles()
    r1 = online_elo(a, b, w, 6)
    perm = np.random.default_rng(5).permutation(len(a))
    r2 = online_elo(a[perm], b[perm], w[perm], 6)
    assert np.max(np.abs(r1 - r2)) > 1.0


def test_anchor_and_mean():
    a, b, w = _battles()
    counts = bt.aggregate_codes(a, b, w, sy.model_names(6))
    f = bt.fit(counts)
    assert f.ratings.mean() == pytest.approx(1000.0)
    g = bt.fit(counts, anchor="model-03")
    assert g.rating_of("model-03") == pytest.approx(1000.0)
    np.testing.assert_allclose(np.diff(g.ratings), np.diff(f.ratings), atol=1e-9)


def test_undefeated_and_disconnected_stay_finite_with_warnings():
    # m0 beats everyone; {m3, m4} never meet {m0, m1, m2}
    rows = [("m0", "m1", 0)] * 5 + [("m0", "m2", 0)] * 3 + [("m1", "m2", 0), ("m2", "m1", 0)]
    rows += [("m3", "m4", 0), ("m4", "m3", 2), ("m3", "m4", 1)]
    battles = [
        {"model_a": x, "model_b": y, "winner": "a" if c == 0 else ("b" if c == 1 else "tie")}
        for x, y, c in rows
    ]
    counts = bt.aggregate(battles)
    lb = bt.leaderboard(counts, bootstrap_rounds=50)
    assert all(math.isfinite(r["rating"]) and math.isfinite(r["lo"]) for r in lb.rows)
    text = " ".join(lb.warnings)
    assert "disconnected" in text and "m0 won every battle" in text
    assert lb.rows[0]["model"] == "m0"
    # plain MLE asked for where it does not exist: falls back to the prior, says so
    f = bt.fit(counts, prior=0.0)
    assert np.all(np.isfinite(f.ratings)) and any("MLE does not exist" in x for x in f.warnings)


def test_predicted_matrix_and_rank_intervals():
    a, b, w = _battles(n=5000)
    counts = bt.aggregate_codes(a, b, w, sy.model_names(6))
    lb = bt.leaderboard(counts, bootstrap_rounds=100)
    pm = lb.fit.predicted()
    np.testing.assert_allclose(pm + pm.T, 1.0, atol=1e-12)
    for r in lb.rows:
        assert r["rank_lo"] <= r["rank"] <= r["rank_hi"]
        assert r["lo"] <= r["rating"] <= r["hi"]
    # normal-approximation intervals when no bootstrap is asked for
    lb0 = bt.leaderboard(counts, bootstrap_rounds=0)
    for r0, r in zip(lb0.rows, lb.rows, strict=True):
        assert r0["model"] == r["model"]
        assert r0["hi"] - r0["lo"] == pytest.approx(r["hi"] - r["lo"], rel=0.5)


def test_bootstrap_on_counts_matches_resampling_rows():
    # The multinomial draw over cells has the same mean/variance as resampling battles.
    a, b, w = _battles(n=3000)
    counts = bt.aggregate_codes(a, b, w, sy.model_names(6))
    rng = np.random.default_rng(0)
    cells = bt.resample_cells(counts, 400, rng)  # (R, P, 3)
    assert cells.sum(axis=(1, 2)) == pytest.approx(np.full(400, 3000.0))
    np.testing.assert_allclose(cells.mean(axis=0), counts.cells, rtol=0.1, atol=3)
    # per-pair resampling keeps each pair's number of battles
    strat = bt.resample_cells(counts, 50, rng, by="pairs")
    np.testing.assert_allclose(strat.sum(axis=2), np.tile(counts.counts.sum(axis=1), (50, 1)))
    np.testing.assert_allclose(strat.mean(axis=0), counts.cells, rtol=0.15, atol=3)


def _aggregate_by_hand(a, b, w, n, weight=None):
    """The definition, one battle at a time: pair (min, max), outcome seen from the min."""
    cells: dict[tuple[int, int], list[float]] = {}
    counts: dict[tuple[int, int], list[int]] = {}
    for k in range(len(a)):
        x, y, o = int(a[k]), int(b[k]), int(w[k])
        if x > y:
            x, y, o = y, x, {0: 1, 1: 0, 2: 2}[o]
        cells.setdefault((x, y), [0.0, 0.0, 0.0])[o] += 1.0 if weight is None else weight[k]
        counts.setdefault((x, y), [0, 0, 0])[o] += 1
    keys = sorted(cells)
    return keys, np.array([cells[k] for k in keys]), np.array([counts[k] for k in keys])


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_aggregate_codes_equals_the_per_battle_definition(dtype):
    rng = np.random.default_rng(3)
    n = 7
    a = rng.integers(0, n, 3000)
    b = (a + rng.integers(1, n, 3000)) % n  # never a == b
    w = rng.integers(0, 3, 3000)
    a[:40], b[:40] = 5, 6  # a pair met only one way round
    wt = rng.uniform(0.1, 2.0, 3000)
    pr = rng.integers(0, 50, 3000)
    for weight in (None, wt):
        keys, cells, counts = _aggregate_by_hand(a, b, w, n, weight)
        got = bt.aggregate_codes(
            a.astype(dtype), b.astype(dtype), w.astype(dtype), list("ABCDEFG"), weight, pr
        )
        assert list(zip(got.i.tolist(), got.j.tolist(), strict=True)) == keys
        np.testing.assert_allclose(got.cells, cells)
        np.testing.assert_array_equal(got.counts, counts)
        assert got.groups is not None and int(got.groups.count.sum()) == 3000
        # each group's cell holds battles of that cell only: sums by cell give the counts back
        by_cell = np.bincount(got.groups.cell, got.groups.count, 3 * len(keys))
        np.testing.assert_array_equal(by_cell.reshape(-1, 3), counts)
    with pytest.raises(bt.JudgeRLError, match="battle 3: a model cannot battle itself"):
        bt.aggregate_codes(np.array([0, 1, 2]), np.array([1, 0, 2]), np.zeros(3), list("ABC"))


def test_aggregate_codes_many_models_counts_only_the_cells_that_occur():
    """1,300 models (5M directed cells, more than 4 per battle): the sparse path, same result."""
    rng = np.random.default_rng(4)
    n = 1300
    a = rng.integers(0, n, 4000)
    b = (a + rng.integers(1, n, 4000)) % n
    a[:30], b[:30] = 9, 3
    w = rng.integers(0, 3, 4000)
    wt = rng.uniform(0.5, 1.5, 4000)
    keys, cells, counts = _aggregate_by_hand(a, b, w, n, wt)
    got = bt.aggregate_codes(a, b, w, [f"m{k}" for k in range(n)], wt, rng.integers(0, 9, 4000))
    assert list(zip(got.i.tolist(), got.j.tolist(), strict=True)) == keys
    np.testing.assert_allclose(got.cells, cells)
    np.testing.assert_array_equal(got.counts, counts)
    assert got.groups is not None
    by_cell = np.bincount(got.groups.cell, got.groups.count, 3 * len(keys))
    np.testing.assert_array_equal(by_cell.reshape(-1, 3), counts)


def test_quantiles_equal_numpy_quantile():
    rng = np.random.default_rng(5)
    for rounds in (1, 2, 7, 100, 1000):
        x = rng.normal(1000, 50, (rounds, 6))
        x[:, 5] = np.round(x[:, 5] / 100)  # ties in a column (ranks are integers)
        for q in (0.0, 0.025, 0.05, 0.5, 0.95, 0.975, 1.0):
            (got,) = bt.quantiles(x, q)
            np.testing.assert_array_equal(got, np.quantile(x, q, axis=0))


def test_unique_rows_equals_numpy_unique_on_a_record_array(monkeypatch):
    rng = np.random.default_rng(6)
    p = rng.integers(-1, 40, 5000)
    c = rng.integers(0, 90, 5000)
    w = rng.choice([0.5, 1.0, 2.0, 1e-9], 5000)
    (up, uc, uw), inv = bt.unique_rows(p, c, w)
    uniq, ref_inv = np.unique(np.rec.fromarrays([p, c, w], names="p,c,w"), return_inverse=True)
    np.testing.assert_array_equal(up, uniq["p"])
    np.testing.assert_array_equal(uc, uniq["c"])
    np.testing.assert_array_equal(uw, uniq["w"])
    np.testing.assert_array_equal(inv, ref_inv.reshape(-1))
    # more combinations than one int64 key holds (lowered here): the record array, same answer
    monkeypatch.setattr(bt, "_KEY_SPAN", 1000)
    (up, uc, uw), inv = bt.unique_rows(p, c, w)
    np.testing.assert_array_equal(uc, uniq["c"])
    np.testing.assert_array_equal(uw, uniq["w"])
    np.testing.assert_array_equal(inv, ref_inv.reshape(-1))
