"""Issue 19 item 2, eighth round: what `judge-rl label` does after its last answer (the records,
the summary, the preference file, the run log) is cheaper and writes the same bytes.

``data/label_outside_bytes.json`` holds the sha256 of each output, written by the code before
this round (6f233c6) from the judgments below: ties, failures of several kinds, both orders,
juries, cached calls, label masses, conversational prompts, and fingerprints that are equal
copies (as judgments read back from the cache carry) or differ only in a value's type (1 vs
1.0 vs True, 0.0 vs -0.0, key order). Regenerate with
``python tests/judge/test_label_outside_bytes.py OUT`` (with the code before a change)."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._validator_count import count_validator_runs

GOLDEN = Path(__file__).parent / "data" / "label_outside_bytes.json"

PARAMS: list[dict[str, Any]] = [
    {"temperature": 0.0, "max_tokens": 32, "top_p": 1.0, "backend": {}},
    {"temperature": -0.0, "max_tokens": 32, "top_p": 1.0, "backend": {}},
    {"temperature": 0.0, "max_tokens": 32.0, "top_p": 1, "backend": {}},
    {"temperature": 0.0, "max_tokens": 32, "top_p": True, "backend": {}},
    {"max_tokens": 32, "temperature": 0.0, "top_p": 1.0, "backend": {}},
    {"temperature": 0.0, "max_tokens": 32, "top_p": 1.0, "backend": {"u": ["x", 1, None]}},
    {"temperature": 0.0, "max_tokens": 32, "top_p": 1.0, "backend": {"u": ["x", 1.0, None]}},
]


def fingerprint(rng: random.Random) -> Any:
    """A judge fingerprint: mostly equal copies of one (read back from JSON, as the cache's
    judgments are), sometimes one that differs only in a value's type or order."""
    from judge_rl.types import JudgeFingerprint

    params = PARAMS[0] if rng.random() < 0.7 else rng.choice(PARAMS)
    fp = JudgeFingerprint(name="judge", kind="pairwise", model="m", backend="openai", params=params)
    if rng.random() < 0.5:
        return JudgeFingerprint.model_validate_json(fp.model_dump_json())
    return fp


