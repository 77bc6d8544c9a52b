"""The ``generate`` stage: prompts -> candidates, the one path from a prompt set to candidates.

:func:`generate` (and :func:`agenerate` inside an event loop) is what ``judge-rl generate`` and the
pipeline's ``generate`` stage both run: a typed :class:`GenerateConfig` in; :class:`Candidates`
(the candidates plus a typed :class:`GenerateSection` for the run log) out. It never parses
arguments, prints or exits; progress goes to a callback.

* **Backends**: ``hf`` (transformers), ``vllm`` (offline engine, GPU) or ``openai`` (any
  OpenAI-compatible server), chosen by ``backend``; or an already loaded model and tokenizer
  (the pipeline's policy, shared with training), wrapped in the ``hf`` backend with the policy's
  prompt encoding (:func:`judge_rl.train.rollout.encode_prompt`).
* **n samples, one prefill**: the ``hf`` backend runs a prompt's tokens once for its ``n``
  samples (:func:`judge_rl.backends.hf.generate_prefill_once`); servers that ignore ``n`` are
  asked again for the missing samples (:func:`sample_n`).
* **Resume**: with ``output`` set, prompts whose ``n`` samples from this source are already in
  the file are skipped, a last line cut short by a crash is dropped, and each batch is appended
  with one write, flushed and fsynced (:func:`append_batch`).
* **Candidates**: one per sample, with ``metadata``: ``sample`` (its number), ``sampling`` (the
  settings), ``finish_reason``, token counts, the prompt's ``reference`` and ``category``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from judge_rl.runlog import GenerateFailure, GenerateSection, GenerateStats, Sampling
from judge_rl.types import Candidate, PromptItem

BACKEND_KINDS = ("hf", "vllm", "openai", "mock")
"""The backends :func:`generate` can sample with (``mock``: scripted replies, for tests and fault
injection)."""


@dataclass
class GenerateConfig:
    """Settings of the ``generate`` stage (and of ``judge-rl generate``, flag for flag)."""

    model: str = "embedded"
    """Model folder, ``embedded``, or the endpoint's model name (shared with other stages that
    name the same model)."""
    n: int = 2
    """Samples per prompt."""
    temperature: float = 1.0
    """0 means greedy (then ``n`` must be 1 on a local backend)."""
    max_new_tokens: int = 16
    """Response budget in tokens."""
    batch_size: int | None = None
    """Prompts per generate call and per flush to disk (default: 8; 256 for vllm)."""
    source: str | None = "base"
    """The candidates' ``source``; None: the model's name (:func:`default_source`; for
    ``openai``, the model name sent to the server, as given)."""
    seed: int = 0
    backend: str = "hf"
    """hf, vllm or openai."""
    top_p: float = 1.0
    system: str | None = None
    """System message for every prompt (a prompt that has one keeps its own)."""
    device: str | None = None
    """hf: cpu, cuda, cuda:1 (default: CUDA when present)."""
    dtype: str | None = None
    """hf/vllm: float32, bfloat16, float16 (default: the checkpoint's)."""
    base_urls: list[str] | None = None
    """openai: endpoint base URLs (requests are spread across them)."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: the environment variable holding the API key."""
    concurrency: int = 64
    """openai: most requests in flight."""
    timeout_s: float = 60.0
    """openai: seconds per attempt."""
    max_retries: int = 6
    """openai: retries after the first attempt."""
    output: str | None = None
    """Candidates JSONL to resume from and append to (None: keep them in memory only)."""
    backend_options: dict[str, Any] = field(default_factory=dict)
    """Further keyword options of the backend (e.g. a tournament contestant's ``generation``
    settings that have no field here, or the ``mock`` backend's ``text``)."""


def default_batch_size(backend: str) -> int:
    """Prompts per call when ``batch_size`` is not set: one vLLM engine call takes many."""
    return 256 if backend == "vllm" else 8


def check_config(cfg: GenerateConfig, names: Mapping[str, str] | None = None) -> None:
    """Reject bad settings before anything is loaded.

    Raises:
        ConfigError: naming the setting, as ``names`` spells it (e.g. ``{"top_p": "--top-p"}``
            for the CLI; the field name otherwise).
    """
    import math

    from judge_rl.errors import ConfigError

    def nm(key: str) -> str:
        return (names or {}).get(key, key)

    if cfg.backend not in BACKEND_KINDS:
        raise ConfigError(
            f"unknown backend {cfg.backend!r} (use {', '.join(BACKEND_KINDS)})",
            setting=nm("backend"),
        )
    if cfg.n < 1:
        raise ConfigError(f"must be >= 1, got {cfg.n}", setting=nm("n"))
    if cfg.max_new_tokens < 1:
        raise ConfigError(f"must be >= 1, got {cfg.max_new_tokens}", setting=nm("max_new_tokens"))
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise ConfigError(f"must be >= 1, got {cfg.batch_size}", setting=nm("batch_size"))
    if cfg.temperature < 0:
        raise ConfigError(f"must be >= 0, got {cfg.temperature}", setting=nm("temperature"))
    if cfg.temperature == 0 and cfg.n > 1 and cfg.backend != "openai":
        raise ConfigError(
            f"greedy decoding (temperature 0) gives one answer per prompt: use {nm('n')} 1 or a "
            "temperature > 0",
            setting=nm("n"),
        )
    if not 0 < cfg.top_p <= 1:
        raise ConfigError(f"must be in (0, 1], got {cfg.top_p}", setting=nm("top_p"))
    if not (math.isfinite(cfg.timeout_s) and cfg.timeout_s > 0):
        raise ConfigError(f"must be a number > 0, got {cfg.timeout_s}", setting=nm("timeout_s"))
    if cfg.max_retries < 0:
        raise ConfigError(f"must be >= 0, got {cfg.max_retries}", setting=nm("max_retries"))
    if cfg.concurrency < 1:
        raise ConfigError(f"must be >= 1, got {cfg.concurrency}", setting=nm("concurrency"))
    if cfg.base_urls and cfg.backend != "openai":
        raise ConfigError(
            f"{nm('base_urls')} needs {nm('backend')} openai", setting=nm("base_urls")
        )
    if cfg.output is not None and Path(cfg.output).suffix != ".jsonl":
        raise ConfigError(f"{cfg.output}: candidates are written as .jsonl", setting=nm("output"))


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


def resolve_source(cfg: GenerateConfig) -> str:
    """The source name recorded on each candidate: ``source``; else, for a server, the model
    name sent to it, as given (``smollm2`` served by llama.cpp is not the embedded model); for a
    local model, :func:`default_source`."""
    if cfg.source:
        return str(cfg.source)
    if cfg.backend == "openai":
        return str(cfg.model)
    return default_source(cfg.model)


# --- records ---------------------------------------------------------------------------------


class Candidates(BaseModel):
    """The ``generate`` stage's output."""

    candidates: list[Candidate] = Field(default_factory=list)
    section: GenerateSection = Field(default_factory=GenerateSection)


@dataclass
class GenerateProgress:
    """What a progress callback gets: once before the backend loads (``ready`` False), once
    when it is up, then after every batch."""

    done: int
    """Prompts finished (or failed) in this run so far."""
    todo: int
    """Prompts this run works on (those not already in the output)."""
    section: GenerateSection
    """The live record (the same object throughout, filled as the run goes)."""
    ready: bool = True
    """The backend is loaded (or nothing is left to do)."""


# --- steps -----------------------------------------------------------------------------------


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


def make_backend(cfg: GenerateConfig) -> Any:
    """The backend ``cfg.backend`` names, with the options that apply to it."""
    from judge_rl.backends.base import load_backend

    batch = cfg.batch_size or default_batch_size(cfg.backend)
    extra = dict(cfg.backend_options)
    if cfg.backend == "hf":
        return load_backend(
            "hf", model=cfg.model, device=cfg.device, batch_size=batch, dtype=cfg.dtype, **extra
        )
    if cfg.backend == "vllm":
        return load_backend(
            "vllm", model=cfg.model, dtype=cfg.dtype or "auto", batch_size=batch, **extra
        )
    if cfg.backend == "mock":
        return load_backend("mock", model=cfg.model, **extra)
    return load_backend(
        "openai",
        model=cfg.model,
        base_urls=cfg.base_urls,
        api_key_env=cfg.api_key_env,
        concurrency=cfg.concurrency,
        timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries,
        **extra,
    )


def to_messages(item: PromptItem, system: str | None) -> list[dict[str, str]]:
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
    item: PromptItem, res: Any, source: str, sampling: dict[str, Any], start: int = 0
) -> list[Candidate]:
    """One Candidate per sample a result holds (also the samples of a partly failed one);
    sample numbers start at ``start`` (samples already in the output from an earlier run)."""
    from judge_rl._io import content_hash

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


