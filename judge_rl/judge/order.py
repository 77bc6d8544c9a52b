"""Position-bias control by identity: ``order = fixed | random | both``.

:class:`OrderedJudge` wraps any pairwise judge (anything with ``compare``). It never does
arithmetic on verdict labels: to show ``b`` first it hands the inner judge the comparison with
``a`` and ``b`` exchanged and maps the verdict back by candidate id (:func:`relabel`). Each
:class:`~judge_rl.types.JudgeCall` keeps the id of the candidate actually shown first.

- ``fixed``: ``a`` first, one call.
- ``random``: one call; which candidate goes first is a coin flip seeded by ``seed`` and the
  comparison id (so re-runs and cache hits see the same order, whatever the batch).
- ``both``: two calls, one per order. Agreeing verdicts give that verdict; disagreeing ones give
  a tie (``inconsistent="tie"``, the MT-Bench rule, Zheng et al. 2023 §3.4) or the verdict of the
  averaged probability (``inconsistent="average"``). ``Judgment.consistent`` records which.
  If either half fails the judgment fails with that half's error: a failure is never flipped
  into an answer.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from judge_rl.errors import ConfigError
from judge_rl.judge._common import POINTWISE_KINDS, relabel, swapped
from judge_rl.judge.budget import Estimate
from judge_rl.types import Candidate, Comparison, JudgeFingerprint, Judgment, Score

ORDERS = ("fixed", "random", "both")
INCONSISTENT = ("tie", "average")


class OrderedJudge:
    """Wrap a pairwise judge with position control.

    Args:
        inner: The judge; it must show ``a`` first (every judge in this package does).
        order: ``fixed``, ``random`` or ``both``.
        seed: Seed of the ``random`` order.
        inconsistent: ``both`` only: what two disagreeing orders give, ``tie`` or ``average``.
    """

    def __init__(
        self,
        inner: Any,
        order: Literal["fixed", "random", "both"] = "both",
        *,
        seed: int = 0,
        inconsistent: Literal["tie", "average"] = "tie",
    ) -> None:
        if order not in ORDERS:
            raise ConfigError(
                f"order must be one of {', '.join(ORDERS)}, not {order!r}", setting="order"
            )
        if inconsistent not in INCONSISTENT:
            raise ConfigError(
                f"inconsistent must be one of {', '.join(INCONSISTENT)}, not {inconsistent!r}",
                setting="inconsistent",
            )
        self.inner = inner
        self.order = order
        self.seed = int(seed)
        self.inconsistent = inconsistent
        self.labels_with: dict[str, Any] = {
            "order": order,
            "inconsistent": inconsistent,
            "order_seed": self.seed,
        }
        """How this judge labels as its spec configures it (``build_judge`` sets it from the
        spec before overrides): what an audit of it evaluates."""

    @property
    def fingerprint(self) -> JudgeFingerprint:
        return self.inner.fingerprint  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        return self.fingerprint.name

    def swap_first(self, c: Comparison) -> bool:
        """``random`` order: whether ``b`` is shown first for this comparison."""
        rng = random.Random(f"{self.seed}:{c.id}")
        return rng.random() < 0.5

    def shown(self, comparisons: Sequence[Comparison]) -> list[tuple[int, Comparison]]:
        """The (index, comparison as shown) list the inner judge receives."""
        if self.fingerprint.kind in POINTWISE_KINDS or self.order == "fixed":
            return list(enumerate(comparisons))
        if self.order == "random":
            return [(i, swapped(c) if self.swap_first(c) else c) for i, c in enumerate(comparisons)]
        # Interleaved, so that a budget stop leaves whole pairs rather than half of every pair.
        return [(i, x) for i, c in enumerate(comparisons) for x in (c, swapped(c))]

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        plan = self.shown(comparisons)
        results = await self.inner.compare([c for _, c in plan])
        return self._mapped(comparisons, plan, results)

    def _mapped(
        self,
        comparisons: Sequence[Comparison],
        plan: list[tuple[int, Comparison]],
        results: Sequence[Judgment],
    ) -> list[Judgment]:
        """The inner judge's ``results`` for ``plan`` as one judgment per comparison."""
        if self.fingerprint.kind in POINTWISE_KINDS:
            return list(results)
        mapped: list[list[Judgment]] = [[] for _ in comparisons]
        for (i, _), j in zip(plan, results, strict=True):
            mapped[i].append(relabel(j, comparisons[i]))
        if self.order != "both":
            order = self.order
            # a judgment already in this order (``fixed``, as the prompted judge makes them) is
            # what the copy would be: no copy of every judgment at the end of a run
            return [
                m[0]
                if m[0].order == order and "order" in m[0].model_fields_set
                else m[0].model_copy(update={"order": order})
                for m in mapped
            ]
        return [combine_orders(m[0], m[1], self.inconsistent) for m in mapped]

    async def compare_stream(
        self,
        chunks: AsyncIterator[Sequence[Comparison]],
        *,
        on_estimate: Any = None,
    ) -> list[Judgment]:
        """:meth:`compare` of the comparisons ``chunks`` yields, the first ones judged while
        the later ones are still coming (the inner judge's ``compare_stream``; an inner judge
        without one gets the whole list once ``chunks`` is exhausted). ``on_estimate``: see
        :meth:`judge_rl.judge.cache.CachedJudge.compare_stream`."""
        comps: list[Comparison] = []
        plan: list[tuple[int, Comparison]] = []

        async def shown() -> AsyncIterator[list[Comparison]]:
            async for chunk in chunks:
                base = len(comps)
                comps.extend(chunk)
                part = [(base + i, x) for i, x in self.shown(list(chunk))]
                plan.extend(part)
                yield [x for _, x in part]

        def estimated(est: Estimate) -> None:
            est.comparisons = len(comps)
            if on_estimate is not None:
                on_estimate(est)

        stream = getattr(self.inner, "compare_stream", None)
        if stream is not None:
            results = await stream(shown(), on_estimate=estimated)
        else:
            async for _ in shown():
                pass
            estimated(self.estimate(comps))
            plan = self.shown(comps)
            results = await self.inner.compare([c for _, c in plan])
        return self._mapped(comps, plan, results)

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        return await self.inner.score(candidates)  # type: ignore[no-any-return]

    def estimate(self, comparisons: Sequence[Comparison]) -> Estimate:
        fn = getattr(self.inner, "estimate", None)
        if fn is None:
            return Estimate(comparisons=len(comparisons))
        est: Estimate = fn([c for _, c in self.shown(comparisons)])
        est.comparisons = len(comparisons)
        return est

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


