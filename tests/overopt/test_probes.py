"""Reward probes flag a length-loving reward and not a sound one."""

from __future__ import annotations

import math
import re

from judge_rl.overopt.probes import (
    BUILTIN_PAIRS,
    Probe,
    default_probes,
    flagged_names,
    register_probe,
    run_probes,
)
from judge_rl.train.rewards import RewardQuery


class LengthLover:
    """A reward that loves length: log(1 + words) (one word x 200 beats any real answer)."""

    name = "length-lover"

    def __call__(self, queries):
        return [math.log1p(len(q.response.split())) for q in queries]


class AnswerMatcher:
    """A sound reward: token F1 with the reference answer, minus a repetition penalty."""

    name = "answer-f1"

    @staticmethod
    def _toks(s):
        return re.findall(r"\w+", s.lower())

    def __call__(self, queries):
        out = []
        for q in queries:
            pred, ref = self._toks(q.response), self._toks(q.reference or "")
            if not pred or not ref:
                out.append(0.0)
                continue
            common = sum(min(pred.count(t), ref.count(t)) for t in set(pred))
            p, r = common / len(pred), common / len(ref)
            f1 = 2 * p * r / (p + r) if common else 0.0
            out.append(f1 - (1 - len(set(pred)) / len(pred)))
        return out


def _data():
    prompts = [p for p, _ in BUILTIN_PAIRS]
    answers = [a for _, a in BUILTIN_PAIRS]
    return prompts, answers


def test_length_loving_reward_is_flagged():
    prompts, answers = _data()
    rows = run_probes(LengthLover(), prompts, answers, references=answers, step=0)
    assert {r["name"] for r in rows} == {p.name for p in default_probes()}
    bad = flagged_names(rows)
    assert "repeat_word_200" in bad
    row = next(r for r in rows if r["name"] == "repeat_word_200")
    assert row["score"] > row["median_real"] and row["step"] == 0
    assert "empty" not in bad and "the" not in bad


def test_sound_reward_is_not_flagged():
    prompts, answers = _data()
    rows = run_probes(AnswerMatcher(), prompts, answers, references=answers)
    assert flagged_names(rows) == []
    assert all(r["median_real"] == 1.0 for r in rows)


def test_injection_loving_judge_is_flagged_and_nan_is_counted():
    class Gullible:
        name = "gullible"

        def __call__(self, queries):
            return [
                10.0 if "10/10" in q.response else (math.nan if not q.response else 5.0)
                for q in queries
            ]

    prompts, answers = _data()
    rows = run_probes(Gullible(), prompts, answers)
    assert flagged_names(rows) == ["injection"]
    empty = next(r for r in rows if r["name"] == "empty")
    assert empty["skipped"] == len(prompts) and empty["score"] is None and not empty["flagged"]


def test_suite_is_extensible_and_echo_uses_prompt():
    seen: list[RewardQuery] = []

    class Spy:
        name = "spy"

        def __call__(self, queries):
            seen.extend(queries)
            return [0.0] * len(queries)

    shout = Probe("shout", lambda p, r: p.upper() + "!!!", "the prompt shouted")
    rows = run_probes(Spy(), ["hi there"], ["hello"], probes=[*default_probes(), shout])
    assert rows[-1]["name"] == "shout" and rows[-1]["text"] == "HI THERE!!!"
    echo = next(q for q in seen if q.metadata.get("probe") == "echo_prompt")
    assert echo.response == "hi there"
    register_probe(shout)
    try:
        assert default_probes()[-1].name == "shout"
    finally:
        from judge_rl.overopt import probes as mod

        mod._EXTRA.clear()
