"""The terminal report: a rich summary of a run log that fits an 80-column terminal.

``print_report(log, console)`` prints the sections the run has; ``render_text(log, width=80)``
returns the same as plain text (the snapshot tests use it). Colour follows the console: none when
stdout is not a TTY or ``NO_COLOR`` is set (see :mod:`judge_rl.console`). Every string that came
from a model or a file is printed as plain text (never as rich markup) after
:func:`~judge_rl.report._common.neutralize`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from judge_rl.report._common import (
    LABEL_KNOWN,
    as_metric,
    clip,
    evidence_text,
    extras,
    fcost,
    flatten,
    fmetric,
    fnum,
    fsecs,
    fstep,
    is_num,
    label_summary,
    metric_label,
    neutralize,
    ordered_metrics,
    present_keys,
    score_summary,
    series,
    sparkline,
)
from judge_rl.runlog import (
    AuditSection,
    LabelSection,
    OveroptSection,
    PPOSection,
    RewardModelSection,
    RunLog,
    TournamentSection,
)

WIDTH = 80
SPARK_W = 24


def _t(text: Any, style: str = "") -> Text:
    """Data as a rich Text: never parsed as markup."""
    return Text(neutralize(text), style=style)


class _PlainTable(Table):
    """A rich Table whose string cells are never parsed as markup (data may contain ``[...]``)."""

    def add_row(self, *renderables: Any, **kw: Any) -> None:
        cells = [Text(neutralize(r)) if isinstance(r, str) else r for r in renderables]
        super().add_row(*cells, **kw)


def _table(*cols: str, title: str | None = None, **kw: Any) -> Table:
    t = _PlainTable(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        title=title,
        title_justify="left",
        title_style="bold",
        **kw,
    )
    for c in cols:
        t.add_column(c, overflow="fold")
    return t


def _heading(console: Console, title: str) -> None:
    console.print()
    console.rule(Text(title, style="bold cyan"), align="left", style="cyan")


def header(log: RunLog) -> RenderableType:
    """Run name, command, date, judges."""
    lines = [Text.assemble(("judge_rl report: ", "bold"), _t(log.run, "bold"))]
    lines.append(
        Text.assemble(
            "command ", _t(log.command), "  created ", _t(log.created[:19]), f"  log v{log.version}"
        )
    )
    for j in log.judges:
        lines.append(
            Text.assemble(
                "judge ",
                _t(j.name, "bold"),
                _t(f" v{j.version}"),
                _t(f" {j.kind}" if j.kind else ""),
                _t(f" {j.backend}:{j.model}" if j.model else ""),
                _t(f" tpl {j.template_hash[:8]}" if j.template_hash else ""),
            )
        )
    return Group(*lines)


def label(sec: LabelSection) -> RenderableType:
    """Verdicts, ties, failures by kind, position consistency, tokens, cost."""
    s = label_summary(sec)
    n = s.get("n") or 0
    v = s.get("verdicts") or {}
    f = s.get("failures") or {}
    t = _table("", "count", "share")
    t.columns[1].justify = t.columns[2].justify = "right"

    def share(k: Any) -> str:
        return f"{100 * k / n:.1f}%" if is_num(k) and n else ""

    for key, name in (("a", "a wins"), ("b", "b wins"), ("tie", "ties")):
        t.add_row(name, fnum(v.get(key, 0)), share(v.get(key, 0)))
    nfail = sum(x for x in f.values() if is_num(x))
    t.add_row("failed", fnum(nfail), share(nfail), style="red" if nfail else "")
    for kind, k in sorted(f.items(), key=lambda kv: -kv[1] if is_num(kv[1]) else 0):
        t.add_row(_t(f"  {kind}"), fnum(k), share(k))
    t.add_row(Text("total", style="bold"), fnum(n), "")
    info = _table("", "")
    info.show_header = False
    pc = s.get("position_consistency")
    info.add_row("position consistency", f"{100 * pc:.1f}%" if is_num(pc) else "–")
    for key, name in (("calls", "judge calls"), ("cached", "served from cache")):
        if key in s:
            info.add_row(name, fnum(s[key]))
    if "prompt_tokens" in s or "completion_tokens" in s:
        info.add_row(
            "tokens in / out",
            f"{fnum(s.get('prompt_tokens'))} / {fnum(s.get('completion_tokens'))}",
        )
    info.add_row("cost", fcost(s.get("cost")))
    if "time_s" in s:
        info.add_row("time", fsecs(s.get("time_s")))
    if sec.output:
        info.add_row("preferences", _t(sec.output))
    for k, v in score_summary(sec):
        info.add_row(_t(k), _t(v))
    grid = Table.grid(padding=(0, 4))
    grid.add_row(t, info)
    extra = [
        (k, v) for k, v in s.items() if k not in LABEL_KNOWN and not isinstance(v, dict | list)
    ]
    if not extra:
        return grid
    lines: list[RenderableType] = [grid]
    if extra:
        lines.append(
            Text(
                ", ".join(
                    f"{neutralize(k)}={fnum(v) if is_num(v) else clip(v, 30)}" for k, v in extra
                )
            )
        )
    return Group(*lines)


VARIANT_FIRST = [
    "accuracy",
    "kappa",
    "position_consistency",
    "p_first_wins",
    "injection_flip_rate",
    "p_longer_wins_judge",
]


def audit(sec: AuditSection) -> RenderableType:
    """Metrics with CIs, the confusion matrix, variants side by side, jury agreement."""
    parts: list[RenderableType] = [
        Text.assemble("judge ", _t(sec.judge or "?", "bold"), f"  {sec.n_pairs} pairs")
    ]
    t = _table("metric", "value [95% CI]", "n", "skipped")
    t.columns[2].justify = t.columns[3].justify = "right"
    for key, m in ordered_metrics(sec.metrics):
        met = as_metric(m)
        t.add_row(
            _t(metric_label(key)),
            _t(fmetric(met)),
            fnum(met.n if met else None),
            fnum(met.skipped if met else None),
        )
    if sec.metrics:
        parts.append(t)
    if sec.confusion:
        labels = ["a", "b", "tie"]
        extra = sorted({k for row in sec.confusion.values() for k in row} - set(labels))
        cols = labels + extra
        c = _table("human \\ judge", *cols, title="confusion (counts)")
        for col in c.columns[1:]:
            col.justify = "right"
        for h in [x for x in labels if x in sec.confusion] + sorted(
            set(sec.confusion) - set(labels)
        ):
            c.add_row(_t(h), *(fnum(sec.confusion[h].get(k, 0)) for k in cols))
        parts.append(c)
    if sec.by_category:
        keys = present_keys(
            [{k: 0.0 for k in ms} for ms in sec.by_category.values()], ["accuracy"]
        )[:3]
        c = _table("category", *(metric_label(k) for k in keys), title="by category")
        for cat, ms in sec.by_category.items():
            c.add_row(_t(cat), *(_t(fmetric(ms.get(k), ci=False)) for k in keys))
        parts.append(c)
    if sec.variants:
        # metrics as rows, variants as columns (as in the HTML report); 3 variants fit 80 columns
        vkeys: list[str] = []
        for var in sec.variants:
            for k in var.get("metrics") or {}:
                if k not in vkeys:
                    vkeys.append(k)
        vkeys = [k for k in VARIANT_FIRST if k in vkeys] + [
            k for k in vkeys if k not in VARIANT_FIRST
        ]
        shown = sec.variants[:3]
        v = _table(
            "metric",
            *(clip(var.get("label", "?"), 20) for var in shown),
            title="variants side by side",
        )
        for k in vkeys[:10]:
            v.add_row(
                _t(metric_label(k)),
                *(_t(fmetric((var.get("metrics") or {}).get(k))) for var in shown),
            )
        parts.append(v)
        hidden = len(sec.variants) - len(shown)
        if hidden > 0 or len(vkeys) > 10:
            parts.append(
                Text(
                    f"(+{max(hidden, 0)} variants, +{max(len(vkeys) - 10, 0)} metrics "
                    "in the HTML report)",
                    style="dim",
                )
            )
    if sec.jury:
        items = [f"{neutralize(k)}={fnum(x)}" for k, x in sec.jury.items() if is_num(x)]
        members = sec.jury.get("members")
        if isinstance(members, dict):
            items += [f"{neutralize(k)}={fmetric(x, ci=False)}" for k, x in members.items()]
        parts.append(Text("jury: " + ", ".join(items)))
    return Group(*parts)


def _extras(sec: Any, limit: int = 8) -> list[RenderableType]:
    """Extra keys a stage recorded: notes-like string lists in full, other values flattened."""
    return _extra_lines(extras(sec), limit)


def _extra_lines(values: dict[str, Any], limit: int = 8) -> list[RenderableType]:
    """One line per key of ``values`` (string lists: one line per item; big dicts summarised)."""
    out: list[RenderableType] = []
    for key, val in values.items():
        if isinstance(val, list) and val and all(isinstance(x, str) for x in val):
            out += [Text.assemble((f"{neutralize(key)}: ", "bold"), _t(x)) for x in val[:10]]
        elif isinstance(val, dict):
            items = flatten(val)
            if not items:
                continue
            if len(items) > limit:
                out.append(
                    Text.assemble(
                        (f"{neutralize(key)}: ", "bold"),
                        f"{len(items)} values (in the HTML report)",
                    )
                )
                continue
            shown = ", ".join(
                f"{neutralize(k)}={fnum(v) if is_num(v) or v is None else clip(v, 70)}"
                for k, v in items
            )
            out.append(Text.assemble((f"{neutralize(key)}: ", "bold"), _t(shown)))
        elif isinstance(val, list):
            scalars = [x for x in val if isinstance(x, str | int | float | bool)]
            text = (
                ", ".join(fnum(x) if is_num(x) else clip(x, 30) for x in val[:limit])
                if len(scalars) == len(val)
                else f"{len(val)} items (in the HTML report)"
            )
            if val:
                out.append(Text.assemble((f"{neutralize(key)}: ", "bold"), _t(text)))
        elif val is not None:
            out.append(
                Text.assemble(
                    (f"{neutralize(key)}: ", "bold"),
                    _t(fnum(val) if is_num(val) else clip(val, 70)),
                )
            )
    return out


def _curves(rows: Sequence[dict[str, Any]], keys: Iterable[str]) -> Table:
    t = _table("metric", "curve", "first", "last", "min", "max")
    for col in t.columns[2:]:
        col.justify = "right"
    t.columns[0].no_wrap = True
    t.columns[0].min_width = 15
    t.columns[1].no_wrap = True
    for k in keys:
        ys = series(rows, k)
        got = [y for y in ys if y is not None]
        if not got:
            continue
        t.add_row(
            _t(clip(k, 16)),
            sparkline(ys, SPARK_W),
            fnum(got[0]),
            fnum(got[-1]),
            fnum(min(got)),
            fnum(max(got)),
        )
    return t


def reward_model(sec: RewardModelSection) -> RenderableType:
    """Sizes, final metrics, learning curves, chosen/rejected reward means."""
    parts: list[RenderableType] = [
        Text.assemble(
            "model ",
            _t(sec.model or "?", "bold"),
            f"  train {sec.n_train}  eval {sec.n_eval}",
            f"  truncated {sec.truncated}",
        )
    ]
    if sec.output_dir:
        parts.append(Text.assemble("saved to ", _t(sec.output_dir)))
    if sec.final:
        parts.append(
            Text("final: " + ", ".join(f"{neutralize(k)}={fnum(v)}" for k, v in sec.final.items()))
        )
    if sec.train:
        parts.append(Text("training", style="bold"))
        parts.append(
            _curves(
                sec.train,
                present_keys(sec.train, ["loss", "accuracy"], skip=("step", "lr", "pairs_per_s")),
            )
        )
    if sec.evals:
        parts.append(Text("held-out evaluation", style="bold"))
        parts.append(_curves(sec.evals, present_keys(sec.evals, ["accuracy", "margin", "ece"])))
    samples = {k: [x for x in v if is_num(x)] for k, v in sec.reward_samples.items()}
    if samples:
        parts.append(
            Text(
                "held-out rewards: "
                + "; ".join(
                    f"{neutralize(k)} mean {fnum(sum(v) / len(v)) if v else '–'} (n={len(v)})"
                    for k, v in samples.items()
                )
            )
        )
    return Group(*parts)


PPO_KEYS = [
    "reward_mean",
    "reward_std",
    "kl",
    "entropy",
    "response_length",
    "kl_coef",
    "policy_loss",
    "value_loss",
    "clip_frac",
    "approx_kl",
    "samples_per_s",
]


def ppo(sec: PPOSection) -> RenderableType:
    """Per-step curves as sparklines, checkpoints, early stop, last samples."""
    parts: list[RenderableType] = [
        Text.assemble(
            "policy ",
            _t(sec.policy or "?", "bold"),
            "  reward ",
            _t(sec.reward or "?", "bold"),
            f"  {len(sec.steps)} steps",
        )
    ]
    if sec.steps:
        keys = present_keys(
            sec.steps, PPO_KEYS, skip=("step", "time_generate", "time_score", "time_train")
        )
        parts.append(_curves(sec.steps, keys[:10]))
    if sec.stopped_early:
        parts.append(Text.assemble(("stopped early: ", "bold yellow"), _t(sec.stopped_early)))
    if sec.checkpoints:
        parts.append(
            Text("checkpoints: " + ", ".join(f"{fstep(c.get('step'))}" for c in sec.checkpoints))
        )
    for smp in sec.samples[-2:]:
        parts.append(
            Text.assemble(
                f"sample @ step {fstep(smp.get('step'))} (reward {fnum(smp.get('reward'))}): ",
                _t(clip(smp.get("response"), 120), "italic"),
            )
        )
    return Group(*parts)


def overopt(sec: OveroptSection) -> RenderableType:
    """Alarms with their evidence, gold vs proxy curves, fit, best checkpoint, probes."""
    parts: list[RenderableType] = [
        Text.assemble(
            "gold ",
            _t(sec.gold or "?", "bold"),
            "  proxy ",
            _t(sec.proxy or "?", "bold"),
            f"  {len(sec.points)} points",
        )
    ]
    if sec.alarms:
        for a in sec.alarms:
            parts.append(
                Text.assemble(
                    ("ALARM ", "bold red"),
                    f"step {fstep(a.get('step'))} ",
                    _t(a.get("kind", "?"), "bold"),
                    ": ",
                    _t(a.get("message", "")),
                )
            )
            ev = evidence_text(a.get("evidence"))
            if ev:
                parts.append(Padding(Text.assemble("evidence: ", _t(ev)), (0, 0, 0, 2)))
            for ex in (a.get("examples") or [])[:2]:
                parts.append(
                    Padding(Text.assemble("example: ", _t(clip(ex, 140), "italic")), (0, 0, 0, 2))
                )
    else:
        parts.append(Text("no over-optimisation alarm", style="green"))
    if sec.points:
        keys = ["proxy_mean", "gold_mean", "kl", "response_length"]
        parts.append(_curves(sec.points, [k for k in keys if k in present_keys(sec.points, keys)]))
    if sec.fit:
        parts.append(
            Text(
                "fit (Gao et al. 2022): "
                + ", ".join(
                    f"{neutralize(k)}={fnum(v) if is_num(v) else clip(v, 40)}"
                    for k, v in sec.fit.items()
                )
            )
        )
    if sec.best_checkpoint:
        b = sec.best_checkpoint
        parts.append(
            Text.assemble(
                ("best checkpoint: ", "bold"),
                f"step {fstep(b.get('step'))} ",
                _t(b.get("path", "")),
                f" gold {fnum(b.get('gold'))}",
                _t(f" ({b['reason']})" if b.get("reason") else ""),
            )
        )
    flagged = [d for d in sec.degeneration if d.get("flags")]
    for d in flagged[-3:]:
        parts.append(
            Text.assemble(
                f"degeneration @ step {fstep(d.get('step'))}: ",
                _t(", ".join(map(str, d.get("flags") or []))),
            )
        )
    probes = [p for p in sec.probes if p.get("flagged")]
    for p in probes[:4]:
        parts.append(
            Text.assemble(
                "probe ",
                _t(p.get("name", "?"), "bold"),
                f" scored {fnum(p.get('score'))} vs real median ",
                f"{fnum(p.get('median_real'))}: ",
                _t(clip(p.get("text"), 36), "italic"),
            )
        )
    return Group(*parts)


def _interval(sec: Any) -> dict[str, Any] | None:
    """The tournament section's recorded interval (level, scheme, label), if any."""
    val = (getattr(sec, "model_extra", None) or {}).get("interval")
    return val if isinstance(val, dict) else None


