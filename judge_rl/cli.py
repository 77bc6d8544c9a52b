"""``judge-rl``: the command line. Subcommands live in :mod:`judge_rl.commands`, one module each.

Each command module defines ``add_parser(subparsers)`` (cheap: argparse only) and ``run(args)``
(imports what it needs). ``judge-rl --help`` therefore imports no heavy library.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from judge_rl.errors import EXIT_USER_ERROR, JudgeRLError

COMMANDS: dict[str, str] = {
    "data": "judge_rl.commands.data",
    "models": "judge_rl.commands.models",
    "generate": "judge_rl.commands.generate",
    "label": "judge_rl.commands.label",
    "audit": "judge_rl.commands.audit",
    "train-rm": "judge_rl.commands.train_rm",
    "score": "judge_rl.commands.score",
    "ppo": "judge_rl.commands.ppo",
    "probe": "judge_rl.commands.probe",
    "overopt": "judge_rl.commands.overopt",
    "ratings": "judge_rl.commands.ratings",
    "winrate": "judge_rl.commands.winrate",
    "tournament": "judge_rl.commands.tournament",
    "report": "judge_rl.commands.report",
    "demo": "judge_rl.commands.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="judge-rl",
        description="RLAIF and evaluation with AI judges: label preferences, train reward models, "
        "run PPO, rank models in tournaments, and catch reward over-optimisation.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--version", action="version", version=f"judge_rl {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("judge_rl")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from judge_rl.console import err_console

    try:
        rc = args.func(args)
    except JudgeRLError as e:
        from rich.markup import escape

        # escape: messages quote user data (labels, paths) that may look like rich markup
        err_console().print(
            f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True
        )
        return e.exit_code
    except KeyboardInterrupt:
        err_console().print("interrupted; finished work is saved")
        return 130
    return int(rc or 0)


def run() -> None:  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":
    run()
