"""Issue 20 item 2 and issue 16 (ratings / winrate readers): inputs as people have them, one
reader for every format, never a traceback, valid JSON out."""

from __future__ import annotations

import bz2
import gzip
import json

import numpy as np
import pandas as pd
import pytest

from judge_rl.errors import DataError
from judge_rl.tournament import synthetic as sy
from judge_rl.tournament.battles import read_battles
from judge_rl.tournament.winrate import read_pref_rows, winrates


def _frame(n=600, seed=1):
    theta = sy.strengths(4, seed=seed)
    a, b, w = sy.simulate(theta, n, nu=0.5, seed=seed + 1)
    names = np.array(sy.model_names(4))
    return pd.DataFrame(
        {
            "model_a": names[a],
            "model_b": names[b],
            "winner": np.array(["model_a", "model_b", "tie (bothbad)"])[w],
            "question_id": (np.arange(n) % 50).astype(str),
        }
    )


def test_left_right_layout(tmp_path):
    p = tmp_path / "votes.csv"
    p.write_text("left,right,winner\nx,y,left\ny,z,right\nz,x,tie\n")
    bs = read_battles(p)  # was "model_a: missing field"
    assert bs.models == ["x", "y", "z"] and bs.winner.tolist() == [0, 1, 2]
    assert bs.a.tolist() == [0, 1, 2] and bs.b.tolist() == [1, 2, 0]


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet", "csv.gz", "jsonl.bz2", "json"])
def test_every_format_reads_the_same_battles(tmp_path, kind):
    df = _frame()
    p = tmp_path / f"b.{kind}"
    if kind == "parquet":
        df.to_parquet(p)
    elif kind == "json":
        p.write_text(df.to_json(orient="records"))
    else:
        text = (
            df.to_csv(index=False)
            if kind.startswith("csv")
            else df.to_json(orient="records", lines=True)
        )
        data = text.encode()
        p.write_bytes(
            gzip.compress(data)
            if kind.endswith("gz")
            else bz2.compress(data)
            if kind.endswith("bz2")
            else data
        )
    bs = read_battles(p)
    names = bs.models
    assert [names[k] for k in bs.a] == df.model_a.tolist()
    assert [names[k] for k in bs.b] == df.model_b.tolist()
    assert (
        bs.winner.tolist()
        == df.winner.map({"model_a": 0, "model_b": 1, "tie (bothbad)": 2}).tolist()
    )
    assert bs.shared_prompts and bs.prompt_ids[:3] == ["0", "1", "2"]


def test_alpaca_annotations_as_battles(tmp_path):
    p = tmp_path / "ann.json"
    p.write_text(
        json.dumps(
            [
                {"generator_1": "base", "generator_2": "m", "preference": 2},
                {"generator_1": "base", "generator_2": "m", "preference": 1.25},
                {"generator_1": "base", "generator_2": "m", "preference": 0},
                {"generator_1": "base", "generator_2": "m", "preference": None},
            ]
        )
    )
    bs = read_battles(p)
    # 1.25 = a win of base weighted 0.75 and a win of m weighted 0.25; None skipped
    m = bs.models.index("m")
    wins_m = sum(
        (bs.weight[k] if bs.weight is not None else 1.0)
        for k in range(len(bs))
        if (bs.winner[k] == 1 and bs.b[k] == m) or (bs.winner[k] == 0 and bs.a[k] == m)
    )
    assert wins_m == pytest.approx(1.25) and bs.notes


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"model_a,model_b,winner\nx,\xff\xfe,a\n"), ":2: not UTF-8"),
        (lambda p: p.write_bytes(gzip.compress(b"")), "empty"),
        (lambda p: p.write_bytes(b"\x1f\x8b\x08garbage"), "corrupt gzip"),
        (lambda p: p.write_text("model_a,model_b,winner\nx,y,a\nx,,b\n"), ":3: model_b: missing"),
        (lambda p: p.write_text("model_a,model_b,winner,weight\nx,y,a,nan\n"), "finite"),
        (lambda p: p.write_text("model_a,model_b,winner,weight\nx,y,a,-1\n"), "finite"),
        (lambda p: p.write_text("a,b\n1,2\n"), "missing field"),
    ],
)
def test_bad_files_are_one_data_error(tmp_path, make, message):
    p = tmp_path / "b.csv"
    make(p)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_battles(p)


