"""The ``ppo`` stage: PPO against the proxy reward, watched by the over-optimisation monitor.

Besides PPO's own run-log section and the monitor's ``overopt`` section, the stage keeps the
policy's answers to the tournament prompts at every monitor evaluation
(:class:`Snapshots`), so the tournament can field the base policy, the best checkpoint by gold and
the last one without saving or reloading full models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from judge_rl.errors import ConfigError
from judge_rl.runlog import OveroptSection, PPOSection
from judge_rl.types import Candidate, PromptItem


@dataclass
class PPOStageConfig:
    """The ``ppo`` stage."""

    policy: str = "embedded"
    """Policy model (shared with other stages naming the same model)."""
    reward: str = "grader:proxy"
    """Training reward: ``grader:NAME``, ``rm`` (the ``reward_model`` input) or a reward spec of
    :func:`judge_rl.train.reward_sources.make_reward_source`."""
    gold: str = "grader:gold"
    """The monitor's gold reward (never the training reward): ``grader:NAME`` or a reward spec."""
    monitor_every: int = 2
    """Monitor evaluation every this many steps (and before the first, after the last)."""
    monitor_samples: int = 1
    """Samples per held-out prompt at each evaluation."""
    monitor_scored_samples: int | None = None
    """Of those, how many per prompt get the KL and perplexity passes (None: all)."""
    monitor_checkpoints: bool = True
    """Save the policy at each evaluation (small with LoRA) for best-by-gold selection."""
    probe: bool = False
    """Run the reward probes on the proxy (once before training and at each evaluation)."""
    stop_on_alarm: bool = False
    """Stop PPO when the alarm fires (the demo keeps going to show gold falling further)."""
    snapshot_max_new_tokens: int = 16
    """Budget of the tournament answers taken at each evaluation."""
    snapshot_greedy: bool = True
    """Greedy tournament answers; false: sampled at the PPO temperature (the policy as it was
    trained and as the monitor measures it)."""
    snapshot_samples: int = 1
    """Answers per tournament prompt at each evaluation (sampled answers: each is one battle)."""
    ppo: dict[str, Any] = field(default_factory=dict)
    """Settings of :class:`judge_rl.train._ppo_config.PPOConfig` (same names)."""


def ppo_config(
    cfg: PPOStageConfig, output: Path, seed: int, *, stage: str = "ppo", file: str = ""
) -> Any:
    """The :class:`PPOConfig` of a stage config; unknown keys name the setting."""
    from judge_rl.pipeline.spec import build_config
    from judge_rl.train._ppo_config import PPOConfig

    for key in ("policy", "output", "reward", "prompts"):
        if key in cfg.ppo:
            raise ConfigError(
                f"stage {stage!r}: ppo.{key} is set by the stage, not in its ppo settings",
                setting=f"stages.{stage}.config.ppo.{key}",
                file=file or None,
            )
    values = {"seed": seed, **cfg.ppo}
    pc = build_config(PPOConfig, values, stage=stage, file=file, prefix="ppo.")
    pc.policy, pc.output = cfg.policy, str(output)
    try:
        pc.validate()
    except ConfigError as e:
        raise ConfigError(
            f"stage {stage!r}: ppo.{e.setting}: {str(e).split(': ', 1)[-1]}",
            setting=f"stages.{stage}.config.ppo.{e.setting}",
            file=file or None,
        ) from None
    return pc


def expand_prompts(items: Sequence[PromptItem], samples: int) -> list[PromptItem]:
    """``samples`` copies of each prompt, ids ``ID#1 .. ID#k`` (the prompts themselves for 1):
    one tournament battle per sampled answer, each contestant answering the same copies."""
    if samples <= 1:
        return list(items)
    return [
        i.model_copy(update={"prompt_id": f"{i.prompt_id}#{j + 1}"})
        for i in items
        for j in range(samples)
    ]


class Snapshot(BaseModel):
    """The policy's answers to the tournament prompts at one monitor step."""

    step: int
    candidates: list[Candidate] = Field(default_factory=list)


class PPOResult(BaseModel):
    """The ``ppo`` stage's output."""

    snapshots: list[Snapshot] = Field(default_factory=list)
    best_step: int | None = None
    """Monitor step of the best checkpoint by gold (the proxy plays no part)."""
    last_step: int = 0
    snapshot_samples: int = 1
    """Answers per tournament prompt in each snapshot (the tournament expands its prompts
    with :func:`expand_prompts` to match)."""
    ppo: PPOSection | None = None
    overopt: OveroptSection | None = None


