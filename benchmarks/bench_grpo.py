"""GRPO speed and learning: judge_rl's GRPOTrainer vs TRL's GRPOTrainer, side by side.

Same Llama-style policy (hidden 256, 4 layers by default: a realistic width, not framework
overhead; byte tokenizer; saved once so both start from identical weights), same 64 plain-text
prompts, 8 prompts x K = 8 samples per step (64 completions), 16 new tokens, temperature 1, one
update per batch, GRPO advantages (group mean and std), token-level loss, clip 0.2, k3 KL with
beta 0.04 (so both run the reference), lr 1e-3 (constant), the same reward (1 when the completion
contains the letter "a"), CPU, the same thread count. TRL (1.16) runs in its own venv
(``.bench-venvs/trl``).

judge_rl runs twice: its default (each prompt's K samples share one prompt forward) and with
``shared_prompt=False``, the same token work as TRL (the train-token column counts the positions
each side's policy forward runs on with gradients, padding included). Both run ``--steps`` steps;
the first is warm-up and not timed. The command row times ``judge-rl grpo`` as a user runs it
(its own process from the files on disk, start to exit: imports, loading and the final save
included) against TRL's whole script, the same steps on both sides. Prints s/step,
completions/s and train tokens/s, the reward curves side by side, then ``RATIO`` lines.

    python benchmarks/bench_grpo.py [--threads 1] [--steps 12] [--hidden 256 --layers 4]
    python benchmarks/bench_grpo.py --embedded --steps 12   # a real run, embedded model
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
TRL_REQ = ["trl==1.16.*"]
# lr 1e-3: at hidden 256, 5e-3 made judge_rl's reward swing (1.0 -> 0.16 -> 1.0: once every group
# scores 1 the only gradient is beta * KL, which Adam scales to a full-size step back towards the
# reference) while TRL's run of the same seed did not; at 1e-3 it climbs smoothly (docs/grpo.md)
PROMPTS_PER_STEP, K, NEW_TOKENS, LR, BETA = 8, 8, 16, 1e-3, 0.04

_PEER_TEMPLATE = r"""
import json, sys, time
import torch
model_dir, prompts_file, threads, steps, out_file = sys.argv[1:6]
torch.set_num_threads(int(threads))
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

tok = AutoTokenizer.from_pretrained(model_dir)
tok.padding_side = "left"
prompts = json.load(open(prompts_file))
ds = Dataset.from_dict({"prompt": prompts})
policy = AutoModelForCausalLM.from_pretrained(model_dir)

def contains_a(completions, **kw):
    return [float("a" in c) for c in completions]

cfg = GRPOConfig(output_dir=out_file + ".dir", per_device_train_batch_size=%(per_step)d,
                 num_generations=%(k)d, gradient_accumulation_steps=1, steps_per_generation=1,
                 num_iterations=1, max_completion_length=%(new)d, temperature=1.0, top_p=1.0,
                 top_k=0, learning_rate=%(lr)g, lr_scheduler_type="constant", warmup_steps=0,
                 beta=%(beta)g, epsilon=0.2, loss_type="dapo", scale_rewards="group",
                 max_steps=int(steps), logging_steps=1, report_to=[], save_strategy="no",
                 use_cpu=True, bf16=False, seed=0, dataloader_num_workers=0,
                 max_grad_norm=1.0, log_completions=False, disable_dropout=True)
marks, cpu, positions = [], [], [0]
def count(module, args, kwargs):
    ids = kwargs.get("input_ids", args[0] if args else None)
    if torch.is_grad_enabled() and ids is not None:
        positions[0] += ids.numel()  # positions the policy trains on (padding included)
policy.model.register_forward_pre_hook(count, with_kwargs=True)
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        marks.append(time.perf_counter())
        cpu.append(time.process_time())
        pos.append(positions[0])
pos = []
trainer = GRPOTrainer(model=policy, reward_funcs=[contains_a], args=cfg, train_dataset=ds,
                      processing_class=tok, callbacks=[Clock()])
