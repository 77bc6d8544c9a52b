"""A lean sampling loop for Llama-layout models on CPU: the same tokens as ``model.generate``
for the same seed, with less work per decoding step.

Decoding a small model on CPU is bound by memory and per-call overhead, not arithmetic
(docs/ppo.md; ``python benchmarks/bench_ppo.py --part parts`` times this loop against
``generate``). Two costs go away here:

- the KV cache grows in place (:class:`GrowInPlaceLayer`: one buffer of prompt + ``max_new``
  positions per layer, written at the next free position) instead of ``torch.cat`` copying the
  whole cache at every step and every layer;
- each decoding step calls the model's own modules (embedding, norms, projections, MLP, rotary
  embedding, LM head) in the order :class:`LlamaDecoderLayer` does, without the per-step mask
  building, output capturing and keyword plumbing of the full ``forward``.

The prefill is the model's own ``forward`` (into the in-place cache). Sampling is
``generate``'s: float32 logits of the last position, divided by the temperature when it is not 1,
top-k and top-p when set, softmax, ``torch.multinomial`` (``argmax`` when greedy), finished rows continue with the pad
token, and the loop stops when every row has emitted an EOS or after ``max_new`` tokens.
``tests/train/test_lean_decode.py`` checks that the tokens equal ``generate``'s, sampled and greedy,
left-padded, with multi-head and grouped-query attention; ``test_lean_decode_lora.py`` the same for
LoRA-wrapped models, ``test_grpo_lean.py`` for the group mode below. At the embedded model's size
(30 layers, hidden 576) a step is mostly matmuls and the gain is small (docs/ppo.md).

Only what is known to match is taken (:func:`lean_decoder`): a ``LlamaForCausalLM`` whose
layers are ``LlamaDecoderLayer`` s (not FSDP or DeepSpeed wrapped), the SDPA attention, float32
weights, on CPU, no autocast, every module in eval mode, and a generation config without logits
processors other than temperature, top-k and top-p; anything else uses ``generate``.
``JUDGE_RL_LEAN_DECODE=0`` turns it off. Top-k and top-p are ``generate``'s own warpers
(transformers' ``TopKLogitsWarper`` and ``TopPLogitsWarper``, after the temperature, in
``generate``'s order), tested against ``generate`` for several (k, p, temperature).

A peft LoRA model (``PeftModelForCausalLM`` around such a Llama, as ``--lora-r`` builds it) is
taken too: the steps call the same modules the model's forward calls, and those are peft's
``lora.Linear`` s, so the adapters' delta (``base(x) + B(A(dropout(x))) * scaling``) is in every
step exactly as in ``generate`` (which peft forwards to the base model). Only the plain case is
tested and taken: LoRA (no other peft method), one active adapter, no DoRA or other LoRA variant,
no LoRA bias, adapters not merged, no other peft wrappers (``modules_to_save``, trainable tokens,
LoRA on embeddings); dropout is allowed because eval mode (required above) makes it the identity.
Inside ``disable_adapter()`` (how PPO and GRPO sample the reference, the base model) the same
modules run their base layer alone, in both paths. Anything else uses ``generate``.

``sample(..., group=K)`` is GRPO's shared-prefill rollout (judge_rl/train/grpo.py): each prompt
but its last token is prefilled once, the cache repeated K times, and the last prompt token runs
as the first one-token step of the (G*K) rows, which is what ``generate`` does when handed that
repeated cache; tested to give the same tokens and random draws as that path. With
``last_in_prefill=True`` the whole prompt is prefilled once and its last logits repeated too:
the arithmetic of the plain call on the repeated prompts, bit for bit at one thread (GRPO with a
LoRA policy, whose other path is that plain call; ``test_grpo_lean.py``,
``test_lean_decode_lora.py``).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
from torch import nn

_LAYER_CLASSES = {
    "model": "LlamaForCausalLM",
    "layer": "LlamaDecoderLayer",
    "attn": "LlamaAttention",
    "mlp": "LlamaMLP",
    "norm": "LlamaRMSNorm",
}
# Generation-config fields that add a logits processor or change stopping when set (a model's
# own generation_config fills what ``sampling_config`` leaves unset): any of them -> generate.
_UNSUPPORTED_GEN = {
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "bad_words_ids": None,
    "sequence_bias": None,
    "min_p": None,
    "top_h": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "exponential_decay_length_penalty": None,
    "remove_invalid_values": False,
    "renormalize_logits": False,
    "guidance_scale": None,
    "watermarking_config": None,
    "min_length": 0,
    "stop_strings": None,
}


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """transformers' ``rotate_half``: (x1, x2) -> (-x2, x1) over the last dimension."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _make_layer_class() -> type | None:
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # transformers < 4.56: no per-layer caches
        return None

    class GrowInPlaceLayer(DynamicLayer):  # type: ignore[misc, valid-type]
        """A ``DynamicLayer`` whose keys and values live in one buffer of ``capacity``
        positions: ``update`` writes the new positions in place and returns views of the
        filled part (no copy of the whole cache per step)."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self.filled = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.device = key_states.device
            b, h, _, d = key_states.shape
            self._k = key_states.new_empty(b, h, self.capacity, d)  # (B, KV, cap, D)
            self._v = value_states.new_empty(b, value_states.shape[1], self.capacity,
                                             value_states.shape[-1])  # fmt: skip
            self.filled = 0
            self.keys, self.values = self._k[:, :, :0], self._v[:, :, :0]
            self.is_initialized = True

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n, t = self.filled, key_states.shape[-2]
            if n + t > self.capacity:
                raise RuntimeError(f"KV cache of {self.capacity} positions is full")
            self._k[:, :, n : n + t].copy_(key_states)
            self._v[:, :, n : n + t].copy_(value_states)
            self.filled = n + t
            self.keys, self.values = self._k[:, :, : n + t], self._v[:, :, : n + t]
            return self.keys, self.values

        def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
            return self.filled if self.is_initialized else 0

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.is_initialized:  # each row's buffer K times: (B*K, KV, cap, D)
                self._k = self._k.repeat_interleave(repeats, dim=0)
                self._v = self._v.repeat_interleave(repeats, dim=0)
                n = self.filled
                self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]

    return GrowInPlaceLayer


_GROW_LAYER: type | None = None


def grow_in_place_cache(config: Any, capacity: int) -> Any | None:
    """A ``DynamicCache`` for ``config`` whose layers grow in place up to ``capacity``
    positions, or ``None`` when this transformers has no per-layer caches or the config has
    other than full-attention layers."""
    global _GROW_LAYER
    if _GROW_LAYER is None:
        _GROW_LAYER = _make_layer_class()
    if _GROW_LAYER is None:
        return None
    from transformers.cache_utils import DynamicCache, DynamicLayer

    cache = DynamicCache(config=config)
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None  # sliding-window or other layer types: not handled
    cache.layers = [_GROW_LAYER(capacity) for _ in layers]
    return cache


class LeanDecoder:
    """Sampling for one Llama-layout model (see the module docstring)."""

    def __init__(self, model: Any):
        self.model = model
        self.body: Any = model.model
        self.layers = list(self.body.layers)
        self.lm_head: Any = model.get_output_embeddings()

    @torch.no_grad()
    def _step(self, cache: Any, tokens: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor
              ) -> torch.Tensor:  # fmt: skip
        """One decoding step: ``tokens`` (B, 1) at positions ``pos`` (B, 1), ``mask`` (B, 1, 1,
        S) True where a key is attended. Returns the float32 logits (B, V)."""
        B = tokens.shape[0]
        h = self.body.embed_tokens(tokens)  # (B, 1, H)
        cos, sin = self.body.rotary_emb(h, pos)  # (B, 1, D) each
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, 1, D)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            d = attn.head_dim
            residual = h
            x = layer.input_layernorm(h)  # (B, 1, H)
            q = attn.q_proj(x).view(B, 1, -1, d).transpose(1, 2)  # (B, nH, 1, D)
            k = attn.k_proj(x).view(B, 1, -1, d).transpose(1, 2)  # (B, kvH, 1, D)
            v = attn.v_proj(x).view(B, 1, -1, d).transpose(1, 2)  # (B, kvH, 1, D)
            q = (q * cos) + (_rotate_half(q) * sin)
            k = (k * cos) + (_rotate_half(k) * sin)
            k, v = cache.layers[i].update(k, v)  # (B, kvH, S, D)
            groups = q.shape[1] // k.shape[1]
            if groups > 1:  # one query token: the query heads of a KV head as its rows
                q = q.reshape(B, k.shape[1], groups, d)  # (B, kvH, groups, D)
            o = nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=0.0, scale=attn.scaling
            )  # (B, kvH, groups or 1, D)
            o = o.reshape(B, -1, 1, d).transpose(1, 2).contiguous()  # (B, 1, nH, D)
            o = o.reshape(B, 1, -1).contiguous()  # (B, 1, nH * D)
            h = residual + attn.o_proj(o)
            residual = h
            h = residual + layer.mlp(layer.post_attention_layernorm(h))
        h = self.body.norm(h)
        return self.lm_head(h[:, -1:, :])[:, -1].to(copy=True, dtype=torch.float32)  # (B, V)

    @torch.no_grad()
    def sample(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        max_new_tokens: int,
        greedy: bool,
        temperature: float,
        eos: list[int],
        pad_id: int,
        group: int = 0,
        last_in_prefill: bool = False,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> torch.Tensor:
        """Like ``generate``: (B, P + R') prompt and response ids, R' <= ``max_new_tokens``.
        Sampled (not ``greedy``), the logits go through ``generate``'s warpers in its order:
        temperature (when not 1), top-k (when ``top_k`` is not 0 or None), top-p (when
        ``top_p`` < 1), transformers' own classes, then softmax and ``torch.multinomial``.

        ``group=K`` (>= 1): GRPO's shared prefill. ``input_ids`` (G, P) are each prompt once
        (every row at least 2 real tokens); all but the last position are prefilled once, the
        cache is repeated K times, and the last prompt token is the first one-token step of the
        G*K rows (prompt i's samples are rows i*K .. i*K+K-1). Returns (G*K, P + R'), the tokens
        ``generate`` samples when handed the repeated cache and the repeated prompts.

        ``last_in_prefill=True`` (with ``group``): the whole prompt, last token included, is
        prefilled once, and the cache and the last position's logits are repeated K times: the
        arithmetic of the plain call on the K-times repeated prompts (``sample(ids.
        repeat_interleave(K, 0), ...)``), row for row, where a row's prefill does not depend on
        the batch size (at one thread, tested; with more threads some batch shapes differ in the
        last bits); GRPO takes it for a LoRA policy, whose other path is that plain call."""
        from judge_rl.train._last_mlp import last_mlp_only

        warpers = [] if greedy else _warpers(temperature, top_k, top_p)
        B, P = input_ids.shape
        device = input_ids.device
        cache: Any = grow_in_place_cache(self.model.config, P + max_new_tokens)
        am = attention_mask.long()
        pos = am.cumsum(-1) - 1  # (B, P) as generate: real tokens count from 0
        pos = pos.masked_fill(am == 0, 0)
        step_last = bool(group) and not last_in_prefill  # the last prompt token as a step
        n_pre = P - 1 if step_last else P
        # the prefill's logits are read at the last position only (group: not at all)
        with last_mlp_only(1, self.model):
            out = self.model(
                input_ids=input_ids[:, :n_pre],
                attention_mask=am[:, :n_pre],
                position_ids=pos[:, :n_pre],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)  # (B, V)
        del out
        if group:
            cache.batch_repeat_interleave(group)  # (B*K, KV, n_pre, D) per layer
            input_ids = input_ids.repeat_interleave(group, 0)  # (B*K, P)
            am = am.repeat_interleave(group, 0)  # (B*K, P)
            pos = pos.repeat_interleave(group, 0)  # (B*K, P)
            if not step_last:
                logits = logits.repeat_interleave(group, 0)  # (B*K, V)
            B = B * group
        keep = torch.zeros(B, P + max_new_tokens, dtype=torch.bool, device=device)  # (B, S)
        keep[:, :P] = am.bool()
        if step_last:  # the last prompt token: a one-token step over the repeated cache
            logits = self._step(cache, input_ids[:, -1:], pos[:, -1:], keep[:, None, None, :P])
        eos_t = torch.tensor(eos, device=device)
        unfinished = torch.ones(B, dtype=torch.long, device=device)  # (B,)
        new: list[torch.Tensor] = []
        last_pos = pos[:, -1:]  # (B, 1)
        for t in range(max_new_tokens):
            if t > 0:
                keep[:, P + t - 1] = True
                last_pos = last_pos + 1
                mask = keep[:, None, None, : P + t]  # (B, 1, 1, P + t)
                logits = self._step(cache, new[-1][:, None], last_pos, mask)
            if greedy:
                nxt = torch.argmax(logits, dim=-1)  # (B,)
            else:
                scores = logits
                for warp in warpers:  # generate's: temperature, top-k, top-p
                    scores = warp(None, scores)  # (B, V)
                probs = nn.functional.softmax(scores, dim=-1)  # (B, V)
                nxt = torch.multinomial(probs, num_samples=1).squeeze(1)  # (B,)
            nxt = nxt * unfinished + pad_id * (1 - unfinished)
            new.append(nxt)
            unfinished = unfinished & ~torch.isin(nxt, eos_t)
            if int(unfinished.max()) == 0:
                break
        return torch.cat([input_ids, torch.stack(new, dim=1)], dim=1)  # (B, P + R')


def _warpers(temperature: float, top_k: int | None, top_p: float | None) -> list[Any]:
    """The logits warpers ``generate`` builds for sampling with these settings (and a generation
    config without other warpers, :data:`_UNSUPPORTED_GEN`), in its order
    (``GenerationMixin._get_logits_processor``; one beam: ``min_tokens_to_keep=1``)."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    out: list[Any] = []
    if temperature is not None and temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k is not None and top_k != 0:
        out.append(TopKLogitsWarper(top_k=int(top_k), min_tokens_to_keep=1))
    if top_p is not None and top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=float(top_p), min_tokens_to_keep=1))
    return out


