"""A small pool of long-lived worker processes for bounded math-equivalence checks.

Why processes: sympy's ``simplify``/``equals`` can run for minutes or eat gigabytes on a hostile
answer, and C code does not see Python signals. Each worker (``python -m
judge_rl.judge.math_equiv``, see :func:`judge_rl.judge.math_equiv.worker_main`) has a memory
limit (``RLIMIT_AS``), a CPU-time timer per check and an audit hook that forbids interpreters and
side effects. The parent waits for the answer until a wall-clock deadline (a multiple of the
check's limit, so that a loaded machine does not turn slow checks into timeouts); a worker that
has not answered by then is killed and replaced, and the check is reported as ``timeout`` (never
``False``).

Why a pool: starting a process (and importing sympy) costs far more than a check. Workers start
once, warm up, and serve checks over a pipe (one JSON line each way) until the pool closes. A
replacement starts at once in the background. Workers are started with ``subprocess`` (fork +
exec), so they never inherit the caller's threads, CUDA state or ``__main__`` module.

Thread-safe: any number of threads may call :meth:`MathPool.check`; each takes an idle worker.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

WALL_FACTOR = 4.0
GRACE_S = 2.0
"""The parent's wall-clock deadline for a check is ``timeout_s * WALL_FACTOR + GRACE_S``."""

START_TIMEOUT_S = 180.0
"""How long a new worker may take to import and warm the engine."""

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
    """Counters over the pool's life: checks, timeouts, errors, worker restarts, and operations
    the workers' audit hooks refused (``blocked``; 0 on any legitimate input)."""

    checks: int = 0
    timeouts: int = 0
    errors: int = 0
    restarts: int = 0
    blocked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _Worker:
    def __init__(self, memory_mb: int):
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "judge_rl.judge.math_equiv", str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self._buf = b""
        self.ready = False
        self.blocked = 0

    def read(self, timeout_s: float) -> list[Any] | None:
        """The next reply line, or None when none came within ``timeout_s`` (or the worker
        died: EOF raises EOFError)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("math worker closed its pipe")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return list(json.loads(line))

    def send(self, gold: str, pred: str, timeout_s: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps([gold, pred, timeout_s]) + "\n").encode())
        self.proc.stdin.flush()

    def wait_ready(self, timeout_s: float) -> None:
        if self.ready:
            return
        try:
            reply = self.read(timeout_s)
        except (EOFError, OSError, ValueError) as e:
            raise RuntimeError("math worker died while starting") from e
        if reply is None:
            raise RuntimeError(f"math worker did not start within {timeout_s:.0f} s")
        if reply[0] != "ready":
            raise RuntimeError(f"math worker failed to start: {reply[1]}")
        self.ready = True

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if f is not None:
                    f.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(1)
        self.kill()


class MathPool:
    """``size`` workers, started on the first check and kept alive between checks."""

    def __init__(self, size: int | None = None, memory_mb: int = DEFAULT_MEMORY_MB):
        env = os.environ.get("JUDGE_RL_VERIFY_WORKERS")
        if size is None:
            size = int(env) if env else max(1, min(4, os.cpu_count() or 1))
        self.size = max(1, size)
        self.memory_mb = memory_mb
        self.stats = PoolStats()
        self._pid = os.getpid()
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
            for _ in range(self.size):
                w = _Worker(self.memory_mb)
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
            w = _Worker(self.memory_mb)
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

    def warm(self) -> None:
        """Start the workers and wait until each is ready (optional; checks do it lazily)."""
        self._start()
        taken = [self._idle.get() for _ in range(self.size)]
        for w in taken:
            try:
                w.wait_ready(START_TIMEOUT_S)
            except RuntimeError:
                self._replace(w)
                continue
            self._idle.put(w)

    # -- checks ----------------------------------------------------------------------------

    def check(self, gold: str, pred: str, timeout_s: float) -> PoolResult:
        """Whether ``pred`` equals ``gold`` (both LaTeX answers), within ``timeout_s`` of CPU
        time (and ``timeout_s * WALL_FACTOR + GRACE_S`` of wall time)."""
        self._start()
        w = self._idle.get()
        try:
            w.wait_ready(START_TIMEOUT_S)
        except RuntimeError as e:
            self._replace(w)
            return self._count(PoolResult("error", detail=f"engine: {e}"))
        try:
            w.send(gold, pred, timeout_s)
            reply = w.read(timeout_s * WALL_FACTOR + GRACE_S)
        except (EOFError, OSError, ValueError):
            self._replace(w)
            return self._count(PoolResult("error", detail="crash: the math worker died"))
        if reply is None:
            self._replace(w)
            return self._count(PoolResult("timeout", detail=f"no answer in {timeout_s:g} s"))
        status, value, blocked = reply
        with self.stats.lock:
            self.stats.blocked += max(0, int(blocked) - w.blocked)
        w.blocked = int(blocked)
        self._idle.put(w)
        if status == "ok":
            return self._count(PoolResult("ok", value=bool(value)))
        if status == "timeout":
            return self._count(PoolResult("timeout", detail=f"over {timeout_s:g} s"))
        return self._count(PoolResult("error", detail=str(value)))

    def check_many(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[PoolResult]:
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
    """Stop the process-wide pool's workers (also registered with :mod:`atexit`)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and _POOL._pid == os.getpid():
            _POOL.close()
        _POOL = None


atexit.register(shutdown_pool)
