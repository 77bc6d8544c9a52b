"""Core records. Everything that goes to disk is a pydantic model.

The pipeline's data flows one way through these records::

    Candidate ─▶ Comparison ─▶ Judgment ─▶ PreferenceRecord ─▶ reward model
                                   └──────▶ Battle ─▶ ratings

Position bias is handled by identity, not arithmetic: a :class:`JudgeCall` records which
candidate the judge saw first, and its verdict is mapped back to the comparison's ``a``/``b`` by
candidate id. A failed judgment is explicit (``winner is None`` and ``error`` set): never -1, 0.5
or a silent drop. Metrics skip failures by rule and report how many they skipped.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from judge_rl._io import content_hash

Message = dict[str, str]
"""One chat message: ``{"role": "user" | "assistant" | "system", "content": str}``."""

Prompt = str | list[Message]
"""A prompt is plain text or a list of chat messages (TRL's conversational format)."""

Verdict = Literal["a", "b", "tie"]
Origin = Literal["human", "judge", "verifier", "rating", "synthetic"]
OrderPolicy = Literal["fixed", "random", "both"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


_M = TypeVar("_M", bound=BaseModel)


MIN_RAW_CHARS = 200
"""The smallest cap :func:`max_raw_chars` returns (a shorter raw output is never clipped)."""


def max_raw_chars() -> int:
    """Stored size cap of a judge's raw output (``JUDGE_RL_MAX_RAW_CHARS``, default 20,000)."""
    import os

    try:
        return max(MIN_RAW_CHARS, int(os.environ.get("JUDGE_RL_MAX_RAW_CHARS", "20000")))
    except ValueError:
        return 20000


def clip_raw(text: str, limit: int | None = None) -> tuple[str, int | None]:
    """``(stored text, original length or None)``: a raw output longer than the cap keeps its
    head and its tail (where verdicts stand) around a marker; the original length is returned.

    >>> clip_raw("x" * 10, 400)
    ('xxxxxxxxxx', None)
    >>> t, n = clip_raw("a" * 300 + "b" * 300, 200)
    >>> n, t.startswith("a" * 100), t.endswith("b" * 100), "[clipped 400 of 600 chars]" in t
    (600, True, True, True)
    """
    cap = limit or max_raw_chars()
    if len(text) <= cap:
        return text, None
    half = cap // 2
    return f"{text[:half]}\n…[clipped {len(text) - 2 * half} of {len(text)} chars]…\n" + text[
        -half:
    ], len(text)


_SET = object.__setattr__


def unvalidated(cls: type[_M], values: dict[str, Any], given: Iterable[str]) -> _M:
    """``cls(**values)``'s instance, built without running the validator: for values the
    validating constructor keeps as they are (checked by the caller) on a record with no
    validator that changes a value. The state pydantic's validation gives: ``values`` holds
    every field in field order (defaults included), ``given`` the fields passed, no extra
    fields (``extra="forbid"``), no private attributes. About half the CPU of the constructor
    (tests/data/test_read_fast.py, tests/judge/test_label_outside_bytes.py pin the state)."""
    m = cls.__new__(cls)
    _SET(m, "__dict__", values)
    _SET(m, "__pydantic_fields_set__", set(given))
    _SET(m, "__pydantic_extra__", None)
    _SET(m, "__pydantic_private__", None)
    return m


_IS_NONE = functools.partial(operator.is_, None)
"""``exclude_if`` of the fields left out of dumps when unset: a field-level test that
pydantic-core runs without a Python serializer around the whole record (was a wrap
serializer popping the keys: ~2.5x slower per record; the same keys, values and order)."""


class _RawClipped(_Record):
    """A record with a judge's ``raw`` output: stored clipped to :func:`max_raw_chars` (the
    verdict is read before the record is built), with ``raw_chars`` the original length."""

    raw_chars: int | None = Field(default=None, exclude_if=_IS_NONE)
    """Length of the raw output before it was clipped for storage (None: not clipped; left out
    of dumps then)."""

    @model_validator(mode="before")
    @classmethod
    def _clip_raw(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and isinstance(data.get("raw"), str)
            and len(data["raw"]) > MIN_RAW_CHARS  # never clipped: no look at the environment
            and data.get("raw_chars") is None  # not clipped already (a record read back)
        ):
            text, n = clip_raw(data["raw"])
            if n is not None:
                data = {**data, "raw": text, "raw_chars": n}
        return data


def prompt_text(prompt: Prompt) -> str:
    """Flatten a prompt to text (for hashing, lengths and display).

    >>> prompt_text("hi")
    'hi'
    >>> prompt_text([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    'user: hi\\nassistant: yo'
    """
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in prompt)


def response_text(response: str | list[Message]) -> str:
    """The text of a response given as a string or as (final) assistant messages."""
    if isinstance(response, str):
        return response
    return "\n".join(m.get("content", "") for m in response)


class Candidate(_Record):
    """One response to one prompt, from one source (a model, a checkpoint, a human file)."""

    id: str = ""
    """Stable id; derived from prompt id, source and response text when empty."""
    prompt_id: str
    prompt: Prompt
    response: str
    source: str = ""
    """Model or checkpoint name that produced the response."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form: sampling parameters, token counts, finish reason, reference answer, category…"""

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = "c-" + content_hash([self.prompt_id, self.source, self.response])


class Comparison(_Record):
    """One prompt and two candidates. ``a`` and ``b`` are labels, not the order shown."""

    id: str = ""
    """Stable id; derived from the two candidate ids when empty (order-sensitive)."""
    prompt_id: str
    prompt: Prompt
    a: Candidate
    b: Candidate
    reference: str | None = None
    """Reference answer for reference-guided judges and verifiers."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """E.g. ``category``, the human label for audits, source line."""

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = "p-" + content_hash([self.prompt_id, self.a.id, self.b.id])


class JudgeFingerprint(_Record):
    """What makes two judgments comparable: same fingerprint, same judge."""

    name: str
    version: str = "1"
    kind: str = ""
    """pairwise | pointwise | reference | rubric | verifier | human | jury | reward_model"""
    model: str = ""
    backend: str = ""
    template_hash: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    """Decoding parameters and anything else that changes verdicts (never API keys)."""

    @property
    def key(self) -> str:
        """Hash of every field: the cache's judge key."""
        return content_hash(self.model_dump(mode="json"))


class JudgeCall(_RawClipped):
    """One call to a judge in one order. Its verdict is already mapped back to a/b by id."""

    first_id: str
    """Id of the candidate shown in the first position."""
    winner: Verdict | None = None
    p_a: float | None = None
    """P(comparison's ``a`` is better), mapped back from the shown order."""
    raw: str = ""
    """The judge's raw output (rationale included)."""
    error: str | None = None
    """``kind: detail``; kinds: parse, rate_limit, timeout, server, connection, malformed, empty,
    budget, backend, input."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    label_mass: float | None = Field(default=None, exclude_if=_IS_NONE)
    """Total probability on the label tokens at the verdict position (before renormalising);
    small values mean ``p_a`` says little about what the judge wrote."""
    note: str | None = Field(default=None, exclude_if=_IS_NONE)
    """Why ``p_a`` was left out or flagged (``low_mass``, ``probs_contradict``), or
    ``verdict_from_probs`` (no verdict written: taken from the label probabilities)."""
    attempts: int | None = Field(default=None, exclude_if=_IS_NONE)
    """Attempts sent to a server for this call (1 + retries); None: the backend keeps none."""
    retries: int | None = Field(default=None, exclude_if=_IS_NONE)
    timeouts: int | None = Field(default=None, exclude_if=_IS_NONE)
    """Attempts that got no answer within the backend's timeout (their work was lost)."""
    attempt_latency_s: list[float] | None = Field(default=None, exclude_if=_IS_NONE)
    """Seconds per attempt, in order (``latency_s`` is the answering attempt's)."""

    # raw_chars, label_mass, note and the transport fields are left out when unset
    # (``exclude_if``), so logs of judges without label probabilities or transport data read
    # exactly as before they existed.


class Judgment(_Record):
    """A judge's verdict on one comparison (possibly from two orders, or from a jury)."""

    comparison_id: str
    prompt_id: str = ""
    a_id: str
    b_id: str
    winner: Verdict | None = None
    """``None`` exactly when ``error`` is set."""
    p_a: float | None = None
    """P(a better) when the judge gives a probability (logprobs, jury mean, verifier certainty)."""
    judge: JudgeFingerprint
    order: OrderPolicy = "fixed"
    calls: list[JudgeCall] = Field(default_factory=list)
    """The order(s) the judge actually saw, each with its raw output."""
    consistent: bool | None = None
    """``order=both``: did the two orders agree (None when either failed or only one order)."""
    members: list[Judgment] = Field(default_factory=list)
    """Jury: each member's judgment."""
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.winner is not None

    @property
    def error_kind(self) -> str | None:
        """The part of ``error`` before the first colon (``parse``, ``timeout``…)."""
        if self.error is None:
            return None
        return self.error.split(":", 1)[0].strip()


class Score(_RawClipped):
    """A pointwise score of one candidate."""

    candidate_id: str
    prompt_id: str = ""
    score: float | None = None
    """``None`` exactly when ``error`` is set. Verifiers: 1.0 correct, 0.0 incorrect."""
    criteria: dict[str, float] = Field(default_factory=dict)
    """Rubric: each criterion's value before weighting."""
    judge: JudgeFingerprint
    raw: str = ""
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None


class PreferenceRecord(_Record):
    """A labelled pair, written in the format TRL's reward and DPO trainers read.

    ``p_chosen`` is the soft label P(chosen ≻ rejected): 1.0 for a hard label, 0.5 for a tie
    (then chosen/rejected are just a and b).
    """

    prompt: Prompt
    chosen: str | list[Message]
    rejected: str | list[Message]
    prompt_id: str = ""
    p_chosen: float = 1.0
    margin: float | None = None
    """Optional strength, e.g. rating difference, for a margin in the Bradley-Terry loss."""
    origin: Origin = "human"
    provenance: dict[str, Any] = Field(default_factory=dict)
    """Source file and line, judge fingerprint key, candidate ids and sources, category…"""

    @property
    def is_tie(self) -> bool:
        return abs(self.p_chosen - 0.5) < 1e-9

    def to_trl(self) -> dict[str, Any]:
        """A row TRL's RewardTrainer/DPOTrainer read unchanged (extra columns allowed)."""
        row: dict[str, Any] = {
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
        }
        row["p_chosen"] = self.p_chosen
        if self.margin is not None:
            row["margin"] = self.margin
        row["origin"] = self.origin
        if self.prompt_id:
            row["prompt_id"] = self.prompt_id
        return row


class PromptItem(_Record):
    """One prompt of a prompt set (for generation, PPO and tournaments)."""

    prompt_id: str
    prompt: Prompt
    reference: str | None = None
    """Reference answer (GSM8K final answer, MT-Bench reference) when the set has one."""
    category: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Battle(_Record):
    """One head-to-head result: the input of every rating."""

    model_a: str
    model_b: str
    winner: Verdict
    prompt_id: str = ""
    judge: str = ""
    weight: float = 1.0


Judgment.model_rebuild()


# --- building the judge layer's records without their validators -----------------------------
# A prompted judge builds a JudgeCall and a Judgment per call from values it made itself (ids of
# validated comparisons, its own fingerprint, a backend's counts). Validating them again is most
# of their cost (~7-10 us each). ``_fast_call``/``_fast_judgment`` give the instance the
# validating constructor gives (same values, same fields set) when every value is of the exact
# type validation keeps unchanged, and call the constructor otherwise (a 0 where a float goes,
# a bool where an int goes, a str subclass, an unknown key...: converted or refused as before).
# tests/judge/test_judge_cpu_records.py pins the state against the constructor.

_NONE = type(None)
_STR, _INT, _FLOAT, _BOOL = (frozenset({t}) for t in (str, int, float, bool))
_STR_OR_NONE, _INT_OR_NONE, _FLOAT_OR_NONE = (frozenset({t, _NONE}) for t in (str, int, float))
_CALL_TYPES: dict[str, frozenset[type]] = {
    "raw_chars": _INT_OR_NONE,
    "first_id": _STR,
    "winner": _STR_OR_NONE,  # and one of a, b, tie
    "p_a": _FLOAT_OR_NONE,
    "raw": _STR,
    "error": _STR_OR_NONE,
    "prompt_tokens": _INT,
    "completion_tokens": _INT,
    "cost": _FLOAT,
    "latency_s": _FLOAT,
    "cached": _BOOL,
    "label_mass": _FLOAT_OR_NONE,
    "note": _STR_OR_NONE,
    "attempts": _INT_OR_NONE,
    "retries": _INT_OR_NONE,
    "timeouts": _INT_OR_NONE,
    "attempt_latency_s": frozenset({list, _NONE}),  # of floats
}
_VERDICTS = frozenset({"a", "b", "tie", None})
_CALL_DEFAULTS = {name: f.default for name, f in JudgeCall.model_fields.items()}


def _kept(kw: dict[str, Any], types: dict[str, frozenset[type]]) -> bool:
    """Whether validation keeps every value of ``kw`` as it is: known keys, exact types (a
    Literal's value checked by the caller)."""
    try:
        for key, value in kw.items():
            if type(value) not in types[key]:
                return False
    except KeyError:  # an unknown key: the constructor's error
        return False
    return True


def _fast_call(kw: dict[str, Any]) -> JudgeCall:
    """``JudgeCall(**kw)``: the same instance, without the validator where it would keep
    every value as it is (the raw output clipped as the validator clips it)."""
    lat = kw.get("attempt_latency_s")
    if (
        not _kept(kw, _CALL_TYPES)
        or kw.get("winner") not in _VERDICTS
        or "first_id" not in kw
        or "raw_chars" in kw
        or (lat and any(type(x) is not float for x in lat))
    ):
        return JudgeCall(**kw)
    values = dict(_CALL_DEFAULTS)
    values.update(kw)
    given: Any = kw.keys()
    raw = values["raw"]
    if len(raw) > MIN_RAW_CHARS:  # _RawClipped._clip_raw
        text, n = clip_raw(raw)
        if n is not None:
            values["raw"], values["raw_chars"] = text, n
            given = {*given, "raw_chars"}
    if lat is not None:
        values["attempt_latency_s"] = list(lat)  # validation's own list
    return unvalidated(JudgeCall, values, given)


_JUDGMENT_TYPES: dict[str, frozenset[type]] = {
    "comparison_id": _STR,
    "prompt_id": _STR,
    "a_id": _STR,
    "b_id": _STR,
    "winner": _STR_OR_NONE,  # and one of a, b, tie
    "p_a": _FLOAT_OR_NONE,
    "judge": frozenset({JudgeFingerprint}),
    "order": _STR,  # and one of fixed, random, both
    "calls": frozenset({list}),  # of JudgeCall
    "consistent": frozenset({bool, _NONE}),
    "members": frozenset({list}),  # of Judgment
    "error": _STR_OR_NONE,
    "prompt_tokens": _INT,
    "completion_tokens": _INT,
    "cost": _FLOAT,
    "latency_s": _FLOAT,
}
_ORDERS = frozenset({"fixed", "random", "both"})
_FACTORY = object()
_JUDGMENT_DEFAULTS: dict[str, Any] = {
    name: _FACTORY if f.default_factory is not None else f.default
    for name, f in Judgment.model_fields.items()
}


def _fast_judgment(kw: dict[str, Any]) -> Judgment:
    """``Judgment(**kw)``: the same instance, without the validator where it would keep every
    value as it is (its calls and members already records of their own class)."""
    if (
        not _kept(kw, _JUDGMENT_TYPES)
        or kw.get("winner") not in _VERDICTS
        or kw.get("order", "fixed") not in _ORDERS
        or not ("comparison_id" in kw and "a_id" in kw and "b_id" in kw and "judge" in kw)
    ):
        return Judgment(**kw)
    values = dict(_JUDGMENT_DEFAULTS)  # field order
    values.update(kw)
    for name, cls in (("calls", JudgeCall), ("members", Judgment)):
        records = values[name]
        if records is _FACTORY:
            values[name] = []
            continue
        for rec in records:
            if type(rec) is not cls:
                return Judgment(**kw)
        values[name] = list(records)  # validation's own list
    return unvalidated(Judgment, values, kw.keys())


__all__ = [
    "Battle",
    "Candidate",
    "Comparison",
    "JudgeCall",
    "JudgeFingerprint",
    "Judgment",
    "Message",
    "OrderPolicy",
    "Origin",
    "PreferenceRecord",
    "Prompt",
    "PromptItem",
    "Score",
    "Verdict",
    "prompt_text",
    "response_text",
]
