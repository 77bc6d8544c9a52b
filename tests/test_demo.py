"""`judge-rl demo --quick`: the whole loop on the embedded model, end to end."""

from __future__ import annotations

import json

import pytest

from judge_rl.demo import load_spec
from judge_rl.errors import ConfigError
from tests.conftest import ROOT, requires_embedded, run_cli


def test_demo_spec_validates_and_has_both_profiles():
    spec = load_spec(ROOT / "evals" / "demo.yaml")
    assert {"full", "quick"} <= set(spec.profiles)


def test_demo_spec_unknown_key_is_an_error(tmp_path):
    bad = tmp_path / "demo.yaml"
    bad.write_text((ROOT / "evals" / "demo.yaml").read_text() + "\nsurprise: 1\n")
    with pytest.raises(ConfigError, match="surprise"):
        load_spec(bad)
    r = run_cli("demo", "--spec", str(bad), "--quick")
    assert r.returncode == 2 and "surprise" in r.stderr and "Traceback" not in r.stderr


@requires_embedded
def test_demo_quick_end_to_end(tmp_path):
    r = run_cli(
        "demo",
        "--quick",
        "--run",
        str(tmp_path / "demo"),
        timeout=900,
        env={"JUDGE_RL_JUDGMENT_CACHE": str(tmp_path / "judgments.sqlite")},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((tmp_path / "demo" / "log.json").read_text())
    for section in ("label", "audit", "reward_model", "ppo", "overopt", "tournament"):
        assert log[section], section
    models = {row["model"] for row in log["tournament"]["leaderboard"]}
    assert {"base-policy", "ppo-final", "empty-answer", "prompt-echo", "word-repeated"} <= models
    assert log["overopt"]["probes"], "the reward model was not probed"
    assert len(log["ppo"]["steps"]) == 2
    assert any("held-out GSM8K accuracy" in n for n in log["notes"])
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "<html" in html and "base-policy" in html
    assert "HTML report:" in r.stdout
