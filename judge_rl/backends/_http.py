"""A small HTTP/1.1 client for the openai backend's direct path.

One pool per base URL: keep-alive connections on plain :mod:`asyncio` protocols, one request at a
time on each, a request written as one buffer, the answer's head parsed once and its body read by
``Content-Length`` (or chunked, or until close). That is all a JSON ``POST`` to an
OpenAI-compatible server needs, at a fraction of a general client's CPU per request: the judge's
client CPU is what limits judgments per second against a fast local server (issue 19 item 2;
``benchmarks/bench_judge_throughput.py``). Proxies are not handled here: the backend sends proxied
URLs through the ``openai`` SDK's client.

Failures are :class:`HTTPTimeout` (no complete answer within the attempt's time) and
:class:`HTTPConnectionError` (refused, reset, closed mid-answer, a malformed answer head). A
keep-alive connection the server closed while idle is retried once on a new connection when the
request got no byte back, as browsers and other clients do.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
"""Longest answer head (status line and headers) accepted."""
MAX_BODY = 64 * 1024 * 1024
"""Longest answer body accepted, as sent and after decompression (a chat completion is a few KB;
a server that sends more is broken or hostile, and must not exhaust memory)."""


class HTTPTimeout(Exception):
    """No complete answer within the attempt's time."""


