"""Summaries behind ``judge-rl data inspect`` (judge_rl/data/_inspect.py)."""

from __future__ import annotations

import json

from judge_rl.data._inspect import summarize


def test_preference_summary_counts(data_dir):
    s = summarize(data_dir / "formats/pairwise.csv")
    assert (s.format, s.kind, s.rows, s.items) == ("pairwise", "preferences", 6, 6)
    assert s.counts["ties (p_chosen = 0.5)"] == 1
    assert s.counts["soft labels"] == 1 and s.counts["hard labels"] == 4
    assert s.counts["winner a / b"] == "3 / 2"
    assert s.lengths["chosen"].n == 6


def test_duplicates_and_contradictions(tmp_path):
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen": "b", "rejected": "a"},
    ]
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = summarize(f)
    assert s.counts["duplicate pairs"] == 1
    assert s.counts["contradicting pairs"] >= 1
    assert s.counts["unique prompts"] == 1


def test_hh_sample_summary(data_dir):
    s = summarize(data_dir / "hh_rlhf_sample.jsonl.gz")
    assert (s.format, s.rows, s.items) == ("hh-rlhf", 40, 40)
    assert s.counts["HH pairs differing before the last turn"] == 2
    assert s.counts["empty responses"] == 1


def test_candidate_folder_and_prompt_summaries(data_dir):
    s = summarize(data_dir / "mt_bench/model_answer")
    assert (s.format, s.kind, s.items) == ("mt-bench-answers", "candidates", 40)
    assert s.counts["sources"] == 4 and s.counts["prompts"] == 10
    p = summarize("builtin:open-demo")
    assert (p.kind, p.items) == ("prompts", 40) and p.counts["with reference"] == 0


def test_skipped_rows_are_reported(data_dir, tmp_path):
    s = summarize(data_dir / "formats/invalid_rows.jsonl", skip_invalid=True)
    assert len(s.skipped) == 5 and s.items == 2 and s.rows == 7
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": ""}\n')
    p = summarize(f, skip_invalid=True)
    assert p.items == 1 and p.skipped == [(2, "prompt: empty")] and p.rows == 2
