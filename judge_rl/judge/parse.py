"""Verdict parsers for prompted judges.

Every parser either returns a value or raises :class:`ParseError` with a short reason. A judge
turns that into ``error="parse: <reason>"``; it never guesses (AlpacaEval keeps its completion
parsers small and doctested; Inspect marks an unparseable grade as unscored).

Accepted forms, tried in this order:

1. bracketed tokens: ``[[A]]``, ``[[B]]``, ``[[C]]`` (tie), ``[[tie]]``, ``[[7]]``, ``[[7/10]]``;
2. a JSON object anywhere in the text (the last one that parses), e.g. ``{"winner": "A"}``;
3. the last non-empty line, e.g. ``Verdict: A``, ``Output (b)``, ``Rating: 7/10``, ``B``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

ShownVerdict = Literal["A", "B", "tie"]
"""A pairwise verdict in the positions the judge saw: first (A), second (B), or a tie."""


class ParseError(ValueError):
    """The judge's output holds no unambiguous verdict."""


# --- shared helpers ---------------------------------------------------------------------------

_VERDICT_WORDS: dict[str, ShownVerdict] = {
    "a": "A",
    "b": "B",
    "1": "A",
    "2": "B",
    "c": "tie",
    "tie": "tie",
    "draw": "tie",
    "equal": "tie",
    "both": "tie",
    "neither": "tie",
}


def _verdict_word(value: Any) -> ShownVerdict | None:
    """Map ``"A"``, ``"Response B"``, ``"assistant a"``, ``"tie"``, ``1`` … to a verdict."""
    if isinstance(value, bool) or value is None:
        return None
    s = str(value).strip().strip("[]()*.\"'` ").lower()
    s = re.sub(r"^(response|assistant|output|answer|model|candidate)\s*", "", s)
    return _VERDICT_WORDS.get(s.strip("[]()*. "))


