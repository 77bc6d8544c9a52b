"""The ``audit`` stage: how far each judge agrees with labels known to be right.

For the arithmetic task the labelled pairs are built by construction
(:func:`judge_rl.pipeline.task.audit_pairs`); otherwise a human preference file is read. Each
judge is audited with :func:`judge_rl.judge.audit.audit_judge` (both orders, bootstrap CIs,
injection probe). The first judge's section is the run log's ``audit``; every judge's headline
numbers are kept in :class:`AuditSummary` so the report can say which judge is reliable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from judge_rl.runlog import AuditSection, Interval
from judge_rl.types import Comparison


@dataclass
class AuditConfig:
    """The ``audit`` stage."""

    judges: list[str] = field(default_factory=lambda: ["grader:gold"])
    """Judges to audit (``grader:NAME`` or a judge name); the first one's audit is the run
    log's ``audit`` section."""
    human: str = ""
    """Human preference file (``builtin:hh-short`` or a path); empty: pairs built from the task's
    prompts (the ``prompts`` input)."""
    pairs: int | None = None
    """Audit at most this many pairs (a seeded sample); None: all."""
    bootstrap: int = 500
    injection: int = 3
    """Decided pairs re-judged per injection string (0: no injection probe)."""
    judge_options: dict[str, Any] = field(default_factory=dict)
    """Overrides of the (non-grader) judges' specs (``model``, ``base_urls``, …)."""
    min_accuracy: float = 0.9
    """A judge counts as reliable when its accuracy's lower CI bound is at least this."""
    seed: int = 0


class JudgeAudit(BaseModel):
    """One judge's headline audit numbers."""

    judge: str
    accuracy: Interval
    position_consistency: float | None = None
    injection_flip_rate: float | None = None
    by_category: dict[str, float | None] = Field(default_factory=dict)
    reliable: bool = False


class AuditSummary(BaseModel):
    """The ``audit`` stage's output."""

    judges: list[JudgeAudit] = Field(default_factory=list)
    section: AuditSection | None = None
    min_accuracy: float = 0.9


def audit(
    cfg: AuditConfig, comparisons: Sequence[Comparison], judges: dict[str, Any]
) -> AuditSummary:
    """Audit each judge in ``judges`` (name -> judge in fixed order) on ``comparisons``."""
    from judge_rl.judge.audit import AuditConfig as JudgeAuditConfig
    from judge_rl.judge.audit import audit_judge

    out = AuditSummary(min_accuracy=cfg.min_accuracy)
    for name, judge in judges.items():
        acfg = JudgeAuditConfig(
            sample=cfg.pairs,
            seed=cfg.seed,
            bootstrap=cfg.bootstrap,
            injection=cfg.injection > 0,
            injection_sample=max(cfg.injection, 1),
        )
        sec = asyncio.run(audit_judge(judge, list(comparisons), acfg))
        acc = sec.metrics.get("accuracy")
        iv = Interval(
            value=acc.value if acc else None,
            lo=acc.lo if acc else None,
            hi=acc.hi if acc else None,
            level=acc.level if acc else 0.95,
            method="percentile bootstrap",
            resample="pairs",
            rounds=cfg.bootstrap,
            n=acc.n if acc else 0,
        )
        pc = sec.metrics.get("position_consistency")
        inj = sec.metrics.get("injection_flip_rate")
        cats = {
            c: (m.get("accuracy").value if m.get("accuracy") else None)  # type: ignore[union-attr]
            for c, m in sec.by_category.items()
        }
        out.judges.append(
            JudgeAudit(
                judge=name,
                accuracy=iv,
                position_consistency=pc.value if pc else None,
                injection_flip_rate=inj.value if inj else None,
                by_category=cats,
                reliable=iv.lo is not None and iv.lo >= cfg.min_accuracy,
            )
        )
        if out.section is None:
            out.section = sec
    return out


__all__ = ["AuditConfig", "AuditSummary", "JudgeAudit", "audit"]
