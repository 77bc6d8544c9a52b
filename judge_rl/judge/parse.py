"""Verdict parsers for prompted judges: the verdict is read only where the judge states it.

Every parser either returns a value or raises :class:`ParseError` with a short reason. A judge
turns that into ``error="parse: <reason>"``; it never guesses (AlpacaEval keeps its completion
parsers small and doctested; Inspect marks an unparseable grade as unscored).

**Where a verdict counts.** Judges quote, discuss and call out injection strings
(``Response B ends with "[[B]]", an attempt to manipulate…``), so a marker anywhere in the text
is not a verdict. A verdict counts only when it *stands on a line of its own*:

- a marker line: ``[[A]]``, optionally after a verdict label (``Final verdict: [[B]]``,
  ``**My verdict is [[C]]**.``), with nothing else on the line but markdown emphasis and a full
  stop;
- a labelled line: ``Verdict: A``, ``Winner: Response B``, ``Final answer: tie``;
- the last line alone being one label (``A``, ``(B)``, ``**tie**``): replies of one-letter judges;
- the last line being ``Response A is better.`` (nothing after it);
- a JSON object that starts a line and ends the reply (``{"winner": "A"}``, fenced or not), read
  by its verdict field.

Lines inside a fenced code block (other than a final JSON block) and markdown quotes (``> …``)
are quotations, never verdicts. Two standalone verdicts that disagree are a parse error, not a
guess; so are a standalone marker that is not a label (``[[D]]``: marker soup) and a reply that
ends in one of the template's own headers (``[Response B]``: a template echo).

**One rule per spec.** ``judge.yaml`` may restrict the forms with ``verdict:`` (see
:class:`VerdictRule`): ``brackets`` (marker lines only), ``label`` (labelled lines only),
``letter`` (the whole reply is one label), ``json`` (the final JSON object; ``field`` names the
key), ``pattern`` (a regular expression matched against whole lines, one group: the verdict), or
``auto`` (all of the above; the default). :data:`PARSER_VERSION` is part of every cache key, so
a change here reaches cached verdicts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

ShownVerdict = Literal["A", "B", "tie"]
"""A pairwise verdict in the positions the judge saw: first (A), second (B), or a tie."""

PARSER_VERSION = "2"
"""Version of the verdict extraction; part of cache keys. Bump on any change of what parses."""

RULES = ("auto", "brackets", "label", "letter", "json", "pattern")


class ParseError(ValueError):
    """The judge's output holds no unambiguous verdict."""


@dataclass(frozen=True)
class VerdictRule:
    """Where a judge's verdict is read (``verdict:`` in ``judge.yaml``).

    ``verdict: brackets`` or ``verdict: {rule: json, field: winner}`` or
    ``verdict: {pattern: '^Winner: (A|B|tie)$'}``.
    """

    rule: str = "auto"
    """``auto`` | ``brackets`` | ``label`` | ``letter`` | ``json`` | ``pattern``."""
    field: str | None = None
    """``json``: the key holding the verdict (default: winner, verdict, preferred, ...)."""
    pattern: str | None = None
    """``pattern``: a regular expression matched against each whole line; group 1 is the
    verdict (a label, a score or yes/no, depending on the judge's kind)."""

    def describe(self) -> str:
        """One line for reports.

        >>> VerdictRule("json", field="winner").describe()
        'json field "winner"'
        """
        if self.rule == "pattern":
            return f"lines matching {self.pattern!r}"
        if self.rule == "json":
            return f'json field "{self.field}"' if self.field else "json (verdict field)"
        return {
            "auto": "standalone marker, label or JSON",
            "brackets": "standalone [[X]] marker line",
            "label": "labelled line (Verdict: X)",
            "letter": "whole reply is one label",
        }[self.rule]

    def as_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (("rule", self.rule), ("field", self.field), ("pattern", self.pattern))
            if v is not None
        }

    def uses(self, form: str) -> bool:
        return self.rule == "auto" or self.rule == form


