"""The human-file judge: verdicts read from a preference file, so human and AI labels are
interchangeable downstream (audits, reward models, tournaments).

Pairs are matched by content — prompt text and the two response texts, in either order — not by
id, so a comparison built from any other file finds its label. Several labels of one pair (several
annotators) are averaged: ``p_a`` is the mean P(a better), ``winner`` the side it falls on.
Without a file, or for a pair the file lacks, the label in ``comparison.metadata["human"]``
(``a``/``b``/``tie``, as :func:`judge_rl.data.read_comparisons` fills it) is used. A pair with no
label anywhere is an explicit failure (``error="input: ..."``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judge_rl._io import content_hash
from judge_rl.types import (
    Candidate,
    Comparison,
    JudgeCall,
    JudgeFingerprint,
    Judgment,
    PreferenceRecord,
    Score,
    prompt_text,
    response_text,
)


def pair_key(prompt: Any, first: Any, second: Any) -> str:
    """Content key of (prompt, first response, second response); whitespace-insensitive at ends."""
    return content_hash(
        [prompt_text(prompt).strip(), response_text(first).strip(), response_text(second).strip()]
    )


class HumanFileJudge:
    """Judge by looking labels up in a preference file (or in ``comparison.metadata``).

    Args:
        path: Any preference file :func:`judge_rl.data.read_preferences` reads, or None to use
            only ``comparison.metadata["human"]``.
        fmt: Force the file format (else detected).
        records: Use these records instead of reading ``path``.
        name: Judge name.
        version: Spec version.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        fmt: str | None = None,
        records: Sequence[PreferenceRecord] | None = None,
        name: str = "human",
        version: str = "1",
    ) -> None:
        self.path = None if path is None else Path(path)
        if records is None and self.path is not None:
            from judge_rl.data import read_preferences

            records = read_preferences(self.path, fmt=fmt).records
        self.records = list(records or [])
        self._index: dict[str, list[float]] = {}
        for r in self.records:
            self._index.setdefault(pair_key(r.prompt, r.chosen, r.rejected), []).append(r.p_chosen)
            self._index.setdefault(pair_key(r.prompt, r.rejected, r.chosen), []).append(
                1.0 - r.p_chosen
            )
        digest = ""
        if self.path is not None and self.path.exists():
            digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]
        elif self.records:
            digest = content_hash([r.model_dump(mode="json") for r in self.records])
        self._fp = JudgeFingerprint(
            name=name,
            version=str(version),
            kind="human",
            model=self.path.name if self.path is not None else "metadata",
            backend="file",
            template_hash=digest,
        )

    @property
    def fingerprint(self) -> JudgeFingerprint:
        return self._fp

    @property
    def name(self) -> str:
        return self._fp.name

    def __len__(self) -> int:
        return len(self.records)

    async def compare(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        return [self._one(c) for c in comparisons]

    async def score(self, candidates: Sequence[Candidate]) -> list[Score]:
        raise NotImplementedError("a human-file judge compares pairs; it cannot score one response")

    def _one(self, c: Comparison) -> Judgment:
        base: dict[str, Any] = {
            "comparison_id": c.id,
            "prompt_id": c.prompt_id,
            "a_id": c.a.id,
            "b_id": c.b.id,
            "judge": self._fp,
        }
        ps = self._index.get(pair_key(c.prompt, c.a.response, c.b.response))
        source = str(self.path) if self.path is not None else "metadata"
        if ps:
            p = sum(ps) / len(ps)
            raw = f"{len(ps)} label(s) from {source}"
        elif c.metadata.get("human") in ("a", "b", "tie"):
            h = c.metadata["human"]
            p = float(c.metadata.get("human_p_a", {"a": 1.0, "b": 0.0, "tie": 0.5}[h]))
            raw = "label from comparison metadata"
        else:
            err = f"input: no human label for this pair in {source}"
            return Judgment(error=err, calls=[JudgeCall(first_id=c.a.id, error=err)], **base)
        winner = "tie" if abs(p - 0.5) < 1e-9 else ("a" if p > 0.5 else "b")
        call = JudgeCall(first_id=c.a.id, winner=winner, p_a=p, raw=raw)  # type: ignore[arg-type]
        return Judgment(winner=winner, p_a=p, calls=[call], **base)  # type: ignore[arg-type]


__all__ = ["HumanFileJudge", "pair_key"]
