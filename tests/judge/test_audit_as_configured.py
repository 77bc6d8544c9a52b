"""Issue 15, failure 4: the audit evaluates the judge exactly as it labels (order, inconsistent
rule and p_a), with the other rules beside it, and calibration where p_a exists."""

from __future__ import annotations

import asyncio

import pytest

from judge_rl.backends.base import ChatResult
from judge_rl.judge.audit import AuditConfig, audit_judge, describe
from judge_rl.judge.llm import LLMJudge
from judge_rl.judge.order import OrderedJudge
from judge_rl.types import Candidate, Comparison

TEMPLATE = "Q: {{ prompt }}\nA: {{ response_a }}\nB: {{ response_b }}\n"


class FirstBiased:
    """Always picks the answer shown first (100% first-position bias), but with more confidence
    when the first answer is the longer one: averaging the two orders decides every pair."""

    name = "first-biased"
    model = "first-biased"

    async def chat(self, requests):
        out = []
        for r in requests:
            first, second = r.metadata["judge"]["responses"]
            p = 0.9 if len(first) > len(second) else 0.6
            rest = (1 - p) / 2
            out.append(
                ChatResult(
                    texts=["A"],
                    label_probs={"A": p, "B": rest, "C": rest},
                    label_mass=0.8,
                    finish_reasons=["label"],
                )
            )
        return out

    async def aclose(self):
        return None


def _comps(n=24):
    out = []
    for i in range(n):
        long, short = f"a long and careful answer number {i}", f"short {i}"
        a, b = (long, short) if i % 2 else (short, long)
        c = Comparison(
            prompt_id=f"q{i}",
            prompt=f"question {i}",
            a=Candidate(prompt_id=f"q{i}", prompt="p", response=a, source="x"),
            b=Candidate(prompt_id=f"q{i}", prompt="p", response=b, source="y"),
        )
        # the humans prefer the longer answer in 3 of 4 pairs
        better_long = i % 4 != 0
        c.metadata["human"] = (
            ("a" if a == long else "b") if better_long else ("b" if a == long else "a")
        )
        out.append(c)
    return out


def _llm():
    return LLMJudge(FirstBiased(), TEMPLATE, name="fb", label_probs=True, max_tokens=2)


def test_issue15_4_audit_reports_the_rule_the_judge_labels_with():
    comps = _comps()
    labelled = asyncio.run(OrderedJudge(_llm(), "both", inconsistent="average").compare(comps))
    label_ties = sum(j.winner == "tie" for j in labelled) / len(labelled)
    assert label_ties == 0.0  # averaging decides every pair

    sec = asyncio.run(
        audit_judge(
            _llm(),
            comps,
            AuditConfig(bootstrap=50, injection=False),
            configured={"order": "both", "inconsistent": "average"},
        )
    )
    assert sec.rule["label"] == "order=both, inconsistent=average"
    assert sec.metrics["judge_tie_rate"].value == pytest.approx(label_ties)
    assert sec.variants[0]["label"] == "order=both, inconsistent=average (as configured)"
    # the audit's verdicts are the labelling verdicts, pair by pair
    judged = {h: sum(row.values()) for h, row in sec.confusion.items()}
    assert sum(judged.values()) == len(comps)
    by_label = {v["label"]: v["metrics"] for v in sec.variants}
    assert by_label["order=both, inconsistent=tie"]["judge_tie_rate"].value == 1.0
    assert by_label["order=fixed"]["p_first_wins"].value == 1.0
    # p_a exists: Brier, ECE and the reliability diagram
    assert sec.metrics["brier"].value is not None and sec.metrics["ece"].value is not None
    assert sec.calibration["bins"] and sum(b["n"] for b in sec.calibration["bins"]) == len(comps)
    assert sec.metrics["label_mass"].value == pytest.approx(0.8)


def test_issue15_4_sentences_come_from_the_numbers():
    comps = _comps()
    kw = dict(config=AuditConfig(bootstrap=50, injection=False))
    tie = asyncio.run(audit_judge(_llm(), comps, configured={"order": "both"}, **kw))
    avg = asyncio.run(
        audit_judge(_llm(), comps, configured={"order": "both", "inconsistent": "average"}, **kw)
    )
    s_tie, s_avg = " ".join(describe(tie)), " ".join(describe(avg))
    assert "a tie and decided 0%" in s_tie and "100% of" in s_tie
    assert "called 0% of" in s_avg and "decided 100%" in s_avg
    assert "shown first in 100%" in s_avg
    assert s_tie != s_avg


def test_issue15_4_a_judge_built_in_fixed_order_is_audited_with_its_spec_rule():
    """The demo and the pipeline build the judge with order=fixed for the audit: the audit still
    evaluates the rule the spec labels with (pairwise-embedded: both orders, averaged)."""
    from judge_rl.judge.specs import load_judge

    judge = load_judge(
        "pairwise-embedded", overrides={"order": "fixed", "backend": "mock", "model": "m"}
    )
    assert judge.order == "fixed"
    assert judge.labels_with["order"] == "both"
    assert judge.labels_with["inconsistent"] == "average"
    sec = asyncio.run(audit_judge(judge, _comps(8), AuditConfig(bootstrap=20, injection=False)))
    assert sec.rule["label"] == "order=both, inconsistent=average"


def test_issue15_4_audit_cli_reports_the_label_rule(tmp_path, capsys):
    from judge_rl.cli import main
    from judge_rl.runlog import load
    from tests.conftest import ROOT

    human = ROOT / "judge_rl" / "_builtin" / "human" / "hh-short.jsonl"
    args = ["audit", "--judge", "pairwise-embedded", "--backend", "mock", "--model", "m"]
    args += ["--human", str(human), "--no-injection", "--bootstrap", "20", "--no-cache"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "verdict rule (as `label` uses it): order=both, inconsistent=average" in out
    assert load(tmp_path / "a").audit.rule["policy"] == "both/average"
    assert main([*args, "--inconsistent", "tie", "--output", str(tmp_path / "b")]) == 0
    assert load(tmp_path / "b").audit.rule["policy"] == "both/tie"
