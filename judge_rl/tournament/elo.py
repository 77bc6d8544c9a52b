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
) -> np.ndarray:
    """Sequential Elo updates over integer-coded battles (0 a won, 1 b won, 2 tie).  # (n,)

    The default ``k=4`` is the one Chatbot Arena's online Elo used (FastChat
    ``compute_elo``), tuned for many battles per model.
    """
    r = [float(init)] * n_models
    score = (1.0, 0.0, 0.5)
    for ia, ib, w in zip(a.tolist(), b.tolist(), winner.tolist(), strict=True):
        ea = 1.0 / (1.0 + base ** ((r[ib] - r[ia]) / scale))  # expected score of a
        delta = k * (score[w] - ea)
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
) -> list[dict[str, object]]:
    """Rows best first: model, rating, battles, wins, ties, losses, win_rate (no intervals)."""
    n = len(models)
    r = online_elo(a, b, winner, n, k=k)
    wins = np.bincount(a[winner == 0], minlength=n) + np.bincount(b[winner == 1], minlength=n)
    losses = np.bincount(a[winner == 1], minlength=n) + np.bincount(b[winner == 0], minlength=n)
    ties = np.bincount(a[winner == 2], minlength=n) + np.bincount(b[winner == 2], minlength=n)
    rows: list[dict[str, object]] = []
    for rank, m in enumerate(np.argsort(-r, kind="stable"), start=1):
        battles = int(wins[m] + losses[m] + ties[m])
        rows.append(
            {
                "model": models[m],
                "rating": float(r[m]),
                "lo": None,
                "hi": None,
                "rank": rank,
                "rank_lo": None,
                "rank_hi": None,
                "battles": battles,
                "wins": float(wins[m]),
                "ties": float(ties[m]),
                "losses": float(losses[m]),
                "win_rate": float((wins[m] + 0.5 * ties[m]) / battles) if battles else None,
            }
        )
    return rows


__all__ = ["WEAKNESS", "elo_leaderboard", "online_elo"]
