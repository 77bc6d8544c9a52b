"""Statistics of the over-optimisation monitor: means with confidence intervals, the Gao et al.
(2022) fit of gold reward against KL, the alarm rule and best-checkpoint selection.

Everything here is pure numpy on plain lists, so it is tested on synthetic curves without a model.

The alarm rule (see ``docs/overopt.md``): at monitor point ``t`` with gold peak at point ``p < t``

1. gold has fallen significantly: the drop ``gold[p] - gold[t]`` exceeds the ``1 - alpha``
   quantile of ``max_{j<t} X_j - X_t`` under the null that all points share one mean (each
   ``X_j ~ N(0, se_j^2)``; :func:`max_drop_critical`), which accounts both for the noise of the two
   points and for ``p`` having been *selected* as the maximum; optionally also a one-sided
   weighted least-squares trend test over the latest points;
2. and the proxy still rises: ``proxy[t] > proxy[p]`` (the proxy prefers the current policy to the
   one gold liked best) and the proxy's WLS slope over ``p..t`` is positive.

With proxy = gold, (2) contradicts (1), so a clean run cannot alarm: the alarm is about the two
signals *disagreeing*, which is what over-optimisation is (Gao et al. 2022, fig. 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Z95 = 1.959963984540054


@dataclass
class MeanCI:
    """A mean with its standard error and a confidence interval."""

    mean: float | None
    lo: float | None
    hi: float | None
    se: float | None
    sd: float | None
    n: int
    skipped: int

    def as_dict(self, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_mean": self.mean,
            f"{prefix}_lo": self.lo,
            f"{prefix}_hi": self.hi,
            f"{prefix}_se": self.se,
            f"{prefix}_sd": self.sd,
            f"{prefix}_n": self.n,
            f"{prefix}_skipped": self.skipped,
        }


def mean_ci(
    values: Sequence[float], *, level: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> MeanCI:
    """Mean of the finite values with a percentile-bootstrap CI and the standard error.

    ``nan`` values (failed scores) are skipped and counted, never replaced.

    >>> m = mean_ci([1.0, 0.0, 1.0, float("nan")])
    >>> (round(m.mean, 3), m.n, m.skipped)
    (0.667, 3, 1)
    >>> mean_ci([]).mean is None
    True
    """
    arr = np.asarray(list(values), dtype=float)
    ok = np.isfinite(arr)
    x = arr[ok]  # (n,)
    skipped = int((~ok).sum())
    n = int(x.size)
    if n == 0:
        return MeanCI(None, None, None, None, None, 0, skipped)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    se = sd / math.sqrt(n)
    if n == 1 or sd == 0.0:
        return MeanCI(mean, mean, mean, se, sd, n, skipped)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # (n_boot, n)
    boots = x[idx].mean(axis=1)  # (n_boot,)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [a, 1.0 - a])
    return MeanCI(mean, float(lo), float(hi), se, sd, n, skipped)


# ---------------------------------------------------------------------------------------------
# Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization", eq. 2 (RL):
#   R_RL(d) = d (alpha - beta log d),   d = sqrt(KL(pi || pi_init)),
# with the gold reward measured relative to the initial policy (R(0) = 0).
# dR/dd = alpha - beta (log d + 1) = 0  =>  d* = exp(alpha / beta - 1), KL* = d*^2.


def gao_rl(d: np.ndarray | float, alpha: float, beta: float) -> np.ndarray:
    """The RL functional form ``d (alpha - beta log d)`` (0 at d = 0).

    >>> float(gao_rl(1.0, 2.0, 0.5))
    2.0
    """
    d = np.asarray(d, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = d * (alpha - beta * np.log(np.where(d > 0, d, 1.0)))
    return np.where(d > 0, out, 0.0)


def fit_gao_rl(
    kl: Sequence[float],
    gold: Sequence[float],
    *,
    gold0: float | None = None,
    weights: Sequence[float] | None = None,
    min_points: int = 4,
) -> dict[str, Any]:
    """Least-squares fit of ``gold - gold0 = d (alpha - beta log d)`` with ``d = sqrt(max(KL, 0))``.

    The form is linear in (alpha, beta), so the fit is a (weighted) linear least squares with
    regressors ``d`` and ``-d log d`` and no intercept.

    Args:
        kl: KL to the initial policy per point (nats).
        gold: gold reward per point.
        gold0: gold of the initial policy; by default the gold of the point with the least KL.
        weights: optional per-point weights (e.g. 1 / se^2).
        min_points: fewer points with d > 0 give ``{"note": ...}`` and no fit.

    Returns:
        ``alpha, beta, gold0, d_peak, kl_peak, gold_peak (predicted), r2, n`` — ``d_peak``/``kl_peak``
        are None when beta <= 0 (no peak: gold still rising), with a note.

    >>> import numpy as np
    >>> kl = np.linspace(0.0, 16.0, 12)
    >>> g = 0.1 + gao_rl(np.sqrt(kl), 1.0, 0.8)
    >>> f = fit_gao_rl(kl, g, gold0=0.1)
    >>> round(f["alpha"], 3), round(f["beta"], 3), round(f["d_peak"], 3)
    (1.0, 0.8, 1.284)
    """
    k = np.asarray(list(kl), dtype=float)
    g = np.asarray(list(gold), dtype=float)
    w = np.ones_like(k) if weights is None else np.asarray(list(weights), dtype=float)
    ok = np.isfinite(k) & np.isfinite(g) & np.isfinite(w)
    k, g, w = k[ok], g[ok], w[ok]
    if k.size == 0:
        return {"note": "no points", "n": 0}
    if gold0 is None:
        gold0 = float(g[int(np.argmin(k))])
    d = np.sqrt(np.clip(k, 0.0, None))  # (P,)
    use = d > 1e-8
    if int(use.sum()) < min_points:
        return {
            "note": f"need at least {min_points} points with KL > 0 to fit, have {int(use.sum())}",
            "n": int(use.sum()),
            "gold0": gold0,
        }
    d, y, w = d[use], g[use] - gold0, w[use]
    X = np.stack([d, -d * np.log(d)], axis=1)  # (P, 2)
    sw = np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(X * sw, y * sw[:, 0], rcond=None)
    alpha, beta = float(coef[0]), float(coef[1])
    pred = X @ coef
    ss_res = float(np.sum(w * (y - pred) ** 2))
    ss_tot = float(np.sum(w * (y - np.average(y, weights=w)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else None
    out: dict[str, Any] = {
        "form": "gold - gold0 = d (alpha - beta log d), d = sqrt(KL)  [Gao et al. 2022, eq. 2]",
        "alpha": alpha,
        "beta": beta,
        "gold0": gold0,
        "r2": r2,
        "n": int(d.size),
        "d_peak": None,
        "kl_peak": None,
        "gold_peak": None,
    }
    if beta > 0:
        expo = alpha / beta - 1.0
        if expo < 50:  # beyond e^50 the "peak" is no peak in any run
            d_peak = math.exp(expo)
            out["d_peak"] = d_peak
            out["kl_peak"] = d_peak * d_peak
            out["gold_peak"] = gold0 + float(gao_rl(d_peak, alpha, beta))
            out["peak_within_data"] = bool(d_peak <= float(d.max()))
        else:
            out["note"] = "fitted peak lies far beyond the observed KL"
    else:
        out["note"] = "beta <= 0: the fitted curve has no peak"
    return out


# ---------------------------------------------------------------------------------------------
# Alarm rule.


def wls_slope(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray,
) -> tuple[float, float]:
    """Weighted least-squares slope of y on x with known per-point standard errors.

    Returns ``(slope, se_slope)``; ``se_slope = 1 / sqrt(sum w (x - xbar_w)^2)``, ``w = 1/se^2``
    (the textbook WLS variance with known variances).

    >>> s, e = wls_slope([0, 1, 2], [0.0, 1.0, 2.0], [0.1, 0.1, 0.1])
    >>> round(s, 6), round(e, 4)
    (1.0, 0.0707)
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    w = 1.0 / np.maximum(np.asarray(se, dtype=float), 1e-9) ** 2
    xb = np.average(xa, weights=w)
    yb = np.average(ya, weights=w)
    sxx = float(np.sum(w * (xa - xb) ** 2))
    if sxx <= 0:
        return 0.0, math.inf
    slope = float(np.sum(w * (xa - xb) * (ya - yb)) / sxx)
    return slope, 1.0 / math.sqrt(sxx)


