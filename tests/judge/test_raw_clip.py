"""Raw judge outputs are stored clipped (issue 16 item 7): eight 5 MB replies once made a 42 MB
cache, run log and HTML. The verdict is read from the whole reply first; what is stored keeps the
head and the tail (where verdicts stand) and records the original length."""

from __future__ import annotations

from judge_rl.backends.mock import MockBackend
from judge_rl.judge import LLMJudge, OrderedJudge, compare_sync
from judge_rl.judge.cache import CachedJudge, JudgmentCache
from judge_rl.types import JudgeCall, Judgment, max_raw_chars


def test_huge_replies_are_stored_clipped_with_their_length(
    comparisons, pairwise_template, tmp_path
):
    huge = "reasoning " * 500_000 + "\n[[A]]"  # 5 MB
    cache_path = tmp_path / "judgments.sqlite"
    backend = MockBackend(text=huge)
    judge = OrderedJudge(
        CachedJudge(LLMJudge(backend, pairwise_template), JudgmentCache(cache_path)), "fixed"
    )
    js = compare_sync(judge, comparisons[:8])
    assert all(j.ok for j in js)  # the verdict at the very end of 5 MB was read
    for j in js:
        call = j.calls[0]
        assert call.raw_chars == len(huge)
        assert len(call.raw) <= max_raw_chars() + 100 and call.raw.endswith("[[A]]")
        # the record round-trips through JSON without being clipped twice
        back = Judgment.model_validate_json(j.model_dump_json())
        assert back.calls[0].raw_chars == len(huge) and back.calls[0].raw == call.raw
    import json
    import sqlite3

    rows = sqlite3.connect(cache_path).execute("select value from judgments").fetchall()
    assert rows
    for (value,) in rows:  # the cached raw output is the clipped one (was 5 MB a row)
        call = json.loads(value)["calls"][0]
        assert len(call["raw"]) <= max_raw_chars() + 100 and call["raw_chars"] == len(huge)


def test_short_replies_are_untouched():
    c = JudgeCall(first_id="a", raw="short\n[[B]]", winner="b")
    assert c.raw == "short\n[[B]]" and c.raw_chars is None
    assert "raw_chars" not in c.model_dump(mode="json")
