"""The last decoder layer's row-wise work (MLP, query and output projections) on the positions
whose output is read, and nowhere else.

A training forward reads the final hidden state at a few positions only: PPO, GRPO and DPO read
the response positions (``logits_to_keep``), a reward model reads the last token of each
sequence. Every position still needs the earlier layers (the read positions attend to them) and
the last layer's keys and values. But everything else in the last layer is row-wise: the MLP, and
the attention's query and output projections (a query only makes its own row's attention output).
Their output at a position nobody reads is arithmetic thrown away: about five sixths of a Llama
layer's matmul work, so with 4 layers and a prompt that is 60% of the sequence about an eighth of
the forward and backward.

Inside :func:`last_mlp_only` those modules run on the read rows only and give 0 at the others. The
read positions get exactly the model's arithmetic; the final hidden states at the other positions
are NOT the model's and must not be read. The block must cover the backward too: gradient
checkpointing re-runs the forward there.

Only the usual decoder layout is touched (a ``ModuleList`` of layers with a dense ``mlp``, no
``experts``; ``self_attn.q_proj`` and ``o_proj`` where the attention has them separately); any
other model runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn


def _last_layer(model: nn.Module) -> nn.Module | None:
    """The last decoder layer of ``model``'s first stack of decoder layers (a ``ModuleList``
    whose layers have an ``mlp``), or ``None``."""
    for mod in model.modules():
        if (
            isinstance(mod, nn.ModuleList)
            and len(mod) > 0
            and isinstance(getattr(mod[-1], "mlp", None), nn.Module)
        ):
            return mod[-1]  # type: ignore[no-any-return]
    return None


def _dense_mlp(layer: nn.Module | None) -> nn.Module | None:
    """A decoder layer's MLP when it is dense and position-wise, else ``None``."""
    mlp = getattr(layer, "mlp", None)
    if (
        mlp is None
        or hasattr(mlp, "experts")
        or not any(isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D" for m in mlp.modules())
    ):
        return None  # no layer, routed experts, or nothing we know to be position-wise
    return mlp  # type: ignore[no-any-return]


def last_mlp(model: nn.Module) -> nn.Module | None:
    """The dense MLP of the last decoder layer of ``model``'s first stack of decoder layers, or
    ``None`` when the model has no such layout (or a mixture-of-experts one)."""
    return _dense_mlp(_last_layer(model))


def row_wise_modules(model: nn.Module) -> list[nn.Module]:
    """The last layer's modules whose output at a position feeds only that position's final
    hidden state: the MLP, and the attention's separate query and output projections
    (``q_proj``, ``o_proj``; keys and values are left alone, every position needs them). A
    query of zeros at an unread row changes no other row's attention. [] for other layouts."""
    layer = _last_layer(model)  # one walk over the model's modules
    mlp = _dense_mlp(layer)
    if mlp is None:
        return []
    attn = getattr(layer, "self_attn", None)
    projs = [getattr(attn, name, None) for name in ("q_proj", "o_proj")]
    return [mlp] + [m for m in projs if isinstance(m, nn.Module)]


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
def last_mlp_only(
    keep: int | torch.Tensor | tuple[torch.Tensor, ...] | None, *models: nn.Module | None
) -> Iterator[None]:
    """Inside the block, the last decoder layer's row-wise work (:func:`row_wise_modules`: its
    MLP, query and output projections) of each model runs only where ``keep`` says: the last
    ``keep`` positions (an int, as ``logits_to_keep``) or the positions where a (B, T) bool
    tensor is True; several such tensors of distinct shapes (a tuple) cover several forwards
    in one block, each input taking the tensor of its own shape (the reward model's prefix and
    suffix passes, and their recomputation under checkpointing). ``None``, 0 or a model of
    another layout: unchanged. Re-entrant (an inner block on the same model changes nothing)."""
    with ExitStack() as stack:
        if keep is not None and not (isinstance(keep, int) and keep <= 0):
            seen: set[int] = set()
            for model in models:
                for mod in row_wise_modules(model) if model is not None else []:
                    if id(mod) in seen or "forward" in vars(mod):
                        continue  # the same module twice, or already inside a block
                    seen.add(id(mod))
                    inner = mod.forward
                    if isinstance(keep, int):
                        mod.forward = _tail_forward(inner, keep)  # type: ignore[method-assign]
                    else:
                        for rows in keep if isinstance(keep, tuple) else (keep,):
                            inner = _rows_forward(inner, rows.bool())  # another shape: passed on
                        mod.forward = inner  # type: ignore[method-assign]
                    stack.callback(vars(mod).pop, "forward", None)
        yield


def checkpoints_activations(model: nn.Module | None) -> bool:
    """Does ``model`` re-run forwards in its backward (gradient/activation checkpointing on,
    for a plain transformers model, a peft-wrapped one or a value model around a body)?
    transformers flags each checkpointed module with ``gradient_checkpointing = True``."""
    if model is None:
        return False
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def read_rows_block(
    keep: int | torch.Tensor | None, *models: nn.Module | None, covers_backward: bool = False
) -> AbstractContextManager[None]:
    """:func:`last_mlp_only` for a training or scoring forward, safe under gradient
    checkpointing: a checkpointed model re-runs its layers' forwards in the backward, and
    that recomputation must see the same modules as the forward did. A caller whose block
    covers the backward too says ``covers_backward=True`` (PPO's update); otherwise, while
    gradients are on and one of ``models`` checkpoints, the block does nothing (the full last
    layer runs, exact everywhere). Without gradients nothing is recomputed: the rows are
    skipped."""
    if (
        not covers_backward
        and torch.is_grad_enabled()
        and any(checkpoints_activations(m) for m in models)
    ):
        return nullcontext()
    return last_mlp_only(keep, *models)
