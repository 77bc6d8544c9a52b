"""Reward sources and the spec mini-syntax (judge_rl/train/reward_sources.py)."""

from __future__ import annotations

import math

import pytest

from judge_rl.errors import ConfigError
from judge_rl.train.reward_sources import (
    ContainsReward,
    JudgeReward,
    PairwiseReward,
    VerifierReward,
    WeightedSum,
    make_reward_source,
    parse_spec,
)
from judge_rl.train.rewards import RewardQuery


def q(response: str, reference: str | None = None, prompt: str = "p") -> RewardQuery:
    return RewardQuery(prompt=prompt, response=response, prompt_id="x", reference=reference)


def test_parse_spec_terms_and_weights():
    assert parse_spec("judge:mt-bench") == [(1.0, "judge", "mt-bench")]
    assert parse_spec("0.7*rm:/a/b + 0.3*verifier:gsm8k") == [
        (0.7, "rm", "/a/b"),
        (0.3, "verifier", "gsm8k"),
    ]
    assert parse_spec("pairwise:j:prob") == [(1.0, "pairwise", "j:prob")]
    assert parse_spec("-1e-2*length") == [(-0.01, "length", "")]
    for bad in ("", "  ", "verifier:gsm8k+", "2*", "x y"):
        with pytest.raises(ConfigError):
            parse_spec(bad)


def test_make_reward_source_errors_name_the_setting():
    with pytest.raises(ConfigError, match="^reward: unknown reward kind 'bogus'"):
        make_reward_source("bogus:1")
    with pytest.raises(ConfigError, match="reward model folder /no/such/rm does not exist"):
        make_reward_source("rm:/no/such/rm")
    with pytest.raises(ConfigError, match="unknown verifier mode"):
        make_reward_source("verifier:nope")
    with pytest.raises(ConfigError, match="rm needs a path"):
        make_reward_source("rm")


def test_contains_and_count():
    r = make_reward_source("contains:cat")
    assert r([q("a cat"), q("a dog"), q("Cat")]) == [1.0, 0.0, 0.0]
    c = make_reward_source("count:cat")
    assert c([q("cat cat catalog"), q("")]) == [3.0, 0.0]
    assert ContainsReward("cat", case_sensitive=False)([q("CAT")]) == [1.0]
    with pytest.raises(ConfigError):
        ContainsReward("")


def test_verifier_gsm8k_and_missing_reference_is_nan():
    v = make_reward_source("verifier:gsm8k")
    assert isinstance(v, VerifierReward)
    out = v([q("3 + 4 = 7.\n#### 7", "7"), q("The answer is 8", "#### 7"), q("7", None)])
    assert out[:2] == [1.0, 0.0] and math.isnan(out[2])
    assert v.missing_reference == 1
    assert make_reward_source("verifier")([q("so 1,000", "1000")]) == [1.0]


def test_weighted_sum_and_nan_propagation():
    s = make_reward_source("2*count:a + -0.5*length + verifier:numeric")
    assert isinstance(s, WeightedSum) and s.name == "2*count:a+-0.5*length+1*verifier:numeric"
    out = s([q("aa", "5"), q("a", None)])
    assert out[0] == pytest.approx(2 * 2 - 0.5 * 2 + 0.0)
    assert math.isnan(out[1])


def test_pointwise_and_pairwise_judges_through_the_judge_layer():
    from judge_rl.judge.verify import VerifierJudge

    judge = VerifierJudge(mode="numeric")
    point = JudgeReward("verifier", judge=judge)
    out = point([q("it is 12", "12"), q("it is 13", "12"), q("no reference")])
    assert out[:2] == [1.0, 0.0] and math.isnan(out[2])
    assert point.failures == 1 and point.fingerprints[0].kind == "verifier"

    # pairwise against the reference response: the verifier judge prefers the correct one;
    # response vs reference "12": correct -> tie (both right), wrong -> loss
    pair = PairwiseReward("verifier", judge=judge)
    out = pair([q("12", "12"), q("13", "12"), q("x", None)])
    assert out[:2] == [0.5, 0.0] and math.isnan(out[2])


def test_reward_model_source(tmp_path):
    from judge_rl.models import save_tiny_reward_model

    save_tiny_reward_model(tmp_path / "rm", hidden_size=32, num_layers=1, seed=0)
    src = make_reward_source(f"rm:{tmp_path / 'rm'}")
    a = src([q("hello"), q("goodbye"), q("hello")])
    assert len(a) == 3 and all(math.isfinite(x) for x in a)
    assert a[0] == pytest.approx(a[2], abs=1e-5) and a[0] != a[1]
    mixed = make_reward_source(f"0.5*rm:{tmp_path / 'rm'}+contains:h")
    assert mixed([q("hello")])[0] == pytest.approx(0.5 * a[0] + 1.0, abs=1e-5)
    with pytest.raises(ConfigError, match="not a reward model folder"):
        make_reward_source(f"rm:{tmp_path}")


def test_judges_by_name_use_the_judge_layer_and_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_RL_CACHE", str(tmp_path / "cache"))
    point = make_reward_source("judge:gsm8k-exact")  # a verifier judge spec, no model
    assert point([q("so #### 18", "18"), q("#### 17", "18")]) == [1.0, 0.0]
    pair = make_reward_source("pairwise:mock-pairwise")  # scripted judge: the longer one wins
    out = pair(
        [
            q("a much longer answer than the reference", "short"),
            q("x", "a longer reference"),
            q("y"),
        ]
    )
    assert out[:2] == [1.0, 0.0] and math.isnan(out[2])
    assert pair.fingerprints[0].name == "mock-pairwise"
    assert pair([q("a much longer answer than the reference", "short")]) == [1.0]  # cached