def _lora_base(model: Any) -> Any | None:
    """The wrapped model of a plain peft LoRA model (see the module docstring), else ``None``."""
    try:
        from peft import PeftModel
        from peft.tuners.lora import LoraModel
    except ImportError:
        return None
    if not isinstance(model, PeftModel) or not isinstance(model.base_model, LoraModel):
        return None
    active = list(getattr(model, "active_adapters", None) or [])
    if len(active) != 1:
        return None  # none or several adapters at once
    cfg = model.peft_config.get(active[0])
    if (
        cfg is None
        or getattr(cfg, "peft_type", None) != "LORA"
        or getattr(cfg, "use_dora", False)
        or getattr(cfg, "lora_bias", False)
        or getattr(cfg, "alora_invocation_tokens", None)
        or getattr(cfg, "modules_to_save", None)
        or getattr(cfg, "trainable_token_indices", None)
    ):
        return None
    return model.get_base_model()


def _plain_lora_layers(base: nn.Module, adapter: str | None) -> bool:
    """Every peft module inside ``base`` is a ``lora.Linear`` holding ``adapter`` alone as
    its active adapter, vanilla (no variant, no DoRA magnitude), not merged; and nothing in
    ``base`` is peft's when ``adapter`` is None (a plain model)."""
    lora_linear: Any = None
    for module in base.modules():
        if not type(module).__module__.startswith("peft"):
            continue
        mod: Any = module
        if adapter is None:
            return False
        if lora_linear is None:
            from peft.tuners.lora.layer import Linear as lora_linear
        if (
            type(mod) is not lora_linear
            or list(mod.active_adapters) != [adapter]
            or mod.merged  # (disabled adapters are fine: the module then runs its base alone)
            or adapter not in mod.lora_A
            or getattr(mod, "lora_variant", {}).get(adapter) is not None
            or getattr(mod, "use_dora", {}).get(adapter, False)
            or len(getattr(mod, "lora_magnitude_vector", {})) > 0
        ):
            return False
    return True


