"""Summaries of a data file for ``judge-rl data inspect``: pure functions returning data."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from judge_rl._io import canonical_json
from judge_rl.data import _formats as F
from judge_rl.data._read import (
    ReadResult,
    _resolve_prompts,
    detect_format,
    read_candidates,
    read_preferences,
    read_prompts,
)
from judge_rl.types import Candidate, PreferenceRecord, PromptItem, prompt_text, response_text


@dataclass
class LengthStats:
    """Character lengths of one field."""

    n: int
    mean: float
    median: float
    min: int
    max: int

    @classmethod
    def of(cls, lengths: Sequence[int]) -> LengthStats:
        """
        >>> LengthStats.of([1, 2, 6])
        LengthStats(n=3, mean=3.0, median=2, min=1, max=6)
        """
        if not lengths:
            return cls(0, 0.0, 0.0, 0, 0)
        return cls(
            len(lengths),
            statistics.fmean(lengths),
            statistics.median(lengths),
            min(lengths),
            max(lengths),
        )


@dataclass
class Summary:
    """What ``data inspect`` reports."""

    path: str
    format: str
    kind: str
    rows: int
    items: int
    """pairs, candidates or prompts."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    lengths: dict[str, LengthStats] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    """Label balance, duplicates, sources, categories… (name -> number or small table)."""

    def skip_reasons(self, top: int = 5) -> list[tuple[str, int]]:
        """The most common skip reasons with their counts."""
        return Counter(r for _, r in self.skipped).most_common(top)


def _preference_summary(res: ReadResult) -> Summary:
    recs: list[PreferenceRecord] = res.records
    s = Summary(res.path, res.format, "preferences", res.rows, len(recs), res.skipped)
    s.lengths = {
        "prompt": LengthStats.of([len(prompt_text(r.prompt)) for r in recs]),
        "chosen": LengthStats.of([len(response_text(r.chosen)) for r in recs]),
        "rejected": LengthStats.of([len(response_text(r.rejected)) for r in recs]),
    }
    ties = sum(r.is_tie for r in recs)
    hard = sum(r.p_chosen in (0.0, 1.0) for r in recs)
    soft = len(recs) - ties - hard
    c: dict[str, Any] = {
        "hard labels": hard,
        "ties (p_chosen = 0.5)": ties,
        "soft labels": soft,
    }
    if soft:
        c["mean p_chosen"] = round(statistics.fmean(r.p_chosen for r in recs), 3)
    sides = Counter(r.provenance.get("chosen_side") for r in recs if not r.is_tie)
    if sides.get("a") or sides.get("b"):
        c["winner a / b"] = f"{sides.get('a', 0)} / {sides.get('b', 0)}"
    decided = [r for r in recs if not r.is_tie]
    if decided:
        longer = sum(len(response_text(r.chosen)) > len(response_text(r.rejected)) for r in decided)
        c["chosen is longer"] = f"{longer / len(decided):.1%}"
    if any(r.margin is not None for r in recs):
        c["with margin"] = sum(r.margin is not None for r in recs)
    c["conversational"] = sum(isinstance(r.chosen, list) for r in recs)
    c["unique prompts"] = len({canonical_json(r.prompt) for r in recs})
    keys = Counter(canonical_json([r.prompt, r.chosen, r.rejected]) for r in recs)
    c["duplicate pairs"] = sum(n - 1 for n in keys.values() if n > 1)
    both = {canonical_json([r.prompt, r.chosen, r.rejected]) for r in decided}
    c["contradicting pairs"] = (
        sum(canonical_json([r.prompt, r.rejected, r.chosen]) in both for r in decided) // 2
    )
    c["empty responses"] = sum(
        not response_text(r.chosen).strip() or not response_text(r.rejected).strip() for r in recs
    )
    earlier = sum(r.provenance.get("hh_split") == "differs_earlier" for r in recs)
    if res.format == "hh-rlhf" or earlier:
        c["HH pairs differing before the last turn"] = earlier
    origins = Counter(r.origin for r in recs)
    if len(origins) > 1 or "human" not in origins:
        c["origins"] = dict(origins)
    s.counts = c
    return s


def _candidate_summary(
    path: str, fmt: str, cands: list[Candidate], skipped: list[tuple[int, str]], rows: int
) -> Summary:
    s = Summary(path, fmt, "candidates", rows, len(cands), skipped)
    s.lengths = {
        "prompt": LengthStats.of([len(prompt_text(c.prompt)) for c in cands]),
        "response": LengthStats.of([len(c.response) for c in cands]),
    }
    sources = Counter(c.source or "(none)" for c in cands)
    dup = Counter((c.prompt_id, c.source, c.response) for c in cands)
    s.counts = {
        "sources": len(sources),
        "prompts": len({c.prompt_id for c in cands}),
        "without prompt text": sum(not prompt_text(c.prompt).strip() for c in cands),
        "empty responses": sum(not c.response.strip() for c in cands),
        "duplicate candidates": sum(n - 1 for n in dup.values() if n > 1),
        "per source": dict(sources.most_common(12)),
    }
    return s


def _prompt_summary(
    path: str, fmt: str, items: list[PromptItem], skipped: list[tuple[int, str]], rows: int
) -> Summary:
    s = Summary(path, fmt, "prompts", rows, len(items), skipped)
    s.lengths = {"prompt": LengthStats.of([len(prompt_text(i.prompt)) for i in items])}
    dup = Counter(canonical_json(i.prompt) for i in items)
    cats = Counter(i.category or "(none)" for i in items)
    s.counts = {
        "with reference": sum(i.reference is not None for i in items),
        "duplicate prompts": sum(n - 1 for n in dup.values() if n > 1),
        "duplicate ids": sum(n - 1 for n in Counter(i.prompt_id for i in items).values() if n > 1),
        "categories": dict(cats.most_common(12)),
    }
    return s


def summarize(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
) -> Summary:
    """Read any supported file and summarise it (see :class:`Summary`).

    Raises:
        DataError: as the readers do (first bad row, unless ``skip_invalid``).
    """
    path = _resolve_prompts(path)
    if path.is_dir():  # a folder of candidate files (e.g. MT-Bench model_answer/)
        skipped_dir: list[tuple[int, str]] = []
        cands = read_candidates(
            path, fmt=fmt, columns=columns, skip_invalid=skip_invalid, skipped=skipped_dir
        )
        kind_fmt = fmt or detect_format(path)
        return _candidate_summary(
            str(path), kind_fmt, cands, skipped_dir, len(cands) + len(skipped_dir)
        )
    found = fmt or detect_format(path, columns=columns)
    if found == "empty":
        return Summary(str(path), "empty", "empty", 0, 0)
    kind = F.FORMATS[found].kind
    if kind == "preferences":
        return _preference_summary(
            read_preferences(path, fmt=found, columns=columns, skip_invalid=skip_invalid)
        )
    skipped: list[tuple[int, str]] = []
    if kind == "candidates":
        cands = read_candidates(
            path, fmt=found, columns=columns, skip_invalid=skip_invalid, skipped=skipped
        )
        return _candidate_summary(str(path), found, cands, skipped, len(cands) + len(skipped))
    items = read_prompts(path, columns=columns, skip_invalid=skip_invalid, skipped=skipped)
    return _prompt_summary(str(path), found, items, skipped, len(items) + len(skipped))
