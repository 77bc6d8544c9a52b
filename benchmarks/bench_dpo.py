"""DPO speed and agreement: judge_rl's DPOTrainer vs TRL's DPOTrainer on the same model and pairs.

Same tiny Llama-style policy (hidden 64, 2 layers, byte tokenizer; saved once so both start from
identical weights), the same 256 plain-text preference pairs (a marker word planted in the chosen
side), the same order (no shuffling on either side), batch 8, one epoch (32 steps), sigmoid loss
with beta 0.1, constant lr 1e-3, AdamW, gradient clip 1.0, fp32, CPU, the same thread count. TRL
(its current release) runs in its own venv under /tmp (``--peer-python``). TRL runs twice: its
default (a reference model forward per batch) and with ``precompute_ref_log_probs=True``.

Timing covers ``train()`` end to end (reference log-probabilities included on every side).
Prints pairs/s, the loss at steps 1, 16 and 32 side by side, then ``RATIO`` lines (pairs/s,
judge_rl ÷ TRL) and the final-loss difference (the issue asks for < 0.01).

    python benchmarks/bench_dpo.py [--threads 1] [--pairs 256]
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH, BETA, LR = 8, 0.1, 1e-3

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
marks = []
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
json.dump({"train_s": t1 - t0, "cpu_s": c1 - c0, "init_s": t0 - t_init, "marks": marks, "trl": trl.__version__,
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


def run_ours(policy: Path, pairs: list[dict[str, str]]) -> dict:
    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.train.dpo import DPOConfig, DPOTrainer
    from judge_rl.types import PreferenceRecord

    records = [PreferenceRecord(**p) for p in pairs]
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
        device="cpu",
        seed=0,
    )
    tr = DPOTrainer(cfg, load_causal_lm(str(policy)), load_tokenizer(str(policy)), records)
    t0, c0 = time.perf_counter(), time.process_time()
    section = tr.train()
    t1, c1 = time.perf_counter(), time.process_time()
    return {
        "train_s": t1 - t0,
        "cpu_s": c1 - c0,
        "losses": [s["loss"] for s in section.steps],
        "ref_s": tr.summary["time_reference"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--peer-python", default=None, help="venv folder of TRL [/tmp/peer-trl-h6]")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from bench_grpo import peer_python, run_peer

    from judge_rl.models import save_tiny_model

    py = peer_python(args.peer_python)
    pairs = planted_pairs(args.pairs)
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        root = Path(tmp)
        policy = save_tiny_model(root / "policy", hidden_size=64, num_layers=2, seed=0)
        (root / "pairs.json").write_text(json.dumps(pairs))
        (root / "peer.py").write_text(PEER)
        print(
            f"tiny Llama (hidden 64, 2 layers), {len(pairs)} pairs, batch {BATCH}, 1 epoch, "
            f"sigmoid loss, beta {BETA}, lr {LR:g}, fp32, {args.threads} thread(s), load "
            f"average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        peers = {}
        for label, pre in (("default", "0"), ("precompute", "1")):
            out = root / f"trl-{label}.json"
            run_peer(py, root / "peer.py", str(policy), str(root / "pairs.json"),
                     str(args.threads), pre, str(out))  # fmt: skip
            peers[label] = json.loads(out.read_text())
        ours = run_ours(policy, pairs)
    version = peers["default"]["trl"]
    rows = {
        "judge_rl": (ours["train_s"], ours["cpu_s"], ours["losses"]),
        f"trl {version}": (
            peers["default"]["train_s"],
            peers["default"]["cpu_s"],
            peers["default"]["losses"],
        ),
        f"trl {version} precomp": (
            peers["precompute"]["train_s"],
            peers["precompute"]["cpu_s"],
            peers["precompute"]["losses"],
        ),
    }
    print(f"load average after: {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)")
    print(f"judge_rl reference pass: {ours['ref_s']:.2f} s (included in its train time)")
    print()
    n = len(pairs)
    print(
        f"{'tool':24}{'train s':>9}{'pairs/s':>9}{'CPU s':>8}{'pairs/CPU s':>13}{'loss@1':>9}"
        f"{'loss@mid':>10}{'loss@end':>10}"
    )
    for name, (secs, cpu, losses) in rows.items():
        mid = losses[len(losses) // 2 - 1] if losses else float("nan")
        print(
            f"{name:24}{secs:9.2f}{n / secs:9.1f}{cpu:8.2f}{n / cpu:13.1f}{losses[0]:9.4f}"
            f"{mid:10.4f}{losses[-1]:10.4f}"
        )
    ours_pps = n / ours["train_s"]
    for label in ("default", "precompute"):
        p = peers[label]
        pps = n / p["train_s"]
        print(
            f"RATIO dpo_pairs_per_s judge_rl/trl-{label} = {ours_pps / pps:.2f}x "
            f"({ours_pps:.1f} vs {pps:.1f} pairs/s, fp32, CPU, {args.threads} thread(s))"
        )
        print(
            f"RATIO dpo_pairs_per_cpu_s judge_rl/trl-{label} = "
            f"{p['cpu_s'] / ours['cpu_s']:.2f}x (CPU time, steadier on a loaded machine)"
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
