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
import json, sys, time, types, warnings
warnings.filterwarnings("ignore")
import pandas as pd
# elo_analysis imports fastchat.model (torch, transformers, psutil) only for get_model_info, which
# the rating functions never call: stub that package so the peer venv needs no torch.
_m = types.ModuleType("fastchat.model"); _m.__path__ = []
_r = types.ModuleType("fastchat.model.model_registry"); _r.get_model_info = lambda name: None
sys.modules["fastchat.model"] = _m; sys.modules["fastchat.model.model_registry"] = _r
from fastchat.serve.monitor.elo_analysis import compute_elo_mle_with_tie, get_bootstrap_result
path, rounds = sys.argv[1], int(sys.argv[2])
df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
t, c = time.perf_counter(), time.process_time(); r = compute_elo_mle_with_tie(df)
fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - c
t, c = time.perf_counter(), time.process_time()
boot = get_bootstrap_result(df, compute_elo_mle_with_tie, rounds)
boot_s, boot_cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"fit_s": fit_s, "boot_s": boot_s, "fit_cpu": fit_cpu, "boot_cpu": boot_cpu, "ratings": {k: float(v) for k, v in r.items()},
                  "boot_lo": {k: float(v) for k, v in boot.quantile(0.025).items()},
                  "boot_hi": {k: float(v) for k, v in boot.quantile(0.975).items()}}))
"""


class _Clock:
    """Wall and CPU (process) time of a block; CPU time is the fairer figure on a busy machine."""

    def __enter__(self) -> _Clock:
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


def ours(a, b, w, names, rounds: int, repeats: int = 3) -> dict:
    """Best of ``repeats`` timings (after one warm-up) of aggregate, fit and bootstrap."""
    best: dict = {}
    ours_once(a[:1000], b[:1000], w[:1000], names, 2)  # warm-up: imports, BLAS threads
    for _ in range(repeats):
        r = ours_once(a, b, w, names, rounds)
        for k in ("agg_s", "fit_s", "boot_s", "agg_cpu", "fit_cpu", "boot_cpu"):
            best[k] = min(best.get(k, float("inf")), r[k])
    r.update(best)
    return r


def ours_once(a, b, w, names, rounds: int) -> dict:
    with _Clock() as c1:
        counts = bt.aggregate_codes(a, b, w, names)
    with _Clock() as c2:
        f = bt.fit(counts, ties="half", prior=FASTCHAT_PRIOR)
    with _Clock() as c3:
        th = bt.bootstrap(counts, rounds, prior=FASTCHAT_PRIOR, x0=f.params, h0=f.hess, seed=1)
    boot = bt.to_ratings(th, names, None)
    return {
        "agg_s": c1.wall,
        "fit_s": c2.wall,
        "boot_s": c3.wall,
        "agg_cpu": c1.cpu,
        "fit_cpu": c2.cpu,
        "boot_cpu": c3.cpu,
        "ratings": dict(zip(names, f.ratings.tolist(), strict=True)),
        "boot_lo": dict(zip(names, np.quantile(boot, 0.025, axis=0).tolist(), strict=True)),
        "boot_hi": dict(zip(names, np.quantile(boot, 0.975, axis=0).tolist(), strict=True)),
    }


def log_posterior(counts: bt.PairCounts, theta: np.ndarray, prior: float) -> tuple[float, float]:
    """FastChat's objective in our units (ties half, L2 prior) and its largest |gradient|."""
    inc = counts.incidence()
    d = inc @ theta  # (P,)
    s_i = counts.cells[:, 0] + 0.5 * counts.cells[:, 2]
    s_j = counts.cells[:, 1] + 0.5 * counts.cells[:, 2]
    ll = float(np.sum(-s_i * np.logaddexp(0, -d) - s_j * np.logaddexp(0, d)))
    ll -= 0.5 * prior * float(theta @ theta)
    g, _ = bt.half_grad_hess(theta[None], counts.cells[None], inc, prior, hess=False)
    return ll, float(np.max(np.abs(g)))


