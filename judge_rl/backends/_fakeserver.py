"""A local OpenAI-compatible chat server with a fixed latency and injected faults.

For reliability tests and the throughput benchmark (127.0.0.1 only, bounded run). It answers
``POST /v1/chat/completions`` with a verdict-like text (``... [[A]]``), logprobs when asked, and
usage; ``GET /v1/models`` lists one model; ``GET /stats`` returns hit counts per request content.

Faults are chosen per request *content* (a hash of the messages), so the same comparison meets
the same fault on every run, and per attempt (``*_once`` faults hit only the first attempt):

* ``rate_limit_once``: 429 with ``Retry-After`` on the first attempt, then a normal answer;
* ``server_once``: 500 on the first attempt;
* ``hang_once``: no answer for ``hang_s`` on the first attempt (past the client's timeout);
* ``server_always``, ``hang_always``, ``rate_limit_always``: every attempt;
* ``malformed``: 200 with a body that is not JSON;
* ``empty``: 200 with ``choices: []``;
* ``unparseable``: 200 with a text that holds no verdict;
* ``server_after_first``: a normal answer to the first request, 500 to every later one with
  the same content (a server that goes bad while ``n`` samples are being topped up).

Run in a thread (:func:`start_in_thread`) or as a process::

    python -m judge_rl.backends._fakeserver --latency 0.05 --max-seconds 300

which prints ``PORT <n>`` once listening and exits after ``--max-seconds`` or when its stdin
closes. It runs on aiohttp's web server; ``--lean`` (the throughput benchmark's endpoint, no
faults) answers on bare asyncio at a fraction of the CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULTS = (
    "rate_limit_once",
    "server_once",
    "hang_once",
    "server_always",
    "hang_always",
    "rate_limit_always",
    "malformed",
    "empty",
    "unparseable",
    "server_after_first",
)


def content_key(messages: Any) -> str:
    """Hash of a request's messages: what "the same request" means for hit counting."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def fault_for(key: str, faults: dict[str, float]) -> str | None:
    """The fault assigned to a content key: buckets of ``[0, 1)`` in ``FAULTS`` order.

    >>> fault_for("0000000000000000", {"server_once": 0.1}) == "server_once"
    True
    >>> fault_for("ffffffffffffffff", {"server_once": 0.1}) is None
    True
    """
    u = int(key[:8], 16) / 0x1_0000_0000
    edge = 0.0
    for name in FAULTS:
        edge += faults.get(name, 0.0)
        if u < edge:
            return name
    return None


def verdict_for(key: str) -> str:
    """A deterministic verdict letter per content (so tests can check mapping by identity)."""
    return "ABC"[int(key[8:12], 16) % 3]


@dataclass
class ServerState:
    """Counters shared by the server and the test that reads them."""

    hits: Counter[str] = field(default_factory=Counter)
    """Requests received per content key (every attempt)."""
    answered: Counter[str] = field(default_factory=Counter)
    """200 responses per content key."""
    statuses: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    busy: int = 0
    """Requests being processed now (in a slot, with ``slots``)."""
    max_busy: int = 0
    texts: dict[str, str] = field(default_factory=dict)
    """Content key -> the request's last message text (to map requests back to items)."""
    last_body: dict[str, Any] = field(default_factory=dict)
    """Body of the latest request (to check what the client sent)."""
    last_headers: dict[str, str] = field(default_factory=dict)
    """Headers of the latest request (lower-case names)."""
    auth: set[str] = field(default_factory=set)
    """Authorization headers seen (to check the API key is sent, in tests only)."""

    def snapshot(self) -> dict[str, Any]:
        return {
            "hits": dict(self.hits),
            "answered": dict(self.answered),
            "statuses": dict(self.statuses),
            "max_in_flight": self.max_in_flight,
        }


