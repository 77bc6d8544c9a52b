"""The Judge protocol: one abstraction for labelling, RL reward, gold signals and tournaments.

Judges are async and batched. ``compare`` returns one :class:`Judgment` per comparison, in order;
``score`` one :class:`Score` per candidate. A judge that cannot do one of them raises
:class:`NotImplementedError` from it (e.g. a human-file judge cannot score).
Failures are returned as records with ``error`` set, never raised, except for user errors
(:class:`judge_rl.errors.JudgeRLError`) such as an unreachable endpoint at start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from judge_rl.types import Candidate, Comparison, JudgeFingerprint, Judgment, Score


@runtime_checkable
class Judge(Protocol):
    """Anything that turns comparisons into judgments and/or candidates into scores."""

    @property
    def fingerprint(self) -> JudgeFingerprint: ...

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]: ...

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]: ...


def compare_sync(judge: Judge, comparisons: Sequence[Comparison]) -> list[Judgment]:
    """Run :meth:`Judge.compare` from synchronous code."""
    return _run(judge.compare(comparisons))


def score_sync(judge: Judge, candidates: Sequence[Candidate]) -> list[Score]:
    """Run :meth:`Judge.score` from synchronous code."""
    return _run(judge.score(candidates))


def _run(coro):  # type: ignore[no-untyped-def]
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside a running loop (e.g. a notebook): run in a worker thread.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()
