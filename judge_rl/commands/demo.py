"""``judge-rl demo``: ``evals/demo.yaml`` through the pipeline runner (what ``make demo`` runs)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from judge_rl.commands.run import add_common

    p = sub.add_parser(
        "demo",
        help="RLAIF on the embedded model, CPU only: learn, over-optimise, get caught "
        "(= judge-rl run evals/demo.yaml)",
        description="Runs evals/demo.yaml: the embedded SmolLM2-135M-Instruct learns single-digit "
        "sums by PPO against a hackable proxy; the over-optimisation monitor watches a verifier "
        "(gold); a tournament ranks the checkpoints. Writes reports/<run>/log.json and "
        "report.html.",
    )
    p.add_argument("--quick", action="store_true", help="the quick profile (the test suite's)")
    p.add_argument("--spec", default=None, metavar="PATH", help="demo spec (evals/demo.yaml)")
    add_common(p, default_run="demo")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from judge_rl.commands.run import execute
    from judge_rl.demo import find_spec

    if args.quick and not args.profile:
        args.profile = "quick"
    return execute(find_spec(args.spec), args, title="judge_rl demo")
