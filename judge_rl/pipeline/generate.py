"""The ``generate`` stage: prompts -> candidates, the one path from a prompt set to candidates.

``n`` samples per prompt share one prefill: the prompts' tokens run through the model once, the
key/value cache is repeated ``n`` times, and sampling continues from it (``num_return_sequences``
would run the prefill ``n`` times). Greedy decoding with ``n = 1`` is the plain path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from judge_rl.types import Candidate, PromptItem


@dataclass
class GenerateConfig:
    """Sampling settings of the ``generate`` stage."""

    model: str = "embedded"
    """Model folder or ``embedded`` (shared with other stages that name the same model)."""
    n: int = 2
    """Samples per prompt."""
    temperature: float = 1.0
    """0 means greedy (then ``n`` must be 1)."""
    max_new_tokens: int = 16
    """Response budget in tokens."""
    batch_size: int = 16
    """Prompts per forward pass."""
    source: str = "base"
    """The candidates' ``source`` (model or checkpoint name)."""
    seed: int = 0


class GenerateSection(BaseModel):
    """Run-log record of one ``generate`` stage."""

    model: str = ""
    prompts: int = 0
    candidates: int = 0
    n: int = 1
    temperature: float = 0.0
    max_new_tokens: int = 0
    prefills: int = 0
    """Prompt forward passes run (one per prompt, whatever ``n``)."""
    new_tokens: int = 0
    tokens_per_s: float = 0.0
    time_s: float = 0.0


class Candidates(BaseModel):
    """The ``generate`` stage's output."""

    candidates: list[Candidate] = Field(default_factory=list)
    section: GenerateSection = Field(default_factory=GenerateSection)


def generate(
    cfg: GenerateConfig, prompts: Sequence[PromptItem], model: Any, tokenizer: Any
) -> Candidates:
    """``cfg.n`` responses per prompt from ``model`` as :class:`Candidate` s (reference and
    category in metadata)."""
    import torch

    from judge_rl.errors import ConfigError
    from judge_rl.train.rollout import encode_prompt, left_pad

    if cfg.n < 1:
        raise ConfigError(f"must be >= 1, got {cfg.n}", setting="n")
    if cfg.temperature <= 0 and cfg.n != 1:
        raise ConfigError("greedy decoding gives one answer per prompt", setting="n")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[Candidate] = []
    new_tokens = prefills = 0
    items = list(prompts)
    was_training = model.training
    model.eval()
    for s in range(0, len(items), cfg.batch_size):
        chunk = items[s : s + cfg.batch_size]
        ids, mask = left_pad([encode_prompt(tokenizer, i.prompt) for i in chunk], pad)  # (B, P)
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            seqs = _sample(model, ids, mask, cfg, pad, tokenizer.eos_token_id)  # (B*n, P+R)
        prefills += len(chunk)
        resp = seqs[:, ids.shape[1] :]  # (B*n, R)
        for k, row in enumerate(resp):
            item = chunk[k // cfg.n]
            toks = [int(t) for t in row if int(t) != pad]
            if tokenizer.eos_token_id in toks:
                toks = toks[: toks.index(tokenizer.eos_token_id)]
            new_tokens += len(toks)
            meta: dict[str, Any] = {
                "sample": k % cfg.n,
                "temperature": cfg.temperature,
                "max_new_tokens": cfg.max_new_tokens,
            }
            if item.reference is not None:
                meta["reference"] = item.reference
            if item.category:
                meta["category"] = item.category
            out.append(
                Candidate(
                    prompt_id=item.prompt_id,
                    prompt=item.prompt,
                    response=tokenizer.decode(toks, skip_special_tokens=True).strip(),
                    source=cfg.source,
                    metadata=meta,
                )
            )
    if was_training:
        model.train()
    dt = time.perf_counter() - t0
    return Candidates(
        candidates=out,
        section=GenerateSection(
            model=cfg.model,
            prompts=len(items),
            candidates=len(out),
            n=cfg.n,
            temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            prefills=prefills,
            new_tokens=new_tokens,
            tokens_per_s=round(new_tokens / dt, 2) if dt > 0 else 0.0,
            time_s=round(dt, 3),
        ),
    )


def _sample(model: Any, ids: Any, mask: Any, cfg: GenerateConfig, pad: int, eos: int) -> Any:
    """Token ids (B*n, P+R): the prompt's first P-1 tokens run once; their cache is repeated
    ``n`` times and ``generate`` continues from it (it feeds only the last prompt token)."""
    kw: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "pad_token_id": pad,
        "eos_token_id": eos,
    }
    if cfg.temperature > 0:
        kw.update(do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0)
    else:
        kw.update(do_sample=False)
    if cfg.n == 1 or ids.shape[1] < 2:
        if cfg.n > 1:
            ids, mask = ids.repeat_interleave(cfg.n, 0), mask.repeat_interleave(cfg.n, 0)
        return model.generate(input_ids=ids, attention_mask=mask, **kw)
    import inspect

    from transformers import DynamicCache

    # transformers 5 renamed the argument (``cache``); older versions take ``past_key_values``
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, P): positions skip the left padding
    cache = DynamicCache()
    model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=pos[:, :-1],
        use_cache=True,
        **{key: cache},
    )
    cache.batch_repeat_interleave(cfg.n)
    ids, mask = ids.repeat_interleave(cfg.n, 0), mask.repeat_interleave(cfg.n, 0)
    return model.generate(input_ids=ids, attention_mask=mask, **{key: cache}, **kw)


__all__ = ["Candidates", "GenerateConfig", "GenerateSection", "generate"]
