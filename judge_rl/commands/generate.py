"""``judge-rl generate``: sample K responses per prompt with any backend and write Candidates.

Input: a prompt set (JSONL/JSON/CSV/Parquet, or ``builtin:<name>``) read by
:func:`judge_rl.data.read_prompts`. Output: candidates JSONL, one :class:`~judge_rl.types.Candidate`
per line, with the sampling parameters, token counts, finish reason and the prompt's reference
answer (``metadata["reference"]``) in ``metadata``; plus ``reports/<run>/log.json``.

Resumable: prompts whose K samples are already in the output are skipped; each batch is appended
with one write and flushed to disk, and a line cut short by a crash is dropped on the next run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "generate",
        help="sample responses to prompts with a model -> candidates file",
        description="Sample --n responses per prompt with a local model (hf, vllm) or an "
        "OpenAI-compatible endpoint (openai) and write candidates JSONL. Re-running the same "
        "command skips prompts already in the output.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="model folder, 'embedded', or the endpoint's model name",
    )
    p.add_argument(
        "--prompts",
        required=True,
        metavar="FILE",
        help="prompt file or builtin:NAME (e.g. builtin:gsm8k-demo)",
    )
    p.add_argument("--output", required=True, metavar="FILE", help="candidates .jsonl")
    p.add_argument("--n", type=int, default=1, metavar="K", help="samples per prompt (default 1)")
    p.add_argument(
        "--backend",
        choices=("hf", "vllm", "openai"),
        default="hf",
        help="hf (transformers, default), vllm (offline engine, GPU), openai "
        "(any OpenAI-compatible server)",
    )
    p.add_argument(
        "--base-url",
        action="append",
        default=None,
        metavar="URL",
        help="openai backend: endpoint base URL, e.g. http://127.0.0.1:8000/v1 "
        "(repeat to spread across several)",
    )
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="openai backend: name of the environment variable holding the API key",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="openai backend: most requests in flight (default 64; each URL starts lower and "
        "adapts to the parallelism its server shows)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="openai backend: seconds per attempt (default 60)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=6,
        help="openai backend: retries after the first attempt (default 6)",
    )
    p.add_argument("--temperature", type=float, default=0.7, help="default 0.7 (0 = greedy)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="prompts per generate call and per flush to disk (default: 8 for hf, 256 for "
        "vllm: one engine call each)",
    )
    p.add_argument(
        "--source",
        default=None,
        metavar="NAME",
        help="name recorded as each candidate's source (default: the model's name; with "
        "--backend openai, the --model name sent to the server, as given)",
    )
    p.add_argument("--system", default=None, metavar="TEXT", help="system message for every prompt")
    p.add_argument("--device", default=None, help="hf backend: cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--dtype", default=None, help="hf/vllm: float32, bfloat16, float16")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N prompts")
    p.add_argument("--run", default=None, metavar="NAME", help="run name: reports/NAME/log.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_run(args))


# --- steps ---------------------------------------------------------------------------------------


def check_args(args: argparse.Namespace) -> None:
    """Reject bad settings before anything is loaded."""
    from judge_rl.errors import ConfigError

    if args.n < 1:
        raise ConfigError(f"must be >= 1, got {args.n}", setting="--n")
    if args.max_new_tokens < 1:
        raise ConfigError(f"must be >= 1, got {args.max_new_tokens}", setting="--max-new-tokens")
    if args.batch_size is None:
        args.batch_size = 256 if args.backend == "vllm" else 8
    if args.batch_size < 1:
        raise ConfigError(f"must be >= 1, got {args.batch_size}", setting="--batch-size")
    if args.temperature < 0:
        raise ConfigError(f"must be >= 0, got {args.temperature}", setting="--temperature")
    if not 0 < args.top_p <= 1:
        raise ConfigError(f"must be in (0, 1], got {args.top_p}", setting="--top-p")
    import math

    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigError(f"must be a number > 0, got {args.timeout}", setting="--timeout")
    if args.max_retries < 0:
        raise ConfigError(f"must be >= 0, got {args.max_retries}", setting="--max-retries")
    if args.concurrency < 1:
        raise ConfigError(f"must be >= 1, got {args.concurrency}", setting="--concurrency")
    if args.base_url and args.backend != "openai":
        raise ConfigError("--base-url needs --backend openai", setting="--base-url")
    out = Path(args.output)
    if out.suffix not in (".jsonl",):
        raise ConfigError(f"{out}: candidates are written as .jsonl", setting="--output")


def default_source(model: str) -> str:
    """A readable source name for a model argument.

    >>> default_source("embedded")
    'smollm2-135m-instruct'
    >>> default_source("runs/ppo/checkpoint-40/")
    'checkpoint-40'
    """
    from judge_rl.models import EMBEDDED_NAME, is_embedded

    if is_embedded(model):
        return EMBEDDED_NAME
    return Path(model.rstrip("/")).name or model


def source_for(args: argparse.Namespace) -> str:
    """The source name recorded on each candidate: ``--source``; for a server, the model name
    sent to it, as given (``smollm2`` served by llama.cpp is not the embedded model); for a
    local model, :func:`default_source`."""
    if args.source:
        return str(args.source)
    if args.backend == "openai":
        return str(args.model)
    return default_source(args.model)


def load_counts(path: Path, source: str) -> tuple[dict[str, int], int]:
    """Samples from ``source`` per prompt id already in ``path``; number of lines kept (a last
    line cut short by a crash is removed, see :func:`load_done`)."""
    import json

    done, kept = load_done(path, source, 1)
    counts: dict[str, int] = {}
    if kept:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("source") == source:
                    pid = str(row["prompt_id"])
                    counts[pid] = counts.get(pid, 0) + 1
    return counts, kept


def load_done(path: Path, source: str, n: int) -> tuple[set[str], int]:
    """Prompt ids with ``n`` samples from ``source`` already in ``path``; number of lines kept.

    A last line cut short by a crash is removed (the file is rewritten atomically without it).
    """
    import json
    from collections import Counter

    from judge_rl._io import atomic_write_text
    from judge_rl.errors import DataError

    if not path.exists():
        return set(), 0
    lines = path.read_text(encoding="utf-8").splitlines()
    good: list[str] = []
    counts: Counter[str] = Counter()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if i == len(lines):  # a partial last line from an interrupted run
                continue
            raise DataError(
                "not JSON (is this a candidates file?)", file=str(path), line=i
            ) from None
        if not isinstance(row, dict) or "prompt_id" not in row:
            raise DataError("not a candidate row", file=str(path), line=i, field="prompt_id")
        good.append(line)
        if row.get("source") == source:
            counts[str(row["prompt_id"])] += 1
    if len(good) != sum(1 for ln in lines if ln.strip()):
        atomic_write_text(path, "".join(ln + "\n" for ln in good))
    return {pid for pid, c in counts.items() if c >= n}, len(good)


def make_backend(args: argparse.Namespace) -> Any:
    """The backend named by ``--backend`` with the options that apply to it."""
    from judge_rl.backends.base import load_backend

    if args.backend == "hf":
        return load_backend(
            "hf",
            model=args.model,
            device=args.device,
            batch_size=args.batch_size or 8,
            dtype=args.dtype,
        )
    if args.backend == "vllm":
        return load_backend(
            "vllm", model=args.model, dtype=args.dtype or "auto", batch_size=args.batch_size or 256
        )
    return load_backend(
        "openai",
        model=args.model,
        base_urls=args.base_url,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        max_retries=args.max_retries,
    )


def to_messages(item: Any, system: str | None) -> list[dict[str, str]]:
    """The chat messages of a prompt item (plain text becomes one user turn)."""
    msgs = (
        [{"role": "user", "content": item.prompt}]
        if isinstance(item.prompt, str)
        else [dict(m) for m in item.prompt]
    )
    if system and not (msgs and msgs[0].get("role") == "system"):
        msgs.insert(0, {"role": "system", "content": system})
    return msgs


def to_candidates(
    item: Any, res: Any, source: str, sampling: dict[str, Any], start: int = 0
) -> list[Any]:
    """One Candidate per sample a result holds (also the samples of a partly failed one);
    sample numbers start at ``start`` (samples already in the output from an earlier run)."""
    from judge_rl._io import content_hash
    from judge_rl.types import Candidate

    out = []
    for j, text in enumerate(res.texts):
        k = start + j
        meta: dict[str, Any] = {
            "sample": k,
            "sampling": sampling,
            "finish_reason": res.finish_reasons[j] if j < len(res.finish_reasons) else "",
            "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens,
        }
        served = getattr(res, "model", None)
        if served:
            meta["served_model"] = served  # the name the server reported
        if getattr(res, "attempts", 0):
            meta["transport"] = {
                "attempts": res.attempts,
                "retries": res.retries,
                "timeouts": res.timeouts,
                "latency_s": round(res.latency_s, 4),
                "attempt_latency_s": [round(x, 4) for x in res.attempt_latency_s],
            }
        if item.reference is not None:
            meta["reference"] = item.reference
        if item.category:
            meta["category"] = item.category
        if item.metadata:
            meta["prompt_metadata"] = item.metadata
        cid = "c-" + content_hash([item.prompt_id, source, k, text])
        out.append(
            Candidate(
                id=cid,
                prompt_id=item.prompt_id,
                prompt=item.prompt,
                response=text,
                source=source,
                metadata=meta,
            )
        )
    return out


async def sample_n(backend: Any, reqs: list[Any], n: int | list[int]) -> list[Any]:
    """``backend.chat`` that keeps asking until each result has its ``n`` texts.

    Some OpenAI-compatible servers (Ollama, llama.cpp) ignore ``n`` and answer one choice: the
    missing samples are asked for again, one request per sample, in parallel (each with its own
    seed, so a seeded server does not repeat itself), for as long as every round brings at least
    one new sample. A result that stays short keeps the samples it got and carries an error
    ``kind: k of n samples came back (...)``, its kind that of the last failure (``empty`` when
    the server simply sent nothing more). ``n`` may differ per request.
    """
    import dataclasses

    wants = [n] * len(reqs) if isinstance(n, int) else list(n)
    results = list(await backend.chat(reqs))
    stop: dict[int, str] = {}
    single = [
        r.error is None and len(r.texts) == 1 and w > 1 for r, w in zip(results, wants, strict=True)
    ]
    rnd = 0
    while True:
        short = [
            i
            for i, r in enumerate(results)
            if r.error is None and len(r.texts) < wants[i] and i not in stop
        ]
        if not short:
            break
        rnd += 1
        more, owners = [], []
        for i in short:
            missing = wants[i] - len(results[i].texts)
            base_seed = reqs[i].seed
            if single[i]:
                for j in range(missing):
                    seed = None if base_seed is None else base_seed + 1000 * rnd + j
                    more.append(dataclasses.replace(reqs[i], n=1, seed=seed))
                    owners.append(i)
            else:
                seed = None if base_seed is None else base_seed + 1000 * rnd
                more.append(dataclasses.replace(reqs[i], n=missing, seed=seed))
                owners.append(i)
        gained = dict.fromkeys(short, 0)
        last_err: dict[int, str] = {}
        for i, req, extra in zip(owners, more, await backend.chat(more), strict=True):
            r = results[i]
            for key in ("attempts", "retries", "timeouts"):  # transport counts add up
                if hasattr(r, key):
                    setattr(r, key, getattr(r, key) + int(getattr(extra, key, 0) or 0))
            if extra.error is not None:
                last_err[i] = extra.error
                continue
            take = extra.texts[: wants[i] - len(r.texts)]
            r.texts += take
            r.finish_reasons += extra.finish_reasons[: len(take)]
            r.prompt_tokens += extra.prompt_tokens
            r.completion_tokens += extra.completion_tokens
            r.cost += extra.cost
            gained[i] += len(take)
            if req.n > 1 and len(extra.texts) == 1:
                single[i] = True  # this server ignores n
        for i in short:
            if gained[i] == 0:
                stop[i] = last_err.get(i) or "empty: the server sent no more samples"
    for i, r in enumerate(results):
        w = wants[i]
        if r.error is None and len(r.texts) > w:
            r.texts, r.finish_reasons = r.texts[:w], r.finish_reasons[:w]
        if r.error is None and len(r.texts) < w:
            why = stop.get(i, "empty: the server sent no more samples")
            kind, _, detail = why.partition(":")
            r.error = f"{kind}: {len(r.texts)} of {w} samples came back ({detail.strip()})"
    return results


def _rate(tokens_per_s: float) -> str:
    """Progress-bar rate text.

    >>> _rate(0.46), _rate(123.4)
    ('0.5 tok/s', '123 tok/s')
    """
    return f"{tokens_per_s:.1f} tok/s" if tokens_per_s < 10 else f"{tokens_per_s:.0f} tok/s"


def append_batch(path: Path, cands: list[Any]) -> None:
    """Append candidates with one write, then flush and fsync (a crash loses at most this batch)."""
    import os

    if not cands:
        return
    data = "".join(c.model_dump_json() + "\n" for c in cands).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


async def _run(args: argparse.Namespace) -> int:
    import time

    from rich.progress import TextColumn

    from judge_rl.backends.base import ChatRequest
    from judge_rl.console import console, err_console, progress
    from judge_rl.data import read_prompts
    from judge_rl.errors import DataError
    from judge_rl.runlog import new_log, run_dir

    check_args(args)
    from judge_rl._io import check_output_file

    check_output_file(args.output, "--output")  # before any model loads
    items = list(read_prompts(args.prompts))
    if args.limit is not None:
        items = items[: max(0, args.limit)]
    if not items:
        raise DataError("no prompts to generate for", file=str(args.prompts))
    source = source_for(args)
    out = Path(args.output)
    have, kept = load_counts(out, source)
    todo = [it for it in items if have.get(it.prompt_id, 0) < args.n]
    err = err_console()
    if len(todo) < len(items):
        err.print(f"resuming: {len(items) - len(todo)} of {len(items)} prompts already in {out}")
    sampling = {
        "backend": args.backend,
        "model": args.model,
        "n": args.n,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
    }
    rdir = run_dir(args.run)
    config = {k: v for k, v in vars(args).items() if k != "func"}
    if config.get("base_url"):  # user:password@ or ?key= in a URL must not reach the run log
        from judge_rl.backends.openai import redact_url

        config["base_url"] = [redact_url(u) for u in config["base_url"]]
    log = new_log("generate", rdir.name, config)
    stats: dict[str, Any] = {
        "prompts": len(items),
        "skipped_done": len(items) - len(todo),
        "generated": 0,
        "candidates": 0,
        "failed": 0,
        "partial": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "attempts": 0,
        "retries": 0,
        "timeouts": 0,
    }
    failures: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    backend = make_backend(args) if todo else None
    chunk = (
        args.batch_size if args.backend != "openai" else max(args.batch_size, 4 * args.concurrency)
    )
    try:
        with progress(TextColumn("{task.fields[rate]}")) as bar:
            task = bar.add_task(f"generate {source}", total=len(todo), rate="")
            for s in range(0, len(todo), chunk):
                batch = todo[s : s + chunk]
                starts = [have.get(it.prompt_id, 0) for it in batch]
                reqs = [
                    ChatRequest(
                        messages=to_messages(it, args.system),
                        max_tokens=args.max_new_tokens,
                        temperature=args.temperature,
                        top_p=args.top_p,
                        n=args.n - k0,
                        seed=args.seed if k0 == 0 else args.seed + 7919 * k0,
                    )
                    for it, k0 in zip(batch, starts, strict=True)
                ]
                results = await sample_n(backend, reqs, [r.n for r in reqs])
                cands = []
                for it, k0, res in zip(batch, starts, results, strict=True):
                    for key in ("attempts", "retries", "timeouts"):
                        stats[key] += int(getattr(res, key, 0) or 0)
                    if res.texts:
                        cands += to_candidates(it, res, source, sampling, start=k0)
                        stats["prompt_tokens"] += res.prompt_tokens
                        stats["completion_tokens"] += res.completion_tokens
                    if res.error is not None:
                        stats["failed"] += 1
                        stats["partial"] += bool(res.texts)
                        failures.append(
                            {"prompt_id": it.prompt_id, "error": res.error, "kept": len(res.texts)}
                        )
                        continue
                    stats["generated"] += 1
                append_batch(out, cands)
                stats["candidates"] += len(cands)
                dt = time.perf_counter() - t0
                bar.update(
                    task,
                    advance=len(batch),
                    rate=_rate(stats["completion_tokens"] / max(dt, 1e-9)),
                )
    finally:
        if backend is not None:
            await backend.aclose()
        elapsed = time.perf_counter() - t0
        stats["time_s"] = round(elapsed, 3)
        stats["tokens_per_s"] = round(stats["completion_tokens"] / max(elapsed, 1e-9), 2)
        log.timings["generate"] = elapsed
        log.extra["generate"] = {
            "output": str(out),
            "source": source,
            "sampling": sampling,
            "summary": stats,
            "failures": failures[:100],
        }
        describe = getattr(backend, "describe", None)
        if callable(describe):
            log.extra["generate"]["backend"] = describe()
        endpoints = getattr(backend, "endpoint_stats", None)
        if callable(endpoints):
            log.extra["generate"]["transport"] = {
                "stats": dict(getattr(backend, "stats", {})),
                "endpoints": endpoints(),
            }
        log.save(rdir)
    transport = ""
    if stats["attempts"]:
        transport = (
            f"; {stats['attempts']} attempts, {stats['retries']} retries, "
            f"{stats['timeouts']} timeouts"
        )
    console().print(
        f"wrote {stats['candidates']} candidates for {stats['generated']} prompts to {out} "
        f"({stats['skipped_done']} already there, {stats['failed']} failed; "
        f"{stats['completion_tokens']} tokens in {elapsed:.1f}s{transport}); "
        f"run log {rdir / 'log.json'}"
    )
    if failures:
        kinds: dict[str, int] = {}
        for f in failures:
            kind = f["error"].split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        partial = f", {stats['partial']} with some samples kept" if stats["partial"] else ""
        err.print(
            f"{len(failures)} prompts failed ({', '.join(f'{k}: {v}' for k, v in kinds.items())}"
            f"{partial}); re-run the same command to ask for the missing samples",
            markup=False,
        )
        return 1
    if not out.exists() or out.stat().st_size == 0:  # an empty output is never a success
        err.print(f"no candidates written to {out}", markup=False)
        return 1
    return 0