class FakeServer:
    """The aiohttp application and its state."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        faults: dict[str, float] | None = None,
        hang_s: float = 30.0,
        retry_after: str = "0.05",
        reply: str = "verdict",
        model: str = "fake-judge",
        ignore_n: bool = False,
        slots: int = 0,
        structured_output: bool = True,
    ) -> None:
        unknown = set(faults or {}) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        self.latency_s = latency_s
        self.faults = dict(faults or {})
        self.hang_s = hang_s
        self.retry_after = retry_after
        self.reply = reply
        self.model = model
        self.ignore_n = ignore_n
        """Answer one choice whatever ``n`` asks (as Ollama and llama.cpp server do)."""
        self.slots = int(slots)
        """Requests processed at once (0: unlimited); the rest wait in a queue, as on a
        llama.cpp server started with one slot. A request whose client gave up is still
        processed (its work is thrown away)."""
        self.structured_output = bool(structured_output)
        """``False``: a request with ``response_format`` gets HTTP 400, as from a server
        without structured output."""
        self._slot_sem: asyncio.Semaphore | None = None
        self.state = ServerState()

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats)
        return app

    async def models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        )

    async def stats(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.state.snapshot())

    async def chat(self, request: Any) -> Any:
        from aiohttp import web

        st = self.state
        st.last_headers = {k.lower(): v for k, v in request.headers.items()}
        if "Authorization" in request.headers:
            st.auth.add(request.headers["Authorization"])
        body = await request.json()
        st.last_body = body if isinstance(body, dict) else {}
        key = content_key(body.get("messages"))
        if not self.structured_output and "response_format" in body:
            st.statuses["400"] += 1
            return web.json_response(
                {"error": {"message": "'response_format' is not supported"}}, status=400
            )
        st.hits[key] += 1
        if key not in st.texts:
            msgs = body.get("messages") or [{}]
            st.texts[key] = str(msgs[-1].get("content", "")) if isinstance(msgs[-1], dict) else ""
        attempt = st.hits[key]
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            fault = fault_for(key, self.faults) if self.faults else None
            if fault in ("hang_always",) or (fault == "hang_once" and attempt == 1):
                await asyncio.sleep(self.hang_s)
                # The client has given up by now: this answer is never read, so not counted.
                st.statuses["hung"] += 1
                return web.json_response({"error": {"message": "too late"}}, status=504)
            if self.slots:
                if self._slot_sem is None:
                    self._slot_sem = asyncio.Semaphore(self.slots)
                async with self._slot_sem:
                    st.busy += 1
                    st.max_busy = max(st.max_busy, st.busy)
                    try:
                        await asyncio.sleep(self.latency_s)
                    finally:
                        st.busy -= 1
            elif self.latency_s:
                await asyncio.sleep(self.latency_s)
            if fault == "rate_limit_always" or (fault == "rate_limit_once" and attempt == 1):
                st.statuses["429"] += 1
                return web.json_response(
                    {"error": {"message": "rate limited", "type": "rate_limit"}},
                    status=429,
                    headers={"Retry-After": self.retry_after},
                )
            if (
                fault == "server_always"
                or (fault == "server_once" and attempt == 1)
                or (fault == "server_after_first" and attempt > 1)
            ):
                st.statuses["500"] += 1
                return web.json_response({"error": {"message": "boom"}}, status=500)
            st.statuses["200"] += 1
            st.answered[key] += 1
            if fault == "malformed":
                return web.Response(text='{"choices": [ {"mess', content_type="application/json")
            if fault == "empty":
                return web.json_response({"id": "x", "object": "chat.completion", "choices": []})
            return web.Response(
                body=json.dumps(self.completion(body, key, unparseable=fault == "unparseable")),
                content_type="application/json",
            )
        finally:
            st.in_flight -= 1

    def completion(self, body: dict[str, Any], key: str, *, unparseable: bool) -> dict[str, Any]:
        letter = verdict_for(key)
        if unparseable:
            text = "Both answers have merits and I cannot decide."
        elif self.reply == "echo":
            last = (body.get("messages") or [{}])[-1].get("content", "")
            text = f"echo: {str(last)[:40]} #{self.state.answered[key]}"
        elif self.reply == "answer":  # a verdict in words: the labels sit in top_logprobs
            text = "Answer: " + {"A": "the first", "B": "the second", "C": "neither"}[letter]
        elif _json_schema_field(body):  # structured output: a JSON object, the schema's key
            text = json.dumps(
                {"reasoning": "Comparing the two answers.", _json_schema_field(body): letter}
            )
        else:
            text = f"Comparing the two answers carefully.\n[[{letter}]]"
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        choices = []
        for i in range(n):
            ch: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
            if body.get("logprobs") and not unparseable:
                lp = _answer_logprobs(letter) if self.reply == "answer" else _logprobs(letter)
                ch["logprobs"] = {"content": lp}
            choices.append(ch)
        return {
            "id": "chatcmpl-" + key,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": choices,
            "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112},
        }


def _json_schema_field(body: dict[str, Any]) -> str | None:
    """The verdict key of a request's ``response_format`` JSON schema (the property whose
    values are an enum), or None without structured output."""
    rf = body.get("response_format")
    if not isinstance(rf, dict) or rf.get("type") != "json_schema":
        return None
    schema = (rf.get("json_schema") or {}).get("schema") or {}
    for key, prop in (schema.get("properties") or {}).items():
        if isinstance(prop, dict) and "enum" in prop:
            return str(key)
    return None


def _logprobs(letter: str) -> list[dict[str, Any]]:
    import math

    probs = {"A": 0.1, "B": 0.1, "C": 0.1}
    probs[letter] = 0.8
    top = [{"token": k, "logprob": math.log(v)} for k, v in probs.items()]
    return [
        {"token": "[[", "logprob": 0.0, "top_logprobs": [{"token": "[[", "logprob": 0.0}]},
        {"token": letter, "logprob": math.log(0.8), "top_logprobs": top},
        {"token": "]]", "logprob": 0.0, "top_logprobs": [{"token": "]]", "logprob": 0.0}]},
    ]


def _answer_logprobs(letter: str) -> list[dict[str, Any]]:
    """A reply that starts "Answer:": the generated first token is "Answer", and the labels
    are its alternatives in that position's ``top_logprobs`` (the verdict position)."""
    import math

    probs = {"Answer": 0.3, "A": 0.15, "B": 0.15, "C": 0.1, "The": 0.05}
    probs[letter] += 0.25  # the labels hold 0.65 of the mass: enough to read a verdict from
    top = [{"token": k, "logprob": math.log(v)} for k, v in probs.items()]
    return [
        {"token": "Answer", "logprob": math.log(0.3), "top_logprobs": top},
        {"token": ":", "logprob": 0.0, "top_logprobs": [{"token": ":", "logprob": 0.0}]},
    ]


