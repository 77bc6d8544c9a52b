"""Simulated monitor runs: the alarm's run-level false-alarm rate and its power, by Monte Carlo.

A simulated run has ``n_prompts`` fixed held-out prompts with their own difficulty
``a_i ~ N(0, prompt_sd^2)``. At evaluation ``t`` the policy's gold on prompt ``i`` is a pass/fail
draw with probability ``sigmoid(a_i + theta_t)`` (``samples`` draws per prompt, averaged), or, with
``gold="normal"``, ``a_i + theta_t + N(0, 1)``. The proxy is ``a_i + rho_t + N(0, 1)``. The curves
``theta_t`` (gold) and ``rho_t`` (proxy) say what the policy does. Each evaluation is a monitor
point exactly as :class:`judge_rl.overopt.monitor.OveroptMonitor` records it (means, SDs, SEs and
per-prompt means), and :func:`judge_rl.overopt.stats.check_alarm` is applied after every
evaluation, as in a run.

The generator knows nothing of the alarm's formula; it only makes data with a known truth.
``benchmarks/sim_alarm.py`` prints the tables; ``tests/overopt/test_alarm_sim.py`` checks them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from judge_rl.overopt.stats import AlarmConfig, check_alarm


@dataclass
class SimConfig:
    n_prompts: int = 64
    samples: int = 1
    """Samples per prompt at each evaluation."""
    prompt_sd: float = 1.5
    """Spread of prompt difficulty (logit scale): what pairing over prompts removes."""
    gold: str = "binary"
    """``binary`` (pass/fail verifier) or ``normal``."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _summary(x: np.ndarray, prefix: str) -> dict[str, Any]:
    """Mean, SD, SE and n of the per-sample scores ``x`` (samples), as the monitor records them."""
    n = int(x.size)
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    return {
        f"{prefix}_mean": float(x.mean()),
        f"{prefix}_sd": sd,
        f"{prefix}_se": sd / math.sqrt(n) if n else None,
        f"{prefix}_n": n,
    }


def simulate_points(
    theta: Sequence[float] | np.ndarray,
    rho: Sequence[float] | np.ndarray,
    cfg: SimConfig,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """One run's monitor points for gold curve ``theta`` and proxy curve ``rho``."""
    a = rng.normal(0.0, cfg.prompt_sd, size=cfg.n_prompts)  # (P,)
    pts = []
    for t, (th, rh) in enumerate(zip(theta, rho, strict=True)):
        shape = (cfg.n_prompts, cfg.samples)
        if cfg.gold == "binary":
            g = (rng.random(shape) < _sigmoid(a + th)[:, None]).astype(float)  # (P, S)
        else:
            g = (a + th)[:, None] + rng.standard_normal(shape)
        p = (a + rh)[:, None] + rng.standard_normal(shape)  # (P, S)
        pts.append(
            {
                "step": t,
                **_summary(g.ravel(), "gold"),
                **_summary(p.ravel(), "proxy"),
                "gold_by_prompt": g.mean(axis=1).tolist(),
                "proxy_by_prompt": p.mean(axis=1).tolist(),
            }
        )
    return pts


def first_alarm(pts: list[dict[str, Any]], cfg: AlarmConfig, horizon: int) -> int | None:
    """Index of the first evaluation at which the alarm fires (checked after every one)."""
    for t in range(1, len(pts)):
        if check_alarm(pts[: t + 1], cfg, horizon=horizon).fired:
            return t
    return None


def false_alarm_rate(
    curve: Callable[[int], tuple[np.ndarray, np.ndarray]],
    horizon: int,
    runs: int,
    *,
    sim: SimConfig | None = None,
    alarm: AlarmConfig | None = None,
    seed: int = 0,
) -> float:
    """Share of ``runs`` simulated runs of ``horizon`` evaluations that alarm at any point.
    ``curve(T)`` returns the ``(theta, rho)`` arrays of a run whose gold never falls."""
    sim = sim or SimConfig()
    alarm = alarm or AlarmConfig()
    rng = np.random.default_rng(seed)
    theta, rho = curve(horizon)
    fired = sum(
        first_alarm(simulate_points(theta, rho, sim, rng), alarm, horizon) is not None
        for _ in range(runs)
    )
    return fired / runs


def flat(T: int) -> tuple[np.ndarray, np.ndarray]:
    """Gold flat at 50% while the proxy keeps rising."""
    return np.zeros(T), np.linspace(0.0, 2.0, T)


def improving(T: int) -> tuple[np.ndarray, np.ndarray]:
    """Gold still improving (slowly, saturating) while the proxy rises."""
    t = np.arange(T)
    return 0.8 * (1 - np.exp(-t / max(T / 3, 1))), np.linspace(0.0, 2.0, T)


def drop_power(
    drop_se: float,
    horizon: int,
    runs: int,
    *,
    sim: SimConfig | None = None,
    alarm: AlarmConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Power against a sudden gold drop of ``drop_se`` standard errors of one evaluation's gold
    mean (the unpaired SE a user reads off the report), happening halfway through the run and
    persisting, while the proxy keeps rising. Returns the detection probability by the end of the
    run, the median delay in evaluations after the drop, and alarms before the drop."""
    sim = sim or SimConfig()
    alarm = alarm or AlarmConfig()
    rng = np.random.default_rng(seed)
    # the SE a report shows for one evaluation's gold mean (sample SD / sqrt(n)), averaged
    se_point = float(
        np.mean([simulate_points([0.0], [0.0], sim, rng)[0]["gold_se"] for _ in range(200)])
    )
    tau = horizon // 2
    # find theta_drop with E[gold(theta_drop)] = E[gold(0)] - drop_se * se_point (bisection)
    a_big = rng.normal(0.0, sim.prompt_sd, size=200_000)

    def mean_at(th: float) -> float:
        return float(_sigmoid(a_big + th).mean()) if sim.gold == "binary" else th

    target = mean_at(0.0) - drop_se * se_point
    lo, hi = -20.0, 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_at(mid) < target else (lo, mid)
    th_drop = (lo + hi) / 2
    theta = np.where(np.arange(horizon) >= tau, th_drop, 0.0)
    rho = np.linspace(0.0, 2.0, horizon)
    detected = 0
    early = 0
    delays = []
    for _ in range(runs):
        f = first_alarm(simulate_points(theta, rho, sim, rng), alarm, horizon)
        if f is None:
            continue
        if f < tau:
            early += 1
            continue
        detected += 1
        delays.append(f - tau)
    return {
        "drop_se": drop_se,
        "horizon": horizon,
        "runs": runs,
        "detected": detected / runs,
        "median_delay": float(np.median(delays)) if delays else None,
        "alarm_before_drop": early / runs,
        "se_point": se_point,
    }


__all__ = [
    "SimConfig",
    "drop_power",
    "false_alarm_rate",
    "first_alarm",
    "flat",
    "improving",
    "simulate_points",
]
