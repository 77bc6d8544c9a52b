"""LoRA PPO end to end on CPU (issue 17 item 3): a value head on a peft policy, the reference as
the disabled adapter, adapter checkpoints that resume and that load in judge_rl
(:func:`judge_rl.models.load_policy_checkpoint`) and in plain transformers + peft."""

from __future__ import annotations

import pytest
import torch

peft = pytest.importorskip("peft")

from judge_rl.models import (  # noqa: E402
    is_adapter_folder,
    load_policy_checkpoint,
    save_tiny_model,
    tiny_causal_lm,
    tiny_tokenizer,
)
from judge_rl.train._ppo_models import ValueModel, backbone_of, hidden_size_of  # noqa: E402
from judge_rl.train.ppo import PPOConfig, PPOTrainer  # noqa: E402

PROMPTS = [f"q{i}" for i in range(8)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py


def cfg(**kw):
    base = dict(
        steps=2,
        batch_size=8,
        mini_batch_size=4,
        ppo_epochs=1,
        lr=1e-2,
        max_new_tokens=6,
        device="cpu",
        seed=0,
        lora_r=4,
        reward="contains:a",
    )
    base.update(kw)
    return PPOConfig(**base)


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_backbone_of_a_peft_model_is_the_transformer_body():
    tok = tiny_tokenizer()
    lm = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    pm = peft.get_peft_model(
        lm, peft.LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    body = backbone_of(pm)
    assert type(body).__name__ == "LlamaModel"  # was the whole causal LM (no last_hidden_state)
    vm = ValueModel(body, hidden_size_of(pm))
    ids = torch.tensor([[10, 11, 12]])
    v = vm(ids, torch.ones_like(ids), torch.arange(3)[None])
    assert v.shape == (1, 3)
    # and a head-less read of a causal LM works too (hidden_states[-1])
    v2 = ValueModel(pm, hidden_size_of(pm), vm.score)(
        ids, torch.ones_like(ids), torch.arange(3)[None]
    )
    assert torch.allclose(v, v2)


@pytest.mark.parametrize("value_model", ["head", "policy"])
def test_lora_trains_saves_resumes_and_loads_everywhere(tmp_path, value_model):
    base_dir = save_tiny_model(tmp_path / "base", hidden_size=32, num_layers=2)
    out = tmp_path / "out"
    trainer = PPOTrainer(
        cfg(policy=str(base_dir), output=str(out), value_model=value_model), prompts=PROMPTS
    )
    assert trainer.ref_policy is None  # the reference is the policy with adapters disabled
    base_before = {k: v.clone() for k, v in trainer.policy.named_parameters() if "lora_" not in k}
    section = trainer.train()
    assert section.steps[0]["kl"] == 0.0  # LoRA B starts at 0: policy == reference at step 1
    assert all(torch.isfinite(torch.tensor(s["kl"])) for s in section.steps)
    for k, v in trainer.policy.named_parameters():
        if "lora_" not in k:
            assert torch.equal(v, base_before[k]), k  # frozen base
    ckpt = out / "checkpoint-000002"
    assert is_adapter_folder(ckpt)
    assert (ckpt / "adapter_model.safetensors").exists() and not (ckpt / "config.json").exists()

    ids = torch.tensor([[20, 30, 40, 50, 60]])
    live = logits_of(trainer.policy, ids)
    merged = load_policy_checkpoint(ckpt)  # judge_rl: overopt, tournaments
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert torch.allclose(logits_of(merged, ids), live, atol=1e-5)
    from peft import AutoPeftModelForCausalLM

    plain = AutoPeftModelForCausalLM.from_pretrained(str(ckpt))  # plain transformers + peft
    assert torch.allclose(logits_of(plain, ids), live, atol=1e-5)
    assert not torch.allclose(logits_of(load_policy_checkpoint(base_dir), ids), live, atol=1e-4)

    # resume: the adapter, value weights and step count continue
    again = PPOTrainer(
        cfg(
            policy=str(base_dir), output=str(out), value_model=value_model, steps=3, resume="latest"
        ),
        prompts=PROMPTS,
    )
    assert again.step == 2
    assert torch.allclose(logits_of(again.policy, ids), live, atol=1e-6)
    assert len(again.train().steps) == 3


def test_lora_on_an_in_memory_model_saves_its_base_once(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1)
    out = tmp_path / "out"
    trainer = PPOTrainer(cfg(output=str(out), steps=1), model, tok, "contains:a", PROMPTS)
    trainer.train()
    assert (out / "base-model" / "config.json").exists()
    ids = torch.tensor([[20, 30, 40]])
    loaded = load_policy_checkpoint(out / "checkpoint-000001")
    assert torch.allclose(logits_of(loaded, ids), logits_of(trainer.policy, ids), atol=1e-5)
    # the run folder moved elsewhere still loads (the base is found relative to the adapter)
    moved = tmp_path / "moved"
    out.rename(moved)
    loaded = load_policy_checkpoint(moved / "checkpoint-000001")
    assert torch.allclose(logits_of(loaded, ids), logits_of(trainer.policy, ids), atol=1e-5)
