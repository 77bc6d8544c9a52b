"""Helpers shared by the terminal and HTML reports: neutralising text, formatting numbers and
metrics, sparklines, and the label/audit summaries both reports show.

Everything here is a pure function of run-log data; nothing calls a model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from judge_rl.runlog import LabelSection, Metric, RunLog
from judge_rl.types import Judgment

BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
"""Unicode direction embeddings/overrides/isolates: they can make text display in an order
other than the one it is stored in (Trojan Source, CVE-2021-42574)."""

_BIDI_RE = re.compile(f"[{BIDI_CONTROLS}]")
# C0/C1 controls except tab and newline: ANSI escapes in model output must not reach a terminal.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPARK = "▁▂▃▄▅▆▇█"

SECTIONS = ("label", "audit", "reward_model", "ppo", "overopt", "tournament")
"""Run-log sections in the order both reports show them."""


def neutralize(text: Any) -> str:
    """Text safe to display: direction controls shown as visible code points, other control
    characters (ANSI escapes included) dropped, line/paragraph separators made newlines.

    >>> neutralize("a\\u202eb")
    'a[U+202E]b'
    >>> neutralize("x\\x1b[31mred")
    'x[31mred'
    >>> neutralize(None)
    ''
    """
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    s = _BIDI_RE.sub(lambda m: f"[U+{ord(m.group()):04X}]", s)
    s = s.replace("\u2028", "\n").replace("\u2029", "\n")
    return _CONTROL_RE.sub("", s)


def clip(text: Any, n: int) -> str:
    """Neutralised text on one line, cut to ``n`` characters with an ellipsis.

    >>> clip("hello\\nworld", 8)
    'hello w…'
    """
    s = " ".join(neutralize(text).split())
    return s if len(s) <= n else s[: max(n - 1, 0)] + "…"


def is_num(x: Any) -> TypeGuard[float]:
    """A finite int/float (bools excluded)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fnum(x: Any, digits: int = 3) -> str:
    """A number for display: ``–`` for missing/NaN, integers without decimals, else ``digits``
    significant-ish decimals.

    >>> fnum(0.71234), fnum(12), fnum(None), fnum(1234.5), fnum(float("nan")), fnum(-0.0)
    ('0.712', '12', '–', '1234', '–', '0.000')
    """
    if isinstance(x, bool):
        return str(x).lower()
    if not is_num(x):
        return "–" if x is None or isinstance(x, float) else neutralize(x)
    if isinstance(x, int):
        return str(x)
    if x == 0:
        x = 0.0  # no "-0.000"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if x != 0 and abs(x) < 10 ** (-digits):
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def fstep(x: Any) -> str:
    """A step or count stored as a float, shown as an integer when it is one.

    >>> fstep(39.0), fstep(2.5), fstep(None)
    ('39', '2.500', '–')
    """
    if is_num(x) and float(x).is_integer():
        return str(int(x))
    return fnum(x)


def fcost(x: Any) -> str:
    """Dollars: ``$0.0123``.

    >>> fcost(0.01234), fcost(12.5), fcost(None)
    ('$0.0123', '$12.50', '–')
    """
    if not is_num(x):
        return "–"
    return f"${x:.2f}" if abs(x) >= 1 else f"${x:.4f}"


def fsecs(x: Any) -> str:
    """Seconds as ``12.5 s``, ``3 m 05 s`` or ``1 h 02 m``.

    >>> fsecs(12.5), fsecs(185), fsecs(3725)
    ('12.5 s', '3 m 05 s', '1 h 02 m')
    """
    if not is_num(x):
        return "–"
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        return f"{int(x // 60)} m {int(x % 60):02d} s"
    return f"{int(x // 3600)} h {int(x % 3600 // 60):02d} m"


def as_metric(x: Any) -> Metric | None:
    """A :class:`Metric` from a Metric, a dict (variants store dicts) or a bare number."""
    if isinstance(x, Metric):
        return x
    if isinstance(x, Mapping):
        try:
            return Metric.model_validate(dict(x))
        except Exception:
            return None
    if is_num(x):
        return Metric(value=float(x))
    return None


