"""Verifier judges: no model, exact answers.

Modes:
    exact     normalised string equality (case, whitespace, trailing punctuation, $…$ stripped)
    numeric   numbers equal within a tolerance (commas, ``$``, units, fractions, percentages)
    gsm8k     GSM8K: the answer after ``#### `` (else "the answer is N", else the last number)
    boxed     LaTeX ``\\boxed{…}`` with nested braces, then numeric/symbolic comparison
    choice    a multiple-choice letter ("(B)", "answer is B", "B.")
    symbolic  sympy equivalence of two expressions, under a time limit
    auto      boxed if the response has one, gsm8k marker if present, choice when the reference
              is a single letter, else numeric, then symbolic, then exact

Pointwise: 1.0 correct, 0.0 incorrect. Pairwise: the correct response wins; both correct or both
wrong is a tie. A missing reference is an explicit error, not a guess.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from judge_rl.types import (
    Candidate,
    Comparison,
    JudgeCall,
    JudgeFingerprint,
    Judgment,
    Score,
    Verdict,
)

MAX_SYMBOLIC_CHARS = 120
"""Longer extracted answers are never handed to sympy (they fail equivalence)."""

MODES = ("auto", "exact", "numeric", "gsm8k", "boxed", "choice", "symbolic")

_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+"
_NUM_RE = re.compile(_NUM)
_FRACTION_RE = re.compile(rf"^\s*({_NUM})\s*/\s*({_NUM})\s*$")
_LATEX_FRAC_RE = re.compile(r"^\s*(-?)\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}\s*$")
_GSM8K_RE = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS_RE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*[:\s]*([^\n]*)", re.IGNORECASE
)
_CHOICE_RES = (
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-J])\)?(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"\(([A-J])\)"),
    re.compile(r"(?:^|\s)([A-J])[.)](?:\s|$)"),
    re.compile(r"^\s*([A-J])\s*$"),
)


# ---------------------------------------------------------------------------------------------
# Extraction


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{…}`` (or ``\fbox{…}``), nested braces respected.

    >>> last_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{x^{2}+1}")
    'x^{2}+1'
    >>> last_boxed("no box") is None
    True
    >>> last_boxed(r"\boxed{unclosed") is None
    True
    """
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    start = text.find("{", idx)
    if start < 0:
        # "\boxed 5" form
        m = re.match(r"\\(?:boxed|fbox)\s+(\S+)", text[idx:])
        return m.group(1) if m else None
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


def gsm8k_reference(answer: str) -> str:
    """The final answer of a GSM8K solution (the text after ``#### ``).

    >>> gsm8k_reference("She pays 5 * 2 = <<5*2=10>>10 dollars.\\n#### 1,000")
    '1,000'
    >>> gsm8k_reference("42")
    '42'
    """
    m = list(_GSM8K_RE.finditer(answer))
    return m[-1].group(1).strip() if m else answer.strip()


_NUM_OR_FRACTION_RE = re.compile(rf"(?:{_NUM})(?:\s*/\s*(?:{_NUM}))?")


def _last_number(text: str) -> str | None:
    """The last number (or ``a/b`` fraction) in ``text``.

    >>> _last_number("That is 3/4 of 12 cakes, 3 / 4")
    '3 / 4'
    """
    nums = _NUM_OR_FRACTION_RE.findall(text)
    return nums[-1] if nums else None


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
    if mode == "boxed":
        return last_boxed(text)
    if mode == "choice":
        for rx in _CHOICE_RES:
            found = rx.findall(text)
            if found:
                return found[-1].upper()
        return None
    if mode == "gsm8k":
        marks = list(_GSM8K_RE.finditer(text))
        if marks:
            num = _last_number(marks[-1].group(1))
            return num if num is not None else marks[-1].group(1).strip() or None
        m2 = list(_ANSWER_IS_RE.finditer(text))
        if m2:
            hit = _NUM_RE.search(m2[-1].group(1))
            if hit:
                return hit.group(0)
        return _last_number(text)
    if mode == "numeric":
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
        return _last_number(text)
    if mode in ("exact", "symbolic"):
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
        m2 = list(_ANSWER_IS_RE.finditer(text))
        if m2:
            return m2[-1].group(1).strip().rstrip(".")
        return text.strip()
    if mode == "auto":
        boxed = last_boxed(text)
        return boxed if boxed is not None else extract_answer(text, "gsm8k")
    raise ValueError(f"unknown verifier mode {mode!r} (known: {', '.join(MODES)})")


# ---------------------------------------------------------------------------------------------
# Normalisation and comparison


def normalize(s: str) -> str:
    """Normalise an answer string for exact comparison.

    >>> normalize("  The Answer: $\\\\text{Paris}$. ")
    'the answer: paris'
    >>> normalize("1,000")
    '1000'
    """
    s = s.strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:mathrm|textbf|mathbf)\{([^{}]*)\}", r"\1", s)
    s = s.replace("$", "").replace("\\!", "").replace("\\,", "").replace("\\ ", " ")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = re.sub(r"\s+", " ", s).strip().lower()
    return s.rstrip(".").strip()


