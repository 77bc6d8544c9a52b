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
