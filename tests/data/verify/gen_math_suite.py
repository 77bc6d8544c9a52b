"""Generate the MATH-style perturbation suite (tests/data/verify/math_suite.jsonl).

Every answer is generated here from numbers drawn with a fixed seed; no dataset text is copied.
For each answer: the equivalent rewrites a model writes (brace-less/\\dfrac/\\tfrac fractions,
decimals for fractions, percent, units in \\text{}/\\mbox{}, degrees, thousands separators,
``x =`` prefixes, tuples and intervals with other spacing, unordered solution sets, \\pm,
radicals, \\pi, matrices, choice letters, a number followed by words) and wrong variants (a
changed number, a flipped sign, a wrong power, a swapped order where order matters).

Each row: id, category, gold (LaTeX), response (model-style text), kind, expected (is the
response correct), and ``math_verify``: math-verify's own verdict, computed here by calling
math-verify directly (``verify(parse("$" + gold + "$"), parse(response))``, library defaults).

    .venv/bin/python tests/data/verify/gen_math_suite.py          # rewrite the file
    .venv/bin/python tests/data/verify/gen_math_suite.py --check  # recompute, compare, no write
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

OUT = Path(__file__).with_name("math_suite.jsonl")
SEED = 20260101


def box(s: str) -> str:
    return f"The final answer is $\\boxed{{{s}}}$."


def frac(f: Fraction) -> str:
    s = f"\\frac{{{abs(f.numerator)}}}{{{f.denominator}}}"
    return "-" + s if f < 0 else s


Case = tuple[str, list[tuple[str, str]], list[tuple[str, str]]]


def integers(r: random.Random) -> Iterator[Case]:
    for _ in range(30):
        n = r.choice([r.randint(2, 99), r.randint(100, 999), -r.randint(2, 60)])
        g = str(n)
        ok = [
            ("boxed", box(g)),
            ("answer_is", f"Therefore, the answer is ${g}$."),
            ("x_equals", box(f"x = {g}")),
            ("decimal_zero", box(f"{g}.0")),
            ("words_after", f"So the answer is {g} apples."),
        ]
        bad = [("changed", box(str(n + 1))), ("sign", box(str(-n))), ("power", box(str(n * 10)))]
        yield g, ok, bad


def thousands(r: random.Random) -> Iterator[Case]:
    for _ in range(24):
        n = r.randint(1001, 999999)
        g = str(n)
        ok = [
            ("thousands_comma", box(f"{n:,}")),
            ("thousands_braces", box(f"{n:,}".replace(",", "{,}"))),
            ("plain", box(g)),
            ("answer_is", f"The answer is ${n:,}$."),
        ]
        bad = [
            ("changed", box(f"{n + 1000:,}")),
            ("power", box(f"{n * 10:,}")),
            ("sign", box(f"-{n:,}")),
        ]
        yield g, ok, bad


def fractions_(r: random.Random) -> Iterator[Case]:
    seen = set()
    while len(seen) < 30:
        a, b = r.randint(1, 9), r.randint(2, 9)
        f = Fraction(a, b)
        if f.denominator == 1 or f in seen:
            continue
        seen.add(f)
        sign = -1 if len(seen) % 5 == 0 else 1
        f *= sign
        p, q = abs(f.numerator), f.denominator
        neg = "-" if f < 0 else ""
        g = frac(f)
        ok = [
            ("dfrac", box(f"{neg}\\dfrac{{{p}}}{{{q}}}")),
            ("tfrac", box(f"{neg}\\tfrac{{{p}}}{{{q}}}")),
            ("slash", box(f"{neg}{p}/{q}")),
            ("unreduced", box(f"{neg}\\frac{{{2 * p}}}{{{2 * q}}}")),
        ]
        if p < 10 and q < 10:
            ok.append(("braceless", box(f"{neg}\\frac {p}{q}")))
            ok.append(("braceless_tight", box(f"{neg}\\frac{p}{q}")))
        if 10**6 % q == 0 or (q in (2, 4, 5, 8)):
            ok.append(("decimal", box(f"{float(f):g}")))
        bad = [
            ("changed", box(frac(f + Fraction(1, q)))),
            ("sign", box(frac(-f))),
            ("power", box(frac(f * f))),
            ("inverse", box(frac(1 / f))),
        ]
        if p < 10 and q < 9:
            bad.append(("braceless_changed", box(f"{neg}\\frac {p}{q + 1}")))
        yield g, ok, bad


def braceless_gold(r: random.Random) -> Iterator[Case]:
    """The reference itself written brace-less (issue: reference \\frac 34)."""
    seen = set()
    while len(seen) < 16:
        a, b = r.randint(1, 8), r.randint(2, 9)
        f = Fraction(a, b)
        if f.denominator == 1 or (a, b) in seen or math.gcd(a, b) != 1:
            continue
        seen.add((a, b))
        g = f"\\frac {a}{b}"
        ok = [
            ("braces", box(f"\\frac{{{a}}}{{{b}}}")),
            ("braceless", box(f"\\frac{a}{b}")),
            ("dfrac", box(f"\\dfrac{{{a}}}{{{b}}}")),
        ]
        if b in (2, 4, 5, 8):
            ok.append(("decimal", box(f"{float(f):g}")))
        bad = [
            ("changed", box(f"\\frac {a}{b + 1}" if b < 9 else f"\\frac {a + 1}{b}")),
            ("sign", box(f"-\\frac {a}{b}")),
            ("zero", box("0")),
            ("power", box(f"\\frac{{{a * a}}}{{{b * b}}}")),
        ]
        yield g, ok, bad


def decimals(r: random.Random) -> Iterator[Case]:
    seen = set()
    while len(seen) < 20:
        f = Fraction(r.randint(1, 99), r.choice([4, 5, 8, 10, 20, 25, 100]))
        if f.denominator == 1 or f in seen:
            continue
        seen.add(f)
        g = f"{float(f):g}"
        ok = [
            ("fraction", box(frac(f))),
            ("trailing_zero", box(g + "0")),
            ("answer_is", f"The answer is ${g}$."),
        ]
        if g.startswith("0."):
            ok.append(("leading_point", box(g[1:])))
        bad = [
            ("changed", box(f"{float(f) + 0.1:g}")),
            ("sign", box(f"-{g}")),
            ("power", box(f"{float(f) * 10:g}")),
        ]
        yield g, ok, bad


def percents(r: random.Random) -> Iterator[Case]:
    for p in r.sample(range(2, 99), 20):
        g = f"{p}\\%"
        ok = [
            ("percent_sign", box(f"{p}\\%")),
            ("bare", box(f"{p}")),
            ("percent_text", f"The answer is {p}%."),
        ]
        bad = [("changed", box(f"{p + 5}\\%")), ("sign", box(f"-{p}\\%"))]
        yield g, ok, bad


def degrees(r: random.Random) -> Iterator[Case]:
    for d in r.sample(range(5, 175, 5), 20):
        g = f"{d}^\\circ"
        ok = [
            ("bare", box(str(d))),
            ("circ_braces", box(f"{d}^{{\\circ}}")),
            ("circ", box(f"{d}^\\circ")),
            ("unicode_degree", box(f"{d}\u00b0")),
        ]
        bad = [("changed", box(f"{d + 10}^\\circ"))]
        if d != 90:
            bad.append(("supplement", box(f"{180 - d}^\\circ")))
        yield g, ok, bad


def units(r: random.Random) -> Iterator[Case]:
    names = ["cm", "meters", "inches", "feet", "dollars", "square units", "units", "miles"]
    for _ in range(20):
        n = r.randint(2, 500)
        u = r.choice(names)
        g = str(n)
        ok = [
            ("text_unit", box(f"{n}\\text{{ {u}}}")),
            ("mbox_unit", box(f"{n}\\mbox{{ {u}}}")),
            ("text_unit_space", box(f"{n} \\text{{{u}}}")),
        ]
        bad = [("changed", box(f"{n + 2}\\text{{ {u}}}")), ("power", box(f"{n}^2\\text{{ {u}}}"))]
        yield g, ok, bad


def radicals(r: random.Random) -> Iterator[Case]:
    squarefree = [2, 3, 5, 6, 7, 10, 11, 13, 14, 15]
    for _ in range(24):
        a, b = r.randint(2, 9), r.choice(squarefree)
        g = f"{a}\\sqrt{{{b}}}"
        ok = [
            ("inside", box(f"\\sqrt{{{a * a * b}}}")),
            ("braceless", box(f"{a}\\sqrt {b}" if b < 10 else f"{a}\\sqrt{{{b}}}")),
            ("cdot", box(f"{a} \\cdot \\sqrt{{{b}}}")),
            ("commuted", box(f"\\sqrt{{{b}}} \\cdot {a}")),
        ]
        bad = [
            ("changed", box(f"{a}\\sqrt{{{b + 1}}}")),
            ("sign", box(f"-{a}\\sqrt{{{b}}}")),
            ("power", box(f"{a}\\sqrt[3]{{{b}}}")),
        ]
        yield g, ok, bad
    for _ in range(10):
        b, c = r.choice([2, 3, 5]), r.randint(2, 7)
        g = f"\\frac{{\\sqrt{{{b}}}}}{{{c}}}"
        ok = [
            ("coefficient", box(f"\\frac{{1}}{{{c}}}\\sqrt{{{b}}}")),
            ("rationalised", box(f"\\frac{{{b}}}{{{c}\\sqrt{{{b}}}}}")),
            ("dfrac_braceless_sqrt", box(f"\\dfrac{{\\sqrt {b}}}{{{c}}}")),
        ]
        bad = [
            ("changed", box(f"\\frac{{\\sqrt{{{b}}}}}{{{c + 1}}}")),
            ("power", box(f"\\frac{{{b}}}{{{c}}}")),
            ("sign", box(f"-\\frac{{\\sqrt{{{b}}}}}{{{c}}}")),
        ]
        yield g, ok, bad


def pis(r: random.Random) -> Iterator[Case]:
    for _ in range(24):
        a, b = r.randint(1, 9), r.randint(2, 9)
        f = Fraction(a, b)
        if f.denominator == 1:
            a, b, f = a, 1, Fraction(a)
        if f.denominator == 1:
            g = f"{f.numerator}\\pi"
            ok = [
                ("cdot", box(f"{f.numerator} \\cdot \\pi")),
                ("commuted", box(f"\\pi \\cdot {f.numerator}")),
                ("spaced", box(f"{f.numerator} \\pi")),
            ]
        else:
            p, q = f.numerator, f.denominator
            g = f"\\frac{{{p}\\pi}}{{{q}}}"
            ok = [
                ("coefficient", box(f"\\frac{{{p}}}{{{q}}}\\pi")),
                ("dfrac", box(f"\\dfrac{{{p}\\pi}}{{{q}}}")),
                ("slash", box(f"{p}\\pi/{q}")),
            ]
        g1 = f + 1
        changed = (
            f"{g1.numerator}\\pi"
            if g1.denominator == 1
            else f"\\frac{{{g1.numerator}\\pi}}{{{g1.denominator}}}"
        )
        bad = [
            ("changed", box(changed)),
            ("power", box(g.replace("\\pi", "\\pi^2"))),
            ("sign", box("-" + g)),
        ]
        yield g, ok, bad


def polynomials(r: random.Random) -> Iterator[Case]:
    seen = set()
    while len(seen) < 24:
        r1, r2 = r.randint(-6, 6), r.randint(-6, 6)
        if r1 == 0 or r2 == 0 or (r1, r2) in seen:
            continue
        seen.add((r1, r2))
        b, c = r1 + r2, r1 * r2

        def term(k: int, var: str) -> str:
            if k == 0:
                return ""
            coef = "" if abs(k) == 1 and var else str(abs(k))
            return f" {'-' if k < 0 else '+'} {coef}{var}"

        g = f"x^2{term(b, 'x')}{term(c, '')}"

        def lin(k: int) -> str:
            return f"(x {'+' if k > 0 else '-'} {abs(k)})"

        ok = [
            ("factored", box(f"{lin(r1)}{lin(r2)}")),
            ("reordered", box(f"{str(c)}{term(b, 'x')} + x^2")),
            ("spacing", box(g.replace(" ", ""))),
        ]
        bad = [
            ("changed", box(f"x^2{term(b, 'x')}{term(c + 1, '')}")),
            ("power", box(f"x^3{term(b, 'x')}{term(c, '')}")),
            ("sign", box(f"x^2{term(-b, 'x') if b else ' + x'}{term(c, '')}")),
        ]
        yield g, ok, bad


def tuples(r: random.Random) -> Iterator[Case]:
    for _ in range(24):
        a, b = r.sample(range(-9, 10), 2)
        g = f"({a}, {b})"
        ok = [
            ("tight", box(f"({a},{b})")),
            ("wide", box(f"( {a} , {b} )")),
            ("left_right", box(f"\\left( {a}, {b} \\right)")),
        ]
        bad = [
            ("swapped", box(f"({b}, {a})")),
            ("changed", box(f"({a}, {b + 1})")),
            ("sign", box(f"({-a if a else 1}, {b})")),
        ]
        yield g, ok, bad


def intervals(r: random.Random) -> Iterator[Case]:
    shapes = ["[{a}, {b})", "({a}, {b}]", "[{a}, {b}]", "(-\\infty, {a}]", "[{a}, \\infty)"]
    for i in range(20):
        a, b = sorted(r.sample(range(-9, 10), 2))
        shape = shapes[i % len(shapes)]
        g = shape.format(a=a, b=b)
        ok = [
            ("tight", box(g.replace(" ", ""))),
            ("wide", box(g.replace(", ", " , ").replace("[", "[ ").replace("(", "( "))),
            ("left_right", box("\\left" + g[0] + " " + g[1:-1] + " \\right" + g[-1])),
        ]
        flip = {"[": "(", "(": "[", "]": ")", ")": "]"}
        # flip the bracket of a finite end ([-oo, a] is sloppy but the same set as (-oo, a])
        left_finite = "infty" not in g.split(",")[0]
        flipped = flip[g[0]] + g[1:] if left_finite else g[:-1] + flip[g[-1]]
        bad = [
            ("bracket", box(flipped)),
            ("changed", box(shape.format(a=a - 1, b=b))),
        ]
        if "infty" not in g:
            bad.append(("swapped", box(shape.format(a=b, b=a))))
        yield g, ok, bad


def solution_sets(r: random.Random) -> Iterator[Case]:
    for _ in range(24):
        a, b = sorted(r.sample(range(-9, 10), 2))
        g = f"{a}, {b}"
        ok = [
            ("reversed", box(f"{b}, {a}")),
            ("braces", box(f"\\{{{b}, {a}\\}}")),
            ("tight", box(f"{a},{b}")),
        ]
        bad = [
            ("changed", box(f"{a}, {b + 1}")),
            ("sign", box(f"{-a if a else 1}, {b}")),
            ("missing", box(f"{a}")),
        ]
        yield g, ok, bad


def plus_minus(r: random.Random) -> Iterator[Case]:
    for _ in range(18):
        a, b = r.randint(1, 9), r.choice([2, 3, 5, 6, 7])
        g = f"{a} \\pm \\sqrt{{{b}}}"
        ok = [
            ("both", box(f"{a} + \\sqrt{{{b}}}, {a} - \\sqrt{{{b}}}")),
            ("both_reversed", box(f"{a} - \\sqrt{{{b}}}, {a} + \\sqrt{{{b}}}")),
            ("braceless_sqrt", box(f"{a}\\pm\\sqrt {b}")),
        ]
        bad = [
            ("changed", box(f"{a} \\pm \\sqrt{{{b + 1}}}")),
            ("sign", box(f"-{a} \\pm \\sqrt{{{b}}}")),
            ("one_root", box(f"{a} + \\sqrt{{{b}}}")),
        ]
        yield g, ok, bad


def matrices(r: random.Random) -> Iterator[Case]:
    for _ in range(16):
        a, b, c, d = (r.randint(-9, 9) for _ in range(4))
        if b == c:
            c = b + 1
        g = f"\\begin{{pmatrix}} {a} & {b} \\\\ {c} & {d} \\end{{pmatrix}}"
        ok = [
            ("bmatrix", box(f"\\begin{{bmatrix}} {a} & {b} \\\\ {c} & {d} \\end{{bmatrix}}")),
            ("tight", box(f"\\begin{{pmatrix}}{a}&{b}\\\\{c}&{d}\\end{{pmatrix}}")),
        ]
        bad = [
            ("changed", box(f"\\begin{{pmatrix}} {a} & {b} \\\\ {c} & {d + 1} \\end{{pmatrix}}")),
            ("transposed", box(f"\\begin{{pmatrix}} {a} & {c} \\\\ {b} & {d} \\end{{pmatrix}}")),
        ]
        yield g, ok, bad


def choices(r: random.Random) -> Iterator[Case]:
    letters = "ABCDE"
    for i in range(15):
        x = letters[i % 5]
        y = letters[(i + 1 + r.randint(0, 3)) % 5]
        g = f"\\text{{({x})}}"
        ok = [
            ("letter", box(x)),
            ("parenthesised", box(f"({x})")),
            ("text", box(f"\\text{{({x})}}")),
            ("textbf", box(f"\\textbf{{({x})}}")),
        ]
        bad = [("other_letter", box(y)), ("other_text", box(f"\\text{{({y})}}"))]
        yield g, ok, bad


GENERATORS = [
    integers,
    thousands,
    fractions_,
    braceless_gold,
    decimals,
    percents,
    degrees,
    units,
    radicals,
    pis,
    polynomials,
    tuples,
    intervals,
    solution_sets,
    plus_minus,
    matrices,
    choices,
]


def build() -> list[dict]:
    r = random.Random(SEED)
    rows = []
    n_answers = 0
    for gen in GENERATORS:
        for i, (gold, ok, bad) in enumerate(gen(r)):
            n_answers += 1
            for kind, resp in ok:
                rows.append(
                    dict(
                        category=gen.__name__.rstrip("_"),
                        gold=gold,
                        response=resp,
                        kind=kind,
                        expected=True,
                        answer=f"{gen.__name__}-{i}",
                    )
                )
            for kind, resp in bad:
                rows.append(
                    dict(
                        category=gen.__name__.rstrip("_"),
                        gold=gold,
                        response=resp,
                        kind=kind,
                        expected=False,
                        answer=f"{gen.__name__}-{i}",
                    )
                )
    for k, row in enumerate(rows):
        row["id"] = k
    return rows


def math_verify_verdicts(rows: list[dict]) -> list[bool]:
    from math_verify import parse, verify

    out = []
    for row in rows:
        try:
            out.append(bool(verify(parse("$" + row["gold"] + "$"), parse(row["response"]))))
        except Exception:  # noqa: BLE001 (the peer's failure is its verdict: not verified)
            out.append(False)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="recompute and compare; do not write")
    args = ap.parse_args(argv)
    rows = build()
    for row, mv in zip(rows, math_verify_verdicts(rows), strict=True):
        row["math_verify"] = mv
    if args.check:
        stored = [json.loads(x) for x in OUT.read_text().splitlines()]
        diff = [r["id"] for r, s in zip(rows, stored, strict=True) if r != s]
        print(f"{len(rows)} rows, {len(diff)} differ from {OUT.name}: {diff[:10]}")
        return 1 if diff or len(rows) != len(stored) else 0
    with OUT.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    answers = len({r["answer"] for r in rows})
    print(f"wrote {len(rows)} rows from {answers} answers to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
