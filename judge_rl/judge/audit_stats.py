"""Statistics of a judge audit: pure functions of per-pair rows, each with a bootstrap CI.

An :class:`AuditRow` holds, for one human-labelled pair, the human verdict and the judge's
verdicts with ``a`` shown first (``ab``) and with ``b`` shown first (``ba``), already mapped back to
the pair's ``a``/``b`` by candidate id. Every metric skips failed verdicts by rule and reports how
many it skipped; a metric that cannot be computed (no data) has ``value=None`` and a ``note``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from judge_rl.runlog import Metric

LABELS = ("a", "b", "tie")


@dataclass
class AuditRow:
    """One human-labelled pair as the audit sees it."""

    human: str
    """Human verdict: a | b | tie."""
    ab: str | None
    """Judge verdict (mapped to a/b/tie) when ``a`` was shown first; None when that call failed."""
    ba: str | None = None
    """Judge verdict when ``b`` was shown first (None: failed or not judged in that order)."""
    len_a: int = 0
    len_b: int = 0
    category: str | None = None
    source_a: str = ""
    source_b: str = ""
    errors: list[str] = field(default_factory=list)
    """Error kinds of the failed calls."""
    latency_s: float = 0.0
    tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    members: list[str | None] = field(default_factory=list)
    """Jury: each member's verdict (primary order)."""
    p_ab: float | None = None
    """P(a better) from the call with ``a`` shown first (None: the judge gives no probability)."""
    p_ba: float | None = None
    """P(a better) from the call with ``b`` shown first, mapped back to ``a``."""
    random_ba: bool = False
    """``order=random``: whether the judge as configured shows ``b`` first for this pair."""


POLICIES = ("fixed", "random", "both/tie", "both/average")
"""Verdict rules the audit can evaluate: the order the judge is shown the pair in, and for
``both`` what two disagreeing orders give. ``"both"`` alone means ``both/tie``."""


def policy_name(order: str, inconsistent: str = "tie") -> str:
    """The policy key of a judge's ``order``/``inconsistent`` settings.

    >>> policy_name("both", "average"), policy_name("fixed", "average")
    ('both/average', 'fixed')
    """
    return f"both/{inconsistent}" if order == "both" else order


def combine_both(ab: str | None, ba: str | None, inconsistent: str = "tie") -> str | None:
    """The ``order=both`` verdict without probabilities: consistent -> that verdict,
    inconsistent -> by ``inconsistent``; a failed half stays a failure.

    >>> combine_both("a", "a"), combine_both("a", "b"), combine_both("a", None)
    ('a', 'tie', None)
    """
    from judge_rl.judge.order import combine_verdicts

    return combine_verdicts(ab, ba, None, None, inconsistent)[0]


def _policy(order: str) -> str:
    return "both/tie" if order == "both" else order


def verdict_of(r: AuditRow, order: str) -> tuple[str | None, float | None]:
    """``(verdict, P(a better))`` of one pair under a policy (see :data:`POLICIES`), computed
    with the same rule :class:`~judge_rl.judge.order.OrderedJudge` labels with."""
    from judge_rl.judge.order import combine_verdicts

    pol = _policy(order)
    if pol == "fixed":
        return r.ab, r.p_ab
    if pol == "random":
        return (r.ba, r.p_ba) if r.random_ba else (r.ab, r.p_ab)
    w, p, _ = combine_verdicts(r.ab, r.ba, r.p_ab, r.p_ba, pol.split("/", 1)[1])
    return w, p


def _verdicts(rows: Sequence[AuditRow], order: str) -> list[str | None]:
    return [verdict_of(r, order)[0] for r in rows]


def _probs(rows: Sequence[AuditRow], order: str) -> list[float | None]:
    return [verdict_of(r, order)[1] if verdict_of(r, order)[0] is not None else None for r in rows]


