"""The lean sampling loop (judge_rl/train/_lean_decode.py) gives ``generate``'s tokens: same
seed, same tokens and the same RNG state after, sampled and greedy, left-padded, multi-head and
grouped-query attention, rows that stop at EOS early, on tiny Llamas whose output depends on
the context (:func:`llama`); anything it does not know goes to ``generate``."""

from __future__ import annotations

import pytest
import torch

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train._last_mlp import last_mlp_only
from judge_rl.train._lean_decode import lean_decoder
from judge_rl.train.rollout import HFRolloutEngine, encode_prompt, left_pad, sampling_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py

PROMPTS = ["hi", "a longer prompt here", "q", "what is two plus two?"]


def llama(tok, kv_heads=4, init=0.3):
    """A tiny Llama whose output depends on its context: weights drawn wider than transformers'
    0.02 (at 0.02 the logits barely depend on the prompt, and a first step at the wrong position
    still gave the same tokens; at 0.3 it does not)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=96,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=kv_heads,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=None, tie_word_embeddings=True, initializer_range=init)  # fmt: skip
    torch.manual_seed(1)
    return LlamaForCausalLM(cfg).eval()


def gqa_model(tok):
    return llama(tok, kv_heads=2)


def both(model, tok, *, n_new, greedy, temperature=1.0, eos=None, seed=0, top_k=0, top_p=1.0):
    """(generate's ids, lean ids, generate's next random number, lean's)."""
    q, qm = left_pad([encode_prompt(tok, p) for p in PROMPTS], tok.pad_token_id)
    eos = eos or [tok.eos_token_id]
    cfg = sampling_config(n_new, greedy, temperature, top_k, top_p, tok.pad_token_id, eos)
    lean = lean_decoder(model, top_k=top_k, top_p=top_p)
    assert lean is not None
    with torch.no_grad(), last_mlp_only(1, model):
        torch.manual_seed(seed)
        ref = model.generate(input_ids=q, attention_mask=qm, generation_config=cfg)
        r_ref = torch.rand(3)
        torch.manual_seed(seed)
        out = lean.sample(q, qm, max_new_tokens=n_new, greedy=greedy, temperature=temperature,
                          eos=eos, pad_id=tok.pad_token_id, top_k=top_k, top_p=top_p)  # fmt: skip
        r_out = torch.rand(3)
    return ref, out, r_ref, r_out


@pytest.mark.parametrize("arch", ["mha", "gqa"])
@pytest.mark.parametrize(("greedy", "temperature"), [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_same_tokens_as_generate(arch, greedy, temperature):
    tok = tiny_tokenizer()
    model = llama(tok, kv_heads=4 if arch == "mha" else 2)
    for seed in range(3):
        ref, out, r_ref, r_out = both(model, tok, n_new=24, greedy=greedy,
                                      temperature=temperature, seed=seed)  # fmt: skip
        assert out.shape == ref.shape and torch.equal(out, ref), seed
        assert torch.equal(r_out, r_ref)  # the same random numbers drawn


# (top-k, top-p, temperature): each alone, both, with temperatures that move the nucleus
TRUNCATED = [(5, 1.0, 1.0), (0, 0.8, 1.0), (10, 0.9, 0.7), (3, 0.5, 1.5), (1, 1.0, 1.0),
             (40, 0.95, 1.3)]  # fmt: skip


@pytest.mark.parametrize("arch", ["mha", "gqa"])
@pytest.mark.parametrize(("top_k", "top_p", "temperature"), TRUNCATED)
def test_top_k_top_p_same_tokens_as_generate(arch, top_k, top_p, temperature):
    tok = tiny_tokenizer()
    model = llama(tok, kv_heads=4 if arch == "mha" else 2)
    for seed in range(2):
        ref, out, r_ref, r_out = both(model, tok, n_new=24, greedy=False, temperature=temperature,
                                      seed=seed, top_k=top_k, top_p=top_p)  # fmt: skip
        assert out.shape == ref.shape and torch.equal(out, ref), seed
        assert torch.equal(r_out, r_ref)
    full, _, _, _ = both(model, tok, n_new=24, greedy=False, temperature=temperature, seed=seed)
    assert not torch.equal(full, ref)  # the truncation changed what was sampled


def test_top_k_top_p_in_generate_order():
    """Temperature, then top-k, then top-p (another order keeps other tokens here: the check
    above would see it)."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    from judge_rl.train._lean_decode import _warpers

    ws = _warpers(0.7, 10, 0.9)
    assert [type(w) for w in ws] == [TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper]
    assert _warpers(1.0, 0, 1.0) == [] and _warpers(1.0, None, None) == []
    scores = torch.randn(2, 50, generator=torch.Generator().manual_seed(0))
    p_first = TemperatureLogitsWarper(2.0)(None, TopPLogitsWarper(0.6)(None, scores))
    in_order = TopPLogitsWarper(0.6)(None, TemperatureLogitsWarper(2.0)(None, scores))
    assert not torch.equal(p_first.isinf(), in_order.isinf())  # other tokens kept


def test_rows_that_stop_early_and_the_loop_that_stops_when_all_have():
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=2)
    eos = list(range(10, len(tok), 2))  # about half the vocabulary ends a response
    for seed in range(4):
        ref, out, r_ref, r_out = both(model, tok, n_new=40, greedy=False, eos=eos, seed=seed)
        assert out.shape == ref.shape and torch.equal(out, ref), seed
        assert torch.equal(r_out, r_ref)
    width = max(len(encode_prompt(tok, p)) for p in PROMPTS)
    assert ref.shape[1] < width + 40  # every row stopped before max_new_tokens


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 1.0), (20, 0.9)])
def test_engine_uses_it_and_matches_generate(top_k, top_p, monkeypatch):
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=2)
    eng = HFRolloutEngine(model, tok, max_new_tokens=16, temperature=1.0, top_k=top_k,
                          top_p=top_p)  # fmt: skip
    q, qm = left_pad([encode_prompt(tok, p) for p in PROMPTS], tok.pad_token_id)
    calls = []
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1) or 1 / 0)
    torch.manual_seed(0)
    lean = eng.generate(q, qm)
    assert not calls  # the lean loop ran
    monkeypatch.undo()
    monkeypatch.setenv("JUDGE_RL_LEAN_DECODE", "0")
    torch.manual_seed(0)
    plain = eng.generate(q, qm)
    assert torch.equal(lean.response_ids, plain.response_ids) and lean.texts == plain.texts
    assert torch.equal(lean.response_mask, plain.response_mask)


def test_falls_back_where_it_does_not_apply(monkeypatch):
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    assert lean_decoder(model, top_k=0, top_p=1.0) is not None
    assert lean_decoder(model, top_k=5, top_p=0.9) is not None  # generate's warpers, tested
    assert lean_decoder(model, top_k=-1, top_p=1.0) is None  # generate's own error
    assert lean_decoder(model, top_k=0, top_p=0.0) is None
    model.generation_config.min_p = 0.1  # another warper generate would add
    assert lean_decoder(model, top_k=0, top_p=1.0) is None
    model.generation_config.min_p = None
    model.generation_config.suppress_tokens = [3]  # a logits processor generate would add
    assert lean_decoder(model, top_k=0, top_p=1.0) is None
    model.generation_config.suppress_tokens = None
    model.config._attn_implementation = "eager"
    assert lean_decoder(model, top_k=0, top_p=1.0) is None
    model.config._attn_implementation = "sdpa"
    monkeypatch.setenv("JUDGE_RL_LEAN_DECODE", "0")
    assert lean_decoder(model, top_k=0, top_p=1.0) is None
