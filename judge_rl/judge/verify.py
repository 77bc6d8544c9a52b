r"""Verifier judges: no model, exact answers, nothing executed.

Modes:
    exact     normalised string equality (case, whitespace, trailing punctuation, $…$ stripped)
    numeric   numbers equal within a tolerance (commas, ``$``, units, fractions, percentages)
    gsm8k     GSM8K: ``#### N``, else "the answer is …" (the value after the last ``=``), else
              ``\boxed{N}``, else the last number; equal as exact numbers
    boxed     the last ``\boxed{…}``, then math equivalence with the reference
    choice    a multiple-choice letter ("(B)", "\text{(B)}", "answer is B", "B.")
    symbolic  math equivalence of the final answer (boxed, "the answer is …", the last $…$, or the
              whole response) with the reference
    auto      choice when the reference is a single letter; boxed when the response has a box;
              GSM8K-style number reading when the reference is a number; else symbolic

Math equivalence is math-verify's (:mod:`judge_rl.judge.math_equiv`), through its LaTeX path
only, in a pool of worker processes with a time and memory limit per check
(:mod:`judge_rl.judge.math_pool`). Nothing a model or a file wrote reaches ``eval``, ``exec``,
``sympify``/``parse_expr`` on a string, or any other interpreter. Plain numbers are compared here,
exactly (:class:`fractions.Fraction`), without the pool.

Pointwise: 1.0 correct, 0.0 incorrect. Pairwise: the correct response wins; both correct or both
wrong is a tie. A check that runs out of time is an error ``timeout``, never "incorrect". A missing
reference is an explicit error, not a guess; a reference with no answer in it (a GSM8K reference
with no number) is a :class:`judge_rl.errors.DataError` naming the row.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from judge_rl.errors import DataError
from judge_rl.types import (
    Candidate,
    Comparison,
    JudgeCall,
    JudgeFingerprint,
    Judgment,
    Score,
    Verdict,
)

MODES = ("auto", "exact", "numeric", "gsm8k", "boxed", "choice", "symbolic")

MAX_ANSWER_CHARS = 1000
"""An extracted answer longer than this is not an answer: it is judged incorrect, unparsed."""

MAX_SYMBOLIC_CHARS = MAX_ANSWER_CHARS  # the old name

MAX_NESTING = 32
"""Deepest bracket nesting ({[( together) an answer may have before it is judged incorrect."""

MAX_EXPONENT_DIGITS = 6
"""A numeric exponent with more digits (or a numeric power tower) is judged incorrect unparsed:
``9^{9^9}`` would only exhaust the worker's time and memory."""

MAX_RESPONSE_CHARS = 50_000
"""Responses (and references) longer than this are read from their last 50,000 characters."""

MAX_NUMBER_CHARS = 200
"""A plain number written with more characters than this is not an answer (nor a float)."""

DEFAULT_TIMEOUT_S = 2.0

ENGINE = "math-verify"


class CheckError(RuntimeError):
    """A check that produced no verdict. ``kind`` is ``timeout`` or ``verifier``."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True)
class Check:
    """One response checked against one reference.

    ``correct`` is None exactly when ``error`` is set (``"timeout: …"``, ``"verifier: …"``).
    ``extracted`` is the answer read from the response; ``detail`` says why a verdict was reached
    without the engine (no answer found, over a size limit) when that is the case.
    """

    correct: bool | None
    extracted: str | None
    reference: str | None
    how: str
    error: str | None = None
    detail: str | None = None


# ---------------------------------------------------------------------------------------------
# Extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{…}`` (or ``\fbox{…}``), nested braces respected.

    >>> last_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{x^{2}+1}")
    'x^{2}+1'
    >>> last_boxed("no box") is None
    True
    >>> last_boxed(r"\boxed{unclosed") is None
    True
    >>> last_boxed(r"\boxed 5.")
    '5'
    """
    if text is None:
        return None
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    rest = text[idx:]
    m = re.match(r"\\(?:boxed|fbox)\s*\{", rest)
    if m is None:
        m2 = re.match(r"\\(?:boxed|fbox)\s+([^\s$]+)", rest)  # "\boxed 5" form
        return m2.group(1).rstrip(".") if m2 else None
    start = idx + m.end() - 1
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


# A number as models write it: sign, "$", thousands separators, decimals, a fraction a/b.
_NUM_BODY = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_GSM_NUM_RE = re.compile(
    rf"(?<![\w.,])(?P<s1>-)?\$?(?P<s2>-)?(?P<num>{_NUM_BODY})(?![\d])"
    rf"(?:\s*/\s*(?P<den>{_NUM_BODY})(?![\d]))?"
)
_GSM8K_RE = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS_RE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|was|would be|will be|:|=)\s*:?\s*",
    re.IGNORECASE,
)
_NOT_RE = re.compile(r"^\W*(?:not|isn't|is not)\b", re.IGNORECASE)


def _clean_text(text: str) -> str:
    return (
        text.replace("\u2212", "-")
        .replace("\u2013", "-")
        .replace("\\$", "$")
        .replace("\\!", "")
        .replace("{,}", ",")
        .replace("\\,", "")
    )


def _numbers_in(segment: str) -> list[str]:
    out = []
    for m in _GSM_NUM_RE.finditer(segment):
        sign = "-" if (m.group("s1") or m.group("s2")) else ""
        num = sign + m.group("num")
        if m.group("den"):
            num += "/" + m.group("den")
        out.append(num)
    return out


def _segment_value(segment: str) -> str | None:
    """The number a phrase like "16 - 3 - 4 = 9 eggs" or "not 5, it's 7" states."""
    if "=" in segment:
        nums = _numbers_in(segment.rsplit("=", 1)[1])
        return nums[0] if nums else None
    nums = _numbers_in(segment)
    if not nums:
        return None
    return nums[-1] if _NOT_RE.match(segment) else nums[0]


def _until_sentence_end(text: str) -> str:
    m = re.search(r"\n|\.(?!\d)", text)
    return text[: m.start()] if m else text


def gsm8k_answer(text: str) -> str | None:
    r"""The final number of a GSM8K-style text, as written (sign, commas, ``a/b`` kept).

    ``#### N`` (the first number after the last marker); else "the answer is …" (the value after
    the last ``=`` when an expression follows; "not 5, it's 7" reads 7); else ``\boxed{N}``; else
    the last number.

    >>> gsm8k_answer("#### 18 eggs at $2 each")
    '18'
    >>> gsm8k_answer("The answer is 16 - 3 - 4 = 9")
    '9'
    >>> gsm8k_answer("The answer is not 5, it's 7.")
    '7'
    >>> gsm8k_answer("She paid -$1,250.50 in total")
    '-1,250.50'
    >>> gsm8k_answer("no digits") is None
    True
    """
    if text is None:
        return None
    text = _clean_text(text)
    marks = list(_GSM8K_RE.finditer(text))
    if marks:
        nums = _numbers_in(marks[-1].group(1))
        if nums:
            return nums[0]
    for m in reversed(list(_ANSWER_IS_RE.finditer(text))):
        seg = _until_sentence_end(text[m.end() : m.end() + 400])
        boxed = last_boxed(seg)
        val = _segment_value(boxed if boxed is not None else seg)
        if val is not None:
            return val
    boxed = last_boxed(text)
    if boxed is not None:
        val = _segment_value(boxed)
        if val is not None:
            return val
    nums = _numbers_in(text)
    return nums[-1] if nums else None


def gsm8k_reference(answer: str) -> str:
    """The final answer of a GSM8K solution (the text after ``#### ``, else the whole text).

    >>> gsm8k_reference("She pays 5 * 2 = <<5*2=10>>10 dollars.\\n#### 1,000")
    '1,000'
    >>> gsm8k_reference("42")
    '42'
    """
    m = list(_GSM8K_RE.finditer(answer))
    return m[-1].group(1).strip() if m else answer.strip()


def _reference_number(reference: str, mode: str) -> Fraction:
    """The number a reference states (GSM8K rules), or a DataError that quotes it."""
    got = gsm8k_answer(reference)
    value = _to_fraction(got) if got is not None else None
    if value is None:
        snippet = reference.strip()[-60:]
        raise DataError(
            f"{mode} reference {snippet!r} has no final number (expected '#### N', "
            "'The answer is N' or a number)",
            field="reference",
        )
    return value


_CHOICE_RES = (
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-J])\)?(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"(?:^|\s)([A-J])[.)](?:\s|$)"),
    re.compile(r"^\s*([A-J])\s*$", re.IGNORECASE),
)


