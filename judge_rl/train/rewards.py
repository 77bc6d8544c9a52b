"""The reward-source interface shared by PPO (training reward), the over-optimisation monitor
(proxy and gold) and the reward-model probes.

A reward source maps (prompt, response) pairs to floats. Failures are ``nan`` and counted by the
caller, never silently replaced. Concrete sources (reward model, pointwise judge, pairwise judge
vs a reference, verifier, weighted sum) live in :mod:`judge_rl.train.reward_sources`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from judge_rl.types import Prompt


@dataclass
class RewardQuery:
    """One item to score."""

    prompt: Prompt
    response: str
    prompt_id: str = ""
    reference: str | None = None
    """Reference answer (verifiers, reference-guided judges, pairwise-vs-reference)."""
    metadata: dict[str, Any] = field(default_factory=dict)


class RewardSource(Protocol):
    """Anything that scores responses. ``name`` appears in run logs."""

    name: str

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        """One float per query, in order; ``float('nan')`` for a failed score."""
        ...
