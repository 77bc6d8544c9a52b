"""``judge-rl verify``: check one response against a reference from the shell.

The same checker as the ``verifier:`` reward and the ``gsm8k-exact`` / ``math-equiv`` judges
(:func:`judge_rl.judge.verify.check`). Exit status: 0 a verdict (correct or not; ``--strict``
makes "incorrect" 1), 1 no verdict (a timeout or an engine error, with its kind), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

# Copies of judge_rl.judge.verify.MODES / DEFAULT_TIMEOUT_S: importing that module here would load
# pydantic and asyncio for every `judge-rl --help` (tests/judge/test_verify_cli.py keeps them equal).
MODES = ("auto", "exact", "numeric", "gsm8k", "boxed", "choice", "symbolic")
DEFAULT_TIMEOUT_S = 2.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify",
        help="check one response against a reference answer (no model; nothing executed)",
        description="Extract the final answer from RESPONSE and check it against --reference "
        "under --mode (see docs/verify.md for the forms each mode accepts). RESPONSE '-' reads "
        "standard input.",
    )
    p.add_argument("response", metavar="RESPONSE", help="the response text, or - for stdin")
    p.add_argument("--reference", required=True, metavar="R", help="the reference answer")
    p.add_argument("--mode", choices=MODES, default="auto", help="verifier mode (default: auto)")
    p.add_argument(
        "--tolerance", type=float, default=1e-6, help="numeric tolerance (numeric, gsm8k modes)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"CPU seconds one math check may take (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when the answer is incorrect (for scripts)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from rich.markup import escape

    from judge_rl.console import console
    from judge_rl.errors import ConfigError, DataError
    from judge_rl.judge.verify import check

    if args.timeout <= 0:
        raise ConfigError("must be positive", setting="--timeout")
    response = sys.stdin.read() if args.response == "-" else args.response
    try:
        c = check(response, args.reference, args.mode, args.tolerance, args.timeout)
    except DataError as e:
        raise ConfigError(e.reason, setting="--reference") from None
    verdict = "error" if c.error else "correct" if c.correct else "incorrect"
    if args.json:
        out = {
            "verdict": verdict,
            "correct": c.correct,
            "mode": args.mode,
            "checked_as": c.how,
            "extracted": c.extracted,
            "reference": c.reference,
            "error": c.error,
            "detail": c.detail,
        }
        console().print_json(json.dumps(out))
    else:
        colour = {"correct": "green", "incorrect": "red", "error": "yellow"}[verdict]
        con = console()
        con.print(f"[bold {colour}]{verdict}[/]", highlight=False)
        con.print(f"extracted: {escape(repr(c.extracted))}", highlight=False)
        con.print(f"reference: {escape(repr(c.reference))}  (checked as {c.how})", highlight=False)
        if c.detail:
            con.print(f"note: {escape(c.detail)}", highlight=False)
        if c.error:
            kind = c.error.split(":", 1)[0]
            con.print(f"1 check failed ({kind}: 1): {escape(c.error)}", highlight=False)
    if c.error:
        return 1
    return 1 if args.strict and not c.correct else 0
