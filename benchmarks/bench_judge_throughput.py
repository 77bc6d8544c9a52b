"""Judging throughput against a local OpenAI-compatible endpoint, judge_rl vs AlpacaEval.

The endpoint (``judge_rl.backends._fakeserver --lean`` in its own process, so it does not share
the client's event loop; bare asyncio, so it costs the shared cores little) answers every
request after a fixed latency (50 ms). With 64 requests in
flight the ceiling is 64 / 0.05 = 1,280 judgments/s. Rows:

- ``judge-rl label CLI``: the command a user runs, end to end (``python -m judge_rl label`` from
  a pairs file on disk to the preferences file and run log; default settings: judgment cache on,
  in a fresh file; progress bar on; order fixed by the spec): wall time from process start to
  exit, and the judging window its run log records. It runs from compiled bytecode, as an
  installed package does (a warm-up run fills a private ``PYTHONPYCACHEPREFIX``). A second run
  on ``--small`` pairs gives the start-up CPU; the difference is the CPU per judgment;
  ``--cli-runs N`` makes N full runs (each listed with the load average at its end) and
  reports the median one;
- ``judge_rl backend``: :class:`OpenAIBackend` alone (one shared client, at most 64 in flight);
- ``judge_rl judge``: the full judge layer (spec -> LLMJudge -> verdict parsing -> Judgment
  records; cache off, order fixed) over the same backend;
- ``AlpacaEval``: ``alpaca_eval.decoders.openai.openai_completions`` (what its annotators call)
  with 64 worker threads, in its own venv (``.bench-venvs/alpaca-eval``), pointed at the same
  endpoint through ``OPENAI_API_BASE``; ``--peer-n`` judgments (it is ~100x slower).

Client CPU per judgment is the client process's CPU time (user + system) divided by the
judgments; the endpoint's CPU per request is read from ``/proc`` (Linux). On a shared machine
wall-clock rates move with the load while CPU per judgment moves much less, so the benchmark
also prints what the CPU figures imply on a quiet 2-core machine (client on one core, endpoint
on the other), as a range: at best the client's CPU overlaps the endpoint's latency fully (rate
= min(limit, 1 / client CPU per judgment, 1 / endpoint CPU per request)), at worst not at all
(rate = limit / (1 + limit * client CPU per judgment)); end to end = n / (start-up CPU + n /
rate). It prints ``uptime`` before and after, a table and ``RATIO`` lines; ``--phases`` runs the
command once more and prints its CPU time by phase (start-up, reading, the estimate, judging,
records, the preference file, the run log). Every file goes to one temporary folder, removed at
the end. Run: ``python benchmarks/bench_judge_throughput.py`` (``--skip-peer`` to time judge_rl
only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

PEER_SCRIPT = r"""
import json, os, sys, time
n, concurrency = int(sys.argv[1]), int(sys.argv[2])
import logging
logging.disable(logging.INFO)
from alpaca_eval.decoders.openai import openai_completions

prompts = [
    "<|im_start|>system\nYou are a helpful evaluator.<|im_end|>\n<|im_start|>user\n"
    f"question-{i}: which output is better? Output (a): first answer {i}. Output (b): second "
    f"answer {i}. Answer with [[A]] or [[B]].<|im_end|>"
    for i in range(n)
]
c0 = time.process_time()
t0 = time.perf_counter()
out = openai_completions(prompts, model_name="gpt-4o-mini", max_tokens=32, num_procs=concurrency,
                         price_per_token=0.0, requires_chatml=True, temperature=0.0)
wall = time.perf_counter() - t0
cpu = time.process_time() - c0
ok = sum(1 for c in out["completions"] if "[[" in c)
print(json.dumps({"n": n, "ok": ok, "wall_s": wall, "cpu_s": cpu}))
"""


PHASES_SCRIPT = r"""
import functools, inspect, json, os, resource, sys, time
T0 = float(os.environ.get("BENCH_T0") or time.time())  # the benchmark's clock at the spawn
marks = [("start", time.process_time(), T0)]
def mark(name):
    marks.append((name, time.process_time(), time.time()))
