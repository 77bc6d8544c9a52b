"""Versions and hardware for run logs, without pydantic or importlib.metadata.

``judge-rl ratings`` writes its run log without importing pydantic (its start-up is a tenth of the
command on a million battles); every other command records the same fields through
:func:`judge_rl.runlog.new_log`. Both call :func:`environment` here.
"""

from __future__ import annotations

import os
import sys


def environment() -> dict[str, object]:
    """Versions and hardware, recorded in every run log (no secrets, no environment variables)."""
    import platform

    versions = _versions(("judge_rl", "torch", "transformers", "openai", "vllm", "accelerate"))
    env: dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "judge_rl": versions.get("judge_rl"),
    }
    for pkg in ("torch", "transformers", "openai", "vllm", "accelerate"):
        if versions.get(pkg):
            env[pkg] = versions[pkg]
    if "torch" in sys.modules:
        import torch

        env["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
        env["threads"] = torch.get_num_threads()
    return env


def _norm(name: str) -> str:
    """A distribution name as importlib.metadata compares them (PEP 503, ``-`` as ``_``)."""
    import re

    return re.sub(r"[-_.]+", "_", name).lower()


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions, found as importlib.metadata finds them: the first ``*.dist-info`` /
    ``*.egg-info`` on ``sys.path`` with the name, its ``Version:`` header. Importing
    importlib.metadata costs ~50 ms, a tenth of the command on a million battles; this reads
    a folder listing and one small file per package. (Zipped path entries are not searched.)"""
    want = {_norm(p): p for p in packages}
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, dot, ext = name.rpartition(".")
            if not dot or ext not in ("dist-info", "egg-info"):
                continue
            key = _norm(stem.split("-", 1)[0])
            if key not in want or want[key] in found:
                continue
            folder = os.path.join(entry or ".", name)
            meta = os.path.join(folder, "METADATA" if ext == "dist-info" else "PKG-INFO")
            version = _header_version(meta if os.path.isdir(folder) else folder)
            if version:
                found[want[key]] = version
        if len(found) == len(want):
            break
    return found


def _header_version(path: str) -> str | None:
    """The ``Version:`` header of a METADATA / PKG-INFO file (headers end at a blank line)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