@dataclass
class AlarmConfig:
    """Settings of the gold-down-while-proxy-up alarm."""

    alpha: float = 0.05
    """Level of the peak-to-now drop test (per check)."""
    z: float = Z95
    """Critical value of the optional trend test and of best-checkpoint ties."""
    min_points_after_peak: int = 1
    """How many monitor points after gold's peak before the alarm may fire."""
    trend_window: int = 0
    """Optional trend test over the latest this many points, all at or after gold's peak (0: off;
    >= 3 to use)."""
    seed: int = 0
    """Seed of the Monte Carlo null distribution (decisions are reproducible)."""
    n_sim: int = 20000
    """Monte Carlo draws for the critical value of the drop test."""
    min_rel_drop: float = 0.0
    """Additionally require ``gold[p] - gold[t] >= min_rel_drop * |gold[p] - gold[0]|``."""


@dataclass
class AlarmDecision:
    fired: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def pooled_sd(sds: Sequence[float | None], ns: Sequence[int]) -> float:
    """Pooled within-point standard deviation (a floor for points whose own sd is 0)."""
    num = 0.0
    den = 0
    for s, n in zip(sds, ns, strict=True):
        if s is not None and n > 1:
            num += (n - 1) * s * s
            den += n - 1
    return math.sqrt(num / den) if den > 0 else 0.0


