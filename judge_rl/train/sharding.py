"""DeepSpeed ZeRO-3: a full-parameter gather inside which one rank may run the model alone.

Under ZeRO-3 each parameter lives in shards across the ranks, and DeepSpeed installs forward
(and backward) hooks on every sub-module that gather a module's parameters before it runs and
release them after. Those hooks talk to the other ranks: the root module's pre-forward hook
resets the parameter coordinator, which, until a trace of the module order is complete (the first
steps, and again after anything changes that order), checks the recorded order against every other
rank with a broadcast. So even inside ``deepspeed.zero.GatheredParameters``, where every parameter
is already whole on every rank, a forward pass that only rank 0 runs (the over-optimisation
monitor's sampling; issue 17 item 5) waits forever on that broadcast. (Reproduced on two CPU
processes over gloo with DeepSpeed 0.19.8: ``tests/train/test_zero3_cpu.py``.)

:func:`zero3_full_params` gathers the parameters and takes DeepSpeed's module hooks off for the
block, then puts them back, as TRL's ``unwrap_model_for_generation`` and DeepSpeed's own
``deepspeed.runtime.zero.unwrap_model_for_generation`` do for generation. Both of those leave the
root's start-of-forward hook in place (every rank generates there, so its broadcast is matched);
here it is taken off too, since one rank may run forwards that the others do not.

A collective, like the gather: every rank enters the block. Inside it, forward passes on the
*unwrapped* module (``engine.module``) run locally on any subset of ranks; nothing inside may
train (no DeepSpeed hooks means no gradient partitioning).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "OPTIM_PART_FILE",
    "deepspeed_cpu_kwargs",
    "configure_deepspeed",
    "load_zero_state_parts",
    "zero_optimizer",
    "zero_state_part",
    "zero3_full_params",
    "zero3_hooks_removed",
]


def deepspeed_cpu_kwargs(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """``Accelerator`` keyword arguments for DeepSpeed on DeepSpeed's own CPU accelerator
    (``DS_ACCELERATOR=cpu``), or None when DeepSpeed would not run on the CPU.

    accelerate runs DeepSpeed only when not told ``cpu=True`` (with it, it falls back to DDP), and
    with no CUDA device it does not name a process-group backend, so it counts one process; the
    backend is named here (gloo) and ``cpu`` dropped."""
    import os

    if os.environ.get("DS_ACCELERATOR", "").lower() != "cpu":
        return None
    from accelerate.utils import InitProcessGroupKwargs

    out = {k: v for k, v in kwargs.items() if k != "cpu"}
    handlers = list(out.get("kwargs_handlers") or [])
    if not any(isinstance(h, InitProcessGroupKwargs) for h in handlers):
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    out["kwargs_handlers"] = handlers
    return out


def configure_deepspeed(
    accelerator: Any,
    micro_batch_size: int,
    *,
    mini_batch_size: int | None = None,
    max_grad_norm: float | None = None,
) -> None:
    """Fill DeepSpeed's ``train_micro_batch_size_per_gpu`` when its config leaves it ``auto``
    (accelerate takes it from a prepared data loader; the trainers prepare none), and its
    ``gradient_clipping`` from ``max_grad_norm`` when that is ``auto`` (under DeepSpeed
    ``accelerator.clip_grad_norm_`` does nothing: the engine clips). Refuses micro-batches smaller
    than the mini-batch: accelerate steps the engine at every backward, so the accumulation the
    trainer does would become one optimiser step per micro-batch. No-op without DeepSpeed."""
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is None:
        return
    if mini_batch_size is not None and micro_batch_size < mini_batch_size:
        from judge_rl.errors import ConfigError

        raise ConfigError(
            f"micro_batch_size {micro_batch_size} < mini_batch_size {mini_batch_size} is not "
            "supported under DeepSpeed (the engine steps at every backward); use the same size "
            "or set gradient_accumulation_steps in the DeepSpeed config with a smaller "
            "mini_batch_size",
            setting="micro_batch_size",
        )
    cfg = ds.deepspeed_config
    if cfg.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        cfg["train_micro_batch_size_per_gpu"] = int(micro_batch_size)
    if max_grad_norm is not None and cfg.get("gradient_clipping", "auto") == "auto":
        cfg["gradient_clipping"] = float(max_grad_norm)


def _zero3_offload(engine: Any) -> Any:
    """The ``DeepSpeedZeRoOffload`` object that owns a ZeRO-3 engine's module hooks, or None (not
    a DeepSpeed engine, or one with no ZeRO-3 optimizer yet)."""
    opt = getattr(engine, "optimizer", None)
    if opt is None:
        return None
    offload = getattr(opt, "parameter_offload", None)
    if offload is not None:  # DeepSpeedZeroOptimizer_Stage3
        return offload
    if hasattr(opt, "forward_hooks") and hasattr(opt, "module"):  # DeepSpeedZeRoOffload itself
        return opt  # (an engine built without an optimizer)
    return None


def _zero3_params(module: Any) -> list[Any]:
    """A module's ZeRO parameters, its registered external parameters included."""
    try:
        from deepspeed.runtime.zero.partitioned_param_coordinator import iter_params
    except ImportError:  # an older layout: the registered parameters
        return list(module.parameters())
    return list(iter_params(module, recurse=True))


