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


# ----------------------------------------------------------------------------------------------
# Start-up cost (issue 19 item 1): the command pays only for what it uses
# ----------------------------------------------------------------------------------------------

_PROBE = """
import sys
from judge_rl.cli import main
rc = main(sys.argv[1:])
heavy = ("pydantic", "rich", "pandas", "importlib.metadata", "torch", "scipy", "pyarrow.compute")
heavy += ("numpy.ma",)
print("LOADED", ",".join(m for m in heavy if m in sys.modules), rc)
import os
print("BLAS", os.environ.get("OPENBLAS_NUM_THREADS"))
"""


def _probe(tmp_path, *args):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    env.pop("OPENBLAS_NUM_THREADS", None)
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("LOADED")][-1]
    # OpenBLAS's idle worker spins ~0.1 s CPU after numpy loads: the command runs one thread
    assert "BLAS 1" in r.stdout
    return line.split()[1] if len(line.split()) == 3 else ""


def test_ratings_imports_no_pydantic_no_rich_for_csv_output(tmp_path):
    """pydantic (the run-log schema) cost 0.24 s CPU of the command's 1.15 s; rich 0.04 s;
    importlib.metadata (versions) 0.06 s. The log is written as plain JSON in the schema's shape
    (checked against the schema below); csv/json output is plain text."""
    p, _ = _battles_file(tmp_path, n=300)
    loaded = _probe(
        tmp_path, "ratings", str(p), "--format", "csv", "--run", "r", "--bootstrap", "5"
    )
    assert loaded == ""
    # the rich table (default output) needs rich, still no pydantic
    loaded = _probe(tmp_path, "ratings", str(p), "--run", "r2", "--bootstrap", "5")
    assert loaded == "rich"


def test_parquet_and_csv_input_import_no_pandas(tmp_path):
    """pyarrow.parquet.read_table goes through pyarrow.dataset, which imports pandas (0.35 s);
    pyarrow.compute builds its wrappers on import (75 ms). Neither is needed to read battles."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [("x", "y", "model_a"), ("y", "z", "tie"), ("z", "x", "model_b")] * 50
    cols = {k: [r[i] for r in rows] for i, k in enumerate(("model_a", "model_b", "winner"))}
    pq.write_table(pa.table(cols), tmp_path / "b.parquet")
    csv_path = tmp_path / "b.csv"
    csv_path.write_text("model_a,model_b,winner\n" + "".join(f"{a},{b},{w}\n" for a, b, w in rows))
    for path in (tmp_path / "b.parquet", csv_path):
        loaded = _probe(tmp_path, "ratings", str(path), "--format", "json", "--bootstrap", "5")
        assert loaded == "", path.name


def _schema_round_trip(path):
    """The log as written equals the schema's own dump of it (no field missing, none extra,
    every value as pydantic would write it)."""
    raw = json.loads(path.read_text())
    log = runlog.load(path)
    assert log.model_dump(mode="json") == raw
    return raw, log


def test_run_log_matches_the_schema(tmp_path):
    # small file: the battles are copied into the log (with prompt ids, judges and weights)
    p = tmp_path / "b.csv"
    rows = ["model_a,model_b,winner,prompt_id,judge,weight"]
    for k in range(60):
        rows.append(f"m{k % 3},m{(k + 1) % 3},{['a', 'b', 'tie'][k % 3]},q{k % 7},j{k % 2},0.5")
    p.write_text("\n".join(rows) + "\n")
    rc = _run_in_process(tmp_path, "ratings", str(p), "--run", "small", "--bootstrap", "20")
    assert rc == 0
    raw, log = _schema_round_trip(tmp_path / "reports" / "small" / "log.json")
    assert log.command == "ratings" and log.run == "small" and log.tournament is not None
    assert len(log.tournament.battles) == 60
    b0 = log.tournament.battles[0]
    assert (b0.model_a, b0.model_b, b0.winner, b0.prompt_id, b0.judge, b0.weight) == (
        "m0",
        "m1",
        "a",
        "q0",
        "j0",
        0.5,
    )
    assert raw["tournament"]["interval"]["rounds"] == 20
    assert raw["environment"] == runlog.environment()
    assert raw["version"] == runlog.LOG_VERSION
    # large file: battles are not copied, a note says so
    big, _ = _battles_file(tmp_path, n=5001)
    rc = _run_in_process(tmp_path, "ratings", str(big), "--run", "big", "--method", "elo")
    assert rc == 0
    raw, log = _schema_round_trip(tmp_path / "reports" / "big" / "log.json")
    assert log.tournament is not None and log.tournament.battles == []
    assert log.tournament.method == "elo" and any("5001 battles" in n for n in log.notes)


def _run_in_process(cwd, *args):
    import os

    from judge_rl.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return main(list(args))
    finally:
        os.chdir(old)