mark("interpreter start")
import judge_rl.data as D
import judge_rl.judge as J
import judge_rl.pipeline.label as PL
import judge_rl.runlog as R
from judge_rl.cli import main
mark("start-up (imports)")
def wrap(mod, name, label, once=False):
    f = getattr(mod, name, None)
    if f is None:
        return
    seen = []
    if inspect.iscoroutinefunction(f):
        async def w(*a, **k):
            mark(label + ": before"); r = await f(*a, **k); mark(label); return r
    else:
        def w(*a, **k):
            if once and seen:  # a later call runs inside another phase: not marked
                return f(*a, **k)
            seen.append(1)
            mark(label + ": before"); r = f(*a, **k); mark(label); return r
    setattr(mod, name, functools.wraps(f)(w))
wrap(PL, "read_input", "read input")
wrap(PL, "open_stream", "open the input (streamed run: format from its first row)")
wrap(PL, "quiet_gc", "gc freeze", once=True)
wrap(J, "estimate", "estimate (render, cache keys, lookups)")
wrap(PL, "judge_streamed", "judging (streamed: reading, keys, lookups, renders inside)")
wrap(PL, "make_labels", "records + summary")
wrap(D, "write_preferences", "write preferences")
inside = {}
def acc(mod, name, label):
    # CPU of the calls of mod.name, summed; they run inside the phase around them, which
    # already counts it (listed with "inside")
    f = getattr(mod, name, None)
    if f is None:
        return
    if inspect.isgeneratorfunction(f):
        def w(*a, **k):
            it = f(*a, **k)
            while True:
                t = time.process_time()
                try:
                    x = next(it)
                except StopIteration:
                    inside[label] = inside.get(label, 0.0) + time.process_time() - t
                    return
                inside[label] = inside.get(label, 0.0) + time.process_time() - t
                yield x
        setattr(mod, name, functools.wraps(f)(w))
        return
    else:
        def w(*a, **k):
            t = time.process_time()
            try:
                return f(*a, **k)
            finally:
                inside[label] = inside.get(label, 0.0) + time.process_time() - t
    setattr(mod, name, functools.wraps(f)(w))
import judge_rl.data._read as DR
import judge_rl.judge.cache as JC
import judge_rl.judge.llm as JL
acc(DR, "iter_comparisons", "  inside: reading rows (streamed)")
acc(JC, "_compare_keys", "  inside: cache keys")
acc(JC.JudgmentCache, "get_many", "  inside: cache lookups")
acc(JL.LLMJudge, "estimate", "  inside: estimate renders")
events = {}
try:
    import judge_rl.backends.openai as O
    one = O.OpenAIBackend._one
    async def first_one(self, req):
        events.setdefault("first request sent (wall s since start)", time.time() - T0)
        return await one(self, req)
    O.OpenAIBackend._one = first_one
except ImportError:
    pass
PS = getattr(PL, "PairStream", None)
if PS is not None:
    chunks = PS.chunks
    async def timed_chunks(self, *a, **k):
        async for c in chunks(self, *a, **k):
            yield c
        events["input all read, streamed (wall s since start)"] = time.time() - T0
    PS.chunks = timed_chunks
save = R.RunLog.save
def logged(self, d, **kw):
    mark("run log: before"); r = save(self, d, **kw); mark("run log"); return r
R.RunLog.save = logged
import gc, types
gc_t = [0.0, 0.0, 0]  # start of the current collection, CPU s in collections, collections
def gc_timed(phase, info):
    if phase == "start":
        gc_t[0] = time.process_time()
    else:
        gc_t[1] += time.process_time() - gc_t[0]; gc_t[2] += 1
gc.callbacks.append(gc_timed)
# the command as `judge-rl` runs it (the command keeps its run for the OS only in its own process)
sys.modules["__main__"].__spec__ = types.SimpleNamespace(name="judge_rl.__main__")
try:
    main(sys.argv[1:])
except SystemExit:
    pass
