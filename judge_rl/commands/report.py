"""``judge-rl report``: render a run log as a terminal summary and/or one offline HTML file."""

from __future__ import annotations

import argparse

_DEFAULT = "__default__"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "report",
        help="show a run's summary in the terminal; write its single-file HTML report",
        description="Render reports/<run>/log.json: a terminal summary (sections the run has) and, "
        "with --html, one self-contained HTML file that works offline. Rendering never calls a "
        "model.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder (holding log.json) or a log.json")
    p.add_argument(
        "--html",
        nargs="?",
        const=_DEFAULT,
        default=None,
        metavar="PATH",
        help="write the HTML report (default: RUN_DIR/report.html) and print its path",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="RUN_DIR",
        help="other runs to compare with: headline figures side by side",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no terminal summary (with --html: print only the path)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from judge_rl import runlog
    from judge_rl._io import check_output_file
    from judge_rl.console import console

    target = None
    if args.html is not None:
        from judge_rl.report.html import default_path

        # checked before anything is rendered: a folder takes report.html inside it
        target = default_path(Path(args.run_dir)) if args.html == _DEFAULT else Path(args.html)
        if not target.is_dir():
            check_output_file(target, "--html")
    log = runlog.load(args.run_dir)
    others = [runlog.load(d) for d in args.compare]
    con = console()
    if not args.quiet:
        from judge_rl.report.terminal import print_comparison, print_report

        print_report(log, con)
        if others:
            print_comparison([log, *others], con)
    if target is not None:
        from judge_rl.report.html import write_report

        path = write_report(log, target, compare=others)
        if not args.quiet:
            con.print()
        con.print(str(path), markup=False, highlight=False, soft_wrap=True)
    return 0
