"""OpenAIBackend against a local fault-injecting OpenAI-compatible server (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

pytest.importorskip("aiohttp")

from judge_rl.backends._fakeserver import content_key, fault_for, start_in_thread, verdict_for
from judge_rl.backends.base import ChatRequest, load_backend
from judge_rl.backends.openai import OpenAIBackend
from judge_rl.errors import ConfigError, JudgeRLError

FAULTS = {
    "rate_limit_once": 0.08,
    "server_once": 0.08,
    "hang_once": 0.04,
    "server_always": 0.04,
    "hang_always": 0.03,
    "rate_limit_always": 0.03,
    "malformed": 0.04,
    "empty": 0.04,
    "unparseable": 0.04,
}
EXPECTED_ERROR = {
    "server_always": "server",
    "hang_always": "timeout",
    "rate_limit_always": "rate_limit",
    "malformed": "malformed",
    "empty": "empty",
}


def _backend(url: str | list[str], **kw) -> OpenAIBackend:
    opts = dict(concurrency=32, timeout_s=0.5, max_retries=2, backoff_base_s=0.01, seed=0)
    opts.update(kw)
    return OpenAIBackend("fake-judge", base_urls=url, **opts)


def _req(i: int, **kw) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": f"question {i}"}], max_tokens=16, **kw)


def _run(backend, requests):
    """chat() then aclose() in one event loop."""

    async def go():
        try:
            return await backend.chat(requests)
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def faulty():
    srv = start_in_thread(faults=FAULTS, hang_s=2.0, retry_after="0.05")
    yield srv
    srv.stop()


def test_every_request_ends_as_answer_or_error_of_the_right_kind(faulty):
    reqs = [_req(i) for i in range(300)]
    backend = _backend(faulty.url)
    results = _run(backend, reqs)
    assert len(results) == len(reqs)
    seen_faults = set()
    for req, res in zip(reqs, results, strict=True):
        key = content_key(req.messages)
        fault = fault_for(key, FAULTS)
        seen_faults.add(fault)
        if fault in EXPECTED_ERROR:
            assert res.error is not None and res.error.startswith(EXPECTED_ERROR[fault] + ":"), (
                fault,
                res.error,
            )
            assert res.texts == []
        else:
            assert res.error is None, (fault, res.error)
            assert len(res.texts) == 1
            if fault == "unparseable":
                assert "[[" not in res.texts[0]
            else:
                assert res.texts[0].endswith(f"[[{verdict_for(key)}]]")
                assert res.prompt_tokens == 100 and res.completion_tokens == 12
        # A 200 answer is final: never requested again.
        assert faulty.state.answered[key] <= 1
        hits = faulty.state.hits[key]
        if fault in ("rate_limit_once", "server_once", "hang_once"):
            assert hits == 2, (fault, hits)
        elif fault in ("server_always", "hang_always", "rate_limit_always"):
            assert hits == 3, (fault, hits)  # 1 + max_retries
        else:
            assert hits == 1, (fault, hits)
    assert set(FAULTS) <= seen_faults  # every fault was exercised
    assert backend.stats["retries"] > 0


def test_retry_after_is_honoured():
    with start_in_thread(faults={"rate_limit_once": 1.0}, retry_after="0.4") as srv:
        backend = _backend(srv.url, backoff_base_s=0.001)
        t0 = time.perf_counter()
        [res] = _run(backend, [_req(0)])
        assert res.error is None
        assert time.perf_counter() - t0 >= 0.4
        assert srv.state.statuses["429"] == 1 and srv.state.statuses["200"] == 1


def test_concurrency_limit_and_shared_connections():
    with start_in_thread(latency_s=0.02) as srv:
        backend = _backend(srv.url, concurrency=8)
        results = _run(backend, [_req(i) for i in range(60)])
        assert all(r.error is None for r in results)
        assert srv.state.max_in_flight == 8


def test_several_base_urls_share_the_load():
    with start_in_thread(latency_s=0.01) as s1, start_in_thread(latency_s=0.01) as s2:
        backend = _backend([s1.url, s2.url], concurrency=8)
        results = _run(backend, [_req(i) for i in range(80)])
        assert all(r.error is None for r in results)
        n1, n2 = sum(s1.state.hits.values()), sum(s2.state.hits.values())
        assert n1 + n2 == 80 and n1 >= 20 and n2 >= 20


def test_dead_url_among_live_ones_takes_no_traffic_and_joins_when_it_starts(free_port):
    """A URL unreachable at the start gets no traffic (breaker open), is re-probed after the
    cooldown, and takes its share once its server is up (before: dropped for good)."""
    from judge_rl.backends._fakeserver import FakeServer, RunningServer

    with start_in_thread(latency_s=0.01) as srv:
        backend = _backend([f"http://127.0.0.1:{free_port}/v1", srv.url], breaker_cooldown_s=0.3)

        async def go():
            try:
                first = await backend.chat([_req(i) for i in range(10)])
                assert backend.endpoint_stats()[0]["attempts"] == 0
                late = RunningServer(FakeServer(latency_s=0.01))
                late.port = free_port
                late.start()
                try:
                    await asyncio.sleep(0.4)
                    second = await backend.chat([_req(i) for i in range(10, 80)])
                finally:
                    late.stop()
                return first + second, sum(late.state.answered.values())
            finally:
                await backend.aclose()

        results, late_answers = asyncio.run(go())
        assert all(r.error is None for r in results)
        assert late_answers >= 3  # it joined (its own slow start from 2)
        assert backend.endpoint_stats()[0]["breaker"] == "closed"


def test_label_probs_from_top_logprobs():
    with start_in_thread() as srv:
        backend = _backend(srv.url)
        reqs = [_req(i, label_probs=["A", "B", "C"]) for i in range(6)]
        for req, res in zip(reqs, _run(backend, reqs), strict=True):
            letter = verdict_for(content_key(req.messages))
            assert res.label_probs is not None
            assert res.label_probs[letter] == pytest.approx(0.8)
            assert sum(res.label_probs.values()) == pytest.approx(1.0)


def test_cost_from_prices_and_n_samples():
    with start_in_thread(reply="echo") as srv:
        backend = _backend(srv.url, prices={"input": 2.0, "output": 10.0})
        [res] = _run(backend, [_req(1, n=3)])
        assert len(res.texts) == 3 and res.texts[0].startswith("echo: question 1")
        assert res.cost == pytest.approx((100 * 2.0 + 12 * 10.0) / 1e6)


def test_survives_new_event_loops_without_leaking_sessions(caplog):
    import gc
    import warnings

    with start_in_thread() as srv, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = _backend(srv.url)
        for i in range(3):  # e.g. compare_sync called once per PPO step: a new loop each time
            assert asyncio.run(backend.chat([_req(i)]))[0].error is None
        del backend
        gc.collect()
    leaks = [w for w in caught if "Unclosed" in str(w.message)]
    leaks += [r for r in caplog.records if "Unclosed" in r.getMessage()]
    assert not leaks


def test_unreachable_endpoint_is_a_user_error_naming_the_url(free_port):
    url = f"http://127.0.0.1:{free_port}/v1"
    backend = _backend(url)
    with pytest.raises(JudgeRLError, match=f"127.0.0.1:{free_port}/v1.*connection refused"):
        _run(backend, [_req(0)])


def test_api_key_is_sent_but_never_exposed(monkeypatch):
    secret = "sk-test-DO-NOT-LEAK-1234567890"
    monkeypatch.setenv("JUDGE_RL_TEST_KEY", secret)
    with start_in_thread() as srv:
        backend = _backend(srv.url, api_key_env="JUDGE_RL_TEST_KEY")
        assert _run(backend, [_req(0)])[0].error is None
        assert srv.state.auth == {f"Bearer {secret}"}
        exposed = repr(backend) + repr(backend.describe()) + repr(backend.fingerprint_params())
        exposed += repr(vars(backend))
        assert secret not in exposed


def test_bad_settings_are_config_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o-mini", base_urls="https://api.openai.com/v1")
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIBackend("m", base_urls="ftp://x")
    with pytest.raises(ConfigError, match="prices"):
        OpenAIBackend("m", base_urls="http://127.0.0.1:1/v1", prices={"inptu": 1})
    assert isinstance(
        load_backend("openai", model="m", base_urls="http://127.0.0.1:1/v1"), OpenAIBackend
    )


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


VOLATILE = {
    "host",
    "content-length",
    "x-stainless-retry-count",
    "idempotency-key",
    "accept-encoding",
    "connection",
    "accept",
}


# What a server reads: the direct path (transport auto) sends these as the SDK does, and leaves
# out the SDK's telemetry (user-agent, x-stainless-*).
SERVER_READS = {"authorization", "content-type", "accept", "openai-organization", "openai-project"}


@pytest.mark.parametrize("transport", ["auto", "httpx"])
def test_fast_paths_send_what_the_sdk_sends(transport, monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-test")
    faults = {"server_once": 0.3, "malformed": 0.2, "rate_limit_once": 0.2}
    with start_in_thread(faults=faults, retry_after="0.01") as srv:
        reqs = [_req(i) for i in range(40)]
        fast = _backend(srv.url, transport=transport)

        async def go():
            out = await fast.chat(reqs)
            ep = fast._endpoints[0]
            used = (ep.template is not None) if transport == "auto" else ep.client._jr_state
            await fast.aclose()
            return out, used

        fast_results, used = asyncio.run(go())
        fast_headers = dict(srv.state.last_headers)
        # auto: aiohttp sends the bytes with the SDK's headers; httpx: the SDK's client sends
        # requests built from a template that matched the SDK's own build.
        assert used is True
        slow_results = _run(_backend(srv.url, fast_path=False, transport=transport), reqs)
        sdk_headers = dict(srv.state.last_headers)
        for a, b in zip(fast_results, slow_results, strict=True):
            assert (a.error or "").split(":")[0] == (b.error or "").split(":")[0]
            assert a.texts == b.texts
    strip = lambda h: {k: v for k, v in h.items() if k not in VOLATILE}  # noqa: E731
    if transport == "auto":
        strip = lambda h: {k: v for k, v in h.items() if k in SERVER_READS}  # noqa: E731
        assert strip(sdk_headers)["openai-organization"] == "org-test"
    assert strip(fast_headers) == strip(sdk_headers)


def test_the_direct_path_never_imports_the_sdk():
    """The default path (no proxy) judges without importing ``openai`` or aiohttp: their
    imports (~0.7 s and ~0.3 s CPU) would land in every ``judge-rl label`` run (issue 19
    item 2). The server runs here; the client in a fresh process."""
    import os
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from judge_rl.backends.base import ChatRequest\n"
        "from judge_rl.backends.openai import OpenAIBackend\n"
        "b = OpenAIBackend('m', base_urls=sys.argv[1], concurrency=4)\n"
        "async def go():\n"
        "    r = await b.chat([ChatRequest(messages=[{'role': 'user', 'content': 'q'}])])\n"
        "    await b.aclose()\n"
        "    return r\n"
        "res = asyncio.run(go())\n"
        "assert res[0].error is None and res[0].texts, res\n"
        "clients = ('openai', 'httpx', 'httpx2', 'aiohttp')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in clients))\n"
        "print('urllib.request' in sys.modules)\n"  # no proxy named: not asked (~5 ms)
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with start_in_thread() as srv:
        r = subprocess.run(
            [sys.executable, "-c", code, srv.url], capture_output=True, text=True, env=env
        )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["[]", "False"]


@pytest.mark.parametrize("name", ["HTTP_PROXY", "http_proxy", "Http_Proxy"])
def test_a_proxy_in_the_environment_is_still_seen(monkeypatch, name):
    from judge_rl.backends.openai import _proxied

    for k in [k for k in os.environ if k.lower().endswith("_proxy")]:
        monkeypatch.delenv(k)
    assert not _proxied("http://judge.example:8000/v1")
    monkeypatch.setenv(name, "http://proxy.example:3128")
    assert _proxied("http://judge.example:8000/v1")
    assert not _proxied("https://judge.example/v1")  # no https_proxy
    monkeypatch.setenv("no_proxy", "judge.example")
    assert not _proxied("http://judge.example:8000/v1")


# --- endpoint pool and real-server behaviour (issue 15 item 6, issue 16 item 6) --------------


def _content_with_fault(fault: str, faults: dict[str, float], want: bool) -> int:
    """An i whose request content meets (want=True) or avoids ``fault``."""
    for i in range(10_000):
        key = content_key([{"role": "user", "content": f"question {i}"}])
        if (fault_for(key, faults) == fault) == want:
            return i
    raise AssertionError("no such content")


def test_backoff_releases_the_slot_while_it_sleeps():
    """Concurrency 1: while a rate-limited request waits out Retry-After, another one runs.
    Before: the sleeping request held the only slot, so the second waited the full 0.6 s."""
    faults = {"rate_limit_once": 0.5}
    slow = _content_with_fault("rate_limit_once", faults, True)
    fast = _content_with_fault("rate_limit_once", faults, False)
    with start_in_thread(faults=faults, retry_after="0.6") as srv:
        backend = _backend(srv.url, concurrency=1, adaptive=False)
        done: dict[int, float] = {}

        async def go():
            await backend.chat([_req(fast + 1_000_000)])  # warm up: imports, client, connection
            t0 = time.perf_counter()

            async def one(i, delay):
                await asyncio.sleep(delay)
                [r] = await backend.chat([_req(i)])
                done[i] = time.perf_counter() - t0
                return r

            try:
                return await asyncio.gather(one(slow, 0), one(fast, 0.05))
            finally:
                await backend.aclose()

        results = asyncio.run(go())
        assert all(r.error is None for r in results)
        assert done[fast] < 0.45, done  # ran during the other's Retry-After wait
        assert done[slow] >= 0.6


def test_backoff_is_full_jitter_and_retry_after_gets_jitter():
    import random

    from judge_rl.backends.openai import backoff_delay, retry_after_delay

    rng = random.Random(0)
    d = [backoff_delay(3, 0.5, 30.0, rng) for _ in range(400)]
    assert min(d) < 0.4 and max(d) <= 4.0  # U(0, 4): not confined to [2, 4]
    r = [retry_after_delay(1.0, 0.5, 30.0, rng) for _ in range(200)]
    assert min(r) >= 1.0 and max(r) > 1.2 and len(set(r)) > 100


def test_429s_lower_concurrency_and_successes_recover_it():
    from judge_rl.backends.openai import _Limit

    lim = _Limit(start=4, maximum=64, adaptive=True, timeout_s=0.4)
    now = 0.0
    lim.on_send(now)
    for _ in range(8):  # warm-up, then a window at 4 answers per 0.1 s ...
        now += 0.025
        lim.on_success(now, 0.1)
    for _ in range(8):  # ... then twice the rate at 8: keep doubling
        now += 0.0125
        lim.on_success(now, 0.1)
    assert lim.value == 16
    lim.on_overload(now, timeout=False)
    assert lim.value == 8
    lim.on_overload(now + 0.01, timeout=False)  # the same burst: one cut
    assert lim.value == 8
    for _ in range(60):
        now += 0.01
        lim.on_success(now, 0.1)
    assert lim.value >= 12  # recovering, one step per window of successes
    for _ in range(200):
        now += 0.01
        lim.on_success(now, 0.1)
    assert lim.value >= 16  # back where it was (and beyond: answers come as fast as ever)
    lim.on_overload(now + 10, timeout=True)
    slow = lim.value
    for _ in range(300):  # answers slower than the fastest, nearing the timeout: no growth
        now += 0.01
        lim.on_success(now, 0.18)
    assert lim.value == slow
    for _ in range(50):  # past half the timeout: queueing towards timeouts, cut
        now += 0.01
        lim.on_success(now, 0.3)
    assert lim.value < slow


def test_concurrency_settles_at_a_one_slot_servers_parallelism():
    """A server that runs one request at a time: the client does not keep 32 queued there."""
    with start_in_thread(latency_s=0.05, slots=1) as srv:
        backend = _backend(srv.url, concurrency=32, timeout_s=2)
        results = _run(backend, [_req(i) for i in range(60)])
        assert all(r.error is None for r in results)
        # Before: 32 in flight at the server, answers queued up to 32 x 0.05 s = 1.6 s.
        assert backend.endpoint_stats()[0]["limit"] <= 12
        assert srv.state.max_in_flight < 32 and backend.stats["timeouts"] == 0
        assert max(r.latency_s for r in results) < 1.0  # well under the timeout


def test_attempts_retries_timeouts_and_latency_per_attempt_are_recorded():
    faults = {"hang_once": 0.5}
    i = _content_with_fault("hang_once", faults, True)
    with start_in_thread(faults=faults, hang_s=2.0) as srv:
        backend = _backend(srv.url, timeout_s=0.3, max_retries=2)
        [res] = _run(backend, [_req(i)])
    assert res.error is None
    assert res.attempts == 2 and res.retries == 1 and res.timeouts == 1
    assert len(res.attempt_latency_s) == 2 and res.attempt_latency_s[0] >= 0.3
    assert res.latency_s == res.attempt_latency_s[-1] < 0.3  # the answering attempt only
    assert res.wall_s >= sum(res.attempt_latency_s)
    assert backend.stats["timeouts"] == 1


def test_label_probs_from_the_first_positions_top_logprobs_of_a_reply_in_words():
    """A reply that starts "Answer:" carries no label token; the labels are the alternatives
    of its first token. Before: no probabilities, and the reply failed as a parse error."""
    with start_in_thread(reply="answer") as srv:
        backend = _backend(srv.url)
        reqs = [_req(i, label_probs=["A", "B", "C"]) for i in range(12)]
        results = _run(backend, reqs)
        for req, res in zip(reqs, results, strict=True):
            letter = verdict_for(content_key(req.messages))
            assert res.text.startswith("Answer:")
            assert res.label_probs is not None
            assert max(res.label_probs, key=res.label_probs.get) == letter
            assert 0 < res.label_mass < 1


def test_the_marked_verdict_wins_over_a_label_mentioned_earlier():
    import math

    from judge_rl.backends.openai import label_probs_from_logprobs

    def tok(t, top):
        return {
            "token": t,
            "logprob": math.log(top.get(t, 1.0)),
            "top_logprobs": [{"token": k, "logprob": math.log(v)} for k, v in top.items()],
        }

    content = [
        tok("Response", {"Response": 1.0}),
        tok(" A", {" A": 0.95, " B": 0.05}),
        tok(" is wordy.\n", {" is wordy.\n": 1.0}),
        tok("[[", {"[[": 1.0}),
        tok("B", {"B": 0.9, "A": 0.1}),
        tok("]]", {"]]": 1.0}),
    ]
    p = label_probs_from_logprobs(content, ["A", "B", "C"])
    assert p["B"] == pytest.approx(0.9)


def test_cancelled_requests_give_their_slots_back():
    """Callers that give up (asyncio timeouts, Ctrl-C in a library) free their slot: later
    requests still run (a slot leaked per cancellation would block them forever)."""
    with start_in_thread(latency_s=0.3) as srv:
        backend = _backend(srv.url, concurrency=2, adaptive=False)

        async def go():
            for i in range(4):  # more cancellations than slots
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(backend.chat([_req(i), _req(i + 100)]), 0.05)
            try:
                return await asyncio.wait_for(backend.chat([_req(7), _req(8), _req(9)]), 5)
            finally:
                await backend.aclose()

        results = asyncio.run(go())
        assert all(r.error is None for r in results)
        assert backend._inflight == 0


def test_a_dead_url_gets_a_bounded_number_of_attempts_per_minute():
    """Simulated clock, two URLs, one dead from the start, a steady stream of attempts: the
    dead one gets its breaker's threshold, then one re-probe per cooldown (2, 4, 8, 16, 30,
    30 ... s): at most 10 in the first minute and 2 per minute after."""
    backend = OpenAIBackend(
        "m", base_urls=["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], check_connection=False
    )
    dead, live = backend._endpoints
    per_minute = [0] * 5
    t = 0.0
    while t < 300:
        ep = backend._choose(t)
        assert ep is not None
        ep.inflight += 1
        backend._inflight += 1
        if ep is dead:
            per_minute[int(t // 60)] += 1
            backend._release(ep, "down", t, 0.001)
        else:
            backend._release(ep, "ok", t, 0.001)
        t += 0.01
    assert per_minute[0] <= 10 and all(n <= 2 for n in per_minute[1:]), per_minute
    assert live.ok == 0 and dead.opened >= 5  # ok counters are the caller's (not _release's)


def test_a_stale_waiter_entry_does_not_block_later_requests():
    """A waiter that left (timed out or cancelled) leaves a done entry in the queue; a later
    request with room free must not queue behind it forever."""
    with start_in_thread() as srv:
        backend = _backend(srv.url, concurrency=4, adaptive=False)

        async def go():
            try:
                await backend.chat([_req(0)])
                stale = asyncio.get_running_loop().create_future()
                stale.cancel()
                backend._waiters.append(stale)
                return await asyncio.wait_for(backend.chat([_req(1)]), 5)
            finally:
                await backend.aclose()

        [res] = asyncio.run(go())
        assert res.error is None


def test_the_slow_start_quadruples_per_round_trip_when_answers_are_far_under_the_timeout():
    """From 2 to 64 in flight took 5 round trips (one more per quick answer: doubling), ~0.2 s
    of a 50 ms endpoint's throughput at the start of every run. An answer under timeout/32
    now adds three (quadrupling: 3 round trips), which keeps a one-slot server under
    timeout/8 after the round trip; answers between timeout/32 and timeout/8 still add one."""
    from judge_rl.backends.openai import _Limit

    def round_trips(latency: float) -> int:
        lim = _Limit(start=2, maximum=64, adaptive=True, timeout_s=60.0)
        lim.on_send(0.0)
        trips, now = 0, 0.0
        while lim.value < 64 and trips < 20:
            trips += 1
            now += latency
            for _ in range(lim.value):  # every request in flight answers once per round trip
                lim.on_success(now, latency)
        return trips

    assert round_trips(0.05) == 3  # 2 -> 8 -> 32 -> 64 (5 before)
    assert round_trips(3.0) == 5  # over timeout/32: doubling, as before
