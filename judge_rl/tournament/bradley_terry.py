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

Gauge: the likelihood depends on strength differences only, so the strengths are fixed to sum to
zero. Newton's method runs on the negative Hessian plus ``J / n`` (``J`` the all-ones matrix),
which is nonsingular on a connected graph, leaves the gradient's zero-sum subspace invariant and
gives the exact sum-to-zero MLE at any scale; the covariance reported is the centred one,
``C H^+ C`` (``C = I - J/n``), never the variance of the arbitrary mean.

Prior: ``prior=None`` (the default) fits the plain maximum-likelihood estimate whenever it exists
(Ford 1957: iff the directed "scored against" graph is strongly connected: connected, no model
undefeated or winless) and a Gaussian prior ``N(0, 1/DEFAULT_PRIOR)`` on each strength (ridge,
sd ~1737 Elo) only when it does not, with a warning in :attr:`BTFit.warnings`. So on well-connected
data the default moves no rating at all. ``prior=0`` asks for the plain MLE (the prior is used,
with a warning, only when the MLE does not exist); ``prior > 0`` is a ridge of that precision.
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
"""Precision of the fallback Gaussian prior on each strength (natural-log units): sd = 10 units,
used when the plain MLE does not exist (see the module docstring)."""

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
    groups: BattleGroups | None = None
    """Battles grouped by (prompt, cell, weight), for weighted and prompt-clustered bootstraps;
    ``None`` when every battle has weight 1 and no prompt ids were given."""

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
        """Per model, each of shape ``(n,)``: ``battles`` (a count), and ``weight`` (their total
        weight), ``wins``, ``ties``, ``losses`` (weighted, so ``wins + ties + losses == weight``
        and a win rate is ``(wins + ties / 2) / weight``)."""
        n = self.n_models
        wi, wj, t = self.cells[:, 0], self.cells[:, 1], self.cells[:, 2]
        wins = np.bincount(self.i, wi, n) + np.bincount(self.j, wj, n)
        losses = np.bincount(self.i, wj, n) + np.bincount(self.j, wi, n)
        ties = np.bincount(self.i, t, n) + np.bincount(self.j, t, n)
        tot = self.counts.sum(axis=1).astype(float)
        battles = np.bincount(self.i, tot, n) + np.bincount(self.j, tot, n)
        wtot = self.cells.sum(axis=1)
        weight = np.bincount(self.i, wtot, n) + np.bincount(self.j, wtot, n)
        return {"battles": battles, "weight": weight, "wins": wins, "ties": ties, "losses": losses}

    @property
    def n_prompts(self) -> int:
        return 0 if self.groups is None else self.groups.n_prompts

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


@dataclass
class BattleGroups:
    """Battles that share a prompt, a (pair, outcome) cell and a weight, collapsed.  # (G,)

    The bootstrap draws from these instead of from rows: ``count`` battles of weight ``weight``
    in flat cell ``cell`` (``3 * pair + outcome``) on prompt ``prompt`` (``-1``: none given).
    """

    cell: np.ndarray  # (G,) int
    prompt: np.ndarray  # (G,) int, -1 when the battles carry no prompt id
    weight: np.ndarray  # (G,) float
    count: np.ndarray  # (G,) int
    n_prompts: int = 0
    """Distinct prompts (0 when none were given)."""

    @property
    def shared_prompts(self) -> bool:
        """Do battles share prompts (so that prompts are a sampling unit of their own)?"""
        return 0 < self.n_prompts < int(self.count.sum())


_SWAP = np.array([1, 0, 2])
"""Outcome seen from the other side: a win of the first slot is a win of the second."""


def _groups(
    cell: np.ndarray, a: np.ndarray, weight: np.ndarray | None, prompt: np.ndarray | None
) -> BattleGroups:
    """Battles collapsed by (prompt, cell, weight).  # cell: (N,) flat cell per battle"""
    pr = np.full(len(a), -1, np.int64) if prompt is None else np.asarray(prompt, np.int64)
    wt = np.ones(len(a)) if weight is None else np.asarray(weight, float)
    (up, uc, uw), inv = unique_rows(pr, np.asarray(cell, np.int64), wt)
    return BattleGroups(
        cell=uc,
        prompt=up,
        weight=uw,
        count=np.bincount(inv, minlength=len(uc)),
        n_prompts=0 if prompt is None else len(np.unique(pr)),
    )


