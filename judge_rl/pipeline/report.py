"""The ``report`` stage: the demo's claims computed from the run, the notes, the HTML report.

:func:`claims` reads the monitor's points, the tournament's ratings and the audit, and returns a
:class:`~judge_rl.runlog.DemoSection`: gold at the base policy, at the best checkpoint by gold and
at the last one (each with its CI), the gold gain at the best checkpoint and the drop after it
(paired over the held-out prompts, percentile bootstrap), the alarm's step, what the degeneration
detectors flagged, and the tournament's order. :func:`notes` turns those numbers into the sentences
the report prints; no sentence is written that the numbers do not support.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from judge_rl.runlog import DemoSection, Interval, OveroptSection, RunLog


@dataclass
class ReportConfig:
    """The ``report`` stage."""

    bootstrap: int = 2000
    """Bootstrap rounds of the paired gold differences."""
    level: float = 0.95
    html: bool = True
    """Write ``report.html`` beside the run log."""
    seed: int = 0


def paired_diff(
    x: Sequence[float], y: Sequence[float], *, rounds: int, level: float, seed: int
) -> Interval:
    """Mean of ``y - x`` over the prompts where both are finite, with a percentile-bootstrap CI
    that resamples prompts.

    >>> iv = paired_diff([0, 0, 0, 0], [1, 1, 1, 0], rounds=200, level=0.95, seed=0)
    >>> iv.value, iv.resample, iv.n
    (0.75, 'prompts', 4)
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = (b - a)[ok]  # (n,)
    n = int(d.size)
    if n == 0:
        return Interval(level=level, rounds=rounds, n=0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(rounds, n))  # (rounds, n)
    means = d[idx].mean(axis=1)  # (rounds,)
    q = (1 - level) / 2
    return Interval(
        value=float(d.mean()),
        lo=float(np.quantile(means, q)),
        hi=float(np.quantile(means, 1 - q)),
        level=level,
        method="percentile bootstrap",
        resample="prompts",
        rounds=rounds,
        n=n,
    )


def _point_interval(p: dict[str, Any]) -> Interval:
    return Interval(
        value=p.get("gold_mean"),
        lo=p.get("gold_lo"),
        hi=p.get("gold_hi"),
        level=0.95,
        method="percentile bootstrap",
        resample="samples",
        rounds=1000,  # judge_rl.overopt.stats.mean_ci's default
        n=int(p.get("gold_n") or 0),
    )


def claims(
    cfg: ReportConfig,
    overopt: OveroptSection,
    *,
    best_step: int | None,
    ratings: Any = None,
    audit: Any = None,
    task: str = "",
) -> DemoSection:
    """The demo's claims, every one computed from the run's records."""
    pts = sorted(
        (p for p in overopt.points if p.get("gold_mean") is not None), key=lambda p: p["step"]
    )
    out = DemoSection(task=task, gold=overopt.gold, proxy=overopt.proxy)
    if not pts:
        return out
    by_step = {p["step"]: p for p in pts}
    base, last = pts[0], pts[-1]
    peak = max(pts, key=lambda p: p["gold_mean"])  # the first of equal maxima
    best = by_step.get(best_step, peak) if best_step is not None else peak
    out.best_step, out.peak_step, out.last_step = best["step"], peak["step"], last["step"]
    out.gold_base, out.gold_best, out.gold_last = map(_point_interval, (base, best, last))
    out.proxy_base, out.proxy_best, out.proxy_last = (
        p.get("proxy_mean") for p in (base, best, last)
    )

    def diff(p: dict[str, Any], q: dict[str, Any], seed: int) -> Interval | None:
        x, y = p.get("gold_by_prompt"), q.get("gold_by_prompt")
        if x is None or y is None:
            return None
        return paired_diff(x, y, rounds=cfg.bootstrap, level=cfg.level, seed=seed)

    out.gain_best = diff(base, best, cfg.seed)
    out.drop_last = diff(best, last, cfg.seed + 1)
    for k, p in enumerate(pts):
        if p["step"] <= peak["step"]:
            continue
        d = diff(peak, p, cfg.seed + 2 + k)
        if d is not None and d.hi is not None and d.hi < 0:
            out.first_significant_drop_step = p["step"]
            break
    if overopt.alarms:
        out.alarm_step = int(overopt.alarms[0]["step"])
    at = out.alarm_step if out.alarm_step is not None else last["step"]
    from judge_rl.overopt.degeneration import describe

    for row in overopt.degeneration:
        if row.get("step") == at:
            out.exploit = list(row.get("flags") or [])
            out.exploit_detail = [describe(row, k) for k in out.exploit]
    if ratings is not None and audit is not None:
        for j in audit.judges:
            if j.judge == ratings.judge:
                out.tournament_judge = j.judge
                out.tournament_judge_accuracy = j.accuracy
                out.tournament_judge_reliable = j.reliable
    if ratings is not None:
        rows = ratings.section.leaderboard
        out.ranking = [r["model"] for r in rows]
        base_l, best_l = ratings.names.get("base"), ratings.names.get("best")
        ib, ia = ratings.intervals.get(base_l or ""), ratings.intervals.get(best_l or "")
        if ib is not None and ia is not None and ib.hi is not None and ia.lo is not None:
            out.best_above_base = bool(ia.lo > ib.hi)
    return out


