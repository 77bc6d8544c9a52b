"""``judge-rl data inspect|convert|formats`` (judge_rl/commands/data.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from judge_rl.cli import main
from judge_rl.data import read_preferences


def _run(capsys, *args: str) -> tuple[int, str, str]:
    if len(args) > 1 and args[1] == "convert" and "--run" not in args and len(args) > 3:
        args = (*args, "--run", str(Path(args[3]).parent / "run"))
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_broken_third_line_exits_2_naming_file_and_line(cli, data_dir):
    """The issue's check, through the real CLI in a subprocess: exit 2, one line, no traceback."""
    r = cli("data", "inspect", str(data_dir / "formats/broken_line3.jsonl"))
    assert r.returncode == 2
    assert "broken_line3.jsonl" in r.stderr and ":3" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1


def test_inspect_hh_sample(capsys, data_dir):
    rc, out, _ = _run(capsys, "data", "inspect", str(data_dir / "hh_rlhf_sample.jsonl.gz"))
    assert rc == 0
    assert "hh-rlhf" in out
    assert "pairs" in out and "40" in out
    assert "HH pairs differing before the last" in out


def test_inspect_label_balance_and_skipped(capsys, data_dir):
    rc, out, _ = _run(capsys, "data", "inspect", str(data_dir / "formats/pairwise.csv"))
    assert rc == 0 and "pairwise" in out
    assert "ties (p_chosen = 0.5)" in out and "soft labels" in out and "winner a / b" in out
    rc, out, _ = _run(
        capsys, "data", "inspect", str(data_dir / "formats/invalid_rows.jsonl"), "--skip-invalid"
    )
    assert rc == 0 and "skipped rows" in out and "identical" in out


def test_inspect_candidates_and_prompts(capsys, data_dir):
    rc, out, _ = _run(
        capsys, "data", "inspect", str(data_dir / "mt_bench/model_answer/gpt-4.jsonl")
    )
    assert rc == 0 and "mt-bench-answers" in out and "gpt-4: 10" in out
    rc, out, _ = _run(capsys, "data", "inspect", "builtin:gsm8k-demo")
    assert rc == 0 and "with reference" in out and "60" in out


def test_convert_and_read_back(capsys, data_dir, tmp_path):
    out_file = tmp_path / "hh.jsonl"
    rc, out, _ = _run(
        capsys, "data", "convert", str(data_dir / "hh_rlhf_sample.jsonl.gz"), str(out_file)
    )
    assert rc == 0 and "wrote 40 pairs" in out
    back = read_preferences(out_file)
    assert back.format == "trl" and len(back) == 40
    rows = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert {"prompt", "chosen", "rejected"} <= set(rows[0])


def test_convert_with_column_flags(capsys, tmp_path):
    src = tmp_path / "mine.jsonl"
    src.write_text(json.dumps({"q": "p", "good": "a", "bad": "b"}) + "\n")
    rc, out, err = _run(
        capsys,
        "data",
        "convert",
        str(src),
        str(tmp_path / "o.parquet"),
        "--prompt-col",
        "q",
        "--map",
        "chosen=good",
        "--map",
        "rejected=bad",
    )
    assert rc == 0, err
    r = read_preferences(tmp_path / "o.parquet").records[0]
    assert (r.prompt, r.chosen, r.rejected) == ("p", "a", "b")
    rc, _, err = _run(
        capsys, "data", "convert", str(src), str(tmp_path / "x.jsonl"), "--map", "nonsense"
    )
    assert rc == 2 and "--map" in err


def test_convert_skip_invalid_reports(capsys, data_dir, tmp_path):
    rc, out, _ = _run(
        capsys,
        "data",
        "convert",
        str(data_dir / "formats/invalid_rows.jsonl"),
        str(tmp_path / "o.jsonl"),
        "--skip-invalid",
    )
    # issue 16 item 5: skipped rows are failed items -> exit 1 with a summary line by kind
    assert rc == 1 and "wrote 2 pairs" in out and "skipped 5 invalid rows" in out
    assert "5 of 7 rows failed (" in _
    assert (tmp_path / "o.jsonl").exists()  # finished work is kept
    rc, out, _ = _run(
        capsys,
        "data",
        "convert",
        str(data_dir / "formats/invalid_rows.jsonl"),
        str(tmp_path / "o2.jsonl"),
        "--skip-invalid",
        "--max-failures",
        "5",
    )
    assert rc == 0 and "wrote 2 pairs" in out
    rc, _, err = _run(
        capsys,
        "data",
        "convert",
        str(data_dir / "formats/invalid_rows.jsonl"),
        str(tmp_path / "p.jsonl"),
    )
    assert rc == 2 and "invalid_rows.jsonl:2" in err
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("args", [("data",), ("data", "inspect", "/nonexistent/file.jsonl")])
def test_usage_errors_exit_2(capsys, args):
    rc, _, _ = _run(capsys, *args)
    assert rc == 2


def test_formats_lists_every_format(capsys):
    from judge_rl.data import FORMATS

    rc, out, _ = _run(capsys, "data", "formats")
    assert rc == 0
    for name in FORMATS:
        assert name in out


def test_convert_drop_ties(capsys, data_dir, tmp_path):
    rc, out, _ = _run(
        capsys,
        "data",
        "convert",
        str(data_dir / "formats/pairwise.csv"),
        str(tmp_path / "o.jsonl"),
        "--drop-ties",
    )
    assert rc == 0 and "left out 1 ties" in out and "wrote 5 pairs" in out
    assert not any(r.is_tie for r in read_preferences(tmp_path / "o.jsonl"))


def test_convert_writes_a_run_log(capsys, data_dir, tmp_path):
    from judge_rl.runlog import load

    rc, out, _ = _run(
        capsys,
        "data",
        "convert",
        str(data_dir / "formats/ratings.csv"),
        str(tmp_path / "o.jsonl"),
        "--run",
        str(tmp_path / "conv"),
    )
    assert rc == 0 and "log:" in out
    log = load(tmp_path / "conv")
    assert log.command == "data convert"
    assert log.extra["data"]["written"] == 3 and log.extra["data"]["format"] == "ratings"
    rc, out, _ = _run(
        capsys,
        "data",
        "inspect",
        str(data_dir / "formats/ratings.csv"),
        "--run",
        str(tmp_path / "ins"),
    )
    assert rc == 0 and load(tmp_path / "ins").extra["data"]["items"] == 3
