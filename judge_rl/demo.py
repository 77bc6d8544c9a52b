"""The main job end to end: the whole RLAIF loop on the embedded model, CPU only.

Stages (each saves the run log, so finished work is on disk whatever happens next):

1. generate  — sample candidates from the policy for GSM8K and open prompts;
2. label     — the GSM8K verifier on math pairs, the embedded judge (``order=both``) on open pairs;
3. audit     — the embedded judge against human labels (HH-RLHF sample);
4. reward    — train a Bradley-Terry reward model on the labels (embedded backbone);
5. ppo       — PPO against that reward model, with the over-optimisation monitor (gold = the
               verifier on held-out GSM8K) and the reward probes;
6. tournament — base policy, PPO policy and degenerate baselines (empty, prompt echo, one word
               repeated), judged by the embedded judge, Bradley-Terry ratings with CIs;
7. report    — the terminal summary and ``reports/<run>/report.html``.

The numbers are whatever the models produce: a 135M model barely improves in four PPO steps, and
the run log's notes say so when it does not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from judge_rl.errors import ConfigError
from judge_rl.runlog import LabelSection, RunLog
from judge_rl.types import Candidate, Comparison, PreferenceRecord, PromptItem

log = logging.getLogger(__name__)

SPEC_VERSIONS = ("1",)


class Profile(BaseModel):
    """Sizes of one demo run (see evals/demo.yaml for what each controls)."""

    model_config = ConfigDict(extra="forbid")
    math_train: int
    math_heldout: int
    open: int
    candidates: int = 2
    temperature: float = 0.8
    max_new_tokens: int = 96
    audit_pairs: int = 12
    audit_injection: int = 3
    bootstrap: int = 500
    rm_epochs: int = 2
    rm_lr: float = 2e-5
    rm_batch: int = 4
    rm_max_length: int = 384
    rm_human_pairs: int = 24
    ppo_steps: int = 4
    ppo_batch: int = 8
    ppo_mini_batch: int = 4
    ppo_epochs: int = 2
    ppo_lr: float = 1e-6
    ppo_max_new_tokens: int = 64
    ppo_value_model: str = "head"
    kl_coef: float = 0.05
    monitor_every: int = 2
    monitor_checkpoints: bool = True
    tournament_prompts: int = 6
    tournament_max_new_tokens: int = 64


class DemoSpec(BaseModel):
    """``evals/demo.yaml``."""

    model_config = ConfigDict(extra="forbid")
    version: str
    policy: str = "embedded"
    judge: str = "pairwise-embedded"
    verifier: str = "gsm8k-exact"
    math_prompts: str = "builtin:gsm8k-demo"
    open_prompts: str = "builtin:open-demo"
    human: str = "builtin:hh-short"
    math_instruction: str = ""
    profiles: dict[str, Profile]


def find_spec(path: str | None) -> Path:
    """The demo spec: ``path``, else ``./evals/demo.yaml``, else the repository's, else the copy
    shipped in the wheel."""
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: no such demo spec", setting="--spec")
        return p
    packaged = Path(str(resources.files("judge_rl") / "_builtin" / "evals" / "demo.yaml"))
    for p in (
        Path("evals/demo.yaml"),
        Path(__file__).resolve().parents[1] / "evals/demo.yaml",
        packaged,
    ):
        if p.exists():
            return p
    raise ConfigError("evals/demo.yaml not found; pass --spec PATH", setting="--spec")


def load_spec(path: Path) -> DemoSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", file=str(path)) from None
    try:
        spec = DemoSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(
            err["msg"], setting=".".join(map(str, err["loc"])), file=str(path)
        ) from None
    if spec.version not in SPEC_VERSIONS:
        raise ConfigError(
            f"unsupported version {spec.version!r}", setting="version", file=str(path)
        )
    return spec


def human_file(name: str) -> str:
    """``builtin:NAME`` -> the packaged human sample; anything else is a path."""
    if name.startswith("builtin:"):
        return str(resources.files("judge_rl") / "_builtin" / "human" / f"{name[8:]}.jsonl")
    return name


# ---------------------------------------------------------------------------------------------


class Demo:
    """One demo run. ``stage`` callbacks get (name, index, total) for progress display."""

    STAGES = ("generate", "label", "audit", "reward", "ppo", "tournament", "report")

    def __init__(
        self,
        spec: DemoSpec,
        profile: str,
        run_dir: Path,
        *,
        seed: int = 0,
        on_stage: Callable[[str, int, int], None] | None = None,
        progress: Any = None,
        console: Any = None,
    ):
        if profile not in spec.profiles:
            raise ConfigError(
                f"no profile {profile!r} (have: {', '.join(spec.profiles)})", setting="profile"
            )
        self.spec = spec
        self.p = spec.profiles[profile]
        self.profile = profile
        self.run_dir = run_dir
        self.seed = seed
        self.on_stage = on_stage or (lambda *a: None)
        self.progress = progress
        self.console = console
        from judge_rl import runlog

        self._pool: dict[str, Any] = {}
        self._cache: Any = None
        self.log: RunLog = runlog.new_log(
            "demo",
            run_dir.name,
            config={"spec": spec.model_dump(), "profile": profile, "seed": seed},
        )

    # -- helpers --------------------------------------------------------------------------------

    def _judge(self, name: str, **overrides: Any) -> Any:
        """A judge by name; judges on the same model share one loaded backend (``_pool``)."""
        from judge_rl.judge.specs import build_judge, find_spec, read_spec

        path = find_spec(name)
        return build_judge(
            read_spec(path), path, overrides=overrides or None, cache=self._cache, pool=self._pool
        )

    def _save(self) -> None:
        self.log.save(self.run_dir)

    def _task(self, description: str, total: int) -> Callable[[int], None]:
        if self.progress is None:
            return lambda k: None
        tid = self.progress.add_task(description, total=total)
        return lambda k: self.progress.advance(tid, k)

    def _timed(self, name: str, fn: Callable[[], Any]) -> Any:
        i = self.STAGES.index(name)
        self.on_stage(name, i + 1, len(self.STAGES))
        t = time.perf_counter()
        out = fn()
        self.log.timings[name] = round(time.perf_counter() - t, 2)
        self._save()
        return out

    def _math_items(self) -> tuple[list[PromptItem], list[PromptItem]]:
        from judge_rl.data import read_prompts

        items = read_prompts(self.spec.math_prompts)
        instr = self.spec.math_instruction
        items = [i.model_copy(update={"prompt": f"{i.prompt}\n\n{instr}".strip()}) for i in items]
        need = self.p.math_train + self.p.math_heldout
        if len(items) < need:
            raise ConfigError(
                f"{self.spec.math_prompts} has {len(items)} prompts, the profile needs {need}",
                setting="math_train",
            )
        return items[: self.p.math_train], items[self.p.math_train : need]

    def _open_items(self) -> list[PromptItem]:
        from judge_rl.data import read_prompts

        items = read_prompts(self.spec.open_prompts)
        return items[: max(self.p.open, self.p.tournament_prompts)]

    def generate(
        self,
        backend: Any,
        items: Sequence[PromptItem],
        *,
        n: int,
        temperature: float,
        max_new_tokens: int,
        source: str,
        advance: Callable[[int], None],
    ) -> list[Candidate]:
        """``n`` responses per prompt as Candidates (reference and category in metadata)."""
        from judge_rl.backends.base import ChatRequest

        out: list[Candidate] = []
        batch = 8
        for s in range(0, len(items), batch):
            chunk = list(items[s : s + batch])
            # One seed per chunk: the backend batches requests with equal sampling settings, so
            # a seed per request would generate the prompts one by one.
            reqs = [
                ChatRequest(
                    messages=[{"role": "user", "content": str(i.prompt)}],
                    max_tokens=max_new_tokens,
                    temperature=temperature,
                    n=n,
                    seed=self.seed + s,
                )
                for i in chunk
            ]
            results = backend.chat_sync(reqs)
            for item, res in zip(chunk, results, strict=True):
                if res.error:
                    log.warning("generation failed for %s: %s", item.prompt_id, res.error)
                    continue
                for k, text in enumerate(res.texts):
                    meta: dict[str, Any] = {
                        "sample": k,
                        "temperature": temperature,
                        "max_new_tokens": max_new_tokens,
                    }
                    if item.reference is not None:
                        meta["reference"] = item.reference
                    if item.category:
                        meta["category"] = item.category
                    out.append(
                        Candidate(
                            prompt_id=item.prompt_id,
                            prompt=item.prompt,
                            response=text,
                            source=source,
                            metadata=meta,
                        )
                    )
            advance(len(chunk))
        return out

    # -- stages ---------------------------------------------------------------------------------

    def run(self) -> RunLog:
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        torch.manual_seed(self.seed)
        from judge_rl.backends.hf import HFBackend
        from judge_rl.models import load_causal_lm, load_tokenizer

        self.tok = load_tokenizer(self.spec.policy)
        self.policy = load_causal_lm(self.spec.policy)
        gen = HFBackend(
            model=self.spec.policy, model_object=self.policy, tokenizer=self.tok, batch_size=8
        )
        math_train, math_heldout = self._math_items()
        open_items = self._open_items()
        tour_items = open_items[: self.p.tournament_prompts]

        cands = self._timed(
            "generate", lambda: self._generate(gen, math_train, open_items, tour_items)
        )
        records = self._timed("label", lambda: self._label(cands))
        self._timed("audit", self._audit)
        rm_dir = self._timed("reward", lambda: self._reward(records))
        self._timed("ppo", lambda: self._ppo(rm_dir, math_train, math_heldout))
        self._timed("tournament", lambda: self._tournament(gen, tour_items))
        self._conclude()
        self._timed("report", self._report)
        return self.log

    def _generate(
        self,
        gen: Any,
        math_train: list[PromptItem],
        open_items: list[PromptItem],
        tour_items: list[PromptItem],
    ) -> dict[str, list[Candidate]]:
        p = self.p
        total = len(math_train) + min(p.open, len(open_items)) + len(tour_items)
        adv = self._task("generating", total)
        math = self.generate(
            gen,
            math_train,
            n=p.candidates,
            temperature=p.temperature,
            max_new_tokens=p.max_new_tokens,
            source="base",
            advance=adv,
        )
        opn = self.generate(
            gen,
            open_items[: p.open],
            n=p.candidates,
            temperature=p.temperature,
            max_new_tokens=p.max_new_tokens,
            source="base",
            advance=adv,
        )
        # The base policy's tournament answers, greedy, before PPO changes the weights.
        base = self.generate(
            gen,
            tour_items,
            n=1,
            temperature=0.0,
            max_new_tokens=p.tournament_max_new_tokens,
            source="base-policy",
            advance=adv,
        )
        self.base_answers = {c.prompt_id: c for c in base}
        self.log.extra["generate"] = {
            "math_candidates": len(math),
            "open_candidates": len(opn),
            "policy": self.spec.policy,
        }
        return {"math": math, "open": opn}

    def _label(self, cands: dict[str, list[Candidate]]) -> list[PreferenceRecord]:
        from judge_rl.commands.label import pair_candidates, summarize, to_records

        t = time.perf_counter()
        math_comps = pair_candidates(cands["math"], seed=self.seed)
        open_comps = pair_candidates(cands["open"], seed=self.seed)
        from judge_rl.judge.cache import JudgmentCache

        self._cache = JudgmentCache()
        verifier = self._judge(self.spec.verifier)
        self.judge = self._judge(self.spec.judge)
        adv = self._task("labelling", len(math_comps) + len(open_comps))
        math_j = asyncio.run(verifier.compare(math_comps))
        adv(len(math_comps))
        open_j = self._compare_chunked(self.judge, open_comps, adv)
        self.log.add_judge(verifier.fingerprint)
        self.log.add_judge(self.judge.fingerprint)
        judgments = math_j + open_j
        self.log.label = LabelSection(
            comparisons=math_comps + open_comps,
            judgments=judgments,
            summary=summarize(judgments, time.perf_counter() - t),
        )
        records = to_records(math_comps, math_j) + to_records(open_comps, open_j)
        self.log.label.summary["records"] = len(records)
        self.log.label.summary["decided_math_pairs"] = sum(
            1 for j in math_j if j.ok and j.winner != "tie"
        )
        return records

    def _compare_chunked(
        self, judge: Any, comps: list[Comparison], advance: Callable[[int], None], chunk: int = 8
    ) -> list[Any]:
        out: list[Any] = []
        for s in range(0, len(comps), chunk):
            part = comps[s : s + chunk]
            out += asyncio.run(judge.compare(part))
            advance(len(part))
        return out

    def _audit(self) -> None:
        from judge_rl.data import read_preferences, records_to_comparisons
        from judge_rl.judge.audit import AuditConfig, audit_judge, injection_calls

        res = read_preferences(human_file(self.spec.human))
        comps = records_to_comparisons(res.records, seed=self.seed)
        self.human_records = res.records
        judge = self._judge(self.spec.judge, order="fixed")
        cfg = AuditConfig(
            sample=self.p.audit_pairs,
            seed=self.seed,
            bootstrap=self.p.bootstrap,
            injection_sample=self.p.audit_injection,
        )
        n = min(len(comps), self.p.audit_pairs)
        adv = self._task("auditing the judge", 2 * n + injection_calls(n, cfg, True))
        section = asyncio.run(audit_judge(judge, comps, cfg, progress=adv))
        self.log.audit = section
        self.log.notes.extend(getattr(section, "notes", []))

    def _reward(self, records: list[PreferenceRecord]) -> str:
        from judge_rl.train.reward_model import RewardModelConfig, train_reward_model

        decided = [r for r in records if not r.is_tie]
        train = list(records)
        if len(decided) < 4:
            # Too few decided labels to learn anything: say so and add the human pairs the audit
            # did not use, rather than training on ties alone.
            extra = self.human_records[self.p.audit_pairs :][: self.p.rm_human_pairs]
            train += extra
            self.log.notes.append(
                f"only {len(decided)} decided judge/verifier labels: the reward model was trained "
                f"on them plus {len(extra)} human HH-RLHF pairs"
            )
        out = str(self.run_dir / "reward_model")
        cfg = RewardModelConfig(
            model=self.spec.policy,
            output=out,
            epochs=self.p.rm_epochs,
            lr=self.p.rm_lr,
            batch_size=self.p.rm_batch,
            max_length=self.p.rm_max_length,
            truncation="left",
            soft_labels=True,
            eval_split=0.25 if len(train) >= 8 else 0.0,
            eval_every=0,
            save_every=0,
            keep_checkpoints=1,
            seed=self.seed,
            log_every=1,
        )
        bar: dict[str, Callable[[int], None]] = {}

        def hook(ev: Any) -> None:
            if ev.kind == "start":
                bar["advance"] = self._task("training the reward model", ev.total_steps)
            elif ev.kind == "step" and "advance" in bar:
                bar["advance"](1)

        train_reward_model(cfg, records=train, run_log=self.log, log_dir=self.run_dir, hooks=[hook])
        return out

    def _ppo(self, rm_dir: str, math_train: list[PromptItem], heldout: list[PromptItem]) -> None:
        from judge_rl.overopt.monitor import MonitorConfig, OveroptMonitor
        from judge_rl.train._ppo_config import PPOConfig
        from judge_rl.train.ppo import PPOTrainer
        from judge_rl.train.reward_sources import RewardModelReward, VerifierReward

        p = self.p
        proxy = RewardModelReward(rm_dir)
        gold = VerifierReward("gsm8k")
        monitor = OveroptMonitor(
            proxy,
            gold,
            heldout,
            MonitorConfig(
                every=p.monitor_every,
                probe=True,
                save_checkpoints=p.monitor_checkpoints,
                seed=self.seed,
            ),
        )
        cfg = PPOConfig(
            policy=self.spec.policy,
            steps=p.ppo_steps,
            batch_size=p.ppo_batch,
            mini_batch_size=p.ppo_mini_batch,
            ppo_epochs=p.ppo_epochs,
            lr=p.ppo_lr,
            kl_coef=p.kl_coef,
            max_new_tokens=p.ppo_max_new_tokens,
            temperature=1.0,
            # Mid-run full checkpoints (policy + value + optimizer, ~3 GB for 135M) are not
            # needed here: the monitor saves the policy at each evaluation for best-by-gold.
            save_every=0,
            value_model=p.ppo_value_model,
            output=str(self.run_dir / "ppo"),
            seed=self.seed,
            device="cpu",
        )
        adv = self._task("PPO", p.ppo_steps)

        class _Progress:
            def on_train_start(self, handle: Any) -> None: ...
            def on_step(self, info: Any, handle: Any) -> None:
                adv(1)

            def on_train_end(self, handle: Any) -> None: ...
            def log_section(self) -> dict[str, Any]:
                return {}

        trainer = PPOTrainer(
            cfg,
            self.policy,
            self.tok,
            proxy,
            math_train,
            callbacks=[monitor, _Progress()],
            run_log=self.log,
            run_dir=self.run_dir,
        )
        trainer.train()
        self.log.overopt = monitor.section
        self.trained_policy = trainer.policy

    def _tournament(self, gen: Any, items: list[PromptItem]) -> None:
        from judge_rl.backends.hf import HFBackend
        from judge_rl.tournament.runner import ContestField, run_tournament, tournament_section
        from judge_rl.types import prompt_text

        p = self.p
        ppo_gen = HFBackend(
            model="ppo-final", model_object=self.trained_policy, tokenizer=self.tok, batch_size=8
        )
        adv = self._task("tournament answers", len(items))
        ppo = self.generate(
            ppo_gen,
            items,
            n=1,
            temperature=0.0,
            max_new_tokens=p.tournament_max_new_tokens,
            source="ppo-final",
            advance=adv,
        )
        cands: dict[str, dict[str, Candidate]] = {
            "base-policy": {pid: c for pid, c in self.base_answers.items()},
            "ppo-final": {c.prompt_id: c for c in ppo},
        }
        degenerate = {
            "empty-answer": lambda i: "",
            "prompt-echo": lambda i: prompt_text(i.prompt),
            "word-repeated": lambda i: " ".join(["the"] * 200),
        }
        for name, fn in degenerate.items():
            cands[name] = {
                i.prompt_id: Candidate(
                    prompt_id=i.prompt_id, prompt=i.prompt, response=fn(i), source=name
                )
                for i in items
            }
        common = [i for i in items if all(i.prompt_id in c for c in cands.values())]
        field = ContestField(candidates=cands, prompts=common)
        n_models = len(cands)
        total = len(common) * n_models * (n_models - 1) // 2
        adv2 = self._task("tournament judging", total)
        seen = [0]

        def on_batch(done: int, _total: int | None) -> None:
            adv2(done - seen[0])
            seen[0] = done

        result = run_tournament(
            self.judge,
            field,
            strategy="round_robin",
            bootstrap=self.p.bootstrap,
            seed=self.seed,
            on_batch=on_batch,
        )
        self.log.tournament = tournament_section(result)

    def _conclude(self) -> None:
        """Plain statements of what improved and what did not."""
        oo = self.log.overopt
        if oo is not None and len(oo.points) >= 2:
            first, last = oo.points[0], oo.points[-1]
            g0, g1 = first.get("gold_mean"), last.get("gold_mean")
            p0, p1 = first.get("proxy_mean"), last.get("proxy_mean")
            if g0 is not None and g1 is not None:
                lo, hi = last.get("gold_lo"), last.get("gold_hi")
                within = lo is not None and hi is not None and lo <= g0 <= hi
                verdict = "did not improve beyond noise" if within or g1 <= g0 else "improved"
                self.log.notes.append(
                    f"held-out GSM8K accuracy (gold, verifier) went {g0:.3f} -> {g1:.3f} over "
                    f"{len(oo.points) - 1} monitor intervals: the policy {verdict}"
                )
            if p0 is not None and p1 is not None:
                self.log.notes.append(
                    f"the reward model's score (proxy) of held-out samples went {p0:.3f} -> "
                    f"{p1:.3f}"
                )
            if oo.alarms:
                self.log.notes.append(f"over-optimisation alarms: {len(oo.alarms)} (see below)")
        if oo is not None and oo.probes:
            flagged = sorted({r["name"] for r in oo.probes if r.get("flagged")})
            if flagged:
                self.log.notes.append(
                    "reward-model probes: " + ", ".join(flagged) + " scored above the median real "
                    "response — the reward model is hackable (see Over-optimisation)"
                )
        au = self.log.audit
        pfw = au.metrics.get("p_first_wins") if au is not None else None
        if pfw is not None and pfw.value is not None and abs(pfw.value - 0.5) > 0.2:
            self.log.notes.append(
                f"the embedded judge picked the answer shown first in {pfw.value:.0%} of its calls "
                "(audit): with order=both most of its verdicts are ties"
            )
        t = self.log.tournament
        if t is not None and t.leaderboard:
            rows = {r["model"]: r for r in t.leaderboard}
            order = [r["model"] for r in t.leaderboard]
            self.log.notes.append("tournament order (embedded judge): " + " > ".join(order))
            bad = [
                m
                for m in ("empty-answer", "prompt-echo", "word-repeated")
                if m in rows
                and "base-policy" in rows
                and rows[m]["rating"] >= rows["base-policy"]["rating"]
            ]
            if bad:
                self.log.notes.append(
                    "the embedded judge rated degenerate baselines (" + ", ".join(bad) + ") at or "
                    "above the base policy: it is too weak to trust as a judge (see the audit)"
                )

    def _report(self) -> None:
        from judge_rl.report.html import write_report

        self.report_path = write_report(self.log, self.run_dir / "report.html")
