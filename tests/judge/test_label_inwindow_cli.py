"""Issue 19, tenth round: `judge-rl label` with the outputs made while it judges
(:class:`judge_rl.pipeline.label.LabelBuilder`) writes the bytes the command wrote from the
finished lists, on every path: a streamed pair file, the inputs read whole first (--limit,
candidates, references), orders fixed / random / both, ties kept or dropped, failures (exit 1),
resumed runs answered from the cache, JSONL and other formats. And after the last answer of a
2,000-pair run nothing is built per judgment any more: no record, no summary pass, no row
encoded, and the run log's serializer writes a few kB instead of the whole log (counted, not
timed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import judge_rl.pipeline.label as PL
from judge_rl.data import write_candidates
from judge_rl.types import Candidate


def _pairs(path: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        a = "a" * (i % 5 + 1) + (" é ✓" if i % 3 else ' "q"\n')
        b = "bb" if i % 4 else a  # some identical answers: ties
        rows.append({"prompt": f"q{i} ¿?", "response_a": a, "response_b": b + str(i % 2)})
    rows.append(rows[2])  # a duplicate pair: judged once, two positions
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _candidates(path: Path) -> Path:
    cands = [
        Candidate(prompt_id=f"q{i}", prompt=f"Explain {i}.", response=resp * (k + 1), source=src)
        for i in range(4)
        for k, (src, resp) in enumerate([("base", "short "), ("m1", "medium "), ("m2", "long ")])
    ]
    write_candidates(cands, path)
    return path


def _old_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command as before the builder: nothing made while judging, everything after."""

    class Nothing(PL.LabelBuilder):
        def add(self, rec: Any) -> None:
            return None

        def lines(self) -> None:
            return None

        def log_items(self) -> None:
            return None

    make = PL.make_labels

    def make_labels(*a: Any, built: Any = None, **k: Any) -> Any:
        return make(*a, **k)

    monkeypatch.setattr(PL, "LabelBuilder", Nothing)
    monkeypatch.setattr(PL, "make_labels", make_labels)


_VARYING = re.compile(rb'("created": |"time_s": |"timings": \{\n  "label": )[^,\n]*')


def _outputs(tmp_path: Path, out: Path) -> tuple[bytes, bytes]:
    log = (tmp_path / "run" / "log.json").read_bytes()
    return out.read_bytes(), _VARYING.sub(rb"\1<t>", log)


