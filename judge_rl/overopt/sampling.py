"""A :class:`~judge_rl.train.callbacks.PolicyHandle` over plain transformers models.

The PPO trainer provides its own handle during training; this one serves the offline analysis
(``judge-rl overopt``: each checkpoint against the initial policy) and tests. It samples with
``generate`` inside a forked RNG (training RNG streams are untouched), then scores the sampled
tokens under the policy and the reference in one forward pass each to fill the per-sample KL
(k1: sum of log π − log π_ref over response tokens; Schulman, "Approximating KL Divergence", 2020)
and the reference's mean log-probability.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from judge_rl.train.callbacks import Samples
from judge_rl.types import Prompt

log = logging.getLogger(__name__)


def encode_prompt(tokenizer: Any, prompt: Prompt, *, chat: bool = True) -> list[int]:
    """Token ids of a prompt ready for the reply, exactly as the PPO trainer encodes it."""
    from judge_rl.train.rollout import encode_prompt as _encode

    return _encode(tokenizer, prompt, chat=chat)


class ModelPolicy:
    """A policy and a frozen reference (both transformers causal LMs) as a PolicyHandle."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        ref_model: Any | None = None,
        *,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        batch_size: int = 32,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        step: int = 0,
        chat: bool = True,
    ) -> None:
        self.model = model
        self.ref_model = ref_model if ref_model is not None else model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.batch_size = batch_size
        self.seed = seed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self._step = step
        self._calls = 0
        self.chat = chat

    @property
    def step(self) -> int:
        return self._step

    @step.setter
    def step(self, value: int) -> None:
        self._step = value

    def save_checkpoint(self, tag: str | None = None) -> str:
        if self.checkpoint_dir is None:
            raise ValueError("ModelPolicy has no checkpoint_dir")
        out = self.checkpoint_dir / (tag or f"step-{self._step}")
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        return str(out)

    def sample(
        self,
        prompts: Sequence[Prompt],
        *,
        greedy: bool = False,
        max_new_tokens: int | None = None,
        reference: bool = False,
    ) -> Samples:
        import torch

        self._calls += 1
        out = Samples(prompts=list(prompts), responses=[])
        gen_model = self.ref_model if reference else self.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + self._calls)
            for i in range(0, len(prompts), self.batch_size):
                chunk = list(prompts[i : i + self.batch_size])
                self._sample_chunk(gen_model, chunk, greedy, max_new_tokens, out)
        return out

    def _sample_chunk(
        self,
        gen_model: Any,
        prompts: list[Prompt],
        greedy: bool,
        max_new_tokens: int | None,
        out: Samples,
    ) -> None:
        import torch

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = tok.eos_token_id
        enc = [encode_prompt(tok, p, chat=self.chat) for p in prompts]
        P = max(len(e) for e in enc)
        device = next(gen_model.parameters()).device
        ids = torch.full((len(enc), P), pad, dtype=torch.long)  # (B, P) left-padded
        att = torch.zeros((len(enc), P), dtype=torch.long)
        for b, e in enumerate(enc):
            ids[b, P - len(e) :] = torch.tensor(e)
            att[b, P - len(e) :] = 1
        ids, att = ids.to(device), att.to(device)
        kw: dict[str, Any] = {
            "use_cache": True,
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "pad_token_id": pad,
            "eos_token_id": eos,
        }
        if greedy:
            kw["do_sample"] = False
        else:
            kw.update(do_sample=True, temperature=self.temperature, top_k=0, top_p=1.0)
        with torch.no_grad():
            seq = gen_model.generate(input_ids=ids, attention_mask=att, **kw)  # (B, P + R)
        resp = seq[:, P:]  # (B, R)
        # response mask: tokens up to and including the first EOS
        is_eos = resp == eos  # (B, R)
        after = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()  # EOS seen before t
        mask = after == 0  # (B, R)
        full_att = torch.cat([att, mask.long()], dim=1)  # (B, P + R)
        lp_pol = self._token_logprobs(self.model, seq, full_att, P)  # (B, R)
        lp_ref = self._token_logprobs(self.ref_model, seq, full_att, P)  # (B, R)
        m = mask.float()
        kl = ((lp_pol - lp_ref) * m).sum(dim=1)  # (B,)
        ref_mean = (lp_ref * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B,)
        for b in range(len(prompts)):
            n = int(mask[b].sum())
            toks = resp[b, :n].tolist()
            ended = bool(is_eos[b].any())
            body = toks[:-1] if ended else toks
            out.responses.append(tok.decode(body, skip_special_tokens=True))
            out.response_tokens.append(body)
            out.ended_with_eos.append(ended)
            out.kl.append(float(kl[b]))
            out.ref_logprob.append(float(ref_mean[b]))

    def _token_logprobs(self, model: Any, seq: Any, att: Any, P: int) -> Any:
        """log p(token_t | <t) of the response tokens at the sampling temperature, (B, R)."""
        import torch

        with torch.no_grad():
            pos = (att.cumsum(dim=1) - 1).clamp(min=0)  # (B, T): positions skip left padding
            logits = model(input_ids=seq, attention_mask=att, position_ids=pos).logits  # (B, T, V)
        logits = logits[:, P - 1 : -1].float() / self.temperature  # (B, R, V)
        logp = torch.log_softmax(logits, dim=-1)  # (B, R, V)
        return logp.gather(-1, seq[:, P:].unsqueeze(-1)).squeeze(-1)  # (B, R)


__all__ = ["ModelPolicy", "encode_prompt"]
