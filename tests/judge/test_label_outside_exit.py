"""Issue 19 item 2, eighth round: the `judge-rl` process leaves what its run held to the
operating system instead of freeing ~200,000 objects one by one as it ends (~60 ms of CPU for
10,000 judgments); an in-process caller gets everything freed as before."""

from __future__ import annotations

import gc
import json
import sys
import threading
import types

import judge_rl.commands.label as label_cmd
from judge_rl.cli import main


def _label(tmp_path, capsys) -> int:
    inp = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": f"q{i}", "response_a": "a" * (i % 4 + 1), "response_b": "bb"} for i in range(9)
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["label", "--judge", "mock-pairwise", "--input", str(inp), "--no-cache"]
    rc = main([*args, "--output", str(tmp_path / "o.jsonl"), "--run", str(tmp_path / "r")])
    capsys.readouterr()
    return rc


def test_the_cli_process_keeps_the_run_for_the_os(tmp_path, monkeypatch, capsys):
    fake_main = types.ModuleType("__main__")
    fake_main.__spec__ = types.SimpleNamespace(name="judge_rl.__main__")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    monkeypatch.setattr(label_cmd, "_KEPT", [])
    assert label_cmd._exits_after()
    try:
        assert _label(tmp_path, capsys) == 0
        kept = label_cmd._KEPT
        assert kept and kept[-1] is kept  # refers to itself: module teardown does not free it
        labels = kept[0]
        assert type(labels).__name__ == "Labels" and len(labels.judgments) == 9
        assert any(x is labels.records for x in kept) or len(labels.records) == 0
        assert gc.get_freeze_count() > 0  # frozen: the last collection at exit skips it
    finally:
        label_cmd._KEPT.clear()
        gc.unfreeze()
    # files written as ever
    assert (tmp_path / "o.jsonl").read_text().count("\n") > 0
    assert json.loads((tmp_path / "r" / "log.json").read_text())["label"]["summary"]["n"] == 9


def test_an_in_process_caller_keeps_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(label_cmd, "_KEPT", [])
    assert not label_cmd._exits_after()
    assert _label(tmp_path, capsys) == 0
    assert label_cmd._KEPT == []
    assert gc.get_freeze_count() == 0


def test_no_young_collection_scans_what_a_run_keeps():
    """A run keeps its judgments to the end: each young collection scanned everything made
    since the last one and found nearly nothing (405 objects of garbage in 10,000 judgments;
    0.12-0.14 s of CPU at one collection every 50,000 allocations). 200,000 kept objects now
    go through none; the interpreter's threshold comes back after the run."""
    from judge_rl.pipeline.label import run_gc

    young = []

    def count(phase, info):
        if phase == "start" and info["generation"] == 0:
            young.append(1)

    before = gc.get_threshold()
    gc.callbacks.append(count)
    try:
        with run_gc():
            kept = [{"i": i} for i in range(200_000)]
            during = len(young)
    finally:
        gc.callbacks.remove(count)
    assert len(kept) == 200_000
    assert during == 0
    assert gc.get_threshold() == before


def test_the_run_log_is_written_on_a_thread_while_the_table_is_drawn(tmp_path, monkeypatch, capsys):
    """The run log's bytes are written and synced on a thread of its own (the summary table is
    drawn meanwhile); the command waits for it before saying the log was written."""
    import judge_rl._io as io_mod

    real = io_mod.atomic_write_bytes
    seen = []

    def spy(path, data):
        seen.append((str(path).endswith("log.json"), threading.current_thread().name))
        real(path, data)

    monkeypatch.setattr(io_mod, "atomic_write_bytes", spy)
    assert _label(tmp_path, capsys) == 0
    assert (True, "judge-rl-write") in seen
    assert json.loads((tmp_path / "r" / "log.json").read_text())["label"]["summary"]["n"] == 9


def test_a_failed_run_log_write_is_the_commands_error(tmp_path, monkeypatch, capsys):
    import errno

    import judge_rl._io as io_mod

    real = io_mod.atomic_write_bytes

    def full(path, data):
        if str(path).endswith("log.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(io_mod, "atomic_write_bytes", full)
    inp = tmp_path / "pairs.jsonl"
    inp.write_text(json.dumps({"prompt": "q", "response_a": "a", "response_b": "bb"}) + "\n")
    args = ["label", "--judge", "mock-pairwise", "--input", str(inp), "--no-cache"]
    rc = main([*args, "--output", str(tmp_path / "o.jsonl"), "--run", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert rc == 2
    assert "No space left on device" in out.err and "log.json" in out.err
    assert "wrote" not in out.out
    assert not (tmp_path / "r" / "log.json").exists()
