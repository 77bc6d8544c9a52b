"""docs/verify.md's table of accepted forms, checked cell by cell against the verifier."""

from __future__ import annotations

from pathlib import Path

import pytest

from judge_rl.judge.verify import check_many

DOC = Path(__file__).resolve().parents[2] / "docs" / "verify.md"
MODES = ["gsm8k", "numeric", "boxed", "symbolic", "auto"]


def table() -> list[tuple[str, str, str, dict[str, bool]]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Accepted forms", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 + len(MODES) or cells[0] in ("form", "---"):
            continue
        name, resp, ref = cells[0], cells[1].strip("`"), cells[2].strip("`")
        want = {m: c == "✓" for m, c in zip(MODES, cells[3:], strict=True) if c in "✓✗"}
        rows.append((name, resp, ref, want))
    return rows


def test_the_table_is_there_and_large():
    assert len(table()) >= 30


@pytest.mark.parametrize("mode", MODES)
def test_each_cell_of_the_table_holds(mode):
    rows = [(n, r, ref, w[mode]) for n, r, ref, w in table() if mode in w]
    got = check_many([(r, ref) for _, r, ref, _ in rows], mode)
    wrong = [
        (n, c.extracted, c.correct, c.error)
        for (n, *_, want), c in zip(rows, got, strict=True)
        if c.correct is not want
    ]
    assert wrong == []
