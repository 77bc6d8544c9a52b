"""Command-line options every judging command shares (``label``, ``audit``, ``tournament``…).

``add_judge_options(parser)`` adds ``--judge --order --inconsistent --base-url --model --backend
--concurrency --hardened/--plain --max-cost --max-calls --cache --no-cache``;
``judge_from_args(args)`` builds the judge, its budget and its cache from them. Importing this
module is cheap (argparse only); the judge layer loads inside :func:`judge_from_args`.
"""

from __future__ import annotations

import argparse
from typing import Any


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
        "--cache",
        default=None,
        metavar="PATH",
        help="judgment cache (SQLite; default $JUDGE_RL_CACHE/judgments.sqlite)",
    )
    b.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the judgment cache"
    )


def judge_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec keys the command line overrides (only those given)."""
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
    if max_cost is not None and max_cost < 0:
        raise ConfigError(f"must be >= 0, not {max_cost}", setting="--max-cost")
    if max_calls is not None and max_calls < 0:
        raise ConfigError(f"must be >= 0, not {max_calls}", setting="--max-calls")
    return Budget(max_cost=max_cost, max_calls=max_calls)


def judge_from_args(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(judge, budget, cache)`` from the shared options."""
    from judge_rl.judge.specs import load_judge, validate_spec

    validate_spec(args.judge)
    budget = budget_from_args(args)
    cache = cache_from_args(args)
    judge = load_judge(args.judge, overrides=judge_overrides(args), cache=cache, budget=budget)
    return judge, budget, cache


__all__ = [
    "add_judge_options",
    "budget_from_args",
    "cache_from_args",
    "judge_from_args",
    "judge_overrides",
]
