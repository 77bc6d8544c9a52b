"""Shared by the multi-process tests (DDP, FSDP, DeepSpeed ZeRO-3 on CPU): a free port, the
DeepSpeed-on-CPU skip, an accelerate config for ZeRO-3, and a launch that kills every process
under it when it hangs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_deepspeed_or_skip() -> None:
    """Skip unless DeepSpeed imports and its CPU accelerator starts (its shared-memory op built:
    ~2 CPU-minutes the first time, cached under TORCH_EXTENSIONS_DIR)."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (see the test's doc)")
    code = (
        "from deepspeed.accelerator import get_accelerator as g\n"
        "assert g().device_name() == 'cpu', g().device_name()\n"
        "from deepspeed.comm.torch import build_shm_op\n"
        "build_shm_op()\n"
    )
    env = dict(os.environ, DS_ACCELERATOR="cpu")
    try:
        r = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        pytest.skip(
            "DeepSpeed's CPU op build did not finish in 15 min (a stale 'lock' file left in "
            "TORCH_EXTENSIONS_DIR by a killed build makes it wait forever)"
        )
    if r.returncode != 0:
        pytest.skip(f"DeepSpeed's CPU accelerator cannot start: {r.stderr.strip()[-600:]}")


def zero3_accelerate_config(tmp: Path, **ds: object) -> Path:
    """An accelerate config file for DeepSpeed ZeRO-3 on 2 processes, every parameter sharded
    (the default keeps parameters under 1e5 elements whole on each rank: all of a tiny model's);
    ``ds`` adds to / overrides the DeepSpeed settings."""
    ds_json = tmp / "ds_zero3.json"
    settings: dict[str, object] = {
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        **ds,
    }
    ds_json.write_text(json.dumps(settings))
    cfg = tmp / "accelerate.yaml"
    cfg.write_text(
        "compute_environment: LOCAL_MACHINE\n"
        "distributed_type: DEEPSPEED\n"
        "deepspeed_config:\n"
        f"  deepspeed_config_file: {ds_json}\n"
        "  deepspeed_multinode_launcher: standard\n"
        "  zero3_init_flag: false\n"
        "machine_rank: 0\nnum_machines: 1\nnum_processes: 2\n"
        "rdzv_backend: static\nsame_network: true\nuse_cpu: false\n"
    )
    return cfg


def launch_env(**extra: str) -> dict[str, str]:
    """The test process's environment for ranks: CPU DeepSpeed, one thread, no hub, the repo
    first on PYTHONPATH (DeepSpeed may sit on it outside the venv)."""
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    return env


def _descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (torchrun starts the ranks in sessions of their own, so a
    process-group kill of the launcher would leave them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def accelerate_launch(
    config: Path, script: str, args: list[str], *, env: dict[str, str], log_path: Path,
    timeout: float = 240, hang: str = "the launch hung", cwd: Path | None = None,
) -> str:  # fmt: skip
    """``accelerate launch --config_file CONFIG SCRIPT ARGS``; returns its output. On a hang
    every process under the launcher is killed and the test fails with ``hang``; a non-zero exit
    fails with the output's tail."""
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
        "--main_process_port", str(free_port()), script, *args,
    ]  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in [*_descendants(proc.pid), proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{hang}:\n{log_path.read_text()[-3000:]}")
    text = log_path.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text
