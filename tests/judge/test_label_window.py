"""The judging window of a streamed ``judge-rl label`` run (issue 19 item 2)."""

from __future__ import annotations

import asyncio
import json
import time

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


def test_between_two_chunks_the_loop_gets_as_long_as_the_chunk_took(tmp_path, monkeypatch):
    """Reading a streamed input as fast as the loop let it (one chunk per turn) took ~45% of
    the CPU for the run's first seconds, and the answers of those seconds waited. After each
    chunk the reader now waits ``STREAM_YIELD`` times the chunk's own time (reading, keys,
    lookups and renders, which run before the chunk's ``yield`` returns); before, it waited 0."""
    import judge_rl.pipeline.label as PL

    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(100)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(s: float) -> None:
        waits.append(s)
        await real_sleep(0)

    async def run() -> int:
        n = 0
        async for chunk in PairStream(str(path), "pairwise").chunks():
            n += len(chunk)
            t = time.perf_counter()
            while time.perf_counter() - t < 0.004:  # the consumer's work on the chunk
                pass
        return n

    monkeypatch.setattr(asyncio, "sleep", sleep)
    assert asyncio.run(run()) == 100
    assert len(waits) == 4 and PL.STREAM_YIELD >= 1.0  # 64, 16, 16, 4 rows
    assert all(w >= 0.004 * PL.STREAM_YIELD for w in waits), waits


def test_keys_from_the_reader_wake_one_idle_worker_per_chunk_not_all_of_them():
    """While a streamed input is read, the cache layer's workers (one per request in flight
    plus those queued ahead: 128 for 64 in flight) are mostly idle, waiting for keys. Each
    chunk the reader added set one Event that woke every idle worker; all but the few that got
    a key went back to sleep: ~12 loop callbacks per judgment, in the run's first seconds when
    the loop has the least time to spare. Now each chunk of keys wakes one worker per key."""
    from judge_rl.backends.mock import MockBackend
    from judge_rl.judge import CachedJudge, LLMJudge
    from judge_rl.types import Candidate, Comparison

    def comp(i: int) -> Comparison:
        p = f"q{i}"
        a = Candidate(prompt_id=p, prompt=p, response=f"a{i}", source="m1")
        b = Candidate(prompt_id=p, prompt=p, response=f"b{i}", source="m2")
        return Comparison(prompt_id=p, prompt=p, a=a, b=b)

    comps = [comp(i) for i in range(320)]
    template = "Q: {{ prompt }}\nA: {{ response_a }}\nB: {{ response_b }}\nEnd with [[A]] or [[B]]."

    async def run() -> tuple[int, int]:
        inner = LLMJudge(MockBackend(), template)
        inner.max_in_flight = 128
        judge = CachedJudge(inner, None)
        loop = asyncio.get_running_loop()
        calls = [0]
        call_soon = loop.call_soon

        def counted(*a, **k):  # type: ignore[no-untyped-def]
            calls[0] += 1
            return call_soon(*a, **k)

        loop.call_soon = counted  # type: ignore[method-assign]

        async def chunks():  # type: ignore[no-untyped-def]
            for i in range(0, len(comps), 16):
                yield comps[i : i + 16]
                await asyncio.sleep(0.003)  # the reader's pause: every worker is idle

        got = await judge.compare_stream(chunks())
        return len(got), calls[0]

    n, callbacks = asyncio.run(run())
    assert n == 320
    assert callbacks / n < 7, callbacks / n  # 11.9 before
