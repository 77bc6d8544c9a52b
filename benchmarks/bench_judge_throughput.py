"""Judging throughput against a local OpenAI-compatible endpoint, judge_rl vs AlpacaEval.

The endpoint (``judge_rl.backends._fakeserver`` in its own process, so it does not share the
client's event loop) answers every request after a fixed latency (50 ms). With 64 requests in
flight the ceiling is 64 / 0.05 = 1,280 judgments/s. We time 2,000 judgments:

- ``judge-rl label CLI``: the command a user runs, end to end (``python -m judge_rl label``
  from a pairs file on disk to the preferences file and run log, cache off, order fixed):
  wall time from process start to exit, and the judging window the run log records;
- ``judge_rl backend``: :class:`OpenAIBackend` alone (one shared client, at most 64 in flight);
- ``judge_rl judge``: the full judge layer (spec -> LLMJudge -> verdict parsing -> Judgment
  records; cache off, order fixed) over the same backend;
- ``AlpacaEval``: ``alpaca_eval.decoders.openai.openai_completions`` (what its annotators call)
  with 64 worker threads, in its own venv (``.bench-venvs/alpaca-eval``), pointed at the same
  endpoint through ``OPENAI_API_BASE``.

Client CPU per judgment is the process CPU time (user + system) of the client divided by the
judgments; the endpoint's CPU per request is read from ``/proc`` (Linux), to show whether the
endpoint's own core could keep up with the limit. Prints a table and ``RATIO`` lines, with the
machine's load average at the start. Every file goes to one temporary folder, removed at the
end. Run: ``python benchmarks/bench_judge_throughput.py`` (``--skip-peer`` to time judge_rl
only). Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def write_spec(folder: Path, url: str, concurrency: int) -> Path:
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
        "order": "fixed",
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


def bench_cli(url: str, n: int, concurrency: int, tmp: Path) -> dict[str, float] | str:
    """``judge-rl label`` in a fresh process, from the pairs file to the preferences file:
    wall time process start to exit; ``window_s``: the judging time its run log records."""
    spec = write_spec(tmp / "cli-judge", url, concurrency)
    pairs = tmp / "pairs.jsonl"
    with pairs.open("w") as f:
        for i in range(n):
            row = {
                "prompt": f"question-{i}",
                "response_a": f"first answer {i}",
                "response_b": f"second answer {i}",
            }
            f.write(json.dumps(row) + "\n")
    out, run = tmp / "labels.jsonl", tmp / "cli-run"
    cmd = [sys.executable, "-m", "judge_rl", "label", "--judge", str(spec), "--input", str(pairs)]
    cmd += ["--output", str(out), "--no-cache", "--run", str(run)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), JUDGE_RL_NO_PROGRESS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        return f"label exited {r.returncode}: {r.stderr.strip().splitlines()[-1:]}"
    log = json.loads((run / "log.json").read_text())
    judgments = log["label"]["judgments"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "n": n,
        "ok": sum(1 for j in judgments if not j.get("error")),
        "wall_s": wall,
        "cpu_s": cpu,
        "window_s": float(log["timings"]["label"]),
    }


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="judgments per side")
    ap.add_argument("--latency", type=float, default=0.05, help="endpoint latency (s)")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    ap.add_argument("--skip-peer", action="store_true", help="time judge_rl only")
    args = ap.parse_args(argv)
    limit = args.concurrency / args.latency
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    proc, url = start_server(args.latency)
    rows: dict[str, dict[str, float] | str] = {}
    server_cpu: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="bench-judge-") as tmpdir:
        tmp = Path(tmpdir)

        def timed(name: str, fn: object) -> None:
            before = proc_cpu_s(proc.pid)
            rows[name] = fn(url, args.n, args.concurrency, tmp)  # type: ignore[operator]
            after = proc_cpu_s(proc.pid)
            if before is not None and after is not None:
                server_cpu[name] = after - before

        try:
            timed("judge-rl label CLI", bench_cli)
            timed("judge_rl backend", bench_backend)
            timed("judge_rl judge", bench_judge)
            if not args.skip_peer:
                timed("AlpacaEval", bench_alpaca_eval)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
    print(
        f"endpoint: {args.latency * 1000:.0f} ms per answer, {args.concurrency} in flight "
        f"-> limit {limit:,.0f} judgments/s; {args.n} judgments per side; "
        f"{os.cpu_count()} CPUs (shared with the endpoint); load average {load:.2f} at start"
    )
    print(
        f"{'client':<20} {'judgments/s':>12} {'of limit':>9} {'CPU ms/judgment':>16} {'ok':>6}"
        f" {'endpoint CPU ms/req':>20}"
    )
    rates: dict[str, float] = {}
    for name, r in rows.items():
        if isinstance(r, str):
            print(f"{name:<20} {'-':>12} {'-':>9} {'-':>16} {'-':>6}   ({r})")
            continue
        rate = r["n"] / r["wall_s"]
        rates[name] = rate
        warm = name in ("judge_rl backend", "judge_rl judge")
        served = r["n"] + (args.concurrency if warm else 0)  # + warm-up
        srv = f"{1000 * server_cpu[name] / served:.3f}" if name in server_cpu else "-"
        print(
            f"{name:<20} {rate:>12,.0f} {rate / limit:>9.0%} {1000 * r['cpu_s'] / r['n']:>16.3f} "
            f"{int(r['ok']):>6} {srv:>20}"
        )
        if "window_s" in r:
            w = r["n"] / r["window_s"]
            rates[name + " window"] = w
            print(f"{'  judging window':<20} {w:>12,.0f} {w / limit:>9.0%}   (from its run log)")
    judge_rate = rates.get("judge_rl judge", 0.0)
    cli = rates.get("judge-rl label CLI", 0.0)
    print(
        f"RATIO judge_rl_label_cli_vs_limit {cli / limit:.2f} (end to end, process start to exit)"
    )
    window = rates.get("judge-rl label CLI window", 0.0)
    print(f"RATIO judge_rl_label_window_vs_limit {window / limit:.2f} (target >= 0.80)")
    print(f"RATIO judge_rl_judge_vs_limit {judge_rate / limit:.2f} (target >= 0.80)")
    print(f"RATIO judge_rl_backend_vs_limit {rates.get('judge_rl backend', 0.0) / limit:.2f}")
    if "AlpacaEval" in rates:
        print(
            f"RATIO judge_rl_judge_vs_alpaca_eval {judge_rate / rates['AlpacaEval']:.1f}x "
            f"(target >= 20x)"
        )
        print(f"RATIO judge_rl_label_cli_vs_alpaca_eval {cli / rates['AlpacaEval']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
