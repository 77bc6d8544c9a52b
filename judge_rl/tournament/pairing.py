"""Pairing strategies: which (prompt, model pair) to send to the judge next.

* :class:`RoundRobin` — every pair of contestants on every prompt (prompt by prompt, so a budget
  cut still leaves a balanced design).
* :class:`VsBaseline` — every contestant against one baseline on every prompt (AlpacaEval style).
* :class:`Adaptive` — sequential design for the top-k order: after each batch of verdicts, refit
  Bradley-Terry, and send the (prompt, pair) whose verdict most reduces the uncertainty of a
  rating difference among contestants whose intervals overlap; stop once the top-k order is
  separated at the chosen confidence or the budget is spent.

The adaptive rule uses the Laplace (Fisher-information) covariance ``Sigma`` of the strengths. One
more verdict on pair ``(i, j)`` adds ``f x x^T`` to the information, ``x = e_i - e_j``,
``f = p (1 - p)`` (Bradley-Terry Fisher information, e.g. Hunter 2004, "MM algorithms for
generalized Bradley-Terry models"), so the variance of ``theta_i - theta_j`` drops from ``v`` to
``v - f v^2 / (1 + f v)`` (Sherman-Morrison). The score of a pair is that drop times the
probability the current order of the pair is wrong, ``Phi(-|d| / sqrt(v))``: verdicts go where
they can still change the ranking. A batch is chosen greedily, updating ``Sigma`` after each pick.

Stopping, with an error rate that survives looking after every batch and testing several gaps:
each rating difference ``d_ij`` gets an always-valid confidence sequence, the two-sided normal
mixture boundary (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), eq. 14), applied to the
estimate's score process ``S = I (d_hat - d)`` with intrinsic time ``I = 1 / Var(d_hat)``::

    |d_hat - d| <= sqrt((I + rho) log((I + rho) / (rho alpha_ij^2))) / I     for all looks

with probability ``1 - alpha_ij`` (asymptotically: the Fisher information is the variance
process of the Bradley-Terry score; ties only make it conservative). ``alpha_ij`` is
``(1 - confidence)`` split by Bonferroni over *every* pair of contestants, so the guarantee holds
whichever gaps the data make decisive at whichever look. The run stops when the current top-k
order is implied by sequences that exclude zero: each adjacent pair inside the top k, and the
k-th model against every model below it. Then P(the claimed top-k order is wrong) <= 1 -
confidence. ``rho`` (:data:`CS_RHO`) tunes where the boundary is tightest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from judge_rl.errors import ConfigError

SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5}
CS_RHO = 20.0
"""Mixture precision of the confidence sequence, in information units (natural-log strengths):
the boundary is tightest near ``I ~ rho * 2 log(1 / alpha)``, i.e. gaps of ~25-40 Elo."""


def cs_radius(info: np.ndarray, alpha: float, rho: float = CS_RHO) -> np.ndarray:
    """Half-width of the two-sided normal-mixture confidence sequence for a difference whose
    estimate has Fisher information ``info`` (see the module docstring).  # same shape as info

    >>> r = float(cs_radius(np.array(1e4), 0.05, rho=20.0))
    >>> round(r, 4), round(float(r - (10020 * np.log(10020 / (20 * 0.05**2))) ** 0.5 / 1e4), 12)
    (0.035, 0.0)
    """
    i = np.maximum(np.asarray(info, float), 1e-12)
    return np.sqrt((i + rho) * np.log((i + rho) / (rho * alpha**2))) / i


@dataclass(frozen=True)
class Match:
    """One comparison to make: ``a`` vs ``b`` on ``prompt_id``."""

    prompt_id: str
    a: str
    b: str


class Pairing(Protocol):
    """What the tournament runner drives: ask for a batch, report its verdicts, repeat."""

    name: str

    def next_batch(self) -> list[Match]:
        """The next comparisons to judge; empty when the strategy is done."""
        ...

    def update(self, results: Sequence[tuple[Match, str | None]]) -> None:
        """Verdicts (``a | b | tie``, or ``None`` for a failed judgment) of the last batch."""
        ...

    @property
    def stop_reason(self) -> str: ...


@dataclass
class _Fixed:
    """A precomputed schedule served in batches (round robin, vs baseline)."""

    schedule: list[Match]
    batch_size: int = 32
    name: str = "fixed"
    _pos: int = 0
    _reason: str = ""

    def next_batch(self) -> list[Match]:
        out = self.schedule[self._pos : self._pos + self.batch_size]
        self._pos += len(out)
        if not out:
            self._reason = "schedule complete"
        return out

    def update(self, results: Sequence[tuple[Match, str | None]]) -> None:
        return None

    @property
    def stop_reason(self) -> str:
        return self._reason or "running"


def _orient(rng: np.random.Generator, x: str, y: str) -> tuple[str, str]:
    return (x, y) if rng.random() < 0.5 else (y, x)


def round_robin(
    models: Sequence[str],
    prompt_ids: Sequence[str],
    *,
    budget: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> _Fixed:
    """Every pair on every prompt, prompt by prompt in a shuffled order; ``budget`` truncates."""
    rng = np.random.default_rng(seed)
    pids = list(prompt_ids)
    rng.shuffle(pids)
    sched: list[Match] = []
    pairs = [(x, y) for k, x in enumerate(models) for y in models[k + 1 :]]
    for pid in pids:
        for x, y in pairs:
            a, b = _orient(rng, x, y)
            sched.append(Match(pid, a, b))
    if budget is not None:
        sched = sched[:budget]
    return _Fixed(sched, batch_size=batch_size, name="round_robin")


def vs_baseline(
    models: Sequence[str],
    prompt_ids: Sequence[str],
    baseline: str,
    *,
    budget: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> _Fixed:
    """Every contestant against ``baseline`` on every prompt (the baseline always as ``b``)."""
    if baseline not in models:
        raise ConfigError(f"{baseline!r} is not a contestant", setting="pairing.baseline")
    rng = np.random.default_rng(seed)
    pids = list(prompt_ids)
    rng.shuffle(pids)
    sched = [Match(pid, m, baseline) for pid in pids for m in models if m != baseline]
    if budget is not None:
        sched = sched[:budget]
    return _Fixed(sched, batch_size=batch_size, name="vs_baseline")


@dataclass
class Adaptive:
    """Uncertainty-driven pairing for the top-k order (see the module docstring).

    Args:
        models: contestants.
        prompt_ids: prompts; each (prompt, pair) is judged at most once.
        top_k: how many leading ranks must be ordered (``len(models)`` for a full ranking).
        confidence: two-sided level at which adjacent top-k ratings must be separated to stop;
            ``None`` never stops early (used to measure accuracy against calls).
        budget: most comparisons in total.
        batch_size: comparisons per batch (judged concurrently).
        warmup: random cycles through all contestants before adapting (connects the graph).
        prior: Gaussian prior precision on each strength (as in :func:`bradley_terry.fit`).
        stopping: ``cs`` (default, guaranteed error rate) or ``naive``.
    """

    models: Sequence[str]
    prompt_ids: Sequence[str]
    top_k: int = 3
    confidence: float | None = 0.95
    budget: int | None = None
    batch_size: int = 8
    warmup: int = 2
    prior: float = 0.01
    seed: int = 0
    stopping: str = "cs"
    """``cs``: always-valid confidence sequences (error rate guaranteed); ``naive``: a z-test
    re-checked at every look (not calibrated; for comparison only)."""
    name: str = "adaptive"
    score: np.ndarray = field(init=False)  # (n, n) score of row over column, ties half
    games: np.ndarray = field(init=False)  # (n, n) comparisons made
    theta: np.ndarray = field(init=False)  # (n,)
    cov: np.ndarray = field(init=False)  # (n, n)
    calls: int = field(init=False, default=0)
    _reason: str = field(init=False, default="")

    def __post_init__(self) -> None:
        n = len(self.models)
        if n < 2:
            raise ConfigError("need at least two contestants", setting="contestants")
        if self.stopping not in ("cs", "naive"):
            raise ConfigError("must be cs or naive", setting="pairing.stopping")
        if not self.prompt_ids:
            raise ConfigError("need at least one prompt", setting="prompts")
        self.top_k = max(1, min(int(self.top_k), n - 1))
        self._idx = {m: k for k, m in enumerate(self.models)}
        self._rng = np.random.default_rng(self.seed)
        self.score = np.zeros((n, n))
        self.games = np.zeros((n, n))
        self.theta = np.zeros(n)
        self.cov = np.eye(n) / self.prior
        # Unused prompts per unordered pair, each in its own shuffled order.
        self._unused: dict[tuple[int, int], list[str]] = {}
        self._pending: list[Match] = []
        for _ in range(self.warmup):
            perm = self._rng.permutation(n)
            for k in range(n):
                i, j = int(perm[k]), int(perm[(k + 1) % n])
                if n == 2 and k == 1:
                    break
                m = self._take(i, j)
                if m is not None:
                    self._pending.append(m)
        self._z = (
            float(_norm_ppf(1 - (1 - self.confidence) / 2)) if self.confidence is not None else 0.0
        )

    # -- bookkeeping ---------------------------------------------------------------------------
    def _take(self, i: int, j: int) -> Match | None:
        key = (min(i, j), max(i, j))
        if key not in self._unused:
            pids = list(self.prompt_ids)
            self._rng.shuffle(pids)
            self._unused[key] = pids
        if not self._unused[key]:
            return None
        pid = self._unused[key].pop()
        a, b = _orient(self._rng, self.models[i], self.models[j])
        return Match(pid, a, b)

    def _left(self, i: int, j: int) -> int:
        key = (min(i, j), max(i, j))
        return len(self._unused[key]) if key in self._unused else len(self.prompt_ids)

    # -- model ---------------------------------------------------------------------------------
    def refit(self, iters: int = 25) -> None:
        """MAP Bradley-Terry (ties half) on the dense counts, and its Laplace covariance."""
        n = len(self.models)
        eye = np.eye(n)
        th = self.theta.copy()
        for _ in range(iters):
            p = _sigmoid(th[:, None] - th[None, :])  # (n, n)
            g = (self.score - self.games * p).sum(axis=1) - self.prior * th  # (n,)
            w = self.games * p * (1 - p)  # (n, n)
            h = np.diag(w.sum(axis=1)) - w + self.prior * eye  # (n, n) negative Hessian
            step = np.linalg.solve(h, g)
            th += np.clip(step, -2, 2)
            if np.max(np.abs(step)) < 1e-9:
                break
        p = _sigmoid(th[:, None] - th[None, :])
        w = self.games * p * (1 - p)
        h = np.diag(w.sum(axis=1)) - w + self.prior * eye
        self.theta = th
        self.cov = np.linalg.inv(h)

    def ranking(self) -> list[str]:
        return [self.models[k] for k in np.argsort(-self.theta, kind="stable")]

    def decisive_pairs(self) -> list[tuple[int, int]]:
        """``(above, below)`` pairs whose order implies the current top-k order: adjacent pairs
        inside the top k, and the k-th model against every model below it."""
        order = [int(x) for x in np.argsort(-self.theta, kind="stable")]
        k = self.top_k
        pairs = [(order[r], order[r + 1]) for r in range(k - 1)]
        pairs += [(order[k - 1], order[j]) for j in range(k, len(order))]
        return pairs

    def separated(self) -> bool:
        """Does every decisive difference's confidence sequence exclude zero?

        ``stopping="cs"`` (default): the always-valid sequence of the module docstring, alpha
        split over all pairs. ``stopping="naive"``: a fixed-sample z-test at every look (kept
        only to measure how wrong that is; its error rate is not controlled).
        """
        if self.confidence is None:
            return False
        n = len(self.models)
        alpha = (1.0 - self.confidence) / (n * (n - 1) / 2)
        for i, j in self.decisive_pairs():
            v = max(self.cov[i, i] + self.cov[j, j] - 2 * self.cov[i, j], 1e-12)
            d = self.theta[i] - self.theta[j]
            if self.stopping == "naive":
                bound = self._z * math.sqrt(v)
            else:
                bound = float(cs_radius(np.array(1.0 / v), alpha))
            if d <= bound:
                return False
        return True

    # -- the Pairing protocol ------------------------------------------------------------------
    def next_batch(self) -> list[Match]:
        room = (
            self.batch_size
            if self.budget is None
            else min(self.batch_size, self.budget - self.calls)
        )
        if room <= 0:
            self._reason = f"budget of {self.budget} comparisons spent"
            return []
        if self._pending:
            out, self._pending = self._pending[:room], self._pending[room:]
            return out
        if self.separated():
            self._reason = (
                f"top-{self.top_k} order separated at {self.confidence:.0%} "
                f"({'always-valid confidence sequences' if self.stopping == 'cs' else 'naive z'})"
            )
            return []
        out = self._choose(room)
        if not out:
            self._reason = "no informative (prompt, pair) left"
        return out

    def targets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rating differences that decide the top-k order and are still uncertain.

        Pairs with a member in the top k (so the (k, k+1) gap is included) whose intervals overlap at the chosen
        confidence, weighted by the chance their current order is wrong divided by the variance
        of the difference (so a verdict is valued by the relative uncertainty it removes).
        Returns ``(i, j, weight)``, each ``(T,)``.
        """
        n = len(self.models)
        order = np.argsort(-self.theta, kind="stable")
        rank = np.empty(n, dtype=int)
        rank[order] = np.arange(n)
        iu, ju = np.triu_indices(n, 1)
        keep = np.minimum(rank[iu], rank[ju]) < self.top_k  # a member in the top k
        iu, ju = iu[keep], ju[keep]
        v = np.maximum(self.cov[iu, iu] + self.cov[ju, ju] - 2 * self.cov[iu, ju], 1e-12)
        d = np.abs(self.theta[iu] - self.theta[ju])
        z = self._z if self.confidence is not None else 1.0
        if self.confidence is not None and self.stopping == "cs":
            # The differences the stop needs (decisive_pairs) not yet decided by the stopping
            # rule's own confidence sequences.
            dec = self.decisive_pairs()
            di = np.array([min(i, j) for i, j in dec])
            dj = np.array([max(i, j) for i, j in dec])
            dv = np.maximum(self.cov[di, di] + self.cov[dj, dj] - 2 * self.cov[di, dj], 1e-12)
            dd = np.abs(self.theta[di] - self.theta[dj])
            alpha = (1.0 - self.confidence) / (n * (n - 1) / 2)
            open_ = dd < cs_radius(1.0 / dv, alpha)
            if open_.any():
                di, dj, dv, dd = di[open_], dj[open_], dv[open_], dd[open_]
            return di, dj, _norm_cdf(-dd / np.sqrt(dv)) / dv
        overlap = d < max(z, 1.0) * np.sqrt(v)
        if overlap.any():
            iu, ju, v, d = iu[overlap], ju[overlap], v[overlap], d[overlap]
        weight = _norm_cdf(-d / np.sqrt(v)) / v
        return iu, ju, weight

    def _choose(self, room: int) -> list[Match]:
        """Greedy batch: each pick maximises the weighted drop in the target variances.

        For a candidate contrast ``x_c`` and a target contrast ``x_t``, one verdict lowers
        ``Var(x_t^T theta)`` by ``f (x_t^T Sigma x_c)^2 / (1 + f x_c^T Sigma x_c)``
        (Sherman-Morrison; Fisher information ``f = p (1 - p)`` of a Bradley-Terry verdict).
        """
        n = len(self.models)
        ti, tj, tw = self.targets()  # (T,)
        ci, cj = np.triu_indices(n, 1)  # (Q,) every pair is a candidate
        left = np.array([self._left(int(i), int(j)) for i, j in zip(ci, cj, strict=True)])
        p = _sigmoid(self.theta[ci] - self.theta[cj])
        f = p * (1 - p)  # (Q,)
        if self.confidence is not None and self.stopping == "cs":
            # Only comparisons that can decide the top-k claim: a member in the current top k.
            rank = np.empty(n, dtype=int)
            rank[np.argsort(-self.theta, kind="stable")] = np.arange(n)
            left = np.where(np.minimum(rank[ci], rank[cj]) < self.top_k, left, 0)
        cov = self.cov.copy()
        out: list[Match] = []
        per_pick = max(1, math.ceil(room / 4))  # a pick may take several prompts of one pair
        while len(out) < room:
            sc = cov[:, ci] - cov[:, cj]  # (n, Q)  Sigma x_c
            cross = sc[ti] - sc[tj]  # (T, Q)  x_t^T Sigma x_c
            vc = np.maximum(sc[ci, np.arange(len(ci))] - sc[cj, np.arange(len(ci))], 1e-12)
            gain = f * (tw[:, None] * cross**2).sum(axis=0) / (1 + f * vc)  # (Q,)
            gain = np.where(left > 0, gain, -np.inf)
            q = int(np.argmax(gain))
            if not np.isfinite(gain[q]) or gain[q] <= 0:
                break
            i, j = int(ci[q]), int(cj[q])
            c = 0
            for _ in range(min(per_pick, room - len(out), int(left[q]))):
                m = self._take(i, j)
                if m is None:
                    break
                out.append(m)
                c += 1
            left[q] = self._left(i, j)
            if c == 0:
                continue
            sx = sc[:, q].copy()  # (n,)
            cov -= c * f[q] * np.outer(sx, sx) / (1 + c * f[q] * vc[q])  # Sherman-Morrison
        return out

    def update(self, results: Sequence[tuple[Match, str | None]]) -> None:
        for m, verdict in results:
            self.calls += 1
            if verdict is None:
                continue  # failures are skipped (and counted by the runner)
            i, j = self._idx[m.a], self._idx[m.b]
            s = SCORE[verdict]
            self.score[i, j] += s
            self.score[j, i] += 1 - s
            self.games[i, j] += 1
            self.games[j, i] += 1
        self.refit()

    @property
    def stop_reason(self) -> str:
        return self._reason or "running"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


