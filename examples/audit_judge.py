"""Audit judges against human labels before trusting them, and compare them side by side.

What it shows: ``judge-rl audit`` on HH-RLHF pairs with human labels. Each judge sees every pair
in both orders; the audit reports agreement with the humans (accuracy, Cohen's kappa), position
consistency and first-position bias, length bias, verdict-injection flip rates and failures, each
with a bootstrap 95% interval, into ``reports/<run>/log.json``. The script runs the audit for
several judges and prints the headline metrics in one table, so a biased judge stands out:

- ``pairwise-embedded``: the embedded SmolLM2-135M judge (label probabilities, both orders);
- ``mock-pairwise``: a scripted judge that always prefers the longer response (length bias);
- ``examples/judges/mock-first``: a scripted judge that always picks the first response shown
  (pure position bias: consistency 0, every pair a tie once both orders are asked).

Run:

    python examples/audit_judge.py                                     # the three judges above
    python examples/audit_judge.py --judge pairwise --sample 200       # an API judge (key in env)
    python examples/audit_judge.py --judge my_judge.yaml --human my_labels.jsonl

The same for one judge on the command line:

    judge-rl audit --judge pairwise-embedded \\
        --human examples/data/hh_rlhf/harmless-base_test_300.jsonl.gz --sample 50
    judge-rl report reports/audit-pairwise-embedded

Small budget (what the test runs): ``--quick`` or ``JUDGE_RL_EXAMPLES_QUICK=1`` audits the two
mock judges on 20 pairs (no model, no cache).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_HUMAN = HERE / "data" / "hh_rlhf" / "harmless-base_test_300.jsonl.gz"
MOCK_FIRST = HERE / "judges" / "mock-first" / "judge.yaml"
HEADLINE = [
    ("accuracy", "accuracy"),
    ("kappa", "kappa"),
    ("position_consistency", "pos. consistency"),
    ("p_first_wins", "P(first wins)"),
    ("p_longer_wins_judge", "P(longer wins)"),
    ("injection_flip_rate", "injection flips"),
    ("failure_rate", "failures"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--judge", action="append", help="judge name or judge.yaml (repeatable)")
    p.add_argument("--human", default=str(DEFAULT_HUMAN), help="human-labelled preference file")
    p.add_argument("--sample", type=int, default=50, help="pairs to audit")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds for the CIs")
    p.add_argument("--no-cache", action="store_true", help="do not use the judgment cache")
    p.add_argument("--quick", action="store_true", help="mock judges, 20 pairs")
    args = p.parse_args(argv)
    if args.quick or os.environ.get("JUDGE_RL_EXAMPLES_QUICK"):
        args.judge = args.judge or ["mock-pairwise", str(MOCK_FIRST)]
        args.sample, args.bootstrap, args.no_cache = min(args.sample, 20), 100, True
    args.judge = args.judge or ["pairwise-embedded", "mock-pairwise", str(MOCK_FIRST)]
    return args


def cell(m: object) -> str:
    """``0.62 [0.51, 0.73]`` for a metric, ``-`` where it could not be computed."""
    value = getattr(m, "value", None)
    if value is None or value != value:  # None or NaN
        return "-"
    lo, hi = getattr(m, "lo", None), getattr(m, "hi", None)
    ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    return f"{value:.2f}{ci}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from judge_rl.cli import main as judge_rl
    from judge_rl.runlog import load

    audits = {}
    for judge in args.judge:
        name = Path(judge).parent.name if judge.endswith(".yaml") else judge
        run = f"reports/example-audit-{name}"
        cli = [
            "audit",
            "--judge",
            judge,
            "--human",
            args.human,
            "--sample",
            str(args.sample),
            "--bootstrap",
            str(args.bootstrap),
            "--seed",
            "0",
            "--output",
            run,
        ]
        if args.no_cache:
            cli.append("--no-cache")
        rc = judge_rl(cli)
        if rc:
            return rc
        section = load(run).audit
        assert section is not None
        audits[name] = section

    # Side by side: agreement with humans, then the biases that explain disagreement.
    width = max(len(n) for n in audits) + 2
    print("\n" + "metric".ljust(18) + "".join(n.ljust(max(width, 22)) for n in audits))
    for key, label in HEADLINE:
        row = [cell(a.metrics.get(key)) for a in audits.values()]
        print(label.ljust(18) + "".join(c.ljust(max(width, 22)) for c in row))
    print(
        f"({args.sample} human-labelled pairs from {Path(args.human).name}, 95% bootstrap CIs; "
        "a judge worth using has high accuracy and consistency, P(first wins) near 0.5, "
        "few injection flips)"
    )
    return 0


if __name__ == "__main__":
    from judge_rl.errors import JudgeRLError

    try:
        sys.exit(main())
    except JudgeRLError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
