"""Report test helpers: the fixture factory, and a headless Chromium driven over the DevTools
protocol (Debian's ``chromium``; no browser download)."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
SNAPSHOTS = HERE / "snapshots"
ARTEFACTS = Path(
    os.environ.get("JUDGE_RL_TEST_ARTEFACTS", HERE.parents[1] / "test-artifacts" / "report")
)


def _load_factory() -> Any:
    spec = importlib.util.spec_from_file_location("report_fixture_factory", FIXTURES / "factory.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def factory() -> Any:
    """The fixture factory module (``tests/report/fixtures/factory.py``)."""
    return _load_factory()


# ---------------------------------------------------------------- headless Chromium over CDP

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    # no DNS at all: any attempt to reach the network fails (and is recorded below)
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Page:
    """A minimal DevTools-protocol client for one tab (aiohttp websocket)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut and not fut.done():
                    fut.set_result(data)
                continue
            self.events.append(data)
            if data.get("method") == "Fetch.requestPaused":
                # Networking is disabled: record the attempt and fail it.
                self.requests.append(data["params"]["request"]["url"])
                asyncio.ensure_future(
                    self.send(
                        "Fetch.failRequest",
                        requestId=data["params"]["requestId"],
                        errorReason="BlockedByClient",
                    )
                )

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        i = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        start = len(self.events)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events[start:]:
                if e.get("method") == method:
                    return e
            await asyncio.sleep(0.02)
        raise TimeoutError(method)

    async def eval(self, expr: str) -> Any:
        r = await self.send(
            "Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def open(
        self, path: Path, width: int = 1280, height: int = 900, mobile: bool = False
    ) -> float:
        """Navigate to ``path`` (offline, requests intercepted); returns seconds to load."""
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send("Log.enable")
        await self.send("Network.enable")
        await self.send(
            "Network.emulateNetworkConditions",
            offline=True,
            latency=0,
            downloadThroughput=-1,
            uploadThroughput=-1,
        )
        await self.send(
            "Fetch.enable",
            patterns=[{"urlPattern": "http*"}, {"urlPattern": "ws*"}, {"urlPattern": "ftp*"}],
        )
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1 if not mobile else 2,
            mobile=mobile,
        )
        t0 = time.monotonic()
        await self.send("Page.navigate", url=path.resolve().as_uri())
        await self.wait_event("Page.loadEventFired")
        await asyncio.sleep(0.2)
        return time.monotonic() - t0

    def console_errors(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, CSP and other log errors so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(
                    f"exception: {p['exceptionDetails'].get('text')} "
                    f"{p['exceptionDetails'].get('exception', {}).get('description', '')}"
                )
            elif m == "Runtime.consoleAPICalled" and p.get("type") in (
                "error",
                "warning",
                "assert",
            ):
                out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
            elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                out.append(f"log {p['entry'].get('source')}: {p['entry'].get('text')}")
        return out

    async def screenshot(self, path: Path, full: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full:
            params["captureBeyondViewport"] = True
        r = await self.send("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(r["data"]))
        return path


class Browser:
    """One headless Chromium process; ``run(scenario)`` gives ``scenario`` a fresh tab."""

    def __init__(self, exe: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="judge-rl-chromium-"))
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.close()
                raise RuntimeError(f"chromium did not start: {err[-2000:]}")
            time.sleep(0.05)
        self.port = int(port_file.read_text().splitlines()[0])

    def run(self, scenario: Any) -> Any:
        async def main() -> Any:
            import aiohttp

            async with aiohttp.ClientSession() as s:
                base = f"http://127.0.0.1:{self.port}"
                async with s.put(f"{base}/json/new?about:blank") as r:
                    target = await r.json(content_type=None)
                try:
                    async with s.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                        page = Page(ws)
                        try:
                            return await scenario(page)
                        finally:
                            page.reader.cancel()
                finally:
                    async with s.get(f"{base}/json/close/{target['id']}") as r:
                        await r.read()

        return asyncio.run(main())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium, or a skip (a failure when ``JUDGE_RL_REQUIRE_BROWSER=1``, as in CI)."""
    exe = find_chromium()
    required = os.environ.get("JUDGE_RL_REQUIRE_BROWSER") == "1"
    if exe is None:
        msg = "headless Chromium not found (apt-get install -y chromium)"
        if required:
            pytest.fail(msg + " and JUDGE_RL_REQUIRE_BROWSER=1")
        pytest.skip(msg)
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        if required:
            pytest.fail("aiohttp (dev dependency) is needed to drive Chromium")
        pytest.skip("aiohttp (dev dependency) is needed to drive Chromium")
    try:
        b = Browser(exe)
    except RuntimeError as e:
        if required:
            pytest.fail(f"{exe} could not start: {e}")
        pytest.skip(f"{exe} could not start: {e}")
    yield b
    b.close()


@pytest.fixture(scope="session")
def artefacts() -> Path:
    """Where screenshots are kept (``test-artifacts/report``, gitignored; override JUDGE_RL_TEST_ARTEFACTS)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS


@pytest.fixture(scope="session")
def large_report(factory, tmp_path_factory):
    """A 10k-comparison labelling log rendered once: (log, html path, render seconds)."""
    from judge_rl.report.html import write_report

    log = factory.large(10_000)
    path = tmp_path_factory.mktemp("large") / "report.html"
    t0 = time.perf_counter()
    write_report(log, path)
    return log, path, time.perf_counter() - t0
