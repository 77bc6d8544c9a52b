"""``judge-rl train-rm``: train a Bradley-Terry reward model on a preference file.

Runs on one process, or on several under ``torchrun``/``accelerate launch`` (DDP, same command).
The options mirror :class:`judge_rl.train.reward_model.RewardModelConfig` field by field.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train-rm",
        help="train a Bradley-Terry reward model on preference pairs",
        description="Train a reward model (causal LM + scalar head) so that chosen responses "
        "score above rejected ones. Writes a from_pretrained-loadable folder, checkpoints "
        "(resumable) and reports/<run>/log.json. Several processes: torchrun --nproc_per_node N "
        "-m judge_rl train-rm ... (or accelerate launch).",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="preference file (TRL prompt/chosen/rejected, HH-RLHF, pairwise, ...)",
    )
    p.add_argument(
        "--model",
        default="embedded",
        metavar="NAME_OR_PATH",
        help="backbone: model folder, hub name, or 'embedded' (default)",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data (default 1)")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    p.add_argument(
        "--batch-size", type=int, default=8, help="pairs per micro-batch per process (default 8)"
    )
    p.add_argument(
        "--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)"
    )
    p.add_argument(
        "--max-length", type=int, default=1024, help="token limit of prompt+response (default 1024)"
    )
    p.add_argument(
        "--truncation",
        choices=["drop", "left"],
        default="drop",
        help="over-long pairs: drop them (default) or cut from the left",
    )
    p.add_argument(
        "--soft-labels", action="store_true", help="train on p_chosen as a soft target (ties = 0.5)"
    )
    p.add_argument(
        "--margin", action="store_true", help="use each record's margin in the loss (Llama 2)"
    )
    p.add_argument(
        "--center-coef",
        type=float,
        default=0.0,
        help="centre-reward penalty weight (default 0; 0.01 is common)",
    )
    p.add_argument(
        "--eval-split",
        type=float,
        default=0.1,
        help="fraction held out for evaluation (default 0.1)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=100,
        help="evaluate every N steps (0 = at the end only; default 100)",
    )
    p.add_argument(
        "--save-every",
        type=int,
        default=200,
        help="checkpoint every N steps (0 = at the end only; default 200)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --output"
    )
    p.add_argument(
        "--run",
        "--run-name",
        dest="run",
        default=None,
        metavar="NAME",
        help="run name (reports/NAME/); under torchrun spell it --run-name",
    )
    p.add_argument(
        "--bf16",
        choices=["auto", "on", "off"],
        default="auto",
        help="bf16 autocast (auto: on for CUDA with bf16, off on CPU where it measured slower)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="stop after N optimizer steps in total (0 = all epochs)",
    )
    p.add_argument("--warmup-ratio", type=float, default=0.0, help="warm-up fraction (default 0)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per process (0 = idle cores / local processes)",
    )
    p.add_argument(
        "--attn",
        choices=["auto", "eager", "sdpa", "flash_attention_2"],
        default="auto",
        help="attention kernel (auto: sdpa)",
    )
    p.add_argument(
        "--no-shared-prefix",
        dest="shared_prefix",
        action="store_false",
        help="run chosen and rejected in full even where they share a prefix",
    )
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute each layer's activations in the backward (less memory, more compute; "
        "the shared prompt is still run once per pair)",
    )
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if present)")
    p.add_argument(
        "--mixed-precision",
        choices=["auto", "no", "bf16", "fp16"],
        default="auto",
        help="autocast dtype (auto: follow --bf16; fp16 needs a GPU and uses loss scaling)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        help="master weights: float32 (default; bf16-stored models are upcast), bfloat16, or auto",
    )
    p.add_argument(
        "--save-optimizer",
        action="store_true",
        help="keep the optimiser state in the final checkpoint (to train on past the end later)",
    )
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Any:
    from judge_rl.train.reward_model import RewardModelConfig

    return RewardModelConfig(
        data=args.data,
        model=args.model,
        output=args.output,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        truncation=args.truncation,
        soft_labels=args.soft_labels,
        margin=args.margin,
        center_coef=args.center_coef,
        eval_split=args.eval_split,
        eval_every=args.eval_every,
        save_every=args.save_every,
        seed=args.seed,
        resume=args.resume,
        run=args.run,
        bf16=args.bf16,
        max_steps=args.max_steps,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        threads=args.threads,
        attn=args.attn,
        shared_prefix=args.shared_prefix,
        gradient_checkpointing=getattr(args, "gradient_checkpointing", False),
        device=args.device,
        mixed_precision=args.mixed_precision,
        dtype=args.dtype,
        save_optimizer=args.save_optimizer,
    )


def run(args: argparse.Namespace) -> int:
    """The command. Python's cyclic garbage collector is paused for its set-up and the set-up's
    objects are left out of its collections while it trains (:class:`_CollectorPolicy`); at
    interpreter exit every object is frozen (:func:`_freeze_at_exit`). Neither changes what is
    computed (``tests/train/test_rm_command.py``: the weights equal the library path's, bit
    for bit)."""
    policy = _CollectorPolicy()
    try:
        return _run(args, policy)
    finally:
        policy.restore()


class _CollectorPolicy:
    """The cyclic garbage collector around the command (measured on the benchmark's command,
    ``benchmarks/bench_reward_model.py``: ~1.2 s of CPU less before the first step).

    - During the set-up (imports of torch and transformers, reading, tokenising, loading) it is
      off: it ran six full collections there (~0.9 s of CPU) over the ~400,000 objects the
      imports create, none of them garbage.
    - At the first step those objects are frozen (``gc.freeze``: out of every later collection)
      and the collector is back on: without the freeze its first collection walks all of them
      once more (0.4-0.9 s). The set-up leaves ~12,000 unreachable objects (functions, tuples,
      cells from the imports; no tensors): they stay until the command ends.
    - When the command returns, the frozen objects are collectable again (``gc.unfreeze``) and
      the collector is as it was: a caller that runs several commands in one process (the
      tests) keeps no memory from this one. A caller that froze objects itself is left alone
      (no freeze then)."""

    def __init__(self) -> None:
        import gc

        self.was_enabled = gc.isenabled()
        self.froze = False
        gc.disable()

    def training_starts(self) -> None:
        import gc

        if not self.was_enabled:
            return
        if gc.get_freeze_count() == 0 and not self.froze:
            gc.freeze()
            self.froze = True
        gc.enable()

    def restore(self) -> None:
        import gc

        if self.froze:
            gc.unfreeze()
            self.froze = False
        if self.was_enabled:
            gc.enable()
        else:
            gc.disable()


_EXIT_FREEZE = [False]


def _freeze_at_exit() -> None:
    """At interpreter exit (an ``atexit`` hook: only once the process ends, never inside a
    longer-lived caller such as a test session), move every object to the collector's permanent
    generation. Finalisation then skips its full collections over the ~400,000 objects torch and
    transformers leave: measured 1.8 s of CPU at exit without this, 0.3 s with it. Nothing is
    left unwritten: the command's files are closed by then, and the standard streams are flushed
    by the interpreter regardless."""
    import atexit
    import gc

    if not _EXIT_FREEZE[0]:
        atexit.register(gc.freeze)
        _EXIT_FREEZE[0] = True


def _run(args: argparse.Namespace, policy: _CollectorPolicy) -> int:
    import os
    import time

    from rich.progress import TextColumn
    from transformers.utils import logging as hf_logging

    from judge_rl.console import console, err_console, progress
    from judge_rl.runlog import new_log, run_dir
    from judge_rl.train.reward_model import RMEvent, config_dict, train_reward_model

    hf_logging.disable_progress_bar()  # our bar only, no "Writing model shards" lines
    _freeze_at_exit()
    cfg = _config(args)
    cfg.validate()
    main_process = int(os.environ.get("RANK", "0")) == 0
    name = cfg.run or ("train-rm-" + time.strftime("%Y%m%d-%H%M%S"))
    log_dir = run_dir(name) if main_process else None
    run_log = new_log("train-rm", name, config_dict(cfg)) if main_process else None

    bar = progress(TextColumn("{task.fields[info]}"))
    # A step takes 0.1-1 s: redrawing the bar 10 times a second (rich's default) cost 3.7% of a
    # core in a terminal (measured over 10 s of steps), twice a second 0.8%.
    bar.live.refresh_per_second = 2
    if not main_process:
        bar.disable = True
    task = bar.add_task("train-rm", total=None, info="")

    def hook(ev: RMEvent) -> None:
        if ev.kind == "start":
            policy.training_starts()  # set-up done: the collector back on
            bar.update(task, total=ev.total_steps, completed=ev.step)
        elif ev.kind == "step":
            m = ev.metrics
            bar.update(
                task,
                completed=ev.step,
                info=f"loss {m['loss']:.4f}  acc "
                f"{m['accuracy']:.2f}  {m['pairs_per_s']:.1f} pairs/s",
            )
        elif ev.kind == "eval":
            m = ev.metrics
            bar.console.log(
                f"eval @ {ev.step}: accuracy {m['accuracy']:.3f}, margin "
                f"{m['margin']:.3f}, ECE {m['ece']:.3f}, loss {m['loss']:.4f}"
            )

    with bar:
        result = train_reward_model(cfg, hooks=[hook], run_log=run_log, log_dir=log_dir)
    if not main_process:
        return 0
    _summary(result, log_dir, console(), err_console())
    return 0


def _summary(result: Any, log_dir: Any, out: Any, err: Any) -> None:
    from rich.table import Table

    f = result.final
    sec = result.section
    t = Table(title="reward model", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    rows = [
        ("pairs (train / eval)", f"{sec.n_train} / {sec.n_eval}"),
        ("truncated", str(sec.truncated)),
        ("steps", str(result.steps)),
        ("train loss", f"{f.get('train_loss', float('nan')):.4f}"),
    ]
    if "accuracy" in f:
        rows += [
            ("held-out accuracy", f"{f['accuracy']:.3f}"),
            ("mean margin", f"{f['margin']:.3f}"),
            ("ECE", f"{f['ece']:.3f}"),
            ("reward chosen / rejected", f"{f['chosen_mean']:.3f} / {f['rejected_mean']:.3f}"),
        ]
    rows += [
        ("time", f"{result.time_s:.1f} s ({result.pairs_per_s:.1f} pairs/s)"),
        ("model", str(result.output_dir)),
        ("run log", f"{log_dir}/log.json"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)
