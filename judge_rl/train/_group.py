"""The algorithm steps of GRPO, Dr. GRPO, RLOO and DPO (importable; tested against values
computed by hand).

Shapes: ``G`` groups (prompts), ``K`` samples per group, ``B = G * K`` samples, ``R`` response
tokens; preference pairs ``N``.

Group-relative advantages (one scalar per sample, broadcast over its tokens):

- GRPO (Shao et al. 2024, "DeepSeekMath", section 4.1.2, outcome supervision):
  ``A_i = (r_i - mean(r)) / (std(r) + eps)`` over the group;
- Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", section 3.1):
  ``A_i = r_i - mean(r)`` (no std division: it over-weights groups that are nearly all right or
  all wrong);
- RLOO (Ahmadian et al. 2024, "Back to Basics", eq. 5; Kool et al. 2019):
  ``A_i = r_i - (1/(K-1)) Σ_{j≠i} r_j = K/(K-1) (r_i - mean(r))``.

A group whose rewards are all equal carries no learning signal: its advantages are exactly 0.

DPO family losses, with ``h = (log π(y_c) - log π_ref(y_c)) - (log π(y_r) - log π_ref(y_r))``:

- DPO (Rafailov et al. 2023, eq. 7): ``-log σ(β h)``;
- soft-label DPO with ``p = P(chosen ≻ rejected)`` (conservative DPO, Mitchell 2023, "A note on
  DPO with noisy preferences"; TRL's ``label_smoothing`` with ``ε = 1 - p``, here per pair):
  ``-p log σ(β h) - (1 - p) log σ(-β h)``; its gradient in ``h`` is ``β (σ(β h) - p)``, so a label
  of 0.5 gives no gradient while the policy's margin equals the reference's (``h = 0``) and pulls
  it back to 0 otherwise;
- IPO (Azar et al. 2023, "A General Theoretical Paradigm…", eq. 17 and section 5.1):
  ``(h - (p - 1/2) / β)²``, which for a hard label (``p = 1``) is the familiar ``(h - 1/(2β))²``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from judge_rl.errors import ConfigError

if TYPE_CHECKING:
    import torch

ADVANTAGES = ("grpo", "drgrpo", "rloo")
LOSS_AGGREGATIONS = ("token", "sequence", "constant")
DPO_LOSSES = ("sigmoid", "ipo", "soft")


# =============================================================================================
# Group-relative advantages


def group_advantages(
    rewards: torch.Tensor,
    kind: str = "grpo",
    *,
    valid: torch.Tensor | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """One advantage per sample from the rewards of its group.

    Args:
        rewards: (G, K) rewards; entries where ``valid`` is False (failed scores) are ignored.
        kind: ``grpo`` (mean baseline, divided by the group's std, Bessel-corrected as TRL does),
            ``drgrpo`` (mean baseline, no std) or ``rloo`` (leave-one-out mean baseline).
        valid: (G, K) bool; default: the finite rewards.
        eps: added to the std (GRPO only).

    Returns:
        (G, K) advantages; exactly 0 for invalid samples, for groups with fewer than two valid
        samples and for groups whose valid rewards are all equal.

    >>> import torch
    >>> r = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    >>> group_advantages(r, "drgrpo").tolist()
    [[0.5, -0.5, -0.5, 0.5]]
    >>> [round(v, 4) for v in group_advantages(r, "rloo")[0].tolist()]
    [0.6667, -0.6667, -0.6667, 0.6667]
    >>> group_advantages(torch.tensor([[3.0, 3.0, 3.0]]), "grpo").tolist()
    [[0.0, 0.0, 0.0]]
    """
    import torch

    if kind not in ADVANTAGES:
        raise ConfigError(
            f"unknown advantage {kind!r} ({', '.join(ADVANTAGES)})", setting="advantage"
        )
    if valid is None:
        valid = torch.isfinite(rewards)
    v = valid.to(rewards.dtype)  # (G, K)
    r = torch.where(valid, rewards, torch.zeros_like(rewards))  # (G, K), failures -> 0
    n = v.sum(1, keepdim=True)  # (G, 1) valid samples per group
    mean = r.sum(1, keepdim=True) / n.clamp(min=1)  # (G, 1)
    centred = (r - mean) * v  # (G, K)
    if kind == "grpo":
        var = (centred**2).sum(1, keepdim=True) / (n - 1).clamp(min=1)  # (G, 1) unbiased
        adv = centred / (var.sqrt() + eps)
    elif kind == "drgrpo":
        adv = centred
    else:  # rloo: r_i - mean_{j != i} r_j = n/(n-1) (r_i - mean)
        adv = centred * n / (n - 1).clamp(min=1)
    # No signal: one valid sample, or all valid rewards equal (exact 0, not eps-sized noise).
    big = torch.finfo(rewards.dtype).max
    hi = torch.where(valid, r, torch.full_like(r, -big)).max(1, keepdim=True).values
    lo = torch.where(valid, r, torch.full_like(r, big)).min(1, keepdim=True).values
    flat = (n < 2) | (hi == lo)  # (G, 1)
    return torch.where(flat | ~valid, torch.zeros_like(adv), adv)


def group_diagnostics(rewards: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, float]:
    """Per-step group statistics: how much learning signal the groups carry.

    Returns ``frac_zero_std`` (share of groups with at least one valid sample whose valid
    rewards are all equal: no gradient from them), ``group_std`` (mean within-group std,
    population form), ``group_range`` (mean max - min) and ``groups`` (how many had a valid
    sample).

    >>> import torch
    >>> d = group_diagnostics(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    >>> d["frac_zero_std"], d["group_std"], d["group_range"]
    (0.5, 0.25, 0.5)
    """
    import torch

    if valid is None:
        valid = torch.isfinite(rewards)
    v = valid.to(torch.float64)
    r = torch.where(valid, rewards, torch.zeros_like(rewards)).to(torch.float64)
    n = v.sum(1)  # (G,)
    has = n > 0
    if not bool(has.any()):
        nan = float("nan")
        return {"frac_zero_std": nan, "group_std": nan, "group_range": nan, "groups": 0.0}
    mean = r.sum(1) / n.clamp(min=1)
    std = (((r - mean[:, None]) ** 2 * v).sum(1) / n.clamp(min=1)).sqrt()  # (G,)
    hi = torch.where(valid, r, torch.full_like(r, -1e300)).max(1).values
    lo = torch.where(valid, r, torch.full_like(r, 1e300)).min(1).values
    rng = (hi - lo).clamp(min=0)
    return {
        "frac_zero_std": float((rng[has] == 0).double().mean()),
        "group_std": float(std[has].mean()),
        "group_range": float(rng[has].mean()),
        "groups": float(has.sum()),
    }


# =============================================================================================
# GRPO loss


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, how: str = "token", max_tokens: int = 1
) -> torch.Tensor:
    """Reduce a per-token loss (B, R) to a scalar.

    - ``token``: Σ over all tokens / number of tokens (DAPO, Yu et al. 2025, eq. 12: every token
      weighs the same, so long responses are not down-weighted);
    - ``sequence``: mean over samples of each sample's token mean (GRPO as written, DeepSeekMath
      eq. 3: each response weighs the same);
    - ``constant``: Σ over all tokens / (B · max_tokens) (Dr. GRPO, Liu et al. 2025, section 3.1:
      a constant normaliser, no length bias).

    >>> import torch
    >>> x, m = torch.tensor([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]]), torch.tensor([[1, 1, 1], [1, 0, 0]])
    >>> [aggregate(x, m, h, 3).item() for h in ("token", "sequence", "constant")]
    [1.75, 2.5, 1.1666666269302368]
    """
    mask = mask.to(per_token.dtype)
    if how == "token":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    if how == "sequence":
        per_seq = (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B,)
        has = (mask.sum(1) > 0).to(per_token.dtype)
        return (per_seq * has).sum() / has.sum().clamp(min=1)
    if how == "constant":
        return (per_token * mask).sum() / (per_token.shape[0] * max(max_tokens, 1))
    raise ConfigError(
        f"unknown loss aggregation {how!r} ({', '.join(LOSS_AGGREGATIONS)})", setting="loss_agg"
    )


def k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π‖π_ref) (Schulman, "Approximating KL divergence",
    http://joschu.net/blog/kl-approx.html; the GRPO loss term, DeepSeekMath eq. 4):
    ``π_ref/π - log(π_ref/π) - 1`` >= 0.

    >>> import torch
    >>> round(k3(torch.tensor([-1.0]), torch.tensor([-2.0])).item(), 4)
    0.3679
    """
    import torch

    log_r = ref_logprobs - logprobs  # (B, R) log(π_ref / π)
    return torch.expm1(log_r) - log_r


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    cliprange: float = 0.2,
    cliprange_high: float | None = None,
    beta: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,
    agg: str = "token",
    max_tokens: int = 1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO objective as a loss (DeepSeekMath eq. 3, with the clip-higher variant of DAPO):

    ``L_t = -min(ρ_t A, clip(ρ_t, 1-ε_lo, 1+ε_hi) A) + β k3_t``, ``ρ_t = π(o_t) / π_old(o_t)``,
    reduced over tokens by :func:`aggregate`.

    Args:
        logprobs: (B, R) under the policy being updated (with gradient).
        old_logprobs: (B, R) under the policy that sampled (no gradient).
        advantages: (B,) one per sample.
        mask: (B, R) response tokens.
        beta: KL coefficient; 0 leaves the KL term out (and needs no ``ref_logprobs``).

    Returns:
        ``(loss, stats)`` with the detached ``policy_loss``, ``kl`` (k3, token mean),
        ``clip_frac`` and ``approx_kl`` (k3 estimate of KL(π_old‖π)).
    """
    import torch

    hi = cliprange if cliprange_high is None else cliprange_high
    log_ratio = logprobs - old_logprobs  # (B, R)
    ratio = torch.exp(log_ratio)  # (B, R)
    adv = advantages[:, None]  # (B, 1)
    pg1 = -adv * ratio  # (B, R)
    pg2 = -adv * torch.clamp(ratio, 1.0 - cliprange, 1.0 + hi)  # (B, R)
    per_token = torch.max(pg1, pg2)  # (B, R)
    pg_loss = aggregate(per_token, mask, agg, max_tokens)
    m = mask.to(logprobs.dtype)
    stats: dict[str, torch.Tensor] = {}
    if beta > 0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs")
        kl = k3(logprobs, ref_logprobs)  # (B, R)
        per_token = per_token + beta * kl
        stats["kl"] = ((kl * m).sum() / m.sum().clamp(min=1)).detach()
    loss = aggregate(per_token, mask, agg, max_tokens)
    with torch.no_grad():
        stats["policy_loss"] = pg_loss.detach()
        stats["clip_frac"] = ((pg2 > pg1).to(m.dtype) * m).sum() / m.sum().clamp(min=1)
        stats["approx_kl"] = (((ratio - 1) - log_ratio) * m).sum() / m.sum().clamp(min=1)
    return loss, stats


# =============================================================================================
# DPO family


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
    loss: str = "sigmoid",
    p_chosen: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair DPO / soft-label DPO / IPO losses (see the module docstring for the formulas).

    Args:
        policy_chosen, policy_rejected, ref_chosen, ref_rejected: (N,) sequence log-probabilities
            (summed, or averaged for the length-normalised variant).
        loss: ``sigmoid`` (hard labels), ``soft`` (cDPO form with ``p_chosen``) or ``ipo``.
        p_chosen: (N,) labels P(chosen ≻ rejected); default 1. With ``sigmoid`` and ``ipo`` it
            should be 1 (hard) or 0.5 (a tie kept as 0.5); ``soft`` uses any value in [0, 1].

    Returns:
        ``(losses, stats)``: (N,) per-pair losses (average them) and detached per-pair
        ``reward_chosen = β (log π(y_c) - log π_ref(y_c))``, ``reward_rejected``, ``margin``.

    >>> import torch
    >>> t = lambda *v: torch.tensor(v)
    >>> l, s = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5)
    >>> round(l.item(), 4), s["margin"].item()
    (0.3133, 1.0)
    """
    import torch
    import torch.nn.functional as F

    if loss not in DPO_LOSSES:
        raise ConfigError(f"unknown DPO loss {loss!r} ({', '.join(DPO_LOSSES)})", setting="loss")
    chosen_lr = policy_chosen - ref_chosen  # (N,)
    rejected_lr = policy_rejected - ref_rejected  # (N,)
    h = chosen_lr - rejected_lr  # (N,)
    p = torch.ones_like(h) if p_chosen is None else p_chosen.to(h.dtype)
    if loss == "ipo":
        losses = (h - (p - 0.5) / beta) ** 2
    else:  # sigmoid and soft: -p log σ(βh) - (1-p) log σ(-βh); p = 1 gives plain DPO
        losses = -p * F.logsigmoid(beta * h) - (1 - p) * F.logsigmoid(-beta * h)
    with torch.no_grad():
        rc, rr = beta * chosen_lr.detach(), beta * rejected_lr.detach()
        stats = {"reward_chosen": rc, "reward_rejected": rr, "margin": rc - rr}
    return losses, stats


__all__ = [
    "ADVANTAGES",
    "DPO_LOSSES",
    "LOSS_AGGREGATIONS",
    "aggregate",
    "dpo_loss",
    "group_advantages",
    "group_diagnostics",
    "grpo_loss",
    "k3",
]