_UNIT_TAIL = re.compile(r"^([-+]?[\d.,/]+(?:[eE][-+]?\d+)?)\s*([a-zA-Z%°][a-zA-Z%°. ]*)?$")


def parse_number(s: str) -> float | None:
    """A number from an answer string: commas, ``$``, units, fractions, percentages, LaTeX
    fractions. None when it is not a number.

    >>> parse_number("$1,250.50")
    1250.5
    >>> parse_number("3/4")
    0.75
    >>> parse_number("\\\\frac{3}{4}")
    0.75
    >>> parse_number("-\\\\dfrac{1}{8}")
    -0.125
    >>> parse_number("45%")
    45.0
    >>> parse_number("18 apples")
    18.0
    >>> parse_number("x + 1") is None
    True
    """
    if s is None:
        return None
    t = s.strip()
    t = re.sub(r"\\text\{([^{}]*)\}", r" \1", t)
    t = t.replace("$", "").replace("\\%", "%").replace("\\!", "").replace("\\,", "")
    t = t.replace("\u2212", "-").strip().rstrip(".").strip()
    m = _LATEX_FRAC_RE.match(t)
    if m:
        num, den = parse_number(m.group(2)), parse_number(m.group(3))
        if num is None or den in (None, 0):
            return None
        v = num / den
        return -v if m.group(1) else v
    m = _FRACTION_RE.match(t)
    if m:
        fnum, fden = _to_float(m.group(1)), _to_float(m.group(2))
        if fnum is None or fden is None or fden == 0:
            return None
        return fnum / fden
    m = _UNIT_TAIL.match(t)
    if m:
        return _to_float(m.group(1))
    return None


def _to_float(s: str) -> float | None:
    try:
        if "/" in s:
            return float(Fraction(s.replace(",", "")))
        return float(s.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def _numbers_equal(a: float, b: float, tol: float, relative: bool = True) -> bool:
    """Absolute tolerance always; relative tolerance too unless answers are exact counts
    (GSM8K: 1,450,001 is not 1,450,000)."""
    return math.isclose(a, b, rel_tol=tol if relative else 0.0, abs_tol=tol)


def _latex_to_sympy(s: str) -> str:
    r"""Light LaTeX -> sympy syntax (enough for answers, not a LaTeX parser).

    >>> _latex_to_sympy(r"\frac{x}{2} + \sqrt{y}")
    '((x)/(2)) + sqrt(y)'
    """
    t = s.replace("$", "").replace("\\left", "").replace("\\right", "")
    # Innermost first, until nothing changes: handles \frac{\sqrt{2}}{2}.
    while True:
        u = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", t)
        u = re.sub(r"\\sqrt\s*\{([^{}]*)\}", r"sqrt(\1)", u)
        if u == t:
            break
        t = u
    t = t.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", "pi")
    t = t.replace("^", "**").replace("{", "(").replace("}", ")").replace("\\", "")
    return t.strip()


def _sympy_equal_worker(a: str, b: str, conn) -> None:  # type: ignore[no-untyped-def]
    try:
        import sympy
        from sympy.parsing.sympy_parser import (
            implicit_multiplication_application,
            parse_expr,
            standard_transformations,
        )

        tr = (*standard_transformations, implicit_multiplication_application)
        ea = parse_expr(_latex_to_sympy(a), transformations=tr, evaluate=True)
        eb = parse_expr(_latex_to_sympy(b), transformations=tr, evaluate=True)
        diff = sympy.simplify(ea - eb)
        conn.send(bool(diff == 0))
    except Exception:  # unparseable: not equivalent
        conn.send(False)
    finally:
        conn.close()


def symbolic_equal(a: str, b: str, timeout_s: float = 2.0) -> bool:
    """sympy equivalence of two expressions, in a child process killed after ``timeout_s``
    (``simplify`` can run for ever on adversarial input).

    >>> symbolic_equal(r"\\frac{x^2-1}{x-1}", "x+1")
    True
    >>> symbolic_equal("x+2", "x+1")
    False
    """
    if normalize(a) == normalize(b):
        return True
    import multiprocessing as mp

    import sympy.parsing.sympy_parser  # noqa: F401  (imported once here, inherited by the fork)

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_sympy_equal_worker, args=(a, b, send), daemon=True)
    proc.start()
    send.close()
    ok = False
    if recv.poll(timeout_s):
        try:
            ok = bool(recv.recv())
        except EOFError:
            ok = False
    proc.join(0.1)
    if proc.is_alive():
        proc.kill()
        proc.join()
    recv.close()
    return ok


