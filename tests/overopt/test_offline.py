"""Offline analysis: which checkpoints a run log yields, and clear errors when it cannot."""

from __future__ import annotations

import pytest

from judge_rl.errors import JudgeRLError
from judge_rl.overopt.offline import checkpoints_of
from judge_rl.runlog import PPOSection, RunLog


def _folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_checkpoints_one_per_step_in_order_relative_paths(tmp_path):
    _folder(tmp_path / "ck" / "a")
    _folder(tmp_path / "ck" / "b")
    _folder(tmp_path / "ck" / "c")
    log = RunLog(
        run="r",
        command="ppo",
        ppo=PPOSection(
            checkpoints=[
                {"step": 6, "path": "ck/b"},
                {"step": 3, "path": str(tmp_path / "ck" / "a")},
                {
                    "step": 6,
                    "path": "ck/c",
                    "tag": "monitor-step-6",
                },  # the latest save of a step wins
            ]
        ),
    )
    out = checkpoints_of(log, tmp_path)
    assert [c["step"] for c in out] == [3, 6]
    assert out[1]["path"] == str(tmp_path / "ck" / "c")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(JudgeRLError, match="no ppo section"):
        checkpoints_of(RunLog(run="r", command="label"), tmp_path)
    with pytest.raises(JudgeRLError, match="lists no checkpoints"):
        checkpoints_of(RunLog(run="r", command="ppo", ppo=PPOSection()), tmp_path)
    log = RunLog(run="r", command="ppo", ppo=PPOSection(checkpoints=[{"step": 1, "path": "gone"}]))
    with pytest.raises(JudgeRLError, match="missing or not a model folder: gone"):
        checkpoints_of(log, tmp_path)
