"""PPO speed and memory: judge_rl's PPOTrainer vs TRL's experimental PPOTrainer side by side, and
judge_rl's peak memory per configuration on the embedded model.

Part 1 (``--part trl``): same Llama-style policy (hidden 256, 4 layers by default: a realistic
width, not framework overhead; byte tokenizer; saved once so both start from identical weights),
same sequence-classification reward model (also TRL's value model), 64 prompts, rollout batch 16,
one minibatch of 16, 4 PPO epochs, 32 new tokens, temperature 1, stop at EOS, k1 KL 0.05, lr 1e-5,
CPU, the same threads: the same samples and tokens per step on both sides. judge_rl runs twice:
its default (a value head on the policy: one body forward per update pass, no separate value
model) and TRL's layout (a separate value model initialised from the reward model). TRL
(``trl.experimental.ppo``, TRL 1.12) runs in its own venv (.bench-venvs/trl-ppo). The first
update is warm-up and not timed. Prints s/update, samples/s and tokens/s, then ``RATIO`` lines.

Part 2 (``--part memory``): the embedded model (SmolLM2-135M) on CPU, each configuration in a
fresh process (peak RSS is a process's high-water mark): default (fp32, value head), gradient
checkpointing, LoRA r=8 (reference = disabled adapter, no copy). Batch 8, 24 new tokens, one
PPO epoch; 2 steps, the second timed. Prints one table: peak RSS and samples/s.

    python benchmarks/bench_ppo.py [--part trl|memory|all] [--threads 1] [--updates 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRL_REQ = ["trl==1.12.0"]
BATCH, NEW_TOKENS, EPOCHS, KL, LR = 16, 32, 4, 0.05, 1e-5

_PEER_TEMPLATE = r"""
import json, sys, time
import torch
model_dir, rm_dir, prompts_file, threads, updates, out_file = sys.argv[1:7]
torch.set_num_threads(int(threads))
torch.manual_seed(0)
from datasets import Dataset
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          TrainerCallback)
from trl.experimental.ppo import PPOConfig, PPOTrainer

tok = AutoTokenizer.from_pretrained(model_dir)
tok.padding_side = "left"
prompts = json.load(open(prompts_file))
ids = []
for p in prompts:
    x = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                tokenize=True)
    ids.append(list(x["input_ids"]) if hasattr(x, "keys") else list(x))
ds = Dataset.from_dict({"input_ids": ids})
policy = AutoModelForCausalLM.from_pretrained(model_dir)
ref = AutoModelForCausalLM.from_pretrained(model_dir)
rm = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1)
value = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1)
n_updates = int(updates)
cfg = PPOConfig(output_dir=out_file + ".dir", per_device_train_batch_size=%(batch)d,
                gradient_accumulation_steps=1, num_mini_batches=1, num_ppo_epochs=%(epochs)d,
                total_episodes=%(batch)d * n_updates, response_length=%(new)d, temperature=1.0,
                learning_rate=%(lr)g, kl_coef=%(kl)g, stop_token="eos", num_sample_generations=0,
                report_to=[], save_strategy="no", logging_steps=1, use_cpu=True,
                local_rollout_forward_batch_size=%(batch)d, seed=0, bf16=False,
                dataloader_num_workers=0)
marks = []
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        marks.append(time.perf_counter())
trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=ref, reward_model=rm,
                     train_dataset=ds, value_model=value, callbacks=[Clock()])
t0 = time.perf_counter()
trainer.train()
import trl
json.dump({"marks": [t0] + marks, "trl": trl.__version__,
           "scores": [h.get("objective/scores") for h in trainer.state.log_history
                      if "objective/scores" in h]}, open(out_file, "w"))
