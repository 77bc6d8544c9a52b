"""``judge-rl ratings``: a Bradley-Terry (or online Elo) leaderboard from a battles file."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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

    if "numpy" not in sys.modules:
        # OpenBLAS's worker threads spin for ~0.1 s CPU after numpy loads; the fit's matrices
        # are models x models, so one BLAS thread does the same work without that cost.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    from judge_rl._io import safe_run_dir
    from judge_rl.errors import ConfigError
    from judge_rl.tournament import bradley_terry as bt
    from judge_rl.tournament.battles import finite_or_none, read_battles
    from judge_rl.tournament.elo import elo_leaderboard
    from judge_rl.tournament.table import to_csv, to_json

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

    rd = safe_run_dir(args.run or None)
    notes = []
    if len(bs) > 5000:
        notes.append(f"{len(bs)} battles read from {args.battles}; not copied into the log")
    tournament = {
        "method": args.method,
        "leaderboard": rows,
        "models": counts.models,
        "win_matrix": counts.win_matrix(),
        "predicted": predicted,
        "battles": bs.battle_dicts() if len(bs) <= 5000 else [],
        "winrates": [],
        "warnings": warnings,
        "calls": 0,
        "pairing": "file",
        "interval": interval,  # level and scheme of the intervals, for every report
    }
    path = write_run_log(
        rd,
        command="ratings",
        config={k: v for k, v in vars(args).items() if k != "func"},
        timings={"ratings": elapsed},
        notes=notes,
        tournament=tournament,
    )

    if args.format == "csv":
        sys.stdout.write(to_csv(rows))
    elif args.format == "json":
        sys.stdout.write(to_json(rows, warnings=warnings, method=args.method, interval=interval))
        sys.stdout.write("\n")
    else:
        from judge_rl.console import console
        from judge_rl.tournament.table import rich_table

        title = (
            f"{'Bradley-Terry' if args.method == 'bt' else 'Online Elo'} ratings — "
            f"{len(bs)} battles, {len(bs.models)} models"
        )
        console().print(rich_table(rows, title=title, interval=interval or None))
        console().print(f"run log: {path}  ({elapsed:.2f} s)", markup=False, highlight=False)
    if warnings:
        sys.stdout.flush()
        for w in warnings:
            sys.stderr.write(f"warning: {w}\n")
    return 0


# ----------------------------------------------------------------------------------------------
# The run log, written without pydantic
# ----------------------------------------------------------------------------------------------
# Importing pydantic and building judge_rl.runlog's ~25 models cost 0.24 s CPU, a fifth of the
# whole command on a million battles. The log below has exactly the shape (fields, order,
# defaults) that ``judge_rl.runlog.RunLog.model_dump_json`` writes;
# tests/tournament/test_ratings_cli.py::test_run_log_matches_the_schema loads it back through
# ``runlog.load`` and checks the schema's own dump of it equals the file.

_LOG_VERSION = 1  # judge_rl.runlog.LOG_VERSION (the test above checks they agree)
_SECTIONS = (
    "generate",
    "label",
    "audit",
    "reward_model",
    "ppo",
    "overopt",
    "tournament",
    "pipeline",
    "demo",
)


def write_run_log(
    run_dir: str | os.PathLike[str],
    *,
    command: str,
    config: dict[str, object],
    timings: dict[str, float],
    notes: list[str],
    tournament: dict[str, object],
) -> Path:
    """Write ``run_dir/log.json`` (a :class:`judge_rl.runlog.RunLog` with a tournament section)
    atomically; returns its path."""
    import json
    from datetime import UTC, datetime

    from judge_rl._env import environment
    from judge_rl._io import atomic_write_text
    from judge_rl.tournament.battles import finite_or_none

    rd = Path(run_dir)
    log: dict[str, object] = {
        "version": _LOG_VERSION,
        "run": rd.name,
        "command": command,
        "created": datetime.now(UTC).isoformat(),
        "config": config,
        "environment": environment(),
        "judges": [],
        "timings": {k: float(v) for k, v in timings.items()},
        "cost": {},
        "notes": list(notes),
    }
    for name in _SECTIONS:
        log[name] = tournament if name == "tournament" else None
    log["extra"] = {}
    path = rd / "log.json"
    # NaN / inf are written as null, as pydantic writes them
    atomic_write_text(path, json.dumps(finite_or_none(log), indent=1, ensure_ascii=False))
    return path
