"""``judge-rl winrate``: win rates against a baseline, optionally length-controlled."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "winrate",
        help="win rate of each model against a baseline (AlpacaEval files as they are)",
        description="Win rates against a baseline from AlpacaEval annotation files (instruction, "
        "output_1, output_2, generator_1, generator_2, preference), judge_rl run logs (label "
        "section) or battle rows (model_a, model_b, winner, optional output_a/output_b): mean "
        "preference ± SE (soft labels fractional, ties half), discrete win rate, W/D/L, and with "
        "--length-controlled the LC win rate of Dubois et al. (2024).",
    )
    p.add_argument("judgments", metavar="JUDGMENTS_FILE", help=".json, .jsonl, .csv or a run log")
    p.add_argument("--baseline", required=True, metavar="NAME", help="the baseline generator")
    p.add_argument(
        "--length-controlled",
        action="store_true",
        help="also fit the length-controlled win rate (needs the outputs' text)",
    )
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--run", default=None, help="run name: writes reports/<run>/log.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import csv
    import io
    import json

    from judge_rl import runlog
    from judge_rl.console import console
    from judge_rl.tournament.table import winrate_table
    from judge_rl.tournament.winrate import read_pref_rows, winrates

    rows, _ = read_pref_rows(args.judgments, args.baseline)
    table = winrates(rows, length_controlled=args.length_controlled)
    rd = runlog.run_dir(args.run or None)
    log = runlog.new_log(
        "winrate", rd.name, config={k: v for k, v in vars(args).items() if k != "func"}
    )
    skipped = sum(r.get("skipped", 0) for r in table)
    warnings = [f"skipped {skipped} failed judgments"] if skipped else []
    warnings += [f"{r['model']}: {r['note']}" for r in table if r.get("note")]
    log.tournament = runlog.TournamentSection(
        method="winrate", winrates=table, warnings=warnings, models=[r["model"] for r in table]
    )
    path = log.save(rd)
    cols = [
        "model",
        "baseline",
        "n",
        "skipped",
        "mean_pref",
        "se",
        "win_rate",
        "lc_win_rate",
        "wins",
        "draws",
        "losses",
    ]
    if args.format == "json":
        console().file.write(json.dumps({"winrates": table, "warnings": warnings}, indent=1) + "\n")
    elif args.format == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(table)
        console().file.write(buf.getvalue())
    else:
        console().print(winrate_table(table, title=f"Win rate vs {args.baseline}"))
        for wmsg in warnings:
            console().print(f"note: {wmsg}", markup=False, highlight=False)
        console().print(f"run log: {path}", markup=False, highlight=False)
    return 0