_ERFC = np.frompyfunc(math.erfc, 1, 1)


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, ``erfc(-x / sqrt 2) / 2`` (no scipy import on the CLI path)."""
    out = _ERFC(-np.asarray(x, float) / math.sqrt(2.0))
    return 0.5 * np.asarray(out, dtype=float)


def _norm_ppf(q: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


def make_pairing(
    strategy: str,
    models: Sequence[str],
    prompt_ids: Sequence[str],
    *,
    baseline: str | None = None,
    budget: int | None = None,
    top_k: int = 3,
    confidence: float = 0.95,
    batch_size: int = 8,
    seed: int = 0,
) -> Pairing:
    """A pairing strategy by name: ``round_robin``, ``vs_baseline`` or ``adaptive``."""
    if strategy == "round_robin":
        return round_robin(models, prompt_ids, budget=budget, seed=seed, batch_size=batch_size)
    if strategy == "vs_baseline":
        if not baseline:
            raise ConfigError("vs_baseline needs a baseline", setting="pairing.baseline")
        return vs_baseline(
            models, prompt_ids, baseline, budget=budget, seed=seed, batch_size=batch_size
        )
    if strategy == "adaptive":
        return Adaptive(
            models,
            prompt_ids,
            top_k=top_k,
            confidence=confidence,
            budget=budget,
            batch_size=batch_size,
            seed=seed,
        )
    raise ConfigError(
        f"unknown strategy {strategy!r} (round_robin, vs_baseline, adaptive)",
        setting="pairing.strategy",
    )


# ----------------------------------------------------------------------------------------------
# Measuring the saving on a synthetic field
# ----------------------------------------------------------------------------------------------


def simulate_verdicts(
    matches: Sequence[Match], theta: dict[str, float], rng: np.random.Generator, nu: float = 0.3
) -> list[tuple[Match, str | None]]:
    """A synthetic judge: Davidson (1970) outcomes from true strengths ``theta``."""
    out: list[tuple[Match, str | None]] = []
    for m in matches:
        d = theta[m.a] - theta[m.b]
        big_d = 2 * math.cosh(d / 2) + nu
        u = rng.random() * big_d
        out.append((m, "a" if u < math.exp(d / 2) else "b" if u < 2 * math.cosh(d / 2) else "tie"))
    return out


def top_k_accuracy(ranking: Sequence[str], truth: Sequence[str], k: int) -> float:
    """Share of the first ``k`` positions that hold the right model.

    >>> top_k_accuracy(["a", "b", "c"], ["a", "c", "b"], 2)
    0.5
    """
    return sum(r == t for r, t in zip(ranking[:k], truth[:k], strict=False)) / k


@dataclass
class VerdictTable:
    """Every (prompt, pair) verdict of one synthetic draw, fixed in advance.

    A judge with a cache behaves like this: asking again gives the same verdict. Round robin
    reads the whole table and adaptive pairing the part it asks for, so the two are compared on
    the same draw (common random numbers), not on independent noise.
    """

    models: list[str]
    prompts: list[str]
    outcome: np.ndarray  # (Q, X) int: 0 = first of the pair (i < j) won, 1 = second, 2 = tie

    @classmethod
    def draw(
        cls,
        models: Sequence[str],
        prompts: Sequence[str],
        theta: dict[str, float],
        seed: int,
        nu: float = 0.3,
    ) -> VerdictTable:
        from judge_rl.tournament.synthetic import outcome_probs

        n = len(models)
        iu, ju = np.triu_indices(n, 1)
        th = np.array([theta[m] for m in models])
        pa, pb, _ = outcome_probs(th[iu], th[ju], nu=nu)  # (Q,)
        u = np.random.default_rng(seed).random((len(iu), len(prompts)))  # (Q, X)
        out = np.where(u < pa[:, None], 0, np.where(u < (pa + pb)[:, None], 1, 2))
        return cls(list(models), list(prompts), out)

    def verdicts(self, matches: Sequence[Match]) -> list[tuple[Match, str | None]]:
        n = len(self.models)
        idx = {m: k for k, m in enumerate(self.models)}
        pidx = {p: k for k, p in enumerate(self.prompts)}
        res: list[tuple[Match, str | None]] = []
        for m in matches:
            i, j = idx[m.a], idx[m.b]
            lo, hi = min(i, j), max(i, j)
            q = lo * n - lo * (lo + 1) // 2 + (hi - lo - 1)  # row of (lo, hi) in triu order
            o = int(self.outcome[q, pidx[m.prompt_id]])
            if o == 2:
                res.append((m, "tie"))
            else:
                first_won = o == 0
                res.append((m, "a" if first_won == (i == lo) else "b"))
        return res

    def full_round_robin_ranking(self) -> list[str]:
        """Bradley-Terry ranking from every verdict in the table."""
        from judge_rl.tournament import bradley_terry as bt

        n, x = len(self.models), len(self.prompts)
        iu, ju = np.triu_indices(n, 1)
        a, b = np.repeat(iu, x), np.repeat(ju, x)  # (Q * X,)
        f = bt.fit(bt.aggregate_codes(a, b, self.outcome.reshape(-1), self.models))
        return [self.models[t] for t in np.argsort(-f.theta, kind="stable")]


def _adaptive_curve(
    ad: Adaptive, table: VerdictTable, truth: list[str], k: int, checkpoints: Sequence[int]
) -> list[float]:
    """Top-k accuracy of the adaptive run's own fit at each checkpoint (frozen once it stops)."""
    acc: list[float] = []
    done = 0
    cps = list(checkpoints)
    while cps:
        batch = ad.next_batch()
        if not batch:
            break
        ad.update(table.verdicts(batch))
        done += len(batch)
        while cps and done >= cps[0]:
            acc.append(top_k_accuracy(ad.ranking(), truth, k))
            cps.pop(0)
    while len(acc) < len(checkpoints):
        acc.append(top_k_accuracy(ad.ranking(), truth, k))
    return acc


