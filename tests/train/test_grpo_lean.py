"""GRPO's shared-prefill rollout (``GRPOTrainer._group_rollout``) through the lean sampling loop
(judge_rl/train/_lean_decode.py, ``sample(group=K)``) samples the same tokens, and draws the same
random numbers, as its ``generate`` path (``JUDGE_RL_LEAN_DECODE=0``: prefill into a
``DynamicCache``, repeated K times, ``generate`` continues), for the same seed: sampled and
greedy, left-padded prompts, multi-head and grouped-query attention, rows ending early.

With a LoRA policy (``lora_r``) the group rollout runs the lean loop's ``last_in_prefill`` mode
(the prompt prefilled once per group, not K times) and samples the tokens, and draws the random
numbers, of the plain rollout on the repeated prompts, which a LoRA policy ran before (and runs
where the lean loop does not apply)."""

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


@pytest.mark.parametrize("arch", ["mha", "gqa"])
def test_group_rollout_with_top_k_top_p_same_tokens_as_the_generate_path(arch, monkeypatch):
    tr = trainer(arch, K=3, temperature=0.7)
    tr.config.top_k, tr.config.top_p = 10, 0.9
    for seed in range(2):
        ref, out, r_ref, r_out = both(tr, monkeypatch, K=3, seed=seed)
        assert torch.equal(out.response_ids, ref.response_ids), seed
        assert torch.equal(r_out, r_ref)


def test_group_rollout_rows_that_stop_early(monkeypatch):
    tr = trainer("gqa", K=2, max_new_tokens=40)
    tr.engine.eos = list(range(10, len(tr.tokenizer), 2))  # about half the vocabulary ends
    for seed in range(3):
        ref, out, r_ref, r_out = both(tr, monkeypatch, K=2, seed=seed)
        assert torch.equal(out.response_ids, ref.response_ids), seed
        assert torch.equal(out.response_mask, ref.response_mask) and torch.equal(r_out, r_ref)
    assert ref.response_ids.shape[1] < 40  # every row stopped before max_new_tokens


def group_and_plain(tr, K, *, n=4, seed=1, greedy=False):
    """(group rollout's batch, plain rollout's batch on the K-times repeated prompts, the random
    numbers each leaves next) of ``tr``'s first ``n`` prompts, from the same seed."""
    items, enc = tr.items[:n], tr._encoded[:n]
    rep = [it for it in items for _ in range(K)]
    torch.manual_seed(seed)
    a = tr._group_rollout(rep, enc, K, greedy=greedy)
    r_a = torch.rand(3)
    torch.manual_seed(seed)
    b = tr._rollout(rep, [e for e in enc for _ in range(K)], greedy=greedy)
    r_b = torch.rand(3)
    return a, b, r_a, r_b


def test_group_rollout_equals_the_plain_rollout_through_the_lean_loop():
    a, b, _, _ = group_and_plain(trainer("gqa", K=3), 3)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts


# -- a LoRA policy ------------------------------------------------------------------------------


def lora_trainer(arch="gqa", *, K=3, temperature=1.0, max_new_tokens=20, **kw):
    """A GRPO trainer with ``lora_r=4`` on a context-dependent tiny Llama, its ``lora_B`` set to
    random non-zero values (peft starts them at zero, where the adapter would change nothing)."""
    pytest.importorskip("peft")
    tok = tiny_tokenizer()
    model = llama(tok, kv_heads=4 if arch == "mha" else 2)
    cfg = dict(steps=1, batch_size=4, group_size=K, max_new_tokens=max_new_tokens,
               temperature=temperature, device="cpu", seed=0, lora_r=4)  # fmt: skip
    cfg.update(kw)
    tr = GRPOTrainer(GRPOConfig(**cfg), model, tok, "contains:a", PROMPTS)
    randomise_lora_b(tr.policy)
    return tr


