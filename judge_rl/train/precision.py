"""Precision policy shared by every trainer (reward model, PPO, GRPO, DPO).

transformers >= 5 loads a checkpoint in the dtype it was stored in, and most hub models are stored
in bf16. Training such a model as loaded runs AdamW on bf16 weights, where an update of 1e-5 on a
weight of 0.02 rounds away (bf16 keeps 8 bits of mantissa), and a fresh fp32 head on a bf16 body
crashes at the first matmul. The policy here:

1. **Master weights** (``dtype``, default ``float32``): every trainable model is cast to it after
   loading (:func:`to_master`), heads included, so heads always match their body.
2. **Compute** (``mixed_precision``: ``no``, ``bf16``, ``fp16``): autocast around forward passes
   by :meth:`PrecisionPolicy.autocast`, not by accelerate (whose mixed precision wraps only the
   prepared model and is a process-wide singleton: create the ``Accelerator`` with
   ``mixed_precision="no"`` and use ``torch.amp.GradScaler`` yourself for fp16). Every forward whose numbers are compared with each other (rollout, pi_old, the
   reference, the updates) runs under the same :func:`autocast` context, so that at step 1 the
   policy and its reference give bit-identical log-probabilities and the KL is exactly 0.
3. **Frozen models** (reference, reward model) are cast with :func:`to_inference`: the master
   dtype by default, or a smaller ``inference_dtype`` (e.g. ``bfloat16``) to save memory, at the
   price of a step-1 KL that is no longer exactly 0.
4. **Saving**: ``save_dtype`` (``auto``: the master dtype) is applied on a copy of the state dict
   only (:func:`state_dict_in`), never to the live weights.

API (for trainers; all functions take and return plain ``torch`` objects)::

    from judge_rl.train.precision import PrecisionPolicy

    prec = PrecisionPolicy.from_settings(mixed_precision="bf16", dtype="float32")
    prec.validate(device="cpu")                 # ConfigError naming the setting when unsupported
    acc = make_accelerator(cpu=...)            # judge_rl.train.ppo: full-precision accelerate
    model = prec.to_master(model)               # trainable weights (and heads) in fp32
    ref = prec.to_inference(ref)                # frozen copy: fp32, or inference_dtype
    head = prec.match(head, body)               # a head created later: same dtype as its body
    with prec.autocast(acc.device):             # rollout / reference / pi_old / updates
        ...
    sd = prec.state_dict_in(model.state_dict()) # what to save (save_dtype)
    prec.describe()                             # dict for the run log
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from judge_rl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

MIXED_PRECISION = ("no", "bf16", "fp16")
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def parse_dtype(name: str | None, *, setting: str = "dtype", allow_auto: bool = True) -> Any:
    """``torch.dtype`` for a name (``float32``/``fp32``, ``bfloat16``/``bf16``,
    ``float16``/``fp16``); ``None`` for ``auto``/``None`` (keep what is stored)."""
    import torch

    if name is None or (allow_auto and str(name).lower() == "auto"):
        return None
    if isinstance(name, torch.dtype):
        return name
    key = DTYPE_NAMES.get(str(name).lower())
    if key is None:
        allowed = ", ".join(sorted({*DTYPE_NAMES, *(["auto"] if allow_auto else [])}))
        raise ConfigError(f"unknown dtype {name!r} (one of {allowed})", setting=setting)
    return getattr(torch, key)


def resolve_mixed_precision(setting: str | None, on_cpu: bool) -> str:
    """``auto`` -> ``bf16`` on a GPU that supports it, else ``no``; other values unchanged."""
    import os

    mp = (setting or "auto").lower()
    if mp != "auto":
        return mp
    env = os.environ.get("ACCELERATE_MIXED_PRECISION", "").lower()  # accelerate launch / config
    if env in MIXED_PRECISION:
        return env
    if on_cpu:
        return "no"
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def model_dtype(model: nn.Module) -> Any:
    """The dtype of a module's first floating-point parameter (``float32`` when it has none)."""
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def float_dtypes(model: nn.Module) -> set[Any]:
    """Every floating dtype among a module's parameters (buffers such as rotary frequencies are
    kept in fp32 by transformers on purpose, so they do not count)."""
    return {p.dtype for p in model.parameters() if p.is_floating_point()}