def _choice_letter(text: str) -> str | None:
    t = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", text)
    boxed = last_boxed(t)
    if boxed is not None:
        t = boxed
    for rx in _CHOICE_RES:
        found = rx.findall(t)
        if found:
            return str(found[-1]).upper()
    return None


_ANSWER_LINE_RE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*([^\n]*)", re.IGNORECASE
)
_MATH_ENV_RE = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\$([^$\n]+?)\$|\\\((.+?)\\\)", re.DOTALL)


def final_answer(text: str) -> str:
    r"""The final answer of a free-form math response: the last ``\boxed{}``; else the text after
    the last ``####``; else the text after the last "the answer is"; else the last ``$…$``; else,
    for a sentence, its last number; else the whole (stripped) text.

    >>> final_answer(r"Thus $x = \frac{1}{2}$. The answer is $\frac12$.")
    '\\frac12'
    >>> final_answer("x = 5")
    'x = 5'
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    marks = list(_GSM8K_RE.finditer(text))
    if marks and marks[-1].group(1).strip():
        return marks[-1].group(1).strip()
    lines = list(_ANSWER_LINE_RE.finditer(text))
    if lines:
        ans = lines[-1].group(1).strip()
        envs = list(_MATH_ENV_RE.finditer(ans))
        if envs:
            return next(g for g in envs[-1].groups() if g is not None).strip()
        return ans.rstrip(".").strip()
    envs = list(_MATH_ENV_RE.finditer(text[-4000:]))
    if envs:
        return next(g for g in envs[-1].groups() if g is not None).strip()
    # A sentence ("It costs $1,250.") is not an answer; its last number may be.
    words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]{2,}", text)
    if len(words) >= 2:
        num = gsm8k_answer(text)
        if num is not None:
            return num
    return text.strip()


def extract_answer(text: str, mode: str = "auto") -> str | None:
    """The final answer in a response, or None when there is none.

    >>> extract_answer("3 + 4 = 7 apples. #### 7", "gsm8k")
    '7'
    >>> extract_answer("I think the answer is $1,250.", "gsm8k")
    '1,250'
    >>> extract_answer("First 12, then 18 in total", "gsm8k")
    '18'
    >>> extract_answer(r"Thus \\boxed{\\frac{3}{4}}.", "boxed")
    '\\\\frac{3}{4}'
    >>> extract_answer("The correct option is (C).", "choice")
    'C'
    >>> extract_answer("no digits here", "numeric") is None
    True
    """
    if text is None:
        return None
    if mode not in MODES:
        raise ValueError(f"unknown verifier mode {mode!r} (known: {', '.join(MODES)})")
    if mode == "boxed":
        return last_boxed(text)
    if mode == "choice":
        return _choice_letter(text)
    if mode == "gsm8k":
        return gsm8k_answer(text)
    if mode == "numeric":
        boxed = last_boxed(text)
        return boxed if boxed is not None else gsm8k_answer(text)
    if mode in ("exact", "symbolic"):
        return final_answer(text)
    boxed = last_boxed(text)
    return boxed if boxed is not None else gsm8k_answer(text)


# ---------------------------------------------------------------------------------------------
# Normalisation and numbers


def normalize(s: str) -> str:
    """Normalise an answer string for exact comparison.

    >>> normalize("  The Answer: $\\\\text{Paris}$. ")
    'the answer: paris'
    >>> normalize("1,000")
    '1000'
    """
    s = s.strip()
    s = re.sub(r"\\(?:text|mbox|mathrm|textbf|mathbf)\{([^{}]*)\}", r"\1", s)
    s = s.replace("$", "").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = re.sub(r"\s+", " ", s).strip().lower()
    return s.rstrip(".").strip()


_UNIT_WORDS = re.compile(r"^(?:[A-Za-z%°][A-Za-z.]*|[a-zA-Z]{2,}(?:\s+[a-zA-Z.]+)*)$")
_MATH_WORDS = {"pi", "sin", "cos", "tan", "log", "ln", "exp", "sqrt", "inf", "infinity", "e"}
_LATEX_FRAC_RE = re.compile(r"^(-?)\\[dt]?frac\s*(?:\{([^{}]*)\}|(\d))\s*(?:\{([^{}]*)\}|(\d))$")
_PLAIN_NUM_RE = re.compile(rf"^([-+]?)\$?({_NUM_BODY}|\d+\.)(?:\s*/\s*({_NUM_BODY}))?$")
_DEGREE_RE = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)\s*$")
_TEXT_UNIT_RE = re.compile(r"\s*\\(?:text|mbox|textrm|mathrm)\s*\{\s*([A-Za-z][A-Za-z .]*)\}\s*$")


def _to_fraction(s: str | None) -> Fraction | None:
    """Exact value of a plain number: ``-1,250.5``, ``3/4``, ``.5``. None when it is not one."""
    if s is None or len(s) > MAX_NUMBER_CHARS:
        return None
    m = _PLAIN_NUM_RE.match(s.strip())
    if not m:
        return None
    try:
        v = Fraction(m.group(2).replace(",", ""))
        if m.group(3):
            den = Fraction(m.group(3).replace(",", ""))
            if den == 0:
                return None
            v /= den
    except (ValueError, ZeroDivisionError):
        return None
    return -v if m.group(1) == "-" else v


def _strip_number_dress(s: str) -> tuple[str, bool]:
    r"""Remove what surrounds a number but is not its value: ``$``, ``\text{ cm}``, degrees,
    ``x =``, a trailing period. Returns (text, had a percent sign)."""
    t = _clean_text(s).strip()
    t = re.sub(r"^\$+|\$+$", "", t).strip()
    t = t.replace("\\left", "").replace("\\right", "").strip().rstrip(".").strip()
    t = re.sub(r"^[a-zA-Z]\s*=\s*", "", t)
    for _ in range(2):
        t = _TEXT_UNIT_RE.sub("", t)
        t = _DEGREE_RE.sub("", t)
    t = t.strip()
    pct = False
    if t.endswith("\\%") or t.endswith("%"):
        pct = True
        t = t[:-2] if t.endswith("\\%") else t[:-1]
        t = t.strip()
    return t, pct


def _exact_number(s: str) -> Fraction | None:
    r"""An answer that is exactly one plain number (LaTeX fractions and number dress allowed,
    no percent, no trailing words). None otherwise."""
    t, pct = _strip_number_dress(s)
    if pct:
        return None
    v = _to_fraction(t)
    if v is not None:
        return v
    m = _LATEX_FRAC_RE.match(t)
    if m:
        num = _to_fraction(m.group(2) if m.group(2) is not None else m.group(3))
        den = _to_fraction(m.group(4) if m.group(4) is not None else m.group(5))
        if num is None or den in (None, 0):
            return None
        v = num / den
        return -v if m.group(1) else v
    return None


def parse_number(s: str) -> float | None:
    """A number from an answer string: commas, ``$``, units, fractions, percentages, LaTeX
    fractions (braced or not), degrees. None when it is not a number (``2x`` is not 2).

    >>> parse_number("$1,250.50")
    1250.5
    >>> parse_number("3/4")
    0.75
    >>> parse_number("\\\\frac{3}{4}")
    0.75
    >>> parse_number("-\\\\dfrac{1}{8}")
    -0.125
    >>> parse_number("\\\\frac 34")
    0.75
    >>> parse_number("45%")
    45.0
    >>> parse_number("18 apples")
    18.0
    >>> parse_number("x + 1") is None
    True
    >>> parse_number("2x") is None
    True
    """
    if s is None:
        return None
    t, _pct = _strip_number_dress(s)
    v = _exact_number(t)
    if v is None:
        # "18 apples", "12 cm": a number followed by words (never a single variable letter).
        m = re.match(rf"^([-+]?\$?(?:{_NUM_BODY})(?:\s*/\s*(?:{_NUM_BODY}))?)\s*(.*)$", t)
        if m and m.group(2):
            tail = m.group(2).strip()
            words = tail.lower().replace(".", " ").split()
            if (
                _UNIT_WORDS.match(tail)
                and not any(w in _MATH_WORDS for w in words)
                and (len(tail) >= 2 or tail in ("m", "g", "s", "h", "l", "%", "°"))
            ):
                v = _to_fraction(m.group(1))
    return float(v) if v is not None else None


def _numbers_equal(a: float, b: float, tol: float, relative: bool = True) -> bool:
    """Absolute tolerance always; relative tolerance too unless answers are exact counts
    (GSM8K: 1,450,001 is not 1,450,000)."""
    return math.isclose(a, b, rel_tol=tol if relative else 0.0, abs_tol=tol)


# ---------------------------------------------------------------------------------------------
# Math answers: cheap checks here, the rest in the worker pool

# What a math answer may contain. Anything else (quotes, backticks, "#", "@", "?", control
# characters) is not an answer, and is judged incorrect before it reaches any parser.
_ALLOWED = re.compile(r"^[\w\s\\{}\[\]()^+\-*/=<>,.;:!|&%'~$]*$")
_UNICODE_MAP = {
    "\u2212": "-",
    "\u2013": "-",
    "\u00d7": r"\times ",
    "\u00b7": r"\cdot ",
    "\u00f7": r"\div ",
    "\u03c0": r"\pi ",
    "\u221a": r"\sqrt",
    "\u221e": r"\infty ",
    "\u2264": r"\le ",
    "\u2265": r"\ge ",
    "\u2260": r"\ne ",
    "\u00b0": r"^\circ ",
    "\u00b1": r"\pm ",
}
_POWER_TOWER_RE = re.compile(
    # 9^9^9, 9^{9^9}, 10^{10^{10}}; or an exponent with more than MAX_EXPONENT_DIGITS digits
    r"\d\s*\^\s*\{?\s*\d+\s*\^|\d\s*\^\s*\{?\s*\d{" + str(MAX_EXPONENT_DIGITS + 1) + ",}"
)


def _nesting(s: str) -> int:
    depth = worst = 0
    for ch in s:
        if ch in "{[(":
            depth += 1
            worst = max(worst, depth)
        elif ch in "}])":
            depth = max(0, depth - 1)
    return worst


def _sqrt_calls(t: str) -> str:
    """``sqrt(x)`` → ``\\sqrt{x}`` with matching parentheses (plain answers only)."""
    out = []
    i = 0
    while i < len(t):
        if t.startswith("sqrt(", i) and (i == 0 or not t[i - 1].isalpha()):
            depth, j = 0, i + 4
            while j < len(t):
                depth += t[j] == "("
                depth -= t[j] == ")"
                if depth == 0:
                    break
                j += 1
            if j >= len(t):
                return t
            out.append("\\sqrt{" + _sqrt_calls(t[i + 5 : j]) + "}")
            i = j + 1
            continue
        out.append(t[i])
        i += 1
    return "".join(out)


def to_latex(answer: str) -> tuple[str | None, str | None]:
    r"""An answer as the LaTeX the engine reads, or (None, why) when it is not answer-shaped.

    Plain answers are rewritten by a whitelist, never parsed as Python: ``**`` → ``^``,
    ``sqrt(…)`` → ``\sqrt{…}``, ``pi`` → ``\pi``, Unicode math signs → LaTeX.

    >>> to_latex("sqrt(2)/2 + x**2")
    ('\\sqrt{2}/2 + x^2', None)
    >>> to_latex("__import__('os')")[0] is None
    False
    >>> to_latex('print("hi")')
    (None, 'characters outside the math grammar')
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return None, f"answer longer than {MAX_ANSWER_CHARS} characters"
    t = answer
    for k, v in _UNICODE_MAP.items():
        t = t.replace(k, v)
    if not _ALLOWED.match(t):
        return None, "characters outside the math grammar"
    if _nesting(t) > MAX_NESTING:
        return None, f"brackets nested deeper than {MAX_NESTING}"
    if _POWER_TOWER_RE.search(t):
        return None, "numeric power too large to evaluate"
    t = t.replace("\\$", "").replace("$", " ").replace("\n", " ").replace("~", " ")
    t = t.replace("\\[", " ").replace("\\]", " ").replace("\\(", " ").replace("\\)", " ")
    t = re.sub(r"\\mbox\s*\{", r"\\text{", t)
    if "\\" not in t:
        t = t.replace("**", "^")
        t = _sqrt_calls(t)
        t = re.sub(r"(?<![A-Za-z\\])pi(?![A-Za-z])", r"\\pi ", t)
        t = re.sub(r"(?<![A-Za-z\\])(?:infinity|inf)(?![A-Za-z])", r"\\infty ", t)
    t = t.strip().rstrip(".").strip()
    # "12 apples" / "12 \text{apples}": a number followed by words is the number.
    m = re.match(rf"^(-?(?:{_NUM_BODY}))\s+([A-Za-z][A-Za-z .]*)$", t)
    if (
        m
        and len(m.group(2).strip()) >= 2
        and not any(w in _MATH_WORDS for w in m.group(2).lower().replace(".", " ").split())
    ):
        t = m.group(1)
    if not t:
        return None, "empty answer"
    return t, None