def test_deeply_nested_jsonl_is_a_data_error(tmp_path):
    p = tmp_path / "b.jsonl"
    p.write_text('{"model_a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError):
        read_battles(p)


@pytest.mark.parametrize("kind", ["parquet", "gz", "latin1", "dir"])
def test_winrate_reader_never_tracebacks(tmp_path, kind):
    rows = [{"generator_1": "base", "generator_2": "m", "preference": 2, "instruction": "q"}]
    p = tmp_path / "a.json"
    if kind == "parquet":
        p = tmp_path / "a.parquet"
        pd.DataFrame(rows).to_parquet(p)
        (res,) = winrates(read_pref_rows(p, "base")[0])
        assert res["n"] == 1 and res["se"] is None  # one row: no SE, no crash
        return
    if kind == "gz":
        p = tmp_path / "a.json.gz"
        p.write_bytes(gzip.compress(json.dumps(rows).encode()))
        assert read_pref_rows(p, "base")[0][0].p == 1.0
        return
    if kind == "latin1":
        p.write_bytes(json.dumps(rows).replace("q", "caf\u00e9").encode("latin-1"))
    else:
        p.mkdir()
    with pytest.raises(DataError):
        read_pref_rows(p, "base")


def test_baseline_own_file_is_fifty_percent_all_draws(tmp_path):
    rows = [
        {
            "instruction": f"q{k}",
            "output_1": "same",
            "output_2": "same",
            "generator_1": "base",
            "generator_2": "base",
            "preference": 1.5,
        }
        for k in range(10)
    ]
    p = tmp_path / "base.json"
    p.write_text(json.dumps(rows))
    (res,) = winrates(read_pref_rows(p, "base")[0])  # exited 2: "no rows against the baseline"
    assert res["model"] == "base" and res["n"] == 10
    assert res["win_rate"] == 0.5 and res["mean_pref"] == 0.5 and res["se"] == 0.0
    assert (res["wins"], res["draws"], res["losses"]) == (0, 10, 0)


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_anchor_model_value_and_valid_json(cli, tmp_path):
    p = tmp_path / "b.csv"
    _frame().to_csv(p, index=False)
    r = cli(
        "ratings",
        str(p),
        "--anchor",
        "model-02=1114",
        "--bootstrap",
        "20",
        "--format",
        "json",
        "--run",
        str(tmp_path / "run"),
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # strict JSON
    row = next(x for x in out["leaderboard"] if x["model"] == "model-02")
    assert row["rating"] == pytest.approx(1114.0)
    assert out["interval"]["scheme"] == "prompts" and out["interval"]["level"] == 0.95


def test_cli_nan_prints_as_valid_json():
    from judge_rl.tournament.table import to_json

    text = to_json([{"model": "x", "rating": float("nan"), "lo": float("inf")}])
    assert json.loads(text)["leaderboard"][0]["rating"] is None  # was bare NaN: invalid JSON


@pytest.mark.parametrize("content", [b"\x00\x01PAR1", b"model_a,model_b,winner\nx,x,a\n"])
def test_cli_bad_file_exits_2_without_traceback(cli, tmp_path, content):
    p = tmp_path / "b.parquet" if content.startswith(b"\x00") else tmp_path / "b.csv"
    p.write_bytes(content)
    for cmd in (("ratings", str(p)), ("winrate", str(p), "--baseline", "nope")):
        r = cli(*cmd, "--run", str(tmp_path / "run"))
        assert r.returncode == 2, (cmd, r.stderr)
        assert "Traceback" not in r.stderr and str(p.name) in r.stderr


def test_cli_seed_negative_and_one_row_contestant(cli, tmp_path):
    p = tmp_path / "b.csv"
    _frame().to_csv(p, index=False)
    r = cli("ratings", str(p), "--seed", "-1", "--bootstrap", "5", "--run", str(tmp_path / "r"))
    assert r.returncode == 2 and "--seed" in r.stderr and "Traceback" not in r.stderr
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{"generator_1": "base", "generator_2": "m", "preference": 2}]))
    r = cli("winrate", str(one), "--baseline", "base", "--run", str(tmp_path / "w"))
    assert r.returncode == 0, r.stderr  # one row: no SE, printed as "–", no TypeError
    assert "100.0% ± –" in r.stdout