def _last_json_object(text: str) -> dict[str, Any] | None:
    """The last ``{...}`` in ``text`` that parses as a JSON object (``None`` when there is none).

    >>> _last_json_object('x {"a": 1} y {"b": {"c": 2}} z')
    {'b': {'c': 2}}
    >>> _last_json_object("no json") is None
    True
    """
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            found = obj
        i = text.find("{", end)
    return found


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _norm_key(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


# --- pairwise ---------------------------------------------------------------------------------

_BRACKET = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_JSON_VERDICT_KEYS = ("winner", "verdict", "preferred", "better", "choice", "answer", "decision")
_LINE_VERDICT = re.compile(
    r"^(?:\**\s*)?(?:final\s+)?(?:verdict|answer|winner|output|choice|decision|preferred"
    r"(?:\s+response)?|better(?:\s+response)?|preference)\s*(?:is)?\s*[:=\-]?\s*(.+?)\s*\**\.?$",
    re.IGNORECASE,
)
_LINE_BETTER = re.compile(
    r"^(?:response|assistant|output|answer)\s*\(?([ab12])\)?\s+(?:is\s+)?(?:better|wins|preferred)"
    r"\b.*$",
    re.IGNORECASE,
)


def parse_pairwise(text: str) -> ShownVerdict:
    """Parse a pairwise verdict in shown positions (``"A"`` = shown first).

    >>> parse_pairwise("Both are fine but A is more precise. [[A]]")
    'A'
    >>> parse_pairwise("My final verdict is: [[C]]")
    'tie'
    >>> parse_pairwise("Output [[A]] if A is better, [[B]] if B is better.\\nVerdict: [[B]]")
    'B'
    >>> parse_pairwise('{"reason": "more complete", "winner": "Response B"}')
    'B'
    >>> parse_pairwise("The second one is shorter.\\nVerdict: tie")
    'tie'
    >>> parse_pairwise("Output (a)")
    'A'
    >>> parse_pairwise("b")
    'B'
    >>> parse_pairwise("Verdict: 2")
    'B'
    >>> parse_pairwise("Assistant A is better because it is correct.")
    'A'
    >>> parse_pairwise("I like [[A]] and [[B]] equally well, hmm")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: ambiguous: both [[A]] and [[B]] appear
    >>> parse_pairwise("Both have merits.")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: no verdict found in 'Both have merits.'
    """
    found = [_verdict_word(m.group(1)) for m in _BRACKET.finditer(text)]
    distinct = list(dict.fromkeys(v for v in found if v))
    if len(distinct) == 1:
        return distinct[0]
    if len(distinct) > 1:
        last = [_verdict_word(m.group(1)) for m in _BRACKET.finditer(_last_line(text))]
        if len(set(last)) == 1 and last[0]:
            return last[0]
        shown = " and ".join(f"[[{'C' if v == 'tie' else v}]]" for v in distinct)
        raise ParseError(f"ambiguous: both {shown} appear")
    obj = _last_json_object(text)
    if obj is not None:
        for key in _JSON_VERDICT_KEYS:
            for k, v in obj.items():
                if _norm_key(k) == key:
                    verdict = _verdict_word(v)
                    if verdict:
                        return verdict
                    raise ParseError(f"JSON {k!r} is {v!r}, not A, B or tie")
    line = _last_line(text)
    verdict = _verdict_word(line)
    if verdict and not line.strip("().*` ").isdigit():  # a bare "1"/"2" line may be a list item
        return verdict
    m = _LINE_VERDICT.match(line)
    if m:
        verdict = _verdict_word(m.group(1))
        if verdict:
            return verdict
    m = _LINE_BETTER.match(line) or _LINE_BETTER.match(text.strip())
    if m:
        verdict = _verdict_word(m.group(1))
        if verdict:
            return verdict
    raise ParseError(f"no verdict found in {_snippet(text)}")


# --- pointwise --------------------------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d+)?)"
_BRACKET_SCORE = re.compile(r"\[\[\s*" + _NUM + r"\s*(?:/\s*\d+)?\s*\]\]")
_JSON_SCORE_KEYS = ("score", "rating", "grade", "overall", "overall_score")
_LINE_SCORE = re.compile(
    r"^(?:\**\s*)?(?:final\s+|overall\s+)?(?:score|rating|grade)\s*(?:is)?\s*[:=\-]?\s*"
    + _NUM
    + r"\s*(?:/\s*\d+|out of \d+)?\s*\**\.?$",
    re.IGNORECASE,
)
_LINE_BARE = re.compile(r"^" + _NUM + r"\s*(?:/\s*\d+|out of \d+)?\.?$", re.IGNORECASE)


def parse_score(text: str, lo: float = 1, hi: float = 10) -> float:
    """Parse a pointwise score and check that it lies in ``[lo, hi]``.

    >>> parse_score("Helpful and accurate. Rating: [[8]]")
    8.0
    >>> parse_score('{"score": 6.5, "why": "ok"}')
    6.5
    >>> parse_score("Clear, but misses a case.\\nScore: 7/10")
    7.0
    >>> parse_score("3", lo=1, hi=5)
    3.0
    >>> parse_score("Rating: [[11]]")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: score 11.0 outside [1, 10]
    >>> parse_score("[[3]] or maybe [[4]]")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: ambiguous: several scores [[3.0]], [[4.0]]
    """
    value: float | None = None
    found = list(dict.fromkeys(float(m.group(1)) for m in _BRACKET_SCORE.finditer(text)))
    if len(found) > 1:
        raise ParseError("ambiguous: several scores " + ", ".join(f"[[{v}]]" for v in found))
    if found:
        value = found[0]
    if value is None:
        obj = _last_json_object(text)
        if obj is not None:
            for k, v in obj.items():
                if _norm_key(k) in _JSON_SCORE_KEYS:
                    value = _to_float(v, k)
                    break
    if value is None:
        line = _last_line(text)
        m = _LINE_SCORE.match(line) or _LINE_BARE.match(line)
        if m:
            value = float(m.group(1))
    if value is None:
        raise ParseError(f"no score found in {_snippet(text)}")
    if not lo <= value <= hi:
        raise ParseError(f"score {value} outside [{_fmt(lo)}, {_fmt(hi)}]")
    return value


# --- yes/no and rubric ------------------------------------------------------------------------

_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}


