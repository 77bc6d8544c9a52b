"""A small pool of long-lived worker processes for bounded math-equivalence checks.

Why processes: sympy's ``simplify``/``equals`` can run for minutes or eat gigabytes on a hostile
answer, and C code does not see Python signals. Each worker (:func:`math_equiv.worker_main`) has
a memory limit (``RLIMIT_AS``), an alarm per check and an audit hook that forbids interpreters
and side effects. The parent waits ``timeout_s`` plus a grace period; a worker that has not
answered by then is killed and replaced, and the check is reported as ``timeout`` (never
``False``).

Why a pool: a process forked per comparison costs far more than the check. Workers come from a
forkserver that has already imported and warmed the engine (:mod:`math_preload`), so a
replacement starts in milliseconds and never inherits the parent's threads or CUDA state.

Thread-safe: any number of threads may call :meth:`MathPool.check`; each takes an idle worker.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

GRACE_S = 1.0
"""Extra seconds the parent waits past a check's own limit before killing its worker."""

START_TIMEOUT_S = 120.0
"""How long a new worker may take to import and warm the engine (first start only is slow)."""

DEFAULT_MEMORY_MB = 2048
"""Address-space limit of a worker (``RLIMIT_AS``)."""


@dataclass(frozen=True)
class PoolResult:
    """One check's outcome: ``status`` is ``ok`` (``value`` is the verdict), ``timeout`` or
    ``error`` (``detail`` says why)."""

    status: str
    value: bool | None = None
    detail: str | None = None


@dataclass
class PoolStats:
    checks: int = 0
    timeouts: int = 0
    errors: int = 0
    restarts: int = 0
    blocked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _context() -> Any:
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["judge_rl.judge.math_preload"])
        return ctx
    return mp.get_context("spawn")


class _Worker:
    def __init__(self, ctx: Any, memory_mb: int):
        from judge_rl.judge.math_equiv import worker_main

        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=worker_main, args=(child, memory_mb), daemon=True, name="judge-rl-math"
        )
        self.proc.start()
        child.close()
        self.ready = False
        self.blocked = 0

    def wait_ready(self, timeout_s: float) -> None:
        if self.ready:
            return
        if not self.conn.poll(timeout_s):
            self.kill()
            raise RuntimeError(f"math worker did not start within {timeout_s:.0f} s")
        try:
            status, detail, _ = self.conn.recv()
        except (EOFError, OSError) as e:
            self.kill()
            raise RuntimeError("math worker died while starting") from e
        if status != "ready":
            self.kill()
            raise RuntimeError(f"math worker failed to start: {detail}")
        self.ready = True

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.proc.join(1)
        self.kill()


class MathPool:
    """``size`` workers, started lazily on the first check and kept alive between checks."""

    def __init__(self, size: int | None = None, memory_mb: int = DEFAULT_MEMORY_MB):
        env = os.environ.get("JUDGE_RL_VERIFY_WORKERS")
        if size is None:
            size = int(env) if env else max(1, min(4, os.cpu_count() or 1))
        self.size = max(1, size)
        self.memory_mb = memory_mb
        self.stats = PoolStats()
        self._pid = os.getpid()
        self._ctx: Any = None
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._executor: ThreadPoolExecutor | None = None

    # -- life cycle ------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            if self._closed:
                raise RuntimeError("math pool is closed")
            self._ctx = _context()
            for _ in range(self.size):
                w = _Worker(self._ctx, self.memory_mb)
                self._all.append(w)
                self._idle.put(w)
            self._started = True

    def _replace(self, dead: _Worker) -> None:
        dead.kill()
        with self._lock:
            if dead in self._all:
                self._all.remove(dead)
            if self._closed:
                return
            w = _Worker(self._ctx, self.memory_mb)
            self._all.append(w)
        with self.stats.lock:
            self.stats.restarts += 1
        self._idle.put(w)

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        with self._lock:
            self._closed = True
            workers, self._all = self._all, []
        for w in workers:
            w.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    # -- checks ----------------------------------------------------------------------------

    def check(self, gold: str, pred: str, timeout_s: float) -> PoolResult:
        """Whether ``pred`` equals ``gold`` (both LaTeX answers), within ``timeout_s``."""
        self._start()
        w = self._idle.get()
        try:
            w.wait_ready(START_TIMEOUT_S)
        except RuntimeError as e:
            self._replace(w)
            return self._count(PoolResult("error", detail=f"engine: {e}"))
        try:
            w.conn.send((gold, pred, timeout_s))
            if not w.conn.poll(timeout_s + GRACE_S):
                self._replace(w)
                return self._count(PoolResult("timeout", detail=f"no answer in {timeout_s:g} s"))
            status, value, blocked = w.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._replace(w)
            return self._count(PoolResult("error", detail="crash: the math worker died"))
        with self.stats.lock:
            self.stats.blocked += max(0, blocked - w.blocked)
        w.blocked = blocked
        self._idle.put(w)
        if status == "ok":
            return self._count(PoolResult("ok", value=bool(value)))
        if status == "timeout":
            return self._count(PoolResult("timeout", detail=f"over {timeout_s:g} s"))
        return self._count(PoolResult("error", detail=str(value)))

    def check_many(
        self, pairs: Sequence[tuple[str, str]], timeout_s: float
    ) -> list[PoolResult]:
        """:meth:`check` for many pairs, spread over the workers; results in input order."""
        if len(pairs) <= 1 or self.size == 1:
            return [self.check(g, p, timeout_s) for g, p in pairs]
        self._start()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="judge-rl-math")
            ex = self._executor
        return list(ex.map(lambda gp: self.check(gp[0], gp[1], timeout_s), pairs))

    def _count(self, r: PoolResult) -> PoolResult:
        with self.stats.lock:
            self.stats.checks += 1
            if r.status == "timeout":
                self.stats.timeouts += 1
            elif r.status == "error":
                self.stats.errors += 1
        return r


_POOL: MathPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> MathPool:
    """The process-wide pool (a new one after a fork: workers belong to their parent)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._pid != os.getpid() or _POOL._closed:
            _POOL = MathPool()
        return _POOL


def shutdown_pool() -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and _POOL._pid == os.getpid():
            _POOL.close()
        _POOL = None


atexit.register(shutdown_pool)
