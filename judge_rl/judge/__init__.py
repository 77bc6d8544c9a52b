"""The judge layer: one abstraction for labelling, RL reward, gold signals and tournaments.

- :func:`load_judge` builds a judge from ``judges/<name>/judge.yaml`` (see :mod:`.specs`).
- :class:`LLMJudge` (prompted: pairwise, reference, pointwise, rubric), :class:`HumanFileJudge`,
  :class:`Jury`, :class:`RewardModelJudge`; the verifier is :class:`judge_rl.judge.verify.VerifierJudge`.
- :class:`OrderedJudge`: position control by identity (``order = fixed | random | both``).
- :class:`JudgmentCache` / :class:`CachedJudge`: the shared SQLite cache.
- :class:`Budget` / :class:`Estimate`: limits and estimates of calls and cost.

Everything here imports quickly; backends and torch load only when a judge needs them.
"""

from typing import Any

from judge_rl.judge._common import progress_hook
from judge_rl.judge.base import Judge, compare_sync, score_sync
from judge_rl.judge.budget import Budget, Estimate
from judge_rl.judge.cache import CachedJudge, JudgmentCache, default_cache_path
from judge_rl.judge.human import HumanFileJudge
from judge_rl.judge.jury import Jury
from judge_rl.judge.llm import Criterion, LLMJudge
from judge_rl.judge.order import OrderedJudge, combine_orders
from judge_rl.judge.parse import ParseError
from judge_rl.judge.rm import RewardModelJudge
from judge_rl.judge.specs import find_spec, list_judges, load_judge, read_spec


def estimate(judge: Any, comparisons: Any) -> Estimate:
    """Calls, tokens and cost ``judge`` will need for ``comparisons`` (cache hits excluded).

    Judges that make no model calls (verifier, human file) estimate zero calls.
    """
    fn = getattr(judge, "estimate", None)
    if fn is None:
        return Estimate(comparisons=len(comparisons))
    return fn(comparisons)  # type: ignore[no-any-return]


def __getattr__(name: str) -> Any:
    if name == "VerifierJudge":
        from judge_rl.judge.verify import VerifierJudge

        return VerifierJudge
    raise AttributeError(name)


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
]
