"""The gold-vs-proxy over-optimisation monitor: a PPO callback.

Every ``every`` steps (and before the first step, and after the last) the monitor

1. samples the current policy on its held-out prompts (:meth:`PolicyHandle.sample`), which also
   gives the per-sample KL to the reference;
2. scores the samples with the *proxy* (the training reward) and the *gold* reward (a different
   judge, a jury or a verifier) and records means with bootstrap CIs;
3. saves a checkpoint (so the best-by-gold one can be picked afterwards);
4. runs the degeneration detectors against the reference's own samples on the same prompts and,
   when asked, the reward probes against the current samples;
5. fits Gao et al.'s RL form gold(d) = d (α − β log d), d = sqrt(KL), and reports the KL at which
   gold peaks;
6. applies the alarm rule of :func:`judge_rl.overopt.stats.check_alarm` (gold significantly down
   from its peak while the proxy still rises) and, with ``stop_on_alarm``, stops training.

Its :meth:`OveroptMonitor.log_section` is the run log's ``overopt`` section.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from judge_rl.overopt.degeneration import DegenerationConfig, detect, measure
from judge_rl.overopt.probes import Probe, flagged_names, run_probes
from judge_rl.overopt.stats import (
    AlarmConfig,
    best_by_gold,
    by_prompt_means,
    check_alarm,
    fit_gao_rl,
    mean_ci,
)
from judge_rl.runlog import OveroptSection
from judge_rl.train.callbacks import PolicyHandle, Samples, StepInfo
from judge_rl.train.rewards import RewardQuery, RewardSource
from judge_rl.types import Prompt, PromptItem

log = logging.getLogger(__name__)


@dataclass
class MonitorConfig:
    """Settings of :class:`OveroptMonitor` (exposed as ``judge-rl ppo --monitor-*``)."""

    every: int = 10
    """Evaluate every this many PPO steps (also before step 1 and after the last step)."""
    samples_per_prompt: int = 1
    """Samples per held-out prompt at each evaluation (more: tighter CIs)."""
    scored_samples: int | None = None
    """Of those, how many per prompt get the KL and reference-perplexity passes (None: all).
    Gold and proxy score every sample; the two forward passes per scored sample cost about as
    much as generating it, so scoring one sample per prompt keeps the KL axis and the
    perplexity detector at a fraction of the cost of the rest."""
    max_new_tokens: int | None = None
    """Response budget when sampling (None: the trainer's)."""
    greedy: bool = False
    """Greedy decoding for the monitor's samples (default: sample as in training)."""
    stop_on_alarm: bool = False
    """Stop training when the alarm fires (the run log says why)."""
    probe: bool = False
    """Run the reward probes before training and at every evaluation."""
    probe_gold: bool = False
    """Probe the gold reward too (default: only the proxy)."""
    save_checkpoints: bool = True
    """Save a checkpoint at every evaluation (best-by-gold selection needs them)."""
    min_fit_points: int = 4
    """Fit the Gao et al. curve once this many points with KL > 0 exist."""
    alarm: AlarmConfig = field(default_factory=AlarmConfig)
    degeneration: DegenerationConfig = field(default_factory=DegenerationConfig)
    n_examples: int = 3
    seed: int = 0


def _as_items(prompts: Sequence[PromptItem | Prompt]) -> list[PromptItem]:
    items = []
    for i, p in enumerate(prompts):
        if isinstance(p, PromptItem):
            items.append(p)
        else:
            items.append(PromptItem(prompt_id=f"heldout-{i}", prompt=p))
    return items


class OveroptMonitor:
    """A :class:`~judge_rl.train.callbacks.Callback` that watches gold vs proxy reward.

    Args:
        proxy: the training reward (scored on the monitor's own held-out samples); None takes the
            trainer's ``reward_source`` at the start of training.
        gold: the trusted reward (another judge, a jury, a verifier).
        prompts: held-out prompts (PromptItems carry references for verifiers).
        config: :class:`MonitorConfig`.
        probes: the probe suite (default: :func:`judge_rl.overopt.probes.default_probes`).
    """

    def __init__(
        self,
        proxy: RewardSource | None,
        gold: RewardSource,
        prompts: Sequence[PromptItem | Prompt],
        config: MonitorConfig | None = None,
        *,
        probes: Sequence[Probe] | None = None,
    ) -> None:
        self.proxy = proxy
        self.gold = gold
        self.items = _as_items(prompts)
        if not self.items:
            raise ValueError("the over-optimisation monitor needs at least one held-out prompt")
        self.config = config or MonitorConfig()
        if self.config.every < 1:
            raise ValueError("monitor every must be >= 1")
        self.probe_suite = probes
        self.section = OveroptSection(gold=gold.name, proxy=proxy.name if proxy else "")
        self.alarm_fired = False
        self.stopped = False
        self._ref_measures: Any = None
        self._last_step: int | None = None
        self._restored = False
        self.history: list[dict[str, Any]] = []
        """Per evaluation: the raw samples' texts and scores (not in the run log)."""
        self.horizon: int | None = self.config.alarm.horizon
        """Evaluations the run will make (the alarm's look count); set from the trainer."""

    # -- Callback protocol ----------------------------------------------------------------------

    def on_train_start(self, handle: PolicyHandle) -> None:
        if self.horizon is None:
            self.horizon = _horizon(handle, self.config.every)
        if self.proxy is None:
            self.proxy = getattr(handle, "reward_source", None)
            if self.proxy is None:
                raise ValueError("the monitor has no proxy reward and the trainer exposes none")
            self.section.proxy = self.proxy.name
        reps = self._expanded()
        ref = self._draw(handle, reference=True)
        self._ref_measures = measure(ref, self.config.degeneration, references=self._refs(reps))
        if self.config.probe:
            self._probe(step=0, samples=ref, reps=reps, when="before training")
        # before the first update the policy is the reference: its samples serve as step 0's.
        # After a resume the restored state already holds the point of the resumed step.
        if not self._restored:
            self.evaluate(handle, step=handle.step, samples=ref if handle.step == 0 else None)

    def on_step(self, info: StepInfo, handle: PolicyHandle) -> bool | None:
        if info.step % self.config.every != 0:
            return None
        self.evaluate(handle, step=info.step)
        return self.stopped

    def on_train_end(self, handle: PolicyHandle) -> None:
        if self._last_step != handle.step and not self.stopped:
            self.evaluate(handle, step=handle.step)
        self._update_best()

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue the monitor exactly: the points so far
        (with their per-prompt scores), degeneration and probe rows, the alarm state and the
        look count. JSON-serialisable; the trainer stores it in its checkpoint."""
        return {
            "version": 1,
            "section": self.section.model_dump(mode="json"),
            "alarm_fired": self.alarm_fired,
            "stopped": self.stopped,
            "last_step": self._last_step,
            "horizon": self.horizon,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (call before training resumes). The reference's
        degeneration measures are recomputed at ``on_train_start`` from the same seeded prompts."""
        if int(state.get("version", 0)) != 1:
            raise ValueError(f"unknown monitor state version {state.get('version')!r}")
        self.section = OveroptSection.model_validate(state["section"])
        self.alarm_fired = bool(state.get("alarm_fired", False))
        self.stopped = bool(state.get("stopped", False))
        self._last_step = state.get("last_step")
        self._restored = True
        if state.get("horizon") is not None:
            self.horizon = int(state["horizon"])

    def log_section(self) -> dict[str, Any]:
        """``{"overopt": section}``: the trainer stores it as the run log's ``overopt`` section."""
        return {"overopt": self.section.model_dump(mode="json")}

    # -- one evaluation --------------------------------------------------------------------------

    def _draw(self, handle: PolicyHandle, *, reference: bool = False) -> Samples:
        """Samples on the held-out prompts in :meth:`_expanded` order; only ``scored_samples``
        per prompt carry KL and reference log-probs (the rest: nan), when the handle can skip
        the scoring passes (``score``) and draw an independent stream (``stream``)."""
        import inspect

        cfg = self.config
        k = cfg.samples_per_prompt
        ks = k if cfg.scored_samples is None else max(1, min(cfg.scored_samples, k))
        params = inspect.signature(handle.sample).parameters
        kw: dict[str, Any] = {
            "greedy": cfg.greedy,
            "max_new_tokens": cfg.max_new_tokens,
            "reference": reference,
        }
        if ks >= k or "score" not in params or "stream" not in params:
            return handle.sample([it.prompt for it in self._expanded()], **kw)
        a = handle.sample([it.prompt for it in self.items for _ in range(ks)], **kw)
        b = handle.sample(
            [it.prompt for it in self.items for _ in range(k - ks)], score=False, stream=1, **kw
        )
        out = Samples(prompts=[], responses=[])
        nan = math.nan
        for i in range(len(self.items)):
            for src, lo, hi, scored in (
                (a, i * ks, (i + 1) * ks, True),
                (b, i * (k - ks), (i + 1) * (k - ks), False),
            ):
                out.prompts.extend(src.prompts[lo:hi])
                out.responses.extend(src.responses[lo:hi])
                if src.response_tokens:
                    out.response_tokens.extend(src.response_tokens[lo:hi])
                if src.ended_with_eos:
                    out.ended_with_eos.extend(src.ended_with_eos[lo:hi])
                out.kl.extend(src.kl[lo:hi] if scored else [nan] * (hi - lo))
                out.ref_logprob.extend(src.ref_logprob[lo:hi] if scored else [nan] * (hi - lo))
        return out

    @staticmethod
    def _refs(reps: Sequence[PromptItem]) -> list[str | None] | None:
        """Reference answers for the ``after_answer`` detector (None when no prompt has one)."""
        refs = [it.reference for it in reps]
        return refs if any(r is not None for r in refs) else None

    def _expanded(self) -> list[PromptItem]:
        return [it for it in self.items for _ in range(self.config.samples_per_prompt)]

    def evaluate(
        self, handle: PolicyHandle, *, step: int, samples: Samples | None = None
    ) -> dict[str, Any]:
        """Sample, score, checkpoint, detect, fit and check the alarm at ``step`` (``samples``:
        the policy's samples on the held-out prompts when the caller has them)."""
        t0 = time.perf_counter()
        cfg = self.config
        reps = self._expanded()
        # 1. sample the current policy on the held-out prompts (KL to the reference comes along)
        if samples is None:
            samples = self._draw(handle)
        # 2. proxy and gold scores with CIs
        queries = [
            RewardQuery(
                prompt=it.prompt, response=r, prompt_id=it.prompt_id, reference=it.reference
            )
            for it, r in zip(reps, samples.responses, strict=True)
        ]
        assert self.proxy is not None, "on_train_start sets the proxy"
        proxy_scores = list(self.proxy(queries))
        gold_scores = list(self.gold(queries))
        seed = cfg.seed + step
        proxy = mean_ci(proxy_scores, seed=seed)
        gold = mean_ci(gold_scores, seed=seed + 1)
        # per-prompt means over the fixed held-out prompts: the alarm pairs its differences
        index = [i for i in range(len(self.items)) for _ in range(cfg.samples_per_prompt)]
        gold_by_prompt = by_prompt_means(gold_scores, index, len(self.items))
        proxy_by_prompt = by_prompt_means(proxy_scores, index, len(self.items))
        kls = [k for k in samples.kl if math.isfinite(k)]
        kl = mean_ci(kls, seed=seed + 2) if kls else None
        point: dict[str, Any] = {
            "step": step,
            "kl": kl.mean if kl else None,
            "kl_lo": kl.lo if kl else None,
            "kl_hi": kl.hi if kl else None,
            **proxy.as_dict("proxy"),
            **gold.as_dict("gold"),
            "response_length": _mean_len(samples),
            "checkpoint": None,
            "gold_by_prompt": gold_by_prompt,
            "proxy_by_prompt": proxy_by_prompt,
        }
        # 3. checkpoint, so that the best one by gold can be picked afterwards
        if cfg.save_checkpoints:
            try:
                point["checkpoint"] = handle.save_checkpoint(f"monitor-step-{step}")
            except Exception as e:  # a failed save must not kill the run; say so
                log.warning("monitor: checkpoint at step %s failed: %s", step, e)
                point["checkpoint_error"] = str(e)
        # 4. degeneration vs the reference's own samples; probes vs the current samples
        if self._ref_measures is not None:
            deg = detect(
                samples,
                self._ref_measures,
                cfg.degeneration,
                step=step,
                references=self._refs(reps),
            )
            self.section.degeneration.append(deg)
            point["degeneration_flags"] = deg["flags"]
        if cfg.probe and step != 0:
            self._probe(
                step=step, samples=samples, reps=reps, when=f"step {step}", real_scores=proxy_scores
            )
        point["time_s"] = round(time.perf_counter() - t0, 3)
        self.section.points.append(point)
        self.history.append(
            {
                "step": step,
                "responses": samples.responses,
                "proxy": proxy_scores,
                "gold": gold_scores,
                "kl": samples.kl,
            }
        )
        self._last_step = step
        # 5. Gao et al. fit of gold vs sqrt(KL)
        self._fit()
        # 6. the alarm
        self._check_alarm(step, samples, proxy_scores, gold_scores)
        self._update_best()
        log.info(
            "monitor step %s: kl %s proxy %s gold %s",
            step,
            _fmt(point["kl"]),
            _fmt(proxy.mean),
            _fmt(gold.mean),
        )
        return point

    def _fit(self) -> None:
        pts = [
            p
            for p in self.section.points
            if p.get("kl") is not None and p.get("gold_mean") is not None
        ]
        if not pts:
            return
        first = min(pts, key=lambda p: p["step"])
        self.section.fit = fit_gao_rl(
            [p["kl"] for p in pts],
            [p["gold_mean"] for p in pts],
            gold0=first["gold_mean"],
            min_points=self.config.min_fit_points,
        )

    def _check_alarm(
        self, step: int, samples: Samples, proxy_scores: list[float], gold_scores: list[float]
    ) -> None:
        if self.alarm_fired:
            return
        decision = check_alarm(self.section.points, self.config.alarm, horizon=self.horizon)
        if not decision.fired:
            return
        self.alarm_fired = True
        # the examples: the current samples the proxy likes most
        order = sorted(
            range(len(samples.responses)),
            key=lambda i: -(proxy_scores[i] if math.isfinite(proxy_scores[i]) else -1e18),
        )
        examples = [samples.responses[i][:300] for i in order[: self.config.n_examples]]
        last = self.section.points[-1]
        metrics = {
            k: last.get(k)
            for k in ("kl", "proxy_mean", "proxy_lo", "proxy_hi", "gold_mean", "gold_lo", "gold_hi")
        }
        deg = self.section.degeneration[-1]["flags"] if self.section.degeneration else []
        alarm = {
            "step": step,
            "kind": "overoptimisation",
            "message": decision.message,
            "evidence": {
                "step": step,
                "metrics": metrics,
                "test": decision.evidence,
                "degeneration_flags": deg,
                "examples": examples,
                "stopped_training": self.config.stop_on_alarm,
            },
            "examples": examples,
        }
        self.section.alarms.append(alarm)
        log.warning("over-optimisation alarm at step %s: %s", step, decision.message)
        if self.config.stop_on_alarm:
            self.stopped = True

    def _update_best(self) -> None:
        best = best_by_gold(
            self.section.points,
            z=self.config.alarm.z,
            require_checkpoint=self.config.save_checkpoints,
        )
        if best:
            self.section.best_checkpoint = best

    def _probe(
        self,
        *,
        step: int,
        samples: Samples,
        reps: list[PromptItem],
        when: str,
        real_scores: list[float] | None = None,
    ) -> None:
        assert self.proxy is not None
        sources = [self.proxy] + ([self.gold] if self.config.probe_gold else [])
        for src in sources:
            rows = run_probes(
                src,
                [it.prompt for it in reps],
                samples.responses,
                references=[it.reference for it in reps],
                prompt_ids=[it.prompt_id for it in reps],
                probes=self.probe_suite,
                step=step,
                seed=self.config.seed,
                real_scores=real_scores if src is self.proxy else None,
            )
            for r in rows:
                r["reward"] = src.name
            self.section.probes.extend(rows)
            bad = flagged_names(rows)
            if bad and step == 0:
                log.warning(
                    "reward %r is hackable (%s): probes beating the median real response: %s",
                    src.name,
                    when,
                    ", ".join(bad),
                )


def _horizon(handle: Any, every: int) -> int | None:
    """Evaluations of the whole run: step 0, every ``every`` steps, and the last step (when it
    is not one of those).

    >>> class H: total_steps = 16
    >>> _horizon(H(), 4), _horizon(H(), 5), _horizon(H(), 20)
    (5, 5, 2)
    """
    total = getattr(handle, "total_steps", None)
    if total is None:
        total = getattr(getattr(handle, "config", None), "steps", None)
    if not isinstance(total, int) or total < 1:
        return None
    return total // every + 1 + (1 if total % every else 0)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _mean_len(samples: Samples) -> float | None:
    if samples.response_tokens:
        return sum(len(t) for t in samples.response_tokens) / max(len(samples.response_tokens), 1)
    if samples.responses:
        return sum(len(r) for r in samples.responses) / len(samples.responses)
    return None


__all__ = ["MonitorConfig", "OveroptMonitor"]
