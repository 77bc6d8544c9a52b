"""vLLM offline engine backend (GPU): ``LLM.chat`` with one ``SamplingParams`` per request.

vLLM is an optional extra (``pip install 'judge_rl[vllm]'``) imported only when this backend is
chosen. Batching: the backend exposes ``batch_size`` and ``concurrency``, which the judge layer
reads to hand it chunks of ``batch_size`` requests; each chunk goes to the engine in one
``LLM.chat`` call (two when some requests continue a prefilled reply), and chunks that arrive
while the engine is busy are coalesced into the next call (the engine is not thread-safe, so
calls never overlap; nothing is serialised per request). Chat templates are applied by
``LLM.chat``. When a request asks for ``label_probs``, the engine returns the top
``logprobs`` alternatives of each generated token and the label probabilities are read at the
verdict position, exactly as for OpenAI-compatible servers
(:func:`judge_rl.backends.openai.verdict_position`). For a server, run
``vllm serve MODEL`` and use the ``openai`` backend with ``--base-url``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from judge_rl.backends.base import ChatRequest, ChatResult
from judge_rl.backends.openai import verdict_position
from judge_rl.errors import ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'judge_rl[vllm]' (needs a CUDA GPU)"


def require_vllm() -> Any:
    """Import vLLM, or raise :class:`ConfigError` saying what is missing (package or GPU)."""
    try:
        import vllm
    except ImportError as e:
        raise ConfigError(
            f"the vllm backend needs the vllm package ({e}); install it with: {INSTALL_HINT}, "
            "or use --backend hf on a CPU",
            setting="backend",
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "the vllm backend needs a CUDA GPU and none is visible; use --backend hf on a CPU",
            setting="backend",
        )
    return vllm


class VLLMBackend:
    """vLLM's offline ``LLM`` behind the :class:`~judge_rl.backends.base.Backend` protocol.

    Args:
        model: A model folder, hub name or ``embedded``.
        tensor_parallel_size: GPUs to shard the model over.
        gpu_memory_utilization: Fraction of GPU memory vLLM may take.
        dtype: ``auto``, ``bfloat16``, ``float16``, ``float32``.
        max_model_len: Context length cap (saves memory), or None for the model's.
        seed: Engine seed (requests with their own ``seed`` use it).
        top_logprobs: Alternatives per token returned when ``label_probs`` is asked for.
        batch_size: Requests per chunk the judge layer hands over (one engine call each).
        engine: An engine object already built (``vllm.LLM`` or anything with its ``chat``);
            no new engine is loaded (tests, or a caller that shares one engine).
        **engine_kwargs: Passed to ``vllm.LLM`` (e.g. ``enforce_eager=True``).
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        max_model_len: int | None = None,
        seed: int = 0,
        top_logprobs: int = 20,
        batch_size: int = 256,
        engine: Any = None,
        **engine_kwargs: Any,
    ) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"must be >= 1, got {batch_size}", setting="batch_size")
        self.model = str(model)
        self.top_logprobs = int(top_logprobs)
        self.batch_size = int(batch_size)
        """Requests per chunk (read by the judge layer: one engine call per chunk)."""
        self.concurrency = 2 * self.batch_size
        """Requests in flight: two chunks (one in the engine, the next being prepared; the
        judge layer reads ``concurrency // batch_size`` as its chunks in flight)."""
        self.engine_calls: list[int] = []
        """Requests per engine call, in order (for tests and the benchmark)."""
        self._pending: list[tuple[list[ChatRequest], asyncio.Future[list[ChatResult]]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._engine_lock = threading.Lock()  # the engine is not thread-safe: calls never overlap
        self._engine_kwargs: dict[str, Any] = {"dtype": dtype}
        if engine is not None:
            self.llm = engine
            return
        vllm = require_vllm()
        from judge_rl.models import resolve_model

        kwargs: dict[str, Any] = {
            "model": resolve_model(self.model),
            "tensor_parallel_size": int(tensor_parallel_size),
            "gpu_memory_utilization": float(gpu_memory_utilization),
            "dtype": dtype,
            "seed": int(seed),
        }
        if max_model_len:
            kwargs["max_model_len"] = int(max_model_len)
        kwargs.update(engine_kwargs)
        self._engine_kwargs = {k: v for k, v in kwargs.items() if k != "model"}
        try:
            self.llm = vllm.LLM(**kwargs)
        except (OSError, ValueError) as e:
            raise ConfigError(f"vLLM cannot load {self.model!r}: {e}", setting="model") from None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    def fingerprint_params(self) -> dict[str, Any]:
        return {"dtype": self._engine_kwargs.get("dtype")}

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Results in order. Calls made while the engine is busy wait and go together in the
        next engine call."""
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        if self._drainer is not None and self._drainer.get_loop() is not loop:
            self._drainer, self._pending = None, []  # a new event loop: start afresh
        fut: asyncio.Future[list[ChatResult]] = loop.create_future()
        self._pending.append((list(requests), fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let chunks handed over in the same tick join the first call
        while self._pending:
            waiting, self._pending = self._pending, []
            flat = [r for reqs, _ in waiting for r in reqs]
            try:
                results = await asyncio.to_thread(self.chat_sync, flat)
            except BaseException as e:  # pragma: no cover - chat_sync catches engine errors
                for _, fut in waiting:
                    if not fut.done():
                        fut.set_exception(e)
                raise
            at = 0
            for reqs, fut in waiting:
                if not fut.done():
                    fut.set_result(results[at : at + len(reqs)])
                at += len(reqs)

    async def aclose(self) -> None:
        return None

    def chat_sync(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """All requests in one engine call per prompt shape (plain / with an answer prefix)."""
        results: list[ChatResult | None] = [None] * len(requests)
        plain = [i for i, r in enumerate(requests) if not r.metadata.get("label_prefix")]
        prefixed = [i for i, r in enumerate(requests) if r.metadata.get("label_prefix")]
        for idx, prefix in ((plain, False), (prefixed, True)):
            if not idx:
                continue
            t0 = time.perf_counter()
            try:
                with self._engine_lock:
                    self.engine_calls.append(len(idx))
                    outs = self._generate([requests[i] for i in idx], prefix)
            except Exception as e:  # one failed engine call fails its requests only
                log.exception("vllm generate failed")
                outs = [ChatResult(error=f"backend: {type(e).__name__}: {e}") for _ in idx]
            dt = (time.perf_counter() - t0) / len(idx)
            for i, res in zip(idx, outs, strict=True):
                res.latency_s = dt
                results[i] = res
        return [r if r is not None else ChatResult(error="backend: not run") for r in results]

    def sampling_params(self, req: ChatRequest) -> Any:
        try:
            from vllm import SamplingParams
        except ImportError:  # an injected engine without vllm installed (tests)
            from types import SimpleNamespace as SamplingParams

        kw: dict[str, Any] = {
            "n": req.n,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "max_tokens": req.max_tokens,
        }
        if req.seed is not None:
            kw["seed"] = req.seed
        if req.stop:
            kw["stop"] = list(req.stop)
        if req.label_probs:
            kw["logprobs"] = self.top_logprobs
        return SamplingParams(**kw)

    def _generate(self, batch: list[ChatRequest], prefixed: bool) -> list[ChatResult]:
        convs = []
        for r in batch:
            msgs = [dict(m) for m in r.messages]
            if prefixed:
                msgs.append({"role": "assistant", "content": str(r.metadata["label_prefix"])})
            convs.append(msgs)
        outs = self.llm.chat(
            convs,
            sampling_params=[self.sampling_params(r) for r in batch],
            use_tqdm=False,
            add_generation_prompt=not prefixed,
            continue_final_message=prefixed,
        )
        return [to_result(r, o) for r, o in zip(batch, outs, strict=True)]


def to_result(req: ChatRequest, out: Any) -> ChatResult:
    """A vLLM ``RequestOutput`` as a :class:`ChatResult` (label probabilities included)."""
    texts = [c.text for c in out.outputs]
    finish = [str(c.finish_reason or "") for c in out.outputs]
    probs = mass = None
    if req.label_probs and out.outputs and out.outputs[0].logprobs:
        first = out.outputs[0]
        found = verdict_position(
            openai_style_logprobs(first.logprobs, list(first.token_ids)), req.label_probs
        )
        if found is not None:
            probs, mass = found[1], found[2]
    return ChatResult(
        texts=texts,
        finish_reasons=finish,
        label_probs=probs,
        label_mass=mass,
        prompt_tokens=len(out.prompt_token_ids or []),
        completion_tokens=sum(len(c.token_ids) for c in out.outputs),
    )


def openai_style_logprobs(
    positions: Sequence[dict[int, Any]], token_ids: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """vLLM's per-position ``{token_id: Logprob}`` as OpenAI's ``logprobs.content`` list.

    ``token_ids`` are the generated tokens (the sampled one at each position, which need not be
    the most likely); without them the most likely token stands in.

    >>> from types import SimpleNamespace as L
    >>> pos = [{5: L(logprob=-0.1, rank=1, decoded_token="A"), 6: L(logprob=-2.4, rank=2,
    ...         decoded_token="B")}]
    >>> openai_style_logprobs(pos)[0]["token"], openai_style_logprobs(pos, [6])[0]["token"]
    ('A', 'B')
    """
    content = []
    for i, pos in enumerate(positions):
        ranked = sorted(
            pos.items(), key=lambda kv: kv[1].rank if kv[1].rank is not None else 1 << 30
        )
        top = [{"token": lp.decoded_token or "", "logprob": float(lp.logprob)} for _, lp in ranked]
        chosen_id = token_ids[i] if token_ids is not None and i < len(token_ids) else None
        if chosen_id in pos:
            lp = pos[chosen_id]
            chosen = {"token": lp.decoded_token or "", "logprob": float(lp.logprob)}
        else:
            chosen = top[0] if top else {"token": "", "logprob": 0.0}
        content.append({**chosen, "top_logprobs": top})
    return content


__all__ = ["VLLMBackend", "openai_style_logprobs", "require_vllm", "to_result"]