def measure_adaptive_savings(
    *,
    n_models: int = 12,
    gap_elo: float = 25.0,
    n_prompts: int = 100,
    k: int = 3,
    seeds: int = 20,
    step: int = 100,
    batch_size: int = 16,
    max_fraction: float = 0.5,
    spread_elo: float | None = None,
    field_seed: int = 0,
) -> dict[str, object]:
    """Judge comparisons adaptive needs to match round robin's top-k accuracy, as a ratio.

    The field: ``n_models`` contestants with true Elo ratings ``gap_elo`` apart or, with
    ``spread_elo``, drawn from a normal distribution with that standard deviation (seed
    ``field_seed``), like a real leaderboard; outcomes from the Davidson model (ties). Each draw
    fixes every (prompt, pair) verdict in advance (:class:`VerdictTable`); round robin reads them
    all, and its mean top-k accuracy (:func:`top_k_accuracy`) over ``seeds`` draws is the target. Adaptive (never stopping
    early) runs on the same field; the answer is the first multiple of ``step`` comparisons at
    which its mean accuracy over ``seeds`` draws reaches the target. Adaptive runs are cut at
    ``max_fraction`` of round robin's calls (a ratio of 1.0 is reported if not reached by then).
    """
    models = [f"m{k_:02d}" for k_ in range(n_models)]
    if spread_elo is None:
        elo = np.arange(n_models)[::-1] * gap_elo  # best first
    else:
        elo = np.sort(np.random.default_rng(field_seed).normal(0, spread_elo, n_models))[::-1]
    theta = {m: float(e * math.log(10) / 400) for m, e in zip(models, elo, strict=True)}
    truth = list(models)
    prompts = [f"q{p}" for p in range(n_prompts)]
    rr_calls = n_models * (n_models - 1) // 2 * n_prompts
    cps = list(range(step, int(rr_calls * max_fraction) + 1, step))
    rr_acc, curves = [], []
    for s in range(seeds):
        table = VerdictTable.draw(models, prompts, theta, seed=10_000 + s)
        rr_acc.append(top_k_accuracy(table.full_round_robin_ranking(), truth, k))
        ad = Adaptive(
            models, prompts, top_k=k, confidence=None, budget=cps[-1], seed=s, batch_size=batch_size
        )
        curves.append(_adaptive_curve(ad, table, truth, k, cps))
    target = float(np.mean(rr_acc))
    mean_curve = np.mean(np.asarray(curves), axis=0)  # (C,)
    # The first checkpoint from which the mean accuracy stays at or above the target (robust to a
    # lucky spike in the noisy curve).
    below = np.flatnonzero(mean_curve < target)
    first = 0 if len(below) == 0 else int(below[-1]) + 1
    calls = int(cps[first]) if first < len(cps) else rr_calls
    return {
        "field": (
            f"{n_models} models {gap_elo:g} Elo apart"
            if spread_elo is None
            else f"{n_models} models, Elo ~ N(0, {spread_elo:g}^2) (seed {field_seed})"
        )
        + f", {n_prompts} prompts",
        "elo": [round(float(e), 1) for e in elo],
        "k": k,
        "seeds": seeds,
        "rr_calls": rr_calls,
        "rr_accuracy": target,
        "adaptive_calls": calls,
        "adaptive_curve": dict(zip(cps, mean_curve.tolist(), strict=True)),
        "ratio": calls / rr_calls,
    }


