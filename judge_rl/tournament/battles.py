"""Read battle files (JSONL / JSON / CSV) into integer-coded arrays, with file:line errors.

Accepted rows: ``model_a``, ``model_b``, ``winner`` and optionally ``weight``, ``prompt_id``
(or ``question_id``), ``judge``. Winner spellings: ``a | b | tie`` and Chatbot Arena / FastChat's
``model_a | model_b | tie | tie (bothbad)``. A JSON file may hold a list of rows, an object with
a ``battles`` list, or a judge_rl run log with a tournament section.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from judge_rl.errors import DataError
from judge_rl.types import Battle

WINNER_ALIASES: dict[str, int] = {
    "a": 0,
    "model_a": 0,
    "b": 1,
    "model_b": 1,
    "tie": 2,
    "draw": 2,
    "tie (bothbad)": 2,
    "tie(bothbad)": 2,
    "both_bad": 2,
    "bothbad": 2,
}
WINNER_NAMES = ("a", "b", "tie")


def parse_winner(value: Any) -> int:
    """Winner code: 0 = a, 1 = b, 2 = tie.

    >>> parse_winner("model_a"), parse_winner("B"), parse_winner("tie (bothbad)")
    (0, 1, 2)
    >>> parse_winner("c")
    Traceback (most recent call last):
    ...
    ValueError: winner must be one of a, b, tie (or model_a, model_b, tie (bothbad)); got 'c'
    """
    key = str(value).strip().lower() if value is not None else ""
    if key not in WINNER_ALIASES:
        raise ValueError(
            f"winner must be one of a, b, tie (or model_a, model_b, tie (bothbad)); got {value!r}"
        )
    return WINNER_ALIASES[key]


@dataclass
class BattleSet:
    """Battles as integer codes over ``models`` (first-seen order)."""

    models: list[str]
    a: np.ndarray  # (N,) int
    b: np.ndarray  # (N,) int
    winner: np.ndarray  # (N,) int: 0 a, 1 b, 2 tie
    weight: np.ndarray | None = None  # (N,) float
    prompt_ids: list[str] = field(default_factory=list)
    judges: list[str] = field(default_factory=list)
    path: str = ""

    def __len__(self) -> int:
        return len(self.a)

    def to_battles(self, limit: int | None = None) -> list[Battle]:
        n = len(self) if limit is None else min(limit, len(self))
        out = []
        for k in range(n):
            out.append(
                Battle(
                    model_a=self.models[int(self.a[k])],
                    model_b=self.models[int(self.b[k])],
                    winner=WINNER_NAMES[int(self.winner[k])],  # type: ignore[arg-type]
                    prompt_id=self.prompt_ids[k] if self.prompt_ids else "",
                    judge=self.judges[k] if self.judges else "",
                    weight=float(self.weight[k]) if self.weight is not None else 1.0,
                )
            )
        return out


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, row) pairs; JSON list items are numbered by their position (1-based)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for ln, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield ln, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"not valid JSON ({e.msg})", file=str(path), line=ln) from None
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for k, row in enumerate(reader, start=2):  # line 1 is the header
                yield k, row
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", file=str(path), line=e.lineno) from None
        if isinstance(data, dict):
            if isinstance(data.get("tournament"), dict):  # a judge_rl run log
                data = data["tournament"].get("battles", [])
            elif isinstance(data.get("battles"), list):
                data = data["battles"]
            else:
                raise DataError(
                    "expected a list of battles, an object with a 'battles' list, or a run log",
                    file=str(path),
                )
        if not isinstance(data, list):
            raise DataError("expected a list of battles", file=str(path))
        for k, row in enumerate(data, start=1):
            yield k, row
    else:
        raise DataError(
            f"unknown battle file type {suffix or '(none)'!r}: use .jsonl, .json or .csv",
            file=str(path),
        )


def read_battles(path: str | Path) -> BattleSet:
    """Read and validate a battle file.

    Raises:
        DataError: naming the file and line for a missing field, a model battling itself, a
            winner outside {a, b, tie}, an empty file, or a file that names one model only.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("no such file", file=str(p))
    names: dict[str, int] = {}
    a: list[int] = []
    b: list[int] = []
    w: list[int] = []
    wt: list[float] = []
    pids: list[str] = []
    judges: list[str] = []
    for ln, row in _rows(p):
        if not isinstance(row, dict):
            raise DataError(
                "a battle must be an object with model_a, model_b, winner", file=str(p), line=ln
            )
        for key in ("model_a", "model_b", "winner"):
            if row.get(key) in (None, ""):
                raise DataError("missing field", file=str(p), line=ln, field=key)
        ma, mb = str(row["model_a"]), str(row["model_b"])
        if ma == mb:
            raise DataError(f"a model cannot battle itself ({ma})", file=str(p), line=ln)
        try:
            code = parse_winner(row["winner"])
        except ValueError as e:
            raise DataError(str(e), file=str(p), line=ln, field="winner") from None
        weight = row.get("weight", 1.0)
        try:
            weight = 1.0 if weight in (None, "") else float(weight)
        except (TypeError, ValueError):
            raise DataError(
                f"not a number: {weight!r}", file=str(p), line=ln, field="weight"
            ) from None
        if not weight >= 0:
            raise DataError(f"must be >= 0 (got {weight})", file=str(p), line=ln, field="weight")
        for m in (ma, mb):
            if m not in names:
                names[m] = len(names)
        a.append(names[ma])
        b.append(names[mb])
        w.append(code)
        wt.append(weight)
        pid = row.get("prompt_id", row.get("question_id", ""))
        pids.append("" if pid is None else str(pid))
        judges.append(str(row.get("judge", "") or ""))
    if not a:
        raise DataError("no battles in the file (it is empty)", file=str(p))
    models = sorted(names, key=names.__getitem__)
    if len(models) < 2:
        raise DataError(
            f"the battles name one model only ({models[0]}); need two or more", file=str(p)
        )
    weights = np.asarray(wt) if any(x != 1.0 for x in wt) else None
    return BattleSet(
        models=models,
        a=np.asarray(a, dtype=np.int64),
        b=np.asarray(b, dtype=np.int64),
        winner=np.asarray(w, dtype=np.int64),
        weight=weights,
        prompt_ids=pids if any(pids) else [],
        judges=judges if any(judges) else [],
        path=str(p),
    )


def from_battles(battles: list[Battle]) -> BattleSet:
    """Integer-code :class:`Battle` records (e.g. from a tournament run)."""
    names: dict[str, int] = {}
    for bt in battles:
        for m in (bt.model_a, bt.model_b):
            names.setdefault(m, len(names))
    codes = {"a": 0, "b": 1, "tie": 2}
    return BattleSet(
        models=sorted(names, key=names.__getitem__),
        a=np.asarray([names[x.model_a] for x in battles], dtype=np.int64),
        b=np.asarray([names[x.model_b] for x in battles], dtype=np.int64),
        winner=np.asarray([codes[x.winner] for x in battles], dtype=np.int64),
        weight=np.asarray([x.weight for x in battles])
        if any(x.weight != 1.0 for x in battles)
        else None,
        prompt_ids=[x.prompt_id for x in battles],
        judges=[x.judge for x in battles],
    )


__all__ = ["BattleSet", "from_battles", "parse_winner", "read_battles"]