def tournament(sec: TournamentSection) -> RenderableType:
    """Leaderboard with CIs and rank intervals; win rates vs a baseline; warnings."""
    parts: list[RenderableType] = [
        Text(
            f"method {neutralize(sec.method)}  pairing {neutralize(sec.pairing) or '–'}  "
            f"{len(sec.battles)} battles  {sec.calls} judge calls"
        )
    ]
    interval = _interval(sec)
    if sec.leaderboard:
        from judge_rl.tournament.table import (
            BOARD_COLUMNS,
            board_cells,
            board_headings,
            interval_caption,
        )

        heads = board_headings(interval)
        t = _table(*(heads[k] for k in BOARD_COLUMNS))
        for k, col in enumerate(t.columns):
            col.justify = "left" if BOARD_COLUMNS[k] == "model" else "right"
            col.no_wrap = BOARD_COLUMNS[k] != "model"
        for r in sec.leaderboard:
            c = board_cells(r)
            c["model"] = clip(c["model"], 28)
            t.add_row(*(_t(c[k]) for k in BOARD_COLUMNS))
        parts.append(t)
        if any(is_num(r.get("lo")) for r in sec.leaderboard):
            parts.append(Text("intervals: " + neutralize(interval_caption(interval))))
    if sec.winrates:
        from judge_rl.tournament.table import WINRATE_COLUMNS, WINRATE_HEADINGS, winrate_cells

        t = _table(*(WINRATE_HEADINGS[k] for k in WINRATE_COLUMNS), title="win rate vs baseline")
        for k, col in enumerate(t.columns):
            col.justify = "left" if WINRATE_COLUMNS[k] in ("model", "baseline") else "right"
            col.no_wrap = WINRATE_COLUMNS[k] not in ("model", "baseline")
        for w in sec.winrates:
            c = winrate_cells(w)
            c["model"], c["baseline"] = clip(c["model"], 24), clip(c["baseline"], 16)
            t.add_row(*(_t(c[k]) for k in WINRATE_COLUMNS))
        parts.append(t)
    for warn in sec.warnings:
        parts.append(Text.assemble(("warning: ", "yellow"), _t(warn)))
    return Group(*parts)