def _fast_equal(pred: str, ref: str) -> bool | None:
    """A verdict without the engine when both answers are plain numbers (compared as math-verify
    compares them: exactly, or to 6 decimals when one is written as a decimal); None otherwise."""
    a, b = _exact_number(pred), _exact_number(ref)
    if a is None or b is None:
        return None
    if a == b:
        return True
    decimal = "." in _strip_number_dress(pred)[0] or "." in _strip_number_dress(ref)[0]
    if decimal:
        return round(a, 6) == round(b, 6)
    return False


def _compact(s: str) -> str:
    t = re.sub(r"\s+", "", s.replace("\\left", "").replace("\\right", ""))
    t = t.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\!", "")
    return t.replace("\\,", "").replace("$", "")


# ---------------------------------------------------------------------------------------------
# Plans: what each check needs (a verdict now, or one engine call)


@dataclass
class _Plan:
    extracted: str | None
    reference: str | None
    how: str
    correct: bool | None = None
    detail: str | None = None
    task: tuple[str, str] | None = None


def _math_plan(pred: str | None, ref: str, how: str) -> _Plan:
    if pred is None:
        return _Plan(None, ref, how, correct=False, detail="no answer found")
    gold, why = to_latex(ref)
    if gold is None:
        raise DataError(f"reference {ref[:60]!r} is not a math answer: {why}", field="reference")
    latex, why = to_latex(pred)
    if latex is None:
        return _Plan(pred, ref, how, correct=False, detail=why)
    if _compact(latex) == _compact(gold):
        return _Plan(pred, ref, how, correct=True)
    fast = _fast_equal(latex, gold)
    if fast is not None:
        return _Plan(pred, ref, how, correct=fast)
    return _Plan(pred, ref, how, task=(gold, latex))


