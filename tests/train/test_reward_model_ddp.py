"""The same `judge-rl train-rm` on 2 processes (torchrun, gloo on CPU) matches 1 process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rm_helpers  # noqa: E402

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_match_one(tmp_path):
    from safetensors.torch import load_file

    from judge_rl.data import write_preferences
    from judge_rl.train.reward_model import RewardModelConfig, train_reward_model

    data = tmp_path / "pairs.jsonl"
    write_preferences(rm_helpers.planted_records(100, seed=7), data)
    backbone = rm_helpers.save_tiny_reward_backbone(tmp_path / "bb")
    common = dict(
        data=str(data),
        model=str(backbone),
        lr=2e-3,
        epochs=1,
        eval_split=0.2,
        eval_every=5,
        save_every=0,
        bf16="off",
        threads=1,
        grad_accum=2,
        seed=0,
    )

    # 1 process, global batch 8
    one = train_reward_model(
        RewardModelConfig(output=str(tmp_path / "one"), batch_size=8, **common)
    )
    # 2 processes × 4 pairs: the same global batches, each process half of each
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        NO_COLOR="1",
        JUDGE_RL_NO_PROGRESS="1",
        OMP_NUM_THREADS="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "judge_rl",
        "train-rm",
        "--data",
        str(data),
        "--model",
        str(backbone),
        "--output",
        str(tmp_path / "two"),
        "--batch-size",
        "4",
        "--grad-accum",
        "2",
        "--lr",
        "2e-3",
        "--eval-split",
        "0.2",
        "--eval-every",
        "5",
        "--save-every",
        "0",
        "--bf16",
        "off",
        "--threads",
        "1",
        "--run-name",
        str(tmp_path / "run2"),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    from judge_rl.runlog import load

    two = load(tmp_path / "run2").reward_model
    assert two.model_extra["processes"] == 2
    assert two.n_train == one.section.n_train == 80
    assert len(two.train) and two.final["steps"] == one.steps == 5
    a = load_file(tmp_path / "one" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5), (k, (a[k] - b[k]).abs().max())
    assert two.evals[-1]["accuracy"] == pytest.approx(one.section.evals[-1]["accuracy"])
    assert two.evals[-1]["margin"] == pytest.approx(one.section.evals[-1]["margin"], abs=1e-4)
