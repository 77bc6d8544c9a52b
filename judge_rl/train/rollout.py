"""Rollouts: the policy writes responses to a batch of prompts.

Two engines behind one interface (:class:`RolloutEngine`):

- :class:`HFRolloutEngine`: ``transformers`` ``generate`` on CPU or GPU, batched, prompts left-padded,
  sampling parameters (temperature, top-k, top-p) or greedy;
- :class:`VLLMRolloutEngine`: vLLM's offline engine on a GPU (optional extra ``judge_rl[vllm]``);
  the policy's weights are pushed into the engine after every PPO update with
  :meth:`RolloutEngine.sync_weights`.

Both return a :class:`Rollout`: query and response token ids, the response mask (1 up to and
including the first EOS, 0 after), whether each response ended with EOS, and the decoded text.
Log-probabilities are recomputed by the trainer in one forward pass (it needs them under the
reference model too), so engines need not return them; the vLLM engine does, for checking.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from judge_rl.errors import ConfigError
from judge_rl.types import Prompt

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class Rollout:
    """One batch of generated responses. ``B`` prompts, ``P`` prompt tokens, ``R`` new tokens."""

    query_ids: torch.Tensor
    """(B, P) prompt token ids, left-padded with the pad token."""
    query_mask: torch.Tensor
    """(B, P) 1 for real prompt tokens, 0 for padding."""
    response_ids: torch.Tensor
    """(B, R) generated token ids; positions after the first EOS hold the pad token."""
    response_mask: torch.Tensor
    """(B, R) 1 for tokens up to and including the first EOS, 0 after."""
    ended_with_eos: torch.Tensor
    """(B,) bool: the response stopped with an EOS token (rather than at ``max_new_tokens``)."""
    texts: list[str]
    """Decoded responses (special tokens removed)."""
    logprobs: torch.Tensor | None = None
    """(B, R) sampling log-probabilities when the engine reports them (vLLM), else None."""

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) number of response tokens (EOS included)."""
        return self.response_mask.sum(1)


class RolloutEngine(Protocol):
    """Anything that samples responses for left-padded prompts."""

    def generate(
        self,
        query_ids: torch.Tensor,
        query_mask: torch.Tensor,
        *,
        greedy: bool = False,
        max_new_tokens: int | None = None,
        model: Any = None,
    ) -> Rollout: ...

    def sync_weights(self, model: PreTrainedModel) -> None:
        """Make the engine sample from ``model``'s current weights."""
        ...


