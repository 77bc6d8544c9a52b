"""Rollout engines (judge_rl/train/rollout.py)."""

from __future__ import annotations

import pytest
import torch

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train.rollout import (
    HFRolloutEngine,
    encode_prompt,
    left_pad,
    make_engine,
    response_mask_from_ids,
)


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_tokenizer()
    return tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=3), tok


def test_left_pad_and_masks():
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    m, ended = response_mask_from_ids(
        torch.tensor([[9, 2, 2, 2], [2, 5, 5, 5], [5, 5, 5, 5]]), [2, 7]
    )
    assert m.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert ended.tolist() == [True, True, False]


def test_encode_prompt_uses_the_chat_template(tiny):
    _, tok = tiny
    ids = encode_prompt(tok, "hi")
    assert tok.decode(ids) == "<|user|>hi<|end|><|assistant|>"
    assert encode_prompt(tok, [{"role": "user", "content": "hi"}]) == ids
    assert tok.decode(encode_prompt(tok, "hi", chat=False)) == "hi"


def test_hf_engine_sampling_eos_and_padding(tiny):
    model, tok = tiny
    eng = HFRolloutEngine(model, tok, max_new_tokens=10, temperature=1.0)
    q_ids, q_mask = left_pad(
        [encode_prompt(tok, p) for p in ["a", "longer prompt"]], tok.pad_token_id
    )
    torch.manual_seed(0)
    r = eng.generate(q_ids, q_mask)
    B, R = r.response_ids.shape
    assert B == 2 and R <= 10 and r.response_mask.shape == (2, R)
    for i in range(B):
        n = int(r.response_mask[i].sum())
        toks = r.response_ids[i, :n].tolist()
        if r.ended_with_eos[i]:
            assert toks[-1] == tok.eos_token_id and tok.eos_token_id not in toks[:-1]
        else:
            assert n == 10
        assert (r.response_ids[i, n:] == tok.pad_token_id).all()
        assert r.texts[i] == tok.decode(toks, skip_special_tokens=True)
    # sampling follows torch's RNG: same seed, same responses
    torch.manual_seed(0)
    assert eng.generate(q_ids, q_mask).texts == r.texts


def test_greedy_is_the_same_alone_and_in_a_left_padded_batch(tiny):
    model, tok = tiny
    eng = HFRolloutEngine(model, tok, max_new_tokens=8)
    short = encode_prompt(tok, "x")
    long_ = encode_prompt(tok, "a much longer prompt here")
    alone = eng.generate(*left_pad([short], tok.pad_token_id), greedy=True)
    both = eng.generate(*left_pad([long_, short], tok.pad_token_id), greedy=True)
    n = int(alone.response_mask[0].sum())
    assert both.response_ids[1, :n].tolist() == alone.response_ids[0, :n].tolist()
    assert (
        eng.generate(
            *left_pad([short], tok.pad_token_id), greedy=True, max_new_tokens=3
        ).response_ids.shape[1]
        <= 3
    )


def test_unknown_engine_is_a_config_error(tiny):
    from judge_rl.errors import ConfigError

    model, tok = tiny
    with pytest.raises(ConfigError, match="unknown rollout engine"):
        make_engine("tgi", model, tok)


@pytest.mark.gpu
def test_vllm_engine_matches_policy_after_weight_sync(tmp_path):
    pytest.importorskip("vllm", reason="vLLM is an optional GPU extra")
    if not torch.cuda.is_available():
        pytest.skip("the vLLM rollout engine needs a CUDA GPU (none here)")
    from judge_rl.models import save_tiny_model
    from judge_rl.train.rollout import VLLMRolloutEngine

    path = save_tiny_model(tmp_path / "m", hidden_size=64, num_layers=2)
    tok = tiny_tokenizer()
    eng = VLLMRolloutEngine(str(path), tok, max_new_tokens=8, gpu_memory_utilization=0.2)
    q = left_pad([encode_prompt(tok, "hello")], tok.pad_token_id)
    before = eng.generate(*q, greedy=True)
    model = tiny_causal_lm(tok, hidden_size=64, num_layers=2, seed=123).cuda()
    eng.sync_weights(model)
    after = eng.generate(*q, greedy=True)
    hf = HFRolloutEngine(model, tok, max_new_tokens=8).generate(*q, greedy=True)
    assert after.response_ids[0].tolist() == hf.response_ids[0].tolist()
    assert after.logprobs is not None and before.texts != after.texts
