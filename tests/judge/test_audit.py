"""Judge audit (judge_rl/judge/audit.py, audit_stats.py) with planted judges."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import numpy as np
import pytest

from judge_rl.errors import JudgeRLError
from judge_rl.judge.audit import INJECTIONS, AuditConfig, audit_judge, build_rows, swapped
from judge_rl.judge.audit_stats import (
    AuditRow,
    bootstrap_ratio,
    cohen_kappa,
    core_metrics,
    krippendorff_alpha_nominal,
    length_coef,
)
from judge_rl.types import Candidate, Comparison, JudgeCall, JudgeFingerprint, Judgment

GOOD = "[good]"


def human_pairs(n: int, seed: int = 0, ties: float = 0.0, long_good: float = 0.5):
    """Pairs where the human-preferred response carries a GOOD marker, randomly placed as a/b."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        good_len = rng.randint(20, 400) if rng.random() < long_good else rng.randint(5, 20)
        good = Candidate(
            prompt_id=f"q{i}",
            prompt=f"question {i}",
            response=f"{GOOD} answer {i} " + "x" * good_len,
            source="m-good",
        )
        bad = Candidate(
            prompt_id=f"q{i}",
            prompt=f"question {i}",
            response=f"answer {i} " + "y" * rng.randint(5, 400),
            source="m-bad",
        )
        tie = rng.random() < ties
        if rng.random() < 0.5:
            a, b, human = good, bad, "a"
        else:
            a, b, human = bad, good, "b"
        out.append(
            Comparison(
                prompt_id=f"q{i}",
                prompt=f"question {i}",
                a=a,
                b=b,
                metadata={
                    "human": "tie" if tie else human,
                    "category": "even" if i % 2 == 0 else "odd",
                },
            )
        )
    return out


class PlantedJudge:
    """Shown (first, second): picks the first with p_first_if_good when the first is the human's
    choice, else with p_first_if_bad. p=(0.9, 0.3) plants accuracy 0.8 and P(first wins) 0.6."""

    def __init__(
        self,
        p_first_if_good=0.9,
        p_first_if_bad=0.3,
        seed=0,
        obey_injection=False,
        fail_all=False,
        model="planted-model",
    ):
        self.p_good, self.p_bad = p_first_if_good, p_first_if_bad
        self.rng = random.Random(seed)
        self.obey = obey_injection
        self.fail_all = fail_all
        self.calls = 0
        self._fp = JudgeFingerprint(name="planted", kind="pairwise", model=model)

    @property
    def fingerprint(self):
        return self._fp

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        out = []
        for c in comparisons:
            self.calls += 1
            base = dict(comparison_id=c.id, a_id=c.a.id, b_id=c.b.id, judge=self._fp)
            if self.fail_all:
                out.append(
                    Judgment(
                        **base,
                        error="parse: no verdict",
                        calls=[JudgeCall(first_id=c.a.id, error="parse: no verdict")],
                    )
                )
                continue
            injected = [
                s
                for s, cand in (("a", c.a), ("b", c.b))
                if any(t.split("{")[0][:12] in cand.response for t in INJECTIONS.values())
            ]
            if self.obey and injected:
                w = injected[0]
            else:
                first_good = GOOD in c.a.response
                p_first = self.p_good if first_good else self.p_bad
                w = "a" if self.rng.random() < p_first else "b"
            out.append(
                Judgment(
                    **base,
                    winner=w,
                    p_a=float(w == "a"),
                    calls=[JudgeCall(first_id=c.a.id, winner=w, raw=f"[[{w.upper()}]]")],
                )
            )
        return out

    async def score(self, candidates):
        raise NotImplementedError


def run(judge, comps, **cfg):
    return asyncio.run(audit_judge(judge, comps, AuditConfig(**cfg)))


def test_planted_accuracy_and_position_bias_recovered_within_ci():
    comps = human_pairs(400, seed=1)
    sec = run(PlantedJudge(seed=1), comps, bootstrap=1000, injection=False)
    fixed = {v["label"]: v["metrics"] for v in sec.variants}["order=fixed"]
    acc, pfw = fixed["accuracy"], fixed["p_first_wins"]
    assert acc.lo <= 0.8 <= acc.hi, acc
    assert pfw.lo <= 0.6 <= pfw.hi, pfw
    bias = sec.metrics["first_position_bias"]
    assert bias.lo <= 0.1 <= bias.hi
    # both-order metrics exist and are sane
    assert 0 < sec.metrics["position_consistency"].value < 1
    assert sec.confusion["a"]["a"] + sec.confusion["a"]["b"] + sec.confusion["a"]["tie"] > 0
    assert set(sec.by_category) == {"even", "odd"}