@contextlib.contextmanager
def zero3_hooks_removed(engine: Any) -> Iterator[None]:
    """DeepSpeed ZeRO-3's module hooks off for the block and back on after it (use inside a
    ``GatheredParameters`` that covers every parameter: see :func:`zero3_full_params`).

    ``engine`` is a ``DeepSpeedEngine`` (what ``accelerator.prepare`` returns under DeepSpeed).
    Anything else, or an engine with no ZeRO-3 optimizer, has no hooks to take off: the block runs
    as is. A DeepSpeed whose hook bookkeeping this does not know is an error, not a hang."""
    offload = _zero3_offload(engine)
    if offload is None:
        yield
        return
    import deepspeed

    module = offload.module
    register = getattr(offload, "_register_deepspeed_module", None)  # DeepSpeed >= 0.16.4
    if register is None:
        register = getattr(offload, "_register_hooks_recursively", None)  # before (PR 6847)
    pre = getattr(offload, "fwd_pre_hook", None)
    if (
        register is None
        or not hasattr(offload, "forward_hooks")
        or not hasattr(offload, "backward_hooks")
    ):
        raise RuntimeError(
            f"DeepSpeed {deepspeed.__version__}: cannot find ZeRO-3's module hooks to take them "
            "off for a one-rank forward (judge_rl.train.sharding was written against DeepSpeed 0.19)"
        )
    # the root's start-of-forward hook (coordinator reset: a broadcast until the trace is
    # complete); kept by function so that it can be registered again after the block
    pre_fn = module._forward_pre_hooks.get(pre.id) if pre is not None else None

    # As TRL: modules still marked active would keep their parameters from being released.
    for p in _zero3_params(module):
        active = getattr(p, "ds_active_sub_modules", None)
        if active is not None:
            active.clear()
    for h in [*offload.forward_hooks, *offload.backward_hooks]:
        h.remove()
    offload.forward_hooks = []
    offload.backward_hooks = []
    if pre is not None and pre_fn is not None:
        pre.remove()
    try:
        yield
    finally:
        # Same order as DeepSpeed's setup_zero_stage3_hooks: the start-of-forward hook first,
        # then the per-module hooks (re-registering them also invalidates the coordinator's
        # trace, so the next forward, on every rank, records a fresh one).
        if pre_fn is not None:
            offload.fwd_pre_hook = module.register_forward_pre_hook(pre_fn)
        register(module)


@contextlib.contextmanager
def zero3_full_params(engine: Any, writeback: bool = False) -> Iterator[None]:
    """Every parameter of a ZeRO-3 ``engine`` whole on every rank inside the block, with
    DeepSpeed's module hooks off (:func:`zero3_hooks_removed`), so that rank 0 alone may sample
    from and save ``engine.module``; the parameters are partitioned again and the hooks restored
    on exit. With ``writeback`` what rank 0 writes into them inside the block (a checkpoint
    loaded on resume) is what every rank's partition holds after it; without, changes are
    dropped. A collective: every rank enters it."""
    import deepspeed

    params = list(engine.parameters())
    modifier = 0 if writeback else None
    with (
        deepspeed.zero.GatheredParameters(params, modifier_rank=modifier),
        zero3_hooks_removed(engine),
    ):
        yield


# -- DeepSpeed ZeRO optimiser state: one part per rank, as plain data ----------------------------

OPTIM_PART_FILE = "optimizer-rank{rank}.pt"
"""Each rank's part of a ZeRO optimiser's state in a checkpoint folder."""


def zero_optimizer(accelerator: Any, optimizer: Any) -> Any:
    """DeepSpeed's ZeRO optimizer (stages 1-3) behind accelerate's wrapper, else None: its state
    is this rank's part only (``state_dict`` gathers nothing)."""
    if accelerator is None or getattr(accelerator.state, "deepspeed_plugin", None) is None:
        return None
    inner = getattr(optimizer, "optimizer", None)
    return inner if hasattr(inner, "loss_scaler") and hasattr(inner, "partition_count") else None


def zero_state_part(zero: Any) -> dict[str, Any]:
    """This rank's ZeRO optimiser state as plain data (loadable weights-only): the loss scaler
    (an object; the live one is put back on load, and a full-precision run's is a constant 1)
    left out, the stage enum as an int."""
    import enum

    from deepspeed.checkpoint.constants import LOSS_SCALER

    return {
        k: (int(v.value) if isinstance(v, enum.Enum) else v)
        for k, v in zero.state_dict().items()
        if k != LOSS_SCALER
    }


def load_zero_state_parts(zero: Any, parts: list[dict[str, Any]]) -> None:
    """Every rank's part back (:func:`zero_state_part`, in rank order); ZeRO takes its own."""
    from deepspeed.checkpoint.constants import LOSS_SCALER

    zero.load_state_dict([{**p, LOSS_SCALER: zero.loss_scaler} for p in parts])
