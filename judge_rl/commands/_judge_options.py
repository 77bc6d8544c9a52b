"""Command-line options every judging command shares (``label``, ``audit``, ``tournament``…).

Argparse belongs to the commands: this module was ``judge_rl/judge/cli_options.py`` inside the
judge library package. What a run log records about the wire (``transport_summary``) is library
code: :func:`judge_rl.pipeline.label.transport_summary`.

``add_judge_options(parser)`` adds ``--judge --order --inconsistent --base-url --model --backend
--concurrency --hardened/--plain --max-cost --max-calls --prices --cache --no-cache``;
``judge_from_args(args)`` builds the judge, its budget and its cache from them. Importing this
module is cheap (argparse only); the judge layer loads inside :func:`judge_from_args`.

Prices (USD per 1M input/output tokens) are resolved by :func:`resolve_prices`: ``--prices IN,OUT``
wins; else an endpoint on this machine or a private network costs 0; else ``--model M`` takes
M's prices from the shipped table (an unknown M costs 0); else the spec's ``prices``. Each rule
but the first leaves a one-line note (logged as a warning and kept in ``budget.notes``).

A command that builds its judge itself (``load_judge``) instead of :func:`judge_from_args` must,
for a hard ``--max-cost``: pass ``judge_overrides(args)`` (which carries the resolved prices),
call ``budget.cover(judge)`` before judging, and ``budget.check()`` after saving its output
(exit status 2 with the budget line when the budget stopped the run).
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

log = logging.getLogger(__name__)


def add_judge_options(p: argparse.ArgumentParser, *, judge_required: bool = True) -> None:
    """Add the shared judge options to ``p``."""
    g = p.add_argument_group("judge")
    g.add_argument(
        "--judge",
        required=judge_required,
        metavar="NAME_OR_PATH",
        help="a judge name (judges/<name>/judge.yaml on the search path) or a spec path",
    )
    g.add_argument(
        "--order",
        choices=["fixed", "random", "both"],
        default=None,
        help="position control: show a first (fixed), a seeded coin flip (random), or both "
        "orders with inconsistent pairs resolved by --inconsistent (default: the spec's)",
    )
    g.add_argument(
        "--inconsistent",
        choices=["tie", "average"],
        default=None,
        help="--order both: disagreeing orders give a tie, or the averaged probability's verdict",
    )
    g.add_argument(
        "--base-url",
        dest="base_urls",
        action="extend",
        nargs="+",
        metavar="URL",
        help="OpenAI-compatible endpoint(s); several spread the requests over several servers",
    )
    g.add_argument("--model", default=None, help="model name or path (overrides the spec)")
    g.add_argument("--backend", default=None, help="openai | hf | vllm | mock (overrides the spec)")
    g.add_argument(
        "--concurrency", type=int, default=None, help="requests in flight (openai backend)"
    )
    h = g.add_mutually_exclusive_group()
    h.add_argument(
        "--hardened",
        dest="hardened",
        action="store_true",
        default=None,
        help="fence candidates as data (prompt-injection hardening)",
    )
    h.add_argument(
        "--plain", dest="hardened", action="store_false", help="paste candidates as they are"
    )
    b = p.add_argument_group("budget and cache")
    b.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="stop before the call that would take the cost past USD (finished work is kept)",
    )
    b.add_argument("--max-calls", type=int, default=None, metavar="N", help="stop before call N+1")
    b.add_argument(
        "--prices",
        default=None,
        metavar="IN,OUT",
        help="USD per 1M input and output tokens (default: the spec's; with --model, the "
        "shipped price table's; local endpoints cost 0)",
    )
    b.add_argument(
        "--cache",
        default=None,
        metavar="PATH",
        help="judgment cache (SQLite; default $JUDGE_RL_CACHE/judgments.sqlite)",
    )
    b.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the judgment cache"
    )


def judge_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec keys the command line overrides (only those given), prices resolved."""
    over = _plain_overrides(args)
    prices, _note = resolve_prices(args)
    if prices is not None:
        over["prices"] = prices
    return over


def _plain_overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {
        "order": getattr(args, "order", None),
        "inconsistent": getattr(args, "inconsistent", None),
        "base_urls": getattr(args, "base_urls", None),
        "model": getattr(args, "model", None),
        "backend": getattr(args, "backend", None),
        "concurrency": getattr(args, "concurrency", None),
        "hardened": getattr(args, "hardened", None),
    }
    return {k: v for k, v in over.items() if v is not None}


