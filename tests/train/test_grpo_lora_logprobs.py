"""GRPO's log-probability passes with a LoRA policy (``lora_r``) share the prompt across a
group's K samples (``GRPOTrainer._shared_logprobs`` through the peft-wrapped Llama): the prompt
runs once per group in the old-policy pass, the reference pass (``disable_adapter()``) and the
training forward, and gives the plain forward's log-probabilities and LoRA gradients (the
prompt's keys and values keep their graph through the gathered cache). Where the shared forward
disagrees or fails, the plain one runs, as before."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from judge_rl.models import tiny_tokenizer
from judge_rl.train.grpo import GRPOConfig, GRPOTrainer
from tests.conftest import requires_embedded
from tests.train.test_grpo_lean import PROMPTS, body_shapes, lora_trainer
from tests.train.test_lean_decode import llama

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py

G, K = 4, 3
TOL = {"atol": 1e-4, "rtol": 1e-4}  # _check_shared's tolerance


def a_batch(tr, seed=0):
    """A group rollout of the trainer's first G prompts (lengths differ: padding)."""
    items, enc = tr.items[:G], tr._encoded[:G]
    assert min(map(len, enc)) < max(map(len, enc))
    torch.manual_seed(seed)
    return tr._group_rollout([it for it in items for _ in range(K)], enc, K)


def logprob_pass_shapes(tr):
    """(rows, positions, gradients on) of the body's forwards in one training step's
    log-probability passes (not the rollout's, nor the first-use check's)."""
    shapes, undo = body_shapes(tr, skip=("_group_rollout", "_rollout", "_check_shared"))
    tr.train_step()
    undo()
    b = tr._last_batch
    return shapes, b.query_ids.shape[1], b.response_ids.shape[1]


def test_lora_logprob_passes_run_each_prompt_once_per_group():
    """Old-policy pass (epochs 2), reference pass (β > 0, adapter off) and both training
    forwards: the prompts run on G rows, the responses on G*K; before, the body ran every pass
    on the G*K prompt+response rows."""
    tr = lora_trainer("gqa", K=K, beta=0.05, epochs=2)
    shapes, P, R = logprob_pass_shapes(tr)
    assert tr._shared is True
    per_pass = [(G, P), (G * K, R)]
    want = [(*s, False) for s in per_pass * 2] + [(*s, True) for s in per_pass * 2]
    assert shapes == want, (shapes, P, R)

    tr = lora_trainer("gqa", K=K, beta=0.05, epochs=2, shared_prompt=False)  # off: as before
    shapes, P, R = logprob_pass_shapes(tr)
    assert tr._shared is False
    assert shapes == [(G * K, P + R, False)] * 2 + [(G * K, P + R, True)] * 2


@pytest.mark.parametrize("arch", ["mha", "gqa"])
def test_lora_shared_logprobs_equal_the_plain_ones(arch):
    """The policy (adapter on) and the reference (adapter off), on rows of partial groups."""
    tr = lora_trainer(arch, K=K, beta=0.05)
    batch = a_batch(tr)
    rows = torch.tensor([0, 2, 3, 4, 5, 7, 8, 10, 11])  # groups 0 and 2 partial
    m = batch.response_mask[rows].float()
    got = {}
    with torch.no_grad():
        for name, mode in (("on", contextlib.nullcontext), ("off", tr.policy.disable_adapter)):
            with mode():
                shared = tr._shared_logprobs(tr.model, batch, rows)[0] * m
                plain = tr._plain_logprobs(tr.model, batch, rows)[0] * m
            torch.testing.assert_close(shared, plain, **TOL)
            got[name] = shared
    assert (got["on"] - got["off"]).abs().max() > 0.1  # the adapter matters here


