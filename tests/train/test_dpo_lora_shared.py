"""DPO with a LoRA policy (``lora_r``) shares each pair's prompt between its chosen and rejected
responses (``DPOTrainer._shared_logps`` through the peft-wrapped Llama, as GRPO's log-prob
passes do): the prompt runs once per pair in the reference pass (``disable_adapter()``) and in
the training forward, and gives the plain forward's log-probabilities and LoRA gradients (the
prompt's keys and values keep their graph through the repeated cache). Where the shared forward
disagrees or fails, the plain one runs, as before."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from judge_rl.models import tiny_tokenizer
from judge_rl.train.dpo import DPOTrainer
from tests.conftest import requires_embedded
from tests.train.test_dpo import cfg, planted
from tests.train.test_grpo_lean import body_shapes, randomise_lora_b
from tests.train.test_grpo_lora_logprobs import (
    checkpointing_off,
    count_recomputes,
    dora_policy,
    spoil,
)
from tests.train.test_lean_decode import llama

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py

N, B = 12, 4  # pairs, pairs per step
TOL = {"atol": 1e-3, "rtol": 1e-4}  # DPOTrainer._check_shared's tolerance (summed log-probs)


def lora_dpo(arch="gqa", *, policy=None, **kw):
    """A DPO trainer with ``lora_r=4`` on a context-dependent tiny Llama (MHA or GQA), its
    ``lora_B`` set to random non-zero values (peft starts them at zero, where the adapter would
    change nothing); N pairs of different prompt and response lengths, file order, no held-out
    share."""
    pytest.importorskip("peft")
    tok = tiny_tokenizer()
    model = policy or llama(tok, kv_heads=4 if arch == "mha" else 2)
    settings = dict(lora_r=4, max_steps=1, batch_size=B, eval_fraction=0.0, shuffle=False,
                    lr=1e-2)  # fmt: skip
    settings.update(kw)
    tr = DPOTrainer(cfg(**settings), model, tok, planted(N))
    randomise_lora_b(tr.policy)
    return tr


def widths(tr, rows):
    """(longest prompt, longest response, longest prompt + response) over the pairs ``rows``."""
    P = max(len(tr.pairs.prompt[i]) for i in rows)
    resp = [(i, r) for i in rows for r in (tr.pairs.chosen[i], tr.pairs.rejected[i])]
    R = max(len(r) for _, r in resp)
    L = max(len(tr.pairs.prompt[i]) + len(r) for i, r in resp)
    return P, R, L


def train_shapes(tr):
    """(rows, positions, gradients on) of the Llama body's forwards in a one-step ``train()``:
    the reference pass over all N pairs, then one step of the first B (not the first-use
    check's)."""
    shapes, undo = body_shapes(tr, skip=("_check_shared",))
    tr.train()
    undo()
    return shapes


def plain_shapes(tr):
    """What :func:`train_shapes` records on the plain forward: the 2n prompt+response rows."""
    return [(2 * N, widths(tr, range(N))[2], False), (2 * B, widths(tr, range(B))[2], True)]


def test_lora_passes_run_each_prompt_once_per_pair():
    """Reference pass (adapter off) and training forward: the prompts run on n rows, the
    responses on 2n; before, the body ran both passes on the 2n prompt+response rows."""
    tr = lora_dpo("gqa")
    shapes = train_shapes(tr)
    assert tr._shared is True
    (P, R, _), (Ps, Rs, _) = widths(tr, range(N)), widths(tr, range(B))
    assert shapes == [(N, P, False), (2 * N, R, False), (B, Ps, True), (2 * B, Rs, True)]

    tr = lora_dpo("gqa", shared_prompt=False)  # switched off: as before
    shapes = train_shapes(tr)
    assert tr._shared is False
    assert shapes == plain_shapes(tr)


@pytest.mark.parametrize("arch", ["mha", "gqa"])
def test_lora_shared_logps_equal_the_plain_ones(arch):
    """The policy (adapter on) and the reference (adapter off): summed log-probabilities and
    token counts of chosen and rejected."""
    tr = lora_dpo(arch)
    rows = [7, 0, 3, 11, 5]
    got = {}
    with torch.no_grad():
        for name, mode in (("on", contextlib.nullcontext), ("off", tr.policy.disable_adapter)):
            with mode():
                shared, sn = tr._shared_logps(rows)
                plain, pn = tr._plain_logps(rows)
            assert torch.equal(sn, pn)
            torch.testing.assert_close(shared, plain, **TOL)
            got[name] = shared
    assert (got["on"] - got["off"]).abs().max() > 0.1  # the adapter matters here


@pytest.mark.parametrize("arch", ["mha", "gqa"])
def test_lora_shared_gradient_equals_the_plain_gradient(arch):
    """``.grad`` of every trainable (LoRA) parameter after one backward of the DPO loss, shared
    vs plain forward, against the same reference; the key/value projections' LoRA weights get
    the prompt positions' gradient only through the cache, so a cache cut from the graph fails
    here."""
    tr = lora_dpo(arch)
    tr.reference_logps()
    rows = [2, 9, 4, 0, 6]
    grads, losses = {}, {}
    for shared in (True, False):
        tr._shared = shared
        tr.optimizer.zero_grad(set_to_none=True)
        loss, _ = tr._pair_losses(rows)
        loss.mean().backward()
        losses[shared] = loss.detach()
        grads[shared] = {
            n: p.grad.clone() for n, p in tr.policy.named_parameters() if p.requires_grad
        }
    torch.testing.assert_close(losses[True], losses[False], **TOL)
    assert grads[False] and all("lora_" in n for n in grads[False])
    assert grads[True].keys() == grads[False].keys()
    for n, want in grads[False].items():
        scale = float(want.abs().max())
        assert scale > 0, n
        torch.testing.assert_close(grads[True][n], want, atol=1e-5 * scale, rtol=1e-4, msg=n)
    assert any("v_proj.lora_A" in n for n in grads[False])


def test_lora_training_with_shared_logps_equals_the_plain_training():
    """Three steps from the same weights: the reference log-probabilities and every step's
    statistics of the shared path equal the plain one's within the tolerance."""
    runs = {}
    for shared in (True, False):
        tr = lora_dpo("gqa", max_steps=3)
        if not shared:
            tr._shared = False
        runs[shared] = (tr.train().steps, tr.reference_logps())
        assert tr._shared is shared
    (a, ref_a), (b, ref_b) = runs[True], runs[False]
    torch.testing.assert_close(ref_a, ref_b, atol=1e-3, rtol=1e-4)
    assert torch.equal(ref_a[:, 2:], ref_b[:, 2:])  # the same token counts
    for x, y in zip(a, b, strict=True):
        for k in ("loss", "margin", "reward_chosen", "reward_rejected", "logp_chosen"):
            assert x[k] == pytest.approx(y[k], rel=1e-3, abs=1e-4), (x["step"], k)


# -- the fallback: where the shared forward disagrees or fails, the plain one runs ---------------


@pytest.mark.parametrize(("call", "how"), [(1, "off"), (2, "off"), (1, "raise"), (2, "raise")])
def test_lora_check_falls_back_to_the_plain_forward(call, how, monkeypatch):
    tr = lora_dpo("gqa")
    spoil(tr, monkeypatch, call=call, how=how, name="_shared_logps", shift=0.1)
    shapes = train_shapes(tr)
    assert tr._shared is False
    assert shapes == plain_shapes(tr)


# -- gradient checkpointing: the shared forward recomputes its layers as the plain one does -------


def test_lora_passes_share_the_prompt_under_gradient_checkpointing():
    """With ``gradient_checkpointing`` the reference pass and the training forward still run each
    prompt once per pair (before: the plain forward on the 2n prompt+response rows), and the
    step's backward recomputes each layer twice (the prompts, then the responses), once on the
    plain forward; before, the policy's layers stayed in eval mode and nothing was recomputed
    (checkpointing was off in effect)."""
    tr = lora_dpo("gqa", gradient_checkpointing=True)
    n = count_recomputes(tr.policy)
    shapes = train_shapes(tr)
    assert tr._shared is True
    (P, R, _), (Ps, Rs, _) = widths(tr, range(N)), widths(tr, range(B))
    assert shapes == [(N, P, False), (2 * N, R, False), (B, Ps, True), (2 * B, Rs, True)]
    assert n["backward"] == 2

    tr = lora_dpo("gqa", gradient_checkpointing=True, shared_prompt=False)
    n = count_recomputes(tr.policy)
    shapes = train_shapes(tr)
    assert tr._shared is False
    assert shapes == plain_shapes(tr)
    assert n["backward"] == 1


@pytest.mark.parametrize(("arch", "lora"), [("mha", True), ("gqa", True), ("gqa", False)])
def test_checkpointed_shared_gradient_equals_the_plain_gradient(arch, lora):
    """``.grad`` of every trainable parameter (LoRA's; or all, without LoRA) after one backward
    of the DPO loss through the shared forward under gradient checkpointing equals the plain
    forward's without checkpointing, against the same reference; the layers were recomputed."""
    tr = lora_dpo(arch, gradient_checkpointing=True, **({} if lora else {"lora_r": 0}))
    tr.reference_logps()
    rows = [2, 9, 4, 0, 6]
    n = count_recomputes(tr.policy)
    grads, losses = {}, {}
    for shared in (True, False):
        tr._shared = shared
        with contextlib.ExitStack() as stack:
            if not shared:  # the plain forward with checkpointing off: the reference
                stack.enter_context(checkpointing_off(tr.policy))
            tr.optimizer.zero_grad(set_to_none=True)
            loss, _ = tr._pair_losses(rows)
            before = n["backward"]
            loss.mean().backward()
            assert n["backward"] - before == (2 if shared else 0), shared
        losses[shared] = loss.detach()
        grads[shared] = {
            k: p.grad.clone() for k, p in tr.policy.named_parameters() if p.requires_grad
        }
    torch.testing.assert_close(losses[True], losses[False], **TOL)
    assert grads[True].keys() == grads[False].keys()
    for k, want in grads[False].items():
        scale = float(want.abs().max())
        assert scale > 0, k
        torch.testing.assert_close(grads[True][k], want, atol=1e-5 * scale, rtol=1e-4, msg=k)


def test_checkpointed_shared_training_equals_the_plain_training():
    """Three steps from the same weights: shared forward with gradient checkpointing against
    the plain forward without it."""
    runs = {}
    for shared in (True, False):
        tr = lora_dpo("gqa", max_steps=3, gradient_checkpointing=shared)
        if not shared:
            tr._shared = False
        runs[shared] = (tr.train().steps, tr.reference_logps())
        assert tr._shared is shared
    (a, ref_a), (b, ref_b) = runs[True], runs[False]
    torch.testing.assert_close(ref_a, ref_b, atol=1e-3, rtol=1e-4)
    for x, y in zip(a, b, strict=True):
        for k in ("loss", "margin", "reward_chosen", "reward_rejected", "logp_chosen"):
            assert x[k] == pytest.approx(y[k], rel=1e-3, abs=1e-4), (x["step"], k)


@pytest.mark.parametrize("ckpt", [False, True])
def test_other_peft_models_take_the_plain_forward(ckpt):
    """A peft model other than plain LoRA (here DoRA, given as the policy): the shared forward
    refuses it, and the check says no (with gradient checkpointing too)."""
    tr = lora_dpo("gqa", policy=dora_policy(tiny_tokenizer()), lora_r=0,
                  gradient_checkpointing=ckpt)  # fmt: skip
    with pytest.raises(ValueError, match="not a plain LoRA model"):
        tr._shared_logps([0, 1])
    assert tr._check_shared() is False


@requires_embedded
@pytest.mark.slow
@pytest.mark.parametrize("ckpt", [False, True])
def test_embedded_model_lora_takes_the_shared_forward(embedded, ckpt):
    """SmolLM2-135M (GQA, 30 layers, chat template) with LoRA r=8 (``lora_B`` small and random):
    the first-use check passes, and the shared log-probabilities (adapter on and off) and the
    LoRA gradients of a DPO loss equal the plain ones; with ``ckpt`` the shared backward
    recomputes the layers under gradient checkpointing and its gradients equal the plain
    forward's without it."""
    model, tok = embedded
    settings = dict(lora_r=8, max_steps=1, batch_size=2, eval_fraction=0.0, shuffle=False,
                    max_length=96, max_prompt_length=48,
                    gradient_checkpointing=ckpt)  # fmt: skip
    tr = DPOTrainer(cfg(**settings), copy.deepcopy(model), tok, planted(4))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in tr.policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    assert tr._check_shared() is True
    rows = [2, 0, 3]
    with torch.no_grad():
        for mode in (contextlib.nullcontext, tr.policy.disable_adapter):
            with mode():
                shared, sn = tr._shared_logps(rows)
                plain, pn = tr._plain_logps(rows)
            assert torch.equal(sn, pn)
            torch.testing.assert_close(shared, plain, **TOL)
    tr.reference_logps()
    grads = {}
    count = count_recomputes(tr.policy)
    for shared in (True, False):
        tr._shared = shared
        with contextlib.ExitStack() as stack:
            if not shared and ckpt:
                stack.enter_context(checkpointing_off(tr.policy))
            tr.optimizer.zero_grad(set_to_none=True)
            before = count["backward"]
            tr._pair_losses(rows)[0].mean().backward()
        assert count["backward"] - before == (2 if ckpt and shared else 0)
        grads[shared] = {
            n: p.grad.clone() for n, p in tr.policy.named_parameters() if p.requires_grad
        }
    for n, want in grads[False].items():
        scale = float(want.abs().max())
        torch.testing.assert_close(grads[True][n], want, atol=1e-4 * scale, rtol=1e-3, msg=n)
