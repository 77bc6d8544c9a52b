"""Ratings benchmark: `judge-rl ratings` end to end and the library path vs FastChat HEAD.

The peer is current FastChat's aggregated Bradley-Terry: ``compute_bt`` + ``compute_bootstrap_bt``
from ``fastchat/serve/monitor/rating_systems.py`` (lm-sys/FastChat, Apache-2.0), run as FastChat
runs it — its own code, in its own venv, in a subprocess — with pandas reading the same CSV. PyPI's
``fschat`` (0.2.36) predates that file, so point ``--fastchat-src`` (or ``$FASTCHAT_HEAD_SRC``)
at a checkout's ``rating_systems.py``; without it the peer is skipped with a message. The
FastChat code is never copied into this repository.

Two comparisons, each printed as a ratio:

* command: ``python -m judge_rl ratings battles.csv`` (the default output, a rich table, and the
  run log) vs ``python peer.py battles.csv`` (prints the ratings), process start to exit, CPU
  time of the process and its children (FastChat's bootstrap runs in a multiprocessing pool)
  and wall time; medians of ``--repeats`` interleaved runs, with ``--bootstrap 100`` and
  ``--bootstrap 0``. Both run with cached bytecode, as after a ``pip install`` (the
  ``PYTHONPYCACHEPREFIX`` is a temp folder; ``PYTHONDONTWRITEBYTECODE`` is dropped), after one
  untimed warm-up run each. The same battles as JSONL and Parquet are timed for judge_rl too;
* library: judge_rl's ``aggregate_codes`` + ``leaderboard`` on integer codes vs FastChat's
  ``compute_bt`` + ``compute_bootstrap_bt`` on a DataFrame already in memory.

Both fit the same objective (plain Bradley-Terry MLE, ties half a win): the printed rating
difference is the check. The machine's load average is printed before and after; on a shared
machine CPU time is the fairer figure.

Also the adaptive stop's simulated error by gap (always-valid confidence sequences vs the naive
z-test), and adaptive pairing against round robin at EQUAL budget (``--skip-adaptive`` to leave
it out).

Usage: python benchmarks/bench_ratings.py [--battles 1000000] [--models 30] [--rounds 100]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from judge_rl.tournament import bradley_terry as bt  # noqa: E402
from judge_rl.tournament import synthetic as sy  # noqa: E402

PEER_SCRIPT = r"""
import json, os, resource, sys, time
t_start = time.perf_counter()
sys.path.insert(0, os.path.dirname(sys.argv[3]))
import pandas as pd
from rating_systems import compute_bt, compute_bootstrap_bt
mode, path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[4])
df = pd.read_csv(path)
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
t0, c0 = time.perf_counter(), cpu()
r = compute_bt(df)
boot = compute_bootstrap_bt(df, num_round=rounds) if rounds else None
lib_wall, lib_cpu = time.perf_counter() - t0, cpu() - c0
out = {"ratings": {k: float(v) for k, v in r.items()}, "lib_wall": lib_wall, "lib_cpu": lib_cpu}
if boot is not None:
    out["lo"] = {k: float(v) for k, v in boot.quantile(0.025).items()}
    out["hi"] = {k: float(v) for k, v in boot.quantile(0.975).items()}
print(json.dumps(out) if mode == "json" else r.to_string())
"""


PHASES_SCRIPT = r"""
import io, os, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out, last = [], cpu()
def mark(name):
    global last
    now = cpu()
    out.append((name, now - last))
    last = now
path, rounds, run = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the command sets it
import judge_rl.cli
mark("judge_rl.cli (argparse, logging, errors)")
import numpy
mark("import numpy")
import pyarrow, pyarrow.csv
mark("import pyarrow")
from judge_rl.commands import ratings
from judge_rl.tournament import battles, bradley_terry as bt, table
mark("import the command's modules")
bs = battles.read_battles(path)
mark("read the file into codes")
counts = bs.counts()
mark("aggregate to pair counts")
lb = bt.leaderboard(counts, bootstrap_rounds=rounds, seed=0)
mark(f"fit + {rounds} bootstrap rounds")
rows = [battles.finite_or_none(r) for r in lb.rows]
sec = {"leaderboard": rows, "models": counts.models, "win_matrix": counts.win_matrix(),
       "predicted": lb.fit.predicted().tolist(), "interval": lb.interval}