def test_large_csv_is_memory_mapped_and_read_the_same(tmp_path):
    df = _frame(n=60_000)  # > 1 MB: the memory-mapped path
    p = tmp_path / "big.csv"
    df.to_csv(p, index=False)
    assert p.stat().st_size > 1 << 20
    bs = read_battles(p)
    assert [bs.models[k] for k in bs.a[:1000]] == df.model_a.tolist()[:1000]
    assert len(bs) == 60_000 and bs.shared_prompts
    p.write_bytes(p.read_bytes().replace(b"model-01,", b"model-\xff1,", 1))  # a bad byte
    with pytest.raises(DataError, match=r"big\.csv:\d+: not UTF-8"):
        read_battles(p)


def test_json_lines_told_from_one_json_object_by_the_first_line(tmp_path):
    """JSONL is recognised from its first line (no whole-file parse); blank lines, a
    pretty-printed container and a one-line container still read as before."""
    row = {"model_a": "x", "model_b": "y", "winner": "a"}
    line = json.dumps(row)
    cases = {
        "trailing_blank.jsonl": f"{line}\n{line}\n\n\n",
        "blank_in_middle.jsonl": f"{line}\n\n{line}\n",
        "pretty.json": json.dumps({"battles": [row, row]}, indent=2),
        "one_line.json": json.dumps({"battles": [row, row]}),
        "one_row.jsonl": line + "\n",
    }
    for name, text in cases.items():
        p = tmp_path / name
        p.write_text(text)
        bs = read_battles(p)
        assert bs.models == ["x", "y"] and len(bs) == (1 if name == "one_row.jsonl" else 2), name
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f"{line}\n\n{line}\n{{not json\n")
    with pytest.raises(DataError, match=r"bad.jsonl:4"):
        read_battles(bad)


def test_arena_json_with_nested_metadata_converts_only_the_battle_columns(tmp_path):
    """Chatbot Arena's clean_battle JSON: a list of rows with nested, mixed metadata. Only the
    columns a rating reads are converted; a file with none of them still names its columns."""
    from judge_rl.tournament.battles import read_table

    rows = [
        {
            "model_a": "x",
            "model_b": "y",
            "winner": ["model_a", "tie (bothbad)"][k % 2],
            "question_id": f"q{k % 3}",
            "conv_metadata": {"sum_user_tokens": k, "header_count_a": {"h1": 0}},
            "category_tag": {"if_v0.1": {"if": bool(k % 2), "score": k}} if k else "none",
        }
        for k in range(20)
    ]
    p = tmp_path / "arena.json"
    p.write_text(json.dumps(rows))
    bs = read_battles(p)
    assert bs.models == ["x", "y"] and len(bs) == 20 and len(bs.prompt_names) == 3
    t = read_table(p, columns={"model_a", "model_b", "winner"})
    assert t.columns == ["model_a", "model_b", "winner"]
    assert t.source_columns is not None and "category_tag" in t.source_columns
    assert read_table(p).columns == list(rows[0])  # no columns asked for: every column
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"first": "x", "second": "y", "verdict": "a"}]))
    with pytest.raises(DataError, match="columns: first, second, verdict"):
        read_battles(other)
