"""The judge layer: one abstraction for labelling, RL reward, gold signals and tournaments.

- :func:`load_judge` builds a judge from ``judges/<name>/judge.yaml`` (see :mod:`.specs`).
- :class:`LLMJudge` (prompted: pairwise, reference, pointwise, rubric), :class:`HumanFileJudge`,
  :class:`Jury`, :class:`RewardModelJudge`; the verifier is :class:`judge_rl.judge.verify.VerifierJudge`.
- :class:`OrderedJudge`: position control by identity (``order = fixed | random | both``).
- :class:`JudgmentCache` / :class:`CachedJudge`: the shared SQLite cache.
- :class:`Budget` / :class:`Estimate`: limits and estimates of calls and cost.

Everything here imports quickly; backends and torch load only when a judge needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy re-exports (PEP 562): importing one submodule (e.g. `judge_rl.judge.specs`) must not pull
# in asyncio, sqlite and the judges, so `judge-rl --help` stays fast.
_EXPORTS: dict[str, str] = {
    "progress_hook": "judge_rl.judge._common",
    "Judge": "judge_rl.judge.base",
    "compare_sync": "judge_rl.judge.base",
    "score_sync": "judge_rl.judge.base",
    "Budget": "judge_rl.judge.budget",
    "Estimate": "judge_rl.judge.budget",
    "CachedJudge": "judge_rl.judge.cache",
    "JudgmentCache": "judge_rl.judge.cache",
    "default_cache_path": "judge_rl.judge.cache",
    "HumanFileJudge": "judge_rl.judge.human",
    "Jury": "judge_rl.judge.jury",
    "Criterion": "judge_rl.judge.llm",
    "LLMJudge": "judge_rl.judge.llm",
    "OrderedJudge": "judge_rl.judge.order",
    "combine_orders": "judge_rl.judge.order",
    "ParseError": "judge_rl.judge.parse",
    "RewardModelJudge": "judge_rl.judge.rm",
    "find_spec": "judge_rl.judge.specs",
    "list_judges": "judge_rl.judge.specs",
    "load_judge": "judge_rl.judge.specs",
    "read_spec": "judge_rl.judge.specs",
    "validate_spec": "judge_rl.judge.specs",
    "VerifierJudge": "judge_rl.judge.verify",
}


def estimate(judge: Any, comparisons: Any) -> Any:
    """Calls, tokens and cost ``judge`` will need for ``comparisons`` (cache hits excluded), an
    :class:`Estimate`. Judges that make no model calls (verifier, human file) estimate zero."""
    from judge_rl.judge.budget import Estimate

    fn = getattr(judge, "estimate", None)
    if fn is None:
        return Estimate(comparisons=len(comparisons))
    return fn(comparisons)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'judge_rl.judge' has no attribute {name!r}")
    value = getattr(importlib.import_module(target), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Budget",
    "CachedJudge",
    "Criterion",
    "Estimate",
    "HumanFileJudge",
    "Judge",
    "JudgmentCache",
    "Jury",
    "LLMJudge",
    "OrderedJudge",
    "ParseError",
    "RewardModelJudge",
    "VerifierJudge",
    "combine_orders",
    "compare_sync",
    "default_cache_path",
    "estimate",
    "find_spec",
    "list_judges",
    "load_judge",
    "progress_hook",
    "read_spec",
    "score_sync",
    "validate_spec",
]