ratings.write_run_log(run, command="ratings", config={}, timings={}, notes=[], tournament=sec)
mark("run log")
from judge_rl.console import console
from rich.console import Console
Console(file=io.StringIO(), width=100).print(table.rich_table(rows, title="t", interval=lb.interval))
mark("rich table (import + render)")
print("PHASES", __import__("json").dumps(out))
"""


def phases(csv: Path, rounds: int, env: dict[str, str], d: Path) -> None:
    """Where the command's CPU goes: the interpreter's start, then each phase in one process
    (the command's own steps, timed with getrusage). Best of 3 runs per phase."""
    script = d / "phases.py"
    script.write_text(PHASES_SCRIPT)
    (d / "phases_run").mkdir(exist_ok=True)
    best: dict[str, float] = {}
    for _ in range(3):
        _, start_cpu, _ = timed([sys.executable, "-c", "pass"], env)
        best["python start (site, editable-install finder)"] = min(
            best.get("python start (site, editable-install finder)", math.inf), start_cpu
        )
        _, _, out = timed(
            [sys.executable, str(script), str(csv), str(rounds), str(d / "phases_run")], env
        )
        line = [x for x in out.splitlines() if x.startswith("PHASES ")][-1]
        for name, v in json.loads(line[len("PHASES ") :]):
            best[name] = min(best.get(name, math.inf), v)
    print()
    print(f"where the command's CPU goes (best of 3 per phase, {rounds} rounds; {load()})")
    for name, v in best.items():
        print(f"  {name:48} {v:6.3f} s")
    print(f"  {'sum':48} {sum(best.values()):6.3f} s")


def _children_cpu() -> float:
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and its children, stdout) of one subprocess run."""
    c0, t0 = _children_cpu(), time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return wall, cpu, r.stdout


def peer_setup(args: argparse.Namespace) -> tuple[str, str] | None:
    """(python, rating_systems.py) for FastChat HEAD, or None (with a message) when absent."""
    src = args.fastchat_src or os.environ.get("FASTCHAT_HEAD_SRC", "")
    if not src or not Path(src).is_file():
        print(
            "peer skipped: point --fastchat-src (or $FASTCHAT_HEAD_SRC) at FastChat HEAD's "
            "fastchat/serve/monitor/rating_systems.py"
        )
        return None
    py = args.peer_python
    if not py:
        from _peer import peer_python

        py = peer_python("fastchat-head", ["numpy", "scipy", "pandas", "tqdm"])
    return py, src


def load() -> str:
    """The machine's load, as ``uptime`` prints it (1, 5 and 15 minute averages)."""
    la = os.getloadavg()
    return f"load average (uptime) {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs"


