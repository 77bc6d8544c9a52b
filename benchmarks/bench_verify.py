"""Verifier throughput: judge_rl's checker vs math-verify called directly, same rows, one run.

Rows: the MATH-style perturbation suite (tests/data/verify/math_suite.jsonl). For each row,
math-verify is called as its README shows (``verify(parse("$" + gold + "$"), parse(response))``,
library defaults, in this process); judge_rl runs ``check_many`` (mode ``symbolic``: extraction,
cheap exact comparisons here, the rest in the bounded worker pool), the way the judge and the
reward source call it. Both are timed after a warm-up (math-verify's first parse builds antlr's
tables; the pool's workers start once per process, reported separately).

Prints checks/s, p50/p99 latency per check (judge_rl: one ``check`` at a time, so the figure
includes the pipe to the worker), verdict agreement, and a ``RATIO`` line.

    .venv/bin/python benchmarks/bench_verify.py [--stride 2] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "data" / "verify" / "math_suite.jsonl"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run_math_verify(rows: list[dict]) -> tuple[float, list[float], list[bool]]:
    from math_verify import parse, verify

    lat, out = [], []
    t0 = time.perf_counter()
    for r in rows:
        t = time.perf_counter()
        try:
            ok = bool(verify(parse("$" + r["gold"] + "$"), parse(r["response"])))
        except Exception:  # noqa: BLE001 (the peer's failure is its verdict)
            ok = False
        lat.append(time.perf_counter() - t)
        out.append(ok)
    return time.perf_counter() - t0, lat, out


def run_ours_batch(rows: list[dict]) -> tuple[float, list[bool], int]:
    from judge_rl.judge.verify import check_many

    t0 = time.perf_counter()
    res = check_many([(r["response"], r["gold"]) for r in rows], "symbolic")
    return time.perf_counter() - t0, [bool(c.correct) for c in res], sum(bool(c.error) for c in res)


def run_ours_one_by_one(rows: list[dict]) -> list[float]:
    from judge_rl.judge.verify import check

    lat = []
    for r in rows:
        t = time.perf_counter()
        check(r["response"], r["gold"], "symbolic")
        lat.append(time.perf_counter() - t)
    return lat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stride", type=int, default=2, help="use every N-th row (default: 2)")
    ap.add_argument("--workers", type=int, default=None, help="pool size (default: min(4, CPUs))")
    args = ap.parse_args(argv)

    import os

    if args.workers:
        os.environ["JUDGE_RL_VERIFY_WORKERS"] = str(args.workers)
    from judge_rl.judge.math_pool import get_pool, shutdown_pool

    rows = [json.loads(x) for x in SUITE.read_text().splitlines()][:: args.stride]
    # warm-up rows outside the suite: no timed check finds its answers already parsed
    warm = [
        {"gold": g, "response": f"$\\boxed{{{p}}}$"}
        for g, p in [
            (r"\frac{1}{2}", "0.5"),
            ("x^2-1", "(x-1)(x+1)"),
            ("(1, 2)", "(2, 1)"),
            (r"3\sqrt{2}", r"\sqrt{18}"),
            (r"\{1,2\}", "2, 1"),
            (r"45^\circ", "45"),
        ]
    ]

    def fresh_pool() -> tuple[object, float]:
        shutdown_pool()
        t = time.perf_counter()
        pool = get_pool()
        pool.warm()
        started = time.perf_counter() - t
        run_ours_batch(warm)
        return pool, started

    run_math_verify(warm)
    mv_wall, mv_lat, mv_out = run_math_verify(rows)
    pool, startup = fresh_pool()
    ours_wall, ours_out, errors = run_ours_batch(rows)
    stats = str(pool.stats)  # type: ignore[attr-defined]
    pool, _ = fresh_pool()
    ours_lat = run_ours_one_by_one(rows)

    n = len(rows)
    agree = sum(a == b for a, b in zip(ours_out, mv_out, strict=True)) / n
    mv_rate, ours_rate = n / mv_wall, n / ours_wall
    print(
        f"rows: {n} (perturbation suite, stride {args.stride}); pool: {pool.size} workers, "  # type: ignore[attr-defined]
        f"started in {startup:.1f}s; machine CPUs: {os.cpu_count()}"
    )
    print(f"{'':24}{'checks/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, rate, lat in (
        ("math-verify (direct)", mv_rate, mv_lat),
        ("judge_rl check_many", ours_rate, None),
        ("judge_rl check (1 by 1)", n / sum(ours_lat), ours_lat),
    ):
        if lat is None:
            print(f"{name:24}{rate:>10.1f}{'-':>10}{'-':>10}{'-':>10}")
        else:
            print(
                f"{name:24}{rate:>10.1f}{1000 * statistics.median(lat):>10.2f}"
                f"{1000 * pct(lat, 0.99):>10.2f}{1000 * max(lat):>10.1f}"
            )
    print(f"verdict agreement with math-verify: {agree:.4f}; judge_rl errors (timeouts): {errors}")
    print(f"pool stats (batch run): {stats}")
    print(
        f"RATIO verify_checks_per_s_vs_math_verify {ours_rate / mv_rate:.2f}x "
        f"(judge_rl {ours_rate:.0f}/s, math-verify {mv_rate:.0f}/s; p99 per check "
        f"judge_rl {1000 * pct(ours_lat, 0.99):.1f} ms, math-verify {1000 * pct(mv_lat, 0.99):.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
