"""``judge-rl run PIPELINE.yaml``: run a pipeline spec stage by stage, resumably."""

from __future__ import annotations

import argparse
from typing import Any


def add_common(p: argparse.ArgumentParser, *, default_run: str | None) -> None:
    p.add_argument("--profile", default=None, help="a profile of the spec (its overrides)")
    p.add_argument(
        "--run",
        default=default_run,
        metavar="NAME",
        help="run folder (under reports/ unless a path); an existing one is resumed: finished "
        "stages with unchanged configs are not redone",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per stage (default: the cores free when the stage starts, measured "
        "from /proc/stat without counting this process; see docs/pipeline.md)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="run a pipeline spec (stages, configs, which outputs feed which inputs), resumably",
        description="Run the stages of a pipeline spec in order. Each stage's output goes to "
        "RUN/stages/<stage>.json and its record to RUN/log.json; running again on the same "
        "folder skips every finished stage whose config did not change.",
    )
    p.add_argument("spec", metavar="PIPELINE.yaml", help="pipeline spec (or a name in evals/)")
    add_common(p, default_run=None)
    p.set_defaults(func=run)


def execute(spec_path: Any, args: argparse.Namespace, *, title: str) -> int:
    """Validate, run and render a pipeline; shared by ``run`` and ``demo``."""
    import logging
    import time
    import warnings

    from judge_rl import runlog
    from judge_rl.console import console, err_console, progress
    from judge_rl.errors import ConfigError
    from judge_rl.pipeline.runner import run_pipeline, validate
    from judge_rl.pipeline.spec import read_pipeline

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"must be >= 1, got {args.threads}", setting="--threads")
    spec = read_pipeline(spec_path)
    profile = args.profile or spec.default_profile
    validate(spec, profile)  # every stage checked before anything runs
    warnings.filterwarnings("ignore")
    for name in ("transformers", "accelerate", "torch", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    run_dir = runlog.run_dir(args.run or spec.name or None)
    out = console()
    out.rule(f"{title} ({profile or 'default'}) — {spec_path}")
    t0 = time.perf_counter()

    def on_stage(rec: Any, i: int, n: int) -> None:
        what = (
            "done earlier, same config: skipped"
            if rec.status == "skipped"
            else (f"{rec.threads} thread{'s' if rec.threads != 1 else ''}")
        )
        err_console().print(
            f"[bold]\\[{i}/{n}] {rec.name}[/] ({rec.kind}; {what})  {time.perf_counter() - t0:.0f}s"
        )

    with progress() as bar:
        log = run_pipeline(
            spec, run_dir, profile=profile, threads=args.threads, on_stage=on_stage, progress=bar
        )

    from judge_rl.report.terminal import print_report

    print_report(log, out)
    out.rule("stages")
    for r in log.pipeline.stages if log.pipeline else []:
        out.print(
            f"{r.name:<11} {r.status:<8} wall {r.wall_s:7.1f}s  cpu {r.cpu_s:7.1f}s  "
            f"threads {r.threads}"
        )
    out.print(f"finished in {time.perf_counter() - t0:.0f}s")
    out.print(f"run log: {run_dir / 'log.json'}")
    html = run_dir / "report.html"
    if html.exists():
        out.print(f"HTML report: {html}")
    return 0


def run(args: argparse.Namespace) -> int:
    from judge_rl.pipeline.spec import find_pipeline

    return execute(find_pipeline(args.spec), args, title="judge_rl run")
