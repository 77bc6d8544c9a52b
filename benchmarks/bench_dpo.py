"""DPO speed and agreement: judge_rl's DPOTrainer vs TRL's DPOTrainer on the same model and pairs.

Same Llama-style policy (hidden 256, 4 layers by default: a realistic width, not framework
overhead; byte tokenizer; saved once so both start from identical weights), the same 256
plain-text preference pairs (a marker word planted in the chosen side), the same order (no
shuffling on either side), batch 8, one epoch (32 steps), sigmoid loss with beta 0.1, constant
lr 1e-3, AdamW, gradient clip 1.0, fp32, CPU, the same thread count. TRL (1.16) runs in its own
venv (``.bench-venvs/trl``, shared with bench_reward_model and bench_grpo), twice: its default (a
reference model forward per batch) and with ``precompute_ref_log_probs=True``.

Timing covers ``train()`` end to end (reference log-probabilities included on every side).
judge_rl runs twice: its default (each pair's prompt runs once for both responses) and with
``shared_prompt=False``, the same token work as TRL (the train-token column counts the positions
each side's policy forward runs on with gradients, padding included). The command row times
``judge-rl dpo`` as a user runs it (its own process from the files on disk, start to exit:
imports, loading and the final save included) against TRL's whole default script. Prints
pairs/s and train tokens/s, the loss at steps 1, 16 and 32 side by side, then ``RATIO`` lines
(judge_rl ÷ TRL) and the final-loss difference (the issue asks for < 0.01).

``--lora R`` (no TRL run): judge_rl's DPO with a LoRA policy of rank R on the same policy, pairs
and settings (``lora_B`` set to small random values, as after some training; peft starts them at
zero), two trainers from the same weights interleaved: ``plain`` runs every prompt twice, once
with each response (what a LoRA policy ran before the ninth session), ``shared`` each pair's
prompt once (the default). The reference pass (adapter off, all pairs) alternates side by side
``--lora-reps`` times, then whole training steps (``train()`` one step at a time) alternate step
by step ``--lora-steps`` times, after one warm-up round of each (which holds the first-use
check); CPU s per reference pass and per step (medians), the ratio, the positions each step's
forward runs on with gradients, and the largest loss and log-probability differences. With
``--gradient-checkpointing`` both trainers checkpoint their layers; the layer recomputations in
the last step's backward are printed.

    python benchmarks/bench_dpo.py [--threads 1] [--pairs 256] [--hidden 256 --layers 4]
    python benchmarks/bench_dpo.py --lora 8 [--lora-steps 12] [--lora-reps 3] [--threads 1]
        [--gradient-checkpointing]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH, BETA, LR = 8, 0.1, 1e-3
TRL_REQ = ["trl==1.16.*"]

_PEER_TEMPLATE = r"""
import json, sys, time
import torch
model_dir, pairs_file, threads, precompute, out_file = sys.argv[1:6]
torch.set_num_threads(int(threads))
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import DPOConfig, DPOTrainer

tok = AutoTokenizer.from_pretrained(model_dir)
pairs = json.load(open(pairs_file))
ds = Dataset.from_dict({k: [p[k] for p in pairs] for k in ("prompt", "chosen", "rejected")})
policy = AutoModelForCausalLM.from_pretrained(model_dir)
cfg = DPOConfig(output_dir=out_file + ".dir", per_device_train_batch_size=%(batch)d,
                gradient_accumulation_steps=1, num_train_epochs=1, learning_rate=%(lr)g,
                lr_scheduler_type="constant", warmup_steps=0, beta=%(beta)g,
                loss_type=["sigmoid"], max_length=None, logging_steps=1, report_to=[],
                save_strategy="no", use_cpu=True, bf16=False, seed=0, dataloader_num_workers=0,
                max_grad_norm=1.0, disable_dropout=True, weight_decay=0.0,
                precompute_ref_log_probs=precompute == "1")
marks, positions = [], [0]
def count(module, args, kwargs):
    ids = kwargs.get("input_ids", args[0] if args else None)
    if torch.is_grad_enabled() and ids is not None:
        positions[0] += ids.numel()  # positions the policy trains on (padding included)
policy.model.register_forward_pre_hook(count, with_kwargs=True)
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        marks.append(time.perf_counter())
t_init = time.perf_counter()
trainer = DPOTrainer(model=policy, args=cfg, train_dataset=ds, processing_class=tok,
                     callbacks=[Clock()])
