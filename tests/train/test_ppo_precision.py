"""Precision policy for PPO (judge_rl/train/precision.py, judge_rl/train/ppo.py): issue 17 item 1.

A checkpoint stored in bf16 (as most hub models are, and as transformers >= 5 loads them) must
train with fp32 master weights: no dtype crash at step 1, and nearly every weight moves at a small
learning rate. Under bf16 autocast the rollout, pi_old and the reference share one numeric
setting, so the step-1 KL is exactly 0.
"""

from __future__ import annotations

import pytest
import torch

from judge_rl.errors import ConfigError
from judge_rl.models import tiny_causal_lm, tiny_tokenizer
from judge_rl.train.ppo import PPOConfig, PPOTrainer
from judge_rl.train.precision import (
    PrecisionPolicy,
    float_dtypes,
    parse_dtype,
    trainable_fraction_changed,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


def bf16_checkpoint(path):
    """A tiny model saved in bf16 (``config.dtype == bfloat16``): loads back as bf16."""
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=2, seed=0).to(torch.bfloat16)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def cfg(**kw):
    base = dict(
        steps=2,
        batch_size=8,
        mini_batch_size=8,
        ppo_epochs=1,
        lr=1e-5,
        max_new_tokens=6,
        device="cpu",
        seed=0,
        reward="contains:a",
    )
    base.update(kw)
    return PPOConfig(**base)


PROMPTS = [f"q{i}" for i in range(8)]


def test_bf16_stored_checkpoint_loads_as_bf16(tmp_path):
    from judge_rl.models import load_causal_lm

    m = load_causal_lm(str(bf16_checkpoint(tmp_path / "m")))
    assert float_dtypes(m) == {torch.bfloat16}  # the premise of the failure


@pytest.mark.parametrize("value_model", ["head", "policy"])
def test_bf16_checkpoint_trains_in_fp32_and_nearly_all_weights_move(tmp_path, value_model):
    path = bf16_checkpoint(tmp_path / "m")
    trainer = PPOTrainer(
        cfg(policy=str(path), value_model=value_model), reward_source="contains:a", prompts=PROMPTS
    )
    joint = trainer.unwrapped
    assert float_dtypes(joint) == {torch.float32}  # master weights, heads included
    assert float_dtypes(trainer.ref_policy) == {torch.float32}
    before = {k: v.detach().clone() for k, v in joint.named_parameters()}
    section = trainer.train()  # crashed at step 1 before ("mat1 and mat2 must have the same dtype")
    assert len(section.steps) == 2
    frac = trainable_fraction_changed(before, joint)
    if value_model == "head":
        assert frac >= 0.99, frac
    else:  # a separate value body's embedding rows of unseen tokens get no gradient
        pol = {k[len("policy.") :]: v for k, v in before.items() if k.startswith("policy.")}
        assert trainable_fraction_changed(pol, trainer.policy) >= 0.99
        assert frac > 0.8, frac
    assert section.steps[0]["kl"] == 0.0


def test_bf16_mixed_precision_step1_kl_is_exactly_zero_and_weights_move(tmp_path):
    path = bf16_checkpoint(tmp_path / "m")
    trainer = PPOTrainer(
        cfg(policy=str(path), mixed_precision="bf16"), reward_source="contains:a", prompts=PROMPTS
    )
    assert trainer.precision.mixed_precision == "bf16"
    assert float_dtypes(trainer.unwrapped) == {torch.float32}
    before = {k: v.detach().clone() for k, v in trainer.unwrapped.named_parameters()}
    steps = trainer.train().steps
    # pi_old (through the accelerate-wrapped model) and the reference ran under one autocast
    assert steps[0]["kl"] == 0.0
    assert all(torch.isfinite(torch.tensor(s["kl"])) for s in steps)
    assert trainable_fraction_changed(before, trainer.unwrapped) >= 0.99


def test_pure_bf16_training_is_what_dtype_auto_gives(tmp_path):
    """dtype=auto keeps the stored bf16: the head follows the body (no crash), but most small
    updates round away: the reason fp32 master weights are the default."""
    path = bf16_checkpoint(tmp_path / "m")
    trainer = PPOTrainer(cfg(policy=str(path), dtype="auto"), prompts=PROMPTS)
    assert float_dtypes(trainer.unwrapped) == {torch.bfloat16}
    before = {k: v.detach().clone() for k, v in trainer.unwrapped.named_parameters()}
    trainer.train()
    assert trainable_fraction_changed(before, trainer.unwrapped) < 0.9


def test_reference_may_stay_bf16_for_inference(tmp_path):
    path = bf16_checkpoint(tmp_path / "m")
    trainer = PPOTrainer(cfg(policy=str(path), ref_dtype="bfloat16", steps=1), prompts=PROMPTS)
    assert float_dtypes(trainer.ref_policy) == {torch.bfloat16}
    assert float_dtypes(trainer.unwrapped) == {torch.float32}
    steps = trainer.train().steps
    assert torch.isfinite(torch.tensor(steps[0]["kl"]))


def test_save_dtype_bf16_writes_bf16_weights(tmp_path):
    from safetensors.torch import load_file

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    out = tmp_path / "out"
    PPOTrainer(
        cfg(steps=1, save_dtype="bfloat16", output=str(out)), model, tok, "contains:a", PROMPTS
    ).train()
    w = load_file(str(out / "checkpoint-000001" / "model.safetensors"))
    assert {v.dtype for v in w.values()} == {torch.bfloat16}
    assert next(model.parameters()).dtype == torch.float32  # the live weights untouched


def test_precision_policy_api_and_errors():
    p = PrecisionPolicy.from_settings("bf16", "fp32")
    assert p.master == torch.float32 and p.compute == torch.bfloat16
    head = torch.nn.Linear(4, 1)
    body = torch.nn.Linear(4, 4).to(torch.bfloat16)
    assert PrecisionPolicy.match(head, body).weight.dtype == torch.bfloat16
    assert parse_dtype("auto") is None and parse_dtype("bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match="mixed"):
        PrecisionPolicy.from_settings("int8")
    with pytest.raises(ConfigError, match="unknown dtype"):
        PrecisionPolicy.from_settings("no", "float8")
    with pytest.raises(ConfigError, match="needs a GPU"):
        PrecisionPolicy.from_settings("fp16").validate("cpu")
    with pytest.raises(ConfigError) as e:
        PPOConfig(mixed_precision="fp8").validate()
    assert e.value.setting == "mixed_precision"