_AUTO = VerdictRule()


def verdict_rule(value: Any) -> VerdictRule:
    """A :class:`VerdictRule` from a spec's ``verdict:`` value (None: ``auto``).

    >>> verdict_rule("brackets").rule
    'brackets'
    >>> verdict_rule({"pattern": "^Winner: (A|B)$"}).rule
    'pattern'
    >>> verdict_rule("nope")
    Traceback (most recent call last):
    ...
    ValueError: verdict rule must be one of auto, brackets, label, letter, json, pattern, not 'nope'
    """
    if value is None:
        return VerdictRule()
    if isinstance(value, VerdictRule):
        return value
    if isinstance(value, str):
        value = {"rule": value}
    if not isinstance(value, dict):
        raise ValueError("verdict must be a rule name or a mapping {rule, field, pattern}")
    unknown = set(value) - {"rule", "field", "pattern"}
    if unknown:
        raise ValueError(f"unknown verdict key(s): {', '.join(sorted(map(str, unknown)))}")
    rule = value.get("rule", "pattern" if "pattern" in value else "auto")
    if rule not in RULES:
        raise ValueError(f"verdict rule must be one of {', '.join(RULES)}, not {rule!r}")
    pattern = value.get("pattern")
    if rule == "pattern":
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("verdict rule 'pattern' needs a pattern (a regular expression)")
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"verdict pattern does not compile: {e}") from None
        if compiled.groups < 1:
            raise ValueError("verdict pattern needs one group: the verdict")
    field = value.get("field")
    if field is not None and not isinstance(field, str):
        raise ValueError("verdict field must be a string")
    return VerdictRule(rule=rule, field=field, pattern=pattern)


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
    if type(value) is str and len(value) <= 64:  # a verdict as written: a few forms, seen again
        hit = _WORDS_SEEN.get(value, _UNSEEN)
        if hit is _UNSEEN:
            hit = _word_of(value)
            if len(_WORDS_SEEN) >= 4096:
                _WORDS_SEEN.clear()
            _WORDS_SEEN[value] = hit
        return hit  # type: ignore[return-value]
    return _word_of(value)


_UNSEEN = object()
_WORDS_SEEN: dict[str, ShownVerdict | None] = {}


def _word_of(value: Any) -> ShownVerdict | None:
    if isinstance(value, bool) or value is None:
        return None
    s = str(value).strip().strip("[]()*.\"'` ").lower()
    s = _WORD_PREFIX.sub("", s)
    return _VERDICT_WORDS.get(s.strip("[]()*. "))


_WORD_PREFIX = re.compile(r"^(response|assistant|output|answer|model|candidate)\s*")


_MAX_JSON_DEPTH = 64


def _json_depth_ok(text: str, start: int) -> bool:
    """Whether the brackets from ``start`` nest at most :data:`_MAX_JSON_DEPTH` deep (a cheap
    scan; strings are skipped), so that decoding cannot recurse without bound."""
    depth = 0
    in_str = False
    esc = False
    for ch in text[start:]:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
            if depth > _MAX_JSON_DEPTH:
                return False
        elif ch in "}]":
            depth -= 1
            if depth <= 0:
                return True
    return True


def _decode_at(text: str, i: int) -> tuple[Any, int] | None:
    if not _json_depth_ok(text, i):
        raise ParseError(f"JSON nested deeper than {_MAX_JSON_DEPTH} levels")
    try:
        return json.JSONDecoder().raw_decode(text, i)
    except RecursionError:
        raise ParseError("JSON nested too deeply to read") from None
    except ValueError:
        return None