"""
PEER = _PEER_TEMPLATE % {"batch": BATCH, "epochs": EPOCHS, "new": NEW_TOKENS, "lr": LR, "kl": KL}


def build_models(root: Path, hidden: int, layers: int) -> tuple[Path, Path, list[str]]:
    from judge_rl.models import save_tiny_model, save_tiny_reward_model

    policy = save_tiny_model(root / "policy", hidden_size=hidden, num_layers=layers, seed=0)
    rm = save_tiny_reward_model(root / "rm", hidden_size=hidden, num_layers=layers, seed=1)
    prompts = [
        f"Question {i}: write a short line about the number {i * 7 % 23}." for i in range(64)
    ]
    return policy, rm, prompts


def run_ours(
    policy: Path, rm: Path, prompts: list[str], updates: int, value_model: str = "head"
) -> dict:
    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    cfg = PPOConfig(
        steps=updates,
        batch_size=BATCH,
        mini_batch_size=BATCH,
        ppo_epochs=EPOCHS,
        max_new_tokens=NEW_TOKENS,
        temperature=1.0,
        kl_coef=KL,
        lr=LR,
        value_model=str(rm) if value_model == "rm" else value_model,
        device="cpu",
        seed=0,
    )
    trainer = PPOTrainer(
        cfg, load_causal_lm(str(policy)), load_tokenizer(str(policy)), f"rm:{rm}", prompts
    )
    t0 = time.perf_counter()
    marks = [t0]
    while trainer.step < updates:
        trainer.section.steps.append(trainer.train_step())
        marks.append(time.perf_counter())
    steps = trainer.section.steps
    return {
        "tokens": [s["response_length"] * BATCH for s in steps],
        "marks": marks,
        "scores": [s["reward_mean"] for s in steps],
        "split": {
            k: statistics.mean(s[k] for s in steps[1:])
            for k in ("time_generate", "time_score", "time_train")
        },
    }


def summarise(marks: list[float]) -> dict:
    per = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    timed = per[1:] if len(per) > 1 else per  # the first update warms up
    s = statistics.mean(timed)
    return {"s_per_update": s, "samples_per_s": BATCH / s, "updates": len(per)}


# -- part 2: memory per configuration (one fresh process each) ----------------------------------

MEMORY_CONFIGS = {
    "default": {},
    "grad-ckpt": {"gradient_checkpointing": True},
    "lora-r8": {"lora_r": 8},
}
MEM_BATCH, MEM_TOKENS = 8, 24


def one_memory_config(name: str, threads: int) -> dict:
    """Run 2 PPO steps of the embedded model in this process; returns samples/s and peak RSS."""
    import resource

    import torch

    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    torch.set_num_threads(threads)
    cfg = PPOConfig(
        policy="embedded",
        reward="contains:a",
        steps=2,
        batch_size=MEM_BATCH,
        mini_batch_size=MEM_BATCH,
        ppo_epochs=1,
        max_new_tokens=MEM_TOKENS,
        device="cpu",
        seed=0,
        **MEMORY_CONFIGS[name],
    )
    prompts = [f"Write one short sentence about the number {i}." for i in range(16)]
    trainer = PPOTrainer(cfg, prompts=prompts)
    marks = [time.perf_counter()]
    tokens = []
    while trainer.step < cfg.steps:
        st = trainer.train_step()
        trainer.section.steps.append(st)
        tokens.append(st["response_length"] * MEM_BATCH)
        marks.append(time.perf_counter())
    dt = marks[-1] - marks[-2]
    trainable = sum(p.numel() for p in trainer.unwrapped.parameters() if p.requires_grad)
    return {
        "config": name,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "samples_per_s": MEM_BATCH / dt,
        "tokens_per_s": tokens[-1] / dt,
        "trainable_m": trainable / 1e6,
    }


def memory_table(threads: int) -> list[dict]:
    import subprocess

    rows = []
    for name in MEMORY_CONFIGS:
        r = subprocess.run(
            [sys.executable, __file__, "--one-memory", name, "--threads", str(threads)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{name} failed:\n{r.stderr[-3000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return rows


def print_memory(rows: list[dict], threads: int) -> None:
    print(
        f"embedded SmolLM2-135M, CPU, {threads} thread(s), batch {MEM_BATCH}, {MEM_TOKENS} new "
        f"tokens, 1 PPO epoch, second step timed; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'config':12}{'peak RSS MB':>13}{'samples/s':>11}{'tokens/s':>10}{'trainable M':>13}")
    for r in rows:
        print(
            f"{r['config']:12}{r['peak_rss_mb']:13.0f}{r['samples_per_s']:11.2f}"
            f"{r['tokens_per_s']:10.1f}{r['trainable_m']:13.2f}"
        )


# -- part 1: against TRL ----------------------------------------------------------------------


def trl_part(args: argparse.Namespace) -> None:
    from _peer import peer_python, run_peer

    py = peer_python("trl-ppo", TRL_REQ, torch=True)
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        root = Path(tmp)
        policy, rm, prompts = build_models(root, args.hidden, args.layers)
        (root / "prompts.json").write_text(json.dumps(prompts))
        (root / "peer.py").write_text(PEER)
        print(
            f"tiny Llama (hidden {args.hidden}, {args.layers} layers), {len(prompts)} prompts, "
            f"batch {BATCH}, {NEW_TOKENS} new tokens, {EPOCHS} PPO epochs, {args.updates} updates, "
            f"{args.threads} thread(s), load average before: {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores",
            flush=True,
        )
        # TRL first, then ours: neither side always gets the warmer machine.
        run_peer(
            py,
            str(root / "peer.py"),
            str(policy),
            str(rm),
            str(root / "prompts.json"),
            str(args.threads),
            str(args.updates),
            str(root / "trl.json"),
        )
        trl = json.loads((root / "trl.json").read_text())
        ours = run_ours(policy, rm, prompts, args.updates, "head")
        ours_rm = run_ours(policy, rm, prompts, args.updates, "rm")
    rows = {
        "trl " + trl["trl"]: summarise(trl["marks"]),
        "judge_rl": summarise(ours["marks"]),
        "judge_rl (rm value)": summarise(ours_rm["marks"]),
    }
    print(f"load average after: {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)")
    print()
    print(f"{'tool':22}{'s/update':>10}{'samples/s':>11}{'updates':>9}")
    for name, r in rows.items():
        print(f"{name:22}{r['s_per_update']:10.3f}{r['samples_per_s']:11.2f}{r['updates']:9d}")
    sp = ours["split"]
    print(
        f"judge_rl time split per update: generate {sp['time_generate']:.3f} s, score "
        f"{sp['time_score']:.3f} s, train {sp['time_train']:.3f} s; mean response "
        f"{statistics.mean(ours['tokens']) / BATCH:.1f} tokens"
    )
    t = rows["trl " + trl["trl"]]
    for name in ("judge_rl", "judge_rl (rm value)"):
        o = rows[name]
        print(
            f"RATIO ppo_samples_per_s {name}/trl = {o['samples_per_s'] / t['samples_per_s']:.2f}x "
            f"({o['samples_per_s']:.2f} vs {t['samples_per_s']:.2f} samples/s, hidden "
            f"{args.hidden} x {args.layers} layers, CPU, {args.threads} thread(s))"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["trl", "memory", "all"], default="all")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--updates", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--one-memory", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if args.one_memory:
        print(json.dumps(one_memory_config(args.one_memory, args.threads)))
        return 0
    if args.part in ("trl", "all"):
        trl_part(args)
    if args.part in ("memory", "all"):
        print()
        print_memory(memory_table(args.threads), args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
