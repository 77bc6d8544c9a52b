"""A trained reward model as a judge (kind ``reward_model``): pointwise scores, and pairwise
verdicts with the Bradley-Terry probability ``p_a = sigmoid(r_a - r_b)``.

The scorer, :class:`judge_rl.train.reward_model.RewardModelScorer`, is imported and loaded on
first use (it needs torch), and runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judge_rl.errors import ConfigError
from judge_rl.judge._common import compare_by_scores
from judge_rl.judge.budget import Estimate
from judge_rl.types import Candidate, Comparison, JudgeFingerprint, Judgment, Score


class RewardModelJudge:
    """Score responses with a reward model folder written by ``judge-rl train-rm``.

    Args:
        path: The reward model folder.
        name: Judge name.
        version: Spec version.
        device, batch_size, max_length: Passed to ``RewardModelScorer``.
        tie_margin: A reward gap at most this is a tie.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str = "reward-model",
        version: str = "1",
        device: str | None = None,
        batch_size: int = 16,
        max_length: int = 1024,
        tie_margin: float = 0.0,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"reward model folder {self.path} does not exist", setting="path")
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.tie_margin = float(tie_margin)
        self._scorer: Any = None
        self._fp = JudgeFingerprint(
            name=name,
            version=str(version),
            kind="reward_model",
            model=str(self.path),
            backend="reward_model",
            template_hash=_folder_digest(self.path),
            params={"max_length": max_length, "tie_margin": self.tie_margin},
        )

    @property
    def fingerprint(self) -> JudgeFingerprint:
        return self._fp

    @property
    def name(self) -> str:
        return self._fp.name

    def _load(self) -> Any:
        if self._scorer is None:
            from judge_rl.train.reward_model import RewardModelScorer

            self._scorer = RewardModelScorer(
                str(self.path),
                device=self.device,
                batch_size=self.batch_size,
                max_length=self.max_length,
            )
        return self._scorer

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        if not candidates:
            return []
        scorer = self._load()
        t0 = time.perf_counter()
        values = await asyncio.to_thread(
            scorer.score, [c.prompt for c in candidates], [c.response for c in candidates]
        )
        per = (time.perf_counter() - t0) / len(candidates)
        out = []
        for cand, v in zip(candidates, values, strict=True):
            base: dict[str, Any] = {
                "candidate_id": cand.id,
                "prompt_id": cand.prompt_id,
                "judge": self._fp,
                "latency_s": per,
            }
            if v is None or v != v:  # nan: the scorer could not score it
                out.append(Score(error="backend: the reward model returned no score", **base))
            else:
                out.append(Score(score=float(v), **base))
        return out

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        return await compare_by_scores(
            self.score, comparisons, self._fp, tie_margin=self.tie_margin, probability="bt"
        )

    def estimate_scores(self, candidates: Sequence[Candidate]) -> Estimate:
        return Estimate(calls=len(candidates))

    def estimate(self, comparisons: Sequence[Comparison]) -> Estimate:
        return Estimate(comparisons=len(comparisons), calls=2 * len(comparisons))


def _folder_digest(path: Path) -> str:
    """Hash of the folder's file names, sizes and modification times (cheap, changes on retrain)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        st = p.stat()
        h.update(
            f"{p.relative_to(path) if path.is_dir() else p.name}:{st.st_size}:{st.st_mtime_ns}".encode()
        )
    return h.hexdigest()[:16]


__all__ = ["RewardModelJudge"]