def lean_decoder(model: Any, *, top_k: int | None, top_p: float | None) -> LeanDecoder | None:
    """A :class:`LeanDecoder` for ``model`` when the lean loop is known to give ``generate``'s
    tokens for it (see the module docstring), else ``None``."""
    if os.environ.get("JUDGE_RL_LEAN_DECODE", "1") == "0":
        return None
    if (top_k or 0) < 0 or (top_p is not None and not 0.0 < top_p <= 1.0):
        return None  # generate raises its own error
    gens = [getattr(model, "generation_config", None)]
    adapter = None
    if type(model).__module__.startswith("peft"):
        base = _lora_base(model)
        if base is None:
            return None  # other peft methods or settings: generate
        adapter = list(model.active_adapters)[0]
        model = base
        gens.append(getattr(model, "generation_config", None))
    if type(model).__name__ != _LAYER_CLASSES["model"]:
        return None  # other architectures, wrapped models
    cfg = getattr(model, "config", None)
    if getattr(cfg, "_attn_implementation", None) != "sdpa":
        return None
    try:
        params = inspect.signature(type(model).forward).parameters
    except (TypeError, ValueError):
        return None
    if "cache" not in params or "logits_to_keep" not in params:
        return None  # older transformers: keep generate
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu" or hasattr(first, "ds_id"):
        return None  # GPU paths differ; DeepSpeed-partitioned parameters
    if first.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
        return None  # only float32 arithmetic is tested
    if any(m.training for m in model.modules()):
        return None  # dropout would be active (the engines sample in eval mode)
    body = getattr(model, "model", None)
    layers = getattr(body, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return None
    for layer in layers:
        if (
            type(layer).__name__ != _LAYER_CLASSES["layer"]  # FSDP2 renames the class
            or type(getattr(layer, "self_attn", None)).__name__ != _LAYER_CLASSES["attn"]
            or type(getattr(layer, "mlp", None)).__name__ != _LAYER_CLASSES["mlp"]
            or type(getattr(layer, "input_layernorm", None)).__name__ != _LAYER_CLASSES["norm"]
        ):
            return None
    if not _plain_lora_layers(model, adapter):
        return None
    for gen in gens:
        for name, default in _UNSUPPORTED_GEN.items():
            value = getattr(gen, name, default)
            if value not in (default, None):
                return None
    if grow_in_place_cache(cfg, 1) is None:
        return None
    return LeanDecoder(model)


__all__ = ["LeanDecoder", "grow_in_place_cache", "lean_decoder"]