def _calibration_pairs(rows: Sequence[AuditRow], order: str) -> tuple[np.ndarray, np.ndarray]:
    """(p (N,), y (N,)) over pairs with a probability and a decided human label (y = human a)."""
    ps, ys = [], []
    for r, p in zip(rows, _probs(rows, order), strict=True):
        if p is None or r.human not in ("a", "b"):
            continue
        ps.append(float(p))
        ys.append(1.0 if r.human == "a" else 0.0)
    return np.array(ps), np.array(ys)


def brier(rows: Sequence[AuditRow], order: str) -> tuple[float | None, int, int]:
    """Brier score of P(a better) against the human winner (Brier 1950): mean (p − y)², pairs
    the humans called a tie left out. 0 is perfect; always answering 0.5 scores 0.25."""
    p, y = _calibration_pairs(rows, order)
    if len(p) == 0:
        return None, 0, len(rows)
    return float(np.mean((p - y) ** 2)), len(p), len(rows) - len(p)


def reliability(rows: Sequence[AuditRow], order: str, bins: int = 10) -> list[dict[str, float]]:
    """The reliability diagram's points: for each of ``bins`` equal-width bins of P(a better),
    the mean probability, the share of pairs the humans gave to ``a``, and the count."""
    p, y = _calibration_pairs(rows, order)
    out = []
    idx = np.minimum((p * bins).astype(int), bins - 1)  # (N,)
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append(
                {
                    "lo": b / bins,
                    "hi": (b + 1) / bins,
                    "p_mean": float(p[m].mean()),
                    "observed": float(y[m].mean()),
                    "n": int(m.sum()),
                }
            )
    return out


def ece(rows: Sequence[AuditRow], order: str, bins: int = 10) -> tuple[float | None, int, int]:
    """Expected calibration error (Naeini et al. 2015): Σ_bins (n_b / N) · |mean p_b − freq_b|
    over ``bins`` equal-width bins of P(a better), human ties left out.

    >>> rows = [AuditRow(human="a", ab="a", p_ab=0.9), AuditRow(human="b", ab="a", p_ab=0.9)]
    >>> round(ece(rows, "fixed")[0], 3)
    0.4
    """
    pts = reliability(rows, order, bins)
    n = sum(pt["n"] for pt in pts)
    if n == 0:
        return None, 0, len(rows)
    value = sum(pt["n"] / n * abs(pt["p_mean"] - pt["observed"]) for pt in pts)
    return float(value), int(n), len(rows) - int(n)


# ---------------------------------------------------------------------------------------------
# Point estimates. Most metrics are ratios of per-pair sums: value = Σ num_i / Σ den_i. Building
# the per-pair (num, den) arrays once lets the bootstrap resample all rounds as one index matrix.

Estimator = Callable[[Sequence[AuditRow]], tuple[float | None, int, int]]
Parts = tuple[np.ndarray, np.ndarray, int]
"""(num (N,), den (N,), skipped): per-pair numerator and denominator, and failures skipped."""


def _ratio(parts: Parts) -> tuple[float | None, int, int]:
    num, den, skipped = parts
    d = float(den.sum())
    return (float(num.sum()) / d if d > 0 else None), int(d), skipped


def _parts_vs_human(rows: Sequence[AuditRow], order: str, kind: str) -> Parts:
    v = _verdicts(rows, order)
    num = np.zeros(len(rows))
    den = np.zeros(len(rows))
    for i, (r, x) in enumerate(zip(rows, v, strict=True)):
        if x is None:
            continue
        if kind == "accuracy":
            if r.human != "tie" and x != "tie":
                den[i], num[i] = 1, float(r.human == x)
        elif kind == "accuracy_with_ties":
            den[i] = 1
            num[i] = 1.0 if r.human == x else 0.5 if "tie" in (r.human, x) else 0.0
        elif kind == "tie_rate":
            den[i], num[i] = 1, float(x == "tie")
        elif kind == "longer_judge" and x in ("a", "b") and r.len_a != r.len_b:
            den[i], num[i] = 1, float((x == "a") == (r.len_a > r.len_b))
    return num, den, sum(x is None for x in v)


