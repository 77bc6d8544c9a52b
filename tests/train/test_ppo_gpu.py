"""GPU-only training checks (``pytest -m gpu``; skipped without CUDA). The same checks, on the
embedded model and with vLLM and ZeRO-3, are in ``make gpu-check`` (scripts/gpu_check.py)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

PROMPTS = [f"q{i}" for i in range(16)]


def tiny(tmp_path, **kw):
    from judge_rl.models import save_tiny_model
    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    path = save_tiny_model(tmp_path / "m", hidden_size=64, num_layers=2)
    base = dict(
        policy=str(path),
        reward="contains:a",
        steps=2,
        batch_size=16,
        mini_batch_size=8,
        ppo_epochs=1,
        lr=1e-5,
        max_new_tokens=12,
        device="cuda",
        seed=0,
        output=str(tmp_path / "out"),
    )
    base.update(kw)
    return PPOTrainer(PPOConfig(**base), prompts=PROMPTS)


def test_bf16_autocast_on_cuda_kl_zero_and_fp32_master_weights(tmp_path):
    from judge_rl.train.precision import float_dtypes, trainable_fraction_changed

    t = tiny(tmp_path)  # mixed_precision auto: bf16 on a GPU that has it
    if torch.cuda.is_bf16_supported():
        assert t.precision.mixed_precision == "bf16"
    assert float_dtypes(t.unwrapped) == {torch.float32}
    before = {k: v.detach().clone() for k, v in t.unwrapped.named_parameters()}
    steps = t.train().steps
    assert steps[0]["kl"] == 0.0
    assert all(math.isfinite(s["kl"]) for s in steps)
    assert trainable_fraction_changed(before, t.unwrapped) >= 0.99


def test_fp16_with_loss_scaling_runs(tmp_path):
    t = tiny(tmp_path, mixed_precision="fp16")
    steps = t.train().steps
    assert steps[0]["kl"] == 0.0 and all(math.isfinite(s["kl"]) for s in steps)


def test_checkpoint_reloads_on_gpu(tmp_path):
    from judge_rl.models import load_policy_checkpoint

    t = tiny(tmp_path, lora_r=4)
    t.train()
    ids = torch.tensor([[5, 6, 7, 8]], device="cuda")
    m = load_policy_checkpoint(tmp_path / "out" / "checkpoint-000002", device="cuda")
    with torch.no_grad():
        a = m(input_ids=ids).logits.float()
        b = t.policy(input_ids=ids).logits.float()
    assert torch.allclose(a, b, atol=1e-3)


def test_vllm_rollouts_sync_weights_and_measure_the_gap(tmp_path):
    pytest.importorskip("vllm")
    t = tiny(tmp_path, rollout="vllm", vllm_sleep=True, steps=3, lr=1e-3)
    steps = t.train().steps
    gaps = [s["logprob_gap_mean"] for s in steps]
    # after each update the engine samples the trained weights: the gap stays at rounding size
    assert all(math.isfinite(g) and g < 0.05 for g in gaps), gaps


def test_vllm_truncated_importance_sampling_runs(tmp_path):
    pytest.importorskip("vllm")
    t = tiny(tmp_path, rollout="vllm", tis_cap=2.0)
    steps = t.train().steps
    assert all(math.isfinite(s["policy_loss"]) for s in steps)
