"""Reward-model training speed: judge_rl vs TRL's RewardTrainer, side by side, same everything.

Same tiny Llama-style model (hidden 256, 4 layers, byte tokenizer, saved once so both start from
identical weights), same 2,000 synthetic pairs (50-200 tokens; the chosen side carries a marker
word, so the loss has something to learn), batch 8, 1 epoch, lr 1e-4 linear decay, AdamW, grad
clip 1.0, no eval, CPU, same thread count. TRL runs in its own venv (.bench-venvs/trl) through
benchmarks/_peer.py; its gradient checkpointing (on by default in RewardConfig) is turned off so
both do the same arithmetic.

Prints pairs/s and the final loss (mean of the last quarter of steps) of both, for fp32 and bf16
autocast, then ``RATIO`` lines (judge_rl pairs/s ÷ TRL pairs/s).

    python benchmarks/bench_reward_model.py            # fp32 and bf16
    python benchmarks/bench_reward_model.py --quick    # 400 pairs, bf16 only (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRL_REQ = ["trl==1.16.*"]
SEQ_MIN, SEQ_MAX = 50, 200
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "river",
    "stone",
    "cloud",
    "paper",
    "music",
    "light",
    "green",
    "quiet",
    "north",
    "table",
    "window",
    "garden",
    "simple",
    "yellow",
    "orange",
    "silver",
]


def make_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Plain-text pairs of 50-200 byte tokens in total (a third prompt, two thirds response);
    two different responses per prompt, the chosen one containing the word 'excellent'."""
    rng = random.Random(seed)

    def words(k: int) -> str:
        out = ""
        while len(out) < k:
            out += rng.choice(WORDS) + " "
        return out[:k]

    rows = []
    for i in range(n):
        total = rng.randint(SEQ_MIN, SEQ_MAX - 2)  # -1 for the EOS both add
        p_len = max(8, total // 3)
        r_len = total - p_len
        prompt = f"Q{i}: " + words(p_len - len(f"Q{i}: ") - 3) + "\nA:"
        prompt = prompt[:p_len]
        # Two different responses to the same prompt (they share the prompt, nothing more).
        chosen = words(r_len - 11)
        cut = rng.randint(0, len(chosen))
        chosen = (" " + chosen[:cut] + " excellent " + chosen[cut:])[:r_len]
        rejected = (" " + words(r_len))[:r_len]
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def build_model(path: Path) -> None:
    import torch
    from transformers import LlamaForSequenceClassification

    from judge_rl.models import tiny_causal_lm, tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = tiny_causal_lm(
        tok, hidden_size=256, num_layers=4, num_heads=4, max_position_embeddings=512
    ).config
    cfg.num_labels = 1
    cfg.id2label = {0: "LABEL_0"}
    cfg.label2id = {"LABEL_0": 0}
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)


def tail_loss(losses: list[tuple[int, float]], total: int) -> float:
    """Mean logged loss over the last quarter of the steps."""
    last = [v for s, v in losses if s > 0.75 * total]
    return sum(last) / len(last) if last else float("nan")


# --- the two sides ----------------------------------------------------------------------------


def run_ours(data: Path, model: Path, threads: int, bf16: bool, out: Path) -> dict:
    from judge_rl.data import read_preferences
    from judge_rl.train.reward_model import RewardModelConfig, train_reward_model

    recs = read_preferences(data).records
    cfg = RewardModelConfig(
        model=str(model),
        output=str(out),
        epochs=1,
        lr=1e-4,
        batch_size=8,
        max_length=256,
        eval_split=0.0,
        eval_every=0,
        save_every=0,
        bf16="on" if bf16 else "off",
        threads=threads,
        log_every=5,
        seed=0,
    )
    times: dict[str, float] = {}

    def hook(ev):
        if ev.kind in ("start", "end"):
            times[ev.kind] = time.perf_counter()

    res = train_reward_model(cfg, records=recs, hooks=[hook])
    wall = times["end"] - times["start"]  # the whole loop incl. the final save
    losses = [(int(r["step"]), r["loss"]) for r in res.section.train]
    return {
        "pairs_per_s": len(recs) / wall,
        "wall_s": wall,
        "steps": res.steps,
        "final_loss": tail_loss(losses, res.steps),
        "mean_loss": sum(v for _, v in losses) / len(losses),
    }


