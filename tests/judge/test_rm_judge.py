"""The reward-model judge (kind reward_model) over a tiny sequence-classification model."""

from __future__ import annotations

import math

import pytest

from judge_rl.judge import JudgmentCache, compare_sync, load_judge, score_sync


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    from judge_rl.models import save_tiny_reward_model

    return save_tiny_reward_model(
        tmp_path_factory.mktemp("rm") / "rm",
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        max_position_embeddings=256,
        seed=0,
    )


def test_reward_model_spec_scores_and_compares(tiny_rm, write_spec, comparisons, tmp_path):
    spec = write_spec(
        "rm", f"version: 1\nkind: reward_model\npath: {tiny_rm}\nbatch_size: 4\n", template=None
    )
    cache = JudgmentCache(tmp_path / "c.sqlite")
    judge = load_judge(spec, cache=cache)
    assert judge.fingerprint.kind == "reward_model"
    scores = score_sync(judge, [c.a for c in comparisons])
    assert all(s.ok and math.isfinite(s.score) for s in scores)
    js = compare_sync(judge, comparisons)
    for j, c in zip(js, comparisons, strict=True):
        ra = next(s.score for s in scores if s.candidate_id == c.a.id)
        assert j.ok and 0 < j.p_a < 1
        assert j.winner == ("a" if j.p_a > 0.5 else "b" if j.p_a < 0.5 else "tie")
        assert j.calls[0].first_id == c.a.id
        assert math.isclose(1 / (1 + math.exp(-(ra - _score_b(judge, c)))), j.p_a, rel_tol=1e-5)
    assert len(cache) == 2 * len(comparisons)  # a's were cached by score() already


def _score_b(judge, c):
    (s,) = score_sync(judge, [c.b])
    assert s.cached  # from the cache filled by compare
    return s.score


def test_missing_reward_model_folder(write_spec):
    from judge_rl.errors import ConfigError

    spec = write_spec(
        "rm2", "version: 1\nkind: reward_model\npath: /nonexistent/rm\n", template=None
    )
    with pytest.raises(ConfigError, match="does not exist"):
        load_judge(spec)
