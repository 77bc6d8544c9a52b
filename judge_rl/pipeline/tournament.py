"""The ``tournament`` stage: checkpoints and degenerate baselines on the task's own prompts.

Contestants: the base policy, the best checkpoint by gold, the last checkpoint (their
answers from the ``ppo`` stage's snapshots) and degenerate baselines (an empty answer, the prompt
echoed, one word repeated, the answer repeated). Every pair meets on every prompt (round robin);
Bradley-Terry ratings with a bootstrap that resamples battles within each pair of models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from judge_rl.errors import ConfigError
from judge_rl.runlog import Interval, TournamentSection
from judge_rl.types import Candidate, PromptItem, prompt_text

DEGENERATE: dict[str, Callable[[PromptItem], str]] = {
    "empty-answer": lambda i: "",
    "prompt-echo": lambda i: prompt_text(i.prompt).split("user: ")[-1],
    "word-repeated": lambda i: " ".join(["the"] * 20),
    "answer-repeated": lambda i: " ".join([str(i.reference)] * 8),
}
"""Degenerate baselines: a judge that ranks one above a real policy is not to be trusted."""


@dataclass
class TournamentConfig:
    """The ``tournament`` stage."""

    judge: str = "grader:gold"
    """``grader:NAME`` or a judge name."""
    contestants: list[str] = field(default_factory=lambda: ["base", "best", "last"])
    """Checkpoints from the ``ppo`` snapshots: ``base``, ``best`` (by gold), ``last``, or
    ``step-N``."""
    degenerate: list[str] = field(default_factory=lambda: list(DEGENERATE))
    """Degenerate baselines to field (names in :data:`DEGENERATE`)."""
    bootstrap: int = 500
    seed: int = 0
    judge_options: dict[str, Any] = field(default_factory=dict)
    """Overrides of the judge spec (``model``, ``base_urls``, ``order``, …)."""


class Ratings(BaseModel):
    """The ``tournament`` stage's output."""

    section: TournamentSection
    intervals: dict[str, Interval] = Field(default_factory=dict)
    """Each model's rating with its CI (the level and the resampling scheme travel with it)."""
    names: dict[str, str] = Field(default_factory=dict)
    """Contestant label -> the checkpoint it is (``best`` -> ``step-8``)."""
    judge: str = ""
    """The judge as the stage named it (``grader:gold``, a judge name)."""


def contestant_answers(
    snapshots: Sequence[Any], best_step: int | None, last_step: int, wanted: Sequence[str]
) -> tuple[dict[str, dict[str, Candidate]], dict[str, str]]:
    """``{label: {prompt_id: Candidate}}`` for the wanted checkpoints; labels carry the step."""
    by_step = {s.step: s for s in snapshots}
    out: dict[str, dict[str, Candidate]] = {}
    names: dict[str, str] = {}
    for w in wanted:
        if w == "base":
            step, label = 0, "base-policy"
        elif w == "best":
            if best_step is None:
                raise ConfigError("the ppo stage chose no best checkpoint", setting="contestants")
            step, label = best_step, f"best-by-gold (step {best_step})"
        elif w == "last":
            step, label = last_step, f"last (step {last_step})"
        elif w.startswith("step-") and w[5:].isdigit():
            step, label = int(w[5:]), w
        else:
            raise ConfigError(f"unknown contestant {w!r}", setting="contestants")
        if step not in by_step:
            raise ConfigError(f"no snapshot at step {step} for {w!r}", setting="contestants")
        if label in out:  # best == last, or best == base: field it once, under both names
            names[w] = label
            continue
        out[label] = {
            c.prompt_id: c.model_copy(update={"source": label}) for c in by_step[step].candidates
        }
        names[w] = label
    return out, names


def tournament(
    cfg: TournamentConfig,
    *,
    prompts: Sequence[PromptItem],
    answers: dict[str, dict[str, Candidate]],
    judge: Any,
    names: dict[str, str] | None = None,
    on_batch: Callable[[int, int | None], None] | None = None,
) -> Ratings:
    """Round robin of ``answers`` plus the degenerate baselines on ``prompts``, judged by
    ``judge``; Bradley-Terry ratings with bootstrap CIs."""
    from judge_rl.tournament.runner import ContestField, run_tournament, tournament_section

    cands = dict(answers)
    for name in cfg.degenerate:
        if name not in DEGENERATE:
            raise ConfigError(
                f"unknown degenerate baseline {name!r} (known: {', '.join(DEGENERATE)})",
                setting="degenerate",
            )
        fn = DEGENERATE[name]
        cands[name] = {
            i.prompt_id: Candidate(
                prompt_id=i.prompt_id,
                prompt=i.prompt,
                response=fn(i),
                source=name,
                metadata={"reference": i.reference},
            )
            for i in prompts
        }
    common = [i for i in prompts if all(i.prompt_id in c for c in cands.values())]
    if not common:
        raise ConfigError("no prompt was answered by every contestant", setting="prompts")
    result = run_tournament(
        judge,
        ContestField(candidates=cands, prompts=common),
        strategy="round_robin",
        bootstrap=cfg.bootstrap,
        seed=cfg.seed,
        on_batch=on_batch,
    )
    section = tournament_section(result)
    info = getattr(result.leaderboard, "interval", None)
    if info is not None:  # level and resampling scheme of the intervals, for every report
        section.interval = info  # type: ignore[attr-defined]  # extra key the reports read
    intervals = {
        r["model"]: Interval(
            value=r.get("rating"),
            lo=r.get("lo"),
            hi=r.get("hi"),
            level=float((info or {}).get("level", 0.95)),  # type: ignore[arg-type]
            method="percentile bootstrap",
            resample=str((info or {}).get("label") or "battles within each pair of models"),
            rounds=cfg.bootstrap,
            n=int(r.get("battles") or 0),
        )
        for r in section.leaderboard
    }
    return Ratings(section=section, intervals=intervals, names=names or {}, judge=cfg.judge)


def stage_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TournamentConfig)]


__all__ = ["DEGENERATE", "Ratings", "TournamentConfig", "contestant_answers", "tournament"]
