"""Issue 19 item 2: the plain pair rows `judge-rl label` reads are built directly, with the same
records and the same errors as the general path."""

from __future__ import annotations

import json

import pytest

from judge_rl._io import content_hash
from judge_rl.data import _read as R
from judge_rl.data import read_comparisons
from judge_rl.errors import DataError
from judge_rl.types import Candidate, Comparison
from tests._validator_count import count_validator_runs

ROWS = [
    {"prompt": "What is 2+2?", "response_a": "4", "response_b": "5"},
    {"prompt": "Grüße 你好 🙂", "response_a": "é", "response_b": "", "prompt_id": "x-1"},
    {"prompt": "q", "response_a": "a", "response_b": "b", "model_a": "m1", "model_b": ""},
    {"prompt": "q", "response_a": "a", "response_b": "b", "prompt_id": ""},
    {"prompt": ' \\u00e9 "quoted" \n', "response_a": "x" * 3000, "response_b": "y"},
    # the general path's rows: a label, a reference, extra columns, messages, numbers
    {"prompt": "q", "response_a": "a", "response_b": "b", "winner": "model_a"},
    {"prompt": "q", "response_a": "a", "response_b": "b", "reference": "a"},
    {"prompt": "q", "response_a": "a", "response_b": "b", "category": "math"},
    {"prompt": [{"role": "user", "content": "hi"}], "response_a": "a", "response_b": "b"},
    {"prompt": "q", "response_a": "a", "response_b": "b", "prompt_id": 7},
    {"prompt": "q", "response_a": "a", "response_b": "b", "model_a": None},
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_hash_is_content_hash():
    cases = ["", "é🙂", ["q-1", "", "x" * 5000], ["a", ["b", None, 1.5]], {"b": 1, "a": "ü"}]
    cases += ['"\\\n\t\x00\x1f\u2028\ud7ff', [], ["\x7f", "</script>"], [1, "a"], 7]
    for obj in cases:
        assert R._hash(obj) == content_hash(obj)
        assert R._hash(obj, 12) == content_hash(obj, 12)


def test_plain_rows_read_as_the_general_path_reads_them(tmp_path, monkeypatch):
    path = _write(tmp_path / "pairs.jsonl", ROWS)
    fast = read_comparisons(path)
    calls = []
    plain = R._plain_pair
    monkeypatch.setattr(R, "_plain_pair", lambda *a: calls.append(plain(*a)))  # -> None
    slow = read_comparisons(path)
    assert [c is not None for c in calls] == [True] * 5 + [False] * 6
    assert [c.model_dump() for c in fast] == [c.model_dump() for c in slow]
    assert [c.model_fields_set for c in fast] == [c.model_fields_set for c in slow]
    # and as the records' own constructors would (ids hashed by model_post_init)
    c = fast[2]
    a = Candidate(prompt_id=c.prompt_id, prompt="q", response="a", source="m1")
    b = Candidate(prompt_id=c.prompt_id, prompt="q", response="b")
    assert c == Comparison(
        prompt_id=c.prompt_id,
        prompt="q",
        a=a,
        b=b,
        reference=None,
        metadata={"file": "pairs.jsonl", "line": 3, "format": "pairwise"},
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "q", "response_a": "same", "response_b": "same"}, "identical"),
        ({"prompt": "  ", "response_a": "a", "response_b": "b"}, "empty"),
        ({"prompt": "q", "response_a": 3, "response_b": "b"}, "expected text"),
        ({"prompt": "q", "response_a": "a", "response_b": None}, "missing value"),
        ({"prompt": "q", "response_a": "a"}, "response_b"),
    ],
)
def test_bad_plain_rows_keep_their_errors(tmp_path, row, message):
    path = _write(tmp_path / "pairs.jsonl", [ROWS[0], row])
    with pytest.raises(DataError) as e:
        read_comparisons(path)
    assert ":2" in str(e.value) and message in str(e.value)
    assert len(read_comparisons(path, skip_invalid=True)) == 1


