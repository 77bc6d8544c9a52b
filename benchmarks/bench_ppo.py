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
update is warm-up and not timed. Prints wall and CPU s/update, samples/s, and the token positions
the policy trained on per update (4 epochs x B x (P + R), padding included; the same on both
sides when the token work is the same) and per second, then ``RATIO`` lines (wall and CPU time).
The command row times ``judge-rl ppo`` as a user runs it (``python -m judge_rl ppo`` from the
files on disk, its own process, start to exit: imports, loading and the final save included)
against TRL's whole script (its process, start to exit), the same updates on both sides.

Part 2 (``--part memory``): the embedded model (SmolLM2-135M) on CPU, each configuration in a
fresh process (peak RSS is a process's high-water mark): default (fp32, value head), gradient
checkpointing, LoRA r=8 (reference = disabled adapter, no copy). Batch 8, 24 new tokens, one
PPO epoch; 2 steps, the second timed. Prints one table: peak RSS and samples/s.

Part 3 (``--part demo-memory``, not in ``all``): the PPO stage of evals/demo.yaml (LoRA r=8,
batch 16, mini-batch 16, 12 new tokens, value head) as it is, with ``micro_batch_size`` 8, and
with gradient checkpointing; peak RSS per fresh process, the bytes the update's forward saves for
the backward (``saved MB``), CPU and system s per step, step-1 KL. Set
``MALLOC_MMAP_THRESHOLD_`` in the environment to see glibc's heap fragmentation's share.

Part 4 (``--part parts``, not in ``all``): the rollout through ``generate`` vs the lean sampling
loop, and 4 AdamW steps default vs fused, on part 1's policy (CPU s, interleaved repetitions).
Part 5 (``--part profile``, not in ``all``): one judge_rl update of part 1 split by phase (CPU s),
then the torch profiler's top operators.
Part 6 (``--part demo-rollout``, not in ``all``): the rollouts of evals/demo.yaml's PPO stage (its
``ppo`` settings read from the file: LoRA r=8 on the embedded SmolLM2-135M, batch 16, the new
tokens and temperature it sets; its train prompts), ``generate`` vs the lean sampling loop,
interleaved; wall and CPU s per rollout, whether the tokens are the same, the prefill's share
and the top operators of one lean rollout (torch profiler).
Part 7 (``--part grpo-rollout``, not in ``all``): GRPO's shared-prefill group rollout
(``GRPOTrainer._group_rollout``) on benchmarks/bench_grpo.py's policy and settings (hidden 256 x 4
layers, 8 prompts x K=8, 16 new tokens), ``generate`` continuing from the repeated cache vs the
lean loop (``sample(group=K)``), interleaved; CPU s per rollout and whether the tokens are the same.
Part 8 (``--part grpo-lora-rollout``, not in ``all``): the same with a LoRA policy (r=8, ``lora_B``
set to small random values): the plain rollout on the K-times repeated prompts (a LoRA policy's
rollout before the lean loop's ``last_in_prefill`` mode) vs the group rollout (each prompt
prefilled once), both through the lean loop, interleaved; CPU s and whether the tokens are the same.
Part 9 (``--part grpo-lora-step``, not in ``all``): whole GRPO steps with that LoRA policy and
benchmarks/bench_grpo.py's settings (one update per batch, beta 0.04: the reference pass under
``disable_adapter()`` and the training forward+backward), two trainers from the same weights, step
by step interleaved: the log-probability passes on the K-times repeated prompts (``plain``, what a
LoRA policy ran before) vs each prompt once per group (``shared``); both roll out through the
group rollout. CPU s per step and whether the two sampled the same tokens. With
``--gradient-checkpointing`` both trainers checkpoint their layers (the shared side recomputes the
prompts once per group, the plain side on every repeated row); the layer recomputations counted
in the backward are printed.

    python benchmarks/bench_ppo.py [--part trl|memory|demo-memory|parts|profile|demo-rollout|
        grpo-rollout|grpo-lora-rollout|grpo-lora-step|all] [--threads 1] [--gradient-checkpointing]
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
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRL_REQ = ["trl==1.12.0"]
BATCH, NEW_TOKENS, EPOCHS, KL, LR = 16, 32, 4, 0.05, 1e-5
LORA_R = 8  # --part grpo-lora-rollout (evals/demo.yaml's rank)

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
marks, cpu, positions = [], [], [0]
def count(module, args, kwargs):
    ids = kwargs.get("input_ids", args[0] if args else None)
    if torch.is_grad_enabled() and ids is not None:
        positions[0] += ids.numel()  # positions the policy trains on (padding included)
