"""A tournament over MT-Bench answer files of several models, ranked with Bradley-Terry.

What it shows: ``judge-rl tournament`` on the spec ``evals/tournament-mtbench.yaml`` (5 models'
published MT-Bench answers to 10 questions, shipped in ``examples/data/mt_bench/``): a judge
compares the answers pairwise in both orders, Bradley-Terry ratings with bootstrap intervals rank
the models, and the run log ``reports/<run>/log.json`` keeps every battle. The script then reads
the log and sets the ranking beside the published MT-Bench scores (GPT-4 as judge), with
Kendall's tau between the two orders.

Run (the spec's judge is the embedded SmolLM2-135M: offline, slow on CPU, and weak):

    python examples/tournament_mtbench.py                        # embedded judge, 100 comparisons
    python examples/tournament_mtbench.py --judge my_judge.yaml  # e.g. an API/vLLM judge spec
    python examples/tournament_mtbench.py --judge mock-pairwise  # dry run: prefers longer answers

The same without this script:

    judge-rl tournament evals/tournament-mtbench.yaml [--judge NAME] [--budget N] [--run NAME]
    judge-rl report reports/tournament-mtbench

A judge spec for a vLLM or OpenAI model is a copy of ``judges/pairwise/judge.yaml`` with
``base_url:`` and ``model:`` set (see docs/judges.md). Re-running resumes from the judgment cache.

Small budget (what the test runs): ``--quick`` or ``JUDGE_RL_EXAMPLES_QUICK=1`` uses the mock
judge, 20 comparisons and no cache.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "evals" / "tournament-mtbench.yaml"

# Published MT-Bench scores (GPT-4 single-answer grading, 1-10; Zheng et al. 2023, LMSYS
# leaderboard), for orientation only.
PUBLISHED = {
    "gpt-4": 8.99,
    "gpt-3.5-turbo": 7.94,
    "vicuna-13b-v1.3": 6.39,
    "alpaca-13b": 4.53,
    "llama-13b": 2.61,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", default=str(SPEC), help="tournament spec")
    p.add_argument("--judge", default=None, help="override the spec's judge (name or judge.yaml)")
    p.add_argument("--budget", type=int, default=None, help="comparisons (default: the spec's)")
    p.add_argument("--run", default="example-tournament-mtbench", help="reports/<run>/")
    p.add_argument("--no-cache", action="store_true", help="do not use the judgment cache")
    p.add_argument("--quick", action="store_true", help="mock judge, 20 comparisons")
    args = p.parse_args(argv)
    if args.quick or os.environ.get("JUDGE_RL_EXAMPLES_QUICK"):
        args.judge = args.judge or "mock-pairwise"
        args.budget = min(args.budget or 20, 20)
        args.no_cache = True
    return args


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall's tau-a between two score lists (no scipy needed).

    >>> kendall_tau([1, 2, 3], [10, 20, 30])
    1.0
    >>> kendall_tau([1, 2, 3], [3, 2, 1])
    -1.0
    """
    n = len(xs)
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            d = (xs[i] - xs[j]) * (ys[i] - ys[j])
            s += (d > 0) - (d < 0)
    return s / (n * (n - 1) / 2) if n > 1 else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from judge_rl.cli import main as judge_rl
    from judge_rl.runlog import load, run_dir

    # 1. The tournament, exactly as on the command line.
    cli = ["tournament", args.spec, "--run", args.run]
    if args.judge:
        cli += ["--judge", args.judge]
    if args.budget:
        cli += ["--budget", str(args.budget)]
    if args.no_cache:
        cli.append("--no-cache")
    rc = judge_rl(cli)
    if rc:
        return rc

    # 2. The run log: leaderboard (best first) with 95% bootstrap intervals.
    log = load(run_dir(args.run))
    assert log.tournament is not None
    board = log.tournament.leaderboard
    print("\nmodel              BT rating  95% CI            published MT-Bench")
    for row in board:
        pub = PUBLISHED.get(row["model"])
        print(
            f"{row['model']:<18} {row['rating']:>9.1f}  [{row['lo']:.0f}, {row['hi']:.0f}]"
            f"{'':>6}{pub if pub is not None else '-'}"
        )
    both = [r for r in board if r["model"] in PUBLISHED]
    tau = kendall_tau([r["rating"] for r in both], [PUBLISHED[r["model"]] for r in both])
    print(
        f"Kendall tau vs published order: {tau:+.2f} over {len(both)} models "
        f"({len(log.tournament.battles)} battles, judge {log.judges[0].name if log.judges else '?'})"
    )
    print(
        "A weak or mock judge will not reproduce the published order; audit a judge first "
        "(examples/audit_judge.py)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
