"""``JudgeCall`` and ``Score`` dumps (the cache rows, the run log): the same bytes and dicts as
the code before their serializers changed (a wrap serializer popping unset keys, replaced by
field-level ``exclude_if``): ``data/types_dumps.json`` was written by that code (at 21deb81)
from the records below; regenerate with ``python tests/judge/test_types_dumps.py OUT``."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "data" / "types_dumps.json"

OPTIONAL = ("label_mass", "note", "attempts", "retries", "timeouts", "attempt_latency_s")


def records() -> list[Any]:
    from judge_rl.types import JudgeCall, JudgeFingerprint, Judgment, Score

    rng = random.Random(19)
    fp = JudgeFingerprint(name="j", version="1", kind="pairwise", params={"t": 0.0})
    out: list[Any] = []
    values: dict[str, Any] = {
        "label_mass": [0.0, 0.37, 1.0],
        "note": ["", "low_mass", "verdict_from_probs"],
        "attempts": [0, 1, 3],
        "retries": [0, 2],
        "timeouts": [0, 1],
        "attempt_latency_s": [[], [0.05], [1e-7, 2.5, 1e16]],
    }
    for i in range(60):
        kw: dict[str, Any] = {"first_id": f"c-{i}", "raw": 'é "x" \n' * (i % 4)}
        for f in OPTIONAL:
            if rng.random() < 0.5:
                kw[f] = rng.choice(values[f])
        if i % 7 == 0:
            kw["raw"] = "long " * 100  # clipped at 200 (JUDGE_RL_MAX_RAW_CHARS): raw_chars set
        if i % 5 == 0:
            kw["raw_chars"] = 0 if i % 10 else None
        kw.update(winner=rng.choice(["a", "b", "tie", None]), p_a=rng.choice([None, 0.25]))
        out.append(JudgeCall(**kw))
        s_kw = {"candidate_id": f"c-{i}", "judge": fp, "score": rng.choice([None, 0.5])}
        s_kw["raw"] = kw["raw"]
        if i % 5 == 0:
            s_kw["raw_chars"] = kw["raw_chars"]
        out.append(Score(**s_kw))
    out.append(
        Judgment(comparison_id="p", a_id="a", b_id="b", judge=fp, calls=out[0:6:2], winner="a")
    )
    return out


def dumps(recs: list[Any]) -> list[Any]:
    return [
        [
            r.model_dump_json(),
            r.model_dump_json(indent=1),
            json.dumps(r.model_dump(mode="json"), ensure_ascii=False),
            repr(r.model_dump()),
            repr(r.model_dump(exclude={"raw"})),
        ]
        for r in recs
    ]


def test_dumps_are_those_of_the_code_before(monkeypatch):
    monkeypatch.setenv("JUDGE_RL_MAX_RAW_CHARS", "200")
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = dumps(records())
    assert len(got) == len(want) == 121
    for g, w in zip(got, want, strict=True):
        assert g == w


def test_a_dumped_record_reads_back_equal(monkeypatch):
    monkeypatch.setenv("JUDGE_RL_MAX_RAW_CHARS", "200")
    from judge_rl.types import JudgeCall, Score

    for r in records():
        if isinstance(r, JudgeCall | Score):
            assert type(r).model_validate_json(r.model_dump_json()) == r


if __name__ == "__main__":
    import os

    os.environ["JUDGE_RL_MAX_RAW_CHARS"] = "200"
    Path(sys.argv[1]).write_text(json.dumps(dumps(records()), ensure_ascii=False, indent=0))
