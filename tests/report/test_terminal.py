"""Terminal report: every section from fixture logs, 80-column snapshots, safety of data text.

Update the snapshots after an intended change with ``JUDGE_RL_UPDATE_SNAPSHOTS=1``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from judge_rl import runlog
from judge_rl.report.terminal import RENDERERS, render_text

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
STAGES = ("label", "audit", "reward_model", "ppo", "overopt", "tournament", "combined")
UPDATE = os.environ.get("JUDGE_RL_UPDATE_SNAPSHOTS") == "1"


@pytest.mark.parametrize("stage", STAGES)
def test_stored_fixture_matches_factory(stage, factory):
    """The stored logs are what the factory builds from the pydantic models (no drift)."""
    stored = (FIXTURES / stage / "log.json").read_text(encoding="utf-8")
    log = runlog.load(FIXTURES / stage)
    assert log.model_dump_json(indent=1) == stored
    assert factory.build(stage).model_dump_json(indent=1) == stored, (
        "fixture out of date: run python tests/report/fixtures/factory.py"
    )


@pytest.mark.parametrize("stage", STAGES)
def test_snapshot_80_columns(stage):
    log = runlog.load(FIXTURES / stage)
    text = render_text(log, width=80)
    for line in text.splitlines():
        assert cell_len(line) <= 80, line
    assert "\x1b[" not in text
    snap = SNAPSHOTS / f"{stage}.txt"
    if UPDATE or not snap.exists():
        if not UPDATE and os.environ.get("CI"):
            pytest.fail(f"missing snapshot {snap}")
        snap.write_text(text, encoding="utf-8")
    assert text == snap.read_text(encoding="utf-8"), (
        f"terminal report changed; if intended, rerun with JUDGE_RL_UPDATE_SNAPSHOTS=1 ({snap})"
    )


@pytest.mark.parametrize("stage", STAGES[:-1])
def test_each_stage_renders_its_section_only(stage):
    text = render_text(runlog.load(FIXTURES / stage))
    for name, (title, _) in RENDERERS.items():
        heading = re.search(rf"^{re.escape(title)} ─", text, re.M)
        assert bool(heading) == (name == stage), (name, title)


def test_combined_has_every_section_and_the_facts():
    text = render_text(runlog.load(FIXTURES / "combined"))
    for title, _ in RENDERERS.values():
        assert re.search(rf"^{re.escape(title)} ─", text, re.M), title
    # labelling: verdicts, failures by kind, consistency, cost
    assert re.search(r"a wins\s+9\s+37\.5%", text)
    assert re.search(r"^\s+timeout\s+1", text, re.M) and "position consistency" in text
    assert re.search(r"score mean \[min, max\]\s+1.500 \[0.000, 3.000\]", text)
    # audit: CI, skipped count, a missing metric's reason, variants side by side
    assert "0.712 [0.662, 0.762]" in text and "judge model is not among" in text
    assert "order=both" in text and "jury(3)" in text
    # PPO sparkline, alarm with evidence, leaderboard with rank interval and CI
    assert re.search(r"reward_mean\s+[▁▂▃▄▅▆▇█]{10,}", text)
    assert "ALARM step 240 gold_drop" in text and "gold_peak=0.860" in text
    assert re.search(r"1 \(1–2\)\s+smol-ppo-step400\s+1100\.0\s+\[1065, 1135\]", text)
    assert "note: the policy's gold score peaked" in text


def test_hostile_text_is_inert(factory):
    text = render_text(factory.hostile())
    assert "\x1b" not in text
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", text)
    assert "[U+202E]" in text
    assert "[bold red]markup[/]" in text  # rich markup in data is printed, not interpreted
    assert "[link=" in text and "\x1b]8" not in text  # no terminal hyperlink escape


def test_missing_and_extra_keys_are_tolerated():
    """Sections with empty summaries, odd rows and unknown keys still render."""
    log = runlog.RunLog.model_validate(
        {
            "run": "odd",
            "command": "x",
            "version": 1,
            "label": {"summary": {}, "new_field": 1},
            "extra": {"seed_sweep": [1, 2], "rows": [{"a": 1}]},
            "audit": {
                "metrics": {
                    "accuracy": {"value": None, "note": "no human labels"},
                    "brand_new": {"value": 3.5},
                },
                "variants": [{"metrics": {}}],
                "confusion": {"a": {"weird": 2}},
            },
            "reward_model": {
                "train": [{"step": 1}, {"loss": float("inf")}],
                "reward_samples": {"x": []},
            },
            "ppo": {"steps": [{"step": 0}, {"reward_mean": float("nan"), "custom": 2.0}]},
            "overopt": {
                "alarms": [{}],
                "points": [{"gold_mean": float("nan")}],
                "fit": {"note": "too few"},
            },
            "tournament": {
                "leaderboard": [{"model": "m"}],
                "models": ["m"],
                "win_matrix": [[None]],
                "winrates": [{}],
            },
        }
    )
    text = render_text(log)
    assert "brand new" in text and "no human labels" in text and "custom" in text
    assert "new_field: 1" in text and "seed_sweep: 1, 2" in text
    from judge_rl.report.html import render_html

    html = render_html(log)
    assert 'id="tournament"' in html and "brand new" in html


def test_old_version_is_named(tmp_path):
    (tmp_path / "log.json").write_text('{"version": 0, "run": "r", "command": "c"}')
    from judge_rl.errors import JudgeRLError

    with pytest.raises(JudgeRLError, match=r"version 0 is not supported.*reads versions 1"):
        runlog.load(tmp_path)
