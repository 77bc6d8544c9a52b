"""GSM8K answer reading (judge_rl/judge/verify.py, mode gsm8k): what models actually write."""

from __future__ import annotations

import pytest

from judge_rl.errors import DataError
from judge_rl.judge.base import compare_sync
from judge_rl.judge.verify import VerifierJudge, check, gsm8k_answer, verify
from judge_rl.types import Candidate, Comparison

# --- issue 14, failure 3: each string the issue quotes ----------------------------------------


def test_issue14_3_value_after_the_last_equals():
    assert verify("The answer is 16 - 3 - 4 = 9", "9", "gsm8k")
    assert not verify("The answer is 16 - 3 - 4 = 9", "16", "gsm8k")


def test_issue14_3_first_number_after_the_marker():
    assert verify("#### 18 eggs at $2 each", "18", "gsm8k")
    assert not verify("#### 18 eggs at $2 each", "2", "gsm8k")


def test_issue14_3_negated_answer():
    assert not verify("The answer is not 5, it's 7.", "5", "gsm8k")
    assert verify("The answer is not 5, it's 7.", "7", "gsm8k")


def test_issue14_3_reference_without_marker_is_read_not_compared_as_text():
    # a solution ending "A: 18" states 18
    assert verify("So she sells 18 eggs.", "Half of 36 is 18.\nA: 18", "gsm8k")
    assert not verify("So she sells 17 eggs.", "Half of 36 is 18.\nA: 18", "gsm8k")


def test_issue14_3_reference_with_no_number_is_an_error_naming_the_row():
    with pytest.raises(DataError, match="no final number"):
        verify("#### 3", "three apples", "gsm8k")
    judge = VerifierJudge(name="gsm8k-exact", mode="gsm8k")
    a = Candidate(prompt_id="row-17", prompt="?", response="#### 3", source="m1")
    b = Candidate(prompt_id="row-17", prompt="?", response="#### 4", source="m2")
    comp = Comparison(prompt_id="row-17", prompt="?", a=a, b=b, reference="three")
    with pytest.raises(DataError, match="row-17"):
        compare_sync(judge, [comp])


# --- hand-written model-style endings, each with its verdict -----------------------------------

ENDINGS = [
    # (response ending, reference, correct?)
    ("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 9", "9", True),
    ("#### 18 eggs at $2 each", "18", True),
    ("#### $1,250", "1250", True),
    ("#### 1,250.00", "1250", True),
    ("#### -3", "-3", True),
    ("#### 3", "-3", False),
    ("The answer is 16 - 3 - 4 = 9", "9", True),
    ("The answer is 5 + 5 = 10 dollars.", "10", True),
    ("The answer is 2 * 3 + 4 = 10.", "10", True),
    ("The answer is: 42", "42", True),
    ("The answer is $42.", "42", True),
    ("The answer is 42 apples.", "42", True),
    ("The answer is 41 apples.", "42", False),
    ("The final answer is 7.", "7", True),
    ("Final answer: 12", "12", True),
    ("Answer: 3.5 hours", "3.5", True),
    ("Answer: 3.25 hours", "3.5", False),
    ("So the answer is 1,000,000.", "1000000", True),
    ("So the answer is 1,000,001.", "1000000", False),
    ("The answer is not 5, it's 7.", "7", True),
    ("The answer is not 5, it's 7.", "5", False),
    ("The answer is -12 degrees.", "-12", True),
    ("The answer is −12 degrees.", "-12", True),
    ("The answer is 12 degrees.", "-12", False),
    ("The answer is 0.5.", "0.5", True),
    ("The answer is .5 of the pie.", "0.5", True),
    ("The answer is 3/4 of a cup.", "0.75", True),
    ("The answer is 25%.", "25", True),
    ("She needs $\\boxed{36}$ cupcakes.", "36", True),
    ("Thus the total is \\boxed{1,440}.", "1440", True),
    ("Thus the total is \\boxed{1440 - 40 = 1400}.", "1400", True),
    ("He earns 20 * 8 = 160 dollars a day, so 160 * 5 = 800 a week.", "800", True),
    ("He earns 20 * 8 = 160 dollars a day, so 160 * 5 = 800 a week.", "160", False),
    ("In total: 3 + 4 = 7 apples. That's 7 apples for 2 friends.", "2", True),
    ("The farmer has 120 cows and 30 pigs, 150 animals altogether.", "150", True),
    ("It costs -$5 after the refund.", "-5", True),
    ("It costs $-5 after the refund.", "-5", True),
    ("Each ticket is $12.50, so 4 tickets cost $50.00", "50", True),
    ("Each ticket is $12.50, so 4 tickets cost $50.00", "12.5", False),
    ("They drove 2,345 miles in total.", "2345", True),
    ("They drove 2,345 miles in total.", "2346", False),
    ("x = 14, so the width is 14 cm.", "14", True),
    ("Therefore, the answer is 8. I hope it is correct.", "8", True),
    ("Therefore, the answer is 8. I hope it is correct.", "9", False),
    ("I am not sure.", "4", False),
    ("The answer is 1.5 million.", "1.5", True),
    ("Step 1: 6 / 2 = 3\nStep 2: 3 * 4 = 12\n#### 12", "12", True),
    ("Step 1: 6 / 2 = 3\nStep 2: 3 * 4 = 12\n#### 12", "3", False),
    ("The answer is 7 (since 3 + 4 = 7).", "7", True),
    ("The answer is 100 - 25 = 75 percent.", "75", True),
]


@pytest.mark.parametrize("response,reference,expected", ENDINGS)
def test_model_style_endings(response, reference, expected):
    got = check(response, reference, "gsm8k")
    assert got.error is None
    assert got.correct is expected, (response, got.extracted)


def test_there_are_at_least_forty_endings():
    assert len(ENDINGS) >= 40


@pytest.mark.parametrize(
    "text,number",
    [
        ("#### 18 eggs at $2 each", "18"),
        ("The answer is 16 - 3 - 4 = 9", "9"),
        ("It costs -$1,250.50.", "-1,250.50"),
        ("between 5-7 apples", "7"),
        ("nothing here", None),
    ],
)
def test_gsm8k_answer(text, number):
    assert gsm8k_answer(text) == number


def test_auto_mode_reads_gsm8k_style_when_the_reference_is_a_number():
    assert verify("The answer is 16 - 3 - 4 = 9", "#### 9")
    assert verify("#### 18 eggs at $2 each", "18")
    assert not verify("The answer is not 5, it's 7.", "5")
