"""Every example in examples/ runs, as a user would run it, with a tiny budget.

Each script runs in a subprocess (``sys.executable``, ``PYTHONPATH`` = the repository root,
offline hub) from a temporary working directory, so its ``reports/`` and ``out/`` land there.
``JUDGE_RL_EXAMPLES_QUICK=1`` is the examples' small-budget switch (same as ``--quick``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import requires_embedded

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SECRET = "sk-example-test-4f1c9e"

# Which test runs which example (test_every_example_is_tested keeps this honest).
TESTED = {
    "label_openai.py": "test_label_openai",
    "tournament_mtbench.py": "test_tournament_mtbench",
    "train_rm_hh.py": "test_train_rm_hh",
    "rlvr_gsm8k.py": "test_rlvr_gsm8k",
    "audit_judge.py": "test_audit_judge",
    "scale_out/launch_cpu.py": "test_scale_out_two_cpu_processes",
}


def run_example(
    script: str, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.update(
        PYTHONPATH=str(ROOT) + os.pathsep + full.get("PYTHONPATH", ""),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        JUDGE_RL_EXAMPLES_QUICK="1",
        JUDGE_RL_NO_PROGRESS="1",
        JUDGE_RL_CACHE=str(cwd / "cache"),
        NO_COLOR="1",
        COLUMNS="120",
        OMP_NUM_THREADS="1",
    )
    full.update(env or {})
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random Llama + byte tokenizer with room for the built-in prompts (2048 positions)."""
    from judge_rl.models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", max_position_embeddings=2048)