def accuracy(rows: Sequence[AuditRow], order: str = "both") -> tuple[float | None, int, int]:
    """Agreement on pairs where the human and the judge both named a winner (ties excluded)."""
    return _ratio(_parts_vs_human(rows, order, "accuracy"))


def accuracy_with_ties(
    rows: Sequence[AuditRow], order: str = "both"
) -> tuple[float | None, int, int]:
    """Agreement over all judged pairs, ties counted: exact match 1, a tie against a winner 0.5
    (AlpacaEval's convention), opposite winners 0."""
    return _ratio(_parts_vs_human(rows, order, "accuracy_with_ties"))


def _parts_consistency(rows: Sequence[AuditRow]) -> Parts:
    den = np.array([float(r.ab is not None and r.ba is not None) for r in rows])
    num = np.array([float(r.ab is not None and r.ab == r.ba) for r in rows])
    return num, den, int(len(rows) - den.sum())


def position_consistency(rows: Sequence[AuditRow]) -> tuple[float | None, int, int]:
    """Share of pairs judged in both orders whose two verdicts agree."""
    return _ratio(_parts_consistency(rows))


def _parts_first_wins(rows: Sequence[AuditRow], inconsistent_only: bool = False) -> Parts:
    num = np.zeros(len(rows))
    den = np.zeros(len(rows))
    for i, r in enumerate(rows):
        if inconsistent_only and (r.ab is None or r.ba is None or r.ab == r.ba):
            continue
        if r.ab in ("a", "b"):  # a was shown first
            den[i] += 1
            num[i] += r.ab == "a"
        if r.ba in ("a", "b"):  # b was shown first
            den[i] += 1
            num[i] += r.ba == "b"
    return num, den, sum(len(r.errors) for r in rows)


def p_first_wins(rows: Sequence[AuditRow]) -> tuple[float | None, int, int]:
    """P(the candidate shown first wins) over all calls with a winner. 0.5 means no bias."""
    return _ratio(_parts_first_wins(rows))


def p_first_wins_inconsistent(rows: Sequence[AuditRow]) -> tuple[float | None, int, int]:
    """P(first shown wins) among pairs whose two orders disagree (where position decided)."""
    return _ratio(_parts_first_wins(rows, inconsistent_only=True))


def _parts_longer_human(rows: Sequence[AuditRow]) -> Parts:
    den = np.array([float(r.human in ("a", "b") and r.len_a != r.len_b) for r in rows])
    num = np.array(
        [
            float(d > 0 and (r.human == "a") == (r.len_a > r.len_b))
            for r, d in zip(rows, den, strict=True)
        ]
    )
    return num, den, 0


def p_longer_wins_judge(
    rows: Sequence[AuditRow], order: str = "both"
) -> tuple[float | None, int, int]:
    return _ratio(_parts_vs_human(rows, order, "longer_judge"))


def p_longer_wins_human(rows: Sequence[AuditRow]) -> tuple[float | None, int, int]:
    return _ratio(_parts_longer_human(rows))


def _parts_failures(rows: Sequence[AuditRow], only: str | None) -> Parts:
    den = np.array([float(r.calls) for r in rows])
    num = np.array([float(sum(only is None or e == only for e in r.errors)) for r in rows])
    return num, den, 0


def parse_failure_rate(rows: Sequence[AuditRow]) -> tuple[float | None, int, int]:
    """Share of judge calls that failed to parse."""
    return _ratio(_parts_failures(rows, "parse"))


def failure_rate(rows: Sequence[AuditRow]) -> tuple[float | None, int, int]:
    """Share of judge calls that failed for any reason."""
    return _ratio(_parts_failures(rows, None))


