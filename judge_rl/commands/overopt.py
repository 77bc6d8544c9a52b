"""``judge-rl overopt RUN_DIR --gold SPEC``: over-optimisation analysis of a finished PPO run."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "overopt",
        help="analyse a finished PPO run's checkpoints: proxy vs gold reward vs KL",
        description="For the initial policy and every checkpoint of a `judge-rl ppo` run: sample "
        "held-out prompts, score with the proxy (the run's reward) and a gold reward, measure KL "
        "to the initial policy, fit Gao et al.'s gold(KL) curve, apply the over-optimisation "
        "alarm and recommend the best checkpoint by gold. Example: judge-rl overopt reports/ppo-x "
        "--gold judge:pointwise-embedded --prompts heldout.jsonl",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the PPO run folder (holding log.json)")
    p.add_argument(
        "--gold",
        required=True,
        metavar="SPEC",
        help="gold reward: judge:NAME, verifier[:MODE], rm:PATH, pairwise:NAME, or a judge name",
    )
    p.add_argument(
        "--prompts",
        metavar="FILE",
        help="held-out prompts (default: the run's training prompts, with a warning)",
    )
    p.add_argument("--proxy", metavar="SPEC", help="proxy reward (default: the run's --reward)")
    p.add_argument(
        "--max-prompts", type=int, default=64, metavar="N", help="at most N prompts [64]"
    )
    p.add_argument("--samples", type=int, default=1, metavar="K", help="samples per prompt [1]")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="default: the run's")
    p.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        metavar="X",
        help="run-level false-alarm rate of the alarm [0.05]",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="sampling seed [0]")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: CUDA when present")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.add_argument("--run", metavar="NAME", help="output run name [overopt-<run>]")
    p.set_defaults(func=run)


def _gold_source(spec: str) -> Any:
    """A reward spec; a bare judge name means ``judge:NAME``."""
    from judge_rl.train.reward_sources import KINDS, make_reward_source

    head = spec.split("*")[-1].split(":")[0].strip()
    if head not in KINDS and "+" not in spec:
        spec = f"judge:{spec}"
    return make_reward_source(spec)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from judge_rl import runlog
    from judge_rl.console import err_console, progress
    from judge_rl.errors import ConfigError
    from judge_rl.overopt.offline import OfflineConfig, analyse_run
    from judge_rl.overopt.stats import AlarmConfig

    for name in ("max_prompts", "samples"):
        if getattr(args, name) < 1:
            raise ConfigError("must be a positive integer", setting="--" + name.replace("_", "-"))
    if not 0 < args.alpha < 1:
        raise ConfigError(f"must be in (0, 1), got {args.alpha}", setting="--alpha")
    src = runlog.load(args.run_dir)
    run_path = Path(args.run_dir)
    gold = _gold_source(args.gold)
    proxy = _gold_source(args.proxy) if args.proxy else None
    from judge_rl.data import read_prompts

    if args.prompts:
        prompts = read_prompts(args.prompts)
    else:
        spec = (src.config or {}).get("prompts")
        if not spec:
            raise ConfigError(
                "the run log records no prompts; give --prompts FILE", setting="prompts"
            )
        prompts = read_prompts(str(spec))
        err_console().print(
            "warning: no --prompts: using the run's training prompts (not held out)",
            highlight=False,
        )
    prompts = prompts[: args.max_prompts]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    name = args.run or f"overopt-{run_path.resolve().name}"
    out_dir = runlog.run_dir(name)
    settings = {
        "source_run": str(run_path),
        "gold": gold.name,
        "proxy": args.proxy,
        "prompts": args.prompts,
        "max_prompts": args.max_prompts,
        "samples": args.samples,
        "max_new_tokens": args.max_new_tokens,
        "alpha": args.alpha,
        "seed": args.seed,
    }
    previous = None
    if (out_dir / "log.json").exists():  # resume: reuse checkpoints done with the same settings
        try:
            old = runlog.load(out_dir)
            if old.config == settings and old.overopt is not None:
                previous = old.overopt
        except Exception:
            previous = None
    log = runlog.new_log("overopt", out_dir.name, settings)
    for fp in getattr(gold, "fingerprints", []):
        log.add_judge(fp)
    cfg = OfflineConfig(
        samples_per_prompt=args.samples,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        device=args.device,
        alarm=AlarmConfig(alpha=args.alpha),
    )

    def save(section: Any) -> None:
        log.overopt = section
        log.save(out_dir)

    with progress() as bar:
        task = bar.add_task("checkpoints", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        section = analyse_run(
            src,
            gold,
            prompts,
            proxy=proxy,
            run_path=run_path,
            config=cfg,
            previous=previous,
            on_point=save,
            progress=tick,
        )
    save(section)
    _print(section, out_dir)
    return 0


def _fmt(x: Any, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _print(section: Any, out_dir: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from judge_rl.console import console

    out = console()
    t = Table(title=f"over-optimisation: proxy {section.proxy} vs gold {section.gold}")
    for col in ("step", "KL", "proxy [95% CI]", "gold [95% CI]", "degeneration"):
        t.add_column(col, justify="right" if col != "degeneration" else "left")
    best = (section.best_checkpoint or {}).get("step")
    for p in section.points:
        mark = " *" if p["step"] == best else ""
        t.add_row(
            f"{p['step']}{mark}",
            _fmt(p.get("kl"), 2),
            f"{_fmt(p.get('proxy_mean'))} [{_fmt(p.get('proxy_lo'))}, {_fmt(p.get('proxy_hi'))}]",
            f"{_fmt(p.get('gold_mean'))} [{_fmt(p.get('gold_lo'))}, {_fmt(p.get('gold_hi'))}]",
            escape(", ".join(p.get("degeneration_flags") or [])),
        )
    out.print(t)
    fit = section.fit or {}
    if fit.get("kl_peak") is not None:
        out.print(
            f"Gao et al. fit: alpha {fit['alpha']:.3f}, beta {fit['beta']:.3f}, R² "
            f"{_fmt(fit.get('r2'), 2)}; gold peaks at KL {fit['kl_peak']:.2f}",
            highlight=False,
        )
    elif fit.get("note"):
        out.print(f"Gao et al. fit: {escape(fit['note'])}", highlight=False)
    for a in section.alarms:
        out.print(f"ALARM at step {a['step']}: {escape(a['message'])}", highlight=False)
    if not section.alarms:
        out.print("no over-optimisation alarm", highlight=False)
    b = section.best_checkpoint or {}
    if b:
        out.print(
            f"recommended checkpoint (best by gold): step {b['step']}, gold {_fmt(b.get('gold'))}: "
            f"{escape(str(b.get('path')))}",
            highlight=False,
        )
    out.print(f"run log: {escape(str(out_dir / 'log.json'))}", highlight=False)
