"""Ratings benchmark: judge_rl's count-based Bradley-Terry vs FastChat 0.2.36, side by side.

1M synthetic battles among 30 models (Davidson ties, ~20% between equals): one fit plus 100
bootstrap rounds with each tool, in one run on the same battles. FastChat runs from PyPI
(``fschat==0.2.36``) in its own venv (``.bench-venvs/fschat``): ``compute_elo_mle_with_tie`` +
``get_bootstrap_result``, i.e. one scikit-learn logistic regression over all (duplicated) battles
per round. judge_rl aggregates the battles into 435 pair counts once, fits by Newton's method and
bootstraps by multinomial draws over the counts.

Conventions are matched to FastChat's code: scale 400, base 10, mean at 1000, a tie = one win for
each side on duplicated battles (= half a win), and scikit-learn's default L2 penalty (C=1) on
the duplicated rows, which is a Gaussian prior of precision 1 / (2 ln(10)^2) per strength.

Also measures the adaptive pairing's judge-call saving vs round robin on a synthetic field.

Usage: python benchmarks/bench_ratings.py [--battles 1000000] [--rounds 100] [--no-peer]
Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _peer import peer_python, run_peer  # noqa: E402

from judge_rl.tournament import bradley_terry as bt  # noqa: E402
from judge_rl.tournament import synthetic as sy  # noqa: E402

FASTCHAT_PRIOR = 1.0 / (2.0 * math.log(10.0) ** 2)
"""sklearn's default L2 (C=1) on FastChat's duplicated rows, as a prior precision on theta."""

PEER_SCRIPT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from fastchat.serve.monitor.elo_analysis import compute_elo_mle_with_tie, get_bootstrap_result
path, rounds = sys.argv[1], int(sys.argv[2])
df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
t = time.perf_counter(); r = compute_elo_mle_with_tie(df); fit_s = time.perf_counter() - t
t = time.perf_counter(); boot = get_bootstrap_result(df, compute_elo_mle_with_tie, rounds)
boot_s = time.perf_counter() - t
print(json.dumps({"fit_s": fit_s, "boot_s": boot_s, "ratings": {k: float(v) for k, v in r.items()},
                  "boot_lo": {k: float(v) for k, v in boot.quantile(0.025).items()},
                  "boot_hi": {k: float(v) for k, v in boot.quantile(0.975).items()}}))
"""


def ours(a, b, w, names, rounds: int) -> dict:
    t = time.perf_counter()
    counts = bt.aggregate_codes(a, b, w, names)
    agg_s = time.perf_counter() - t
    t = time.perf_counter()
    f = bt.fit(counts, ties="half", prior=FASTCHAT_PRIOR)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    th = bt.bootstrap(counts, rounds, prior=FASTCHAT_PRIOR, x0=f.params, h0=f.hess, seed=1)
    boot_s = time.perf_counter() - t
    boot = bt.to_ratings(th, names, None)
    return {
        "agg_s": agg_s,
        "fit_s": fit_s,
        "boot_s": boot_s,
        "ratings": dict(zip(names, f.ratings.tolist(), strict=True)),
        "boot_lo": dict(zip(names, np.quantile(boot, 0.025, axis=0).tolist(), strict=True)),
        "boot_hi": dict(zip(names, np.quantile(boot, 0.975, axis=0).tolist(), strict=True)),
    }


def adaptive_ratio(seeds: int = 20) -> dict:
    from judge_rl.tournament.pairing import measure_adaptive_savings

    t = time.perf_counter()
    res = measure_adaptive_savings(seeds=seeds)
    res["time_s"] = time.perf_counter() - t
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--battles", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--no-peer", action="store_true", help="skip FastChat (ours only)")
    args = ap.parse_args(argv)

    theta = sy.strengths(args.models, seed=0)
    names = sy.model_names(args.models)
    a, b, w = sy.simulate(theta, args.battles, nu=0.5, seed=1)
    print(
        f"{args.battles:,} battles among {args.models} models, ties {np.mean(w == 2):.1%}; "
        f"{args.rounds} bootstrap rounds"
    )

    r = ours(a, b, w, names, args.rounds)
    print(
        f"judge_rl : aggregate {r['agg_s']:.3f}s  fit {r['fit_s']:.4f}s  "
        f"bootstrap x{args.rounds} {r['boot_s']:.3f}s"
    )

    peer = None
    if not args.no_peer:
        py = peer_python(
            "fschat", ["fschat==0.2.36", "pandas", "scikit-learn", "tqdm", "plotly", "pyarrow"]
        )
        with tempfile.TemporaryDirectory() as d:
            import pandas as pd

            path = str(Path(d) / "battles.parquet")
            win = np.array(["model_a", "model_b", "tie"])[w]
            pd.DataFrame(
                {"model_a": np.array(names)[a], "model_b": np.array(names)[b], "winner": win}
            ).to_parquet(path)
            script = str(Path(d) / "peer.py")
            Path(script).write_text(PEER_SCRIPT)
            peer = json.loads(run_peer(py, script, path, str(args.rounds)).strip().splitlines()[-1])
        print(
            f"fschat   : fit {peer['fit_s']:.3f}s  bootstrap x{args.rounds} {peer['boot_s']:.2f}s"
        )

    print()
    print(
        f"{'model':<10} {'judge_rl':>9} {'fschat':>9} {'diff':>7}   {'ours 95% CI':>17} "
        f"{'fschat 95% CI':>17}"
    )
    top = sorted(names, key=lambda m: -r["ratings"][m])
    max_diff = 0.0
    for m in top:
        ours_r = r["ratings"][m]
        line = f"{m:<10} {ours_r:9.2f}"
        if peer:
            pr = peer["ratings"][m]
            max_diff = max(max_diff, abs(ours_r - pr))
            line += (
                f" {pr:9.2f} {ours_r - pr:+7.3f}   [{r['boot_lo'][m]:7.1f},{r['boot_hi'][m]:7.1f}]"
            )
            line += f" [{peer['boot_lo'][m]:7.1f},{peer['boot_hi'][m]:7.1f}]"
        print(line)

    ad = adaptive_ratio()
    print()
    print(
        f"adaptive pairing: {ad['field']}; round robin {ad['rr_calls']} comparisons reach "
        f"top-{ad['k']} accuracy {ad['rr_accuracy']:.3f}; adaptive reaches it after "
        f"{ad['adaptive_calls']} ({ad['seeds']} seeds, {ad['time_s']:.1f}s)"
    )
    print()
    if peer:
        print(
            f"RATIO bootstrap_speedup_vs_fschat_0.2.36 {peer['boot_s'] / r['boot_s']:.0f}x "
            f"({peer['boot_s']:.2f}s vs {r['boot_s']:.3f}s, {args.rounds} rounds)"
        )
        ours_fit = r["fit_s"] + r["agg_s"]
        print(
            f"RATIO fit_speedup_vs_fschat_0.2.36 {peer['fit_s'] / ours_fit:.1f}x "
            f"({peer['fit_s']:.3f}s vs {ours_fit:.3f}s incl. aggregation)"
        )
        print(f"RATIO max_rating_diff_vs_fschat {max_diff:.3f} Elo")
    print(
        f"RATIO adaptive_calls_vs_round_robin {ad['ratio']:.3f} "
        f"({ad['adaptive_calls']} vs {ad['rr_calls']} comparisons for equal top-{ad['k']} accuracy)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
