"""The last decoder layer's MLP on the positions whose output is read, and nowhere else.

A training forward reads the final hidden state at a few positions only: PPO, GRPO and DPO read
the response positions (``logits_to_keep``), a reward model reads the last token of each
sequence. Every position still needs the earlier layers (the read positions attend to them) and
the last layer's attention still needs every position's keys and values. But the last layer's MLP
is position-wise, so its output at a position nobody reads is arithmetic thrown away: the MLP is
about two thirds of a Llama layer's matmul work, so with 4 layers and a prompt that is 60% of the
sequence about a tenth of the forward and backward.

Inside :func:`last_mlp_only` that MLP runs on the read rows only and adds 0 at the others. The
read positions get exactly the model's arithmetic; the final hidden states at the other positions
are NOT the model's and must not be read. The block must cover the backward too: gradient
checkpointing re-runs the forward there.

Only dense MLPs of the usual decoder layout are touched (a ``ModuleList`` of layers with an
``mlp``, no ``experts``); any other model runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn


def last_mlp(model: nn.Module) -> nn.Module | None:
    """The dense MLP of the last decoder layer of ``model``'s first stack of decoder layers, or
    ``None`` when the model has no such layout (or a mixture-of-experts one)."""
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            layer = mod[-1]
            mlp = getattr(layer, "mlp", None)
            if not isinstance(mlp, nn.Module):
                continue
            if hasattr(mlp, "experts") or not any(
                isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D" for m in mlp.modules()
            ):
                return None  # routed experts, or nothing we know to be position-wise
            return mlp
    return None


def _tail_forward(inner: Callable[..., Any], keep: int) -> Callable[..., Any]:
    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        T = x.shape[-2] if x.dim() >= 3 else 0
        if args or kwargs or keep >= T:
            return inner(x, *args, **kwargs)
        y = inner(x[..., -keep:, :])  # (B, keep, H)
        return nn.functional.pad(y, (0, 0, T - keep, 0))  # zeros in front: (B, T, H)

    return forward


def _rows_forward(inner: Callable[..., Any], rows: torch.Tensor) -> Callable[..., Any]:
    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or x.shape[:-1] != rows.shape:
            return inner(x, *args, **kwargs)
        y = inner(x[rows])  # (N, H)
        out = y.new_zeros(*x.shape[:-1], y.shape[-1])  # (B, T, H)
        return out.index_put((rows,), y)

    return forward


@contextmanager
def last_mlp_only(keep: int | torch.Tensor | None, *models: nn.Module | None) -> Iterator[None]:
    """Inside the block, the last decoder layer's MLP of each model runs only where ``keep``
    says: the last ``keep`` positions (an int, as ``logits_to_keep``) or the positions where a
    (B, T) bool tensor is True. ``None``, 0 or a model of another layout: unchanged. Re-entrant
    (an inner block on the same model changes nothing)."""
    with ExitStack() as stack:
        if keep is not None and not (isinstance(keep, int) and keep <= 0):
            seen: set[int] = set()
            for model in models:
                mlp = last_mlp(model) if model is not None else None
                if mlp is None or id(mlp) in seen or "forward" in vars(mlp):
                    continue  # another layout, the same MLP twice, or already inside a block
                seen.add(id(mlp))
                inner = mlp.forward
                if isinstance(keep, int):
                    mlp.forward = _tail_forward(inner, keep)  # type: ignore[method-assign]
                else:
                    mlp.forward = _rows_forward(inner, keep.bool())  # type: ignore[method-assign]
                stack.callback(vars(mlp).pop, "forward", None)
        yield
