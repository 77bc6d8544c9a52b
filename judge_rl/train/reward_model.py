"""Bradley-Terry reward models: train one on preference pairs, and score responses with it.

A reward model is a causal LM with a scalar head (``AutoModelForSequenceClassification``,
``num_labels=1``) that reads a prompt and a response and returns one number ``r``; it is trained
so that ``r(chosen) > r(rejected)``. The training loop, top to bottom:

1. tokenise every pair once (:mod:`judge_rl.train.rm_data`), split off a held-out set;
2. each optimizer step takes ``grad_accum`` length-grouped micro-batches of the *global* batch
   (``batch_size × processes`` pairs); each process takes its slice of each;
3. chosen and rejected run through the model in ONE forward pass, concatenated along the batch,
   right-padded with no attention mask (causal attention never looks at the trailing pads);
4. the per-pair loss (:func:`pair_loss`): Bradley-Terry with optional margin, soft labels, and the
   centre-reward penalty; summed and divided by the pairs in the whole step, so 1 process and N
   processes (DDP averages gradients) take the same step; several processes run through
   accelerate (DDP, FSDP or DeepSpeed as ``accelerate launch`` configures them, like PPO);
5. clip, step, schedule; one host sync per step for the progress line and the NaN check;
6. every ``eval_every`` steps: held-out accuracy, margin, ECE, reward distributions into the run
   log; every ``save_every`` steps: a checkpoint folder that ``from_pretrained`` loads, plus the
   optimizer, scheduler, RNG state and the step (which fixes the data position).

Scoring (:class:`RewardModelScorer`) formats text the same way and reads the reward at each
sequence's last token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from judge_rl.errors import ConfigError, DataError, JudgeRLError
from judge_rl.train.rm_data import (
    TokenizedPairs,
    encode_many,
    length_grouped_batches,
    pad_right,
    shared_prefix_saving,
    shared_prefix_tensors,
    split_eval,
    tokenize_pairs,
)
from judge_rl.types import PreferenceRecord, Prompt

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from judge_rl.runlog import RewardModelSection, RunLog
    from judge_rl.train.rewards import RewardQuery

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
OPTIM_SHARD_FILE = "optimizer-rank{rank}.pt"  # = sharding.OPTIM_PART_FILE
"""Each rank's part of a sharded optimiser's state (DeepSpeed ZeRO, FSDP), in the checkpoint."""
META_FILE = "reward_model.json"
CHECKPOINT_PREFIX = "checkpoint-"


class TrainingDiverged(JudgeRLError):
    """The loss or gradient became NaN/inf; the last checkpoint on disk is intact."""


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class RewardModelConfig:
    """Settings of ``judge-rl train-rm`` (each one is a CLI option of the same name)."""

    data: str = ""
    """Preference file (JSONL/JSON/CSV/Parquet, TRL's ``prompt/chosen/rejected`` format)."""
    model: str = "embedded"
    """Backbone: a transformers model folder or hub name, or ``embedded`` (SmolLM2-135M)."""
    output: str = ""
    """Folder for the trained model (``from_pretrained``-loadable) and its checkpoints."""
    epochs: int = 1
    """Passes over the training pairs."""
    lr: float = 5e-5
    """Peak learning rate of AdamW (linear warm-up, then linear decay to 0)."""
    batch_size: int = 8
    """Pairs per micro-batch per process (the global batch is this × processes)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_length: int = 1024
    """Token limit of prompt + response; longer pairs are dropped or cut (``truncation``)."""
    truncation: Literal["drop", "left"] = "drop"
    """``drop`` over-long pairs (as TRL does) or ``left``-cut them (keep the responses' ends)."""
    soft_labels: bool = False
    """Train on ``p_chosen`` as a soft target; otherwise round it to 1, 0.5 (tie) or 0."""
    margin: bool = False
    """Subtract each record's ``margin`` inside the Bradley-Terry sigmoid (Llama 2)."""
    center_coef: float = 0.0
    """Weight of the centre-reward penalty ``(r_c + r_r)^2`` (0 = off; TRL suggests 0.01)."""
    eval_split: float = 0.1
    """Fraction of pairs held out for evaluation (0 = no held-out set)."""
    eval_every: int = 100
    """Evaluate every N optimizer steps (and always at the end); 0 = only at the end."""
    save_every: int = 200
    """Checkpoint every N optimizer steps (and always at the end); 0 = only at the end."""
    keep_checkpoints: int = 2
    """How many step checkpoints to keep (oldest removed first)."""
    seed: int = 0
    """Seeds the split, the data order and the new head's initialisation."""
    resume: bool = False
    """Continue from the newest checkpoint in ``output`` (same data order)."""
    run: str | None = None
    """Run name: the run log goes to ``reports/<run>/log.json``."""
    bf16: Literal["auto", "on", "off"] = "auto"
    """bf16 autocast: ``auto`` = on for CUDA with bf16, off on CPU (measured slower there)."""
    max_steps: int = 0
    """Stop after this many optimizer steps in total (0 = run all epochs)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.0
    """Fraction of the steps spent warming the learning rate up from 0."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 = no clipping)."""
    log_every: int = 10
    """Record loss/accuracy/pairs-per-second in the run log every N steps."""
    threads: int = 0
    """CPU threads for torch (0 = the cores available divided among local processes)."""
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:1``…; default: CUDA when present (the local rank's GPU)."""
    eval_batch_size: int = 0
    """Pairs per evaluation batch (0 = 2 × batch_size)."""
    attn: str = "auto"
    """Attention kernel for training: ``eager``, ``sdpa``, or ``auto`` = sdpa (torch's fused
    kernel, memory linear in the length; on CPU with torch 2.13 also faster than eager for short
    inputs, shared-prefix mask included: ``benchmarks/bench_reward_model.py --ablation``)."""
    shared_prefix: bool = True
    """Run the tokens chosen and rejected share (the prompt, often more) once per pair, not
    twice, when that saves ≥ 10% of the work; checked against the plain forward at start-up."""
    mixed_precision: str = "auto"
    """Autocast: ``no``, ``bf16``, ``fp16`` (GPU, with loss scaling) or ``auto`` (the ``bf16``
    setting decides)."""
    dtype: str = "float32"
    """Master weights: bf16-stored checkpoints are upcast (``auto`` keeps the stored dtype)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward instead of keeping them (less
    memory, about a third more compute; transformers' non-reentrant checkpointing). The shared
    prompt is still run once per pair (its layers are checkpointed with their cache)."""
    save_optimizer: bool = False
    """Keep the optimiser's state in the final checkpoint (only needed to train on past the
    end; intermediate checkpoints always keep it, for resuming). Off: a finished 135M model's
    output is ~0.5 GB, not 1.6 GB."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad setting."""
        positive = ("epochs", "batch_size", "grad_accum", "max_length")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", setting=name)
        for name in ("eval_every", "save_every", "max_steps", "threads", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ConfigError(f"must be >= 0, got {getattr(self, name)}", setting=name)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"must be a positive number, got {self.lr}", setting="lr")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.warmup_ratio}", setting="warmup_ratio")
        if not (math.isfinite(self.center_coef) and self.center_coef >= 0):
            raise ConfigError(
                f"must be a finite number >= 0, got {self.center_coef}", setting="center_coef"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                f"must be a finite number >= 0, got {self.weight_decay}", setting="weight_decay"
            )
        if not (math.isfinite(self.eval_split) and 0.0 <= self.eval_split < 1.0):
            raise ConfigError(f"must be in [0, 1), got {self.eval_split}", setting="eval_split")
        if self.attn not in ("auto", "eager", "sdpa", "flash_attention_2"):
            raise ConfigError(
                f"must be auto, eager, sdpa or flash_attention_2, got {self.attn!r}", setting="attn"
            )
        if self.bf16 not in ("auto", "on", "off"):
            raise ConfigError(f"must be auto, on or off, got {self.bf16!r}", setting="bf16")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ConfigError(
                f"must be auto, no, bf16 or fp16, got {self.mixed_precision!r}",
                setting="mixed_precision",
            )
        from judge_rl.train.precision import parse_dtype

        parse_dtype(self.dtype, setting="dtype")
        if not self.output:
            raise ConfigError("an output folder is required", setting="output")
        from judge_rl._io import check_output_dir

        check_output_dir(self.output, "output")  # an existing file here fails before any work


# ---------------------------------------------------------------------------------------------
# Losses (one function per term; per pair, so the caller chooses the normalisation)


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pair ``-log σ(r_c − r_r − m)``.

    Bradley-Terry preference likelihood as the reward-model loss: Ouyang et al. 2022,
    "Training language models to follow instructions with human feedback" (InstructGPT), eq. 1.
    The margin ``m`` (a known preference strength) is from Touvron et al. 2023, "Llama 2",
    §3.2.2, eq. 2. Shapes: all ``(B,)``.
    """
    import torch.nn.functional as F

    delta = r_chosen - r_rejected  # (B,)
    if margin is not None:
        delta = delta - margin
    return -F.logsigmoid(delta)  # (B,)


def soft_label_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    p_chosen: torch.Tensor,
    margin: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair ``−[p·log σ(Δ) + (1−p)·log σ(−Δ)]`` with ``Δ = r_c − r_r − m``.

    Cross-entropy of the Bradley-Terry probability ``σ(Δ)`` against a soft label ``p`` (a judge's
    probability; a tie is ``p = 0.5``): its minimum is at ``Δ = log(p / (1−p))``. This is the
    label-smoothed / soft-target form of the InstructGPT loss, as used for AI-feedback labels in
    Bai et al. 2022, "Constitutional AI" §4.1 (soft preference targets from a feedback model).
    ``p = 1`` reduces to :func:`bradley_terry_loss`. Shapes: all ``(B,)``.
    """
    import torch.nn.functional as F

    delta = r_chosen - r_rejected  # (B,)
    if margin is not None:
        delta = delta - margin
    return -(p_chosen * F.logsigmoid(delta) + (1.0 - p_chosen) * F.logsigmoid(-delta))  # (B,)


def center_rewards_penalty(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair ``(r_c + r_r)^2``: pulls the mean reward toward 0 so rewards of different models
    (or runs) are on a comparable scale, which the BT loss alone leaves free.

    Eisenstein et al. 2023, "Helping or Herding? Reward Model Ensembles Mitigate but do not
    Eliminate Reward Hacking", eq. 2 (auxiliary loss); the same term as TRL's
    ``center_rewards_coefficient``. Shapes: all ``(B,)``.
    """
    return (r_chosen + r_rejected) ** 2  # (B,)


def pair_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    p_chosen: torch.Tensor,
    margin: torch.Tensor | None,
    center_coef: float = 0.0,
) -> torch.Tensor:
    """The full per-pair training loss ``(B,)``: soft-label BT (= plain BT when ``p = 1``) plus
    ``center_coef ×`` the centre penalty."""
    loss = soft_label_loss(r_chosen, r_rejected, p_chosen, margin)  # (B,)
    if center_coef:
        loss = loss + center_coef * center_rewards_penalty(r_chosen, r_rejected)
    return loss


def expected_calibration_error(
    conf: Sequence[float], target: Sequence[float], n_bins: int = 10
) -> float:
    """ECE (Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3): the
    count-weighted mean over equal-width confidence bins of ``|mean(target) − mean(conf)|``.

    ``target`` may be soft (a judge's probability) or 0/1.

    >>> round(expected_calibration_error([0.9, 0.9, 0.1, 0.1], [1, 1, 0, 0]), 3)
    0.1
    >>> expected_calibration_error([], [])
    0.0
    """
    n = len(conf)
    if n == 0:
        return 0.0
    bins: list[list[tuple[float, float]]] = [[] for _ in range(n_bins)]
    for c, t in zip(conf, target, strict=True):
        bins[min(int(c * n_bins), n_bins - 1)].append((c, t))
    total = 0.0
    for b in bins:
        if b:
            gap = sum(t for _, t in b) / len(b) - sum(c for c, _ in b) / len(b)
            total += len(b) / n * abs(gap)
    return total


# ---------------------------------------------------------------------------------------------
# Model


def _quiet_transformers() -> Any:
    """Silence the expected 'newly initialised score head' warnings while loading."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    return level


def load_reward_model(
    name_or_path: str, *, seed: int = 0, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal-LM backbone with a fresh scalar head (or a trained reward model) and its
    tokenizer, with the pad token set on both.

    ``name_or_path``: a model folder, a hub name, or an embedded alias (``embedded``).
    """
    import pickle

    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from judge_rl.models import load_tokenizer, resolve_model

    path = resolve_model(name_or_path)
    tok = load_tokenizer(name_or_path, padding_side="right")
    torch.manual_seed(seed)  # the new head's initialisation
    level = _quiet_transformers()
    try:
        # transformers reads pickled weights (pytorch_model.bin) weights-only: a pickle that
        # asks for code is refused (UnpicklingError), never run
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    except (OSError, ValueError, pickle.UnpicklingError) as e:
        raise ConfigError(
            f"cannot load {name_or_path!r} as a reward model: {_load_error_reason(e)}",
            setting="model",
        ) from None
    finally:
        hf_logging.set_verbosity(level)
    model.config.pad_token_id = tok.pad_token_id
    if device:
        model.to(device)
    return model, tok


def read_positions(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``(N, width)`` bool, True at each right-padded sequence's last real token: the one
    position per sequence whose final hidden state the reward head reads."""
    import torch

    cols = torch.arange(width, device=lengths.device)  # (T,)
    return cols[None, :] == (lengths - 1)[:, None]  # (N, T)


def _checkpointing(model: Any) -> bool:
    """Does the model re-run its forward in the backward (gradient/activation checkpointing)?"""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):  # new name first
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


def _read_only(model: Any, keep: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """The last decoder layer's MLP on the ``keep`` rows only (:mod:`judge_rl.train._last_mlp`)
    for one forward pass, where nothing re-runs that pass later: no gradient, or no gradient
    checkpointing (autograd keeps what ran; a checkpointed backward re-runs the forward, so the
    caller's block must then cover the backward: :meth:`_Trainer._read_block`)."""
    import torch

    if torch.is_grad_enabled() and _checkpointing(model):
        return contextlib.nullcontext()
    from judge_rl.train._last_mlp import last_mlp_only

    return last_mlp_only(keep, model)


def sequence_rewards(
    model: PreTrainedModel, input_ids: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Reward of each right-padded sequence, read at its last real token. Returns ``(N,)``
    float32.

    The backbone runs without an attention mask: with right padding, causal attention never lets
    a real token see a pad, so the rewards do not depend on how much padding a batch has. The
    head runs on the N last hidden states only, not on all N×T positions, and the last decoder
    layer's MLP only at those N positions (the others' outputs are never read).
    """
    import torch

    backbone = getattr(model, model.base_model_prefix, None)
    head = getattr(model, "score", None)
    n = input_ids.shape[0]
    if backbone is None or head is None:  # unusual architecture: let it pool itself
        mask = torch.arange(input_ids.shape[1], device=input_ids.device)[None] < lengths[:, None]
        out = model(input_ids=input_ids, attention_mask=mask.long())
        return out.logits.squeeze(-1).float()  # (N,)
    with _read_only(model, read_positions(lengths, input_ids.shape[1])):
        hidden = backbone(input_ids=input_ids, use_cache=False).last_hidden_state  # (N, T, H)
    last = hidden[torch.arange(n, device=hidden.device), lengths - 1]  # (N, H)
    return head(last).squeeze(-1).float()  # (N,)


def shared_prefix_rewards(
    model: PreTrainedModel,
    prefix: torch.Tensor,
    suffix: torch.Tensor,
    suffix_len: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of B pairs whose chosen and rejected sides share a token prefix, computing the
    prefix once. Returns ``(r_chosen (B,), r_rejected (B,))`` float32.

    In a causal LM the hidden states of a shared prefix do not depend on what follows, so the
    prefix runs once (``(B, Tp)``), its keys/values are gathered for the two sides, and only the
    suffixes run twice (``(2B, Ts)``), attending to their pair's real prefix tokens through
    ``mask``. Gradients flow through the cached keys/values. Inputs come from
    :func:`judge_rl.train.rm_data.shared_prefix_tensors`. The last decoder layer's MLP runs
    only at each suffix's last real token (none of the prefix's rows: only its keys and values
    are read).

    Under gradient checkpointing (a model in training mode, gradients on) the two passes go
    through :func:`judge_rl.train._shared_prompt.shared_prefix_hidden`: each checkpointed layer
    is checkpointed with its cache, the backward recomputes it, and the rewards and gradients
    are the plain layout's. The rows restriction must then cover the backward
    (:meth:`_Trainer._read_block`); here it is skipped (:func:`_read_only`).
    """
    import torch

    from judge_rl.train._shared_prompt import shared_prefix_hidden

    # Only the prefix's keys/values are read: its last-layer MLP output is not (no row kept).
    # Both blocks are decided here, before the shared forward switches the checkpoint flags off.
    none = torch.zeros(prefix.shape, dtype=torch.bool, device=prefix.device)  # (B, Tp)
    own = torch.arange(prefix.shape[0], device=prefix.device).repeat_interleave(2)  # (2B,)
    _, hidden = shared_prefix_hidden(
        model,
        prefix,
        own,  # rows 2i, 2i+1 (pair i's chosen and rejected suffix) read pair i's prefix
        suffix,
        mask,
        positions,
        prefix_block=_read_only(model, none),
        suffix_block=_read_only(model, read_positions(suffix_len, suffix.shape[1])),
    )  # (2B, Ts, H)
    last = hidden[torch.arange(suffix.shape[0], device=hidden.device), suffix_len - 1]  # (2B, H)
    head: Any = model.score
    r = head(last).squeeze(-1).float()  # (2B,)
    return r[0::2], r[1::2]


def _reward_module(model: PreTrainedModel) -> torch.nn.Module:
    """Wrap the model so DDP sees a forward that takes (ids, lengths) and returns rewards."""
    import torch

    class RewardForward(torch.nn.Module):
        def __init__(self, m: PreTrainedModel) -> None:
            super().__init__()
            self.model = m

        def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            if "prefix" in batch:
                return shared_prefix_rewards(
                    self.model,
                    batch["prefix"],
                    batch["suffix"],
                    batch["suffix_len"],
                    batch["mask"],
                    batch["positions"],
                )
            r = sequence_rewards(self.model, batch["ids"], batch["lengths"])  # (2B,)
            b = r.shape[0] // 2
            return r[:b], r[b:]

    return RewardForward(model)


def _set_attention(model: PreTrainedModel, impl: str) -> None:
    """Switch the attention kernel of a loaded model (no-op where unsupported)."""
    setter = getattr(model, "set_attn_implementation", None)
    try:
        if setter is not None:
            setter(impl)
        else:
            model.config._attn_implementation = impl
    except (ValueError, ImportError, AttributeError) as e:
        log.info("keeping the model's attention kernel (%s)", e)


def cpu_supports_bf16() -> bool:
    """Native bf16 matmuls on this CPU (AVX512-BF16 or AMX), as oneDNN reports it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def resolve_bf16(setting: str, device: str) -> bool:
    """``on``/``off`` as given; ``auto``: on for CUDA with bf16 support, off on CPU.

    On CPU, bf16 autocast measured *slower* for this trainer's batches (benchmark: 8.4 vs 10.5
    pairs/s, AVX512-BF16 CPU), although it sped TRL's up: the casts cost more than the bf16
    matmuls of short, unpadded batches save. ``--bf16 on`` still forces it.
    """
    import torch

    if setting == "on":
        return True
    if setting == "off":
        return False
    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    return False


def _autocast(device: str, enabled: bool, dtype: Any = None) -> Any:
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(
        device_type="cuda" if device.startswith("cuda") else "cpu",
        dtype=dtype or torch.bfloat16,
    )


# ---------------------------------------------------------------------------------------------
# Distributed set-up (torchrun / accelerate launch set RANK, WORLD_SIZE, LOCAL_RANK)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    initialised_here: bool = False
    accelerator: Any = None
    """The ``Accelerator`` of a multi-process (or sharded) run: DDP, FSDP or DeepSpeed as
    ``accelerate launch``'s config says; None for one plain process."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def _init_dist(device: str) -> _Dist:
    """Processes through accelerate, like PPO: DDP, FSDP or DeepSpeed as ``accelerate launch``
    configures it (also plain ``torchrun``: DDP). One process without sharding stays plain."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    from judge_rl.train.ppo import sharding_requested

    if world <= 1 and not sharding_requested():
        return _Dist()
    import torch.distributed as dist

    from judge_rl.train.ppo import make_accelerator

    fresh = not dist.is_initialized()
    acc = make_accelerator(cpu=device == "cpu")
    return _Dist(
        rank=acc.process_index,
        world=acc.num_processes,
        local_rank=acc.local_process_index,
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(acc.num_processes))),
        initialised_here=fresh and dist.is_initialized(),
        accelerator=acc,
    )


def auto_threads(local_world: int = 1) -> int:
    """CPU threads per process: the idle cores (cores minus the 1-minute load average) shared
    among the local processes, at least 1.

    On a busy machine more threads than idle cores make every OpenMP barrier wait for a
    descheduled thread; measured here, 2 threads on 2 busy cores ran a step 8× slower than 1.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        idle = cores - os.getloadavg()[0]
    except OSError:
        idle = cores
    return max(1, min(cores, int(idle + 0.5)) // max(1, local_world))


def _set_threads(threads: int, local_world: int) -> int:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(auto_threads(local_world))
    return torch.get_num_threads()


# ---------------------------------------------------------------------------------------------
# Events for progress bars and tests


@dataclass
class RMEvent:
    """What the trainer reports to hooks: ``start``, ``step``, ``eval``, ``save``, ``end``."""

    kind: str
    step: int
    total_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    path: str | None = None
    model: Any = None
    """The (unwrapped) model, for hooks that inspect or fault-inject."""


Hook = Callable[[RMEvent], None]


@dataclass
class TrainResult:
    """What :func:`train_reward_model` returns."""

    output_dir: Path
    section: RewardModelSection
    steps: int
    final: dict[str, float]
    time_s: float
    pairs_per_s: float


# ---------------------------------------------------------------------------------------------
# Training


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to 1 over ``warmup`` steps, then linear decay to 0 at ``total`` (the
    schedule of HF's ``get_linear_schedule_with_warmup``, TRL's default)."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def _fingerprint(cfg: RewardModelConfig, train: TokenizedPairs, world_batch: int) -> dict[str, Any]:
    """What a resumed run must share with the original for the same data order."""
    from judge_rl._io import content_hash

    return {
        "data": content_hash([train.lengths, train.p_chosen, train.margin]),
        "global_batch": world_batch,
        "grad_accum": cfg.grad_accum,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
    }


def latest_checkpoint(output: str | os.PathLike[str]) -> Path | None:
    """The newest complete ``checkpoint-<step>`` folder in ``output``, if any."""
    out = Path(output)
    if not out.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for p in out.iterdir():
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).exists():
            try:
                step = int(p.name[len(CHECKPOINT_PREFIX) :])
            except ValueError:
                continue
            if best is None or step > best[0]:
                best = (step, p)
    return best[1] if best else None


def _load_error_reason(e: BaseException) -> str:
    """One line of a load error: torch's weights-only refusal names the disallowed global in
    its ``WeightsUnpickler error`` line (the rest of its message suggests loading unsafely)."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    line = next(
        (x for x in lines if x.startswith("WeightsUnpickler error")),
        lines[0] if lines else type(e).__name__,
    )
    return line.split(". Please use ")[0]  # not torch's advice to allow-list the global


_STATE_KEYS = ("step", "optimizer", "scheduler", "rng", "fingerprint", "section")


def _read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's trainer state (``trainer_state.pt``), read as plain data only
    (:func:`judge_rl.train._checkpoint.load_trainer_state`: ``weights_only=True``, never an
    object of the file's choosing; a checkpoint folder may come from anywhere). What the trainer
    saves is such data (the run-log section as a JSON dict; checked at save time).

    Raises:
        ConfigError: naming the file, when it is not such a state (tampered, from another
            tool, truncated).
    """
    from judge_rl.train._checkpoint import load_trainer_state

    state = load_trainer_state(path, map_location="cpu")
    if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
        raise ConfigError(
            f"{path}: not a judge-rl train-rm trainer state (expected a dict with "
            f"{', '.join(_STATE_KEYS)})",
            setting="resume",
        )
    return state


def _read_records(cfg: RewardModelConfig) -> list[PreferenceRecord]:
    if not cfg.data:
        raise ConfigError("a preference file is required", setting="data")
    if not Path(cfg.data).exists():
        raise ConfigError(f"{cfg.data}: no such file", setting="data")
    from judge_rl.data import read_preferences

    return list(read_preferences(cfg.data).records)


class _Trainer:
    """State of one training run; methods are the steps of the loop in the module docstring."""

    def __init__(
        self,
        cfg: RewardModelConfig,
        records: Sequence[PreferenceRecord],
        model: PreTrainedModel | None,
        tokenizer: PreTrainedTokenizerBase | None,
        hooks: Sequence[Hook],
        run_log: RunLog | None,
        log_dir: Path | None,
    ) -> None:
        import torch

        from judge_rl.runlog import RewardModelSection

        self.cfg = cfg
        self.hooks = list(hooks)
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dist = _init_dist(self.device)
        if self.dist.accelerator is not None:
            self.device = str(self.dist.accelerator.device)
        elif self.device == "cuda" and self.dist.world > 1:
            self.device = f"cuda:{self.dist.local_rank}"
        self.threads = _set_threads(cfg.threads, self.dist.local_world)
        from judge_rl.train.precision import PrecisionPolicy

        mp = cfg.mixed_precision
        if mp == "auto":
            mp = "bf16" if resolve_bf16(cfg.bf16, self.device) else "no"
        self.precision = PrecisionPolicy.from_settings(mp, cfg.dtype)
        self.precision.validate(self.device)
        self.bf16 = mp == "bf16"
        self.scaler = torch.amp.GradScaler("cuda") if mp == "fp16" else None
        self.out = Path(cfg.output)
        if self.dist.main and self.out.exists():
            # a kill during a save leaves .tmp-* folders: never reused, removed here
            for t in self.out.glob(".tmp-*"):
                if t.is_dir():
                    shutil.rmtree(t, ignore_errors=True)
                else:
                    t.unlink(missing_ok=True)
        self.run_log = run_log
        self.log_dir = log_dir

        resume_from = latest_checkpoint(self.out) if cfg.resume else None
        if cfg.resume and resume_from is None:
            log.info("no checkpoint in %s: starting from scratch", self.out)
        self.resume_from = resume_from
        if resume_from is not None:
            model, tokenizer = load_reward_model(str(resume_from), seed=cfg.seed)
        elif model is None or tokenizer is None:
            model, tokenizer = load_reward_model(cfg.model, seed=cfg.seed)
        else:
            tokenizer.padding_side = "right"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model.config.pad_token_id = tokenizer.pad_token_id
        # fp32 master weights (a bf16-stored backbone is upcast), the score head included
        self.precision.to_master(model)
        self.model: Any = model.to(self.device)  # type: ignore[arg-type]
        if cfg.gradient_checkpointing:
            from judge_rl.train._ppo_models import enable_gradient_checkpointing

            if not enable_gradient_checkpointing(self.model):
                raise ConfigError(
                    f"{type(self.model).__name__} does not support gradient checkpointing",
                    setting="gradient_checkpointing",
                )
        self.tok = tokenizer
        _set_attention(self.model, cfg.attn if cfg.attn != "auto" else "sdpa")

        # 1. tokenise once, split
        if not records:
            raise DataError("no preference pairs to train on", file=cfg.data or None)
        pairs = tokenize_pairs(
            records,
            tokenizer,
            max_length=cfg.max_length,
            soft_labels=cfg.soft_labels,
            use_margin=cfg.margin,
            truncation=cfg.truncation,
            file=cfg.data or None,
        )
        if len(pairs) == 0:
            longest = max(
                len(x)
                for x in encode_many(
                    tokenizer, [r.prompt for r in records[:50]], [r.chosen for r in records[:50]]
                )
            )
            raise DataError(
                f"all {len(records)} pairs are longer than --max-length {cfg.max_length} tokens "
                f"(e.g. {longest} tokens); raise --max-length or use --truncation left",
                file=cfg.data or None,
            )
        tr, ev = split_eval(len(pairs), cfg.eval_split, cfg.seed)
        self.train = pairs.subset(tr)
        self.eval = pairs.subset(ev)
        self.truncated = pairs.truncated
        if pairs.truncated:
            log.warning(
                "%d of %d pairs exceed max_length=%d (%s)",
                pairs.truncated,
                len(records),
                cfg.max_length,
                "dropped" if cfg.truncation == "drop" else "cut from the left",
            )
        self.global_batch = cfg.batch_size * self.dist.world
        if len(self.train) < self.dist.world:
            raise DataError(
                f"{len(self.train)} training pairs cannot be shared among "
                f"{self.dist.world} processes",
                file=cfg.data or None,
            )
        self.lengths = self.train.lengths
        n_batches = len(self._batches(0))
        self.steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)

        # optimiser and schedule
        self.module = _reward_module(self.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        # One process, fp32 weights, no loss scaling: the fused AdamW kernel (the same update;
        # measured 4-5 ms a step against 14-15 ms for the per-tensor loop, 2.7M parameters, CPU)
        fused = (
            self.dist.accelerator is None
            and self.scaler is None
            and all(p.dtype == torch.float32 for p in params)
            and self.device.split(":")[0] in ("cpu", "cuda")
        )
        self.optimizer: Any = torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True if fused else None
        )
        # the schedule sets the learning rate in the torch optimizer's parameter groups, which
        # the wrappers keep using (DeepSpeed's ZeRO optimizer is no torch Optimizer to schedule)
        base_opt = self.optimizer
        acc = self.dist.accelerator
        if acc is not None:
            self._configure_deepspeed(acc)
            # DDP, FSDP or DeepSpeed, as accelerate launch configured (model and optimiser
            # together: DeepSpeed builds its engine from both)
            self.forward, self.optimizer = acc.prepare(self.module, self.optimizer)
        else:
            self.forward = self.module
        warmup = int(cfg.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            base_opt, _schedule(warmup, self.total_steps)
        )
        self.shared_ok = self._check_shared_prefix()
        self.fingerprint = _fingerprint(cfg, self.train, self.global_batch)
        self.step = 0
        self.section = RewardModelSection(
            model=cfg.model,
            output_dir=str(self.out),
            n_train=len(self.train),
            n_eval=len(self.eval),
            truncated=self.truncated,
        )
        self.section.model_extra["bf16"] = self.bf16  # type: ignore[index]
        self.section.model_extra["processes"] = self.dist.world  # type: ignore[index]
        acc = self.dist.accelerator
        self.section.model_extra["distributed"] = (  # type: ignore[index]
            str(acc.distributed_type).split(".")[-1] if acc is not None else "NO"
        )
        self.section.model_extra["threads"] = self.threads  # type: ignore[index]
        self.section.model_extra["shared_prefix"] = self.shared_ok  # type: ignore[index]
        if resume_from is not None:
            self._load_state(resume_from)

    def _configure_deepspeed(self, acc: Any) -> None:
        """DeepSpeed's micro-batch (``auto`` in its config: accelerate takes it from a data loader,
        and this trainer prepares none) and gradient clipping (DeepSpeed clips inside its engine
        step; ``auto`` takes ``max_grad_norm``). The engine steps at the end of every backward
        that accelerate marks as a boundary; the micro-batches of one optimizer step are marked
        (:meth:`train_step`). No-op without DeepSpeed."""
        if getattr(acc.state, "deepspeed_plugin", None) is None:
            return
        from judge_rl.train.sharding import configure_deepspeed

        ds = acc.state.deepspeed_plugin.deepspeed_config
        gas = ds.get("gradient_accumulation_steps", "auto")
        if gas not in ("auto", 1):
            raise ConfigError(
                f"the DeepSpeed config's gradient_accumulation_steps is {gas}: set it to 1 or "
                "auto and use --grad-accum (train-rm accumulates its micro-batches itself)",
                setting="grad_accum",
            )
        ds["gradient_accumulation_steps"] = 1
        configure_deepspeed(acc, self.cfg.batch_size, max_grad_norm=self.cfg.max_grad_norm)

    # -- data order --------------------------------------------------------------------------

    def _batches(self, epoch: int) -> list[list[int]]:
        """The epoch's global batches; a last batch too small to give every process a pair is
        dropped (only possible with several processes). Built once per epoch (a function of
        seed and epoch alone; every step reads its slice): building it at every step cost
        0.18 s of CPU per step at 100,000 pairs, 38 min over an epoch of batch 8."""
        cached = self.__dict__.get("_epoch_batches")
        if cached is not None and cached[0] == epoch:
            return cached[1]  # type: ignore[no-any-return]
        b = length_grouped_batches(self.lengths, self.global_batch, seed=self.cfg.seed, epoch=epoch)
        if self.dist.world > 1:
            b = [x for x in b if len(x) >= self.dist.world]
        self._epoch_batches = (epoch, b)
        return b

    def _step_batches(self, step: int) -> list[list[int]]:
        """The micro-batches of optimizer step ``step`` (fixed by the step number alone)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        ga = self.cfg.grad_accum
        return self._batches(epoch)[k * ga : (k + 1) * ga]

    def _tensors(self, idx: Sequence[int], data: TokenizedPairs) -> tuple[torch.Tensor, ...]:
        """Chosen then rejected, right-padded into one ``(2B, T)`` batch."""
        import torch

        seqs = [data.chosen[i] for i in idx] + [data.rejected[i] for i in idx]
        ids, lengths = pad_right(seqs, self.tok.pad_token_id)  # (2B, T), (2B,)
        p = torch.tensor([data.p_chosen[i] for i in idx], dtype=torch.float32)  # (B,)
        m = torch.tensor([data.margin[i] for i in idx], dtype=torch.float32)  # (B,)
        dev = self.device
        return ids.to(dev), lengths.to(dev), p.to(dev), m.to(dev)

    def _model_batch(self, idx: Sequence[int], data: TokenizedPairs) -> dict[str, torch.Tensor]:
        """The forward's input: the shared-prefix layout when it saves at least 10% of the
        padded positions (and the model passed the start-up check), else the plain one."""
        c = [data.chosen[i] for i in idx]
        r = [data.rejected[i] for i in idx]
        dev = self.device
        if self.shared_ok and shared_prefix_saving(c, r) < 0.9:
            prefix, _, suffix, suffix_len, mask, positions = shared_prefix_tensors(
                c, r, self.tok.pad_token_id
            )
            return {
                "prefix": prefix.to(dev),
                "suffix": suffix.to(dev),
                "suffix_len": suffix_len.to(dev),
                "mask": mask.to(dev),
                "positions": positions.to(dev),
            }
        ids, lengths = pad_right(c + r, self.tok.pad_token_id)  # (2B, T), (2B,)
        return {"ids": ids.to(dev), "lengths": lengths.to(dev)}

    def _check_shared_prefix(self) -> bool:
        """Does the shared-prefix forward give this model's plain rewards? (Some architectures
        ignore custom 4D masks or position ids; they fall back to the plain layout.)"""
        import torch

        if not self.cfg.shared_prefix:
            return False
        from judge_rl.train._shared_prompt import shares_under_checkpointing

        if _checkpointing(self.model) and not shares_under_checkpointing():
            # this transformers checkpoints in the model's layer loop, which drops the layers'
            # cache in training: no prefix keys/values for the suffixes
            log.info("gradient checkpointing on: the plain layout (no shared-prefix forward)")
            return False
        from judge_rl.train.rm_data import common_prefix_len

        # The 4 shortest pairs with a shared prefix among the first 200: what the check asks
        # (does the cache + 4D mask + position-id layout give the plain rewards?) does not depend
        # on the length, its cost does (2 no-grad forwards; the first 4 such pairs of the
        # benchmark's data cost 0.39 s of CPU, the 4 shortest 0.1 s).
        idx = sorted(
            (
                i
                for i in range(min(200, len(self.train)))
                if common_prefix_len(self.train.chosen[i], self.train.rejected[i]) > 0
            ),
            key=lambda i: (self.lengths[i], i),  # the training pairs' lengths, a list
        )[:4]
        if not idx:
            return False
        c = [self.train.chosen[i] for i in idx]
        r = [self.train.rejected[i] for i in idx]
        try:
            with torch.no_grad():
                prefix, _, suffix, suffix_len, mask, positions = shared_prefix_tensors(
                    c, r, self.tok.pad_token_id
                )
                dev = self.device
                sc, sr = shared_prefix_rewards(
                    self.model,
                    prefix.to(dev),
                    suffix.to(dev),
                    suffix_len.to(dev),
                    mask.to(dev),
                    positions.to(dev),
                )
                ids, lengths = pad_right(c + r, self.tok.pad_token_id)
                plain = sequence_rewards(self.model, ids.to(dev), lengths.to(dev))
        except Exception as e:  # an architecture without cache/4D-mask support
            log.info("shared-prefix forward unavailable for this model (%s)", e)
            return False
        got = torch.cat([sc, sr])
        want = torch.cat([plain[: len(idx)], plain[len(idx) :]])
        ok = bool(torch.allclose(got, want, atol=1e-3 * (1 + want.abs().max().item())))
        if not ok:
            log.warning(
                "shared-prefix forward disagrees with the plain one for this model; "
                "using the plain layout"
            )
        return ok

    # -- one optimizer step ------------------------------------------------------------------

    def _read_block(
        self, batch: dict[str, torch.Tensor]
    ) -> contextlib.AbstractContextManager[None]:
        """Around a micro-batch's forward AND backward when the model checkpoints gradients (its
        backward re-runs the forward): the last layer's MLP on the read rows only (each
        sequence's last real token; a shared prefix then runs in full). Without checkpointing
        the forward functions skip those rows themselves (:func:`_read_only`)."""
        if not _checkpointing(self.model):
            return contextlib.nullcontext()
        import torch

        from judge_rl.train._last_mlp import last_mlp_only

        if "prefix" in batch:
            # the prefix pass reads no row (its keys/values only), the suffix pass the last
            # real tokens; the two passes' inputs differ in shape: (B, Tp) and (2B, Ts)
            none = torch.zeros(batch["prefix"].shape, dtype=torch.bool, device=self.device)
            keep = read_positions(batch["suffix_len"], batch["suffix"].shape[1])
            return last_mlp_only((none, keep), self.model)
        return last_mlp_only(read_positions(batch["lengths"], batch["ids"].shape[1]), self.model)

    def train_step(self) -> dict[str, float]:
        import torch

        cfg, d = self.cfg, self.dist
        micro = self._step_batches(self.step)
        n_step = sum(len(b) for b in micro)  # pairs in the whole (global) step
        stats = torch.zeros(4, device=self.device)  # loss_sum, correct, decided, pairs
        for mi, batch in enumerate(micro):
            local = batch[d.rank :: d.world]
            batch_in = self._model_batch(local, self.train)
            p = torch.tensor([self.train.p_chosen[i] for i in local], device=self.device)  # (B,)
            m = torch.tensor([self.train.margin[i] for i in local], device=self.device)  # (B,)
            last_micro = mi == len(micro) - 1
            sync = last_micro or d.world == 1
            if self._deepspeed:
                # the engine steps (clips, updates, zeroes) at the end of each backward that
                # accelerate marks as a boundary: only the step's last micro-batch
                d.accelerator.gradient_state._set_sync_gradients(last_micro)
                ctx: Any = contextlib.nullcontext()
            elif sync:
                ctx = contextlib.nullcontext()
            elif d.accelerator is not None:
                ctx = d.accelerator.no_sync(self.forward)
            else:
                ctx = self.forward.no_sync()  # type: ignore[operator]
            with ctx, self._read_block(batch_in):
                with _autocast(
                    self.device, self.precision.compute is not None, self.precision.compute
                ):
                    r_c, r_r = self.forward(batch_in)  # (B,), (B,)
                b = len(local)
                loss_vec = pair_loss(r_c, r_r, p, m if cfg.margin else None, cfg.center_coef)
                # Sum over local pairs / pairs in the global step, × world because DDP averages:
                # every process count takes the same step.
                loss = loss_vec.sum() * (d.world / n_step)
                if self.scaler is not None:
                    loss = self.scaler.scale(loss)
                if d.accelerator is not None:
                    d.accelerator.backward(loss)  # DeepSpeed runs its own backward
                else:
                    loss.backward()
            with torch.no_grad():
                delta = r_c - r_r
                decided = (p - 0.5).abs() > 1e-6
                correct = ((delta > 0) == (p > 0.5)) & decided
                stats += torch.stack(
                    [
                        loss_vec.sum(),
                        correct.sum(),
                        decided.sum(),
                        torch.tensor(float(b), device=self.device),
                    ]
                )
        if self._deepspeed:
            d.accelerator.gradient_state._set_sync_gradients(True)
        if self.scaler is not None:
            self.scaler.unscale_(getattr(self.optimizer, "optimizer", self.optimizer))
        if cfg.max_grad_norm > 0 and d.accelerator is not None:
            gnorm = d.accelerator.clip_grad_norm_(self.forward.parameters(), cfg.max_grad_norm)
            if gnorm is None:  # DeepSpeed clips inside its step
                gnorm = torch.zeros((), device=self.device)
        elif cfg.max_grad_norm > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        else:
            gnorm = torch.zeros((), device=self.device)
        if d.world > 1:
            import torch.distributed as dist

            dist.all_reduce(stats)
        loss_sum, correct, decided, pairs, gn = (*stats.tolist(), float(gnorm))  # one sync
        if not (math.isfinite(loss_sum) and math.isfinite(gn)):
            self.optimizer.zero_grad(set_to_none=True)
            last = latest_checkpoint(self.out)
            where = f"the last checkpoint, {last}, is intact" if last else "no checkpoint yet"
            applied = (
                "DeepSpeed's engine had already applied the step"
                if self._deepspeed
                else "stopped before updating the weights"
            )
            raise TrainingDiverged(
                f"loss became non-finite at step {self.step + 1} (loss sum {loss_sum}, "
                f"gradient norm {gn}); {applied}; {where}. "
                "Lower --lr, check the data's margins/labels, or try --bf16 off"
            )
        if self.scaler is not None:
            self.scaler.step(getattr(self.optimizer, "optimizer", self.optimizer))
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {
            "loss": loss_sum / max(pairs, 1),
            "accuracy": correct / decided if decided else float("nan"),
            "pairs": pairs,
            "grad_norm": gn,
        }

    # -- evaluation ----------------------------------------------------------------------------

    @staticmethod
    def _unwrap(m: Any) -> Any:
        return m.module if hasattr(m, "module") and not hasattr(m, "config") else m

    def rewards_of(self, data: TokenizedPairs) -> tuple[list[float], list[float]]:
        """Rewards of every pair's chosen and rejected side (no grad, length-sorted batches).

        With several processes each scores every ``world``-th pair of the length order (a
        share of similar lengths) on its local full model and the shares are exchanged, so every
        rank returns all pairs' rewards: a collective (sharded runs call it inside the
        full-parameter gather, :meth:`_gathered`)."""
        import torch

        d = self.dist
        bs = self.cfg.eval_batch_size or 2 * self.cfg.batch_size
        pair_len = data.lengths  # a property that builds the list: once, not once per pair
        order = sorted(range(len(data)), key=lambda i: -pair_len[i])
        mine = order[d.rank :: d.world]
        rc_mine: list[float] = []
        rr_mine: list[float] = []
        self.model.eval()
        with torch.no_grad(), _autocast(self.device, self.bf16):
            for s in range(0, len(mine), bs):
                idx = mine[s : s + bs]
                ids, lengths, _, _ = self._tensors(idx, data)
                r = sequence_rewards(self.model, ids, lengths).tolist()
                rc_mine += r[: len(idx)]
                rr_mine += r[len(idx) :]
        self.model.train()
        shares: list[Any] = [(mine, rc_mine, rr_mine)]
        if d.world > 1:
            import torch.distributed as dist

            shares = [None] * d.world
            dist.all_gather_object(shares, (mine, rc_mine, rr_mine))
        rc = [math.nan] * len(data)
        rr = [math.nan] * len(data)
        for idx_s, rc_s, rr_s in shares:
            for i, c, r_ in zip(idx_s, rc_s, rr_s, strict=True):
                rc[i], rr[i] = c, r_
        return rc, rr

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy, oriented mean margin, ECE, loss and reward distributions."""
        import torch

        data = self.eval
        rc, rr = self.rewards_of(data)
        p = data.p_chosen
        delta = [c - r for c, r in zip(rc, rr, strict=True)]
        loss = (
            pair_loss(
                torch.tensor(rc),
                torch.tensor(rr),
                torch.tensor(p),
                torch.tensor(data.margin) if self.cfg.margin else None,
            )
            .mean()
            .item()
        )
        decided = [i for i in range(len(data)) if abs(p[i] - 0.5) > 1e-6]
        acc = (
            sum((delta[i] > 0) == (p[i] > 0.5) for i in decided) / len(decided)
            if decided
            else float("nan")
        )
        oriented = [delta[i] if p[i] > 0.5 else -delta[i] for i in decided]
        # Symmetrised: each pair counts in both orientations, so an all-"chosen wins" label set
        # does not make the reliability diagram one-sided.
        conf = [1 / (1 + math.exp(-x)) for x in delta]
        ece = expected_calibration_error(conf + [1 - c for c in conf], p + [1 - x for x in p])

        def _mean(xs: Sequence[float]) -> float:
            return sum(xs) / len(xs) if xs else float("nan")

        def _std(xs: Sequence[float]) -> float:
            mu = _mean(xs)
            return math.sqrt(sum((x - mu) ** 2 for x in xs) / len(xs)) if xs else float("nan")

        self.section.reward_samples = {
            "chosen": [round(x, 5) for x in rc[:500]],
            "rejected": [round(x, 5) for x in rr[:500]],
        }
        return {
            "step": float(self.step),
            "accuracy": acc,
            "margin": _mean(oriented),
            "ece": ece,
            "loss": loss,
            "chosen_mean": _mean(rc),
            "rejected_mean": _mean(rr),
            "chosen_std": _std(rc),
            "rejected_std": _std(rr),
            "n": float(len(data)),
            "ties": float(len(data) - len(decided)),
        }

    # -- checkpoints -----------------------------------------------------------------------------

    @property
    def _sharded(self) -> bool:
        acc = self.dist.accelerator
        if acc is None:
            return False
        from accelerate.utils import DistributedType

        ds = getattr(acc.state, "deepspeed_plugin", None)
        return acc.distributed_type == DistributedType.FSDP or (
            ds is not None and getattr(ds, "zero_stage", 0) == 3
        )

    @property
    def _deepspeed(self) -> bool:
        acc = self.dist.accelerator
        return acc is not None and getattr(acc.state, "deepspeed_plugin", None) is not None

    @property
    def _zero3(self) -> bool:
        acc = self.dist.accelerator
        ds = getattr(acc.state, "deepspeed_plugin", None) if acc is not None else None
        return ds is not None and getattr(ds, "zero_stage", 0) == 3

    def _full_state(self) -> dict[str, Any] | None:
        """The model's full state dict when sharded (a collective: every rank calls it; rank 0
        gets the tensors), else None (the live model saves itself)."""
        if not self._sharded:
            return None
        if self._zero3:
            # accelerate's get_state_dict needs stage3_gather_16bit_weights_on_model_save (and
            # gives 16-bit weights); the gather gives the weights as they are, on rank 0
            from judge_rl.models import full_state_dict

            with self._gathered():
                full = None
                if self.dist.main:
                    full = {k: v.detach().clone() for k, v in full_state_dict(self.model).items()}
            return full
        sd = self.dist.accelerator.get_state_dict(self.forward)
        return {k.removeprefix("model."): v for k, v in (sd or {}).items()}

    @contextlib.contextmanager
    def _gathered(self) -> Any:
        """Full parameters on every rank inside the block (sharded runs): rank 0 evaluates the
        plain model there. A collective: every rank enters it."""
        if not self._sharded:
            yield
            return
        from judge_rl.train.ppo import gather_full_params

        with gather_full_params(self.dist.accelerator, self.forward):
            yield

    def _save_model(self, folder: Path, state_dict: dict[str, Any] | None = None) -> None:
        if state_dict is not None:
            self.model.save_pretrained(folder, state_dict=state_dict)
        else:
            self.model.save_pretrained(folder)
        self.tok.save_pretrained(folder)
        meta = {
            "format": "judge_rl.reward_model",
            "version": 1,
            "base_model": self.cfg.model,
            "max_length": self.cfg.max_length,
            "truncation": self.cfg.truncation,
            "soft_labels": self.cfg.soft_labels,
            "step": self.step,
            "input_format": input_format(self.tok),
            "precision": self.precision.describe(),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")

    def save_checkpoint(self, optimizer: bool = True) -> Path:
        """``output/checkpoint-<step>``: model folder + optimizer/scheduler/RNG/step, written to a
        temp folder and renamed, so a kill mid-save never leaves a half checkpoint.
        ``optimizer=False`` leaves the optimiser's state out (the final checkpoint, by default)."""
        import torch

        from judge_rl.train._checkpoint import save_trainer_state

        final = self.out / f"{CHECKPOINT_PREFIX}{self.step}"
        full = self._full_state()  # every rank (sharded runs)
        per_rank = optimizer and self._per_rank_optimizer
        opt_state = self.optimizer.state_dict() if optimizer and not per_rank else None
        if per_rank:  # each rank its own part, to a temp name rank 0 moves into the folder
            self.out.mkdir(parents=True, exist_ok=True)
            save_trainer_state(self._optimizer_shard(), self._shard_tmp(self.dist.rank))
            self.dist.barrier()
        if self.dist.main:
            tmp = self.out / f".tmp-{CHECKPOINT_PREFIX}{self.step}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            self._save_model(tmp, full)
            for r in range(self.dist.world if per_rank else 0):
                os.replace(self._shard_tmp(r), tmp / OPTIM_SHARD_FILE.format(rank=r))
            state = {
                "step": self.step,
                "optimizer": opt_state,
                "optimizer_shards": self.dist.world if per_rank else 0,
                "scheduler": self.scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
                "fingerprint": self.fingerprint,
                "section": self.section.model_dump(mode="json"),
            }
            save_trainer_state(state, tmp / STATE_FILE)  # plain data: loads weights-only
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self.section.checkpoints.append({"step": self.step, "path": str(final)})
            self._prune()
        self.dist.barrier()
        return final

    # -- optimiser state of sharded runs: one file per rank -------------------------------------

    @property
    def _per_rank_optimizer(self) -> bool:
        """Does each rank hold only its part of the optimiser state (DeepSpeed ZeRO, FSDP)?"""
        return self._zero_optimizer() is not None or self._sharded

    def _zero_optimizer(self) -> Any:
        """DeepSpeed's ZeRO optimizer (stages 1-3) behind accelerate's wrapper, else None."""
        from judge_rl.train.sharding import zero_optimizer

        return zero_optimizer(self.dist.accelerator, self.optimizer)

    def _shard_tmp(self, rank: int) -> Path:
        return self.out / f".tmp-step{self.step}-{OPTIM_SHARD_FILE.format(rank=rank)}"

    def _optimizer_shard(self) -> dict[str, Any]:
        """This rank's optimiser state as plain data (loadable weights-only; DeepSpeed's ZeRO
        part through :func:`judge_rl.train.sharding.zero_state_part`)."""
        from judge_rl.train.sharding import zero_state_part

        zero = self._zero_optimizer()
        if zero is None:
            return {"optimizer": self.optimizer.state_dict()}
        return {"zero": zero_state_part(zero)}

    def _load_optimizer_shards(self, folder: Path, shards: int) -> None:
        """Each rank's optimiser part back (DeepSpeed ZeRO reads the list of every rank's part
        and takes its own; FSDP's optimizer its own file)."""
        from judge_rl.train._checkpoint import load_trainer_state
        from judge_rl.train.sharding import load_zero_state_parts

        zero = self._zero_optimizer()
        if zero is None:
            own = load_trainer_state(folder / OPTIM_SHARD_FILE.format(rank=self.dist.rank))
            self.optimizer.load_state_dict(own["optimizer"])
            return
        parts = []
        for r in range(shards):
            part = load_trainer_state(folder / OPTIM_SHARD_FILE.format(rank=r))
            if not isinstance(part, dict) or not isinstance(part.get("zero"), dict):
                raise ConfigError(
                    f"{folder / OPTIM_SHARD_FILE.format(rank=r)}: not a DeepSpeed optimiser part",
                    setting="resume",
                )
            parts.append(part["zero"])
        load_zero_state_parts(zero, parts)

    def _publish_final(self, checkpoint: Path) -> None:
        """The final model in ``output``, atomically: the checkpoint's model files are linked
        (no second copy on disk; copied where links fail) under temp names, renamed into place,
        and ``reward_model.json`` goes last: a folder with it is complete (a reader of a
        half-published folder finds no ``reward_model.json``)."""
        (self.out / META_FILE).unlink(missing_ok=True)
        files = [
            f
            for f in checkpoint.iterdir()
            if f.is_file() and f.name != STATE_FILE and not f.name.startswith("optimizer-rank")
        ]
        files.sort(key=lambda f: f.name == META_FILE)  # the marker last
        for f in files:
            tmp = self.out / f".tmp-{f.name}-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            try:
                os.link(f, tmp)
            except OSError:
                shutil.copy2(f, tmp)
            os.replace(tmp, self.out / f.name)

    def _prune(self) -> None:
        keep = self.cfg.keep_checkpoints
        ckpts = sorted(
            (p for p in self.out.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).exists()),
            key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]),
        )
        for p in ckpts[: max(0, len(ckpts) - max(keep, 1))]:
            shutil.rmtree(p, ignore_errors=True)

    def _load_state(self, folder: Path) -> None:
        import torch

        from judge_rl.runlog import RewardModelSection

        state = _read_state(folder / STATE_FILE)
        if state["fingerprint"] != self.fingerprint:
            diff = sorted(
                k for k in self.fingerprint if state["fingerprint"].get(k) != self.fingerprint[k]
            )
            raise ConfigError(
                f"{folder} was written by a run with different {', '.join(diff)}; resume with "
                "the same data and settings, or use a new --output",
                setting="resume",
            )
        shards = int(state.get("optimizer_shards") or 0)
        if shards or (state.get("optimizer") is not None and self._per_rank_optimizer):
            if shards != self.dist.world or not self._per_rank_optimizer:
                raise ConfigError(
                    f"{folder} holds the optimiser state of "
                    + (f"{shards} sharded processes" if shards else "an unsharded run")
                    + f"; this run has {self.dist.world} process(es)"
                    + (" with a sharded optimiser" if self._per_rank_optimizer else "")
                    + ": resume with the same processes and sharding as the run that wrote it",
                    setting="resume",
                )
            self._load_optimizer_shards(folder, shards)
        elif state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        else:
            log.warning("%s holds no optimiser state (a finished run): fresh AdamW moments", folder)
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        random.setstate(state["rng"]["python"])
        self.step = int(state["step"])
        prev = RewardModelSection.model_validate(state["section"])
        prev.checkpoints = [c for c in prev.checkpoints if c["step"] <= self.step]
        self.section = prev
        self.section.model_extra["resumed_from"] = str(folder)  # type: ignore[index]
        log.info("resumed from %s at step %d", folder, self.step)

    # -- run log, hooks --------------------------------------------------------------------------

    def _emit(
        self, kind: str, metrics: dict[str, float] | None = None, path: str | None = None
    ) -> None:
        ev = RMEvent(kind, self.step, self.total_steps, metrics or {}, path, self.model)
        for h in self.hooks:
            h(ev)

    def _write_log(self) -> None:
        if self.run_log is not None and self.log_dir is not None and self.dist.main:
            self.run_log.reward_model = self.section
            self.run_log.save(self.log_dir)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        import torch

        cfg = self.cfg
        torch.manual_seed(cfg.seed + 1 + self.step)
        self.model.train()
        self._emit("start")
        t_train = 0.0
        pairs_done = 0.0
        window: list[dict[str, float]] = []
        t_win = time.perf_counter()
        try:
            while self.step < self.total_steps:
                t0 = time.perf_counter()
                m = self.train_step()
                dt = time.perf_counter() - t0
                t_train += dt
                pairs_done += m["pairs"]
                window.append(m)
                m["lr"] = float(self.scheduler.get_last_lr()[0])
                m["pairs_per_s"] = m["pairs"] / dt if dt > 0 else 0.0
                self._emit("step", m)
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    span = time.perf_counter() - t_win
                    accs = [w["accuracy"] for w in window if not math.isnan(w["accuracy"])]
                    self.section.train.append(
                        {
                            "step": float(self.step),
                            "epoch": round(self.step / self.steps_per_epoch, 4),
                            "loss": sum(w["loss"] for w in window) / len(window),
                            "accuracy": sum(accs) / len(accs) if accs else float("nan"),
                            "pairs_per_s": sum(w["pairs"] for w in window) / span if span else 0.0,
                            "lr": m["lr"],
                        }
                    )
                    window, t_win = [], time.perf_counter()
                last = self.step == self.total_steps
                if len(self.eval) and (
                    last or (cfg.eval_every and self.step % cfg.eval_every == 0)
                ):
                    self._do_eval()
                    t_win = time.perf_counter()
                if not last and cfg.save_every and self.step % cfg.save_every == 0:
                    path = self.save_checkpoint()
                    self._emit("save", path=str(path))
                    self._write_log()
                    t_win = time.perf_counter()
            path = self.save_checkpoint(optimizer=cfg.save_optimizer)
            self._emit("save", path=str(path))
            final = dict(self.section.evals[-1]) if self.section.evals else {}
            final["train_loss"] = (
                self.section.train[-1]["loss"] if self.section.train else float("nan")
            )
            final["steps"] = float(self.step)
            final["time_s"] = round(t_train, 3)
            final["pairs_per_s"] = pairs_done / t_train if t_train else 0.0
            self.section.final = final
            if self.dist.main:
                self._publish_final(path)
            self._write_log()
            self.dist.barrier()
            self._emit("end", final)
            return TrainResult(
                self.out, self.section, self.step, final, t_train, final["pairs_per_s"]
            )
        except BaseException:
            self._write_log()
            raise

    def _do_eval(self) -> None:
        # every rank scores its share of the held-out pairs (inside the full-parameter gather
        # when sharded); rank 0 records the metrics of all of them
        with self._gathered():
            ev = self.evaluate()
        if self.dist.main:
            self.section.evals.append(ev)
            self._write_log()
            self._emit("eval", ev)
        self.dist.barrier()

    def close(self) -> None:
        if self.dist.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def input_format(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """How the model reads a (prompt, response), recorded in ``reward_model.json``.

    Plain text is ``prompt + response`` tokenised with special tokens, plus the EOS token when
    the tokenizer's pad token differs from EOS (``append_eos``); conversational input goes
    through the chat template, nothing appended. The score is the head's output at the last
    token. To score like training under plain transformers::

        ids = tok(prompt + response)["input_ids"] + ([tok.eos_token_id] if meta["input_format"]["append_eos"] else [])
        score = model(torch.tensor([ids])).logits[0, 0]
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    return {
        "plain_text": "prompt + response",
        "add_special_tokens": True,
        "append_eos": bool(eos is not None and eos != pad),
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "conversational": "chat template of prompt + response messages, nothing appended",
        "score_at": "last token",
    }


def train_reward_model(
    config: RewardModelConfig,
    *,
    records: Sequence[PreferenceRecord] | None = None,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    hooks: Sequence[Hook] = (),
    run_log: RunLog | None = None,
    log_dir: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a Bradley-Terry reward model; see the module docstring for the steps.

    Args:
        config: the settings (``config.data`` is read when ``records`` is None).
        records: preference pairs to use instead of reading ``config.data``.
        model: a ``*ForSequenceClassification`` model (num_labels=1) to train instead of loading
            ``config.model``; needs ``tokenizer`` too. Ignored when resuming.
        tokenizer: the model's tokenizer.
        hooks: callables receiving :class:`RMEvent` s (progress bars, tests; may raise to stop).
        run_log: a run log whose ``reward_model`` section is filled and saved each eval.
        log_dir: the folder ``run_log`` is saved to.

    Raises:
        ConfigError: a bad setting or a checkpoint from different settings.
        DataError: no pairs, or all pairs longer than ``max_length``.
        TrainingDiverged: non-finite loss; the last checkpoint is left intact.
    """
    config.validate()
    recs = list(records) if records is not None else _read_records(config)
    if not recs:
        raise DataError("no preference pairs to train on", file=config.data or None)
    trainer = _Trainer(
        config, recs, model, tokenizer, hooks, run_log, Path(log_dir) if log_dir else None
    )
    try:
        return trainer.run()
    finally:
        trainer.close()


def config_dict(config: RewardModelConfig) -> dict[str, Any]:
    """The config as JSON-able data for the run log."""
    return asdict(config)


# ---------------------------------------------------------------------------------------------
# Scoring


class RewardModelScorer:
    """Score (prompt, response) pairs with a trained reward model folder.

    Also a :class:`judge_rl.train.rewards.RewardSource` (``name`` and ``__call__(queries)``).

    Args:
        path: a folder written by ``judge-rl train-rm`` (or any ``*ForSequenceClassification``
            model folder with one label).
        device: ``cpu``/``cuda``; default CUDA when present.
        batch_size: sequences per forward pass.
        max_length: longer inputs are cut from the left (the response's end is kept).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str | None = None,
        batch_size: int = 16,
        max_length: int = 1024,
    ) -> None:
        import pickle

        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        p = Path(path)
        if not (p / "config.json").exists():
            raise ConfigError(
                f"{p} is not a reward model folder (no config.json)", setting="reward_model"
            )
        if batch_size < 1:
            raise ConfigError(f"must be at least 1, got {batch_size}", setting="batch_size")
        self.path = p
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = f"reward_model:{p.name}"
        meta_file = p / META_FILE
        self.meta: dict[str, Any] = (
            json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.exists() else {}
        )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(p))
            # pickled weights (pytorch_model.bin) are read weights-only by transformers: a
            # pickle that asks for code is refused, never run
            self.model = AutoModelForSequenceClassification.from_pretrained(str(p))
        except (OSError, ValueError, pickle.UnpicklingError) as e:
            raise ConfigError(
                f"cannot load reward model {p}: {_load_error_reason(e)}", setting="reward_model"
            ) from None
        if getattr(self.model.config, "num_labels", 1) != 1:
            raise ConfigError(
                f"{p} has {self.model.config.num_labels} labels, a reward model has one",
                setting="reward_model",
            )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.to(self.device).eval()

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """One reward per (prompt, response), in input order."""
        import torch

        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        ids = [x[-self.max_length :] for x in encode_many(self.tokenizer, prompts, responses)]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = [0.0] * len(ids)
        with torch.no_grad():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                t, lengths = pad_right([ids[i] for i in idx], self.tokenizer.pad_token_id)
                r = sequence_rewards(self.model, t.to(self.device), lengths.to(self.device))
                for k, i in enumerate(idx):
                    out[i] = float(r[k])
        return out

    def __call__(self, queries: Sequence[RewardQuery]) -> list[float]:
        """RewardSource protocol: score each query's (prompt, response)."""
        return self.score([q.prompt for q in queries], [q.response for q in queries])


__all__ = [
    "RMEvent",
    "RewardModelConfig",
    "RewardModelScorer",
    "TrainResult",
    "TrainingDiverged",
    "bradley_terry_loss",
    "center_rewards_penalty",
    "expected_calibration_error",
    "input_format",
    "latest_checkpoint",
    "load_reward_model",
    "pair_loss",
    "read_positions",
    "sequence_rewards",
    "soft_label_loss",
    "train_reward_model",
]
