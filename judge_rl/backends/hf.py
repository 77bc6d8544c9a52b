"""Local transformers backend: any causal LM, the embedded SmolLM2-135M-Instruct by default.

Requests are rendered with the tokenizer's chat template, left-padded and batched. Two paths:

* **generation** (``label_probs`` is None): ``model.generate`` with the request's sampling
  parameters, ``n`` samples per request; stop strings cut the text afterwards;
* **label probabilities** (``label_probs`` given): one forward pass, no sampling. The next-token
  distribution after the generation prompt (plus ``metadata["label_prefix"]`` when a request has
  one, e.g. ``"[["``) is restricted to the label tokens and renormalised; the text is the most
  likely label. This is how a local judge gives ``p_a`` (G-Eval, Liu et al. 2023, §2.3 weights
  scores by the label-token probabilities in the same way).

Token counts are exact; cost is 0. The model runs in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from judge_rl.backends.base import ChatRequest, ChatResult
from judge_rl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


class HFBackend:
    """A transformers causal LM behind the :class:`~judge_rl.backends.base.Backend` protocol.

    Args:
        model: A model folder, a hub name (when the hub is reachable) or ``embedded``.
        device: ``cpu``, ``cuda``, ``cuda:1``…; default: CUDA when present, else CPU.
        batch_size: Prompts per forward pass / ``generate`` call.
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``auto``; default: the checkpoint's.
        max_new_tokens: Overrides every request's ``max_tokens`` when set.
        max_length: Prompts longer than this many tokens are cut from the left (keeping the end,
            where the question and the answer slot are).
        model_object: An already loaded model (e.g. a policy being trained); skips loading.
        tokenizer: An already loaded tokenizer (needed with ``model_object``).
    """

    name = "hf"

    def __init__(
        self,
        model: str = "embedded",
        device: str | None = None,
        batch_size: int = 8,
        dtype: str | None = None,
        max_new_tokens: int | None = None,
        *,
        max_length: int = 2048,
        model_object: PreTrainedModel | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **extra: Any,
    ) -> None:
        if extra:
            raise ConfigError(
                f"unknown option(s) for the hf backend: {', '.join(sorted(extra))}",
                setting="backend",
            )
        if batch_size < 1:
            raise ConfigError(f"must be >= 1, got {batch_size}", setting="batch_size")
        from judge_rl.models import default_device, load_causal_lm, load_tokenizer

        self.model = str(model)
        self.batch_size = int(batch_size)
        self.max_new_tokens = max_new_tokens
        self.max_length = int(max_length)
        if model_object is not None:
            if tokenizer is None:
                raise ConfigError("model_object needs its tokenizer", setting="tokenizer")
            self.lm = model_object
            self.device = str(next(model_object.parameters()).device)
        else:
            self.device = device or default_device()
            self.lm = load_causal_lm(self.model, dtype=_dtype(dtype), device=self.device)
        self.tok = tokenizer if tokenizer is not None else load_tokenizer(self.model)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.tok.padding_side = "left"
        self._lock = threading.Lock()
        self._label_ids: dict[tuple[str, ...], list[list[int]]] = {}

    def describe(self) -> dict[str, Any]:
        """What identifies this backend in a fingerprint or report."""
        return {"backend": self.name, "model": self.model}

    def fingerprint_params(self) -> dict[str, Any]:
        """Backend settings that change outputs."""
        out: dict[str, Any] = {"max_length": self.max_length}
        if self.max_new_tokens:
            out["max_new_tokens"] = self.max_new_tokens
        return out

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request, in order (run in a worker thread)."""
        if not requests:
            return []
        return await asyncio.to_thread(self.chat_sync, list(requests))

    async def aclose(self) -> None:
        return None

    # ---------------------------------------------------------------------------------------

    def chat_sync(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """Synchronous :meth:`chat`: groups requests by kind and decoding parameters, batches."""
        results: list[ChatResult | None] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(requests):
            if r.label_probs:
                key: tuple[Any, ...] = ("probs", tuple(r.label_probs))
            else:
                key = ("gen", self._max_new(r), r.temperature, r.top_p, r.n, r.seed)
            groups.setdefault(key, []).append(i)
        with self._lock:
            for key, idx in groups.items():
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s : s + self.batch_size]
                    batch = [requests[i] for i in chunk]
                    t0 = time.perf_counter()
                    try:
                        out = (
                            self._label_batch(batch)
                            if key[0] == "probs"
                            else self._gen_batch(batch)
                        )
                    except Exception as e:  # a failure of this batch only; others go on
                        log.exception("hf backend batch failed")
                        out = [ChatResult(error=f"backend: {type(e).__name__}: {e}") for _ in batch]
                    dt = (time.perf_counter() - t0) / max(1, len(batch))
                    for i, res in zip(chunk, out, strict=True):
                        res.latency_s = dt
                        results[i] = res
        return [r if r is not None else ChatResult(error="backend: not run") for r in results]

    def _max_new(self, r: ChatRequest) -> int:
        return int(self.max_new_tokens or r.max_tokens)

    def render(self, messages: list[dict[str, str]], prefix: str = "") -> str:
        """The prompt text: the chat template with the generation prompt, plus ``prefix``."""
        if getattr(self.tok, "chat_template", None):
            text = self.tok.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        else:  # a base model without a template: plain turns
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
        return str(text) + prefix

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tok(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
            add_special_tokens=False,
        )
        return {k: v.to(self.lm.device) for k, v in enc.items()}

    # --- label probabilities: one forward pass ------------------------------------------------

    def label_token_ids(self, labels: Sequence[str]) -> list[list[int]]:
        """For each label, the first token of each way it can start an answer (``A``, `` A``)."""
        key = tuple(labels)
        if key not in self._label_ids:
            ids: list[list[int]] = []
            for lab in labels:
                variants: set[int] = set()
                for form in (lab, " " + lab):
                    toks = self.tok.encode(form, add_special_tokens=False)
                    if toks:
                        variants.add(int(toks[0]))
                ids.append(sorted(variants))
            self._label_ids[key] = ids
        return self._label_ids[key]

    def _label_batch(self, batch: list[ChatRequest]) -> list[ChatResult]:
        import torch

        labels = list(batch[0].label_probs or [])
        texts = [self.render(r.messages, str(r.metadata.get("label_prefix") or "")) for r in batch]
        enc = self._encode(texts)
        with torch.inference_mode():
            # Only the last position's logits are needed: logits_to_keep=1 skips the LM head
            # (hidden x vocab matmul) on every other position, T times less work.
            logits = self.lm(**enc, logits_to_keep=1).logits  # (B, 1, V)
        # Left padding: the last position of every row is the last prompt token.
        last = logits[:, -1, :].float()  # (B, V)
        logp = torch.log_softmax(last, dim=-1)  # (B, V)
        ids = self.label_token_ids(labels)
        # P(label) = sum over its token variants; renormalised over the labels.
        mass = torch.stack([logp[:, v].exp().sum(dim=-1) for v in ids], dim=-1)  # (B, L)
        probs = mass / mass.sum(dim=-1, keepdim=True).clamp_min(1e-30)  # (B, L)
        n_prompt = enc["attention_mask"].sum(dim=-1).tolist()  # (B,)
        out = []
        for row, pt in zip(probs.tolist(), n_prompt, strict=True):
            p = dict(zip(labels, row, strict=True))
            best = max(labels, key=lambda k: p[k])
            out.append(
                ChatResult(
                    texts=[best],
                    label_probs=p,
                    finish_reasons=["label"],
                    prompt_tokens=int(pt),
                    completion_tokens=1,
                )
            )
        return out

    # --- generation -----------------------------------------------------------------------------

    def _gen_batch(self, batch: list[ChatRequest]) -> list[ChatResult]:
        import torch

        r0 = batch[0]
        texts = [self.render(r.messages) for r in batch]
        enc = self._encode(texts)
        n_in = enc["input_ids"].shape[1]
        sample = r0.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self._max_new(r0),
            "do_sample": sample,
            "num_return_sequences": r0.n,
            "pad_token_id": self.tok.pad_token_id,
        }
        if self.tok.eos_token_id is not None:
            kwargs["eos_token_id"] = self.tok.eos_token_id
        if sample:
            kwargs["temperature"] = r0.temperature
            kwargs["top_p"] = r0.top_p
            kwargs["top_k"] = 0
        else:  # silence "generation flags are not valid" warnings from sampling defaults
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if r0.seed is not None:
            torch.manual_seed(r0.seed)
        with torch.inference_mode():
            lm: Any = self.lm
            seqs = lm.generate(**enc, **kwargs)  # (B*n, T_in + T_new)
        new = seqs[:, n_in:]  # (B*n, T_new)
        n_prompt = enc["attention_mask"].sum(dim=-1).tolist()  # (B,)
        out: list[ChatResult] = []
        for b, req in enumerate(batch):
            texts_b, finish, n_new = [], [], 0
            for j in range(req.n):
                toks = new[b * req.n + j].tolist()
                toks, reason = self._cut(toks)
                text = str(self.tok.decode(toks, skip_special_tokens=True))
                if req.stop:
                    text, stopped = _apply_stop(text, req.stop)
                    reason = "stop" if stopped else reason
                texts_b.append(text)
                finish.append(reason)
                n_new += len(toks)
            out.append(
                ChatResult(
                    texts=texts_b,
                    finish_reasons=finish,
                    prompt_tokens=int(n_prompt[b]),
                    completion_tokens=n_new,
                )
            )
        return out

    def _cut(self, toks: list[int]) -> tuple[list[int], str]:
        """Tokens up to (not including) EOS and padding; ``stop`` when EOS was generated."""
        eos = self.tok.eos_token_id
        eos_ids = set(eos) if isinstance(eos, list) else {eos}
        for k, t in enumerate(toks):
            if t in eos_ids:
                return toks[:k], "stop"
        pad = self.tok.pad_token_id
        while toks and toks[-1] == pad and pad not in eos_ids:
            toks = toks[:-1]
        return toks, "length"


def _apply_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string.

    >>> _apply_stop("a b STOP c", ["STOP"])
    ('a b ', True)
    >>> _apply_stop("abc", ["x"])
    ('abc', False)
    """
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _dtype(name: str | None) -> Any:
    if name is None or name == "auto":
        return None
    import torch

    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if name not in table:
        raise ConfigError(f"unknown dtype {name!r} (use {', '.join(table)})", setting="dtype")
    return table[name]


__all__ = ["HFBackend"]
