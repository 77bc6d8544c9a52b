"""Headline figures of several runs side by side (``judge-rl report A --compare B C``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from judge_rl.report._common import fcost, fmetric, fnum, is_num, label_summary, neutralize
from judge_rl.runlog import RunLog


def _last(rows: Sequence[dict[str, Any]], key: str) -> Any:
    for r in reversed(rows):
        if is_num(r.get(key)):
            return r[key]
    return None


FIGURES: list[tuple[str, Callable[[RunLog], str | None]]] = [
    ("command", lambda g: neutralize(g.command)),
    ("judged pairs", lambda g: fnum(label_summary(g.label).get("n")) if g.label else None),
    (
        "position consistency",
        lambda g: fnum(label_summary(g.label).get("position_consistency")) if g.label else None,
    ),
    (
        "agreement w/ humans",
        lambda g: (
            fmetric(g.audit.metrics.get("accuracy"), ci=False)
            if g.audit and "accuracy" in g.audit.metrics
            else None
        ),
    ),
    (
        "kappa",
        lambda g: (
            fmetric(g.audit.metrics.get("kappa"), ci=False)
            if g.audit and "kappa" in g.audit.metrics
            else None
        ),
    ),
    (
        "RM accuracy",
        lambda g: (
            fnum(g.reward_model.final.get("accuracy"))
            if g.reward_model and g.reward_model.final
            else None
        ),
    ),
    ("PPO final reward", lambda g: fnum(_last(g.ppo.steps, "reward_mean")) if g.ppo else None),
    ("PPO final KL", lambda g: fnum(_last(g.ppo.steps, "kl")) if g.ppo else None),
    (
        "gold peak",
        lambda g: (
            fnum(
                max(
                    (p["gold_mean"] for p in g.overopt.points if is_num(p.get("gold_mean"))),
                    default=None,
                )
            )
            if g.overopt
            else None
        ),
    ),
    ("alarms", lambda g: str(len(g.overopt.alarms)) if g.overopt else None),
    (
        "top model",
        lambda g: (
            neutralize(g.tournament.leaderboard[0].get("model"))
            if g.tournament and g.tournament.leaderboard
            else None
        ),
    ),
    (
        "cost",
        lambda g: (
            fcost(
                sum(v for v in g.cost.values() if is_num(v))
                if "total" not in g.cost
                else g.cost["total"]
            )
            if g.cost
            else None
        ),
    ),
]


def headline_rows(logs: Sequence[RunLog]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Column names (run names) and rows ``(figure, [value per run])`` with at least one value."""
    cols = [neutralize(g.run) for g in logs]
    rows = []
    for name, fn in FIGURES:
        vals = []
        for g in logs:
            try:
                v = fn(g)
            except Exception:  # a malformed optional field must not break the comparison
                v = None
            vals.append(v if v is not None else "–")
        if any(v != "–" for v in vals):
            rows.append((name, vals))
    return cols, rows
