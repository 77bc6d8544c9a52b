"""Reward-model training speed: judge_rl vs TRL's RewardTrainer, side by side, same everything.

Same tiny Llama-style model (hidden 256, 4 layers, byte tokenizer, saved once so both start from
identical weights), same 2,000 synthetic pairs (50-200 tokens; the chosen side carries a marker
word, so the loss has something to learn), batch 8, 1 epoch, lr 1e-4 linear decay, AdamW, grad
clip 1.0, no eval, CPU, same thread count. TRL runs in its own venv (.bench-venvs/trl) through
benchmarks/_peer.py (or ``--peer-python``) at its best settings for speed: length-grouped
batches (``train_sampling_strategy="group_by_length"`` with each pair's longer side as its
length), gradient checkpointing (on by default in RewardConfig) off.

Two measurements per side:

- the library (training window): from the first step's start to the last step's end, the same
  window on both sides (no saving inside). Prints pairs/s (wall), pairs per CPU second, tokens/s
  and tokens per pair (token positions the model ran in training forwards, padding included, a
  shared prompt once), so the ``RATIO`` lines split judge_rl's lead into less token work (fewer
  positions per pair: length grouping, the shared prompt run once) and compute speed (positions
  per second);
- the command a user runs, end to end: ``python -m judge_rl train-rm --data pairs.jsonl ...``
  against TRL's script (load the JSONL, the lengths for ``group_by_length``, load the model,
  train, ``save_model``), each timed from process start to exit (imports, reading the file on
  disk, tokenising, loading, training, saving), wall and the child's CPU time, and what each
  spends outside its training window (TRL's from its own process; judge_rl's command minus the
  library run's window, an estimate).

    python benchmarks/bench_reward_model.py            # 600 pairs, fp32 (about 4 min)
    python benchmarks/bench_reward_model.py --precision both --pairs 2000   # + bf16, longer
    python benchmarks/bench_reward_model.py --quick    # 200 pairs, fp32 (a smoke run)
    python benchmarks/bench_reward_model.py --pairs 200 --gradient-checkpointing
        # both trainers checkpoint (judge_rl's gradient_checkpointing, TRL's RewardConfig
        # gradient_checkpointing=True, its default); prints the layer recomputations per step
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


def real_tokens(data: Path, model: Path) -> tuple[float, float]:
    """Tokens per pair before padding: (the shared prompt once + both responses' own tokens,
    both sides in full), the floors of judge_rl's and TRL's token work."""
    from transformers import AutoTokenizer

    from judge_rl.data import read_preferences
    from judge_rl.train.rm_data import common_prefix_len, tokenize_pairs

    tok = AutoTokenizer.from_pretrained(model)
    pairs = tokenize_pairs(read_preferences(data).records, tok, max_length=256)
    n = max(1, len(pairs))
    both = sum(len(c) + len(r) for c, r in zip(pairs.chosen, pairs.rejected, strict=True))
    shared = sum(common_prefix_len(c, r) for c, r in zip(pairs.chosen, pairs.rejected, strict=True))
    return (both - shared) / n, both / n


def tail_loss(losses: list[tuple[int, float]], total: int) -> float:
    """Mean logged loss over the last quarter of the steps."""
    last = [v for s, v in losses if s > 0.75 * total]
    return sum(last) / len(last) if last else float("nan")


# --- the two sides ----------------------------------------------------------------------------


def run_ours(
    data: Path,
    model: Path,
    threads: int,
    bf16: bool,
    out: Path,
    shared_prefix: bool = True,
    attn: str = "auto",
    compile_layers: bool = False,
    gradient_checkpointing: bool = False,
) -> dict:
    """``compile_layers``: ``torch.compile(dynamic=True)`` each decoder layer when training
    starts (after the eager start-up check), for :func:`run_compile`."""
    import torch

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
        shared_prefix=shared_prefix,
        attn=attn,
        gradient_checkpointing=gradient_checkpointing,
    )
    from transformers.models.llama import modeling_llama

    positions = [0]
    fwd = modeling_llama.LlamaModel.forward

    def counting_forward(self, input_ids=None, *a, **k):  # type: ignore[no-untyped-def]
        if torch.is_grad_enabled() and input_ids is not None:
            positions[0] += input_ids.numel()  # positions run, padding included
        return fwd(self, input_ids, *a, **k)

    # a layer's MLP called inside a backward: that layer recomputed (the MLP's class, not the
    # layer's: transformers wraps the layer's forward in its checkpointing)
    recomputed = [0]
    layer_fwd = modeling_llama.LlamaMLP.forward

    def counting_layer(self, *a, **k):  # type: ignore[no-untyped-def]
        if torch._C._current_graph_task_id() != -1:  # inside a backward: a recomputation
            recomputed[0] += 1
        return layer_fwd(self, *a, **k)

    marks: dict[str, tuple[float, float, int]] = {}

    step_cpu: list[float] = []

    def hook(ev):  # type: ignore[no-untyped-def]
        if ev.kind == "start" and compile_layers:
            for layer in ev.model.model.layers:
                layer.compile(dynamic=True)
        if ev.kind in ("start", "step"):
            key = "first" if ev.kind == "start" else "last"
            if key == "last":
                step_cpu.append(time.process_time() - marks["last" if step_cpu else "first"][1])
            marks[key] = (time.perf_counter(), time.process_time(), positions[0])

    modeling_llama.LlamaModel.forward = counting_forward  # type: ignore[method-assign]
    modeling_llama.LlamaMLP.forward = counting_layer  # type: ignore[method-assign]
    try:
        res = train_reward_model(cfg, records=recs, hooks=[hook])
    finally:
        modeling_llama.LlamaModel.forward = fwd  # type: ignore[method-assign]
        modeling_llama.LlamaMLP.forward = layer_fwd  # type: ignore[method-assign]
    # The window: first step's start to last step's end, as TRL's (the final save is outside).
    wall = marks["last"][0] - marks["first"][0]
    losses = [(int(r["step"]), r["loss"]) for r in res.section.train]
    return {
        "pairs_per_s": len(recs) / wall,
        "wall_s": wall,
        "cpu_s": marks["last"][1] - marks["first"][1],
        "positions": marks["last"][2] - marks["first"][2],
        "pairs": len(recs),
        "steps": res.steps,
        "final_loss": tail_loss(losses, res.steps),
        "mean_loss": sum(v for _, v in losses) / len(losses),
        "step_cpu": step_cpu,
        "losses": losses,
        "recomputed": recomputed[0],
        "shared_prefix": res.section.model_extra["shared_prefix"],
    }


PEER = r"""
import json, sys, time, torch
from datasets import load_dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from transformers.models.llama import modeling_llama
from trl import RewardConfig, RewardTrainer
data, model_dir, threads, bf16, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
torch.set_num_threads(threads)
ds = load_dataset("json", data_files=data, split="train")
tok = AutoTokenizer.from_pretrained(model_dir)
# group_by_length (TRL's best setting for speed): lengths precomputed as the longer side of each
# pair in the tokens TRL itself will build (prompt + response + EOS), so batches pad least.
ds = ds.map(lambda ex: {"length": 1 + max(len(tok(ex["prompt"] + ex["chosen"])["input_ids"]),
                                          len(tok(ex["prompt"] + ex["rejected"])["input_ids"]))})
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
positions = [0]
_fwd = modeling_llama.LlamaModel.forward
def counting_forward(self, input_ids=None, *a, **k):
    if torch.is_grad_enabled() and input_ids is not None:
        positions[0] += input_ids.numel()  # positions the model runs, padding included
    return _fwd(self, input_ids, *a, **k)