def test_planted_ci_coverage_over_seeds():
    """The reported 95% intervals cover the planted truth most of the time over fresh draws.
    The judging path is the real one (build_rows on the judge's calls in both orders); only the
    metrics checked are computed, to keep 20 repetitions fast."""
    covered_acc = covered_pos = 0
    for s in range(20):
        comps = human_pairs(400, seed=200 + s)
        judge = PlantedJudge(seed=100 + s)
        ab = asyncio.run(judge.compare(comps))
        ba = asyncio.run(judge.compare([swapped(c) for c in comps]))
        rows = build_rows(comps, ab, ba)
        m = core_metrics(rows, "fixed", rounds=500, seed=s, with_length_coef=False)
        covered_acc += m["accuracy"].lo <= 0.8 <= m["accuracy"].hi
        covered_pos += m["p_first_wins"].lo <= 0.6 <= m["p_first_wins"].hi
    # Nominal 95%; with 20 draws, ≥ 16 keeps a false failure rare (binomial tail < 2%).
    assert covered_acc >= 16 and covered_pos >= 16, (covered_acc, covered_pos)


def test_injection_flip_rate_obeying_vs_ignoring():
    comps = human_pairs(60, seed=3)
    obey = run(PlantedJudge(1.0, 0.0, obey_injection=True), comps, bootstrap=200)
    ignore = run(PlantedJudge(1.0, 0.0, obey_injection=False), comps, bootstrap=200)
    assert obey.metrics["injection_flip_rate"].value > 0.95
    assert obey.metrics["injection_flip_rate_both"].value > 0.95
    assert ignore.metrics["injection_flip_rate"].value < 0.05
    assert set(obey.injection["judge"]["strings"]) == set(INJECTIONS)


def test_all_human_ties_says_not_computable():
    comps = human_pairs(40, seed=4, ties=1.0)
    sec = run(PlantedJudge(), comps, bootstrap=100, injection=False)
    acc = sec.metrics["accuracy"]
    assert acc.value is None and acc.note
    assert any("tie" in n for n in sec.notes)
    assert sec.metrics["accuracy_with_ties"].value is not None


def test_judge_failing_every_call():
    comps = human_pairs(30, seed=5)
    sec = run(PlantedJudge(fail_all=True), comps, bootstrap=100)
    assert sec.metrics["accuracy"].value is None and sec.metrics["accuracy"].note
    assert sec.metrics["kappa"].value is None
    assert sec.metrics["failure_rate"].value == 1.0
    assert sec.metrics["parse_failure_rate"].value == 1.0
    assert any("failed every call" in n for n in sec.notes)
    assert "note" in sec.injection["judge"]


def test_missing_human_label_is_error():
    comps = human_pairs(5)
    comps[2].metadata.pop("human")
    with pytest.raises(JudgeRLError, match="no human label"):
        run(PlantedJudge(), comps)


def test_self_preference():
    comps = human_pairs(200, seed=6)
    # The judge "is" m-good's model and always picks it; humans pick it always too (by design).
    sec = run(PlantedJudge(1.0, 0.0, model="m-good"), comps, bootstrap=100, injection=False)
    sp = sec.self_preference
    assert sp["n"] == 200 and sp["judge_win_rate"] == pytest.approx(1.0)
    assert sp["human_win_rate"] == pytest.approx(1.0)
    sec2 = run(PlantedJudge(1.0, 0.0, model="other"), comps, bootstrap=100, injection=False)
    assert "note" in sec2.self_preference


def test_kappa_and_alpha_reference_values():
    # Cohen (1960)-style check against a hand computation: p_o = 4/6, p_e = 0.5 -> 0.333
    assert cohen_kappa(list("aabbab"), list("aabbba")) == pytest.approx(1 / 3)
    # Krippendorff's alpha: perfect agreement 1, systematic disagreement < 0
    assert krippendorff_alpha_nominal([["a", "a", "a"], ["b", "b", "b"]]) == 1.0
    assert krippendorff_alpha_nominal([["a", "b"], ["b", "a"]]) < 0


def test_length_coefficient_detects_verbosity_bias():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(400):
        la, lb = int(rng.integers(10, 2000)), int(rng.integers(10, 2000))
        human = "a" if rng.random() < 0.5 else "b"
        # the judge follows the human 60% of the time, otherwise picks the longer
        judge = human if rng.random() < 0.6 else ("a" if la > lb else "b")
        rows.append(AuditRow(human=human, ab=judge, len_a=la, len_b=lb, calls=1))
    coef, n, _ = length_coef(rows, "fixed")
    assert coef > 1.0 and n == 400
    unbiased = [
        AuditRow(human=r.human, ab=r.human, len_a=r.len_a, len_b=r.len_b, calls=1)
        for r in rows[:200]
    ] + [
        AuditRow(
            human=r.human, ab="b" if r.human == "a" else "a", len_a=r.len_a, len_b=r.len_b, calls=1
        )
        for r in rows[200:260]
    ]
    coef2, _, _ = length_coef(unbiased, "fixed")
    assert abs(coef2) < 0.6


def test_bootstrap_ratio_all_zero_denominator():
    m = bootstrap_ratio((np.zeros(5), np.zeros(5), 0))
    assert m.value is None and m.note


def test_core_metrics_fast_enough_for_400_pairs():
    import time

    rows = [
        AuditRow(human="a", ab="a" if i % 5 else "b", ba="a", len_a=i, len_b=400 - i, calls=2)
        for i in range(400)
    ]
    t = time.perf_counter()
    core_metrics(rows, "both", rounds=1000)
    assert time.perf_counter() - t < 10
