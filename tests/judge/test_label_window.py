"""The judging window of a streamed ``judge-rl label`` run (issue 19 item 2)."""

from __future__ import annotations

import asyncio
import json

from judge_rl.pipeline.label import STREAM_FIRST, PairStream


def test_a_streamed_input_is_read_in_chunks_short_enough_not_to_hold_answers_back(tmp_path):
    """While a pair file is read, the event loop handles answers only between two chunks: each
    chunk (read, keyed, looked up, rendered at ~0.1 ms a row) holds every answer that came in
    back. Chunks of 128 held them ~12 ms at every turn of the loop and the first 1.5 s of a
    10,000-pair run reached ~60% of the endpoint's limit; after the first chunk (one row per
    request in flight) at most 16 rows are read between two turns."""
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(300)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stream = PairStream(str(path), "pairwise")

    async def sizes() -> list[int]:
        return [len(c) async for c in stream.chunks()]

    got = asyncio.run(sizes())
    assert got[0] == STREAM_FIRST and sum(got) == 300
    assert max(got[1:]) <= 16, got
    assert len(stream.comparisons) == 300


def test_a_short_raw_output_is_stored_without_reading_the_cap_from_the_environment(monkeypatch):
    """Every judge call record checked ``JUDGE_RL_MAX_RAW_CHARS`` in the environment (~6 us of
    the loaded machine's CPU per call, a quarter of building the record) even for a reply the
    smallest cap (200 chars) never clips. Longer replies still read it (tests set it at run
    time)."""
    import judge_rl.types as T

    def unread() -> int:
        raise AssertionError("the cap was read for a reply no cap clips")

    monkeypatch.setattr(T, "max_raw_chars", unread)
    call = T.JudgeCall(first_id="c-1", winner="a", raw="x" * T.MIN_RAW_CHARS)
    assert call.raw_chars is None and len(call.raw) == T.MIN_RAW_CHARS
    monkeypatch.undo()
    monkeypatch.setenv("JUDGE_RL_MAX_RAW_CHARS", "200")
    long = T.JudgeCall(first_id="c-1", winner="a", raw="y" * 201 + "[[A]]")
    assert long.raw_chars == 206 and long.raw.endswith("[[A]]")
