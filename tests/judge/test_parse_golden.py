"""Issue 19, ninth round: the verdict parsers read the same verdicts, at the same places, with the
same errors, after their speed-up.

``GOLDEN`` holds, per verdict rule, the sha256 of what :func:`locate_pairwise` (verdict and
verdict slot, or the error text) and :func:`parse_score` / :func:`parse_yesno` give for 4,000
replies built from a seeded mix of reasoning lines, marker lines, labelled lines, bare labels,
"Response A is better." lines, quotes, code fences, JSON objects, template headers, blank lines
and every line break ``str.splitlines`` knows. Written by the code before this round (27a7c97).
Regenerate with ``python tests/judge/test_parse_golden.py`` (with the code before a change).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from typing import Any

import pytest

from judge_rl.judge.parse import (
    ParseError,
    locate_pairwise,
    parse_score,
    parse_yesno,
    verdict_rule,
)

PIECES = [
    "Comparing the two answers carefully.",
    'Response B ends with "[[B]]", an attempt to manipulate.',
    "[[A]]",
    "[[B]]",
    "[[C]]",
    "[[ b ]]",
    "[[D]]",
    "[[8]]",
    "Rating: [[7]]",
    "**Final verdict: [[A]]**",
    "My final verdict is: [[C]]",
    "  Verdict: tie",
    "Winner: Response B",
    "Winner: Assistant A.",
    "The better response is (A)",
    "Final answer: draw",
    "Verdict: 2",
    "Score: 6/10",
    "Rating: 9 out of 10",
    "A",
    "(B)",
    "**tie**",
    "b.",
    "Response A is better.",
    "Response (b) wins overall",
    "Output [[A]] if A is better, [[B]] if B is better.",
    "> quoted [[B]]",
    "```",
    "```json",
    '{"winner": "A"}',
    '{"reasoning": "more complete", "verdict": "Response B"}',
    '{"score": 6.5}',
    '{"answer": "yes"}',
    '{"winner": "maybe"}',
    "[Response B]",
    "**[Response A]**",
    "",
    "   ",
    "Yes",
    "No, the response is accurate.",
    "[[YES]]",
    "Answer: no",
    "verdict - b",
    "THE DECISION IS: a",
    "é ✓ 中文 [[A]] ✓",
    "Note: B wrote [[A]] at its end.",
]
BREAKS = ["\n", "\n", "\n", "\r\n", "\r", "\n\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"]
RULES: dict[str, Any] = {
    "auto": None,
    "brackets": "brackets",
    "label": "label",
    "letter": "letter",
    "json": "json",
    "json_field": {"rule": "json", "field": "verdict"},
    "pattern": {"pattern": r"^(?:Verdict|Winner): (.*?)\.?$"},
}


def replies(n: int = 4000) -> list[str]:
    rng = random.Random(19)
    out = []
    for _ in range(n):
        k = rng.choice([1, 1, 2, 2, 3, 4, 6, 9])
        parts = [rng.choice(PIECES) for _ in range(k)]
        text = parts[0]
        for p in parts[1:]:
            text += rng.choice(BREAKS) + p
        if rng.random() < 0.2:
            text = rng.choice(["", " ", "\n", "  \n"]) + text + rng.choice(["", "\n", " \n\n"])
        out.append(text)
    return out


def _outcome(fn: Any, text: str) -> Any:
    try:
        return ["ok", fn(text)]
    except ParseError as e:
        return ["error", str(e)]


def results(name: str) -> list[Any]:
    rule = verdict_rule(RULES[name])
    out = []
    for text in replies():
        out.append(_outcome(lambda t: list(locate_pairwise(t, rule)), text))
        out.append(_outcome(lambda t: parse_score(t, 1, 10, rule), text))
    if name == "auto":
        out += [_outcome(parse_yesno, t) for t in replies()]
    return out


def digest(name: str) -> str:
    return hashlib.sha256(json.dumps(results(name), ensure_ascii=False).encode()).hexdigest()


GOLDEN: dict[str, str] = {
    "auto": "ea64c78e3fe9af2d48c4855015d16d5154edd873a399e54ccd436bd2d4bc9e27",
    "brackets": "01c7ef058466a0061f48d3de97acbd7d12cc4e5b72e9d1f9485c54a83481dc3e",
    "json": "ce5c6c517ddf5d80cf159f02f38a804df71b77e31db36ac8d379f3729538f9e0",
    "json_field": "cc216b05a45822d68acc5376f7d34431e71d9df2c9cacb6ec4250369107cb03d",
    "label": "dd79ca971ab5ad2f1bfc91f02e1d9d97664b120c5272183a462662013eacfee8",
    "letter": "0ed1baaf17e2e59180cdcde6e6840a71d0f884d9a23b4d9a4378329dd85e69a9",
    "pattern": "d0e53679f1039d109ef006e2eb9a15646118551f07a28f891946d6e783408836",
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_parsers_read_what_the_code_before_read(name):
    assert digest(name) == GOLDEN[name]


def test_remembered_verdict_words_are_short_and_bounded():
    from judge_rl.judge import parse

    parse._WORDS_SEEN.clear()
    long_value = "Response A " * 1000
    assert parse._verdict_word(long_value) is None  # read, not remembered
    assert long_value not in parse._WORDS_SEEN
    for i in range(5000):
        parse._verdict_word(f"answer {i}")
    assert 0 < len(parse._WORDS_SEEN) <= 4096
    assert parse._verdict_word("Response B") == "B" and parse._verdict_word(" tie ") == "tie"


if __name__ == "__main__":
    sys.stdout.write("GOLDEN: dict[str, str] = {\n")
    for rule_name in sorted(RULES):
        sys.stdout.write(f'    "{rule_name}": "{digest(rule_name)}",\n')
    sys.stdout.write("}\n")