def equivalent(
    pred: str | None, ref: str, mode: str = "auto", tol: float = 1e-6, timeout_s: float = 2.0
) -> bool:
    """Whether an extracted answer matches the reference under ``mode``.

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
    if mode == "gsm8k":
        ref = gsm8k_reference(ref)
    if mode == "choice":
        return pred.strip().strip("().").upper() == ref.strip().strip("().").upper()
    if mode == "exact":
        return normalize(pred) == normalize(ref)
    pa, pb = parse_number(pred), parse_number(ref)
    if pa is not None and pb is not None:
        return _numbers_equal(pa, pb, tol, relative=mode != "gsm8k")
    if mode in ("numeric", "gsm8k"):
        return False
    # boxed / symbolic / auto with non-numeric answers
    if normalize(pred) == normalize(ref):
        return True
    # sympy only for answer-sized expressions: a paragraph (or a degenerate probe such as random
    # tokens) is not an answer, and would only wait out the time limit.
    if mode in ("symbolic", "boxed", "auto") and len(pred) <= MAX_SYMBOLIC_CHARS:
        return symbolic_equal(pred, ref, timeout_s=timeout_s)
    return False


def _resolve(response: str, reference: str, mode: str) -> tuple[str | None, str, str]:
    """(extracted answer, reference answer, comparison mode) for ``mode``; ``auto`` picks."""
    if mode not in MODES:
        raise ValueError(f"unknown verifier mode {mode!r} (known: {', '.join(MODES)})")
    ref = gsm8k_reference(reference) if mode in ("gsm8k", "auto") else reference
    if mode != "auto":
        return extract_answer(response, mode), ref, mode
    bare = ref.strip().strip("().")
    if len(bare) == 1 and bare.isalpha():
        return extract_answer(response, "choice"), ref, "choice"
    if last_boxed(response) is not None:
        return last_boxed(response), ref, "auto"
    if parse_number(ref) is not None:
        exact_count = parse_number(ref) == int(parse_number(ref) or 0) and "." not in ref
        return extract_answer(response, "gsm8k"), ref, "gsm8k" if exact_count else "numeric"
    return extract_answer(response, "symbolic"), ref, "auto"


def verify(
    response: str, reference: str, mode: str = "auto", tol: float = 1e-6, timeout_s: float = 2.0
) -> bool:
    """Is ``response`` correct for ``reference``? Extraction then comparison.

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
    pred, ref, how = _resolve(response, reference, mode)
    return equivalent(pred, ref, how, tol, timeout_s)


# ---------------------------------------------------------------------------------------------
# The judge


class VerifierJudge:
    """A judge with no model: checks answers against a reference.

    The reference comes from ``Comparison.reference`` or ``Candidate.metadata["reference"]``.
    """

    def __init__(
        self,
        name: str = "verifier",
        mode: str = "auto",
        tolerance: float = 1e-6,
        timeout_s: float = 2.0,
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
            params={"mode": mode, "tolerance": tolerance},
        )

    @property
    def fingerprint(self) -> JudgeFingerprint:
        return self._fp

    def check(self, response: str, reference: str) -> tuple[bool, str | None]:
        """(correct, extracted answer)."""
        pred, ref, how = _resolve(response, reference, self.mode)
        return equivalent(pred, ref, how, self.tolerance, self.timeout_s), pred

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        out = []
        for c in candidates:
            t = time.perf_counter()
            ref = c.metadata.get("reference")
            if ref is None:
                out.append(
                    Score(
                        candidate_id=c.id,
                        prompt_id=c.prompt_id,
                        judge=self._fp,
                        error="input: no reference answer for this candidate",
                    )
                )
                continue
            ok, pred = self.check(c.response, str(ref))
            out.append(
                Score(
                    candidate_id=c.id,
                    prompt_id=c.prompt_id,
                    score=1.0 if ok else 0.0,
                    judge=self._fp,
                    raw=f"extracted={pred!r} reference={ref!r}",
                    latency_s=time.perf_counter() - t,
                )
            )
        return out

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        out = []
        for comp in comparisons:
            t = time.perf_counter()
            ref = comp.reference
            if ref is None:
                ref = comp.a.metadata.get("reference", comp.b.metadata.get("reference"))
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
            ok_a, pred_a = self.check(comp.a.response, str(ref))
            ok_b, pred_b = self.check(comp.b.response, str(ref))
            winner: Verdict = "a" if ok_a and not ok_b else "b" if ok_b and not ok_a else "tie"
            p_a = {"a": 1.0, "b": 0.0, "tie": 0.5}[winner]
            raw = f"a: extracted={pred_a!r} correct={ok_a}; b: extracted={pred_b!r} correct={ok_b}"
            lat = time.perf_counter() - t
            call = JudgeCall(first_id=comp.a.id, winner=winner, p_a=p_a, raw=raw, latency_s=lat)
            out.append(Judgment(**base, winner=winner, p_a=p_a, calls=[call], latency_s=lat))
        return out
