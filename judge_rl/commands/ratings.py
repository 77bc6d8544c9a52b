"""``judge-rl ratings``: a Bradley-Terry (or online Elo) leaderboard from a battles file."""

from __future__ import annotations

import argparse

WEAKNESS = (
    "online Elo depends on the order of the battles (shuffle them and the ratings change) and "
    "weights recent battles more; for fixed models use the Bradley-Terry fit"
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ratings",
        help="leaderboard with confidence intervals from a battles file",
        description="Fit Bradley-Terry ratings (Elo scale: 400/ln10 points per unit, anchor or "
        "mean at 1000) on the pair counts of a battles file (JSONL/JSON/CSV: model_a, model_b, "
        "winner in a|b|tie or model_a|model_b|tie|tie (bothbad), optional weight), with "
        "bootstrap confidence and rank intervals. Writes reports/<run>/log.json.",
    )
    p.add_argument("battles", metavar="BATTLES_FILE", help="battles (.jsonl, .json, .csv)")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=100,
        metavar="N",
        help="bootstrap rounds for the intervals (0: normal approximation; default 100)",
    )
    p.add_argument(
        "--ties",
        choices=["half", "davidson"],
        default="half",
        help="ties as half a win each (default) or the Davidson (1970) tie model",
    )
    p.add_argument(
        "--anchor",
        metavar="MODEL",
        default=None,
        help="model fixed at 1000 (default: the mean rating is 1000)",
    )
    p.add_argument(
        "--method",
        choices=["bt", "elo"],
        default="bt",
        help="bt: Bradley-Terry maximum likelihood (default); elo: online Elo with "
        f"K=--k. Weakness of elo: {WEAKNESS}",
    )
    p.add_argument("--k", type=float, default=4.0, help="K-factor for --method elo (default 4)")
    p.add_argument(
        "--prior",
        type=float,
        default=None,
        help="precision of the Gaussian prior on each strength (default 0.01; 0 = plain MLE)",
    )
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="table (rich, default) or csv/json to stdout",
    )
    p.add_argument("--run", default=None, help="run name: writes reports/<run>/log.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from judge_rl import runlog
    from judge_rl.console import console, err_console
    from judge_rl.errors import ConfigError
    from judge_rl.tournament import bradley_terry as bt
    from judge_rl.tournament.battles import read_battles
    from judge_rl.tournament.elo import elo_leaderboard
    from judge_rl.tournament.table import rich_table, to_csv, to_json

    if args.bootstrap < 0:
        raise ConfigError("must be >= 0", setting="--bootstrap")
    if not 0.5 <= args.level < 1.0:
        raise ConfigError("must be in [0.5, 1)", setting="--level")
    t0 = time.perf_counter()
    bs = read_battles(args.battles)
    if args.anchor is not None and args.anchor not in bs.models:
        raise ConfigError(f"{args.anchor!r} is not a model in {args.battles}", setting="--anchor")
    counts = bt.aggregate_codes(bs.a, bs.b, bs.winner, bs.models, bs.weight)
    warnings: list[str] = []
    predicted: list[list[float]] = []
    if args.method == "bt":
        prior = bt.DEFAULT_PRIOR if args.prior is None else args.prior
        lb = bt.leaderboard(
            counts,
            ties=args.ties,
            anchor=args.anchor,
            prior=prior,
            bootstrap_rounds=args.bootstrap,
            level=args.level,
            seed=args.seed,
        )
        rows = lb.rows
        warnings = list(lb.warnings)
        predicted = lb.fit.predicted().tolist()
    else:
        rows = elo_leaderboard(bs.a, bs.b, bs.winner, bs.models, k=args.k)
        warnings = [f"online Elo: {WEAKNESS}"]
    elapsed = time.perf_counter() - t0

    rd = runlog.run_dir(args.run or None)
    log = runlog.new_log(
        "ratings", rd.name, config={k: v for k, v in vars(args).items() if k != "func"}
    )
    log.timings["ratings"] = elapsed
    log.tournament = runlog.TournamentSection(
        method=args.method,
        leaderboard=rows,
        models=counts.models,
        win_matrix=counts.win_matrix(),
        predicted=predicted,
        battles=bs.to_battles() if len(bs) <= 5000 else [],
        warnings=warnings,
        pairing="file",
    )
    if len(bs) > 5000:
        log.notes.append(f"{len(bs)} battles read from {args.battles}; not copied into the log")
    path = log.save(rd)

    if args.format == "csv":
        console().file.write(to_csv(rows))
    elif args.format == "json":
        console().file.write(to_json(rows, warnings=warnings, method=args.method) + "\n")
    else:
        title = (
            f"{'Bradley-Terry' if args.method == 'bt' else 'Online Elo'} ratings — "
            f"{len(bs)} battles, {len(bs.models)} models"
        )
        console().print(rich_table(rows, title=title, level=args.level))
        console().print(f"run log: {path}  ({elapsed:.2f} s)")
    for w in warnings:
        err_console().print(f"warning: {w}", markup=False, highlight=False)
    return 0