def combine_orders(first: Judgment, second: Judgment, inconsistent: str = "tie") -> Judgment:
    """Combine the ``a``-first and ``b``-first judgments of one comparison (both already mapped
    back to the comparison's labels by id)."""
    calls = [*first.calls, *second.calls]
    usage = {
        "prompt_tokens": first.prompt_tokens + second.prompt_tokens,
        "completion_tokens": first.completion_tokens + second.completion_tokens,
        "cost": first.cost + second.cost,
        "latency_s": first.latency_s + second.latency_s,
    }
    base: dict[str, Any] = {"order": "both", "calls": calls, "members": [], **usage}
    # one copy with both updates: what a copy of the copy gives (model_copy updates the copied
    # __dict__ and adds the keys to the fields set, in order)
    bad = first if not first.ok else (second if not second.ok else None)
    if bad is not None:
        return first.model_copy(
            update={
                **base,
                "winner": None,
                "p_a": None,
                "consistent": None,
                "error": bad.error or "backend: no verdict",
            }
        )
    winner, p_a, consistent = combine_verdicts(
        first.winner, second.winner, first.p_a, second.p_a, inconsistent
    )
    return first.model_copy(update={**base, "winner": winner, "p_a": p_a, "consistent": consistent})


def combine_verdicts(
    first: str | None,
    second: str | None,
    p_first: float | None = None,
    p_second: float | None = None,
    inconsistent: str = "tie",
) -> tuple[str | None, float | None, bool | None]:
    """``(winner, p_a, consistent)`` of ``order=both`` from the two orders' verdicts and
    P(a better), both already in the comparison's a/b labels. The one rule that labelling,
    tournaments and the audit all use.

    Agreeing verdicts give that verdict; disagreeing ones a tie (``inconsistent="tie"``) or
    the side of the averaged probability (``"average"``; without probabilities each verdict
    counts 1, 0 or ½). A failed half fails the pair.

    >>> combine_verdicts("a", "a", 0.9, 0.7)
    ('a', 0.8, True)
    >>> combine_verdicts("a", "b")
    ('tie', None, False)
    >>> combine_verdicts("a", "b", 0.9, 0.3, "average")
    ('a', 0.6, False)
    >>> combine_verdicts("a", None)
    (None, None, None)
    """
    if first is None or second is None:
        return None, None, None
    p_a = _mean_p(p_first, p_second)
    if p_a is not None:
        p_a = round(p_a, 12)
    if first == second:
        return first, p_a, True
    if inconsistent == "average":
        p = p_a if p_a is not None else (_verdict_p(first) + _verdict_p(second)) / 2
        winner = "a" if p > 0.5 + 1e-9 else ("b" if p < 0.5 - 1e-9 else "tie")
        return winner, p, False
    return "tie", p_a, False


def _mean_p(p: float | None, q: float | None) -> float | None:
    if p is None or q is None:
        return None
    return (p + q) / 2


def _verdict_p(w: str | None) -> float:
    return {"a": 1.0, "b": 0.0}.get(w or "", 0.5)


__all__ = ["INCONSISTENT", "ORDERS", "OrderedJudge", "combine_orders", "combine_verdicts"]