def comparisons_and_judgments(n: int = 90) -> tuple[list[Any], list[Any]]:
    from judge_rl.types import Candidate, Comparison, JudgeCall, Judgment

    rng = random.Random(8)
    shared = fingerprint(rng)
    comps, judgs = [], []
    for i in range(n):
        prompt: Any = f"question {i} ¿é?" if i % 6 else [{"role": "user", "content": f"q{i}"}]
        meta: dict[str, Any] = {"file": "pairs.jsonl", "line": i + 1}
        if i % 4 == 0:
            meta["category"] = rng.choice(["math", "writing"])
        a = Candidate(prompt_id=f"p{i}", prompt=prompt, response=f"first {i}", source="m1")
        b = Candidate(prompt_id=f"p{i}", prompt=prompt, response=f"second {i} ✓", source="m2")
        c = Comparison(prompt_id=f"p{i}", prompt=prompt, a=a, b=b, metadata=meta)
        comps.append(c)
        fp = shared if i % 3 == 0 else fingerprint(rng)

        def call(first: str, winner: Any, p_a: Any = None, i: int = i, **kw: Any) -> Any:
            extra: dict[str, Any] = {}
            if rng.random() < 0.3:
                extra["label_mass"] = rng.choice([0.05, 0.5, 0.99])
                extra["note"] = rng.choice([None, "probs_contradict", "verdict_from_probs"])
            if rng.random() < 0.5:
                extra.update(attempts=1, retries=0, timeouts=0, attempt_latency_s=[0.05])
            return JudgeCall(
                first_id=first,
                winner=winner,
                p_a=p_a,
                raw=f"answer {i} [[{winner}]]",
                prompt_tokens=100 + i,
                completion_tokens=12,
                cost=rng.choice([0.0, 1e-5, 0.00123]),
                latency_s=0.05 * (i % 5),
                cached=rng.random() < 0.2,
                **extra,
                **kw,
            )

        usage = {"prompt_tokens": 100 + i, "completion_tokens": 12, "cost": 1e-5 * i}
        kind = i % 9
        if kind in (0, 1, 2):  # decided, single order (a probability sometimes)
            w = rng.choice(["a", "b"])
            p = rng.choice([None, 0.9, 0.2, 0.5])
            j = Judgment(
                comparison_id=c.id,
                prompt_id=c.prompt_id,
                a_id=a.id,
                b_id=b.id,
                winner=w,
                p_a=p,
                judge=fp,
                calls=[call(a.id, w, p)],
                **usage,
            )
        elif kind == 3:  # a tie
            j = Judgment(
                comparison_id=c.id,
                prompt_id=c.prompt_id,
                a_id=a.id,
                b_id=b.id,
                winner="tie",
                judge=fp,
                calls=[call(a.id, "tie")],
                **usage,
            )
        elif kind == 4:  # failures of several kinds
            err = rng.choice(["parse: no verdict", "timeout: 60s", "server: HTTP 500", None])
            j = Judgment(
                comparison_id=c.id,
                prompt_id=c.prompt_id,
                a_id=a.id,
                b_id=b.id,
                judge=fp,
                error=err,
                calls=[call(a.id, None, error=err)],
                **usage,
            )
        elif kind in (5, 6):  # both orders
            w1, w2 = rng.choice(["a", "b", "tie"]), rng.choice(["a", "b"])
            j = Judgment(
                comparison_id=c.id,
                prompt_id=c.prompt_id,
                a_id=a.id,
                b_id=b.id,
                winner=w1,
                judge=fp,
                order="both",
                consistent=w1 == w2,
                calls=[call(a.id, w1), call(b.id, w2)],
                **usage,
            )
        else:  # a jury of two members (its calls are its members')
            members = [
                Judgment(
                    comparison_id=c.id,
                    prompt_id=c.prompt_id,
                    a_id=a.id,
                    b_id=b.id,
                    winner=w,
                    judge=fingerprint(rng),
                    calls=[call(a.id, w)],
                    **usage,
                )
                for w in (rng.choice(["a", "b"]), rng.choice(["a", "tie"]))
            ]
            j = Judgment(
                comparison_id=c.id,
                prompt_id=c.prompt_id,
                a_id=a.id,
                b_id=b.id,
                winner=members[0].winner,
                p_a=0.75,
                judge=fp,
                members=members,
                **usage,
            )
        judgs.append(j)
    return comps, judgs


def outputs(tmp: Path) -> dict[str, str]:
    """Each output of the label stage after its last answer, as text (the summary) or as a
    sha256 of its bytes."""
    from judge_rl.data import write_preferences
    from judge_rl.pipeline.label import LabelConfig, make_labels, summarize, to_records
    from judge_rl.runlog import RunLog

    comps, judgs = comparisons_and_judgments()
    out: dict[str, str] = {}
    for drop in (True, False):
        cfg = LabelConfig(drop_ties=drop)
        labels = make_labels(cfg, comps, judgs, 1.25)
        tag = "drop" if drop else "keep"
        out[f"summary-{tag}"] = labels.section.summary.model_dump_json()
        out[f"labels-{tag}"] = _sha(labels.model_dump_json(indent=1).encode())
        for ext in (".jsonl", ".json", ".csv", ".jsonl.gz"):
            path = write_preferences(labels.records, tmp / f"prefs-{tag}{ext}")
            out[f"prefs-{tag}{ext}"] = _sha(path.read_bytes())
        log = RunLog(
            run="r",
            command="label",
            created="2026-12-02T00:00:00+00:00",
            config={"x": 1},
            environment={"python": "3"},
            timings={"label": 1.25},
            cost={"label": 0.5},
        )
        for f in [j.judge for j in judgs[:3]]:
            log.add_judge(f)
        labels.section.output = str(tmp / "prefs.jsonl").replace(str(tmp), "<tmp>")
        log.label = labels.section
        saved = log.save(tmp / f"run-{tag}")
        out[f"log-{tag}"] = _sha(saved.read_bytes())
    out["summary-empty"] = summarize([], 0.0).model_dump_json()
    out["records"] = _sha(
        json.dumps([r.model_dump(mode="json") for r in to_records(comps, judgs)]).encode()
    )
    return out