def test_fewer_hashes_per_plain_row(tmp_path, monkeypatch):
    """The old path hashed each id through ``json.dumps`` with arguments, which builds a JSON
    encoder per call (4 per row); the plain path builds none."""
    path = _write(tmp_path / "pairs.jsonl", ROWS[:1] * 50)
    built = []
    orig = json.JSONEncoder.__init__

    def counting(self, *a, **k):
        built.append(1)
        orig(self, *a, **k)

    read_comparisons(path)  # warm: detection and imports
    monkeypatch.setattr(json.JSONEncoder, "__init__", counting)
    assert len(read_comparisons(path)) == 50
    assert len(built) <= 2  # format detection's own; none per row


def test_jsonl_bytes_as_json_dumps_wrote_them(monkeypatch):
    from judge_rl.data._rows import jsonl_bytes
    from judge_rl.types import PreferenceRecord

    rows = [
        {"prompt": "é 🙂 \u2028", "chosen": [{"role": "user", "content": "x"}], "p": 0.5},
        PreferenceRecord(prompt="q", chosen="a", rejected="b", provenance={"k": [1, None]}),
        {"n": 10**30, "t": True, "none": None},
    ]
    old = "".join(
        json.dumps(
            r.model_dump(mode="json") if hasattr(r, "model_dump") else r,
            ensure_ascii=False,
            allow_nan=False,
        )
        + "\n"
        for r in rows
    ).encode("utf-8")
    assert jsonl_bytes(rows) == old
    assert jsonl_bytes([]) == b""
    with pytest.raises(ValueError, match="Out of range float"):
        jsonl_bytes([{"x": float("nan")}])
    built = []
    orig = json.JSONEncoder.__init__

    def counting(self, *a, **k):
        built.append(1)
        orig(self, *a, **k)

    monkeypatch.setattr(json.JSONEncoder, "__init__", counting)
    jsonl_bytes(rows * 100)
    assert built == []  # one encoder for every row, built at import (was one per row)


def _state(m):
    """Everything a pydantic record holds: its fields (in order), the fields given, extras,
    private attributes; of its candidates too."""
    out = [type(m), list(m.__dict__.items()), m.__pydantic_fields_set__]
    out += [m.__pydantic_extra__, m.__pydantic_private__]
    for k in ("a", "b"):
        if isinstance(getattr(m, k, None), Candidate):
            out.append(_state(getattr(m, k)))
    return out


def test_plain_rows_build_what_the_validating_constructors_build(tmp_path):
    """The plain path builds its records without running pydantic's validators (half its
    CPU): the same instance state as the constructors give (fields in order, fields given,
    no extras, no private attributes), and records that dump, copy and compare the same."""
    path = _write(tmp_path / "pairs.jsonl", ROWS[:5])
    fast = read_comparisons(path)
    for c in fast:
        a = Candidate(
            id=c.a.id, prompt_id=c.prompt_id, prompt=c.prompt, response=c.a.response,
            source=c.a.source,
        )  # fmt: skip
        b = Candidate(
            id=c.b.id, prompt_id=c.prompt_id, prompt=c.prompt, response=c.b.response,
            source=c.b.source,
        )  # fmt: skip
        slow = Comparison(
            id=c.id, prompt_id=c.prompt_id, prompt=c.prompt, a=a, b=b, reference=None,
            metadata=dict(c.metadata),
        )  # fmt: skip
        assert _state(c) == _state(slow)
        assert c.model_dump_json() == slow.model_dump_json()
        assert c.model_copy(update={"reference": "r"}) == slow.model_copy(update={"reference": "r"})
        assert c.a.metadata is not c.b.metadata  # each its own default
    # nothing in these models changes a value on the way in (the plain path relies on it)
    for model in (Candidate, Comparison):
        decorators = model.__pydantic_decorators__
        assert not decorators.field_validators and not decorators.model_validators


def test_plain_rows_run_no_validator(tmp_path, monkeypatch):
    """~9 us of a plain row's ~25 went to validating values that were checked already."""
    path = _write(tmp_path / "pairs.jsonl", ROWS[:5] * 10)
    read_comparisons(path)  # warm: detection and imports
    runs = count_validator_runs(monkeypatch, Candidate, Comparison)
    assert len(read_comparisons(path)) == 50
    assert runs == []
    Candidate(prompt_id="p", prompt="q", response="r")  # the counter counts
    assert runs == [1]
