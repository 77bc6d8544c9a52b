"""Reward-model data: format preference pairs, tokenise them once, and order them into
length-grouped batches that are the same for any number of processes.

Formatting follows TRL's reward trainer so a dataset means the same thing in both:

- conversational records (prompt or response given as chat messages) go through the tokenizer's
  chat template, ``prompt_messages + response_messages``;
- plain-text records are ``prompt + response``, with the EOS token appended when it is not also
  the pad token (so the sequence-classification head of a saved model, which reads the last
  non-pad token, sees exactly what training saw).

Pairs whose chosen or rejected side exceeds ``max_length`` tokens are dropped
(``truncation="drop"``, as TRL does: cutting the end of a response can remove what made it
better) or cut from the left (``truncation="left"``: the responses' ends survive; the same
number of tokens goes from the start of both sides, so both still see the same prompt). Either
way they are counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from judge_rl.errors import ConfigError, DataError
from judge_rl.types import Message, PreferenceRecord, Prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

Truncation = Literal["drop", "left"]


def _as_messages(x: str | list[Message], role: str) -> list[Message]:
    return [{"role": role, "content": x}] if isinstance(x, str) else list(x)


def format_text(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, response: str | list[Message]
) -> str:
    """The text a reward model reads for one (prompt, response).

    Conversational input (either side a message list) goes through the chat template; plain
    text is concatenated. A tokenizer without a chat template gets ``role: content`` lines.
    """
    if isinstance(prompt, str) and isinstance(response, str):
        return prompt + response
    messages = _as_messages(prompt, "user") + _as_messages(response, "assistant")
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in messages) + "\n"


def _needs_eos(tokenizer: PreTrainedTokenizerBase, prompt: Any, response: Any) -> bool:
    plain = isinstance(prompt, str) and isinstance(response, str)
    eos = tokenizer.eos_token_id
    return plain and eos is not None and eos != tokenizer.pad_token_id


def encode_many(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    responses: Sequence[str | list[Message]],
) -> list[list[int]]:
    """Token ids of each (prompt, response), untruncated, in one batched tokenizer call."""
    texts = [format_text(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    enc = tokenizer(texts, add_special_tokens=True)["input_ids"]
    out: list[list[int]] = []
    eos = tokenizer.eos_token_id
    for ids, p, r in zip(enc, prompts, responses, strict=True):
        ids = list(ids)
        if _needs_eos(tokenizer, p, r) and (not ids or ids[-1] != eos):
            ids.append(eos)
        out.append(ids)
    return out


@dataclass
class TokenizedPairs:
    """Pre-tokenised pairs: ragged id lists plus soft labels and margins, aligned by index."""

    chosen: list[list[int]] = field(default_factory=list)
    rejected: list[list[int]] = field(default_factory=list)
    p_chosen: list[float] = field(default_factory=list)
    """P(chosen ≻ rejected) after the label policy (hard labels round to 0, 0.5 or 1)."""
    margin: list[float] = field(default_factory=list)
    source_index: list[int] = field(default_factory=list)
    """Index of each pair in the input record list."""
    truncated: int = 0
    """Pairs dropped (``drop``) or cut (``left``) because a side exceeded ``max_length``."""

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def lengths(self) -> list[int]:
        """Per pair, the longer side: what one row of the joint (2B, T) batch pads to."""
        return [max(len(c), len(r)) for c, r in zip(self.chosen, self.rejected, strict=True)]

    def subset(self, idx: Sequence[int]) -> TokenizedPairs:
        return TokenizedPairs(
            chosen=[self.chosen[i] for i in idx],
            rejected=[self.rejected[i] for i in idx],
            p_chosen=[self.p_chosen[i] for i in idx],
            margin=[self.margin[i] for i in idx],
            source_index=[self.source_index[i] for i in idx],
            truncated=0,
        )


def label_of(p: float, soft: bool) -> float:
    """The training target for a record's ``p_chosen``.

    Soft labels keep ``p``; hard labels round it to 1 (chosen better), 0 (rejected better) or
    0.5 (a tie stays a tie: it pulls the two rewards together).

    >>> label_of(0.8, soft=True), label_of(0.8, soft=False), label_of(0.5, soft=False)
    (0.8, 1.0, 0.5)
    >>> label_of(0.2, soft=False)
    0.0
    """
    if soft:
        return float(p)
    if abs(p - 0.5) < 1e-9:
        return 0.5
    return 1.0 if p > 0.5 else 0.0


def tokenize_pairs(
    records: Sequence[PreferenceRecord],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    soft_labels: bool = False,
    use_margin: bool = False,
    truncation: Truncation = "drop",
    file: str | None = None,
) -> TokenizedPairs:
    """Tokenise every pair once. Raises :class:`DataError` on an unusable label or margin."""
    if max_length < 2:
        raise ConfigError(f"must be at least 2, got {max_length}", setting="max_length")
    if truncation not in ("drop", "left"):
        raise ConfigError(f"must be drop or left, got {truncation!r}", setting="truncation")
    for i, r in enumerate(records):
        where = _where(r, i, file)
        if not (0.0 <= r.p_chosen <= 1.0) or math.isnan(r.p_chosen):
            raise DataError(
                f"p_chosen must be in [0, 1], got {r.p_chosen}", field="p_chosen", **where
            )
        if use_margin and r.margin is not None and not math.isfinite(r.margin):
            raise DataError(
                f"margin must be a finite number, got {r.margin}", field="margin", **where
            )
    prompts = [r.prompt for r in records]
    chosen = encode_many(tokenizer, prompts, [r.chosen for r in records])
    rejected = encode_many(tokenizer, prompts, [r.rejected for r in records])
    out = TokenizedPairs()
    for i, (r, c, j) in enumerate(zip(records, chosen, rejected, strict=True)):
        if len(c) > max_length or len(j) > max_length:
            out.truncated += 1
            if truncation == "drop":
                continue
            # Cut the same number of tokens from both, so the two sides keep seeing the same
            # prompt (and the shared prefix stays aligned).
            k = max(len(c), len(j)) - max_length
            c, j = c[k:], j[k:]
        out.chosen.append(c)
        out.rejected.append(j)
        out.p_chosen.append(label_of(r.p_chosen, soft_labels))
        out.margin.append(float(r.margin or 0.0) if use_margin else 0.0)
        out.source_index.append(i)
    return out


def _where(r: PreferenceRecord, i: int, file: str | None) -> dict[str, Any]:
    prov = r.provenance or {}
    line = prov.get("line")
    return {"file": prov.get("file", file), "line": int(line) if line is not None else i + 1}


def split_eval(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (train, eval) index split; ``fraction`` of the pairs (at least one when
    ``fraction > 0`` and ``n > 1``) are held out.

    >>> tr, ev = split_eval(10, 0.2, seed=0)
    >>> len(tr), len(ev), sorted(tr + ev) == list(range(10))
    (8, 2, True)
    """
    import random

    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"must be in [0, 1), got {fraction}", setting="eval_split")
    k = int(round(n * fraction))
    if fraction > 0 and n > 1:
        k = min(max(k, 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[k:]), sorted(order[:k])


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, mega: int = 50
) -> list[list[int]]:
    """One epoch of batches (index lists), each holding pairs of similar length.

    Shuffle, cut into mega-batches of ``mega * batch_size``, sort each by length, cut into
    batches, shuffle the batch order (the idea of HF's ``LengthGroupedSampler``). The order
    depends only on (``seed``, ``epoch``) and the global batch size, so a resumed run and a run
    on any number of processes walk the same batches.

    >>> b = length_grouped_batches([5, 1, 9, 3, 7, 2], 2, seed=0, epoch=0, mega=3)
    >>> sorted(i for x in b for i in x)
    [0, 1, 2, 3, 4, 5]
    >>> b == length_grouped_batches([5, 1, 9, 3, 7, 2], 2, seed=0, epoch=0, mega=3)
    True
    """
    import random

    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = max(1, mega) * batch_size
    batches: list[list[int]] = []
    for s in range(0, len(order), span):
        chunk = sorted(order[s : s + span], key=lambda i: -lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """``(ids (N, T), lengths (N,))`` long tensors, right-padded to the longest sequence.

    Right padding keeps every real token at its natural position, so a causal model needs no
    attention mask: real tokens never look at the pads that follow them.
    """
    import torch

    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (N,)
    t = int(lengths.max()) if len(seqs) else 0
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)  # (N, T)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return ids, lengths


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Tokens shared at the start of ``a`` and ``b``, leaving at least one token of each.

    >>> common_prefix_len([1, 2, 3, 4], [1, 2, 5])
    2
    >>> common_prefix_len([1, 2], [1, 2, 3])
    1
    """
    n = min(len(a), len(b)) - 1
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return max(k, 0)


def shared_prefix_tensors(
    chosen: Sequence[Sequence[int]], rejected: Sequence[Sequence[int]], pad_id: int
) -> tuple[Any, ...]:
    """Split each pair into its shared prefix and two suffixes (the suffix rows interleaved:
    chosen 0, rejected 0, chosen 1, …).

    Returns ``prefix (B, Tp)``, ``prefix_len (B,)``, ``suffix (2B, Ts)``, ``suffix_len (2B,)``,
    ``mask (2B, 1, Ts, Tp + Ts)`` (bool, True = may attend: the pair's real prefix tokens and
    the causal part of its own suffix) and ``positions (2B, Ts)``.
    """
    import torch

    k = [common_prefix_len(c, r) for c, r in zip(chosen, rejected, strict=True)]
    prefix, prefix_len = pad_right([c[:n] for c, n in zip(chosen, k, strict=True)], pad_id)
    suffixes = []
    for c, r, n in zip(chosen, rejected, k, strict=True):
        suffixes += [c[n:], r[n:]]
    suffix, suffix_len = pad_right(suffixes, pad_id)  # (2B, Ts), (2B,)
    tp, ts = prefix.shape[1], suffix.shape[1]
    plen = prefix_len.repeat_interleave(2)  # (2B,)
    key_prefix = torch.arange(tp)[None, None, :] < plen[:, None, None]  # (2B, 1, Tp)
    key_prefix = key_prefix.expand(-1, ts, -1)  # (2B, Ts, Tp)
    causal = torch.ones(ts, ts, dtype=torch.bool).tril()[None].expand(len(suffixes), -1, -1)
    mask = torch.cat([key_prefix, causal], dim=-1)[:, None]  # (2B, 1, Ts, Tp + Ts)
    positions = plen[:, None] + torch.arange(ts)[None, :]  # (2B, Ts)
    return prefix, prefix_len, suffix, suffix_len, mask, positions


def shared_prefix_saving(
    chosen: Sequence[Sequence[int]], rejected: Sequence[Sequence[int]]
) -> float:
    """Padded token positions of the shared-prefix layout ÷ those of the plain (2B, T) layout.

    >>> shared_prefix_saving([[1, 2, 3, 4]], [[1, 2, 3, 5]])
    0.625
    """
    k = [common_prefix_len(c, r) for c, r in zip(chosen, rejected, strict=True)]
    b = len(k)
    tp = max(k)
    ts = max(max(len(c) - n, len(r) - n) for c, r, n in zip(chosen, rejected, k, strict=True))
    t = max(max(len(c), len(r)) for c, r in zip(chosen, rejected, strict=True))
    return (b * tp + 2 * b * ts) / (2 * b * t)


__all__ = [
    "TokenizedPairs",
    "common_prefix_len",
    "encode_many",
    "format_text",
    "label_of",
    "length_grouped_batches",
    "pad_right",
    "shared_prefix_saving",
    "shared_prefix_tensors",
    "split_eval",
    "tokenize_pairs",
]
