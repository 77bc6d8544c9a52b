"""Hypothesis fuzzing of every reader: arbitrary bytes, JSON rows and tables either give
records or a DataError naming the file (never another exception, never a traceback)."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from judge_rl.data import (
    detect_format,
    read_candidates,
    read_comparisons,
    read_preferences,
    read_prompts,
)
from judge_rl.data._inspect import summarize
from judge_rl.errors import DataError

FUZZ = settings(
    max_examples=int(__import__("os").environ.get("JUDGE_RL_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

READERS = (
    lambda p, s: read_preferences(p, skip_invalid=s),
    lambda p, s: read_candidates(p, skip_invalid=s),
    lambda p, s: read_prompts(p, skip_invalid=s),
    lambda p, s: read_comparisons(p, skip_invalid=s),
    lambda p, s: detect_format(p),
    lambda p, s: summarize(p, skip_invalid=s),
)

# Column names every format looks for, so random rows hit real code paths.
KEYS = [
    "prompt",
    "chosen",
    "rejected",
    "question",
    "instruction",
    "response",
    "completion",
    "response_a",
    "response_b",
    "winner",
    "label",
    "p_a",
    "responses",
    "thumbs",
    "rating",
    "score",
    "output_1",
    "output_2",
    "preference",
    "generator_1",
    "question_id",
    "model_id",
    "choices",
    "turns",
    "answer",
    "reference",
    "category",
    "prompt_id",
    "source",
    "model",
    "metadata",
    "p_chosen",
    "margin",
    "origin",
    "provenance",
    "sources",
    "id",
]
HH = ["\n\nHuman: hi", "\n\nAssistant: a", "\n\nAssistant:", "x", ""]

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.floats(allow_nan=True, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["a", "b", "tie", "up", "down", "user", "assistant", "#### 12", "1.5"]),
    st.lists(st.sampled_from(HH), max_size=4).map("".join),
)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "bogus"]),
        "content": st.text(max_size=8),
    }
)
value = st.recursive(
    st.one_of(leaf, message, st.lists(message, max_size=3)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(KEYS + ["turns"]), children, max_size=3),
    ),
    max_leaves=8,
)
row = st.dictionaries(st.sampled_from(KEYS), value, max_size=6)
# Each format's own columns, with arbitrary values (and maybe one stray column).
KEYSETS = [
    ("chosen", "rejected"),
    ("prompt", "chosen", "rejected"),
    ("prompt", "response_a", "response_b", "winner"),
    ("question", "response_a", "response_b", "p_a", "model_a"),
    ("prompt", "responses"),
    ("prompt", "response", "thumbs"),
    ("prompt", "response", "rating", "prompt_id"),
    ("instruction", "output_1", "output_2", "preference"),
    ("question_id", "model_id", "choices"),
    ("question_id", "turns", "category"),
    ("question", "answer"),
    ("prompt_id", "prompt", "response", "source", "metadata"),
]
shaped_row = st.sampled_from(KEYSETS).flatmap(
    lambda ks: st.fixed_dictionaries(
        {k: value for k in ks}, optional={"provenance": value, "p_chosen": leaf}
    )
)


def _check(path: Path) -> None:
    for read in READERS:
        for skip in (False, True):
            try:
                read(path, skip)
            except DataError as e:
                assert path.name in str(e) or "builtin" in str(e) or e.file is None
                assert "Traceback" not in str(e)


@FUZZ
@given(
    data=st.binary(max_size=300),
    ext=st.sampled_from([".jsonl", ".json", ".csv", ".jsonl.gz", ".parquet", ".tsv"]),
)
def test_arbitrary_bytes(data, ext):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"fuzz{ext}"
        p.write_bytes(data)
        _check(p)


@FUZZ
@given(data=st.binary(max_size=200))
def test_arbitrary_gzipped_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.jsonl.gz"
        p.write_bytes(gzip.compress(data))
        _check(p)


@FUZZ
@given(rows=st.lists(st.one_of(shaped_row, shaped_row, row, value), min_size=1, max_size=5))
def test_arbitrary_json_rows(rows):
    with tempfile.TemporaryDirectory() as d:
        jl = Path(d) / "fuzz.jsonl"
        jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        _check(jl)
        arr = Path(d) / "fuzz.json"
        arr.write_text(json.dumps(rows, indent=1))
        _check(arr)


@FUZZ
@given(
    rows=st.lists(
        st.fixed_dictionaries({}, optional={k: st.text(max_size=10) for k in KEYS[:20]}),
        min_size=1,
        max_size=4,
    )
)
def test_arbitrary_csv_and_parquet_tables(rows):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = sorted({k for r in rows for k in r}) or ["x"]
    with tempfile.TemporaryDirectory() as d:
        c = Path(d) / "fuzz.csv"
        with c.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow([r.get(k, "") for k in cols])
        _check(c)
        p = Path(d) / "fuzz.parquet"
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in cols} for r in rows]), p)
        _check(p)
