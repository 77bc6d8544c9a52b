"""The work one PPO step does (issue 19 item 4): the policy's full-sequence forward runs once per
PPO epoch and never as a separate no-grad pass when one forward covers the batch, and its LM head
runs on the response positions only (``logits_to_keep``), not on every prompt position."""

from __future__ import annotations

import pytest
import torch

from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train.ppo import PPOConfig, PPOTrainer

PROMPTS = [f"question number {i}: say something" for i in range(8)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


def count_passes(**kw):
    """One train_step; returns (full-sequence body forwards as (grad, no-grad) counts, the
    positions the LM head saw in each of them, R, P, the step's stats)."""
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=2, seed=0)
    cfg = dict(
        steps=1,
        batch_size=8,
        mini_batch_size=8,
        ppo_epochs=3,
        lr=1e-3,
        max_new_tokens=6,
        device="cpu",
        seed=0,
    )
    cfg.update(kw)
    t = PPOTrainer(PPOConfig(**cfg), model, tok, "contains:a", PROMPTS)
    widths: list[tuple[int, bool]] = []  # (sequence width, grad enabled) of each body forward
    head: list[tuple[int, int]] = []  # (positions, width of the body forward before it)
    body = t.policy.model
    body.register_forward_pre_hook(
        lambda m, a, k: widths.append((k["input_ids"].shape[1], torch.is_grad_enabled())),
        with_kwargs=True,
    )
    # the LM head is also called per decoding step without a body forward (the lean sampling
    # loop, judge_rl/train/_lean_decode.py): each call is tagged with the last body forward
    t.policy.lm_head.register_forward_pre_hook(
        lambda m, a: head.append((a[0].shape[1], widths[-1][0] if widths else 0))
    )
    mlp_rows: list[tuple[int, ...]] = []  # (B, T) of each pass through the last layer's MLP
    t.policy.model.layers[-1].mlp.down_proj.register_forward_pre_hook(
        lambda m, a: mlp_rows.append(tuple(a[0].shape[:-1]))
    )
    stats = t.train_step()
    batch = t._last_batch
    P, R = batch.query_ids.shape[1], batch.response_ids.shape[1]
    full = [(w, g) for w, g in widths if w == P + R]  # generate's calls are P or 1 wide
    full_head = [n for n, w in head if w == P + R]  # generate's calls follow P or 1 wide ones
    stats["_mlp_rows"] = mlp_rows[-len(full) :]  # the full-sequence passes come last
    return full, full_head, P, R, stats


def test_one_full_forward_per_epoch_and_no_separate_no_grad_policy_pass():
    full, head, P, R, stats = count_passes()
    assert R > 1 and P > R  # a prompt longer than the response: the head saving is visible
    assert [g for _, g in full] == [True, True, True]  # 3 epochs, each with grad, nothing else
    assert head == [R + 1] * 3  # logits for the response positions only (+ the last prompt one)
    assert stats["kl"] == 0.0  # step 1: pi_old is the reference, exactly


def test_micro_batches_keep_one_no_grad_pass_for_pi_old():
    """With micro-batches pi_old must be known for the whole batch before the first update:
    one no-grad pass per micro-batch, then the updates."""
    full, head, _, R, stats = count_passes(micro_batch_size=4)
    assert [g for _, g in full] == [False, False] + [True] * 6  # 2 no-grad, 3 epochs x 2 grad
    assert set(head) == {R + 1}
    assert stats["kl"] == 0.0


def test_last_layer_mlp_runs_on_the_response_positions_only():
    """Prompt positions' final hidden states are never read (LM head and value head see the
    last R + 1), so the last layer's MLP skips them (train/_last_mlp.py), forward and the
    gradient-checkpointing recomputation alike; the step-1 KL stays exactly 0."""
    for kw in ({}, {"gradient_checkpointing": True}):
        full, _, P, R, stats = count_passes(**kw)
        assert P > R
        assert stats["_mlp_rows"] and set(stats["_mlp_rows"]) == {(8, R + 1)}, kw
        assert stats["kl"] == 0.0
