"""The shared-prompt forward of GRPO's and DPO's log-probability passes (and of the reward
model's shared-prefix rewards): each distinct prompt runs once, and only the responses run once
per sample (GRPO: the K samples of a group; DPO and the reward model: the chosen and the rejected
response of a pair). :func:`shared_prefix_hidden` is the two body passes for any layout (its
caller's mask and position ids; the reward model reads each suffix's last real token);
:func:`shared_prompt_logits` is the causal LM's logits on top of it.

In a causal LM a prompt's hidden states do not depend on what follows, so the prompts run once
(``(U, P)``, right-padded), and the responses (``(b, R)``) attend to their own prompt's keys and
values through a 4D mask; the first response token is predicted from the prompt's last hidden
state. With gradients, the prompts' keys and values keep their graph, so the key/value
projections get the prompt positions' gradient summed over the samples that read them, as the
plain forward sums it over the repeated prompt rows.

The prompts' keys and values go from the first pass to the second through two caches whose
layers hold no state that a second run of a layer could change (:class:`_PromptKV` records the
first keys and values it is given, and hands any later ones back unchanged; :class:`_ResponseKV`
returns the prompt's gathered for each sample, followed by the responses' own). That is what
makes the two passes safe under gradient checkpointing, where the backward runs each layer's
forward again: transformers drops the cache of a checkpointed layer (a cache written twice
would be wrong), so while :func:`shared_prompt_logits` runs, a checkpointed layer is
checkpointed here instead (:func:`_checkpoint_with_cache`: ``torch.utils.checkpoint``,
non-reentrant, the cache passed through), and the backward recomputes it as transformers would.
Non-reentrant always: a reentrant checkpoint runs its forward without gradients, which would cut
the prompts' keys and values from the graph.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn


def _cache_layer_classes() -> tuple[type, type]:
    from transformers.cache_utils import DynamicLayer

    class _PromptKV(DynamicLayer):  # type: ignore[misc, valid-type]
        """The prompt pass's layer: keeps the first keys/values it sees; a recomputation's
        are returned as they come, as the first were (nothing cached before them)."""

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.device = key_states.device
                self.keys, self.values = key_states, value_states  # (U, kvH, P, D)
                self.is_initialized = True
            return key_states, value_states

    class _ResponseKV(DynamicLayer):  # type: ignore[misc, valid-type]
        """The response pass's layer: each sample's prompt keys/values (gathered from the
        prompt pass's layer by ``own``), then the responses' own; keeps nothing."""

        def __init__(self, prompt: Any, own: torch.Tensor):
            super().__init__()
            self.prompt, self.own = prompt, own
            self.is_initialized = True

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            k = torch.cat([self.prompt.keys[self.own], key_states], dim=-2)  # (b, kvH, P+R, D)
            v = torch.cat([self.prompt.values[self.own], value_states], dim=-2)
            return k, v

        def get_seq_length(self, *args: Any, **kwargs: Any) -> int:
            return int(self.prompt.keys.shape[-2])

    return _PromptKV, _ResponseKV


_CLASSES: tuple[type, type] | None = None


def _caches(n_layers: int, own: torch.Tensor) -> tuple[Any, Any]:
    """(the prompt pass's cache, the response pass's cache) for a body of ``n_layers``."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _cache_layer_classes()
    prompt_cls, response_cls = _CLASSES
    from transformers import DynamicCache

    prompt, response = DynamicCache(), DynamicCache()
    prompt.layer_class_to_replicate = response.layer_class_to_replicate = None
    prompt.layers = [prompt_cls() for _ in range(n_layers)]
    response.layers = [response_cls(layer, own) for layer in prompt.layers]
    return prompt, response


def _layer_class() -> type | None:
    try:  # transformers >= 4.5x: a layer checkpoints itself (older: the model's layer loop does)
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:
        return None
    return GradientCheckpointingLayer


def _checkpointing_modules(body: nn.Module) -> tuple[list[Any], list[Any]]:
    """(the layers of ``body`` that checkpoint their forward now, every module flagged): by
    transformers' rule a module checkpoints when flagged, in training mode, gradients on; the
    model's own flag only turns ``use_cache`` off."""
    if not torch.is_grad_enabled():
        return [], []
    cls = _layer_class()
    flagged = [
        m
        for m in body.modules()
        if getattr(m, "gradient_checkpointing", False) is True and m.training
    ]
    if flagged and cls is None:
        raise ValueError("this transformers checkpoints in the model's layer loop")
    return [m for m in flagged if cls is not None and isinstance(m, cls)], flagged


def shares_under_checkpointing() -> bool:
    """Can :func:`shared_prompt_logits` run under gradient checkpointing with this
    transformers? (Its layers checkpoint themselves.)"""
    return _layer_class() is not None


@contextmanager
def _checkpoint_with_cache(body: nn.Module) -> Iterator[None]:
    """While the block runs, each layer of ``body`` that checkpoints checkpoints its forward
    itself, with its cache (``torch.utils.checkpoint``, non-reentrant) instead of transformers'
    checkpoint, which would drop the cache; the flags are off meanwhile (the model's too: it
    would turn ``use_cache`` off) and a layer's is off in the backward's recomputation."""
    from torch.utils.checkpoint import checkpoint

    layers, flagged = _checkpointing_modules(body)
    saved: list[tuple[Any, Any]] = []

    def install(layer: Any) -> None:
        inner = layer.forward  # the bound forward (or an instance-level one, kept)

        def run(*a: Any, **k: Any) -> Any:
            flag = layer.gradient_checkpointing
            layer.gradient_checkpointing = False  # the backward's recomputation: no nesting
            try:
                return inner(*a, **k)
            finally:
                layer.gradient_checkpointing = flag

        def forward(*a: Any, **k: Any) -> Any:
            return checkpoint(run, *a, use_reentrant=False, **k)

        saved.append((layer, vars(layer).get("forward")))
        layer.forward = forward  # type: ignore[method-assign]

    off: list[Any] = []
    try:
        for m in flagged:
            off.append(m)
            m.gradient_checkpointing = False
        for layer in layers:
            install(layer)
        yield
    finally:
        for m in off:
            m.gradient_checkpointing = True
        for layer, own_forward in saved:
            if own_forward is None:
                del layer.forward
            else:
                layer.forward = own_forward  # type: ignore[method-assign]


def shared_prefix_hidden(
    model: Any,
    prefix: torch.Tensor,
    own: torch.Tensor,
    suffix: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    *,
    prefix_block: AbstractContextManager[Any] | None = None,
    suffix_block: AbstractContextManager[Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The body's final hidden states of ``prefix`` (U, P) and of ``suffix`` (b, S), each
    suffix row after its prefix row ``own[i]`` (b,): ``mask`` (b, 1, S, P+S) bool, True = may
    attend (its prefix's real tokens, its own causal part), ``positions`` (b, S) its position
    ids; all on the model's device. Returns ``(hp (U, P, H), hs (b, S, H))``. The prefix's
    keys/values keep their graph (each prefix position's gradient summed over the suffixes that
    read it) and pass between the two calls through caches a recomputation cannot change, so
    this is exact under gradient checkpointing too (see the module docstring).

    ``model`` is a transformers model with a ``base_model_prefix`` body (a causal LM, a
    sequence classifier; a peft LoRA model's ``get_base_model()``). ``prefix_block`` and
    ``suffix_block`` are entered around the respective body call (e.g. the last layer's rows
    block); a block that changes what a checkpointed layer computes must be decided before this
    call and cover the backward too. Run it inside the caller's autocast."""
    body = getattr(model, model.base_model_prefix)
    # transformers >= 5.2x names the argument `cache` (`past_key_values` is deprecated)
    ckw = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
    n_layers = len(getattr(body, "layers", ())) or int(model.config.num_hidden_layers)
    prompt_cache, response_cache = _caches(n_layers, own)
    if getattr(model.config, "_attn_implementation", "sdpa") != "sdpa":
        mask = torch.zeros(mask.shape, device=mask.device).masked_fill(
            ~mask, torch.finfo(torch.float32).min
        )  # the additive form for eager attention
    with _checkpoint_with_cache(body):
        with prefix_block or nullcontext():
            hp = body(input_ids=prefix, use_cache=True, **{ckw: prompt_cache}).last_hidden_state
        with suffix_block or nullcontext():
            hs = body(
                input_ids=suffix,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{ckw: response_cache},
            ).last_hidden_state
    return hp, hs


def shared_prompt_logits(
    model: Any,
    prefix: torch.Tensor,
    plen: torch.Tensor,
    own: torch.Tensor,
    suffix: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """The logits (b, R, V) that predict ``suffix`` (b, R), right-padded responses, each after
    its prompt ``prefix[own[i]]``: ``prefix`` (U, P) right-padded prompts of lengths ``plen``
    (U,), ``own`` (b,) each response's prompt. ``model`` is a transformers causal LM (a peft
    LoRA model's ``get_base_model()``). Run it inside the caller's autocast."""
    from judge_rl.train._last_mlp import read_rows_block

    U, tp = prefix.shape
    b, R = suffix.shape
    pl = plen[own]  # (b,)
    key_prefix = (torch.arange(tp)[None, None, :] < pl[:, None, None]).expand(-1, R, -1)
    causal = torch.ones(R, R, dtype=torch.bool).tril()[None].expand(b, -1, -1)
    mask = torch.cat([key_prefix, causal], dim=-1)[:, None]  # (b, 1, R, P+R)
    positions = pl[:, None] + torch.arange(R)[None, :]  # (b, R)
    body = getattr(model, model.base_model_prefix)
    head = model.get_output_embeddings()
    own_d = own.to(device)
    read = torch.zeros(U, tp, dtype=torch.bool)  # (U, P): each prompt's last token
    read[torch.arange(U), plen - 1] = True
    # decided before the layers' checkpoint flags are switched off
    rows_block = read_rows_block(read.to(device), body)  # no last-layer MLP output for the cache
    hp, hs = shared_prefix_hidden(
        model,
        prefix.to(device),
        own_d,
        suffix.to(device),
        mask.to(device),
        positions.to(device),
        prefix_block=rows_block,
    )  # (U, P, H), (b, R, H)
    h_last = hp[torch.arange(U, device=device), plen.to(device) - 1]  # (U, H)
    pred = torch.cat([h_last[own_d][:, None], hs[:, :-1]], 1)  # (b, R, H)
    return head(pred)  # (b, R, V)


def through_ddp(wrapped: Any, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``fn()``, run as the forward of ``wrapped`` when it is a ``DistributedDataParallel``
    (several processes) and gradients are on, else directly. The shared forward calls the
    wrapped model's own modules, not its forward; DDP averages the gradients over the
    processes only for a backward that follows a forward through DDP (``prepare_for_backward``,
    buffer broadcast), so the wrapped module's ``forward`` is ``fn`` for one DDP call."""
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(wrapped, DistributedDataParallel) or not torch.is_grad_enabled():
        return fn()
    inner = wrapped.module
    own_forward = vars(inner).get("forward")  # e.g. accelerate's mixed-precision wrapper

    def forward(*a: Any, **k: Any) -> torch.Tensor:
        return fn()

    inner.forward = forward
    try:
        return wrapped()  # type: ignore[no-any-return]
    finally:
        if own_forward is None:
            del inner.forward
        else:
            inner.forward = own_forward


__all__ = [
    "shared_prefix_hidden",
    "shared_prompt_logits",
    "shares_under_checkpointing",
    "through_ddp",
]