def append_batch(path: Path, cands: Sequence[Candidate]) -> None:
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


# --- the stage -------------------------------------------------------------------------------

_BATCH_SEED_STEP = 104_729
"""Seed offset between batches, so no two batches of a run sample from the same random stream."""


def generate(
    cfg: GenerateConfig,
    prompts: Sequence[PromptItem],
    model: Any = None,
    tokenizer: Any = None,
    *,
    on_progress: Callable[[GenerateProgress], None] | None = None,
    collect: bool = True,
) -> Candidates:
    """``cfg.n`` responses per prompt as :class:`Candidate` s (see the module docstring).

    Args:
        cfg: The settings (checked first: :func:`check_config`).
        prompts: The prompt items, in order.
        model: An already loaded causal LM (with ``tokenizer``): used instead of loading
            ``cfg.model``, with the policy's prompt encoding (the pipeline shares its policy).
        tokenizer: The loaded model's tokenizer.
        on_progress: Called before any work and after every batch (:class:`GenerateProgress`).
        collect: Keep this run's candidates in the result (False: only write them to
            ``cfg.output``; the section still counts them).

    Raises:
        ConfigError: a bad setting, or a backend that cannot start (nothing was generated).
        DataError: no prompts, or an output file that is not a candidates file.
    """
    import asyncio

    return asyncio.run(
        agenerate(cfg, prompts, model, tokenizer, on_progress=on_progress, collect=collect)
    )


