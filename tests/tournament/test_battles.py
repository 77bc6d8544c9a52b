"""Battle files: formats, winner spellings, and clear file:line errors."""

from __future__ import annotations

import json

import pytest

from judge_rl.errors import DataError
from judge_rl.tournament.battles import read_battles


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_formats_and_arena_spellings(tmp_path):
    rows = [
        {"model_a": "x", "model_b": "y", "winner": "model_a"},
        {"model_a": "x", "model_b": "y", "winner": "tie (bothbad)"},
        {"model_a": "y", "model_b": "x", "winner": "b", "question_id": 81, "weight": 2},
    ]
    js = read_battles(_write(tmp_path / "b.jsonl", rows))
    assert js.models == ["x", "y"] and js.winner.tolist() == [0, 2, 1]
    assert js.prompt_ids == ["", "", "81"] and js.weight.tolist() == [1, 1, 2]
    (tmp_path / "b.json").write_text(json.dumps({"battles": rows}))
    assert read_battles(tmp_path / "b.json").winner.tolist() == [0, 2, 1]
    (tmp_path / "b.csv").write_text("model_a,model_b,winner\nx,y,a\ny,x,tie\n")
    assert read_battles(tmp_path / "b.csv").winner.tolist() == [0, 2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        (
            '{"model_a": "x", "model_b": "y", "winner": "c"}\n',
            "b.jsonl:1: winner: winner must be one of a, b, tie",
        ),
        (
            '{"model_a": "x", "model_b": "y", "winner": "a"}\n{"model_a": "x", "winner": "a"}\n',
            "b.jsonl:2: model_b: missing field",
        ),
        (
            '{"model_a": "x", "model_b": "x", "winner": "a"}\n',
            "b.jsonl:1: a model cannot battle itself",
        ),
        ("not json\n", "b.jsonl:1: not valid JSON"),
    ],
)
def test_bad_inputs_name_file_and_line(tmp_path, content, message):
    p = tmp_path / "b.jsonl"
    p.write_text(content)
    with pytest.raises(DataError) as e:
        read_battles(p)
    assert message in str(e.value)


def test_csv_line_numbers_count_the_header(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("model_a,model_b,winner\nx,y,a\nx,y,maybe\n")
    with pytest.raises(DataError, match=r"b\.csv:3: winner"):
        read_battles(p)
