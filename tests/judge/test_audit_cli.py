"""`judge-rl audit` end to end: mock judge, embedded judge, bad input."""

from __future__ import annotations

import json

from tests.conftest import DATA, ROOT, requires_embedded, run_cli

HH = str(DATA / "hh_rlhf_sample.jsonl.gz")
HH_SHORT = str(ROOT / "judge_rl" / "_builtin" / "human" / "hh-short.jsonl")


def test_audit_mock_judge_writes_every_metric(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "audit",
        "--judge",
        "mock-pairwise",
        "--human",
        HH,
        "--no-cache",
        "--bootstrap",
        "200",
        "--compare-hardened",
        "--output",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    log = json.loads((out / "log.json").read_text())
    a = log["audit"]
    for key in (
        "accuracy",
        "accuracy_with_ties",
        "kappa",
        "position_consistency",
        "p_first_wins",
        "p_first_wins_inconsistent",
        "p_longer_wins_judge",
        "p_longer_wins_human",
        "length_coef",
        "injection_flip_rate",
        "injection_flip_rate_both",
        "parse_failure_rate",
        "latency_s",
        "tokens_per_judgment",
        "cost_per_judgment",
    ):
        assert key in a["metrics"], key
    # The mock judge prefers the longer response: the audit must see it.
    assert a["metrics"]["p_longer_wins_judge"]["value"] == 1.0
    assert a["metrics"]["length_coef"]["value"] > 1
    labels = [v["label"] for v in a["variants"]]
    assert labels[0] == "order=both, inconsistent=tie (as configured)"
    assert {"order=fixed", "order=both, inconsistent=average", "order=random"} <= set(labels)
    assert set(a["injection"]) == {"judge", "hardened"}
    assert "confusion" in a and a["n_pairs"] == 40
    assert "judge audit" in r.stdout and "confusion" in r.stdout


def test_audit_no_labels_is_exit_2(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    r = run_cli("audit", "--judge", "mock-pairwise", "--human", str(f), "--no-cache")
    assert r.returncode == 2
    assert "empty.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_audit_all_ties_reports_not_computable(tmp_path):
    f = tmp_path / "ties.jsonl"
    rows = [
        {
            "prompt": f"q{i}",
            "response_a": f"answer {i}",
            "response_b": f"reply {i} longer",
            "winner": "tie",
        }
        for i in range(12)
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "run"
    r = run_cli(
        "audit",
        "--judge",
        "mock-pairwise",
        "--human",
        str(f),
        "--no-cache",
        "--bootstrap",
        "100",
        "--output",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    a = json.loads((out / "log.json").read_text())["audit"]
    assert a["metrics"]["accuracy"]["value"] is None
    assert a["metrics"]["accuracy"]["note"]
    assert "every human label is a tie" in r.stdout


def test_audit_unknown_judge_is_exit_2():
    r = run_cli("audit", "--judge", "no-such-judge", "--human", HH)
    assert r.returncode == 2 and "no-such-judge" in r.stderr and "Traceback" not in r.stderr


@requires_embedded
def test_audit_embedded_judge_end_to_end(tmp_path):
    out = tmp_path / "run"
    # The shortest real HH-RLHF pairs keep the 135M judge's prompts around 100 tokens.
    r = run_cli(
        "audit",
        "--judge",
        "pairwise-embedded",
        "--human",
        HH_SHORT,
        "--sample",
        "4",
        "--injection-sample",
        "1",
        "--bootstrap",
        "100",
        "--no-cache",
        "--output",
        str(out),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    a = json.loads((out / "log.json").read_text())["audit"]
    assert a["n_pairs"] == 4
    # The embedded judge gives probabilities: every call either parsed or failed explicitly.
    assert a["metrics"]["failure_rate"]["value"] is not None
    assert a["metrics"]["p_first_wins"]["value"] is not None
    assert len(a["judgments"]) == 8
