"""Local transformers backend: any causal LM, the embedded SmolLM2-135M-Instruct by default.

Requests are rendered with the tokenizer's chat template, left-padded and batched. Two paths:

* **generation** (``label_probs`` is None): ``model.generate`` with the request's sampling
  parameters, ``n`` samples per request; stop strings cut the text afterwards. The ``n`` samples
  of a prompt share one prefill (:func:`generate_prefill_once`): the prompt's tokens run through
  the model once and the key/value cache is repeated ``n`` times (``num_return_sequences`` would
  run the prefill ``n`` times); :attr:`HFBackend.prefills` counts the prompt rows prefilled;
* **label probabilities** (``label_probs`` given): one forward pass, no sampling. The next-token
  distribution after the generation prompt (plus ``metadata["label_prefix"]`` when a request has
  one: ``"[["``, or a judge's whole reply up to its verdict slot, which continues the assistant
  message like ``continue_final_message``) is restricted to the label tokens and renormalised;
  the text is the most likely label, ``label_mass`` the probability the labels held before
  renormalising. This is how a local judge gives ``p_a`` (G-Eval, Liu et al. 2023, §2.3 weights
  scores by the label-token probabilities in the same way).

Prompts longer than ``max_length`` tokens are never cut inside a message: the oldest turns of the
conversation (after any system message) are dropped first, keeping the last turn (for a judge:
the question and both answers) and the template's generation prompt; when the last turn alone does
not fit, the request fails with ``error="too_long: ..."`` (no text is read from a cut prompt).

Token counts are exact; cost is 0. The model runs in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
        max_length: The longest prompt, in tokens. A longer conversation loses its oldest turns
            first; a last turn (plus prefill) that does not fit alone is a ``too_long`` error.
        model_object: An already loaded model (e.g. a policy being trained); skips loading.
            It is switched to eval mode while it generates or scores, and back afterwards.
        tokenizer: An already loaded tokenizer (needed with ``model_object``).
        prompt_format: How generation prompts become tokens. ``chat`` (default): the chat
            template (plain ``role: text`` turns for a tokenizer without one), old turns dropped
            to fit ``max_length``. ``policy``: exactly as the RL trainer encodes a policy's
            prompts (:func:`judge_rl.train.rollout.encode_prompt`: a one-user-turn prompt on a
            tokenizer without a chat template is its raw text with the tokenizer's special
            tokens); nothing is dropped. With a chat template both give the same tokens.
    """

    name = "hf"
    supports_prefill = True
    """``metadata["label_prefix"]`` continues the assistant's reply (read label probabilities at
    a verdict slot)."""

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
        prompt_format: str = "chat",
        **extra: Any,
    ) -> None:
        if extra:
            raise ConfigError(
                f"unknown option(s) for the hf backend: {', '.join(sorted(extra))}",
                setting="backend",
            )
        if batch_size < 1:
            raise ConfigError(f"must be >= 1, got {batch_size}", setting="batch_size")
        if prompt_format not in ("chat", "policy"):
            raise ConfigError(
                f"unknown prompt format {prompt_format!r} (use chat or policy)",
                setting="prompt_format",
            )
        from judge_rl.models import default_device, load_causal_lm, load_tokenizer

        self.model = str(model)
        self.batch_size = int(batch_size)
        self.max_new_tokens = max_new_tokens
        self.max_length = int(max_length)
        self.prompt_format = prompt_format
        self.prefills = 0
        """Prompt rows run through a generation prefill (one per prompt, whatever its ``n``)."""
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
        self._in_memory = model_object is not None
        self._weights_id: str | None = None

    def describe(self) -> dict[str, Any]:
        """What identifies this backend in a fingerprint or report."""
        return {"backend": self.name, "model": self.model}

    def fingerprint_params(self) -> dict[str, Any]:
        """Backend settings that change outputs: the context limit, the weights' identity
        (:func:`model_identity`: a retrained folder under the same path is another judge) and
        the dtype they run in."""
        out: dict[str, Any] = {"max_length": self.max_length}
        if self.max_new_tokens:
            out["max_new_tokens"] = self.max_new_tokens
        out["dtype"] = str(getattr(self.lm, "dtype", "")).replace("torch.", "")
        out["weights"] = self._identity
        return out

    @property
    def _identity(self) -> str:
        if self._weights_id is None:
            self._weights_id = model_identity(self.model) if not self._in_memory else "in-memory"
        return self._weights_id

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

    def _n_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def fit(self, messages: list[dict[str, str]], prefix: str = "") -> tuple[str, int]:
        """The prompt text for ``messages`` (+ ``prefix``) within ``max_length`` tokens, and how
        many history messages were dropped to fit.

        Whole turns are dropped, oldest first (system messages and the last turn are kept; an
        assistant turn goes with the user turn before it). Never cuts inside a message.

        Raises:
            PromptTooLong: the last turn, system message and prefix alone exceed ``max_length``.
        """
        msgs = list(messages)
        dropped = 0
        while True:
            text = self.render(msgs, prefix)
            n = self._n_tokens(text)
            if n <= self.max_length:
                return text, dropped
            keep_from = next((i for i, m in enumerate(msgs) if m.get("role") != "system"), 0)
            if len(msgs) - keep_from <= 1:
                raise PromptTooLong(
                    f"too_long: the prompt needs {n} tokens with only its last turn, the "
                    f"context allows {self.max_length} (max_length); nothing was cut"
                )
            msgs.pop(keep_from)
            dropped += 1
            if len(msgs) - keep_from > 1 and msgs[keep_from].get("role") == "assistant":
                msgs.pop(keep_from)
                dropped += 1

    def _fit_batch(
        self, batch: list[ChatRequest], with_prefix: bool
    ) -> tuple[list[str], list[int], list[ChatResult | None]]:
        """Texts of the requests that fit (with their batch positions) and, per request, a
        ``too_long`` result for those that do not."""
        texts: list[str] = []
        pos: list[int] = []
        errors: list[ChatResult | None] = []
        for k, r in enumerate(batch):
            prefix = str(r.metadata.get("label_prefix") or "") if with_prefix else ""
            try:
                text, _ = self.fit(r.messages, prefix)
            except PromptTooLong as e:
                errors.append(ChatResult(error=str(e)))
                continue
            errors.append(None)
            texts.append(text)
            pos.append(k)
        return texts, pos, errors

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        # Every text already fits max_length (see fit): no truncation, which would cut from the
        # right, through the answers and the generation prompt.
        enc = self.tok(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=False,
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
        texts, pos, results = self._fit_batch(batch, with_prefix=True)
        if texts:
            for k, res in zip(
                pos, self._label_texts(texts, list(batch[0].label_probs or [])), strict=True
            ):
                results[k] = res
        return [r if r is not None else ChatResult(error="backend: not run") for r in results]

    def _label_texts(self, texts: list[str], labels: list[str]) -> list[ChatResult]:
        import torch

        enc = self._encode(texts)
        with torch.inference_mode(), _eval_mode(self.lm):
            # Only the last position's logits are needed: logits_to_keep=1 skips the LM head
            # (hidden x vocab matmul) on every other position, T times less work.
            logits = self.lm(**enc, logits_to_keep=1).logits  # (B, 1, V)
        # Left padding: the last position of every row is the last prompt token.
        last = logits[:, -1, :].float()  # (B, V)
        logp = torch.log_softmax(last, dim=-1)  # (B, V)
        ids = self.label_token_ids(labels)
        # P(label) = sum over its token variants; renormalised over the labels.
        mass = torch.stack([logp[:, v].exp().sum(dim=-1) for v in ids], dim=-1)  # (B, L)
        total = mass.sum(dim=-1)  # (B,) probability the labels hold before renormalising
        probs = mass / total.unsqueeze(-1).clamp_min(1e-30)  # (B, L)
        n_prompt = enc["attention_mask"].sum(dim=-1).tolist()  # (B,)
        out = []
        for row, pt, tm in zip(probs.tolist(), n_prompt, total.tolist(), strict=True):
            p = dict(zip(labels, row, strict=True))
            best = max(labels, key=lambda k: p[k])
            out.append(
                ChatResult(
                    texts=[best],
                    label_probs=p,
                    label_mass=float(tm),
                    finish_reasons=["label"],
                    prompt_tokens=int(pt),
                    completion_tokens=1,
                )
            )
        return out

    # --- generation -----------------------------------------------------------------------------

    def _gen_batch(self, batch: list[ChatRequest]) -> list[ChatResult]:
        ids, pos, results = self._prompt_ids(batch)
        if ids:
            fitted = [batch[k] for k in pos]
            for k, res in zip(pos, self._gen_ids(fitted, ids), strict=True):
                results[k] = res
        return [r if r is not None else ChatResult(error="backend: not run") for r in results]

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The token ids a generation request's prompt runs as (see ``prompt_format``).

        Raises:
            PromptTooLong: the prompt does not fit ``max_length``.
        """
        if self.prompt_format == "policy":
            from judge_rl.train.rollout import encode_prompt

            one_turn = len(messages) == 1 and messages[0].get("role") == "user"
            ids = encode_prompt(self.tok, messages[0]["content"] if one_turn else list(messages))
            if len(ids) > self.max_length:
                raise PromptTooLong(
                    f"too_long: the prompt needs {len(ids)} tokens, the context allows "
                    f"{self.max_length} (max_length); nothing was cut"
                )
            return ids
        text, _ = self.fit(messages)
        return [int(t) for t in self.tok(text, add_special_tokens=False)["input_ids"]]

    def _prompt_ids(
        self, batch: list[ChatRequest]
    ) -> tuple[list[list[int]], list[int], list[ChatResult | None]]:
        """Token ids of the requests that fit (with their batch positions) and, per request, a
        ``too_long`` result for those that do not."""
        ids: list[list[int]] = []
        pos: list[int] = []
        errors: list[ChatResult | None] = []
        for k, r in enumerate(batch):
            try:
                ids.append(self.prompt_ids(r.messages))
            except PromptTooLong as e:
                errors.append(ChatResult(error=str(e)))
                continue
            errors.append(None)
            pos.append(k)
        return ids, pos, errors

    def _gen_ids(self, batch: list[ChatRequest], prompts: list[list[int]]) -> list[ChatResult]:
        import torch

        from judge_rl.train.rollout import left_pad

        r0 = batch[0]
        pad = int(self.tok.pad_token_id)
        ids, mask = left_pad(prompts, pad)  # (B, P) each
        ids, mask = ids.to(self.lm.device), mask.to(self.lm.device)
        n_in = ids.shape[1]
        sample = r0.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self._max_new(r0),
            "do_sample": sample,
            "pad_token_id": pad,
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
        with torch.inference_mode(), _eval_mode(self.lm):
            seqs = generate_prefill_once(self.lm, ids, mask, r0.n, **kwargs)  # (B*n, P + R)
        self.prefills += len(batch) if n_in >= 2 else len(batch) * r0.n
        new = seqs[:, n_in:]  # (B*n, R)
        n_prompt = mask.sum(dim=-1).tolist()  # (B,)
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


def model_identity(name_or_path: str) -> str:
    """What identifies a local model's weights without reading them: a hash of (relative path,
    size, mtime) of every file in its folder, or of the embedded GGUF file; ``hub:<name>`` for a
    name that is not a local path (its revision is the hub's business).

    >>> model_identity("some-org/some-model")
    'hub:some-org/some-model'
    """
    import os
    from pathlib import Path

    from judge_rl._io import content_hash
    from judge_rl.models import embedded_gguf_path, is_embedded

    try:
        p = embedded_gguf_path() if is_embedded(name_or_path) else Path(name_or_path)
    except Exception:  # noqa: BLE001 (not installed: loading reports it properly)
        return f"unknown:{name_or_path}"
    if not p.exists():
        return f"hub:{name_or_path}"
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    stats = []
    for f in files[:2000]:
        st = f.stat()
        rel = f.name if p.is_file() else str(f.relative_to(p))
        stats.append([rel, st.st_size, st.st_mtime_ns])
    return content_hash([os.path.abspath(p), stats], n=16)


class PromptTooLong(Exception):
    """A prompt whose last turn does not fit ``max_length``; its message starts ``too_long:``."""


def generate_prefill_once(model: Any, ids: Any, mask: Any, n: int, **kwargs: Any) -> Any:
    """``model.generate`` with ``n`` samples per prompt whose prompts run through the model once.

    Token ids (B*n, P+R), sample ``j`` of prompt ``b`` in row ``b*n + j`` (the order of
    ``num_return_sequences``). The prompts' first P-1 tokens run once; their key/value cache is
    repeated ``n`` times and ``generate`` continues from it, feeding only the last prompt token.
    Greedy decoding continues exactly as ``n`` separate prefills do
    (tests/pipeline/test_stages.py). With ``n == 1`` or one-token prompts it is plain
    ``generate``.

    Args:
        model: A causal LM (eval mode, gradients off: the caller's business).
        ids: Left-padded prompt ids (B, P).
        mask: Their attention mask (B, P).
        n: Samples per prompt.
        **kwargs: ``generate``'s decoding arguments (``max_new_tokens``, ``do_sample``…).
    """
    if n == 1 or ids.shape[1] < 2:
        return model.generate(input_ids=ids, attention_mask=mask, num_return_sequences=n, **kwargs)
    import inspect

    from transformers import DynamicCache

    # transformers 5 renamed the argument (``cache``); older versions take ``past_key_values``
    params = inspect.signature(model.forward).parameters
    key = "cache" if "cache" in params else "past_key_values"
    cache = DynamicCache()
    extra: dict[str, Any] = {key: cache}
    if "logits_to_keep" in params:  # the prefill's logits are not used: skip the LM head
        extra["logits_to_keep"] = 1
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, P): positions skip the left padding
    model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=pos[:, :-1],
        use_cache=True,
        **extra,
    )
    cache.batch_repeat_interleave(n)  # (B*n, ...) rows in num_return_sequences order
    ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)  # (B*n, P)
    return model.generate(input_ids=ids, attention_mask=mask, **{key: cache}, **kwargs)


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """``model`` in eval mode (no dropout) for the block; a model being trained goes back."""
    was_training = bool(getattr(model, "training", False))
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


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


__all__ = ["HFBackend", "generate_prefill_once"]