def _last_json_object(text: str) -> dict[str, Any] | None:
    """The last ``{...}`` in ``text`` that parses as a JSON object (``None`` when there is none).

    A reply nested too deeply is a :class:`ParseError`, never a ``RecursionError``.

    >>> _last_json_object('x {"a": 1} y {"b": {"c": 2}} z')
    {'b': {'c': 2}}
    >>> _last_json_object("no json") is None
    True
    >>> _last_json_object('{"v": ' * 5000)
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: JSON nested deeper than 64 levels
    """
    found: dict[str, Any] | None = None
    i = text.find("{")
    while i != -1:
        got = _decode_at(text, i)
        if got is None:
            i = text.find("{", i + 1)
            continue
        obj, end = got
        if isinstance(obj, dict):
            found = obj
        i = text.find("{", end)
    return found


_FENCE_END = re.compile(r"\n?[ \t]*```[ \t]*$")


def _final_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object that starts a line (or follows a ```json fence) and ends the reply.

    A JSON object quoted inside the reasoning, or followed by more text, is not the verdict.

    >>> _final_json_object('Reasoning.\\n{"winner": "A"}')
    {'winner': 'A'}
    >>> _final_json_object('B wrote {"winner": "B"} to fool me.\\nVerdict: A') is None
    True
    >>> _final_json_object('```json\\n{"winner": "B"}\\n```')
    {'winner': 'B'}
    """
    body = text.rstrip()
    body = _FENCE_END.sub("", body).rstrip() if body.endswith("```") else body
    if not body.endswith("}"):
        return None
    n = len(body)
    for m in re.finditer(r"(?m)^[ \t]*(?:```(?:json)?[ \t]*\n[ \t]*)?(\{)", body):
        got = _decode_at(body, m.start(1))
        if got is None:
            continue
        obj, end = got
        if end == n and isinstance(obj, dict):
            return obj
    return None


def _norm_key(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def _lines(text: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of the lines that may hold a verdict: not inside a fenced code
    block and not a markdown quote (``> ...``)."""
    return [(no, s) for no, s, _ in _lines_at(text)]


def _lines_at(text: str, raw: list[str] | None = None) -> list[tuple[int, str, int]]:
    """:func:`_lines` plus the character offset in ``text`` where each stripped line starts.
    ``raw``: ``text.splitlines(keepends=True)`` when the caller has it."""
    out: list[tuple[int, str, int]] = []
    in_fence = False
    pos = 0
    for no, line in enumerate(text.splitlines(keepends=True) if raw is None else raw, 1):
        start = pos
        pos += len(line)
        s = line.strip()
        if s.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence or s.startswith(">") or not s:
            continue
        out.append((no, s, start + len(line) - len(line.lstrip())))
    return out


def _last_line(text: str, raw: list[str] | None = None) -> tuple[int, str]:
    """``(line number, stripped text)`` of the last line that is not blank, or ``(0, "")``.
    ``raw``: ``text.splitlines(keepends=True)`` when the caller has it (a line's break
    characters are whitespace, so its stripped text is the same)."""
    lines = text.splitlines() if raw is None else raw
    for i in range(len(lines) - 1, -1, -1):
        s = lines[i].strip()
        if s:
            return i + 1, s
    return 0, ""


_HEADER = re.compile(r"^[*_#\s]*\[[^\[\]\n]{1,60}\][*_\s:]*$")


def _check_echo(text: str, last_line: tuple[int, str] | None = None) -> None:
    """A reply ending in a header like ``[Response B]`` repeats the template; it is no verdict.
    ``last_line``: :func:`_last_line` of ``text`` when the caller has it."""
    _, last = last_line or _last_line(text)
    if "[" in last and _HEADER.match(last):
        raise ParseError(f"template echo: the reply ends with the header {last.strip('*_# ')}")


_LABEL = (
    r"(?:(?:my|the|our)\s+)?(?:final\s+|overall\s+)?"
    r"(?:verdict|decision|judg(?:e)?ment|answer|winner|choice|preference|result|output"
    r"|evaluation|conclusion|better\s+response|preferred\s+response|rating|score|grade)"
    r"(?:\s+is)?\s*[:=\-–]?"
)
_DECOR_L = r"^[\s*_#]*"
_DECOR_R = r"[\s*_.!]*$"
_MARKER_LINE = re.compile(
    _DECOR_L + r"(?:" + _LABEL + r")?[\s*_]*\[\[\s*([^\[\]\n]{1,16}?)\s*\]\]" + _DECOR_R,
    re.IGNORECASE,
)
_PAIR_WORD = (
    r"(?:(?:response|assistant|output|answer|model|candidate)\s*)?\(?\s*([abc]|tie|draw)\s*\)?"
)
_LABEL_LINE = re.compile(
    _DECOR_L
    + _LABEL
    + r"[\s*_]*"
    + _PAIR_WORD
    + r"(?:\s+is\s+(?:the\s+)?(?:better|best|preferred)(?:\s+(?:one|response|answer))?)?"
    + _DECOR_R,
    re.IGNORECASE,
)
_LETTER_LINE = re.compile(r"^[\s*_(]*([abc]|tie|draw)[\s*_).!]*$", re.IGNORECASE)
_BETTER_LINE = re.compile(
    r"^[\s*_]*(?:response|assistant|output|answer)\s*\(?([ab])\)?\s+(?:is\s+)?(?:the\s+)?"
    r"(?:better|best|wins|preferred)(?:\s+(?:one|response|answer|overall))?" + _DECOR_R,
    re.IGNORECASE,
)
_JSON_VERDICT_KEYS = ("winner", "verdict", "preferred", "better", "choice", "answer", "decision")


def _show(v: ShownVerdict | str) -> str:
    return "[[C]]" if v == "tie" else f"[[{v}]]"


def _settle(found: list[tuple[int, Any, str]], what: str) -> Any:
    """One value from the standalone verdicts found (line, value, shown form); disagreement and
    invalid markers are errors."""
    if len(found) == 1 and found[0][1] is not None:
        return found[0][1]
    bad = [f for f in found if f[1] is None]
    if bad:
        shown = ", ".join(dict.fromkeys(f[2] for f in found))
        raise ParseError(f"marker soup: {shown} (line {bad[0][0]} is not a {what})")
    values = list(dict.fromkeys(f[1] for f in found))
    if len(values) > 1:
        where = ", ".join(f"{f[2]} ({'final JSON' if f[0] < 0 else f'line {f[0]}'})" for f in found)
        raise ParseError(f"conflicting verdicts: {where}")
    return values[0]


def parse_pairwise(text: str, rule: VerdictRule | None = None) -> ShownVerdict:
    """Parse a pairwise verdict in shown positions (``"A"`` = shown first).

    >>> parse_pairwise("Both are fine but A is more precise.\\n[[A]]")
    'A'
    >>> parse_pairwise("My final verdict is: [[C]]")
    'tie'
    >>> parse_pairwise("Output [[A]] if A is better, [[B]] if B is better.\\nVerdict: [[B]]")
    'B'
    >>> parse_pairwise('{"reason": "more complete", "winner": "Response B"}')
    'B'
    >>> parse_pairwise("The second one is shorter.\\nVerdict: tie")
    'tie'
    >>> parse_pairwise("b")
    'B'
    >>> parse_pairwise('Response B ends with "[[B]]", an obvious attempt to manipulate.\\nFinal verdict: A')
    'A'
    >>> parse_pairwise("A is wordy; B is right.\\n[[B]]\\nNote: B wrote [[A]] at its end.")
    'B'
    >>> parse_pairwise("[[A]]\\n\\n[[B]]")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: conflicting verdicts: [[A]] (line 1), [[B]] (line 3)
    >>> parse_pairwise("I compared them.\\n[Response B]")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: template echo: the reply ends with the header [Response B]
    >>> parse_pairwise("Both have merits.")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: no verdict found in 'Both have merits.'
    """
    return locate_pairwise(text, rule)[0]


def locate_pairwise(text: str, rule: VerdictRule | None = None) -> tuple[ShownVerdict, int | None]:
    """:func:`parse_pairwise` plus where the verdict label starts in ``text`` (the verdict slot,
    e.g. just after ``[[``), or None when it came from a JSON object.

    >>> text = "B is correct.\\n**Verdict: [[B]]**"
    >>> v, at = locate_pairwise(text)
    >>> v, text[:at]
    ('B', 'B is correct.\\n**Verdict: [[')
    """
    rule = rule or _AUTO
    kind = rule.rule
    auto = kind == "auto"
    # One pass over the lines (was: a list of them, then a pass per form). The verdicts found
    # are listed in the order the passes gave them (pattern, markers, labels: each in line
    # order), which the error messages and the verdict slot depend on.
    raw_lines = text.splitlines(keepends=True)
    last_line = _last_line(text, raw_lines)
    _check_echo(text, last_line)
    rx = re.compile(str(rule.pattern)) if kind == "pattern" else None
    brackets = auto or kind == "brackets"
    labels = auto or kind == "label"
    by_pattern: list[tuple[int, ShownVerdict | None, str]] = []
    by_marker: list[tuple[int, ShownVerdict | None, str]] = []
    by_label: list[tuple[int, ShownVerdict | None, str]] = []
    where: dict[int, int] = {}
    lines = _lines_at(text, raw_lines)
    for no, s, off in lines:
        if rx is not None:
            m = rx.fullmatch(s)
            if m:
                v = _verdict_word(m.group(1))
                by_pattern.append((no, v, _show(v) if v else m.group(1)))
                where[no] = off + m.start(1)
        marker = _MARKER_LINE.match(s) if (brackets or labels) and "[[" in s else None
        if brackets and marker:
            g = marker.group(1)
            v = _verdict_word(g) if _LETTER_LINE.match(g) else None
            by_marker.append((no, v, _show(v) if v else f"[[{g}]]"))
            where[no] = off + marker.start(1)
        if labels and marker is None:
            m = _LABEL_LINE.match(s)
            if m:
                v = _verdict_word(m.group(1))
                by_label.append((no, v, _show(v) if v else m.group(1)))
                where[no] = off + m.start(1)
    found = by_pattern + by_marker + by_label
    if auto or kind == "letter":
        last_at = lines[-1] if lines else (0, "", 0)
        no, last = last_line
        m = _LETTER_LINE.match(last) if (auto or len(lines) <= 1) else None
        if m and not any(f[0] == no for f in found):
            v = _verdict_word(m.group(1))
            found.append((no, v, _show(v) if v else last))
            if last_at[0] == no:
                where[no] = last_at[2] + m.start(1)
        if auto and not m:
            mb = _BETTER_LINE.match(last)
            if mb and not any(f[0] == no for f in found):
                v = _verdict_word(mb.group(1))
                found.append((no, v, _show(v) if v else last))
                if last_at[0] == no:
                    where[no] = last_at[2] + mb.start(1)
    # the final JSON object ends the reply: its last non-blank line ends with } or a fence
    if (auto or kind == "json") and last_line[1].endswith(("}", "```")):
        obj = _final_json_object(text)
        if obj is not None:
            v = _json_verdict(obj, rule.field)
            if v is not None:
                found.append((-1, v, _show(v)))
    if not found:
        raise ParseError(f"no verdict found in {_snippet(text)}")
    verdict = _settle(found, "verdict A, B or C")
    return verdict, where.get(found[-1][0])


def _json_verdict(obj: dict[str, Any], field: str | None) -> ShownVerdict | None:
    keys = (_norm_key(field),) if field else _JSON_VERDICT_KEYS
    for key in keys:
        for k, v in obj.items():
            if _norm_key(k) == key:
                verdict = _verdict_word(v)
                if verdict:
                    return verdict
                raise ParseError(f"JSON {k!r} is {v!r}, not A, B or tie")
    if field:
        raise ParseError(f"the final JSON object has no {field!r} field")
    return None


# --- pointwise --------------------------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d+)?)"
_OF = r"(?:\s*/\s*\d+|\s+out\s+of\s+\d+)?"
_SCORE_MARKER = re.compile(
    _DECOR_L + r"(?:" + _LABEL + r")?[\s*_]*\[\[\s*([^\[\]\n]{1,16}?)\s*\]\]" + _DECOR_R,
    re.IGNORECASE,
)
_SCORE_IN_MARKER = re.compile(r"^" + _NUM + _OF + r"$")
_SCORE_LABEL_LINE = re.compile(
    _DECOR_L + _LABEL + r"[\s*_]*" + _NUM + _OF + _DECOR_R, re.IGNORECASE
)
_SCORE_BARE = re.compile(r"^[\s*_]*" + _NUM + _OF + _DECOR_R, re.IGNORECASE)
_JSON_SCORE_KEYS = ("score", "rating", "grade", "overall", "overall_score")


def parse_score(text: str, lo: float = 1, hi: float = 10, rule: VerdictRule | None = None) -> float:
    """Parse a pointwise score (standalone marker, labelled or bare last line, final JSON) and
    check that it lies in ``[lo, hi]``.

    >>> parse_score("Helpful and accurate.\\nRating: [[8]]")
    8.0
    >>> parse_score('{"score": 6.5, "why": "ok"}')
    6.5
    >>> parse_score("Clear, but misses a case.\\nScore: 7/10")
    7.0
    >>> parse_score("3", lo=1, hi=5)
    3.0
    >>> parse_score('It claims "Rating: [[10]]" for itself, which I ignore.\\nRating: [[4]]')
    4.0
    >>> parse_score("Rating: [[11]]")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: score 11.0 outside [1, 10]
    >>> parse_score("[[3]]\\nRating: [[4]]")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: conflicting verdicts: [[3]] (line 1), [[4]] (line 2)
    """
    rule = rule or VerdictRule()
    _check_echo(text)
    found: list[tuple[int, float | None, str]] = []
    lines = _lines(text)
    if rule.rule == "pattern":
        rx = re.compile(str(rule.pattern))
        for no, line in lines:
            m = rx.fullmatch(line)
            if m:
                found.append((no, _maybe_float(m.group(1)), m.group(1)))
    if rule.uses("brackets"):
        for no, line in lines:
            m = _SCORE_MARKER.match(line)
            if m:
                inner = _SCORE_IN_MARKER.match(m.group(1))
                val = float(inner.group(1)) if inner else None
                found.append((no, val, f"[[{_fmt(val) if val is not None else m.group(1)}]]"))
    if rule.uses("label"):
        for no, line in lines:
            if _SCORE_MARKER.match(line):
                continue
            m = _SCORE_LABEL_LINE.match(line)
            if m:
                found.append((no, float(m.group(1)), m.group(1)))
    if rule.uses("letter") or rule.rule == "auto":
        no, last = _last_line(text)
        m = _SCORE_BARE.match(last)
        if m and not any(f[0] == no for f in found):
            found.append((no, float(m.group(1)), m.group(1)))
    if rule.uses("json"):
        obj = _final_json_object(text)
        if obj is not None:
            keys = (_norm_key(rule.field),) if rule.field else _JSON_SCORE_KEYS
            for k, v in obj.items():
                if _norm_key(k) in keys:
                    found.append((-1, _to_float(v, k), str(v)))
                    break
    if not found:
        raise ParseError(f"no score found in {_snippet(text)}")
    value = float(_settle(found, "score"))
    if not lo <= value <= hi:
        raise ParseError(f"score {value} outside [{_fmt(lo)}, {_fmt(hi)}]")
    return value


def _maybe_float(s: str) -> float | None:
    try:
        return float(s.split("/")[0])
    except ValueError:
        return None


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


_YESNO_LABEL = re.compile(_DECOR_L + r"(?:" + _LABEL + r")?[\s*_]*(yes|no)" + _DECOR_R, re.I)


def parse_yesno(text: str) -> float:
    """Parse a yes/no answer: 1.0 for yes, 0.0 for no. The answer is a standalone ``[[YES]]``
    line, a reply that starts with yes/no, a labelled line (``Answer: no``) or the final JSON.

    >>> parse_yesno("[[YES]]")
    1.0
    >>> parse_yesno("No, the response is accurate.")
    0.0
    >>> parse_yesno('{"answer": "yes"}')
    1.0
    >>> parse_yesno("It states the capital correctly.\\nAnswer: no")
    0.0
    >>> parse_yesno('The response says "[[YES]] is the right answer".\\nAnswer: no')
    0.0
    >>> parse_yesno("maybe")
    Traceback (most recent call last):
    ...
    judge_rl.judge.parse.ParseError: no yes/no answer found in 'maybe'
    """
    _check_echo(text)
    found: list[tuple[int, float | None, str]] = []
    for no, line in _lines(text):
        m = _MARKER_LINE.match(line)
        if m:
            found.append((no, _yesno_word(m.group(1)), f"[[{m.group(1)}]]"))
            continue
        m = _YESNO_LABEL.match(line)
        if m:
            found.append((no, _yesno_word(m.group(1)), m.group(1)))
    first = re.match(r"\s*[*_]*\s*(yes|no)\b", text, re.IGNORECASE)
    if first and not any(f[0] == 1 for f in found):
        found.append((1, 1.0 if first.group(1).lower() == "yes" else 0.0, first.group(1)))
    obj = _final_json_object(text)
    if obj is not None:
        for k, v in obj.items():
            if _norm_key(k) in ("answer", "verdict", "value", "result"):
                found.append((-1, _yesno_word(v), str(v)))
                break
    if not found:
        raise ParseError(f"no yes/no answer found in {_snippet(text)}")
    return float(_settle(found, "yes/no answer"))


def parse_rubric(text: str, criteria: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Parse every criterion's answer from one reply.

    ``criteria`` holds ``(name, type)`` pairs, type ``"yesno"`` (-> 1.0/0.0) or ``"scale5"``
    (-> 1..5). The reply ends with a JSON object keyed by criterion name, or holds one
    ``name: value`` line per criterion (a criterion answered twice differently is an error).
    Names match case-insensitively, spaces and dashes as underscores.

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
    _check_echo(text)
    answers: dict[str, Any] = {}
    obj = _final_json_object(text)
    if obj is not None:
        inner: dict[str, Any] = obj["criteria"] if isinstance(obj.get("criteria"), dict) else obj
        answers = {_norm_key(k): v for k, v in inner.items()}
    else:
        for _, line in _lines(text):
            m = re.match(r"^[-*]?\s*\**([A-Za-z][\w \-]*?)\**\s*[:=]\s*\**\s*([\w.]+)\**\.?$", line)
            if m:
                key = _norm_key(m.group(1))
                if key in answers and str(answers[key]).lower() != m.group(2).lower():
                    raise ParseError(f"conflicting answers for {m.group(1).strip()!r}")
                answers[key] = m.group(2)
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

LOW_LABEL_MASS = 0.5
"""Below this total probability on the label tokens at the verdict position, the label
probabilities say little about the judge's verdict: the judgment is flagged (``low_mass``)."""


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
    "LOW_LABEL_MASS",
    "PARSER_VERSION",
    "RULES",
    "ParseError",
    "ShownVerdict",
    "VerdictRule",
    "expected_label",
    "parse_pairwise",
    "parse_rubric",
    "parse_score",
    "parse_yesno",
    "locate_pairwise",
    "verdict_from_probs",
    "verdict_rule",
]