@pytest.mark.parametrize("arch", ["mha", "gqa"])
def test_lora_shared_gradient_equals_the_plain_gradient(arch):
    """``.grad`` of every trainable (LoRA) parameter after one backward of a token-weighted
    log-prob loss, shared vs plain forward; the key/value projections' LoRA weights get
    gradient from the prompt positions only through the cache (the responses' own keys and
    values are the plain forward's too), so a cache cut from the graph fails here."""
    tr = lora_trainer(arch, K=K)
    batch = a_batch(tr, seed=1)
    rows = torch.tensor([11, 0, 1, 5, 6, 7, 2])
    m = batch.response_mask[rows].float()
    w = torch.randn(m.shape, generator=torch.Generator().manual_seed(2))  # (b, R)
    grads = {}
    for name, fn in (("shared", tr._shared_logprobs), ("plain", tr._plain_logprobs)):
        tr.optimizer.zero_grad(set_to_none=True)
        lp, logits = fn(tr.model, batch, rows, want_logits=True)
        assert logits is not None and logits.requires_grad
        (lp * m * w).sum().backward()
        grads[name] = {
            n: p.grad.clone() for n, p in tr.policy.named_parameters() if p.requires_grad
        }
    assert grads["plain"] and all("lora_" in n for n in grads["plain"])
    assert grads["shared"].keys() == grads["plain"].keys()
    for n, want in grads["plain"].items():
        scale = float(want.abs().max())
        assert scale > 0, n
        torch.testing.assert_close(grads["shared"][n], want, atol=1e-5 * scale, rtol=1e-4, msg=n)
    assert any("v_proj.lora_A" in n for n in grads["plain"])


@pytest.mark.parametrize("checkpointing", [False, True])
def test_lora_training_steps_with_shared_logprobs_equal_the_plain_ones(checkpointing):
    """Three steps (old-policy, reference and training passes; two epochs of two minibatches):
    the statistics of the shared log-prob passes (with ``checkpointing``: under gradient
    checkpointing) equal the plain ones without it within the tolerance."""
    runs = {}
    for shared in (True, False):
        tr = lora_trainer("gqa", K=K, steps=3, beta=0.05, epochs=2, mini_batch_size=6,
                          gradient_checkpointing=shared and checkpointing)  # fmt: skip
        if not shared:
            tr._shared = False
        runs[shared] = tr.train().steps
        assert tr._shared is shared
    for a, b in zip(runs[True], runs[False], strict=True):
        for k in ("reward_mean", "kl", "kl_k3", "loss", "entropy", "clip_frac", "approx_kl"):
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4), (a["step"], k)


# -- the fallback: where the shared forward disagrees or fails, the plain one runs ---------------


def spoil(tr, monkeypatch, *, call, how, name="_shared_logprobs", shift=0.01):
    """The trainer's shared-prompt forward ``name`` wrong (``how="off"``: its log-probabilities
    shifted by ``shift``, beyond the check's tolerance; DPO compares sums of ~40 of them, so
    its tests shift by 0.1) or raising (``"raise"``) at its ``call``-th call (1: the first-use
    check with the adapter on, 2: with it off)."""
    real, n = getattr(tr, name), [0]

    def spoiled(*a, **k):
        n[0] += 1
        lp, *rest = real(*a, **k)
        if n[0] == call and how == "raise":
            raise RuntimeError("no 4D mask here")
        return (lp + shift if n[0] == call else lp, *rest)

    monkeypatch.setattr(tr, name, spoiled)


@pytest.mark.parametrize(("call", "how"), [(1, "off"), (2, "off"), (1, "raise"), (2, "raise")])
def test_lora_check_falls_back_to_the_plain_forward(call, how, monkeypatch):
    tr = lora_trainer("gqa", K=K, beta=0.05, epochs=2)
    spoil(tr, monkeypatch, call=call, how=how)
    shapes, P, R = logprob_pass_shapes(tr)
    assert tr._shared is False
    assert shapes == [(G * K, P + R, False)] * 2 + [(G * K, P + R, True)] * 2


# -- gradient checkpointing: the shared forward recomputes its layers as the plain one does -------


def count_recomputes(policy):
    """Counts the calls of the first decoder layer's MLP made inside a backward (a checkpointed
    layer re-runs its forward there; without checkpointing nothing runs in the backward)."""
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    mlp = base.model.layers[0].mlp
    real, n = mlp.forward, {"backward": 0, "forward": 0}

    def forward(*a, **k):
        n["backward" if torch._C._current_graph_task_id() != -1 else "forward"] += 1
        return real(*a, **k)

    mlp.forward = forward
    return n


