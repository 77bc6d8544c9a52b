"""Budget: estimate a run before it starts, and stop before the call that would exceed a limit.

A :class:`Budget` is shared by every model call of a run (all orders, all jury members). Before a
call, the judge asks :meth:`Budget.reserve` with the call's worst-case cost (estimated prompt
tokens plus the expected completion); when the calls already made, those in flight and this one
would pass ``max_calls`` or ``max_cost``, the call is not made and its judgment fails with
``error="budget: ..."``. Finished judgments are kept (and cached), so a re-run with a larger
budget continues where this one stopped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from judge_rl.errors import BudgetExceeded


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate: about four characters per token for English text.

    >>> estimate_tokens("a" * 400)
    100
    """
    return max(1, (len(text) + 3) // 4)


def price_of(
    prompt_tokens: float, completion_tokens: float, prices: dict[str, float] | None
) -> float:
    """USD for the given tokens at ``prices`` (USD per million ``input`` / ``output`` tokens).

    >>> price_of(1_000_000, 500_000, {"input": 0.15, "output": 0.6})
    0.45
    """
    if not prices:
        return 0.0
    return round(
        (
            prompt_tokens * float(prices.get("input", 0.0))
            + completion_tokens * float(prices.get("output", 0.0))
        )
        / 1e6,
        12,
    )


@dataclass
class Estimate:
    """What a run will cost, before it starts (cache hits excluded from calls and cost)."""

    comparisons: int = 0
    calls: int = 0
    """Model calls still to make."""
    cached: int = 0
    """Calls answered by the cache."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Worst case: ``max_tokens`` per call (or the expected completion length when set)."""
    cost: float = 0.0
    priced: bool = True
    """False when some call's backend has no price table (its cost counts as 0)."""
    units: int = 0
    """Records the progress hook will report (one per judged item, cache hits included)."""

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(
            comparisons=max(self.comparisons, other.comparisons),
            calls=self.calls + other.calls,
            cached=self.cached + other.cached,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=self.cost + other.cost,
            priced=self.priced and other.priced,
            units=self.units + other.units,
        )


@dataclass
class Budget:
    """Limits on model calls and USD for one run. ``None`` means no limit."""

    max_cost: float | None = None
    """Stop before the call whose worst-case cost would take the total past this (USD)."""
    max_calls: int | None = None
    """Stop before call number ``max_calls + 1``."""
    calls: int = 0
    """Calls made (finished)."""
    cost: float = 0.0
    """USD spent on finished calls."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    refused: int = 0
    """Calls not made because of the budget."""
    _reserved_calls: int = 0
    _reserved_cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def exhausted(self) -> bool:
        """Whether any call was refused."""
        return self.refused > 0

    def reserve(self, est_cost: float = 0.0) -> bool:
        """Claim room for one call of worst-case cost ``est_cost``; False when it would not fit."""
        with self._lock:
            if self.refused:  # once stopped, stay stopped: the run ends cleanly, not patchily
                self.refused += 1
                return False
            if (
                self.max_calls is not None
                and self.calls + self._reserved_calls + 1 > self.max_calls
            ):
                self.refused += 1
                return False
            if (
                self.max_cost is not None
                and self.cost + self._reserved_cost + est_cost > self.max_cost + 1e-12
            ):
                self.refused += 1
                return False
            self._reserved_calls += 1
            self._reserved_cost += est_cost
            return True

    def settle(
        self, est_cost: float, cost: float, prompt_tokens: int = 0, completion_tokens: int = 0
    ) -> None:
        """Replace a reservation by the call's actual cost and tokens."""
        with self._lock:
            self._reserved_calls -= 1
            self._reserved_cost -= est_cost
            self.calls += 1
            self.cost += cost
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens

    def release(self, est_cost: float) -> None:
        """Give back a reservation for a call that was never made."""
        with self._lock:
            self._reserved_calls -= 1
            self._reserved_cost -= est_cost

    def reason(self) -> str:
        """Why calls were refused, for ``error="budget: ..."``."""
        parts = []
        if self.max_calls is not None:
            parts.append(f"--max-calls {self.max_calls}")
        if self.max_cost is not None:
            parts.append(f"--max-cost {self.max_cost:g} USD")
        return "the next call would exceed " + " / ".join(parts or ["the budget"])

    def check(self) -> None:
        """Raise :class:`BudgetExceeded` when calls were refused (for the CLI, after saving)."""
        if self.exhausted:
            raise BudgetExceeded(
                f"budget reached: {self.reason()}; {self.calls} calls made, ${self.cost:.4f} "
                f"spent, {self.refused} calls not made (re-run with a larger budget to finish; "
                "finished judgments are cached)"
            )


__all__ = ["Budget", "Estimate", "estimate_tokens", "price_of"]