t0, c0 = time.perf_counter(), time.process_time()
trainer.train()
import trl
rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
json.dump({"marks": [t0] + marks, "cpu": [c0] + cpu, "pos": [0] + pos, "trl": trl.__version__,
           "rewards": rewards}, open(out_file, "w"))
"""
PEER = _PEER_TEMPLATE % {
    "per_step": PROMPTS_PER_STEP * K,
    "k": K,
    "new": NEW_TOKENS,
    "lr": LR,
    "beta": BETA,
}


def build(root: Path, hidden: int, layers: int) -> tuple[Path, list[str]]:
    from judge_rl.models import save_tiny_model

    policy = save_tiny_model(root / "policy", hidden_size=hidden, num_layers=layers, seed=0)
    prompts = [f"Question {i}: write a word about the number {i * 7 % 23}." for i in range(64)]
    return policy, prompts


def run_ours(policy: Path, prompts: list[str], steps: int, shared_prompt: bool = True) -> dict:
    from _peer import count_train_positions

    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.grpo import GRPOConfig, GRPOTrainer

    cfg = GRPOConfig(
        steps=steps,
        batch_size=PROMPTS_PER_STEP,
        group_size=K,
        epochs=1,
        max_new_tokens=NEW_TOKENS,
        temperature=1.0,
        lr=LR,
        beta=BETA,
        algorithm="grpo",
        loss_agg="token",
        cliprange=0.2,
        chat_template=False,  # TRL tokenises plain-text prompts as they are
        shared_prompt=shared_prompt,
        device="cpu",
        seed=0,
    )
    trainer = GRPOTrainer(
        cfg, load_causal_lm(str(policy)), load_tokenizer(str(policy)), "contains:a", prompts
    )
    positions = count_train_positions(trainer.model.model)
    t0 = time.perf_counter()
    marks, cpu, pos = [t0], [time.process_time()], [0]
    while trainer.step < steps:
        trainer.section.steps.append(trainer.train_step())
        marks.append(time.perf_counter())
        cpu.append(time.process_time())
        pos.append(positions[0])
    st = trainer.section.steps
    return {
        "marks": marks,
        "cpu": cpu,
        "pos": pos,
        "rewards": [s["reward_mean"] for s in st],
        "split": {
            k: statistics.mean(s[k] for s in st[1:])
            for k in ("time_generate", "time_score", "time_train")
        },
    }


def arithmetic_prompts(n: int, seed: int = 0) -> list[dict[str, str]]:
    """One-step sums and differences with their answers (the GSM8K verifier checks the last
    number of the response): easy enough that a 135M model is right some of the time, so groups
    carry a learning signal."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        if rng.random() < 0.5:
            q, ans = f"What is {a} + {b}?", a + b
        else:
            a, b = max(a, b), min(a, b)
            q, ans = f"What is {a} minus {b}?", a - b
        out.append(
            {"prompt_id": f"arith-{i}", "prompt": q + " Answer with just the number.",
             "reference": str(ans)}
        )  # fmt: skip
    return out


