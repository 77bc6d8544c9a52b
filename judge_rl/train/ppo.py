"""PPO for language models: optimise a policy against a reward model, a judge or a verifier.

The algorithm, one step (read top to bottom; each formula has its source beside it):

1. Rollout: the policy samples a response to each of ``B`` prompts (:mod:`judge_rl.train.rollout`).
2. Score: the reward source gives one scalar per response; a missing EOS costs
   ``missing_eos_penalty``; failed scores (NaN) drop that sample from the update.
3. Old log-probabilities of the response tokens under the policy and the frozen reference, and the
   values, in one no-grad forward pass.
4. Per-token reward: ``-kl_coef * KL_t`` at every token and the score added at the last token
   (:func:`compute_rewards`; Ziegler et al. 2019, eq. 2), KL estimated per token with k1 or k3
   (:func:`kl_penalty`; Schulman, "Approximating KL divergence").
5. Advantages by GAE (:func:`compute_gae`; Schulman et al. 2016), whitened (:func:`whiten`).
6. ``ppo_epochs`` passes over shuffled minibatches: clipped surrogate loss (:func:`policy_loss`;
   Schulman et al. 2017, eq. 7) plus ``vf_coef`` times the clipped value loss
   (:func:`value_loss`), minus ``ent_coef`` times the entropy.
7. The KL coefficient adapts toward ``target_kl`` (:class:`AdaptiveKLController`; Ziegler et al.
   2019, section 2.2) or stays fixed.

Names follow CleanRL's ``ppo.py``: batch-wide tensors start with ``b_``, minibatch ones with ``mb_``;
shapes are commented ``# (B, R)`` (``B`` samples, ``P`` prompt tokens, ``R`` response tokens,
``V`` vocabulary).

The trainer (:class:`PPOTrainer`) runs on one CPU, one GPU, or several processes under
``accelerate launch`` (DDP); it logs every step into the run log's ``ppo`` section, saves
checkpoints as model folders, resumes from them, and calls :class:`judge_rl.train.callbacks.Callback`
hooks after every step (it is their :class:`~judge_rl.train.callbacks.PolicyHandle`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from judge_rl.errors import ConfigError
from judge_rl.train._checkpoint import load_trainer_state, save_trainer_state
from judge_rl.train._ppo_config import PPOConfig, config_fields
from judge_rl.train.callbacks import Callback, Samples, StepInfo
from judge_rl.train.rewards import RewardQuery, RewardSource
from judge_rl.types import Prompt, PromptItem, prompt_text

if TYPE_CHECKING:
    from judge_rl.runlog import PPOSection, RunLog

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
VALUE_FILE = "value.pt"
OPTIM_FILE = "optimizer.pt"
CKPT_INFO = "checkpoint.json"
EVENTS_FILE = "events.jsonl"


# =============================================================================================
# Algorithm steps (importable, tested against values computed by hand)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1 (0 when the mask is empty)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` where ``mask`` is 1 (Bessel-corrected by default)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise ``x`` to mean 0 and variance 1 over the masked entries (advantage whitening, as
    in OpenAI's baselines and Ziegler et al.'s ``lm-human-preferences``).

    >>> import torch
    >>> whiten(torch.tensor([[1.0, 3.0, 9.0]]), torch.tensor([[1, 1, 0]])).tolist()
    [[-0.7071067690849304, 0.7071067690849304, 0.0]]
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)  # (B, T)
    if not shift_mean:
        out = out + mean
    return out * mask


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(label) for each position. logits (B, T, V), labels (B, T) -> (B, T)."""
    logits = logits.float()
    picked = torch.gather(logits, 2, labels.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(logits, dim=-1)  # (B, T)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each position's distribution, H = logsumexp(z) - Σ softmax(z)·z. (B, T, V) ->
    (B, T)."""
    logits = logits.float()
    p = torch.softmax(logits, dim=-1)  # (B, T, V)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)  # (B, T)


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1"
) -> torch.Tensor:
    """Per-token estimate of KL(π‖π_ref) from tokens sampled from π.

    With ``log r = log π_ref(t) - log π(t)`` (Schulman, "Approximating KL divergence",
    http://joschu.net/blog/kl-approx.html):

    - ``k1 = -log r``: unbiased, can be negative per token;
    - ``k3 = (r - 1) - log r``: unbiased and always >= 0, lower variance.

    >>> import torch
    >>> lp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    >>> round(kl_penalty(lp, ref, "k1").item(), 4), round(kl_penalty(lp, ref, "k3").item(), 4)
    (1.0, 0.3679)
    """
    log_ratio = logprobs - ref_logprobs  # (B, T): log π - log π_ref = -log r
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio  # (r - 1) - log r
    raise ConfigError(f"unknown KL estimator {estimator!r} (k1, k3)", setting="kl_estimator")


SAMPLE_CHUNK = 64
"""Fewest prompts :meth:`PPOTrainer.sample` generates for at once (monitor and snapshots)."""


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Adaptive KL coefficient (Ziegler et al. 2019, "Fine-Tuning Language Models from Human
    Preferences", section 2.2): ``e = clip(KL / target - 1, -0.2, 0.2)``,
    ``β ← β (1 + K_β e)`` with ``K_β = n_steps / horizon``.

    >>> c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    >>> c.update(12.0, n_steps=1000); round(c.value, 6)
    0.102
    """

    def __init__(self, kl_coef: float, target: float, horizon: int):
        super().__init__(kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            return
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon


def compute_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: ``r_t = -β KL_t``, plus the score at the last response token
    (Ziegler et al. 2019, eq. 2: ``R(x, y) = r(x, y) - β log(π(y|x) / ρ(y|x))``).

    Args:
        scores: (B,) sequence scores (after penalties).
        logprobs, ref_logprobs: (B, R) under the rollout policy and the reference.
        mask: (B, R) response mask.

    Returns:
        ``(rewards, kl)``, both (B, R) and zero outside the mask.
    """
    kl = kl_penalty(logprobs, ref_logprobs, estimator) * mask  # (B, R)
    rewards = -kl_coef * kl  # (B, R)
    last = (mask.sum(1) - 1).clamp(min=0).long()  # (B,) index of the last response token
    has_tokens = (mask.sum(1) > 0).to(rewards.dtype)  # (B,)
    rewards[torch.arange(rewards.shape[0]), last] += scores * has_tokens
    return rewards, kl


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous
    Control Using Generalized Advantage Estimation", eq. 16):
    ``δ_t = r_t + γ V(s_{t+1}) - V(s_t)``, ``A_t = δ_t + γλ A_{t+1}``; ``V`` is 0 after the last
    response token (the episode ends there).

    Args:
        rewards, values, mask: (B, R).

    Returns:
        ``(advantages, returns)``, (B, R), with ``returns = advantages + values``.

    >>> import torch
    >>> adv, ret = compute_gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.2]]),
    ...                        torch.tensor([[1, 1]]), gamma=1.0, lam=1.0)
    >>> [round(v, 4) for v in adv[0].tolist()], [round(v, 4) for v in ret[0].tolist()]
    ([0.5, 0.8], [1.0, 1.0])
    """
    values = values * mask  # (B, R)
    rewards = rewards * mask  # (B, R)
    T = rewards.shape[1]
    advantages_reversed = []
    lastgaelam = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(T)):
        nextvalues = values[:, t + 1] if t < T - 1 else torch.zeros_like(values[:, 0])  # (B,)
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]  # (B,)
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1) * mask  # (B, R)
    returns = advantages + values  # (B, R)
    return advantages, returns


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate objective (Schulman et al. 2017, "Proximal Policy Optimization
    Algorithms", eq. 7), as a loss to minimise:
    ``max(-A ρ, -A clip(ρ, 1-ε, 1+ε))`` with ``ρ = π / π_old``, averaged over response tokens.

    Returns:
        ``(loss, clip_frac, approx_kl)``; ``approx_kl`` is the k3 estimate of KL(π_old‖π)
        (http://joschu.net/blog/kl-approx.html), as in CleanRL.
    """
    log_ratio = logprobs - old_logprobs  # (B, R)
    ratio = torch.exp(log_ratio)  # (B, R)
    pg_losses = -advantages * ratio  # (B, R)
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)  # (B, R)
    loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
    with torch.no_grad():
        clip_frac = masked_mean((pg_losses2 > pg_losses).float(), mask)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
    return loss, clip_frac, approx_kl


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss (OpenAI baselines' PPO2; Ziegler et al. 2019):
    ``½ max((V - R)², (V_old + clip(V - V_old, -ε, ε) - R)²)``, averaged over response tokens.

    Returns:
        ``(loss, clip_frac)``.
    """
    values_clipped = old_values + torch.clamp(
        values - old_values, -cliprange_value, cliprange_value
    )
    vf_losses1 = (values - returns) ** 2  # (B, R)
    vf_losses2 = (values_clipped - returns) ** 2  # (B, R)
    loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), mask)
    with torch.no_grad():
        clip_frac = masked_mean((vf_losses2 > vf_losses1).float(), mask)
    return loss, clip_frac


