"""GPU acceptance check for training (``make gpu-check``; never run by CI).

On a CUDA machine, trains PPO for a few steps with the embedded model (SmolLM2-135M) in bf16 mixed
precision (fp32 master weights), with transformers rollouts and, when vLLM is installed, with vLLM
rollouts; then, when the machine has two GPUs and DeepSpeed, a 2-process run under ZeRO-3. Prints
one PASS/FAIL/SKIP line per check and a summary; exit status 1 when any check failed, 2 when
there is no GPU.

Checks:
- ``kl_step1_zero``: the step-1 KL is exactly 0 (rollout, pi_old and reference under one autocast);
- ``kl_finite``: every step's KL is finite;
- ``weights_change``: >= 99% of the trainable weights changed (fp32 master weights, not bf16);
- ``reward_moves``: the mean reward of the second half of the steps differs from the first half
  (reward = -length/100: shorter answers, a signal 135M learns in a few steps at lr 3e-5);
- ``checkpoint_reloads``: the final checkpoint loads with ``load_policy_checkpoint`` and gives the
  live policy's logits;
- ``vllm_logprob_gap``: mean |log pi_trainer - log pi_vllm| per token < 0.05 at every step (the
  weights pushed into the engine after each update are the ones trained);
- ``zero3_2proc``: 2 processes under DeepSpeed ZeRO-3 finish 2 steps with finite KL and a
  reloadable checkpoint.

    python scripts/gpu_check.py [--steps 4] [--out /tmp/gpu-check] [--skip-vllm] [--skip-zero3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS: list[tuple[str, str, str]] = []


def record(name: str, ok: bool | None, detail: str) -> None:
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    RESULTS.append((name, status, detail))
    print(f"{status:5} {name:20} {detail}", flush=True)


def prompts(n: int = 32) -> list[str]:
    return [f"Tell me one fact about the number {i}." for i in range(n)]


def ppo_run(
    out: Path, rollout: str, steps: int, device: str = "cuda", policy: str = "embedded"
) -> dict[str, Any]:
    """A short bf16 PPO run on the embedded model; returns what the checks need."""
    import torch

    from judge_rl.train.ppo import PPOConfig, PPOTrainer
    from judge_rl.train.precision import trainable_fraction_changed

    cfg = PPOConfig(
        policy=policy,
        reward="-0.01*length",
        steps=steps,
        batch_size=16,
        mini_batch_size=8,
        ppo_epochs=2,
        lr=3e-5,
        max_new_tokens=48,
        mixed_precision="bf16",
        rollout=rollout,
        output=str(out),
        device=device,
        seed=0,
        vllm_sleep=rollout == "vllm",
    )
    trainer = PPOTrainer(cfg, prompts=prompts())
    before = {k: v.detach().clone() for k, v in trainer.unwrapped.named_parameters()}
    t0 = time.perf_counter()
    section = trainer.train()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], device=trainer.device)
    with torch.no_grad():
        live = trainer.policy(input_ids=ids).logits.float().cpu()
    return {
        "steps": section.steps,
        "changed": trainable_fraction_changed(before, trainer.unwrapped),
        "live_logits": live,
        "ids": ids.cpu(),
        "final": out / f"checkpoint-{steps:06d}",
        "time_s": time.perf_counter() - t0,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0,
        "device": device,
    }


def check_run(tag: str, r: dict[str, Any]) -> None:
    import torch

    from judge_rl.models import load_policy_checkpoint

    steps = r["steps"]
    kl = [s["kl"] for s in steps]
    record(f"{tag}:kl_step1_zero", kl[0] == 0.0, f"step-1 KL {kl[0]!r}")
    record(f"{tag}:kl_finite", all(math.isfinite(k) for k in kl), f"KL per step {kl}")
    record(f"{tag}:weights_change", r["changed"] >= 0.99, f"{100 * r['changed']:.2f}% changed")
    rew = [s["reward_mean"] for s in steps]
    half = max(1, len(rew) // 2)  # first half vs the rest: never the same steps
    first, last = sum(rew[:half]) / half, sum(rew[half:]) / max(len(rew) - half, 1)
    record(f"{tag}:reward_moves", last != first, f"reward {first:.4f} -> {last:.4f}")
    try:
        m = load_policy_checkpoint(r["final"], device=r["device"])
        with torch.no_grad():
            got = m(input_ids=r["ids"].to(r["device"])).logits.float().cpu()
        err = float((got - r["live_logits"]).abs().max())
        record(f"{tag}:checkpoint_reloads", err < 1e-3, f"max |logit diff| {err:.2e}")
    except Exception as e:  # noqa: BLE001 - a check reports, it does not crash
        record(f"{tag}:checkpoint_reloads", False, f"{type(e).__name__}: {e}")
    print(f"      {tag}: {r['time_s']:.1f} s, peak CUDA memory {r['peak_gb']:.2f} GiB", flush=True)


def zero3(out: Path, steps: int) -> None:
    import torch

    if torch.cuda.device_count() < 2:
        record("zero3_2proc", None, f"{torch.cuda.device_count()} GPU(s): needs 2")
        return
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        record("zero3_2proc", None, "deepspeed is not installed")
        return
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "examples/scale_out/deepspeed_zero3.yaml"),
        "--num_processes",
        "2",
        __file__,
        "--worker-zero3",
        str(out),
        "--steps",
        str(steps),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    res = out / "zero3.json"
    if r.returncode != 0 or not res.exists():
        record("zero3_2proc", False, f"exit {r.returncode}: {r.stderr[-800:]}")
        return
    data = json.loads(res.read_text())
    ok = all(math.isfinite(k) for k in data["kl"]) and data["reloads"]
    record("zero3_2proc", ok, json.dumps(data))


def zero3_worker(out: Path, steps: int) -> None:
    from accelerate import PartialState

    from judge_rl.models import load_policy_checkpoint
    from judge_rl.train.ppo import PPOConfig, PPOTrainer

    cfg = PPOConfig(
        policy="embedded",
        reward="-0.01*length",
        steps=steps,
        batch_size=8,
        mini_batch_size=8,
        ppo_epochs=1,
        lr=3e-5,
        max_new_tokens=32,
        output=str(out / "zero3"),
        seed=0,
    )
    section = PPOTrainer(cfg, prompts=prompts()).train()
    if PartialState().is_main_process:
        ok = True
        try:
            load_policy_checkpoint(out / "zero3" / f"checkpoint-{steps:06d}")
        except Exception:  # noqa: BLE001
            ok = False
        (out / "zero3.json").write_text(
            json.dumps({"kl": [s["kl"] for s in section.steps], "reloads": ok})
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--skip-zero3", action="store_true")
    ap.add_argument("--worker-zero3", default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="exercise this script's checks on CPU with a tiny model (bf16 autocast on CPU); "
        "not an acceptance result",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker_zero3:
        zero3_worker(Path(args.worker_zero3), args.steps)
        return 0
    import torch

    if args.cpu_smoke:
        from judge_rl.models import save_tiny_model

        out = Path(args.out or tempfile.mkdtemp(prefix="gpu-check-smoke-"))
        tiny = save_tiny_model(out / "tiny", hidden_size=64, num_layers=2)
        check_run("cpu-smoke", ppo_run(out / "hf", "hf", args.steps, "cpu", str(tiny)))
        failed = [n for n, st, _ in RESULTS if st == "FAIL"]
        print(f"gpu-check --cpu-smoke: {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0

    if not torch.cuda.is_available():
        print("no CUDA device: make gpu-check needs a GPU", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-check-"))
    for tag, rollout in (("hf", "hf"), ("vllm", "vllm")):
        if rollout == "vllm":
            try:
                import vllm  # noqa: F401
            except ImportError:
                record("vllm", None, "vLLM is not installed")
                continue
            if args.skip_vllm:
                record("vllm", None, "--skip-vllm")
                continue
        try:
            r = ppo_run(out / tag, rollout, args.steps)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            record(f"{tag}:run", False, f"{type(e).__name__}: {e}")
            continue
        check_run(tag, r)
        if rollout == "vllm":
            gaps = [s.get("logprob_gap_mean", float("nan")) for s in r["steps"]]
            ok = all(math.isfinite(g) and g < 0.05 for g in gaps)
            record("vllm:logprob_gap", ok, f"mean |gap| per step {gaps}")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if args.skip_zero3:
        record("zero3_2proc", None, "--skip-zero3")
    else:
        zero3(out, 2)
    failed = [n for n, s, _ in RESULTS if s == "FAIL"]
    passed = sum(1 for _, s, _ in RESULTS if s == "PASS")
    skipped = sum(1 for _, s, _ in RESULTS if s == "SKIP")
    print(f"gpu-check: {passed} passed, {len(failed)} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
