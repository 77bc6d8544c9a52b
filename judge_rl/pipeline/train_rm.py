"""The ``train_rm`` stage: preference records -> a Bradley-Terry reward model folder.

A thin typed wrapper over :func:`judge_rl.train.reward_model.train_reward_model`: the stage's
``rm`` settings are :class:`~judge_rl.train.reward_model.RewardModelConfig` fields (same names;
an unknown one is an error naming it). The model goes to ``<run>/reward_model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from judge_rl.errors import ConfigError
from judge_rl.runlog import RewardModelSection
from judge_rl.types import PreferenceRecord


@dataclass
class TrainRMConfig:
    """The ``train_rm`` stage."""

    model: str = "embedded"
    """Backbone (a model folder, hub name, or ``embedded``)."""
    rm: dict[str, Any] = field(default_factory=dict)
    """Settings of :class:`judge_rl.train.reward_model.RewardModelConfig` (same names)."""


class RewardModelOut(BaseModel):
    """The ``train_rm`` stage's output."""

    path: str
    section: RewardModelSection | None = None


def rm_config(
    cfg: TrainRMConfig, output: Path, seed: int, *, stage: str = "train_rm", file: str = ""
) -> Any:
    from judge_rl.pipeline.spec import build_config
    from judge_rl.train.reward_model import RewardModelConfig

    for key in ("data", "model", "output"):
        if key in cfg.rm:
            raise ConfigError(
                f"stage {stage!r}: rm.{key} is set by the stage, not in its rm settings",
                setting=f"stages.{stage}.config.rm.{key}",
                file=file or None,
            )
    rc = build_config(
        RewardModelConfig, {"seed": seed, **cfg.rm}, stage=stage, file=file, prefix="rm."
    )
    rc.model, rc.output = cfg.model, str(output)
    return rc


def train_rm(
    cfg: TrainRMConfig,
    records: Sequence[PreferenceRecord],
    *,
    output: Path,
    seed: int = 0,
    run_log: Any = None,
    run_dir: Path | None = None,
) -> RewardModelOut:
    """Train the reward model on ``records``; returns its folder and run-log section."""
    from judge_rl.train.reward_model import train_reward_model

    if not records:
        raise ConfigError("no preference records to train on", setting="records")
    rc = rm_config(cfg, output, seed)
    train_reward_model(rc, records=list(records), run_log=run_log, log_dir=run_dir)
    section = run_log.reward_model if run_log is not None else None
    return RewardModelOut(path=str(output), section=section)


__all__ = ["RewardModelOut", "TrainRMConfig", "rm_config", "train_rm"]
