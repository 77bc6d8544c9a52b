"""The ``prompts`` stage and the demo's task: single-digit arithmetic, answered briefly.

The task is chosen so that the embedded 135M model learns it visibly on two CPU cores: it answers
*sampled* single-digit sums correctly part of the time (it does better greedily), replies are a
few tokens long, and a verifier decides correctness exactly.

Two graders, both plain functions of (response, reference):

- **gold** (:class:`BriefAnswer`): the instruction asks for only the number, so gold is 1 when the
  reply states the answer once, as its last number, in at most ``max_words`` words (a verifiable
  instruction, in the style of IFEval); else 0.
- **proxy** (:class:`AnswerMentions`): a lenient grader that credits 1 for the first mention of the
  answer anywhere in the reply plus ``leak`` for every further mention (and, optionally,
  ``per_word`` per word: a verbosity bias, the length bias the judge audit measures). It agrees with gold on
  ordinary replies, and it is hackable: repeating the answer scores ever higher while the reply
  stops following the instruction.

:class:`GraderJudge` turns a grader into a pairwise judge (higher grade wins, equal grades tie),
so that labelling, the audit and the tournament use the same judge layer as LLM judges do.
:func:`audit_pairs` builds pairs whose correct verdict is known by construction (an answer computed
from the operands, a wrong one, a verbose or repeated one) for the audit.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from judge_rl.errors import ConfigError
from judge_rl.train.rewards import RewardQuery
from judge_rl.types import (
    Candidate,
    Comparison,
    JudgeFingerprint,
    Judgment,
    PromptItem,
    Score,
    Verdict,
)

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b}


def numbers(text: str) -> list[str]:
    """The numbers in ``text``, in order.

    >>> numbers("7 + 5 = 12.")
    ['7', '5', '12']
    """
    return _NUMBER.findall(text)


@dataclass
class PromptsConfig:
    """The ``prompts`` stage: arithmetic questions split into disjoint prompt sets."""

    op: str = "+"
    """Operation: ``+``, ``-`` or ``x``."""
    low: int = 1
    """Smallest operand."""
    high: int = 9
    """Largest operand (all ``(a, b)`` pairs in ``[low, high]`` are used, each once)."""
    instruction: str = "Reply with only the number."
    """Appended to each question."""
    system: str = ""
    """System message; empty: the chat template's default (SmolLM2's own system prompt, with
    which the embedded model answers these sums best)."""
    train: int = 40
    """Questions for RL."""
    heldout: int = 24
    """Questions for the over-optimisation monitor's gold and proxy (never trained on)."""
    tournament: int = 17
    """Questions for the tournament of checkpoints (never trained on)."""
    label: int = 8
    """Questions for the generate/label stages (taken from the RL questions)."""
    seed: int = 0
    """Seed of the shuffle that splits the questions."""


class PromptSets(BaseModel):
    """The ``prompts`` stage's output: disjoint prompt sets with reference answers."""

    train: list[PromptItem] = Field(default_factory=list)
    heldout: list[PromptItem] = Field(default_factory=list)
    tournament: list[PromptItem] = Field(default_factory=list)
    label: list[PromptItem] = Field(default_factory=list)


def make_prompts(cfg: PromptsConfig) -> PromptSets:
    """All questions ``a OP b`` for operands in ``[low, high]``, shuffled and split."""
    if cfg.op not in _OPS:
        raise ConfigError(f"unknown op {cfg.op!r} (known: {', '.join(_OPS)})", setting="op")
    if cfg.high < cfg.low:
        raise ConfigError(f"high {cfg.high} < low {cfg.low}", setting="high")
    pairs = [(a, b) for a in range(cfg.low, cfg.high + 1) for b in range(cfg.low, cfg.high + 1)]
    if cfg.op == "-":
        pairs = [(a, b) for a, b in pairs if a >= b]
    random.Random(cfg.seed).shuffle(pairs)
    need = cfg.train + cfg.heldout + cfg.tournament
    if need > len(pairs):
        raise ConfigError(
            f"train + heldout + tournament = {need} questions, but only {len(pairs)} distinct "
            f"ones exist for operands {cfg.low}..{cfg.high}",
            setting="train",
        )

    def item(a: int, b: int) -> PromptItem:
        question = f"What is {a} {cfg.op} {b}? {cfg.instruction}".strip()
        messages = [{"role": "user", "content": question}]
        if cfg.system:
            messages.insert(0, {"role": "system", "content": cfg.system})
        return PromptItem(
            prompt_id=f"{a}{cfg.op}{b}",
            prompt=messages,
            reference=str(_OPS[cfg.op](a, b)),
            category="arithmetic",
        )

    items = [item(a, b) for a, b in pairs[:need]]
    train = items[: cfg.train]
    return PromptSets(
        train=train,
        heldout=items[cfg.train : cfg.train + cfg.heldout],
        tournament=items[cfg.train + cfg.heldout : need],
        label=train[: cfg.label],
    )


