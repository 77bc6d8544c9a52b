"""OpenAI-compatible chat backend: OpenAI, ``vllm serve``, Ollama, llama.cpp server, any proxy.

By default (no proxy) requests go out on a small keep-alive HTTP/1.1 client of our own
(:mod:`judge_rl.backends._http`) without the ``openai`` SDK; otherwise (a proxy, ``transport:
aiohttp | httpx``, ``fast_path: false``) the SDK's :class:`~openai.AsyncOpenAI` is the protocol
layer (base URL, auth header, error classes). Around either this module adds what a judging run
needs:

* one shared client per base URL and per event loop (never one per request), with an HTTP
  connection pool as large as the concurrency limit, kept alive between requests;
* several base URLs spread across by least-loaded choice (round robin among equals);
* a concurrency semaphore;
* its own retries (the client's are switched off so every attempt is counted): exponential
  backoff with jitter on 429, 5xx, timeouts and connection errors, honouring ``Retry-After``;
* per-request failures returned as ``ChatResult.error`` = ``kind: detail``, never raised;
* ``top_logprobs`` turned into ``label_probs`` when the request asks for labels;
* usage tokens and cost from a price table (USD per 1M input / output tokens).

Speed: the request body is serialised once per request with :mod:`json`. The direct path
(``transport: auto``, no proxy) writes each request as one buffer on a pooled keep-alive
connection with headers built once per endpoint (auth, JSON, ``OpenAI-Organization`` /
``OpenAI-Project``) and reads the JSON straight from the bytes; it imports neither the ``openai``
SDK (~0.7 s of CPU) nor aiohttp (~0.3 s) at every start of ``judge-rl label``, and costs less
client CPU per call than an aiohttp session. Behind a proxy, or with ``transport: aiohttp |
httpx``, requests go through the SDK's client, built from a template the SDK's ``_build_request``
made and checked against it; the SDK's generic per-call machinery (typed-parameter transform,
option copies, pydantic response models) is skipped either way: about 0.55 ms of client CPU per
call instead of 1.8 ms for ``chat.completions.create`` (see ``docs/backends.md``).
``fast_path=False`` uses the SDK's public ``post`` for every call.

The API key is read from the environment variable named by ``api_key_env`` and lives only inside
the client objects (the SDK's clients or the direct path's connection pools): it is
not an attribute of the backend, not in :meth:`OpenAIBackend.describe`, and never logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from judge_rl.backends.base import ChatRequest, ChatResult
from judge_rl.errors import ConfigError, JudgeRLError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_RETRY_AFTER_S = 120.0
"""Longest server-directed wait honoured; a longer ``Retry-After`` ends the request."""
SEND_FIRST_YIELDS = 2
"""Turns of the event loop an answered request gives up, when requests are waiting for a slot,
before its answer is parsed. Answers arrive in bursts (requests sent together come back
together): the burst's tasks wake in one turn, each frees its slot and wakes a waiting request;
those requests send in the next turn, and with two turns given up the burst's parsing (and the
judge layer's work on the answers: verdicts, records, the next renders) comes after every one of
them went out, during the 50 ms the server needs, instead of between them."""


@dataclass
class OpenAIChatResult(ChatResult):
    """A :class:`ChatResult` with what happened on the wire.

    ``latency_s`` is the last attempt's time (request sent to answer read), never the queueing
    or backoff before it; ``wall_s`` is the whole call, retries and waits included.
    """

    attempts: int = 0
    """Attempts sent to a server (1 + retries)."""
    retries: int = 0
    timeouts: int = 0
    """Attempts that got no answer within ``timeout_s`` (their work is lost)."""
    attempt_latency_s: list[float] = field(default_factory=list)
    """Seconds per attempt, in order."""
    wall_s: float = 0.0
    endpoint: str | None = None
    """The base URL (redacted) that gave the final answer or error."""
    model: str | None = None
    """The model name the server reported (``model`` in the response), when it gave one."""
    label_mass: float | None = None
    """Total probability on the label tokens at the verdict position (with ``label_probs``)."""


@dataclass
class _Attempts:
    attempts: int = 0
    retries: int = 0
    timeouts: int = 0
    latencies: list[float] = field(default_factory=list)
    endpoint: str | None = None

    def fields(self, t_start: float) -> dict[str, Any]:
        return {
            "latency_s": self.latencies[-1] if self.latencies else 0.0,
            "attempts": self.attempts,
            "retries": self.retries,
            "timeouts": self.timeouts,
            "attempt_latency_s": list(self.latencies),
            "wall_s": time.perf_counter() - t_start,
            "endpoint": self.endpoint,
        }


@dataclass
class _Endpoint:
    """One base URL: its client (for the current event loop), health and concurrency limit."""

    url: str
    client: Any = field(default=None, repr=False)
    inflight: int = 0
    session: Any = field(default=None, repr=False)
    """Keep-alive pool of the direct path (None: requests go through the SDK's client)."""
    template: Any = field(default=None, repr=False)
    """Request target (path and query) of the direct path, built once."""
    ok: int = 0
    """Successful responses so far."""
    failures: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    """Attempts sent to this URL."""
    # --- circuit breaker ---
    consecutive: int = 0
    """Connection / 5xx / timeout failures in a row (a success resets it)."""
    open_until: float = 0.0
    """``time.monotonic()`` before which the breaker is open (no traffic but a re-probe)."""
    cooldown: float = 0.0
    """Current open period; doubles after each failed re-probe."""
    probing: bool = False
    """A half-open re-probe is in flight."""
    last_ok_sent: float = -1.0
    """Send time (monotonic) of the latest-sent attempt that got an answer."""
    opened: int = 0
    """Times the breaker opened."""
    limit: _Limit | None = field(default=None, repr=False)
    public_url: str = ""
    """``url`` without credentials (for results and logs)."""
    sdk_ok: bool = False
    """The client has the SDK internals the fast paths use (checked once per client)."""

    def state(self, now: float) -> str:
        if self.open_until <= 0:
            return "closed"
        return "half_open" if now >= self.open_until else "open"


QUICK_STEP = 3
"""How many more requests in flight an answer under ``timeout_s``/32 allows during the slow
start (the limit quadruples per round trip: 2 -> 64 in 3 round trips instead of 5, ~0.1 s of a
50 ms endpoint's throughput at the start of every run)."""


class _Limit:
    """Adaptive concurrency of one endpoint (requests in flight at most).

    What it protects against is work thrown away: requests queued at a server that runs fewer
    at once than we send (a llama.cpp server with one slot) wait, and past ``timeout_s`` their
    answers are lost. So the limit follows the latency the server shows, relative to the
    timeout:

    * slow start from ``start``: each quick answer (latency at most ``timeout/8``) adds one
      (the limit doubles per round trip), a very quick one (at most ``timeout/32``) adds
      :data:`QUICK_STEP` (it quadruples); once answers are slower, after a warm-up window,
      the limit doubles after each window of ``value`` successes only while the throughput
      rose by half or more; when doubling gained under 25% it steps back (the server's
      observed parallelism) and stays;
    * a window whose mean latency passes ``timeout/2`` (queueing towards timeouts) cuts the
      limit by a quarter; a 429 or a queued timeout halves it (once per burst);
    * after a cut, each window of successes adds 1, back to the level reached before, and
      beyond it only while answers are as fast as the fastest seen or well under the timeout.
    """

    __slots__ = (
        "value", "maximum", "adaptive", "phase", "ceiling", "prev_rate", "prev_value",
        "win_n", "win_t0", "win_lat", "min_lat", "cut_t", "cuts", "timeout_s",
    )  # fmt: skip

    def __init__(self, start: int, maximum: int, adaptive: bool, timeout_s: float = 60.0) -> None:
        self.maximum = max(1, int(maximum))
        self.adaptive = adaptive
        self.timeout_s = float(timeout_s)
        self.value = max(1, min(int(start), self.maximum)) if adaptive else self.maximum
        self.phase = "slow_start" if adaptive and self.value < self.maximum else "steady"
        self.ceiling = self.value
        self.prev_rate: float | None = None
        self.prev_value = 0
        self.win_n = 0
        self.win_t0 = -1.0  # set by the first attempt sent (see :meth:`on_send`)
        self.win_lat = 0.0
        self.min_lat = math.inf
        self.cut_t = -1e9
        self.cuts = 0

    def on_send(self, now: float) -> None:
        """An attempt goes out: the first one starts the first window."""
        if self.win_t0 < 0:
            self.win_t0 = now

    def on_success(self, now: float, latency: float) -> int:
        """Count a success; returns by how much the limit grew (to wake that many waiters)."""
        if not self.adaptive:
            return 0
        self.win_n += 1
        self.win_lat += latency
        if latency < self.min_lat:
            self.min_lat = latency
        if self.phase == "slow_start" and latency <= self.timeout_s / 8:
            # A quick answer: one more in flight (doubles per round trip; even a server that
            # runs one request at a time stays under timeout/4 after the round trip), three
            # more under timeout/32 (quadruples: such a server stays under timeout/8).
            before = self.value
            self.value += QUICK_STEP if latency <= self.timeout_s / 32 else 1
            if self.value >= self.maximum:
                self.value = self.maximum
                self.phase = "steady"
            self.ceiling = self.value
            if self.win_n >= self.value:
                self.prev_value = self.value
                self.prev_rate = self.win_n / max(1e-6, now - self.win_t0)
                self.win_n, self.win_lat, self.win_t0 = 0, 0.0, now
            return self.value - before
        if self.win_n < self.value:
            return 0
        rate = self.win_n / max(1e-6, now - self.win_t0)
        mean_lat = self.win_lat / self.win_n
        quick = mean_lat <= self.timeout_s / 8
        before = self.value
        if mean_lat > self.timeout_s / 2:  # queueing towards timeouts: back off now
            self.value = max(1, self.value - max(1, self.value // 4))
            self.phase = "steady"
            self.ceiling = self.value
        elif self.phase == "slow_start" and self.prev_value == 0:
            self.prev_value = self.value  # the first window (connections opening) is warm-up
        elif self.phase == "slow_start":
            if quick or self.prev_rate is None or rate >= 1.5 * self.prev_rate:
                self.prev_value, self.prev_rate = self.value, rate
                self.value = min(self.maximum, self.value * 2)
                if self.value >= self.maximum:
                    self.phase = "steady"
            else:
                if rate < 1.25 * self.prev_rate:  # doubling did not help: step back
                    self.value = self.prev_value
                self.phase = "steady"
            self.ceiling = self.value
        elif self.value < self.ceiling:
            self.value += 1  # recover after a cut
        elif self.value < self.maximum and (quick or mean_lat <= 1.5 * self.min_lat + 0.005):
            self.value += 1  # answers as fast as ever: room for more
            self.ceiling = self.value
        self.win_n = 0
        self.win_lat = 0.0
        self.win_t0 = now
        return max(0, self.value - before)

    def on_overload(self, now: float, timeout: bool) -> None:
        """A 429 or a queued timeout: halve the limit (once per burst)."""
        if not self.adaptive:
            return
        if self.cuts and now - self.cut_t < min(5.0, max(0.5, now - max(0.0, self.win_t0))):
            return
        self.cut_t = now
        self.cuts += 1
        if self.phase == "slow_start":
            self.phase = "steady"
        self.ceiling = max(self.ceiling, self.value)  # recover to where it was ...
        self.value = max(1, self.value // 2)
        if timeout:  # ... unless it was too much queueing
            self.ceiling = max(1, min(self.ceiling, self.value))
        self.win_n = 0
        self.win_lat = 0.0
        self.win_t0 = now


def redact_url(url: str) -> str:
    """A URL without user info or query string (safe for logs, fingerprints and reports).

    >>> redact_url("https://user:secret@host:8000/v1?key=abc")
    'https://host:8000/v1'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date).

    >>> parse_retry_after({"retry-after": "2"})
    2.0
    >>> parse_retry_after({"retry-after-ms": "150"})
    0.15
    >>> parse_retry_after({}) is None
    True
    """
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with "full jitter": uniform between 0 and the exponential bound.

    Delay = U(0, d) with d = min(max_s, base_s * 2**attempt) (AWS Architecture Blog,
    "Exponential Backoff And Jitter", 2015: full jitter spreads a burst of retries the most).

    >>> 0.0 <= backoff_delay(0, 1.0, 30.0, random.Random(0)) <= 1.0
    True
    >>> max(backoff_delay(10, 1.0, 30.0, random.Random(i)) for i in range(50)) <= 30.0
    True
    """
    d = min(max_s, base_s * (2.0**attempt))
    return rng.uniform(0, d)


def retry_after_delay(retry_after: float, base_s: float, max_s: float, rng: random.Random) -> float:
    """A server-directed wait plus jitter, so clients told the same moment do not come back
    together: ``retry_after + U(0, j)`` with ``j = min(max_s, max(base_s, retry_after / 4))``.

    >>> 2.0 <= retry_after_delay(2.0, 0.5, 30.0, random.Random(0)) <= 2.5
    True
    """
    ra = max(0.0, retry_after)
    return ra + rng.uniform(0, min(max_s, max(base_s, ra / 4)))


def label_probs_from_logprobs(
    content: list[dict[str, Any]] | None, labels: Sequence[str], prefix: str | None = None
) -> dict[str, float] | None:
    """Normalised label probabilities at the verdict position of a reply.

    ``content`` is a choice's ``logprobs.content`` (one entry per generated token, each with
    ``token``, ``logprob`` and ``top_logprobs``). Tokens are compared after stripping spaces, so
    ``" A"`` counts for ``A``. The verdict position is, in this order:

    1. with ``prefix`` (e.g. ``"[["``), the first label token right after that text (only there);
    2. the last label token right after ``[[`` (the usual ``[[A]]`` marker, wherever the
       reasoning before it mentions "Response A");
    3. the first generated token that is a label;
    4. the first position whose ``top_logprobs`` hold a label although another token was
       generated there (a reply that starts "Answer: ..." in words: the labels are the
       alternatives of its first token).

    Labels missing from ``top_logprobs`` get probability 0. See :func:`verdict_position`.

    >>> tok = lambda t, lp, top: {"token": t, "logprob": lp, "top_logprobs": [
    ...     {"token": k, "logprob": v} for k, v in top.items()]}
    >>> c = [tok("[[", 0.0, {"[[": 0.0}), tok("A", -0.2, {"A": -0.2, "B": -1.8, "x": -5})]
    >>> p = label_probs_from_logprobs(c, ["A", "B", "C"])
    >>> round(p["A"], 3), round(p["B"], 3), p["C"]
    (0.832, 0.168, 0.0)
    >>> label_probs_from_logprobs([tok("hi", 0.0, {})], ["A"]) is None
    True
    >>> words = [tok("Answer", -0.7, {"Answer": -0.7, "B": -1.2, "A": -2.3}), tok(":", 0, {})]
    >>> round(label_probs_from_logprobs(words, ["A", "B"])["B"], 2)
    0.75
    """
    found = verdict_position(content, labels, prefix)
    return None if found is None else found[1]


def verdict_position(
    content: list[dict[str, Any]] | None, labels: Sequence[str], prefix: str | None = None
) -> tuple[int, dict[str, float], float] | None:
    """``(token index, normalised label probabilities, raw label mass)`` at the verdict
    position (rules in :func:`label_probs_from_logprobs`), or None. The raw mass is the total
    probability the model put on the labels there (small: the judge barely meant a label)."""
    if not content or not isinstance(content, list):
        return None
    wanted = set(labels)

    def probs_at(entry: dict[str, Any]) -> tuple[dict[str, float], float] | None:
        token = entry.get("token") or ""
        mass = dict.fromkeys(labels, 0.0)
        alts = entry.get("top_logprobs") or [{"token": token, "logprob": entry.get("logprob")}]
        for alt in alts:
            key = (alt.get("token") or "").strip()
            lp = alt.get("logprob")
            if key in mass and lp is not None:
                mass[key] += math.exp(lp)
        total = sum(mass.values())
        if total <= 0:
            return None
        return {k: v / total for k, v in mass.items()}, total

    tokens = [str(e.get("token") or "") for e in content]
    text = ""
    first_label: int | None = None
    last_marked: int | None = None
    for i, tok in enumerate(tokens):
        if tok.strip() in wanted:
            before = text.rstrip()
            if prefix is not None:
                if before.endswith(prefix):
                    got = probs_at(content[i])
                    return None if got is None else (i, got[0], got[1])
            else:
                if first_label is None:
                    first_label = i
                if before.endswith("[["):
                    last_marked = i
        text += tok
    if prefix is not None:
        return None
    for at in (last_marked, first_label):
        if at is not None:
            got = probs_at(content[at])
            if got is not None:
                return at, got[0], got[1]
    for i, entry in enumerate(content):
        alts = entry.get("top_logprobs") or []
        if any((a.get("token") or "").strip() in wanted for a in alts):
            got = probs_at(entry)
            if got is not None:
                return i, got[0], got[1]
    return None


class OpenAIBackend:
    """Async client for any OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: Model name sent in each request (e.g. ``gpt-4o-mini``, the name ``vllm serve``
            was started with, an Ollama tag).
        base_urls: One URL or a list (``http://host:8000/v1``); requests go to the least-loaded.
            Default: ``$OPENAI_BASE_URL`` or the OpenAI API.
        api_key_env: Name of the environment variable holding the API key. Local endpoints work
            without one; the OpenAI API needs it.
        concurrency: Requests in flight at most (over all base URLs).
        timeout_s: Seconds per attempt before it counts as a timeout.
        max_retries: Retries after the first attempt on 429 / 5xx / timeout / connection error.
        prices: ``{"input": usd_per_1m_tokens, "output": usd_per_1m_tokens}`` for the cost.
            Default: the shipped price table's prices for ``model`` (none for a model it lacks,
            and none for endpoints on this machine or a private network: cost 0).
        backoff_base_s: First backoff delay; doubles per retry.
        backoff_max_s: Longest backoff delay.
        top_logprobs: How many alternatives to ask for when a request wants ``label_probs``
            (OpenAI allows at most 20).
        max_tokens_field: ``max_tokens`` (vLLM, Ollama, llama.cpp) or ``max_completion_tokens``
            (newer OpenAI models).
        check_connection: Before the first request, check that each base URL accepts a TCP
            connection; an endpoint that refuses every attempt is a :class:`JudgeRLError`.
        transport: ``auto``: our own keep-alive HTTP/1.1 client (no SDK; proxied URLs go
            through the SDK over aiohttp when installed); ``aiohttp`` (openai's own
            ``DefaultAioHttpClient``) or ``httpx``: the SDK's client over that transport.
        fast_path: With ``transport: auto``, send requests on our own client; otherwise build
            each SDK request from a template the SDK built once (same URL, headers and timeout;
            new body and retry count) instead of running the SDK's generic request machinery
            every time. ``False``: the SDK's public ``post`` for every call.
        base_url: Alias of ``base_urls`` for a single URL.
        seed: Seed of the backoff jitter (for reproducible tests).
        adaptive: Adapt each URL's concurrency: slow start from ``initial_concurrency`` up to
            what the server shows it can run in parallel without queueing answers towards
            ``timeout_s`` (at most ``concurrency``), halved on 429s and queued timeouts and
            recovered after successes (see ``_Limit``). ``False``: a fixed ``concurrency``.
        initial_concurrency: Where the slow start begins (default ``min(2, concurrency)``).
        breaker_failures: Connection / 5xx / timeout failures in a row that open a URL's
            circuit breaker: no traffic goes there except one re-probe after the cooldown.
        breaker_cooldown_s: First open period (doubles after each failed re-probe, up to
            ``breaker_max_cooldown_s``).
        structured_output: Send a request's ``response_format`` (a JSON schema, from judges
            with ``verdict: json``) as the body's ``response_format``, as OpenAI, vLLM and the
            llama.cpp server accept it. ``False`` for a server that rejects the field: the
            judge then asks for JSON in words only.
        **extra: Extra request-body fields sent with every request (e.g. ``top_k`` for vLLM).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        base_urls: str | Sequence[str] | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 64,
        timeout_s: float = 60.0,
        max_retries: int = 6,
        prices: dict[str, float] | None = None,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        top_logprobs: int = 20,
        max_tokens_field: str = "max_tokens",
        check_connection: bool = True,
        transport: str = "auto",
        fast_path: bool = True,
        base_url: str | None = None,
        seed: int | None = None,
        adaptive: bool = True,
        initial_concurrency: int | None = None,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 2.0,
        breaker_max_cooldown_s: float = 30.0,
        structured_output: bool = True,
        **extra: Any,
    ) -> None:
        if not model:
            raise ConfigError("an OpenAI-compatible backend needs a model name", setting="model")
        urls = _as_list(base_urls if base_urls is not None else base_url)
        if not urls:
            urls = [os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL]
        for u in urls:
            parts = urlsplit(u)
            try:
                parts.port  # noqa: B018 - raises ValueError when out of range
            except ValueError:
                host = parts.hostname or "?"
                raise ConfigError(
                    f"the port of {parts.scheme}://{host}:… is not a number in 1-65535 "
                    "(--base-url / base_urls)",
                    setting="base_url",
                ) from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"not an http(s) URL: {redact_url(u)!r} (--base-url / base_urls)",
                    setting="base_url",
                )
        if concurrency < 1:
            raise ConfigError(f"must be >= 1, got {concurrency}", setting="concurrency")
        if max_retries < 0:
            raise ConfigError(f"must be >= 0, got {max_retries}", setting="max_retries")
        if not api_key_env or not api_key_env.replace("_", "").isalnum():
            raise ConfigError(
                f"must name an environment variable, got {api_key_env!r}", setting="api_key_env"
            )
        self.model = model
        self.base_urls = [u.rstrip("/") for u in urls]
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.queue_ahead = self.concurrency
        """Requests the judge layer keeps rendered and waiting for a slot beyond
        ``concurrency``: a slot an answer frees goes to a waiting request before that answer is
        parsed (see :data:`SEND_FIRST_YIELDS`), instead of after the judge layer has turned it
        into a judgment and rendered the next one."""
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.prices = _check_prices(prices)
        if self.prices is None and not all(_is_local(u) for u in urls):
            from judge_rl.judge.budget import table_prices

            self.prices = table_prices(model)  # None for a model the shipped table lacks
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.top_logprobs = int(top_logprobs)
        self.max_tokens_field = max_tokens_field
        self.check_connection = check_connection
        if transport not in ("auto", "aiohttp", "httpx"):
            raise ConfigError(
                f"must be auto, aiohttp or httpx, got {transport!r}", setting="transport"
            )
        self.transport = transport
        self.fast_path = bool(fast_path)
        self.extra_body = dict(extra)
        self.supports_response_format = bool(structured_output)
        """Whether requests' ``response_format`` (structured output) is sent."""
        self.adaptive = bool(adaptive)
        self.initial_concurrency = min(
            self.concurrency, int(initial_concurrency or min(2, self.concurrency))
        )
        if self.initial_concurrency < 1:
            raise ConfigError(
                f"must be >= 1, got {initial_concurrency}", setting="initial_concurrency"
            )
        if breaker_failures < 1:
            raise ConfigError(f"must be >= 1, got {breaker_failures}", setting="breaker_failures")
        for name, val in (
            ("timeout_s", timeout_s),
            ("backoff_base_s", backoff_base_s),
            ("backoff_max_s", backoff_max_s),
            ("breaker_cooldown_s", breaker_cooldown_s),
            ("breaker_max_cooldown_s", breaker_max_cooldown_s),
        ):
            if not (math.isfinite(float(val)) and float(val) >= 0):
                raise ConfigError(f"must be a finite number >= 0, got {val!r}", setting=name)
        if self.timeout_s <= 0:
            raise ConfigError(f"must be > 0, got {timeout_s!r}", setting="timeout_s")
        self.breaker_failures = int(breaker_failures)
        self.breaker_cooldown_s = float(breaker_cooldown_s)
        self.breaker_max_cooldown_s = max(float(breaker_max_cooldown_s), self.breaker_cooldown_s)
        self._rng = random.Random(seed)
        if self._api_key() is None and not all(_is_local(u) for u in self.base_urls):
            raise ConfigError(
                f"set the environment variable {api_key_env} to the API key for "
                f"{', '.join(redact_url(u) for u in self.base_urls)}",
                setting="api_key_env",
            )
        self._direct = self.fast_path and self.transport == "auto"
        self._openai: Any = None
        self._client_cls: Any = None
        if not self._direct or any(_proxied(u) for u in self.base_urls):
            # The SDK is imported when the judge is built, not inside the first request: the
            # import (~0.7 s of CPU) stays out of the judging window. The direct path (our own
            # HTTP/1.1 client, no proxy) never imports it, nor aiohttp.
            self._load_sdk()
        self._endpoints = [self._new_endpoint(u) for u in self.base_urls]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: Any = None
        self._checked = False
        self._rr = 0
        self._inflight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.stats: dict[str, int] = {
            "requests": 0,
            "attempts": 0,
            "retries": 0,
            "timeouts": 0,
            "breaker_opened": 0,
        }
        """Counters over the backend's life: requests, attempts sent to a server (never an
        attempt that did not go out), retries, timeouts, circuit-breaker openings."""

    def _new_endpoint(self, url: str) -> _Endpoint:
        ep = _Endpoint(url, public_url=redact_url(url))
        ep.limit = _Limit(self.initial_concurrency, self.concurrency, self.adaptive, self.timeout_s)
        return ep

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_urls={self.describe()['base_urls']!r})"

    # ---------------------------------------------------------------------------------------
    # Public surface

    def describe(self) -> dict[str, Any]:
        """What identifies this backend in a fingerprint or report (never the API key)."""
        return {
            "backend": self.name,
            "model": self.model,
            "base_urls": [redact_url(u) for u in self.base_urls],
        }

    def fingerprint_params(self) -> dict[str, Any]:
        """Backend settings that change verdicts (extra body fields); never URLs or keys."""
        return {"extra_body": self.extra_body} if self.extra_body else {}

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request, in order; at most ``concurrency`` in flight."""
        if asyncio.get_running_loop() is not self._loop:
            await self._bind_loop()
        if not self._checked:
            await self._check_endpoints()
        if len(requests) == 1:  # the judge layer hands requests over one by one: no extra task
            return [await self._one(requests[0])]
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def check(self) -> None:
        """Raise :class:`JudgeRLError` now if no base URL accepts connections (``chat`` does
        this itself before its first request; call it to fail before any other work)."""
        if not self._checked:
            await self._check_endpoints()

    async def aclose(self) -> None:
        """Close the HTTP clients of the current event loop."""
        closer, self._closer = self._closer, None
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer.aclose()
        for ep in self._endpoints:
            if ep.client is not None:
                # A client of a finished event loop may fail to close; nothing is lost.
                with contextlib.suppress(Exception):
                    await ep.client.close()
                ep.client = None
            if ep.session is not None:
                with contextlib.suppress(Exception):
                    await ep.session.close()
                ep.session = None
        self._loop = None

    def cost_of(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for the given token counts with this backend's prices (0 without prices)."""
        if not self.prices:
            return 0.0
        return (
            prompt_tokens * self.prices["input"] + completion_tokens * self.prices["output"]
        ) / 1e6

    # ---------------------------------------------------------------------------------------
    # Clients, one per base URL and event loop

    def _api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    async def _bind_loop(self) -> None:
        # A new event loop (e.g. a second asyncio.run): connection pools cannot cross loops.
        loop = asyncio.get_running_loop()
        key = self._api_key() or "EMPTY"
        direct = self._direct
        for ep in self._endpoints:
            ep.template = None
            ep.client = None
            ep.session = self._http_pool(ep.url) if direct and not _proxied(ep.url) else None
            if ep.session is not None:
                continue  # the direct path: our own HTTP/1.1 client, no SDK client
            AsyncOpenAI, httpx2 = self._load_sdk(), _httpx()  # noqa: N806
            timeout = httpx2.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
            limits = httpx2.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            )
            http = _http_client(limits, timeout, self.transport)
            ep.client = AsyncOpenAI(
                api_key=key, base_url=ep.url, max_retries=0, timeout=timeout, http_client=http
            )
            ep.sdk_ok = _direct_ok(ep.client)
        self._waiters = collections.deque()
        self._inflight = 0
        for ep in self._endpoints:
            ep.inflight = 0
            ep.probing = False
        self._loop = loop
        # Close these clients when the loop shuts down (asyncio.run finalises async generators
        # before closing the loop), so a caller that never awaits aclose() leaks no sessions.
        closables = [ep.client for ep in self._endpoints if ep.client is not None]
        closables += [ep.session for ep in self._endpoints if ep.session is not None]
        self._closer = _close_at_shutdown(closables)
        await self._closer.__anext__()

    def _load_sdk(self) -> Any:
        """Import the ``openai`` SDK (once); returns the client class the SDK paths use."""
        if self._client_cls is None:
            import openai

            self._openai = openai
            self._client_cls = _client_class(self.fast_path)
        return self._client_cls

    def _direct_headers(self) -> dict[str, str]:
        """Headers of the direct path: what the SDK sends that a server reads (auth, JSON,
        ``OpenAI-Organization`` / ``OpenAI-Project`` from ``$OPENAI_ORG_ID`` /
        ``$OPENAI_PROJECT_ID`` as the SDK does); not the SDK's telemetry (``x-stainless-*``)."""
        from judge_rl import __version__

        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"judge_rl/{__version__}",
            "Authorization": f"Bearer {self._api_key() or 'EMPTY'}",
        }
        for env, name in (
            ("OPENAI_ORG_ID", "OpenAI-Organization"),
            ("OPENAI_PROJECT_ID", "OpenAI-Project"),
        ):
            if os.environ.get(env):
                headers[name] = os.environ[env]
        return headers

    def _http_pool(self, url: str) -> Any:
        """Keep-alive connections to ``url`` for the direct path. Proxied URLs never get here
        (they go through the SDK's client, which honours proxy settings)."""
        from judge_rl.backends._http import HTTPPool

        return HTTPPool(
            url,
            timeout_s=self.timeout_s,
            connect_timeout_s=min(10.0, self.timeout_s),
            headers=self._direct_headers(),
        )

    # ---------------------------------------------------------------------------------------
    # The endpoint pool: routing, circuit breakers, adaptive concurrency

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per base URL (redacted): attempts sent, successes, failures by kind, breaker state,
        times it opened, and the current concurrency limit."""
        now = time.monotonic()
        return [
            {
                "url": redact_url(ep.url),
                "attempts": ep.attempts,
                "ok": ep.ok,
                "failures": dict(ep.failures),
                "breaker": ep.state(now),
                "opened": ep.opened,
                "limit": ep.limit.value if ep.limit else self.concurrency,
            }
            for ep in self._endpoints
        ]

    def _choose(self, now: float) -> _Endpoint | None:
        """The endpoint for the next attempt, or None when every usable one is at its limit.

        Healthy (closed) endpoints by load (in flight / limit), ties round robin; an open
        breaker whose cooldown has passed gets one re-probe; when every breaker is open, the
        one that reopens first is used anyway (a lone URL is never shut out: retries and their
        backoff bound the traffic then)."""
        if self._inflight >= self.concurrency:
            return None
        eps = self._endpoints
        n = len(eps)
        if n == 1:
            ep = eps[0]
            assert ep.limit is not None
            if ep.open_until and now >= ep.open_until and not ep.probing:
                ep.probing = True
                return ep
            return ep if ep.inflight < ep.limit.value else None
        start = self._rr
        self._rr = (start + 1) % n
        best: _Endpoint | None = None
        best_load = math.inf
        fallback: _Endpoint | None = None
        usable = False
        for i in range(n):
            ep = eps[(start + i) % n]
            assert ep.limit is not None
            if ep.open_until:
                if now >= ep.open_until and not ep.probing:
                    ep.probing = True  # half-open: this attempt is the re-probe
                    return ep
                if ep.inflight < ep.limit.value and (
                    fallback is None or ep.open_until < fallback.open_until
                ):
                    fallback = ep
                continue
            usable = True
            if ep.inflight >= ep.limit.value:
                continue
            load = ep.inflight / ep.limit.value
            if load < best_load:
                best, best_load = ep, load
        if best is not None:
            return best
        return None if usable else fallback

    async def _acquire(self) -> _Endpoint:
        """Wait for room on an endpoint (first come, first served), then take it."""
        now = time.monotonic()
        waiters = self._waiters
        while waiters and waiters[0].done():  # left by waiters that timed out or were cancelled
            waiters.popleft()
        ep = self._choose(now) if not waiters else None  # never overtake a waiting request
        first = False
        while ep is None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if first:
                self._waiters.appendleft(fut)  # woken but beaten to it: keep our place
            else:
                self._waiters.append(fut)
            timeout = self._next_probe_in(now)
            try:
                if timeout is None:
                    await fut
                else:  # wake at the next breaker re-probe time even if no attempt finishes
                    try:
                        await asyncio.wait_for(asyncio.shield(fut), timeout=timeout)
                    except TimeoutError:
                        fut.cancel()  # done now: _wake skips it
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._wake(1)  # we were woken but leave: pass the turn on
                else:
                    fut.cancel()
                raise
            now = time.monotonic()
            ep = self._choose(now)
            first = True
        ep.inflight += 1
        self._inflight += 1
        if ep.limit is not None and ep.limit.win_t0 < 0:
            ep.limit.on_send(now)
        return ep

    def _next_probe_in(self, now: float) -> float | None:
        due = [ep.open_until - now for ep in self._endpoints if ep.open_until and not ep.probing]
        return max(0.01, min(due)) if due else None

    def _wake(self, k: int) -> None:
        while k > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                k -= 1

    def _release(self, ep: _Endpoint, outcome: str, now: float, latency: float = 0.0) -> None:
        """Book an attempt's outcome: ``ok``, ``down`` (connection or 5xx), ``rate_limit``,
        ``timeout``, ``alive`` (the server answered, e.g. a 4xx) or ``cancelled``. ``latency``: the attempt's
        seconds (its send time is ``now - latency``).

        A timeout lowers the concurrency only when no attempt sent after it has been answered
        meanwhile (requests queued behind one another: too many in flight); a request that
        hangs while later ones get answered is that request's problem, not the load's."""
        assert ep.limit is not None
        ep.inflight -= 1
        self._inflight -= 1
        grow = 0
        probing, ep.probing = ep.probing, False
        if outcome == "cancelled":  # the caller gave up: no signal about the server
            if probing and ep.open_until:
                ep.open_until = now  # let the next attempt re-probe
        elif outcome == "down":
            ep.consecutive += 1
            if probing or (not ep.open_until and ep.consecutive >= self.breaker_failures):
                ep.cooldown = (
                    min(self.breaker_max_cooldown_s, ep.cooldown * 2)
                    if probing and ep.cooldown
                    else self.breaker_cooldown_s
                )
                ep.open_until = now + ep.cooldown
                ep.opened += 1
                self.stats["breaker_opened"] += 1
                log.log(
                    # a warning only where it changes the routing (several URLs, first opening)
                    logging.WARNING if len(self._endpoints) > 1 and not probing else logging.INFO,
                    "base URL %s failing (%d in a row): circuit open for %.0fs",
                    redact_url(ep.url),
                    ep.consecutive,
                    ep.cooldown,
                )
        elif outcome == "timeout":
            if ep.last_ok_sent < now - latency:
                ep.limit.on_overload(now, timeout=True)
            if probing:  # the re-probe got no answer: stay open, longer
                ep.cooldown = min(self.breaker_max_cooldown_s, max(ep.cooldown, 0.1) * 2)
                ep.open_until = now + ep.cooldown
        else:  # the server answered
            ep.consecutive = 0
            if ep.open_until:
                log.info("base URL %s answers again: circuit closed", redact_url(ep.url))
            ep.open_until = 0.0
            ep.cooldown = 0.0
            ep.last_ok_sent = max(ep.last_ok_sent, now - latency)
            if outcome == "ok":
                grow = ep.limit.on_success(now, latency)
            elif outcome == "rate_limit":
                ep.limit.on_overload(now, timeout=False)
        self._wake(1 + grow)

    async def _check_endpoints(self) -> None:
        """Fail fast when no endpoint accepts connections; among several, one that does not
        starts with its circuit breaker open (no traffic, re-probed after the cooldown, so a
        server started a little later joins the pool)."""
        self._checked = True
        if not self.check_connection:
            return
        results = await asyncio.gather(*(_probe_tcp(ep.url) for ep in self._endpoints))
        dead = [(ep, err) for ep, err in zip(self._endpoints, results, strict=True) if err]
        if len(dead) == len(self._endpoints):
            ep, err = dead[0]
            others = f" (and {len(dead) - 1} more base URLs)" if len(dead) > 1 else ""
            raise JudgeRLError(
                f"base_url: cannot reach {redact_url(ep.url)}{others}: {err}; "
                "is the server running and the URL right?"
            )
        now = time.monotonic()
        for ep, err in dead:
            log.warning(
                "base URL %s unreachable (%s): no traffic, re-probed in %.0fs",
                ep.public_url,
                err,
                self.breaker_cooldown_s,
            )
            ep.cooldown = self.breaker_cooldown_s
            ep.open_until = now + ep.cooldown
            ep.opened += 1
            self.stats["breaker_opened"] += 1

    # ---------------------------------------------------------------------------------------
    # One request: body, attempts, parsing

    def _body(self, req: ChatRequest) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": req.messages,
            self.max_tokens_field: req.max_tokens,
            "temperature": req.temperature,
        }
        if req.top_p != 1.0:
            body["top_p"] = req.top_p
        if req.n != 1:
            body["n"] = req.n
        if req.seed is not None:
            body["seed"] = req.seed
        if req.stop:
            body["stop"] = req.stop
        if req.label_probs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        if req.response_format and self.supports_response_format:
            body["response_format"] = req.response_format
        if self.extra_body:
            body.update(self.extra_body)
        return _BODY_JSON(body).encode("utf-8")

    async def _one(self, req: ChatRequest) -> ChatResult:
        content = self._body(req)
        options = {"headers": {"Content-Type": "application/json"}}
        self.stats["requests"] += 1
        t_start = time.perf_counter()
        error = "backend: no attempt made"
        meta = _Attempts()
        for attempt in range(self.max_retries + 1):
            ep = await self._acquire()
            ep.attempts += 1
            self.stats["attempts"] += 1
            meta.attempts += 1
            meta.endpoint = ep.public_url
            retry_after: float | None = None
            t0 = time.perf_counter()
            try:
                raw = await self._send(ep, content, options, attempt)
            except asyncio.CancelledError:
                self._release(ep, "cancelled", time.monotonic())
                raise
            except _Timeout:
                error = f"timeout: no answer within {self.timeout_s:g}s"
                outcome = "timeout"
            except _Unreachable as e:
                error = f"connection: {e}"
                outcome = "down"
            except _HTTPStatus as e:
                status = e.status
                detail = e.detail
                if status == 429:
                    error = f"rate_limit: HTTP 429 {detail}".rstrip()
                    retry_after = parse_retry_after(e.headers)
                    outcome = "rate_limit"
                elif status >= 500 or status in (408, 409):
                    error = f"server: HTTP {status} {detail}".rstrip()
                    retry_after = parse_retry_after(e.headers)
                    outcome = "down" if status >= 500 else "alive"
                else:  # 4xx: the request itself is wrong; retrying will not help
                    meta.latencies.append(time.perf_counter() - t0)
                    self._release(ep, "alive", time.monotonic(), meta.latencies[-1])
                    msg = f"backend: HTTP {status} {detail}".rstrip()
                    if req.response_format and self.supports_response_format:
                        msg += (
                            " (the request carried a JSON schema as response_format; for a "
                            "server without structured output set backend_options: "
                            "{structured_output: false})"
                        )
                    return self._fail(msg, meta, t_start)
            else:
                meta.latencies.append(time.perf_counter() - t0)
                ep.ok += 1
                waiting = bool(self._waiters)
                self._release(ep, "ok", time.monotonic(), meta.latencies[-1])
                if waiting:  # the request woken for the freed slot goes out first
                    for _ in range(SEND_FIRST_YIELDS):
                        await asyncio.sleep(0)
                return self._parse(raw, req, meta, t_start)
            meta.latencies.append(time.perf_counter() - t0)
            self._release(ep, outcome, time.monotonic(), meta.latencies[-1])
            kind = error.split(":", 1)[0]
            if kind == "timeout":
                meta.timeouts += 1
                self.stats["timeouts"] += 1
            ep.failures[kind] = ep.failures.get(kind, 0) + 1
            if attempt == self.max_retries:
                break
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                error += f" (Retry-After {retry_after:g}s is too long)"
                break
            if retry_after is not None:
                delay = retry_after_delay(
                    retry_after, self.backoff_base_s, self.backoff_max_s, self._rng
                )
            else:
                delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s, self._rng)
            self.stats["retries"] += 1
            meta.retries += 1
            log.debug("retrying in %.2fs after %s", delay, error)
            await asyncio.sleep(delay)  # holds no concurrency slot while it sleeps
        if self.max_retries:
            error += f" (after {self.max_retries + 1} attempts)"
        return self._fail(error, meta, t_start)

    async def _send(
        self, ep: _Endpoint, content: bytes, options: dict[str, Any], attempt: int = 0
    ) -> bytes:
        """POST ``/chat/completions``; the body of a 2xx answer, else :class:`_Timeout`,
        :class:`_Unreachable` or :class:`_HTTPStatus`.

        On the direct path (``transport: auto``, no proxy) the bytes go out on our own
        keep-alive client (see :meth:`_send_direct`), without the SDK. Otherwise the SDK's client sends them: with
        ``fast_path`` the SDK builds and checks the request (its ``_build_request``) but its
        generic request loop (option copies, retry bookkeeping we do not use: its retries are
        off) is skipped; its exceptions are mapped to ours.
        """
        if ep.session is not None:
            return await self._send_direct(ep, content, attempt)
        openai = self._openai
        try:
            return await self._send_sdk(ep, content, options)
        except openai.APITimeoutError as e:
            raise _Timeout() from e
        except openai.APIConnectionError as e:
            raise _Unreachable(_cause(e)) from e
        except openai.APIStatusError as e:
            raise _HTTPStatus(e.status_code, e.response.headers, _status_detail(e)) from e

    async def _send_sdk(self, ep: _Endpoint, content: bytes, options: dict[str, Any]) -> bytes:
        client = ep.client
        if self.fast_path and ep.sdk_ok:
            import openai
            from openai._models import FinalRequestOptions

            httpx2 = _httpx()
            opts = FinalRequestOptions.construct(
                method="post", url="/chat/completions", content=content, headers=options["headers"]
            )
            opts = await client._prepare_options(opts)
            request = client._build_request(opts)
            await client._prepare_request(request)
            try:
                response = await client._client.send(request)
            except httpx2.TimeoutException as e:
                raise openai.APITimeoutError(request=request) from e
            except httpx2.RequestError as e:
                raise openai.APIConnectionError(request=request) from e
            if response.status_code >= 300:
                raise client._make_status_error_from_response(response)
            return bytes(response.content)
        resp = await client.post(
            "/chat/completions", cast_to=_response_type(), content=content, options=options
        )
        return bytes(resp.content)

    async def _send_direct(self, ep: _Endpoint, content: bytes, attempt: int) -> bytes:
        """POST the body on the endpoint's keep-alive pool (:mod:`judge_rl.backends._http`),
        with headers built once per endpoint (:meth:`_direct_headers`); no SDK involved."""
        from judge_rl.backends._http import HTTPConnectionError, HTTPTimeout

        if ep.template is None:
            ep.template = _path_of(ep.url, "/chat/completions")
        extra = {"x-stainless-retry-count": str(attempt)} if attempt else None
        try:
            resp = await ep.session.post(ep.template, content, extra)
        except HTTPTimeout as e:
            raise _Timeout() from e
        except HTTPConnectionError as e:
            raise _Unreachable(str(e)[:200] or type(e).__name__) from e
        if resp.status >= 300:
            text = resp.body.decode("utf-8", "replace")
            raise _HTTPStatus(resp.status, resp.headers, " ".join(text.split())[:160])
        return resp.body

    def _fail(self, error: str, meta: _Attempts, t_start: float) -> ChatResult:
        return OpenAIChatResult(error=error, **meta.fields(t_start))

    def _parse(self, raw: bytes, req: ChatRequest, meta: _Attempts, t_start: float) -> ChatResult:
        info = meta.fields(t_start)
        try:
            if raw[:1] == b"{" and raw[1:2] != b"\x00":
                # what json.loads does with bytes that start so (UTF-8), without its per-call
                # encoding detection
                data = _JSON_DECODE(raw.decode("utf-8", "surrogatepass"))
            else:
                data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            snippet = raw[:60].decode("utf-8", "replace")
            return OpenAIChatResult(error=f"malformed: response is not JSON: {snippet!r}", **info)
        if not isinstance(data, dict):
            return OpenAIChatResult(error="malformed: response is not a JSON object", **info)
        usage = data.get("usage") or {}
        pt = _int(usage.get("prompt_tokens")) if isinstance(usage, dict) else 0
        ct = _int(usage.get("completion_tokens")) if isinstance(usage, dict) else 0
        base: dict[str, Any] = {
            "prompt_tokens": pt,
            "completion_tokens": ct,
            "cost": self.cost_of(pt, ct),
            "model": str(data.get("model") or "") or None,
            **info,
        }
        choices = data.get("choices")
        if choices is None and "error" in data:
            return OpenAIChatResult(error=f"server: {str(data['error'])[:200]}", **base)
        if not isinstance(choices, list):
            return OpenAIChatResult(error="malformed: response has no 'choices' list", **base)
        if not choices:
            return OpenAIChatResult(error="empty: response has no choices", **base)
        texts: list[str] = []
        finish: list[str] = []
        for ch in choices:
            msg = ch.get("message") if isinstance(ch, dict) else None
            if not isinstance(msg, dict):
                return OpenAIChatResult(error="malformed: a choice has no 'message' object", **base)
            text = msg.get("content")
            if text is None:
                return OpenAIChatResult(error="empty: a choice has no content", **base)
            if not isinstance(text, str):
                return OpenAIChatResult(error="malformed: message content is not a string", **base)
            texts.append(text)
            finish.append(str(ch.get("finish_reason") or ""))
        probs = None
        mass = None
        if req.label_probs:
            lp = choices[0].get("logprobs")
            if isinstance(lp, dict):
                try:
                    found = verdict_position(
                        lp.get("content"), req.label_probs, req.metadata.get("label_prefix")
                    )
                except (AttributeError, TypeError, ValueError):
                    found = None
                if found is not None:
                    probs, mass = found[1], found[2]
        return OpenAIChatResult(
            texts=texts, finish_reasons=finish, label_probs=probs, label_mass=mass, **base
        )


# -------------------------------------------------------------------------------------------
# Helpers


_JSON_DECODE = json.JSONDecoder().decode
"""``json.loads`` of text (the default decoder, built once)."""

_BODY_JSON = json.JSONEncoder(ensure_ascii=False).encode
"""``json.dumps(body, ensure_ascii=False)`` with the encoder built once (``json.dumps`` with an
argument builds one per call)."""


class _Timeout(Exception):
    """An attempt got no answer within ``timeout_s``."""


class _Unreachable(Exception):
    """An attempt could not reach the server (its text says why)."""


class _HTTPStatus(Exception):
    """A non-2xx answer: status, headers (lower-case names) and the body's text, shortened."""

    def __init__(self, status: int, headers: Any, detail: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers
        self.detail = detail


def _path_of(base: str, path: str) -> str:
    """The request target of ``path`` under ``base`` (``http://host:8000/v1``): its path with
    ``path`` appended, query kept.

    >>> _path_of("http://h:8000/v1", "/chat/completions")
    '/v1/chat/completions'
    >>> _path_of("https://h/openai/v1/?api-version=1", "/chat/completions")
    '/openai/v1/chat/completions?api-version=1'
    """
    parts = urlsplit(base)
    target = parts.path.rstrip("/") + path
    return f"{target}?{parts.query}" if parts.query else target


def _http_client(limits: Any, timeout: Any, transport: str) -> Any:
    """The HTTP client under AsyncOpenAI: aiohttp's transport when installed (several times less
    CPU per request than httpx's own connection pool), else httpx's."""
    httpx2 = _httpx()
    if transport in ("auto", "aiohttp"):
        try:
            import aiohttp  # noqa: F401
            from openai import DefaultAioHttpClient

            return DefaultAioHttpClient(limits=limits, timeout=timeout)
        except (ImportError, RuntimeError):
            if transport == "aiohttp":
                raise ConfigError(
                    "the aiohttp transport needs aiohttp (pip install 'openai[aiohttp]')",
                    setting="transport",
                ) from None
    return httpx2.AsyncClient(limits=limits, timeout=timeout)


async def _close_at_shutdown(clients: list[Any]) -> Any:
    """An async generator parked at its ``yield``; closing it (``aclose``, which the event loop's
    ``shutdown_asyncgens`` does) closes ``clients`` on their own loop."""
    try:
        yield
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


_CLIENT_CLASSES: dict[bool, Any] = {}


def _client_class(fast: bool) -> Any:
    """``AsyncOpenAI``, or a subclass whose chat requests reuse a template (see ``fast_path``)."""
    from openai import AsyncOpenAI

    if not fast:
        return AsyncOpenAI
    if True in _CLIENT_CLASSES:
        return _CLIENT_CLASSES[True]
    httpx2 = _httpx()
    per_request = {"content-length", "x-stainless-retry-count", "idempotency-key"}

    class _TemplateClient(AsyncOpenAI):  # type: ignore[misc,valid-type]
        """Builds ``POST`` requests with raw ``content`` from a template built by the SDK.

        The SDK's ``_build_request`` merges auth, default and custom headers, parses the base
        URL and the path and serialises the body on every call: about half of the client CPU
        per judgment. For our one request shape everything but the body, the idempotency key
        and the retry count is the same each time, so the SDK builds it once and we reuse it.
        """

        _jr_template: Any = None
        _jr_state: bool | None = None  # None: not verified yet; False: fast path off

        def _build_request(self, options: Any, *, retries_taken: int = 0) -> Any:
            simple = (
                self._jr_state is not False
                and options.method == "post"
                and isinstance(options.content, bytes)
                and options.files is None
                and options.json_data is None
                and options.extra_json is None
                and not options.params
            )
            if not simple:
                return super()._build_request(options, retries_taken=retries_taken)
            if self._jr_template is None or self._jr_template[0] != options.url:
                req = super()._build_request(options, retries_taken=retries_taken)
                headers = [
                    (k, v) for k, v in req.headers.multi_items() if k.lower() not in per_request
                ]
                self._jr_template = (options.url, req.url, headers, dict(req.extensions))
                return req
            fast = self._jr_fast(options, retries_taken)
            if self._jr_state is None:  # verify once against the SDK's own build
                ref = super()._build_request(options, retries_taken=retries_taken)
                self._jr_state = _same_request(ref, fast)
                if not self._jr_state:
                    log.debug("openai fast path disabled: template differs from the SDK's build")
                    return ref
            return fast

        def _jr_fast(self, options: Any, retries_taken: int) -> Any:
            _, url, headers, ext = self._jr_template
            h = list(headers)
            h.append(("x-stainless-retry-count", str(retries_taken)))
            if options.idempotency_key and self._idempotency_header:
                h.append((self._idempotency_header, options.idempotency_key))
            return httpx2.Request("POST", url, headers=h, content=options.content, extensions=ext)

    # The SDK's User-Agent is built from the class name: keep it "AsyncOpenAI".
    _TemplateClient.__name__ = _TemplateClient.__qualname__ = AsyncOpenAI.__name__
    _CLIENT_CLASSES[True] = _TemplateClient
    return _TemplateClient


def _proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy."""
    if sys.platform not in ("darwin", "win32") and not any(
        k[-6:].lower() == "_proxy" for k in os.environ
    ):  # where urllib reads only the environment and it names no proxy: ~5 ms of import less
        return False
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(parts.scheme)) and not urllib.request.proxy_bypass(parts.hostname or "")


def _direct_ok(client: Any) -> bool:
    """Whether the SDK has the internals the fast path uses (else the public ``post``)."""
    return all(
        hasattr(client, name)
        for name in (
            "_build_request",
            "_client",
            "_make_status_error_from_response",
            "_prepare_options",
            "_prepare_request",
        )
    )


def _same_request(a: Any, b: Any) -> bool:
    """Same method, URL, headers (as a multiset, case-insensitive), body and timeout."""

    def norm(r: Any) -> Any:
        return sorted((k.lower(), v) for k, v in r.headers.multi_items())

    return (
        a.method == b.method
        and str(a.url) == str(b.url)
        and norm(a) == norm(b)
        and a.content == b.content
        and a.extensions.get("timeout") == b.extensions.get("timeout")
    )


def _httpx() -> Any:
    """The HTTP library under the installed openai package (``httpx2`` in openai 3, else httpx)."""
    try:
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def _response_type() -> Any:
    return _httpx().Response


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value if str(v).strip()]


def _is_local(url: str) -> bool:
    """This machine or a private network (no API key needed, no per-token bill)."""
    from judge_rl.judge.budget import is_local_url

    return is_local_url(url)


def _check_prices(prices: dict[str, float] | None) -> dict[str, float] | None:
    from judge_rl.judge.budget import check_prices

    return check_prices(prices)


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _cause(e: BaseException) -> str:
    inner = e.__cause__ or e.__context__
    text = str(inner) if inner is not None and str(inner) else str(e)
    return (text or type(e).__name__)[:200]


def _status_detail(e: Any) -> str:
    try:
        body = e.response.text
    except Exception:
        body = ""
    return " ".join(body.split())[:160]


async def _probe_tcp(url: str, attempts: int = 3, timeout_s: float = 3.0) -> str | None:
    """``None`` when ``url``'s host accepts a TCP connection, else why not (after retries)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if _proxied(url):
        return None  # reached through a proxy: the direct check says nothing
    err = ""
    for i in range(attempts):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except ConnectionRefusedError:
            err = "connection refused"
        except TimeoutError:
            err = f"no TCP connection within {timeout_s:g}s"
        except OSError as e:
            err = e.strerror or str(e) or type(e).__name__
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return None
        if i + 1 < attempts:
            await asyncio.sleep(0.25 * 2**i)
    return err


__all__ = [
    "OpenAIBackend",
    "OpenAIChatResult",
    "backoff_delay",
    "label_probs_from_logprobs",
    "parse_retry_after",
    "retry_after_delay",
    "verdict_position",
]