@dataclass
class PrecisionPolicy:
    """How a trainer stores, computes and saves weights (see the module docstring)."""

    mixed_precision: str = "no"
    """Autocast dtype for forward passes: ``no``, ``bf16`` or ``fp16``."""
    dtype: str = "float32"
    """Master weights of trained models (``auto`` keeps the stored dtype: pure bf16 training)."""
    inference_dtype: str = "auto"
    """Frozen models (reference, reward model): ``auto`` = the master dtype."""
    save_dtype: str = "auto"
    """Dtype of saved weights: ``auto`` = the master dtype."""

    @classmethod
    def from_settings(
        cls,
        mixed_precision: str | None = "no",
        dtype: str | None = "float32",
        inference_dtype: str | None = "auto",
        save_dtype: str | None = "auto",
    ) -> PrecisionPolicy:
        mp = (mixed_precision or "no").lower()
        if mp not in MIXED_PRECISION:
            raise ConfigError(
                f"mixed precision must be one of {', '.join(MIXED_PRECISION)}, got {mp!r}",
                setting="mixed_precision",
            )
        out = cls(mp, dtype or "float32", inference_dtype or "auto", save_dtype or "auto")
        parse_dtype(out.dtype, setting="dtype")
        parse_dtype(out.inference_dtype, setting="inference_dtype")
        parse_dtype(out.save_dtype, setting="save_dtype")
        return out

    def validate(self, device: Any = None) -> None:
        """Refuse combinations the device cannot run (fp16 autocast on CPU, bf16 on an old GPU)."""
        import torch

        kind = getattr(device, "type", None) or str(device or "cpu").split(":")[0]
        if self.mixed_precision == "fp16" and kind == "cpu":
            raise ConfigError(
                "fp16 mixed precision needs a GPU (use bf16 on CPU)", setting="mixed_precision"
            )
        if (
            self.mixed_precision == "bf16"
            and kind == "cuda"
            and torch.cuda.is_available()
            and not torch.cuda.is_bf16_supported()
        ):
            raise ConfigError("this GPU has no bf16 support (use fp16)", setting="mixed_precision")

    # -- dtypes -----------------------------------------------------------------------------

    @property
    def master(self) -> Any:
        """Master-weight dtype (None: keep what is stored)."""
        return parse_dtype(self.dtype, setting="dtype")

    @property
    def compute(self) -> Any:
        """Autocast dtype, or None when off."""
        import torch

        return {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.mixed_precision]

    def to_master(self, model: nn.Module) -> nn.Module:
        """Cast a trainable model (body and heads) to the master dtype, in place; returns it."""
        dt = self.master
        if dt is None:  # auto: keep the stored dtype, but heads follow the body
            dt = model_dtype(model)
        if float_dtypes(model) - {dt}:
            model.to(dt)
        return model

    def to_inference(self, model: nn.Module, like: nn.Module | None = None) -> nn.Module:
        """Cast a frozen model to ``inference_dtype`` (``auto``: the master dtype, or ``like``'s
        dtype when given), in place; returns it."""
        dt = parse_dtype(self.inference_dtype, setting="inference_dtype")
        if dt is None:
            dt = model_dtype(like) if like is not None else self.master
        if dt is not None and float_dtypes(model) - {dt}:
            model.to(dt)
        return model

    @staticmethod
    def match(head: nn.Module, body: nn.Module) -> nn.Module:
        """Cast ``head`` to ``body``'s dtype (a head must match the body that feeds it)."""
        return head.to(model_dtype(body))

    @contextlib.contextmanager
    def autocast(self, device: Any = None) -> Iterator[None]:
        """Autocast at ``mixed_precision`` (a no-op for ``no``)."""
        import torch

        dt = self.compute
        if dt is None:
            yield
            return
        kind = getattr(device, "type", None) or str(device or "cpu").split(":")[0]
        with torch.autocast(device_type=kind, dtype=dt):
            yield

    def state_dict_in(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A copy of ``state`` with floating tensors in ``save_dtype`` (``auto``: unchanged)."""
        dt = parse_dtype(self.save_dtype, setting="save_dtype")
        if dt is None:
            return state
        return {k: (v.to(dt) if v.is_floating_point() else v) for k, v in state.items()}

    def describe(self) -> dict[str, str]:
        """The policy as strings (for run logs and checkpoints)."""
        return {
            "mixed_precision": self.mixed_precision,
            "dtype": self.dtype,
            "inference_dtype": self.inference_dtype,
            "save_dtype": self.save_dtype,
        }


def trainable_fraction_changed(before: dict[str, torch.Tensor], model: nn.Module) -> float:
    """Share of trainable parameter elements that differ from ``before`` (name -> tensor)
    (a check that the optimiser really moves the weights; used by tests and ``make gpu-check``)."""
    changed = total = 0
    for name, p in model.named_parameters():
        if not p.requires_grad or name not in before:
            continue
        b = before[name].to(p.device)
        changed += int((p.detach() != b).sum())
        total += p.numel()
    return changed / max(total, 1)


__all__ = [
    "DTYPE_NAMES",
    "MIXED_PRECISION",
    "PrecisionPolicy",
    "float_dtypes",
    "model_dtype",
    "parse_dtype",
    "resolve_mixed_precision",
    "trainable_fraction_changed",
]
