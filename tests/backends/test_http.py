"""The direct path's HTTP/1.1 client against scripted raw servers (127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from judge_rl.backends._http import HTTPConnectionError, HTTPPool, HTTPTimeout


async def _serve(answers, *, close_after=None):
    """A server answering the k-th request (over all connections) with ``answers[k]``
    (bytes; None: hang; b"": close the connection without an answer). ``close_after``: close each connection after that many answers."""
    seen: list[bytes] = []

    async def handle(reader, writer):
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                seen.append(head + body)
                answer = answers[min(len(seen), len(answers)) - 1]
                if answer is None:
                    await asyncio.sleep(5)
                    return
                if answer == b"":  # close without answering
                    break
                writer.write(answer)
                await writer.drain()
                served += 1
                if close_after is not None and served >= close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


def _ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"".join(extra)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _run(coro):
    return asyncio.run(coro)


def test_content_length_keep_alive_and_headers_sent():
    async def go():
        server, url, seen = await _serve([_ok(b'{"a": 1}')])
        pool = HTTPPool(url + "/v1", timeout_s=2, headers={"Authorization": "Bearer k"})
        r1 = await pool.post("/v1/chat/completions", b'{"x": 1}')
        r2 = await pool.post("/v1/chat/completions", b'{"x": 2}', {"x-extra": "1"})
        conns = len(pool._all)
        await pool.close()
        server.close()
        return r1, r2, seen, conns

    r1, r2, seen, conns = _run(go())
    assert (r1.status, r1.body, r2.body) == (200, b'{"a": 1}', b'{"a": 1}')
    assert r1.headers["content-type"] == "application/json"
    assert conns == 1  # the second request reused the connection
    assert seen[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer k\r\n" in seen[0] and seen[0].endswith(b'{"x": 1}')
    assert b"Host: 127.0.0.1:" in seen[0] and b"x-extra: 1\r\n" in seen[1]


def test_chunked_gzip_and_100_continue():
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n5;ext=1\r\n: 12}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    packed = gzip.compress(b'{"z": true}')
    gz = _ok(packed, b"Content-Encoding: gzip\r\n")

    async def go():
        server, url, _ = await _serve([chunked, gz, chunked])
        pool = HTTPPool(url, timeout_s=2)
        out = [await pool.post("/c", b"{}") for _ in range(3)]
        await pool.close()
        server.close()
        return out

    a, b, c = _run(go())
    assert a.body == b'{"a": 12}' and c.body == b'{"a": 12}'
    assert b.body == b'{"z": true}'


def test_connection_close_and_stale_keep_alive_are_retried_on_a_new_connection():
    async def go():
        # the server closes every connection after one answer, without saying so
        server, url, seen = await _serve([_ok(b"1"), _ok(b"2"), _ok(b"3")], close_after=1)
        pool = HTTPPool(url, timeout_s=2)
        out = []
        for _ in range(3):
            out.append((await pool.post("/c", b"{}")).body)
            await asyncio.sleep(0.05)  # the close reaches us while the connection is idle
        await pool.close()
        server.close()
        return out, len(seen)

    out, requests = _run(go())
    assert out == [b"1", b"2", b"3"] and requests == 3


def test_error_status_timeout_refused_and_garbage():
    async def go():
        err = b"HTTP/1.1 429 Too Many\r\nRetry-After: 2\r\nContent-Length: 4\r\n\r\nslow"
        server, url, _ = await _serve([err, None])
        pool = HTTPPool(url, timeout_s=0.3)
        r = await pool.post("/c", b"{}")
        with pytest.raises(HTTPTimeout):
            await pool.post("/c", b"{}")
        await pool.close()
        server.close()
        await server.wait_closed()
        with pytest.raises(HTTPConnectionError, match="cannot connect"):
            await HTTPPool(url, timeout_s=0.3).post("/c", b"{}")
        bad, burl, _ = await _serve([b"SSH-2.0-OpenSSH\r\n\r\n"])
        with pytest.raises(HTTPConnectionError, match="malformed"):
            await HTTPPool(burl, timeout_s=0.5).post("/c", b"{}")
        bad.close()
        return r

    r = _run(go())
    assert (r.status, r.headers["retry-after"], r.body) == (429, "2", b"slow")


def test_body_until_close_without_length():
    async def go():
        answer = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
        server, url, _ = await _serve([answer], close_after=1)
        pool = HTTPPool(url, timeout_s=2)
        r = await pool.post("/c", b"{}")
        conns = len(pool._all)
        await pool.close()
        server.close()
        return r, conns

    r, conns = _run(go())
    assert r.body == b"all of it" and conns == 0  # not kept: HTTP/1.0, read until close


def test_a_reused_connection_closed_before_any_answer_is_retried_once_a_new_one_is_not():
    async def go():
        server, url, seen = await _serve([_ok(b"1"), b"", _ok(b"2"), b""])
        pool = HTTPPool(url, timeout_s=2)
        first = (await pool.post("/c", b"{}")).body
        second = (await pool.post("/c", b"{}")).body  # reused, closed unanswered: retried
        n_seen = len(seen)
        await pool.close()
        with pytest.raises(HTTPConnectionError):  # a new connection closed unanswered
            await pool.post("/c", b"{}")
        server.close()
        return first, second, n_seen

    first, second, n_seen = _run(go())
    assert (first, second, n_seen) == (b"1", b"2", 3)


def test_the_lean_endpoint_answers_like_the_fake_server():
    """The throughput benchmark's endpoint (``_fakeserver --lean``, bare asyncio) gives the
    answers of the aiohttp fake server, through the backend's direct path."""
    import subprocess
    import sys

    from judge_rl.backends._fakeserver import start_in_thread
    from judge_rl.backends.base import ChatRequest
    from judge_rl.backends.openai import OpenAIBackend

    reqs = [
        ChatRequest(messages=[{"role": "user", "content": f"question {i}"}], max_tokens=8)
        for i in range(20)
    ]

    def texts(url: str) -> list[tuple[str | None, list[str]]]:
        backend = OpenAIBackend("fake-judge", base_urls=url, concurrency=8)

        async def go():
            try:
                return await backend.chat(reqs)
            finally:
                await backend.aclose()

        return [(r.error, r.texts) for r in asyncio.run(go())]

    cmd = [sys.executable, "-m", "judge_rl.backends._fakeserver", "--lean", "--latency", "0.01"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        lean = texts(f"http://127.0.0.1:{int(line.split()[1])}/v1")
    finally:
        proc.stdin.close()
        proc.wait(10)
    with start_in_thread() as srv:
        full = texts(srv.url)
    assert lean == full and all(err is None for err, _ in lean)


def test_https_with_the_servers_certificate(tmp_path):
    """The TLS path (``https://``: handshake, SNI, certificate check) against a local server
    with a self-signed certificate for 127.0.0.1, trusted by the pool's context."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )

    async def go():
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)

        async def handle(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(n)
            writer.write(_ok(b'{"tls": true}'))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        pool = HTTPPool(f"https://127.0.0.1:{port}/v1", timeout_s=5)
        with pytest.raises(HTTPConnectionError):  # not trusted by the default context
            await pool.post("/v1/chat/completions", b"{}")
        pool._ssl = ssl.create_default_context(cafile=str(cert))
        resp = await pool.post("/v1/chat/completions", b"{}")
        await pool.close()
        server.close()
        return resp, pool.host_header

    resp, host = _run(go())
    assert resp.body == b'{"tls": true}' and host.startswith("127.0.0.1:")


def test_oversized_and_compression_bomb_answers_are_errors(monkeypatch):
    """A body over MAX_BODY (declared, streamed or after decompression) is one clear error, never
    unbounded memory."""
    import judge_rl.backends._http as http

    monkeypatch.setattr(http, "MAX_BODY", 1000)
    bomb = gzip.compress(b"0" * 100_000)  # 100 KB inflated from a few hundred bytes
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * 100_000,
        _ok(bomb, b"Content-Encoding: gzip\r\n"),
    ]

    async def go():
        out = []
        for answer in answers:
            server, url, _ = await _serve([answer])
            with pytest.raises(HTTPConnectionError, match="malformed.*(bytes|over)") as e:
                await HTTPPool(url, timeout_s=2.0).post("/c", b"{}")
            out.append(str(e.value))
            server.close()
            await server.wait_closed()
        return out

    msgs = _run(go())
    assert len(msgs) == 3
    # within the limit the same gzip path still answers
    monkeypatch.setattr(http, "MAX_BODY", 200_000)

    async def ok():
        server, url, _ = await _serve([_ok(bomb, b"Content-Encoding: gzip\r\n")])
        r = await HTTPPool(url, timeout_s=2.0).post("/c", b"{}")
        server.close()
        await server.wait_closed()
        return r

    assert _run(ok()).body == b"0" * 100_000
