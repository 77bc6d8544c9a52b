"""Budget: estimate a run before it starts, and a hard cap on calls and USD while it runs.

A :class:`Budget` is shared by every model call of a run (all orders, all jury members). Before a
call, the judge asks :meth:`Budget.reserve` for room for the call's cost; when the calls already
made, those in flight and this one would pass ``max_calls`` or ``max_cost``, the call is not made
and its judgment fails with ``error="budget: ..."``. When the reply arrives, :meth:`Budget.settle`
replaces the reservation by the actual cost. Finished judgments are kept (and cached), so a
re-run with a larger budget continues where this one stopped.

**The cap is hard.** Every reservation covers the call's worst case: its prompt plus
``max_tokens`` of completion (servers never generate more). A caller may reserve exactly that
(``reserve(worst_case_cost(...), worst_case=True)``); a caller that reserves a *typical* cost
instead (the judge's running mean completion, or ``expected_completion_tokens``) gets
:attr:`Budget.completion_margin` added to every reservation: the worst-case completion cost of
one call, set by :meth:`Budget.cover` from the judges of the run (``max_tokens`` × output price
of the priciest one). That counts the typical completion twice, so a run may stop a little
before the cap; it never passes it, however many calls are in flight and however long their
completions turn out. A settled call that cost more than it reserved (a prompt far longer than
4 characters per token) is recorded in :attr:`Budget.overrun`.

Prices are USD per million ``input`` / ``output`` tokens. :func:`table_prices` reads the price
table shipped with the package (``judge_rl/_builtin/prices.json``, with the date it was read);
:func:`is_local_url` tells endpoints on this machine or a private network, whose cost is 0.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from judge_rl.errors import BudgetExceeded, ConfigError

PRICE_TABLE = Path(__file__).resolve().parent.parent / "_builtin" / "prices.json"
"""model -> USD per 1M input/output tokens, shipped as package data."""


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token estimate: about four characters per token for English text.

    >>> estimate_tokens("a" * 400)
    100
    """
    return max(1, (len(text) + 3) // 4)


def prompt_token_bound(text: str) -> int:
    """A prompt's token count for a reservation: four ASCII characters per token (English
    text, as :func:`estimate_tokens`) but one token per other character (Chinese, Japanese,
    emoji ... take one or more tokens each, never a quarter).

    >>> prompt_token_bound("a" * 400), prompt_token_bound("答" * 400)
    (100, 400)
    """
    # non-ASCII characters, counted in C (a per-character loop cost ~0.1 ms per judge call)
    other = 0 if text.isascii() else len(text) - len(text.encode("ascii", "ignore"))
    return max(1, (len(text) - other + 3) // 4 + other)


def check_prices(prices: Any, setting: str = "prices") -> dict[str, float] | None:
    """``{"input": x, "output": y}`` with finite, non-negative numbers, or a :class:`ConfigError`.

    ``prompt`` / ``completion`` are accepted for ``input`` / ``output``; a missing side is 0.

    >>> check_prices({"input": 1, "output": 2})
    {'input': 1.0, 'output': 2.0}
    >>> check_prices({"input": -1})
    Traceback (most recent call last):
    judge_rl.errors.ConfigError: prices: input: must be a finite number >= 0, not -1
    """
    if prices is None or prices == {}:
        return None
    if not isinstance(prices, dict):
        raise ConfigError(
            f"must be {{input: USD per 1M tokens, output: USD per 1M tokens}}, not {prices!r}",
            setting=setting,
        )
    aliases = {"input": "input", "prompt": "input", "output": "output", "completion": "output"}
    out: dict[str, float] = {}
    for k, v in prices.items():
        if k not in aliases:
            raise ConfigError(
                f"unknown price key {k!r} (use input and output, USD per 1M tokens)",
                setting=setting,
            )
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{k}: not a number: {v!r}", setting=setting) from None
        if isinstance(v, bool) or not math.isfinite(x) or x < 0:
            raise ConfigError(f"{k}: must be a finite number >= 0, not {v!r}", setting=setting)
        out[aliases[k]] = x
    out.setdefault("input", 0.0)
    out.setdefault("output", 0.0)
    return out


def parse_prices(text: str, setting: str = "--prices") -> dict[str, float]:
    """``"IN,OUT"`` (USD per 1M input and output tokens) as a price dict.

    >>> parse_prices("2.5,10")
    {'input': 2.5, 'output': 10.0}
    """
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"give IN,OUT (USD per 1M input and output tokens), not {text!r}", setting=setting
        )
    out = check_prices({"input": parts[0], "output": parts[1]}, setting=setting)
    assert out is not None
    return out


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


def worst_case_cost(
    prompt_tokens: float, max_tokens: float, prices: dict[str, float] | None
) -> float:
    """The most one call can cost: its prompt plus ``max_tokens`` of completion."""
    return price_of(prompt_tokens, max_tokens, prices)


@functools.lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """The shipped price table: ``{"read": date, "source": ..., "models": {name: {input, output}}}``."""
    try:
        data = json.loads(PRICE_TABLE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"read": None, "source": None, "models": {}}
    return data if isinstance(data, dict) else {"read": None, "source": None, "models": {}}


def table_prices(model: str | None) -> dict[str, float] | None:
    """Prices of ``model`` from the shipped table, or None when the table does not know it.

    Matches the name exactly, then without a ``provider/`` prefix, then the longest table name
    that the model's name starts with followed by ``-`` (``gpt-4o-2024-08-06`` -> ``gpt-4o``).

    >>> table_prices("gpt-4o-mini-2024-07-18") == table_prices("gpt-4o-mini")
    True
    >>> table_prices("my-local-llama") is None
    True
    """
    if not model:
        return None
    models: dict[str, Any] = price_table().get("models") or {}
    name = str(model).strip().lower()
    candidates = [name]
    if "/" in name:
        candidates.append(name.rsplit("/", 1)[1])
    for cand in candidates:
        if cand in models:
            return check_prices(dict(models[cand]))
    for cand in candidates:
        best = max((k for k in models if cand.startswith(k + "-")), key=len, default=None)
        if best is not None:
            return check_prices(dict(models[best]))
    return None


def is_local_url(url: str) -> bool:
    """Whether ``url`` points at this machine or a private network (no per-token bill).

    >>> [is_local_url(u) for u in ("http://localhost:8000/v1", "http://10.0.0.7/v1",
    ...     "http://192.168.1.2:11434/v1", "https://api.openai.com/v1", "http://box.local/v1")]
    [True, True, True, False, True]
    """
    host = (urlsplit(str(url)).hostname or "").lower()
    if host in ("localhost", "0.0.0.0", "::1") or host.endswith((".local", ".localhost")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


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
    """Never spend more than this (USD): a call is made only when its worst case fits."""
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
    completion_margin: float = 0.0
    """USD added to each reservation made without ``worst_case=True``: the worst-case
    completion cost of one call (see :meth:`cover`)."""
    overrun: float = 0.0
    """USD by which settled calls cost more than they had reserved (0 when the cap held)."""
    notes: list[str] = field(default_factory=list)
    """One-line notes about prices (a model priced at 0, a local endpoint), for the CLI."""
    _reserved_calls: int = 0
    _reserved_cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.max_cost is not None:
            try:
                cap = float(self.max_cost)
            except (TypeError, ValueError):
                raise ConfigError(f"not a number: {self.max_cost!r}", setting="max_cost") from None
            if not math.isfinite(cap) or cap < 0:
                raise ConfigError(
                    f"must be a finite number >= 0, not {self.max_cost!r}", setting="max_cost"
                )
            self.max_cost = cap
        if self.max_calls is not None and (
            isinstance(self.max_calls, bool) or int(self.max_calls) != self.max_calls
        ):
            raise ConfigError(f"not a whole number: {self.max_calls!r}", setting="max_calls")
        if self.max_calls is not None and self.max_calls < 0:
            raise ConfigError(f"must be >= 0, not {self.max_calls}", setting="max_calls")

    @property
    def exhausted(self) -> bool:
        """Whether any call was refused."""
        return self.refused > 0

    @property
    def status(self) -> str:
        """``"ok"`` (no call refused) or ``"exhausted"`` (the run stopped at the budget)."""
        return "exhausted" if self.exhausted else "ok"

    def summary(self) -> dict[str, Any]:
        """What a run log records about the budget."""
        return {
            "status": self.status,
            "max_cost": self.max_cost,
            "max_calls": self.max_calls,
            "calls": self.calls,
            "cost": self.cost,
            "refused": self.refused,
            "overrun": self.overrun,
        }

    def cover(self, judge: Any) -> float:
        """Set :attr:`completion_margin` from the LLM judges inside ``judge`` (wrappers, jury
        members): ``max_tokens`` × output price of the priciest. Call it before the run on every
        judge that shares this budget; returns the margin."""
        margin = self.completion_margin
        for llm in _llm_judges(judge):
            prices = getattr(llm, "prices", None) or {}
            out = float(prices.get("output", 0.0) or 0.0)
            margin = max(
                margin, price_of(0, int(getattr(llm, "max_tokens", 0) or 0), {"output": out})
            )
        with self._lock:
            self.completion_margin = margin
        return margin

    def _held(self, est_cost: float, worst_case: bool) -> float:
        return est_cost if worst_case else est_cost + self.completion_margin

    def reserve(self, est_cost: float = 0.0, *, worst_case: bool = False) -> bool:
        """Claim room for one call; False when it would not fit.

        ``est_cost`` is the call's worst case when ``worst_case`` is True; otherwise a typical
        cost, to which :attr:`completion_margin` is added.
        """
        held = self._held(est_cost, worst_case)
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
                and self.cost + self._reserved_cost + held > self.max_cost + 1e-12
            ):
                self.refused += 1
                return False
            self._reserved_calls += 1
            self._reserved_cost += held
            return True

    def settle(
        self,
        est_cost: float,
        cost: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        *,
        worst_case: bool = False,
    ) -> None:
        """Replace a reservation (same ``est_cost`` and ``worst_case``) by the actual cost."""
        held = self._held(est_cost, worst_case)
        with self._lock:
            self._reserved_calls -= 1
            self._reserved_cost -= held
            self.calls += 1
            self.cost += cost
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            if cost > held + 1e-12:
                self.overrun += cost - held

    def release(self, est_cost: float, *, worst_case: bool = False) -> None:
        """Give back a reservation for a call that was never made."""
        held = self._held(est_cost, worst_case)
        with self._lock:
            self._reserved_calls -= 1
            self._reserved_cost -= held

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


def _llm_judges(judge: Any, _seen: set[int] | None = None) -> list[Any]:
    """The prompted judges inside a judge tree (``inner`` wrappers, jury ``members``)."""
    seen = set() if _seen is None else _seen
    if judge is None or id(judge) in seen:
        return []
    seen.add(id(judge))
    found = []
    if hasattr(judge, "max_tokens") and hasattr(judge, "backend"):
        found.append(judge)
    for attr in ("inner", "judge", "llm"):
        sub = getattr(judge, attr, None)
        if sub is not None and sub is not judge:
            found += _llm_judges(sub, seen)
    for m in getattr(judge, "members", None) or []:
        found += _llm_judges(m, seen)
    return found


__all__ = [
    "Budget",
    "Estimate",
    "check_prices",
    "estimate_tokens",
    "is_local_url",
    "parse_prices",
    "price_of",
    "price_table",
    "prompt_token_bound",
    "table_prices",
    "worst_case_cost",
]