def plain_trainer(arch="gqa", **kw):
    """A GRPO trainer on the tiny Llama without LoRA (full fine-tuning)."""
    tok = tiny_tokenizer()
    settings = dict(steps=1, batch_size=G, group_size=K, max_new_tokens=20, device="cpu", seed=0)
    settings.update(kw)
    model = llama(tok, kv_heads=4 if arch == "mha" else 2)
    return GRPOTrainer(GRPOConfig(**settings), model, tok, "contains:a", PROMPTS)


def test_lora_passes_share_the_prompt_under_gradient_checkpointing():
    """With ``gradient_checkpointing`` the log-probability passes still run each prompt once per
    group (before: the plain forward on the G*K prompt+response rows), and the backward
    recomputes each layer: twice per training forward (the prompts, then the responses), once
    on the plain forward; before, the policy's layers stayed in eval mode and nothing was
    recomputed (checkpointing was off in effect)."""
    tr = lora_trainer("gqa", K=K, beta=0.05, epochs=2, gradient_checkpointing=True)
    n = count_recomputes(tr.policy)
    shapes, P, R = logprob_pass_shapes(tr)
    assert tr._shared is True
    per_pass = [(G, P), (G * K, R)]
    assert shapes == [(*s, False) for s in per_pass * 2] + [(*s, True) for s in per_pass * 2]
    assert n["backward"] == 2 * 2  # 2 training forwards (epochs), prompts and responses each

    tr = lora_trainer("gqa", K=K, beta=0.05, epochs=2, gradient_checkpointing=True,
                      shared_prompt=False)  # fmt: skip
    n = count_recomputes(tr.policy)
    shapes, P, R = logprob_pass_shapes(tr)
    assert tr._shared is False
    assert shapes == [(G * K, P + R, False)] * 2 + [(G * K, P + R, True)] * 2
    assert n["backward"] == 2  # 2 training forwards, one recompute each


@pytest.mark.parametrize(("arch", "lora"), [("mha", True), ("gqa", True), ("gqa", False)])
def test_checkpointed_shared_gradient_equals_the_plain_gradient(arch, lora):
    """``.grad`` of every trainable parameter (LoRA's; or all, without LoRA) after one
    backward through the shared forward under gradient checkpointing equals the plain forward's
    without checkpointing; the layers were recomputed in that backward."""
    tr = lora_trainer(arch, K=K, gradient_checkpointing=True) if lora else plain_trainer(
        arch, gradient_checkpointing=True)  # fmt: skip
    batch = a_batch(tr, seed=1)
    rows = torch.tensor([11, 0, 1, 5, 6, 7, 2])
    m = batch.response_mask[rows].float()
    w = torch.randn(m.shape, generator=torch.Generator().manual_seed(2))  # (b, R)
    n = count_recomputes(tr.policy)
    grads = {}
    for name in ("shared", "plain"):
        with contextlib.ExitStack() as stack:
            if name == "plain":  # the plain forward with checkpointing off: the reference
                stack.enter_context(checkpointing_off(tr.policy))
            tr.optimizer.zero_grad(set_to_none=True)
            fn = tr._shared_logprobs if name == "shared" else tr._plain_logprobs
            lp, logits = fn(tr.model, batch, rows, want_logits=True)
            before = n["backward"]
            (lp * m * w).sum().backward()
            recomputed = n["backward"] - before
        assert recomputed == (2 if name == "shared" else 0), name
        grads[name] = {
            k: p.grad.clone() for k, p in tr.policy.named_parameters() if p.requires_grad
        }
    assert grads["shared"].keys() == grads["plain"].keys()
    for k, want in grads["plain"].items():
        scale = float(want.abs().max())
        assert scale > 0, k
        torch.testing.assert_close(grads["shared"][k], want, atol=1e-5 * scale, rtol=1e-4, msg=k)


