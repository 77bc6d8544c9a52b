"""Bradley-Terry ratings from battles, fitted on aggregated pair counts.

The model (Bradley & Terry 1952; Zermelo 1929): ``P(i beats j) = sigma(theta_i - theta_j)``.
Every computation here works on the sufficient statistics — for each unordered pair ``(i, j)``,
the (weighted) number of wins of ``i``, wins of ``j`` and ties — never on one row per battle, so a
fit on a million battles among 30 models is a Newton solve over 435 pairs, and a bootstrap round is
one multinomial draw over those counts.

Ties:
    * ``"half"`` (default): a tie is half a win for each side (what Chatbot Arena / FastChat do).
    * ``"davidson"``: Davidson (1970), "On extending the Bradley-Terry model to accommodate ties
      in paired comparison experiments", JASA 65(329):317-328:
      ``P(i) = pi_i / (pi_i + pi_j + nu sqrt(pi_i pi_j))``, ``P(tie) = nu sqrt(pi_i pi_j) / (...)``.

Scale: ratings are reported on the Elo scale, ``400 / ln 10`` Elo points per natural-log unit of
strength, so a 400-point gap means 10:1 odds; the anchor model (or the mean) sits at 1000.

A Gaussian prior ``N(0, 1/prior)`` on each strength (a ridge penalty) keeps the estimate finite when
the maximum-likelihood estimate does not exist (Ford 1957: it exists iff the directed "scored
against" graph is strongly connected), e.g. for a model that never lost or a disconnected graph.
Those cases are detected and reported in :attr:`BTFit.warnings`. The default prior is weak
(standard deviation ~1737 Elo) and moves ratings by far less than 0.1 Elo on ordinary data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from judge_rl.errors import JudgeRLError

log = logging.getLogger(__name__)

TieModel = Literal["half", "davidson"]

ELO_PER_UNIT = 400.0 / math.log(10.0)
"""Elo points per natural-log unit of strength (Elo 1978: 400 points = factor 10 in odds)."""
BASE_RATING = 1000.0
DEFAULT_PRIOR = 0.01
"""Precision of the Gaussian prior on each strength (natural-log units): sd = 10 units."""

WIN_A, WIN_B, TIE = 0, 1, 2
WINNER_CODES = {"a": WIN_A, "b": WIN_B, "tie": TIE}


# ----------------------------------------------------------------------------------------------
# Sufficient statistics
# ----------------------------------------------------------------------------------------------


@dataclass
class PairCounts:
    """Aggregated battles: one row per unordered pair that met, ``i < j``.

    ``cells[p] = (wins of i, wins of j, ties)`` weighted; ``counts[p]`` the same in battles.
    """

    models: list[str]
    i: np.ndarray  # (P,) int
    j: np.ndarray  # (P,) int
    cells: np.ndarray  # (P, 3) float: weighted wins_i, wins_j, ties
    counts: np.ndarray  # (P, 3) int: number of battles in each cell

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_battles(self) -> int:
        return int(self.counts.sum())

    def incidence(self) -> np.ndarray:
        """``A`` with ``A[p, i] = 1, A[p, j] = -1`` so that ``d = A @ theta``.  # (P, n)"""
        a = np.zeros((len(self.i), self.n_models))
        rows = np.arange(len(self.i))
        a[rows, self.i] = 1.0
        a[rows, self.j] = -1.0
        return a

    def per_model(self) -> dict[str, np.ndarray]:
        """Battles, wins, ties and losses per model (weighted), each of shape ``(n,)``."""
        n = self.n_models
        wi, wj, t = self.cells[:, 0], self.cells[:, 1], self.cells[:, 2]
        wins = np.bincount(self.i, wi, n) + np.bincount(self.j, wj, n)
        losses = np.bincount(self.i, wj, n) + np.bincount(self.j, wi, n)
        ties = np.bincount(self.i, t, n) + np.bincount(self.j, t, n)
        tot = self.counts.sum(axis=1).astype(float)
        battles = np.bincount(self.i, tot, n) + np.bincount(self.j, tot, n)
        return {"battles": battles, "wins": wins, "ties": ties, "losses": losses}

    def win_matrix(self) -> list[list[float | None]]:
        """Observed score of row over column (ties half); ``None`` where they never met."""
        n = self.n_models
        m: list[list[float | None]] = [[None] * n for _ in range(n)]
        for p in range(len(self.i)):
            wi, wj, t = self.cells[p]
            tot = wi + wj + t
            if tot <= 0:
                continue
            a, b = int(self.i[p]), int(self.j[p])
            m[a][b] = float((wi + 0.5 * t) / tot)
            m[b][a] = float((wj + 0.5 * t) / tot)
        return m

    def with_cells(self, cells: np.ndarray) -> PairCounts:
        return PairCounts(self.models, self.i, self.j, cells, self.counts)


