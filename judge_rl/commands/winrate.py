"""``judge-rl winrate``: not implemented yet (placeholder so the command table is complete)."""

from __future__ import annotations

import argparse

from judge_rl.errors import JudgeRLError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("winrate", help="(not implemented yet)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise JudgeRLError("`judge-rl winrate` is not implemented yet")