mark("end")
out, prev_c, prev_w = {}, marks[0][1], marks[0][2]
for name, c, w in marks[1:]:
    if name.endswith(": before"):  # the time since the previous phase ended
        name = "until " + name[: -len(": before")]
    got = out.setdefault(name, [0.0, 0.0])
    got[0] += c - prev_c
    got[1] += w - prev_w
    prev_c, prev_w = c, w
for name, sec in inside.items():
    out[name] = [sec, None]
out["  inside: garbage collection (%d collections)" % gc_t[2]] = [gc_t[1], None]
ru = resource.getrusage(resource.RUSAGE_SELF)
out["total (to the end of main; exit follows)"] = [ru.ru_utime + ru.ru_stime, time.time() - T0]
for name, sec in events.items():
    out[name] = [None, sec]
sys.stderr.write("PHASES " + json.dumps(out) + "\n")
"""


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    """The endpoint in its own process; returns (process, base URL)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "judge_rl.backends._fakeserver",
            "--latency",
            str(latency),
            "--max-seconds",
            "1800",
            "--lean",  # bare asyncio: the endpoint shares the cores, so it should cost little
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux ``/proc``), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_backend(url: str, n: int, concurrency: int, tmp: Path) -> dict[str, float]:
    """OpenAIBackend alone: n chat requests, all handed over at once."""
    from judge_rl.backends.base import ChatRequest
    from judge_rl.backends.openai import OpenAIBackend

    reqs = [
        ChatRequest(
            messages=[
                {
                    "role": "user",
                    "content": f"question-{i}: compare first answer "
                    f"{i} with second answer {i}; reply [[A]] or [[B]]",
                }
            ],
            max_tokens=32,
        )
        for i in range(n)
    ]

    async def go() -> tuple[float, float, int]:
        backend = OpenAIBackend("fake-judge", base_urls=url, concurrency=concurrency)
        await backend.chat(reqs[:concurrency])  # warm up: connections, imports
        c0, t0 = time.process_time(), time.perf_counter()
        res = await backend.chat(reqs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        await backend.aclose()
        return wall, cpu, sum(1 for r in res if r.error is None)

    wall, cpu, ok = asyncio.run(go())
    return {"n": n, "ok": ok, "wall_s": wall, "cpu_s": cpu}


TEMPLATE = (
    "Which response is better?\n[Prompt] {{ prompt }}\n[Response A] {{ response_a }}\n"
    "[Response B] {{ response_b }}\nEnd with [[A]], [[B]] or [[C]] on a line of its own."
)


def write_spec(folder: Path, url: str, concurrency: int, order: str = "fixed") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompt.j2").write_text(TEMPLATE)
    spec = {
        "version": "1",
        "kind": "pairwise",
        "backend": "openai",
        "model": "fake-judge",
        "base_urls": [url],
        "concurrency": concurrency,
        "template": "prompt.j2",
        "max_tokens": 32,
        "order": order,
    }
    (folder / "judge.yaml").write_text(json.dumps(spec))
    return folder / "judge.yaml"


def bench_judge(url: str, n: int, concurrency: int, tmp: Path) -> dict[str, float]:
    """The full judge layer over the same backend (cache off, order fixed)."""
    from judge_rl.judge import load_judge
    from judge_rl.types import Candidate, Comparison

    spec = write_spec(tmp / "judge", url, concurrency)
    comps = []
    for i in range(n + concurrency):
        p = f"question-{i}"
        a = Candidate(prompt_id=p, prompt=p, response=f"first answer {i}", source="m1")
        b = Candidate(prompt_id=p, prompt=p, response=f"second answer {i}", source="m2")
        comps.append(Comparison(prompt_id=p, prompt=p, a=a, b=b))
    judge = load_judge(spec, cache=None)

    async def go() -> tuple[float, float, int]:
        await judge.compare(comps[n:])  # warm up
        c0, t0 = time.process_time(), time.perf_counter()
        res = await judge.compare(comps[:n])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        await judge.aclose()
        return wall, cpu, sum(1 for j in res if j.ok)

    wall, cpu, ok = asyncio.run(go())
    return {"n": n, "ok": ok, "wall_s": wall, "cpu_s": cpu}


def write_pairs(path: Path, n: int, prefix: str = "") -> Path:
    """``n`` pairs; ``prefix`` starts every text (other pairs than the ones without it)."""
    with path.open("w") as f:
        for i in range(n):
            row = {
                "prompt": f"{prefix}question-{i}",
                "response_a": f"{prefix}first answer {i}",
                "response_b": f"{prefix}second answer {i}",
            }
            f.write(json.dumps(row) + "\n")
    return path


def run_cli(
    spec: Path,
    pairs: Path,
    tmp: Path,
    tag: str,
    tty: bool = False,
    code: Path = ROOT,
    base: Path | None = None,
) -> dict[str, float] | str:
    """``judge-rl label`` in a fresh process with default settings (cache on, fresh file).
    ``tty``: on a terminal (a pseudo-terminal from util-linux ``script``), where the progress
    bar is drawn while the run goes on, as a user at a terminal sees it. ``code``: the folder
    whose ``judge_rl`` runs (``benchmarks/ab_label.py``: a version of it); ``base``: a cache
    file whose copy the run starts from instead of a fresh one."""
    out, run, cache = tmp / f"labels-{tag}.jsonl", tmp / f"run-{tag}", tmp / f"cache-{tag}.sqlite"
    if base is not None:
        for suffix in ("", "-wal", "-shm"):  # the file and its write-ahead files, if any
            src = base.with_name(base.name + suffix)
            if src.exists():
                shutil.copyfile(src, cache.with_name(cache.name + suffix))
    cmd = [sys.executable, "-m", "judge_rl", "label", "--judge", str(spec), "--input", str(pairs)]
    cmd += ["--output", str(out), "--run", str(run), "--cache", str(cache)]
    if tty:
        cmd = ["script", "-qfec", shlex.join(cmd), "/dev/null"]
    pyc = tmp / ("pycache" if code == ROOT else f"pyc-{code.name}")
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONPYCACHEPREFIX=str(pyc))
    if tty:
        env.update(COLUMNS="100", LINES="30")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package runs from bytecode
    env.pop("JUDGE_RL_NO_PROGRESS", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=code, timeout=1800)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        return f"label exited {r.returncode}: {r.stderr.strip().splitlines()[-1:]}"
    log = json.loads((run / "log.json").read_text())
    judgments = log["label"]["judgments"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "n": len(judgments),
        "ok": sum(1 for j in judgments if not j.get("error")),
        "wall_s": wall,
        "cpu_s": cpu,
        "window_s": float(log["timings"]["label"]),
    }


