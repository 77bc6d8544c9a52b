"""Reward sources for PPO and the over-optimisation monitor (the :class:`RewardSource` protocol
of :mod:`judge_rl.train.rewards`).

Sources:

- :class:`VerifierReward`: 1.0 when the response's answer matches ``RewardQuery.reference``
  (GSM8K and friends, :func:`judge_rl.judge.verify.verify`), else 0.0;
- :class:`RewardModelReward`: a reward model trained by ``judge-rl train-rm``;
- :class:`JudgeReward`: any pointwise judge of the judge layer (LLM judge, rubric), through its
  cache and concurrency limits;
- :class:`PairwiseReward`: a pairwise judge against the reference response: win 1, tie 0.5,
  loss 0 (or the judge's ``p_a``);
- :class:`ContainsReward`: a toy verifier, 1.0 when the response contains a word (or the count
  of occurrences), for tests and planted reward hacks;
- :class:`WeightedSum`: ``Σ w_i r_i``.

A failed score is ``nan``; the trainer drops it from the update and counts it.

Spec mini-syntax (:func:`make_reward_source`)::

    SPEC  := TERM ("+" TERM)*
    TERM  := [WEIGHT "*"] KIND [":" ARG]
    KIND  := verifier | rm | judge | pairwise | contains | count | length

    verifier[:MODE]        MODE of judge_rl.judge.verify (auto, gsm8k, numeric, boxed, …)
    rm:PATH                reward-model folder from train-rm
    judge:NAME             pointwise judge by name or judge.yaml path
    pairwise:NAME[:prob]   pairwise judge vs RewardQuery.reference; ``prob`` uses p_a
    contains:WORD          1.0 if WORD occurs in the response, else 0.0
    count:WORD             number of occurrences of WORD
    length                 response length in characters (for penalties: -0.01*length)
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judge_rl.errors import ConfigError
from judge_rl.train.rewards import RewardQuery, RewardSource

log = logging.getLogger(__name__)

NAN = float("nan")
KINDS = ("verifier", "rm", "judge", "pairwise", "contains", "count", "length")


# ---------------------------------------------------------------------------------------------
# Sources


class ContainsReward:
    """Toy verifier: does the response contain ``word`` (or how often, with ``count=True``)?

    >>> r = ContainsReward("ab")
    >>> r([RewardQuery("p", "xxabyab"), RewardQuery("p", "no")])
    [1.0, 0.0]
    >>> ContainsReward("ab", count=True)([RewardQuery("p", "xxabyab")])
    [2.0]
    """

    def __init__(self, word: str, *, count: bool = False, case_sensitive: bool = True):
        if not word:
            raise ConfigError("needs a non-empty word", setting="reward")
        self.word = word
        self.count = count
        self.case_sensitive = case_sensitive
        self.name = f"{'count' if count else 'contains'}:{word}"

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        out = []
        for q in queries:
            text, word = (
                (q.response, self.word)
                if self.case_sensitive
                else (q.response.lower(), self.word.lower())
            )
            n = text.count(word)
            out.append(float(n) if self.count else float(n > 0))
        return out


class LengthReward:
    """Response length in characters (use with a negative weight as a length penalty)."""

    name = "length"

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        return [float(len(q.response)) for q in queries]


class VerifierReward:
    """1.0 when the response's answer matches the query's reference, 0.0 when not, ``nan`` when
    there is no reference (an explicit failure, never a guess)."""

    def __init__(self, mode: str = "auto"):
        from judge_rl.judge.verify import MODES

        if mode not in MODES:
            raise ConfigError(
                f"unknown verifier mode {mode!r} (known: {', '.join(MODES)})", setting="reward"
            )
        self.mode = mode
        self.name = f"verifier:{mode}"
        self.missing_reference = 0

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        from judge_rl.judge.verify import verify

        out = []
        for q in queries:
            if q.reference is None:
                self.missing_reference += 1
                out.append(NAN)
                continue
            try:
                out.append(1.0 if verify(q.response, str(q.reference), self.mode) else 0.0)
            except Exception as e:  # a verifier crash is a failed score, not a zero
                log.warning("verifier failed on %r: %s", q.prompt_id, e)
                out.append(NAN)
        return out


class RewardModelReward:
    """A reward model from ``judge-rl train-rm`` (loaded on first use)."""

    def __init__(self, path: str, *, device: str | None = None, batch_size: int = 16):
        if not Path(path).exists():
            raise ConfigError(f"reward model folder {path} does not exist", setting="reward")
        if not (Path(path) / "config.json").exists():
            raise ConfigError(
                f"{path} is not a reward model folder (no config.json)", setting="reward"
            )
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.name = f"rm:{path}"
        self._scorer: Any = None

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        if self._scorer is None:
            from judge_rl.train.reward_model import RewardModelScorer

            self._scorer = RewardModelScorer(
                self.path, device=self.device, batch_size=self.batch_size
            )
        scores = self._scorer.score([q.prompt for q in queries], [q.response for q in queries])
        return [NAN if s is None else float(s) for s in scores]


def _candidate(q: RewardQuery, response: str, source: str) -> Any:
    from judge_rl.types import Candidate

    meta = dict(q.metadata)
    if q.reference is not None:
        meta["reference"] = q.reference
    return Candidate(
        prompt_id=q.prompt_id or "p",
        prompt=q.prompt,
        response=response,
        source=source,
        metadata=meta,
    )


class JudgeReward:
    """A pointwise judge of the judge layer (its cache and concurrency apply)."""

    def __init__(self, name: str, *, judge: Any = None):
        self.name = f"judge:{name}"
        self.judge = judge if judge is not None else _load_judge(name)
        self.failures = 0

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        from judge_rl.judge.base import score_sync

        scores = score_sync(self.judge, [_candidate(q, q.response, "policy") for q in queries])
        out = []
        for s in scores:
            if s.error is not None or s.score is None:
                self.failures += 1
                out.append(NAN)
            else:
                out.append(float(s.score))
        return out

    @property
    def fingerprints(self) -> list[Any]:
        return [self.judge.fingerprint]


class PairwiseReward:
    """A pairwise judge comparing the response (``a``) with the reference response (``b``):
    win 1.0, tie 0.5, loss 0.0, or the judge's ``p_a`` with ``use_prob``."""

    def __init__(self, name: str, *, use_prob: bool = False, judge: Any = None):
        self.name = f"pairwise:{name}" + (":prob" if use_prob else "")
        self.use_prob = use_prob
        self.judge = judge if judge is not None else _load_judge(name)
        self.failures = 0

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        from judge_rl.judge.base import compare_sync
        from judge_rl.types import Comparison

        out: list[float] = [NAN] * len(queries)
        comps, where = [], []
        for i, q in enumerate(queries):
            if q.reference is None:
                self.failures += 1
                continue
            comps.append(
                Comparison(
                    prompt_id=q.prompt_id or "p",
                    prompt=q.prompt,
                    a=_candidate(q, q.response, "policy"),
                    b=_candidate(q, str(q.reference), "reference"),
                    reference=q.reference,
                )
            )
            where.append(i)
        if comps:
            for i, j in zip(where, compare_sync(self.judge, comps), strict=True):
                out[i] = _pairwise_value(j, self.use_prob)
                if math.isnan(out[i]):
                    self.failures += 1
        return out

    @property
    def fingerprints(self) -> list[Any]:
        return [self.judge.fingerprint]


