"""The over-optimisation alarm by simulation: run-level false-alarm rate and power.

No peer tool raises this alarm, so there is no ratio: the script prints the two tables that
docs/overopt.md quotes. Simulated runs (``judge_rl.overopt.simulate``): 64 fixed held-out prompts
of varied difficulty (logit SD 1.5), a pass/fail gold, one sample per prompt per evaluation, the
proxy rising throughout; the alarm is checked after every evaluation at alpha = 0.05.

    python benchmarks/bench_alarm.py            # the tables (a few minutes on one core)
    python benchmarks/bench_alarm.py --runs 100 # quicker, noisier
"""

from __future__ import annotations

import argparse
import math
import os
import time

from judge_rl.overopt.simulate import drop_power, false_alarm_rate, flat, improving


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=400, help="simulated runs per cell")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"machine load: {os.getloadavg()[0]:.1f} (1-min average)")
    print("\nRun-level false-alarm rate (alpha = 0.05; +/- is one Monte Carlo SE)")
    print(f"{'evaluations':>11} | {'gold flat':>15} | {'gold improving':>15}")
    for T in (5, 10, 20, 50, 100):
        runs = args.runs if T <= 20 else max(args.runs // 2, 50)
        cells = []
        for curve in (flat, improving):
            r = false_alarm_rate(curve, T, runs, seed=T)
            cells.append(f"{r:.3f} +/- {math.sqrt(max(r * (1 - r), 1e-9) / runs):.3f}")
        print(f"{T:>11} | {cells[0]:>15} | {cells[1]:>15}   ({runs} runs each)")
    print("\nPower: gold drops by k SE of one evaluation's gold mean halfway through the run")
    print(f"{'drop':>6} | {'evaluations':>11} | {'detected':>8} | {'median delay':>12} | early")
    for k in (1.0, 2.0, 4.0):
        for T in (10, 20, 50):
            r = drop_power(k, T, max(args.runs // 2, 50), seed=int(10 * k) + T)
            delay = "-" if r["median_delay"] is None else f"{r['median_delay']:.0f} evals"
            print(
                f"{k:>4g}SE | {T:>11} | {r['detected']:>8.2f} | {delay:>12} | "
                f"{r['alarm_before_drop']:.3f}"
            )
    print(f"\ntook {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
