"""``judge-rl generate``: sample K responses per prompt with any backend and write Candidates.

Input: a prompt set (JSONL/JSON/CSV/Parquet, or ``builtin:<name>``) read by
:func:`judge_rl.data.read_prompts`. Output: candidates JSONL, one :class:`~judge_rl.types.Candidate`
per line, with the sampling parameters, token counts, finish reason and the prompt's reference
answer (``metadata["reference"]``) in ``metadata``; plus ``reports/<run>/log.json``.

Resumable: prompts whose K samples are already in the output are skipped; each batch is appended
with one write and flushed to disk, and a line cut short by a crash is dropped on the next run.

The work is :func:`judge_rl.pipeline.generate.generate`, the same function the pipeline's
``generate`` stage runs: this module maps flags to its :class:`GenerateConfig` and renders.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from judge_rl.pipeline.generate import GenerateConfig


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


FLAGS = {
    "backend": "--backend",
    "n": "--n",
    "max_new_tokens": "--max-new-tokens",
    "batch_size": "--batch-size",
    "temperature": "--temperature",
    "top_p": "--top-p",
    "timeout_s": "--timeout",
    "max_retries": "--max-retries",
    "concurrency": "--concurrency",
    "base_urls": "--base-url",
    "output": "--output",
}
"""Config field -> the flag that sets it (errors name the flag)."""


def to_config(args: argparse.Namespace) -> GenerateConfig:
    """The library config the flags stand for."""
    from judge_rl.pipeline.generate import GenerateConfig

    return GenerateConfig(
        model=args.model,
        n=args.n,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        source=args.source,
        seed=args.seed,
        backend=args.backend,
        top_p=args.top_p,
        system=args.system,
        device=args.device,
        dtype=args.dtype,
        base_urls=args.base_url,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        max_retries=args.max_retries,
        output=args.output,
    )


def check_args(args: argparse.Namespace) -> GenerateConfig:
    """Reject bad settings before anything is loaded (errors name the flag); the config."""
    from judge_rl.pipeline.generate import check_config, default_batch_size

    if args.batch_size is None:  # the run log records the value used
        args.batch_size = default_batch_size(args.backend)
    cfg = to_config(args)
    check_config(cfg, FLAGS)
    return cfg


def _rate(tokens_per_s: float) -> str:
    """Progress-bar rate text.

    >>> _rate(0.46), _rate(123.4)
    ('0.5 tok/s', '123 tok/s')
    """
    return f"{tokens_per_s:.1f} tok/s" if tokens_per_s < 10 else f"{tokens_per_s:.0f} tok/s"


async def _run(args: argparse.Namespace) -> int:
    from rich.progress import TextColumn

    from judge_rl._io import check_output_file
    from judge_rl.console import console, err_console, progress
    from judge_rl.data import read_prompts
    from judge_rl.errors import DataError
    from judge_rl.pipeline.generate import GenerateProgress, GenerateSection, agenerate
    from judge_rl.runlog import new_log, run_dir

    cfg = check_args(args)
    check_output_file(args.output, "--output")  # before any model loads
    items = list(read_prompts(args.prompts))
    if args.limit is not None:
        items = items[: max(0, args.limit)]
    if not items:
        raise DataError("no prompts to generate for", file=str(args.prompts))
    out = Path(args.output)
    rdir = run_dir(args.run)
    config = {k: v for k, v in vars(args).items() if k != "func"}
    if config.get("base_url"):  # user:password@ or ?key= in a URL must not reach the run log
        from judge_rl.backends.openai import redact_url

        config["base_url"] = [redact_url(u) for u in config["base_url"]]
    log = new_log("generate", rdir.name, config)
    err = err_console()
    live: list[GenerateSection] = []  # the library's live record, kept should it raise
    with ExitStack() as stack:
        bars: list[tuple[Any, Any]] = []

        def on_progress(p: GenerateProgress) -> None:
            s = p.section.summary
            if not p.ready:  # before the model loads
                live.append(p.section)
                if s.skipped_done:
                    err.print(f"resuming: {s.skipped_done} of {s.prompts} prompts already in {out}")
                return
            if not bars:  # the bar starts once the backend is up (a set-up error stays one line)
                bar = stack.enter_context(progress(TextColumn("{task.fields[rate]}")))
                bars.append(
                    (bar, bar.add_task(f"generate {p.section.source}", total=p.todo, rate=""))
                )
            bar, task = bars[0]
            bar.update(task, completed=p.done, rate=_rate(s.tokens_per_s) if p.done else "")

        try:
            await agenerate(cfg, items, on_progress=on_progress, collect=False)
        finally:
            if live:  # the work finished before an error is in the output; the log says so
                log.timings["generate"] = live[0].summary.time_s
                log.generate = live[0]
                log.save(rdir)
    section = live[0]
    stats = section.summary
    transport = ""
    if stats.attempts:
        transport = (
            f"; {stats.attempts} attempts, {stats.retries} retries, {stats.timeouts} timeouts"
        )
    console().print(
        f"wrote {stats.candidates} candidates for {stats.generated} prompts to {out} "
        f"({stats.skipped_done} already there, {stats.failed} failed; "
        f"{stats.completion_tokens} tokens in {stats.time_s:.1f}s{transport}); "
        f"run log {rdir / 'log.json'}"
    )
    if stats.failed:
        kinds = ", ".join(f"{k}: {v}" for k, v in section.failure_kinds.items())
        partial = f", {stats.partial} with some samples kept" if stats.partial else ""
        err.print(
            f"{stats.failed} prompts failed ({kinds}{partial}); re-run the same command to ask "
            "for the missing samples",
            markup=False,
        )
        return 1
    if not out.exists() or out.stat().st_size == 0:  # an empty output is never a success
        err.print(f"no candidates written to {out}", markup=False)
        return 1
    return 0