def _pairwise_value(judgment: Any, use_prob: bool) -> float:
    """1 / 0.5 / 0 for a win / tie / loss of ``a``; ``p_a`` when asked and given; nan on failure.

    >>> from types import SimpleNamespace as N
    >>> [_pairwise_value(N(error=None, winner=w, p_a=None), False) for w in "a b tie".split()]
    [1.0, 0.0, 0.5]
    >>> _pairwise_value(N(error=None, winner="a", p_a=0.8), True)
    0.8
    """
    if judgment.error is not None or judgment.winner is None:
        return NAN
    if use_prob and judgment.p_a is not None:
        return float(judgment.p_a)
    return {"a": 1.0, "tie": 0.5, "b": 0.0}[judgment.winner]


class WeightedSum:
    """``Σ w_i r_i``; ``nan`` when any part failed for that query."""

    def __init__(self, terms: Sequence[tuple[float, RewardSource]]):
        self.terms = list(terms)
        self.name = "+".join(f"{w:g}*{s.name}" for w, s in self.terms)

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        total = [0.0] * len(queries)
        for w, src in self.terms:
            for i, v in enumerate(src(queries)):
                total[i] += w * float(v)  # nan propagates
        return total

    @property
    def fingerprints(self) -> list[Any]:
        return [fp for _, s in self.terms for fp in getattr(s, "fingerprints", [])]


