"""Helpers shared by the judges: id-based relabelling, score-based comparisons, progress hooks."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from judge_rl.types import Candidate, Comparison, JudgeCall, JudgeFingerprint, Judgment, Score

JUDGING_VERSION = "2"
"""Version of the judging semantics (how requests are built, probabilities read and verdicts
combined); part of every cache key with the parser's version. Bump on any change of what a
judge answers for the same spec and model. 2: label probabilities at the verdict slot, never over
the written verdict; hf prompts never cut inside a turn."""

POINTWISE_KINDS = frozenset({"pointwise", "rubric", "reward_model"})
"""Kinds whose verdicts come from scoring each candidate alone (order cannot matter)."""

ProgressHook = Callable[[str, Any], None]
"""``hook(event, record)``: ``event`` is ``"judgment"`` or ``"score"``; called once per finished
inner call (cache hits included, with ``cached=True`` on their calls)."""

progress_hook: contextvars.ContextVar[ProgressHook | None] = contextvars.ContextVar(
    "judge_rl_progress_hook", default=None
)
"""Set by the CLI to drive its progress bar; library code only reads it."""


def report(event: str, record: Any) -> None:
    hook = progress_hook.get()
    if hook is not None:
        hook(event, record)


_FLIP = {"a": "b", "b": "a", "tie": "tie", None: None}


def swapped(c: Comparison) -> Comparison:
    """The same comparison with ``a`` and ``b`` exchanged (same id: it is the same pair)."""
    return c.model_copy(update={"a": c.b, "b": c.a})


def relabel(j: Judgment, c: Comparison) -> Judgment:
    """Map a judgment made on ``c`` or on ``swapped(c)`` back to ``c``'s ``a``/``b`` by id.

    Winners are mapped by candidate identity; a probability of the other side becomes
    ``1 - p`` (P(b better) = 1 - P(a better)); a failure stays a failure.
    """
    if j.a_id == c.a.id and j.b_id == c.b.id:
        return j
    if not (j.a_id == c.b.id and j.b_id == c.a.id):
        raise ValueError(f"judgment {j.comparison_id} does not belong to comparison {c.id}")
    calls = [
        call.model_copy(
            update={
                "winner": _FLIP[call.winner],
                "p_a": None if call.p_a is None else 1.0 - call.p_a,
            }
        )
        for call in j.calls
    ]
    members = [relabel(m, c) if m.a_id == c.b.id else m for m in j.members]
    return j.model_copy(
        update={
            "comparison_id": c.id,
            "a_id": c.a.id,
            "b_id": c.b.id,
            "winner": _FLIP[j.winner],
            "p_a": None if j.p_a is None else 1.0 - j.p_a,
            "calls": calls,
            "members": members,
        }
    )


def with_reference(cand: Candidate, reference: str | None) -> Candidate:
    """The candidate with ``metadata["reference"]`` set from the comparison when it has none."""
    if reference is None or cand.metadata.get("reference") is not None:
        return cand
    return cand.model_copy(update={"metadata": {**cand.metadata, "reference": reference}})


def failed(c: Comparison, fp: JudgeFingerprint, error: str, **kw: Any) -> Judgment:
    """An explicit failure for comparison ``c``."""
    return Judgment(
        comparison_id=c.id,
        prompt_id=c.prompt_id,
        a_id=c.a.id,
        b_id=c.b.id,
        judge=fp,
        error=error,
        **kw,
    )


async def compare_by_scores(
    score: Callable[[Sequence[Candidate]], Awaitable[list[Score]]],
    comparisons: Sequence[Comparison],
    fp: JudgeFingerprint,
    *,
    tie_margin: float = 0.0,
    probability: str | None = None,
) -> list[Judgment]:
    """Compare by scoring both candidates: the higher score wins, a gap ≤ ``tie_margin`` ties.

    ``probability="bt"`` sets ``p_a = sigmoid(score_a - score_b)``, the Bradley-Terry
    probability of a reward model (Bradley & Terry 1952; Ouyang et al. 2022, eq. 1).
    """
    cands: list[Candidate] = []
    for c in comparisons:
        cands += [with_reference(c.a, c.reference), with_reference(c.b, c.reference)]
    scores = await score(cands)
    out = []
    for i, c in enumerate(comparisons):
        sa, sb = scores[2 * i], scores[2 * i + 1]
        calls = [_score_call(s) for s in (sa, sb)]
        usage: dict[str, Any] = {
            "prompt_tokens": sa.prompt_tokens + sb.prompt_tokens,
            "completion_tokens": sa.completion_tokens + sb.completion_tokens,
            "cost": sa.cost + sb.cost,
            "latency_s": sa.latency_s + sb.latency_s,
        }
        bad = next((s for s in (sa, sb) if not s.ok), None)
        if bad is not None:
            out.append(failed(c, fp, bad.error or "backend: no score", calls=calls, **usage))
            continue
        assert sa.score is not None and sb.score is not None
        diff = sa.score - sb.score
        winner = "tie" if abs(diff) <= tie_margin else ("a" if diff > 0 else "b")
        p_a = 1.0 / (1.0 + math.exp(-diff)) if probability == "bt" else None
        out.append(
            Judgment(
                comparison_id=c.id,
                prompt_id=c.prompt_id,
                a_id=c.a.id,
                b_id=c.b.id,
                winner=winner,  # type: ignore[arg-type]
                p_a=p_a,
                judge=fp,
                calls=calls,
                **usage,
            )
        )
    return out


def _score_call(s: Score) -> JudgeCall:
    return JudgeCall(
        first_id=s.candidate_id,
        raw=s.raw,
        error=s.error,
        prompt_tokens=s.prompt_tokens,
        completion_tokens=s.completion_tokens,
        cost=s.cost,
        latency_s=s.latency_s,
        cached=s.cached,
    )


__all__ = [
    "JUDGING_VERSION",
    "POINTWISE_KINDS",
    "compare_by_scores",
    "failed",
    "progress_hook",
    "relabel",
    "report",
    "swapped",
    "with_reference",
]