@contextlib.contextmanager
def checkpointing_off(policy):
    """The policy's layers without checkpointing while the block runs (eval mode)."""
    layers = [m for m in policy.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for m in layers:
        m.gradient_checkpointing = False
    try:
        yield
    finally:
        for m in layers:
            m.gradient_checkpointing = True


def dora_policy(tok):
    """A tiny Llama (GQA) wrapped by peft with DoRA: a peft model other than plain LoRA."""
    peft = pytest.importorskip("peft")
    return peft.get_peft_model(
        llama(tok, kv_heads=2),
        peft.LoraConfig(r=4, target_modules="all-linear", use_dora=True, task_type="CAUSAL_LM"),
    )


@pytest.mark.parametrize("ckpt", [False, True])
def test_other_peft_models_take_the_plain_forward(ckpt):
    """A peft model other than plain LoRA (here DoRA, given as the policy): the shared forward
    refuses it, and the check says no (with gradient checkpointing too)."""
    tok = tiny_tokenizer()
    model = dora_policy(tok)
    cfg = GRPOConfig(steps=1, batch_size=G, group_size=K, max_new_tokens=8, device="cpu", seed=0,
                     gradient_checkpointing=ckpt)  # fmt: skip
    tr = GRPOTrainer(cfg, model, tok, "contains:a", PROMPTS)
    batch = a_batch(tr)
    with pytest.raises(ValueError, match="not a plain LoRA model"):
        tr._shared_logprobs(tr.model, batch, slice(0, 4))
    assert tr._check_shared(batch) is False


@requires_embedded
@pytest.mark.slow
@pytest.mark.parametrize("ckpt", [False, True])
def test_embedded_model_lora_takes_the_shared_forward(embedded, ckpt):
    """SmolLM2-135M with LoRA r=8 (``lora_B`` small and random): the first-use check passes, and
    the shared log-probabilities (adapter on and off) and LoRA gradients equal the plain ones;
    with ``ckpt`` the shared backward recomputes the layers under gradient checkpointing and its
    gradients equal the plain forward's without it."""
    model, tok = embedded
    prompts = [f"What is {i} + {3 * i % 7}? Answer with just the number." for i in range(4)]
    cfg = GRPOConfig(steps=1, batch_size=2, group_size=K, max_new_tokens=12, lora_r=8, beta=0.04,
                     device="cpu", seed=0, gradient_checkpointing=ckpt)  # fmt: skip
    tr = GRPOTrainer(cfg, copy.deepcopy(model), tok, "contains:1", prompts)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in tr.policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    torch.manual_seed(0)
    batch = tr._group_rollout([it for it in tr.items[:2] for _ in range(K)], tr._encoded[:2], K)
    assert tr._check_shared(batch) is True
    rows = torch.tensor([0, 1, 3, 4, 5])
    m = batch.response_mask[rows].float()
    with torch.no_grad():
        for mode in (contextlib.nullcontext, tr.policy.disable_adapter):
            with mode():
                shared = tr._shared_logprobs(tr.model, batch, rows)[0] * m
                plain = tr._plain_logprobs(tr.model, batch, rows)[0] * m
            torch.testing.assert_close(shared, plain, **TOL)
    grads = {}
    count = count_recomputes(tr.policy)
    for name, fn in (("shared", tr._shared_logprobs), ("plain", tr._plain_logprobs)):
        with contextlib.ExitStack() as stack:
            if name == "plain" and ckpt:
                stack.enter_context(checkpointing_off(tr.policy))
            tr.optimizer.zero_grad(set_to_none=True)
            before = count["backward"]
            (fn(tr.model, batch, rows)[0] * m).sum().backward()
        assert count["backward"] - before == (2 if ckpt and name == "shared" else 0)
        grads[name] = {
            n: p.grad.clone() for n, p in tr.policy.named_parameters() if p.requires_grad
        }
    for n, want in grads["plain"].items():
        scale = float(want.abs().max())
        torch.testing.assert_close(grads["shared"][n], want, atol=1e-4 * scale, rtol=1e-3, msg=n)
