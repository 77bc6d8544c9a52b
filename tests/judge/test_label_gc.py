"""`judge-rl label` and the garbage collector (issue 19 item 2): during the run the comparisons
and the judge are frozen and young collections are rarer; afterwards the interpreter's settings
are back (an in-process caller keeps its own)."""

from __future__ import annotations

import gc
import json

import judge_rl.commands.label as label_cmd
from judge_rl.cli import main


def test_label_freezes_what_it_holds_and_restores_the_collector(tmp_path, monkeypatch, capsys):
    rows = [
        {"prompt": f"q{i}", "response_a": "a" * (i % 5 + 1), "response_b": "bb"} for i in range(30)
    ]
    inp = tmp_path / "pairs.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = {}
    real = label_cmd._quiet_gc

    def spy():
        real()
        seen["threshold"] = gc.get_threshold()[0]
        seen["frozen"] = gc.get_freeze_count()

    monkeypatch.setattr(label_cmd, "_quiet_gc", spy)
    before = gc.get_threshold()
    args = ["label", "--judge", "mock-pairwise", "--input", str(inp), "--no-cache"]
    rc = main([*args, "--output", str(tmp_path / "o.jsonl"), "--run", str(tmp_path / "r")])
    capsys.readouterr()
    assert rc == 0
    assert seen["threshold"] == 500_000 and seen["frozen"] > 1000
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_cli_process_leaves_the_run_frozen_for_its_exit(tmp_path, monkeypatch, capsys):
    """In the `judge-rl` process itself (``python -m judge_rl``), what the run froze stays
    frozen when the command returns: the interpreter's last collection at exit skips it
    (~0.2 s of 10,000 judgments); the thresholds still come back."""
    import sys
    import types

    assert not label_cmd._exits_after()  # pytest's own process: collector restored (above)
    fake_main = types.ModuleType("__main__")
    fake_main.__spec__ = types.SimpleNamespace(name="judge_rl.__main__")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    assert label_cmd._exits_after()
    inp = tmp_path / "pairs.jsonl"
    inp.write_text(json.dumps({"prompt": "q", "response_a": "a", "response_b": "bb"}) + "\n")
    before = gc.get_threshold()
    args = ["label", "--judge", "mock-pairwise", "--input", str(inp), "--no-cache"]
    try:
        rc = main([*args, "--output", str(tmp_path / "o.jsonl"), "--run", str(tmp_path / "r")])
        capsys.readouterr()
        assert rc == 0
        assert gc.get_freeze_count() > 1000 and gc.get_threshold() == before
    finally:
        gc.unfreeze()
