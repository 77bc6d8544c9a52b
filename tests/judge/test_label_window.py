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