@dataclass
class PromptFileConfig:
    """The ``prompt_file`` stage: a prompt set from a file, split into disjoint sets in order."""

    file: str = "builtin:gsm8k-demo"
    """Prompt file (JSONL/CSV/Parquet with ``prompt`` and optional ``reference``) or a built-in
    set (``builtin:gsm8k-demo``)."""
    instruction: str = ""
    """Appended to each text prompt (e.g. how to state the final answer)."""
    train: int = 40
    heldout: int = 10
    tournament: int = 10
    label: int = 40
    """Prompts for generate/label, taken from the start of the training prompts."""


def read_prompt_sets(cfg: PromptFileConfig) -> PromptSets:
    """Read ``cfg.file`` and split it: train, then held-out, then tournament prompts."""
    from judge_rl.data import read_prompts

    items = read_prompts(cfg.file)
    if cfg.instruction:
        items = [
            i.model_copy(update={"prompt": f"{i.prompt}\n\n{cfg.instruction}"})
            if isinstance(i.prompt, str)
            else i
            for i in items
        ]
    need = cfg.train + cfg.heldout + cfg.tournament
    if len(items) < need:
        raise ConfigError(
            f"{cfg.file} has {len(items)} prompts; train + heldout + tournament = {need}",
            setting="train",
        )
    train = items[: cfg.train]
    return PromptSets(
        train=train,
        heldout=items[cfg.train : cfg.train + cfg.heldout],
        tournament=items[cfg.train + cfg.heldout : need],
        label=train[: cfg.label],
    )


# ---------------------------------------------------------------------------------------------
# Graders


class BriefAnswer:
    """Gold: the reply states the answer once, as its last number, in at most ``max_words`` words
    ("Reply with only the number", relaxed to accept ``7 + 5 = 12`` and ``The answer is 12.``).

    >>> g = BriefAnswer(max_words=6)
    >>> g([RewardQuery("q", "12", reference="12"), RewardQuery("q", "7 + 5 = 12", reference="12"),
    ...    RewardQuery("q", "13", reference="12"), RewardQuery("q", "12 12", reference="12"),
    ...    RewardQuery("q", "The sum of seven and five is 12", reference="12")])
    [1.0, 1.0, 0.0, 0.0, 0.0]
    """

    def __init__(self, max_words: int = 6):
        if max_words < 1:
            raise ConfigError(f"must be >= 1, got {max_words}", setting="max_words")
        self.max_words = max_words
        self.name = f"brief-answer(max_words={max_words})"

    def grade(self, response: str, reference: str | None) -> float:
        if reference is None:
            return float("nan")
        nums = numbers(response)
        brief = len(response.split()) <= self.max_words
        once = sum(1 for x in nums if _same(x, reference)) == 1
        return float(bool(nums) and _same(nums[-1], reference) and once and brief)

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        return [self.grade(q.response, q.reference) for q in queries]


class AnswerMentions:
    """Proxy: 1 for the first mention of the answer anywhere, plus ``leak`` per further mention.

    >>> p = AnswerMentions(leak=0.5)
    >>> p([RewardQuery("q", "12", reference="12"), RewardQuery("q", "12 12 12", reference="12"),
    ...    RewardQuery("q", "13", reference="12")])
    [1.0, 2.0, 0.0]
    """

    def __init__(self, leak: float = 0.5, per_word: float = 0.0):
        if leak < 0:
            raise ConfigError(f"must be >= 0, got {leak}", setting="leak")
        if per_word < 0:
            raise ConfigError(f"must be >= 0, got {per_word}", setting="per_word")
        self.leak = leak
        self.per_word = per_word
        extra = f", per_word={per_word:g}" if per_word else ""
        self.name = f"answer-mentions(leak={leak:g}{extra})"

    def grade(self, response: str, reference: str | None) -> float:
        if reference is None:
            return float("nan")
        n = sum(1 for x in numbers(response) if _same(x, reference))
        bonus = self.per_word * len(response.split())  # a verbosity bias, as LLM judges have
        return float(min(n, 1)) + self.leak * max(n - 1, 0) + bonus

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        return [self.grade(q.response, q.reference) for q in queries]


