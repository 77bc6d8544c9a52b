"""``make bench``: run every ``benchmarks/bench_*.py`` in turn and print their ratio lines.

Each benchmark prints its own table and ends with lines starting ``RATIO`` that this script
collects into a summary. Pass names to run a subset: ``python benchmarks/run_all.py ratings``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(a in s.stem for a in argv)]
    summary: list[str] = []
    failed = 0
    for s in scripts:
        print(f"\n=== {s.stem} ===", flush=True)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, str(s)], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            failed += 1
            sys.stdout.write(r.stderr[-3000:])
            summary.append(f"{s.stem}: FAILED (exit {r.returncode})")
            continue
        ratios = [ln for ln in r.stdout.splitlines() if ln.startswith("RATIO")]
        summary += [f"{s.stem}: {ln}" for ln in ratios]
        summary.append(f"{s.stem}: took {time.perf_counter() - t:.0f}s")
    print("\n=== summary ===")
    print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