PEER = r"""
import json, sys, time, torch
from datasets import load_dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer
data, model_dir, threads, bf16, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
torch.set_num_threads(threads)
ds = load_dataset("json", data_files=data, split="train")
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
args = RewardConfig(output_dir=out, num_train_epochs=1, per_device_train_batch_size=8,
    learning_rate=1e-4, lr_scheduler_type="linear", warmup_steps=0, bf16=bf16, fp16=False,
    gradient_checkpointing=False, max_length=256, logging_steps=5, save_strategy="no",
    eval_strategy="no", report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0,
    disable_tqdm=True)
trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
t = time.perf_counter()
trainer.train()
wall = time.perf_counter() - t
losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
print("RESULT " + json.dumps({"pairs_per_s": len(ds) / wall, "wall_s": wall,
      "steps": trainer.state.global_step, "losses": losses,
      "trl": __import__("trl").__version__}))
"""


def run_trl(py: str, data: Path, model: Path, threads: int, bf16: bool, out: Path) -> dict:
    sys.path.insert(0, str(HERE))
    from _peer import run_peer

    script = out.parent / "trl_peer.py"
    script.write_text(PEER)
    text = run_peer(
        py, str(script), str(data), str(model), str(threads), "1" if bf16 else "0", str(out)
    )
    line = [ln for ln in text.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT ") :])
    losses = [(int(s), float(v)) for s, v in r.pop("losses")]
    r["final_loss"] = tail_loss(losses, r["steps"])
    r["mean_loss"] = sum(v for _, v in losses) / len(losses)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="400 pairs, bf16 only")
    ap.add_argument("--precision", choices=["both", "fp32", "bf16"], default="both")
    ap.add_argument("--threads", type=int, default=0, help="0 = idle cores (same for both)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from judge_rl.data import write_preferences
    from judge_rl.train.reward_model import auto_threads, cpu_supports_bf16
    from judge_rl.types import PreferenceRecord

    sys.path.insert(0, str(HERE))
    from _peer import peer_python

    n = 400 if args.quick else args.pairs
    precisions = (
        ["bf16"]
        if args.quick
        else (["bf16", "fp32"] if args.precision == "both" else [args.precision])
    )
    threads = args.threads or auto_threads()
    py = peer_python("trl", TRL_REQ, torch=True)
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        root = Path(tmp)
        data = root / "pairs.jsonl"
        write_preferences([PreferenceRecord(**r) for r in make_pairs(n)], data)
        model = root / "model"
        build_model(model)
        print(
            f"{n} pairs of {SEQ_MIN}-{SEQ_MAX} tokens, batch 8, 1 epoch, hidden 256 x 4 layers, "
            f"{threads} thread(s), CPU native bf16: {cpu_supports_bf16()}, "
            f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        results: dict[str, dict[str, dict]] = {}
        for prec in precisions:
            bf16 = prec == "bf16"
            # TRL first, then ours: neither gets a warmer machine by position every time.
            results[prec] = {
                "trl": run_trl(py, data, model, threads, bf16, root / f"trl-{prec}"),
                "judge_rl": run_ours(data, model, threads, bf16, root / f"ours-{prec}"),
            }
            for side, r in results[prec].items():
                print(
                    f"  {prec:5} {side:9} {r['pairs_per_s']:7.2f} pairs/s  "
                    f"{r['wall_s']:7.1f} s  {r['steps']} steps  final loss "
                    f"{r['final_loss']:.4f}  (mean {r['mean_loss']:.4f})",
                    flush=True,
                )
        print(f"load average after: {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)")
        print()
        print(f"{'precision':10}{'tool':10}{'pairs/s':>10}{'final loss':>12}")
        for prec, sides in results.items():
            for side, r in sides.items():
                print(f"{prec:10}{side:10}{r['pairs_per_s']:10.2f}{r['final_loss']:12.4f}")
        for prec, sides in results.items():
            ratio = sides["judge_rl"]["pairs_per_s"] / sides["trl"]["pairs_per_s"]
            dl = sides["judge_rl"]["final_loss"] - sides["trl"]["final_loss"]
            print(
                f"RATIO reward_model_train_{prec}_pairs_per_s judge_rl/trl = {ratio:.2f}x "
                f"(final loss {sides['judge_rl']['final_loss']:.3f} vs "
                f"{sides['trl']['final_loss']:.3f}, diff {dl:+.3f})"
            )
        if "fp32" in results and "bf16" in results:
            best = max(
                results["fp32"]["judge_rl"]["pairs_per_s"],
                results["bf16"]["judge_rl"]["pairs_per_s"],
            )
            best_trl = max(
                results["fp32"]["trl"]["pairs_per_s"], results["bf16"]["trl"]["pairs_per_s"]
            )
            print(
                f"RATIO reward_model_train_best_pairs_per_s judge_rl/trl = {best / best_trl:.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