def _same(x: str, reference: str) -> bool:
    try:
        return float(x) == float(reference)
    except ValueError:
        return x.strip() == reference.strip()


GRADERS: dict[str, type[BriefAnswer] | type[AnswerMentions]] = {
    "brief-answer": BriefAnswer,
    "answer-mentions": AnswerMentions,
}


def make_grader(name: str, **params: Any) -> BriefAnswer | AnswerMentions:
    """A grader by name (``brief-answer``, ``answer-mentions``) with its parameters."""
    if name not in GRADERS:
        raise ConfigError(f"unknown grader {name!r} (known: {', '.join(GRADERS)})", setting="name")
    try:
        return GRADERS[name](**params)
    except TypeError as e:
        raise ConfigError(str(e), setting=name) from None


class GraderJudge:
    """A grader as a pairwise judge: the higher grade wins, equal grades tie. No model, so no
    position to be biased by; ``p_a`` is 1, 0 or 0.5."""

    def __init__(self, grader: BriefAnswer | AnswerMentions):
        self.grader = grader
        self._fp = JudgeFingerprint(
            name=f"task:{grader.name}", kind="verifier", backend="none", params={}
        )

    @property
    def fingerprint(self) -> JudgeFingerprint:
        return self._fp

    def _grade(self, c: Candidate, reference: str | None) -> float:
        return self.grader.grade(c.response, reference or c.metadata.get("reference"))

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        out = []
        for c in comparisons:
            ga, gb = self._grade(c.a, c.reference), self._grade(c.b, c.reference)
            if ga != ga or gb != gb:  # nan: no reference
                out.append(
                    Judgment(
                        comparison_id=c.id,
                        prompt_id=c.prompt_id,
                        a_id=c.a.id,
                        b_id=c.b.id,
                        judge=self._fp,
                        error="input: no reference answer",
                    )
                )
                continue
            winner: Verdict = "a" if ga > gb else "b" if gb > ga else "tie"
            out.append(
                Judgment(
                    comparison_id=c.id,
                    prompt_id=c.prompt_id,
                    a_id=c.a.id,
                    b_id=c.b.id,
                    winner=winner,
                    p_a={"a": 1.0, "b": 0.0, "tie": 0.5}[winner],
                    judge=self._fp,
                )
            )
        return out

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        out = []
        for c in candidates:
            g = self._grade(c, None)
            ok = g == g
            out.append(
                Score(
                    candidate_id=c.id,
                    prompt_id=c.prompt_id,
                    score=g if ok else None,
                    judge=self._fp,
                    error=None if ok else "input: no reference answer",
                )
            )
        return out


def audit_pairs(items: Sequence[PromptItem], *, seed: int = 0) -> list[Comparison]:
    """Labelled pairs whose right verdict is known by construction, for auditing a judge on the
    task: per question, the right answer given briefly against a wrong one, against the right one
    repeated (the instruction asks for only the number), and against a wrong answer padded with
    words; half of them with the sides swapped. ``metadata["human"]`` holds the label.
    """
    rng = random.Random(seed)
    out: list[Comparison] = []
    for it in items:
        ref = str(it.reference)
        wrong = str(int(float(ref)) + rng.choice([-2, -1, 1, 2]))
        good = [ref, f"The answer is {ref}.", f"{ref}"]
        bad = [
            wrong,
            " ".join([ref] * 8),
            f"I think the answer might be {wrong}, or maybe not, it is hard to say.",
        ]
        for k, (g, b) in enumerate(zip(good, bad, strict=True)):
            ca = Candidate(prompt_id=it.prompt_id, prompt=it.prompt, response=g, source="right")
            cb = Candidate(prompt_id=it.prompt_id, prompt=it.prompt, response=b, source=f"bad{k}")
            swap = rng.random() < 0.5
            a, b_, human = (cb, ca, "b") if swap else (ca, cb, "a")
            out.append(
                Comparison(
                    prompt_id=it.prompt_id,
                    prompt=it.prompt,
                    a=a,
                    b=b_,
                    reference=ref,
                    metadata={"human": human, "category": ["wrong", "repeated", "padded"][k]},
                )
            )
    return out


__all__ = [
    "PromptFileConfig",
    "read_prompt_sets",
    "AnswerMentions",
    "BriefAnswer",
    "GraderJudge",
    "PromptSets",
    "PromptsConfig",
    "audit_pairs",
    "make_grader",
    "make_prompts",
    "numbers",
]