class _LeanHTTP(asyncio.Protocol):
    """The fault-free server on bare asyncio (``--lean``): the benchmark's endpoint shares the
    client's cores, so it should cost far less CPU per request than the client it measures.
    Same answers as :meth:`FakeServer.chat` without faults; ``POST .../chat/completions``
    only (anything else: 404); keep-alive HTTP/1.1 with ``Content-Length`` bodies."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: Any = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self._answer(head[0], body)

    def _answer(self, request_line: str, raw: bytes) -> None:
        st = self.server.state
        method, _, rest = request_line.partition(" ")
        path = rest.split(" ", 1)[0]
        if method != "POST" or not path.endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        try:
            body = json.loads(raw)
            key = content_key(body.get("messages"))
        except (ValueError, AttributeError):
            self._send(400, b'{"error": {"message": "body is not a JSON object"}}')
            return
        st.hits[key] += 1
        st.statuses["200"] += 1
        st.answered[key] += 1
        out = json.dumps(self.server.completion(body, key, unparseable=False)).encode()
        if self.server.latency_s:
            self.loop.call_later(self.server.latency_s, self._send, 200, out)
        else:
            self._send(200, out)

    def _send(self, status: int, body: bytes) -> None:
        if self.transport.is_closing():
            return
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + body)


class RunningServer:
    """A server running in a background thread; ``url`` ends in ``/v1``."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def state(self) -> ServerState:
        return self.server.state

    def start(self) -> RunningServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake server did not start")
        if self._error:
            raise RuntimeError(f"fake server failed: {self._error}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # surfaced by start()
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        self._stop = asyncio.Event()
        runner = web.AppRunner(self.server.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_in_thread(**kwargs: Any) -> RunningServer:
    """Start a :class:`FakeServer` on a free port of 127.0.0.1 in a daemon thread."""
    return RunningServer(FakeServer(**kwargs)).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--faults", default="", help="name=fraction,… e.g. server_once=0.05")
    p.add_argument("--hang", type=float, default=30.0)
    p.add_argument("--max-seconds", type=float, default=600.0, help="exit after this long")
    p.add_argument("--slots", type=int, default=0, help="requests processed at once (0: all)")
    p.add_argument("--ignore-n", action="store_true", help="answer one choice whatever n asks")
    p.add_argument("--reply", default="verdict", choices=("verdict", "echo", "answer"))
    p.add_argument(
        "--lean",
        action="store_true",
        help="serve on bare asyncio (no faults, slots or /stats; several times less CPU per "
        "request than the aiohttp app): the throughput benchmark's endpoint",
    )
    args = p.parse_args(argv)
    faults = {}
    for part in filter(None, args.faults.split(",")):
        name, _, frac = part.partition("=")
        faults[name.strip()] = float(frac)
    server = FakeServer(
        latency_s=args.latency,
        faults=faults,
        hang_s=args.hang,
        slots=args.slots,
        ignore_n=args.ignore_n,
        reply=args.reply,
    )
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    if args.lean and (faults or args.slots):
        p.error("--lean serves without faults or slots")
    asyncio.run(_serve_forever(server, args.port, args.max_seconds, lean=args.lean))
    return 0


async def _serve_forever(
    server: FakeServer, port: int, max_seconds: float, *, lean: bool = False
) -> None:
    loop = asyncio.get_running_loop()
    if lean:
        lean_server = await loop.create_server(
            lambda: _LeanHTTP(server), "127.0.0.1", port, backlog=1024
        )
        print(f"PORT {lean_server.sockets[0].getsockname()[1]}", flush=True)
    else:
        from aiohttp import web

        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        print(f"PORT {runner.addresses[0][1]}", flush=True)
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stdin_closed, max_seconds)
    if lean:
        lean_server.close()
    else:
        await runner.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