def run_embedded(steps: int, threads: int) -> int:
    """One real CPU run of judge_rl's GRPO with the embedded model (SmolLM2-135M-Instruct) and
    the GSM8K verifier; prints the per-step reward curve and group diagnostics."""
    import torch

    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.grpo import GRPOConfig, GRPOTrainer
    from judge_rl.types import PromptItem

    torch.set_num_threads(threads)
    items = [PromptItem(**p) for p in arithmetic_prompts(64)]
    cfg = GRPOConfig(
        steps=steps,
        batch_size=4,
        group_size=4,
        epochs=1,
        max_new_tokens=24,
        temperature=1.0,
        lr=5e-6,
        beta=0.04,
        algorithm="grpo",
        loss_agg="token",
        device="cpu",
        seed=0,
    )
    print(
        f"embedded SmolLM2-135M-Instruct, verifier:gsm8k, {len(items)} one-step arithmetic "
        f"prompts, 4 prompts x K=4 per step, 24 new tokens, lr 5e-6, beta 0.04, {steps} steps, "
        f"{threads} thread(s), load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    tr = GRPOTrainer(cfg, load_causal_lm("embedded"), load_tokenizer("embedded"),
                     "verifier:gsm8k", items)  # fmt: skip
    t0 = time.perf_counter()
    print(f"{'step':>5}{'reward':>8}{'zero-var':>10}{'group std':>11}{'KL':>9}{'compl/s':>9}")
    while tr.step < steps:
        s = tr.train_step()
        tr.section.steps.append(s)
        print(
            f"{int(s['step']):5d}{s['reward_mean']:8.3f}{s['frac_zero_std']:10.2f}"
            f"{s['group_std']:11.3f}{s['kl']:9.4f}{s['completions_per_s']:9.2f}",
            flush=True,
        )
    r = [s["reward_mean"] for s in tr.section.steps]
    n = max(1, min(3, len(r) // 2))
    print(
        f"EMBEDDED grpo reward first {n} steps {statistics.mean(r[:n]):.3f} -> last {n} steps "
        f"{statistics.mean(r[-n:]):.3f}, {time.perf_counter() - t0:.0f} s"
    )
    return 0


def summarise(marks: list[float], cpu: list[float], pos: list[int]) -> dict:
    per = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    per_cpu = [b - a for a, b in zip(cpu, cpu[1:], strict=False)]
    per_pos = [b - a for a, b in zip(pos, pos[1:], strict=False)]
    first = 1 if len(per) > 1 else 0  # the first step warms up
    s, c = statistics.mean(per[first:]), statistics.mean(per_cpu[first:])
    tok = statistics.mean(per_pos[first:])
    n = PROMPTS_PER_STEP * K
    return {"s_per_step": s, "completions_per_s": n / s, "cpu_per_step": c,
            "completions_per_cpu_s": n / c, "steps": len(per), "train_tokens": tok,
            "tokens_per_s": tok / s}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=256, help="policy width [256]")
    ap.add_argument("--layers", type=int, default=4, help="policy layers [4]")
    ap.add_argument(
        "--embedded",
        action="store_true",
        help="instead: one judge_rl GRPO run with the embedded model and the GSM8K verifier",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    if args.embedded:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return run_embedded(args.steps, args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from _peer import clock, peer_python, run_command, run_peer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    py = peer_python("trl", TRL_REQ, torch=True)
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        root = Path(tmp)
        policy, prompts = build(root, args.hidden, args.layers)
        (root / "prompts.json").write_text(json.dumps(prompts))
        (root / "prompts.jsonl").write_text(
            "".join(json.dumps({"prompt": p}) + "\n" for p in prompts)
        )
        (root / "peer.py").write_text(PEER)
        print(
            f"tiny Llama (hidden {args.hidden}, {args.layers} layers), {len(prompts)} prompts, "
            f"{PROMPTS_PER_STEP} prompts x K={K} per step, {NEW_TOKENS} new tokens, beta {BETA}, "
            f"lr {LR:g}, {args.steps} steps, {args.threads} thread(s), load average before: "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        # TRL first, then ours: neither side always gets the warmer machine.
        t_peer = clock()
        run_peer(py, str(root / "peer.py"), str(policy), str(root / "prompts.json"),
                 str(args.threads), str(args.steps), str(root / "trl.json"))  # fmt: skip
        peer_whole = clock(t_peer)
        trl = json.loads((root / "trl.json").read_text())
        cli = run_command(
            [
                "grpo",
                "--policy",
                str(policy),
                "--reward",
                "contains:a",
                "--prompts",
                str(root / "prompts.jsonl"),
                "--output",
                str(root / "cli-out"),
                "--steps",
                str(args.steps),
                "--batch-size",
                str(PROMPTS_PER_STEP),
                "--group-size",
                str(K),
                "--epochs",
                "1",
                "--max-new-tokens",
                str(NEW_TOKENS),
                "--temperature",
                "1.0",
                "--lr",
                str(LR),
                "--beta",
                str(BETA),
                "--loss-agg",
                "token",
                "--cliprange",
                "0.2",
                "--no-chat-template",
                "--device",
                "cpu",
                "--seed",
                "0",
                "--threads",
                str(args.threads),
            ]  # fmt: skip
        )
        ours = run_ours(policy, prompts, args.steps)
        same = run_ours(policy, prompts, args.steps, shared_prompt=False)
    tname = "trl " + trl["trl"]
    rows = {
        tname: summarise(trl["marks"], trl["cpu"], trl["pos"]),
        "judge_rl": summarise(ours["marks"], ours["cpu"], ours["pos"]),
        "judge_rl (no shared)": summarise(same["marks"], same["cpu"], same["pos"]),
    }
    print(f"load average after: {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)")
    print()
    print(
        f"{'tool':22}{'s/step':>9}{'completions/s':>15}{'CPU s/step':>12}{'per CPU s':>11}"
        f"{'train tok/step':>16}{'tokens/s':>10}"
    )
    for name, r in rows.items():
        print(
            f"{name:22}{r['s_per_step']:9.3f}{r['completions_per_s']:15.1f}"
            f"{r['cpu_per_step']:12.3f}{r['completions_per_cpu_s']:11.1f}"
            f"{r['train_tokens']:16.0f}{r['tokens_per_s']:10.0f}"
        )
    sp = ours["split"]
    print(
        f"judge_rl time split per step: generate {sp['time_generate']:.3f} s, score "
        f"{sp['time_score']:.3f} s, train {sp['time_train']:.3f} s"
    )
    print(
        f"end to end, process start to exit, {args.steps} steps (imports, model loading and "
        f"saving included): `judge-rl grpo` {cli[0]:.1f} s wall, {cli[1]:.1f} CPU s; TRL's "
        f"script {peer_whole[0]:.1f} s wall, {peer_whole[1]:.1f} CPU s"
    )
    print()
    print("reward curve (mean reward per step; same model, prompts, K, budget, reward)")
    print(f"{'step':>5}{'judge_rl':>10}{tname:>12}")
    for i in range(max(len(ours["rewards"]), len(trl["rewards"]))):
        a = ours["rewards"][i] if i < len(ours["rewards"]) else float("nan")
        b = trl["rewards"][i] if i < len(trl["rewards"]) else float("nan")
        print(f"{i + 1:5d}{a:10.3f}{b:12.3f}")
    t = rows[tname]
    n = min(3, len(ours["rewards"]), len(trl["rewards"]))
    print(
        f"last {n} steps mean reward: judge_rl {statistics.mean(ours['rewards'][-n:]):.3f}, "
        f"{tname} {statistics.mean(trl['rewards'][-n:]):.3f}"
    )
    where = f"hidden {args.hidden} x {args.layers} layers, CPU, {args.threads} thread(s)"
    print(
        f"RATIO grpo_command judge-rl grpo/trl script = {peer_whole[0] / cli[0]:.2f}x wall, "
        f"{peer_whole[1] / cli[1]:.2f}x CPU time (the whole process each, {args.steps} steps; "
        f"{where})"
    )
    for name in ("judge_rl", "judge_rl (no shared)"):
        o = rows[name]
        print(
            f"RATIO grpo_completions_per_s {name}/trl = "
            f"{o['completions_per_s'] / t['completions_per_s']:.2f}x wall, "
            f"{o['completions_per_cpu_s'] / t['completions_per_cpu_s']:.2f}x CPU time "
            f"({o['completions_per_s']:.1f} vs {t['completions_per_s']:.1f} completions/s; train "
            f"tokens per step {o['train_tokens']:.0f} vs {t['train_tokens']:.0f}; {where})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