def _require_tracker(name: str) -> None:
    """A tracker that is asked for must be installed (accelerate only warns and logs nothing)."""
    import importlib.util

    mods = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}[name]
    if not any(importlib.util.find_spec(m) for m in mods):
        raise ConfigError(
            f"--report-to {name} needs the {mods[0]} package: pip install {mods[0]}",
            setting="report_to",
        )


def sharding_requested() -> str | None:
    """``FSDP`` or ``DeepSpeed`` when ``accelerate launch`` (its config or flags) asked for it."""
    env = os.environ
    if env.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "FSDP"
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return "DeepSpeed"
    return None


def make_accelerator(**kwargs: Any) -> Any:
    """An ``Accelerator`` in full precision (trainers autocast themselves: see
    :mod:`judge_rl.train.precision`), even when an earlier trainer in this process or an
    ``accelerate launch --mixed_precision`` asked for another setting (the process-wide state is
    reset, the process group kept).

    FSDP or DeepSpeed asked for on CPU is an error: accelerate runs them only on accelerators and
    would otherwise fall back to plain DDP (``cpu=True``) or to independent single processes
    without a word."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    shard = sharding_requested()
    if shard == "DeepSpeed" and kwargs.get("cpu"):
        from judge_rl.train.sharding import deepspeed_cpu_kwargs

        kwargs = deepspeed_cpu_kwargs(kwargs) or kwargs  # DS_ACCELERATOR=cpu: DeepSpeed on CPU
    if shard and kwargs.get("cpu"):
        raise ConfigError(
            f"{shard} needs GPUs (accelerate runs it only on accelerators); on CPU launch "
            "without an FSDP/DeepSpeed config (DDP over gloo)",
            setting="device",
        )

    try:
        return Accelerator(mixed_precision="no", **kwargs)
    except ValueError:
        AcceleratorState._reset_state(reset_partial_state=False)
        try:
            return Accelerator(mixed_precision="no", **kwargs)
        except (ValueError, ImportError) as e:
            raise ConfigError(f"accelerate refused the set-up: {e}", setting="device") from None
    except ImportError as e:
        raise ConfigError(f"accelerate refused the set-up: {e}", setting="report_to") from None


def lr_factor(step: int, total: int, warmup: int, kind: str = "constant") -> float:
    """Multiplier of the base learning rate at PPO step ``step`` (0-based) of ``total``: linear
    warm-up over ``warmup`` steps, then ``constant``, ``linear`` decay to 0, or ``cosine`` decay
    to 0 (Loshchilov & Hutter 2017, "SGDR", without restarts).

    >>> [round(lr_factor(s, 4, 0, "linear"), 3) for s in range(4)]
    [1.0, 0.75, 0.5, 0.25]
    >>> [round(lr_factor(s, 5, 2, "cosine"), 3) for s in range(5)]
    [0.5, 1.0, 1.0, 0.75, 0.25]
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(
        f"unknown schedule {kind!r} (constant, linear, cosine)", setting="lr_scheduler"
    )


class RunningMoments:
    """Running mean and std of scores over every step so far (Chan et al.'s parallel update,
    "Updating formulae and a pairwise algorithm for computing sample variances", 1979), gathered
    over ranks so every rank normalises alike.

    >>> import torch
    >>> m = RunningMoments()
    >>> _ = m.update_and_normalise(torch.tensor([1.0, 3.0]), torch.tensor([True, True]))
    >>> _ = m.update_and_normalise(torch.tensor([5.0]), torch.tensor([True]))
    >>> round(m.mean, 4), round(m.std, 4)
    (3.0, 2.0)
    """

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0.0

    @property
    def std(self) -> float:
        """Unbiased std of every score seen (1 until there are two)."""
        if self.count < 2:
            return 1.0
        return math.sqrt(max(self.var, 0.0) * self.count / (self.count - 1))

    def update_and_normalise(
        self, scores: torch.Tensor, ok: torch.Tensor, accelerator: Any = None
    ) -> torch.Tensor:
        x = scores[ok].double()
        if accelerator is not None and accelerator.num_processes > 1:
            n = torch.tensor([float(x.numel()), float(x.sum()), float((x * x).sum())])
            n = accelerator.reduce(n.to(accelerator.device), "sum").cpu()
            cnt, total, sq = (float(v) for v in n)
        else:
            cnt, total, sq = float(x.numel()), float(x.sum()), float((x * x).sum())
        if cnt > 0:
            b_mean = total / cnt
            b_var = max(sq / cnt - b_mean**2, 0.0)
            if self.count == 0:
                self.mean, self.var, self.count = b_mean, b_var, cnt
            else:
                tot = self.count + cnt
                delta = b_mean - self.mean
                m2 = self.var * self.count + b_var * cnt + delta**2 * self.count * cnt / tot
                self.mean, self.var, self.count = self.mean + delta * cnt / tot, m2 / tot, tot
        return (scores - self.mean) / max(self.std, 1e-8)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