def bench_cli(
    url: str, n: int, concurrency: int, tmp: Path, small: int = 20, runs: int = 1, tty: bool = False
) -> dict[str, Any] | str:
    """``judge-rl label`` in a fresh process, from the pairs file to the preferences file:
    wall time process start to exit; ``window_s``: the judging time its run log records;
    ``startup_cpu_s`` and ``cpu_per_judgment_s`` from a second run on ``small`` pairs.
    ``runs`` > 1: the full run that many times (each in a fresh cache); the figures are the
    median run's (by wall time), ``runs`` lists every run's. ``tty``: every run on a
    terminal (:func:`run_cli`)."""
    spec = write_spec(tmp / "cli-judge", url, concurrency)
    few = write_pairs(tmp / "pairs-small.jsonl", small)
    t = "-tty" if tty else ""
    warm = run_cli(spec, few, tmp, f"warm-up{t}", tty)  # compiles the bytecode, as installs do
    if isinstance(warm, str):
        return warm
    short = run_cli(spec, few, tmp, f"small{t}", tty)
    if isinstance(short, str):
        return short
    pairs = write_pairs(tmp / "pairs.jsonl", n)
    done: list[dict[str, float]] = []
    for k in range(max(1, runs)):
        one = run_cli(spec, pairs, tmp, f"full-{k}{t}", tty)
        if isinstance(one, str):
            return one
        one["load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        done.append(one)
    full: dict[str, Any] = dict(sorted(done, key=lambda r: r["wall_s"])[len(done) // 2])
    if len(done) > 1:
        full["runs"] = done
    per = max(0.0, (full["cpu_s"] - short["cpu_s"]) / max(1, full["n"] - short["n"]))
    full["startup_cpu_s"] = max(0.0, short["cpu_s"] - short["n"] * per)
    full["startup_wall_s"] = short["wall_s"]
    full["cpu_per_judgment_s"] = per
    return full


def bench_phases(tmp: Path, tag: str = "phases") -> dict[str, list[float | None]] | str:
    """The CLI row's command once more (same spec, pairs and settings), with the CPU and wall
    time of each phase: process time and the clock read at the start and end of the library
    functions it calls (wrapped in place; a function that is not there is left out), the wall
    clock from the spawn. ``until X`` is the time between the previous phase and X (e.g.
    ``until records + summary``: judging). ``inside:`` lines sum the CPU of calls made inside
    a phase (already counted in it); the wall times of the first request and of the end of a
    streamed input are since the spawn. ``{name: [cpu s or None, wall s or None]}``."""
    spec, pairs = tmp / "cli-judge" / "judge.yaml", tmp / "pairs.jsonl"
    out, run, cache = tmp / f"labels-{tag}.jsonl", tmp / f"run-{tag}", tmp / f"cache-{tag}.sqlite"
    cmd = [sys.executable, "-c", PHASES_SCRIPT, "label", "--judge", str(spec)]
    cmd += ["--input", str(pairs), "--output", str(out), "--run", str(run), "--cache", str(cache)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("JUDGE_RL_NO_PROGRESS", None)
    env["BENCH_T0"] = repr(time.time())
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    line = next((x for x in r.stderr.splitlines() if x.startswith("PHASES ")), None)
    if r.returncode != 0 or line is None:
        return f"phases run failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}"
    return json.loads(line[len("PHASES ") :])  # type: ignore[no-any-return]


def bench_alpaca_eval(url: str, n: int, concurrency: int, tmp: Path) -> dict[str, float] | str:
    """AlpacaEval's OpenAI decoder in its own venv; a string says why it could not run."""
    from _peer import peer_python

    try:
        py = peer_python("alpaca-eval", ["alpaca-eval", "setuptools<81"])
    except Exception as e:  # no network, no wheel: report, do not fail the whole benchmark
        return f"could not install alpaca-eval: {e}"
    script = tmp / "alpaca_eval_peer.py"
    script.write_text(PEER_SCRIPT)
    env = dict(
        os.environ, OPENAI_API_BASE=url, OPENAI_API_KEY="sk-bench-not-a-key", OPENAI_BASE_URL=url
    )
    r = subprocess.run(
        [py, str(script), str(n), str(concurrency)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if r.returncode != 0:
        return f"alpaca-eval run failed: {r.stderr.strip().splitlines()[-1:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def uptime() -> str:
    """``uptime``'s line (load averages over 1, 5 and 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
        return "load average: " + ", ".join(f"{x:.2f}" for x in load)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="judgments per judge_rl row")
    ap.add_argument("--small", type=int, default=20, help="pairs of the start-up CLI run")
    ap.add_argument("--peer-n", type=int, default=1000, help="judgments of the AlpacaEval row")
    ap.add_argument("--latency", type=float, default=0.05, help="endpoint latency (s)")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    ap.add_argument(
        "--cli-runs",
        type=int,
        default=1,
        help="full runs of the CLI row (each listed; the table shows the median by wall time)",
    )
    ap.add_argument(
        "--tty",
        action="store_true",
        help="also run the CLI row on a terminal (util-linux `script`): the progress bar drawn",
    )
    ap.add_argument("--skip-peer", action="store_true", help="time judge_rl only")
    ap.add_argument("--skip-library", action="store_true", help="time the CLI (and peer) only")
    ap.add_argument(
        "--phases",
        action="store_true",
        help="run the CLI row's command once more and print its CPU time by phase",
    )
    args = ap.parse_args(argv)
    limit = args.concurrency / args.latency
    up_start = uptime()
    proc, url = start_server(args.latency)
    rows: dict[str, dict[str, Any] | str] = {}
    phases: dict[str, list[float | None]] | str = "not run (--phases)"
    server_cpu: dict[str, float] = {}
    served: dict[str, int] = {}

    with tempfile.TemporaryDirectory(prefix="bench-judge-") as tmpdir:
        tmp = Path(tmpdir)

        def timed(name: str, fn: Any, n: int, requests: int) -> None:
            before = proc_cpu_s(proc.pid)
            rows[name] = fn(url, n, args.concurrency, tmp)
            after = proc_cpu_s(proc.pid)
            if before is not None and after is not None:
                server_cpu[name] = after - before
                served[name] = requests

        try:
            # the CLI row serves 2 small runs + the full one
            # each of the --cli-runs full runs judges --n pairs (the table's n is one run's);
            # the endpoint served them all + 2 small runs
            timed(
                "judge-rl label CLI",
                lambda u, n, c, t: bench_cli(u, n, c, t, small=args.small, runs=args.cli_runs),
                args.n,
                args.n * args.cli_runs + 2 * args.small,
            )
            if args.tty:
                timed(
                    "judge-rl label, tty",
                    lambda u, n, c, t: bench_cli(
                        u, n, c, t, small=args.small, runs=args.cli_runs, tty=True
                    ),
                    args.n,
                    args.n * args.cli_runs + 2 * args.small,
                )
            if args.phases and isinstance(rows.get("judge-rl label CLI"), dict):
                phases = bench_phases(tmp)
            if not args.skip_library:
                warm = args.concurrency  # + the warm-up requests
                timed("judge_rl backend", bench_backend, args.n, args.n + warm)
                timed("judge_rl judge", bench_judge, args.n, args.n + warm)
            if not args.skip_peer:
                timed("AlpacaEval", bench_alpaca_eval, args.peer_n, args.peer_n)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
    up_end = uptime()
    print(f"uptime at start: {up_start}")
    print(f"uptime at end:   {up_end}")
    print(
        f"endpoint: {args.latency * 1000:.0f} ms per answer, {args.concurrency} in flight "
        f"-> limit {limit:,.0f} judgments/s; {os.cpu_count()} CPUs (shared with the endpoint)"
    )
    print(
        f"{'client':<20} {'n':>6} {'judgments/s':>12} {'of limit':>9} {'CPU ms/judgment':>16}"
        f" {'ok':>6} {'endpoint CPU ms/req':>20}"
    )
    rates: dict[str, float] = {}
    srv_ms: dict[str, float] = {}
    for name, r in rows.items():
        if isinstance(r, str):
            print(f"{name:<20} {'-':>6} {'-':>12} {'-':>9} {'-':>16} {'-':>6}   ({r})")
            continue
        rate = r["n"] / r["wall_s"]
        rates[name] = rate
        if name in server_cpu:
            srv_ms[name] = 1000 * server_cpu[name] / served[name]
        srv = f"{srv_ms[name]:.3f}" if name in srv_ms else "-"
        print(
            f"{name:<20} {int(r['n']):>6} {rate:>12,.0f} {rate / limit:>9.0%} "
            f"{1000 * r['cpu_s'] / r['n']:>16.3f} {int(r['ok']):>6} {srv:>20}"
        )
        for k, one in enumerate(r.get("runs", [])):
            rate_k, w_k = one["n"] / one["wall_s"], one["n"] / one["window_s"]
            print(
                f"{'  run ' + str(k + 1):<20} {int(one['n']):>6} {rate_k:>12,.0f} "
                f"{rate_k / limit:>9.0%} {1000 * one['cpu_s'] / one['n']:>16.3f}   "
                f"(window {w_k / limit:.0%}; load {one['load']:.2f} at its end)"
            )
        if "window_s" in r:
            w = r["n"] / r["window_s"]
            rates[name + " window"] = w
            print(f"{'  judging window':<20} {'':>6} {w:>12,.0f} {w / limit:>9.0%}   (run log)")
        if "cpu_per_judgment_s" in r:
            print(
                f"{'  per judgment':<20} {'':>6} {'':>12} {'':>9} "
                f"{1000 * r['cpu_per_judgment_s']:>16.3f}   (marginal: full run - "
                f"{args.small}-pair run); start-up {r['startup_cpu_s']:.2f} s CPU, "
                f"{r['startup_wall_s']:.2f} s wall for the {args.small}-pair run"
            )
    cli = rows.get("judge-rl label CLI")
    if args.phases:
        if isinstance(phases, str):
            print(f"phases: {phases}")
        else:
            print(f"CPU by phase of `judge-rl label` on {args.n} pairs (a separate run):")
            print(f"  {'':<58} {'CPU s':>7} {'ms/judgment':>11} {'wall s':>7}")
            for name, (sec, wall) in phases.items():
                cpu = f"{sec:7.3f} {1000 * sec / args.n:11.3f}" if sec is not None else " " * 19
                w = f"{wall:7.3f}" if wall is not None else ""
                print(f"  {name:<58} {cpu} {w}")
    if isinstance(cli, dict) and "cpu_per_judgment_s" in cli:
        per_s = cli["cpu_per_judgment_s"]
        srv_s = srv_ms.get("judge-rl label CLI", 0.0) / 1000
        # Client on one core, endpoint on the other. Upper bound: the CPU-bound rate (the
        # client's CPU overlaps the endpoint's latency fully). Lower bound: none of it overlaps
        # (each round of `concurrency` requests costs the latency plus all their CPU).
        high = min(limit, 1 / max(per_s, 1e-12), 1 / max(srv_s, 1e-12))
        low = min(high, limit / (1 + limit * per_s))
        n, start = cli["n"], cli["startup_cpu_s"]
        e2e_high, e2e_low = n / (start + n / high), n / (start + n / low)
        print(
            f"implied on a quiet 2-core machine (client and endpoint on a core each, from the "
            f"CPU figures): judging {low:,.0f}-{high:,.0f}/s = {low / limit:.0%}-"
            f"{high / limit:.0%} of the limit; end to end for n={int(n)}: {e2e_low:,.0f}-"
            f"{e2e_high:,.0f}/s = {e2e_low / limit:.0%}-{e2e_high / limit:.0%}"
        )
        print(f"RATIO judge_rl_label_cli_cpu_ms_per_judgment {1000 * per_s:.3f} (target < 0.5)")
        print(
            f"RATIO judge_rl_label_cli_quiet_implied_vs_limit {e2e_low / limit:.2f}-"
            f"{e2e_high / limit:.2f}"
        )
    judge_rate = rates.get("judge_rl judge", 0.0)
    cli_rate = rates.get("judge-rl label CLI", 0.0)
    print(
        f"RATIO judge_rl_label_cli_vs_limit {cli_rate / limit:.2f} "
        "(end to end, process start to exit; target >= 0.80)"
    )
    if "judge-rl label, tty" in rates:
        print(
            f"RATIO judge_rl_label_cli_tty_vs_limit {rates['judge-rl label, tty'] / limit:.2f} "
            "(on a terminal, the progress bar drawn)"
        )
    window = rates.get("judge-rl label CLI window", 0.0)
    print(f"RATIO judge_rl_label_window_vs_limit {window / limit:.2f}")
    if not args.skip_library:
        print(f"RATIO judge_rl_judge_vs_limit {judge_rate / limit:.2f}")
        print(f"RATIO judge_rl_backend_vs_limit {rates.get('judge_rl backend', 0.0) / limit:.2f}")
    if "AlpacaEval" in rates:
        if judge_rate:
            print(
                f"RATIO judge_rl_judge_vs_alpaca_eval {judge_rate / rates['AlpacaEval']:.1f}x "
                f"(target >= 20x)"
            )
        print(f"RATIO judge_rl_label_cli_vs_alpaca_eval {cli_rate / rates['AlpacaEval']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
