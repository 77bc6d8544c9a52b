"""Degeneration detectors: each one flags its failure relative to the reference, and none flags a
policy that writes like the reference."""

from __future__ import annotations

import random

import pytest

from judge_rl.overopt.degeneration import DegenerationConfig, detect, gibberish_ratio, measure
from judge_rl.train.callbacks import Samples

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "warm",
    "mat",
    "while",
    "rain",
    "fell",
    "over",
    "quiet",
    "hills",
    "and",
    "the",
    "river",
    "ran",
    "past",
    "old",
    "stone",
    "walls",
    "toward",
    "the",
    "sea",
    "where",
    "boats",
    "waited",
    "for",
    "the",
    "tide",
]


def _answers(n, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + "." for _ in range(n)]


def _samples(responses, *, eos=None, nll=None, prompts=None):
    n = len(responses)
    return Samples(
        prompts=prompts or [f"question {i}" for i in range(n)],
        responses=list(responses),
        ended_with_eos=eos if eos is not None else [True] * n,
        kl=[0.0] * n,
        ref_logprob=[-x for x in nll] if nll is not None else [-2.0] * n,
    )


@pytest.fixture
def ref():
    return _samples(_answers(40, seed=1), nll=[2.0 + 0.1 * (i % 5) for i in range(40)])


def test_policy_like_reference_is_not_flagged(ref):
    pol = _samples(_answers(40, seed=2), nll=[2.0 + 0.1 * (i % 7) for i in range(40)])
    out = detect(pol, ref)
    assert out["flags"] == []
    assert set(out["metrics"]) >= {
        "repeat_ngram",
        "distinct_n",
        "length",
        "cross_prompt",
        "ref_perplexity",
        "missing_eos",
        "gibberish",
    }


def test_spam_is_flagged_by_several_detectors(ref):
    spam = ["ok" * 100] * 40
    out = detect(_samples(spam, eos=[False] * 40), ref)
    for name in ("repeat_ngram", "distinct_n", "length", "cross_prompt", "missing_eos"):
        assert name in out["flags"], name
    assert out["examples"] and out["examples"][0].startswith("okok")
    assert out["sample_flags"]["repeat_ngram"] == 1.0


def test_length_collapse(ref):
    out = detect(_samples(["ok."] * 40), ref)
    assert "length" in out["flags"] and out["metrics"]["length_ratio"] < 0.5


def test_same_answer_for_different_prompts(ref):
    answer = _answers(1, seed=9)[0]
    out = detect(_samples([answer] * 40), ref)
    assert "cross_prompt" in out["flags"]
    assert "repeat_ngram" not in out["flags"]  # a normal sentence, just always the same


def test_perplexity_spike(ref):
    out = detect(_samples(_answers(40, seed=3), nll=[5.0] * 40), ref)
    assert out["flags"] == ["ref_perplexity"]
    assert out["sample_flags"]["ref_perplexity"] == 1.0


def test_missing_eos_relative_to_reference(ref):
    half = [i % 2 == 0 for i in range(40)]
    assert "missing_eos" in detect(_samples(_answers(40, 4), eos=half), ref)["flags"]
    # a reference that also runs out of tokens half the time: not flagged
    ref_half = _samples(ref.responses, eos=half, nll=[2.0] * 40)
    assert "missing_eos" not in detect(_samples(_answers(40, 4), eos=half), ref_half)["flags"]


def test_gibberish(ref):
    rng = random.Random(0)
    junk = ["".join(rng.choice("xkqzvbnm#@^~\ufffd") for _ in range(60)) for _ in range(40)]
    out = detect(_samples(junk), ref)
    assert "gibberish" in out["flags"]
    assert gibberish_ratio("Hello, world! This is fine.") == 0.0


def test_thresholds_are_relative_to_reference():
    """A terse, repetitive reference: the same kind of policy output is not degenerate."""
    ref = _samples(["yes yes yes"] * 20 + ["no no no"] * 20)
    pol = _samples(["no no no"] * 20 + ["yes yes yes"] * 20)
    assert detect(pol, ref)["flags"] == []


def test_measure_uses_tokens_when_given():
    s = _samples(["abab"])
    s.response_tokens = [[1, 2, 1, 2, 1, 2, 1, 2, 1, 2]]
    m = measure(s, DegenerationConfig(n=2))
    assert m.length == [10] and m.rep[0] > 0.5


def _sums(texts: list[str]) -> Samples:
    return Samples(prompts=[f"q{i}" for i in range(len(texts))], responses=texts)


def test_after_answer_names_text_after_the_answer():
    """The demo's exploit: the answer, then whatever a length-biased reward pays for."""
    refs = [str(3 + i % 6) for i in range(20)]
    base = _sums([f"{int(r) - 1} + 1 = {r}" if i % 5 else "I think so" for i, r in enumerate(refs)])
    brief = _sums([f"{int(r) - 1} + 1 = {r}" for r in refs])
    chatty = _sums(
        [
            f"{int(r) - 1} + 1 = {r}\n\nI'm glad you asked" if i % 4 else r
            for i, r in enumerate(refs)
        ]
    )
    ref_m = measure(base, references=refs)
    assert "after_answer" not in detect(brief, ref_m, references=refs)["flags"]
    row = detect(chatty, ref_m, references=refs)
    assert "after_answer" in row["flags"]
    assert row["metrics"]["after_answer"] == pytest.approx(0.75)
    assert row["reference"]["after_answer"] == 0.0
    # without references the detector stays silent (open-ended prompts)
    assert "after_answer" not in detect(chatty, measure(base))["flags"]


def test_after_answer_is_relative_to_the_reference():
    """A reference that already explains after its answer does not make the policy degenerate."""
    refs = ["12"] * 10
    chatty = _sums(["7 + 5 = 12, because seven plus five is twelve"] * 10)
    assert (
        "after_answer"
        not in detect(chatty, measure(chatty, references=refs), references=refs)["flags"]
    )


@pytest.mark.parametrize(
    ("text", "ref", "want"),
    [
        ("12", "12", 0),
        ("12.", "12", 0),
        ("The answer is 12!", "12", 0),
        ("12 12 12", "12", 2),
        ("112 or 120", "12", None),
        ("1,200 apples in all", "1200", 3),
        ("12.0 exactly", "12", 1),
        ("no number here", "12", None),
        ("anything", None, None),
    ],
)
def test_words_after_answer(text, ref, want):
    from judge_rl.overopt.degeneration import words_after_answer

    assert words_after_answer(text, ref) == want
