"""Synthetic battles from known strengths: the ground truth for tests and benchmarks."""

from __future__ import annotations

import math

import numpy as np


def strengths(n: int, *, spread_elo: float = 400.0, seed: int = 0) -> np.ndarray:
    """``n`` true strengths in natural-log units, mean zero, roughly ``spread_elo`` Elo sd."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, spread_elo * math.log(10) / 400.0, size=n)
    return theta - theta.mean()


def outcome_probs(
    theta_a: np.ndarray, theta_b: np.ndarray, nu: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(a wins), P(b wins), P(tie) under Davidson (1970); ``nu=0`` is plain Bradley-Terry."""
    d = np.asarray(theta_a) - np.asarray(theta_b)
    big_d = 2.0 * np.cosh(0.5 * d) + nu
    return np.exp(0.5 * d) / big_d, np.exp(-0.5 * d) / big_d, nu / big_d


def simulate(
    theta: np.ndarray,
    n_battles: int,
    *,
    nu: float = 0.5,
    seed: int = 0,
    pair_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random battles among ``len(theta)`` models: ``(a, b, winner)`` codes (0 a, 1 b, 2 tie).

    Pairs are drawn uniformly (``a != b``) unless ``pair_weights`` (n, n) is given; outcomes from
    the Davidson model with tie parameter ``nu`` (0.5 gives ~20% ties between equals).
    """
    rng = np.random.default_rng(seed)
    n = len(theta)
    if pair_weights is None:
        a = rng.integers(0, n, n_battles)
        b = (a + rng.integers(1, n, n_battles)) % n
    else:
        p = pair_weights.reshape(-1) / pair_weights.sum()
        k = rng.choice(n * n, size=n_battles, p=p)
        a, b = k // n, k % n
    pa, pb, _ = outcome_probs(theta[a], theta[b], nu)
    u = rng.random(n_battles)
    winner = np.where(u < pa, 0, np.where(u < pa + pb, 1, 2))
    return a, b, winner


def model_names(n: int) -> list[str]:
    return [f"model-{k:02d}" for k in range(n)]


__all__ = ["model_names", "outcome_probs", "simulate", "strengths"]