def aggregate_codes(
    a: np.ndarray,
    b: np.ndarray,
    winner: np.ndarray,
    models: Sequence[str],
    weight: np.ndarray | None = None,
) -> PairCounts:
    """Aggregate integer-coded battles (vectorised; 1M battles in ~0.1 s).

    Args:
        a: index of ``model_a`` in ``models`` per battle.  # (N,)
        b: index of ``model_b``.  # (N,)
        winner: 0 = a won, 1 = b won, 2 = tie.  # (N,)
        models: model names.
        weight: optional weight per battle.  # (N,)
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    w = np.asarray(winner, dtype=np.int64)
    n = len(models)
    if np.any(a == b):
        k = int(np.argmax(a == b))
        raise JudgeRLError(f"battle {k + 1}: a model cannot battle itself ({models[a[k]]})")
    # Normalise each battle to i < j; a win of b becomes a win of the first slot's opponent.
    swap = a > b
    i = np.where(swap, b, a)
    j = np.where(swap, a, b)
    outcome = np.where(swap & (w == WIN_A), WIN_B, np.where(swap & (w == WIN_B), WIN_A, w))
    key = (i * n + j) * 3 + outcome  # (N,)
    size = n * n * 3
    counts = np.bincount(key, minlength=size).reshape(n * n, 3)
    if weight is None:
        cells = counts.astype(float)
    else:
        cells = np.bincount(key, weights=np.asarray(weight, float), minlength=size).reshape(
            n * n, 3
        )
    met = np.flatnonzero(counts.sum(axis=1) > 0)
    return PairCounts(
        models=list(models),
        i=(met // n).astype(np.int64),
        j=(met % n).astype(np.int64),
        cells=cells[met],
        counts=counts[met],
    )


def aggregate(battles: Iterable[object], models: Sequence[str] | None = None) -> PairCounts:
    """Aggregate :class:`judge_rl.types.Battle` records (or dicts with the same keys)."""
    names: dict[str, int] = {m: k for k, m in enumerate(models or [])}
    a: list[int] = []
    b: list[int] = []
    w: list[int] = []
    wt: list[float] = []
    for bt in battles:
        get = bt.get if isinstance(bt, dict) else lambda k, d=None, _b=bt: getattr(_b, k, d)
        ma, mb, win = str(get("model_a")), str(get("model_b")), get("winner")
        for m in (ma, mb):
            if m not in names:
                names[m] = len(names)
        a.append(names[ma])
        b.append(names[mb])
        if win not in WINNER_CODES:
            raise JudgeRLError(f"winner must be one of a, b, tie (got {win!r})")
        w.append(WINNER_CODES[str(win)])
        wt.append(float(get("weight", 1.0) or 1.0))
    ordered = sorted(names, key=names.__getitem__)
    weight = np.asarray(wt) if any(x != 1.0 for x in wt) else None
    return aggregate_codes(np.asarray(a), np.asarray(b), np.asarray(w), ordered, weight)


# ----------------------------------------------------------------------------------------------
# Likelihood pieces (batched over R resamples: cells (R, P, 3), theta (R, n))
# ----------------------------------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def weighted_gram(inc: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``A^T diag(w_r) A`` for each row ``w_r`` of ``w``: a weighted graph Laplacian.  # (R, n, n)

    One batched BLAS matmul ``(R, n, P) @ (P, n)``.
    """
    return np.matmul(inc.T[None, :, :] * w[:, None, :], inc)


