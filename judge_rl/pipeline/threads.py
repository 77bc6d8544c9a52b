"""The thread policy of pipeline stages (``judge-rl run/demo --threads``).

One rule, decided once at the start of each stage:

- ``--threads N`` (N >= 1) is used as given;
- otherwise the stage uses the cores that are *free right now*: the CPUs this process may run on
  (its affinity mask) minus the cores other processes are keeping busy, measured over a short
  window from ``/proc/stat`` with this process's own CPU time subtracted. A load average is never
  used: it lags by minutes and counts our own earlier stages as "other work" (issue 19.5: the old
  rule gave 1 thread to training on a machine whose only load was the demo itself).

At least one thread, at most the CPUs available. Where ``/proc/stat`` is missing (macOS), all
available CPUs are used.
"""

from __future__ import annotations

import os
import resource
import time


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _busy_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs since boot, from ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    vals = [int(x) for x in fields[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return sum(vals) - idle, sum(vals)


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def other_busy_cores(window_s: float = 0.3) -> float | None:
    """Cores kept busy by *other* processes over the next ``window_s`` seconds (None when the
    platform does not say)."""
    a = _busy_jiffies()
    own0 = _own_cpu_s()
    t0 = time.perf_counter()
    time.sleep(window_s)
    b = _busy_jiffies()
    own1 = _own_cpu_s()
    dt = time.perf_counter() - t0
    if a is None or b is None or b[1] <= a[1] or dt <= 0:
        return None
    ncpu = os.cpu_count() or 1
    busy_cores = (b[0] - a[0]) / (b[1] - a[1]) * ncpu
    return max(0.0, busy_cores - (own1 - own0) / dt)


def decide_threads(requested: int | None = None) -> int:
    """Threads for the next stage: ``requested`` when given (>= 1), else the free cores."""
    n = available_cpus()
    if requested is not None and requested >= 1:
        return int(requested)
    others = other_busy_cores()
    if others is None:
        return n
    return max(1, min(n, round(n - others)))


def apply_threads(n: int) -> None:
    """Set torch's intra-op threads (torch is imported here, not at module import)."""
    import torch

    torch.set_num_threads(max(1, n))


__all__ = ["apply_threads", "available_cpus", "decide_threads", "other_busy_cores"]