def resolve_prices(args: argparse.Namespace) -> tuple[dict[str, float] | None, str | None]:
    """``(prices override or None, note or None)`` for the judge the options describe.

    See the module docstring for the rules. ``None`` prices: keep the spec's.
    """
    from judge_rl.judge.budget import is_local_url, parse_prices, price_table, table_prices

    given = getattr(args, "prices", None)
    if given is not None:
        return parse_prices(given), None
    spec = _spec_of(args)
    if spec.get("prices") is not None:  # negative or non-finite prices in the spec: refused
        from judge_rl.errors import ConfigError
        from judge_rl.judge.budget import check_prices

        try:
            check_prices(spec["prices"])
        except ConfigError as e:
            raise ConfigError(
                str(e).split(": ", 1)[-1], file=_spec_path(args), setting="prices"
            ) from None
    cli_urls = getattr(args, "base_urls", None)
    urls = cli_urls or _as_urls(spec.get("base_urls", spec.get("base_url")))
    backend = getattr(args, "backend", None) or spec.get("backend")
    if urls and all(is_local_url(u) for u in urls) and backend not in ("mock",):
        if spec.get("prices") or getattr(args, "model", None):
            return {"input": 0.0, "output": 0.0}, (
                "local endpoint: cost counted as 0 (give --prices IN,OUT to count it)"
            )
        return None, None
    model = getattr(args, "model", None)
    if model and model != spec.get("model"):
        found = table_prices(model)
        if found is not None:
            read = price_table().get("read") or "?"
            return found, (
                f"prices for {model}: ${found['input']:g} / ${found['output']:g} per 1M "
                f"input / output tokens (price table read {read}; --prices IN,OUT overrides)"
            )
        return {"input": 0.0, "output": 0.0}, (
            f"no price known for model {model!r}: cost counted as 0 (give --prices IN,OUT)"
        )
    return None, None


def _spec_of(args: argparse.Namespace) -> dict[str, Any]:
    """The judge spec named by ``--judge`` (empty when it cannot be read: load_judge reports)."""
    name = getattr(args, "judge", None)
    if not name:
        return {}
    try:
        from judge_rl.judge.specs import find_spec, read_spec

        spec = read_spec(find_spec(name))
    except Exception:  # the spec's own errors are reported by validate_spec / load_judge
        return {}
    return spec if isinstance(spec, dict) else {}


def _spec_path(args: argparse.Namespace) -> str:
    try:
        from judge_rl.judge.specs import find_spec

        return str(find_spec(args.judge))
    except Exception:
        return str(args.judge)


def _as_urls(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def cache_from_args(args: argparse.Namespace) -> Any:
    """A :class:`~judge_rl.judge.cache.JudgmentCache`, or None with ``--no-cache``."""
    from judge_rl.judge.cache import JudgmentCache

    if getattr(args, "no_cache", False):
        return None
    return JudgmentCache(getattr(args, "cache", None))


def budget_from_args(args: argparse.Namespace) -> Any:
    """A :class:`~judge_rl.judge.budget.Budget` from ``--max-cost`` / ``--max-calls``."""
    from judge_rl.errors import ConfigError
    from judge_rl.judge.budget import Budget

    max_cost = getattr(args, "max_cost", None)
    max_calls = getattr(args, "max_calls", None)
    if max_cost is not None and not (math.isfinite(max_cost) and max_cost >= 0):
        raise ConfigError(f"must be a finite number >= 0, not {max_cost}", setting="--max-cost")
    if max_calls is not None and max_calls < 0:
        raise ConfigError(f"must be >= 0, not {max_calls}", setting="--max-calls")
    budget = Budget(max_cost=max_cost, max_calls=max_calls)
    _prices, note = resolve_prices(args)
    if note:
        log.warning("%s", note)
        budget.notes.append(note)
    return budget


def judge_from_args(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(judge, budget, cache)`` from the shared options."""
    from judge_rl.judge.specs import load_judge, validate_spec

    validate_spec(args.judge)
    budget = budget_from_args(args)
    cache = cache_from_args(args)
    judge = load_judge(args.judge, overrides=judge_overrides(args), cache=cache, budget=budget)
    budget.cover(judge)  # every reservation covers max_tokens of completion: a hard cap
    return judge, budget, cache


__all__ = [
    "add_judge_options",
    "budget_from_args",
    "cache_from_args",
    "judge_from_args",
    "judge_overrides",
    "resolve_prices",
]
