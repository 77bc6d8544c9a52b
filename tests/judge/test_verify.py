"""Verifier judges (judge_rl/judge/verify.py)."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import time

import pytest

from judge_rl.errors import DataError
from judge_rl.judge.base import compare_sync, score_sync
from judge_rl.judge.verify import (
    MODES,
    CheckError,
    VerifierJudge,
    equivalent,
    extract_answer,
    gsm8k_reference,
    parse_number,
    symbolic_equal,
    verify,
)
from judge_rl.types import Candidate, Comparison
from tests.conftest import DATA


def _gsm8k():
    with gzip.open(DATA / "gsm8k_test.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_gsm8k_reference_solutions_all_verify_and_perturbed_fail():
    rows = _gsm8k()
    assert len(rows) == 1319
    wrong = []
    for i, row in enumerate(rows):
        ref = gsm8k_reference(row["answer"])
        if not verify(row["answer"], row["answer"], "gsm8k"):
            wrong.append(i)
        # A perturbed final answer must be rejected.
        n = parse_number(ref)
        assert n is not None, (i, ref)
        perturbed = re.sub(
            r"####.*$", f"#### {int(n) + 1 if n == int(n) else n + 1}", row["answer"].strip()
        )
        assert not verify(perturbed, row["answer"], "gsm8k"), (i, perturbed[-40:])
    assert wrong == [], [rows[i]["answer"][-60:] for i in wrong[:5]]


@pytest.mark.parametrize(
    "response,reference,mode,expected",
    [
        ("The total is $1,250.", "1250", "numeric", True),
        ("It costs 1250.01 dollars", "1250", "numeric", False),
        ("That is 3/4 of the cake", "0.75", "numeric", True),
        ("Answer: 50%", "50", "numeric", True),
        ("He walks 18 km", "18", "gsm8k", True),
        ("#### 18", "#### 18.0", "gsm8k", True),
        ("#### -3", "-3", "gsm8k", True),
        (r"so $\boxed{\frac{\sqrt{2}}{2}}$", r"\frac{1}{\sqrt{2}}", "boxed", True),
        (r"\boxed{x^{2}+2x+1}", "(x+1)^2", "boxed", True),
        (r"\boxed{x^{2}+2x}", "(x+1)^2", "boxed", False),
        ("I pick (D).", "D", "choice", True),
        ("I pick (D).", "C", "choice", False),
        ("  Paris. ", "paris", "exact", True),
        ("Lyon", "paris", "exact", False),
        ("the answer is 2x + 2", "2(x+1)", "symbolic", True),
        ("no answer at all", "7", "gsm8k", False),
    ],
)
def test_verify_cases(response, reference, mode, expected):
    assert verify(response, reference, mode) is expected


def test_auto_mode_picks_by_reference():
    assert verify("The answer is (B)", "B")
    assert verify(r"we get \boxed{12}", "12")
    assert verify("so #### 1,000", "1000")
    assert not verify("so #### 1,001", "1000")


def test_symbolic_time_limit_is_enforced():
    # A check the engine cannot finish in time is an error "timeout", never False, and bounded.
    t = time.perf_counter()
    with pytest.raises(CheckError, match="timeout"):
        symbolic_equal(SLOW_ANSWER, "1", timeout_s=0.3)
    assert time.perf_counter() - t < 30


SLOW_ANSWER = r"(2^{20})!"  # sympy evaluates the factorial of 1,048,576: seconds of CPU


# --- issue 14, failure 1: the verifier executed response text --------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_issue14_1_response_text_is_never_executed(tmp_path, mode):
    marker = tmp_path / "PWNED"
    payload = f"__import__('os').system('touch {marker}')"
    for text in (rf"\boxed{{{payload}}}", payload, f"The answer is {payload}"):
        for ref in ("18", text):  # in the response, and as a reference read from a file
            with contextlib.suppress(CheckError, DataError):
                verify(text, ref, mode)
    assert not marker.exists()


# --- issue 14, failure 2: brace-less fractions read as sympy's frac() --------------------------


@pytest.mark.parametrize("mode", ["auto", "boxed", "symbolic"])
def test_issue14_2_braceless_fraction_is_a_fraction(mode):
    ref = r"\frac 34"
    for wrong in (r"\frac 35", r"-\frac 34", "0"):
        assert not verify(rf"\boxed{{{wrong}}}", ref, mode), wrong
    assert not verify(r"\boxed{\frac 12}", "0", mode)
    for right in (r"\frac{3}{4}", "0.75", r"\dfrac34", r"\tfrac{3}{4}", "3/4"):
        assert verify(rf"\boxed{{{right}}}", ref, mode), right
    assert verify(r"\boxed{\frac 34}", r"\frac{3}{4}", mode)


@pytest.mark.parametrize(
    "response,reference",
    [
        (r"\boxed{30^\circ}", "30"),
        (r"\boxed{30^{\circ}}", "30"),
        (r"\boxed{30°}", r"30^\circ"),
        (r"\boxed{\dfrac{5}{8}}", r"\frac{5}{8}"),
        (r"\boxed{12\text{ cm}}", "12"),
        (r"\boxed{12\mbox{ cm}}", "12"),
        (r"\boxed{( 1 , 2 )}", "(1,2)"),
        (r"\boxed{x = 5}", "5"),
        ("x = 5", "5"),
    ],
)
def test_issue14_2_forms_rejected_before_are_accepted(response, reference):
    assert verify(response, reference, "symbolic")
    assert verify(response, reference)


def test_number_followed_by_a_letter_is_not_the_number():
    # "2x" is not 2 (the old unit-stripping read it as 2)
    assert not verify(r"\boxed{2x}", "2")
    assert parse_number("2x") is None


def test_extract_none_is_not_equivalent():
    assert extract_answer("nothing numeric", "gsm8k") is None
    assert not equivalent(None, "1")


def test_verifier_judge_score_and_compare():
    j = VerifierJudge(name="gsm8k-exact", mode="gsm8k")
    good = Candidate(
        prompt_id="p1",
        prompt="2+3?",
        response="2+3=5 #### 5",
        source="m1",
        metadata={"reference": "5"},
    )
    bad = Candidate(
        prompt_id="p1", prompt="2+3?", response="#### 6", source="m2", metadata={"reference": "5"}
    )
    noref = Candidate(prompt_id="p2", prompt="?", response="#### 6", source="m2")
    scores = score_sync(j, [good, bad, noref])
    assert [s.score for s in scores[:2]] == [1.0, 0.0]
    assert scores[2].score is None and scores[2].error.startswith("input:")
    assert scores[0].judge.kind == "verifier" and scores[0].judge.params["mode"] == "gsm8k"

    comps = [
        Comparison(prompt_id="p1", prompt="2+3?", a=good, b=bad, reference="5"),
        Comparison(prompt_id="p1", prompt="2+3?", a=bad, b=good, reference="5"),
        Comparison(
            prompt_id="p1",
            prompt="2+3?",
            a=bad,
            b=bad.model_copy(update={"id": "x"}),
            reference="5",
        ),
        Comparison(prompt_id="p2", prompt="?", a=noref, b=noref.model_copy(update={"id": "y"})),
    ]
    js = compare_sync(j, comps)
    assert [x.winner for x in js[:3]] == ["a", "b", "tie"]
    assert [x.p_a for x in js[:3]] == [1.0, 0.0, 0.5]
    assert js[3].winner is None and js[3].error and js[3].error_kind == "input"
    assert all(x.calls and x.calls[0].first_id == x.a_id for x in js)


def test_unknown_mode_is_config_error():
    from judge_rl.errors import ConfigError

    with pytest.raises(ConfigError, match="mode"):
        VerifierJudge(mode="fuzzy")


SHARED_CASES = [
    (r"\boxed{\frac 34}", r"\frac{3}{4}"),
    (r"\boxed{\frac 35}", r"\frac 34"),
    ("The answer is 16 - 3 - 4 = 9", "9"),
    ("#### 18 eggs at $2 each", "2"),
    (r"\boxed{30^\circ}", "30"),
    ("The answer is (B).", "B"),
]


@pytest.mark.parametrize("mode", ["auto", "symbolic", "gsm8k"])
def test_reward_source_and_judge_share_one_checker(monkeypatch, mode):
    """The ``verifier:`` reward (PPO/GRPO) and the verifier judge (label, tournaments, the
    over-optimisation gold) run the same plan function and so reach the same verdicts."""
    import judge_rl.judge.verify as v
    from judge_rl.train.reward_sources import make_reward_source
    from judge_rl.train.rewards import RewardQuery

    seen: list[str] = []
    real = v._plan

    def spy(response, reference, m, tol):
        seen.append(response)
        return real(response, reference, m, tol)

    monkeypatch.setattr(v, "_plan", spy)
    cases = [c for c in SHARED_CASES if mode != "gsm8k" or c[0][0] not in "\\T"]
    reward = make_reward_source(f"verifier:{mode}")
    queries = [
        RewardQuery(prompt="p", response=r, prompt_id="x", reference=ref) for r, ref in cases
    ]
    rewards = reward(queries)
    n_reward = len(seen)
    judge = VerifierJudge(mode=mode)
    cands = [
        Candidate(prompt_id="x", prompt="p", response=r, source="m", metadata={"reference": ref})
        for r, ref in cases
    ]
    scores = [s.score for s in score_sync(judge, cands)]
    responses = {r for r, _ in cases}
    assert set(seen[:n_reward]) == responses and set(seen[n_reward:]) == responses
    assert rewards == scores


@pytest.mark.parametrize(
    "response,reference,expected",
    [
        (r"\boxed{2^3 + x^2}", "8 + x^2", True),
        (r"\boxed{(2^3)^2}", "64", True),
        (r"\boxed{2^{10}}", "1024", True),
        (r"\boxed{9^{9^{9}}}", "1", False),  # a power tower is judged incorrect unparsed
    ],
)
def test_powers_are_not_mistaken_for_towers(response, reference, expected):
    assert verify(response, reference, "symbolic") is expected
