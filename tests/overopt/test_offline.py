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


def test_adapter_only_checkpoints_are_analysed(tmp_path):
    """A LoRA run's checkpoints hold adapter_config.json and no config.json: `judge-rl overopt`
    reads them (merged into their base) instead of refusing them as 'not a model folder'."""
    pytest.importorskip("peft")
    import torch
    from peft import LoraConfig, get_peft_model

    from judge_rl.models import load_causal_lm, save_tiny_model, write_adapter_base
    from judge_rl.overopt import planted
    from judge_rl.overopt.offline import OfflineConfig, analyse_run

    base = save_tiny_model(tmp_path / "base", hidden_size=32, num_layers=2)
    pm = get_peft_model(
        load_causal_lm(str(base)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():  # a non-zero adapter, so the checkpoint differs from its base
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    ck = tmp_path / "run" / "checkpoint-000002"
    pm.save_pretrained(ck)
    write_adapter_base(ck, str(base))
    assert not (ck / "config.json").exists()
    log = RunLog(
        run="r",
        command="ppo",
        config={"policy": str(base), "reward": "verifier:gsm8k", "max_new_tokens": 8},
        ppo=PPOSection(checkpoints=[{"step": 2, "path": str(ck)}]),
    )
    assert checkpoints_of(log, tmp_path / "run")[0]["path"] == str(ck)
    sec = analyse_run(
        log,
        planted.ShortWithTarget(),
        planted.prompts(4, seed=3),
        proxy=planted.TargetCount(),
        run_path=tmp_path / "run",
        config=OfflineConfig(device="cpu", max_new_tokens=8),
    )
    assert [p["step"] for p in sec.points] == [0, 2]
    assert sec.points[1]["checkpoint"] == str(ck)
    assert sec.points[1]["kl"] != 0.0  # the adapter was applied, not just the base