policy.model.register_forward_pre_hook(count, with_kwargs=True)
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        marks.append(time.perf_counter())
        cpu.append((time.process_time(), positions[0]))
trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=ref, reward_model=rm,
                     train_dataset=ds, value_model=value, callbacks=[Clock()])
t0 = time.perf_counter()
cpu0 = (time.process_time(), 0)
trainer.train()
import trl
json.dump({"marks": [t0] + marks, "cpu": [cpu0] + cpu, "trl": trl.__version__,
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
    import torch

    positions = [0]

    def count(module, args, kwargs):  # type: ignore[no-untyped-def]
        ids = kwargs.get("input_ids", args[0] if args else None)
        if torch.is_grad_enabled() and ids is not None:
            positions[0] += ids.numel()  # positions the policy trains on (padding included)

    trainer.policy.model.register_forward_pre_hook(count, with_kwargs=True)
    t0 = time.perf_counter()
    marks = [t0]
    cpu = [(time.process_time(), 0)]
    while trainer.step < updates:
        trainer.section.steps.append(trainer.train_step())
        marks.append(time.perf_counter())
        cpu.append((time.process_time(), positions[0]))
    steps = trainer.section.steps
    return {
        "tokens": [s["response_length"] * BATCH for s in steps],
        "marks": marks,
        "cpu": cpu,
        "scores": [s["reward_mean"] for s in steps],
        "split": {
            k: statistics.mean(s[k] for s in steps[1:])
            for k in ("time_generate", "time_score", "time_train")
        },
    }


def _clock(since: tuple[float, float] | None = None) -> tuple[float, float]:
    """(wall, CPU of finished child processes) now, or elapsed since ``since``."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    now = (time.perf_counter(), ru.ru_utime + ru.ru_stime)
    return now if since is None else (now[0] - since[0], now[1] - since[1])


def run_cli(
    root: Path, policy: Path, rm: Path, prompts: list[str], updates: int, threads: int
) -> tuple[float, float]:
    """``judge-rl ppo`` as a user runs it, in its own process, from the files on disk, with
    part 1's settings (value head, the default): (wall, CPU) seconds, start to exit."""
    import subprocess

    pfile = root / "prompts.jsonl"
    pfile.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    cmd = [sys.executable, "-m", "judge_rl", "ppo", "--policy", str(policy), "--reward",
           f"rm:{rm}", "--prompts", str(pfile), "--output", str(root / "cli-out"),
           "--steps", str(updates), "--batch-size", str(BATCH), "--mini-batch-size", str(BATCH),
           "--ppo-epochs", str(EPOCHS), "--max-new-tokens", str(NEW_TOKENS), "--temperature",
           "1.0", "--kl-coef", str(KL), "--lr", str(LR), "--device", "cpu", "--seed", "0",
           "--threads", str(threads)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = _clock()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    took = _clock(t0)
    if r.returncode != 0:
        raise RuntimeError(f"judge-rl ppo failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return took


def summarise(marks: list[float], cpu: list[tuple[float, int]]) -> dict:
    """Per update (the first one warms up and is not counted): wall and CPU seconds, samples/s,
    and the token positions the policy trained on (4 epochs x B x (P + R), padding included:
    the same on both sides when the token work is the same) per second."""
    per = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    cpu_per = [b[0] - a[0] for a, b in zip(cpu, cpu[1:], strict=False)]
    pos_per = [b[1] - a[1] for a, b in zip(cpu, cpu[1:], strict=False)]
    k = 1 if len(per) > 1 else 0  # the first update warms up
    s = statistics.mean(per[k:])
    c = statistics.mean(cpu_per[k:])
    pos = statistics.mean(pos_per[k:])
    return {
        "s_per_update": s,
        "cpu_per_update": c,
        "samples_per_s": BATCH / s,
        "samples_per_cpu_s": BATCH / c,
        "positions_per_update": pos,
        "tokens_per_s": pos / s,
        "updates": len(per),
    }


# -- part 2: memory per configuration (one fresh process each) ----------------------------------

MEMORY_CONFIGS = {
    "default": {},
    "grad-ckpt": {"gradient_checkpointing": True},
    "lora-r8": {"lora_r": 8},
}
MEM_BATCH, MEM_TOKENS = 8, 24
# Part 3 (``--part demo-memory``): the PPO stage of evals/demo.yaml (LoRA r=8, batch 16, one
# mini-batch of 16, 12 new tokens at temperature 0.7, one epoch, value head, lr 1e-3, KL 0.01),
# as it is and with the two memory settings.
DEMO_PPO = {
    "lora_r": 8,
    "batch_size": 16,
    "mini_batch_size": 16,
    "max_new_tokens": 12,
    "temperature": 0.7,
    "ppo_epochs": 1,
    "lr": 1e-3,
    "kl_coef": 0.01,
    "value_model": "head",
}
DEMO_MEMORY_CONFIGS = {
    "demo": {},
    "demo micro-batch 8": {"micro_batch_size": 8},
    "demo grad-ckpt": {"gradient_checkpointing": True},
}


def one_memory_config(name: str, threads: int) -> dict:
    """Run 2 PPO steps of the embedded model in this process; returns samples/s and peak RSS
    (the process's high-water mark: what ``/usr/bin/time -v`` reports as maximum resident set)."""
    import resource

    import torch

    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    torch.set_num_threads(threads)
    if name in DEMO_MEMORY_CONFIGS:
        settings = {**DEMO_PPO, **DEMO_MEMORY_CONFIGS[name]}
        prompts = [
            f"What is {i % 9 + 1} + {i * 7 % 9 + 1}? Reply with only the number." for i in range(40)
        ]
    else:
        settings = {
            "batch_size": MEM_BATCH,
            "mini_batch_size": MEM_BATCH,
            "ppo_epochs": 1,
            "max_new_tokens": MEM_TOKENS,
            **MEMORY_CONFIGS[name],
        }
        prompts = [f"Write one short sentence about the number {i}." for i in range(16)]
    cfg = PPOConfig(
        policy="embedded", reward="contains:a", steps=2, device="cpu", seed=0, **settings
    )
    batch = cfg.batch_size
    trainer = PPOTrainer(cfg, prompts=prompts)
    # Bytes the update's forward keeps for the backward (unique non-parameter storages).
    saved: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved[st.data_ptr()] = st.nbytes()
        return t

    joint = trainer._joint

    def counted_joint(*a: object, **k: object) -> tuple[torch.Tensor, ...]:
        if not torch.is_grad_enabled():
            return joint(*a, **k)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            return joint(*a, **k)

    trainer._joint = counted_joint  # type: ignore[method-assign]
    marks = [time.perf_counter()]
    cpu = [time.process_time()]
    sys_t = [resource.getrusage(resource.RUSAGE_SELF).ru_stime]
    tokens = []
    kl = []
    while trainer.step < cfg.steps:
        saved.clear()
        st = trainer.train_step()
        trainer.section.steps.append(st)
        tokens.append(st["response_length"] * batch)
        kl.append(st["kl"])
        marks.append(time.perf_counter())
        cpu.append(time.process_time())
        sys_t.append(resource.getrusage(resource.RUSAGE_SELF).ru_stime)
    dt = marks[-1] - marks[-2]
    trainable = sum(p.numel() for p in trainer.unwrapped.parameters() if p.requires_grad)
    return {
        "config": name,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "samples_per_s": batch / dt,
        "cpu_s_per_step": cpu[-1] - cpu[-2],
        "sys_s_per_step": sys_t[-1] - sys_t[-2],
        "saved_mb": sum(saved.values()) / 2**20,
        "tokens_per_s": tokens[-1] / dt,
        "trainable_m": trainable / 1e6,
        "kl_step1": kl[0],
    }


def memory_table(threads: int, names: list[str]) -> list[dict]:
    import subprocess

    rows = []
    for name in names:
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


def print_memory(rows: list[dict], threads: int, demo: bool = False) -> None:
    what = (
        "the PPO stage of evals/demo.yaml (LoRA r=8, batch 16, mini-batch 16, 12 new tokens)"
        if demo
        else f"batch {MEM_BATCH}, {MEM_TOKENS} new tokens"
    )
    print(
        f"embedded SmolLM2-135M, CPU, {threads} thread(s), {what}, 1 PPO epoch, second step "
        f"timed; load average {os.getloadavg()[0]:.1f}"
    )
    env = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    if env:
        print(f"MALLOC_MMAP_THRESHOLD_={env} (glibc: every allocation above it is its own mmap)")
    print(
        f"{'config':22}{'peak RSS MB':>13}{'saved MB':>10}{'samples/s':>11}{'CPU s/step':>12}"
        f"{'sys s/step':>12}{'tokens/s':>10}{'trainable M':>13}{'step-1 KL':>11}"
    )
    for r in rows:
        print(
            f"{r['config']:22}{r['peak_rss_mb']:13.0f}{r['saved_mb']:10.0f}"
            f"{r['samples_per_s']:11.2f}{r['cpu_s_per_step']:12.1f}{r['sys_s_per_step']:12.1f}"
            f"{r['tokens_per_s']:10.1f}{r['trainable_m']:13.2f}{r['kl_step1']:11.3g}"
        )


# -- part 4: the two pieces of this round, each against what it replaced -----------------------


def generate_vs_lean(
    rounds: int, rollout: Any, sides: dict[str, tuple[str, Any]] | None = None
) -> tuple[dict, dict, bool, list]:
    """``rollout(r)`` with ``generate`` (``JUDGE_RL_LEAN_DECODE=0``) and with the lean loop in
    turn, ``rounds`` times, the same seed per round on both sides; the first round warms up.
    Returns wall and CPU seconds per side, whether every round sampled the same tokens, and the
    second side's batches. ``sides`` ({name: (JUDGE_RL_LEAN_DECODE, rollout)}, two of them)
    compares two other rollouts the same way."""
    import torch

    sides = sides or {"generate": ("0", rollout), "lean loop": ("1", rollout)}
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    same, batches = True, []
    for r in range(rounds):
        got = []
        for name, (flag, fn) in sides.items():
            os.environ["JUDGE_RL_LEAN_DECODE"] = flag
            torch.manual_seed(r)
            t, c = time.perf_counter(), time.process_time()
            b = fn(r)
            if r:
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
            got.append(b.response_ids)
        same = same and got[0].shape == got[1].shape and bool(torch.equal(got[0], got[1]))
        batches.append(b)
    os.environ.pop("JUDGE_RL_LEAN_DECODE", None)
    return wall, cpu, same, batches


def print_rollouts(wall: dict, cpu: dict, digits: int, what: str = "rollout") -> None:
    """The table of :func:`generate_vs_lean`'s timings: min and median, wall and CPU."""
    print(f"{what:14}{'wall min':>10}{'wall med':>10}{'CPU min':>10}{'CPU med':>10}")
    for name in wall:
        w, c = wall[name], cpu[name]
        cells = (min(w), statistics.median(w), min(c), statistics.median(c))
        print(f"{name:14}" + "".join(f"{v:10.{digits}f}" for v in cells))


def parts_ablation(args: argparse.Namespace, reps: int = 8) -> None:
    """``--part parts``: on part 1's policy (same width, same 16 prompts of the first rollout),
    one rollout of 32 new tokens through ``generate`` vs the lean sampling loop
    (judge_rl/train/_lean_decode.py; ``JUDGE_RL_LEAN_DECODE=0`` is generate), interleaved, and
    one AdamW step over the policy's parameters, default (single-tensor) vs ``fused=True``.
    CPU seconds, minimum and median over ``reps`` interleaved repetitions."""
    import copy

    import torch

    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.rollout import HFRolloutEngine, encode_prompt, left_pad

    with tempfile.TemporaryDirectory(prefix="bench-ppo-parts-") as tmp:
        policy, _, prompts = build_models(Path(tmp), args.hidden, args.layers)
        model, tok = load_causal_lm(str(policy)), load_tokenizer(str(policy))
    q, qm = left_pad([encode_prompt(tok, p) for p in prompts[:BATCH]], int(tok.pad_token_id))
    eng = HFRolloutEngine(model, tok, max_new_tokens=NEW_TOKENS, temperature=1.0)
    _, times, same, _ = generate_vs_lean(reps + 1, lambda r: eng.generate(q, qm))
    adam: dict[str, list[float]] = {"AdamW": [], "AdamW fused": []}
    opts = {}
    for name, kw in (("AdamW", {}), ("AdamW fused", {"fused": True})):
        m = copy.deepcopy(model)
        params = list(m.parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        opts[name] = torch.optim.AdamW(params, lr=LR, eps=1e-5, **kw)
        opts[name].step()  # state allocated
    for _ in range(reps):
        for name, opt in opts.items():
            c = time.process_time()
            for _ in range(4):  # 4 epochs x 1 mini-batch: the optimiser steps of one update
                opt.step()
            adam[name].append(time.process_time() - c)
    print(
        f"policy hidden {args.hidden} x {args.layers} layers, {args.threads} thread(s), CPU s, "
        f"{reps} interleaved repetitions, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'piece':44}{'min':>8}{'median':>8}")
    for label, d in (
        (f"rollout {BATCH} x {NEW_TOKENS} tokens: ", times),
        ("4 optimiser steps (one update): ", adam),
    ):
        for name, v in d.items():
            print(f"{label + name:44}{min(v):8.3f}{statistics.median(v):8.3f}")
    print(f"lean loop sampled the same tokens as generate (same seeds): {same}")


def demo_rollout(args: argparse.Namespace, reps: int = 4) -> None:
    """``--part demo-rollout``: the demo's PPO rollouts (see the module docstring), ``generate``
    (``JUDGE_RL_LEAN_DECODE=0``) vs the lean loop, interleaved, each batch the trainer's next
    16 prompts; the first round warms up. Same seed per round on both sides."""
    import torch
    import yaml

    from judge_rl.pipeline.task import PromptsConfig, make_prompts
    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    spec = yaml.safe_load((ROOT / "evals" / "demo.yaml").read_text())
    stage = spec["stages"]["ppo"]["config"]
    settings = dict(stage["ppo"], steps=1, save_every=0)
    prompts = make_prompts(PromptsConfig(**spec["stages"]["prompts"]["config"])).train
    cfg = PPOConfig(policy=stage["policy"], reward="contains:a", device="cpu",
                    seed=int(spec.get("seed", 0)), **settings)  # fmt: skip
    trainer = PPOTrainer(cfg, prompts=prompts)
    from judge_rl.train._lean_decode import lean_decoder

    was = trainer.policy.training
    trainer.policy.eval()  # as the engine puts it for sampling
    takes = lean_decoder(trainer.policy, top_k=cfg.top_k, top_p=cfg.top_p) is not None
    trainer.policy.train(was)
    batches = []
    for _ in range(reps + 1):
        idx = trainer._next_indices()
        batches.append(([trainer.items[i] for i in idx], [trainer._encoded[i] for i in idx]))
    wall, cpu, same, lean = generate_vs_lean(reps + 1, lambda r: trainer._rollout(*batches[r]))
    tokens = [int(b.response_mask.sum()) for b in lean]
    print(
        f"evals/demo.yaml's PPO rollouts: embedded SmolLM2-135M, LoRA r={cfg.lora_r}, batch "
        f"{cfg.batch_size}, {cfg.max_new_tokens} new tokens, temperature {cfg.temperature}, "
        f"{args.threads} thread(s), {reps} interleaved repetitions after one warm-up, load "
        f"average {os.getloadavg()[0]:.1f}; lean loop taken: {takes}"
    )
    print_rollouts(wall, cpu, 2)
    ratio = statistics.median(wall["generate"]) / statistics.median(wall["lean loop"])
    print(f"response tokens per rollout: {statistics.mean(tokens[1:]):.0f}; generate / lean "
          f"(median wall): {ratio:.2f}x")  # fmt: skip
    print(f"lean loop sampled the same tokens as generate (same seeds): {same}")
    # where a lean rollout's CPU goes: its prefill alone (a 1-token rollout), then the profiler
    items, enc = batches[0]
    pre = []
    for _ in range(3):
        c = time.process_time()
        trainer._rollout(items, enc, max_new_tokens=1)
        pre.append(time.process_time() - c)
    full = statistics.median(cpu["lean loop"])
    print(f"prefill (a 1-new-token rollout): {statistics.median(pre):.2f} CPU s, "
          f"{statistics.median(pre) / full:.0%} of a lean rollout")  # fmt: skip
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer._rollout(items, enc)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    print("lean rollout, top operators by self CPU: " + ", ".join(
        f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in ops[:5]))  # fmt: skip


def grpo_rollout(args: argparse.Namespace, reps: int = 8) -> None:
    """``--part grpo-rollout``: see the module docstring; the first round warms up."""
    from bench_grpo import NEW_TOKENS as G_NEW
    from bench_grpo import PROMPTS_PER_STEP as G
    from bench_grpo import K as GK
    from bench_grpo import build as build_grpo

    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.grpo import GRPOConfig, GRPOTrainer

    with tempfile.TemporaryDirectory(prefix="bench-ppo-grpo-") as tmp:
        policy, prompts = build_grpo(Path(tmp), args.hidden, args.layers)
        model, tok = load_causal_lm(str(policy)), load_tokenizer(str(policy))
    cfg = GRPOConfig(steps=1, batch_size=G, group_size=GK, max_new_tokens=G_NEW,
                     temperature=1.0, chat_template=False, device="cpu", seed=0)  # fmt: skip
    trainer = GRPOTrainer(cfg, model, tok, "contains:a", prompts)

    def rollout(r: int) -> Any:
        start = (r * G) % len(prompts)
        idx = list(range(start, start + G))
        items = [trainer.items[i] for i in idx for _ in range(GK)]
        return trainer._group_rollout(items, [trainer._encoded[i] for i in idx], GK)

    wall, cpu, same, _ = generate_vs_lean(reps + 1, rollout)
    print(
        f"GRPO group rollout ({G} prompts x K={GK}, {G_NEW} new tokens) on a policy of hidden "
        f"{args.hidden} x {args.layers} layers, {args.threads} thread(s), {reps} interleaved "
        f"repetitions, load average {os.getloadavg()[0]:.1f}"
    )
    print_rollouts(wall, cpu, 3)
    ratio = statistics.median(cpu["generate"]) / statistics.median(cpu["lean loop"])
    print(f"generate / lean (median CPU): {ratio:.2f}x")
    print(f"lean loop sampled the same tokens as generate (same seeds): {same}")


def grpo_lora_trainer(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """A GRPO trainer with benchmarks/bench_grpo.py's policy (``--hidden`` x ``--layers``) and
    settings, LoRA r=LORA_R, ``lora_B`` set to small random values (as after some training;
    peft starts them at zero); and its prompts. The same weights and adapters at every call."""
    import torch
    from bench_grpo import BETA, LR
    from bench_grpo import NEW_TOKENS as G_NEW
    from bench_grpo import PROMPTS_PER_STEP as G
    from bench_grpo import K as GK
    from bench_grpo import build as build_grpo

    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.grpo import GRPOConfig, GRPOTrainer

    with tempfile.TemporaryDirectory(prefix="bench-ppo-grpo-lora-") as tmp:
        policy, prompts = build_grpo(Path(tmp), args.hidden, args.layers)
        model, tok = load_causal_lm(str(policy)), load_tokenizer(str(policy))
    cfg = GRPOConfig(steps=1, batch_size=G, group_size=GK, max_new_tokens=G_NEW, lora_r=LORA_R,
                     epochs=1, lr=LR, beta=BETA, algorithm="grpo", loss_agg="token",
                     cliprange=0.2, temperature=1.0, chat_template=False, device="cpu",
                     seed=0, gradient_checkpointing=args.gradient_checkpointing)  # fmt: skip
    trainer = GRPOTrainer(cfg, model, tok, "contains:a", prompts)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in trainer.policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return trainer, prompts


def grpo_lora_rollout(args: argparse.Namespace, reps: int = 8) -> None:
    """``--part grpo-lora-rollout``: see the module docstring; the first round warms up."""
    from bench_grpo import NEW_TOKENS as G_NEW
    from bench_grpo import PROMPTS_PER_STEP as G
    from bench_grpo import K as GK

    trainer, prompts = grpo_lora_trainer(args)

    def batch(r: int) -> tuple[list, list]:
        start = (r * G) % len(prompts)
        idx = list(range(start, start + G))
        items = [trainer.items[i] for i in idx for _ in range(GK)]
        return items, [trainer._encoded[i] for i in idx]

    def plain(r: int) -> Any:
        items, enc = batch(r)
        return trainer._rollout(items, [e for e in enc for _ in range(GK)])

    def group(r: int) -> Any:
        return trainer._group_rollout(*batch(r), GK)

    sides = {"plain": ("1", plain), "group": ("1", group)}
    wall, cpu, same, _ = generate_vs_lean(reps + 1, None, sides)
    print(
        f"GRPO rollout of a LoRA policy (r={LORA_R}; {G} prompts x K={GK}, {G_NEW} new tokens) on "
        f"a policy of hidden {args.hidden} x {args.layers} layers, {args.threads} thread(s), "
        f"{reps} interleaved repetitions, load average {os.getloadavg()[0]:.1f}; plain = the "
        "prompts repeated K times (before), group = each prompt prefilled once"
    )
    print_rollouts(wall, cpu, 3)
    ratio = statistics.median(cpu["plain"]) / statistics.median(cpu["group"])
    print(f"plain / group (median CPU): {ratio:.2f}x")
    print(f"the group rollout sampled the same tokens as the plain one (same seeds): {same}")


def backward_calls(policy: Any) -> dict[str, int]:
    """A counter of the calls of the first decoder layer's MLP made inside a backward (a
    checkpointed layer's forward re-runs there); filled as the policy trains."""
    import torch

    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    mlp = base.model.layers[0].mlp
    real, n = mlp.forward, {"n": 0}

    def forward(*a: Any, **k: Any) -> Any:
        n["n"] += torch._C._current_graph_task_id() != -1
        return real(*a, **k)

    mlp.forward = forward
    return n


def grpo_lora_step(args: argparse.Namespace, reps: int = 8) -> None:
    """``--part grpo-lora-step``: see the module docstring; the first round warms up."""
    from bench_grpo import NEW_TOKENS as G_NEW
    from bench_grpo import PROMPTS_PER_STEP as G
    from bench_grpo import K as GK

    trainers = {"plain": grpo_lora_trainer(args)[0], "shared": grpo_lora_trainer(args)[0]}
    trainers["plain"]._shared = False  # the log-prob passes a LoRA policy ran before
    split: dict[str, list[tuple[float, float]]] = {name: [] for name in trainers}

    def stepper(name: str) -> Any:
        def step(r: int) -> Any:
            st = trainers[name].train_step()
            if r:
                split[name].append((st["time_generate"], st["time_train"]))
            return trainers[name]._last_batch

        return step

    sides = {name: ("1", stepper(name)) for name in trainers}
    recomputed = {name: backward_calls(tr.policy) for name, tr in trainers.items()}
    wall, cpu, same, _ = generate_vs_lean(reps + 1, None, sides)
    shared = trainers["shared"]._shared
    ckpt = ", gradient checkpointing" if args.gradient_checkpointing else ""
    print(
        f"GRPO steps of a LoRA policy (r={LORA_R}; {G} prompts x K={GK}, {G_NEW} new tokens, "
        f"beta {trainers['plain'].config.beta}, one update per batch{ckpt}) on a policy of hidden "
        f"{args.hidden} x {args.layers} layers, {args.threads} thread(s), {reps} interleaved "
        f"steps per side, load average {os.getloadavg()[0]:.1f}; plain = log-prob passes on the "
        f"prompts repeated K times (before), shared = each prompt once per group (in use: {shared})"
    )
    print(
        "layer 0 forwards recomputed in the backward per step (checkpointing at work when > 0): "
        + ", ".join(f"{k} {v['n'] / (reps + 1):g}" for k, v in recomputed.items())
    )
    print_rollouts(wall, cpu, 3, what="step")
    for name, rows in split.items():
        gen, train = (statistics.median(v) for v in zip(*rows, strict=True))
        print(
            f"{name}: median wall s/step generate {gen:.3f}, log-prob passes + update {train:.3f}"
        )
    ratio = statistics.median(cpu["plain"]) / statistics.median(cpu["shared"])
    print(f"plain / shared (median CPU per step): {ratio:.2f}x")
    print(f"both sides sampled the same tokens at every step (same seeds): {same}")


def profile_part(args: argparse.Namespace, updates: int = 3) -> None:
    """``--part profile``: where one judge_rl update of part 1 (default layout) spends its CPU
    time: each phase's CPU seconds per update (``updates`` timed after one warm-up), system time
    and minor page faults per update, then the torch profiler's top operators for one update."""
    import functools
    import resource

    from torch.profiler import ProfilerActivity, profile

    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    with tempfile.TemporaryDirectory(prefix="bench-ppo-prof-") as tmp:
        policy, rm, prompts = build_models(Path(tmp), args.hidden, args.layers)
        cfg = PPOConfig(steps=updates + 2, batch_size=BATCH, mini_batch_size=BATCH,
                        ppo_epochs=EPOCHS, max_new_tokens=NEW_TOKENS, temperature=1.0,
                        kl_coef=KL, lr=LR, value_model="head", device="cpu", seed=0)  # fmt: skip
        tr = PPOTrainer(
            cfg, load_causal_lm(str(policy)), load_tokenizer(str(policy)), f"rm:{rm}", prompts
        )
        spent: dict[str, float] = {}

        def wrap(obj: object, name: str, label: str) -> None:
            f = getattr(obj, name)

            @functools.wraps(f)
            def timed(*a: object, **k: object) -> object:
                c = time.process_time()
                try:
                    return f(*a, **k)
                finally:
                    spent[label] = spent.get(label, 0.0) + time.process_time() - c

            setattr(obj, name, timed)

        for obj, name, label in (
            (tr, "_rollout", "rollout"),
            (tr, "_score", "reward"),
            (tr, "_ref_logprobs", "reference forward"),
            (tr, "_joint", "training forwards"),
            (tr.accelerator, "backward", "backwards"),
            (tr.accelerator, "clip_grad_norm_", "gradient clipping"),
            (tr.optimizer, "step", "optimiser steps"),
        ):
            wrap(obj, name, label)
        tr.section.steps.append(tr.train_step())  # warm-up
        spent.clear()
        ru0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        for _ in range(updates):
            tr.section.steps.append(tr.train_step())
        ru1, total = resource.getrusage(resource.RUSAGE_SELF), time.process_time() - c0
        print(
            f"judge_rl, hidden {args.hidden} x {args.layers} layers, {args.threads} thread(s), "
            f"CPU s per update over {updates} updates, load average {os.getloadavg()[0]:.1f}"
        )
        for label, v in spent.items():
            print(f"  {label:22}{v / updates:8.3f}")
        rest = total - sum(spent.values())
        print(f"  {'other':22}{rest / updates:8.3f}\n  {'total':22}{total / updates:8.3f}")
        print(
            f"  system time {(ru1.ru_stime - ru0.ru_stime) / updates:.3f} s, minor page faults "
            f"{(ru1.ru_minflt - ru0.ru_minflt) / updates:.0f} per update"
        )
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            tr.section.steps.append(tr.train_step())
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


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
        t_peer = _clock()
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
        peer_whole = _clock(t_peer)
        trl = json.loads((root / "trl.json").read_text())
        cli = run_cli(root, policy, rm, prompts, args.updates, args.threads)
        ours = run_ours(policy, rm, prompts, args.updates, "head")
        ours_rm = run_ours(policy, rm, prompts, args.updates, "rm")
    rows = {
        "trl " + trl["trl"]: summarise(trl["marks"], trl["cpu"]),
        "judge_rl": summarise(ours["marks"], ours["cpu"]),
        "judge_rl (rm value)": summarise(ours_rm["marks"], ours_rm["cpu"]),
    }
    print(f"load average after: {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)")
    print()
    print(
        f"{'tool':22}{'s/update':>10}{'CPU s/upd':>10}{'samples/s':>11}{'train tok/upd':>15}"
        f"{'tokens/s':>10}{'updates':>9}"
    )
    for name, r in rows.items():
        print(
            f"{name:22}{r['s_per_update']:10.3f}{r['cpu_per_update']:10.3f}"
            f"{r['samples_per_s']:11.2f}{r['positions_per_update']:15.0f}"
            f"{r['tokens_per_s']:10.0f}{r['updates']:9d}"
        )
    sp = ours["split"]
    print(
        f"judge_rl time split per update: generate {sp['time_generate']:.3f} s, score "
        f"{sp['time_score']:.3f} s, train {sp['time_train']:.3f} s; mean response "
        f"{statistics.mean(ours['tokens']) / BATCH:.1f} tokens"
    )
    print(
        f"end to end, process start to exit, {args.updates} updates (imports, model loading and "
        f"saving included): `judge-rl ppo` {cli[0]:.1f} s wall, {cli[1]:.1f} CPU s; TRL's "
        f"script {peer_whole[0]:.1f} s wall, {peer_whole[1]:.1f} CPU s"
    )
    print(
        f"RATIO ppo_command judge-rl ppo/trl script = {peer_whole[0] / cli[0]:.2f}x wall, "
        f"{peer_whole[1] / cli[1]:.2f}x CPU time (the whole process each, {args.updates} updates "
        f"of {BATCH} samples; hidden {args.hidden} x {args.layers} layers, CPU, "
        f"{args.threads} thread(s))"
    )
    t = rows["trl " + trl["trl"]]
    for name in ("judge_rl", "judge_rl (rm value)"):
        o = rows[name]
        print(
            f"RATIO ppo_samples_per_s {name}/trl = {o['samples_per_s'] / t['samples_per_s']:.2f}x "
            f"wall, {o['samples_per_cpu_s'] / t['samples_per_cpu_s']:.2f}x CPU time "
            f"({o['samples_per_s']:.2f} vs {t['samples_per_s']:.2f} samples/s; train tokens per "
            f"update {o['positions_per_update']:.0f} vs {t['positions_per_update']:.0f}; hidden "
            f"{args.hidden} x {args.layers} layers, CPU, {args.threads} thread(s))"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--part",
        choices=[
            "trl",
            "memory",
            "demo-memory",
            "parts",
            "profile",
            "demo-rollout",
            "grpo-rollout",
            "grpo-lora-rollout",
            "grpo-lora-step",
            "all",
        ],  # fmt: skip
        default="all",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--updates", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="grpo-lora-step: both trainers with gradient_checkpointing",
    )
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
        print_memory(memory_table(args.threads, list(MEMORY_CONFIGS)), args.threads)
    if args.part == "parts":
        parts_ablation(args)
    if args.part == "profile":
        profile_part(args)
    if args.part == "demo-rollout":
        demo_rollout(args)
    if args.part == "grpo-rollout":
        grpo_rollout(args)
    if args.part == "grpo-lora-rollout":
        grpo_lora_rollout(args)
    if args.part == "grpo-lora-step":
        grpo_lora_step(args)
    if args.part == "demo-memory":
        rows = memory_table(args.threads, list(DEMO_MEMORY_CONFIGS))
        print_memory(rows, args.threads, demo=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
