"""GRPO's shared-prefill rollout (``GRPOTrainer._group_rollout``) through the lean sampling loop
(judge_rl/train/_lean_decode.py, ``sample(group=K)``) samples the same tokens, and draws the same
random numbers, as its ``generate`` path (``JUDGE_RL_LEAN_DECODE=0``: prefill into a
``DynamicCache``, repeated K times, ``generate`` continues), for the same seed: sampled and
greedy, left-padded prompts, multi-head and grouped-query attention, rows ending early."""

from __future__ import annotations

import pytest
import torch

from judge_rl.models import tiny_tokenizer
from judge_rl.train.grpo import GRPOConfig, GRPOTrainer
from tests.train.test_lean_decode import llama

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py

PROMPTS = [f"question {i} " + "x" * (3 * i % 11) for i in range(8)]  # lengths differ


def trainer(arch, *, K=3, temperature=1.0, max_new_tokens=20):
    tok = tiny_tokenizer()
    model = llama(tok, kv_heads=4 if arch == "mha" else 2)  # output depends on the context
    cfg = GRPOConfig(steps=1, batch_size=4, group_size=K, max_new_tokens=max_new_tokens,
                     temperature=temperature, device="cpu", seed=0)  # fmt: skip
    return GRPOTrainer(cfg, model, tok, "contains:a", PROMPTS)


def both(tr, monkeypatch, *, K, greedy=False, seed=0):
    """(generate path's batch, lean path's batch, their next random numbers)."""
    items, enc = tr.items[:4], tr._encoded[:4]
    rep = [it for it in items for _ in range(K)]
    monkeypatch.setenv("JUDGE_RL_LEAN_DECODE", "0")
    torch.manual_seed(seed)
    ref = tr._group_rollout(rep, enc, K, greedy=greedy)
    r_ref = torch.rand(3)
    monkeypatch.delenv("JUDGE_RL_LEAN_DECODE")
    calls = []
    real = tr.policy.generate
    monkeypatch.setattr(tr.policy, "generate", lambda *a, **k: calls.append(1) / 0)
    torch.manual_seed(seed)
    out = tr._group_rollout(rep, enc, K, greedy=greedy)
    r_out = torch.rand(3)
    monkeypatch.setattr(tr.policy, "generate", real)
    assert not calls  # the lean loop ran
    return ref, out, r_ref, r_out


@pytest.mark.parametrize("arch", ["mha", "gqa"])
@pytest.mark.parametrize(("greedy", "temperature"), [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_group_rollout_same_tokens_as_the_generate_path(arch, greedy, temperature, monkeypatch):
    K = 3
    tr = trainer(arch, K=K, temperature=temperature)
    assert min(len(e) for e in tr._encoded[:4]) < max(len(e) for e in tr._encoded[:4])  # padding
    for seed in range(3):
        ref, out, r_ref, r_out = both(tr, monkeypatch, K=K, greedy=greedy, seed=seed)
        assert torch.equal(out.response_ids, ref.response_ids), seed
        assert torch.equal(out.response_mask, ref.response_mask) and out.texts == ref.texts
        assert torch.equal(out.query_ids, ref.query_ids)
        assert torch.equal(out.query_mask, ref.query_mask)
        assert torch.equal(r_out, r_ref)  # the same random numbers drawn
    if not greedy:  # the K samples of a prompt differ: each row drew its own tokens
        g = out.response_ids.view(4, K, -1)
        assert any(not torch.equal(g[i, 0], g[i, 1]) for i in range(4))


def test_group_rollout_rows_that_stop_early(monkeypatch):
    tr = trainer("gqa", K=2, max_new_tokens=40)
    tr.engine.eos = list(range(10, len(tr.tokenizer), 2))  # about half the vocabulary ends
    for seed in range(3):
        ref, out, r_ref, r_out = both(tr, monkeypatch, K=2, seed=seed)
        assert torch.equal(out.response_ids, ref.response_ids), seed
        assert torch.equal(out.response_mask, ref.response_mask) and torch.equal(r_out, r_ref)
    assert ref.response_ids.shape[1] < 40  # every row stopped before max_new_tokens


def test_group_rollout_equals_the_plain_rollout_through_the_lean_loop():
    tr = trainer("gqa", K=3)
    items, enc = tr.items[:4], tr._encoded[:4]
    rep = [it for it in items for _ in range(3)]
    torch.manual_seed(1)
    a = tr._group_rollout(rep, enc, 3)
    torch.manual_seed(1)
    b = tr._rollout(rep, [e for e in enc for _ in range(3)])
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
