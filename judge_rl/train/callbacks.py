"""PPO hooks: called after every step with the step's samples and statistics; able to stop.

The over-optimisation monitor (:mod:`judge_rl.overopt`) plugs in here. A callback receives a
:class:`StepInfo` and a :class:`PolicyHandle` with which it may sample the current policy on its
own (held-out) prompts, measure KL to the reference and save a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from judge_rl.types import Prompt


@dataclass
class Samples:
    """Responses of the policy to some prompts, with what the monitor needs to judge them."""

    prompts: list[Prompt]
    responses: list[str]
    response_tokens: list[list[int]] = field(default_factory=list)
    ended_with_eos: list[bool] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    """Per sample: sum over response tokens of log π(t) − log π_ref(t) (k1; its mean over samples
    estimates KL(π‖π_ref))."""
    ref_logprob: list[float] = field(default_factory=list)
    """Per sample: mean log-probability of the response tokens under the reference model (for the
    perplexity-spike detector)."""


@dataclass
class StepInfo:
    """What a callback sees after PPO step ``step`` (1-based, counted over resumes)."""

    step: int
    prompts: list[Prompt]
    responses: list[str]
    rewards: list[float]
    stats: dict[str, float]
    """The step's logged statistics (reward_mean, kl, entropy, …)."""
    prompt_ids: list[str] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)


class PolicyHandle(Protocol):
    """The trainer, as a callback sees it."""

    @property
    def step(self) -> int: ...

    def sample(
        self,
        prompts: Sequence[Prompt],
        *,
        greedy: bool = False,
        max_new_tokens: int | None = None,
        reference: bool = False,
        score: bool = True,
        stream: int = 0,
    ) -> Samples:
        """Sample the current policy (or, with ``reference=True``, the frozen reference) on
        ``prompts``; fills ``kl`` and ``ref_logprob`` unless ``score`` is false (texts only).
        Calls at the same step with the same ``stream`` draw the same random numbers; another
        ``stream`` draws independent ones. Does not change training state or RNG streams used by
        training."""
        ...

    def save_checkpoint(self, tag: str | None = None) -> str:
        """Save the policy now; returns the checkpoint folder."""
        ...


class Callback(Protocol):
    """Return True from ``on_step`` to stop training (the run log records why)."""

    def on_train_start(self, handle: PolicyHandle) -> None: ...

    def on_step(self, info: StepInfo, handle: PolicyHandle) -> bool | None: ...

    def on_train_end(self, handle: PolicyHandle) -> None: ...

    def log_section(self) -> dict[str, Any]:
        """What to store in the run log (e.g. the ``overopt`` section)."""
        ...