def _load_judge(name: str) -> Any:
    try:
        from judge_rl.judge import load_judge
    except ImportError:
        raise ConfigError(
            "the judge layer is not available in this install", setting="reward"
        ) from None
    return load_judge(name, cache="default")  # the shared judgment cache


# ---------------------------------------------------------------------------------------------
# Spec parsing


_TERM_RE = re.compile(
    r"^\s*(?:(?P<w>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*)?"
    r"(?P<kind>[a-z_]+)(?::(?P<arg>.*))?\s*$"
)


def parse_spec(spec: str) -> list[tuple[float, str, str]]:
    """Split a reward spec into ``(weight, kind, arg)`` terms.

    >>> parse_spec("verifier:gsm8k")
    [(1.0, 'verifier', 'gsm8k')]
    >>> parse_spec("0.7*rm:out/rm + 0.3*verifier")
    [(0.7, 'rm', 'out/rm'), (0.3, 'verifier', '')]
    >>> parse_spec("count:cat+-0.01*length")
    [(1.0, 'count', 'cat'), (-0.01, 'length', '')]
    >>> parse_spec("bogus:x")
    Traceback (most recent call last):
    ...
    judge_rl.errors.ConfigError: reward: unknown reward kind 'bogus' in 'bogus:x' (known: verifier, rm, judge, pairwise, contains, count, length)
    """
    if not spec or not spec.strip():
        raise ConfigError("empty reward spec", setting="reward")
    # Split on '+' that starts a new term (not a sign right after '*' or at the start).
    parts, cur = [], ""
    for ch in spec:
        if ch == "+" and cur.strip() and not cur.rstrip().endswith("*"):
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    if any(not p.strip() for p in parts):
        raise ConfigError(f"empty term in reward spec {spec!r}", setting="reward")
    out = []
    for part in parts:
        m = _TERM_RE.match(part)
        if not m:
            raise ConfigError(
                f"cannot parse reward term {part.strip()!r} in {spec!r} "
                "(expected [WEIGHT*]KIND[:ARG])",
                setting="reward",
            )
        kind = m["kind"]
        if kind not in KINDS:
            raise ConfigError(
                f"unknown reward kind {kind!r} in {spec!r} (known: {', '.join(KINDS)})",
                setting="reward",
            )
        out.append((float(m["w"]) if m["w"] else 1.0, kind, (m["arg"] or "").strip()))
    return out


def _make_one(kind: str, arg: str) -> RewardSource:
    if kind == "verifier":
        return VerifierReward(arg or "auto")
    if kind == "rm":
        if not arg:
            raise ConfigError("rm needs a path: rm:PATH", setting="reward")
        return RewardModelReward(arg)
    if kind == "judge":
        if not arg:
            raise ConfigError("judge needs a name: judge:NAME", setting="reward")
        return JudgeReward(arg)
    if kind == "pairwise":
        name, _, opt = arg.partition(":")
        if not name:
            raise ConfigError("pairwise needs a judge name: pairwise:NAME", setting="reward")
        if opt not in ("", "prob"):
            raise ConfigError(f"pairwise option {opt!r}: only 'prob'", setting="reward")
        return PairwiseReward(name, use_prob=opt == "prob")
    if kind in ("contains", "count"):
        return ContainsReward(arg, count=kind == "count")
    if kind == "length":
        return LengthReward()
    raise ConfigError(f"unknown reward kind {kind!r}", setting="reward")


def make_reward_source(spec: str) -> RewardSource:
    """A reward source from a spec string (see the module docstring for the syntax).

    >>> make_reward_source("contains:yes").name
    'contains:yes'
    >>> make_reward_source("2*count:a+-1*length").name
    '2*count:a+-1*length'
    """
    terms = parse_spec(spec)
    if len(terms) == 1 and terms[0][0] == 1.0:
        return _make_one(terms[0][1], terms[0][2])
    return WeightedSum([(w, _make_one(k, a)) for w, k, a in terms])


__all__ = [
    "ContainsReward",
    "JudgeReward",
    "LengthReward",
    "PairwiseReward",
    "RewardModelReward",
    "VerifierReward",
    "WeightedSum",
    "make_reward_source",
    "parse_spec",
]