def _yesno_word(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    s = str(value).strip().strip("[]()*.\"'` ").lower()
    if s in _YES:
        return 1.0
    if s in _NO:
        return 0.0
    return None


def parse_yesno(text: str) -> float:
    """Parse a yes/no answer: 1.0 for yes, 0.0 for no.

    >>> parse_yesno("[[YES]]")
    1.0
    >>> parse_yesno("No, the response is accurate.")
    0.0
    >>> parse_yesno('{"answer": "yes"}')
    1.0
    >>> parse_yesno("It states the capital correctly.\\nAnswer: no")
    0.0
    >>> parse_yesno("maybe")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: no yes/no answer found in 'maybe'
    """
    found = {_yesno_word(m.group(1)) for m in re.finditer(r"\[\[\s*(\w+)\s*\]\]", text)}
    found.discard(None)
    if len(found) == 1:
        return found.pop()  # type: ignore[return-value]
    if len(found) > 1:
        raise ParseError("ambiguous: both [[YES]] and [[NO]] appear")
    obj = _last_json_object(text)
    if obj is not None:
        for k, v in obj.items():
            if _norm_key(k) in ("answer", "verdict", "value", "result"):
                value = _yesno_word(v)
                if value is not None:
                    return value
    first = re.match(r"\s*\**\s*(yes|no)\b", text, re.IGNORECASE)
    if first:
        return 1.0 if first.group(1).lower() == "yes" else 0.0
    line = _last_line(text)
    m = re.match(r"^(?:\**\s*)?(?:final\s+)?(?:answer|verdict)?\s*[:=\-]?\s*(yes|no)\b", line, re.I)
    if m:
        return 1.0 if m.group(1).lower() == "yes" else 0.0
    raise ParseError(f"no yes/no answer found in {_snippet(text)}")


def parse_rubric(text: str, criteria: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Parse every criterion's answer from one reply.

    ``criteria`` holds ``(name, type)`` pairs, type ``"yesno"`` (-> 1.0/0.0) or ``"scale5"``
    (-> 1..5). The reply is a JSON object keyed by criterion name, or one ``name: value`` line per
    criterion. Names match case-insensitively, spaces and dashes as underscores.

    >>> parse_rubric('{"wrong_facts": "no", "clarity": 4}', [("wrong_facts", "yesno"), ("clarity", "scale5")])
    {'wrong_facts': 0.0, 'clarity': 4.0}
    >>> parse_rubric("Wrong facts: yes\\nClarity: 2", [("wrong_facts", "yesno"), ("clarity", "scale5")])
    {'wrong_facts': 1.0, 'clarity': 2.0}
    >>> parse_rubric('{"clarity": 9}', [("clarity", "scale5")])
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: clarity: 9 is not a rating from 1 to 5
    >>> parse_rubric('{"clarity": 3}', [("clarity", "scale5"), ("harmful", "yesno")])
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: no answer for criterion 'harmful'
    """
    answers: dict[str, Any] = {}
    obj = _last_json_object(text)
    if obj is not None:
        inner: dict[str, Any] = obj["criteria"] if isinstance(obj.get("criteria"), dict) else obj
        answers = {_norm_key(k): v for k, v in inner.items()}
    else:
        for line in text.splitlines():
            m = re.match(r"^\s*[-*]?\s*\**([A-Za-z][\w \-]*?)\**\s*[:=]\s*\**\s*([\w.]+)", line)
            if m:
                answers[_norm_key(m.group(1))] = m.group(2)
    out: dict[str, float] = {}
    for name, typ in criteria:
        key = _norm_key(name)
        if key not in answers:
            raise ParseError(f"no answer for criterion {name!r}")
        raw = answers[key]
        if isinstance(raw, dict):
            raw = raw.get("answer", raw.get("value", raw.get("score")))
        if typ == "yesno":
            value = _yesno_word(raw)
            if value is None:
                raise ParseError(f"{name}: {raw!r} is not yes or no")
        else:
            value = _to_float(raw, name)
            if not 1 <= value <= 5:
                raise ParseError(f"{name}: {_fmt(value)} is not a rating from 1 to 5")
        out[name] = value
    return out


# --- label probabilities ----------------------------------------------------------------------


def verdict_from_probs(probs: dict[str, float]) -> tuple[ShownVerdict, float]:
    """Verdict and P(first shown is better) from label probabilities over ``A``/``B``/``C``.

    The probabilities are renormalised over the labels present; a tie (``C``) counts half to
    each side, so ``p_first = P(A) + P(C) / 2``.

    >>> verdict_from_probs({"A": 0.6, "B": 0.2, "C": 0.2})
    ('A', 0.7)
    >>> verdict_from_probs({"A": 0.1, "B": 0.3})
    ('B', 0.25)
    >>> verdict_from_probs({"A": 0.0, "B": 0.0})
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: label probabilities are all zero
    """
    pa, pb, pc = (max(0.0, float(probs.get(k) or 0.0)) for k in ("A", "B", "C"))
    total = pa + pb + pc
    if total <= 0:
        raise ParseError("label probabilities are all zero")
    pa, pb, pc = pa / total, pb / total, pc / total
    best = max((pa, "A"), (pb, "B"), (pc, "tie"), key=lambda t: t[0])
    verdict: ShownVerdict = best[1]  # type: ignore[assignment]
    return verdict, round(pa + pc / 2, 12)


def expected_label(probs: dict[str, float], labels: Sequence[str]) -> float:
    """Expected numeric value of ``labels`` (e.g. ``"1"``..``"5"``) under ``probs``.

    >>> expected_label({"1": 0.5, "3": 0.5}, ["1", "2", "3"])
    2.0
    """
    weights = [(float(lbl), max(0.0, float(probs.get(lbl) or 0.0))) for lbl in labels]
    total = sum(w for _, w in weights)
    if total <= 0:
        raise ParseError("label probabilities are all zero")
    return sum(v * w for v, w in weights) / total


def _to_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ParseError(f"{name}: {value!r} is not a number")
    try:
        return float(str(value).strip().split("/")[0])
    except ValueError:
        raise ParseError(f"{name}: {value!r} is not a number") from None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _snippet(text: str, n: int = 60) -> str:
    s = " ".join(text.split())
    return repr(s if len(s) <= n else s[: n - 1] + "…")


__all__ = [
    "ParseError",
    "ShownVerdict",
    "expected_label",
    "parse_pairwise",
    "parse_rubric",
    "parse_score",
    "parse_yesno",
    "verdict_from_probs",
]