def randomise_lora_b(policy):
    """Set a peft policy's ``lora_B`` to seeded random values (peft starts them at zero, where
    the adapter would change nothing)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("arch", ["mha", "gqa"])
@pytest.mark.parametrize(("greedy", "temperature"), [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_lora_group_rollout_same_tokens_as_the_plain_rollout(arch, greedy, temperature):
    K = 3
    tr = lora_trainer(arch, K=K, temperature=temperature)
    assert tr._peft and min(map(len, tr._encoded[:4])) < max(map(len, tr._encoded[:4]))
    for seed in range(3):
        a, b, r_a, r_b = group_and_plain(tr, K, seed=seed, greedy=greedy)
        assert torch.equal(a.response_ids, b.response_ids), seed
        assert torch.equal(a.response_mask, b.response_mask) and a.texts == b.texts
        assert torch.equal(a.query_ids, b.query_ids) and torch.equal(a.query_mask, b.query_mask)
        assert torch.equal(r_a, r_b)  # the same random numbers drawn
    with torch.no_grad(), tr.policy.disable_adapter():  # the adapters matter for these tokens
        torch.manual_seed(seed)
        base = tr._rollout(a.items, [e for e in tr._encoded[:4] for _ in range(K)], greedy=greedy)
    assert not torch.equal(base.response_ids, a.response_ids)


def test_lora_group_rollout_with_top_k_top_p_same_tokens_as_the_plain_rollout(monkeypatch):
    tr = lora_trainer("gqa", K=3, temperature=1.3, top_k=40, top_p=0.95)
    calls = []
    monkeypatch.setattr(tr.policy.get_base_model(), "generate", lambda *a, **k: calls.append(1) / 0)
    for seed in range(2):
        a, b, r_a, r_b = group_and_plain(tr, 3, seed=seed)
        assert torch.equal(a.response_ids, b.response_ids) and torch.equal(r_a, r_b), seed
    assert not calls  # both through the lean loop
    monkeypatch.undo()
    monkeypatch.setenv("JUDGE_RL_LEAN_DECODE", "0")  # generate, on the repeated prompts
    torch.manual_seed(seed)
    ref = tr._rollout(a.items, [e for e in tr._encoded[:4] for _ in range(3)])
    assert torch.equal(ref.response_ids, a.response_ids)


def test_lora_group_rollout_rows_that_stop_early():
    tr = lora_trainer("gqa", K=2, max_new_tokens=40)
    tr.engine.eos = list(range(10, len(tr.tokenizer), 2))  # about half the vocabulary ends
    for seed in range(3):
        a, b, r_a, r_b = group_and_plain(tr, 2, seed=seed)
        assert torch.equal(a.response_ids, b.response_ids), seed
        assert torch.equal(a.response_mask, b.response_mask) and torch.equal(r_a, r_b)
    assert b.response_ids.shape[1] < 40  # every row stopped before max_new_tokens


def body_shapes(tr, *, during=None, skip=()):
    """Records (rows, positions, gradients on) of every forward of the policy's Llama body while
    one of the trainer's methods named in ``during`` runs (any time when None) and none named in
    ``skip`` does (the rollout's prefill runs there, the lean loop's decoding steps call its
    layers directly; the log-probability passes run it). Returns the list and an undo."""
    shapes, state = [], {"in": 0, "out": 0}

    def hook(module, args, kwargs):
        if (during is None or state["in"]) and not state["out"]:
            shapes.append((*kwargs["input_ids"].shape, torch.is_grad_enabled()))

    def wrap(name, key):
        real = getattr(tr, name)

        def inner(*a, **k):
            state[key] += 1
            try:
                return real(*a, **k)
            finally:
                state[key] -= 1

        setattr(tr, name, inner)

    for name in during or ():
        wrap(name, "in")
    for name in skip:
        wrap(name, "out")
    handle = tr.policy.get_base_model().model.register_forward_pre_hook(hook, with_kwargs=True)

    def undo():
        handle.remove()
        for name in (*(during or ()), *skip):
            delattr(tr, name)

    return shapes, undo


def prefill_shapes(tr):
    """(rows, positions) of the policy body's forwards in the rollouts, and an undo."""
    return body_shapes(tr, during=("_group_rollout", "_rollout"))


def test_lora_policy_prefills_each_prompt_once_per_group():
    """One training step with a LoRA policy: the rollout's prefill runs on the G prompts, not on
    their G*K copies (before, a LoRA policy always took the plain rollout)."""
    G, K = 4, 3
    tr = lora_trainer("gqa", K=K, beta=0.0, epochs=1)  # beta 0, one pass: no other no-grad pass
    P = max(map(len, tr._encoded))
    shapes, undo = prefill_shapes(tr)
    tr.train_step()
    undo()
    assert shapes and shapes[0][0] == G and shapes[0][1] <= P, shapes
    assert sum(r * n for r, n, _ in shapes if n <= P) <= G * P  # K times less prompt work

    tr = lora_trainer("gqa", K=K, beta=0.0, epochs=1, shared_prompt=False)  # the plain rollout
    shapes, undo = prefill_shapes(tr)
    tr.train_step()
    undo()
    assert shapes[0][0] == G * K


def test_lora_training_steps_equal_with_and_without_the_shared_prefill():
    """The same samples, so the same step statistics (the plain log-prob passes on both sides:
    the shared ones are tests/train/test_grpo_lora_logprobs.py's)."""
    runs = []
    for shared in (True, False):
        tr = lora_trainer("gqa", K=3, steps=3, beta=0.05, shared_prompt=shared)
        tr._shared = False
        runs.append(tr.train().steps)
    for a, b in zip(*runs, strict=True):
        for k in ("reward_mean", "kl", "loss", "entropy", "response_length"):
            if k in a:
                assert a[k] == b[k], (a["step"], k)


def test_lora_group_rollout_without_the_lean_loop_is_the_plain_rollout(monkeypatch):
    """Where the lean loop does not apply, a LoRA policy's group rollout is the plain rollout
    (``generate`` on the repeated prompts), as before."""
    tr = lora_trainer("gqa", K=3)
    monkeypatch.setenv("JUDGE_RL_LEAN_DECODE", "0")
    calls = []
    real = tr.policy.generate
    monkeypatch.setattr(tr.policy, "generate", lambda *a, **k: calls.append(k) or real(*a, **k))
    a, b, r_a, r_b = group_and_plain(tr, 3)
    assert calls and all("past_key_values" not in k for k in calls)  # no repeated cache
    assert calls[0]["input_ids"].shape[0] == 12  # the repeated prompts
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(r_a, r_b)