modeling_llama.LlamaModel.forward = counting_forward
recomputed = [0]
_layer_fwd = modeling_llama.LlamaMLP.forward  # not the layer's: transformers wraps it
def counting_layer(self, *a, **k):
    if torch._C._current_graph_task_id() != -1:  # inside a backward: a recomputation
        recomputed[0] += 1
    return _layer_fwd(self, *a, **k)
modeling_llama.LlamaMLP.forward = counting_layer
args = RewardConfig(output_dir=out, num_train_epochs=1, per_device_train_batch_size=8,
    learning_rate=1e-4, lr_scheduler_type="linear", warmup_steps=0, bf16=bf16, fp16=False,
    gradient_checkpointing=GRADCKPT, max_length=256, logging_steps=5, save_strategy="no",
    eval_strategy="no", report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0,
    disable_tqdm=True, train_sampling_strategy=SAMPLING, length_column_name="length",
    torch_compile=COMPILE)
marks = {}
step_cpu = []
class Clock(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        marks.setdefault("first", (time.perf_counter(), time.process_time(), positions[0]))
    def on_step_end(self, args, state, control, **kw):
        step_cpu.append(time.process_time() - marks.get("last", marks["first"])[1])
        marks["last"] = (time.perf_counter(), time.process_time(), positions[0])
class Trainer(RewardTrainer):
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if "length" not in self._signature_columns:  # keep it for the length-grouped sampler
            self._signature_columns = [*self._signature_columns, "length"]
trainer = Trainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[Clock()])
trainer.train()
children_cpu = sum(__import__("os").times()[2:4])  # compilers the training ran (torch.compile)
# The window: first step's start to last step's end (same on both sides; no saving in it).
wall = marks["last"][0] - marks["first"][0]
cpu = marks["last"][1] - marks["first"][1]
losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
trainer.save_model(out + "/final")  # what a user's script does last (outside the window)
print("RESULT " + json.dumps({"pairs_per_s": len(ds) / wall, "wall_s": wall, "cpu_s": cpu,
      "positions": marks["last"][2] - marks["first"][2], "pairs": len(ds),
      "steps": trainer.state.global_step, "losses": losses, "step_cpu": step_cpu,
      "children_cpu": children_cpu, "trl": __import__("trl").__version__,
      "recomputed": recomputed[0]}))