CASES: dict[str, list[str]] = {
    "streamed": ["--order", "fixed"],
    "streamed, ties kept": ["--order", "fixed", "--no-drop-ties"],
    "random order": ["--order", "random"],
    "both orders": ["--order", "both"],
    "limit (read whole)": ["--order", "fixed", "--limit", "20"],
    "candidates": ["--order", "fixed", "CANDIDATES"],
    "failures": ["FLAKY"],
    "json output": ["--order", "fixed", "OUT.json"],
    "gzip output": ["--order", "fixed", "OUT.jsonl.gz"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_command_writes_the_bytes_it_wrote_after_the_window(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, write_spec: Any
) -> None:
    from judge_rl.cli import main

    extra = list(CASES[case])
    judge = "mock-pairwise"
    inp = _pairs(tmp_path / "pairs.jsonl", 40)
    out = tmp_path / "prefs.jsonl"
    if "CANDIDATES" in extra:
        extra.remove("CANDIDATES")
        inp = _candidates(tmp_path / "cands.jsonl")
    if "FLAKY" in extra:
        extra.remove("FLAKY")
        judge = write_spec(
            "flaky",
            "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n"
            "order: fixed\nbackend_options: {faults: {parse: 0.2, timeout: 0.2}, seed: 1}\n",
        )
    for x in list(extra):
        if x.startswith("OUT"):
            extra.remove(x)
            out = tmp_path / f"prefs{x[3:]}"
    args = ["label", "--judge", judge, "--input", str(inp), "--output", str(out)]
    args += ["--run", str(tmp_path / "run"), *extra]
    runs: dict[str, tuple[int, bytes, bytes]] = {}
    # fresh runs (the old path in a cache of its own), and the same command resumed from the
    # new path's cache by both (the very judgments, latencies included)
    for name, old, cache in (
        ("new fresh", False, "a"),
        ("new resumed", False, "a"),
        ("old resumed", True, "a"),
        ("old fresh", True, "b"),
    ):
        with monkeypatch.context() as m:
            if old:
                _old_path(m)
            rc = main([*args, "--cache", str(tmp_path / f"{cache}.sqlite")])
            capsys.readouterr()
            runs[name] = (rc, *_outputs(tmp_path, out))
    assert runs["new fresh"][0] in (0, 1) and runs["new fresh"][1]
    new, old = runs["new resumed"], runs["old resumed"]
    if case == "failures":  # timeouts are not cached: judged again, with latencies of their own
        new, old = _timeless(new), _timeless(old)
    assert new == old
    assert b'"cached": true' in runs["new resumed"][2]
    # a fresh run's latencies are its own
    assert _timeless(runs["new fresh"]) == _timeless(runs["old fresh"])


def _timeless(run: tuple[int, bytes, bytes]) -> tuple[int, bytes, bytes]:
    return run[0], run[1], _LATENCY.sub(rb"\1<t>", run[2])


_LATENCY = re.compile(rb'("latency_s": )[0-9.e-]+')


def test_after_the_last_answer_nothing_is_built_per_judgment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, write_spec: Any
) -> None:
    """2,000 pairs, fixed order, an endpoint that answers after 50 ms (the event loop waits on
    it, as on a real one): once the judging is over (``make_labels`` is the first call after
    it), no summary pass runs, at most a tenth of the records are built and rows encoded (in
    practice the last few answers', 3-15 here), and the run log's serializer writes what is
    not the label lists (a few kB of the ~0.9 MB log). Before this round all of it happened
    after the last answer (2,000 records, 1 summary pass, the log's 4,000 items)."""
    import judge_rl.data._read as DR
    from judge_rl.cli import main
    from judge_rl.runlog import RunLog

    after = [False]
    counts = {"record": 0, "summarize": 0, "row": 0}
    serialized: list[int] = []

    def counted(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            if after[0]:
                counts[name] += 1
            return fn(*a, **k)

        return wrapper

    make = PL.make_labels

    def make_labels(*a: Any, **k: Any) -> Any:
        after[0] = True
        return make(*a, **k)

    class Serializer:
        def __init__(self, real: Any) -> None:
            self.real = real

        def to_json(self, *a: Any, **k: Any) -> bytes:
            data = self.real.to_json(*a, **k)
            serialized.append(len(data))
            return data  # type: ignore[no-any-return]

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    monkeypatch.setattr(PL, "make_labels", make_labels)
    monkeypatch.setattr(PL, "_record", counted("record", PL._record))
    monkeypatch.setattr(PL, "summarize", counted("summarize", PL.summarize))
    monkeypatch.setattr(DR, "_trl_row", counted("row", DR._trl_row))
    monkeypatch.setattr(
        RunLog, "__pydantic_serializer__", Serializer(RunLog.__pydantic_serializer__)
    )
    rows = [
        {"prompt": f"q{i}", "response_a": "a" * (i % 7 + 1), "response_b": "b" * 4}
        for i in range(2000)
    ]
    inp = tmp_path / "pairs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prefs.jsonl"
    judge = write_spec(
        "slow",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n"
        "order: fixed\nbackend_options: {latency_s: 0.05}\n",
    )
    args = ["label", "--judge", judge, "--no-cache"]
    rc = main([*args, "--input", str(inp), "--output", str(out), "--run", str(tmp_path / "r")])
    capsys.readouterr()
    assert rc == 0 and after[0]
    log = (tmp_path / "r" / "log.json").read_bytes()
    assert len(log) > 500_000 and len(out.read_bytes().splitlines()) > 1000
    # the builder works when the event loop has nothing else to do: the last few answers'
    # outputs may be left for the end (a handful; all 2,000 and a summary pass before)
    assert counts["summarize"] == 0
    assert counts["record"] <= 200 and counts["row"] <= 200, counts
    assert serialized and sum(serialized) < 20_000  # the log without its 4,000 items


MODELS_AT_END = r"""
import sys
import judge_rl.pipeline.label as PL
from judge_rl.cli import main
make = PL.make_labels
seen = []
def make_labels(*a, **k):
    seen.append("judge_rl.runlog" in sys.modules)
    return make(*a, **k)
PL.make_labels = make_labels
rc = main(sys.argv[1:])
print("MODELS", rc, seen)
"""


def test_the_run_log_models_are_imported_in_the_window(tmp_path: Path, write_spec: Any) -> None:
    """A fresh ``judge-rl label`` process (1,000 pairs, a 50 ms mock endpoint) has imported
    ``judge_rl.runlog`` when its last answer is in: the builder does it in an idle turn of
    the event loop once it made ``MODELS_AFTER`` judgments (before, ``make_labels`` imported
    it after the last answer, ~30-50 ms)."""
    import os
    import subprocess
    import sys

    judge = write_spec(
        "slow",
        "version: 1\nkind: pairwise\nbackend: mock\nmodel: m\ntemplate: prompt.j2\n"
        "order: fixed\nbackend_options: {latency_s: 0.05}\n",
    )
    inp = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": f"q{i}", "response_a": "a" * (i % 5 + 1), "response_b": "bbb"}
        for i in range(1000)
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["label", "--judge", judge, "--input", str(inp), "--output", str(tmp_path / "p.jsonl")]
    args += ["--run", str(tmp_path / "r"), "--no-cache"]
    env = dict(os.environ, JUDGE_RL_NO_PROGRESS="1", HF_HUB_OFFLINE="1")
    r = subprocess.run(
        [sys.executable, "-c", MODELS_AT_END, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    line = [x for x in r.stdout.splitlines() if x.startswith("MODELS")]
    assert line, r.stderr[-2000:]
    assert line[0] == "MODELS 0 [True]"
