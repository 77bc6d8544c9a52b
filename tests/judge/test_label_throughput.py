"""`judge-rl label`'s faster path (issue 19 item 2) changes when things happen, not what comes
out: the cache is written on a thread of its own, finished chunks are turned into rows after the
next request went out, the cache closes on a thread while the records are written, and an
HTTP attempt's deadline is one timer. These tests hold the outputs to those recorded from the
code before the change, and check the new paths' failure cases."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from judge_rl.backends._fakeserver import start_in_thread
from judge_rl.backends._http import HTTPPool, HTTPTimeout
from judge_rl.backends.mock import MockBackend
from judge_rl.judge import CachedJudge, JudgmentCache, LLMJudge, compare_sync
from judge_rl.types import Candidate, Comparison

GOLDEN = Path(__file__).parent / "data" / "label_golden.json"
"""The outputs of the command below, recorded from the code before the change (commit
2244c9c) by ``python tests/judge/test_label_throughput.py record``."""

VOLATILE = {"latency_s", "attempt_latency_s", "created", "time_s", "wall_s"}


def _pairs() -> list[dict[str, Any]]:
    rows = []
    for i in range(48):
        rows.append(
            {
                "prompt": f"question {i}: ¿qué es {i} × 2?" if i % 7 == 0 else f"question {i}",
                "response_a": f"first answer {i}" + (" ✓" if i % 5 == 0 else ""),
                "response_b": f"second answer {i}",
            }
        )
    rows.append(dict(rows[3]))  # a duplicate comparison: judged once, reported twice
    return rows


def _spec(tmp: Path, url: str) -> Path:
    folder = tmp / "golden-judge"  # the judge's name (and so its fingerprint key)
    folder.mkdir()
    (folder / "prompt.j2").write_text(
        "Which is better?\n[Q] {{ prompt }}\n[A] {{ response_a }}\n[B] {{ response_b }}\n"
        "End with [[A]], [[B]] or [[C]]."
    )
    spec = {
        "version": "1",
        "kind": "pairwise",
        "backend": "openai",
        "model": "fake-judge",
        "base_urls": [url],
        "concurrency": 8,
        "template": "prompt.j2",
        "max_tokens": 32,
        "order": "fixed",
    }
    (folder / "judge.yaml").write_text(json.dumps(spec))
    return folder / "judge.yaml"


def _scrub(obj: Any, subs: dict[str, str]) -> Any:
    """``obj`` without what changes from run to run (timings, latencies, paths, the port)."""
    if isinstance(obj, dict):
        return {k: _scrub(v, subs) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_scrub(x, subs) for x in obj]
    if isinstance(obj, str):
        for old, new in subs.items():
            obj = obj.replace(old, new)
    return obj


def run_label(tmp: Path) -> dict[str, Any]:
    """``judge-rl label`` (in this process) against the fake endpoint with parse and transport
    failures; what it wrote, scrubbed."""
    from judge_rl.cli import main

    inp = tmp / "pairs.jsonl"
    inp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _pairs()))
    with start_in_thread(faults={"unparseable": 0.15, "malformed": 0.1}) as srv:
        spec = _spec(tmp, srv.url)
        args = ["label", "--judge", str(spec), "--input", str(inp), "--output"]
        args += [str(tmp / "prefs.jsonl"), "--run", str(tmp / "run"), "--cache"]
        args += [str(tmp / "c.sqlite"), "--no-drop-ties"]
        rc = main(args)
        subs = {str(tmp): "<tmp>", srv.url.rsplit("/v1", 1)[0]: "<url>"}
    log = json.loads((tmp / "run" / "log.json").read_text(encoding="utf-8"))
    for key in ("environment", "timings"):
        log.pop(key)
    db = sqlite3.connect(tmp / "c.sqlite")
    cache = [
        [k, j, kind, _scrub(json.loads(v), subs), g]
        for k, j, kind, v, g in db.execute(
            "SELECT key, judge, kind, value, gen FROM judgments ORDER BY key"
        )
    ]
    claims = db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    db.close()
    return {
        "rc": rc,
        "preferences": (tmp / "prefs.jsonl").read_text(encoding="utf-8"),
        "log": _scrub(log, subs),
        "cache": cache,
        "claims_left": claims,
    }


def test_label_writes_what_the_code_before_the_change_wrote(tmp_path, capsys):
    got = run_label(tmp_path)
    capsys.readouterr()
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert got["rc"] == want["rc"] == 1  # some comparisons failed (malformed answers)
    assert got["preferences"] == want["preferences"]
    assert got["cache"] == want["cache"]
    assert got["claims_left"] == want["claims_left"] == 0
    assert got["log"] == want["log"]


# --- the cache's store thread -------------------------------------------------------------------


def _many(n: int) -> list[Comparison]:
    out = []
    for i in range(n):
        p = f"question {i}"
        a = Candidate(prompt_id=str(i), prompt=p, response=f"first {i}", source="m1")
        b = Candidate(prompt_id=str(i), prompt=p, response=f"second answer {i}", source="m2")
        out.append(Comparison(prompt_id=str(i), prompt=p, a=a, b=b))
    return out


def test_the_event_loop_never_runs_a_cache_transaction(tmp_path, pairwise_template, monkeypatch):
    """Every store transaction runs on the store thread, and every judgment is stored by the
    time ``compare`` returns (the old code committed on the event loop's thread)."""
    threads: list[int] = []
    real = JudgmentCache.store

    def spy(self, items, release):
        threads.append(threading.get_ident())
        time.sleep(0.02)  # a slow disk: judging goes on meanwhile
        real(self, items, release)

    monkeypatch.setattr(JudgmentCache, "store", spy)
    cache = JudgmentCache(tmp_path / "c.sqlite")
    judge = CachedJudge(
        LLMJudge(MockBackend(latency_s=0.001, concurrency=64), pairwise_template), cache
    )
    loop_thread: list[int] = []

    async def go():
        loop_thread.append(threading.get_ident())
        return await judge.compare(_many(300))

    js = asyncio.run(go())
    assert len(js) == 300 and all(j.ok for j in js)
    assert len(cache) == 300
    assert threads and loop_thread[0] not in threads


def test_a_failing_cache_write_fails_the_run(tmp_path, pairwise_template, monkeypatch):
    """A transaction that fails on the store thread is raised by ``compare`` (not lost in the
    thread), and the run does not hang."""

    def broken(self, items, release):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(JudgmentCache, "store", broken)
    judge = CachedJudge(
        LLMJudge(MockBackend(concurrency=64), pairwise_template),
        JudgmentCache(tmp_path / "c.sqlite"),
    )
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        compare_sync(judge, _many(100))


# --- the HTTP client's deadline -------------------------------------------------------------------


def test_one_deadline_covers_the_retry_on_a_new_connection():
    """A reused connection closed unanswered is retried on a new one within the same attempt
    deadline: a hang there times out at ``timeout_s`` from the start, not later."""

    async def go():
        answered = 0
        release = asyncio.Event()

        async def handle(reader, writer):
            nonlocal answered
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    await reader.readexactly(n)
                    answered += 1
                    if answered == 1:
                        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        await writer.drain()
                    elif answered == 2:
                        break  # close the kept-alive connection without an answer
                    else:
                        await release.wait()  # hang until the test is done
                        break
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = HTTPPool(url, timeout_s=0.4)
        assert (await pool.post("/c", b"{}")).body == b"ok"
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        with pytest.raises(HTTPTimeout):
            await pool.post("/c", b"{}")
        took = time.perf_counter() - t0
        release.set()
        await pool.close()
        server.close()
        await server.wait_closed()
        return took, answered

    took, answered = asyncio.run(go())
    assert answered == 3  # the first answer, the closed one, the retry that hangs
    assert 0.35 <= took < 0.9


if __name__ == "__main__":  # record the golden outputs (run with the code before the change)
    import sys
    import tempfile

    if sys.argv[1:] != ["record"]:
        raise SystemExit("usage: python tests/judge/test_label_throughput.py record")
    with tempfile.TemporaryDirectory() as d:
        out = run_label(Path(d))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


def test_the_estimate_never_counts_the_whole_cache(tmp_path, pairwise_template, monkeypatch):
    """``CachedJudge.estimate`` looked its keys up behind ``if self.cache``, which calls
    ``JudgmentCache.__len__``: a ``COUNT(*)`` over every stored judgment before the first call
    of every run (~8 ms per 200,000 rows here; a shared default cache grows without bound)."""
    cache = JudgmentCache(tmp_path / "c.sqlite")
    judge = CachedJudge(LLMJudge(MockBackend(concurrency=8), pairwise_template), cache)
    compare_sync(judge, _many(5))
    counted: list[int] = []
    real = JudgmentCache.__len__

    def spy(self):
        counted.append(1)
        return real(self)

    monkeypatch.setattr(JudgmentCache, "__len__", spy)
    est = judge.estimate(_many(8))
    assert (est.cached, est.calls) == (5, 3)
    assert counted == []
