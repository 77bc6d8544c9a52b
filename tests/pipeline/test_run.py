"""`judge-rl run PIPELINE.yaml`: validation on load, every stage running, resume, exit codes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from judge_rl.errors import ConfigError
from judge_rl.pipeline.runner import KINDS, validate
from judge_rl.pipeline.spec import read_pipeline
from tests.conftest import ROOT, requires_embedded, run_cli

DEMO = ROOT / "evals" / "demo.yaml"
GPU = ROOT / "examples" / "pipelines" / "gpu-gsm8k.yaml"


@pytest.mark.parametrize("path", [DEMO, GPU], ids=["demo", "gpu-example"])
def test_shipped_pipelines_validate(path):
    spec = read_pipeline(path)
    for profile in [None, *spec.profiles]:
        plan = validate(spec, profile)
        assert set(plan.configs) == set(spec.stages)


def test_gpu_example_is_what_it_says():
    """The GPU example: an OpenAI-compatible judge URL, a 0.5-8B policy, vLLM rollouts."""
    plan = validate(read_pipeline(GPU))
    ppo = plan.configs["ppo"]
    assert ppo.ppo["rollout"] == "vllm" and ppo.reward == "rm" and ppo.gold.startswith("verifier")
    assert "1.5B" in ppo.policy
    assert plan.configs["label"].judge_options["base_urls"][0].startswith("http")
    assert {"train_rm", "ppo", "tournament"} <= set(plan.configs)


BROKEN = [
    # (replace this, with that) in evals/demo.yaml -> the stage and key the error must name
    (
        "temperature: 0.7, max_new_tokens: 12",
        "temprature: 0.7, max_new_tokens: 12",
        "generate",
        "temprature",
    ),
    ("n: 2, temperature", 'n: "two", temperature', "generate", "'n'"),
    ("        lr: 1.0e-3", "        lrr: 1.0e-3", "ppo", "lrr"),
    ("        lr: 1.0e-3", "        lr: -1.0", "ppo", "lr"),
    ("bootstrap: 500, injection: 2", "bootstrap: 500, injektion: 2", "audit", "injektion"),
    (
        "{candidates: generate.candidates}",
        "{candidates: generate.candidatez}",
        "label",
        "candidatez",
    ),
    ('judge: "grader:proxy"', 'judge: "grader:nope"', "label", "grader:nope"),
]


@pytest.mark.parametrize("old,new,stage,key", BROKEN, ids=[b[3] for b in BROKEN])
def test_broken_stage_config_is_an_error_naming_stage_and_key(tmp_path, old, new, stage, key):
    text = DEMO.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        validate(read_pipeline(bad), "quick")
    assert stage in str(e.value) and key in str(e.value)


def test_broken_stage_config_exits_2_before_any_stage_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("        lr: 1.0e-3", "        lrr: 1.0e-3", 1))
    r = run_cli("run", str(bad), "--run", str(tmp_path / "run"), "--profile", "quick")
    assert r.returncode == 2, r.stderr
    assert "stage 'ppo'" in r.stderr and "lrr" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "stages").exists()  # nothing ran


def test_unknown_profile_and_top_level_key_exit_2(tmp_path):
    r = run_cli("run", str(DEMO), "--run", str(tmp_path / "r"), "--profile", "nope")
    assert r.returncode == 2 and "nope" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text() + "\nsurprise: 1\n")
    r = run_cli("run", str(bad), "--run", str(tmp_path / "r"))
    assert r.returncode == 2 and "surprise" in r.stderr and "Traceback" not in r.stderr


def test_every_stage_kind_has_a_documented_config():
    for kind, k in KINDS.items():
        assert k.config.__doc__, kind


@requires_embedded
def test_run_quick_profile_every_stage_then_resume_redoes_nothing(tmp_path):
    """`judge-rl demo --quick` runs every stage; `judge-rl run evals/demo.yaml --profile quick` on
    the same folder redoes nothing (the demo *is* that pipeline); a changed stage config reruns
    that stage only (resume is by config hash)."""
    run = tmp_path / "demo"
    env = {"JUDGE_RL_JUDGMENT_CACHE": str(tmp_path / "judgments.sqlite")}
    r = run_cli("demo", "--quick", "--run", str(run), "--threads", "1", timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((run / "log.json").read_text())
    stages = log["pipeline"]["stages"]
    assert [s["name"] for s in stages] == list(read_pipeline(DEMO).stages)
    assert all(s["status"] == "done" for s in stages), stages
    assert all(s["threads"] == 1 for s in stages)
    for section in ("label", "audit", "ppo", "overopt", "tournament", "demo"):
        assert log[section], section
    assert len(log["ppo"]["steps"]) == 2
    models = {row["model"] for row in log["tournament"]["leaderboard"]}
    assert "base-policy" in models and "empty-answer" in models and "answer-repeated" in models
    base = log["demo"]["gold_base"]  # intervals carry how they were computed
    assert base["level"] == 0.95 and base["method"] and base["resample"]
    assert log["notes"], "the report printed no conclusions"
    assert (run / "report.html").exists() and "HTML report:" in r.stdout
    files = {p: p.stat().st_mtime_ns for p in (run / "stages").iterdir()}

    args = ("run", str(DEMO), "--profile", "quick", "--run", str(run), "--threads", "1")
    t0 = time.perf_counter()
    r2 = run_cli(*args, timeout=600, env=env)
    again = time.perf_counter() - t0
    assert r2.returncode == 0, r2.stderr[-3000:]
    log2 = json.loads((run / "log.json").read_text())
    assert all(s["status"] == "skipped" for s in log2["pipeline"]["stages"])
    assert {p: p.stat().st_mtime_ns for p in (run / "stages").iterdir()} == files
    assert log2["demo"] == log["demo"] and log2["tournament"] == log["tournament"]
    assert "skipped" in r2.stderr
    assert again < 120, f"the resumed run took {again:.0f}s: something was redone"

    spec = tmp_path / "demo.yaml"
    spec.write_text(DEMO.read_text().replace("report: {bootstrap: 200", "report: {bootstrap: 300"))
    r3 = run_cli("run", str(spec), *args[2:], timeout=600, env=env)
    assert r3.returncode == 0, r3.stderr[-2000:]
    status = {
        s["name"]: s["status"]
        for s in json.loads((run / "log.json").read_text())["pipeline"]["stages"]
    }
    assert status.pop("report") == "done"
    assert set(status.values()) == {"skipped"}


def test_stage_functions_take_typed_configs_and_return_records():
    """The library surface: no argparse, printing or exiting in the pipeline package."""
    src = "\n".join(p.read_text() for p in (ROOT / "judge_rl" / "pipeline").glob("*.py"))
    for banned in (r"\bargparse\b", r"(?<![\w.])print\(", r"\bsys\.exit\b", r"\bconsole\("):
        assert not re.search(banned, src), banned
    assert Path(ROOT / "judge_rl" / "commands" / "run.py").exists()