def point_se(points: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Per-point SE of ``key``, floored at pooled_sd / sqrt(n): a point where every sample scored
    the same (sd 0) must not make any difference to it look infinitely significant."""
    sds = [p.get(f"{key}_sd") for p in points]
    ns = [int(p.get(f"{key}_n") or 0) for p in points]
    ps = pooled_sd(sds, ns)
    out = []
    for p, n in zip(points, ns, strict=True):
        se = p.get(f"{key}_se") or 0.0
        floor = ps / math.sqrt(n) if n > 0 else math.inf
        out.append(max(float(se), floor))
    return out


def max_drop_critical(
    se: Sequence[float] | np.ndarray, alpha: float = 0.05, *, n_sim: int = 20000, seed: int = 0
) -> float:
    """Critical value of ``max_{j<t} X_j - X_t`` when all points share one mean.

    ``X_j ~ N(mu, se_j^2)`` independently (each point is a fresh sample of the held-out prompts);
    the ``1 - alpha`` quantile is found by Monte Carlo. Comparing the current point with the
    *highest* earlier point without this correction would be biased: the maximum of ``t`` noisy
    means overshoots their common mean by about ``se * sqrt(2 log t)``.

    >>> c1 = max_drop_critical([0.1, 0.1], 0.05)  # one earlier point: z_0.95 * sqrt(2) * 0.1
    >>> abs(c1 - 1.645 * 2 ** 0.5 * 0.1) < 0.01
    True
    >>> max_drop_critical([0.1] * 10, 0.05) > c1
    True
    """
    s = np.asarray(se, dtype=float)
    t = s.size - 1
    if t < 1:
        return math.inf
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_sim, t + 1)) * s  # (n_sim, t + 1)
    D = X[:, :t].max(axis=1) - X[:, t]  # (n_sim,)
    return float(np.quantile(D, 1.0 - alpha))


def check_alarm(points: Sequence[dict[str, Any]], cfg: AlarmConfig | None = None) -> AlarmDecision:
    """Apply the alarm rule to the monitor points so far (in step order); the last is "now".

    Each point needs ``step, gold_mean, gold_sd, gold_se, gold_n, proxy_mean, proxy_sd, proxy_se,
    proxy_n``.
    """
    cfg = cfg or AlarmConfig()
    pts = [p for p in points if p.get("gold_mean") is not None and p.get("proxy_mean") is not None]
    if len(pts) < 2:
        return AlarmDecision(False, {"reason": "fewer than two points"})
    gold = np.array([p["gold_mean"] for p in pts], dtype=float)
    proxy = np.array([p["proxy_mean"] for p in pts], dtype=float)
    g_se = np.array(point_se(pts, "gold"))
    p_se = np.array(point_se(pts, "proxy"))
    t = len(pts) - 1
    peak = int(np.argmax(gold[:t]))  # the best point before now
    if gold[t] >= gold[peak] or t - peak < cfg.min_points_after_peak:
        return AlarmDecision(False, {"reason": "gold has not fallen below its peak"})
    # 1a. peak-to-now drop against its null distribution: the peak is the maximum of t noisy
    #     means, so the critical value accounts for that selection (see max_drop_critical).
    drop = float(gold[peak] - gold[t])
    drop_se = float(math.sqrt(g_se[peak] ** 2 + g_se[t] ** 2))
    crit = max_drop_critical(g_se[: t + 1], cfg.alpha, n_sim=cfg.n_sim, seed=cfg.seed + t)
    drop_sig = drop > crit
    # 1b. optional one-sided WLS trend test over a fixed window of the latest points.
    steps = [float(p["step"]) for p in pts]
    trend_sig = False
    g_slope = g_slope_se = None
    w0 = t + 1 - cfg.trend_window
    if cfg.trend_window >= 3 and w0 >= peak:
        # a window that started at the argmax would be biased downwards: use the latest points
        g_slope, g_slope_se = wls_slope(steps[w0:], gold[w0:], g_se[w0:])
        trend_sig = g_slope < -cfg.z * g_slope_se
    rel_ok = drop >= cfg.min_rel_drop * abs(float(gold[peak] - gold[0]))
    # 2. the proxy still rises: it prefers now to the gold peak, and its slope since is positive.
    p_slope, p_slope_se = wls_slope(steps[peak:], proxy[peak:], p_se[peak:])
    proxy_up = bool(proxy[t] > proxy[peak] and p_slope > 0)
    gold_down = bool((drop_sig or trend_sig) and rel_ok)
    evidence = {
        "peak_step": pts[peak]["step"],
        "step": pts[t]["step"],
        "gold_peak": float(gold[peak]),
        "gold_now": float(gold[t]),
        "gold_drop": drop,
        "gold_drop_rel": drop / abs(float(gold[peak])) if gold[peak] != 0 else None,
        "gold_drop_se": drop_se,
        "gold_drop_z": drop / drop_se if drop_se > 0 else math.inf,
        "gold_drop_critical": crit,
        "gold_drop_significant": bool(drop_sig),
        "gold_slope": g_slope,
        "gold_slope_se": g_slope_se,
        "gold_trend_significant": bool(trend_sig),
        "proxy_at_peak": float(proxy[peak]),
        "proxy_now": float(proxy[t]),
        "proxy_slope": p_slope,
        "proxy_slope_se": p_slope_se,
        "proxy_rising": proxy_up,
        "z": cfg.z,
    }
    if gold_down and proxy_up:
        msg = (
            f"gold fell from {gold[peak]:.3f} (step {pts[peak]['step']}) to {gold[t]:.3f} "
            f"(step {pts[t]['step']}; drop {drop:.3f} = {evidence['gold_drop_z']:.1f} SE) while "
            f"the proxy rose from {proxy[peak]:.3f} to {proxy[t]:.3f}: the policy is "
            f"over-optimising its reward"
        )
        return AlarmDecision(True, evidence, msg)
    return AlarmDecision(False, evidence)


def best_by_gold(
    points: Sequence[dict[str, Any]], *, z: float = Z95, require_checkpoint: bool = True
) -> dict[str, Any]:
    """The point with the highest gold mean (ties broken by lower KL), plus the steps whose gold
    is statistically tied with it (within ``z`` combined SE). Chosen by gold, never by proxy."""
    pts = [
        p
        for p in points
        if p.get("gold_mean") is not None and (p.get("checkpoint") or not require_checkpoint)
    ]
    if not pts:
        return {}
    se = point_se(pts, "gold")
    order = sorted(
        range(len(pts)), key=lambda i: (-float(pts[i]["gold_mean"]), float(pts[i].get("kl") or 0))
    )
    b = order[0]
    tied = [
        pts[i]["step"]
        for i in range(len(pts))
        if pts[b]["gold_mean"] - pts[i]["gold_mean"] <= z * math.sqrt(se[b] ** 2 + se[i] ** 2)
    ]
    return {
        "step": pts[b]["step"],
        "path": pts[b].get("checkpoint"),
        "gold": pts[b]["gold_mean"],
        "gold_lo": pts[b].get("gold_lo"),
        "gold_hi": pts[b].get("gold_hi"),
        "proxy": pts[b].get("proxy_mean"),
        "kl": pts[b].get("kl"),
        "tied_steps": tied,
        "reason": "highest gold mean among monitored checkpoints (not the proxy)",
    }


__all__ = [
    "AlarmConfig",
    "AlarmDecision",
    "MeanCI",
    "best_by_gold",
    "check_alarm",
    "fit_gao_rl",
    "gao_rl",
    "max_drop_critical",
    "mean_ci",
    "point_se",
    "wls_slope",
]
