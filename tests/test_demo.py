"""`judge-rl demo`: evals/demo.yaml through the pipeline runner.

The quick profile runs in the default suite (tests/pipeline/test_run.py runs it through
`judge-rl run`; here through `judge-rl demo --quick`); the full demo's claims are asserted from its
run log by the `slow` test below.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from judge_rl.demo import load_spec
from judge_rl.errors import ConfigError
from tests.conftest import ROOT, requires_embedded, run_cli


def test_demo_spec_validates_and_has_both_profiles():
    spec = load_spec(ROOT / "evals" / "demo.yaml")
    assert {"full", "quick"} <= set(spec.profiles)
    assert spec.default_profile == "full"


def test_demo_spec_unknown_key_is_an_error(tmp_path):
    bad = tmp_path / "demo.yaml"
    bad.write_text((ROOT / "evals" / "demo.yaml").read_text() + "\nsurprise: 1\n")
    with pytest.raises(ConfigError, match="surprise"):
        load_spec(bad)
    r = run_cli("demo", "--spec", str(bad), "--quick")
    assert r.returncode == 2 and "surprise" in r.stderr and "Traceback" not in r.stderr


def test_demo_gold_is_never_the_proxy():
    spec = load_spec(ROOT / "evals" / "demo.yaml")
    ppo = spec.stages["ppo"].config
    assert ppo["gold"] != ppo["reward"]
    assert spec.graders["gold"].kind != spec.graders["proxy"].kind


@pytest.mark.slow  # the default suite runs `demo --quick` in tests/pipeline/test_run.py
@requires_embedded
def test_demo_quick_end_to_end(tmp_path):
    r = run_cli(
        "demo",
        "--quick",
        "--run",
        str(tmp_path / "demo"),
        "--threads",
        "1",
        timeout=900,
        env={"JUDGE_RL_JUDGMENT_CACHE": str(tmp_path / "judgments.sqlite")},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    log = json.loads((tmp_path / "demo" / "log.json").read_text())
    for section in ("label", "audit", "ppo", "overopt", "tournament", "demo", "pipeline"):
        assert log[section], section
    assert log["notes"], "the report printed no conclusions"
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "<html" in html and "base-policy" in html
    assert "HTML report:" in r.stdout


FULL_RUN = os.environ.get("JUDGE_RL_DEMO_RUN")
"""A finished full demo's run folder to check (default: run the demo here, ~8 min on 2 cores)."""


@pytest.mark.slow
@requires_embedded
def test_full_demo_claims_hold(tmp_path):
    """The seeds' story, asserted from the run log of the full demo."""
    run = FULL_RUN or str(tmp_path / "demo")
    if not FULL_RUN:
        r = run_cli(
            "demo",
            "--run",
            run,
            timeout=3600,
            env={"JUDGE_RL_JUDGMENT_CACHE": str(tmp_path / "judgments.sqlite")},
        )
        assert r.returncode == 0, r.stderr[-3000:]
    path = Path(run) if Path(run).is_absolute() else ROOT / run
    log = json.loads((path / "log.json").read_text())
    d = log["demo"]
    # 1. RL raised gold: the gain at the best checkpoint has a bootstrap CI that excludes 0
    gain = d["gain_best"]
    assert gain["method"] == "percentile bootstrap" and gain["resample"] == "prompts"
    assert gain["lo"] > 0, gain
    # 2. the alarm never fires before gold's peak, and fires once gold is significantly below it
    assert d["alarm_step"] is not None, "the alarm did not fire"
    assert d["alarm_step"] > d["peak_step"]
    assert d["first_significant_drop_step"] is not None, "gold never fell significantly"
    assert d["gold_last"]["value"] < d["gold_best"]["value"]
    # the proxy kept rising while gold fell
    assert d["proxy_last"] > d["proxy_best"]
    # 3. best-by-gold ranks above base in the tournament, intervals not overlapping
    assert d["best_above_base"] is True
    ranking = d["ranking"]
    best = next(m for m in ranking if m.startswith("best-by-gold"))
    assert ranking.index(best) < ranking.index("base-policy")
    # the audit shows the tournament's judge reliable on the task
    assert d["tournament_judge_reliable"] is True
    # the degeneration detectors name what the policy exploited
    assert d["exploit"], "no degeneration detector flagged the exploit"