class SnapshotCallback:
    """Answers to ``prompts`` (greedy, or ``samples`` sampled ones each) before training and at
    every monitor evaluation."""

    def __init__(
        self,
        prompts: Sequence[PromptItem],
        every: int,
        max_new_tokens: int,
        *,
        greedy: bool = True,
        samples: int = 1,
    ):
        self.items = expand_prompts(prompts, samples)
        self.every = every
        self.max_new_tokens = max_new_tokens
        self.greedy = greedy
        self.snapshots: list[Snapshot] = []

    def _take(self, handle: Any, *, reference: bool = False) -> None:
        if not self.items:
            return
        import inspect

        # texts only: the tournament needs no KL, and skipping the two scoring passes halves
        # the snapshot's cost
        extra = {"score": False} if "score" in inspect.signature(handle.sample).parameters else {}
        s = handle.sample(
            [i.prompt for i in self.items],
            greedy=self.greedy,
            max_new_tokens=self.max_new_tokens,
            reference=reference,
            **extra,
        )
        step = 0 if reference else int(handle.step)
        name = "base-policy" if reference else f"step-{step}"
        cands = [
            Candidate(
                prompt_id=i.prompt_id,
                prompt=i.prompt,
                response=r.strip(),
                source=name,
                metadata={"reference": i.reference, "step": step},
            )
            for i, r in zip(self.items, s.responses, strict=True)
        ]
        self.snapshots = [x for x in self.snapshots if x.step != step]
        self.snapshots.append(Snapshot(step=step, candidates=cands))

    def on_train_start(self, handle: Any) -> None:
        self._take(handle, reference=True)

    def on_step(self, info: Any, handle: Any) -> bool | None:
        if info.step % self.every == 0:
            self._take(handle)
        return None

    def on_train_end(self, handle: Any) -> None:
        if not any(s.step == int(handle.step) for s in self.snapshots):
            self._take(handle)

    def log_section(self) -> dict[str, Any]:
        return {}


class _Progress:
    def __init__(self, advance: Any):
        self.advance = advance

    def on_train_start(self, handle: Any) -> None: ...

    def on_step(self, info: Any, handle: Any) -> bool | None:
        self.advance(1)
        return None

    def on_train_end(self, handle: Any) -> None: ...

    def log_section(self) -> dict[str, Any]:
        return {}


def run_ppo(
    cfg: PPOStageConfig,
    *,
    model: Any,
    tokenizer: Any,
    reward: Any,
    gold: Any,
    prompts: Sequence[PromptItem],
    heldout: Sequence[PromptItem],
    tournament: Sequence[PromptItem] = (),
    output: Path,
    seed: int = 0,
    run_log: Any = None,
    run_dir: Path | None = None,
    advance: Any = None,
) -> PPOResult:
    """PPO of ``model`` against ``reward`` with the monitor (``gold`` on ``heldout``)."""
    from judge_rl.overopt.monitor import MonitorConfig, OveroptMonitor
    from judge_rl.train.ppo import PPOTrainer

    pc = ppo_config(cfg, output, seed)
    if not heldout:
        raise ConfigError("the monitor needs held-out prompts", setting="heldout")
    monitor = OveroptMonitor(
        reward,
        gold,
        list(heldout),
        MonitorConfig(
            every=cfg.monitor_every,
            samples_per_prompt=cfg.monitor_samples,
            scored_samples=cfg.monitor_scored_samples,
            probe=cfg.probe,
            save_checkpoints=cfg.monitor_checkpoints,
            stop_on_alarm=cfg.stop_on_alarm,
            seed=seed,
        ),
    )
    if cfg.snapshot_samples < 1:
        raise ConfigError(f"must be >= 1, got {cfg.snapshot_samples}", setting="snapshot_samples")
    snaps = SnapshotCallback(
        tournament,
        cfg.monitor_every,
        cfg.snapshot_max_new_tokens,
        greedy=cfg.snapshot_greedy,
        samples=cfg.snapshot_samples,
    )
    callbacks: list[Any] = [monitor, snaps]
    if advance is not None:
        callbacks.append(_Progress(advance))
    trainer = PPOTrainer(
        pc,
        model,
        tokenizer,
        reward,
        list(prompts),
        callbacks=callbacks,
        run_log=run_log,
        run_dir=run_dir,
    )
    section = trainer.train()
    best = monitor.section.best_checkpoint or {}
    return PPOResult(
        snapshots=sorted(snaps.snapshots, key=lambda s: s.step),
        best_step=best.get("step"),
        last_step=int(trainer.step),
        snapshot_samples=cfg.snapshot_samples,
        ppo=section,
        overopt=monitor.section,
    )


def stage_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(PPOStageConfig)]


__all__ = [
    "PPOResult",
    "PPOStageConfig",
    "Snapshot",
    "SnapshotCallback",
    "expand_prompts",
    "run_ppo",
]
