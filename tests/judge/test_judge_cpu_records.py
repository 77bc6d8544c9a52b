"""Issue 19, ninth round: the prompted judge builds its JudgeCall and Judgment records without
their validators where validation would keep every value as it is (``types._fast_call``,
``types._fast_judgment``). The instance is the validating constructor's: same values of the same
types, same fields set, same dumps; anything else (a value validation converts or refuses, an
unknown key, a missing one) goes to the constructor, errors included."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from pydantic import ValidationError

from judge_rl.types import (
    JudgeCall,
    JudgeFingerprint,
    Judgment,
    _fast_call,
    _fast_judgment,
)


class _Str(str):
    pass


def _state(rec: Any) -> Any:
    """Everything a record's instance holds, with the type of every value (1 == 1.0 == True)."""

    def typed(v: Any) -> Any:
        if isinstance(v, list):
            return ("list", [typed(x) for x in v])
        if isinstance(v, JudgeCall | Judgment | JudgeFingerprint):
            return ("record", type(v).__name__, _state(v))
        if isinstance(v, float) and math.isnan(v):
            return ("nan",)
        return (type(v).__name__, v)

    return (
        type(rec).__name__,
        [(k, typed(v)) for k, v in rec.__dict__.items()],
        sorted(rec.model_fields_set),
        rec.__pydantic_extra__,
        rec.__pydantic_private__,
        rec.model_dump_json(),
        rec.model_dump_json(exclude_unset=True),
    )


def _outcome(fn: Any, kw: dict[str, Any]) -> Any:
    try:
        return ("ok", _state(fn(**kw) if fn in (JudgeCall, Judgment) else fn(dict(kw))))
    except ValidationError as e:
        return ("error", str(e))


CALL_VALUES: dict[str, list[Any]] = {
    "first_id": ["c-1", _Str("c-2"), 3, None],
    "winner": ["a", "b", "tie", None, "A", _Str("a"), 1],
    "p_a": [0.25, None, 1, True, "0.5", float("nan"), float("inf")],
    "raw": ["", "[[A]]", "x" * 199, "x" * 201, "y" * 30_000, _Str("z"), None],
    "error": [None, "parse: no verdict", _Str("timeout: x"), 5],
    "prompt_tokens": [0, 100, 1.0, True, "7", -3],
    "completion_tokens": [12, 0, 2.5],
    "cost": [0.0, 1e-05, 0, False, "0.1", -0.0],
    "latency_s": [0.05, 0, 1, None],
    "cached": [False, True, 0, "true"],
    "label_mass": [None, 0.9, 1, "x"],
    "note": [None, "low_mass", 3],
    "attempts": [None, 1, 2, True, 1.0],
    "retries": [None, 0, 1],
    "timeouts": [None, 0, 2],
    "attempt_latency_s": [None, [], [0.1], [0.1, 0.2], [1], [True], (0.1,), "0.1"],
    "raw_chars": [None, 300],
    "bogus": [1],
}


def _call_kwargs(rng: random.Random) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for key, values in CALL_VALUES.items():
        p = 0.95 if key == "first_id" else (0.02 if key in ("bogus", "raw_chars") else 0.6)
        if rng.random() < p:
            # mostly the first value of each list (the well-typed one): most cases take the
            # fast path, and every odd value still shows up on its own
            kw[key] = values[0] if rng.random() < 0.7 else rng.choice(values)
    return kw


@pytest.mark.parametrize("max_raw", [None, "250"])
def test_a_fast_call_is_the_constructors_instance(max_raw, monkeypatch):
    if max_raw is None:
        monkeypatch.delenv("JUDGE_RL_MAX_RAW_CHARS", raising=False)
    else:
        monkeypatch.setenv("JUDGE_RL_MAX_RAW_CHARS", max_raw)
    rng = random.Random(7)
    kinds = {"ok": 0, "error": 0}
    for _ in range(3000):
        kw = _call_kwargs(rng)
        want = _outcome(JudgeCall, kw)
        assert _outcome(_fast_call, kw) == want, kw
        kinds[want[0]] += 1
    assert kinds["ok"] > 500 and kinds["error"] > 500  # both paths are exercised


def test_a_fast_call_has_its_own_latency_list():
    lat = [0.1, 0.2]
    call = _fast_call({"first_id": "c", "attempt_latency_s": lat})
    assert call.attempt_latency_s == lat and call.attempt_latency_s is not lat


def _judgment_kwargs(rng: random.Random, calls: list[Any], fps: list[Any]) -> dict[str, Any]:
    values: dict[str, list[Any]] = {
        "comparison_id": ["p-1", _Str("p-2"), 1, None],
        "prompt_id": ["q", "", None],
        "a_id": ["c-1", 2],
        "b_id": ["c-2", None],
        "winner": ["a", "b", "tie", None, "B", 0],
        "p_a": [None, 0.75, 1, "0.5"],
        "judge": fps,
        "order": ["fixed", "random", "both", "FIXED", None],
        "calls": [[calls[0]], [], calls, [calls[0].model_dump()], (calls[0],), None],
        "consistent": [None, True, False, 1, "yes"],
        "members": [[], None, "x"],
        "error": [None, "parse: x", 1],
        "prompt_tokens": [100, 1.0, True],
        "completion_tokens": [12, "3"],
        "cost": [0.0, 0, 1e-5],
        "latency_s": [0.1, 1],
        "bogus": [0],
    }
    kw: dict[str, Any] = {}
    for key, vals in values.items():
        required = key in ("comparison_id", "a_id", "b_id", "judge")
        p = 0.97 if required else (0.02 if key == "bogus" else 0.6)
        if rng.random() < p:
            kw[key] = vals[0] if rng.random() < 0.7 else rng.choice(vals)
    return kw


def test_a_fast_judgment_is_the_constructors_instance():
    rng = random.Random(11)
    fp = JudgeFingerprint(name="j", kind="pairwise", params={"t": 0.0})
    calls = [
        _fast_call({"first_id": "c-1", "winner": "a", "raw": "[[A]]"}),
        JudgeCall(first_id="c-2", winner="b", p_a=0.2, attempts=1, attempt_latency_s=[0.1]),
    ]
    member = Judgment(comparison_id="p", a_id="x", b_id="y", judge=fp, winner="a")
    fps = [fp, fp.model_dump(), None]
    kinds = {"ok": 0, "error": 0}
    for i in range(3000):
        kw = _judgment_kwargs(rng, calls, fps)
        if i % 50 == 0:
            kw["members"] = [member]
        want = _outcome(Judgment, kw)
        got = _outcome(_fast_judgment, kw)
        assert got == want, kw
        kinds[want[0]] += 1
        if want[0] == "ok" and type(kw.get("judge")) is JudgeFingerprint:
            rec = _fast_judgment(dict(kw))
            assert rec.judge is kw["judge"]  # the fingerprint itself, as validation keeps it
            if all(type(c) is JudgeCall for c in kw.get("calls", ())):
                assert all(a is b for a, b in zip(rec.calls, kw.get("calls", ()), strict=True))
    assert kinds["ok"] > 500 and kinds["error"] > 500


def test_a_fast_judgments_lists_are_its_own():
    fp = JudgeFingerprint(name="j")
    calls = [_fast_call({"first_id": "c-1"})]
    rec = _fast_judgment(
        {"comparison_id": "p", "a_id": "x", "b_id": "y", "judge": fp, "calls": calls}
    )
    assert rec.calls == calls and rec.calls is not calls
    other = _fast_judgment({"comparison_id": "p", "a_id": "x", "b_id": "y", "judge": fp})
    assert other.members == [] and other.members is not rec.members
