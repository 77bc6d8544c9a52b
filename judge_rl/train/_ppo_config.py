"""PPO settings: a dataclass with a docstring per field (no heavy imports, so the CLI can build its
flags from it without importing torch)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from judge_rl.errors import ConfigError


@dataclass
class PPOConfig:
    """Every PPO setting; the CLI flags and ``--config`` YAML keys have the same names."""

    policy: str = "embedded"
    """Policy model: a folder, or ``embedded`` (SmolLM2-135M-Instruct)."""
    reward: str = ""
    """Reward source spec, e.g. ``verifier:gsm8k``, ``rm:PATH``, ``judge:NAME``,
    ``0.7*rm:PATH+0.3*verifier`` (see :func:`judge_rl.train.reward_sources.make_reward_source`)."""
    prompts: str = ""
    """Prompt file or built-in set (``builtin:gsm8k-demo``)."""
    output: str = ""
    """Folder for checkpoints (``checkpoint-000010/``: model folder + trainer state)."""
    run: str | None = None
    """Run name: the run log goes to ``reports/<run>/log.json`` (default: ppo-<output folder name>)."""
    steps: int = 20
    """PPO steps (one rollout batch and its updates each)."""
    batch_size: int = 16
    """Prompts per rollout batch, per process."""
    mini_batch_size: int = 8
    """Samples per gradient step (``batch_size`` must be a multiple)."""
    ppo_epochs: int = 4
    """Passes over each rollout batch."""
    lr: float = 1e-5
    """AdamW learning rate (policy and value)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0 disables)."""
    kl_coef: float = 0.05
    """Initial coefficient of the per-token KL penalty (fixed unless ``target_kl`` is set)."""
    target_kl: float | None = None
    """Adaptive KL: target KL per sample (sum over tokens, nats); None keeps ``kl_coef`` fixed."""
    kl_horizon: int = 10000
    """Adaptive KL horizon in samples (Ziegler et al. 2019)."""
    kl_estimator: str = "k1"
    """Per-token KL estimator in the reward: ``k1`` (log-ratio) or ``k3`` (unbiased, >= 0)."""
    gamma: float = 1.0
    """GAE discount."""
    lam: float = 0.95
    """GAE lambda."""
    cliprange: float = 0.2
    """Policy ratio clip epsilon."""
    cliprange_value: float = 0.2
    """Value clip around the rollout's values."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    ent_coef: float = 0.0
    """Entropy bonus weight (0: entropy is only logged)."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0, std 1 over the batch's response tokens."""
    max_new_tokens: int = 64
    """Response budget in tokens."""
    temperature: float = 1.0
    """Sampling temperature (log-probabilities use the same temperature)."""
    top_k: int = 0
    """Top-k sampling (0: off; PPO assumes the full distribution, so leave it off)."""
    top_p: float = 1.0
    """Nucleus sampling (1.0: off)."""
    missing_eos_penalty: float | None = None
    """Subtracted from the score of a response that hit ``max_new_tokens`` without EOS."""
    max_prompt_length: int | None = None
    """Longest prompt in tokens; default: the model's context minus ``max_new_tokens``. Longer
    prompts are an error."""
    chat_template: bool = True
    """Wrap text prompts as a user message with the tokenizer's chat template (when it has one)."""
    value_model: str = "head"
    """Value function: ``head`` (a linear head on the policy's last hidden state, shared body: one
    model copy less), ``policy`` (separate copy of the policy's body + head) or a reward-model
    folder (body and head from ``train-rm``)."""
    rollout: str = "hf"
    """Rollout engine: ``hf`` (transformers generate) or ``vllm`` (GPU, optional extra)."""
    lora_r: int = 0
    """LoRA rank (needs peft); 0 trains all weights. With LoRA the reference is the policy with
    adapters disabled (no copy)."""
    lora_alpha: int | None = None
    """LoRA scaling numerator (default: 2 * ``lora_r``)."""
    lora_target_modules: str = "all-linear"
    """Modules LoRA adapts: ``all-linear`` or comma-separated module names (``q_proj,v_proj``)."""
    mixed_precision: str = "auto"
    """Autocast for every forward pass: ``no``, ``bf16``, ``fp16`` (GPU) or ``auto`` (bf16 on a GPU
    that supports it, else ``no``). Master weights stay in ``dtype``."""
    dtype: str = "float32"
    """Dtype of the trained weights (master weights); bf16-stored checkpoints are upcast. ``auto``
    keeps the stored dtype (pure bf16 training: most small updates round away)."""
    ref_dtype: str = "auto"
    """Dtype of the frozen reference: ``auto`` = ``dtype`` (step-1 KL exactly 0); ``bfloat16``
    saves memory (the KL then starts at the rounding gap)."""
    save_dtype: str = "auto"
    """Dtype of saved policy weights: ``auto`` = ``dtype``."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    micro_batch_size: int | None = None
    """Samples per forward/backward pass; gradients accumulate over ``mini_batch_size /
    micro_batch_size`` of them per optimiser step (default: ``mini_batch_size``)."""
    lr_scheduler: str = "constant"
    """Learning-rate schedule over the run's optimiser steps: ``constant``, ``linear`` (to 0) or
    ``cosine`` (to 0), after ``warmup_steps``."""
    warmup_steps: int = 0
    """PPO steps of linear warm-up from 0 to ``lr``."""
    reward_norm: bool = False
    """Normalise scores by a running mean and std over all steps so far (before the KL term)."""
    reward_clip: float | None = None
    """Clip scores (after normalisation) to ``[-reward_clip, reward_clip]``."""
    keep_checkpoints: int = 0
    """Keep the newest K checkpoint folders (0: keep all); the best-by-gold one and the latest
    resume point are always kept; with K > 0 optimiser state is kept only in the latest resume
    point."""
    report_to: str = "none"
    """Experiment tracker through accelerate: ``none``, ``tensorboard`` or ``wandb``."""
    vllm_gpu_memory_utilization: float = 0.3
    """vLLM rollouts: the engine's share of GPU memory."""
    vllm_sleep: bool = False
    """vLLM rollouts: put the engine to sleep (weights and KV cache freed) during the updates."""
    tis_cap: float | None = None
    """vLLM rollouts: truncated importance sampling, weight each token's policy loss by
    ``min(π_trainer / π_vllm, tis_cap)`` (Yao et al. 2025); None: off (the gap is only logged)."""
    save_every: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    log_samples: int = 2
    """Samples per step stored in the run log."""
    seed: int = 0
    """Seed for prompt order, sampling and head initialisation."""
    device: str | None = None
    """``cpu`` or ``cuda``; default: what accelerate picks (CUDA when present)."""
    resume: str | None = None
    """Resume from a checkpoint folder, or ``latest`` (the newest under ``output``)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad setting."""

        def bad(setting: str, msg: str) -> ConfigError:
            return ConfigError(msg, setting=setting)

        for name in ("steps", "batch_size", "mini_batch_size", "ppo_epochs", "max_new_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise bad(name, f"must be a positive integer, got {v!r}")
        if self.batch_size % self.mini_batch_size:
            raise bad(
                "mini_batch_size",
                f"{self.mini_batch_size} does not divide batch_size {self.batch_size}",
            )
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise bad("lr", f"must be positive, got {self.lr}")
        if self.kl_coef < 0 or not math.isfinite(self.kl_coef):
            raise bad("kl_coef", f"must be >= 0, got {self.kl_coef}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise bad("target_kl", f"must be positive, got {self.target_kl}")
        if self.kl_estimator not in ("k1", "k3"):
            raise bad("kl_estimator", f"must be k1 or k3, got {self.kl_estimator!r}")
        if not 0 <= self.gamma <= 1:
            raise bad("gamma", f"must be in [0, 1], got {self.gamma}")
        if not 0 <= self.lam <= 1:
            raise bad("lam", f"must be in [0, 1], got {self.lam}")
        for name in ("cliprange", "cliprange_value"):
            if not getattr(self, name) > 0:
                raise bad(name, f"must be positive, got {getattr(self, name)}")
        if self.vf_coef < 0:
            raise bad("vf_coef", f"must be >= 0, got {self.vf_coef}")
        if not self.temperature > 0:
            raise bad("temperature", f"must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.save_every < 0:
            raise bad("save_every", f"must be >= 0, got {self.save_every}")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise bad("max_prompt_length", f"must be positive, got {self.max_prompt_length}")
        if self.rollout not in ("hf", "vllm"):
            raise bad("rollout", f"must be hf or vllm, got {self.rollout!r}")
        if self.lora_r < 0:
            raise bad("lora_r", f"must be >= 0, got {self.lora_r}")
        if self.micro_batch_size is not None:
            if not isinstance(self.micro_batch_size, int) or self.micro_batch_size < 1:
                raise bad(
                    "micro_batch_size", f"must be a positive integer, got {self.micro_batch_size!r}"
                )
            if self.mini_batch_size % self.micro_batch_size:
                raise bad(
                    "micro_batch_size",
                    f"{self.micro_batch_size} does not divide mini_batch_size {self.mini_batch_size}",
                )
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise bad(
                "mixed_precision", f"must be auto, no, bf16 or fp16, got {self.mixed_precision!r}"
            )
        from judge_rl.train.precision import parse_dtype

        for name in ("dtype", "ref_dtype", "save_dtype"):
            parse_dtype(getattr(self, name), setting=name)
        if self.lr_scheduler not in ("constant", "linear", "cosine"):
            raise bad(
                "lr_scheduler", f"must be constant, linear or cosine, got {self.lr_scheduler!r}"
            )
        if self.warmup_steps < 0:
            raise bad("warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        if self.reward_clip is not None and not self.reward_clip > 0:
            raise bad("reward_clip", f"must be positive, got {self.reward_clip}")
        if self.keep_checkpoints < 0:
            raise bad("keep_checkpoints", f"must be >= 0, got {self.keep_checkpoints}")
        if self.report_to not in ("none", "tensorboard", "wandb"):
            raise bad("report_to", f"must be none, tensorboard or wandb, got {self.report_to!r}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise bad(
                "vllm_gpu_memory_utilization",
                f"must be in (0, 1], got {self.vllm_gpu_memory_utilization}",
            )
        if self.tis_cap is not None and not self.tis_cap >= 1:
            raise bad("tis_cap", f"must be >= 1, got {self.tis_cap}")
        if self.lora_alpha is not None and self.lora_alpha <= 0:
            raise bad("lora_alpha", f"must be positive, got {self.lora_alpha}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_fields() -> dict[str, dataclasses.Field[Any]]:
    """The settings by name (for the CLI and YAML validation)."""
    return {f.name: f for f in dataclasses.fields(PPOConfig)}


@lru_cache(maxsize=1)
def field_docs() -> dict[str, str]:
    """Each field's docstring (read from the source: the CLI's help text)."""
    return dataclass_field_docs(PPOConfig)


def dataclass_field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring of a settings dataclass (read from the source; the CLI help)."""
    tree = ast.parse(inspect.getsource(cls))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs
