"""Run by tests/train/test_ppo_ddp.py under ``accelerate launch --num_processes 2 --cpu``: a few
PPO steps of the toy task; each rank writes a checksum of its policy parameters and what it
sampled, so the test can check the ranks stayed in sync while sampling different prompts."""

from __future__ import annotations

import json
import sys


def main(out_dir: str) -> None:
    import torch

    torch.set_num_threads(1)
    from judge_rl.models import tiny_causal_lm, tiny_tokenizer
    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    tok = tiny_tokenizer()
    model = tiny_causal_lm(tok, hidden_size=32, num_layers=1, seed=0)
    cfg = PPOConfig(
        steps=3,
        batch_size=4,
        mini_batch_size=2,
        ppo_epochs=2,
        lr=1e-2,
        max_new_tokens=6,
        value_model="policy",
        device="cpu",
        output=out_dir,
        save_every=0,
    )
    trainer = PPOTrainer(cfg, model, tok, "contains:a", [f"q{i}" for i in range(16)])
    section = trainer.train()
    rank = trainer.accelerator.process_index
    params = torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])
    value = torch.cat([p.detach().flatten() for p in trainer.unwrapped.value_model.parameters()])
    record = {
        "rank": rank,
        "world": trainer.accelerator.num_processes,
        "param_sum": float(params.double().sum()),
        "param_abs": float(params.double().abs().sum()),
        "value_sum": float(value.double().sum()),
        "responses": list(trainer._last_batch.texts),
        "prompts": [it.prompt for it in trainer._last_batch.items],
        "steps": section.steps,
    }
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1])
