"""Statistics of the over-optimisation monitor: means with confidence intervals, the Gao et al.
(2022) fit of gold reward against KL, the alarm rule and best-checkpoint selection.

Everything here is pure numpy on plain lists, so it is tested on synthetic curves without a model.

The alarm rule (see ``docs/overopt.md``) is a sequential test with a run-level false-alarm rate:
at evaluation ``t`` it computes, for every earlier evaluation ``j``, the standardised drop of gold
from ``j`` to ``t``, paired over the fixed held-out prompts, and fires when

1. the largest of them exceeds the ``1 - alpha`` quantile of the same maximum taken over *all*
   looks of a run of ``horizon`` evaluations under the null that gold never changes
   (:func:`run_critical`): the peak's selection and the repeated looks are both inside that null,
   so a run whose gold never falls alarms with probability at most ``alpha``;
2. and the proxy still rises: the proxy now is significantly above the proxy at the evaluation gold
   fell from (paired one-sided z test at ``proxy_alpha``).

The alarm is about the two signals *disagreeing*, which is what over-optimisation is (Gao et al.
2022, fig. 1).
"""

from __future__ import annotations

import functools
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
    """Settings of the gold-down-while-proxy-up alarm (a sequential test over the whole run)."""

    alpha: float = 0.05
    """Run-level false-alarm rate: the probability that the alarm fires at *any* evaluation of a
    run whose gold never falls (calibrated over all looks and all earlier points together)."""
    z: float = Z95
    """Critical value for best-checkpoint ties."""
    horizon: int | None = None
    """Number of evaluations the run will make (the monitor sets it from the trainer's steps and
    ``every``). None: :data:`DEFAULT_HORIZON`. A run that goes past it is re-calibrated for the
    larger number, which only raises the bar."""
    proxy_alpha: float = 0.05
    """One-sided level of the test that the proxy still rises (proxy now above proxy at the gold
    reference point)."""
    min_points_after_peak: int = 1
    """How many monitor points after gold's peak before the alarm may fire."""
    min_rel_drop: float = 0.0
    """Additionally require ``gold[p] - gold[t] >= min_rel_drop * |gold[p] - gold[0]|``."""
    seed: int = 0
    """Seed of the Monte Carlo null distribution (decisions are reproducible)."""
    n_sim: int = 20000
    """Monte Carlo draws for the run-level critical value."""


