"""DeepSpeed settings the trainers fill in (judge_rl/train/sharding.py): the config logic only;
the 2-process ZeRO-3 runs are in test_zero3_cpu.py (slow)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from judge_rl.errors import ConfigError
from judge_rl.train.sharding import configure_deepspeed


def _acc(cfg: dict | None) -> SimpleNamespace:
    plugin = None if cfg is None else SimpleNamespace(deepspeed_config=cfg)
    return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin))


def test_auto_values_are_filled_and_set_ones_kept():
    cfg = {"train_micro_batch_size_per_gpu": "auto", "gradient_clipping": "auto"}
    configure_deepspeed(_acc(cfg), 8, mini_batch_size=8, max_grad_norm=1.0)
    assert cfg == {"train_micro_batch_size_per_gpu": 8, "gradient_clipping": 1.0}
    cfg = {"train_micro_batch_size_per_gpu": 4, "gradient_clipping": 0.5}
    configure_deepspeed(_acc(cfg), 8, mini_batch_size=8, max_grad_norm=1.0)
    assert cfg == {"train_micro_batch_size_per_gpu": 4, "gradient_clipping": 0.5}
    configure_deepspeed(_acc(None), 2, mini_batch_size=8)  # no DeepSpeed: nothing to do


def test_micro_batches_below_the_mini_batch_are_refused_under_deepspeed():
    """accelerate steps the DeepSpeed engine at every backward: accumulating micro-batches
    would silently become one optimiser step each."""
    with pytest.raises(ConfigError, match="micro_batch_size"):
        configure_deepspeed(_acc({}), 4, mini_batch_size=8)