_KEY_SPAN = 1 << 62
"""Most combinations :func:`unique_rows` codes in one int64 key."""


def unique_rows(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """``np.unique`` over the rows of ``cols`` (sorted lexicographically, as on a record array):
    each column's values at the unique rows, and each row's index among them.

    Each column is coded by its own sorted unique values and the codes are combined into one
    int64 key, so the sort is of integers: a record-array sort compares field by field in
    Python-level generic code (~1 s for 200k rows with a float field).  # cols: (N,) each
    """
    key = np.zeros(len(cols[0]), np.int64)
    span = 1
    for c in cols:
        values, code = np.unique(c, return_inverse=True)
        span *= max(len(values), 1)
        if span >= _KEY_SPAN:  # too many combinations for one int64: the record array
            table = np.rec.fromarrays(list(cols))  # type: ignore[call-overload]
            uniq, inv = np.unique(table, return_inverse=True)
            return [np.asarray(uniq[f]) for f in uniq.dtype.names or ()], inv.reshape(-1)
        key = key * len(values) + code.reshape(-1)
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return [np.asarray(c)[first] for c in cols], inv.reshape(-1)


def aggregate_codes(
    a: np.ndarray,
    b: np.ndarray,
    winner: np.ndarray,
    models: Sequence[str],
    weight: np.ndarray | None = None,
    prompt: np.ndarray | None = None,
) -> PairCounts:
    """Aggregate integer-coded battles (vectorised: four passes over the battles, ~10 ms per
    million).

    Args:
        a: index of ``model_a`` in ``models`` per battle.  # (N,)
        b: index of ``model_b``.  # (N,)
        winner: 0 = a won, 1 = b won, 2 = tie.  # (N,)
        models: model names.
        weight: optional weight per battle.  # (N,)
        prompt: optional prompt code per battle (``0..X-1``), for the prompt-clustered
            bootstrap.  # (N,)
    """
    n = len(models)
    a, b, w = np.asarray(a), np.asarray(b), np.asarray(winner)
    # One pass over the battles: each one's directed cell (a, b, outcome). Turning (a, b) into
    # i < j happens on the few cells that occur, not per battle.
    key = a.astype(np.intp) * (3 * n)  # (N,)
    key += b * 3
    key += w.astype(np.intp, copy=False)
    wt = None if weight is None else np.asarray(weight, float)
    size = n * n * 3
    if size <= max(1 << 22, 4 * len(key)):  # a table over every directed cell
        directed = np.bincount(key, minlength=size)
        dkeys = np.flatnonzero(directed)  # (D,) the cells that occur
        dcount = directed[dkeys]
        dweight = None if wt is None else np.bincount(key, wt, size)[dkeys]
        inv = None
    else:  # very many models: only the cells that occur
        dkeys, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1)
        dcount = np.bincount(inv, minlength=len(dkeys))
        dweight = None if wt is None else np.bincount(inv, wt, len(dkeys))
    da, db, do = dkeys // (3 * n), (dkeys // 3) % n, dkeys % 3
    if np.any(da == db):
        k = int(np.argmax(a == b))
        raise JudgeRLError(f"battle {k + 1}: a model cannot battle itself ({models[a[k]]})")
    # pair (min, max); a win of b becomes a win of the second slot when a > b
    flat = np.minimum(da, db) * n + np.maximum(da, db)
    outcome = np.where(da > db, _SWAP[do], do)
    met, pair = np.unique(flat, return_inverse=True)  # ascending i * n + j, as pairs are listed
    pair = pair.reshape(-1)
    counts = np.zeros((len(met), 3), np.int64)
    np.add.at(counts, (pair, outcome), dcount)
    if dweight is None:
        cells = counts.astype(float)
    else:
        cells = np.zeros((len(met), 3))
        np.add.at(cells, (pair, outcome), dweight)
    groups = None
    if weight is not None or prompt is not None:
        cell_of = pair * 3 + outcome  # (D,) flat cell of each directed cell
        if inv is None:
            lut = np.zeros(size, np.int64)
            lut[dkeys] = cell_of
            cell = lut[key]
        else:
            cell = cell_of[inv]
        groups = _groups(cell, a, weight, prompt)
    return PairCounts(
        models=list(models),
        i=(met // n).astype(np.int64),
        j=(met % n).astype(np.int64),
        cells=cells,
        counts=counts,
        groups=groups,
    )


def aggregate(battles: Iterable[object], models: Sequence[str] | None = None) -> PairCounts:
    """Aggregate :class:`judge_rl.types.Battle` records (or dicts with the same keys)."""
    names: dict[str, int] = {m: k for k, m in enumerate(models or [])}
    a: list[int] = []
    b: list[int] = []
    w: list[int] = []
    wt: list[float] = []
    pids: dict[str, int] = {}
    pr: list[int] = []
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
        wgt = get("weight", 1.0)
        wt.append(1.0 if wgt is None else float(wgt))
        pid = str(get("prompt_id", "") or "")
        pr.append(pids.setdefault(pid, len(pids)) if pid else -1)
    ordered = sorted(names, key=names.__getitem__)
    weight = np.asarray(wt) if any(x != 1.0 for x in wt) else None
    prompt = np.asarray(pr) if pids and min(pr, default=0) >= 0 else None
    return aggregate_codes(np.asarray(a), np.asarray(b), np.asarray(w), ordered, weight, prompt)


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


def gauge_fix(neg_hess: np.ndarray, n: int) -> np.ndarray:
    """``H + J/n`` on the strength block: the sum-to-zero gauge.  # (..., k, k)

    ``1`` spans the null space of the likelihood's Hessian (only differences are identified).
    Adding ``J/n`` gives that direction unit curvature, so the matrix is nonsingular on a connected
    graph, and because every gradient of the likelihood sums to zero, a Newton step with it sums to
    zero too: iterates started at a zero-sum point stay there and the fixed point is unchanged.
    """
    out = np.array(neg_hess, dtype=float, copy=True)
    out[..., :n, :n] += 1.0 / n
    return out


def centred_cov(m_inv: np.ndarray, n: int) -> np.ndarray:
    """``C M^{-1} C`` with ``C = I - J/n``: covariance of the centred strengths.  # (n, n)"""
    c = np.eye(n) - 1.0 / n
    return c @ m_inv[:n, :n] @ c


def _cap(step: np.ndarray, cap: float = 2.0) -> np.ndarray:
    """Scale each row so no coordinate moves more than ``cap`` (keeps the step's direction)."""
    size = np.max(np.abs(step), axis=-1, keepdims=True)
    return step * np.minimum(1.0, cap / np.maximum(size, 1e-300))


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
    """Batched Newton's method on the (concave) log-posterior, in the sum-to-zero gauge.

    Returns the maximiser ``(R, k)``, the gauge-fixed negative Hessian there ``(R, k, k)``
    (:func:`gauge_fix`) and iterations. Steps are scaled down to at most 2 natural-log units per
    coordinate (direction kept), which keeps the first steps on near-separable data from
    overshooting; near the optimum the steps are pure Newton.
    """
    r, n = cells.shape[0], inc.shape[1]
    k = n + (1 if ties == "davidson" else 0)
    x = np.zeros((r, k)) if x0 is None else np.array(x0, dtype=float).reshape(r, k)
    x[:, :n] -= x[:, :n].mean(axis=1, keepdims=True)  # start in the gauge
    if x0 is None and ties == "davidson":
        x[:, -1] = math.log(0.5)
    fn = davidson_grad_hess if ties == "davidson" else half_grad_hess
    iters = 0
    for _ in range(max_iter):
        iters += 1
        g, h = fn(x, cells, inc, prior)
        assert h is not None
        m = gauge_fix(h, n)
        # A vanishing damping term keeps the solve defined when a resample's MLE runs off to
        # infinity (its Hessian degenerates); it scales steps, never the fixed point g = 0.
        m += 1e-12 * (1.0 + np.abs(m).max(axis=(-2, -1), keepdims=True)) * np.eye(k)
        step = np.linalg.solve(m, g[..., None])[..., 0]  # (R, k)
        step = _cap(step)
        x += step
        x[:, :n] -= x[:, :n].mean(axis=1, keepdims=True)  # rounding drift only
        if float(np.max(np.abs(step))) < tol:
            break
    _, h = fn(x, cells, inc, prior)
    assert h is not None
    return x, gauge_fix(h, n), iters


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
        x += _cap(step)
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
    """Laplace covariance of the centred strengths ``theta - mean(theta)`` (``C H^+ C``): no
    gauge variance.  # (n, n)"""
    ties: TieModel = "half"
    nu: float | None = None
    """Davidson tie parameter."""
    anchor: str | None = None
    prior: float = 0.0
    """Prior precision actually used (0: the plain MLE)."""
    iterations: int = 0
    warnings: list[str] = field(default_factory=list)
    counts: PairCounts | None = None
    params: np.ndarray | None = None
    """Optimiser coordinates: theta, plus ``log nu`` for Davidson.  # (k,)"""
    hess: np.ndarray | None = None
    """Gauge-fixed negative Hessian of the log-posterior at ``params`` (:func:`gauge_fix`).
    # (k, k)"""
    anchor_value: float = BASE_RATING

    def rating_of(self, model: str) -> float:
        return float(self.ratings[self.models.index(model)])

    def rating_var(self) -> np.ndarray:
        """Variance of each rating's strength as reported (natural-log units squared).  # (n,)

        Without an anchor, the variance of ``theta_i - mean(theta)``; with one, of
        ``theta_i - theta_anchor`` (zero for the anchor itself).
        """
        if self.anchor is None:
            return np.clip(np.diag(self.cov), 0, None)
        a = self.models.index(self.anchor)
        var = np.diag(self.cov) + self.cov[a, a] - 2 * self.cov[:, a]
        return np.clip(var, 0, None)

    def se(self) -> np.ndarray:
        """Standard error of each rating (Elo points), Laplace approximation, gauge-free."""
        return ELO_PER_UNIT * np.sqrt(self.rating_var())

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


def to_ratings(
    theta: np.ndarray,
    models: Sequence[str],
    anchor: str | None,
    anchor_value: float = BASE_RATING,
) -> np.ndarray:
    """Elo-scale ratings: ``anchor`` at ``anchor_value`` (or the mean at 1000), 400/ln 10 per
    unit."""
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
        anchor_value = BASE_RATING
    return ELO_PER_UNIT * (theta - ref) + anchor_value


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


def resolve_prior(prior: float | None, warnings: Sequence[str]) -> tuple[float, str | None]:
    """The prior precision to fit with, and a warning when the request could not be honoured.

    ``None`` or ``0``: the plain MLE (precision 0) when it exists, i.e. ``warnings`` (from
    :func:`diagnose`) is empty; otherwise :data:`DEFAULT_PRIOR`.
    """
    if prior is not None and prior > 0:
        return float(prior), None
    if warnings:
        return DEFAULT_PRIOR, (
            f"the plain MLE does not exist here; used a Gaussian prior of precision "
            f"{DEFAULT_PRIOR} (sd {ELO_PER_UNIT / math.sqrt(DEFAULT_PRIOR):.0f} Elo)"
        )
    return 0.0, None


def fit(
    counts: PairCounts,
    *,
    ties: TieModel = "half",
    anchor: str | None = None,
    prior: float | None = None,
    anchor_value: float = BASE_RATING,
) -> BTFit:
    """Bradley-Terry fit on aggregated counts: plain MLE when it exists, else MAP.

    Args:
        counts: from :func:`aggregate` / :func:`aggregate_codes`.
        ties: ``"half"`` or ``"davidson"``.
        anchor: model fixed at ``anchor_value``; ``None`` puts the mean at 1000.
        prior: ``None`` (default) or ``0``: the plain MLE, exact at any scale, used whenever it
            exists (else :data:`DEFAULT_PRIOR`, with a warning); ``> 0``: the precision of a
            Gaussian prior on each strength.
        anchor_value: the anchor's rating (Chatbot Arena pins e.g. a model at 1114).
    """
    if ties not in ("half", "davidson"):
        raise JudgeRLError(f"ties must be 'half' or 'davidson' (got {ties!r})")
    if counts.n_models < 2:
        raise JudgeRLError("need battles between at least two models")
    if prior is not None and not math.isfinite(prior):
        raise JudgeRLError(f"prior must be a finite number >= 0 (got {prior})")
    warnings = diagnose(counts)
    prior, note = resolve_prior(prior, warnings)
    if note:
        warnings.append(note)
    if ties == "davidson" and counts.cells[:, 2].sum() == 0:
        warnings.append("no ties in the data: the Davidson tie parameter is driven to ~0")
    inc = counts.incidence()
    x, h, iters = newton(counts.cells[None], inc, ties=ties, prior=prior)
    x, h = x[0], h[0]
    n = counts.n_models
    theta = x[:n]
    cov = centred_cov(np.linalg.inv(h), n)
    nu = float(math.exp(x[n])) if ties == "davidson" else None
    if not np.all(np.isfinite(theta)):  # pragma: no cover - guarded by the prior
        raise JudgeRLError("rating fit did not converge (non-finite strengths)")
    params = x.copy()
    shift = theta.mean()
    theta = theta - shift
    params[:n] -= shift
    for w in warnings:  # returned in BTFit.warnings; the CLI prints them once
        log.debug(w)
    return BTFit(
        models=list(counts.models),
        theta=theta,
        ratings=to_ratings(theta, counts.models, anchor, anchor_value),
        cov=cov,
        ties=ties,
        nu=nu,
        anchor=anchor,
        prior=prior,
        iterations=iters,
        warnings=warnings,
        counts=counts,
        params=params,
        hess=h,
        anchor_value=anchor_value,
    )


RESAMPLE_SCHEMES = ("auto", "battles", "prompts", "both", "pairs")
RESAMPLE_TEXT = {
    "battles": "bootstrap over battles",
    "prompts": "bootstrap over prompts (clustered)",
    "both": "two-stage bootstrap: prompts, then battles",
    "pairs": "bootstrap over battles within each pair",
    "laplace": "normal approximation (Laplace)",
}


def resolve_resample(counts: PairCounts, by: str) -> str:
    """``auto`` -> ``prompts`` when battles share prompt ids, else ``battles``."""
    if by not in RESAMPLE_SCHEMES:
        raise JudgeRLError(
            f"bootstrap resampling must be one of {', '.join(RESAMPLE_SCHEMES)} (got {by!r})"
        )
    has_prompts = counts.groups is not None and counts.groups.shared_prompts
    if by == "auto":
        return "prompts" if has_prompts else "battles"
    if by in ("prompts", "both") and not has_prompts:
        raise JudgeRLError(
            f"bootstrap over {by}: the battles carry no shared prompt ids (prompt_id / "
            "question_id); use battles"
        )
    return by


def resample_cells(
    counts: PairCounts, rounds: int, rng: np.random.Generator, *, by: str = "battles"
) -> np.ndarray:
    """Bootstrap resamples of the counts, without ever expanding them into battles.  # (R, P, 3)

    * ``battles``: resample all N battles with replacement (Efron 1979), as re-sampling a battles
      table row by row does (FastChat's bootstrap): one multinomial draw over the cells (over the
      (cell, weight) groups when battles are weighted, so each battle keeps its own weight).
    * ``pairs``: one multinomial per pair with that pair's number of battles fixed: the
      stratified bootstrap for a designed tournament, where the pairing chose how often each
      pair met.
    * ``prompts``: the cluster bootstrap (Davison & Hinkley 1997, sec. 3.8): draw X prompts with
      replacement and keep every battle on each, so the intervals include prompt sampling.
    * ``both``: prompts as above, then all battles of the drawn prompts resampled with
      replacement (two-stage).
    """
    p_n = len(counts.i)
    g = counts.groups
    if by == "pairs":
        flat = counts.counts.reshape(-1)  # (3P,)
        mean_w = np.divide(
            counts.cells.reshape(-1), flat, out=np.zeros(flat.shape, float), where=flat > 0
        ).reshape(-1, 3)  # (P, 3)
        n_p = counts.counts.sum(axis=1)  # (P,)
        probs = counts.counts / np.maximum(n_p, 1)[:, None]  # (P, 3)
        draws = rng.multinomial(n_p, probs, size=(rounds, len(n_p))).astype(float)  # (R, P, 3)
        return draws * mean_w
    if by == "battles":
        if g is None:  # unit weights: the cells are the groups
            flat = counts.counts.reshape(-1)  # (3P,)
            total = int(flat.sum())
            draws = rng.multinomial(total, flat / max(total, 1), size=rounds)  # (R, 3P)
            return draws.reshape(rounds, p_n, 3).astype(float)
        cell, mult, wt = _collapse(g.cell, g.weight, g.count)
        total = int(mult.sum())
        draws = rng.multinomial(total, mult / total, size=rounds)  # (R, G')
        return _to_cells(draws * wt, cell, p_n)
    if by not in ("prompts", "both") or g is None or g.n_prompts == 0:
        raise JudgeRLError(f"cannot resample by {by!r} here")
    x = g.n_prompts
    picks = rng.multinomial(x, np.full(x, 1.0 / x), size=rounds)  # (R, X) times each prompt drawn
    mult = picks[:, g.prompt] * g.count  # (R, G) battles of each group in the resample
    if by == "both":
        out = np.empty((rounds, p_n, 3))
        for r in range(rounds):
            m = mult[r]
            tot = int(m.sum())
            out[r] = _to_cells(rng.multinomial(tot, m / tot)[None] * g.weight, g.cell, p_n)[0]
        return out
    return _to_cells(mult * g.weight, g.cell, p_n)


def _collapse(
    cell: np.ndarray, weight: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge groups that differ only by prompt: (cell, weight) -> total count."""
    (uc, uw), inv = unique_rows(np.asarray(cell, np.int64), np.asarray(weight, float))
    mult = np.bincount(inv, weights=count, minlength=len(uc))
    return uc, mult, uw


def _to_cells(values: np.ndarray, cell: np.ndarray, n_pairs: int) -> np.ndarray:
    """Sum ``values (R, G)`` into flat cells ``cell (G,)``.  # (R, P, 3)"""
    r = values.shape[0]
    size = 3 * n_pairs
    idx = (np.arange(r)[:, None] * size + cell[None, :]).reshape(-1)
    out = np.bincount(idx, weights=np.asarray(values, float).reshape(-1), minlength=r * size)
    return out.reshape(r, n_pairs, 3)


def bootstrap(
    counts: PairCounts,
    rounds: int,
    *,
    ties: TieModel = "half",
    prior: float | None = None,
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
    prior, _ = resolve_prior(prior, diagnose(counts) if not prior else [])
    by = resolve_resample(counts, by)
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


def quantiles(x: np.ndarray, *qs: float) -> list[np.ndarray]:
    """``np.quantile(x, q, axis=0)`` for each ``q``, the same numbers (its default "linear"
    method: the order statistic at ``(R - 1) q``, interpolated as numpy does), from one sort.

    numpy's own ``quantile`` calls ``np.unique``, which imports ``numpy.ma`` (~25 ms of the
    command's start-up) on its first call.  # x: (R, n) -> each (n,)
    """
    s = np.sort(x, axis=0)
    r = s.shape[0]
    out = []
    for q in qs:
        virtual = (r - 1) * q
        below = min(max(int(np.floor(virtual)), 0), r - 1)
        above = min(below + 1, r - 1)
        t = virtual - below
        a, b = s[below], s[above]
        diff = b - a
        # numpy's _lerp: from the nearer end, so that t = 1 gives b exactly
        out.append(a + diff * t if t < 0.5 else b - diff * (1 - t))
    return out


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
    """Best first: model, rating, lo, hi, se, rank, rank_lo, rank_hi, battles, weight, wins, ties,
    losses, win_rate (observed, ties half, weighted)."""
    boot: np.ndarray | None = None
    """Bootstrap ratings (Elo scale).  # (R, n)"""
    level: float = 0.95
    method: str = "bt"
    resample: str = "battles"
    """How the intervals were made: battles | prompts | both | pairs | laplace."""
    rounds: int = 0

    @property
    def warnings(self) -> list[str]:
        return self.fit.warnings

    @property
    def interval(self) -> dict[str, object]:
        """What the intervals are, for the run log and every renderer."""
        return interval_info(self.level, self.resample, self.rounds)


def interval_info(level: float, scheme: str, rounds: int) -> dict[str, object]:
    """``{"level", "scheme", "rounds", "label"}``; ``label`` is what reports print beside CIs.

    >>> interval_info(0.9, "prompts", 200)["label"]
    '90% CI, bootstrap over prompts (clustered), 200 rounds'
    """
    text = RESAMPLE_TEXT.get(scheme, scheme)
    label = f"{level:.0%} CI, {text}" + (f", {rounds} rounds" if rounds else "")
    return {"level": level, "scheme": scheme, "rounds": rounds, "label": label}


def leaderboard(
    counts: PairCounts,
    *,
    ties: TieModel = "half",
    anchor: str | None = None,
    prior: float | None = None,
    bootstrap_rounds: int = 100,
    level: float = 0.95,
    seed: int = 0,
    resample: str = "auto",
    anchor_value: float = BASE_RATING,
) -> Leaderboard:
    """Fit, bootstrap and tabulate: the one call behind ``judge-rl ratings``.

    Intervals are bootstrap percentiles at ``level``; with ``bootstrap_rounds=0`` they come from
    the Laplace approximation (normal, +/- z * SE, gauge-free). Rank intervals are the
    percentiles of each model's rank over the bootstrap rounds (or, without a bootstrap, 1 + the
    number of models whose interval lies wholly above / the number not wholly below).
    ``resample``: ``auto`` (prompts when battles share prompt ids, else battles), ``battles``,
    ``prompts``, ``both`` or ``pairs``; see :func:`resample_cells`.
    """
    from statistics import NormalDist

    f = fit(counts, ties=ties, anchor=anchor, prior=prior, anchor_value=anchor_value)
    n = counts.n_models
    alpha = (1.0 - level) / 2.0
    boot = None
    se = f.se()
    if bootstrap_rounds > 0:
        scheme = resolve_resample(counts, resample)
        th = bootstrap(
            counts,
            bootstrap_rounds,
            ties=ties,
            prior=f.prior,
            seed=seed,
            x0=f.params,
            h0=f.hess,
            by=scheme,
        )
        boot = to_ratings(th, counts.models, anchor, anchor_value)  # (R, n)
        lo, hi = quantiles(boot, alpha, 1 - alpha)
        ranks = rank_of(boot)  # (R, n)
        rank_lo, rank_hi = quantiles(ranks.astype(float), alpha, 1 - alpha)
        rank_lo, rank_hi = np.floor(rank_lo).astype(int), np.ceil(rank_hi).astype(int)
    else:
        scheme = "laplace"
        z = NormalDist().inv_cdf(1 - alpha)
        lo, hi = f.ratings - z * se, f.ratings + z * se
        rank_lo = 1 + np.array([int(np.sum(lo > hi[k])) for k in range(n)])
        rank_hi = n - np.array([int(np.sum(hi < lo[k])) for k in range(n)])
    point_rank = rank_of(f.ratings)
    pm = counts.per_model()
    rows: list[dict[str, object]] = []
    for k in np.argsort(-f.ratings, kind="stable"):
        wsum = float(pm["weight"][k])
        rows.append(
            {
                "model": counts.models[k],
                "rating": float(f.ratings[k]),
                "lo": float(lo[k]),
                "hi": float(hi[k]),
                "se": float(se[k]),
                "rank": int(point_rank[k]),
                "rank_lo": int(rank_lo[k]),
                "rank_hi": int(rank_hi[k]),
                "battles": int(round(float(pm["battles"][k]))),
                "weight": wsum,
                "wins": float(pm["wins"][k]),
                "ties": float(pm["ties"][k]),
                "losses": float(pm["losses"][k]),
                "win_rate": float((pm["wins"][k] + 0.5 * pm["ties"][k]) / wsum)
                if wsum > 0
                else None,
            }
        )
    return Leaderboard(
        fit=f,
        rows=rows,
        boot=boot,
        level=level,
        resample=scheme,
        rounds=bootstrap_rounds if boot is not None else 0,
    )


__all__ = [
    "BASE_RATING",
    "DEFAULT_PRIOR",
    "ELO_PER_UNIT",
    "RESAMPLE_SCHEMES",
    "BTFit",
    "BattleGroups",
    "Leaderboard",
    "PairCounts",
    "aggregate",
    "aggregate_codes",
    "bootstrap",
    "diagnose",
    "fit",
    "interval_info",
    "leaderboard",
    "predicted_matrix",
    "rank_of",
    "resample_cells",
    "to_ratings",
]
