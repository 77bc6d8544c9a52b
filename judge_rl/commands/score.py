"""``judge-rl score``: score candidate responses with a trained reward model."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "score",
        help="score candidates with a reward model",
        description="Score each candidate (prompt, response) with a reward model folder written "
        "by `judge-rl train-rm`. Writes the candidates back with metadata.reward set.",
    )
    p.add_argument("--reward-model", required=True, metavar="DIR", help="reward model folder")
    p.add_argument(
        "--input",
        required=True,
        metavar="CANDIDATES",
        help="candidates (JSONL from `judge-rl generate`, MT-Bench answer file, ...)",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="output JSONL: the candidates with metadata.reward",
    )
    p.add_argument("--batch-size", type=int, default=16, help="sequences per batch (default 16)")
    p.add_argument(
        "--max-length",
        type=int,
        default=1024,
        help="longer inputs are cut from the left (default 1024)",
    )
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if present)")
    p.add_argument("--run", default=None, metavar="NAME", help="run name (reports/NAME/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from collections import defaultdict
    from pathlib import Path

    from rich.markup import escape
    from rich.table import Table
    from transformers.utils import logging as hf_logging

    from judge_rl.console import console, progress
    from judge_rl.data import read_candidates, write_candidates
    from judge_rl.errors import ConfigError, DataError
    from judge_rl.runlog import new_log, run_dir
    from judge_rl.train.reward_model import RewardModelScorer

    hf_logging.disable_progress_bar()  # our bar only, no "Writing model shards" lines
    if not Path(args.input).exists():
        raise ConfigError(f"{args.input}: no such file", setting="input")
    cands = read_candidates(args.input)
    if not cands:
        raise DataError("no candidates to score", file=args.input)
    scorer = RewardModelScorer(
        args.reward_model,
        device=args.device,
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    t0 = time.perf_counter()
    scores: list[float] = []
    chunk = max(args.batch_size * 4, 64)
    with progress() as bar:
        task = bar.add_task("score", total=len(cands))
        for s in range(0, len(cands), chunk):
            part = cands[s : s + chunk]
            scores += scorer.score([c.prompt for c in part], [c.response for c in part])
            bar.advance(task, len(part))
    for c, r in zip(cands, scores, strict=True):
        c.metadata["reward"] = r
        c.metadata["reward_model"] = str(args.reward_model)
    out = write_candidates(cands, args.output)
    elapsed = time.perf_counter() - t0

    by_source: dict[str, list[float]] = defaultdict(list)
    for c, r in zip(cands, scores, strict=True):
        by_source[c.source or "-"].append(r)
    summary = {
        src: {"n": len(v), "mean": sum(v) / len(v), "min": min(v), "max": max(v)}
        for src, v in sorted(by_source.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))
    }
    name = args.run or ("score-" + time.strftime("%Y%m%d-%H%M%S"))
    log = new_log("score", name, {k: str(v) for k, v in vars(args).items() if k != "func"})
    log.extra["score"] = {
        "reward_model": str(args.reward_model),
        "input": args.input,
        "output": str(out),
        "n": len(cands),
        "time_s": elapsed,
        "by_source": summary,
    }
    log_dir = run_dir(name)
    log.save(log_dir)

    t = Table(title=f"rewards ({len(cands)} candidates, {elapsed:.1f} s)")
    for col in ("source", "n", "mean", "min", "max"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for src, st in summary.items():
        t.add_row(
            escape(src), str(st["n"]), f"{st['mean']:.3f}", f"{st['min']:.3f}", f"{st['max']:.3f}"
        )
    console().print(t)
    console().print(f"wrote {out}; run log {log_dir}/log.json")
    return 0