def _reference_letter(reference: str) -> str | None:
    t = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", reference)
    bare = t.strip().strip("$").strip().strip("().").strip()
    return bare.upper() if len(bare) == 1 and bare.isalpha() else None


def _plan(response: str, reference: str, mode: str, tol: float) -> _Plan:
    if mode not in MODES:
        raise ValueError(f"unknown verifier mode {mode!r} (known: {', '.join(MODES)})")
    # Answers sit at the end: a longer text is read from its tail only, so that a megabyte of
    # output costs the regular expressions below no more than an ordinary response.
    response = (response or "")[-MAX_RESPONSE_CHARS:]
    reference = reference[-MAX_RESPONSE_CHARS:]
    if mode == "auto":
        if _reference_letter(reference) is not None:
            mode = "choice"
        elif last_boxed(response) is not None:
            return _math_plan(last_boxed(response), gsm8k_reference(reference), "boxed")
        elif _exact_number(gsm8k_reference(reference)) is not None or "####" in reference:
            ref_text = gsm8k_reference(reference)
            integer = re.fullmatch(r"-?[\d,]+", ref_text.strip()) is not None
            return _plan(response, reference, "gsm8k" if integer else "numeric", tol)
        else:
            return _math_plan(final_answer(response), reference, "symbolic")
    if mode == "choice":
        want = _reference_letter(reference)
        if want is None:
            raise DataError(
                f"choice reference {reference[:60]!r} is not a letter", field="reference"
            )
        got = _choice_letter(response)
        return _Plan(got, want, "choice", correct=got == want)
    if mode == "exact":
        got = final_answer(response)
        return _Plan(got, reference, "exact", correct=normalize(got) == normalize(reference))
    if mode == "gsm8k":
        want_v = _reference_number(reference, "gsm8k")
        got = gsm8k_answer(response)
        got_v = _to_fraction(got)
        ok = got_v is not None and abs(got_v - want_v) <= tol
        return _Plan(got, str(want_v), "gsm8k", correct=ok)
    if mode == "numeric":
        ref_text = gsm8k_reference(reference)
        want_f = parse_number(ref_text)
        if want_f is None:
            want_f = float(_reference_number(reference, "numeric"))
        boxed = last_boxed(response)
        got = boxed if boxed is not None else gsm8k_answer(response)
        got_f = parse_number(got) if got is not None else None
        ok = got_f is not None and _numbers_equal(got_f, want_f, tol)
        return _Plan(got, ref_text, "numeric", correct=ok)
    if mode == "boxed":
        return _math_plan(last_boxed(response), reference, "boxed")
    return _math_plan(final_answer(response), reference, "symbolic")


