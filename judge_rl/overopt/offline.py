"""Offline over-optimisation analysis of a finished PPO run (``judge-rl overopt RUN_DIR``).

Reads the run log's ``ppo.checkpoints``, then for the initial policy and every checkpoint: samples
the held-out prompts, scores them with the proxy (the run's training reward unless given) and the
gold reward, and measures KL to the initial policy. The points go through the same statistics as
the online monitor: the Gao et al. fit, the alarm rule (applied as if the monitor had run at each
checkpoint), degeneration against the initial policy's samples, and the recommended (best by gold)
checkpoint. Results are saved after every checkpoint, and a re-run with the same settings reuses
the checkpoints already done (resume).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judge_rl.errors import ConfigError, JudgeRLError
from judge_rl.overopt.degeneration import DegenerationConfig, detect, measure
from judge_rl.overopt.stats import (
    AlarmConfig,
    best_by_gold,
    by_prompt_means,
    check_alarm,
    fit_gao_rl,
    mean_ci,
)
from judge_rl.runlog import OveroptSection, RunLog
from judge_rl.train.rewards import RewardQuery, RewardSource
from judge_rl.types import PromptItem

log = logging.getLogger(__name__)


@dataclass
class OfflineConfig:
    """Settings of :func:`analyse_run`."""

    samples_per_prompt: int = 1
    """Samples per held-out prompt and checkpoint."""
    max_new_tokens: int | None = None
    """Response budget (default: the run's ``max_new_tokens``)."""
    seed: int = 0
    """Sampling seed (the same for every checkpoint)."""
    device: str | None = None
    """``cpu`` / ``cuda`` (default: CUDA when present)."""
    batch_size: int = 32
    """Prompts per generate call."""
    alarm: AlarmConfig | None = None
    degeneration: DegenerationConfig | None = None


def checkpoints_of(run: RunLog, run_path: str | os.PathLike[str] = ".") -> list[dict[str, Any]]:
    """The run's policy checkpoints, one per step (latest save wins), in step order.

    Relative paths are tried as given and relative to the run folder.
    """
    if run.ppo is None:
        raise JudgeRLError(f"{run_path}: the run log has no ppo section (not a judge-rl ppo run)")
    by_step: dict[int, dict[str, Any]] = {}
    for c in run.ppo.checkpoints:
        if "path" not in c or "step" not in c:
            continue
        p = Path(str(c["path"]))
        if not p.is_absolute() and not p.exists():
            alt = Path(run_path) / p
            p = alt if alt.exists() else p
        by_step[int(c["step"])] = {**c, "path": str(p)}
    out = [by_step[k] for k in sorted(by_step)]
    if not out:
        raise JudgeRLError(f"{run_path}: the run log lists no checkpoints (ppo.checkpoints)")
    from judge_rl.models import is_policy_checkpoint

    # a full model folder (config.json) or a LoRA adapter folder (adapter_config.json)
    missing = [c["path"] for c in out if not is_policy_checkpoint(c["path"])]
    if missing:
        raise JudgeRLError(
            f"{run_path}: checkpoint folder(s) missing or not a model folder: {', '.join(missing)}"
        )
    return out


def analyse_run(
    run: RunLog,
    gold: RewardSource,
    prompts: Sequence[PromptItem],
    *,
    proxy: RewardSource | None = None,
    run_path: str | os.PathLike[str] = ".",
    config: OfflineConfig | None = None,
    previous: OveroptSection | None = None,
    on_point: Callable[[OveroptSection], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> OveroptSection:
    """Analyse a finished run's checkpoints against a gold reward.

    Args:
        run: the PPO run's log (``ppo.checkpoints`` and ``config`` are used).
        gold: the gold reward.
        prompts: held-out prompts.
        proxy: the proxy (default: the run's ``config.reward`` spec).
        run_path: the run folder (for relative checkpoint paths and messages).
        config: :class:`OfflineConfig`.
        previous: an earlier result with the same settings: its points are reused (resume).
        on_point: called with the section after each checkpoint (to save it).
        progress: called with (done, total).

    Returns:
        The ``overopt`` section: one point per checkpoint (step 0 = the initial policy).
    """
    cfg = config or OfflineConfig()
    if not prompts:
        raise ConfigError("no held-out prompts", setting="prompts")
    rcfg = run.config or {}
    if proxy is None:
        spec = rcfg.get("reward")
        if not spec:
            raise ConfigError(
                "the run log records no reward spec; give --proxy SPEC", setting="proxy"
            )
        from judge_rl.train.reward_sources import make_reward_source

        proxy = make_reward_source(str(spec))
    policy_name = rcfg.get("policy")
    if not policy_name:
        raise JudgeRLError(f"{run_path}: the run log records no initial policy (config.policy)")
    ckpts = checkpoints_of(run, run_path)

    import torch

    from judge_rl.models import load_causal_lm, load_tokenizer
    from judge_rl.overopt.sampling import ModelPolicy

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    ref = load_causal_lm(str(policy_name), device=device)
    tok = load_tokenizer(str(policy_name))
    kw: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens or int(rcfg.get("max_new_tokens") or 64),
        "temperature": float(rcfg.get("temperature") or 1.0),
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "chat": bool(rcfg.get("chat_template", True)),
    }
    items = [it for it in prompts for _ in range(cfg.samples_per_prompt)]
    section = OveroptSection(gold=gold.name, proxy=proxy.name)
    done = {int(p["step"]): p for p in (previous.points if previous else [])}
    deg_done = {int(d["step"]): d for d in (previous.degeneration if previous else [])}
    alarm_cfg = cfg.alarm or AlarmConfig()
    deg_cfg = cfg.degeneration or DegenerationConfig()
    ref_handle = ModelPolicy(ref, tok, ref, **kw)
    ref_samples = ref_handle.sample([it.prompt for it in items])
    ref_measures = measure(ref_samples, deg_cfg)
    plan: list[tuple[int, str | None]] = [(0, None)] + [
        (int(c["step"]), str(c["path"])) for c in ckpts if int(c["step"]) != 0
    ]
    for k, (step, path) in enumerate(plan):
        if progress:
            progress(k, len(plan))
        if step in done and done[step].get("checkpoint") == (path or str(policy_name)):
            section.points.append(done[step])
            if step in deg_done:
                section.degeneration.append(deg_done[step])
        else:
            if path is None:
                samples = ref_samples
            else:
                from judge_rl.models import load_policy_checkpoint

                # full or LoRA-adapter checkpoints alike (adapters are merged into their base)
                model = load_policy_checkpoint(path, device=device).eval()
                samples = ModelPolicy(model, tok, ref, **kw).sample([it.prompt for it in items])
                del model
                gc.collect()
            point, deg = _score_point(
                step,
                path or str(policy_name),
                samples,
                items,
                proxy,
                gold,
                ref_measures,
                deg_cfg,
                cfg.seed,
            )
            section.points.append(point)
            section.degeneration.append(deg)
        _finish(section, alarm_cfg, horizon=len(plan))
        if on_point:
            on_point(section)
    if progress:
        progress(len(plan), len(plan))
    return section


def _score_point(
    step: int,
    path: str,
    samples: Any,
    items: list[PromptItem],
    proxy: RewardSource,
    gold: RewardSource,
    ref_measures: Any,
    deg_cfg: DegenerationConfig,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    queries = [
        RewardQuery(prompt=it.prompt, response=r, prompt_id=it.prompt_id, reference=it.reference)
        for it, r in zip(items, samples.responses, strict=True)
    ]
    pscores = list(proxy(queries))
    gscores = list(gold(queries))
    kl = mean_ci(samples.kl, seed=seed + step + 2)
    # per-prompt means over the fixed held-out prompts (items repeat a prompt for each sample):
    # the alarm pairs its differences over them
    order = {pid: i for i, pid in enumerate(dict.fromkeys(it.prompt_id for it in items))}
    index = [order[it.prompt_id] for it in items]
    deg = detect(samples, ref_measures, deg_cfg, step=step)
    point = {
        "step": step,
        "kl": kl.mean,
        "kl_lo": kl.lo,
        "kl_hi": kl.hi,
        **mean_ci(pscores, seed=seed + step).as_dict("proxy"),
        **mean_ci(gscores, seed=seed + step + 1).as_dict("gold"),
        "checkpoint": path,
        "gold_by_prompt": by_prompt_means(gscores, index, len(order)),
        "proxy_by_prompt": by_prompt_means(pscores, index, len(order)),
        "degeneration_flags": deg["flags"],
        "examples": [r[:200] for r in samples.responses[:3]],
    }
    return point, deg


def _finish(section: OveroptSection, alarm_cfg: AlarmConfig, *, horizon: int | None = None) -> None:
    """Fit, alarms (as if monitored at every checkpoint) and the recommended checkpoint."""
    pts = section.points
    first = pts[0]
    section.fit = fit_gao_rl(
        [p["kl"] if p["kl"] is not None else float("nan") for p in pts],
        [p["gold_mean"] if p["gold_mean"] is not None else float("nan") for p in pts],
        gold0=first["gold_mean"],
    )
    section.alarms = []
    for t in range(2, len(pts) + 1):
        dec = check_alarm(pts[:t], alarm_cfg, horizon=horizon or len(pts))
        if dec.fired:
            p = pts[t - 1]
            section.alarms.append(
                {
                    "step": p["step"],
                    "kind": "overoptimisation",
                    "message": dec.message,
                    "evidence": {
                        "step": p["step"],
                        "test": dec.evidence,
                        "degeneration_flags": p.get("degeneration_flags", []),
                        "examples": p.get("examples", []),
                    },
                    "examples": p.get("examples", []),
                }
            )
            break
    section.best_checkpoint = best_by_gold(pts, z=alarm_cfg.z)


__all__ = ["OfflineConfig", "analyse_run", "checkpoints_of"]