# ---------------------------------------------------------------------------------------------
# Prompt encoding


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, *, chat: bool = True
) -> list[int]:
    """Token ids of one prompt, ready for the assistant's reply.

    With ``chat`` and a tokenizer that has a chat template, a plain-text prompt becomes one user
    message and the template adds the generation prompt; chat messages always go through the
    template (it is an error when the tokenizer has none).
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if isinstance(prompt, list):
        if not has_template:
            raise ConfigError(
                "chat-message prompts need a tokenizer with a chat template", setting="prompts"
            )
        messages = prompt
    elif chat and has_template:
        messages = [{"role": "user", "content": prompt}]
    else:
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    ids: Any = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into ``(ids, mask)``, both (B, P), padding on the left.

    >>> ids, mask = left_pad([[5, 6], [7]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6], [0, 7]], [[1, 1], [0, 1]])
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (B, P)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, P)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def eos_ids(tokenizer: PreTrainedTokenizerBase, model: Any = None) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the generation config's."""
    out: list[int] = []
    if tokenizer.eos_token_id is not None:
        out.append(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
    if isinstance(extra, int):
        extra = [extra]
    for e in extra or []:
        if e is not None and int(e) not in out:
            out.append(int(e))
    return out


def response_mask_from_ids(
    response_ids: torch.Tensor, eos: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of tokens up to and including the first EOS, and whether there was one.

    Works when the pad token equals EOS (positions after the first EOS are masked anyway).

    >>> import torch
    >>> m, e = response_mask_from_ids(torch.tensor([[4, 2, 2], [4, 5, 6]]), [2])
    >>> m.tolist(), e.tolist()
    ([[1, 1, 0], [1, 1, 1]], [True, False])
    """
    import torch

    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)  # (B, R)
    for e in eos:
        is_eos |= response_ids == e
    # Tokens strictly after the first EOS: the count of EOS seen before them is > 0.
    seen_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()  # (B, R)
    mask = (seen_before == 0).long()  # (B, R)
    return mask, is_eos.any(dim=1)


# ---------------------------------------------------------------------------------------------
# transformers engine


def sampling_config(
    max_new_tokens: int,
    greedy: bool,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    pad_id: int,
    eos: int | list[int],
) -> Any:
    """The ``GenerationConfig`` of a rollout: sampling exactly as the trainer's log-probabilities
    assume, or greedy."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        do_sample=not greedy,
        temperature=None if greedy else temperature,
        top_k=None if greedy else (top_k or 0),
        top_p=None if greedy else top_p,
        pad_token_id=pad_id,
        eos_token_id=eos,
        use_cache=True,
        # Pinned so a model's own generation_config cannot reshape the distribution that
        # PPO's log-probabilities assume (transformers fills unset fields from it).
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        typical_p=1.0,
    )


class HFRolloutEngine:
    """Sampling with ``model.generate`` (KV cache, batched, left padding).

    Args:
        model: the policy (an unwrapped ``PreTrainedModel``).
        tokenizer: its tokenizer (pad token set).
        max_new_tokens: default response budget.
        temperature: sampling temperature (> 0).
        top_k: 0 keeps every token (PPO's log-probabilities assume the full distribution).
        top_p: nucleus sampling; 1.0 keeps every token.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.eos = eos_ids(tokenizer, model)
        self.pad_id = int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]
        )

    def sync_weights(self, model: PreTrainedModel) -> None:
        self.model = model  # generate reads the live module: nothing to copy

    def generate(
        self,
        query_ids: torch.Tensor,
        query_mask: torch.Tensor,
        *,
        greedy: bool = False,
        max_new_tokens: int | None = None,
        model: Any = None,
    ) -> Rollout:
        import torch

        m: Any = model if model is not None else self.model
        n_new = max_new_tokens or self.max_new_tokens
        cfg = sampling_config(
            n_new, greedy, self.temperature, self.top_k, self.top_p, self.pad_id, self.eos
        )
        device = next(m.parameters()).device
        was_training = m.training
        m.eval()
        from judge_rl.train._last_mlp import last_mlp_only

        # sampling reads the last position's logits only: the prompt's other positions skip the
        # last layer's MLP in the prefill (exact; decoding steps are one position wide anyway)
        from judge_rl.train._lean_decode import lean_decoder

        # a Llama-layout model on CPU: the same tokens as generate, less work per step
        # (judge_rl/train/_lean_decode.py); anything else: generate
        lean = lean_decoder(m, top_k=None if greedy else self.top_k, top_p=self.top_p)
        with torch.no_grad(), last_mlp_only(1, m):
            if lean is not None:
                out = lean.sample(
                    query_ids.to(device),
                    query_mask.to(device),
                    max_new_tokens=n_new,
                    greedy=greedy,
                    temperature=self.temperature,
                    eos=self.eos,
                    pad_id=self.pad_id,
                    top_k=self.top_k,
                    top_p=self.top_p,
                )  # (B, P + R')
            else:
                out = m.generate(
                    input_ids=query_ids.to(device),
                    attention_mask=query_mask.to(device),
                    generation_config=cfg,
                    # always inside a full-parameter gather: no rank waits on another while
                    # sampling (transformers would sync every token under ZeRO-3/FSDP, and the
                    # monitor samples on rank 0 alone)
                    synced_gpus=False,
                )  # (B, P + R')
        if was_training:
            m.train()
        response_ids = out[:, query_ids.shape[1] :].cpu()  # (B, R') with R' <= n_new
        if response_ids.shape[1] == 0:  # every prompt stopped at once (cannot happen with R>=1)
            response_ids = torch.full((query_ids.shape[0], 1), self.eos[0], dtype=torch.long)
        mask, ended = response_mask_from_ids(response_ids, self.eos)
        response_ids = torch.where(
            mask.bool(), response_ids, torch.full_like(response_ids, self.pad_id)
        )
        texts = self.tokenizer.batch_decode(
            [ids[: int(k)].tolist() for ids, k in zip(response_ids, mask.sum(1), strict=True)],
            skip_special_tokens=True,
        )
        return Rollout(query_ids.cpu(), query_mask.cpu(), response_ids, mask, ended, texts)


# ---------------------------------------------------------------------------------------------
# vLLM engine (GPU, optional)


class WeightSyncExtension:
    """Mixed into vLLM's GPU worker (``LLM(worker_extension_cls=...)``): the supported way to run
    our code in the worker with the V1 engine (``collective_rpc`` by method name; no pickled
    callables, so no ``VLLM_ALLOW_INSECURE_SERIALIZATION``)."""

    def judge_rl_load_weights(self, weights: list[tuple[str, Any]]) -> int:
        model = self.model_runner.model  # type: ignore[attr-defined]
        model.load_weights(weights=weights)
        return len(weights)


def policy_weights_for_engine(model: Any) -> list[tuple[str, Any]]:
    """The policy's weights under the names vLLM's model expects: a peft model's LoRA merged in
    (computed without touching the live weights), FSDP wrapper names removed."""
    if type(model).__module__.startswith("peft"):
        from judge_rl.models import merged_lora_state

        state = merged_lora_state(model)
    else:
        state = {k: v.detach() for k, v in model.state_dict().items()}
    return [
        (k.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", ""), v)
        for k, v in state.items()
    ]


class VLLMRolloutEngine:
    """Sampling with vLLM's offline engine (V1), colocated with training on the same GPU.

    The engine is created once from a model folder (the policy saved at start), in-process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so weights pass by reference. After each PPO update
    :meth:`sync_weights` pushes the policy's weights through ``collective_rpc`` into the worker's
    ``load_weights`` (the trainer calls it inside its ZeRO-3/FSDP gather). With
    ``enable_sleep_mode`` the engine frees its memory during the updates (:meth:`sleep`,
    :meth:`wake_up`). Log-probabilities come back per token, after temperature
    (``logprobs_mode="processed_logprobs"``), so the trainer measures the sampling mismatch.
    Several ranks: one engine per rank on its own GPU (``external_launcher``). Needs
    ``pip install judge_rl[vllm]`` and CUDA.
    """

    needs_sync = True

    def __init__(
        self,
        model_path: str,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        gpu_memory_utilization: float = 0.3,
        seed: int = 0,
        enable_sleep_mode: bool = False,
        **llm_kwargs: Any,
    ):
        import os

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError(
                "the vLLM rollout engine needs vLLM: pip install 'judge_rl[vllm]' (GPU only)",
                setting="rollout",
            ) from None
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.eos = eos_ids(tokenizer)
        self.pad_id = int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]
        )
        self.sleeping = False
        kw: dict[str, Any] = dict(
            model=model_path,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
            enable_prefix_caching=True,
            enable_sleep_mode=enable_sleep_mode,
            worker_extension_cls=f"{__name__}.WeightSyncExtension",
            logprobs_mode="processed_logprobs",
            **llm_kwargs,
        )
        try:
            self.llm = LLM(**kw)
        except TypeError:  # older engines: no logprobs_mode (log-probs before temperature)
            kw.pop("logprobs_mode")
            self.llm = LLM(**kw)

    def sync_weights(self, model: PreTrainedModel) -> None:
        """Load the policy's current weights into the engine (in place, no restart)."""
        was_asleep = self.sleeping
        if was_asleep:
            self.wake_up()
        self.llm.collective_rpc("judge_rl_load_weights", args=(policy_weights_for_engine(model),))
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()  # cached prefixes hold the old weights' KV
        if was_asleep:
            self.sleep()

    def sleep(self) -> None:
        """Free the engine's GPU memory (weights offloaded, KV cache dropped) for the updates."""
        if not self.sleeping:
            self.llm.sleep(level=1)
            self.sleeping = True

    def wake_up(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False

    def generate(
        self,
        query_ids: torch.Tensor,
        query_mask: torch.Tensor,
        *,
        greedy: bool = False,
        max_new_tokens: int | None = None,
        model: Any = None,
    ) -> Rollout:
        import torch
        from vllm import SamplingParams

        n_new = max_new_tokens or self.max_new_tokens
        params = SamplingParams(
            n=1,
            temperature=0.0 if greedy else self.temperature,
            top_k=-1 if not self.top_k else self.top_k,
            top_p=self.top_p,
            max_tokens=n_new,
            logprobs=0,
            stop_token_ids=self.eos,
        )
        prompts = [
            {"prompt_token_ids": ids[m.bool()].tolist()}
            for ids, m in zip(query_ids, query_mask, strict=True)
        ]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        seqs, lps = [], []
        for o in outs:
            c = o.outputs[0]
            seqs.append(list(c.token_ids))
            lps.append([next(iter(d.values())).logprob for d in (c.logprobs or [])])
        width = max(1, max(len(s) for s in seqs))
        resp = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)  # (B, R)
        logprobs = torch.zeros((len(seqs), width))  # (B, R)
        for i, (s, lp) in enumerate(zip(seqs, lps, strict=True)):
            resp[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            if lp:
                logprobs[i, : len(lp)] = torch.tensor(lp)
        mask, ended = response_mask_from_ids(resp, self.eos)
        # A response cut at max_tokens has no EOS; vLLM leaves the rest unwritten (mask it).
        lengths = torch.tensor([len(s) for s in seqs])
        mask = mask * (torch.arange(width)[None, :] < lengths[:, None]).long()
        texts = self.tokenizer.batch_decode(
            [s[: int(k)] for s, k in zip(seqs, mask.sum(1), strict=True)], skip_special_tokens=True
        )
        return Rollout(query_ids.cpu(), query_mask.cpu(), resp, mask, ended, texts, logprobs)


def make_engine(
    kind: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    model_path: str | None = None,
    **kwargs: Any,
) -> RolloutEngine:
    """``hf`` or ``vllm`` (the latter needs ``model_path``, a saved copy of the policy)."""
    if kind == "hf":
        return HFRolloutEngine(model, tokenizer, **kwargs)
    if kind == "vllm":
        if model_path is None:
            raise ConfigError(
                "the vLLM engine needs the policy saved as a folder", setting="rollout"
            )
        return VLLMRolloutEngine(model_path, tokenizer, **kwargs)
    raise ConfigError(f"unknown rollout engine {kind!r} (hf, vllm)", setting="rollout")


__all__ = [
    "HFRolloutEngine",
    "Rollout",
    "RolloutEngine",
    "VLLMRolloutEngine",
    "WeightSyncExtension",
    "encode_prompt",
    "eos_ids",
    "left_pad",
    "make_engine",
    "policy_weights_for_engine",
    "response_mask_from_ids",
]