DEFAULT_HORIZON = 100
"""Looks assumed when the number of evaluations is not known in advance."""


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
    """Critical value of ``max_{j<t} X_j - X_t`` when all points share one mean (ONE look).

    ``X_j ~ N(mu, se_j^2)`` independently; the ``1 - alpha`` quantile is found by Monte Carlo.
    This corrects for the peak being selected as a maximum, but not for looking again at every
    evaluation: the alarm uses :func:`run_critical` instead, which corrects for both.

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


@functools.lru_cache(maxsize=256)
def run_critical(horizon: int, alpha: float = 0.05, *, n_sim: int = 20000, seed: int = 0) -> float:
    """Run-level critical value of the standardised drop statistic.

    Under the null that gold never changes, the standardised paired drop of evaluation ``t`` from
    an earlier evaluation ``j`` is ``(Z_j - Z_t) / sqrt(2)`` with ``Z_0 .. Z_{T-1}`` independent
    standard normals (each evaluation draws fresh samples on the same prompts; the prompts' own
    difficulty cancels in the paired difference). The alarm looks at every evaluation and at
    every earlier point, so its statistic over the whole run is
    ``M_T = max_{t < T} max_{j < t} (Z_j - Z_t) / sqrt(2)``; this returns the ``1 - alpha``
    quantile of ``M_T`` (Monte Carlo, ``n_sim`` draws). Firing only when the statistic exceeds it
    keeps the probability of *any* false alarm in a run of ``horizon`` evaluations at ``alpha``:
    the repeated looks and the selection of the peak are both inside ``M_T``. A gold curve that
    still improves makes false alarms rarer still (its later points sit higher).

    >>> run_critical(2) > 1.6  # one look, one earlier point: z_0.95
    True
    >>> run_critical(50) > run_critical(10) > run_critical(2)
    True
    """
    if horizon < 2:
        return math.inf
    rng = np.random.default_rng(seed + 7919 * horizon)
    Z = rng.standard_normal((n_sim, horizon))  # (n_sim, T)
    run_max = np.maximum.accumulate(Z, axis=1)  # max_{j <= t} Z_j
    D = (run_max[:, :-1] - Z[:, 1:]).max(axis=1) / math.sqrt(2.0)  # (n_sim,)
    return float(np.quantile(D, 1.0 - alpha))


def _z_normal(z: np.ndarray, df: int) -> np.ndarray:
    """t statistics with ``df`` degrees of freedom as normal quantiles of the same upper-tail
    probability, so few gold prompts do not make the normal-theory threshold too lenient."""
    z = np.asarray(z, dtype=float)
    if df <= 0:
        return z
    from scipy import stats as sps

    with np.errstate(invalid="ignore"):
        p = sps.t.sf(z, df)
        out = sps.norm.isf(np.clip(p, np.finfo(float).tiny, 1.0 - 1e-16))
    return np.where(np.isfinite(z), out, z)


def _paired_rows(
    before: np.ndarray, after: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise paired test of ``before - after`` (arrays ``(k, n)``; ``after`` broadcasts).

    Returns ``(mean difference, SE, normal-equivalent z, n)`` per row; prompts missing (nan) on
    either side are skipped. When every difference is the same, the SE is floored at half the
    smallest non-zero step of the differences over ``n`` (a resolution floor), so a constant
    difference is strong but finite evidence.
    """
    d = before - after  # (k, n)
    ok = np.isfinite(d)
    n = ok.sum(axis=1)  # (k,)
    nn = np.maximum(n, 1)
    dz = np.where(ok, d, 0.0)
    mean = dz.sum(axis=1) / nn
    var = np.where(ok, (d - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(n - 1, 1)
    absd = np.where(ok & (d != 0), np.abs(d), np.inf)
    res = absd.min(axis=1)
    res = np.where(np.isfinite(res), res, 1.0)
    se = np.maximum(np.sqrt(var) / np.sqrt(nn), 0.5 * res / nn)
    t = np.where(mean == 0.0, 0.0, mean / se)
    se = np.where(n >= 2, se, np.inf)
    t = np.where(n >= 2, t, 0.0)
    if n.size and np.all(n == n[0]):
        z = _z_normal(t, int(n[0]) - 1)
    else:
        z = np.array(
            [float(_z_normal(np.array(ti), int(ni) - 1)) for ti, ni in zip(t, n, strict=True)]
        )
    return mean, se, z, n


def paired_z(
    before: Sequence[float | None], after: Sequence[float | None]
) -> tuple[float, float, float, int]:
    """Paired test of ``before - after`` over the same prompts: ``(mean difference, its SE,
    normal-equivalent z from a t statistic on n - 1 df, n)``. Prompts missing on either side are
    skipped.

    >>> d, se, z, n = paired_z([1, 1, 0, 1], [0, 1, 0, 0])
    >>> round(d, 3), n
    (0.5, 4)
    """
    b = np.array([[np.nan if v is None else float(v) for v in before]], dtype=float)
    a = np.array([[np.nan if v is None else float(v) for v in after]], dtype=float)
    m, se, z, n = _paired_rows(b, a)
    return float(m[0]), float(se[0]), float(z[0]), int(n[0])


def _matrix(pts: Sequence[dict[str, Any]], key: str) -> np.ndarray | None:
    """``(points, prompts)`` per-prompt means when every point carries them for the same number
    (>= 2) of prompts; else None (the test falls back to the points' own SEs, unpaired)."""
    rows = [p.get(f"{key}_by_prompt") for p in pts]
    if any(not isinstance(r, list) for r in rows):
        return None
    lens = {len(r) for r in rows if isinstance(r, list)}
    if len(lens) != 1 or lens.pop() < 2:
        return None
    return np.array(
        [[np.nan if v is None else float(v) for v in r] for r in rows if isinstance(r, list)],
        dtype=float,
    )


def _drops(
    pts: Sequence[dict[str, Any]], key: str, se: Sequence[float], t: int, rows: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(difference row - t, its SE, z, paired?) of ``key`` for each earlier point in ``rows``."""
    M = _matrix(pts, key)
    if M is not None:
        m, s, z, _ = _paired_rows(M[rows], M[t][None, :])
        return m, s, z, True
    mean = np.array([float(p[f"{key}_mean"]) for p in pts])
    sa = np.asarray(se, dtype=float)
    d = mean[rows] - mean[t]
    s = np.sqrt(sa[rows] ** 2 + sa[t] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, d / s, np.where(d > 0, np.inf, 0.0))
    return d, s, z, False


def check_alarm(
    points: Sequence[dict[str, Any]], cfg: AlarmConfig | None = None, *, horizon: int | None = None
) -> AlarmDecision:
    """Apply the alarm rule to the monitor points so far (in step order); the last is "now".

    Each point needs ``step, gold_mean, gold_sd, gold_se, gold_n, proxy_mean, proxy_sd, proxy_se,
    proxy_n``; with ``gold_by_prompt`` / ``proxy_by_prompt`` (per-prompt means over the same fixed
    prompts at every point) the differences are paired over prompts.

    The rule (docs/overopt.md): fire at evaluation ``t`` when

    1. gold fell: ``S_t = max_{j<t} z(gold_j - gold_t)`` exceeds :func:`run_critical` for the
       run's number of evaluations (run-level false-alarm rate ``alpha`` over every look), and
    2. the proxy still rises: ``proxy_t - proxy_p`` is significantly positive at one-sided level
       ``proxy_alpha``, where ``p`` is the earlier point that maximises the gold drop.
    """
    cfg = cfg or AlarmConfig()
    pts = [p for p in points if p.get("gold_mean") is not None and p.get("proxy_mean") is not None]
    if len(pts) < 2:
        return AlarmDecision(False, {"reason": "fewer than two points"})
    gold = np.array([p["gold_mean"] for p in pts], dtype=float)
    proxy = np.array([p["proxy_mean"] for p in pts], dtype=float)
    g_se = point_se(pts, "gold")
    p_se = point_se(pts, "proxy")
    t = len(pts) - 1
    peak = int(np.argmax(gold[:t]))  # the best point before now
    if gold[t] >= gold[peak]:
        return AlarmDecision(False, {"reason": "gold has not fallen below its peak"})
    # 1. the standardised drop from every earlier point; its maximum over j and over looks is
    #    calibrated by run_critical (repeated looks and the peak's selection both accounted for)
    d_all, s_all, z_all, paired = _drops(pts, "gold", g_se, t, list(range(t)))
    ref = int(np.argmax(z_all))
    z_max, drop, drop_se = float(z_all[ref]), float(d_all[ref]), float(s_all[ref])
    T = max(int(horizon or cfg.horizon or DEFAULT_HORIZON), t + 1)
    crit = run_critical(T, cfg.alpha, n_sim=cfg.n_sim, seed=cfg.seed)
    drop_sig = bool(z_max > crit)
    rel_ok = float(gold[peak] - gold[t]) >= cfg.min_rel_drop * abs(float(gold[peak] - gold[0]))
    after_ok = t - ref >= cfg.min_points_after_peak
    # 2. the proxy still rises: now against the gold reference point, paired where possible
    pr, ps, pzs, _ = _drops(pts, "proxy", p_se, t, [ref])
    pd_, ps_, pz = -float(pr[0]), float(ps[0]), -float(pzs[0])
    from scipy import stats as sps

    p_crit = float(sps.norm.isf(cfg.proxy_alpha))
    proxy_up = bool(pz > p_crit)
    steps = [float(p["step"]) for p in pts]
    p_slope, p_slope_se = wls_slope(steps[ref:], proxy[ref:], p_se[ref:])
    evidence = {
        "peak_step": pts[peak]["step"],
        "reference_step": pts[ref]["step"],
        "step": pts[t]["step"],
        "gold_peak": float(gold[peak]),
        "gold_reference": float(gold[ref]),
        "gold_now": float(gold[t]),
        "gold_drop": float(drop),
        "gold_drop_rel": float(drop) / abs(float(gold[ref])) if gold[ref] != 0 else None,
        "gold_drop_se": float(drop_se),
        "gold_drop_z": float(z_max),
        "gold_drop_paired": bool(paired),
        "gold_drop_critical_z": crit,
        "gold_drop_significant": drop_sig,
        "horizon": T,
        "alpha": cfg.alpha,
        "method": "max standardised paired drop over earlier points and looks, "
        "run-level critical value (Monte Carlo)",
        "proxy_at_reference": float(proxy[ref]),
        "proxy_now": float(proxy[t]),
        "proxy_rise": float(pd_),
        "proxy_rise_se": float(ps_),
        "proxy_rise_z": float(pz),
        "proxy_rise_critical_z": p_crit,
        "proxy_slope": p_slope,
        "proxy_slope_se": p_slope_se,
        "proxy_rising": proxy_up,
        "z": cfg.z,
    }
    if drop_sig and rel_ok and after_ok and proxy_up:
        msg = (
            f"gold fell from {gold[ref]:.3f} (step {pts[ref]['step']}) to {gold[t]:.3f} "
            f"(step {pts[t]['step']}; drop {drop:.3f} = {z_max:.1f} SE"
            f"{' paired over prompts' if paired else ''}, run-level critical {crit:.2f} SE at "
            f"alpha {cfg.alpha:g} over {T} evaluations) while the proxy rose from "
            f"{proxy[ref]:.3f} to {proxy[t]:.3f} ({pz:.1f} SE): the policy is over-optimising "
            f"its reward"
        )
        return AlarmDecision(True, evidence, msg)
    return AlarmDecision(False, evidence)


def by_prompt_means(
    scores: Sequence[float], prompt_index: Sequence[int], n_prompts: int
) -> list[float | None]:
    """Per-prompt means of per-sample scores (failed ``nan`` scores skipped; None where a prompt
    has no finite score), in prompt order.

    >>> by_prompt_means([1.0, 0.0, 1.0, float("nan")], [0, 0, 1, 1], 2)
    [0.5, 1.0]
    """
    tot = [0.0] * n_prompts
    cnt = [0] * n_prompts
    for s, i in zip(scores, prompt_index, strict=True):
        if s is not None and math.isfinite(s):
            tot[i] += float(s)
            cnt[i] += 1
    return [tot[i] / cnt[i] if cnt[i] else None for i in range(n_prompts)]


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
    "DEFAULT_HORIZON",
    "best_by_gold",
    "by_prompt_means",
    "check_alarm",
    "fit_gao_rl",
    "gao_rl",
    "max_drop_critical",
    "mean_ci",
    "paired_z",
    "point_se",
    "run_critical",
    "wls_slope",
]