"""


def run_trl(
    py: str,
    data: Path,
    model: Path,
    threads: int,
    bf16: bool,
    out: Path,
    sampling: str,
    compile_: bool = False,
    gradient_checkpointing: bool = False,
) -> dict:
    """TRL's script in its venv; ``compile_``: its ``torch_compile=True`` (whole model);
    ``gradient_checkpointing``: RewardConfig's (its default, True)."""
    sys.path.insert(0, str(HERE))
    from _peer import run_peer

    script = out.parent / f"trl_peer_{sampling}{'_compile' if compile_ else ''}.py"
    script.write_text(
        PEER.replace("SAMPLING", repr(sampling))
        .replace("COMPILE", repr(compile_))
        .replace("GRADCKPT", repr(gradient_checkpointing))
    )
    cpu0, t0 = _child_cpu(), time.perf_counter()
    text = run_peer(
        py, str(script), str(data), str(model), str(threads), "1" if bf16 else "0", str(out)
    )
    process = {"wall_s": time.perf_counter() - t0, "cpu_s": _child_cpu() - cpu0}
    line = [ln for ln in text.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT ") :])
    r["process"] = process
    losses = [(int(s), float(v)) for s, v in r.pop("losses")]
    r["losses"] = losses
    r["final_loss"] = tail_loss(losses, r["steps"])
    r["mean_loss"] = sum(v for _, v in losses) / len(losses)
    return r


ABLATIONS = (
    "all",
    "no last-MLP skip",
    "no fused AdamW",
    "no shared prefix",
    "eager attention",
)


def run_ablation(
    data: Path,
    model: Path,
    threads: int,
    out: Path,
    reps: int,
    only: list[str] | None = None,
    gradient_checkpointing: bool = False,
) -> None:
    """judge_rl's library path with each speed lever turned off in turn (fp32), interleaved in
    one process; pairs per CPU second (best of ``reps``) tells them apart on a busy machine.
    ``gradient_checkpointing``: every variant checkpoints ("no shared prefix" is then what a
    checkpointing run did before the shared prefix worked under checkpointing)."""
    import contextlib

    import torch

    from judge_rl.train import _last_mlp

    skip, adamw = _last_mlp.last_mlp_only, torch.optim.AdamW

    def plain_adamw(params, **kw):  # type: ignore[no-untyped-def]
        return adamw(params, **{**kw, "fused": None})

    variants = [v for v in ABLATIONS if not only or v == "all" or v in only]
    best: dict[str, dict] = {}
    for rep in range(reps):
        for v in variants:
            if v == "no last-MLP skip":
                _last_mlp.last_mlp_only = lambda _k, *_m: contextlib.nullcontext()  # type: ignore[assignment]
            if v == "no fused AdamW":
                torch.optim.AdamW = plain_adamw  # type: ignore[misc]
            try:
                r = run_ours(data, model, threads, False, out / f"abl-{rep}-{ABLATIONS.index(v)}",
                             shared_prefix=v != "no shared prefix",
                             attn="eager" if v == "eager attention" else "auto",
                             gradient_checkpointing=gradient_checkpointing)  # fmt: skip
            finally:
                _last_mlp.last_mlp_only, torch.optim.AdamW = skip, adamw  # type: ignore[misc]
            if v not in best or r["cpu_s"] < best[v]["cpu_s"]:
                best[v] = r
    print()
    print(
        f"ablation: judge_rl's library window, fp32, {threads} thread(s), best of {reps} "
        f"{'(gradient checkpointing) ' if gradient_checkpointing else ''}"
        f"interleaved runs by CPU time; load average now {os.getloadavg()[0]:.1f}"
    )
    print(f"{'variant':22}{'pairs/CPUs':>11}{'tok/CPUs':>10}{'tok/pair':>10}{'vs all':>8}")
    base = best["all"]["pairs"] / best["all"]["cpu_s"]
    for v, r in best.items():
        rate = r["pairs"] / r["cpu_s"]
        print(
            f"{v:22}{rate:11.2f}{r['positions'] / r['cpu_s']:10.0f}"
            f"{r['positions'] / r['pairs']:10.1f}{rate / base:8.2f}"
        )


def run_profile(data: Path, model: Path, threads: int, out: Path, rows: int = 25) -> None:
    """torch.profiler over judge_rl's training steps (fp32; the first 3 steps left out as
    warm-up): self CPU time per op, the split of what is left to speed up."""
    import torch

    from judge_rl.data import read_preferences
    from judge_rl.train.reward_model import RewardModelConfig, train_reward_model

    recs = read_preferences(data).records
    cfg = RewardModelConfig(
        model=str(model), output=str(out), epochs=1, lr=1e-4, batch_size=8, max_length=256,
        eval_split=0.0, eval_every=0, save_every=0, bf16="off", threads=threads, seed=0,
    )  # fmt: skip
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True)
    on = [False]

    def hook(ev):  # type: ignore[no-untyped-def]
        if ev.kind == "step" and ev.step == 3:
            prof.start()
            on[0] = True
        elif ev.kind == "save" and on[0]:  # the final save is outside the profile
            prof.stop()
            on[0] = False

    train_reward_model(cfg, records=recs, hooks=[hook])
    if on[0]:
        prof.stop()
    avg = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in avg)
    print(f"profile: judge_rl training steps 4 to the end, {threads} thread(s), fp32")
    print(f"{'op':44}{'self CPU %':>11}{'calls':>8}")
    for e in sorted(avg, key=lambda e: -e.self_cpu_time_total)[:rows]:
        print(f"{e.key[:43]:44}{100 * e.self_cpu_time_total / total:10.1f}%{e.count:8d}")
    groups = {
        "matmul (aten::mm, addmm)": ("aten::mm", "aten::addmm"),
        "attention (SDPA's CPU flash kernel, bmm)": (
            "aten::_scaled_dot_product_flash_attention_for_cpu",
            "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
            "aten::bmm",
        ),
        "optimizer (fused AdamW, clip)": ("aten::_fused_adamw_", "aten::linalg_vector_norm"),
    }
    mm = [e for e in avg if e.key in ("aten::mm", "aten::addmm")]
    mm_s = sum(e.self_cpu_time_total for e in mm) / 1e6
    if mm_s:
        rate = sum(e.flops for e in mm) / mm_s / 1e9
        print(f"matmul rate: {rate:.1f} GFLOP/s per thread (self CPU time of aten::mm/addmm)")
    done = 0.0
    kernels = 0.0
    for name, keys in groups.items():
        t = sum(e.self_cpu_time_total for e in avg if e.key in keys)
        done += t
        if not name.startswith("optimizer"):
            kernels += t
        print(f"SPLIT {name}: {100 * t / total:.1f}%")
    print(f"SPLIT everything else (elementwise, copies, autograd): {100 * (1 - done / total):.1f}%")
    # The matmuls and attention are TRL's own kernels on the same shapes: with everything else
    # free, a position could cost at most this much less than it does now.
    print(
        f"BOUND matmul + attention are {100 * kernels / total:.1f}% of a step: with all else at "
        f"zero cost, at most {total / kernels:.2f}x this speed per position"
    )