def write_other_formats(d: Path, ma: np.ndarray, mb: np.ndarray, win: np.ndarray) -> dict:
    """The same battles as JSONL and Parquet: {kind: path}."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl, parquet = d / "battles.jsonl", d / "battles.parquet"
    with jsonl.open("w") as f:
        f.writelines(
            json.dumps({"model_a": x, "model_b": y, "winner": z}) + "\n"
            for x, y, z in zip(ma.tolist(), mb.tolist(), win.tolist(), strict=True)
        )
    table = pa.table({"model_a": ma.tolist(), "model_b": mb.tolist(), "winner": win.tolist()})
    pq.write_table(table, parquet)
    return {"jsonl": jsonl, "parquet": parquet}


def library_ours(a, b, w, names, rounds: int, repeats: int) -> dict:
    """Best CPU/wall of aggregate + fit + bootstrap on integer codes (after a warm-up)."""
    bt.leaderboard(bt.aggregate_codes(a[:1000], b[:1000], w[:1000], names), bootstrap_rounds=2)
    best = {"cpu": math.inf, "wall": math.inf}
    lb = None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        lb = bt.leaderboard(bt.aggregate_codes(a, b, w, names), bootstrap_rounds=rounds, seed=1)
        best["cpu"] = min(best["cpu"], time.process_time() - c0)
        best["wall"] = min(best["wall"], time.perf_counter() - t0)
    assert lb is not None
    best["ratings"] = {str(r["model"]): float(r["rating"]) for r in lb.rows}  # type: ignore[arg-type]
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--battles", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per timing")
    ap.add_argument("--fastchat-src", default=None, help="FastChat HEAD's rating_systems.py")
    ap.add_argument("--peer-python", default=None, help="python of the peer's venv")
    ap.add_argument("--no-peer", action="store_true", help="skip FastChat (ours only)")
    ap.add_argument("--skip-adaptive", action="store_true")
    ap.add_argument("--adaptive-seeds", type=int, default=40)
    ap.add_argument("--adaptive-prompts", type=int, default=300)
    args = ap.parse_args(argv)

    print(load())
    theta = sy.strengths(args.models, seed=0)
    names = sy.model_names(args.models)
    a, b, w = sy.simulate(theta, args.battles, nu=0.5, seed=1)
    print(
        f"{args.battles:,} battles among {args.models} models, ties {np.mean(w == 2):.1%}; "
        f"{args.rounds} bootstrap rounds; medians of {args.repeats} interleaved runs"
    )
    peer = None if args.no_peer else peer_setup(args)
    with tempfile.TemporaryDirectory() as d:
        # Bytecode cached, as after a pip install, for both sides.
        env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="100")
        env["PYTHONPYCACHEPREFIX"] = str(Path(d) / "pycache")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        csv = Path(d) / "battles.csv"
        win = np.array(["model_a", "model_b", "tie"])[w]
        na = np.array(names)
        with csv.open("w") as f:
            f.write("model_a,model_b,winner\n")
            f.writelines(f"{x},{y},{z}\n" for x, y, z in zip(na[a], na[b], win, strict=True))
        other = write_other_formats(Path(d), na[a], na[b], win)
        script = Path(d) / "peer.py"
        script.write_text(PEER_SCRIPT)
        times: dict[str, list[tuple[float, float]]] = {}

        def ours(path: Path, rounds: int) -> list[str]:
            run = ["--bootstrap", str(rounds), "--run", str(Path(d) / "run")]
            return [sys.executable, "-m", "judge_rl", "ratings", str(path), *run]

        def theirs(rounds: int) -> list[str]:
            assert peer is not None
            return [peer[0], str(script), "text", str(csv), peer[1], str(rounds)]

        timed(ours(csv, 0), env)  # warm-up: writes the bytecode
        if peer:
            timed(theirs(0), env)
        for _ in range(args.repeats):
            for rounds in (args.rounds, 0):
                times.setdefault(f"ours{rounds}", []).append(timed(ours(csv, rounds), env)[:2])
                if peer:
                    times.setdefault(f"peer{rounds}", []).append(timed(theirs(rounds), env)[:2])
            for kind, path in other.items():
                times.setdefault(kind, []).append(timed(ours(path, args.rounds), env)[:2])
        med = {
            k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
            for k, v in times.items()
        }
        phases(csv, args.rounds, env, Path(d))
        lib = library_ours(a, b, w, names, args.rounds, args.repeats)
        peer_lib = None
        if peer:
            _, _, out = timed([peer[0], str(script), "json", str(csv), peer[1], str(args.rounds)])
            peer_lib = json.loads(out.strip().splitlines()[-1])
    print()
    print(f"{'':44} {'wall s':>8} {'CPU s':>8}")
    for rounds in (args.rounds, 0):
        for who in ("ours", "peer"):
            key = f"{who}{rounds}"
            if key in med:
                label = "judge-rl ratings" if who == "ours" else "FastChat HEAD script"
                print(
                    f"{label + f' --bootstrap {rounds}':44} {med[key][0]:8.2f} {med[key][1]:8.2f}"
                )
    for kind in ("jsonl", "parquet"):
        label = f"judge-rl ratings, {kind} --bootstrap {args.rounds}"
        print(f"{label:44} {med[kind][0]:8.2f} {med[kind][1]:8.2f}")
    print(
        f"{'library, ours (' + str(args.rounds) + ' rounds)':44} {lib['wall']:8.3f} {lib['cpu']:8.3f}"
    )
    if peer_lib:
        print(
            f"{'library, FastChat (' + str(args.rounds) + ' rounds)':44} "
            f"{peer_lib['lib_wall']:8.3f} {peer_lib['lib_cpu']:8.3f}"
        )
        diff = max(
            abs(lib["ratings"][m] - peer_lib["ratings"][m] - _offset(lib, peer_lib)) for m in names
        )
        print(f"max |rating difference| vs FastChat (same mean): {diff:.3f} Elo")
    print(load())
    print()
    if peer:
        for rounds in (args.rounds, 0):
            o, p = med[f"ours{rounds}"], med[f"peer{rounds}"]
            print(
                f"RATIO ratings_command_vs_fastchat_head_bootstrap{rounds} {p[1] / o[1]:.1f}x CPU "
                f"({p[1]:.2f}s vs {o[1]:.2f}s), {p[0] / o[0]:.1f}x wall ({p[0]:.2f}s vs {o[0]:.2f}s)"
            )
        if peer_lib:
            print(
                f"RATIO ratings_library_vs_fastchat_head {peer_lib['lib_cpu'] / lib['cpu']:.1f}x CPU "
                f"({peer_lib['lib_cpu']:.2f}s vs {lib['cpu']:.3f}s, fit + {args.rounds} rounds)"
            )
        p = med[f"peer{args.rounds}"]
        for kind in ("jsonl", "parquet"):
            o = med[kind]
            print(
                f"RATIO ratings_command_{kind}_vs_fastchat_head_csv_bootstrap{args.rounds} "
                f"{p[1] / o[1]:.1f}x CPU ({p[1]:.2f}s vs {o[1]:.2f}s)"
            )
    print(load())
    lc_example()
    if not args.skip_adaptive:
        adaptive_report(args.adaptive_seeds, args.adaptive_prompts)
    return 0


def _offset(ours: dict, peer: dict) -> float:
    """Mean difference (FastChat centres on 1000 differently when no anchor model is present)."""
    ms = list(ours["ratings"])
    return float(np.mean([ours["ratings"][m] - peer["ratings"][m] for m in ms]))


def adaptive_report(seeds: int, n_prompts: int = 300) -> None:
    """The adaptive stop's error by gap (always-valid vs naive), and adaptive pairing against
    round robin at EQUAL budget (round robin cut at the number of comparisons adaptive used)."""
    from judge_rl.tournament.pairing import stopping_error

    print()
    print(
        f"adaptive stop: 8 models evenly spaced, top-3 at 95%, Davidson nu 0.3, {n_prompts} "
        f"prompts, a look after every batch of 16; {seeds} runs per row"
    )
    head = (
        f"{'rule':<6} {'gap':>4} {'stopped':>8} {'wrong':>6} {'P(wrong|stop)':>14} "
        f"{'mean calls':>10} {'of RR':>6} {'acc adaptive':>12} {'acc RR same budget':>19}"
    )
    print(head)
    rows = []
    for gap in (10, 25, 40, 80):
        for rule in ("cs", "naive"):
            t = time.perf_counter()
            r = stopping_error(
                gap_elo=gap, seeds=seeds, n_prompts=n_prompts, batch_size=16, stopping=rule
            )
            rows.append(r)
            print(
                f"{rule:<6} {gap:>4} {r['stopped']:>8} {r['wrong']:>6} {r['error']:>14.3f} "
                f"{r['mean_calls']:>10.0f} {r['mean_calls'] / r['round_robin_calls']:>6.2f} "
                f"{r['adaptive_accuracy']:>12.3f} {r['round_robin_accuracy_equal_budget']:>19.3f}"
                f"   ({time.perf_counter() - t:.0f}s)",
                flush=True,
            )
    cs = [r for r, rule in zip(rows, ["cs", "naive"] * 4, strict=True) if rule == "cs"]
    worst = max(float(r["error"]) for r in cs)
    print(
        f"RATIO adaptive_stop_max_error_cs {worst:.3f} (bound 0.05, gaps 10-80 Elo, "
        f"{seeds} runs each)"
    )
    for r in cs:
        print(
            f"RATIO adaptive_vs_round_robin_equal_budget_gap{r['gap_elo']} top-3 accuracy "
            f"{r['adaptive_accuracy']:.3f} vs {r['round_robin_accuracy_equal_budget']:.3f} at "
            f"{r['mean_calls']:.0f} calls ({r['mean_calls'] / r['round_robin_calls']:.2f} of a "
            "full round robin)"
        )


def lc_example(seed: int = 1) -> None:
    """A worked example of length_controlled_v1: a contestant as good as the baseline but ~300
    characters longer, a judge that likes length (logit +1.5 tanh(delta / 300)), instruction
    difficulty known (N(0, 1), from a file); then the same with the baseline's length-gamed
    variants supplied (lambda 0.2)."""
    import math

    from judge_rl.tournament.winrate import PrefRow, lc_v1

    rng = np.random.default_rng(seed)
    diff = {f"q{k}": float(rng.normal()) for k in range(805)}

    def rows(model: str, n: int, quality: float, extra: float) -> list[PrefRow]:
        out = []
        for k in range(n):
            lb = int(rng.integers(200, 800))
            lm = max(0, lb + int(rng.normal(extra, 300)))
            z = quality + 1.5 * math.tanh((lm - lb) / 300) - diff[f"q{k}"]
            p = float(rng.random() < 1 / (1 + math.exp(-z)))
            out.append(PrefRow(model, "base", f"q{k}", p, lm, lb))
        return out

    m = rows("verbose", 805, 0.0, 300)
    gamed = rows("base_verbose", 805, 0.0, 300) + rows("base_concise", 805, 0.0, -300)
    raw = float(np.mean([r.p for r in m]))
    truth = float(np.mean([1 / (1 + math.exp(diff[f"q{k}"])) for k in range(805)]))
    print()
    print(
        "length_controlled_v1 worked example: 805 instructions, contestant = baseline quality "
        "+300 chars, judge logit +1.5 tanh(delta_len / 300) - difficulty"
    )
    print(f"  raw win rate {raw:.3f}; no-length-bias truth {truth:.3f}")
    for label, res in (
        ("own rows", lc_v1(m, difficulty=diff)),
        ("with gamed baselines", lc_v1(m, difficulty=diff, gamed=gamed)),
    ):
        w = res["weights"]
        print(
            f"  {label:<22} LC {res['lc_win_rate']:.3f}  weights: length {w['length']:+.3f}, "
            f"instruction_difficulty {w['instruction_difficulty']:+.3f}, model "
            f"{w['model']:+.3f}, C {w['C']:g}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
