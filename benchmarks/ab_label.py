"""`judge-rl label` from two (or more) versions of the code, alternated, against one endpoint.

A change to the label command moves its end-to-end rate by a point or two, less than a busy
2-core machine moves it between two runs. This benchmark puts the versions side by side in one
run: each version is a git revision (extracted with ``git archive`` into a temporary folder) or
a folder holding a copy of the tree; one endpoint (``judge_rl.backends._fakeserver --lean``,
50 ms, 64 in flight, as ``bench_judge_throughput.py``) serves them all; each version runs once
to compile its bytecode, then ``--runs`` times, the order reversed every round, each in a fresh
judgment cache. Per run it prints the end-to-end rate (process start to exit, from the pairs
file on disk) and the judging window's (from the run log), both as a share of the endpoint's
limit, the time outside the window (wall minus window), the process's CPU and the load
average; then each version's medians. ``--warm-rows N`` runs every version beside a long-lived
cache instead of a fresh one: N other pairs are judged once (by the first version) into a cache
file, and each timed run gets a copy of it.

Run it under real-time priority on a shared machine so other work does not preempt the runs:
``chrt -f 10 python benchmarks/ab_label.py HEAD~3 HEAD --runs 4`` (never while a test
suite runs: it starves it). Not a ``bench_*`` script: ``make bench`` does not run it (it
compares versions of judge_rl, not judge_rl with a peer).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_judge_throughput as B  # noqa: E402


def tree(version: str, tmp: Path, k: int) -> Path:
    """A folder holding ``version``'s code: the folder itself, or the git revision extracted."""
    if Path(version).is_dir():
        return Path(version).resolve()
    out = tmp / f"tree-{k}"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", version], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def run_once(
    code: Path, spec: Path, pairs: Path, tmp: Path, tag: str, base: Path | None = None
) -> dict[str, float]:
    """``python -m judge_rl label`` from ``code`` (:func:`bench_judge_throughput.run_cli`: a
    fresh cache, or a copy of ``base``'s); stops the benchmark if the command failed."""
    got = B.run_cli(spec, pairs, tmp, tag, code=code, base=base)
    if isinstance(got, str):
        raise SystemExit(f"{code}: {got}")
    return {"wall": got["wall_s"], "window": got["window_s"], "cpu": got["cpu_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("versions", nargs="+", help="git revisions or folders with a copy of the tree")
    ap.add_argument("--n", type=int, default=10_000, help="pairs per run")
    ap.add_argument("--runs", type=int, default=4, help="timed runs of each version")
    ap.add_argument("--latency", type=float, default=0.05, help="endpoint latency (s)")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    ap.add_argument(
        "--order",
        default="fixed",
        choices=["fixed", "random", "both"],
        help="the judge's order (both: two calls per pair; the shipped judges' default)",
    )
    ap.add_argument(
        "--warm-rows",
        type=int,
        default=0,
        metavar="N",
        help="run beside a cache already holding N other judgments (default: a fresh cache)",
    )
    args = ap.parse_args(argv)
    limit = args.concurrency / args.latency / (2 if args.order == "both" else 1)
    ideal = args.n / limit
    print(f"uptime at start: {B.uptime()}")
    with tempfile.TemporaryDirectory(prefix="bench-label-ab-") as name:
        tmp = Path(name)
        codes = [tree(v, tmp, k) for k, v in enumerate(args.versions)]
        proc, url = B.start_server(args.latency)
        try:
            spec = B.write_spec(tmp / "judge", url, args.concurrency, args.order)
            pairs = B.write_pairs(tmp / "pairs.jsonl", args.n)
            base = None
            if args.warm_rows:
                earlier = B.write_pairs(tmp / "earlier.jsonl", args.warm_rows, prefix="earlier ")
                run_once(codes[0], spec, earlier, tmp, "base")  # writes cache-base.sqlite
                base = tmp / "cache-base.sqlite"
            for k, code in enumerate(codes):
                run_once(code, spec, pairs, tmp, f"warm-{k}", base)  # bytecode, as installs have
            got: dict[int, list[dict[str, float]]] = {k: [] for k in range(len(codes))}
            for r in range(args.runs):
                order = list(range(len(codes)))
                for k in order if r % 2 == 0 else order[::-1]:
                    one = run_once(codes[k], spec, pairs, tmp, f"{r}-{k}", base)
                    got[k].append(one)
                    print(
                        f"{args.versions[k]:<24} end to end {ideal / one['wall']:6.1%}  "
                        f"window {ideal / one['window']:6.1%}  outside "
                        f"{one['wall'] - one['window']:.2f} s  CPU {one['cpu']:.2f} s  "
                        f"load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
    print(f"uptime at end:   {B.uptime()}")
    beside = f"beside {args.warm_rows:,} cached rows" if args.warm_rows else "a fresh cache"
    print(
        f"{args.n} pairs, {args.latency * 1000:.0f} ms endpoint, {args.concurrency} in flight "
        f"(limit {limit:,.0f} pairs/s, order {args.order}), {beside}; medians of {args.runs} runs "
        "each:"
    )
    for k, version in enumerate(args.versions):
        runs = got[k]
        wall = statistics.median(x["wall"] for x in runs)
        window = statistics.median(x["window"] for x in runs)
        outside = statistics.median(x["wall"] - x["window"] for x in runs)
        cpu = statistics.median(x["cpu"] for x in runs)
        print(
            f"{version:<24} end to end {ideal / wall:6.1%}  window {ideal / window:6.1%}  "
            f"outside {outside:.2f} s  CPU {cpu:.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