def stopping_error(
    *,
    gap_elo: float,
    n_models: int = 8,
    k: int = 3,
    confidence: float = 0.95,
    n_prompts: int = 100,
    seeds: int = 40,
    batch_size: int = 16,
    nu: float = 0.3,
    stopping: str = "cs",
    seed0: int = 0,
    elo: Sequence[float] | None = None,
) -> dict[str, object]:
    """Simulated error of the adaptive stop: P(claimed top-k order wrong | stopped early).

    A field of ``n_models`` contestants ``gap_elo`` apart (or Elo ratings ``elo``, best first;
    Davidson ties, ``nu``), every (prompt,
    pair) verdict drawn in advance (:class:`VerdictTable`); adaptive pairing runs until it stops
    (the claim) or runs out of (prompt, pair)s. Also returns, at the budget each run used, the
    top-k accuracy of round robin truncated to the same number of comparisons (equal budget).
    """
    if elo is None:  # best first
        elo = [(n_models - 1 - q) * gap_elo for q in range(n_models)]
    n_models = len(elo)
    models = [f"m{q:02d}" for q in range(n_models)]
    theta = {m: float(e * math.log(10) / 400) for m, e in zip(models, elo, strict=True)}
    prompts = [f"q{p}" for p in range(n_prompts)]
    stopped = wrong = 0
    calls: list[int] = []
    acc_ad: list[float] = []
    acc_rr: list[float] = []
    for s_ in range(seeds):
        table = VerdictTable.draw(models, prompts, theta, seed=seed0 + 50_000 + s_, nu=nu)
        ad = Adaptive(
            models,
            prompts,
            top_k=k,
            confidence=confidence,
            seed=seed0 + s_,
            batch_size=batch_size,
            stopping=stopping,
        )
        while batch := ad.next_batch():
            ad.update(table.verdicts(batch))
        calls.append(ad.calls)
        ok = ad.ranking()[:k] == models[:k]
        acc_ad.append(float(ok))
        if ad.stop_reason.startswith(f"top-{k} order separated"):
            stopped += 1
            wrong += not ok
        rr = round_robin(models, prompts, budget=ad.calls, seed=seed0 + s_)
        acc_rr.append(float(_fixed_ranking(rr, table)[:k] == models[:k]))
    return {
        "gap_elo": gap_elo,
        "runs": seeds,
        "stopped": stopped,
        "wrong": wrong,
        "error": wrong / stopped if stopped else 0.0,
        "bound": 1.0 - confidence,
        "mean_calls": float(np.mean(calls)),
        "round_robin_calls": n_models * (n_models - 1) // 2 * n_prompts,
        "adaptive_accuracy": float(np.mean(acc_ad)),
        "round_robin_accuracy_equal_budget": float(np.mean(acc_rr)),
    }


def _fixed_ranking(schedule: _Fixed, table: VerdictTable) -> list[str]:
    """Bradley-Terry ranking from the verdicts of a fixed schedule."""
    from judge_rl.tournament import bradley_terry as bt

    idx = {m: q for q, m in enumerate(table.models)}
    res = table.verdicts(schedule.schedule)
    a = np.array([idx[m.a] for m, _ in res])
    b = np.array([idx[m.b] for m, _ in res])
    w = np.array([{"a": 0, "b": 1, "tie": 2}[str(v)] for _, v in res])
    f = bt.fit(bt.aggregate_codes(a, b, w, table.models))
    return [table.models[t] for t in np.argsort(-f.theta, kind="stable")]


__all__ = [
    "Adaptive",
    "Match",
    "Pairing",
    "make_pairing",
    "measure_adaptive_savings",
    "round_robin",
    "cs_radius",
    "simulate_verdicts",
    "stopping_error",
    "top_k_accuracy",
    "vs_baseline",
]