def _compile_split(comp: list[float], eager: list[float]) -> tuple[float, float]:
    """From the per-step CPU seconds of the same steps (same batches, same order) without and
    with ``torch.compile``: (steady-state ratio compiled / eager, compile CPU seconds). The
    steady ratio is the median of the per-step ratios (the few steps that compile are outliers a
    median ignores); the compile time is the compiled run's total minus what its steps would
    have cost at that steady ratio."""
    import statistics

    n = min(len(comp), len(eager))
    steady = statistics.median(c / e for c, e in zip(comp[:n], eager[:n], strict=True))
    return steady, sum(comp[:n]) - steady * sum(eager[:n])


def run_compile(py: str, data: Path, model: Path, threads: int, root: Path) -> None:
    """Eager against ``torch.compile`` on both sides, fp32, interleaved: TRL with its documented
    switch (``torch_compile=True``: the whole model, inductor, shapes made dynamic after the
    first recompile) and judge_rl with each decoder layer compiled (``dynamic=True``; the
    trainer calls the backbone and the head itself, so the layers are what runs). Inductor
    starts from an empty cache folder and compiles in-process (1 compile thread); the C++
    compiler it runs is a child process, whose CPU is added. Prints the compile time apart from
    the steady state."""
    import torch._inductor.config as inductor_config

    os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # TRL's subprocess reads it
    inductor_config.compile_threads = 1
    runs: dict[str, dict] = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / f"inductor-{name}")  # cold
        runs[f"trl {name}"] = run_trl(py, data, model, threads, False, root / f"trl-{name}",
                                      "group_by_length", compile_=compiled)  # fmt: skip
        child0 = _child_cpu()  # the C++ compiler inductor runs is a child process
        runs[f"judge_rl {name}"] = run_ours(data, model, threads, False, root / f"ours-{name}",
                                            compile_layers=compiled)  # fmt: skip
        runs[f"judge_rl {name}"]["children_cpu"] = _child_cpu() - child0
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print()
    print(
        "torch.compile on CPU (inductor, cold cache, 1 compile thread), fp32, training window; "
        "steady = median per-step CPU ratio compiled/eager over the same batches"
    )
    print(
        f"{'side':10}{'eager CPU s':>12}{'compiled CPU s':>15}{'compile s':>10}"
        f"{'steady':>8}{'tok/CPUs eager':>15}{'tok/CPUs steady':>16}{'max |dloss|':>12}"
    )
    summary: dict[str, dict[str, float]] = {}
    for side in ("trl", "judge_rl"):
        e, c = runs[f"{side} eager"], runs[f"{side} compiled"]
        steady, comp_s = _compile_split(c["step_cpu"], e["step_cpu"])
        comp_s += c["children_cpu"] - e["children_cpu"]  # + the C++ compiler's processes
        c = {**c, "cpu_s": c["cpu_s"] + c["children_cpu"] - e["children_cpu"]}
        dloss = max(abs(a[1] - b[1]) for a, b in zip(e["losses"], c["losses"], strict=False))
        tok_e = e["positions"] / e["cpu_s"]
        summary[side] = {"eager": e["cpu_s"], "compiled": c["cpu_s"], "steady": steady,
                         "pairs": e["pairs"]}  # fmt: skip
        print(
            f"{side:10}{e['cpu_s']:12.1f}{c['cpu_s']:15.1f}{comp_s:10.1f}{steady:8.2f}"
            f"{tok_e:15.0f}{tok_e / steady:16.0f}{dloss:12.2e}"
        )
    t, o = summary["trl"], summary["judge_rl"]
    print(
        f"RATIO reward_model_train_fp32_compile judge_rl/trl[group_by_length], pairs per CPU s: "
        f"eager {t['eager'] / o['eager']:.2f}x; both compiled, steady state "
        f"{t['eager'] * t['steady'] / (o['eager'] * o['steady']):.2f}x; both compiled, compile "
        f"time included {t['compiled'] / o['compiled']:.2f}x; judge_rl eager vs TRL compiled "
        f"steady {t['eager'] * t['steady'] / o['eager']:.2f}x"
    )