def adaptive_ratios(seeds: int = 12) -> list[dict]:
    """Adaptive vs round robin on five leaderboard-like fields and one evenly spaced field."""
    from judge_rl.tournament.pairing import measure_adaptive_savings

    out = []
    for fs in range(5):
        t = time.perf_counter()
        res = measure_adaptive_savings(
            spread_elo=200.0, field_seed=fs, seeds=seeds, max_fraction=0.6
        )
        res["time_s"] = time.perf_counter() - t
        out.append(res)
    t = time.perf_counter()
    res = measure_adaptive_savings(gap_elo=25.0, seeds=seeds, max_fraction=0.6)
    res["time_s"] = time.perf_counter() - t
    out.append(res)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--battles", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--no-peer", action="store_true", help="skip FastChat (ours only)")
    ap.add_argument(
        "--peer-rounds",
        type=int,
        default=None,
        help="bootstrap rounds to time FastChat on (default --rounds); fewer are scaled up "
        "linearly to --rounds (each round is an independent refit), and the output says so",
    )
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
        f"bootstrap x{args.rounds} {r['boot_s']:.3f}s wall / {r['boot_cpu']:.3f}s CPU (best of 3)"
    )

    peer = None
    if not args.no_peer:
        py = peer_python(
            "fschat",
            ["fschat==0.2.36", "pandas", "scikit-learn", "tqdm", "plotly", "pyarrow", "pytz"],
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
            peer_rounds = args.peer_rounds or args.rounds
            out = run_peer(py, script, path, str(peer_rounds), timeout=4 * 3600)
            peer = json.loads(out.strip().splitlines()[-1])
            if peer_rounds != args.rounds:  # per-round cost is constant: scale to --rounds
                scale = args.rounds / peer_rounds
                peer["boot_s"] *= scale
                peer["boot_cpu"] *= scale
                peer["note"] = f"FastChat timed on {peer_rounds} rounds, scaled x{scale:g}"
                print(peer["note"])
        print(
            f"fschat   : fit {peer['fit_s']:.3f}s  bootstrap x{args.rounds} {peer['boot_s']:.2f}s "
            f"wall / {peer['boot_cpu']:.2f}s CPU"
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

    if peer:
        counts = bt.aggregate_codes(a, b, w, names)
        th_ours = (np.array([r["ratings"][m] for m in names]) - 1000.0) / bt.ELO_PER_UNIT
        th_peer = (np.array([peer["ratings"][m] for m in names]) - 1000.0) / bt.ELO_PER_UNIT
        lp_o, g_o = log_posterior(counts, th_ours, FASTCHAT_PRIOR)
        lp_p, g_p = log_posterior(counts, th_peer, FASTCHAT_PRIOR)
        print(
            f"\nsame objective (FastChat's: ties half, sklearn C=1 L2) at each solution: judge_rl "
            f"{lp_o:.4f} (max |grad| {g_o:.2e}), fschat {lp_p:.4f} (max |grad| {g_p:.2e}): "
            f"{'fschat stopped short of the optimum (sklearn lbfgs tol=1e-4)' if lp_o > lp_p else 'fschat is at least as good'}"
        )
        if peer.get("note"):
            print(f"(fschat intervals are from its {args.peer_rounds} timed rounds only)")
    print()
    print(
        "adaptive pairing vs round robin (top-3 accuracy of a Bradley-Terry fit; round robin = "
        "every pair on every prompt)"
    )
    ads = adaptive_ratios()
    for ad in ads:
        reached = "not reached by 60%" if ad["ratio"] >= 1 else f"{ad['adaptive_calls']}"
        print(
            f"  {ad['field']}: round robin {ad['rr_calls']} comparisons -> accuracy "
            f"{ad['rr_accuracy']:.3f}; adaptive reaches it after {reached}  "
            f"ratio {ad['ratio']:.3f}  ({ad['seeds']} draws, {ad['time_s']:.0f}s)"
        )
    leaderboard_like = [ad["ratio"] for ad in ads[:5]]
    print()
    if peer:
        print(
            f"RATIO bootstrap_speedup_vs_fschat_0.2.36 {peer['boot_cpu'] / r['boot_cpu']:.0f}x CPU "
            f"time ({peer['boot_cpu']:.2f}s vs {r['boot_cpu']:.3f}s, {args.rounds} rounds); "
            f"{peer['boot_s'] / r['boot_s']:.0f}x wall ({peer['boot_s']:.2f}s vs {r['boot_s']:.3f}s)"
            + (f" [{peer['note']}]" if peer.get("note") else "")
        )
        ours_fit = r["fit_cpu"] + r["agg_cpu"]
        print(
            f"RATIO fit_speedup_vs_fschat_0.2.36 {peer['fit_cpu'] / ours_fit:.1f}x CPU time "
            f"({peer['fit_cpu']:.3f}s vs {ours_fit:.3f}s incl. aggregation)"
        )
        print(f"RATIO max_rating_diff_vs_fschat {max_diff:.3f} Elo")
    print(
        f"RATIO adaptive_calls_vs_round_robin {np.median(leaderboard_like):.3f} (median over 5 "
        f"leaderboard-like fields, range {min(leaderboard_like):.3f}-{max(leaderboard_like):.3f}; "
        f"evenly spaced field {ads[-1]['ratio']:.3f}; equal top-3 accuracy)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
