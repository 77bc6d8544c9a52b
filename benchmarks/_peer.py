"""Peer tools for side-by-side benchmarks live in their own virtual environments under
``.bench-venvs/<name>`` so their pins (TRL, FastChat, AlpacaEval) never change the project's.

A benchmark runs judge_rl in-process and the peer in a subprocess with :func:`peer_python`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / ".bench-venvs"


def peer_python(name: str, requirements: list[str], *, torch: bool = False) -> str:
    """Path of a python with ``requirements`` installed (created once, reused after).

    ``torch=True`` installs ``torch==2.13.0`` first (the local CPU wheel on these machines), so a
    peer's torch range is satisfied without pulling CUDA packages.
    """
    venv = VENVS / name
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    want = "\n".join(([("torch==2.13.0")] if torch else []) + requirements)
    if stamp.exists() and stamp.read_text() == want:
        return str(py)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if torch:
        subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *requirements], check=True)
    stamp.write_text(want)
    return str(py)


def run_peer(python: str, script: str, *args: str, timeout: float = 1800) -> str:
    """Run ``python script args`` with the repo on PYTHONPATH; returns stdout (raises on error)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run(
        [python, script, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if r.returncode != 0:
        raise RuntimeError(f"{script} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return r.stdout


def clock(since: tuple[float, float] | None = None) -> tuple[float, float]:
    """(wall, CPU of finished child processes) now, or elapsed since ``since``: times a
    subprocess (a peer's whole script, a ``judge-rl`` command) start to exit."""
    import resource
    import time

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    now = (time.perf_counter(), ru.ru_utime + ru.ru_stime)
    return now if since is None else (now[0] - since[0], now[1] - since[1])


def run_command(args: list[str], timeout: float = 1800) -> tuple[float, float]:
    """``python -m judge_rl ARGS`` in its own process, as a user runs it from the files on disk:
    (wall, CPU) seconds, process start to exit (raises when it fails)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = clock()
    r = subprocess.run(
        [sys.executable, "-m", "judge_rl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    took = clock(t0)
    if r.returncode != 0:
        raise RuntimeError(f"judge-rl {args[0]} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return took


def count_train_positions(model: object) -> list[int]:
    """Count the token positions (padding included) that ``model``'s forward runs on with
    gradients on; returns the one-element counter the hook adds to."""
    import torch

    positions = [0]

    def count(module, args, kwargs):  # type: ignore[no-untyped-def]
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            emb = kwargs.get("inputs_embeds")
            ids = emb[..., 0] if emb is not None else None
        if torch.is_grad_enabled() and ids is not None:
            positions[0] += ids.numel()

    model.register_forward_pre_hook(count, with_kwargs=True)  # type: ignore[attr-defined]
    return positions
