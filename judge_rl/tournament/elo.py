"""Online Elo (Elo 1978), for comparison with the Bradley-Terry fit.

Each battle moves both ratings by ``K * (S - E)``, with ``E = 1 / (1 + 10^((R_b - R_a) / 400))``
and ``S`` = 1 / 0.5 / 0 for a win / tie / loss (Elo, "The Rating of Chessplayers, Past and
Present", 1978). The result depends on the order of the battles and, with a small K, recent
battles count more than early ones: fine for players whose strength drifts, wrong for fixed
models judged in any order. Use Bradley-Terry (the default) for a leaderboard of fixed models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WEAKNESS = (
    "online Elo depends on the order of the battles (shuffle them and the ratings change) and "
    "weights recent battles more; for fixed models use the Bradley-Terry fit (--method bt)"
)


def online_elo(
    a: np.ndarray,
    b: np.ndarray,
    winner: np.ndarray,
    n_models: int,
    *,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float = 1000.0,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Sequential Elo updates over integer-coded battles (0 a won, 1 b won, 2 tie).  # (n,)

    The default ``k=4`` is the one Chatbot Arena's online Elo used (FastChat
    ``compute_elo``), tuned for many battles per model. A battle of weight ``w`` moves the
    ratings ``w`` times as far.
    """
    r = [float(init)] * n_models
    score = (1.0, 0.0, 0.5)
    wts = [1.0] * len(a) if weight is None else np.asarray(weight, float).tolist()
    for ia, ib, w, wt in zip(a.tolist(), b.tolist(), winner.tolist(), wts, strict=True):
        ea = 1.0 / (1.0 + base ** ((r[ib] - r[ia]) / scale))  # expected score of a
        delta = k * wt * (score[w] - ea)
        r[ia] += delta
        r[ib] -= delta
    return np.asarray(r)


def elo_leaderboard(
    a: np.ndarray,
    b: np.ndarray,
    winner: np.ndarray,
    models: Sequence[str],
    *,
    k: float = 4.0,
    weight: np.ndarray | None = None,
) -> list[dict[str, object]]:
    """Rows best first: model, rating, battles, weight, wins, ties, losses (weighted), win_rate
    (no intervals)."""
    n = len(models)
    r = online_elo(a, b, winner, n, k=k, weight=weight)
    wt = np.ones(len(a)) if weight is None else np.asarray(weight, float)

    def count(side: np.ndarray, code: int) -> np.ndarray:
        sel = winner == code
        return np.bincount(side[sel], weights=wt[sel], minlength=n)

    wins = count(a, 0) + count(b, 1)
    losses = count(a, 1) + count(b, 0)
    ties = count(a, 2) + count(b, 2)
    n_battles = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    rows: list[dict[str, object]] = []
    for rank, m in enumerate(np.argsort(-r, kind="stable"), start=1):
        total = float(wins[m] + losses[m] + ties[m])
        rows.append(
            {
                "model": models[m],
                "rating": float(r[m]),
                "lo": None,
                "hi": None,
                "rank": rank,
                "rank_lo": None,
                "rank_hi": None,
                "battles": int(n_battles[m]),
                "weight": total,
                "wins": float(wins[m]),
                "ties": float(ties[m]),
                "losses": float(losses[m]),
                "win_rate": float((wins[m] + 0.5 * ties[m]) / total) if total > 0 else None,
            }
        )
    return rows


__all__ = ["WEAKNESS", "elo_leaderboard", "online_elo"]