def log_of(cwd: Path, run: str) -> dict:
    return json.loads((cwd / "reports" / run / "log.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------


def test_every_example_is_tested_and_listed():
    scripts = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.py")}
    assert scripts == set(TESTED), "add the new example to TESTED and write its test"
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for script in scripts:
        assert Path(script).name in readme, f"{script} missing from examples/README.md"
        doc = (EXAMPLES / script).read_text(encoding="utf-8")
        assert doc.startswith('"""') and "Run" in doc and "--quick" in doc, script


def test_label_openai(tmp_path):
    pytest.importorskip("aiohttp")
    from judge_rl.backends._fakeserver import start_in_thread

    with start_in_thread() as server:
        r = run_example(
            "label_openai.py",
            "--base-url", server.url, "--model", "fake-judge", "--api-key-env", "EXAMPLE_KEY",
            cwd=tmp_path, env={"EXAMPLE_KEY": SECRET},
        )  # fmt: skip
        out = ok(r)
        hits = sum(server.state.hits.values())
        auth = set(server.state.auth)
    assert "6 pairs" in out and "wrote 6 preferences" in out, out
    assert hits == 12  # 6 pairs x both orders
    assert auth == {f"Bearer {SECRET}"}  # the key is sent ...
    rows = [json.loads(line) for line in (tmp_path / "out/label_openai/prefs.jsonl").open()]
    assert len(rows) == 6 and {"prompt", "chosen", "rejected", "p_chosen"} <= set(rows[0])
    written = "".join(p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())
    assert SECRET not in written + r.stdout + r.stderr  # ... and never written or printed


def test_label_openai_unreachable_endpoint_is_one_line(tmp_path):
    r = run_example(
        "label_openai.py", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "m",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and r.stderr.startswith("error:"), r.stderr[-2000:]


def test_tournament_mtbench(tmp_path):
    out = ok(run_example("tournament_mtbench.py", cwd=tmp_path))
    t = log_of(tmp_path, "example-tournament-mtbench")["tournament"]
    models = {row["model"] for row in t["leaderboard"]}
    assert models == {"gpt-4", "gpt-3.5-turbo", "vicuna-13b-v1.3", "alpaca-13b", "llama-13b"}
    assert len(t["battles"]) == 20
    assert "Kendall tau vs published order" in out


def test_train_rm_hh(tmp_path, tiny):
    out = ok(run_example("train_rm_hh.py", "--model", str(tiny), cwd=tmp_path))
    rm = log_of(tmp_path, "example-rm-hh")["reward_model"]
    assert rm["n_train"] == 32 and rm["n_eval"] == 8
    assert 0.0 <= rm["final"]["accuracy"] <= 1.0 and rm["final"]["steps"] == 3
    assert "held-out (8 pairs): accuracy" in out
    assert (tmp_path / "out/rm-hh/config.json").exists()


def test_rlvr_gsm8k(tmp_path, tiny):
    out = ok(run_example("rlvr_gsm8k.py", "--policy", str(tiny), cwd=tmp_path))
    ppo = log_of(tmp_path, "example-rlvr-gsm8k")["ppo"]
    assert [int(s["step"]) for s in ppo["steps"]] == [1, 2]
    assert ppo["reward"] == "verifier:gsm8k"
    assert all(0.0 <= s["reward_mean"] <= 1.0 for s in ppo["steps"])  # a verifier gives 0/1
    assert "held-out accuracy (2 problems, greedy)" in out


def test_audit_judge(tmp_path):
    out = ok(run_example("audit_judge.py", cwd=tmp_path))
    longer = log_of(tmp_path, "example-audit-mock-pairwise")["audit"]["metrics"]
    first_audit = log_of(tmp_path, "example-audit-mock-first")["audit"]
    first = first_audit["metrics"]
    # the audit names each planted bias: length for one judge, position for the other
    assert longer["p_longer_wins_judge"]["value"] == 1.0
    assert longer["position_consistency"]["value"] == 1.0
    # mock-first labels in fixed order, so its headline metrics are the fixed rule's; the
    # both-orders variant beside it measures position consistency
    both = next(v for v in first_audit["variants"] if v["label"].startswith("order=both"))
    assert both["metrics"]["position_consistency"]["value"] == 0.0
    assert first["p_first_wins"]["value"] == 1.0
    assert "pos. consistency" in out


def test_scale_out_two_cpu_processes(tmp_path, tiny):
    out = ok(
        run_example(
            "scale_out/launch_cpu.py",
            "--model",
            str(tiny),
            cwd=tmp_path,
        )  # fmt: skip
    )
    rm = log_of(tmp_path, "rm-ddp")["reward_model"]
    assert rm["processes"] == 2 and rm["final"]["steps"] == 3
    assert "accelerate launch --config_file" in out and "reward model: 2 processes" in out


@pytest.mark.slow
def test_scale_out_ppo_two_cpu_processes(tmp_path, tiny):
    out = ok(
        run_example(
            "scale_out/launch_cpu.py",
            "--model",
            str(tiny),
            "--ppo",
            cwd=tmp_path,
        )  # fmt: skip
    )
    ppo = log_of(tmp_path, "ppo-ddp")["ppo"]
    assert len(ppo["steps"]) == 1
    assert out.count("PPO: 1 steps") == 1  # one main process reports, not one per rank


def test_accelerate_configs_load():
    pytest.importorskip("accelerate")
    from accelerate.commands.config.config_args import load_config_from_file

    expected = {
        "cpu_ddp.yaml": ("MULTI_GPU", 2),
        "multi_gpu.yaml": ("MULTI_GPU", 8),
        "deepspeed_zero3.yaml": ("DEEPSPEED", 8),
        "fsdp.yaml": ("FSDP", 8),
    }
    for name, (kind, procs) in expected.items():
        cfg = load_config_from_file(str(EXAMPLES / "scale_out" / name))
        assert str(cfg.distributed_type).endswith(kind) and cfg.num_processes == procs, name
    zero3 = load_config_from_file(str(EXAMPLES / "scale_out" / "deepspeed_zero3.yaml"))
    assert zero3.deepspeed_config["zero_stage"] == 3
    fsdp = load_config_from_file(str(EXAMPLES / "scale_out" / "fsdp.yaml"))
    assert fsdp.fsdp_config["fsdp_version"] == 2


@pytest.mark.slow
@requires_embedded
def test_audit_and_tournament_with_the_embedded_judge(tmp_path):
    out = ok(
        run_example(
            "audit_judge.py",
            "--judge",
            "pairwise-embedded",
            "--sample",
            "3",
            cwd=tmp_path,
            timeout=600,
        )
    )
    audit = log_of(tmp_path, "example-audit-pairwise-embedded")["audit"]
    assert audit["n_pairs"] == 3 and "pairwise-embedded" in out
    ok(
        run_example(
            "tournament_mtbench.py",
            "--judge",
            "pairwise-embedded",
            "--budget",
            "2",
            cwd=tmp_path,
            timeout=600,
        )
    )
    t = log_of(tmp_path, "example-tournament-mtbench")["tournament"]
    assert len(t["battles"]) == 2