class HTTPConnectionError(Exception):
    """The connection failed or the answer was not HTTP; the text says why."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    """Header names in lower case (repeated headers joined with ``, ``)."""
    body: bytes


class _Lost(Exception):
    def __init__(self, why: str, got_bytes: bool) -> None:
        super().__init__(why)
        self.got_bytes = got_bytes


def _inflate(data: bytes, wbits: int) -> bytes:
    """Decompress at most :data:`MAX_BODY` bytes (a compression bomb is an error, not a crash)."""
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, MAX_BODY)
    if d.unconsumed_tail:
        raise ValueError(f"decompressed answer body over {MAX_BODY} bytes")
    return out


def _expire(waiter: asyncio.Future[Response]) -> None:
    """The attempt's deadline passed: its answer fails with ``TimeoutError``."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request waiting on it at a time."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.got_bytes = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] | None = None
        self.length = -1
        self.chunked = False
        self.until_close = False
        self.keep = True
        self.body = bytearray()

    # --- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.buf += data
        w = self.waiter
        if w is None or w.done():  # bytes nobody asked for: this connection is not reusable
            self.keep = False
            self.close()
            return
        try:
            self._parse()
        except (ValueError, IndexError, zlib.error) as e:
            self._fail(f"malformed HTTP answer: {e}")
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost finishes an until-close body

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        w = self.waiter
        if w is None or w.done():
            return
        if self.headers is not None and self.until_close:
            self.body += self.buf
            try:
                self._done()
            except (ValueError, zlib.error) as e:
                self._fail(f"malformed HTTP answer: {e}")
            return
        why = str(exc) if exc else "the server closed the connection"
        w.set_exception(_Lost(why or type(exc).__name__, self.got_bytes))

    # --- the answer ------------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self.buf
        while self.headers is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise ValueError("answer head too long")
                return
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            version, _, rest = lines[0].partition(" ")
            if not version.startswith("HTTP/"):
                raise ValueError(f"not an HTTP status line: {lines[0][:40]!r}")
            status = int(rest[:3])
            if 100 <= status < 200:  # 100 Continue and friends: the real answer follows
                continue
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    continue
                name, value = name.strip().lower(), value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self.status, self.headers = status, headers
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.chunked = True
            elif "content-length" in headers:
                self.length = int(headers["content-length"])
                if not 0 <= self.length <= MAX_BODY:
                    raise ValueError(f"answer body of {self.length} bytes (limit {MAX_BODY})")
            elif status in (204, 304):
                self.length = 0
            else:
                self.until_close = True
            conn = headers.get("connection", "").lower()
            self.keep = version == "HTTP/1.1" and "close" not in conn and not self.until_close
        if len(buf) + len(self.body) > MAX_BODY + 65536:  # chunked or until-close, too long
            raise ValueError(f"answer body over {MAX_BODY} bytes")
        if self.chunked:
            self._parse_chunks()
        elif self.length >= 0 and len(buf) >= self.length:
            self.body = buf[: self.length]
            del buf[: self.length]
            self._done()

    def _parse_chunks(self) -> None:
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                return
            size = int(bytes(buf[:eol]).split(b";", 1)[0].strip(), 16)
            if size == 0:  # the last chunk: optional trailer lines, then an empty line
                rest = eol + 2
                if buf[rest : rest + 2] == b"\r\n":
                    end = rest + 2
                else:
                    trailers = buf.find(b"\r\n\r\n", rest)
                    if trailers < 0:
                        return
                    end = trailers + 4
                del buf[:end]
                self._done()
                return
            if len(buf) < eol + 2 + size + 2:
                return
            self.body += buf[eol + 2 : eol + 2 + size]
            del buf[: eol + 2 + size + 2]

    def _done(self) -> None:
        assert self.headers is not None and self.waiter is not None
        body = bytes(self.body)
        if len(body) > MAX_BODY:
            raise ValueError(f"answer body of {len(body)} bytes (limit {MAX_BODY})")
        enc = self.headers.get("content-encoding", "").lower()
        if enc in ("gzip", "x-gzip", "deflate"):
            try:
                body = _inflate(body, 47 if "gzip" in enc else zlib.MAX_WBITS)
            except zlib.error:
                body = _inflate(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
        self.waiter.set_result(Response(self.status, self.headers, body))

    def _fail(self, why: str) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(HTTPConnectionError(why))

    # --- use --------------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[Response]:
        self._reset()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HTTPPool:
    """Keep-alive connections to one ``http(s)://host:port``; :meth:`post` sends one request.

    Args:
        url: Base URL; its path and query are the caller's business (see :meth:`post`).
        timeout_s: Seconds per attempt (connecting, sending and reading the whole answer).
        connect_timeout_s: Seconds to open a connection (within ``timeout_s``).
        headers: Headers sent with every request (``Host`` and ``Content-Length`` are added).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        connect_timeout_s: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.https = parts.scheme == "https"
        self.port = parts.port or (443 if self.https else 80)
        default = (self.port == 443) if self.https else (self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default else f"{host}:{self.port}"
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = min(float(connect_timeout_s), self.timeout_s)
        lines = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._headers = lines.encode("latin-1")
        self._idle: list[_Conn] = []
        self._all: set[_Conn] = set()
        self._ssl: Any = None

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> Response:
        """``POST path`` (path and query, e.g. ``/v1/chat/completions``) with ``body``.

        Raises:
            HTTPTimeout: no complete answer within ``timeout_s``.
            HTTPConnectionError: the connection failed or the answer was not HTTP.
        """
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()).encode("latin-1")
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: {len(body)}\r\n"
        ).encode("latin-1")
        data = b"".join((head, self._headers, extra, b"\r\n", body))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            for _ in range(2):
                conn, reused = self._reusable()
                if conn is None:
                    async with asyncio.timeout_at(deadline):
                        conn, reused = await self._connection()
                # one timer per attempt that fails the answer's future at the deadline
                # (``asyncio.timeout`` around the whole exchange cost ~25 us a request)
                waiter = conn.send(data)
                timer = loop.call_at(deadline, _expire, waiter)
                try:
                    resp = await waiter
                except _Lost as e:
                    conn.close()
                    self._all.discard(conn)
                    if reused and not e.got_bytes:
                        continue  # an idle keep-alive connection the server had closed
                    raise HTTPConnectionError(str(e)) from None
                except BaseException:  # timeout, cancellation, malformed answer
                    conn.close()
                    self._all.discard(conn)
                    raise
                finally:
                    timer.cancel()
                if conn.keep and not conn.closed and not conn.buf:
                    conn.waiter = None
                    self._idle.append(conn)
                else:
                    conn.close()
                    self._all.discard(conn)
                return resp
            raise HTTPConnectionError("the server closed the connection")  # pragma: no cover
        except TimeoutError:
            raise HTTPTimeout(f"no answer within {self.timeout_s:g}s") from None

    def _reusable(self) -> tuple[_Conn | None, bool]:
        """An idle keep-alive connection that is still open, or ``(None, False)``."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                conn.got_bytes = False
                return conn, True
            self._all.discard(conn)
        return None, False

    async def _connection(self) -> tuple[_Conn, bool]:
        conn, reused = self._reusable()
        if conn is not None:
            return conn, reused
        loop = asyncio.get_running_loop()
        kw: dict[str, Any] = {}
        if self.https:
            if self._ssl is None:
                self._ssl = _ssl.create_default_context()
            kw = {"ssl": self._ssl, "server_hostname": self.host}
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(_Conn, self.host, self.port, **kw)
        except TimeoutError:
            raise HTTPTimeout(
                f"no connection to {self.host_header} within {self.connect_timeout_s:g}s"
            ) from None
        except OSError as e:
            raise HTTPConnectionError(
                f"cannot connect to {self.host_header}: {e.strerror or e}"
            ) from None
        self._all.add(conn)
        return conn, False

    async def close(self) -> None:
        """Close every connection (idle or not)."""
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()


__all__ = ["HTTPConnectionError", "HTTPPool", "HTTPTimeout", "Response"]
