"""Inline SVG charts generated at build time (no plotting library, no network).

Each function returns SVG markup as a string; every piece of text in it goes through
:func:`_esc` (HTML-escaped and neutralised), so a model or file name cannot inject markup.
Colours are CSS classes (``s0`` … ``s5``, ``alarm``, ``band``) styled by the report's stylesheet,
so charts follow the page's light/dark/print styles.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from judge_rl.report._common import fnum, is_num, neutralize

W, H = 480, 260
PAD_L, PAD_R, PAD_T, PAD_B = 52, 14, 38, 40


def _esc(text: object) -> str:
    return html.escape(neutralize(text), quote=True)


@dataclass
class Series:
    """One line: ``ys`` aligned with ``xs``; optional band ``lo``/``hi``."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    lo: Sequence[float | None] | None = None
    hi: Sequence[float | None] | None = None
    dashed: bool = False


@dataclass
class Marker:
    """A vertical line at ``x`` (an alarm)."""

    x: float
    label: str
    kind: str = "alarm"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (Heckbert's "nice numbers").

    >>> _nice_ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    """
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + 1e-9 * step:
        ticks.append(t)
        t += step
    return ticks


def _tick_label(t: float, ticks: Sequence[float]) -> str:
    """A tick value with just enough decimals to tell neighbouring ticks apart.

    >>> [_tick_label(t, [5.551, 5.552, 5.553]) for t in (5.551, 5.552)]
    ['5.551', '5.552']
    >>> _tick_label(200.0, [0.0, 100.0, 200.0])
    '200'
    """
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(t) or 1.0
    if abs(t) < step * 1e-9:
        t = 0.0
    if max(abs(x) for x in ticks) >= 1e5 or 0 < step < 1e-4:
        return f"{t:.2g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 2
    return f"{t:.{decimals}f}"


def _extent(vals: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    lo, hi = min(vals), max(vals)
    if hi == lo:
        d = abs(lo) * 0.1 or 1.0
        return lo - d, hi + d
    d = (hi - lo) * pad
    return lo - d, hi + d


def _svg_open(title: str, w: int = W, h: int = H, cls: str = "chart") -> list[str]:
    return [
        f'<svg class="{cls}" viewBox="0 0 {w} {h}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{_esc(title)}">',
        f"<title>{_esc(title)}</title>",
        f'<text class="ctitle" x="{w / 2:.0f}" y="16" text-anchor="middle">{_esc(title)}</text>',
    ]


MAX_POINTS = 600


def _thin(s: Series, limit: int = MAX_POINTS) -> Series:
    """Every k-th point of a long series (and its band), keeping the last one.

    >>> len(_thin(Series("x", list(range(10_000)), list(range(10_000)))).xs)
    590
    """
    n = len(s.xs)
    if n <= limit:
        return s
    idx = list(range(0, n, -(-n // limit)))
    if idx[-1] != n - 1:
        idx.append(n - 1)

    def pick(v: Sequence[Any] | None) -> list[Any] | None:
        return None if v is None else [v[i] for i in idx if i < len(v)]

    return Series(
        s.name, [s.xs[i] for i in idx], pick(s.ys) or [], pick(s.lo), pick(s.hi), s.dashed
    )


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str = "step",
    ylabel: str = "",
    markers: Sequence[Marker] = (),
    w: int = W,
    h: int = H,
    legend: bool | None = None,
) -> str:
    """A line chart of several series with optional CI bands and vertical alarm markers.

    Series longer than :data:`MAX_POINTS` are thinned (every k-th point, the last kept): the chart
    is ~480 px wide, so more points add bytes, not detail.
    """
    series = [_thin(s) for s in series]
    pts = [
        (x, y) for s in series for x, y in zip(s.xs, s.ys, strict=False) if is_num(y) and is_num(x)
    ]
    for s in series:
        for band in (s.lo, s.hi):
            if band is not None:
                pts += [(x, y) for x, y in zip(s.xs, band, strict=False) if is_num(y) and is_num(x)]
    out = _svg_open(title, w, h)
    if not pts:
        out.append(
            f'<text class="muted" x="{w / 2}" y="{h / 2}" text-anchor="middle">no data</text>'
        )
        return "\n".join(out + ["</svg>"])
    xs_all = [p[0] for p in pts]
    x0, x1 = min(xs_all), max(xs_all)
    # alarms outside the plotted range are not drawn (they would stretch the axis)
    markers = [m for m in markers if is_num(m.x) and x0 <= m.x <= x1]
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = _extent([p[1] for p in pts])
    iw, ih = w - PAD_L - PAD_R, h - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * iw

    def sy(y: float) -> float:
        return PAD_T + (1 - (y - y0) / (y1 - y0)) * ih

    # axes and grid
    yt = _nice_ticks(y0, y1)
    for t in yt:
        out.append(
            f'<line class="grid" x1="{PAD_L}" x2="{w - PAD_R}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>'
        )
        out.append(
            f'<text class="tick" x="{PAD_L - 4}" y="{sy(t) + 3:.1f}" '
            f'text-anchor="end">{_esc(_tick_label(t, yt))}</text>'
        )
    xt = _nice_ticks(x0, x1, 6)
    for t in xt:
        out.append(
            f'<text class="tick" x="{sx(t):.1f}" y="{h - PAD_B + 14}" '
            f'text-anchor="middle">{_esc(_tick_label(t, xt))}</text>'
        )
    out.append(f'<rect class="frame" x="{PAD_L}" y="{PAD_T}" width="{iw}" height="{ih}"/>')
    out.append(
        f'<text class="axis" x="{PAD_L + iw / 2:.0f}" y="{h - 6}" '
        f'text-anchor="middle">{_esc(xlabel)}</text>'
    )
    if ylabel:
        out.append(
            f'<text class="axis" transform="translate(12 {PAD_T + ih / 2:.0f}) rotate(-90)" '
            f'text-anchor="middle">{_esc(ylabel)}</text>'
        )
    # bands, then lines
    for k, s in enumerate(series):
        if s.lo is None or s.hi is None:
            continue
        top = [
            (x, hi)
            for x, hi, lo in zip(s.xs, s.hi, s.lo, strict=False)
            if is_num(hi) and is_num(lo)
        ]
        bot = [
            (x, lo)
            for x, hi, lo in zip(s.xs, s.hi, s.lo, strict=False)
            if is_num(hi) and is_num(lo)
        ]
        if len(top) > 1:
            poly = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in top + bot[::-1])
            out.append(f'<polygon class="band s{k % 6}" points="{poly}"/>')
    for k, s in enumerate(series):
        segs: list[list[str]] = [[]]
        for x, y in zip(s.xs, s.ys, strict=False):
            if is_num(y) and is_num(x):
                segs[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
            elif segs[-1]:
                segs.append([])
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        for seg in segs:
            if len(seg) > 1:
                out.append(f'<polyline class="line s{k % 6}"{dash} points="{" ".join(seg)}"/>')
            elif len(seg) == 1:
                cx, cy = seg[0].split(",")
                out.append(f'<circle class="dot s{k % 6}" cx="{cx}" cy="{cy}" r="2.5"/>')
    for m in markers:
        x = sx(m.x)
        out.append(
            f'<line class="{_esc(m.kind)}" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" '
            f'y2="{PAD_T + ih}"><title>{_esc(m.label)}</title></line>'
        )
        right = x > PAD_L + 0.65 * iw  # label on the left of a marker near the right edge
        out.append(
            f'<text class="alarmtxt" x="{x - 3 if right else x + 3:.1f}" '
            f'y="{PAD_T + 10 + 11 * (markers.index(m) % 3)}" '
            f'text-anchor="{"end" if right else "start"}">{_esc(m.label[:18])}</text>'
        )
    # legend
    lx = PAD_L + 6.0
    for k, s in enumerate(series):
        if not (legend if legend is not None else len(series) > 1):
            break
        out.append(
            f'<line class="line s{k % 6}" x1="{lx}" x2="{lx + 14}" y1="{PAD_T - 12}" '
            f'y2="{PAD_T - 12}"/>'
        )
        out.append(f'<text class="legend" x="{lx + 17}" y="{PAD_T - 9}">{_esc(s.name[:24])}</text>')
        lx += 24 + 6.2 * min(len(s.name), 24)
    out.append("</svg>")
    return "\n".join(out)


def _color(v: float) -> str:
    """Diverging blue-white-red for a win rate in [0, 1] (0.5 is white)."""
    v = min(max(v, 0.0), 1.0)
    if v >= 0.5:
        t = (v - 0.5) * 2
        r, g, b = 255 - 200 * t, 255 - 120 * t, 255 - 60 * t  # toward blue (row wins)
    else:
        t = (0.5 - v) * 2
        r, g, b = 255 - 30 * t, 255 - 160 * t, 255 - 160 * t  # toward red
    return f"rgb({r:.0f},{g:.0f},{b:.0f})"


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[float | None]], *, title: str) -> str:
    """Win rate of row over column; blank (hatched) where they never met."""
    n = len(labels)
    cell = max(18, min(56, 360 // max(n, 1)))
    left = 150
    top = 34 + 0
    w = left + n * cell + 10
    h = top + n * cell + 76
    out = _svg_open(title, w, h, cls="chart heat")
    show_val = cell >= 30
    for i in range(n):
        y = top + i * cell
        out.append(
            f'<text class="tick" x="{left - 4}" y="{y + cell / 2 + 3:.1f}" '
            f'text-anchor="end">{_esc(neutralize(labels[i])[:22])}</text>'
        )
        row = matrix[i] if i < len(matrix) else []
        for j in range(n):
            x = left + j * cell
            v = row[j] if j < len(row) else None
            name = f"{neutralize(labels[i])} vs {neutralize(labels[j])}"
            if i == j:
                out.append(f'<rect class="diag" x="{x}" y="{y}" width="{cell}" height="{cell}"/>')
            elif is_num(v):
                out.append(
                    f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
                    f'fill="{_color(float(v))}" class="cell"><title>{_esc(name)}: '
                    f"{_esc(fnum(v))}</title></rect>"
                )
                if show_val:
                    out.append(
                        f'<text class="cellv" x="{x + cell / 2}" y="{y + cell / 2 + 4}" '
                        f'text-anchor="middle">{_esc(f"{100 * float(v):.0f}")}</text>'
                    )
            else:
                out.append(
                    f'<rect class="never" x="{x}" y="{y}" width="{cell}" height="{cell}">'
                    f"<title>{_esc(name)}: never met</title></rect>"
                )
    for j in range(n):
        xc = left + j * cell + cell / 2
        yc = top + n * cell + 6
        out.append(
            f'<text class="tick" transform="translate({xc:.1f} {yc}) rotate(45)" '
            f'text-anchor="start">{_esc(neutralize(labels[j])[:14])}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


@dataclass
class Interval:
    """A point with its interval (a leaderboard row, a metric)."""

    label: str
    value: float | None
    lo: float | None = None
    hi: float | None = None
    extra: str = ""


def forest(
    rows: Sequence[Interval],
    *,
    title: str,
    ref: float | None = None,
    domain: tuple[float, float] | None = None,
    w: int = W,
) -> str:
    """Horizontal interval bars (a forest plot): leaderboard ratings, audit metrics."""
    row_h = 22
    left = 170
    right = 60
    h = 36 + row_h * max(len(rows), 1) + 24
    out = _svg_open(title, w, h)
    vals = [v for r in rows for v in (r.value, r.lo, r.hi) if is_num(v)]
    if ref is not None:
        vals.append(ref)
    if not vals:
        out.append(
            f'<text class="muted" x="{w / 2}" y="{h / 2}" text-anchor="middle">no data</text>'
        )
        return "\n".join(out + ["</svg>"])
    x0, x1 = domain if domain else _extent(vals)
    iw = w - left - right

    def sx(x: float) -> float:
        return left + (min(max(x, x0), x1) - x0) / (x1 - x0) * iw

    base = 30 + row_h * len(rows)
    ft = _nice_ticks(x0, x1, 5)
    for t in ft:
        out.append(f'<line class="grid" x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="28" y2="{base}"/>')
        out.append(
            f'<text class="tick" x="{sx(t):.1f}" y="{base + 14}" '
            f'text-anchor="middle">{_esc(_tick_label(t, ft))}</text>'
        )
    if ref is not None:
        out.append(f'<line class="ref" x1="{sx(ref):.1f}" x2="{sx(ref):.1f}" y1="28" y2="{base}"/>')
    for i, r in enumerate(rows):
        y = 30 + row_h * i + row_h / 2
        out.append(
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end">{_esc(neutralize(r.label)[:26])}</text>'
        )
        if is_num(r.lo) and is_num(r.hi):
            out.append(
                f'<line class="ci" x1="{sx(r.lo):.1f}" x2="{sx(r.hi):.1f}" y1="{y:.1f}" '
                f'y2="{y:.1f}"/>'
            )
        if is_num(r.value):
            tip = f"{neutralize(r.label)}: {fnum(r.value)}"
            if is_num(r.lo) and is_num(r.hi):
                tip += f" [{fnum(r.lo)}, {fnum(r.hi)}]"
            out.append(
                f'<circle class="pt" cx="{sx(r.value):.1f}" cy="{y:.1f}" r="4">'
                f"<title>{_esc(tip)}</title></circle>"
            )
            out.append(
                f'<text class="tick" x="{w - right + 6}" y="{y + 4:.1f}">'
                f"{_esc(r.extra or fnum(r.value))}</text>"
            )
        else:
            out.append(f'<text class="muted" x="{left + 4}" y="{y + 4:.1f}">n/a</text>')
    out.append("</svg>")
    return "\n".join(out)


def histogram(
    groups: dict[str, Sequence[float]], *, title: str, bins: int = 24, xlabel: str = "reward"
) -> str:
    """Overlaid step histograms (e.g. held-out rewards of chosen vs rejected)."""
    clean = {k: [float(v) for v in vs if is_num(v)] for k, vs in groups.items()}
    allv = [v for vs in clean.values() for v in vs]
    out = _svg_open(title)
    if not allv:
        out.append(
            f'<text class="muted" x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>'
        )
        return "\n".join(out + ["</svg>"])
    x0, x1 = _extent(allv, 0.02)
    width = (x1 - x0) / bins
    counts = {k: [0] * bins for k in clean}
    for k, vs in clean.items():
        for v in vs:
            counts[k][min(int((v - x0) / width), bins - 1)] += 1
    ymax = max(max(c) for c in counts.values()) or 1
    iw, ih = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * iw

    def sy(y: float) -> float:
        return PAD_T + (1 - y / ymax) * ih

    out.append(f'<rect class="frame" x="{PAD_L}" y="{PAD_T}" width="{iw}" height="{ih}"/>')
    ht = _nice_ticks(x0, x1, 6)
    for t in ht:
        out.append(
            f'<text class="tick" x="{sx(t):.1f}" y="{H - PAD_B + 14}" '
            f'text-anchor="middle">{_esc(_tick_label(t, ht))}</text>'
        )
    for t in _nice_ticks(0, ymax, 4):
        out.append(
            f'<text class="tick" x="{PAD_L - 4}" y="{sy(t) + 3:.1f}" '
            f'text-anchor="end">{_esc(fnum(t, 0) if t < 1 else str(int(t)))}</text>'
        )
    out.append(
        f'<text class="axis" x="{PAD_L + iw / 2:.0f}" y="{H - 6}" '
        f'text-anchor="middle">{_esc(xlabel)}</text>'
    )
    for idx, (name, cnts) in enumerate(counts.items()):
        d = [f"M{sx(x0):.1f},{sy(0):.1f}"]
        for b, cnt in enumerate(cnts):
            d.append(
                f"L{sx(x0 + b * width):.1f},{sy(cnt):.1f}L{sx(x0 + (b + 1) * width):.1f},"
                f"{sy(cnt):.1f}"
            )
        d.append(f"L{sx(x1):.1f},{sy(0):.1f}Z")
        out.append(
            f'<path class="hist s{idx % 6}" d="{"".join(d)}"><title>{_esc(name)}</title></path>'
        )
        out.append(
            f'<text class="legend s{idx % 6}t" x="{PAD_L + 8}" y="{PAD_T + 14 + 14 * idx}">'
            f"{_esc(name)} (n={len(clean[name])})</text>"
        )
    out.append("</svg>")
    return "\n".join(out)
