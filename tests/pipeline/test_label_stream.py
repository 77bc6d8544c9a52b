"""A streamed `judge-rl label` (issue 19 item 2): a pair file is judged while it is read.

The first chunk's requests go out before the rest of the file is read; the outputs (preference
file, run log, estimate line) are the same as reading first and judging after; a comparison
repeated in a later chunk is judged once; the budget still caps the run; a bad row stops the run
with the same message and exit status, what finished before it cached for the re-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import judge_rl.data._read as read_mod
from judge_rl.backends.mock import MockBackend
from judge_rl.runlog import load

N = 600  # rows: the first chunk (64) and a few more


def spec(tmp_path: Path, order: str = "fixed", prices: bool = False, latency: float = 0.0) -> Path:
    folder = tmp_path / "judge"
    folder.mkdir(exist_ok=True)
    options: dict[str, Any] = {"rule": "longer", "latency_s": latency}
    if prices:
        options["prices"] = {"input": 1000.0, "output": 1000.0}
    data = {
        "version": "1",
        "kind": "pairwise",
        "backend": "mock",
        "model": "mock-longer",
        "template": "Which is better?\n{{ prompt }}\nA: {{ response_a }}\nB: {{ response_b }}",
        "max_tokens": 16,
        "order": order,
        "verdict": "brackets",
        "backend_options": options,
    }
    if prices:
        data["prices"] = {"input": 1000.0, "output": 1000.0}
    (folder / "judge.yaml").write_text(json.dumps(data))
    return folder / "judge.yaml"


def pair_rows(n: int = N) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {
            "prompt": f"question {i}",
            "response_a": f"answer {i}" + "!" * (i % 3),
            "response_b": f"other answer {i}" if i % 5 else f"answer {i}?",
        }
        if i % 11 == 0:  # rows the general reader takes (a label, a source)
            row["winner"] = "a"
            row["model_a"] = "m1"
        rows.append(row)
    rows.append(dict(rows[3]))  # a repeat of a first-chunk row in the last chunk
    rows.insert(200, dict(rows[150]))  # and one a chunk apart
    return rows


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def label(capsys, monkeypatch):
    """``judge-rl label ARGS`` in this process: (exit code, stdout, stderr)."""
    from judge_rl.cli import main

    monkeypatch.setenv("JUDGE_RL_NO_PROGRESS", "1")

    def _run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["label", *args])
        out = capsys.readouterr()
        return rc, out.out, out.err

    return _run


def args_for(tmp_path: Path, judge: Path, inp: Path, tag: str, cache: str = "c") -> list[str]:
    return [
        "--judge",
        str(judge),
        "--input",
        str(inp),
        "--output",
        str(tmp_path / f"prefs-{tag}.jsonl"),
        "--run",
        str(tmp_path / f"run-{tag}"),
        "--cache",
        str(tmp_path / f"{cache}.sqlite"),
    ]


def test_judging_starts_before_the_input_is_read(label, tmp_path, monkeypatch):
    """The first request goes out while most of the file is still unread (reading every row
    first, as before, puts every 'row' event before the first 'call')."""
    events: list[str] = []
    rows_of = read_mod.iter_raw_rows

    def recording_rows(path: Any) -> Any:
        for raw in rows_of(path):
            events.append("row")
            yield raw

    chat = MockBackend.chat

    async def recording_chat(self: MockBackend, requests: Any) -> Any:
        events.append("call")
        return await chat(self, requests)

    monkeypatch.setattr(read_mod, "iter_raw_rows", recording_rows)
    monkeypatch.setattr(MockBackend, "chat", recording_chat)
    inp = write(tmp_path / "pairs.jsonl", pair_rows())
    rc, _, err = label(*args_for(tmp_path, spec(tmp_path), inp, "s"))
    assert rc == 0, err
    first_call = events.index("call")
    last_row = len(events) - 1 - events[::-1].index("row")
    assert first_call < last_row
    assert events[:first_call].count("row") < N // 2  # most of the file read after it
    assert f"{N + 2} comparisons (pairwise)" in err  # the header still names the whole input


@pytest.mark.parametrize("order", ["fixed", "both"])
def test_streamed_outputs_equal_reading_first(label, tmp_path, monkeypatch, order):
    """Same preference file (byte for byte), run log (but for timings) and estimate line as
    the whole input read before judging; repeated rows judged once either way."""
    import judge_rl.pipeline.label as pl

    judge = spec(tmp_path, order=order, latency=0.0005)
    inp = write(tmp_path / "pairs.jsonl", pair_rows())
    extra = ["--no-drop-ties"]
    sent: list[int] = []
    chat = MockBackend.chat

    async def counting_chat(self: MockBackend, requests: Any) -> Any:
        sent.append(len(requests))
        return await chat(self, requests)

    monkeypatch.setattr(MockBackend, "chat", counting_chat)
    # small chunks: answers come back while the file is still read (the estimate of a later
    # chunk must not take the completion lengths seen so far)
    monkeypatch.setattr(pl, "STREAM_FIRST", 16)
    monkeypatch.setattr(pl, "STREAM_CHUNK", 16)
    rc, out_s, err_s = label(*args_for(tmp_path, judge, inp, "stream", cache="cs"), *extra)
    assert rc == 0, err_s
    per = 2 if order == "both" else 1
    assert sum(sent) == per * N  # N distinct comparisons: the two repeats judged once
    real_open = pl.open_stream
    opened: list[Any] = []

    def no_stream(path: Any, cfg: Any) -> Any:
        opened.append(real_open(path, cfg))  # it would have streamed this input
        return None

    monkeypatch.setattr(pl, "open_stream", no_stream)
    rc, out_w, err_w = label(*args_for(tmp_path, judge, inp, "whole", cache="cw"), *extra)
    assert rc == 0, err_w
    assert opened and opened[0] is not None
    a = (tmp_path / "prefs-stream.jsonl").read_bytes()
    b = (tmp_path / "prefs-whole.jsonl").read_bytes()
    assert a == b and a.count(b"\n") > N // 2

    def lines(err: str) -> list[str]:
        return [x for x in err.splitlines() if "estimate:" in x or "comparisons (" in x]

    assert lines(err_s) == lines(err_w) and len(lines(err_s)) == 2
    ls, lw = load(tmp_path / "run-stream"), load(tmp_path / "run-whole")
    assert ls.label is not None and lw.label is not None
    js = [j.model_dump(exclude={"latency_s", "calls"}) for j in ls.label.judgments]
    jw = [j.model_dump(exclude={"latency_s", "calls"}) for j in lw.label.judgments]
    assert js == jw
    assert [c.model_dump() for c in ls.label.comparisons] == [
        c.model_dump() for c in lw.label.comparisons
    ]
    ss, sw = dict(ls.label.summary), dict(lw.label.summary)
    for s in (ss, sw):
        s.pop("time_s")
        s.pop("transport", None)
    assert ss == sw
    assert sum(sent) == 2 * per * N
    assert ss["n"] == N + 2


def test_second_streamed_run_finds_every_judgment_in_the_cache(label, tmp_path):
    judge = spec(tmp_path)
    inp = write(tmp_path / "pairs.jsonl", pair_rows())
    rc, _, err = label(*args_for(tmp_path, judge, inp, "one"))
    assert rc == 0, err
    rc, _, err = label(*args_for(tmp_path, judge, inp, "two"))
    assert rc == 0, err
    assert f"estimate: 0 calls, {N} cached" in err
    log = load(tmp_path / "run-two")
    assert log.label is not None and log.label.summary["calls"] == 0
    assert (tmp_path / "prefs-one.jsonl").read_bytes() == (
        tmp_path / "prefs-two.jsonl"
    ).read_bytes()


def test_streamed_run_keeps_the_call_cap(label, tmp_path):
    """--max-calls is checked call by call while the input is still being read."""
    judge = spec(tmp_path, latency=0.0005)
    inp = write(tmp_path / "pairs.jsonl", pair_rows())
    rc, _, err = label(*args_for(tmp_path, judge, inp, "cap"), "--max-calls", "100")
    assert rc == 2
    assert "budget reached" in err
    log = load(tmp_path / "run-cap")
    assert log.label is not None
    assert "100 calls made" in err and f"{N - 100} calls not made" in err
    assert log.label.summary["budget_refused"] == N - 100
    # the refused comparisons fail as budget failures (a repeat of one counts twice)
    assert log.label.summary["failures"] == {"budget": N - 100 + 1}


def test_streamed_run_keeps_the_cost_cap(label, tmp_path):
    """A --max-cost far below the whole input's cost: never passed, however many chunks are
    read while calls are in flight."""
    judge = spec(tmp_path, prices=True, latency=0.0005)
    inp = write(tmp_path / "pairs.jsonl", pair_rows())
    cap = 0.5
    rc, _, err = label(*args_for(tmp_path, judge, inp, "cost"), "--max-cost", str(cap))
    assert rc == 2, err
    assert "budget reached" in err
    log = load(tmp_path / "run-cost")
    assert log.label is not None
    spent = log.label.summary["cost"]
    assert 0 < spent <= cap
    refused = log.label.summary["budget_refused"]
    assert 0 < refused < N
    made = int(err.split(" calls made")[0].rsplit(" ", 1)[1])
    assert made + refused == N and made > 1


def test_bad_row_mid_stream_same_error_and_finished_work_cached(label, tmp_path, monkeypatch):
    """A bad row in the middle: exit 2 with the message reading first gives; the judgments
    finished before it are in the cache, so the re-run on the fixed file judges only the rest."""
    import judge_rl.pipeline.label as pl

    # small chunks: the loop turns often enough for answers to come back before the bad row
    monkeypatch.setattr(pl, "STREAM_FIRST", 16)
    monkeypatch.setattr(pl, "STREAM_CHUNK", 16)
    judge = spec(tmp_path)
    rows = pair_rows()
    bad = [*rows[:400], {"prompt": "x", "response_a": 3}, *rows[400:]]
    inp = write(tmp_path / "bad.jsonl", bad)
    rc, _, err = label(*args_for(tmp_path, judge, inp, "bad"))
    assert rc == 2
    assert f"{inp}:401: response_a: expected text, got a number" in err
    assert not (tmp_path / "prefs-bad.jsonl").exists()
    fixed = write(tmp_path / "fixed.jsonl", rows)
    rc, _, err = label(*args_for(tmp_path, judge, fixed, "fixed"))
    assert rc == 0, err
    line = next(x for x in err.splitlines() if x.startswith("estimate:"))
    cached = int(line.split(" cached")[0].rsplit(" ", 1)[1])
    assert 16 <= cached <= 400  # judged before the bad row was reached, and kept
    log = load(tmp_path / "run-fixed")
    assert log.label is not None
    assert log.label.summary["calls"] + log.label.summary["cached"] == N + 2
    assert log.label.summary["calls"] == N - cached


def test_limit_and_dry_run_read_the_whole_file_first(label, tmp_path):
    """--limit and --dry-run are not streamed: the header names the whole file's comparisons
    (as before), a bad row past the limit is still an error, a dry run judges nothing."""
    judge = spec(tmp_path)
    rows = pair_rows()
    inp = write(tmp_path / "pairs.jsonl", rows)
    rc, _, err = label(*args_for(tmp_path, judge, inp, "lim"), "--limit", "70")
    assert rc == 0, err
    assert f"{N + 2} comparisons (pairwise)" in err and "estimate: 70 calls" in err
    log = load(tmp_path / "run-lim")
    assert log.label is not None and log.label.summary["n"] == 70
    rc, _, err = label(*args_for(tmp_path, judge, inp, "dry"), "--dry-run")
    assert rc == 0 and f"estimate: {N - 70} calls, 70 cached" in err
    assert not (tmp_path / "prefs-dry.jsonl").exists()
    bad = write(tmp_path / "bad.jsonl", [*rows[:400], {"prompt": "x", "response_a": 3}])
    rc, _, err = label(*args_for(tmp_path, judge, bad, "badlim"), "--limit", "70")
    assert rc == 2 and f"{bad}:401: response_a" in err


def test_ctrl_c_mid_stream_keeps_the_message_and_the_finished_work(tmp_path):
    """SIGINT while a streamed run judges: the command's usual message and exit status (130),
    every judgment finished before it in the cache, and the same command judges only the rest."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    judge = spec(tmp_path, latency=0.01)
    rows = pair_rows(3000)
    inp = write(tmp_path / "pairs.jsonl", rows)
    args = args_for(tmp_path, judge, inp, "int")
    env = dict(os.environ, JUDGE_RL_NO_PROGRESS="1")
    cmd = [sys.executable, "-m", "judge_rl", "label", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "c.sqlite"
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    done = conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
            except sqlite3.Error:
                continue
            if done >= 100:
                break
    assert proc.poll() is None and done >= 100, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].endswith("interrupted; finished work is saved")
    with sqlite3.connect(db) as conn:
        cached = conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    assert 100 <= cached < 3000
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # only what was missing (3,000 distinct comparisons; the estimate counts each once)
    assert f"estimate: {3000 - cached} calls, {cached} cached" in out.stderr
    log = load(tmp_path / "run-int")
    assert log.label is not None and log.label.summary["n"] == 3002