def fmetric(m: Any, *, ci: bool = True) -> str:
    """``0.712 [0.662, 0.762]``; the note when the value is missing.

    >>> fmetric(Metric(value=0.7, lo=0.6, hi=0.8, n=10))
    '0.700 [0.600, 0.800]'
    >>> fmetric(Metric(note="no humans"))
    '– (no humans)'
    """
    met = as_metric(m)
    if met is None:
        return "–"
    if met.value is None:
        return "–" + (f" ({clip(met.note, 40)})" if met.note else "")
    s = fnum(met.value)
    if ci and met.lo is not None and met.hi is not None:
        s += f" [{fnum(met.lo)}, {fnum(met.hi)}]"
    return s


def sparkline(values: Iterable[Any], width: int = 40) -> str:
    """Unicode sparkline of ``values`` (resampled to at most ``width`` buckets by mean; missing
    values become spaces).

    >>> sparkline([0, 1, 2, 3, 4, 5, 6, 7])
    '▁▂▃▄▅▆▇█'
    >>> sparkline([1, 1, None])
    '▄▄ '
    """
    vals = [float(v) if is_num(v) else None for v in values]
    if not vals:
        return ""
    if len(vals) > width:
        buckets: list[float | None] = []
        for k in range(width):
            chunk = [
                v
                for v in vals[k * len(vals) // width : (k + 1) * len(vals) // width]
                if v is not None
            ]
            buckets.append(sum(chunk) / len(chunk) if chunk else None)
        vals = buckets
    present = [v for v in vals if v is not None]
    if not present:
        return " " * len(vals)
    lo, hi = min(present), max(present)
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif hi == lo:
            out.append(_SPARK[3])
        else:
            out.append(_SPARK[min(int((v - lo) / (hi - lo) * len(_SPARK)), len(_SPARK) - 1)])
    return "".join(out)


def series(rows: Sequence[Mapping[str, Any]], key: str) -> list[float | None]:
    """Column ``key`` of a list of per-step dicts (None where missing or not a number)."""
    return [float(r[key]) if is_num(r.get(key)) else None for r in rows]


def present_keys(
    rows: Sequence[Mapping[str, Any]], preferred: Sequence[str], skip: Sequence[str] = ("step",)
) -> list[str]:
    """Numeric columns of ``rows``: ``preferred`` first (when present), then any others."""
    seen: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k not in skip and is_num(v):
                seen.setdefault(k, None)
    return [k for k in preferred if k in seen] + [k for k in seen if k not in preferred]


def steps_of(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """The ``step`` column, or 0..n-1 when rows carry none."""
    return [float(r["step"]) if is_num(r.get("step")) else float(i) for i, r in enumerate(rows)]


def sections_of(log: RunLog) -> list[str]:
    """Names of the sections this run has, in report order."""
    return [s for s in SECTIONS if getattr(log, s) is not None]


def label_summary(sec: LabelSection) -> dict[str, Any]:
    """The section's ``summary``, completed from its judgments where keys are missing."""
    s: dict[str, Any] = dict(sec.summary)
    js: list[Judgment] = sec.judgments
    if "n" not in s:
        s["n"] = len(js) or len(sec.comparisons)
    if not isinstance(s.get("verdicts"), Mapping):
        v = {"a": 0, "b": 0, "tie": 0}
        for j in js:
            if j.ok and j.winner in v:
                v[j.winner] += 1
        s["verdicts"] = v
    if not isinstance(s.get("failures"), Mapping):
        f: dict[str, int] = {}
        for j in js:
            if not j.ok:
                k = j.error_kind or "unknown"
                f[k] = f.get(k, 0) + 1
        s["failures"] = f
    if "position_consistency" not in s:
        cons = [j.consistent for j in js if j.consistent is not None]
        s["position_consistency"] = sum(cons) / len(cons) if cons else None
    for key in ("prompt_tokens", "completion_tokens", "cost"):
        if key not in s and js:
            s[key] = sum(getattr(j, key) for j in js)
    return s


LABEL_KNOWN = frozenset(
    {
        "n",
        "verdicts",
        "failures",
        "position_consistency",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "time_s",
        "calls",
        "cached",
        "ties",
        "failed",
    }
)
"""Summary keys the label panels show in their own rows (the rest are listed after them)."""


def score_summary(sec: LabelSection) -> list[tuple[str, str]]:
    """Pointwise scores of a label section: count, mean, range, failures (empty when none)."""
    if not sec.scores:
        return []
    ok = [s.score for s in sec.scores if s.ok and is_num(s.score)]
    failed = len(sec.scores) - len(ok)
    rows = [("pointwise scores", str(len(sec.scores)))]
    if ok:
        rows.append(
            (
                "score mean [min, max]",
                f"{fnum(sum(ok) / len(ok))} [{fnum(min(ok))}, {fnum(max(ok))}]",
            )
        )
    rows.append(("scores failed", str(failed)))
    return rows


AUDIT_LABELS: dict[str, str] = {
    "accuracy": "agreement with humans",
    "accuracy_with_ties": "agreement (ties count)",
    "kappa": "Cohen's kappa",
    "position_consistency": "position consistency",
    "p_first_wins": "P(first shown wins)",
    "p_first_wins_inconsistent": "P(first wins | flip)",
    "p_longer_wins_judge": "P(longer wins), judge",
    "p_longer_wins_human": "P(longer wins), human",
    "length_coef": "length coefficient",
    "self_preference": "self-preference",
    "injection_flip_rate": "injection flip rate",
    "parse_failure_rate": "parse failure rate",
    "latency_s": "latency (s)",
    "tokens": "tokens",
    "cost": "cost ($)",
}
"""Readable names of the audit metrics the audit section documents (others keep their key)."""


def ordered_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Audit metrics in the documented order (agreement first), then any others as recorded."""
    known = [(k, metrics[k]) for k in AUDIT_LABELS if k in metrics]
    return known + [(k, v) for k, v in metrics.items() if k not in AUDIT_LABELS]


def metric_label(key: str) -> str:
    """Human name of an audit metric key."""
    return AUDIT_LABELS.get(key, key.replace("_", " "))


def flatten(obj: Any, prefix: str = "", skip: Sequence[str] = ()) -> list[tuple[str, Any]]:
    """``(dotted key, leaf)`` pairs of nested dicts; lists of scalars are joined.

    >>> flatten({"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": [{"x": 1}]})
    [('a', 1), ('b.c', 2), ('b.d', '1, 2'), ('e', '[1 item]')]
    """
    out: list[tuple[str, Any]] = []
    if not isinstance(obj, Mapping):
        return [(prefix, obj)] if prefix else []
    for k, v in obj.items():
        if k in skip:
            continue
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out += flatten(v, key)
        elif isinstance(v, list | tuple):
            if all(isinstance(x, str | int | float | bool) or x is None for x in v):
                out.append((key, ", ".join(fnum(x) if is_num(x) else str(x) for x in v)))
            else:
                out.append((key, f"[{len(v)} item{'s' if len(v) != 1 else ''}]"))
        else:
            out.append((key, v))
    return out


def evidence_text(evidence: Any, limit: int = 8) -> str:
    """``key=value, …`` for an alarm's evidence (nested dicts flattened; ``examples`` left out:
    they are shown on their own; at most ``limit`` items).

    >>> evidence_text({"gold_peak": 0.86, "test": {"p": 0.01}, "examples": ["x"]})
    'gold_peak=0.860, test.p=0.010'
    """
    if isinstance(evidence, Mapping):
        items = flatten(evidence, skip=("examples",))
        more = len(items) - limit
        text = ", ".join(
            f"{neutralize(k)}={fnum(v) if is_num(v) or v is None else clip(v, 40)}"
            for k, v in items[:limit]
        )
        return text + (f", … (+{more})" if more > 0 else "")
    return clip(evidence, 120) if evidence else ""


SHOWN_EXTRAS: dict[str, tuple[str, ...]] = {"TournamentSection": ("interval",)}
"""Extra keys a section's own renderer already shows (so they are not listed again)."""


def extras(section: Any) -> dict[str, Any]:
    """Keys a stage recorded beyond the documented ones (sections allow extras)."""
    out = dict(getattr(section, "model_extra", None) or {})
    for key in SHOWN_EXTRAS.get(type(section).__name__, ()):
        out.pop(key, None)
    return out
