"""Trainer state files (``trainer_state.pt``, ``optimizer.pt``, ``value.pt``) without pickle's
code execution.

``torch.load(..., weights_only=False)`` unpickles arbitrary objects: a ``__reduce__`` in a
downloaded checkpoint folder runs any function it names the moment ``--resume`` reads it. These
files are read with ``weights_only=True`` instead, which rebuilds tensors and plain containers
only (dict, list, tuple, str, int, float, bool, None, plus torch's dtypes, sizes and devices)
and refuses anything else before it is built.

So the trainers save plain data only: pydantic sections as ``model_dump(mode="json")``, configs
as dicts, RNG states as tensors. :func:`save_trainer_state` checks that before writing, so a
state that could not be read back safely fails at save time, in the test that saves it, instead
of at a user's resume.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from judge_rl.errors import ConfigError

_SCALARS = (str, int, float, bool, type(None), bytes)


def check_plain(obj: Any, where: str = "state") -> None:
    """Raise ``TypeError`` naming the key path of the first value that ``weights_only``
    loading would refuse (anything but tensors, plain containers and scalars)."""
    import torch

    # scalars by exact type: a subclass (an IntEnum such as DeepSpeed's ZeRO stage, a str
    # subclass) passes isinstance but is pickled by class, and weights-only loading refuses it
    if type(obj) in _SCALARS or isinstance(
        obj, (torch.Tensor, torch.dtype, torch.device, torch.Size)
    ):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if type(k) not in _SCALARS:
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} is not plain data")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, list | tuple):
        if type(obj) not in (list, tuple):  # a namedtuple or a subclass is pickled by class
            raise TypeError(f"{where}: {type(obj).__name__} is not a plain list or tuple")
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where}: {type(obj).__module__}.{type(obj).__name__} is not plain data "
        "(save tensors, dicts, lists, tuples, numbers, strings or None)"
    )


def save_trainer_state(state: Any, path: Path | str) -> None:
    """``torch.save`` after :func:`check_plain`: what is written loads with
    :func:`load_trainer_state`."""
    import torch

    check_plain(state, Path(path).name)
    torch.save(state, path)


def load_trainer_state(path: Path | str, map_location: Any = "cpu") -> Any:
    """Read a state file saved by :func:`save_trainer_state` (or any ``torch.save`` of tensors
    and plain containers) with ``weights_only=True``: no object of the file's choosing is built
    and no code from it runs.

    Raises :class:`~judge_rl.errors.ConfigError` naming the file when it is missing, unreadable,
    or holds anything but plain data (a checkpoint from an untrusted source, or one written by an
    older judge_rl that pickled objects: nothing in it is run)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: checkpoint file not found", setting="resume")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(
            f"{p}: refused: it holds something other than tensors and plain containers, and "
            "unpickling it could run code from the file (judge_rl's own checkpoints load; "
            f"nothing from this file was run){_unpickler_detail(e)}",
            setting="resume",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
        raise ConfigError(
            f"{p}: unreadable checkpoint file ({type(e).__name__}: {_first_line(e)})",
            setting="resume",
        ) from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _unpickler_detail(e: BaseException) -> str:
    """torch's reason (e.g. ``Unsupported global: GLOBAL posix.system``), without its advice
    to load with ``weights_only=False``."""
    text = str(e)
    key = "WeightsUnpickler error:"
    if key not in text:
        return ""
    rest = text.split(key, 1)[1].strip()
    reason = (rest.splitlines() or [""])[0].split(" was not an allowed global")[0].strip()
    return f": {reason[:200]}" if reason else ""


__all__ = ["check_plain", "load_trainer_state", "save_trainer_state"]
