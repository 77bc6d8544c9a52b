"""Leaderboard rows -> rich table / CSV / JSON (the CLI prints what these return)."""

from __future__ import annotations

import csv
import io
import json
import math
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
    """``fmt`` for a finite number, ``–`` for missing or NaN; any other value as recorded (the
    renderers escape it)."""
    if _finite(x):
        return fmt.format(x)
    return "–" if x is None or isinstance(x, float | int) else str(x)[:40]


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _count(x: Any) -> str:
    """A count stored as a float (weighted): an integer when it is one."""
    if not _finite(x):
        return _num(x)
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


# ----------------------------------------------------------------------------------------------
# The one leaderboard row model: the CLI table, the terminal report and the HTML report all render
# these cells, under these headings.
# ----------------------------------------------------------------------------------------------

BOARD_COLUMNS = ("rank", "model", "rating", "ci", "battles", "wtl", "win_rate")
"""Cell keys of a leaderboard row, in display order."""


def ci_heading(interval: dict[str, Any] | None) -> str:
    """``"95% CI"`` from the recorded level, ``"CI"`` when no level was recorded.

    >>> ci_heading({"level": 0.9}), ci_heading(None)
    ('90% CI', 'CI')
    """
    level = (interval or {}).get("level")
    return f"{level:.0%} CI" if _finite(level) else "CI"


def board_headings(interval: dict[str, Any] | None) -> dict[str, str]:
    return {
        "rank": "rank",
        "model": "model",
        "rating": "rating",
        "ci": ci_heading(interval),
        "battles": "battles",
        "wtl": "W-T-L",
        "win_rate": "win%",
    }


def interval_caption(interval: dict[str, Any] | None) -> str:
    """What the intervals are (level, resampling scheme, rounds), printed beside them."""
    if interval and interval.get("label"):
        return str(interval["label"])
    return "intervals: level and method not recorded in this run log"


def board_cells(r: dict[str, Any]) -> dict[str, str]:
    """Display text of one leaderboard row (model name unescaped: renderers escape it).

    >>> c = board_cells({"rank": 1, "rank_lo": 1, "rank_hi": 2, "model": "m", "rating": 1012.34,
    ...                  "lo": 990.0, "hi": 1030.5, "battles": 10, "wins": 6.0, "ties": 1.0,
    ...                  "losses": 3.0, "win_rate": 0.65})
    >>> c["rank"], c["rating"], c["ci"], c["wtl"], c["win_rate"]
    ('1 (1–2)', '1012.3', '[990, 1030]', '6-1-3', '65.0%')
    """
    lo, hi = r.get("rank_lo"), r.get("rank_hi")
    rank = _num(r.get("rank"))
    if _finite(lo) and _finite(hi) and (lo, hi) != (r.get("rank"), r.get("rank")):
        rank += f" ({lo:.0f}–{hi:.0f})"
    return {
        "rank": rank,
        "model": str(r.get("model", "?")),
        "rating": _num(r.get("rating"), "{:.1f}"),
        "ci": f"[{r['lo']:.0f}, {r['hi']:.0f}]"
        if _finite(r.get("lo")) and _finite(r.get("hi"))
        else "–",
        "battles": _count(r.get("battles")),
        "wtl": "-".join(_count(r.get(k)) for k in ("wins", "ties", "losses")),
        "win_rate": _num(r.get("win_rate"), "{:.1%}") if _finite(r.get("win_rate")) else "–",
    }


WINRATE_COLUMNS = ("model", "baseline", "n", "mean_pref", "win_rate", "lc", "wdl")
WINRATE_HEADINGS = {
    "model": "model",
    "baseline": "baseline",
    "n": "n",
    "mean_pref": "mean pref ± SE",
    "win_rate": "win rate",
    "lc": "LC win rate",
    "wdl": "W-D-L",
}


def winrate_cells(w: dict[str, Any]) -> dict[str, str]:
    """Display text of one vs-baseline row: the SE sits beside the mean preference it belongs
    to, never beside the discrete win rate.

    >>> c = winrate_cells({"model": "m", "baseline": "b", "n": 4, "mean_pref": 0.5625,
    ...                    "se": 0.2, "win_rate": 0.625, "wins": 2, "draws": 1, "losses": 1})
    >>> c["mean_pref"], c["win_rate"], c["lc"], c["wdl"]
    ('56.2% ± 20.0%', '62.5%', '–', '2-1-1')
    """
    mp, se = w.get("mean_pref"), w.get("se")
    pref = "–" if not _finite(mp) else f"{mp:.1%} ± " + (f"{se:.1%}" if _finite(se) else "–")
    return {
        "model": str(w.get("model", "?")),
        "baseline": str(w.get("baseline", "?")),
        "n": _count(w.get("n")),
        "mean_pref": pref,
        "win_rate": _num(w.get("win_rate"), "{:.1%}"),
        "lc": _num(w.get("lc_win_rate"), "{:.1%}"),
        "wdl": "-".join(_count(w.get(k)) for k in ("wins", "draws", "losses")),
    }


def rich_table(
    rows: Sequence[dict[str, Any]],
    *,
    title: str = "",
    level: float | None = None,
    interval: dict[str, Any] | str | None = None,
) -> Any:
    """A rich Table of :func:`board_cells` under :func:`board_headings`; the caption says what
    the intervals are (``interval``: the leaderboard's ``interval`` dict, or its label)."""
    from rich.markup import escape
    from rich.table import Table

    info: dict[str, Any] | None
    if isinstance(interval, str):
        info = {"label": interval, "level": level}
    else:
        info = dict(interval or {})
        if level is not None:
            info.setdefault("level", level)
    has_ci = any(_finite(r.get("lo")) for r in rows)
    t = Table(
        title=title or None,
        title_justify="left",
        caption=interval_caption(info) if has_ci else None,
        caption_justify="left",
    )
    heads = board_headings(info)
    for key in BOARD_COLUMNS:
        t.add_column(
            heads[key], justify="left" if key == "model" else "right", no_wrap=key != "model"
        )
    for r in rows:
        c = board_cells(r)
        t.add_row(*(escape(c[k]) for k in BOARD_COLUMNS))
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


def winrate_table(rows: Sequence[dict[str, Any]], *, title: str = "") -> Any:
    """A rich Table of :func:`winrate_cells` (win rates vs a baseline)."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title or None, title_justify="left")
    for k in WINRATE_COLUMNS:
        t.add_column(WINRATE_HEADINGS[k], justify="left" if k in ("model", "baseline") else "right")
    for r in rows:
        c = winrate_cells(r)
        t.add_row(*(escape(c[k]) for k in WINRATE_COLUMNS))
    return t


__all__ = [
    "BOARD_COLUMNS",
    "COLUMNS",
    "WINRATE_COLUMNS",
    "board_cells",
    "board_headings",
    "ci_heading",
    "interval_caption",
    "rich_table",
    "to_csv",
    "to_json",
    "winrate_cells",
    "winrate_table",
]