def _finish(plan: _Plan, result: Any) -> Check:
    if plan.task is None:
        return Check(plan.correct, plan.extracted, plan.reference, plan.how, detail=plan.detail)
    if result.status == "ok":
        return Check(bool(result.value), plan.extracted, plan.reference, plan.how)
    kind = "timeout" if result.status == "timeout" else "verifier"
    return Check(None, plan.extracted, plan.reference, plan.how, error=f"{kind}: {result.detail}")


def check_many(
    pairs: Sequence[tuple[str, str]],
    mode: str = "auto",
    tol: float = 1e-6,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[Check]:
    """:func:`check` for many ``(response, reference)`` pairs; engine calls run in parallel on
    the worker pool. Raises DataError for a reference with no answer in it (``field`` names the
    pair's index)."""
    plans = []
    for i, (response, reference) in enumerate(pairs):
        try:
            plans.append(_plan(response, str(reference), mode, tol))
        except DataError as e:
            raise DataError(e.reason, field=f"item {i}: reference") from None
    tasks = [p.task for p in plans if p.task is not None]
    results: list[Any] = []
    if tasks:
        from judge_rl.judge.math_pool import get_pool

        results = get_pool().check_many(tasks, timeout_s)
    it = iter(results)
    return [_finish(p, next(it) if p.task is not None else None) for p in plans]


def check(
    response: str,
    reference: str,
    mode: str = "auto",
    tol: float = 1e-6,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Check:
    """Check ``response`` against ``reference`` under ``mode``: a verdict or an explicit error.

    >>> check("#### 1,000", "1000", "gsm8k").correct
    True
    >>> check(r"\\boxed{\\frac 35}", r"\\frac 34", "boxed").correct
    False
    """
    plan = _plan(response, str(reference), mode, tol)
    if plan.task is None:
        return _finish(plan, None)
    from judge_rl.judge.math_pool import get_pool

    return _finish(plan, get_pool().check(*plan.task, timeout_s))


def symbolic_equal(a: str, b: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Math equivalence of two answers (``b`` is the reference); raises :class:`CheckError` when
    the check runs out of time.

    >>> symbolic_equal(r"\\frac{x^2-1}{x-1}", "x+1")
    True
    >>> symbolic_equal("x+2", "x+1")
    False
    """
    plan = _math_plan(a, b, "symbolic")
    if plan.task is None:
        c = _finish(plan, None)
    else:
        from judge_rl.judge.math_pool import get_pool

        c = _finish(plan, get_pool().check(*plan.task, timeout_s))
    if c.error is not None:
        kind, _, msg = c.error.partition(": ")
        raise CheckError(kind, msg)
    return bool(c.correct)


def equivalent(
    pred: str | None,
    ref: str,
    mode: str = "auto",
    tol: float = 1e-6,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bool:
    """Whether an already extracted answer matches the reference under ``mode``.

    >>> equivalent("1,000", "1000", "numeric")
    True
    >>> equivalent("0.75", "3/4", "numeric")
    True
    >>> equivalent("b", "B", "choice")
    True
    >>> equivalent(None, "3")
    False
    """
    if pred is None:
        return False
    return verify(pred, ref, mode, tol, timeout_s)


def verify(
    response: str,
    reference: str,
    mode: str = "auto",
    tol: float = 1e-6,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bool:
    """Is ``response`` correct for ``reference``? Raises :class:`CheckError` (``timeout``) when
    the check has no verdict, and DataError when the reference states no answer.

    >>> verify("So she has 5 + 3 = 8 apples.\\n#### 8", "#### 8", "gsm8k")
    True
    >>> verify("The answer is 9", "8", "gsm8k")
    False
    >>> verify(r"\\boxed{\\frac{1}{2}}", "0.5", "boxed")
    True
    >>> verify("The answer is (B).", "B")
    True
    >>> verify("Simplifying, the answer is 2x + 2", "2(x+1)")
    True
    """
    c = check(response, reference, mode, tol, timeout_s)
    if c.error is not None:
        kind, _, msg = c.error.partition(": ")
        raise CheckError(kind, msg)
    return bool(c.correct)


# ---------------------------------------------------------------------------------------------
# The judge


def _engine_version() -> str:
    try:
        from importlib.metadata import version

        return f"{ENGINE} {version('math-verify')}"
    except Exception:  # noqa: BLE001
        return ENGINE


class VerifierJudge:
    """A judge with no model: checks answers against a reference.

    The reference comes from ``Comparison.reference`` or ``Candidate.metadata["reference"]``.
    Checks run off the event loop (a thread hands them to the worker pool).
    """

    def __init__(
        self,
        name: str = "verifier",
        mode: str = "auto",
        tolerance: float = 1e-6,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        version: str = "1",
    ):
        if mode not in MODES:
            from judge_rl.errors import ConfigError

            raise ConfigError(
                f"unknown verifier mode {mode!r} (known: {', '.join(MODES)})", setting="mode"
            )
        self.mode = mode
        self.tolerance = tolerance
        self.timeout_s = timeout_s
        self._fp = JudgeFingerprint(
            name=name,
            version=str(version),
            kind="verifier",
            params={"mode": mode, "tolerance": tolerance, "engine": _engine_version()},
        )

    @property
    def fingerprint(self) -> JudgeFingerprint:
        return self._fp

    def check(self, response: str, reference: str) -> tuple[bool, str | None]:
        """(correct, extracted answer); raises :class:`CheckError` on a timeout."""
        c = check(response, reference, self.mode, self.tolerance, self.timeout_s)
        if c.error is not None:
            kind, _, msg = c.error.partition(": ")
            raise CheckError(kind, msg)
        return bool(c.correct), c.extracted

    def _check_rows(self, pairs: list[tuple[str, str]], rows: list[str]) -> list[Check]:
        try:
            return check_many(pairs, self.mode, self.tolerance, self.timeout_s)
        except DataError as e:
            idx = int(re.match(r"item (\d+)", e.field or "item 0").group(1))  # type: ignore[union-attr]
            raise DataError(e.reason, field=f"{rows[idx]}: reference") from None

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        t = time.perf_counter()
        todo = [c for c in candidates if c.metadata.get("reference") is not None]
        checks = await asyncio.to_thread(
            self._check_rows,
            [(c.response, str(c.metadata["reference"])) for c in todo],
            [f"prompt {c.prompt_id!r} candidate {c.id!r}" for c in todo],
        )
        by_id = {id(c): ch for c, ch in zip(todo, checks, strict=True)}
        lat = (time.perf_counter() - t) / max(1, len(candidates))
        out = []
        for c in candidates:
            ch = by_id.get(id(c))
            if ch is None:
                out.append(
                    Score(
                        candidate_id=c.id,
                        prompt_id=c.prompt_id,
                        judge=self._fp,
                        error="input: no reference answer for this candidate",
                    )
                )
                continue
            ref = c.metadata.get("reference")
            raw = f"extracted={ch.extracted!r} reference={ref!r}"
            if ch.error is not None:
                out.append(
                    Score(
                        candidate_id=c.id,
                        prompt_id=c.prompt_id,
                        judge=self._fp,
                        raw=raw,
                        error=ch.error,
                        latency_s=lat,
                    )
                )
                continue
            out.append(
                Score(
                    candidate_id=c.id,
                    prompt_id=c.prompt_id,
                    score=1.0 if ch.correct else 0.0,
                    judge=self._fp,
                    raw=raw,
                    latency_s=lat,
                )
            )
        return out

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        t = time.perf_counter()
        refs: list[str | None] = []
        for comp in comparisons:
            ref = comp.reference
            if ref is None:
                ref = comp.a.metadata.get("reference", comp.b.metadata.get("reference"))
            refs.append(None if ref is None else str(ref))
        pairs: list[tuple[str, str]] = []
        rows: list[str] = []
        for comp, ref in zip(comparisons, refs, strict=True):
            if ref is not None:
                row = f"prompt {comp.prompt_id!r} comparison {comp.id!r}"
                pairs += [(comp.a.response, ref), (comp.b.response, ref)]
                rows += [row, row]
        checks = iter(await asyncio.to_thread(self._check_rows, pairs, rows))
        lat = (time.perf_counter() - t) / max(1, len(comparisons))
        out = []
        for comp, ref in zip(comparisons, refs, strict=True):
            base: dict[str, Any] = dict(
                comparison_id=comp.id,
                prompt_id=comp.prompt_id,
                a_id=comp.a.id,
                b_id=comp.b.id,
                judge=self._fp,
                order="fixed",
            )
            if ref is None:
                err = "input: no reference answer for this comparison"
                out.append(
                    Judgment(**base, error=err, calls=[JudgeCall(first_id=comp.a.id, error=err)])
                )
                continue
            ca, cb = next(checks), next(checks)
            raw = (
                f"a: extracted={ca.extracted!r} correct={ca.correct}; "
                f"b: extracted={cb.extracted!r} correct={cb.correct}"
            )
            failed = ca.error or cb.error
            if failed is not None:
                side = "a" if ca.error else "b"
                kind, _, msg = failed.partition(": ")
                failed = f"{kind}: candidate {side}: {msg}"
                call = JudgeCall(first_id=comp.a.id, raw=raw, error=failed, latency_s=lat)
                out.append(Judgment(**base, error=failed, calls=[call], latency_s=lat))
                continue
            ok_a, ok_b = bool(ca.correct), bool(cb.correct)
            winner: Verdict = "a" if ok_a and not ok_b else "b" if ok_b and not ok_a else "tie"
            p_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[winner]
            call = JudgeCall(first_id=comp.a.id, winner=winner, p_a=p_a, raw=raw, latency_s=lat)
            out.append(Judgment(**base, winner=winner, p_a=p_a, calls=[call], latency_s=lat))
        return out
