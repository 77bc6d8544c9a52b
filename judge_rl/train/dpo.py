"""DPO, IPO and soft-label DPO: offline preference optimisation from any preference file.

The algorithm (read top to bottom; formulas and sources in :mod:`judge_rl.train._group`):

1. Read pairs with :func:`judge_rl.data.read_preferences` (every format judge_rl reads, the
   output of ``judge-rl label`` included, with the judge's probability ``p_chosen``). Ties
   (``p_chosen = 0.5``) are dropped or kept as 0.5 (``ties``); a held-out share is set aside.
2. Tokenise each side as prompt (chat template with the generation prompt, as in PPO's rollouts)
   + response + EOS; prompts are left-padded and responses right-padded so every response starts
   at the same column and only response positions go through the vocabulary projection.
3. Reference log-probabilities: one no-grad pass of the initial policy over every pair, computed
   once and cached (``<output>/ref_logps.pt``, keyed by model, data and tokenisation; a resumed
   run reads them back). No second model is kept in memory.
4. Epochs of shuffled minibatches of pairs: chosen and rejected in one forward pass; sequence
   log-probabilities summed (or averaged per token: ``length_normalize``); per-pair loss
   (:func:`~judge_rl.train._group.dpo_loss`): DPO's ``-log σ(β h)`` (Rafailov et al. 2023),
   soft-label DPO with the judge's ``p_chosen`` (conservative DPO form), or IPO's
   ``(h - (p - ½)/β)²`` (Azar et al. 2023).
5. Metrics per step and on the held-out pairs: loss, reward accuracy (implicit reward of chosen
   above rejected, ties excluded), margins, implicit rewards ``β log π/π_ref`` of chosen and
   rejected.

Checkpoints are model folders (``checkpoint-000010/``, with the tokenizer) that tournaments read
as any model; the run log's ``ppo`` section lists them with ``config.policy``, so
``judge-rl overopt RUN --proxy SPEC --gold SPEC`` analyses a DPO run like a PPO one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from judge_rl.errors import ConfigError
from judge_rl.train._checkpoint import load_trainer_state, save_trainer_state
from judge_rl.train._group import DPO_LOSSES

if TYPE_CHECKING:
    import torch

    from judge_rl.runlog import PPOSection, RunLog
    from judge_rl.types import PreferenceRecord

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "dpo_config.json"
REF_CACHE = "ref_logps.pt"
NAN = float("nan")


@dataclass
class DPOConfig:
    """Every DPO setting; the CLI flags and ``--config`` YAML keys have the same names."""

    policy: str = "embedded"
    """Policy (and reference) model: a folder, or ``embedded`` (SmolLM2-135M-Instruct)."""
    data: str = ""
    """Preference file (any format judge_rl reads, ``judge-rl label`` output included)."""
    data_format: str | None = None
    """Force the file's format (default: detected from the first row)."""
    output: str = ""
    """Folder for checkpoints and the reference log-probability cache."""
    run: str | None = None
    """Run name: the run log goes to ``reports/<run>/log.json`` (default: dpo-<output name>)."""
    loss: str = "sigmoid"
    """``sigmoid`` (DPO, hard labels), ``soft`` (DPO on the label's p_chosen, conservative-DPO
    form) or ``ipo``."""
    beta: float = 0.1
    """Strength of the KL regularisation (DPO's beta; IPO's tau)."""
    ties: str = "drop"
    """Pairs labelled as ties (p_chosen = 0.5): ``drop`` them or keep them as ``half`` (0.5)."""
    length_normalize: bool = False
    """Average log-probabilities per response token instead of summing (length-normalised)."""
    epochs: int = 1
    """Passes over the training pairs."""
    max_steps: int = 0
    """Stop after this many optimiser steps (0: run all epochs)."""
    batch_size: int = 8
    """Pairs per optimiser step."""
    lr: float = 1e-6
    """AdamW learning rate (constant)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0 disables)."""
    max_length: int = 512
    """Longest prompt + response in tokens; longer responses are cut at the end (counted)."""
    max_prompt_length: int = 256
    """Longest prompt in tokens; longer prompts keep their last tokens (counted)."""
    eval_fraction: float = 0.1
    """Share of pairs held out for evaluation (0: none)."""
    eval_every: int = 0
    """Evaluate the held-out pairs every N steps (0: only at the end)."""
    chat_template: bool = True
    """Wrap text prompts as a user message with the tokenizer's chat template (when it has one)."""
    shared_prompt: bool = True
    """Run each pair's prompt once for both responses (KV cache; checked against the plain
    forward at start, which is used where they disagree or the model does not support it)."""
    ref_batch_size: int = 16
    """Pairs per forward pass when computing the reference log-probabilities and evaluating."""
    max_new_tokens: int = 64
    """Response budget recorded for sampling the checkpoints (tournaments, ``judge-rl overopt``)."""
    lora_r: int = 0
    """LoRA rank (needs peft); 0 trains all weights."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, slower)."""
    bf16: bool = False
    """bfloat16 autocast for the forward passes on CUDA (weights stay float32)."""
    save_every: int = 0
    """Checkpoint every N steps (0: only at the end)."""
    log_every: int = 1
    """Record training metrics every N steps."""
    shuffle: bool = True
    """Shuffle the training pairs every epoch (off: file order, e.g. to compare with a peer)."""
    seed: int = 0
    """Seed for the split and the pair order."""
    device: str | None = None
    """``cpu`` or ``cuda``; default: CUDA when present."""
    resume: str | None = None
    """Resume from a checkpoint folder, or ``latest`` (the newest under ``output``)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad setting."""

        def bad(setting: str, msg: str) -> ConfigError:
            return ConfigError(msg, setting=setting)

        for name in ("epochs", "batch_size", "max_length", "max_prompt_length", "ref_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, f"must be a positive integer, got {v!r}")
        for name in ("max_steps", "eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise bad(name, f"must be >= 0, got {getattr(self, name)}")
        if self.log_every < 1:
            raise bad("log_every", f"must be a positive integer, got {self.log_every}")
        if self.loss not in DPO_LOSSES:
            raise bad("loss", f"must be one of {', '.join(DPO_LOSSES)}, got {self.loss!r}")
        if not math.isfinite(self.beta) or not self.beta > 0:
            raise bad("beta", f"must be positive, got {self.beta}")
        if self.ties not in ("drop", "half"):
            raise bad("ties", f"must be drop or half, got {self.ties!r}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise bad("lr", f"must be positive, got {self.lr}")
        if not 0 <= self.eval_fraction < 1:
            raise bad("eval_fraction", f"must be in [0, 1), got {self.eval_fraction}")
        if self.max_prompt_length >= self.max_length:
            raise bad(
                "max_prompt_length",
                f"{self.max_prompt_length} leaves no room for a response in max_length "
                f"{self.max_length}",
            )
        if self.lora_r < 0:
            raise bad("lora_r", f"must be >= 0, got {self.lora_r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@lru_cache(maxsize=1)
def field_docs() -> dict[str, str]:
    from judge_rl.train._ppo_config import dataclass_field_docs

    return dataclass_field_docs(DPOConfig)


# =============================================================================================
# Data


@dataclass
class DPOPairs:
    """Tokenised pairs. Prompts, chosen and rejected responses as id lists, aligned by index."""

    prompt: list[list[int]] = field(default_factory=list)
    chosen: list[list[int]] = field(default_factory=list)
    rejected: list[list[int]] = field(default_factory=list)
    p_chosen: list[float] = field(default_factory=list)
    """The label each pair trains with (1.0 hard, 0.5 a kept tie, the judge's p with ``soft``)."""
    source_index: list[int] = field(default_factory=list)
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.prompt)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p, c, r in zip(self.prompt, self.chosen, self.rejected, strict=True):
            h.update(json.dumps([p, c, r]).encode())
        return h.hexdigest()


def _response_text(x: Any) -> str:
    if isinstance(x, str):
        return x
    return "".join(str(m.get("content", "")) for m in x if m.get("role") != "user")


def _prompt_of(rec: PreferenceRecord) -> Any:
    """The prompt; for a conversational chosen side holding the earlier turns too, those."""
    if isinstance(rec.chosen, list) and len(rec.chosen) > 1 and not rec.prompt:
        return list(rec.chosen[:-1])
    return rec.prompt


def pair_labels(
    records: Sequence[PreferenceRecord], loss: str, ties: str
) -> tuple[list[int], list[float], int]:
    """Which records train, with which label: ``(indices, p, ties_dropped)``.

    ``sigmoid`` and ``ipo`` train hard labels (1.0; a kept tie 0.5); ``soft`` trains the
    record's ``p_chosen``.
    """
    keep, labels, dropped = [], [], 0
    for i, r in enumerate(records):
        p = float(r.p_chosen)
        if not math.isfinite(p) or not 0 <= p <= 1:
            where = r.provenance.get("line", i + 1) if isinstance(r.provenance, dict) else i + 1
            raise ConfigError(f"pair {where}: p_chosen must be in [0, 1], got {p}", setting="data")
        if r.is_tie:
            if ties == "drop":
                dropped += 1
                continue
            keep.append(i)
            labels.append(0.5)
            continue
        keep.append(i)
        labels.append(p if loss == "soft" else (1.0 if p > 0.5 else 0.0))
    return keep, labels, dropped


def tokenize_pairs(
    tokenizer: Any,
    records: Sequence[PreferenceRecord],
    indices: Sequence[int],
    labels: Sequence[float],
    *,
    chat: bool = True,
    max_length: int = 512,
    max_prompt_length: int = 256,
) -> DPOPairs:
    """Prompt ids (chat template + generation prompt) and response ids + EOS for each pair."""
    from judge_rl.train.rollout import encode_prompt

    out = DPOPairs()
    eos = tokenizer.eos_token_id
    for i, p in zip(indices, labels, strict=True):
        rec = records[i]
        prompt = encode_prompt(tokenizer, _prompt_of(rec), chat=chat)
        cut = False
        if len(prompt) > max_prompt_length:
            prompt, cut = prompt[-max_prompt_length:], True
        sides = []
        for resp in (rec.chosen, rec.rejected):
            ids = list(tokenizer(_response_text(resp), add_special_tokens=False)["input_ids"])
            if eos is not None:
                ids.append(int(eos))
            room = max_length - len(prompt)
            if len(ids) > room:
                ids, cut = ids[:room], True
            sides.append(ids)
        out.prompt.append(prompt)
        out.chosen.append(sides[0])
        out.rejected.append(sides[1])
        out.p_chosen.append(float(p))
        out.source_index.append(int(i))
        out.truncated += int(cut)
    return out


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded shuffle split into (train, eval); eval gets ``round(n * fraction)`` (at least
    one when ``fraction > 0`` and ``n > 1``)."""
    import random

    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    k = round(n * fraction)
    if fraction > 0 and n > 1:
        k = max(k, 1)
    k = min(k, n - 1) if n > 1 else 0
    return sorted(idx[k:]), sorted(idx[:k])


# =============================================================================================
# Trainer


class DPOTrainer:
    """Offline preference optimisation of a causal LM.

    Args:
        config: settings (:class:`DPOConfig`).
        policy: a ``PreTrainedModel`` or a name/folder; the reference is its state at start.
        tokenizer: its tokenizer (loaded from ``policy`` when it is a name).
        records: :class:`~judge_rl.types.PreferenceRecord` s (default: read ``config.data``).
        run_log, run_dir: the run log to fill and where to save it.

    Example::

        trainer = DPOTrainer(DPOConfig(beta=0.1, lr=1e-4, epochs=2), model, tok, records)
        section = trainer.train()
    """

    def __init__(
        self,
        config: DPOConfig,
        policy: Any = None,
        tokenizer: Any = None,
        records: Sequence[PreferenceRecord] | None = None,
        *,
        callbacks: Sequence[Any] = (),
        run_log: RunLog | None = None,
        run_dir: str | os.PathLike[str] | None = None,
    ):
        from judge_rl.runlog import PPOSection

        config.validate()
        self.config = c = config
        self.callbacks = list(callbacks)
        self.run_log = run_log
        self.run_dir = Path(run_dir) if run_dir else None

        # 1. Pairs (cheap checks before the model loads) ------------------------------------
        source = c.data or "the given records"
        if records is None:
            if not c.data:
                raise ConfigError("no preference file given (--data FILE)", setting="data")
            from judge_rl.data import read_preferences

            records = read_preferences(c.data, fmt=c.data_format).records
        records = list(records)
        keep, labels, self.ties_dropped = pair_labels(records, c.loss, c.ties)
        if not keep:
            why = f" ({self.ties_dropped} ties dropped; --ties half keeps them)" * bool(
                self.ties_dropped
            )
            raise ConfigError(f"{source}: no preference pairs to train on{why}", setting="data")
        self.records = records
        import torch

        # 2. Model ---------------------------------------------------------------------------
        if policy is None or isinstance(policy, str):
            from judge_rl.models import load_causal_lm, load_tokenizer

            name = self.policy_name = policy or c.policy
            policy = load_causal_lm(name)
            tokenizer = tokenizer or load_tokenizer(name)
        else:
            self.policy_name = str(
                getattr(policy.config, "_name_or_path", "") or type(policy).__name__
            )
        if tokenizer is None:
            raise ConfigError("a tokenizer is needed with a model object", setting="policy")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        use_cpu = c.device == "cpu" or (c.device is None and not torch.cuda.is_available())
        self.device = torch.device("cpu" if use_cpu else (c.device or "cuda"))
        torch.manual_seed(c.seed)
        self._peft = False
        if c.lora_r > 0:
            try:
                from peft import LoraConfig, get_peft_model
            except ImportError:
                raise ConfigError("LoRA needs peft (pip install peft)", setting="lora_r") from None
            policy = get_peft_model(
                policy,
                LoraConfig(
                    r=c.lora_r,
                    lora_alpha=2 * c.lora_r,
                    target_modules="all-linear",
                    task_type="CAUSAL_LM",
                ),
            )
            self._peft = True
        self.policy = policy.to(self.device)
        self.policy.eval()  # no dropout: the reference pass and training see the same model
        self._grad_ckpt = False
        if c.gradient_checkpointing:
            from judge_rl.train._ppo_models import enable_gradient_checkpointing

            # non-reentrant, the checkpointed layers alone in training mode (as PPO's): before,
            # switching the policy to eval mode above left every layer there, where
            # transformers does not checkpoint, so nothing was recomputed and no memory saved
            self._grad_ckpt = enable_gradient_checkpointing(policy)
            if not self._grad_ckpt:
                log.warning("%s does not support gradient checkpointing", type(policy).__name__)
        from judge_rl.train._ppo_models import accepts_logits_to_keep

        self._keep = accepts_logits_to_keep(self.policy)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        # on CPU the fused kernel, as PPO's (`bench_ppo.py --part parts`)
        fused = True if self.device.type == "cpu" else None
        self.optimizer = torch.optim.AdamW(
            params, lr=c.lr, weight_decay=c.weight_decay, fused=fused
        )

        # 3. Tokenise, split ----------------------------------------------------------------
        self.pairs = tokenize_pairs(
            tokenizer,
            records,
            keep,
            labels,
            chat=c.chat_template,
            max_length=c.max_length,
            max_prompt_length=c.max_prompt_length,
        )
        self.train_idx, self.eval_idx = split_indices(len(self.pairs), c.eval_fraction, c.seed)
        self.section: PPOSection = PPOSection(policy=self.policy_name, reward="")
        self.summary: dict[str, Any] = {
            "data": c.data,
            "loss": c.loss,
            "beta": c.beta,
            "records": len(records),
            "pairs": len(self.pairs),
            "n_train": len(self.train_idx),
            "n_eval": len(self.eval_idx),
            "ties_dropped": self.ties_dropped,
            "truncated": self.pairs.truncated,
            "evals": [],
        }
        if run_log is not None:
            run_log.ppo = self.section
            run_log.extra["dpo"] = self.summary
        self._step = 0
        self._epoch = 0
        self._pos = 0  # batches of the current epoch already done
        self.ref: torch.Tensor | None = None  # (N, 4): chosen sum, rejected sum, counts
        self._shared: bool | None = None  # shared-prompt forward: decided at first use
        if c.resume:
            self._load_checkpoint(self._resolve_resume(c.resume))

    # -- properties -----------------------------------------------------------------------------

    @property
    def step(self) -> int:
        return self._step

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_idx) / self.config.batch_size)

    @property
    def total_steps(self) -> int:
        n = self.steps_per_epoch * self.config.epochs
        return min(n, self.config.max_steps) if self.config.max_steps else n

    # -- forward --------------------------------------------------------------------------------

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.config.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _batch_tensors(self, rows: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """Chosen rows then rejected rows, each prompt + response left-padded to the longest
        row (as wide as TRL's batches, not the longest prompt plus the longest response).
        Returns ids, attention mask, position ids (2n, L), and the last R columns' ids and
        response mask (2n, R), R the longest response: every response ends at the last column."""
        import torch

        pad = int(self.tokenizer.pad_token_id)
        prompts = [self.pairs.prompt[i] for i in rows] * 2
        resps = [self.pairs.chosen[i] for i in rows] + [self.pairs.rejected[i] for i in rows]
        L = max(len(p) + len(r) for p, r in zip(prompts, resps, strict=True))
        R = max(len(r) for r in resps)
        n2 = len(prompts)
        ids = torch.full((n2, L), pad, dtype=torch.long)  # (2n, L)
        am = torch.zeros((n2, L), dtype=torch.long)  # (2n, L)
        rm = torch.zeros((n2, L), dtype=torch.long)  # (2n, L): response positions
        for k, (p, r) in enumerate(zip(prompts, resps, strict=True)):
            ids[k, L - len(p) - len(r) :] = torch.tensor(p + r, dtype=torch.long)
            am[k, L - len(p) - len(r) :] = 1
            rm[k, L - len(r) :] = 1
        pos = (am.cumsum(1) - 1).clamp(min=0)  # (2n, L): count real tokens only
        return ids, am, pos, ids[:, L - R :], rm[:, L - R :]

    def _seq_logps(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed response log-probabilities (2n,) and token counts (2n,) under the policy:
        chosen rows then rejected rows."""
        if self._use_shared():
            return self._shared_logps(rows)
        return self._plain_logps(rows)

    def _use_shared(self) -> bool:
        """Do the log-probability passes share the prompt? Decided (:meth:`_check_shared`) at
        the first pass, outside any ``disable_adapter()`` block."""
        if self._shared is None:
            self._shared = self._check_shared()
        return self._shared

    def _checkpointing_mode(self) -> None:
        """Under gradient checkpointing, with gradients on: the policy's checkpointed layers in
        training mode (transformers checkpoints a layer only then;
        :func:`~judge_rl.train._ppo_models.checkpointing_train_mode`)."""
        import torch

        if self._grad_ckpt and torch.is_grad_enabled():
            from judge_rl.train._ppo_models import checkpointing_train_mode

            checkpointing_train_mode(self.policy)

    def _plain_logps(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        from judge_rl.train._last_mlp import read_rows_block
        from judge_rl.train.ppo import logprobs_from_logits

        self._checkpointing_mode()
        ids, am, pos, r_ids, r_mask = (t.to(self.device) for t in self._batch_tensors(rows))
        R = r_ids.shape[1]
        kw: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": am,
            "position_ids": pos,
            "use_cache": False,
        }
        if self._keep:
            kw["logits_to_keep"] = R + 1  # only response positions meet the vocabulary
        # the last layer's row-wise work on the positions the head reads (skipped with gradients
        # under checkpointing: its recomputation runs in the backward, outside this block)
        with self._autocast(), read_rows_block(R + 1, self.policy):
            logits = self.policy(**kw).logits[:, -(R + 1) : -1]  # (2n, R, V)
        lp = logprobs_from_logits(logits.float(), r_ids)  # (2n, R)
        m = r_mask.to(lp.dtype)
        return (lp * m).sum(1), m.sum(1)  # (2n,), (2n,)

    def _shared_logps(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`_seq_logps`, with each pair's prompt computed once: in a causal LM the
        prompt's hidden states do not depend on what follows, so the prompts run once
        (``(n, P)``, right-padded), their keys/values are repeated for the two sides, and only the
        responses run twice (``(2n, R)``), attending to their pair's real prompt tokens through a
        4D mask. The first response token is predicted from the prompt's last hidden state.

        A peft LoRA policy runs through the model it wraps (``get_base_model()``; on peft's
        wrapper ``base_model_prefix`` names the whole ``LlamaForCausalLM``, not its body), whose
        Linear layers peft replaced in place by LoRA layers: the same modules its own forward
        calls, with the adapter on or, inside ``disable_adapter()``, off. With gradients, the
        prompts' keys and values keep their graph through the repeated cache, so the LoRA
        weights of the key/value projections get the prompt positions' gradient from both
        responses, as the plain forward sums it over the prompt's two rows. Other peft models
        (other methods, several adapters, DoRA, ...) raise here: the plain forward runs
        (:func:`judge_rl.train._lean_decode._lora_base`, as GRPO)."""
        import torch

        from judge_rl.train._shared_prompt import shared_prompt_logits
        from judge_rl.train.ppo import logprobs_from_logits

        model = self.policy
        if type(model).__module__.startswith("peft"):
            from judge_rl.train._lean_decode import _lora_base

            base = _lora_base(model)
            if base is None:
                raise ValueError(f"{type(model).__name__} is not a plain LoRA model")
            model = base
        self._checkpointing_mode()
        pad = int(self.tokenizer.pad_token_id)
        dev = self.device
        n = len(rows)
        prompts = [self.pairs.prompt[i] for i in rows]
        resps: list[list[int]] = []
        for i in rows:  # interleaved: chosen 0, rejected 0, chosen 1, ...
            resps += [self.pairs.chosen[i], self.pairs.rejected[i]]
        tp, ts = max(len(p) for p in prompts), max(len(r) for r in resps)
        prefix = torch.full((n, tp), pad, dtype=torch.long)  # (n, P) right-padded
        for k, p in enumerate(prompts):
            prefix[k, : len(p)] = torch.tensor(p, dtype=torch.long)
        suffix = torch.full((2 * n, ts), pad, dtype=torch.long)  # (2n, R) right-padded
        for k, r in enumerate(resps):
            suffix[k, : len(r)] = torch.tensor(r, dtype=torch.long)
        plen = torch.tensor([len(p) for p in prompts])  # (n,)
        slen = torch.tensor([len(r) for r in resps])  # (2n,)
        own = torch.arange(n).repeat_interleave(2)  # (2n,): each response's pair
        with self._autocast():
            logits = shared_prompt_logits(model, prefix, plen, own, suffix, dev)  # (2n, R, V)
        lp = logprobs_from_logits(logits.float(), suffix.to(dev))  # (2n, R)
        m = (torch.arange(ts)[None, :] < slen[:, None]).to(dev, lp.dtype)  # (2n, R)
        sums, cnt = (lp * m).sum(1), m.sum(1)  # (2n,)
        return torch.cat([sums[0::2], sums[1::2]]), torch.cat([cnt[0::2], cnt[1::2]])

    def _check_shared(self) -> bool:
        """Does the shared-prompt forward give the plain forward's log-probabilities here? A
        LoRA policy is checked with its adapter on and off (``disable_adapter()``: the
        reference pass)."""
        import contextlib

        import torch

        if not self.config.shared_prompt:
            return False
        if self._grad_ckpt:
            from judge_rl.train._shared_prompt import shares_under_checkpointing

            if not shares_under_checkpointing():
                return False
        rows = list(range(min(4, len(self.pairs))))
        modes: list[Any] = [contextlib.nullcontext]
        if self._peft:
            modes.append(self.policy.disable_adapter)
        for mode in modes:
            try:
                with torch.no_grad(), mode():
                    got, gn = self._shared_logps(rows)
                    want, wn = self._plain_logps(rows)
            except Exception as e:  # an architecture without cache / 4D-mask support
                log.info("shared-prompt forward unavailable for this model (%s)", e)
                return False
            if not (torch.equal(gn, wn) and torch.allclose(got, want, atol=1e-3, rtol=1e-4)):
                log.info("shared-prompt forward disagrees with the plain one; using the plain one")
                return False
        return True

    def _cache_key(self) -> str:
        c = self.config
        h = hashlib.sha256()
        h.update(self.pairs.fingerprint().encode())
        h.update(self.policy_name.encode())
        h.update(json.dumps([c.chat_template, c.max_length, c.max_prompt_length]).encode())
        return h.hexdigest()

    def reference_logps(self) -> torch.Tensor:
        """(N, 4): the reference's summed log-probabilities of chosen and rejected and their
        token counts, for every pair; computed once with the initial policy, cached on disk."""
        import torch

        if self.ref is not None:
            return self.ref
        c = self.config
        path = Path(c.output) / REF_CACHE if c.output else None
        key = self._cache_key()
        if path is not None and path.exists():
            try:  # derived data: an unreadable or unsafe file is recomputed, never unpickled
                saved = load_trainer_state(path)
            except ConfigError as e:
                log.warning("%s; recomputing the reference log-probabilities", e)
                saved = None
            if isinstance(saved, dict) and saved.get("key") == key:
                self.ref = saved["logps"]
                return self.ref
            log.warning("%s: reference cache is for other data or settings; recomputing", path)
        out = torch.zeros(len(self.pairs), 4, dtype=torch.float64)  # (N, 4)
        N, bs = len(self.pairs), c.ref_batch_size
        order = sorted(range(N), key=lambda i: len(self.pairs.chosen[i]))  # less padding
        self._use_shared()  # decided with the adapter on, before it is switched off
        ctx = self.policy.disable_adapter() if self._peft else _null()
        with torch.no_grad(), ctx:
            for s in range(0, N, bs):
                rows = order[s : s + bs]
                lp, n = self._seq_logps(rows)
                k = len(rows)
                out[rows, 0], out[rows, 1] = lp[:k].double().cpu(), lp[k:].double().cpu()
                out[rows, 2], out[rows, 3] = n[:k].double().cpu(), n[k:].double().cpu()
        self.ref = out
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save({"key": key, "logps": out}, tmp)
            os.replace(tmp, path)
        return out

    def _pair_losses(self, rows: Sequence[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        import torch

        from judge_rl.train._group import dpo_loss

        c = self.config
        ref = self.reference_logps()[list(rows)].to(self.device)  # (n, 4)
        lp, cnt = self._seq_logps(rows)  # (2n,)
        k = len(rows)
        pc, pr = lp[:k], lp[k:]  # (n,)
        rc, rr = ref[:, 0].to(lp.dtype), ref[:, 1].to(lp.dtype)  # (n,)
        if c.length_normalize:
            pc, pr = pc / cnt[:k].clamp(min=1), pr / cnt[k:].clamp(min=1)
            rc, rr = rc / cnt[:k].clamp(min=1), rr / cnt[k:].clamp(min=1)
        p = torch.tensor([self.pairs.p_chosen[i] for i in rows], device=self.device)
        losses, st = dpo_loss(pc, pr, rc, rr, beta=c.beta, loss=c.loss, p_chosen=p)
        st["p"] = p
        st["logp_chosen"], st["logp_rejected"] = pc.detach(), pr.detach()
        return losses, st

    @staticmethod
    def _metrics(losses: torch.Tensor, st: dict[str, torch.Tensor]) -> dict[str, float]:
        decided = st["p"] != 0.5
        correct = (st["reward_chosen"] > st["reward_rejected"]) == (st["p"] > 0.5)
        acc = float(correct[decided].float().mean()) if bool(decided.any()) else NAN
        return {
            "loss": float(losses.mean()),
            "reward_accuracy": acc,
            "margin": float(st["margin"].mean()),
            "reward_chosen": float(st["reward_chosen"].mean()),
            "reward_rejected": float(st["reward_rejected"].mean()),
            "logp_chosen": float(st["logp_chosen"].mean()),
            "logp_rejected": float(st["logp_rejected"].mean()),
        }

    def evaluate(self, indices: Sequence[int] | None = None) -> dict[str, float]:
        """Loss, reward accuracy, margins and implicit rewards over pairs (default: held out)."""
        import torch

        idx = list(self.eval_idx if indices is None else indices)
        if not idx:
            return {}
        all_l, all_st = [], []
        with torch.no_grad():
            for s in range(0, len(idx), self.config.ref_batch_size):
                losses, st = self._pair_losses(idx[s : s + self.config.ref_batch_size])
                all_l.append(losses.detach())
                all_st.append(st)
        st = {k: torch.cat([d[k] for d in all_st]) for k in all_st[0]}
        out = self._metrics(torch.cat(all_l), st)
        out["pairs"] = float(len(idx))
        return out

    # -- the loop -------------------------------------------------------------------------------

    def _epoch_order(self, epoch: int) -> list[int]:
        import random

        order = list(self.train_idx)
        if self.config.shuffle:
            random.Random(self.config.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def train(self) -> PPOSection:
        """Run all epochs (or ``max_steps``); returns the run log's ``ppo`` section, with the
        per-step DPO metrics in ``steps`` and the held-out evaluations in ``extra['dpo']``."""
        import torch

        c = self.config
        t_ref = time.perf_counter()
        self.reference_logps()
        self.summary["time_reference"] = time.perf_counter() - t_ref
        bs = c.batch_size
        total = self.total_steps
        for cb in self.callbacks:
            getattr(cb, "on_train_start", lambda h: None)(self)
        stop = False
        while self._step < total and not stop:
            order = self._epoch_order(self._epoch)
            while self._pos * bs < len(order) and self._step < total:
                rows = order[self._pos * bs : (self._pos + 1) * bs]
                t0 = time.perf_counter()
                losses, st = self._pair_losses(rows)
                loss = losses.mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = NAN
                if c.max_grad_norm:
                    gnorm = float(
                        torch.nn.utils.clip_grad_norm_(
                            [p for p in self.policy.parameters() if p.requires_grad],
                            c.max_grad_norm,
                        )
                    )
                self.optimizer.step()
                self._pos += 1
                self._step += 1
                dt = time.perf_counter() - t0
                if self._step % c.log_every == 0 or self._step == total:
                    m = self._metrics(losses.detach(), st)
                    m.update(
                        step=float(self._step),
                        epoch=float(self._epoch) + self._pos * bs / max(len(order), 1),
                        grad_norm=gnorm,
                        lr=float(self.optimizer.param_groups[0]["lr"]),
                        pairs_per_s=len(rows) / max(dt, 1e-9),
                        time_train=dt,
                    )
                    self.section.steps.append(m)
                    for cb in self.callbacks:
                        if getattr(cb, "on_step", lambda *a: False)(m, self):
                            stop = True
                            self.section.stopped_early = (
                                f"step {self._step}: stopped by {type(cb).__name__}"
                            )
                if c.eval_every and self._step % c.eval_every == 0 and self._step < total:
                    self._record_eval()
                if c.save_every and self._step % c.save_every == 0 and self._step < total:
                    self._save_full()
                self._save_log()
                if stop:
                    break
            if self._pos * bs >= len(order):
                self._epoch, self._pos = self._epoch + 1, 0
        self._record_eval()
        if c.output:
            self._save_full()
        for cb in self.callbacks:
            getattr(cb, "on_train_end", lambda h: None)(self)
        self._save_log()
        return self.section

    def _record_eval(self) -> None:
        ev = self.evaluate()
        if ev:
            ev["step"] = float(self._step)
            evals = self.summary["evals"]
            if not evals or evals[-1]["step"] != ev["step"]:
                evals.append(ev)
            self.summary["final_eval"] = ev

    def _save_log(self) -> None:
        if self.run_log is None:
            return
        self.run_log.ppo = self.section
        self.run_log.extra["dpo"] = self.summary
        self.run_log.timings["dpo_train"] = sum(
            s.get("time_train", 0.0) for s in self.section.steps
        )
        if "time_reference" in self.summary:
            self.run_log.timings["dpo_reference"] = self.summary["time_reference"]
        if self.run_dir is not None:
            self.run_log.save(self.run_dir)

    # -- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self, tag: str | None = None) -> str:
        """Save the policy as a model folder (tokenizer too); returns the folder."""
        name = f"checkpoint-{tag}" if tag else f"checkpoint-{self._step:06d}"
        path = Path(self.config.output or "dpo-output") / name
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.policy.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        self.section.checkpoints.append({"step": self._step, "path": str(path), "tag": tag or ""})
        return str(path)

    def _save_full(self) -> str:
        import torch

        path = Path(self.config.output or "dpo-output") / f"checkpoint-{self._step:06d}"
        if (path / STATE_FILE).exists():
            return str(path)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.policy.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        self.section.checkpoints.append({"step": self._step, "path": str(path)})
        state = {
            "step": self._step,
            "epoch": self._epoch,
            "pos": self._pos,
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "section": self.section.model_dump(mode="json"),
            "summary": self.summary,
            "config": self.config.to_dict(),
        }
        save_trainer_state(state, tmp / STATE_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=1))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        return str(path)

    def _resolve_resume(self, resume: str) -> Path:
        if resume != "latest":
            p = Path(resume)
            if not (p / STATE_FILE).exists():
                raise ConfigError(f"{p}: not a DPO checkpoint (no {STATE_FILE})", setting="resume")
            return p
        root = Path(self.config.output or "dpo-output")
        found = sorted(p for p in root.glob("checkpoint-*") if (p / STATE_FILE).exists())
        if not found:
            raise ConfigError(f"{root}: no checkpoint to resume from", setting="resume")
        return found[-1]

    def _load_checkpoint(self, path: Path) -> None:
        import torch

        from judge_rl.runlog import PPOSection

        log.info("resuming from %s", path)
        # the reference is the *initial* policy: its log-probabilities come from the cache, or
        # are computed now, before the checkpoint's weights are loaded
        self.reference_logps()
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
        self._step, self._epoch, self._pos = state["step"], state["epoch"], state["pos"]
        self.section = PPOSection.model_validate(state["section"])
        self.summary.update(state.get("summary", {}))
        if self.run_log is not None:
            self.run_log.ppo = self.section
            self.run_log.extra["dpo"] = self.summary
        torch.set_rng_state(state["rng"])


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


__all__ = [
    "DPOConfig",
    "DPOPairs",
    "DPOTrainer",
    "pair_labels",
    "split_indices",
    "tokenize_pairs",
]
