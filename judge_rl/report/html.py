"""The HTML report: ONE self-contained file per run (CSS, JS and SVG charts inline; no network).

``render_html(log)`` is a pure function of the run log. ``write_report(log, path)`` writes it
atomically. Safety rules, all enforced here:

- Jinja2 autoescape is on, and a ``finalize`` hook neutralises unicode direction overrides and
  control characters in every value the template prints.
- The comparison rows are embedded ONCE as JSON in ``<script type="application/json">`` with
  ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, so ``</script>`` in a model output cannot close
  the block; the page script reads it with ``JSON.parse`` and renders with ``textContent`` only.
- Nothing from the log becomes a link; the only ``href`` values are in-page anchors.
- A Content-Security-Policy allows only the page's own script (by hash) and inline styles, and no
  network at all (``default-src 'none'``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judge_rl._io import atomic_write_text
from judge_rl.report import svg
from judge_rl.report._common import (
    _BIDI_RE,
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
    sections_of,
    series,
    steps_of,
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
from judge_rl.types import Comparison, Judgment, prompt_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_SIZE = 20


# ---------------------------------------------------------------- safe embedding


def json_for_script(obj: Any) -> str:
    r"""JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become ``\u003c`` etc. (so ``</script>`` and ``<!--`` cannot appear),
    U+2028/U+2029 are escaped too (they end lines in older JS parsers), and direction controls
    are neutralised (one pass over the whole text: no per-string cost for 10k rows).

    >>> json_for_script({"x": "</script><b>&\u202e"})
    '{"x":"\\u003c/script\\u003e\\u003cb\\u003e\\u0026[U+202E]"}'
    """
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    s = _BIDI_RE.sub(lambda m: f"[U+{ord(m.group()):04X}]", s)
    return (
        s.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _clean(obj: Any) -> Any:
    """Neutralise every string in a JSON-able structure; NaN/inf become None."""
    if isinstance(obj, str):
        return neutralize(obj)
    if isinstance(obj, dict):
        return {neutralize(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not is_num(obj):
        return None
    return obj


# ---------------------------------------------------------------- comparison browser rows


def _calls(j: Judgment, names: dict[str, str]) -> list[list[Any]]:
    """[[shown first, verdict, raw output, error], …] for each call (jury members too)."""
    out = [[names.get(c.first_id, c.first_id), c.winner, c.raw, c.error] for c in j.calls]
    for m in j.members:
        for c in m.calls:
            out.append(
                [f"{m.judge.name}: " + names.get(c.first_id, c.first_id), c.winner, c.raw, c.error]
            )
        if not m.calls:
            out.append([m.judge.name, m.winner, "", m.error])
    return out


def browser_rows(log: RunLog) -> dict[str, Any]:
    """The comparison browser's data: one row per judgment (or unjudged comparison).

    Row keys are short to keep 10k-row files small: ``s`` stage, ``p`` prompt, ``c`` category,
    ``ma``/``mb`` models, ``ra``/``rb`` responses, ``w`` verdict (``a``/``b``/``tie``/``fail``/
    ``none``), ``pa`` P(a), ``h`` human label, ``k`` order-consistent, ``e`` error, ``j`` judge,
    ``x`` calls (shown first, verdict, raw, error), ``ref`` reference answer.
    """
    rows: list[dict[str, Any]] = []
    models: set[str] = set()
    for stage in ("label", "audit", "tournament"):
        sec: Any = getattr(log, stage)
        if sec is None:
            continue
        sec_comps, sec_judgments = _stage_records(sec)
        comps: dict[str, Comparison] = {c.id: c for c in sec_comps}
        seen: set[str] = set()

        def row(c: Comparison | None, j: Judgment | None, stage: str = stage) -> dict[str, Any]:
            r: dict[str, Any] = {"s": stage}
            if c is not None:
                names = {c.a.id: c.a.source or "a", c.b.id: c.b.source or "b"}
                r.update(
                    p=prompt_text(c.prompt),
                    ma=c.a.source,
                    mb=c.b.source,
                    ra=c.a.response,
                    rb=c.b.response,
                    i=c.prompt_id,
                )
                cat = c.metadata.get("category")
                if cat is not None:
                    r["c"] = str(cat)
                h = c.metadata.get("human")
                if h in ("a", "b", "tie"):
                    r["h"] = h
                if c.reference:
                    r["ref"] = c.reference
                models.update(x for x in (c.a.source, c.b.source) if x)
            else:
                names = {}
                r.update(
                    p="",
                    ma=j.a_id if j else "",
                    mb=j.b_id if j else "",
                    ra="(comparison not in the log)",
                    rb="",
                    i=j.prompt_id if j else "",
                )
            if j is None:
                r["w"] = "none"
            else:
                r["w"] = j.winner if j.ok else "fail"
                r["j"] = j.judge.name
                if is_num(j.p_a):
                    r["pa"] = round(float(j.p_a), 4)
                if j.consistent is not None:
                    r["k"] = j.consistent
                if j.error:
                    r["e"] = j.error
                r["x"] = _calls(j, names)
            return r

        for j in sec_judgments:
            c = comps.get(j.comparison_id)
            seen.add(j.comparison_id)
            rows.append(row(c, j))
        for cid, c in comps.items():
            if cid not in seen:
                rows.append(row(c, None))
    # strings are neutralised by json_for_script in one pass over the serialised text
    return {"models": sorted(models), "rows": rows, "page": PAGE_SIZE}


def _stage_records(sec: Any) -> tuple[list[Comparison], list[Judgment]]:
    """A section's comparisons and judgments; a tournament keeps them as extra keys (plain
    dicts once the log is read back), validated here. Malformed entries are skipped."""
    comps, judgments = [], []
    found = getattr(sec, "comparison_records", None) or getattr(sec, "comparisons", None)
    for raw in found if isinstance(found, list) else []:
        try:
            comps.append(raw if isinstance(raw, Comparison) else Comparison.model_validate(raw))
        except Exception:  # noqa: BLE001 (a malformed optional record must not break the page)
            continue
    found = getattr(sec, "judgments", None)
    for raw in found if isinstance(found, list) else []:
        try:
            judgments.append(raw if isinstance(raw, Judgment) else Judgment.model_validate(raw))
        except Exception:  # noqa: BLE001
            continue
    return comps, judgments


# ---------------------------------------------------------------- section contexts


def _alarm_markers(log: RunLog) -> list[svg.Marker]:
    if log.overopt is None:
        return []
    return [
        svg.Marker(float(a["step"]), f"{neutralize(a.get('kind', 'alarm'))} @ {fstep(a['step'])}")
        for a in log.overopt.alarms
        if is_num(a.get("step"))
    ]


def label_ctx(sec: LabelSection) -> dict[str, Any]:
    """Verdict counts/shares, failures by kind and the run facts of a label section."""
    s = label_summary(sec)
    n = s.get("n") or 0
    verdicts = s.get("verdicts") or {}
    failures = s.get("failures") or {}
    nfail = sum(v for v in failures.values() if is_num(v))

    def pct(k: Any) -> str:
        return f"{100 * k / n:.1f}%" if is_num(k) and n else ""

    rows = [
        (name, fnum(verdicts.get(k, 0)), pct(verdicts.get(k, 0)))
        for k, name in (("a", "a wins"), ("b", "b wins"), ("tie", "ties"))
    ]
    rows.append(("failed", fnum(nfail), pct(nfail)))
    rows += [(f"· {k}", fnum(v), pct(v)) for k, v in failures.items()]
    pc = s.get("position_consistency")
    info = [
        ("comparisons", fnum(n)),
        ("position consistency", f"{100 * pc:.1f}%" if is_num(pc) else "–"),
    ]
    for key, name in (("calls", "judge calls"), ("cached", "served from cache")):
        if key in s:
            info.append((name, fnum(s[key])))
    if "prompt_tokens" in s or "completion_tokens" in s:
        info.append(
            (
                "tokens in / out",
                f"{fnum(s.get('prompt_tokens'))} / {fnum(s.get('completion_tokens'))}",
            )
        )
    info.append(("cost", fcost(s.get("cost"))))
    if "time_s" in s:
        info.append(("time", fsecs(s["time_s"])))
    if sec.output:
        info.append(("preference file", sec.output))
    info += score_summary(sec)
    known = LABEL_KNOWN
    info += [
        (k, fnum(v) if is_num(v) else clip(v, 80))
        for k, v in s.items()
        if k not in known and not isinstance(v, dict | list)
    ]
    return {"counts": rows, "info": info}


def audit_ctx(sec: AuditSection) -> dict[str, Any]:
    """Audit metrics (table + CI chart), confusion, per category, variants, jury."""
    metrics = []
    rate_rows = []
    for key, m in ordered_metrics(sec.metrics):
        met = as_metric(m)
        metrics.append(
            {
                "name": metric_label(key),
                "key": key,
                "value": fmetric(met),
                "n": fnum(met.n) if met else "–",
                "skipped": fnum(met.skipped) if met else "–",
                "note": met.note if met and met.note and met.value is not None else "",
            }
        )
        if (
            met
            and met.value is not None
            and -1 <= met.value <= 1
            and not any(w in key for w in ("cost", "latency", "token", "length_coef"))
        ):
            rate_rows.append(svg.Interval(metric_label(key), met.value, met.lo, met.hi))
    chart = (
        svg.forest(
            rate_rows,
            title="audit metrics with 95% CIs",
            domain=(min([0.0] + [r.lo or r.value or 0 for r in rate_rows]), 1.0),
            ref=0.5,
            w=560,
        )
        if rate_rows
        else ""
    )
    chart += reliability_chart(sec)
    labels = ["a", "b", "tie"]
    conf_cols = labels + sorted({k for r in sec.confusion.values() for k in r} - set(labels))
    conf_rows = [
        (h, [fnum(sec.confusion[h].get(k, 0)) for k in conf_cols])
        for h in [x for x in labels if x in sec.confusion]
        + sorted(set(sec.confusion) - set(labels))
    ]
    vkeys: list[str] = []
    for v in sec.variants:
        for k in v.get("metrics") or {}:
            if k not in vkeys:
                vkeys.append(k)
    vkeys = [k for k, _ in ordered_metrics(dict.fromkeys(vkeys))]
    variants: dict[str, Any] = {
        "cols": [clip(v.get("label", f"variant {i + 1}"), 40) for i, v in enumerate(sec.variants)],
        "rows": [
            (metric_label(k), [fmetric((v.get("metrics") or {}).get(k)) for v in sec.variants])
            for k in vkeys
        ],
    }
    extra_keys = sorted({k for v in sec.variants for k in v if k not in ("label", "metrics")})
    variants["rows"] += [
        (k, [fnum(v.get(k)) if is_num(v.get(k)) else clip(v.get(k, "–"), 40) for v in sec.variants])
        for k in extra_keys
    ]
    cat_keys = present_keys([{k: 0.0 for k in ms} for ms in sec.by_category.values()], ["accuracy"])
    by_cat = {
        "cols": [metric_label(k) for k in cat_keys],
        "rows": [
            (cat, [fmetric(ms.get(k)) for k in cat_keys]) for cat, ms in sec.by_category.items()
        ],
    }
    jury = []
    for k, v in sec.jury.items():
        if isinstance(v, dict):
            jury += [
                (
                    f"{k}: {mk}",
                    fmetric(mv)
                    if isinstance(mv, dict)
                    else fnum(mv)
                    if is_num(mv)
                    else clip(mv, 60),
                )
                for mk, mv in v.items()
            ]
        else:
            jury.append((k, fnum(v) if is_num(v) else clip(v, 60)))
    return {
        "metrics": metrics,
        "chart": chart,
        "conf_cols": conf_cols,
        "conf_rows": conf_rows,
        "variants": variants,
        "by_cat": by_cat,
        "jury": jury,
    }


def reliability_chart(sec: AuditSection) -> str:
    """The audit's reliability diagram of p_a (mean p_a per bin vs the share of pairs the humans
    gave to a), with the diagonal of perfect calibration; "" when the judge gives no p_a."""
    cal = getattr(sec, "calibration", None) or {}
    bins = cal.get("bins") or []
    if not bins:
        return ""
    xs = [float(b["p_mean"]) for b in bins]
    ys = [float(b["observed"]) for b in bins]
    rule = (getattr(sec, "rule", None) or {}).get("label", "")
    return svg.line_chart(
        [
            svg.Series("judge", xs, ys),
            svg.Series("perfectly calibrated", [0.0, 1.0], [0.0, 1.0], dashed=True),
        ],
        title=f"reliability of p_a ({rule})" if rule else "reliability of p_a",
        xlabel="mean p_a in bin",
        ylabel="humans chose a",
    )


def rm_ctx(sec: RewardModelSection) -> dict[str, Any]:
    """Reward-model facts, final metrics, checkpoints and learning-curve/reward charts."""
    charts = []
    if sec.train:
        xs = steps_of(sec.train)
        for keys, title in ((["loss"], "training loss"), (["accuracy"], "training accuracy")):
            ss = [
                svg.Series(k, xs, series(sec.train, k))
                for k in keys
                if any(v is not None for v in series(sec.train, k))
            ]
            if ss:
                charts.append(svg.line_chart(ss, title=title))
    if sec.evals:
        xs = steps_of(sec.evals)
        ss = [
            svg.Series(k, xs, series(sec.evals, k))
            for k in ("accuracy", "ece")
            if any(v is not None for v in series(sec.evals, k))
        ]
        if ss:
            charts.append(svg.line_chart(ss, title="held-out accuracy / ECE"))
    if sec.reward_samples:
        charts.append(svg.histogram(dict(sec.reward_samples), title="held-out rewards"))
    info = [
        ("model", sec.model),
        ("saved to", sec.output_dir),
        ("train pairs", fnum(sec.n_train)),
        ("eval pairs", fnum(sec.n_eval)),
        ("truncated", fnum(sec.truncated)),
    ]
    final = [(k, fnum(v)) for k, v in sec.final.items()]
    ckpts = [(fstep(c.get("step")), c.get("path", "")) for c in sec.checkpoints]
    return {"charts": charts, "info": info, "final": final, "checkpoints": ckpts}


PPO_CHARTS = [
    (("reward_mean",), "reward (mean ± std)"),
    (("kl",), "KL to reference"),
    (("entropy",), "entropy"),
    (("response_length",), "response length"),
    (("policy_loss", "value_loss"), "losses"),
    (("clip_frac", "approx_kl"), "clip fraction / approx. KL"),
]


def ppo_ctx(sec: PPOSection, markers: list[svg.Marker]) -> dict[str, Any]:
    """PPO step charts (alarm markers included), extra per-step charts, samples, checkpoints."""
    charts = []
    xs = steps_of(sec.steps)
    used: set[str] = {"step", "reward_std"}
    for keys, title in PPO_CHARTS:
        ss = []
        for k in keys:
            ys = series(sec.steps, k)
            if not any(v is not None for v in ys):
                continue
            used.add(k)
            if k == "reward_mean" and any(v is not None for v in series(sec.steps, "reward_std")):
                sd = series(sec.steps, "reward_std")
                lo = [
                    m - s if m is not None and s is not None else None
                    for m, s in zip(ys, sd, strict=True)
                ]
                hi = [
                    m + s if m is not None and s is not None else None
                    for m, s in zip(ys, sd, strict=True)
                ]
                ss.append(svg.Series(k, xs, ys, lo, hi))
            else:
                ss.append(svg.Series(k, xs, ys))
        if ss:
            charts.append(svg.line_chart(ss, title=title, markers=markers))
    others = [k for k in present_keys(sec.steps, []) if k not in used]
    # every other per-step metric gets a small chart too (collapsed; timings stay a list)
    more = [
        svg.line_chart([svg.Series(k, xs, series(sec.steps, k))], title=k, markers=markers)
        for k in others
        if not k.startswith("time_")
    ][:24]
    samples = [
        {
            "step": fstep(s.get("step")),
            "reward": fnum(s.get("reward")),
            "prompt": s.get("prompt", ""),
            "response": s.get("response", ""),
        }
        for s in sec.samples[-50:]
    ]
    ckpts = [(fstep(c.get("step")), c.get("path", "")) for c in sec.checkpoints]
    return {
        "charts": charts,
        "more": more,
        "others": [k for k in others if k.startswith("time_")],
        "samples": samples,
        "checkpoints": ckpts,
    }


def _band(rows: Sequence[dict[str, Any]], key: str) -> tuple[Any, Any]:
    lo, hi = series(rows, f"{key}_lo"), series(rows, f"{key}_hi")
    return (lo, hi) if any(v is not None for v in lo) else (None, None)


def overopt_ctx(sec: OveroptSection, markers: list[svg.Marker]) -> dict[str, Any]:
    """Gold vs proxy / KL charts, alarms with evidence, fit, best checkpoint, degeneration, probes."""
    charts = []
    if sec.points:
        xs = steps_of(sec.points)
        ss = []
        for k, name in (
            ("proxy", f"proxy ({neutralize(sec.proxy) or 'proxy'})"),
            ("gold", f"gold ({neutralize(sec.gold) or 'gold'})"),
        ):
            ys = series(sec.points, f"{k}_mean")
            if any(v is not None for v in ys):
                lo, hi = series(sec.points, f"{k}_lo"), series(sec.points, f"{k}_hi")
                has_band = any(v is not None for v in lo)
                ss.append(
                    svg.Series(
                        name,
                        xs,
                        ys,
                        lo if has_band else None,
                        hi if has_band else None,
                        dashed=k == "proxy",
                    )
                )
        if ss:
            charts.append(svg.line_chart(ss, title="gold vs proxy reward", markers=markers))
        kl = series(sec.points, "kl")
        if any(v is not None for v in kl):
            charts.append(
                svg.line_chart(
                    [svg.Series("kl", xs, kl, *_band(sec.points, "kl"))],
                    title="KL to reference",
                    markers=markers,
                )
            )
            # Gao et al. (2022) plot rewards against d = sqrt(KL)
            sq = [v**0.5 if v is not None and v >= 0 else None for v in kl]
            pairs = sorted((x, i) for i, x in enumerate(sq) if x is not None)
            if len(pairs) > 1:
                dx = [x for x, _ in pairs]
                ss2 = [
                    svg.Series(s.name, dx, [s.ys[i] for _, i in pairs], dashed=s.dashed) for s in ss
                ]
                charts.append(
                    svg.line_chart(
                        ss2, title="reward vs sqrt(KL) (Gao et al. 2022)", xlabel="sqrt(KL)"
                    )
                )
    alarms = [
        {
            "step": fstep(a.get("step")),
            "kind": a.get("kind", "alarm"),
            "message": a.get("message", ""),
            "evidence": evidence_text(a.get("evidence"), 24),
            "examples": [neutralize(x) for x in (a.get("examples") or [])[:5]],
        }
        for a in sec.alarms
    ]
    degen_keys: list[str] = []
    for d in sec.degeneration:
        for k in d.get("metrics") or {}:
            if k not in degen_keys:
                degen_keys.append(k)
    degen = []
    for d in sec.degeneration:
        m, ref, flags = d.get("metrics") or {}, d.get("reference") or {}, d.get("flags") or []
        degen.append(
            {
                "step": fstep(d.get("step")),
                "cells": [
                    (
                        f"{fnum(m.get(k))}" + (f" (ref {fnum(ref[k])})" if k in ref else ""),
                        k in flags,
                    )
                    for k in degen_keys
                ],
                "examples": [neutralize(x) for x in (d.get("examples") or [])[:3]],
            }
        )
    probes = [
        {
            "step": fstep(p.get("step")),
            "name": p.get("name", ""),
            "text": p.get("text", ""),
            "score": fnum(p.get("score")),
            "median": fnum(p.get("median_real")),
            "flagged": bool(p.get("flagged")),
        }
        for p in sec.probes
    ]
    fit = [(k, fnum(v) if is_num(v) else clip(v, 80)) for k, v in sec.fit.items()]
    best = [(k, fnum(v) if is_num(v) else clip(v, 120)) for k, v in sec.best_checkpoint.items()]
    return {
        "charts": charts,
        "alarms": alarms,
        "degen_keys": degen_keys,
        "degen": degen,
        "probes": probes,
        "fit": fit,
        "best": best,
    }


def tournament_ctx(sec: TournamentSection) -> dict[str, Any]:
    """Leaderboard rows, rating CI chart, observed/predicted heatmaps, vs-baseline win rates."""
    from judge_rl.tournament.table import (
        BOARD_COLUMNS,
        WINRATE_COLUMNS,
        WINRATE_HEADINGS,
        board_cells,
        board_headings,
        ci_heading,
        interval_caption,
        winrate_cells,
    )

    interval = (getattr(sec, "model_extra", None) or {}).get("interval")
    interval = interval if isinstance(interval, dict) else None
    heads = board_headings(interval)
    board = []
    rows = []
    for r in sec.leaderboard:
        board.append(board_cells(r))
        rating = r.get("rating")
        rows.append(
            svg.Interval(
                f"{fnum(r.get('rank'))}. {neutralize(r.get('model', '?'))}",
                float(rating) if is_num(rating) else None,
                r.get("lo") if is_num(r.get("lo")) else None,
                r.get("hi") if is_num(r.get("hi")) else None,
            )
        )
    has_ci = any(is_num(r.get("lo")) for r in sec.leaderboard)
    caption = interval_caption(interval) if has_ci else ""
    chart = (
        svg.forest(
            rows,
            title=f"ratings ({neutralize(sec.method)}) with {ci_heading(interval)}s",
            w=560,
        )
        if rows
        else ""
    )
    heat = []
    n = len(sec.models)
    # rows and columns in leaderboard order (best first), models without a row at the end
    ranked = [r.get("model") for r in sec.leaderboard]
    order = [sec.models.index(m) for m in ranked if m in sec.models]
    order += [i for i in range(n) if i not in order]
    labels = [sec.models[i] for i in order]

    def permuted(mat: Sequence[Sequence[Any]]) -> list[list[Any]]:
        return [[mat[i][j] if j < len(mat[i]) else None for j in order] for i in order]

    if sec.models and len(sec.win_matrix) == n:
        heat.append(
            svg.heatmap(labels, permuted(sec.win_matrix), title="observed win rate (row vs column)")
        )
    if sec.models and len(sec.predicted) == n:
        heat.append(
            svg.heatmap(labels, permuted(sec.predicted), title="predicted win rate (model)")
        )
    winrates = [winrate_cells(w) for w in sec.winrates]
    info = [
        ("method", sec.method),
        ("pairing", sec.pairing or "–"),
        ("battles", fnum(len(sec.battles))),
        ("judge calls", fnum(sec.calls)),
    ]
    return {
        "columns": [(k, heads[k]) for k in BOARD_COLUMNS],
        "caption": caption,
        "wr_columns": [(k, WINRATE_HEADINGS[k]) for k in WINRATE_COLUMNS],
        "board": board,
        "chart": chart,
        "heat": heat,
        "winrates": winrates,
        "warnings": sec.warnings,
        "info": info,
    }


def _pretty(obj: Any) -> str:
    return json.dumps(_clean(obj), indent=2, ensure_ascii=False, default=str, sort_keys=True)


def compare_ctx(logs: Sequence[RunLog]) -> dict[str, Any]:
    """Headline figures of several runs and their PPO/gold curves overlaid."""
    from judge_rl.report._compare import headline_rows

    cols, rows = headline_rows(logs)
    charts = []
    for key, title in (("reward_mean", "PPO reward across runs"), ("kl", "PPO KL across runs")):
        ss = [
            svg.Series(g.run, steps_of(g.ppo.steps), series(g.ppo.steps, key))
            for g in logs
            if g.ppo and g.ppo.steps
        ]
        if len(ss) > 0 and any(v is not None for s in ss for v in s.ys):
            charts.append(svg.line_chart(ss, title=title, legend=True))
    ss = [
        svg.Series(g.run, steps_of(g.overopt.points), series(g.overopt.points, "gold_mean"))
        for g in logs
        if g.overopt and g.overopt.points
    ]
    if ss and any(v is not None for s in ss for v in s.ys):
        charts.append(svg.line_chart(ss, title="gold reward across runs", legend=True))
    return {"cols": cols, "rows": rows, "charts": charts}


def extras_ctx(sec: Any) -> dict[str, Any]:
    """A section's extra keys: string lists as lists, flat values as a table, nested as JSON."""
    lists, kv, nested = [], [], []
    for key, val in extras(sec).items():
        if isinstance(val, list) and all(isinstance(x, str) for x in val):
            if val:
                lists.append((key, val[:50]))
        elif isinstance(val, dict | list):
            items = flatten(val) if isinstance(val, dict) else []
            if isinstance(val, dict) and len(items) <= 12:
                kv += [
                    (f"{key}.{k}", fnum(v) if is_num(v) or v is None else clip(v, 200))
                    for k, v in items
                ]
            else:
                nested.append((key, _pretty(val)))
        else:
            kv.append((key, fnum(val) if is_num(val) or val is None else clip(val, 200)))
    return {"lists": lists, "kv": kv, "nested": nested}


def build_context(log: RunLog, compare: Sequence[RunLog] = ()) -> dict[str, Any]:
    """Everything the template shows, as display-ready values (pure)."""
    markers = _alarm_markers(log)
    secs = sections_of(log)
    data = browser_rows(log)
    ctx: dict[str, Any] = {
        "log": log,
        "sections": secs,
        "alarms_n": len(log.overopt.alarms) if log.overopt else 0,
        "label": label_ctx(log.label) if log.label else None,
        "audit": audit_ctx(log.audit) if log.audit else None,
        "rm": rm_ctx(log.reward_model) if log.reward_model else None,
        "ppo": ppo_ctx(log.ppo, markers) if log.ppo else None,
        "overopt": overopt_ctx(log.overopt, markers) if log.overopt else None,
        "tournament": tournament_ctx(log.tournament) if log.tournament else None,
        "n_rows": len(data["rows"]),
        "data_json": json_for_script(data) if data["rows"] else "",
        "config": _pretty(log.config),
        "environment": [
            (k, v if isinstance(v, str) else json.dumps(_clean(v), default=str))
            for k, v in log.environment.items()
        ],
        "judges": [j.model_dump(mode="json") | {"key": j.key} for j in log.judges],
        "timings": [(k, fsecs(v)) for k, v in log.timings.items()],
        "cost": [(k, fcost(v)) for k, v in log.cost.items()],
        "extra": _pretty(log.extra) if log.extra else "",
        "compare": compare_ctx([log, *compare]) if compare else None,
        "extras": {name: extras_ctx(getattr(log, name)) for name in secs},
    }
    return ctx


# ---------------------------------------------------------------- rendering


def _finalize(value: Any) -> Any:
    """Jinja ``finalize``: neutralise every printed string (Markup is already safe markup)."""
    from markupsafe import Markup

    if isinstance(value, Markup):
        return value
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralize(value)
    return value


@functools.lru_cache(maxsize=1)
def _env() -> Any:
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # safe: the package's own template, in the immutable sandbox; model/file text only as escaped data
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        finalize=_finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fnum"] = fnum
    env.filters["pretty"] = _pretty
    return env


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def render_html(log: RunLog, compare: Sequence[RunLog] = ()) -> str:
    """The report as one HTML string (pure function of the run log(s))."""
    from markupsafe import Markup

    ctx = build_context(log, compare)
    script = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    for k in ("chart",):
        for sec in ("audit", "tournament"):
            if ctx[sec] and ctx[sec].get(k):
                ctx[sec][k] = Markup(ctx[sec][k])
    for sec in ("rm", "ppo", "overopt", "compare"):
        if ctx[sec]:
            ctx[sec]["charts"] = [Markup(c) for c in ctx[sec]["charts"]]
            if "more" in ctx[sec]:
                ctx[sec]["more"] = [Markup(c) for c in ctx[sec]["more"]]
    if ctx["tournament"]:
        ctx["tournament"]["heat"] = [Markup(c) for c in ctx["tournament"]["heat"]]
    ctx["data_json"] = Markup(ctx["data_json"])
    ctx["script"] = Markup(script)
    ctx["css"] = Markup(css)
    ctx["csp"] = (
        f"default-src 'none'; script-src '{_csp_hash(script)}'; "
        f"style-src '{_csp_hash(css)}'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    return _env().get_template("report.html.j2").render(**ctx)


def default_path(run_dir: str | os.PathLike[str]) -> Path:
    """``<run dir>/report.html`` (``reports/<run>/report.html`` for a standard run)."""
    p = Path(run_dir)
    return (p.parent if p.suffix == ".json" else p) / "report.html"


def write_report(log: RunLog, path: str | os.PathLike[str], compare: Sequence[RunLog] = ()) -> Path:
    """Render ``log`` to ``path`` (atomically) and return the path.

    ``path`` may be a folder (then ``path/report.html``).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "report.html"
    atomic_write_text(p, render_html(log, compare))
    return p
