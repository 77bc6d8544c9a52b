"""The ``label`` stage: candidates -> comparisons -> judgments -> preference records.

Candidates of the same prompt are paired in the order they were generated (samples 0 and 1, 2 and
3, …); the judge decides each pair; decided pairs and ties become :class:`PreferenceRecord` s (a
tie is a soft label 0.5); failed judgments are counted by kind and never become labels.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from judge_rl.runlog import LabelSection
from judge_rl.types import Candidate, Comparison, Judgment, PreferenceRecord


@dataclass
class LabelConfig:
    """The ``label`` stage."""

    judge: str = "grader:gold"
    """``grader:NAME`` (a grader of the pipeline) or a judge name / ``judge.yaml`` path."""
    max_pairs_per_prompt: int = 1
    """Comparisons per prompt (pairs of consecutive samples)."""
    judge_options: dict[str, Any] = field(default_factory=dict)
    """Overrides of the judge spec (``model``, ``base_urls``, ``order``, …), as ``--model`` /
    ``--base-url`` give them to ``judge-rl label``."""
    """Comparisons per prompt (pairs of consecutive samples)."""


class Labels(BaseModel):
    """The ``label`` stage's output."""

    comparisons: list[Comparison] = Field(default_factory=list)
    judgments: list[Judgment] = Field(default_factory=list)
    records: list[PreferenceRecord] = Field(default_factory=list)
    section: LabelSection = Field(default_factory=LabelSection)


def pair_candidates(candidates: Sequence[Candidate], per_prompt: int = 1) -> list[Comparison]:
    """Consecutive candidates of each prompt as comparisons, at most ``per_prompt`` per prompt."""
    by_prompt: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_prompt.setdefault(c.prompt_id, []).append(c)
    out = []
    for pid, cs in by_prompt.items():
        for k in range(0, min(len(cs) - 1, 2 * per_prompt), 2):
            a, b = cs[k], cs[k + 1]
            out.append(
                Comparison(
                    prompt_id=pid,
                    prompt=a.prompt,
                    a=a,
                    b=b,
                    reference=a.metadata.get("reference"),
                    metadata={"category": a.metadata["category"]}
                    if a.metadata.get("category")
                    else {},
                )
            )
    return out


def to_records(
    comparisons: Sequence[Comparison], judgments: Sequence[Judgment]
) -> list[PreferenceRecord]:
    """Preference records of the judgments that did not fail (ties as soft 0.5 labels)."""
    out = []
    for c, j in zip(comparisons, judgments, strict=True):
        if not j.ok:
            continue
        chosen, rejected = (c.b, c.a) if j.winner == "b" else (c.a, c.b)
        out.append(
            PreferenceRecord(
                prompt=c.prompt,
                chosen=chosen.response,
                rejected=rejected.response,
                prompt_id=c.prompt_id,
                p_chosen=0.5 if j.winner == "tie" else 1.0,
                origin="verifier" if j.judge.kind == "verifier" else "judge",
                provenance={
                    "judge": j.judge.key,
                    "chosen_id": chosen.id,
                    "rejected_id": rejected.id,
                },
            )
        )
    return out


def label(cfg: LabelConfig, candidates: Sequence[Candidate], judge: Any) -> Labels:
    """Judge pairs of ``candidates`` with ``judge`` (anything with an async ``compare``)."""
    from judge_rl.judge.base import compare_sync

    t0 = time.perf_counter()
    comps = pair_candidates(candidates, cfg.max_pairs_per_prompt)
    judgments = compare_sync(judge, comps) if comps else []
    records = to_records(comps, judgments)
    verdicts = Counter(j.winner for j in judgments if j.ok)
    failures = Counter(j.error_kind for j in judgments if not j.ok)
    summary = {
        "n": len(judgments),
        "verdicts": {k: verdicts.get(k, 0) for k in ("a", "b", "tie")},
        "failures": dict(failures),
        "records": len(records),
        "decided": sum(1 for r in records if not r.is_tie),
        "time_s": round(time.perf_counter() - t0, 3),
    }
    return Labels(
        comparisons=comps,
        judgments=judgments,
        records=records,
        section=LabelSection(comparisons=comps, judgments=judgments, summary=summary),
    )


__all__ = ["LabelConfig", "Labels", "label", "pair_candidates", "to_records"]
