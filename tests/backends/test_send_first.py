"""A slot an answer frees goes to a waiting request before the answer is parsed (issue 19 item 2).

Answers come back in bursts (requests sent together come back together). Before, each answered
task parsed its answer, and the judge layer turned it into a judgment and rendered the next
request, before the next request went out: the last request of a burst waited for the whole
burst's parsing, and the server idled meanwhile. Now the judge layer keeps requests rendered and
waiting beyond the concurrency (``OpenAIBackend.queue_ahead``) and an answered request gives the
event loop two turns before it parses, so every freed slot is refilled first.

The network is replaced by futures the test resolves, so the order of events is exact.
"""

from __future__ import annotations

import asyncio
import json

from judge_rl.backends.base import ChatRequest
from judge_rl.backends.openai import OpenAIBackend
from judge_rl.judge.cache import CachedJudge
from judge_rl.judge.llm import LLMJudge
from tests.judge.conftest import make_comparison

TEMPLATE = "Q: {{ prompt }}\nA: {{ response_a }}\nB: {{ response_b }}\nEnd with [[A]] or [[B]]."


def _answer(text: str) -> bytes:
    body = {
        "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2},
    }
    return json.dumps(body).encode()


class _Wire:
    """Stands in for the HTTP client: each request waits on a future the test resolves."""

    def __init__(self, backend: OpenAIBackend) -> None:
        self.events: list[tuple[str, str]] = []
        self.pending: list[tuple[str, asyncio.Future[bytes]]] = []
        self.most_waiting = 0
        self.backend = backend
        parse = backend._parse

        async def send(ep, content, options, attempt=0):
            tag = json.loads(content)["messages"][-1]["content"].split("\n", 1)[0]
            self.events.append(("send", tag))
            fut = asyncio.get_running_loop().create_future()
            self.pending.append((tag, fut))
            return await fut

        def parsed(raw, req, meta, t_start):
            tag = req.messages[-1]["content"].split("\n", 1)[0]
            self.events.append(("parse", tag))
            return parse(raw, req, meta, t_start)

        backend._send = send  # type: ignore[method-assign]
        backend._parse = parsed  # type: ignore[method-assign]
        backend.check_connection = False

    async def answer_all_in_flight(self) -> list[str]:
        """Answer every request in flight in one callback (a burst), then let the loop run."""
        while not self.pending:
            await asyncio.sleep(0)
        self.most_waiting = max(self.most_waiting, len(self.backend._waiters))
        burst, self.pending = self.pending, []
        for _, fut in burst:
            fut.set_result(_answer("[[A]]"))
        for _ in range(10):
            await asyncio.sleep(0)
        return [tag for tag, _ in burst]


def _backend(concurrency: int) -> OpenAIBackend:
    return OpenAIBackend(
        "m", base_urls="http://127.0.0.1:9/v1", concurrency=concurrency, adaptive=False
    )


def test_a_burst_of_answers_refills_every_freed_slot_before_parsing_any():
    backend = _backend(2)
    wire = _Wire(backend)
    reqs = [
        ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], max_tokens=8) for i in range(4)
    ]

    async def go():
        tasks = [asyncio.ensure_future(backend.chat([r])) for r in reqs]
        first = await wire.answer_all_in_flight()
        second = await wire.answer_all_in_flight()
        return first, second, await asyncio.gather(*tasks)

    first, second, results = asyncio.run(go())
    assert first == ["q0", "q1"] and second == ["q2", "q3"]
    assert all(r.error is None and r.text == "[[A]]" for [r] in results)
    burst = wire.events[wire.events.index(("send", "q1")) + 1 :]
    # both freed slots went to the waiting requests before either answer was parsed
    assert burst[:4] == [("send", "q2"), ("send", "q3"), ("parse", "q0"), ("parse", "q1")], burst


def test_the_judge_keeps_requests_rendered_and_waiting_beyond_the_concurrency():
    """Through the judge layer (cache layer's workers, LLM judge, backend): with concurrency
    4, four more requests are rendered and wait for a slot, so a burst's freed slots can be
    refilled before its answers are parsed. Before, the workers numbered the concurrency and
    no request ever waited."""
    backend = _backend(4)
    wire = _Wire(backend)
    judge = CachedJudge(LLMJudge(backend, TEMPLATE, max_tokens=8), None)
    comps = [make_comparison(f"one {i}", f"two {i}", prompt=f"q{i}", i=i) for i in range(16)]

    async def go():
        task = asyncio.ensure_future(judge.compare(comps))
        order = []
        while not task.done():
            order += await wire.answer_all_in_flight()
            if len(order) >= len(comps):
                break
        return order, await task

    order, judgments = asyncio.run(go())
    assert len(order) == 16 and all(j.winner == "a" for j in judgments)
    assert wire.most_waiting == 4
    # each burst of 4 answers: the 4 waiting requests went out before any of the 4 was parsed
    first_parse = next(i for i, e in enumerate(wire.events) if e[0] == "parse")
    assert [e[0] for e in wire.events[:first_parse]] == ["send"] * 8