async def agenerate(
    cfg: GenerateConfig,
    prompts: Sequence[PromptItem],
    model: Any = None,
    tokenizer: Any = None,
    *,
    on_progress: Callable[[GenerateProgress], None] | None = None,
    collect: bool = True,
) -> Candidates:
    """:func:`generate` for callers inside an event loop."""
    from judge_rl.backends.base import ChatRequest
    from judge_rl.errors import ConfigError, DataError

    check_config(cfg)
    if model is not None and cfg.backend != "hf":
        raise ConfigError(
            f"a loaded model runs on the hf backend, not {cfg.backend}", setting="backend"
        )
    items = list(prompts)
    if not items:
        raise DataError("no prompts to generate for")
    source = resolve_source(cfg)
    out = None
    if cfg.output:
        from judge_rl._io import check_output_file

        out = check_output_file(cfg.output, "output")  # a folder, a device…: before any work
    have, _ = load_counts(out, source) if out is not None else ({}, 0)
    todo = [it for it in items if have.get(it.prompt_id, 0) < cfg.n]
    batch_size = cfg.batch_size or default_batch_size(cfg.backend)
    sampling = Sampling(
        backend=cfg.backend,
        model=cfg.model,
        n=cfg.n,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
    )
    sampling_dict = sampling.model_dump()
    section = GenerateSection(
        output=str(out) if out is not None else None,
        source=source,
        sampling=sampling,
        summary=GenerateStats(prompts=len(items), skipped_done=len(items) - len(todo)),
    )
    stats = section.summary
    t0 = time.perf_counter()

    def tick(done: int, ready: bool = True) -> None:
        dt = time.perf_counter() - t0
        stats.time_s = round(dt, 3)
        stats.tokens_per_s = round(stats.completion_tokens / max(dt, 1e-9), 2)
        if on_progress is not None:
            on_progress(GenerateProgress(done=done, todo=len(todo), section=section, ready=ready))

    tick(0, ready=False)
    results_out: list[Candidate] = []
    backend: Any = None
    prefills0 = 0
    try:
        if todo:
            if model is not None:
                from judge_rl.backends.hf import HFBackend

                backend = HFBackend(
                    cfg.model,
                    batch_size=batch_size,
                    model_object=model,
                    tokenizer=tokenizer,
                    prompt_format="policy",
                )
            else:
                backend = make_backend(cfg)
            prefills0 = int(getattr(backend, "prefills", 0) or 0)
        tick(0)
        # A server takes many requests at once: give it enough to fill its concurrency.
        chunk = batch_size if cfg.backend != "openai" else max(batch_size, 4 * cfg.concurrency)
        for b, s in enumerate(range(0, len(todo), chunk)):
            batch = todo[s : s + chunk]
            starts = [have.get(it.prompt_id, 0) for it in batch]
            seed = cfg.seed + _BATCH_SEED_STEP * b
            reqs = [
                ChatRequest(
                    messages=to_messages(it, cfg.system),
                    max_tokens=cfg.max_new_tokens,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    n=cfg.n - k0,
                    seed=seed if k0 == 0 else seed + 7919 * k0,
                )
                for it, k0 in zip(batch, starts, strict=True)
            ]
            results = await sample_n(backend, reqs, [r.n for r in reqs])
            cands: list[Candidate] = []
            for it, k0, res in zip(batch, starts, results, strict=True):
                stats.attempts += int(getattr(res, "attempts", 0) or 0)
                stats.retries += int(getattr(res, "retries", 0) or 0)
                stats.timeouts += int(getattr(res, "timeouts", 0) or 0)
                if res.texts:
                    cands += to_candidates(it, res, source, sampling_dict, start=k0)
                    stats.prompt_tokens += res.prompt_tokens
                    stats.completion_tokens += res.completion_tokens
                if res.error is not None:
                    stats.failed += 1
                    stats.partial += bool(res.texts)
                    kind = res.error.split(":", 1)[0]
                    section.failure_kinds[kind] = section.failure_kinds.get(kind, 0) + 1
                    if len(section.failures) < 100:
                        section.failures.append(
                            GenerateFailure(
                                prompt_id=it.prompt_id, error=res.error, kept=len(res.texts)
                            )
                        )
                    continue
                stats.generated += 1
            if out is not None:
                append_batch(out, cands)
            if collect:
                results_out += cands
            stats.candidates += len(cands)
            if backend is not None and hasattr(backend, "prefills"):
                stats.prefills = int(backend.prefills) - prefills0
            tick(s + len(batch))
    finally:
        if backend is not None:
            describe = getattr(backend, "describe", None)
            if callable(describe):
                section.backend = describe()
            endpoints = getattr(backend, "endpoint_stats", None)
            if callable(endpoints):
                section.transport = {
                    "stats": dict(getattr(backend, "stats", {})),
                    "endpoints": endpoints(),
                }
            await backend.aclose()
        dt = time.perf_counter() - t0
        stats.time_s = round(dt, 3)
        stats.tokens_per_s = round(stats.completion_tokens / max(dt, 1e-9), 2)
    return Candidates(candidates=results_out, section=section)


__all__ = [
    "BACKEND_KINDS",
    "Candidates",
    "GenerateConfig",
    "GenerateFailure",
    "GenerateProgress",
    "GenerateSection",
    "GenerateStats",
    "Sampling",
    "agenerate",
    "append_batch",
    "check_config",
    "default_batch_size",
    "default_source",
    "generate",
    "load_counts",
    "load_done",
    "make_backend",
    "resolve_source",
    "sample_n",
    "to_candidates",
    "to_messages",
]