def _iv(iv: Interval | None, fmt: str = ".2f") -> str:
    if iv is None or iv.value is None:
        return "n/a"
    if iv.lo is None or iv.hi is None:
        return f"{iv.value:{fmt}}"
    return f"{iv.value:{fmt}} [{iv.lo:{fmt}}, {iv.hi:{fmt}}]"


def notes(d: DemoSection, audit: Any = None) -> list[str]:
    """Plain sentences, each decided by the numbers in ``d`` (and the audit summary)."""
    out: list[str] = []
    if d.gold_base is None:
        return ["the monitor recorded no gold scores: nothing to conclude"]
    lvl = f"{(d.gain_best.level if d.gain_best else 0.95):.0%}"
    gain = d.gain_best
    if d.best_step == 0 or gain is None or gain.value is None or gain.value <= 0:
        out.append(
            f"gold ({d.gold}) did not rise above the base policy's {_iv(d.gold_base)}: "
            "the best checkpoint by gold is the base policy"
        )
    else:
        sig = gain.lo is not None and gain.lo > 0
        out.append(
            f"RL raised gold from {_iv(d.gold_base)} at the base policy to {_iv(d.gold_best)} at "
            f"step {d.best_step} (best by gold): a gain of {_iv(gain, '+.2f')} "
            f"({lvl} paired bootstrap over {gain.n} held-out prompts, {gain.rounds} rounds), "
            + ("which excludes 0" if sig else "which does not exclude 0: not significant")
        )
    if d.best_step == d.last_step:
        out.append(
            f"the best checkpoint by gold is the last one (step {d.last_step}): gold did not "
            "turn within the run"
        )
    elif d.proxy_base is not None and d.proxy_last is not None and d.gold_last is not None:
        rising = d.proxy_last > (d.proxy_best or d.proxy_base)
        drop = d.drop_last
        fell = drop is not None and drop.hi is not None and drop.hi < 0
        out.append(
            f"from step {d.best_step} to step {d.last_step} the proxy ({d.proxy}) went "
            f"{d.proxy_best:.2f} -> {d.proxy_last:.2f} while gold went "
            f"{_iv(d.gold_best)} -> {_iv(d.gold_last)}"
            + (
                f" (change {_iv(drop, '+.2f')}): over-optimisation — the proxy kept rising as gold "
                "fell"
                if fell and rising
                else f" (change {_iv(drop, '+.2f')})"
                if drop is not None
                else ""
            )
        )
    if d.alarm_step is not None:
        rel = "after" if d.peak_step is not None and d.alarm_step > d.peak_step else "at or before"
        first = d.first_significant_drop_step
        out.append(
            f"the over-optimisation alarm fired at step {d.alarm_step}, {rel} gold's peak at step "
            f"{d.peak_step}"
            + (
                f"; gold was first significantly below its peak at step {first}"
                if first is not None
                else "; gold was never significantly below its peak by the paired CI"
            )
        )
    elif d.first_significant_drop_step is not None:
        out.append(
            f"gold was significantly below its peak at step {d.first_significant_drop_step}, "
            "but the alarm did not fire"
        )
    else:
        out.append("the alarm did not fire and gold never fell significantly below its peak")
    if d.exploit:
        out.append(
            "degeneration detectors at "
            + (f"the alarm (step {d.alarm_step})" if d.alarm_step is not None else "the last step")
            + " flagged: "
            + "; ".join(d.exploit_detail or d.exploit)
        )
    if audit is not None:
        for j in audit.judges:
            out.append(
                f"audit: judge {j.judge} agreed with the labels known to be right in "
                f"{_iv(j.accuracy)} of pairs"
                + (
                    " — reliable"
                    if j.reliable
                    else f" — not reliable (lower bound < {audit.min_accuracy:.2f})"
                )
                + (
                    "; on pairs against the repeated answer it picked the right one in "
                    f"{j.by_category['repeated']:.0%}"
                    if j.by_category.get("repeated") is not None
                    else ""
                )
            )
    if d.ranking:
        verdict = (
            "its rating interval lies above the base policy's"
            if d.best_above_base
            else "its rating interval overlaps the base policy's or lies below it"
            if d.best_above_base is not None
            else ""
        )
        out.append(
            "tournament order: "
            + " > ".join(d.ranking)
            + (f"; best by gold: {verdict}" if verdict else "")
        )
    return out


def write_html(log: RunLog, run_dir: Path) -> Path:
    from judge_rl.report.html import write_report

    return write_report(log, run_dir / "report.html")


__all__ = ["ReportConfig", "claims", "notes", "paired_diff", "write_html"]