def _ckpt_step(path: Path) -> int:
    """The step a checkpoint folder was saved at (from its ``checkpoint.json``, else its name)."""
    try:
        return int(json.loads((path / CKPT_INFO).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        digits = "".join(ch if ch.isdigit() else " " for ch in path.name).split()
        return int(digits[-1]) if digits else -1


@contextlib.contextmanager
def gather_full_params(accelerator: Any, model: Any, writeback: bool = False) -> Iterator[None]:
    """Full parameters on every rank inside the block, as TRL's ``unwrap_model_for_generation``:
    DeepSpeed ZeRO-3 (``GatheredParameters``), FSDP1 (``summon_full_params``), FSDP2
    (``unshard``/``reshard`` of each ``fully_shard`` module: FSDP2 has no
    ``summon_full_params``, and skipping the gather silently is what issue 17 found); a no-op
    for DDP and one process. With ``writeback`` (ZeRO-3, FSDP1) what is written into the full
    parameters inside the block (a checkpoint loaded on resume) stays in the shards after it. A
    collective: every rank enters it."""
    from accelerate.utils import DistributedType

    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is not None and getattr(ds, "zero_stage", 0) == 3:
        # rank 0 alone may run forwards inside (the monitor): DeepSpeed's module hooks are
        # taken off for the block, as TRL does for generation (judge_rl.train.sharding)
        from judge_rl.train.sharding import zero3_full_params

        with zero3_full_params(model, writeback=writeback):
            yield
    elif accelerator.distributed_type == DistributedType.FSDP:
        fsdp2 = _fsdp2_modules(model)
        if fsdp2:
            # A forward reshards an FSDP2 module after it (reshard_after_forward), and the next
            # forward gathers it again: a collective that one rank sampling alone (the monitor)
            # would wait on forever. Inside the block the modules stay gathered.
            after = [_reshards_after_forward(m) for m in fsdp2]
            for m in fsdp2:
                m.set_reshard_after_forward(False, recurse=False)
                m.unshard()
            try:
                yield
            finally:
                for m, was in zip(reversed(fsdp2), reversed(after), strict=True):
                    m.reshard()
                    m.set_reshard_after_forward(was, recurse=False)
        else:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            with FSDP.summon_full_params(model, writeback=writeback, recurse=True):
                yield
    else:
        yield


def _reshards_after_forward(module: Any) -> bool:
    """An FSDP2 module's ``reshard_after_forward`` (no public getter; True, fully_shard's default,
    when it cannot be read)."""
    try:
        group = module._get_fsdp_state()._fsdp_param_group
        return group is None or group.post_forward_mesh_info is not None
    except AttributeError:
        return True


def _fsdp2_modules(model: Any) -> list[Any]:
    """The FSDP2 (``fully_shard``) modules of a model, outermost first; [] without FSDP2."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def _vllm_dtype(prec: Any) -> str:
    """vLLM runs in the compute dtype (bf16 under bf16 autocast), else the master dtype."""
    if prec.mixed_precision == "bf16":
        return "bfloat16"
    if prec.mixed_precision == "fp16":
        return "float16"
    return {"bfloat16": "bfloat16", "float16": "float16"}.get(
        str(prec.master).split(".")[-1], "float32"
    )


def _flat_config(c: PPOConfig) -> dict[str, Any]:
    """The settings as tracker hyper-parameters (scalars and strings only)."""
    return {
        k: (v if isinstance(v, int | float | str | bool) else str(v))
        for k, v in c.to_dict().items()
    }


# =============================================================================================
# Trainer


def _as_items(prompts: Sequence[Any]) -> list[PromptItem]:
    items = []
    for i, p in enumerate(prompts):
        if isinstance(p, PromptItem):
            items.append(p)
        elif isinstance(p, dict) and "prompt" in p:
            items.append(
                PromptItem(
                    prompt_id=str(p.get("prompt_id", i)),
                    prompt=p["prompt"],
                    reference=p.get("reference"),
                )
            )
        else:
            items.append(PromptItem(prompt_id=str(i), prompt=p))
    return items


@dataclass
class _Batch:
    """One rollout batch, everything the updates need. B samples, P prompt, R response tokens."""

    items: list[PromptItem]
    query_ids: torch.Tensor  # (B, P)
    query_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R)
    ended: torch.Tensor  # (B,)
    texts: list[str]
    scores: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (B,)
    engine_logprobs: torch.Tensor | None = None  # (B, R) the sampler's own (vLLM), else None


class PPOTrainer:
    """PPO on a causal LM against any reward source.

    Args:
        config: settings (:class:`PPOConfig`); ``policy``/``reward``/``prompts`` strings in it are
            only used when the matching argument is not given.
        policy: a ``PreTrainedModel`` or a name/folder (``embedded``).
        tokenizer: its tokenizer (loaded from ``policy`` when None and ``policy`` is a name).
        reward_source: a :class:`~judge_rl.train.rewards.RewardSource` or a spec string.
        prompts: :class:`~judge_rl.types.PromptItem` s, plain prompts, or dicts with ``prompt``
            (and ``reference``).
        callbacks: :class:`~judge_rl.train.callbacks.Callback` s, called on the main process.
        ref_policy: the frozen reference (default: a copy of ``policy`` at start).
        value_model: a value module (``ValueModel``) overriding ``config.value_model``.
        run_log: the run log to fill (``ppo`` section) and save after every step in ``run_dir``.
        run_dir: where ``log.json`` goes.

    Example (a toy run on a tiny model)::

        trainer = PPOTrainer(PPOConfig(steps=10, batch_size=16, lr=3e-3), model, tok,
                             make_reward_source("contains:a"), ["say a"] * 32)
        section = trainer.train()
    """

    def __init__(
        self,
        config: PPOConfig,
        policy: Any = None,
        tokenizer: Any = None,
        reward_source: RewardSource | str | None = None,
        prompts: Sequence[Any] | None = None,
        *,
        callbacks: Sequence[Callback] = (),
        ref_policy: Any = None,
        value_model: Any = None,
        run_log: RunLog | None = None,
        run_dir: str | os.PathLike[str] | None = None,
    ):
        from judge_rl.runlog import PPOSection
        from judge_rl.train._ppo_models import (
            PolicyAndValue,
            enable_gradient_checkpointing,
            frozen_copy,
            value_from_policy,
            value_from_reward_model,
        )
        from judge_rl.train.precision import PrecisionPolicy, resolve_mixed_precision

        config.validate()
        self.config = c = config
        self.callbacks = list(callbacks)
        self.run_log = run_log
        self.run_dir = Path(run_dir) if run_dir else None

        # 1. Models --------------------------------------------------------------------------
        if policy is None or isinstance(policy, str):
            from judge_rl.models import load_causal_lm, load_tokenizer

            name = policy_name = policy or c.policy
            policy = load_causal_lm(name)
            tokenizer = tokenizer or load_tokenizer(name)
        else:
            policy_name = str(getattr(policy.config, "_name_or_path", "") or type(policy).__name__)
        if tokenizer is None:
            raise ConfigError("a tokenizer is needed with a model object", setting="policy")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        # No CUDA and no device given means CPU: say so to accelerate, otherwise a multi-process
        # launch on a CPU-only machine runs each rank as a separate single-process job.
        on_cpu = c.device == "cpu" or (c.device is None and not torch.cuda.is_available())
        # Precision (judge_rl.train.precision): fp32 master weights, one autocast for every
        # forward pass (rollout, pi_old, reference, updates), so the step-1 KL is exactly 0.
        self.precision = prec = PrecisionPolicy.from_settings(
            resolve_mixed_precision(c.mixed_precision, on_cpu),
            c.dtype,
            c.ref_dtype,
            c.save_dtype,
        )
        prec.validate("cpu" if on_cpu else "cuda")
        acc_kw: dict[str, Any] = {}
        if c.report_to != "none":
            _require_tracker(c.report_to)
            acc_kw["log_with"] = c.report_to
            acc_kw["project_dir"] = str(Path(c.output or "ppo-output") / "tracking")
        # accelerate's own mixed precision autocasts only the prepared model's forward (pi_old
        # and the updates, not the rollout or the reference: the step-1 KL of issue 17) and is a
        # process-wide singleton; so accelerate runs in full precision and every forward pass
        # here autocasts through self.precision, with our own loss scaler for fp16.
        self.accelerator = make_accelerator(cpu=on_cpu, **acc_kw)
        acc = self.accelerator
        self._scaler = (
            torch.amp.GradScaler(acc.device.type) if prec.mixed_precision == "fp16" else None
        )
        self.device = acc.device
        torch.manual_seed(c.seed)  # value head init: identical on every rank

        prec.to_master(policy)  # bf16-stored checkpoints train in fp32
        self._peft = False
        if value_model is None and c.value_model == "policy":
            value_model = value_from_policy(policy)  # before LoRA: a plain, trainable body
        elif value_model is None and c.value_model != "head":
            value_model = value_from_reward_model(c.value_model, policy)
        if value_model is not None:
            prec.to_master(value_model)
        if c.lora_r > 0:
            policy = self._add_lora(policy)
        if ref_policy is None and not self._peft:
            ref_policy = frozen_copy(policy)
        if ref_policy is not None:
            ref_policy = prec.to_inference(ref_policy, like=policy).to(self.device)
        self.ref_policy = ref_policy

        policy.eval()
        joint = PolicyAndValue(policy, value_model).to(self.device)
        joint.eval()  # no dropout: rollout and update log-probabilities must agree
        self._grad_ckpt = False
        if c.gradient_checkpointing:
            self._grad_ckpt = enable_gradient_checkpointing(policy)
            if value_model is not None:
                enable_gradient_checkpointing(value_model.backbone)
            if not self._grad_ckpt:
                log.warning("%s does not support gradient checkpointing", type(policy).__name__)
        params = [p for p in joint.parameters() if p.requires_grad]
        # On CPU the fused kernel: one pass over each tensor instead of AdamW's dozen elementwise
        # ops per parameter (a third of the time: `bench_ppo.py --part parts`)
        fused = True if self.device.type == "cpu" else None
        optimizer = torch.optim.AdamW(
            params, lr=c.lr, weight_decay=c.weight_decay, eps=1e-5, fused=fused
        )
        from judge_rl.train.sharding import configure_deepspeed

        configure_deepspeed(
            acc,
            c.micro_batch_size or c.mini_batch_size,
            mini_batch_size=c.mini_batch_size,
            max_grad_norm=c.max_grad_norm or 0.0,
        )
        self.model, self.optimizer = acc.prepare(joint, optimizer)
        self._params = params

        # 2. Reward, prompts, rollout engine -------------------------------------------------
        if reward_source is None or isinstance(reward_source, str):
            from judge_rl.train.reward_sources import make_reward_source

            spec = reward_source or c.reward
            if not spec:
                raise ConfigError(
                    "no reward source given (e.g. --reward verifier:gsm8k)", setting="reward"
                )
            reward_source = make_reward_source(spec)
        self.reward_source = reward_source
        if prompts is None:
            if not c.prompts:
                raise ConfigError("no prompts given", setting="prompts")
            from judge_rl.data import read_prompts

            prompts = read_prompts(c.prompts)
        self.items = _as_items(prompts)
        if not self.items:
            raise ConfigError("the prompt set is empty", setting="prompts")
        self._encoded = self._encode_prompts(self.items, self.unwrapped.policy)
        self.engine = self._make_engine()

        # 3. State ---------------------------------------------------------------------------
        self.kl_ctl: FixedKLController = (
            AdaptiveKLController(c.kl_coef, c.target_kl, c.kl_horizon)
            if c.target_kl is not None
            else FixedKLController(c.kl_coef)
        )
        self._step = 0
        self._epoch = 0
        self._cursor = 0
        self._micro = c.micro_batch_size or c.mini_batch_size
        self.reward_stats = RunningMoments()
        self._callback_states: list[Any] | None = None
        if c.report_to != "none" and self.is_main:
            acc.init_trackers(c.run or "judge-rl-ppo", config=_flat_config(c))
        self.section: PPOSection = PPOSection(
            policy=policy_name,
            reward=getattr(reward_source, "name", str(c.reward)),
        )
        if run_log is not None:
            run_log.ppo = self.section
        torch.manual_seed(c.seed + acc.process_index)  # sampling streams differ across ranks
        if c.resume:
            self._load_checkpoint(self._resolve_resume(c.resume))

    # -- properties -----------------------------------------------------------------------------

    @property
    def unwrapped(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    @property
    def policy(self) -> Any:
        """The policy being trained (a ``PreTrainedModel``)."""
        return self.unwrapped.policy

    @property
    def step(self) -> int:
        """Steps completed (counted over resumes)."""
        return self._step

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    # -- set-up helpers -------------------------------------------------------------------------

    def _add_lora(self, policy: Any) -> Any:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ConfigError("LoRA needs peft (pip install peft)", setting="lora_r") from None
        self._peft = True
        c = self.config
        targets: str | list[str] = c.lora_target_modules
        if c.lora_target_modules != "all-linear":
            targets = [t.strip() for t in c.lora_target_modules.split(",") if t.strip()]
        cfg = LoraConfig(
            r=c.lora_r,
            lora_alpha=c.lora_alpha or 2 * c.lora_r,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
        try:
            return get_peft_model(policy, cfg)
        except ValueError as e:
            raise ConfigError(f"LoRA: {e}", setting="lora_target_modules") from None

    def _encode_prompts(self, items: Sequence[PromptItem], model: Any) -> list[list[int]]:
        from judge_rl.train.rollout import encode_prompt

        c = self.config
        ctx = getattr(model.config, "max_position_embeddings", None) or 10**9
        limit = c.max_prompt_length or (ctx - c.max_new_tokens)
        if limit < 1:
            raise ConfigError(
                f"{c.max_new_tokens} leaves no room for a prompt in "
                f"the model's context of {ctx} tokens",
                setting="max_new_tokens",
            )
        out = []
        for it in items:
            ids = encode_prompt(self.tokenizer, it.prompt, chat=c.chat_template)
            if len(ids) > limit:
                raise ConfigError(
                    f"prompt {it.prompt_id!r} is {len(ids)} tokens; the limit is {limit} "
                    f"(context {ctx} - max_new_tokens {c.max_new_tokens}"
                    + (
                        f", max_prompt_length {c.max_prompt_length})"
                        if c.max_prompt_length
                        else ")"
                    ),
                    setting="prompts",
                )
            if not ids:
                raise ConfigError(f"prompt {it.prompt_id!r} is empty", setting="prompts")
            out.append(ids)
        return out

    def _make_engine(self) -> Any:
        from judge_rl.train.rollout import HFRolloutEngine, VLLMRolloutEngine

        c = self.config
        kw: dict[str, Any] = {
            "max_new_tokens": c.max_new_tokens,
            "temperature": c.temperature,
            "top_k": c.top_k,
            "top_p": c.top_p,
        }
        if c.rollout == "vllm":
            acc = self.accelerator
            out = Path(c.output or "ppo-output") / "_vllm_init"
            with self._full_params():
                if self.is_main:
                    self._write_policy(out, merged=True)
            acc.wait_for_everyone()
            extra: dict[str, Any] = {}
            if acc.num_processes > 1:
                # one engine per rank on its own GPU, inside the torchrun world (as TRL does)
                extra["distributed_executor_backend"] = "external_launcher"
            return VLLMRolloutEngine(
                str(out),
                self.tokenizer,
                seed=c.seed + acc.process_index,
                gpu_memory_utilization=c.vllm_gpu_memory_utilization,
                enable_sleep_mode=c.vllm_sleep,
                dtype=_vllm_dtype(self.precision),
                **extra,
                **kw,
            )
        return HFRolloutEngine(self.policy, self.tokenizer, **kw)

    def _sync_engine(self) -> None:
        """Push the policy's weights into the rollout engine, inside the gather (ZeRO-3/FSDP:
        every rank takes part)."""
        if not getattr(self.engine, "needs_sync", False):
            self.engine.sync_weights(self.policy)  # HF: generate reads the live module
            return
        if getattr(self.engine, "sleeping", False):
            self._engine_stale = True  # pushed at the next wake-up (weights back on the GPU)
            return
        with self._full_params():
            self.engine.sync_weights(self.policy)
        self._engine_stale = False

    def _wake_engine(self) -> None:
        fn = getattr(self.engine, "wake_up", None)
        if fn is None:
            return
        fn()
        if getattr(self, "_engine_stale", False):
            self._sync_engine()

    def _sleep_engine(self) -> None:
        fn = getattr(self.engine, "sleep", None)
        if self.config.vllm_sleep and fn is not None:
            fn()

    @property
    def _sharded(self) -> bool:
        """Parameters are sharded across ranks (DeepSpeed ZeRO-3 or FSDP)."""
        from accelerate.utils import DistributedType

        acc = self.accelerator
        ds = getattr(acc.state, "deepspeed_plugin", None)
        if ds is not None and getattr(ds, "zero_stage", 0) == 3:
            return True
        return acc.distributed_type == DistributedType.FSDP

    @contextlib.contextmanager
    def _full_params(self, writeback: bool = False) -> Iterator[None]:
        """Gather sharded weights (DeepSpeed ZeRO-3, FSDP1, FSDP2) so that every rank holds the
        full model inside the block (:func:`gather_full_params`); re-entrant: a no-op inside an
        outer gather.

        A collective: every rank must enter it (never from a rank-0-only branch). Callbacks run
        inside one such block on every rank (see :meth:`train`), so their sampling and saving on
        rank 0 gather nothing. (The sharded paths run only on GPUs: ``gpu``-marked tests and
        ``make gpu-check``.)"""
        if getattr(self, "_gathered", False) or not self._sharded:
            yield
            return
        self._gathered = True
        try:
            with gather_full_params(self.accelerator, self.model, writeback=writeback):
                yield
        finally:
            self._gathered = False

    # -- prompt order ---------------------------------------------------------------------------

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.items), generator=g).tolist()

    def _next_indices(self) -> list[int]:
        """This rank's slice of the next global batch; the same permutation on every rank."""
        B, world, rank = (
            self.config.batch_size,
            self.accelerator.num_processes,
            self.accelerator.process_index,
        )
        need = B * world
        out: list[int] = []
        while len(out) < need:
            perm = self._permutation(self._epoch)
            take = perm[self._cursor : self._cursor + need - len(out)]
            out.extend(take)
            self._cursor += len(take)
            if self._cursor >= len(perm):
                self._epoch, self._cursor = self._epoch + 1, 0
        return out[rank * B : (rank + 1) * B]

    # -- forward passes -------------------------------------------------------------------------

    def _inputs(
        self,
        query_ids: torch.Tensor,
        query_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        input_ids = torch.cat([query_ids, response_ids], dim=1).to(self.device)  # (B, P+R)
        attention_mask = torch.cat([query_mask, response_mask], dim=1).to(self.device)  # (B, P+R)
        # Left padding: positions count real tokens only, as generate() did.
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)  # (B, P+R)
        return input_ids, attention_mask, position_ids

    def _logprobs(
        self, model: Any, batch: _Batch, rows: slice | torch.Tensor, with_entropy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log π(response tokens) under a plain causal LM (the reference). (b, R)."""
        R = batch.response_ids.shape[1]
        ids, am, pos = self._inputs(
            batch.query_ids[rows],
            batch.query_mask[rows],
            batch.response_ids[rows],
            batch.response_mask[rows],
        )
        kw: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": am,
            "position_ids": pos,
            "use_cache": False,
        }
        from judge_rl.train._ppo_models import accepts_logits_to_keep

        if accepts_logits_to_keep(model):
            kw["logits_to_keep"] = R + 1
        with self.precision.autocast(self.device):
            logits = model(**kw).logits[:, -(R + 1) : -1] / self.config.temperature  # (b, R, V)
        lp = logprobs_from_logits(logits, batch.response_ids[rows].to(self.device))  # (b, R)
        ent = entropy_from_logits(logits) if with_entropy else None
        return lp, ent

    def _read_tail(self, keep: int) -> contextlib.AbstractContextManager[None]:
        """The last decoder layer's MLP runs only on the last ``keep`` positions (the ones the LM
        head and the value head read: :mod:`judge_rl.train._last_mlp`) in the policy, the
        reference and a separate value model; exact there. Cover the backward too."""
        from judge_rl.train._last_mlp import read_rows_block

        u = self.unwrapped
        models = (u.policy, self.ref_policy, u.value_model)
        return read_rows_block(keep, *models, covers_backward=True)

    def _joint(self, batch: _Batch, rows: slice | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Policy logits -> (log-probs, entropy-ready logits) and values of the response. (b, R)."""
        R = batch.response_ids.shape[1]
        ids, am, pos = self._inputs(
            batch.query_ids[rows],
            batch.query_mask[rows],
            batch.response_ids[rows],
            batch.response_mask[rows],
        )
        with self.precision.autocast(self.device):
            logits, values = self.model(ids, am, pos, keep=R + 1)  # (b, R+1, V), (b, P+R)
        logits = logits[:, :-1] / self.config.temperature  # (b, R, V)
        lp = logprobs_from_logits(logits, batch.response_ids[rows].to(self.device))  # (b, R)
        vpred = values[:, -(R + 1) : -1]  # (b, R): V of the state before each response token
        return lp, vpred, logits

    def _ref_logprobs(self, batch: _Batch, rows: slice) -> torch.Tensor:
        if self.ref_policy is not None:
            return self._logprobs(self.ref_policy, batch, rows)[0]
        with self.policy.disable_adapter():  # peft: the reference is the base model
            return self._logprobs(self.policy, batch, rows)[0]

    # -- one PPO step ---------------------------------------------------------------------------

    def _rollout(
        self,
        items: list[PromptItem],
        encoded: list[list[int]],
        *,
        greedy: bool = False,
        max_new_tokens: int | None = None,
        model: Any = None,
    ) -> _Batch:
        from judge_rl.train.rollout import HFRolloutEngine, left_pad

        query_ids, query_mask = left_pad(encoded, int(self.tokenizer.pad_token_id))  # (B, P)
        engine = self.engine
        if model is None:
            self._wake_engine()  # vLLM with sleep mode: weights back, pending sync pushed
        if model is not None and not isinstance(engine, HFRolloutEngine):
            # another model than the policy (the reference): sample it with transformers
            c = self.config
            engine = HFRolloutEngine(
                model,
                self.tokenizer,
                max_new_tokens=c.max_new_tokens,
                temperature=c.temperature,
                top_k=c.top_k,
                top_p=c.top_p,
            )
        with self._full_params(), self.precision.autocast(self.device):
            r = engine.generate(
                query_ids, query_mask, greedy=greedy, max_new_tokens=max_new_tokens, model=model
            )
        width = max(1, int(r.response_mask.sum(1).max()))  # trim columns nobody uses
        return _Batch(
            items,
            r.query_ids,
            r.query_mask,
            r.response_ids[:, :width],
            r.response_mask[:, :width],
            r.ended_with_eos,
            r.texts,
            engine_logprobs=None if r.logprobs is None else r.logprobs[:, :width],
        )

    def _score(self, batch: _Batch) -> torch.Tensor:
        queries = [
            RewardQuery(
                prompt=it.prompt,
                response=t,
                prompt_id=it.prompt_id,
                reference=it.reference,
                metadata=dict(it.metadata),
            )
            for it, t in zip(batch.items, batch.texts, strict=True)
        ]
        scores = [float(s) for s in self.reward_source(queries)]
        if len(scores) != len(queries):
            raise RuntimeError(f"reward source returned {len(scores)} scores for {len(queries)}")
        return torch.tensor(scores, dtype=torch.float32)  # (B,)

    def train_step(self) -> dict[str, float]:
        """Run one PPO step (rollout, score, updates); returns its statistics."""
        c, acc = self.config, self.accelerator
        t0 = time.perf_counter()
        lr_now = c.lr * lr_factor(self._step, c.steps, c.warmup_steps, c.lr_scheduler)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_now

        # 1. Rollout -----------------------------------------------------------------------------
        idx = self._next_indices()
        items = [self.items[i] for i in idx]
        batch = self._rollout(items, [self._encoded[i] for i in idx])
        self._sleep_engine()
        t_gen = time.perf_counter()

        # 2. Score; a failed score (NaN) drops the sample from the update ------------------------
        b_raw_scores = self._score(batch)  # (B,)
        failed = torch.isnan(b_raw_scores)  # (B,)
        b_scores = torch.nan_to_num(b_raw_scores, nan=0.0)  # (B,)
        if c.reward_norm:
            b_scores = self.reward_stats.update_and_normalise(b_scores, ~failed, acc)
        if c.reward_clip is not None:
            b_scores = b_scores.clamp(-c.reward_clip, c.reward_clip)
        if c.missing_eos_penalty is not None:
            b_scores = b_scores - c.missing_eos_penalty * (~batch.ended).float()
        batch.scores = b_raw_scores
        b_mask = batch.response_mask.float() * (~failed).float()[:, None]  # (B, R)
        b_mask = b_mask.to(self.device)
        t_score = time.perf_counter()

        # 3. Old log-probabilities, reference log-probabilities, values --------------------------
        # pi_old and the values come from one forward of the policy (with the default value
        # head they share the body: the pass TRL spends on its separate value model). When one
        # forward covers the whole batch (mini-batch = micro-batch = batch), that forward is the
        # first update's own, at pi_old's weights: its detached log-probs and values are pi_old's
        # exactly, and the separate no-grad pass is skipped ("fused").
        B, R = batch.response_ids.shape
        b_logprobs = torch.zeros(B, R, device=self.device)  # (B, R)
        b_ref_logprobs = torch.zeros(B, R, device=self.device)  # (B, R)
        b_values = torch.zeros(B, R, device=self.device)  # (B, R)
        b_entropy = torch.zeros(B, R, device=self.device)  # (B, R)
        fb = self._micro
        fused = self._micro >= B and c.mini_batch_size >= B
        with torch.no_grad(), self._read_tail(R + 1):
            for s in range(0, B, fb):
                rows = slice(s, s + fb)
                if not fused:
                    lp, v, logits = self._joint(batch, rows)
                    b_logprobs[rows], b_values[rows] = lp, v
                    b_entropy[rows] = entropy_from_logits(logits)
                b_ref_logprobs[rows] = self._ref_logprobs(batch, rows)
        b_scores_d = b_scores.to(self.device)

        def advantages() -> tuple[torch.Tensor, ...]:
            """Steps 4-5 from b_logprobs, b_values (filled by now). Returns
            ``(advantages, returns, kl)``, each (B, R)."""
            with torch.no_grad():
                # Sampling mismatch (vLLM): the engine's log-probs vs the trainer's, per token.
                b_tis = None
                if batch.engine_logprobs is not None:
                    b_eng = batch.engine_logprobs.to(self.device)  # (B, R)
                    gap = (b_logprobs - b_eng).abs() * b_mask  # (B, R)
                    mismatch["logprob_gap_mean"] = float(masked_mean(gap, b_mask))
                    mismatch["logprob_gap_max"] = float(gap.max())
                    if c.tis_cap is not None:
                        # Truncated importance sampling (Yao et al. 2025, "Your efficient RL
                        # framework secretly brings you off-policy RL training"): the update is
                        # on-policy for the trainer's pi_old, the samples came from vLLM's.
                        b_tis = torch.exp(b_logprobs - b_eng).clamp(max=c.tis_cap) * b_mask
                # 4. Per-token rewards: KL penalty everywhere, score at the last token
                b_rewards, b_kl = compute_rewards(
                    b_scores_d,
                    b_logprobs,
                    b_ref_logprobs,
                    b_mask,
                    self.kl_ctl.value,
                    c.kl_estimator,
                )  # (B, R)
                # 5. Advantages (GAE) and returns
                b_adv, b_ret = compute_gae(b_rewards, b_values, b_mask, c.gamma, c.lam)
                if c.whiten_advantages:
                    b_adv = whiten(b_adv, b_mask)  # (B, R)
                if b_tis is not None:
                    b_adv = b_adv * b_tis
            return b_adv, b_ret, b_kl

        mismatch: dict[str, float] = {}
        if not fused:
            b_advantages, b_returns, b_kl = advantages()

        # 6. PPO epochs over shuffled minibatches; gradients accumulate over micro-batches ------
        stats: dict[str, list[torch.Tensor]] = {
            k: []
            for k in (
                "policy_loss",
                "value_loss",
                "clip_frac",
                "value_clip_frac",
                "approx_kl",
                "loss",
            )
        }
        if self._grad_ckpt:
            from judge_rl.train._ppo_models import checkpointing_train_mode

            checkpointing_train_mode(self.model)  # generate() put every layer in eval mode
        mb_size, micro = c.mini_batch_size, self._micro
        for _epoch in range(c.ppo_epochs):
            b_inds = torch.randperm(B)
            for s in range(0, B, mb_size):
                mb_all = b_inds[s : s + mb_size]
                self.optimizer.zero_grad(set_to_none=True)
                n_micro = math.ceil(len(mb_all) / micro)
                for k in range(n_micro):
                    mb_inds = mb_all[k * micro : (k + 1) * micro]
                    mb_mask = b_mask[mb_inds]  # (b, R)
                    last = k == n_micro - 1
                    sync = contextlib.nullcontext() if last else acc.no_sync(self.model)
                    with sync, self._read_tail(R + 1):  # forward and backward
                        new_logprobs, vpred, logits = self._joint(batch, mb_inds)  # (b, R)
                        if fused and _epoch == 0:  # this forward is pi_old's (see step 3)
                            b_logprobs[mb_inds] = new_logprobs.detach()
                            b_values[mb_inds] = vpred.detach()
                            b_entropy[mb_inds] = entropy_from_logits(logits.detach())
                            b_advantages, b_returns, b_kl = advantages()
                        pg_loss, clip_frac, approx_kl = policy_loss(
                            new_logprobs,
                            b_logprobs[mb_inds],
                            b_advantages[mb_inds],
                            mb_mask,
                            c.cliprange,
                        )
                        vf_loss, vf_clip_frac = value_loss(
                            vpred, b_values[mb_inds], b_returns[mb_inds], mb_mask, c.cliprange_value
                        )
                        loss = pg_loss + c.vf_coef * vf_loss
                        if c.ent_coef:
                            loss = loss - c.ent_coef * masked_mean(
                                entropy_from_logits(logits), mb_mask
                            )
                        # each micro-batch weighs by its share of the mini-batch's response
                        # tokens: the accumulated gradient equals the whole mini-batch's
                        share = mb_mask.sum() / b_mask[mb_all].sum().clamp(min=1)
                        scaled = loss * share
                        if self._scaler is not None:
                            scaled = self._scaler.scale(scaled)
                        acc.backward(scaled)
                    for name, v in (
                        ("policy_loss", pg_loss),
                        ("value_loss", vf_loss),
                        ("clip_frac", clip_frac),
                        ("value_clip_frac", vf_clip_frac),
                        ("approx_kl", approx_kl),
                        ("loss", loss),
                    ):
                        stats[name].append(v.detach())
                if self._scaler is not None:
                    self._scaler.unscale_(self.optimizer.optimizer)
                if c.max_grad_norm:
                    acc.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                if self._scaler is not None:
                    self._scaler.step(self.optimizer.optimizer)
                    self._scaler.update()
                else:
                    self.optimizer.step()
        self._sync_engine()
        t_train = time.perf_counter()

        # 7. Statistics (gathered over ranks), KL controller -----------------------------------
        b_kl_k1 = ((b_logprobs - b_ref_logprobs) * b_mask).sum(1)  # (B,) k1 sum per sample
        b_kl_pen = b_kl.sum(1)  # (B,) the estimator used in the reward
        b_len = batch.response_mask.sum(1).float().to(self.device)  # (B,)
        per_sample = torch.stack(
            [
                b_raw_scores.to(self.device),
                b_kl_k1,
                b_kl_pen,
                b_len,
                batch.ended.float().to(self.device),
                failed.float().to(self.device),
                masked_mean(b_entropy, b_mask, dim=1),
                (-self.kl_ctl.value * b_kl).sum(1),
            ],
            dim=1,
        )  # (B, 8)
        g = acc.gather(per_sample) if acc.num_processes > 1 else per_sample  # (world*B, 8)
        ok = g[:, 5] == 0
        raw = g[ok, 0]
        losses = {k: torch.stack(v).mean() for k, v in stats.items()}
        if acc.num_processes > 1:
            losses = {k: acc.reduce(v, "mean") for k, v in losses.items()}
        kl_mean = float(g[ok, 1].mean()) if ok.any() else float("nan")
        n_global = int(g.shape[0])
        out = {
            "step": float(self._step + 1),
            "reward_mean": float(raw.mean()) if ok.any() else float("nan"),
            "reward_std": float(raw.std(unbiased=False)) if ok.any() else float("nan"),
            "reward_failures": float((~ok).sum()),
            "kl": kl_mean,
            "kl_penalty": float(g[ok, 2].mean()) if ok.any() else float("nan"),
            "kl_coef": float(self.kl_ctl.value),
            "non_score_reward": float(g[ok, 7].mean()) if ok.any() else float("nan"),
            "entropy": float(g[ok, 6].mean()) if ok.any() else float("nan"),
            "response_length": float(g[:, 3].mean()),
            "eos_frac": float(g[:, 4].mean()),
            "policy_loss": float(losses["policy_loss"]),
            "value_loss": float(losses["value_loss"]),
            "clip_frac": float(losses["clip_frac"]),
            "value_clip_frac": float(losses["value_clip_frac"]),
            "approx_kl": float(losses["approx_kl"]),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "time_generate": t_gen - t0,
            "time_score": t_score - t_gen,
            "time_train": t_train - t_score,
            "samples_per_s": n_global / max(t_train - t0, 1e-9),
            **mismatch,
        }
        self.kl_ctl.update(kl_mean, n_global)
        self._step += 1
        self._last_batch = batch
        return out

    # -- the loop -------------------------------------------------------------------------------

    def train(self) -> PPOSection:
        """Run until ``config.steps`` steps are done (counted over resumes) or a callback stops
        training; returns the run log's ``ppo`` section.

        Callbacks run on the main process, inside one parameter gather that every rank enters
        (so a monitor's sampling under ZeRO-3/FSDP never waits on a collective the other ranks
        skip). Each step is appended to ``events.jsonl`` beside the run log; the whole run log
        is written at checkpoints and at the end (then the events file is removed)."""
        from accelerate.utils import broadcast

        c = self.config
        with self._full_params():
            if self.is_main:
                self._restore_callbacks()
                for cb in self.callbacks:
                    cb.on_train_start(self)
        while self._step < c.steps:
            stats = self.train_step()
            batch = self._last_batch
            self.section.steps.append(stats)
            new_samples: list[dict[str, Any]] = []
            if self.is_main:
                for it, text, sc in list(
                    zip(batch.items, batch.texts, batch.scores.tolist(), strict=True)
                )[: c.log_samples]:
                    new_samples.append(
                        {
                            "step": self._step,
                            "prompt": prompt_text(it.prompt),
                            "response": text,
                            "reward": sc,
                        }
                    )
                self.section.samples.extend(new_samples)
            self._append_event(stats, new_samples)  # before callbacks: a step's work is logged
            stop_flag = torch.zeros(1, device=self.device)
            with self._full_params():
                if self.is_main:
                    info = StepInfo(
                        step=self._step,
                        prompts=[it.prompt for it in batch.items],
                        responses=list(batch.texts),
                        rewards=batch.scores.tolist(),
                        stats=dict(stats),
                        prompt_ids=[it.prompt_id for it in batch.items],
                        references=[it.reference for it in batch.items],
                    )
                    for cb in self.callbacks:
                        if cb.on_step(info, self):
                            stop_flag[0] = 1
                            if self.section.stopped_early is None:
                                self.section.stopped_early = (
                                    f"step {self._step}: stopped by {type(cb).__name__}"
                                )
            if self.accelerator.num_processes > 1:
                stop_flag = broadcast(stop_flag, from_process=0)
            stop = bool(stop_flag.item())
            if c.report_to != "none":
                self.accelerator.log(
                    {k: v for k, v in stats.items() if isinstance(v, int | float)}, step=self._step
                )
            if c.save_every and self._step % c.save_every == 0 and self._step < c.steps:
                self._save_full()
                self._save_log()
            else:
                self._prune_checkpoints()  # monitor checkpoints of this step
            if stop:
                break
        if c.output:
            self._save_full()
        with self._full_params():
            if self.is_main:
                for cb in self.callbacks:
                    cb.on_train_end(self)
        self._prune_checkpoints()
        self._save_log(final=True)
        if c.report_to != "none":
            self.accelerator.end_training()
        return self.section

    # -- run log: per-step events, compacted at the end -----------------------------------------

    @property
    def events_path(self) -> Path | None:
        """``events.jsonl`` beside the run log (one line per step), or None without a run dir."""
        return self.run_dir / EVENTS_FILE if self.run_dir is not None else None

    def _append_event(self, stats: dict[str, float], samples: list[dict[str, Any]]) -> None:
        path = self.events_path
        if not self.is_main or path is None or self.run_log is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {"event": "ppo_step", "step": self._step, "stats": stats, "samples": samples},
            allow_nan=True,
        )
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _save_log(self, final: bool = False) -> None:
        if not self.is_main or self.run_log is None:
            return
        from judge_rl.runlog import RunLog

        fields = set(RunLog.model_fields)
        for cb in self.callbacks:
            fn = getattr(cb, "log_section", None)
            data = fn() if fn else None
            if not data:
                continue
            if set(data) <= fields - {"version", "run", "command", "created"}:
                for k, v in data.items():  # {"overopt": {...}}: whole sections
                    sec_type = RunLog.model_fields[k].annotation
                    setattr(self.run_log, k, v if not isinstance(v, dict) else _coerce(sec_type, v))
            else:
                self.run_log.extra[type(cb).__name__] = data
        self.run_log.ppo = self.section
        for part in ("generate", "score", "train"):
            self.run_log.timings[f"ppo_{part}"] = sum(
                s.get(f"time_{part}", 0.0) for s in self.section.steps
            )
        if self.run_dir is not None:
            self.run_log.save(self.run_dir)
            if final and self.events_path is not None:
                self.events_path.unlink(missing_ok=True)  # compacted into log.json

    # -- checkpoints ----------------------------------------------------------------------------

    def _policy_state(self) -> dict[str, torch.Tensor]:
        """The policy's full state dict (call inside :meth:`_full_params` when sharded), in
        ``save_dtype``, with FSDP's wrapper names removed."""
        from judge_rl.models import full_state_dict

        sd = {
            k.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", ""): (
                v.detach()
            )
            for k, v in full_state_dict(self.policy).items()
        }
        return self.precision.state_dict_in(sd)

    def _write_policy(self, path: Path, merged: bool = False) -> None:
        """A model folder: full weights, or (LoRA) the adapter plus a pointer to the base model
        that :func:`judge_rl.models.load_policy_checkpoint` and ``AutoPeftModelForCausalLM``
        follow; ``merged=True`` writes LoRA merged into full weights (for vLLM)."""
        if self._peft and merged:
            from judge_rl.models import merged_lora_state

            base = self.policy.get_base_model()
            sd = self.precision.state_dict_in(merged_lora_state(self.policy))
            base.save_pretrained(path, state_dict=sd)
        elif self._peft:
            self._ensure_lora_base()
            self.policy.save_pretrained(path, state_dict=self._policy_state())
            from judge_rl.models import write_adapter_base

            write_adapter_base(path, self._lora_base)
        else:
            self.policy.save_pretrained(path, state_dict=self._policy_state())
        self.tokenizer.save_pretrained(path)

    def _ensure_lora_base(self) -> None:
        """A LoRA checkpoint needs its base model as a folder: the one the policy was loaded
        from, or a copy saved once under ``<output>/base-model``."""
        if getattr(self, "_lora_base", None):
            return
        name = str(getattr(self.policy.peft_config["default"], "base_model_name_or_path", "") or "")
        if name and (Path(name) / "config.json").exists():
            self._lora_base = str(Path(name).resolve())
            return
        out = Path(self.config.output or "ppo-output") / "base-model"
        if not (out / "config.json").exists():
            from judge_rl.models import merged_lora_state

            sd = merged_lora_state(self.policy, merge=False)  # the base weights only
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.policy.get_base_model().save_pretrained(tmp, state_dict=sd)
            self.tokenizer.save_pretrained(tmp)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
        self._lora_base = str(out.resolve())

    def save_checkpoint(self, tag: str | None = None) -> str:
        """Save the policy now as a model folder (tokenizer too); returns the folder.

        Part of the :class:`~judge_rl.train.callbacks.PolicyHandle` protocol: no trainer state,
        so it is not a resume point (see :meth:`_save_full`). Called from callbacks, on the
        main process, inside the gather that :meth:`train` holds around them.
        """
        name = f"checkpoint-{tag}" if tag else f"checkpoint-{self._step:06d}"
        path = Path(self.config.output or "ppo-output") / name
        if self.is_main:
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self._write_policy(tmp)
            (tmp / CKPT_INFO).write_text(json.dumps({"step": self._step, "tag": tag or ""}))
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
            self.section.checkpoints.append(
                {"step": self._step, "path": str(path), "tag": tag or ""}
            )
        return str(path)

    def _save_full(self) -> str:
        """A resume point: policy folder + value weights + trainer state (KL controller, RNG,
        reward statistics, callbacks' state such as the over-optimisation monitor's, the log
        section) + the optimiser in its own file (removed from older resume points). Every rank
        calls it."""
        path = Path(self.config.output or "ppo-output") / f"checkpoint-{self._step:06d}"
        if path.exists() and (path / STATE_FILE).exists():
            return str(path)
        tmp = path.with_name(path.name + ".tmp")
        with self._full_params():
            if self.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
                self._write_policy(tmp)
                save_trainer_state(self.unwrapped.value_state(), tmp / VALUE_FILE)
                self.section.checkpoints.append({"step": self._step, "path": str(path)})
                state = {
                    "step": self._step,
                    "epoch": self._epoch,
                    "cursor": self._cursor,
                    "kl_ctl": self.kl_ctl.state_dict(),
                    "reward_stats": self.reward_stats.state_dict(),
                    "rng": torch.get_rng_state(),
                    "section": self.section.model_dump(mode="json"),
                    "config": self.config.to_dict(),
                    "precision": self.precision.describe(),
                    "callbacks": self._callback_state(),
                }
                save_trainer_state(state, tmp / STATE_FILE)
                (tmp / CKPT_INFO).write_text(json.dumps({"step": self._step, "tag": ""}))
                (tmp / "ppo_config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        from judge_rl.train.sharding import OPTIM_PART_FILE, zero_optimizer, zero_state_part

        zero = zero_optimizer(self.accelerator, self.optimizer)
        if zero is not None:
            # DeepSpeed ZeRO: each rank holds (and saves) only its part of the optimiser state
            self.accelerator.wait_for_everyone()  # rank 0 has made tmp
            rank = self.accelerator.process_index
            save_trainer_state(zero_state_part(zero), tmp / OPTIM_PART_FILE.format(rank=rank))
            self.accelerator.wait_for_everyone()  # every part is written
        else:
            opt_state = self.optimizer.state_dict()  # FSDP: accelerate gathers it, all ranks
        if self.is_main:
            if zero is None:
                save_trainer_state(opt_state, tmp / OPTIM_FILE)
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
            if self.config.keep_checkpoints:
                self._drop_old_optimizers(keep=path)
            self._prune_checkpoints()
        self.accelerator.wait_for_everyone()
        return str(path)

    def _callback_state(self) -> list[Any]:
        out = []
        for cb in self.callbacks:
            fn = getattr(cb, "state_dict", None)
            out.append(fn() if callable(fn) else None)
        return out

    def _restore_callbacks(self) -> None:
        """Give each callback the state saved with the resumed checkpoint (before its
        ``on_train_start``, so that a restored monitor does not start over)."""
        states, self._callback_states = self._callback_states, None
        if not states:
            return
        if len(states) != len(self.callbacks):
            log.warning(
                "the checkpoint holds state for %d callbacks, the run has %d: not restored",
                len(states),
                len(self.callbacks),
            )
            return
        for cb, st in zip(self.callbacks, states, strict=True):
            fn = getattr(cb, "load_state_dict", None)
            if st is not None and callable(fn):
                fn(st)

    def _checkpoint_dirs(self) -> list[Path]:
        root = Path(self.config.output or "ppo-output")
        if not root.exists():
            return []
        return [p for p in root.glob("checkpoint-*") if p.is_dir() and not p.name.endswith(".tmp")]

    def _drop_old_optimizers(self, keep: Path) -> None:
        """Optimiser state only in the latest resume point (an older one resumes with a fresh
        optimiser and a warning)."""
        from judge_rl.train.sharding import OPTIM_PART_FILE

        for p in self._checkpoint_dirs():
            if p != keep:
                for f in [p / OPTIM_FILE, *p.glob(OPTIM_PART_FILE.format(rank="*"))]:
                    f.unlink(missing_ok=True)

    def _protected_checkpoints(self) -> set[Path]:
        keep: set[Path] = set()
        for cb in self.callbacks:  # the monitor's best-by-gold checkpoint
            sec = getattr(cb, "section", None)
            best = getattr(sec, "best_checkpoint", None) or {}
            for key in ("path", "checkpoint"):
                if isinstance(best, dict) and best.get(key):
                    keep.add(Path(str(best[key])).resolve())
        resume = sorted(p for p in self._checkpoint_dirs() if (p / STATE_FILE).exists())
        if resume:
            keep.add(resume[-1].resolve())  # the latest resume point
        return keep

    def _prune_checkpoints(self) -> list[Path]:
        """Retention (``keep_checkpoints`` K > 0): keep the newest K checkpoint folders by step,
        plus the best-by-gold and the latest resume point; returns what was removed."""
        k = self.config.keep_checkpoints
        if not k or not self.is_main:
            return []
        dirs = self._checkpoint_dirs()
        dirs.sort(key=lambda p: (_ckpt_step(p), p.stat().st_mtime))
        protected = self._protected_checkpoints()
        removed = []
        for p in dirs[: max(len(dirs) - k, 0)]:
            if p.resolve() in protected:
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        if removed:
            gone = {str(p) for p in removed}
            self.section.checkpoints = [
                ck for ck in self.section.checkpoints if str(ck.get("path")) not in gone
            ]
        return removed

    def _resolve_resume(self, resume: str) -> Path:
        if resume != "latest":
            p = Path(resume)
            if not (p / STATE_FILE).exists():
                raise ConfigError(f"{p}: not a PPO checkpoint (no {STATE_FILE})", setting="resume")
            return p
        root = Path(self.config.output or "ppo-output")
        # a kill during a save leaves checkpoint-*.tmp folders: never resume from them
        if self.is_main:
            for t in root.glob("*.tmp"):
                shutil.rmtree(t, ignore_errors=True)
        found = sorted(
            (p for p in self._checkpoint_dirs() if (p / STATE_FILE).exists()), key=_ckpt_step
        )
        if not found:
            raise ConfigError(f"{root}: no checkpoint to resume from", setting="resume")
        return found[-1]

    def _load_checkpoint(self, path: Path) -> None:
        from judge_rl.runlog import PPOSection

        log.info("resuming from %s", path)
        # weights_only: a checkpoint folder is untrusted input (judge_rl/train/_checkpoint.py)
        state = load_trainer_state(path / STATE_FILE)
        value_state = load_trainer_state(path / VALUE_FILE)
        # under ZeRO-3 / FSDP the weights go into the gathered parameters and back to the shards
        with self._full_params(writeback=True):
            if self._peft:
                from peft import set_peft_model_state_dict
                from safetensors.torch import load_file

                set_peft_model_state_dict(
                    self.policy, load_file(str(path / "adapter_model.safetensors"))
                )
            else:
                from judge_rl.models import load_state_dict_from_folder

                self.policy.load_state_dict(load_state_dict_from_folder(path))
            self.unwrapped.load_value_state(value_state)
        from judge_rl.train.sharding import OPTIM_PART_FILE, load_zero_state_parts, zero_optimizer

        zero = zero_optimizer(self.accelerator, self.optimizer)
        parts = sorted(path.glob(OPTIM_PART_FILE.format(rank="*")))
        opt = state.get("optimizer")
        if opt is None and (path / OPTIM_FILE).exists():
            opt = load_trainer_state(path / OPTIM_FILE)
        if zero is not None and parts:
            if len(parts) != self.accelerator.num_processes:
                raise ConfigError(
                    f"{path}: optimiser state of {len(parts)} processes; resume with as many "
                    f"(this run has {self.accelerator.num_processes})",
                    setting="resume",
                )
            n = len(parts)
            load_zero_state_parts(
                zero, [load_trainer_state(path / OPTIM_PART_FILE.format(rank=r)) for r in range(n)]
            )
        elif parts or (zero is not None and opt is not None):
            raise ConfigError(
                f"{path}: its optimiser state was saved "
                f"{'per rank under DeepSpeed ZeRO' if parts else 'whole, without ZeRO'}; resume "
                "under the same set-up",
                setting="resume",
            )
        elif opt is not None:
            self.optimizer.load_state_dict(opt)
        else:
            log.warning("%s holds no optimiser state (not the latest): fresh AdamW moments", path)
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        if "reward_stats" in state:
            self.reward_stats.load_state_dict(state["reward_stats"])
        self._callback_states = state.get("callbacks")
        self._step, self._epoch, self._cursor = state["step"], state["epoch"], state["cursor"]
        self.section = PPOSection.model_validate(state["section"])
        if self.run_log is not None:
            self.run_log.ppo = self.section
        rng = state["rng"]
        if self.accelerator.process_index == 0:
            torch.set_rng_state(rng)
        else:  # other ranks: a distinct stream derived from the step
            torch.manual_seed(self.config.seed + self.accelerator.process_index + 7919 * self._step)
        self._sync_engine()

    # -- PolicyHandle: sampling for callbacks ---------------------------------------------------

    def sample(
        self,
        prompts: Sequence[Prompt],
        *,
        greedy: bool = False,
        max_new_tokens: int | None = None,
        reference: bool = False,
        score: bool = True,
        stream: int = 0,
    ) -> Samples:
        """Sample the policy (or the reference) on ``prompts``; fills ``kl`` (k1 sum per sample)
        and ``ref_logprob`` (mean per token) unless ``score`` is false (texts only: no policy or
        reference forward pass). Leaves training's RNG streams untouched.

        Generation runs in chunks of at least :data:`SAMPLE_CHUNK` prompts: decoding a small
        model is bound by reading its weights, so one chunk of 48 costs about 0.7x what three
        chunks of 16 do (CPU, embedded model); the scoring passes keep ``mini_batch_size``."""
        items = _as_items(list(prompts))
        encoded = self._encode_prompts(items, self.policy)
        out = Samples(prompts=list(prompts), responses=[])
        mb = max(self.config.mini_batch_size, 1)
        chunk = max(self.config.batch_size, SAMPLE_CHUNK)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.config.seed + 104729 * (self._step + 1) + 7919 * stream)
            for s in range(0, len(items), chunk):
                sl = slice(s, s + chunk)
                model = None
                if reference and self.ref_policy is not None:
                    model = self.ref_policy
                if reference and self._peft:
                    with self.policy.disable_adapter():  # sampled with transformers, not vLLM
                        batch = self._rollout(
                            items[sl],
                            encoded[sl],
                            greedy=greedy,
                            max_new_tokens=max_new_tokens,
                            model=self.policy,
                        )
                else:
                    batch = self._rollout(
                        items[sl],
                        encoded[sl],
                        greedy=greedy,
                        max_new_tokens=max_new_tokens,
                        model=model,
                    )
                B = batch.response_ids.shape[0]
                mask = batch.response_mask.float().to(self.device)  # (B, R)
                for r in range(0, B if score else 0, mb):
                    rows = slice(r, r + mb)
                    lp = self._logprobs(self.policy, batch, rows)[0]  # (b, R)
                    ref = self._ref_logprobs(batch, rows)  # (b, R)
                    m = mask[rows]
                    out.kl.extend(((lp - ref) * m).sum(1).tolist())
                    out.ref_logprob.extend(masked_mean(ref, m, dim=1).tolist())
                out.responses.extend(batch.texts)
                out.response_tokens.extend(
                    ids[: int(k)].tolist()
                    for ids, k in zip(batch.response_ids, batch.response_mask.sum(1), strict=True)
                )
                out.ended_with_eos.extend(bool(e) for e in batch.ended)
        return out


def _coerce(annotation: Any, value: dict[str, Any]) -> Any:
    """Validate a callback's dict into the run log's section model."""
    import typing

    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and hasattr(arg, "model_validate"):
            return arg.model_validate(value)
    return value


__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "PPOConfig",
    "PPOTrainer",
    "compute_gae",
    "compute_rewards",
    "config_fields",
    "entropy_from_logits",
    "kl_penalty",
    "logprobs_from_logits",
    "masked_mean",
    "masked_var",
    "policy_loss",
    "value_loss",
    "whiten",
]
