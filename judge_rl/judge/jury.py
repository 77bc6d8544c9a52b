"""A jury: several judges vote on each comparison; every member's judgment is kept.

Aggregates (Verga et al. 2024, "Replacing Judges with Juries"):

- ``majority``: the most frequent verdict among members that did not fail; a tie between ``a``
  and ``b`` votes, or a plurality of ``tie``, gives ``tie``. ``p_a`` is the share of votes for
  ``a`` (a tie vote counts half).
- ``mean``: the mean of members' ``p_a`` (a member without a probability counts 1 / 0 / 0.5 for
  its verdict); above 0.5 → ``a``, below → ``b``, exactly 0.5 → ``tie``.

Members that fail are skipped (and stay visible in ``members``); when fewer than ``quorum``
members answered, the jury fails with ``error="jury: ..."``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from judge_rl.errors import ConfigError
from judge_rl.judge.budget import Estimate
from judge_rl.types import Candidate, Comparison, JudgeFingerprint, Judgment, Score

AGGREGATES = ("majority", "mean")


class Jury:
    """Combine member judges.

    Args:
        members: The member judges (any :class:`~judge_rl.judge.base.Judge`).
        aggregate: ``majority`` or ``mean``.
        name: Jury name.
        version: Spec version.
        quorum: Minimum number of members that must answer (default 1).
    """

    def __init__(
        self,
        members: Sequence[Any],
        *,
        aggregate: Literal["majority", "mean"] = "majority",
        name: str = "jury",
        version: str = "1",
        quorum: int = 1,
    ) -> None:
        if not members:
            raise ConfigError("a jury needs at least one member", setting="members")
        if aggregate not in AGGREGATES:
            raise ConfigError(
                f"aggregate must be one of {', '.join(AGGREGATES)}, not {aggregate!r}",
                setting="aggregate",
            )
        self.members = list(members)
        self.aggregate = aggregate
        self.quorum = max(1, int(quorum))
        self._fp = JudgeFingerprint(
            name=name,
            version=str(version),
            kind="jury",
            model=",".join(m.fingerprint.model for m in self.members),
            backend=",".join(sorted({m.fingerprint.backend for m in self.members})),
            params={
                "aggregate": aggregate,
                "quorum": self.quorum,
                "members": [m.fingerprint.key for m in self.members],
            },
        )

    @property
    def fingerprint(self) -> JudgeFingerprint:
        return self._fp

    @property
    def name(self) -> str:
        return self._fp.name

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        results = await asyncio.gather(*(m.compare(comparisons) for m in self.members))
        return [self._combine(c, [r[i] for r in results]) for i, c in enumerate(comparisons)]

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        """Mean of the members' scores (members that fail are skipped)."""
        results = await asyncio.gather(*(m.score(candidates) for m in self.members))
        out = []
        for i, cand in enumerate(candidates):
            scores = [r[i] for r in results]
            ok = [s.score for s in scores if s.ok and s.score is not None]
            usage = _usage(scores)
            if len(ok) < self.quorum:
                err = next((s.error for s in scores if s.error), "no member answered")
                out.append(
                    Score(
                        candidate_id=cand.id,
                        prompt_id=cand.prompt_id,
                        judge=self._fp,
                        error=f"jury: {len(ok)} of {len(scores)} members answered ({err})",
                        **usage,
                    )
                )
                continue
            out.append(
                Score(
                    candidate_id=cand.id,
                    prompt_id=cand.prompt_id,
                    judge=self._fp,
                    score=sum(ok) / len(ok),
                    **usage,
                )
            )
        return out

    def estimate(self, comparisons: Sequence[Comparison]) -> Estimate:
        est = Estimate(comparisons=len(comparisons))
        for m in self.members:
            fn = getattr(m, "estimate", None)
            if fn is not None:
                est = est + fn(comparisons)
        return est

    async def aclose(self) -> None:
        for m in self.members:
            close = getattr(m, "aclose", None)
            if close is not None:
                await close()

    def _combine(self, c: Comparison, members: list[Judgment]) -> Judgment:
        usage = _usage(members)
        ok = [m for m in members if m.ok]
        base: dict[str, Any] = {
            "comparison_id": c.id,
            "prompt_id": c.prompt_id,
            "a_id": c.a.id,
            "b_id": c.b.id,
            "judge": self._fp,
            "order": members[0].order if members else "fixed",
            "members": members,
            **usage,
        }
        if len(ok) < self.quorum:
            err = next((m.error for m in members if m.error), "no member answered")
            return Judgment(
                error=f"jury: {len(ok)} of {len(members)} members answered ({err})", **base
            )
        winner, p_a = (majority if self.aggregate == "majority" else mean_vote)(ok)
        consistent = [m.consistent for m in ok if m.consistent is not None]
        return Judgment(
            winner=winner,  # type: ignore[arg-type]
            p_a=p_a,
            consistent=all(consistent) if consistent else None,
            **base,
        )


def majority(judgments: Sequence[Judgment]) -> tuple[str, float]:
    """Plurality verdict and the share of votes for ``a`` (ties count half).

    >>> from judge_rl.types import JudgeFingerprint as F
    >>> js = [Judgment(comparison_id="p", a_id="x", b_id="y", winner=w, judge=F(name="j")) for w in "aab"]
    >>> majority(js)
    ('a', 0.6666666666666666)
    """
    votes = Counter(j.winner for j in judgments)
    p_a = (votes["a"] + 0.5 * votes["tie"]) / len(judgments)
    top = max(votes.values())
    leaders = {w for w, n in votes.items() if n == top}
    winner = leaders.pop() if len(leaders) == 1 else "tie"
    return str(winner), p_a


def mean_vote(judgments: Sequence[Judgment]) -> tuple[str, float]:
    """Mean probability that ``a`` is better; verdict by which side of 0.5 it falls."""
    ps = [
        j.p_a if j.p_a is not None else {"a": 1.0, "b": 0.0}.get(j.winner or "", 0.5)
        for j in judgments
    ]
    p = sum(ps) / len(ps)
    winner = "a" if p > 0.5 + 1e-9 else ("b" if p < 0.5 - 1e-9 else "tie")
    return winner, p


def _usage(recs: Sequence[Judgment | Score]) -> dict[str, Any]:
    return {
        "prompt_tokens": sum(r.prompt_tokens for r in recs),
        "completion_tokens": sum(r.completion_tokens for r in recs),
        "cost": sum(r.cost for r in recs),
        "latency_s": max((r.latency_s for r in recs), default=0.0),
    }


__all__ = ["AGGREGATES", "Jury", "majority", "mean_vote"]
