"""``make gpu-check``'s script cannot run here (no GPU); its checks are exercised on CPU with a
tiny model (``--cpu-smoke``) so that the script does not rot between GPU sessions."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def test_gpu_check_checks_pass_on_a_cpu_smoke_run(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RESULTS", [])
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        monkeypatch.setattr(
            "sys.argv", ["gpu_check.py", "--cpu-smoke", "--steps", "2", "--out", str(tmp_path)]
        )
        assert mod.main() == 0
    finally:
        torch.set_num_threads(n)
    names = {name for name, status, _ in mod.RESULTS if status == "PASS"}
    assert {
        "cpu-smoke:kl_step1_zero",
        "cpu-smoke:weights_change",
        "cpu-smoke:checkpoint_reloads",
    } <= names