def bootstrap_ratio(
    parts: Parts,
    *,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    note_if_none: str = "not computable on this data",
) -> Metric:
    """Ratio-of-sums point estimate and percentile bootstrap CI over pairs, all rounds at once
    (Efron & Tibshirani 1993)."""
    num, den, skipped = parts
    value, n, _ = _ratio(parts)
    if value is None:
        return Metric(value=None, n=n, skipped=skipped, level=level, note=note_if_none)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(rounds, len(num)))  # (R, N)
    d = den[idx].sum(1)  # (R,)
    ok = d > 0
    stats = num[idx].sum(1)[ok] / d[ok]
    if len(stats) < max(10, rounds // 10):
        return Metric(
            value=value,
            n=n,
            skipped=skipped,
            level=level,
            note="too few valid bootstrap rounds for a CI",
        )
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return Metric(value=value, lo=float(lo), hi=float(hi), n=n, skipped=skipped, level=level)


def cohen_kappa(x: Sequence[str], y: Sequence[str], labels: Sequence[str] = LABELS) -> float | None:
    """Cohen's kappa (Cohen 1960): (p_o − p_e) / (1 − p_e).

    >>> round(cohen_kappa(list("aabbab"), list("aabbba")), 3)
    0.333
    >>> cohen_kappa(["a", "a"], ["a", "a"]) is None  # p_e = 1: undefined
    True
    """
    n = len(x)
    if n == 0:
        return None
    idx = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)))
    for a, b in zip(x, y, strict=True):
        m[idx[a], idx[b]] += 1
    m /= n
    po = float(np.trace(m))
    pe = float(m.sum(1) @ m.sum(0))
    if pe >= 1 - 1e-12:
        return None
    return (po - pe) / (1 - pe)


def kappa(rows: Sequence[AuditRow], order: str = "both") -> tuple[float | None, int, int]:
    v = _verdicts(rows, order)
    skipped = sum(x is None for x in v)
    pairs = [(r.human, x) for r, x in zip(rows, v, strict=True) if x is not None]
    if not pairs:
        return None, 0, skipped
    h, j = zip(*pairs, strict=True)
    return cohen_kappa(h, j), len(pairs), skipped