def half_grad_hess(
    theta: np.ndarray, cells: np.ndarray, inc: np.ndarray, prior: float, hess: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradient and negative Hessian of the ties-as-half log-posterior.

    Log-likelihood (Bradley & Terry 1952, ties split): for each pair,
    ``s_ij log sigma(d) + s_ji log sigma(-d)`` with ``d = theta_i - theta_j`` and
    ``s_ij = wins_i + ties / 2``; prior ``-prior/2 * |theta|^2``.
    """
    d = theta @ inc.T  # (R, P)
    p = sigmoid(d)  # (R, P)
    s_i = cells[..., 0] + 0.5 * cells[..., 2]  # (R, P)
    tot = cells.sum(axis=-1)  # (R, P)
    r = s_i - tot * p  # (R, P)  d loglik / d d
    grad = r @ inc - prior * theta  # (R, n)
    if not hess:
        return grad, None
    w = tot * p * (1.0 - p)  # (R, P)  Fisher information per pair
    neg_hess = weighted_gram(inc, w)  # (R, n, n)
    neg_hess += prior * np.eye(theta.shape[-1])
    return grad, neg_hess


def davidson_grad_hess(
    params: np.ndarray, cells: np.ndarray, inc: np.ndarray, prior: float, hess: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradient and negative Hessian of the Davidson (1970) log-posterior.

    ``params = (theta_1..theta_n, log nu)``. Dividing through by ``sqrt(pi_i pi_j)``:
    ``P(i) = e^{d/2} / D``, ``P(j) = e^{-d/2} / D``, ``P(tie) = nu / D``, ``D = 2 cosh(d/2) + nu``,
    so the pair log-likelihood is ``(w_i - w_j) d/2 + t log nu - N log D``.
    """
    theta, lognu = params[:, :-1], params[:, -1:]  # (R, n), (R, 1)
    nu = np.exp(lognu)  # (R, 1)
    d = theta @ inc.T  # (R, P)
    ch, sh = np.cosh(0.5 * d), np.sinh(0.5 * d)
    big_d = 2.0 * ch + nu  # (R, P)
    wi, wj, t = cells[..., 0], cells[..., 1], cells[..., 2]
    tot = wi + wj + t
    g_d = 0.5 * (wi - wj) - tot * sh / big_d  # (R, P)
    g_nu = (t - tot * nu / big_d).sum(axis=-1)  # (R,)
    n = theta.shape[-1]
    grad = np.empty_like(params)
    grad[:, :n] = g_d @ inc - prior * theta
    grad[:, n] = g_nu - prior * lognu[:, 0]
    if not hess:
        return grad, None
    h_dd = tot * (0.5 * ch * big_d - sh * sh) / big_d**2  # (R, P)  (negated second derivative)
    h_dn = -tot * sh * nu / big_d**2  # (R, P)
    h_nn = (tot * nu * 2.0 * ch / big_d**2).sum(axis=-1)  # (R,)
    neg_hess = np.zeros((params.shape[0], n + 1, n + 1))
    neg_hess[:, :n, :n] = weighted_gram(inc, h_dd)
    neg_hess[:, :n, n] = h_dn @ inc
    neg_hess[:, n, :n] = neg_hess[:, :n, n]
    neg_hess[:, n, n] = h_nn
    neg_hess += prior * np.eye(n + 1)
    return grad, neg_hess


def newton(
    cells: np.ndarray,
    inc: np.ndarray,
    *,
    ties: TieModel,
    prior: float,
    x0: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Batched Newton's method on the (concave) log-posterior.

    Returns the maximiser ``(R, k)``, the negative Hessian there ``(R, k, k)`` and iterations.
    Steps are capped at 2 natural-log units per coordinate, which keeps the first steps on
    near-separable data from overshooting; near the optimum the steps are pure Newton.
    """
    r, n = cells.shape[0], inc.shape[1]
    k = n + (1 if ties == "davidson" else 0)
    x = np.zeros((r, k)) if x0 is None else np.array(x0, dtype=float).reshape(r, k)
    if x0 is None and ties == "davidson":
        x[:, -1] = math.log(0.5)
    fn = davidson_grad_hess if ties == "davidson" else half_grad_hess
    iters = 0
    for _ in range(max_iter):
        iters += 1
        g, h = fn(x, cells, inc, prior)
        assert h is not None
        step = np.linalg.solve(h, g[..., None])[..., 0]  # (R, k)
        step = np.clip(step, -2.0, 2.0)
        x += step
        if float(np.max(np.abs(step))) < tol:
            break
    _, h = fn(x, cells, inc, prior)
    assert h is not None
    return x, h, iters


def chord(
    cells: np.ndarray,
    inc: np.ndarray,
    *,
    ties: TieModel,
    prior: float,
    x0: np.ndarray,
    h0: np.ndarray,
    max_iter: int = 40,
    tol: float = 1e-9,
) -> tuple[np.ndarray, np.ndarray]:
    """Chord (simplified Newton) iterations with one fixed Hessian for every resample.

    Bootstrap resamples sit close to the full-data fit, so the full-data negative Hessian ``h0``
    (factored once) is a near-exact curvature for all of them: each iteration costs one gradient,
    ``O(R P)``, instead of ``R`` Hessians and solves (Kelley 1995, "Iterative methods for linear
    and nonlinear equations", sec. 5.4). Returns the iterates and a per-round convergence mask.
    """
    fn = davidson_grad_hess if ties == "davidson" else half_grad_hess
    h_inv = np.linalg.inv(h0)  # (k, k), symmetric
    x = np.tile(np.asarray(x0, float), (cells.shape[0], 1))  # (R, k)
    done = np.zeros(cells.shape[0], dtype=bool)
    prev = np.full(cells.shape[0], np.inf)
    r_rounds, n_pairs = cells.shape[0], cells.shape[1]
    if ties == "half":  # the sufficient statistics of the gradient, computed once
        s_i = cells[..., 0] + 0.5 * cells[..., 2]  # (R, P)
        tot = cells.sum(axis=-1)  # (R, P)
        # Gathers and bincounts instead of (R, n) x (n, P) matmuls: single-threaded and immune to
        # BLAS thread contention, which made these tiny products 10x slower on a busy machine.
        pi, pj = np.argmax(inc > 0, axis=1), np.argmax(inc < 0, axis=1)  # (P,)
        k = x.shape[1]
        rows = np.repeat(np.arange(r_rounds) * k, n_pairs)  # (R * P,)
        idx_i, idx_j = rows + np.tile(pi, r_rounds), rows + np.tile(pj, r_rounds)
    for _ in range(max_iter):
        if ties == "half":
            p = sigmoid(x[:, pi] - x[:, pj])  # (R, P)
            res = (s_i - tot * p).ravel()  # (R * P,)
            flat = np.bincount(idx_i, res, r_rounds * k) - np.bincount(idx_j, res, r_rounds * k)
            g = flat.reshape(r_rounds, k) - prior * x  # (R, n)
        else:
            g, _ = fn(x, cells, inc, prior, hess=False)
        step = g @ h_inv  # (R, k)
        size = np.max(np.abs(step), axis=1)  # (R,)
        diverging = size > prev
        step[diverging | done] = 0.0
        x += np.clip(step, -2.0, 2.0)
        done |= size < tol
        prev = np.where(diverging, prev, size)
        if done.all() or (diverging & ~done).all():
            break
    return x, done


# ----------------------------------------------------------------------------------------------
# Fit, diagnostics, bootstrap
# ----------------------------------------------------------------------------------------------


@dataclass
class BTFit:
    """A Bradley-Terry fit: strengths, Elo-scale ratings and what to watch out for."""

    models: list[str]
    theta: np.ndarray
    """Strengths in natural-log units, mean zero (before anchoring).  # (n,)"""
    ratings: np.ndarray
    """Elo scale: ``ELO_PER_UNIT * (theta - theta_anchor) + 1000``.  # (n,)"""
    cov: np.ndarray
    """Laplace covariance of ``theta`` (inverse negative Hessian).  # (n, n)"""
    ties: TieModel = "half"
    nu: float | None = None
    """Davidson tie parameter."""
    anchor: str | None = None
    prior: float = DEFAULT_PRIOR
    iterations: int = 0
    warnings: list[str] = field(default_factory=list)
    counts: PairCounts | None = None
    params: np.ndarray | None = None
    """Optimiser coordinates: theta, plus ``log nu`` for Davidson.  # (k,)"""
    hess: np.ndarray | None = None
    """Negative Hessian of the log-posterior at ``params``.  # (k, k)"""

    def rating_of(self, model: str) -> float:
        return float(self.ratings[self.models.index(model)])

    def se(self) -> np.ndarray:
        """Standard error of each rating (Elo points) from the Laplace covariance."""
        return ELO_PER_UNIT * np.sqrt(np.clip(np.diag(self.cov), 0, None))

    def predicted(self) -> np.ndarray:
        """Predicted score of row over column (ties half).  # (n, n)"""
        return predicted_matrix(self.theta, self.ties, self.nu)


def predicted_matrix(
    theta: np.ndarray, ties: TieModel = "half", nu: float | None = None
) -> np.ndarray:
    """``P(row beats column) + P(tie) / 2`` under the fitted model.  # (n, n)"""
    d = theta[:, None] - theta[None, :]  # (n, n)
    if ties == "davidson" and nu is not None:
        big_d = 2.0 * np.cosh(0.5 * d) + nu
        return (np.exp(0.5 * d) + 0.5 * nu) / big_d
    return sigmoid(d)


def to_ratings(theta: np.ndarray, models: Sequence[str], anchor: str | None) -> np.ndarray:
    """Elo-scale ratings: anchor (or the mean) at 1000, ``400 / ln 10`` per unit."""
    theta = np.asarray(theta)
    if anchor is not None:
        if anchor not in models:
            raise JudgeRLError(
                f"--anchor {anchor!r} is not a model in the battles "
                f"(models: {', '.join(sorted(models)[:10])}{'…' if len(models) > 10 else ''})"
            )
        ref = theta[..., list(models).index(anchor)][..., None]
    else:
        ref = theta.mean(axis=-1, keepdims=True)
    return ELO_PER_UNIT * (theta - ref) + BASE_RATING


def _closure(adj: np.ndarray) -> np.ndarray:
    """Reachability (reflexive-transitive closure) of a boolean adjacency matrix.  # (n, n)

    Repeated squaring: ``log2(n)`` boolean matrix products, fine for the few hundred contestants
    of a leaderboard (and no scipy import on the CLI path).
    """
    r = adj | np.eye(len(adj), dtype=bool)
    for _ in range(max(1, int(np.ceil(np.log2(max(len(adj), 2)))))):
        r2 = (r.astype(np.float32) @ r.astype(np.float32)) > 0
        if np.array_equal(r2, r):
            break
        r = r2
    return r


def _components(und: np.ndarray) -> np.ndarray:
    """Connected-component label of each node of an undirected boolean graph.  # (n,)"""
    reach = _closure(und)
    return np.argmax(reach, axis=1)  # the smallest node index each node reaches


def diagnose(counts: PairCounts) -> list[str]:
    """Warnings about a comparison graph on which the plain MLE does not exist or is weak.

    Ford (1957): the Bradley-Terry MLE exists iff the directed graph with an edge ``i -> j``
    whenever ``i`` scored against ``j`` (a win or a tie) is strongly connected.
    """
    n = counts.n_models
    out: list[str] = []
    if n == 0:
        return out
    tot = counts.cells.sum(axis=1)
    und = np.zeros((n, n), dtype=bool)
    und[counts.i, counts.j] = und[counts.j, counts.i] = True
    labels = _components(und)
    n_comp = len(set(labels.tolist()))
    if n_comp > 1:
        groups: dict[int, list[str]] = {}
        for m, lab in zip(counts.models, labels, strict=True):
            groups.setdefault(int(lab), []).append(m)
        desc = "; ".join(", ".join(g[:5]) + ("…" if len(g) > 5 else "") for g in groups.values())
        out.append(
            f"comparison graph is disconnected ({n_comp} groups: {desc}); ratings across groups "
            "are not comparable (only the prior relates them)"
        )
    pm = counts.per_model()
    for k, m in enumerate(counts.models):
        if pm["battles"][k] == 0:
            out.append(f"{m} has no battles; its rating is the prior mean")
        elif pm["losses"][k] == 0 and pm["ties"][k] == 0:
            out.append(f"{m} won every battle; its rating is bounded only by the prior")
        elif pm["wins"][k] == 0 and pm["ties"][k] == 0:
            out.append(f"{m} lost every battle; its rating is bounded only by the prior")
    if n_comp == 1:
        scored_i = (counts.cells[:, 0] + counts.cells[:, 2]) > 0
        scored_j = (counts.cells[:, 1] + counts.cells[:, 2]) > 0
        rows = np.concatenate([counts.i[scored_i], counts.j[scored_j]])
        cols = np.concatenate([counts.j[scored_i], counts.i[scored_j]])
        dg = np.zeros((n, n), dtype=bool)
        dg[rows, cols] = True
        reach = _closure(dg)
        n_scc = len({tuple(np.flatnonzero(reach[k] & reach[:, k])) for k in range(n)})
        if n_scc > 1 and not any("every battle" in w for w in out):
            out.append(
                "some group of models never lost to the rest (the win graph is not strongly "
                "connected); the gap between them is bounded only by the prior"
            )
    del tot
    return out


def fit(
    counts: PairCounts,
    *,
    ties: TieModel = "half",
    anchor: str | None = None,
    prior: float = DEFAULT_PRIOR,
) -> BTFit:
    """Maximum a-posteriori Bradley-Terry fit on aggregated counts.

    Args:
        counts: from :func:`aggregate` / :func:`aggregate_codes`.
        ties: ``"half"`` or ``"davidson"``.
        anchor: model fixed at 1000; ``None`` puts the mean at 1000.
        prior: precision of the Gaussian prior on each strength; ``0`` gives the plain MLE,
            which is used only when it exists (else the default prior is used, with a warning).
    """
    if ties not in ("half", "davidson"):
        raise JudgeRLError(f"ties must be 'half' or 'davidson' (got {ties!r})")
    if counts.n_models < 2:
        raise JudgeRLError("need battles between at least two models")
    warnings = diagnose(counts)
    if prior <= 0:
        if warnings:
            warnings.append(f"the plain MLE does not exist here; used prior={DEFAULT_PRIOR}")
            prior = DEFAULT_PRIOR
        else:
            prior = 1e-12  # numerically zero; only fixes the free additive constant
    if ties == "davidson" and counts.cells[:, 2].sum() == 0:
        warnings.append("no ties in the data: the Davidson tie parameter is driven to ~0")
    inc = counts.incidence()
    x, h, iters = newton(counts.cells[None], inc, ties=ties, prior=prior)
    x, h = x[0], h[0]
    n = counts.n_models
    theta = x[:n]
    cov_full = np.linalg.inv(h)
    nu = float(math.exp(x[n])) if ties == "davidson" else None
    if not np.all(np.isfinite(theta)):  # pragma: no cover - guarded by the prior
        raise JudgeRLError("rating fit did not converge (non-finite strengths)")
    params = x.copy()
    shift = theta.mean()
    theta = theta - shift
    params[:n] -= shift
    for w in warnings:
        log.warning(w)
    return BTFit(
        models=list(counts.models),
        theta=theta,
        ratings=to_ratings(theta, counts.models, anchor),
        cov=cov_full[:n, :n],
        ties=ties,
        nu=nu,
        anchor=anchor,
        prior=prior,
        iterations=iters,
        warnings=warnings,
        counts=counts,
        params=params,
        hess=h,
    )


def resample_cells(
    counts: PairCounts, rounds: int, rng: np.random.Generator, *, by: str = "battles"
) -> np.ndarray:
    """Bootstrap resamples of the counts, without ever expanding them into battles.  # (R, P, 3)

    ``by="battles"``: resampling all N battles with replacement is one multinomial draw over the
    ``(pair, outcome)`` cells with probabilities ``count / N`` (Efron 1979) — what re-sampling a
    battles table row by row does (FastChat's ``get_bootstrap_result``), at ``O(P)`` per round.
    ``by="pairs"``: one multinomial per pair with that pair's number of battles fixed — the
    stratified bootstrap for a designed tournament, where the pairing chose how often each pair
    met. Weighted battles keep their cell's mean weight.
    """
    flat = counts.counts.reshape(-1)  # (3P,)
    mean_w = np.divide(
        counts.cells.reshape(-1), flat, out=np.zeros(flat.shape, float), where=flat > 0
    ).reshape(-1, 3)  # (P, 3)
    if by == "pairs":
        n_p = counts.counts.sum(axis=1)  # (P,)
        probs = counts.counts / np.maximum(n_p, 1)[:, None]  # (P, 3)
        draws = rng.multinomial(n_p, probs, size=(rounds, len(n_p))).astype(float)  # (R, P, 3)
        return draws * mean_w
    if by != "battles":
        raise JudgeRLError(f"bootstrap resampling must be 'battles' or 'pairs' (got {by!r})")
    total = int(flat.sum())
    draws = rng.multinomial(total, flat / max(total, 1), size=rounds).astype(float)  # (R, 3P)
    return draws.reshape(rounds, -1, 3) * mean_w


def bootstrap(
    counts: PairCounts,
    rounds: int,
    *,
    ties: TieModel = "half",
    prior: float = DEFAULT_PRIOR,
    seed: int = 0,
    x0: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    chunk: int = 100,
    by: str = "battles",
) -> np.ndarray:
    """Strengths (natural-log units, mean zero) of ``rounds`` bootstrap resamples.  # (R, n)

    All rounds are fitted together, warm-started at the full-data fit ``x0`` (theta, plus
    ``log nu`` for Davidson) with its negative Hessian ``h0`` as a fixed curvature (:func:`chord`);
    without them, one batched Newton solve per chunk of rounds.
    """
    if prior <= 0:
        prior = DEFAULT_PRIOR if diagnose(counts) else 1e-12
    rng = np.random.default_rng(seed)
    inc = counts.incidence()
    n = counts.n_models
    out = []
    for start in range(0, rounds, chunk):
        r = min(chunk, rounds - start)
        cells = resample_cells(counts, r, rng, by=by)
        if x0 is not None and h0 is not None:
            x, done = chord(cells, inc, ties=ties, prior=prior, x0=x0, h0=h0)
            if not done.all():  # finish the stragglers with full Newton steps
                x[~done], _, _ = newton(cells[~done], inc, ties=ties, prior=prior, x0=x[~done])
        else:
            init = None if x0 is None else np.tile(np.asarray(x0, float), (r, 1))
            x, _, _ = newton(cells, inc, ties=ties, prior=prior, x0=init)
        th = x[:, :n]
        out.append(th - th.mean(axis=1, keepdims=True))
    return np.concatenate(out, axis=0) if out else np.zeros((0, n))


def rank_of(ratings: np.ndarray) -> np.ndarray:
    """1-based rank of each entry along the last axis, best (highest) first."""
    order = np.argsort(-ratings, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, ratings.shape[-1] + 1), axis=-1)
    return ranks


@dataclass
class Leaderboard:
    """Ratings with bootstrap intervals, ready for the run log and the terminal."""

    fit: BTFit
    rows: list[dict[str, object]]
    """Best first: model, rating, lo, hi, rank, rank_lo, rank_hi, battles, wins, ties, losses,
    win_rate (observed, ties half)."""
    boot: np.ndarray | None = None
    """Bootstrap ratings (Elo scale).  # (R, n)"""
    level: float = 0.95
    method: str = "bt"

    @property
    def warnings(self) -> list[str]:
        return self.fit.warnings


def leaderboard(
    counts: PairCounts,
    *,
    ties: TieModel = "half",
    anchor: str | None = None,
    prior: float = DEFAULT_PRIOR,
    bootstrap_rounds: int = 100,
    level: float = 0.95,
    seed: int = 0,
    resample: str = "battles",
) -> Leaderboard:
    """Fit, bootstrap and tabulate: the one call behind ``judge-rl ratings``.

    Intervals are bootstrap percentiles at ``level``; with ``bootstrap_rounds=0`` they come from
    the Laplace approximation (normal, +/- z * SE). Rank intervals are the percentiles of each
    model's rank over the bootstrap rounds (or, without a bootstrap, 1 + the number of models
    whose interval lies wholly above / the number not wholly below). ``resample``: ``"battles"``
    (resample all battles, as FastChat does) or ``"pairs"`` (per-pair counts fixed, for designed
    tournaments); see :func:`resample_cells`.
    """
    from statistics import NormalDist

    f = fit(counts, ties=ties, anchor=anchor, prior=prior)
    n = counts.n_models
    alpha = (1.0 - level) / 2.0
    boot = None
    if bootstrap_rounds > 0:
        th = bootstrap(
            counts,
            bootstrap_rounds,
            ties=ties,
            prior=f.prior,
            seed=seed,
            x0=f.params,
            h0=f.hess,
            by=resample,
        )
        boot = to_ratings(th, counts.models, anchor)  # (R, n)
        lo = np.quantile(boot, alpha, axis=0)
        hi = np.quantile(boot, 1 - alpha, axis=0)
        ranks = rank_of(boot)  # (R, n)
        rank_lo = np.floor(np.quantile(ranks, alpha, axis=0)).astype(int)
        rank_hi = np.ceil(np.quantile(ranks, 1 - alpha, axis=0)).astype(int)
    else:
        z = NormalDist().inv_cdf(1 - alpha)
        if anchor is None:
            # Variance of theta_i - mean(theta): (I - J/n) Cov (I - J/n).
            c = np.eye(n) - 1.0 / n
            var = np.diag(c @ f.cov @ c)
        else:
            a = counts.models.index(anchor)
            var = np.diag(f.cov) + f.cov[a, a] - 2 * f.cov[:, a]
        se = ELO_PER_UNIT * np.sqrt(np.clip(var, 0, None))
        lo, hi = f.ratings - z * se, f.ratings + z * se
        rank_lo = 1 + np.array([int(np.sum(lo > hi[k])) for k in range(n)])
        rank_hi = n - np.array([int(np.sum(hi < lo[k])) for k in range(n)])
    point_rank = rank_of(f.ratings)
    pm = counts.per_model()
    rows: list[dict[str, object]] = []
    for k in np.argsort(-f.ratings, kind="stable"):
        battles = float(pm["battles"][k])
        rows.append(
            {
                "model": counts.models[k],
                "rating": float(f.ratings[k]),
                "lo": float(lo[k]),
                "hi": float(hi[k]),
                "rank": int(point_rank[k]),
                "rank_lo": int(rank_lo[k]),
                "rank_hi": int(rank_hi[k]),
                "battles": int(round(battles)),
                "wins": float(pm["wins"][k]),
                "ties": float(pm["ties"][k]),
                "losses": float(pm["losses"][k]),
                "win_rate": float((pm["wins"][k] + 0.5 * pm["ties"][k]) / battles)
                if battles
                else None,
            }
        )
    return Leaderboard(fit=f, rows=rows, boot=boot, level=level)


__all__ = [
    "BASE_RATING",
    "DEFAULT_PRIOR",
    "ELO_PER_UNIT",
    "BTFit",
    "Leaderboard",
    "PairCounts",
    "aggregate",
    "aggregate_codes",
    "bootstrap",
    "diagnose",
    "fit",
    "leaderboard",
    "predicted_matrix",
    "rank_of",
    "resample_cells",
    "to_ratings",
]
