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
        "mean at 1000) on the pair counts of a battles file (CSV, JSONL, JSON, Parquet; gzip, "
        "bz2 or xz compressed): model_a, model_b, winner in a|b|tie or "
        "model_a|model_b|tie|tie (bothbad); left, right, winner in left|right|tie; or "
        "AlpacaEval annotations (generator_1, generator_2, preference); optional weight and "
        "prompt_id. Bootstrap confidence and rank intervals. Writes reports/<run>/log.json.",
    )
    p.add_argument(
        "battles", metavar="BATTLES_FILE", help="battles (.csv, .jsonl, .json, .parquet, .gz)"
    )
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
        metavar="MODEL[=VALUE]",
        default=None,
        help="pin MODEL at VALUE (default 1000), as Chatbot Arena pins a reference model; "
        "without it the mean rating is 1000",
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
        help="precision of a Gaussian prior on each strength (default: none, the plain MLE, "
        "whenever it exists; a prior of 0.01 only when it does not, with a warning)",
    )
    p.add_argument(
        "--resample",
        choices=["auto", "prompts", "battles", "both"],
        default="auto",
        help="what the bootstrap resamples: prompts (clustered: every battle on a drawn "
        "prompt), battles, or both (two-stage); auto (default): prompts when battles share "
        "prompt ids, else battles",
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


def parse_anchor(text: str | None) -> tuple[str | None, float]:
    """``MODEL`` or ``MODEL=VALUE`` -> (model, value); the value defaults to 1000.

    >>> parse_anchor("gpt-4=1114"), parse_anchor("llama"), parse_anchor(None)
    (('gpt-4', 1114.0), ('llama', 1000.0), (None, 1000.0))
    """
    import math

    from judge_rl.errors import ConfigError

    if text is None:
        return None, 1000.0
    model, sep, value = text.rpartition("=")
    if not sep:
        return text, 1000.0
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"expected MODEL=NUMBER, got {text!r}", setting="--anchor") from None
    if not math.isfinite(v) or not model:
        raise ConfigError(f"expected MODEL=NUMBER, got {text!r}", setting="--anchor")
    return model, v


def run(args: argparse.Namespace) -> int:
    import math
    import time

    from judge_rl import runlog
    from judge_rl.console import console, err_console
    from judge_rl.errors import ConfigError
    from judge_rl.tournament import bradley_terry as bt
    from judge_rl.tournament.battles import finite_or_none, read_battles
    from judge_rl.tournament.elo import elo_leaderboard
    from judge_rl.tournament.table import rich_table, to_csv, to_json

    if args.bootstrap < 0 or args.bootstrap > 100_000:
        raise ConfigError("must be between 0 and 100000", setting="--bootstrap")
    if not 0.5 <= args.level < 1.0:
        raise ConfigError("must be in [0.5, 1)", setting="--level")
    if args.prior is not None and not (math.isfinite(args.prior) and args.prior >= 0):
        raise ConfigError("must be a finite number >= 0", setting="--prior")
    if args.seed < 0:
        raise ConfigError("must be >= 0", setting="--seed")
    if not (math.isfinite(args.k) and args.k > 0):
        raise ConfigError("must be a finite number > 0", setting="--k")
    anchor, anchor_value = parse_anchor(args.anchor)
    t0 = time.perf_counter()
    bs = read_battles(args.battles)
    if anchor is not None and anchor not in bs.models:
        raise ConfigError(f"{anchor!r} is not a model in {args.battles}", setting="--anchor")
    if args.resample in ("prompts", "both") and not bs.shared_prompts:
        raise ConfigError(
            f"--resample {args.resample} needs battles that share prompt ids (prompt_id, "
            "question_id or instruction); this file has none",
            setting="--resample",
        )
    counts = bs.counts()
    warnings: list[str] = list(bs.notes)
    predicted: list[list[float]] = []
    interval: dict[str, object] = {}
    if args.method == "bt":
        lb = bt.leaderboard(
            counts,
            ties=args.ties,
            anchor=anchor,
            anchor_value=anchor_value,
            prior=args.prior,
            bootstrap_rounds=args.bootstrap,
            level=args.level,
            seed=args.seed,
            resample=args.resample,
        )
        rows = lb.rows
        warnings += list(lb.warnings)
        predicted = lb.fit.predicted().tolist()
        interval = lb.interval
        interval["prior"] = lb.fit.prior
    else:
        rows = elo_leaderboard(bs.a, bs.b, bs.winner, bs.models, k=args.k, weight=bs.weight)
        warnings.append(f"online Elo: {WEAKNESS}")
    rows = [finite_or_none(r) for r in rows]
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
    extra = log.tournament.model_extra  # the section allows extra keys
    if extra is not None:
        extra["interval"] = interval  # level and scheme of the intervals, for every report
    if len(bs) > 5000:
        log.notes.append(f"{len(bs)} battles read from {args.battles}; not copied into the log")
    path = log.save(rd)

    if args.format == "csv":
        console().file.write(to_csv(rows))
    elif args.format == "json":
        console().file.write(
            to_json(rows, warnings=warnings, method=args.method, interval=interval) + "\n"
        )
    else:
        title = (
            f"{'Bradley-Terry' if args.method == 'bt' else 'Online Elo'} ratings — "
            f"{len(bs)} battles, {len(bs.models)} models"
        )
        console().print(rich_table(rows, title=title, interval=interval or None))
        console().print(f"run log: {path}  ({elapsed:.2f} s)", markup=False, highlight=False)
    for w in warnings:
        err_console().print(f"warning: {w}", markup=False, highlight=False)
    return 0
