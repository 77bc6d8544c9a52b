"""``judge-rl audit``: how far can this judge be trusted on your human-labelled pairs?"""

from __future__ import annotations

import argparse
from typing import Any

from judge_rl.commands._judge_options import add_judge_options

METRIC_ROWS = [
    ("accuracy", "accuracy (no ties)"),
    ("accuracy_with_ties", "accuracy (ties count ½)"),
    ("kappa", "Cohen's kappa"),
    ("judge_tie_rate", "judge tie rate"),
    ("position_consistency", "position consistency"),
    ("p_first_wins", "P(first shown wins)"),
    ("p_first_wins_inconsistent", "  … among inconsistent"),
    ("first_position_bias", "first-position bias"),
    ("p_longer_wins_judge", "P(longer wins), judge"),
    ("p_longer_wins_human", "P(longer wins), humans"),
    ("length_coef", "length coef (logit/1k chars)"),
    ("injection_flip_rate", "injection flip rate (fixed)"),
    ("injection_flip_rate_both", "injection flip rate (both)"),
    ("brier", "Brier score of p_a"),
    ("ece", "ECE of p_a (10 bins)"),
    ("label_mass", "label mass at the verdict"),
    ("low_label_mass_rate", "  … calls with low mass"),
    ("parse_failure_rate", "parse failure rate"),
    ("failure_rate", "failure rate (any)"),
    ("latency_s", "latency per call (s)"),
    ("tokens_per_judgment", "tokens per call"),
    ("cost_per_judgment", "cost per call (USD)"),
]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "audit",
        help="measure a judge against human labels: agreement, position/length bias, injection",
        description="Judge the human-labelled pairs of FILE in both orders and report agreement "
        "(accuracy, kappa, confusion), position consistency and first-position bias, verbosity "
        "bias, self-preference, verdict-injection flip rates, failures, latency and cost, each "
        "with a bootstrap confidence interval, overall and per category.",
    )
    add_judge_options(p)
    p.add_argument("--human", required=True, metavar="FILE", help="human preference file")
    p.add_argument("--sample", type=int, default=None, metavar="N", help="audit N random pairs")
    p.add_argument("--seed", type=int, default=0, help="sample, a/b placement and bootstrap seed")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap rounds")
    p.add_argument("--no-injection", action="store_true", help="skip the injection probe")
    p.add_argument(
        "--injection-sample",
        type=int,
        default=100,
        metavar="N",
        help="decided pairs re-judged per injection string",
    )
    p.add_argument(
        "--compare-hardened",
        action="store_true",
        help="also run the injection probe with the opposite formatting "
        "(hardened vs plain), side by side",
    )
    p.add_argument(
        "--fixed-only",
        action="store_true",
        help="judge in one order only (no position metrics; half the calls)",
    )
    p.add_argument("--skip-invalid", action="store_true", help="skip bad rows of FILE")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="ask the judge again for every pair and replace the cached answers",
    )
    p.add_argument(
        "--output",
        "--run",
        dest="output",
        default=None,
        metavar="RUN_DIR",
        help="run folder (default reports/audit-<judge>)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from judge_rl import runlog
    from judge_rl.commands._judge_options import budget_from_args, cache_from_args, judge_overrides
    from judge_rl.console import console, progress
    from judge_rl.data import read_preferences, records_to_comparisons
    from judge_rl.errors import ConfigError, JudgeRLError
    from judge_rl.judge.audit import AuditConfig, audit_judge, injection_calls
    from judge_rl.judge.specs import load_judge, shadowed_builtin, validate_spec

    shadow = shadowed_builtin(args.judge)
    if shadow:  # the first line of output: a local folder replaces a built-in judge
        console().print(shadow, markup=False, highlight=False, soft_wrap=True)
    for name in ("sample", "bootstrap", "injection_sample"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"must be ≥ 1, not {v}", setting="--" + name.replace("_", "-"))
    res = read_preferences(args.human, skip_invalid=args.skip_invalid)
    if not res.records:
        raise JudgeRLError(f"{args.human}: no human-labelled pairs found")
    comps = records_to_comparisons(res.records, seed=args.seed)
    for c, rec in zip(comps, res.records, strict=True):
        cat = rec.provenance.get("category")
        if cat is not None:
            c.metadata.setdefault("category", cat)

    spec = validate_spec(args.judge)
    overrides = judge_overrides(args)
    # The judge as it labels: its order and inconsistent rule (after --order), evaluated from
    # the same calls the audit makes in both orders.
    configured = {
        "order": overrides.get("order") or spec.get("order", "fixed"),
        "inconsistent": overrides.get("inconsistent") or spec.get("inconsistent", "tie"),
        "order_seed": spec.get("order_seed", 0),
    }
    overrides["order"] = "fixed"  # the audit builds the swapped order itself
    cache = cache_from_args(args)
    if getattr(args, "refresh", False) and cache is not None:
        cache.refresh = True  # every lookup misses; fresh answers replace the stored ones
    budget = budget_from_args(args)
    judge = load_judge(args.judge, overrides=overrides, cache=cache, budget=budget)
    extra: dict[str, Any] = {}
    if args.compare_hardened:
        flipped = not bool(judge.fingerprint.params.get("hardened", False))
        label = "hardened" if flipped else "plain"
        extra[label] = load_judge(
            args.judge, overrides={**overrides, "hardened": flipped}, cache=cache, budget=budget
        )
    for j in (judge, *extra.values()):
        budget.cover(j)  # reservations cover max_tokens: --max-cost is a hard cap

    cfg = AuditConfig(
        sample=args.sample,
        seed=args.seed,
        bootstrap=args.bootstrap,
        injection=not args.no_injection,
        injection_sample=args.injection_sample,
    )
    n = min(len(comps), args.sample or len(comps))
    both = not args.fixed_only
    est_calls = n * (2 if both else 1)
    if cfg.injection:
        est_calls += injection_calls(n, cfg, both) * (1 + len(extra))
    err = console()
    err.print(
        f"auditing [bold]{judge.fingerprint.name}[/] ({judge.fingerprint.model or '-'}) on "
        f"{n} human pairs from {args.human} ({res.format}); up to {est_calls} judge calls"
    )
    if res.skipped:
        err.print(f"skipped {len(res.skipped)} invalid rows")

    run_dir = runlog.run_dir(args.output or f"audit-{judge.fingerprint.name}")
    from judge_rl.pipeline.label import log_text as _text

    log = runlog.new_log(
        "audit",
        run_dir.name,
        config={
            k: _text(v) if isinstance(v, str) else v for k, v in vars(args).items() if k != "func"
        },
    )
    log.add_judge(judge.fingerprint)
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("judging", total=est_calls)
        section = asyncio.run(
            audit_judge(
                judge,
                comps,
                cfg,
                both_orders=both,
                progress=lambda k: bar.advance(task, k),
                injection_judges=extra,
                configured=configured,
            )
        )
    log.timings["audit"] = time.perf_counter() - t0
    from types import SimpleNamespace

    from judge_rl.pipeline.label import transport_summary

    transport = transport_summary(SimpleNamespace(members=[judge, *extra.values()]))
    if transport:  # what the judges' backends did on the wire (OpenAI-compatible endpoints)
        section.transport = transport  # type: ignore[attr-defined]  # an extra key
    log.audit = section
    log.notes.extend(getattr(section, "notes", []))
    path = log.save(run_dir)
    render_summary(section)
    if "attempts" in transport:
        err.print(
            f"transport: {transport['attempts']} attempts, {transport.get('retries', 0)} "
            f"retries, {transport.get('timeouts', 0)} timeouts"
        )
    err.print(f"run log: {path}")
    budget.check()  # exit 2 with the budget line when the budget stopped the run (log saved)
    return 0


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"


def render_summary(section: Any) -> None:
    """Rich tables: metrics with CIs, confusion, variants and injection strings."""
    from rich.table import Table

    from judge_rl.console import console

    c = console()
    rule = getattr(section, "rule", None) or {}
    if rule:
        c.print(
            f"verdict rule (as `label` uses it): {rule.get('label')}",
            markup=False,
            highlight=False,
        )
    t = Table(title=f"judge audit: {section.judge} on {section.n_pairs} pairs")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("n", justify="right")
    t.add_column("note", overflow="fold", max_width=28)
    for key, label in METRIC_ROWS:
        m = section.metrics.get(key)
        if m is None:
            continue
        ci = f"[{_fmt(m.lo)}, {_fmt(m.hi)}]" if m.lo is not None else ""
        t.add_row(label, _fmt(m.value), ci, str(m.n), m.note or "")
    c.print(t)

    conf = Table(title="confusion (rows: humans, columns: judge)")
    conf.add_column("human \\ judge")
    for col in ("a", "b", "tie", "failed"):
        conf.add_column(col, justify="right")
    for h, cols in section.confusion.items():
        conf.add_row(h, *(str(cols.get(k, 0)) for k in ("a", "b", "tie", "failed")))
    c.print(conf)

    if len(section.variants) > 1:
        v = Table(title="mitigations side by side")
        v.add_column("variant")
        for col in ("accuracy", "kappa", "p_first_wins", "injection_flip_rate"):
            v.add_column(col, justify="right")
        for var in section.variants:
            ms = var["metrics"]
            v.add_row(
                var["label"],
                *(
                    _fmt(_val(ms.get(k)))
                    for k in ("accuracy", "kappa", "p_first_wins", "injection_flip_rate")
                ),
            )
        c.print(v)

    inj = getattr(section, "injection", None)
    if inj:
        it = Table(title="verdict injection: flip rate per string")
        it.add_column("judge")
        it.add_column("string")
        it.add_column("fixed", justify="right")
        it.add_column("both", justify="right")
        for label, res in inj.items():
            for name, r in res.get("strings", {}).items():
                it.add_row(
                    label, name, _fmt(r["fixed"]["value"]), _fmt(r.get("both", {}).get("value"))
                )
        c.print(it)
    cal = getattr(section, "calibration", None) or {}
    if cal.get("bins"):
        r = Table(title="reliability of p_a (humans' ties left out)")
        for col in ("P(a better) bin", "mean p_a", "humans chose a", "n", ""):
            r.add_column(col, justify="right" if col else "left")
        for b in cal["bins"]:
            bar = "█" * round(20 * b["observed"])
            r.add_row(
                f"{b['lo']:.1f}–{b['hi']:.1f}",
                f"{b['p_mean']:.3f}",
                f"{b['observed']:.3f}",
                str(b["n"]),
                bar,
            )
        c.print(r)
    for sentence in getattr(section, "summary", []) or []:
        c.print(sentence, markup=False, highlight=False)
    sp = getattr(section, "self_preference", {}) or {}
    if "judge_win_rate" in sp:
        c.print(
            f"self-preference: the judge's own model wins {sp['judge_win_rate']:.3f} under "
            f"the judge vs {sp['human_win_rate']:.3f} under humans (n={sp['n']})"
        )
    for note in getattr(section, "notes", []):
        c.print(f"note: {note}")


def _val(m: Any) -> float | None:
    if m is None:
        return None
    return m.value if hasattr(m, "value") else m.get("value")