def _child_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cli(data: Path, model: Path, threads: int, bf16: bool, out: Path, pairs: int) -> dict:
    """``python -m judge_rl train-rm`` on the pairs file, process start to exit (the settings of
    :func:`run_ours`; run in a scratch folder so its run log stays out of the repo)."""
    cmd = [
        sys.executable, "-m", "judge_rl", "train-rm",
        "--data", str(data), "--model", str(model), "--output", str(out),
        "--epochs", "1", "--lr", "1e-4", "--batch-size", "8", "--max-length", "256",
        "--eval-split", "0", "--eval-every", "0", "--save-every", "0",
        "--bf16", "on" if bf16 else "off", "--threads", str(threads), "--seed", "0",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cwd = out.parent / "cli-cwd"
    cwd.mkdir(exist_ok=True)
    cpu0, t0 = _child_cpu(), time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    if r.returncode != 0:
        raise RuntimeError(f"train-rm failed ({r.returncode}):\n{r.stderr[-4000:]}")
    if not (out / "reward_model.json").exists():
        raise RuntimeError(f"train-rm exited 0 but wrote no model to {out}")
    return {"wall_s": wall, "cpu_s": cpu, "pairs": pairs}


def _row(prec: str, side: str, r: dict) -> str:
    return (
        f"{prec:6}{side:26}{r['pairs_per_s']:9.2f}{r['pairs'] / r['cpu_s']:11.2f}"
        f"{r['positions'] / r['wall_s']:10.0f}{r['positions'] / r['pairs']:11.1f}"
        f"{r['final_loss']:9.4f}{r['mean_loss']:9.4f}"
    )


@contextlib.contextmanager
def _scratch(n: int) -> Iterator[tuple[Path, Path]]:
    """A temporary folder with ``n`` synthetic pairs (``pairs.jsonl``) and the tiny model
    (``model/``), for the --profile, --ablation and --compile runs: ``(folder, pairs file)``."""
    from judge_rl.data import write_preferences
    from judge_rl.types import PreferenceRecord

    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        root = Path(tmp)
        data = root / "pairs.jsonl"
        write_preferences([PreferenceRecord(**r) for r in make_pairs(n)], data)
        build_model(root / "model")
        print(f"{n} pairs, load average before: {os.getloadavg()[0]:.1f}", flush=True)
        yield root, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--quick", action="store_true", help="200 pairs, fp32 only")
    ap.add_argument("--precision", choices=["both", "fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="0 = idle cores (same for both)")
    ap.add_argument(
        "--trl-sampling",
        choices=["group_by_length", "random", "both"],
        default="group_by_length",
        help="TRL's sampler: group_by_length (its best setting, the ratio's reference) or random",
    )
    ap.add_argument(
        "--ablation",
        type=int,
        default=0,
        metavar="REPS",
        help="instead of the comparison: judge_rl with each speed lever off in turn, REPS rounds",
    )
    ap.add_argument(
        "--only",
        default="",
        metavar="V1,V2",
        help="with --ablation: only these variants beside 'all' (" + ", ".join(ABLATIONS[1:]) + ")",
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="instead of the comparison: eager vs torch.compile on both sides (slow: minutes "
        "of compiling)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="instead of the comparison: torch.profiler over judge_rl's training steps",
    )
    ap.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="both trainers checkpoint the layers' activations (judge_rl's "
        "gradient_checkpointing, TRL's RewardConfig gradient_checkpointing=True); the command "
        "runs are left out (train-rm has no option for it); with --ablation: every variant",
    )
    ap.add_argument(
        "--peer-python", default=None, help="a python with trl installed (default: .bench-venvs)"
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from judge_rl.data import write_preferences
    from judge_rl.train.reward_model import auto_threads, cpu_supports_bf16
    from judge_rl.types import PreferenceRecord

    sys.path.insert(0, str(HERE))
    from _peer import peer_python

    n = 200 if args.quick else args.pairs
    precisions = (
        ["fp32"]
        if args.quick
        else (["bf16", "fp32"] if args.precision == "both" else [args.precision])
    )
    samplings = (
        ["group_by_length", "random"] if args.trl_sampling == "both" else [args.trl_sampling]
    )
    threads = args.threads or auto_threads()
    if args.profile:
        with _scratch(n) as (root, data):
            run_profile(data, root / "model", threads, root / "out")
        return 0
    if args.ablation:
        with _scratch(n) as (root, data):
            only = [v.strip() for v in args.only.split(",") if v.strip()]
            bad = [v for v in only if v not in ABLATIONS]
            if bad:
                ap.error(f"--only: unknown variant(s) {bad}; choose from {list(ABLATIONS[1:])}")
            run_ablation(data, root / "model", threads, root, args.ablation, only,
                         gradient_checkpointing=args.gradient_checkpointing)  # fmt: skip
        return 0
    py = args.peer_python or peer_python("trl", TRL_REQ, torch=True)
    if args.compile:
        with _scratch(n) as (root, data):
            run_compile(py, data, root / "model", threads, root)
        return 0
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
        commands: dict[str, dict] = {}
        ckpt = args.gradient_checkpointing
        tag_ckpt = "_gradckpt" if ckpt else ""
        if ckpt:
            print("gradient checkpointing on both sides", flush=True)
        for prec in precisions:
            bf16 = prec == "bf16"
            results[prec] = {}
            # TRL first, then ours: neither gets a warmer machine by position every time.
            for sampling in samplings:
                r = run_trl(py, data, model, threads, bf16, root / f"trl-{prec}-{sampling}",
                            sampling, gradient_checkpointing=ckpt)  # fmt: skip
                results[prec][f"trl {r['trl']} {sampling}"] = r
            results[prec]["judge_rl"] = run_ours(data, model, threads, bf16, root / f"ours-{prec}",
                                                 gradient_checkpointing=ckpt)  # fmt: skip
            if not ckpt:
                commands[prec] = run_cli(data, model, threads, bf16, root / f"cli-{prec}", n)
        print(f"load average after: {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)")
        print()
        print(
            "window: first step's start to last step's end on both sides (no saving inside); "
            "positions = token positions the model ran in training forwards (padding included, "
            "a shared prompt once)"
        )
        print(
            f"{'prec':6}{'tool':26}{'pairs/s':>9}{'pairs/CPUs':>11}{'tokens/s':>10}"
            f"{'tok/pair':>11}{'final':>9}{'mean':>9}"
        )
        for prec, sides in results.items():
            for side, r in sides.items():
                print(_row(prec, side, r))
        once, both = real_tokens(data, model)
        for prec, sides in results.items():
            for side, r in sides.items():
                floor = once if side == "judge_rl" else both
                run = r["positions"] / r["pairs"]
                print(
                    f"padding {prec} {side}: {1 - floor / run:.1%} of the positions run "
                    f"({floor:.1f} real tokens per pair"
                    f"{': the shared prompt once' if side == 'judge_rl' else ''})"
                )
        for prec, sides in results.items():
            ours = sides["judge_rl"]
            for side, trl in sides.items():
                if side == "judge_rl":
                    continue
                tag = side.split()[-1]
                ratio = ours["pairs_per_s"] / trl["pairs_per_s"]
                cpu = (ours["pairs"] / ours["cpu_s"]) / (trl["pairs"] / trl["cpu_s"])
                work = (trl["positions"] / trl["pairs"]) / (ours["positions"] / ours["pairs"])
                speed = (ours["positions"] / ours["wall_s"]) / (trl["positions"] / trl["wall_s"])
                speed_cpu = (ours["positions"] / ours["cpu_s"]) / (trl["positions"] / trl["cpu_s"])
                dl = ours["mean_loss"] - trl["mean_loss"]
                print(
                    f"RATIO reward_model_train_{prec}{tag_ckpt}_pairs_per_s judge_rl/trl[{tag}] = "
                    f"{ratio:.2f}x wall, {cpu:.2f}x CPU time = {work:.2f}x less token work "
                    f"(positions per pair) x {speed:.2f}x tokens/s ({speed_cpu:.2f}x tokens per "
                    f"CPU s); mean loss diff {dl:+.3f}"
                )
        for prec, sides in results.items():
            for side, r in sides.items():
                steps = max(1, r["steps"])
                print(
                    f"recomputed {prec} {side}: {r['recomputed'] / steps:.1f} decoder-layer "
                    f"calls per step in the backward ({r['recomputed']} in {steps} steps); "
                    f"{r['positions'] / r['pairs']:.1f} positions per pair"
                    + (f"; shared prefix: {r['shared_prefix']}" if side == "judge_rl" else "")
                )
        if not commands:
            print(f"load average at the end: {os.getloadavg()[0]:.1f}")
            return 0
        print()
        print(
            "command, end to end (process start to exit: imports, reading the pairs file, "
            "tokenising, loading the model, training, saving the model)"
        )
        print(f"{'prec':6}{'tool':44}{'pairs/s':>9}{'pairs/CPUs':>11}{'wall s':>8}")
        for prec, sides in results.items():
            rows = {
                f"trl {side.split()[1]} {side.split()[-1]} (script)": r["process"]
                for side, r in sides.items()
                if side != "judge_rl"
            }
            rows["judge_rl (python -m judge_rl train-rm)"] = commands[prec]
            for side, r in rows.items():
                print(
                    f"{prec:6}{side:44}{n / r['wall_s']:9.2f}{n / r['cpu_s']:11.2f}"
                    f"{r['wall_s']:8.1f}"
                )
        for prec, sides in results.items():
            cmd = commands[prec]
            for side, trl in sides.items():
                if side == "judge_rl":
                    continue
                tag, proc = side.split()[-1], trl["process"]
                print(
                    f"RATIO reward_model_command_{prec}_pairs_per_s judge_rl/trl[{tag}] = "
                    f"{proc['wall_s'] / cmd['wall_s']:.2f}x wall, "
                    f"{proc['cpu_s'] / cmd['cpu_s']:.2f}x CPU time (process start to exit)"
                )
                # What each process spends outside its training window (imports, reading,
                # tokenising, loading, the start-up check, saving, exit): TRL's from its own
                # process; judge_rl's command minus the library run's window (same data and
                # settings, another process: an estimate).
                print(
                    f"outside the training window, {prec}: TRL script "
                    f"{proc['cpu_s'] - trl['cpu_s']:.1f} s CPU ({proc['wall_s'] - trl['wall_s']:.1f}"
                    f" s wall), judge-rl train-rm {cmd['cpu_s'] - sides['judge_rl']['cpu_s']:.1f} "
                    f"s CPU ({cmd['wall_s'] - sides['judge_rl']['wall_s']:.1f} s wall)"
                )
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        if "fp32" in results and "bf16" in results:
            best = max(r["judge_rl"]["pairs_per_s"] for r in results.values())
            best_trl = max(
                r["pairs_per_s"]
                for sides in results.values()
                for k, r in sides.items()
                if k != "judge_rl"
            )
            print(
                f"RATIO reward_model_train_best_pairs_per_s judge_rl/trl = {best / best_trl:.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
