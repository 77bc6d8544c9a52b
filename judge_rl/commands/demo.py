"""``judge-rl demo``: the whole RLAIF loop on the embedded model (what ``make demo`` runs)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo",
        help="run the whole loop on the embedded model: generate, label, audit, reward model, "
        "PPO with the over-optimisation monitor, tournament, report",
        description="The main job end to end on SmolLM2-135M-Instruct, CPU only, as specified by "
        "evals/demo.yaml. Writes reports/<run>/log.json and report.html.",
    )
    p.add_argument("--quick", action="store_true", help="the small profile (under 2 minutes)")
    p.add_argument("--profile", default=None, help="a profile of the spec (default: full)")
    p.add_argument("--spec", default=None, metavar="PATH", help="demo spec (evals/demo.yaml)")
    p.add_argument("--run", default="demo", metavar="NAME", help="run folder under reports/")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and training")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import time
    import warnings

    from judge_rl import runlog
    from judge_rl.console import console, err_console, progress
    from judge_rl.demo import Demo, find_spec, load_spec

    warnings.filterwarnings("ignore")
    for name in ("transformers", "accelerate", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    spec_path = find_spec(args.spec)
    spec = load_spec(spec_path)
    profile = args.profile or ("quick" if args.quick else "full")
    run_dir = runlog.run_dir(args.run)
    out = console()
    out.rule(f"judge_rl demo ({profile}) — {spec.policy}, judge {spec.judge}")
    t0 = time.perf_counter()

    with progress() as bar:

        def on_stage(name: str, i: int, n: int) -> None:
            err_console().print(f"[bold]\\[{i}/{n}] {name}[/]  ({time.perf_counter() - t0:.0f}s)")

        demo = Demo(
            spec, profile, run_dir, seed=args.seed, on_stage=on_stage, progress=bar, console=out
        )
        log = demo.run()

    from judge_rl.report.terminal import print_report

    print_report(log, out)
    total = time.perf_counter() - t0
    out.rule("done")
    out.print(f"demo finished in {total:.0f}s")
    out.print(f"run log: {run_dir / 'log.json'}")
    out.print(f"HTML report: {demo.report_path}")
    return 0