def _sha(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def test_outputs_are_the_bytes_the_code_before_wrote(tmp_path):
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = outputs(tmp_path)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key


def test_every_record_names_its_judgments_fingerprint_key():
    from judge_rl.pipeline.label import to_records

    comps, judgs = comparisons_and_judgments()
    recs = to_records(comps, judgs)
    by_id = {c.id: j for c, j in zip(comps, judgs, strict=True)}
    assert len(recs) > 40
    keys = {r.provenance["judge_key"] for r in recs}
    assert len(keys) > 3  # equal copies share a key; a value of another type gets its own
    for r in recs:
        assert r.provenance["judge_key"] == by_id[r.provenance["comparison_id"]].judge.key


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        got = outputs(Path(d))
    Path(sys.argv[1]).write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")


def test_a_fingerprint_copys_key_skips_model_dump_json(monkeypatch):
    """Judgments read back from the cache each carry their own copy of the fingerprint, whose
    JSON finds its key: from the serializer itself, not through ``model_dump_json`` (whose
    wrapper was 40% of it, ~2 us a record)."""
    from judge_rl.pipeline.label import to_records
    from judge_rl.types import JudgeFingerprint, Judgment

    comps, _ = comparisons_and_judgments(40)
    fp = JudgeFingerprint(name="j", params={"t": 0.0, "n": 32, "b": {"u": [1, "x"]}})
    judgs = [
        Judgment(
            comparison_id=c.id,
            prompt_id=c.prompt_id,
            a_id=c.a.id,
            b_id=c.b.id,
            winner="a",
            judge=JudgeFingerprint.model_validate_json(fp.model_dump_json()),
        )
        for c in comps
    ]
    dumped = []
    dump = JudgeFingerprint.model_dump_json

    def counting(self, *a, **k):
        dumped.append(1)
        return dump(self, *a, **k)

    monkeypatch.setattr(JudgeFingerprint, "model_dump_json", counting)
    recs = to_records(comps, judgs)
    assert len(recs) == 40
    assert {r.provenance["judge_key"] for r in recs} == {fp.key}
    assert dumped == []


def test_jsonl_rows_are_written_as_json_dumps_writes_them():
    """One C encoder for a file's rows (was one built per row): the same text, the same
    errors (NaN, a cycle), and a file after a failed one is written as ever."""
    from judge_rl.data._rows import jsonl_bytes

    rows: list[Any] = [
        {"prompt": "é 🙂 \u2028 \x00", "chosen": [{"role": "user", "content": "x"}], "p": 0.5},
        {"n": 10**30, "t": True, "none": None, "f": -0.0, "e": 1e-300, "nested": [[{}], []]},
        "a string row",
        [1, "two", {"3": 4.0}],
    ]
    want = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
    assert jsonl_bytes(rows) == want.encode("utf-8")
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["self"] = cyclic
    for bad, message in (({"x": float("nan")}, "Out of range float"), (cyclic, "Circular")):
        with pytest.raises(ValueError, match=message):
            jsonl_bytes([rows[0], bad])
        assert jsonl_bytes(rows) == want.encode("utf-8")


def test_records_hold_what_the_validating_constructor_builds(monkeypatch):
    """Text records are built without running pydantic's validator (~3 us of ~5 each): the
    same instance state as ``PreferenceRecord(...)`` gives; a conversational prompt still goes
    through it (the validator copies the message list)."""
    from judge_rl.pipeline.label import to_records
    from judge_rl.types import PreferenceRecord

    comps, judgs = comparisons_and_judgments()
    recs = to_records(comps, judgs)
    for r in recs:
        again = PreferenceRecord(**{k: getattr(r, k) for k in r.model_fields_set})
        assert list(r.__dict__.items()) == list(again.__dict__.items())
        assert r.__pydantic_fields_set__ == again.__pydantic_fields_set__
        assert (r.__pydantic_extra__, r.__pydantic_private__) == (None, None)
        assert (again.__pydantic_extra__, again.__pydantic_private__) == (None, None)
    decorators = PreferenceRecord.__pydantic_decorators__
    assert not decorators.field_validators and not decorators.model_validators
    runs = count_validator_runs(monkeypatch, PreferenceRecord)
    assert len(to_records(comps, judgs)) == len(recs)
    conversational = sum(1 for r in recs if not isinstance(r.prompt, str))
    assert 0 < conversational < len(recs) and len(runs) == conversational
