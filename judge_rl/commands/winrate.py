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
    p.add_argument(
        "--instruction-difficulty",
        metavar="FILE",
        default=None,
        help="per-instruction difficulty for the LC fit (columns instruction, "
        "instruction_difficulty; e.g. AlpacaEval's instruction_difficulty.csv keyed by "
        "instruction); default: estimated from all contestants in the file",
    )
    p.add_argument(
        "--gamed",
        metavar="FILE",
        action="append",
        default=[],
        help="annotations of length-gamed versions of the baseline against it (AlpacaEval's "
        "verbose/concise baselines): the LC fit is regularised toward them with lambda 0.2; "
        "repeatable",
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
    from judge_rl.errors import ConfigError
    from judge_rl.tournament.table import winrate_table
    from judge_rl.tournament.winrate import read_difficulty, read_pref_rows, winrates

    if (args.instruction_difficulty or args.gamed) and not args.length_controlled:
        raise ConfigError(
            "only used with --length-controlled", setting="--instruction-difficulty/--gamed"
        )
    rows, _ = read_pref_rows(args.judgments, args.baseline)
    difficulty = (
        read_difficulty(args.instruction_difficulty) if args.instruction_difficulty else None
    )
    gamed = [r for g in args.gamed for r in read_pref_rows(g, args.baseline)[0]]
    table = winrates(
        rows, length_controlled=args.length_controlled, difficulty=difficulty, gamed=gamed or None
    )
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
        from judge_rl.tournament.battles import finite_or_none

        console().file.write(
            json.dumps(
                finite_or_none({"winrates": table, "warnings": warnings}),
                indent=1,
                allow_nan=False,
            )
            + "\n"
        )
    elif args.format == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(table)
        console().file.write(buf.getvalue())
    else:
        console().print(winrate_table(table, title=f"Win rate vs {args.baseline}"))
        for r in table:
            wts = r.get("lc_weights")
            if wts:
                console().print(
                    f"LC fit {r['model']}: "
                    + ", ".join(f"{k} {v:+.3f}" if k != "C" else f"C {v:g}" for k, v in wts.items())
                    + f" (difficulty: {r.get('lc_difficulty')}, {r.get('lc_n')} rows)",
                    markup=False,
                    highlight=False,
                )
        for wmsg in warnings:
            console().print(f"note: {wmsg}", markup=False, highlight=False)
        console().print(f"run log: {path}", markup=False, highlight=False)
    return 0