# the same order as judge_rl's (file order): no shuffling
trainer._get_train_sampler = lambda *a, **k: SequentialSampler(trainer.train_dataset)
t0, c0 = time.perf_counter(), time.process_time()
trainer.train()
t1, c1 = time.perf_counter(), time.process_time()
import trl
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h and "train_loss" not in h]
json.dump({"train_s": t1 - t0, "cpu_s": c1 - c0, "init_s": t0 - t_init, "marks": marks, "trl": trl.__version__, "pos": positions[0],
           "losses": losses}, open(out_file, "w"))
"""
PEER = _PEER_TEMPLATE % {"batch": BATCH, "beta": BETA, "lr": LR}


def planted_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Plain-text pairs; the chosen response carries the marker word 'zebra'."""
    rng = random.Random(seed)
    words = "the a cat dog sun tree red blue sky old new big river stone light".split()  # noqa: SIM905

    def sent() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(4, 9)))

    out = []
    for i in range(n):
        base = sent()
        if rng.random() < 0.5:
            c, r = base + " zebra", base + " " + rng.choice(words)
        else:
            c, r = "zebra " + sent(), sent()
        out.append({"prompt": f"Question {i}: {sent()}? ", "chosen": c, "rejected": r})
    return out


def our_trainer(
    policy: Path,
    pairs: list[dict[str, str]],
    shared_prompt: bool = True,
    lora_r: int = 0,
    gradient_checkpointing: bool = False,
) -> Any:
    """judge_rl's DPOTrainer on ``policy`` with the benchmark's settings (TRL's, above)."""
    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.dpo import DPOConfig, DPOTrainer
    from judge_rl.types import PreferenceRecord

    records = [
        PreferenceRecord(prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"])
        for p in pairs
    ]
    cfg = DPOConfig(
        loss="sigmoid",
        beta=BETA,
        lr=LR,
        epochs=1,
        batch_size=BATCH,
        eval_fraction=0.0,
        shuffle=False,
        chat_template=False,  # TRL tokenises plain-text pairs as they are
        max_length=4096,
        max_prompt_length=2048,
        max_grad_norm=1.0,
        shared_prompt=shared_prompt,
        lora_r=lora_r,
        gradient_checkpointing=gradient_checkpointing,
        device="cpu",
        seed=0,
    )
    return DPOTrainer(cfg, load_causal_lm(str(policy)), load_tokenizer(str(policy)), records)


def run_ours(policy: Path, pairs: list[dict[str, str]], shared_prompt: bool = True) -> dict:
    from _peer import count_train_positions

    tr = our_trainer(policy, pairs, shared_prompt)
    positions = count_train_positions(tr.policy.model)
    t0, c0 = time.perf_counter(), time.process_time()
    section = tr.train()
    t1, c1 = time.perf_counter(), time.process_time()
    return {
        "train_s": t1 - t0,
        "cpu_s": c1 - c0,
        "losses": [s["loss"] for s in section.steps],
        "ref_s": tr.summary["time_reference"],
        "pos": positions[0],
    }


def backward_calls(module: Any) -> dict[str, int]:
    """A counter of ``module``'s forward calls made inside a backward (a checkpointed layer's
    forward re-runs there)."""
    import torch

    real, n = module.forward, {"n": 0}

    def forward(*a: Any, **k: Any) -> Any:
        n["n"] += torch._C._current_graph_task_id() != -1
        return real(*a, **k)

    module.forward = forward
    return n


def lora_part(args: argparse.Namespace, pairs: list[dict[str, str]]) -> None:
    """``--lora R``: see the module docstring."""
    import torch
    from _peer import count_train_positions

    from judge_rl.models import save_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-dpo-lora-") as tmp:
        policy = save_tiny_model(
            Path(tmp) / "policy", hidden_size=args.hidden, num_layers=args.layers, seed=0
        )
        sides = {
            name: our_trainer(
                policy, pairs, lora_r=args.lora, gradient_checkpointing=args.gradient_checkpointing
            )
            for name in ("plain", "shared")
        }
    sides["plain"]._shared = False  # every prompt twice: what a LoRA policy ran before
    positions = {}
    for tr in sides.values():
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in tr.policy.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    recomputed = {}
    for name, tr in sides.items():
        positions[name] = count_train_positions(tr.policy.get_base_model().model)
        recomputed[name] = backward_calls(tr.policy.get_base_model().model.layers[0].mlp)
    cpu: dict[str, dict[str, list[float]]] = {"ref": {}, "step": {}}

    def timed(part: str, name: str, fn: Any, keep: bool) -> None:
        c0 = time.process_time()
        fn()
        if keep:
            cpu[part].setdefault(name, []).append(time.process_time() - c0)

    def ref_pass(tr: Any) -> Any:
        def run() -> None:
            tr.ref = None  # recomputed (no output folder: no cache on disk)
            tr.reference_logps()

        return run

    def one_step(tr: Any) -> Any:
        def run() -> None:
            tr.config.max_steps = tr.step + 1  # train() runs one more step and returns
            tr.train()

        return run

    for r in range(args.lora_reps + 1):  # round 0 warms up (and holds the first-use check)
        for name, tr in sides.items():
            timed("ref", name, ref_pass(tr), keep=r > 0)
    ref_diff = float((sides["plain"].ref - sides["shared"].ref).abs().max())
    tokens, redone = {}, {}
    for r in range(args.lora_steps + 1):
        for name, tr in sides.items():
            before, before_re = positions[name][0], recomputed[name]["n"]
            timed("step", name, one_step(tr), keep=r > 0)
            tokens[name] = positions[name][0] - before
            redone[name] = recomputed[name]["n"] - before_re
    losses = {name: [st["loss"] for st in tr.section.steps] for name, tr in sides.items()}
    loss_diff = max(abs(a - b) for a, b in zip(*losses.values(), strict=True))
    print(
        f"DPO with LoRA r={args.lora} (lora_B small random) on a tiny Llama (hidden {args.hidden}, "
        f"{args.layers} layers), {len(pairs)} pairs, batch {BATCH}, fp32, CPU, {args.threads} "
        f"thread(s), load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; plain = "
        f"every prompt twice (before), shared = each pair's prompt once (in use: "
        f"{sides['shared']._shared})"
        + ("; gradient checkpointing" if args.gradient_checkpointing else "")
    )
    for part, what, reps in (
        ("ref", "reference pass (all pairs, adapter off)", args.lora_reps),
        ("step", "training step", args.lora_steps),
    ):
        med = {name: statistics.median(v) for name, v in cpu[part].items()}
        spread = {name: (min(v), max(v)) for name, v in cpu[part].items()}
        print(
            f"{what}, median CPU s over {reps} interleaved: "
            + ", ".join(f"{n} {med[n]:.3f} ({spread[n][0]:.3f}-{spread[n][1]:.3f})" for n in med)
            + f"; plain / shared {med['plain'] / med['shared']:.2f}x"
        )
    print(
        f"positions the body runs on with gradients in the last step: plain {tokens['plain']}, "
        f"shared {tokens['shared']}; layer 0 forwards recomputed in its backward (checkpointing "
        f"at work when > 0): plain {redone['plain']}, shared {redone['shared']}"
    )
    print(
        f"largest |difference|: reference log-probs {ref_diff:.2e}, step losses {loss_diff:.2e} "
        f"over {len(losses['plain'])} steps"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256, help="policy width [256]")
    ap.add_argument("--layers", type=int, default=4, help="policy layers [4]")
    ap.add_argument(
        "--lora",
        type=int,
        default=0,
        metavar="R",
        help="LoRA rank: time plain vs shared-prompt LoRA DPO instead of TRL [0: off]",
    )
    ap.add_argument("--lora-steps", type=int, default=12, help="timed steps per side [12]")
    ap.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="--lora: both trainers with gradient_checkpointing",
    )
    ap.add_argument("--lora-reps", type=int, default=3, help="timed reference passes per side [3]")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from _peer import clock, peer_python, run_command, run_peer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from judge_rl.models import save_tiny_model

    if args.lora:
        lora_part(args, planted_pairs(args.pairs))
        return 0
    py = peer_python("trl", TRL_REQ, torch=True)
    pairs = planted_pairs(args.pairs)
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        root = Path(tmp)
        policy = save_tiny_model(
            root / "policy", hidden_size=args.hidden, num_layers=args.layers, seed=0
        )
        (root / "pairs.json").write_text(json.dumps(pairs))
        (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
        (root / "peer.py").write_text(PEER)
        print(
            f"tiny Llama (hidden {args.hidden}, {args.layers} layers), {len(pairs)} pairs, batch "
            f"{BATCH}, 1 epoch, sigmoid loss, beta {BETA}, lr {LR:g}, fp32, {args.threads} "
            f"thread(s), load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        peers, peer_whole = {}, (0.0, 0.0)
        for label, pre in (("default", "0"), ("precompute", "1")):
            out = root / f"trl-{label}.json"
            t_peer = clock()
            run_peer(py, str(root / "peer.py"), str(policy), str(root / "pairs.json"),
                     str(args.threads), pre, str(out))  # fmt: skip
            if label == "default":
                peer_whole = clock(t_peer)
            peers[label] = json.loads(out.read_text())
        cli = run_command(
            [
                "dpo",
                "--policy",
                str(policy),
                "--data",
                str(root / "pairs.jsonl"),
                "--output",
                str(root / "cli-out"),
                "--loss",
                "sigmoid",
                "--beta",
                str(BETA),
                "--lr",
                str(LR),
                "--epochs",
                "1",
                "--batch-size",
                str(BATCH),
                "--eval-fraction",
                "0",
                "--no-shuffle",
                "--no-chat-template",
                "--max-length",
                "4096",
                "--max-prompt-length",
                "2048",
                "--max-grad-norm",
                "1.0",
                "--device",
                "cpu",
                "--seed",
                "0",
                "--threads",
                str(args.threads),
            ]  # fmt: skip
        )
        ours = run_ours(policy, pairs)
        same = run_ours(policy, pairs, shared_prompt=False)
    version = peers["default"]["trl"]
    rows = {
        "judge_rl": ours,
        "judge_rl (no shared)": same,
        f"trl {version}": peers["default"],
        f"trl {version} precomp": peers["precompute"],
    }
    print(f"load average after: {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)")
    print(f"judge_rl reference pass: {ours['ref_s']:.2f} s (included in its train time)")
    print()
    n = len(pairs)
    print(
        f"{'tool':24}{'train s':>9}{'pairs/s':>9}{'CPU s':>8}{'pairs/CPU s':>13}"
        f"{'train tok':>11}{'tokens/s':>10}{'loss@1':>9}{'loss@mid':>10}{'loss@end':>10}"
    )
    for name, r in rows.items():
        losses = r["losses"]
        mid = losses[len(losses) // 2 - 1] if losses else float("nan")
        print(
            f"{name:24}{r['train_s']:9.2f}{n / r['train_s']:9.1f}{r['cpu_s']:8.2f}"
            f"{n / r['cpu_s']:13.1f}{r['pos']:11d}{r['pos'] / r['train_s']:10.0f}"
            f"{losses[0]:9.4f}{mid:10.4f}{losses[-1]:10.4f}"
        )
    print(
        f"end to end, process start to exit, 1 epoch (imports, model loading and saving "
        f"included): `judge-rl dpo` {cli[0]:.1f} s wall, {cli[1]:.1f} CPU s; TRL's default "
        f"script {peer_whole[0]:.1f} s wall, {peer_whole[1]:.1f} CPU s"
    )
    where = f"hidden {args.hidden} x {args.layers} layers, fp32, CPU, {args.threads} thread(s)"
    print(
        f"RATIO dpo_command judge-rl dpo/trl script = {peer_whole[0] / cli[0]:.2f}x wall, "
        f"{peer_whole[1] / cli[1]:.2f}x CPU time (the whole process each, {n} pairs; {where})"
    )
    for name in ("judge_rl", "judge_rl (no shared)"):
        o = rows[name]
        for label in ("default", "precompute"):
            p = peers[label]
            print(
                f"RATIO dpo_pairs_per_s {name}/trl-{label} = {p['train_s'] / o['train_s']:.2f}x "
                f"wall, {p['cpu_s'] / o['cpu_s']:.2f}x CPU time ({n / o['train_s']:.1f} vs "
                f"{n / p['train_s']:.1f} pairs/s; train tokens {o['pos']} vs {p['pos']}; {where})"
            )
    diff = abs(ours["losses"][-1] - peers["default"]["losses"][-1])
    k = min(8, len(ours["losses"]))
    tail = statistics.mean(
        abs(a - b)
        for a, b in zip(ours["losses"][-k:], peers["default"]["losses"][-k:], strict=False)
    )
    print(
        f"final loss: judge_rl {ours['losses'][-1]:.4f}, trl {peers['default']['losses'][-1]:.4f}"
        f", |diff| {diff:.4f} ({'within' if diff < 0.01 else 'NOT within'} 0.01); mean |diff| "
        f"over the last {k} steps {tail:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