def footer(log: RunLog) -> list[RenderableType]:
    """Timings, cost, notes and the log's free-form ``extra`` values."""
    parts: list[RenderableType] = []
    if log.timings:
        parts.append(
            Text(
                "time: " + ", ".join(f"{neutralize(k)} {fsecs(v)}" for k, v in log.timings.items())
            )
        )
    if log.cost:
        parts.append(
            Text("cost: " + ", ".join(f"{neutralize(k)} {fcost(v)}" for k, v in log.cost.items()))
        )
    for n in log.notes:
        parts.append(Text.assemble(("note: ", "bold"), _t(n)))
    if log.extra:
        parts += _extra_lines(log.extra)
    return parts


RENDERERS: dict[str, tuple[str, Callable[[Any], RenderableType]]] = {
    "label": ("Labelling", label),
    "audit": ("Judge audit", audit),
    "reward_model": ("Reward model", reward_model),
    "ppo": ("PPO", ppo),
    "overopt": ("Over-optimisation", overopt),
    "tournament": ("Leaderboard", tournament),
}


def print_report(log: RunLog, console: Console) -> None:
    """Print every section ``log`` has to ``console``."""
    console.print(header(log))
    for name, (title, fn) in RENDERERS.items():
        sec = getattr(log, name)
        if sec is not None:
            _heading(console, title)
            console.print(fn(sec))
            for line in _extras(sec):
                console.print(line)
    foot = footer(log)
    if foot:
        _heading(console, "Run")
        for p in foot:
            console.print(p)


def print_comparison(logs: Sequence[RunLog], console: Console) -> None:
    """One table with the headline figures of several runs."""
    from judge_rl.report._compare import headline_rows

    cols, rows = headline_rows(logs)
    t = _table("figure", *(clip(c, 14) for c in cols))
    for name, vals in rows:
        t.add_row(name, *(_t(v) for v in vals))
    _heading(console, "Runs compared")
    console.print(t)


def render_text(log: RunLog, width: int = WIDTH, compare: Sequence[RunLog] = ()) -> str:
    """The terminal report as plain text ``width`` columns wide (no colour)."""
    buf = io.StringIO()
    con = Console(
        file=buf,
        width=width,
        color_system=None,
        no_color=True,
        highlight=False,
        force_terminal=False,
        legacy_windows=False,
        emoji=False,
    )
    print_report(log, con)
    if compare:
        print_comparison([log, *compare], con)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"