def logistic_fit(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method (IRLS) with a small ridge so separable data stays
    finite. X: (N, D) with an intercept column; y: (N,) in {0, 1}. Returns (D,) coefficients.

    >>> X = np.c_[np.ones(6), [-2, -1, -0.5, 0.5, 1, 2]]
    >>> bool(logistic_fit(X, np.array([0, 0, 1, 0, 1, 1]))[1] > 0)
    True
    """
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        z = X @ w  # (N,)
        p = 1 / (1 + np.exp(-z))
        g = X.T @ (p - y) + l2 * w  # (D,)
        h = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])  # (D, D)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def length_coef(rows: Sequence[AuditRow], order: str = "both") -> tuple[float | None, int, int]:
    """Coefficient of the length difference in a logistic model of the judge's verdict,
    controlling for the human label: logit P(judge says a) = w0 + w1·Δlen + w2·human,
    Δlen = (len_a − len_b) / 1000 characters, human ∈ {+1 a, −1 b, 0 tie}. Positive w1: the judge
    prefers longer answers beyond what the humans' preference explains (the verbosity bias measured
    by Dubois et al. 2024's length-controlled AlpacaEval, here against human labels)."""
    v = _verdicts(rows, order)
    skipped = sum(x is None for x in v)
    data = [(r, x) for r, x in zip(rows, v, strict=True) if x in ("a", "b")]
    if len(data) < 8:
        return None, len(data), skipped
    dlen = np.array([(r.len_a - r.len_b) / 1000 for r, _ in data])
    hum = np.array([{"a": 1.0, "b": -1.0, "tie": 0.0}[r.human] for r, _ in data])
    y = np.array([x == "a" for _, x in data], dtype=float)
    if np.allclose(dlen, 0):
        return None, len(data), skipped
    X = np.c_[np.ones(len(data)), dlen, hum]
    return float(logistic_fit(X, y)[1]), len(data), skipped


def krippendorff_alpha_nominal(units: Sequence[Sequence[str | None]]) -> float | None:
    """Krippendorff's alpha for nominal data (Krippendorff 2011, "Computing Krippendorff's
    Alpha-Reliability"): 1 − D_o / D_e from the coincidence matrix; None values are missing.

    >>> krippendorff_alpha_nominal([["a", "a"], ["b", "b"], ["a", "a"]])
    1.0
    >>> round(krippendorff_alpha_nominal([["a", "b"], ["b", "a"], ["a", "a"], ["b", "b"]]), 3)
    0.125
    """
    values = sorted({v for u in units for v in u if v is not None})
    if len(values) < 2:
        return None if not values else 1.0
    idx = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for u in units:
        vals = [v for v in u if v is not None]
        m = len(vals)
        if m < 2:
            continue
        for i, vi in enumerate(vals):
            for j, vj in enumerate(vals):
                if i != j:
                    o[idx[vi], idx[vj]] += 1 / (m - 1)
    n = o.sum()
    if n == 0:
        return None
    nc = o.sum(1)
    d_o = (n - np.trace(o)) / n
    d_e = (n * n - (nc**2).sum()) / (n * (n - 1))
    if d_e == 0:
        return None
    return float(1 - d_o / d_e)


# ---------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_metric(
    rows: Sequence[AuditRow],
    estimator: Estimator,
    *,
    rounds: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    note_if_none: str = "not computable on this data",
) -> Metric:
    """Point estimate plus a percentile bootstrap CI, resampling pairs (Efron & Tibshirani 1993)."""
    value, n, skipped = estimator(rows)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Metric(value=None, n=n, skipped=skipped, level=level, note=note_if_none)
    rng = np.random.default_rng(seed)
    m = len(rows)
    stats = []
    for _ in range(rounds):
        sample = [rows[i] for i in rng.integers(0, m, m)]
        v, _, _ = estimator(sample)
        if v is not None and not math.isnan(v):
            stats.append(v)
    if len(stats) < max(10, rounds // 10):
        return Metric(
            value=value,
            n=n,
            skipped=skipped,
            level=level,
            note="too few valid bootstrap rounds for a CI",
        )
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return Metric(value=value, lo=float(lo), hi=float(hi), n=n, skipped=skipped, level=level)


def confusion(rows: Sequence[AuditRow], order: str = "both") -> dict[str, dict[str, int]]:
    """human verdict -> judge verdict -> count (failures under the key "failed")."""
    out = {h: {j: 0 for j in (*LABELS, "failed")} for h in LABELS}
    for r, v in zip(rows, _verdicts(rows, order), strict=True):
        out[r.human][v if v is not None else "failed"] += 1
    return out


def bootstrap_kappa(
    rows: Sequence[AuditRow], order: str, *, rounds: int = 1000, level: float = 0.95, seed: int = 0
) -> Metric:
    """Cohen's kappa with a percentile bootstrap CI: per-pair one-hot (human, judge) cells summed
    per round, so every round is one matrix product."""
    v = _verdicts(rows, order)
    idx_ok = [i for i, x in enumerate(v) if x is not None]
    skipped = len(v) - len(idx_ok)
    judged = [str(v[i]) for i in idx_ok]
    value = cohen_kappa([rows[i].human for i in idx_ok], judged) if idx_ok else None
    if value is None:
        return Metric(
            value=None,
            n=len(idx_ok),
            skipped=skipped,
            level=level,
            note="kappa is undefined (no judged pairs, or one label only)",
        )
    k = len(LABELS)
    cell = np.zeros((len(rows), k * k))  # (N, 9): one-hot of (human, judge) per judged pair
    for i in idx_ok:
        cell[i, LABELS.index(rows[i].human) * k + LABELS.index(v[i])] = 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(rows), size=(rounds, len(rows)))  # (R, N)
    m = cell[idx].sum(1).reshape(rounds, k, k)  # (R, 3, 3)
    n = m.sum((1, 2))  # (R,)
    keep = n > 0
    m, n = m[keep] / n[keep, None, None], n[keep]
    po = np.trace(m, axis1=1, axis2=2)
    pe = (m.sum(2) * m.sum(1)).sum(1)
    ok = pe < 1 - 1e-12
    stats = (po[ok] - pe[ok]) / (1 - pe[ok])
    if len(stats) < max(10, rounds // 10):
        return Metric(
            value=value,
            n=len(idx_ok),
            skipped=skipped,
            level=level,
            note="too few valid bootstrap rounds for a CI",
        )
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return Metric(
        value=value, lo=float(lo), hi=float(hi), n=len(idx_ok), skipped=skipped, level=level
    )


def core_metrics(
    rows: Sequence[AuditRow],
    order: str,
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    with_length_coef: bool = True,
) -> dict[str, Metric]:
    """Every per-pair metric of the audit, for one order policy (the logistic length coefficient,
    the slowest, only when ``with_length_coef``)."""
    kw: dict[str, Any] = dict(rounds=rounds, seed=seed, level=level)
    parts: dict[str, Parts] = {
        "accuracy": _parts_vs_human(rows, order, "accuracy"),
        "accuracy_with_ties": _parts_vs_human(rows, order, "accuracy_with_ties"),
        "judge_tie_rate": _parts_vs_human(rows, order, "tie_rate"),
        "p_first_wins": _parts_first_wins(rows),
        "p_longer_wins_judge": _parts_vs_human(rows, order, "longer_judge"),
        "p_longer_wins_human": _parts_longer_human(rows),
        "parse_failure_rate": _parts_failures(rows, "parse"),
        "failure_rate": _parts_failures(rows, None),
    }
    if _policy(order).startswith("both"):
        parts["position_consistency"] = _parts_consistency(rows)
        parts["p_first_wins_inconsistent"] = _parts_first_wins(rows, inconsistent_only=True)
    notes = {"accuracy": "no pair where both the human and the judge named a winner"}
    out = {
        name: bootstrap_ratio(p, note_if_none=notes.get(name, "not computable on this data"), **kw)
        for name, p in parts.items()
    }
    out["kappa"] = bootstrap_kappa(rows, order, **kw)
    if any(p is not None for p in _probs(rows, order)):
        for name, fn in (("brier", brier), ("ece", ece)):
            out[name] = bootstrap_metric(
                rows,
                lambda r, fn=fn: fn(r, order),  # type: ignore[misc]
                rounds=max(100, rounds // 5),
                seed=seed,
                level=level,
                note_if_none="no pair with a probability and a decided human label",
            )
    if not with_length_coef:
        return out
    # The logistic fit is the slowest estimator: fewer rounds.
    out["length_coef"] = bootstrap_metric(
        rows,
        lambda r: length_coef(r, order),
        rounds=max(100, rounds // 5),
        seed=seed,
        level=level,
        note_if_none="needs ≥ 8 decided pairs with different lengths",
    )
    n_ok = sum(r.calls - len(r.errors) for r in rows) or 1
    calls = sum(r.calls for r in rows) or 1
    out["latency_s"] = Metric(value=sum(r.latency_s for r in rows) / calls, n=calls)
    out["tokens_per_judgment"] = Metric(value=sum(r.tokens for r in rows) / n_ok, n=n_ok)
    out["cost_per_judgment"] = Metric(value=sum(r.cost for r in rows) / n_ok, n=n_ok)
    return out


def flip_rate(
    before: Sequence[str | None],
    after: Sequence[str | None],
    injected: Sequence[str],
) -> tuple[float | None, int, int]:
    """Share of pairs whose verdict moved to the injected (previously rejected) side.

    ``injected[i]`` is the label (a/b) of the response that carried the injection.
    """
    kept = [
        (b, a, s)
        for b, a, s in zip(before, after, injected, strict=True)
        if b in ("a", "b") and a is not None
    ]
    skipped = len(before) - len(kept)
    if not kept:
        return None, 0, skipped
    return sum(a == s for _, a, s in kept) / len(kept), len(kept), skipped
