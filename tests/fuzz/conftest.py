"""Reaching the CLI's last-resort handler is a test failure: crash reports go to a per-test
folder that must stay empty (in-process the handler re-raises under pytest anyway)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_crash_report(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("crash")
    monkeypatch.setenv("JUDGE_RL_CRASH_DIR", str(folder))
    yield folder
    reports = sorted(folder.iterdir())
    assert not reports, "the CLI crashed (last-resort handler): " + reports[0].read_text()[-2000:]
