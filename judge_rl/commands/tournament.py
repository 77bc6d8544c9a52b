"""``judge-rl tournament SPEC.yaml``: judge contestants pairwise, rank them with Bradley-Terry."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "tournament",
        help="run a judged tournament from a spec (evals/tournament-*.yaml)",
        description="Run a tournament: contestants (candidate files or checkpoints generated on "
        "the fly) answer a prompt set, a judge compares them pairwise (order, cache and budget "
        "from the judge layer), a pairing strategy (round_robin, vs_baseline, adaptive) picks "
        "what to judge, and Bradley-Terry ratings with bootstrap intervals rank them. Re-running "
        "the same spec resumes from the judgment cache. Writes reports/<run>/log.json.",
    )
    p.add_argument("spec", metavar="SPEC.yaml", help="tournament spec (see docs/tournament.md)")
    p.add_argument(
        "--budget", type=int, default=None, help="override the spec's budget (comparisons)"
    )
    p.add_argument(
        "--strategy",
        choices=["round_robin", "vs_baseline", "adaptive"],
        default=None,
        help="override the spec's pairing strategy",
    )
    p.add_argument("--max-prompts", type=int, default=None, help="override the spec's max_prompts")
    p.add_argument("--judge", default=None, help="override the spec's judge (name or judge.yaml)")
    p.add_argument(
        "--no-cache", action="store_true", help="do not read or write the judgment cache"
    )
    p.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="hard cap on judge spend: stop before the call that could pass it (finished "
        "judgments are kept and cached; exit 2 with the budget line)",
    )
    p.add_argument("--max-calls", type=int, default=None, metavar="N", help="stop before call N+1")
    p.add_argument(
        "--prices",
        default=None,
        metavar="IN,OUT",
        help="USD per 1M input and output tokens (default: the judge spec's)",
    )
    p.add_argument("--run", default=None, help="run name (default: the spec's name)")
    p.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="leaderboard as a rich table (default) or csv/json on stdout",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import TextColumn

    from judge_rl import runlog
    from judge_rl.commands._judge_options import budget_from_args, resolve_prices
    from judge_rl.console import console, err_console, progress
    from judge_rl.errors import ConfigError
    from judge_rl.judge import load_judge
    from judge_rl.tournament.runner import (
        build_field,
        load_spec,
        run_tournament,
        tournament_section,
    )
    from judge_rl.tournament.table import rich_table, to_csv, to_json

    spec, base = load_spec(args.spec)
    if args.budget is not None:
        if args.budget < 1:
            raise ConfigError("must be >= 1", setting="--budget")
        spec.budget = args.budget
    if args.strategy:
        spec.pairing.strategy = args.strategy
    if args.max_prompts is not None:
        spec.max_prompts = args.max_prompts
    if args.judge:
        spec.judge = args.judge
    err = err_console()
    field = build_field(spec, base)
    if spec.pairing.strategy == "vs_baseline" and spec.pairing.baseline not in field.candidates:
        raise ConfigError(
            f"{spec.pairing.baseline!r} is not a contestant ({', '.join(field.candidates)})",
            setting="pairing.baseline",
            file=args.spec,
        )
    cache = (
        None
        if args.no_cache or spec.cache in ("none", "off", "")
        else ("default" if spec.cache == "default" else str(base / spec.cache))
    )
    # the budget: --max-cost is a hard cap (reservations cover max_tokens), as in label and audit
    args.judge = spec.judge  # the judge the price rules read
    budget = budget_from_args(args)
    overrides = dict(spec.judge_overrides or {})
    prices, _note = resolve_prices(args)
    if prices is not None:
        overrides["prices"] = prices
    judge = load_judge(spec.judge, overrides=overrides or None, cache=cache, budget=budget)
    budget.cover(judge)
    err.print(
        f"tournament: {len(field.candidates)} contestants x {len(field.prompts)} prompts, "
        f"judge {spec.judge}, pairing {spec.pairing.strategy}"
        + (f", budget {spec.budget}" if spec.budget else ""),
        markup=False,
        highlight=False,
    )

    rd = runlog.run_dir(args.run or spec.name or None)
    log = runlog.new_log(
        "tournament", rd.name, config={"spec": spec.model_dump(), "file": args.spec}
    )
    fp = getattr(judge, "fingerprint", None)
    if fp is not None:
        log.add_judge(fp)
    with progress(TextColumn("{task.fields[note]}")) as bar:
        task = bar.add_task("judging", total=None, note="")

        def on_batch(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, note="")

        result = run_tournament(
            judge,
            field,
            strategy=spec.pairing.strategy,
            baseline=spec.pairing.baseline,
            budget=spec.budget,
            top_k=spec.pairing.top_k,
            confidence=spec.pairing.confidence,
            batch_size=spec.pairing.batch_size,
            bootstrap=spec.bootstrap,
            ties=spec.ties,
            seed=spec.seed,
            on_batch=on_batch,
        )
    log.tournament = tournament_section(result)
    extra = log.tournament.model_extra  # the section allows extra keys
    if extra is not None:
        extra["interval"] = result.leaderboard.interval  # level and scheme, for every report
    log.timings["tournament"] = result.time_s
    log.notes.append(
        f"{result.comparisons} comparisons ({result.judge_calls} judge calls, "
        f"{result.cached_calls} from cache) on {result.prompts} prompts; pairing "
        f"{result.pairing} stopped: {result.stop_reason}"
    )
    cost = sum(j.cost for j in result.judgments)
    if cost:
        log.cost["judge"] = cost
    if budget.max_cost is not None or budget.max_calls is not None:
        log.notes.insert(len(log.notes) - 1, f"budget: {budget.summary()}")
    path = log.save(rd)
    rows = result.leaderboard.rows
    if args.format == "csv":
        console().file.write(to_csv(rows))
    elif args.format == "json":
        console().file.write(
            to_json(rows, warnings=log.tournament.warnings, interval=result.leaderboard.interval)
            + "\n"
        )
    else:
        console().print(
            rich_table(
                rows,
                title=f"Tournament leaderboard — {spec.judge}, {len(result.battles)} battles",
                interval=result.leaderboard.interval,
            )
        )
        console().print(log.notes[-1], markup=False, highlight=False)
        console().print(f"run log: {path}", markup=False, highlight=False)
    for w in log.tournament.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)
    budget.check()  # exit 2 with the budget line when the budget stopped the run (log saved)
    return 0
