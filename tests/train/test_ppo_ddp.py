"""PPO under ``accelerate launch`` with two CPU processes (gloo): it runs and stays in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _launch import ROOT, free_port  # noqa: E402


def test_two_process_gloo_run_stays_in_sync(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    # `--multi_gpu` picks the torchrun launcher; with no CUDA device accelerate runs DDP on CPU
    # with gloo (`--cpu` alone would start a single process).
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(Path(__file__).with_name("ppo_ddp_worker.py")),
        str(tmp_path),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a = json.loads((tmp_path / "rank0.json").read_text())
    b = json.loads((tmp_path / "rank1.json").read_text())
    assert a["world"] == b["world"] == 2
    # each rank sampled its own prompts ...
    assert set(a["prompts"]).isdisjoint(b["prompts"])
    # ... yet the gradients were averaged: identical parameters after the updates
    assert a["param_sum"] == b["param_sum"] and a["param_abs"] == b["param_abs"]
    assert a["value_sum"] == b["value_sum"]
    # statistics were gathered over both ranks (8 samples per step), identical on both
    assert [s["reward_mean"] for s in a["steps"]] == [s["reward_mean"] for s in b["steps"]]
    assert len(a["steps"]) == 3
    # the final checkpoint was written once, by the main process
    assert (tmp_path / "checkpoint-000003" / "config.json").exists()
