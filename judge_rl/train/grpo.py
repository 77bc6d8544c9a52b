"""GRPO, Dr. GRPO and RLOO: policy optimisation with group baselines instead of a critic.

One step (read top to bottom; each formula has its source beside it, the maths is in
:mod:`judge_rl.train._group`):

1. Rollout: ``G = batch_size`` prompts, each sampled ``K = group_size`` times
   (:mod:`judge_rl.train.rollout`; the group's samples are contiguous).
2. Score: the reward source gives one scalar per response (``rm:``, ``judge:``, ``verifier:``,
   weighted sums); a ``pairwise:NAME`` term ranks the K samples of a group against each other
   (:class:`GroupPairwiseReward`: the share of the group it beats, ties half). A missing EOS costs
   ``missing_eos_penalty``; failed scores (NaN) are left out of their group's baseline and of the
   update.
3. Group-relative advantages (:func:`~judge_rl.train._group.group_advantages`): GRPO (Shao et al.
   2024, mean baseline divided by the group's std), Dr. GRPO (Liu et al. 2025, no std) or RLOO
   (Ahmadian et al. 2024, leave-one-out mean). Groups whose rewards are all equal get advantage 0;
   the step records their share (``frac_zero_std``) and the within-group spread (``group_std``,
   ``group_range``).
4. Old log-probabilities (only when they differ from the updated policy's: ``epochs > 1`` or
   several minibatches) and the reference's (only when ``beta > 0``), no gradient.
5. ``epochs`` passes over shuffled minibatches of the clipped objective plus ``beta`` times the k3
   KL to the reference (:func:`~judge_rl.train._group.grpo_loss`; DeepSeekMath eq. 3-4), reduced
   per token, per sequence or by a constant (:func:`~judge_rl.train._group.aggregate`).

The trainer (:class:`GRPOTrainer`) shares PPO's reward sources, rollout engines, callbacks (it is
their :class:`~judge_rl.train.callbacks.PolicyHandle`, so the over-optimisation monitor plugs in),
run-log section (``ppo``: per-step statistics, samples, checkpoints, which ``judge-rl overopt`` and
the reports read) and checkpoint layout (model folders, resumable).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge_rl.errors import ConfigError
from judge_rl.train._checkpoint import load_trainer_state, save_trainer_state
from judge_rl.train._group import ADVANTAGES, LOSS_AGGREGATIONS
from judge_rl.train._ppo_config import dataclass_field_docs
from judge_rl.train.rewards import RewardQuery
from judge_rl.types import Prompt, PromptItem, prompt_text

if TYPE_CHECKING:
    import torch

    from judge_rl.runlog import PPOSection, RunLog
    from judge_rl.train.callbacks import Callback, Samples

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "grpo_config.json"
NAN = float("nan")


@dataclass
class GRPOConfig:
    """Every GRPO/RLOO setting; the CLI flags and ``--config`` YAML keys have the same names."""

    policy: str = "embedded"
    """Policy model: a folder, or ``embedded`` (SmolLM2-135M-Instruct)."""
    reward: str = ""
    """Reward source spec (as for PPO): ``verifier:gsm8k``, ``rm:PATH``, ``judge:NAME``,
    ``pairwise:NAME`` (ranks the K samples of a group), weighted sums ``0.7*rm:P+0.3*verifier``."""
    prompts: str = ""
    """Prompt file or built-in set (``builtin:gsm8k-demo``)."""
    output: str = ""
    """Folder for checkpoints (``checkpoint-000010/``: model folder + trainer state)."""
    run: str | None = None
    """Run name: the run log goes to ``reports/<run>/log.json`` (default: grpo-<output name>)."""
    algorithm: str = "grpo"
    """Advantage estimator: ``grpo`` (group mean and std), ``drgrpo`` (group mean only) or
    ``rloo`` (leave-one-out mean)."""
    steps: int = 20
    """Optimisation steps (one rollout batch and its updates each)."""
    batch_size: int = 8
    """Prompts per step, per process (each sampled ``group_size`` times)."""
    group_size: int = 4
    """K: samples per prompt (at least 2: the baseline is the rest of the group)."""
    mini_batch_size: int = 0
    """Samples per gradient step (0: the whole batch, batch_size * group_size; must divide it)."""
    epochs: int = 1
    """Passes over each rollout batch (mu in the GRPO paper; > 1 makes the clip matter)."""
    lr: float = 1e-6
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0 disables)."""
    beta: float = 0.0
    """Coefficient of the k3 KL-to-reference loss term (0: no KL term and no reference pass)."""
    loss_agg: str = "token"
    """Loss aggregation: ``token`` (all tokens equal, DAPO), ``sequence`` (each response equal,
    GRPO paper) or ``constant`` (sum / (samples * max_new_tokens), Dr. GRPO)."""
    cliprange: float = 0.2
    """Ratio clip epsilon (lower side, and upper side unless ``cliprange_high`` is set)."""
    cliprange_high: float | None = None
    """Upper ratio clip epsilon (DAPO's clip-higher); None: ``cliprange``."""
    max_new_tokens: int = 64
    """Response budget in tokens."""
    temperature: float = 1.0
    """Sampling temperature (log-probabilities use the same temperature)."""
    top_k: int = 0
    """Top-k sampling (0: off)."""
    top_p: float = 1.0
    """Nucleus sampling (1.0: off)."""
    missing_eos_penalty: float | None = None
    """Subtracted from the score of a response that hit ``max_new_tokens`` without EOS."""
    max_prompt_length: int | None = None
    """Longest prompt in tokens; default: the model's context minus ``max_new_tokens``."""
    chat_template: bool = True
    """Wrap text prompts as a user message with the tokenizer's chat template (when it has one)."""
    rollout: str = "hf"
    """Rollout engine: ``hf`` (transformers generate) or ``vllm`` (GPU, optional extra)."""
    lora_r: int = 0
    """LoRA rank (needs peft); 0 trains all weights. With LoRA the reference is the policy with
    adapters disabled."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, slower)."""
    bf16: bool = False
    """bfloat16 autocast for the forward passes on CUDA (weights stay float32)."""
    shared_prompt: bool = True
    """Run each prompt once for its group's K responses in the log-probability passes (KV cache;
    checked against the plain forward at first use; one process, no LoRA)."""
    save_every: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    log_samples: int = 2
    """Samples per step stored in the run log."""
    seed: int = 0
    """Seed for prompt order and sampling."""
    device: str | None = None
    """``cpu`` or ``cuda``; default: CUDA when present."""
    resume: str | None = None
    """Resume from a checkpoint folder, or ``latest`` (the newest under ``output``)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad setting."""

        def bad(setting: str, msg: str) -> ConfigError:
            return ConfigError(msg, setting=setting)

        for name in ("steps", "batch_size", "epochs", "max_new_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, f"must be a positive integer, got {v!r}")
        K = self.group_size
        if isinstance(K, bool) or not isinstance(K, int) or K < 2:
            raise bad(
                "group_size",
                f"must be at least 2 (a group baseline needs other samples), got {K!r}",
            )
        if self.mini_batch_size < 0:
            raise bad("mini_batch_size", f"must be >= 0, got {self.mini_batch_size}")
        if self.mini_batch_size and (self.batch_size * K) % self.mini_batch_size:
            raise bad(
                "mini_batch_size",
                f"{self.mini_batch_size} does not divide batch_size * group_size = "
                f"{self.batch_size * K}",
            )
        if self.algorithm not in ADVANTAGES:
            raise bad(
                "algorithm", f"must be one of {', '.join(ADVANTAGES)}, got {self.algorithm!r}"
            )
        if self.loss_agg not in LOSS_AGGREGATIONS:
            raise bad(
                "loss_agg", f"must be one of {', '.join(LOSS_AGGREGATIONS)}, got {self.loss_agg!r}"
            )
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise bad("lr", f"must be positive, got {self.lr}")
        if not math.isfinite(self.beta) or self.beta < 0:
            raise bad("beta", f"must be >= 0 (0 turns the KL term off), got {self.beta}")
        if not self.cliprange > 0:
            raise bad("cliprange", f"must be positive, got {self.cliprange}")
        if self.cliprange_high is not None and not self.cliprange_high > 0:
            raise bad("cliprange_high", f"must be positive, got {self.cliprange_high}")
        if not self.temperature > 0:
            raise bad("temperature", f"must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise bad("top_k", f"must be >= 0, got {self.top_k}")
        if self.save_every < 0:
            raise bad("save_every", f"must be >= 0, got {self.save_every}")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise bad("max_prompt_length", f"must be positive, got {self.max_prompt_length}")
        if self.rollout not in ("hf", "vllm"):
            raise bad("rollout", f"must be hf or vllm, got {self.rollout!r}")
        if self.lora_r < 0:
            raise bad("lora_r", f"must be >= 0, got {self.lora_r}")

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.group_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@lru_cache(maxsize=1)
def field_docs() -> dict[str, str]:
    return dataclass_field_docs(GRPOConfig)


# =============================================================================================
# Rewards over groups


class GroupPairwiseReward:
    """A pairwise judge ranks the K samples of each group: every pair of samples is compared once
    (the judge layer controls position bias), and a sample's reward is its share of wins in the
    group, ties counting half, failed comparisons skipped: ``r_i = (W_i + T_i / 2) / n_i``.
    A sample whose comparisons all failed scores NaN.

    The judge is called with the response pairs as ``a``/``b``; ``use_prob`` takes the judge's
    ``p_a`` instead of win/tie/loss when given.
    """

    def __init__(self, name: str, *, use_prob: bool = False, judge: Any = None):
        self.name = f"pairwise:{name}" + (":prob" if use_prob else "")
        self.use_prob = use_prob
        self._judge_name = name
        self._judge = judge
        self.failures = 0

    @property
    def judge(self) -> Any:
        if self._judge is None:
            from judge_rl.train.reward_sources import _load_judge

            self._judge = _load_judge(self._judge_name)
        return self._judge

    def score_groups(
        self, queries: Sequence[RewardQuery], groups: Sequence[Sequence[int]]
    ) -> list[float]:
        from judge_rl.judge.base import compare_sync
        from judge_rl.train.reward_sources import _candidate, _pairwise_value
        from judge_rl.types import Comparison

        comps, where = [], []
        for g in groups:
            for x in range(len(g)):
                for y in range(x + 1, len(g)):
                    i, j = g[x], g[y]
                    qi, qj = queries[i], queries[j]
                    ca = _candidate(qi, qi.response, f"sample-{i}")
                    cb = _candidate(qj, qj.response, f"sample-{j}")
                    comps.append(
                        Comparison(
                            prompt_id=qi.prompt_id or "p",
                            prompt=qi.prompt,
                            a=ca,
                            b=cb,
                            reference=qi.reference,
                        )
                    )
                    where.append((i, j))
        wins = [0.0] * len(queries)
        counts = [0] * len(queries)
        if comps:
            for (i, j), jd in zip(where, compare_sync(self.judge, comps), strict=True):
                v = _pairwise_value(jd, self.use_prob)
                if math.isnan(v):
                    self.failures += 1
                    continue
                wins[i] += v
                wins[j] += 1.0 - v
                counts[i] += 1
                counts[j] += 1
        return [w / n if n else NAN for w, n in zip(wins, counts, strict=True)]

    @property
    def fingerprints(self) -> list[Any]:
        return [self.judge.fingerprint]


class GroupReward:
    """A reward spec scored over groups: ``pairwise:`` terms rank within the group, every other
    term (any PPO reward source) scores each response alone; terms are summed with weights."""

    def __init__(self, spec: str, sources: Sequence[tuple[float, Any]] | None = None):
        from judge_rl.train.reward_sources import make_reward_source, parse_spec

        self.name = spec
        if sources is not None:
            self.terms = list(sources)
            return
        self.terms = []
        for w, kind, arg in parse_spec(spec):
            if kind == "pairwise":
                name, _, opt = arg.partition(":")
                if not name:
                    raise ConfigError(
                        "pairwise needs a judge name: pairwise:NAME", setting="reward"
                    )
                if opt not in ("", "prob"):
                    raise ConfigError(f"pairwise option {opt!r}: only 'prob'", setting="reward")
                self.terms.append((w, GroupPairwiseReward(name, use_prob=opt == "prob")))
            else:
                self.terms.append((w, make_reward_source(f"{kind}:{arg}" if arg else kind)))

    def __call__(
        self, queries: Sequence[RewardQuery], groups: Sequence[Sequence[int]]
    ) -> list[float]:
        total = [0.0] * len(queries)
        for w, src in self.terms:
            if hasattr(src, "score_groups"):
                vals = src.score_groups(queries, groups)
            else:
                vals = src(queries)
            vals = [float(v) for v in vals]
            if len(vals) != len(queries):
                raise RuntimeError(f"{src.name} returned {len(vals)} scores for {len(queries)}")
            for i, v in enumerate(vals):
                total[i] += w * v  # nan propagates
        return total

    @property
    def fingerprints(self) -> list[Any]:
        return [fp for _, s in self.terms for fp in getattr(s, "fingerprints", [])]


class _PerQuery:
    """The group reward seen one response at a time (for the over-optimisation monitor's proxy):
    a pairwise term compares the response with the prompt's reference, as in PPO."""

    def __init__(self, spec: str):
        self.name = spec
        self._src: Any = None

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        if self._src is None:
            from judge_rl.train.reward_sources import make_reward_source

            self._src = make_reward_source(self.name)
        return list(self._src(queries))


# =============================================================================================
# Trainer


@dataclass
class _Batch:
    """One rollout batch. B = G*K samples, P prompt tokens, R response tokens."""

    items: list[PromptItem]  # (B,) the prompt of each sample (each repeated K times)
    query_ids: torch.Tensor  # (B, P)
    query_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R)
    ended: torch.Tensor  # (B,)
    texts: list[str]
    scores: list[float] = dataclasses.field(default_factory=list)


class GRPOTrainer:
    """GRPO / Dr. GRPO / RLOO on a causal LM against any reward source.

    Args:
        config: settings (:class:`GRPOConfig`); ``policy``/``reward``/``prompts`` strings in it
            are used when the matching argument is not given.
        policy: a ``PreTrainedModel`` or a name/folder (``embedded``).
        tokenizer: its tokenizer (loaded from ``policy`` when None and ``policy`` is a name).
        reward: a spec string, a :class:`GroupReward`, or any per-response reward source.
        prompts: :class:`~judge_rl.types.PromptItem` s, plain prompts, or dicts with ``prompt``.
        callbacks: :class:`~judge_rl.train.callbacks.Callback` s (the over-optimisation monitor).
        ref_policy: the frozen reference (default: a copy of ``policy`` at start, made only when
            ``beta > 0`` or a callback may ask for it).
        run_log, run_dir: the run log to fill (``ppo`` section) and where to save it.

    Example (a toy run on a tiny model)::

        trainer = GRPOTrainer(GRPOConfig(steps=10, batch_size=8, group_size=4, lr=1e-2),
                              model, tok, "contains:a", ["say a"] * 32)
        section = trainer.train()
    """

    def __init__(
        self,
        config: GRPOConfig,
        policy: Any = None,
        tokenizer: Any = None,
        reward: Any = None,
        prompts: Sequence[Any] | None = None,
        *,
        callbacks: Sequence[Callback] = (),
        ref_policy: Any = None,
        run_log: RunLog | None = None,
        run_dir: str | os.PathLike[str] | None = None,
    ):
        import torch
        from accelerate import Accelerator

        from judge_rl.runlog import PPOSection

        config.validate()
        self.config = c = config
        self.callbacks = list(callbacks)
        self.run_log = run_log
        self.run_dir = Path(run_dir) if run_dir else None

        # 1. Reward and prompts first (cheap checks before loading models) -------------------
        spec = reward if reward is not None else c.reward
        if spec is None or (isinstance(spec, str) and not spec.strip()):
            raise ConfigError(
                "no reward source given (e.g. --reward verifier:gsm8k)", setting="reward"
            )
        if isinstance(spec, str):
            self.group_reward = GroupReward(spec)
            self._proxy: Any = _PerQuery(spec)
        elif isinstance(spec, GroupReward):
            self.group_reward = spec
            self._proxy = _PerQuery(spec.name)
        else:  # a per-response RewardSource object
            self.group_reward = GroupReward(getattr(spec, "name", "reward"), [(1.0, spec)])
            self._proxy = spec
        if prompts is None:
            if not c.prompts:
                raise ConfigError("no prompts given", setting="prompts")
            from judge_rl.data import read_prompts

            prompts = read_prompts(c.prompts)
        from judge_rl.train.ppo import _as_items

        self.items = _as_items(prompts)
        if not self.items:
            raise ConfigError("the prompt set is empty", setting="prompts")

        # 2. Models --------------------------------------------------------------------------
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
        on_cpu = c.device == "cpu" or (c.device is None and not torch.cuda.is_available())
        from judge_rl.train.ppo import sharding_requested

        shard = sharding_requested()
        if shard:  # no full-parameter gather here: rank-0 saves and monitor sampling would hang
            raise ConfigError(
                f"grpo runs on one process or DDP; {shard} sharding is not supported "
                "(judge-rl ppo supports it): launch without an FSDP/DeepSpeed config",
                setting="device",
            )
        self.accelerator = acc = Accelerator(cpu=on_cpu)
        self.device = acc.device
        torch.manual_seed(c.seed)

        self._peft = False
        if c.lora_r > 0:
            policy = self._add_lora(policy)
        need_ref = c.beta > 0 or bool(self.callbacks)
        if ref_policy is None and need_ref and not self._peft:
            from judge_rl.train._ppo_models import frozen_copy

            ref_policy = frozen_copy(policy)
        self.ref_policy = ref_policy.to(self.device) if ref_policy is not None else None
        policy.to(self.device)
        policy.eval()  # no dropout: sampling and update log-probabilities must agree
        self._grad_ckpt = False
        if c.gradient_checkpointing:
            from judge_rl.train._ppo_models import enable_gradient_checkpointing

            # non-reentrant, the checkpointed layers alone in training mode (as PPO's): before,
            # switching the policy to eval mode above left every layer there, where
            # transformers does not checkpoint, so nothing was recomputed and no memory saved
            self._grad_ckpt = enable_gradient_checkpointing(policy)
            if not self._grad_ckpt:
                log.warning("%s does not support gradient checkpointing", type(policy).__name__)
        params = [p for p in policy.parameters() if p.requires_grad]
        # on CPU the fused kernel, as PPO's (`bench_ppo.py --part parts`)
        fused = True if self.device.type == "cpu" else None
        optimizer = torch.optim.AdamW(
            params, lr=c.lr, weight_decay=c.weight_decay, eps=1e-8, fused=fused
        )
        self.model, self.optimizer = acc.prepare(policy, optimizer)
        from judge_rl.train._ppo_models import accepts_logits_to_keep

        self._keep = accepts_logits_to_keep(self.policy)
        self._encoded = self._encode_prompts(self.items)
        self.engine = self._make_engine()

        # 3. State ---------------------------------------------------------------------------
        self._step = 0
        self._epoch = 0
        self._cursor = 0
        self._last_batch: _Batch | None = None
        self._shared: bool | None = None  # shared-prompt forward: decided at first use
        self.section: PPOSection = PPOSection(policy=policy_name, reward=self.group_reward.name)
        if run_log is not None:
            run_log.ppo = self.section
        torch.manual_seed(c.seed + acc.process_index)  # sampling streams differ across ranks
        if c.resume:
            self._load_checkpoint(self._resolve_resume(c.resume))

    # -- properties -----------------------------------------------------------------------------

    @property
    def policy(self) -> Any:
        """The policy being trained (a ``PreTrainedModel``)."""
        return self.accelerator.unwrap_model(self.model)

    @property
    def step(self) -> int:
        """Steps completed (counted over resumes)."""
        return self._step

    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def reward_source(self) -> Any:
        """The training reward, one response at a time (the monitor's proxy)."""
        return self._proxy

    # -- set-up helpers -------------------------------------------------------------------------

    def _add_lora(self, policy: Any) -> Any:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ConfigError("LoRA needs peft (pip install peft)", setting="lora_r") from None
        self._peft = True
        cfg = LoraConfig(
            r=self.config.lora_r,
            lora_alpha=2 * self.config.lora_r,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(policy, cfg)

    def _encode_prompts(self, items: Sequence[PromptItem]) -> list[list[int]]:
        from judge_rl.train.rollout import encode_prompt

        c = self.config
        ctx = getattr(self.policy.config, "max_position_embeddings", None) or 10**9
        limit = c.max_prompt_length or (ctx - c.max_new_tokens)
        if limit < 1:
            raise ConfigError(
                f"{c.max_new_tokens} leaves no room for a prompt in the model's context of "
                f"{ctx} tokens",
                setting="max_new_tokens",
            )
        out = []
        for it in items:
            ids = encode_prompt(self.tokenizer, it.prompt, chat=c.chat_template)
            if not ids:
                raise ConfigError(f"prompt {it.prompt_id!r} is empty", setting="prompts")
            if len(ids) > limit:
                raise ConfigError(
                    f"prompt {it.prompt_id!r} is {len(ids)} tokens; the limit is {limit}",
                    setting="prompts",
                )
            out.append(ids)
        return out

    def _make_engine(self) -> Any:
        from judge_rl.train.rollout import make_engine

        c = self.config
        kw: dict[str, Any] = {
            "max_new_tokens": c.max_new_tokens,
            "temperature": c.temperature,
            "top_k": c.top_k,
            "top_p": c.top_p,
        }
        path = None
        if c.rollout == "vllm":
            out = Path(c.output or "grpo-output") / "_vllm_init"
            if self.is_main:
                self.policy.save_pretrained(out)
                self.tokenizer.save_pretrained(out)
            self.accelerator.wait_for_everyone()
            path, kw["seed"] = str(out), c.seed
        return make_engine(c.rollout, self.policy, self.tokenizer, model_path=path, **kw)

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.config.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- prompt order ---------------------------------------------------------------------------

    def _next_indices(self) -> list[int]:
        """This rank's prompts of the next global batch; the same permutation on every rank."""
        import torch

        G, world, rank = (
            self.config.batch_size,
            self.accelerator.num_processes,
            self.accelerator.process_index,
        )
        need = G * world
        out: list[int] = []
        while len(out) < need:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self._epoch)
            perm = torch.randperm(len(self.items), generator=g).tolist()
            take = perm[self._cursor : self._cursor + need - len(out)]
            out.extend(take)
            self._cursor += len(take)
            if self._cursor >= len(perm):
                self._epoch, self._cursor = self._epoch + 1, 0
        return out[rank * G : (rank + 1) * G]

    # -- forward passes -------------------------------------------------------------------------

    def _logprobs(
        self, model: Any, batch: _Batch, rows: Any, *, want_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log π(response tokens) (b, R), and the response logits (b, R, V) when asked."""
        if self._use_shared(batch):
            return self._shared_logprobs(model, batch, rows, want_logits=want_logits)
        return self._plain_logprobs(model, batch, rows, want_logits=want_logits)

    def _use_shared(self, batch: _Batch) -> bool:
        """Do the log-probability passes share the prompt? Decided (:meth:`_check_shared`) at
        the first pass, outside any ``disable_adapter()`` block."""
        if self._shared is None:
            self._shared = self._check_shared(batch)
        return self._shared

    def _shared_logprobs(
        self, model: Any, batch: _Batch, rows: Any, *, want_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As :meth:`_plain_logprobs`, with each distinct prompt among ``rows`` computed once: a
        prompt's hidden states do not depend on what follows, so the prompts run once
        (``(U, P)``), their keys/values are gathered for each sample, and only the responses run
        per sample (``(b, R)``), attending to their own prompt through a 4D mask. The first
        response token is predicted from the prompt's last hidden state.

        A peft LoRA policy runs through the model it wraps (``get_base_model()``), whose
        Linear layers peft replaced in place by LoRA layers: the same modules its own forward
        calls, with the adapter on or, inside ``disable_adapter()``, off. With gradients, the
        prompts' keys and values keep their graph through the gathered cache, so the LoRA
        weights of the key/value projections get the prompt positions' gradient, summed over the
        K samples as the plain forward sums it over the K repeated rows. Other peft models
        (other methods, several adapters, DoRA, ...) raise here: the plain forward runs."""
        import torch

        from judge_rl.train._lean_decode import _lora_base
        from judge_rl.train._shared_prompt import shared_prompt_logits, through_ddp
        from judge_rl.train.ppo import logprobs_from_logits

        dev = self.device
        wrapped, model = model, self.accelerator.unwrap_model(model)
        if type(model).__module__.startswith("peft"):
            base = _lora_base(model)
            if base is None:
                raise ValueError(f"{type(model).__name__} is not a plain LoRA model")
            model = base
        self._checkpointing_mode()
        idx = torch.arange(batch.query_ids.shape[0])[rows]  # (b,)
        q_ids, q_mask = batch.query_ids[idx], batch.query_mask[idx]  # (b, P)
        uniq: dict[tuple[int, ...], int] = {}
        owner = [
            uniq.setdefault(tuple(q[m.bool()].tolist()), len(uniq))
            for q, m in zip(q_ids, q_mask, strict=True)
        ]
        prompts = list(uniq)
        pad = int(self.tokenizer.pad_token_id)
        tp = max(len(p) for p in prompts)
        prefix = torch.full((len(prompts), tp), pad, dtype=torch.long)  # (U, P) right-padded
        for k, p in enumerate(prompts):
            prefix[k, : len(p)] = torch.tensor(p, dtype=torch.long)
        plen = torch.tensor([len(p) for p in prompts])  # (U,)
        own = torch.tensor(owner)  # (b,)
        suffix = batch.response_ids[idx]  # (b, R)

        def run() -> torch.Tensor:
            with self._autocast():
                return shared_prompt_logits(model, prefix, plen, own, suffix, dev)  # (b, R, V)

        logits = through_ddp(wrapped, run)
        logits = logits.float() / self.config.temperature
        lp = logprobs_from_logits(logits, suffix.to(dev))  # (b, R)
        return lp, (logits if want_logits else None)

    def _checkpointing_mode(self) -> None:
        """Under gradient checkpointing, with gradients on: the policy's checkpointed layers in
        training mode (transformers checkpoints a layer only then, and the rollouts put every
        module in eval mode; :func:`~judge_rl.train._ppo_models.checkpointing_train_mode`)."""
        import torch

        if self._grad_ckpt and torch.is_grad_enabled():
            from judge_rl.train._ppo_models import checkpointing_train_mode

            checkpointing_train_mode(self.model)

    def _check_shared(self, batch: _Batch) -> bool:
        """Does the shared-prompt forward give the plain forward's log-probabilities here? A
        LoRA policy is checked with its adapter on and, when the base model is the reference,
        off (``disable_adapter()``)."""
        import contextlib

        import torch

        c = self.config
        if not c.shared_prompt:
            return False
        if self._grad_ckpt:
            from judge_rl.train._shared_prompt import shares_under_checkpointing

            if not shares_under_checkpointing():
                return False
        rows = slice(0, min(4, batch.query_ids.shape[0]))
        m = batch.response_mask[rows].to(self.device).float()
        modes: list[Any] = [contextlib.nullcontext]
        if self._peft and self.ref_policy is None:
            modes.append(self.policy.disable_adapter)
        for mode in modes:
            try:
                with torch.no_grad(), mode():
                    got = self._shared_logprobs(self.model, batch, rows)[0] * m
                    want = self._plain_logprobs(self.model, batch, rows)[0] * m
            except Exception as e:  # an architecture without cache / 4D-mask support
                log.info("shared-prompt forward unavailable for this model (%s)", e)
                return False
            if not torch.allclose(got, want, atol=1e-4, rtol=1e-4):
                log.info("shared-prompt forward disagrees with the plain one; using the plain one")
                return False
        return True

    def _plain_logprobs(
        self, model: Any, batch: _Batch, rows: Any, *, want_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        import torch

        from judge_rl.train._last_mlp import read_rows_block
        from judge_rl.train.ppo import logprobs_from_logits

        self._checkpointing_mode()
        R = batch.response_ids.shape[1]
        ids = torch.cat([batch.query_ids[rows], batch.response_ids[rows]], 1).to(self.device)
        am = torch.cat([batch.query_mask[rows], batch.response_mask[rows]], 1).to(self.device)
        pos = (am.cumsum(1) - 1).clamp(min=0)  # (b, P+R) left padding: count real tokens only
        kw: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": am,
            "position_ids": pos,
            "use_cache": False,
        }
        if self._keep:
            kw["logits_to_keep"] = R + 1
        # the last layer's row-wise work on the positions the head reads (skipped with gradients
        # under checkpointing: its recomputation runs in the backward, outside this block)
        with self._autocast(), read_rows_block(R + 1, model):
            logits = model(**kw).logits[:, -(R + 1) : -1]  # (b, R, V)
        logits = logits.float() / self.config.temperature
        lp = logprobs_from_logits(logits, batch.response_ids[rows].to(self.device))  # (b, R)
        return lp, (logits if want_logits else None)

    def _ref_logprobs(self, batch: _Batch, rows: Any) -> torch.Tensor:
        if self.ref_policy is not None:
            return self._logprobs(self.ref_policy, batch, rows)[0]
        self._use_shared(batch)  # decided with the adapter on, before it is switched off
        with self.policy.disable_adapter():  # peft: the reference is the base model
            return self._logprobs(self.policy, batch, rows)[0]

    @property
    def has_reference(self) -> bool:
        return self.ref_policy is not None or self._peft

    # -- one step -------------------------------------------------------------------------------

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
        if model is not None and not isinstance(engine, HFRolloutEngine):
            c = self.config
            engine = HFRolloutEngine(
                model,
                self.tokenizer,
                max_new_tokens=c.max_new_tokens,
                temperature=c.temperature,
                top_k=c.top_k,
                top_p=c.top_p,
            )
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
        )

    def _group_rollout(
        self, items: list[PromptItem], encoded: list[list[int]], K: int, *, greedy: bool = False
    ) -> _Batch:
        """Sample K responses to each of G prompts, running each prompt's prefill once: the
        prompts (all but their last token) fill a KV cache ``(G, ...)``, repeated K times, and
        ``generate`` continues from it on the ``(G*K, P)`` batch. Same sampling distribution and
        settings as :class:`~judge_rl.train.rollout.HFRolloutEngine`. Where the lean sampling
        loop applies (judge_rl/train/_lean_decode.py, ``sample(group=K)``) it does the same
        with less work per step: the same tokens and random draws for the same seed
        (tests/train/test_grpo_lean.py).

        A LoRA policy shares the prefill only through the lean loop, in its
        ``last_in_prefill`` mode (the whole prompt prefilled once, the last position's logits
        repeated with the cache): the arithmetic of the plain rollout on the repeated prompts
        (bit for bit at one thread; with more threads some batch shapes differ in the last
        bits), which is what a LoRA policy runs where the lean loop does not apply (and ran
        before)."""
        import torch
        from transformers import DynamicCache

        from judge_rl.train._lean_decode import lean_decoder
        from judge_rl.train.rollout import left_pad, response_mask_from_ids, sampling_config

        c = self.config
        eng = self.engine
        q_ids, q_mask = left_pad(encoded, int(self.tokenizer.pad_token_id))  # (G, P)
        ids_k = q_ids.repeat_interleave(K, 0)  # (G*K, P)
        mask_k = q_mask.repeat_interleave(K, 0)  # (G*K, P)
        m: Any = self.policy
        dev = self.device
        was_training = m.training
        m.eval()
        lean = lean_decoder(m, top_k=None if greedy else c.top_k, top_p=c.top_p)
        if lean is None and self._peft:  # the plain rollout (HFRolloutEngine: generate)
            m.train(was_training)
            return self._rollout(items, [e for e in encoded for _ in range(K)], greedy=greedy)
        with torch.no_grad():
            if lean is not None:
                out = lean.sample(
                    q_ids.to(dev),
                    q_mask.to(dev),
                    max_new_tokens=c.max_new_tokens,
                    greedy=greedy,
                    temperature=c.temperature,
                    eos=eng.eos,
                    pad_id=eng.pad_id,
                    group=K,
                    last_in_prefill=self._peft,
                    top_k=c.top_k,
                    top_p=c.top_p,
                )  # (G*K, P + R')
            else:
                pos = (q_mask.cumsum(1) - 1).clamp(min=0)  # (G, P)
                cfg = sampling_config(
                    c.max_new_tokens, greedy, c.temperature, c.top_k, c.top_p, eng.pad_id, eng.eos
                )
                cache = DynamicCache()
                m(
                    input_ids=q_ids[:, :-1].to(dev),
                    attention_mask=q_mask[:, :-1].to(dev),
                    position_ids=pos[:, :-1].to(dev),
                    use_cache=True,
                    past_key_values=cache,
                )  # prefill (G, P-1)
                cache.batch_repeat_interleave(K)  # (G*K, heads, P-1, d)
                out = m.generate(
                    input_ids=ids_k.to(dev),
                    attention_mask=mask_k.to(dev),
                    past_key_values=cache,
                    generation_config=cfg,
                    synced_gpus=False,  # inside the full-parameter gather, as the PPO engine's
                )  # (G*K, P + R')
        if was_training:
            m.train()
        response_ids = out[:, ids_k.shape[1] :].cpu()  # (B, R')
        if response_ids.shape[1] == 0:
            response_ids = torch.full((ids_k.shape[0], 1), eng.eos[0], dtype=torch.long)
        mask, ended = response_mask_from_ids(response_ids, eng.eos)
        response_ids = torch.where(
            mask.bool(), response_ids, torch.full_like(response_ids, eng.pad_id)
        )
        texts = self.tokenizer.batch_decode(
            [ids[: int(k)].tolist() for ids, k in zip(response_ids, mask.sum(1), strict=True)],
            skip_special_tokens=True,
        )
        width = max(1, int(mask.sum(1).max()))
        return _Batch(items, ids_k, mask_k, response_ids[:, :width], mask[:, :width], ended, texts)

    def _can_share_prefill(self, encoded: list[list[int]]) -> bool:
        from judge_rl.train.rollout import HFRolloutEngine

        return (
            self.config.shared_prompt
            and isinstance(self.engine, HFRolloutEngine)
            and self.accelerator.num_processes == 1
            and min(len(e) for e in encoded) >= 2
        )

    def _score(self, batch: _Batch, K: int) -> list[float]:
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
        groups = [list(range(s, s + K)) for s in range(0, len(queries), K)]
        scores = [float(s) for s in self.group_reward(queries, groups)]
        if len(scores) != len(queries):
            raise RuntimeError(f"reward source returned {len(scores)} scores for {len(queries)}")
        return scores

    def train_step(self) -> dict[str, float]:
        """Run one step (rollout, score, group advantages, updates); returns its statistics."""
        import torch

        from judge_rl.train._group import group_advantages, group_diagnostics, grpo_loss
        from judge_rl.train.ppo import entropy_from_logits

        c, acc = self.config, self.accelerator
        K = c.group_size
        t0 = time.perf_counter()

        # 1. Rollout: each of G prompts K times, a group's samples contiguous --------------------
        idx = self._next_indices()
        items = [self.items[i] for i in idx for _ in range(K)]
        enc = [self._encoded[i] for i in idx]
        if self._can_share_prefill(enc):
            batch = self._group_rollout(items, enc, K)
        else:
            batch = self._rollout(items, [e for e in enc for _ in range(K)])
        B, R = batch.response_ids.shape
        G = B // K
        t_gen = time.perf_counter()

        # 2. Score; failures (NaN) leave their group's baseline and the update -------------------
        b_raw = torch.tensor(self._score(batch, K), dtype=torch.float32)  # (B,)
        batch.scores = b_raw.tolist()
        b_failed = torch.isnan(b_raw)  # (B,)
        b_scores = b_raw.clone()
        if c.missing_eos_penalty is not None:
            b_scores = b_scores - c.missing_eos_penalty * (~batch.ended).float()
        t_score = time.perf_counter()

        # 3. Group-relative advantages ------------------------------------------------------------
        g_valid = ~b_failed.view(G, K)  # (G, K)
        g_adv = group_advantages(b_scores.view(G, K), c.algorithm, valid=g_valid)  # (G, K)
        b_adv = g_adv.reshape(B).to(self.device)  # (B,)
        diag = group_diagnostics(b_scores.view(G, K), g_valid)
        b_mask = (batch.response_mask.float() * (~b_failed).float()[:, None]).to(self.device)

        # 4. Old and reference log-probabilities (no gradient; only when needed) -----------------
        mb = c.mini_batch_size or B
        reuse_old = c.epochs == 1 and mb == B  # π_old = π: the ratio is 1, clip inactive
        b_old = torch.zeros(B, R, device=self.device)  # (B, R)
        b_ref = torch.zeros(B, R, device=self.device) if self.has_reference else None  # (B, R)
        with torch.no_grad():
            for s in range(0, B, mb):
                rows = slice(s, s + mb)
                if not reuse_old:
                    b_old[rows] = self._logprobs(self.model, batch, rows)[0]
                if b_ref is not None:
                    b_ref[rows] = self._ref_logprobs(batch, rows)

        # 5. Updates: epochs over shuffled minibatches -----------------------------------------
        stats: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("loss", "policy_loss", "clip_frac", "approx_kl", "kl_k3")
        }
        b_lp_first = torch.zeros(B, R, device=self.device)  # (B, R) log π at the first pass
        b_entropy = torch.zeros(B, R, device=self.device)  # (B, R)
        any_signal = bool((b_adv != 0).any()) or c.beta > 0
        for epoch in range(c.epochs):
            b_inds = torch.randperm(B)
            for s in range(0, B, mb):
                mb_inds = b_inds[s : s + mb]
                mb_mask = b_mask[mb_inds]  # (b, R)
                new_lp, logits = self._logprobs(self.model, batch, mb_inds, want_logits=True)
                if epoch == 0:
                    with torch.no_grad():
                        b_lp_first[mb_inds] = new_lp.detach()
                        assert logits is not None
                        b_entropy[mb_inds] = entropy_from_logits(logits.detach())
                old = new_lp.detach() if reuse_old else b_old[mb_inds]
                loss, st = grpo_loss(
                    new_lp,
                    old,
                    b_adv[mb_inds],
                    mb_mask,
                    cliprange=c.cliprange,
                    cliprange_high=c.cliprange_high,
                    beta=c.beta,
                    ref_logprobs=b_ref[mb_inds] if (b_ref is not None and c.beta > 0) else None,
                    agg=c.loss_agg,
                    max_tokens=c.max_new_tokens,
                )
                if any_signal and mb_mask.sum() > 0:
                    self.optimizer.zero_grad(set_to_none=True)
                    acc.backward(loss)
                    if c.max_grad_norm:
                        acc.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                    self.optimizer.step()
                stats["loss"].append(loss.detach())
                stats["policy_loss"].append(st["policy_loss"])
                stats["clip_frac"].append(st["clip_frac"])
                stats["approx_kl"].append(st["approx_kl"])
                if "kl" in st:
                    stats["kl_k3"].append(st["kl"])
        self.engine.sync_weights(self.policy)
        t_train = time.perf_counter()

        # 6. Statistics (gathered over ranks) --------------------------------------------------
        from judge_rl.train.ppo import masked_mean

        m_all = batch.response_mask.float().to(self.device)  # (B, R)
        if b_ref is not None:
            # k1 under the policy that sampled (the first pass's values are that policy's only
            # when nothing was updated before them: one epoch, one minibatch)
            b_pol = b_lp_first if reuse_old else b_old  # (B, R)
            b_kl = ((b_pol - b_ref) * b_mask).sum(1)  # (B,) k1 sum per sample
        else:
            b_kl = torch.full((B,), NAN, device=self.device)
        per_sample = torch.stack(
            [
                b_raw.to(self.device),
                b_kl,
                m_all.sum(1),
                batch.ended.float().to(self.device),
                b_failed.float().to(self.device),
                masked_mean(b_entropy, m_all, dim=1),
                b_adv.abs(),
            ],
            dim=1,
        )  # (B, 7)
        g = acc.gather(per_sample) if acc.num_processes > 1 else per_sample  # (world*B, 7)
        ok = g[:, 4] == 0
        raw = g[ok, 0]
        losses = {k: torch.stack(v).mean() for k, v in stats.items() if v}
        if acc.num_processes > 1:
            losses = {k: acc.reduce(v, "mean") for k, v in losses.items()}
        n_global = int(g.shape[0])
        secs = max(t_train - t0, 1e-9)

        def mean_ok(col: int) -> float:
            return float(g[ok, col].mean()) if ok.any() else NAN

        out = {
            "step": float(self._step + 1),
            "reward_mean": float(raw.mean()) if ok.any() else NAN,
            "reward_std": float(raw.std(unbiased=False)) if ok.any() else NAN,
            "reward_failures": float((~ok).sum()),
            "frac_zero_std": diag["frac_zero_std"],
            "group_std": diag["group_std"],
            "group_range": diag["group_range"],
            "adv_abs_mean": mean_ok(6),
            "kl": mean_ok(1),
            "kl_k3": float(losses["kl_k3"]) if "kl_k3" in losses else NAN,
            "entropy": mean_ok(5),
            "response_length": float(g[:, 2].mean()),
            "eos_frac": float(g[:, 3].mean()),
            "loss": float(losses["loss"]),
            "policy_loss": float(losses["policy_loss"]),
            "clip_frac": float(losses["clip_frac"]),
            "approx_kl": float(losses["approx_kl"]),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "time_generate": t_gen - t0,
            "time_score": t_score - t_gen,
            "time_train": t_train - t_score,
            "completions_per_s": n_global / secs,
            "samples_per_s": n_global / secs,
        }
        self._step += 1
        self._last_batch = batch
        return out

    # -- the loop -------------------------------------------------------------------------------

    def train(self) -> PPOSection:
        """Run until ``config.steps`` steps are done (counted over resumes) or a callback stops
        training; returns the run log's ``ppo`` section."""
        import torch

        from judge_rl.train.callbacks import StepInfo

        c = self.config
        if self.is_main:
            for cb in self.callbacks:
                cb.on_train_start(self)
        while self._step < c.steps:
            stats = self.train_step()
            batch = self._last_batch
            assert batch is not None
            self.section.steps.append(stats)
            if self.is_main:
                for it, text, sc in list(zip(batch.items, batch.texts, batch.scores, strict=True))[
                    : c.log_samples
                ]:
                    self.section.samples.append(
                        {
                            "step": self._step,
                            "prompt": prompt_text(it.prompt),
                            "response": text,
                            "reward": sc,
                        }
                    )
            stop_flag = torch.zeros(1, device=self.device)
            if self.is_main:
                info = StepInfo(
                    step=self._step,
                    prompts=[it.prompt for it in batch.items],
                    responses=list(batch.texts),
                    rewards=list(batch.scores),
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
                from accelerate.utils import broadcast

                stop_flag = broadcast(stop_flag, from_process=0)
            stop = bool(stop_flag.item())
            if c.save_every and self._step % c.save_every == 0 and self._step < c.steps:
                self._save_full()
            self._save_log()
            if stop:
                break
        if c.output:
            self._save_full()
        if self.is_main:
            for cb in self.callbacks:
                cb.on_train_end(self)
        self._save_log()
        return self.section

    def _save_log(self) -> None:
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
                for k, v in data.items():
                    setattr(self.run_log, k, v if not isinstance(v, dict) else _coerce(k, v))
            else:
                self.run_log.extra[type(cb).__name__] = data
        self.run_log.ppo = self.section
        for part in ("generate", "score", "train"):
            self.run_log.timings[f"grpo_{part}"] = sum(
                s.get(f"time_{part}", 0.0) for s in self.section.steps
            )
        if self.run_dir is not None:
            self.run_log.save(self.run_dir)

    # -- checkpoints ----------------------------------------------------------------------------

    def _write_policy(self, path: Path) -> None:
        self.policy.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def save_checkpoint(self, tag: str | None = None) -> str:
        """Save the policy now as a model folder (tokenizer too); returns the folder. Not a
        resume point (see :meth:`_save_full`)."""
        name = f"checkpoint-{tag}" if tag else f"checkpoint-{self._step:06d}"
        path = Path(self.config.output or "grpo-output") / name
        if self.is_main:
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self._write_policy(tmp)
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
            self.section.checkpoints.append(
                {"step": self._step, "path": str(path), "tag": tag or ""}
            )
        return str(path)

    def _save_full(self) -> str:
        """A resume point: policy folder + optimiser, prompt cursor, RNG, log section."""
        import torch

        path = Path(self.config.output or "grpo-output") / f"checkpoint-{self._step:06d}"
        if path.exists() and (path / STATE_FILE).exists():
            return str(path)
        if self.is_main:
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self._write_policy(tmp)
            self.section.checkpoints.append({"step": self._step, "path": str(path)})
            state = {
                "step": self._step,
                "epoch": self._epoch,
                "cursor": self._cursor,
                "optimizer": self.optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "section": self.section.model_dump(mode="json"),
                "config": self.config.to_dict(),
            }
            save_trainer_state(state, tmp / STATE_FILE)
            (tmp / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=1))
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
        self.accelerator.wait_for_everyone()
        return str(path)

    def _resolve_resume(self, resume: str) -> Path:
        if resume != "latest":
            p = Path(resume)
            if not (p / STATE_FILE).exists():
                raise ConfigError(f"{p}: not a GRPO checkpoint (no {STATE_FILE})", setting="resume")
            return p
        root = Path(self.config.output or "grpo-output")
        found = sorted(p for p in root.glob("checkpoint-*") if (p / STATE_FILE).exists())
        if not found:
            raise ConfigError(f"{root}: no checkpoint to resume from", setting="resume")
        return found[-1]

    def _load_checkpoint(self, path: Path) -> None:
        import torch

        from judge_rl.runlog import PPOSection

        log.info("resuming from %s", path)
        # weights_only: a checkpoint folder is untrusted input (judge_rl/train/_checkpoint.py)
        state = load_trainer_state(path / STATE_FILE)
        if self._peft:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(
                self.policy, load_file(str(path / "adapter_model.safetensors"))
            )
        else:
            from transformers import AutoModelForCausalLM

            saved = AutoModelForCausalLM.from_pretrained(str(path))
            self.policy.load_state_dict(saved.state_dict())
            del saved
        self.optimizer.load_state_dict(state["optimizer"])
        self._step, self._epoch, self._cursor = state["step"], state["epoch"], state["cursor"]
        self.section = PPOSection.model_validate(state["section"])
        if self.run_log is not None:
            self.run_log.ppo = self.section
        if self.accelerator.process_index == 0:
            torch.set_rng_state(state["rng"])
        else:
            torch.manual_seed(self.config.seed + self.accelerator.process_index + 7919 * self._step)
        self.engine.sync_weights(self.policy)

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
        and ``ref_logprob`` (mean per token) unless ``score`` is false (texts only). Leaves
        training's RNG streams untouched."""
        import contextlib

        import torch

        from judge_rl.train.callbacks import Samples
        from judge_rl.train.ppo import _as_items, masked_mean

        items = _as_items(list(prompts))
        encoded = self._encode_prompts(items)
        out = Samples(prompts=list(prompts), responses=[])
        step = self.config.samples_per_step
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.config.seed + 104729 * (self._step + 1) + 7919 * stream)
            for s in range(0, len(items), step):
                sl = slice(s, s + step)
                ctx: Any = contextlib.nullcontext()
                model = None
                if reference and self.ref_policy is not None:
                    model = self.ref_policy
                elif reference and self._peft:
                    ctx = self.policy.disable_adapter()
                with ctx:
                    batch = self._rollout(
                        items[sl],
                        encoded[sl],
                        greedy=greedy,
                        max_new_tokens=max_new_tokens,
                        model=model,
                    )
                mask = batch.response_mask.float().to(self.device)  # (b, R)
                rows = slice(0, len(batch.texts))
                if score and self.has_reference:
                    lp = self._logprobs(self.model, batch, rows)[0]  # (b, R)
                    ref = self._ref_logprobs(batch, rows)  # (b, R)
                    out.kl.extend(((lp - ref) * mask).sum(1).tolist())
                    out.ref_logprob.extend(masked_mean(ref, mask, dim=1).tolist())
                elif score:
                    out.kl.extend([NAN] * len(batch.texts))
                    out.ref_logprob.extend([NAN] * len(batch.texts))
                out.responses.extend(batch.texts)
                out.response_tokens.extend(
                    ids[: int(k)].tolist()
                    for ids, k in zip(batch.response_ids, batch.response_mask.sum(1), strict=True)
                )
                out.ended_with_eos.extend(bool(e) for e in batch.ended)
        return out


def _coerce(key: str, value: dict[str, Any]) -> Any:
    """Validate a callback's dict into the run log's section model."""
    import typing

    from judge_rl.runlog import RunLog

    annotation = RunLog.model_fields[key].annotation
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and hasattr(arg, "model_validate"):
            return arg.model_validate(value)
    return value


__all__ = [
    "GRPOConfig",
    "GRPOTrainer",
    "GroupPairwiseReward",
    "GroupReward",
    "dataclass_field_docs",
]
