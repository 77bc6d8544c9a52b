"""`judge-rl ratings` end to end: table, csv/json, run log, exit 2 on bad input."""

from __future__ import annotations

import contextlib
import csv
import io
import json

from judge_rl import runlog
from judge_rl.tournament import synthetic as sy
from tests.conftest import run_cli


def _battles_file(tmp_path, n=2000):
    theta = sy.strengths(5, seed=4)
    a, b, w = sy.simulate(theta, n, nu=0.5, seed=5)
    names = sy.model_names(5)
    p = tmp_path / "battles.jsonl"
    with p.open("w") as f:
        for x, y, z in zip(a, b, w, strict=True):
            f.write(
                json.dumps(
                    {
                        "model_a": names[x],
                        "model_b": names[y],
                        "winner": ["model_a", "model_b", "tie"][z],
                    }
                )
                + "\n"
            )
    best = names[int(theta.argmax())]
    return p, best


def test_table_and_run_log(cli, tmp_path):
    p, best = _battles_file(tmp_path)
    r = cli("ratings", str(p), "--bootstrap", "50", "--run", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    assert "Bradley-Terry ratings" in r.stdout and best in r.stdout
    log = runlog.load(tmp_path / "run")
    t = log.tournament
    assert t is not None and t.method == "bt" and len(t.leaderboard) == 5
    assert t.leaderboard[0]["model"] == best
    for key in (
        "rating",
        "lo",
        "hi",
        "rank",
        "rank_lo",
        "rank_hi",
        "battles",
        "wins",
        "ties",
        "losses",
        "win_rate",
    ):
        assert key in t.leaderboard[0]
    assert len(t.win_matrix) == 5 and len(t.predicted) == 5 and len(t.battles) == 2000


def _main(capsys, *args):
    """The CLI in-process (cheaper than a subprocess): (exit code, stdout, stderr)."""
    from judge_rl.cli import main

    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_csv_json_and_elo(capsys, tmp_path):
    p, best = _battles_file(tmp_path)
    rc, out, err = _main(
        capsys,
        "ratings",
        str(p),
        "--format",
        "csv",
        "--ties",
        "davidson",
        "--anchor",
        best,
        "--run",
        str(tmp_path / "r2"),
    )
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["model"] == best and float(rows[0]["rating"]) == 1000.0
    rc, out, err = _main(
        capsys,
        "ratings",
        str(p),
        "--format",
        "json",
        "--method",
        "elo",
        "--run",
        str(tmp_path / "r3"),
    )
    assert rc == 0, err
    data = json.loads(out)
    assert data["method"] == "elo" and len(data["leaderboard"]) == 5
    assert "order of the battles" in err  # Elo's weakness is stated
    with contextlib.suppress(SystemExit):
        _main(capsys, "ratings", "--help")
    assert "order of the" in capsys.readouterr().out


def test_bad_inputs_exit_2(capsys, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one = tmp_path / "one.jsonl"
    one.write_text('{"model_a": "x", "model_b": "x", "winner": "a"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"model_a": "x", "model_b": "y", "winner": "a"}\n'
        '{"model_a": "x", "model_b": "y", "winner": "draw?"}\n'
    )
    for path, msg in ((empty, "empty"), (one, "one.jsonl:1"), (bad, "bad.jsonl:2: winner")):
        rc, _, err = _main(capsys, "ratings", str(path), "--run", str(tmp_path / "rx"))
        assert rc == 2, err
        assert msg in " ".join(err.split())
    p, _ = _battles_file(tmp_path, n=200)
    rc, _, err = _main(
        capsys, "ratings", str(p), "--anchor", "nobody", "--run", str(tmp_path / "ry")
    )
    assert rc == 2 and "--anchor" in err
    # one real subprocess: exit status 2 and no traceback
    r = run_cli("ratings", str(empty), "--run", str(tmp_path / "rz"))
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr
