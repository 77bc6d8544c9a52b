"""Leaderboard rows -> rich table / CSV / JSON (the CLI prints what these return)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

COLUMNS = (
    "rank",
    "model",
    "rating",
    "lo",
    "hi",
    "rank_lo",
    "rank_hi",
    "battles",
    "wins",
    "ties",
    "losses",
    "win_rate",
)


def _num(x: Any, fmt: str = "{:.0f}") -> str:
    return "–" if x is None else fmt.format(x)


def rich_table(
    rows: Sequence[dict[str, Any]],
    *,
    title: str = "",
    level: float = 0.95,
    interval: str | None = None,
) -> Any:
    """A rich Table: rank (interval), model, rating, CI, battles, W/T/L, win rate.

    The CI column is headed by the actual level; ``interval`` (e.g. ``"90% CI, bootstrap over
    prompts (clustered), 200 rounds"``) goes in the caption.
    """
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title or None, title_justify="left", caption=interval, caption_justify="left")
    t.add_column("rank", justify="right", no_wrap=True)
    t.add_column("model", no_wrap=True, min_width=10)
    t.add_column("rating", justify="right", no_wrap=True)
    t.add_column(f"{level:.0%} CI", justify="right", no_wrap=True)
    t.add_column("battles", justify="right", no_wrap=True)
    t.add_column("W/T/L", justify="right", no_wrap=True)
    t.add_column("win%", justify="right", no_wrap=True)
    for r in rows:
        rank = str(r.get("rank", ""))
        if r.get("rank_lo") is not None and (r["rank_lo"], r["rank_hi"]) != (r["rank"], r["rank"]):
            rank += f" ({r['rank_lo']}–{r['rank_hi']})"
        ci = (
            "–"
            if r.get("lo") is None
            else f"{r['lo'] - r['rating']:+.0f}/{r['hi'] - r['rating']:+.0f}"
        )
        wtl = f"{_num(r.get('wins'))}/{_num(r.get('ties'))}/{_num(r.get('losses'))}"
        t.add_row(
            rank,
            escape(str(r["model"])),
            _num(r.get("rating"), "{:.1f}"),
            ci,
            _num(r.get("battles")),
            wtl,
            _num(r.get("win_rate"), "{:.1%}"),
        )
    return t


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def to_json(rows: Sequence[dict[str, Any]], **extra: Any) -> str:
    """Valid JSON: NaN and infinities become ``null`` (JSON has no NaN)."""
    from judge_rl.tournament.battles import finite_or_none

    return json.dumps(
        finite_or_none({"leaderboard": list(rows), **extra}),
        indent=1,
        ensure_ascii=False,
        allow_nan=False,
    )


def _pref_se(r: dict[str, Any]) -> str:
    if r.get("mean_pref") is None:
        return "–"
    se = r.get("se")
    return f"{r['mean_pref']:.1%} ± " + ("–" if se is None else f"{se:.1%}")


def winrate_table(rows: Sequence[dict[str, Any]], *, title: str = "") -> Any:
    """A rich Table of win rates vs a baseline."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title or None, title_justify="left")
    for c in ("model", "baseline", "n", "mean pref ± SE", "win rate", "LC win rate", "W / D / L"):
        t.add_column(c, justify="left" if c in ("model", "baseline") else "right")
    for r in rows:
        t.add_row(
            escape(str(r["model"])),
            escape(str(r["baseline"])),
            str(r.get("n", "")),
            _pref_se(r),
            _num(r.get("win_rate"), "{:.1%}"),
            _num(r.get("lc_win_rate"), "{:.1%}"),
            f"{r.get('wins', 0)} / {r.get('draws', 0)} / {r.get('losses', 0)}",
        )
    return t


__all__ = ["COLUMNS", "rich_table", "to_csv", "to_json", "winrate_table"]
