"""Models around the PPO policy: value model, value head, frozen reference, and the joint module
that DDP wraps (one forward gives the policy's logits and the values).
"""

from __future__ import annotations

import copy
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from judge_rl.errors import ConfigError

log = logging.getLogger(__name__)


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft ``PeftModel`` (adapters still injected); other
    modules unchanged."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base) and type(model).__module__.startswith("peft"):
        return get_base()  # type: ignore[no-any-return]
    return model


def backbone_of(model: nn.Module) -> nn.Module:
    """The transformer body of a ``*ForCausalLM`` / ``*ForSequenceClassification`` model (a peft
    ``PeftModel`` is unwrapped first: its own ``base_model`` is the whole causal LM)."""
    model = unwrap_peft(model)
    prefix = getattr(model, "base_model_prefix", "model")
    body = getattr(model, prefix, None)
    if body is None or body is model:
        raise ConfigError(
            f"cannot find the backbone of {type(model).__name__}", setting="value_model"
        )
    return body


def hidden_size_of(model: nn.Module) -> int:
    cfg = model.config
    for k in ("hidden_size", "n_embd", "d_model"):
        if getattr(cfg, k, None):
            return int(getattr(cfg, k))
    raise ConfigError(
        f"cannot find the hidden size of {type(model).__name__}", setting="value_model"
    )


class ValueModel(nn.Module):
    """A transformer body and a linear head: one value per token, ``V(s_t)``. # (B, T)"""

    def __init__(self, backbone: nn.Module, hidden_size: int, head: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        if head is None:
            head = nn.Linear(hidden_size, 1, bias=True)
            nn.init.normal_(head.weight, std=1.0 / (hidden_size + 1) ** 0.5)
            nn.init.zeros_(head.bias)
        self.score = head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
            output_hidden_states=True,
        )
        h = getattr(out, "last_hidden_state", None)
        if h is None:  # a model with a head (e.g. a peft-wrapped LM): take the last hidden state
            h = out.hidden_states[-1]  # (B, T, H)
        return self.score(h.to(self.score.weight.dtype)).squeeze(-1).float()  # (B, T)


def value_from_policy(policy: nn.Module) -> ValueModel:
    """A separate value model: a copy of the policy's body and a fresh head."""
    return ValueModel(copy.deepcopy(backbone_of(policy)), hidden_size_of(policy))


def value_from_reward_model(path: str, policy: nn.Module | None = None) -> ValueModel:
    """A value model initialised from a reward-model folder (body and score head).

    The value model reads the policy's token ids, so the reward model must share the policy's
    vocabulary (a reward model trained from the policy's backbone does)."""
    from transformers import AutoModelForSequenceClassification

    p = Path(path)
    if not (p / "config.json").exists():
        raise ConfigError(f"{path}: not a model folder (no config.json)", setting="value_model")
    try:
        rm = AutoModelForSequenceClassification.from_pretrained(str(p), num_labels=1)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{path}: cannot load as a reward model: {e}", setting="value_model"
        ) from None
    if policy is not None:
        pv, rv = getattr(policy.config, "vocab_size", None), getattr(rm.config, "vocab_size", None)
        if pv is not None and rv is not None and pv != rv:
            raise ConfigError(
                f"{path}: the reward model's vocabulary ({rv} tokens) differs from the policy's "
                f"({pv}); a value model must read the policy's tokens (use policy or head)",
                setting="value_model",
            )
    head = None
    for name in ("score", "classifier", "v_head"):
        h = getattr(rm, name, None)
        if isinstance(h, nn.Linear) and h.out_features == 1:
            head = h
            break
    return ValueModel(backbone_of(rm), hidden_size_of(rm), head)


def frozen_copy(model: nn.Module) -> nn.Module:
    """The reference policy: a copy with gradients off, in eval mode."""
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    ref.eval()
    return ref


def accepts_logits_to_keep(model: nn.Module) -> bool:
    model = unwrap_peft(model)  # PeftModel.forward passes **kwargs through to the LM
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class PolicyAndValue(nn.Module):
    """The trained parameters as one module (what DDP wraps and the optimiser steps).

    ``forward`` returns the policy's logits for the last ``keep`` positions and the values of all
    positions. With ``value_model=None`` the values come from a linear head on the policy's last
    hidden state (shared body).
    """

    def __init__(self, policy: nn.Module, value_model: ValueModel | None):
        super().__init__()
        self.policy = policy
        self.value_model = value_model
        self.value_head: nn.Linear | None = None
        if value_model is None:
            hs = hidden_size_of(policy)
            self.value_head = nn.Linear(hs, 1)
            nn.init.normal_(self.value_head.weight, std=1.0 / (hs + 1) ** 0.5)
            nn.init.zeros_(self.value_head.bias)
            from judge_rl.train.precision import PrecisionPolicy

            PrecisionPolicy.match(self.value_head, policy)  # a head matches its body's dtype
        self._keep = accepts_logits_to_keep(policy)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        keep: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kw: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "use_cache": False,
        }
        if keep and self._keep:
            kw["logits_to_keep"] = keep
        if self.value_head is not None:
            out = self.policy(**kw, output_hidden_states=True)
            h = out.hidden_states[-1]  # (B, T, H)
            values = self.value_head(h.to(self.value_head.weight.dtype)).squeeze(-1).float()
        else:
            out = self.policy(**kw)
            assert self.value_model is not None
            values = self.value_model(input_ids, attention_mask, position_ids)  # (B, T)
        logits = out.logits  # (B, keep or T, V)
        if keep and logits.shape[1] != keep:
            logits = logits[:, -keep:]
        return logits, values

    def value_state(self) -> dict[str, torch.Tensor]:
        """The value model's or head's full weights (inside the gather when sharded)."""
        from judge_rl.models import full_state_dict

        mod = self.value_model if self.value_model is not None else self.value_head
        assert mod is not None
        return full_state_dict(mod)

    def load_value_state(self, state: dict[str, torch.Tensor]) -> None:
        mod = self.value_model if self.value_model is not None else self.value_head
        assert mod is not None
        mod.load_state_dict(state)


def enable_gradient_checkpointing(model: nn.Module) -> bool:
    """Turn on activation checkpointing for a transformers model (peft-wrapped or not), without
    dropout: transformers checkpoints a layer only when that layer is in training mode, so only
    the checkpointed layers themselves are flagged as training (their dropout submodules stay in
    eval mode). Call :func:`checkpointing_train_mode` after every ``.eval()``. Returns whether it
    is on."""
    base = unwrap_peft(model)
    if not getattr(base, "supports_gradient_checkpointing", False):
        return False
    new = getattr(base, "activation_checkpointing_enable", None)  # transformers >= 5.2x
    if new is not None:
        new(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        old: Any = getattr(base, "gradient_checkpointing_enable")  # noqa: B009
        old(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointing_train_mode(model)
    return True


def checkpointing_train_mode(model: nn.Module) -> None:
    """Flag the layers that checkpoint as training (see :func:`enable_gradient_checkpointing`)."""
    for m in model.modules():
        if getattr(m, "gradient_checkpointing", False) is True and not m.training:
            m.training = True
