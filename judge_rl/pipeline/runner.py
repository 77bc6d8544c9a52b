"""Run a pipeline spec stage by stage, resumably (``judge-rl run``, ``judge-rl demo``).

For each stage, in order:

1. its config (spec + profile) is built into the kind's config dataclass — all stages are
   validated before the first one runs;
2. its *config hash* covers the kind, the config, the seed and the hashes of the stages its inputs
   come from; if the run folder's log records the stage as done with the same hash and its output
   file is there, the stage is skipped and its output read back (a finished stage is never redone);
3. otherwise the thread count is decided (:mod:`judge_rl.pipeline.threads`), the stage runs, its
   output is written to ``<run>/stages/<stage>.json`` and its run-log section, timing and
   :class:`~judge_rl.runlog.StageRecord` to ``<run>/log.json`` — before the next stage starts.

Stages get their inputs as typed records and return typed records; models named by several stages
are loaded once (:class:`Context`).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from judge_rl._io import atomic_write_text, content_hash
from judge_rl.errors import ConfigError, JudgeRLError
from judge_rl.pipeline import audit as audit_mod
from judge_rl.pipeline import generate as gen_mod
from judge_rl.pipeline import label as label_mod
from judge_rl.pipeline import ppo as ppo_mod
from judge_rl.pipeline import report as report_mod
from judge_rl.pipeline import task as task_mod
from judge_rl.pipeline import tournament as tour_mod
from judge_rl.pipeline import train_rm as rm_mod
from judge_rl.pipeline.spec import PipelineSpec, build_config, resolved_config
from judge_rl.runlog import PipelineSection, RunLog, StageRecord

log = logging.getLogger(__name__)


@dataclass
class StageKind:
    """What a stage kind takes and gives."""

    config: type
    output: type[BaseModel]
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


class ReportOut(BaseModel):
    """The ``report`` stage's output."""

    html: str | None = None
    notes: list[str] = []


KINDS: dict[str, StageKind] = {
    "prompts": StageKind(task_mod.PromptsConfig, task_mod.PromptSets, ()),
    "prompt_file": StageKind(task_mod.PromptFileConfig, task_mod.PromptSets, ()),
    "generate": StageKind(gen_mod.GenerateConfig, gen_mod.Candidates, ("prompts",)),
    "label": StageKind(label_mod.LabelConfig, label_mod.Labels, ("candidates",)),
    "audit": StageKind(audit_mod.AuditConfig, audit_mod.AuditSummary, (), ("prompts",)),
    "train_rm": StageKind(rm_mod.TrainRMConfig, rm_mod.RewardModelOut, ("records",)),
    "ppo": StageKind(
        ppo_mod.PPOStageConfig,
        ppo_mod.PPOResult,
        ("prompts", "heldout"),
        ("tournament", "reward_model"),
    ),
    "tournament": StageKind(tour_mod.TournamentConfig, tour_mod.Ratings, ("ppo", "prompts")),
    "report": StageKind(report_mod.ReportConfig, ReportOut, (), ("ppo", "tournament", "audit")),
}


@dataclass
class Plan:
    """A validated spec: each stage's config object, kind and input wiring."""

    spec: PipelineSpec
    profile: str | None
    configs: dict[str, Any]
    raw: dict[str, dict[str, Any]]


def validate(spec: PipelineSpec, profile: str | None = None) -> Plan:
    """Build every stage's config and check its inputs; raises :class:`ConfigError` naming the
    stage and the key."""
    file = spec.path
    if profile is not None and profile not in spec.profiles:
        raise ConfigError(
            f"no profile {profile!r} (have: {', '.join(spec.profiles) or 'none'})",
            setting="profile",
            file=file or None,
        )
    for name, g in spec.graders.items():
        params = {k: v for k, v in (g.model_extra or {}).items()}
        try:
            task_mod.make_grader(g.kind, **params)
        except ConfigError as e:
            raise ConfigError(
                f"grader {name!r}: {e}", setting=f"graders.{name}", file=file or None
            ) from None
    configs: dict[str, Any] = {}
    raw: dict[str, dict[str, Any]] = {}
    seen: list[str] = []
    for name, st in spec.stages.items():
        kind = spec.kind(name)
        if kind not in KINDS:
            raise ConfigError(
                f"stage {name!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})",
                setting=f"stages.{name}.kind",
                file=file or None,
            )
        k = KINDS[kind]
        values = resolved_config(spec, name, profile)
        configs[name] = build_config(k.config, values, stage=name, file=file)
        if kind == "ppo":  # the nested PPO settings are checked now, not when PPO starts
            ppo_mod.ppo_config(configs[name], Path("ppo"), spec.seed, stage=name, file=file)
        if kind == "train_rm":
            rm_mod.rm_config(configs[name], Path("rm"), spec.seed, stage=name, file=file)
        raw[name] = values
        for inp in st.inputs:
            if inp not in k.required + k.optional:
                raise ConfigError(
                    f"stage {name!r}: unknown input {inp!r} "
                    f"(a {kind} stage takes: {', '.join(k.required + k.optional) or 'none'})",
                    setting=f"stages.{name}.inputs.{inp}",
                    file=file or None,
                )
        for inp in k.required:
            if inp not in st.inputs:
                raise ConfigError(
                    f"stage {name!r}: missing input {inp!r}",
                    setting=f"stages.{name}.inputs",
                    file=file or None,
                )
        for inp, ref in st.inputs.items():
            src, _, attr = ref.partition(".")
            if src not in seen:
                raise ConfigError(
                    f"stage {name!r}: input {inp!r} = {ref!r} does not name an earlier stage",
                    setting=f"stages.{name}.inputs.{inp}",
                    file=file or None,
                )
            out_cls = KINDS[spec.kind(src)].output
            if attr and attr not in out_cls.model_fields:
                raise ConfigError(
                    f"stage {name!r}: input {inp!r} = {ref!r}: stage {src!r} has no output "
                    f"{attr!r} (it has: {', '.join(out_cls.model_fields)})",
                    setting=f"stages.{name}.inputs.{inp}",
                    file=file or None,
                )
        for key in ("judge", "reward", "gold"):
            value = getattr(configs[name], key, None)
            if (
                isinstance(value, str)
                and value.startswith("grader:")
                and value[7:] not in spec.graders
            ):
                raise ConfigError(
                    f"stage {name!r}: {key} {value!r} names no grader of the spec "
                    f"(have: {', '.join(spec.graders) or 'none'})",
                    setting=f"stages.{name}.config.{key}",
                    file=file or None,
                )
        _check_refs(name, configs[name], file)
        for j in getattr(configs[name], "judges", []) or []:
            if j.startswith("grader:") and j[7:] not in spec.graders:
                raise ConfigError(
                    f"stage {name!r}: judge {j!r} names no grader of the spec",
                    setting=f"stages.{name}.config.judges",
                    file=file or None,
                )
        seen.append(name)
    return Plan(spec=spec, profile=profile, configs=configs, raw=raw)


def _check_refs(stage: str, cfg: Any, file: str) -> None:
    """Judges named by a stage exist; reward specs parse (nothing is loaded)."""
    from judge_rl.judge.specs import find_spec
    from judge_rl.train.reward_sources import parse_spec

    names = [getattr(cfg, "judge", None), *(getattr(cfg, "judges", None) or [])]
    for j in names:
        if isinstance(j, str) and j and not j.startswith("grader:"):
            try:
                find_spec(j)
            except ConfigError as e:
                raise ConfigError(
                    f"stage {stage!r}: {e}",
                    setting=f"stages.{stage}.config.judge",
                    file=file or None,
                ) from None
    for key in ("reward", "gold"):
        r = getattr(cfg, key, None)
        if isinstance(r, str) and r and not r.startswith("grader:") and r != "rm":
            try:
                parse_spec(r)
            except ConfigError as e:
                raise ConfigError(
                    f"stage {stage!r}: {e}",
                    setting=f"stages.{stage}.config.{key}",
                    file=file or None,
                ) from None


# ---------------------------------------------------------------------------------------------


@dataclass
class Context:
    """What stages share within one process: the run folder, loaded models, graders."""

    run_dir: Path
    spec: PipelineSpec
    seed: int = 0
    log: RunLog | None = None
    models: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    progress: Any = None

    def model(self, name: str) -> tuple[Any, Any]:
        """(model, tokenizer) by name, loaded once: stages naming the same model share it."""
        from judge_rl.models import resolve_model

        key = resolve_model(name)
        if key not in self.models:
            from judge_rl.models import load_causal_lm, load_tokenizer

            self.models[key] = (load_causal_lm(name), load_tokenizer(name))
        return self.models[key]

    def grader(self, ref: str) -> Any:
        g = self.spec.graders[ref[7:]]
        return task_mod.make_grader(g.kind, **dict(g.model_extra or {}))

    def judge(self, ref: str, options: dict[str, Any] | None = None) -> Any:
        """``grader:NAME`` as a pairwise judge, or a judge spec by name with ``options`` as
        overrides (the shared judgment cache applies)."""
        if ref.startswith("grader:"):
            return task_mod.GraderJudge(self.grader(ref))
        from judge_rl.judge.specs import load_judge

        return load_judge(ref, overrides=options or None, cache="default")

    def reward(self, ref: str, rm_path: str | None = None) -> Any:
        if ref.startswith("grader:"):
            return self.grader(ref)
        from judge_rl.train.reward_sources import RewardModelReward, make_reward_source

        if ref == "rm":
            if not rm_path:
                raise ConfigError("reward 'rm' needs a reward_model input", setting="reward")
            return RewardModelReward(rm_path)
        return make_reward_source(ref)

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        if self.progress is None:
            return lambda k: None
        tid = self.progress.add_task(description, total=total)
        return lambda k: self.progress.advance(tid, k)


def _stage_fn(kind: str) -> Callable[..., BaseModel]:
    return {
        "prompts": _prompts,
        "prompt_file": _prompt_file,
        "generate": _generate,
        "label": _label,
        "audit": _audit,
        "train_rm": _train_rm,
        "ppo": _ppo,
        "tournament": _tournament,
        "report": _report,
    }[kind]


def _prompts(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    return task_mod.make_prompts(cfg)


def _prompt_file(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    return task_mod.read_prompt_sets(cfg)


def _generate(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    # hf: the loaded model other stages naming it share; vllm/openai: the backend loads its own
    model, tok = ctx.model(cfg.model) if cfg.backend == "hf" else (None, None)
    advance = ctx.task(f"generate ({cfg.model})", len(inp["prompts"]))
    seen = [0]

    def on_progress(p: gen_mod.GenerateProgress) -> None:
        advance(p.done - seen[0])
        seen[0] = p.done

    out = gen_mod.generate(cfg, inp["prompts"], model, tok, on_progress=on_progress)
    if not out.candidates:  # an empty output is never a success
        kinds = ", ".join(f"{k}: {v}" for k, v in out.section.failure_kinds.items())
        raise JudgeRLError(f"stage {name!r}: no candidates came back ({kinds or 'none asked'})")
    assert ctx.log is not None
    ctx.log.generate = out.section
    return out


def _label(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    judge = ctx.judge(cfg.judge, cfg.judge_options)
    out = label_mod.label(cfg, inp["candidates"], judge)
    assert ctx.log is not None
    ctx.log.label = out.section
    for fp in label_mod.fingerprints(judge):  # the judge and its members, as `judge-rl label`
        ctx.log.add_judge(fp)
    return out


def _audit(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    if cfg.human:
        from judge_rl.data import read_preferences, records_to_comparisons

        path = cfg.human
        if path.startswith("builtin:"):
            from importlib import resources

            path = str(resources.files("judge_rl") / "_builtin" / "human" / f"{path[8:]}.jsonl")
        comps = records_to_comparisons(read_preferences(path).records, seed=cfg.seed)
    elif "prompts" in inp:
        comps = task_mod.audit_pairs(inp["prompts"], seed=cfg.seed)
    else:
        raise ConfigError(f"stage {name!r}: needs 'human' or a 'prompts' input", setting="human")
    judges = {j: ctx.judge(j, {**cfg.judge_options, "order": "fixed"}) for j in cfg.judges}
    out = audit_mod.audit(cfg, comps, judges)
    assert ctx.log is not None
    ctx.log.audit = out.section
    return out


def _train_rm(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    return rm_mod.train_rm(
        cfg,
        inp["records"],
        output=ctx.run_dir / name,
        seed=ctx.seed,
        run_log=ctx.log,
        run_dir=ctx.run_dir,
    )


def _ppo(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    model, tok = ctx.model(cfg.policy)
    rm = inp.get("reward_model")
    reward = ctx.reward(cfg.reward, rm.path if rm is not None else None)
    gold = ctx.reward(cfg.gold)
    if getattr(gold, "name", None) == getattr(reward, "name", None):
        raise ConfigError(
            f"stage {name!r}: gold and reward are the same ({cfg.gold}): the monitor needs an "
            "independent gold",
            setting=f"stages.{name}.config.gold",
        )
    steps = int(cfg.ppo.get("steps", 20))
    out = ppo_mod.run_ppo(
        cfg,
        model=model,
        tokenizer=tok,
        reward=reward,
        gold=gold,
        prompts=inp["prompts"],
        heldout=inp["heldout"],
        tournament=inp.get("tournament") or [],
        output=ctx.run_dir / name,
        seed=ctx.seed,
        run_log=ctx.log,
        run_dir=ctx.run_dir,
        advance=ctx.task("PPO steps", steps),
    )
    assert ctx.log is not None
    ctx.log.ppo = out.ppo
    ctx.log.overopt = out.overopt
    return out


def _tournament(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    ppo: ppo_mod.PPOResult = inp["ppo"]
    answers, names = tour_mod.contestant_answers(
        ppo.snapshots, ppo.best_step, ppo.last_step, cfg.contestants
    )
    out = tour_mod.tournament(
        cfg,
        prompts=ppo_mod.expand_prompts(inp["prompts"], ppo.snapshot_samples),
        answers=answers,
        judge=ctx.judge(cfg.judge, cfg.judge_options),
        names=names,
    )
    assert ctx.log is not None
    ctx.log.tournament = out.section
    return out


def _report(ctx: Context, name: str, cfg: Any, inp: dict[str, Any]) -> BaseModel:
    assert ctx.log is not None
    ppo: ppo_mod.PPOResult | None = inp.get("ppo")
    out = ReportOut()
    if ppo is not None and ppo.overopt is not None:
        d = report_mod.claims(
            cfg,
            ppo.overopt,
            best_step=ppo.best_step,
            ratings=inp.get("tournament"),
            audit=inp.get("audit"),
            task=ctx.spec.description,
        )
        ctx.log.demo = d
        out.notes = report_mod.notes(d, inp.get("audit"))
        ctx.log.notes = [n for n in ctx.log.notes if n not in out.notes] + out.notes
    if cfg.html:
        ctx.log.save(ctx.run_dir)
        out.html = str(report_mod.write_html(ctx.log, ctx.run_dir))
    return out


# ---------------------------------------------------------------------------------------------


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _load_existing(run_dir: Path) -> RunLog | None:
    from judge_rl import runlog

    if not (run_dir / "log.json").exists():
        return None
    try:
        return runlog.load(run_dir)
    except JudgeRLError:
        return None


def run_pipeline(
    spec: PipelineSpec,
    run_dir: Path,
    *,
    profile: str | None = None,
    threads: int | None = None,
    on_stage: Callable[[StageRecord, int, int], None] | None = None,
    progress: Any = None,
) -> RunLog:
    """Run (or resume) ``spec`` in ``run_dir``; returns the run log (also on disk)."""
    from judge_rl import runlog
    from judge_rl.pipeline.threads import apply_threads, decide_threads

    plan = validate(spec, profile)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stages").mkdir(exist_ok=True)
    previous = _load_existing(run_dir)
    done: dict[str, StageRecord] = {}
    if previous is not None and previous.pipeline is not None:
        done = {r.name: r for r in previous.pipeline.stages if r.status in ("done", "skipped")}
    log_ = runlog.new_log(
        "run",
        run_dir.name,
        config={"spec": spec.model_dump(exclude={"path"}), "profile": profile, "seed": spec.seed},
    )
    if previous is not None:  # keep the finished stages' sections (pipeline is rebuilt below)
        for key in runlog.SECTIONS:
            if key != "pipeline":
                setattr(log_, key, getattr(previous, key))
        log_.judges = previous.judges
        log_.timings = dict(previous.timings)
    log_.pipeline = PipelineSection(spec=spec.path, name=spec.name, profile=profile)
    ctx = Context(run_dir=run_dir, spec=spec, seed=spec.seed, log=log_, progress=progress)
    outputs: dict[str, BaseModel] = {}
    hashes: dict[str, str] = {}
    names = list(spec.stages)
    for i, name in enumerate(names):
        kind = spec.kind(name)
        st = spec.stages[name]
        cfg = plan.configs[name]
        h = content_hash(
            [
                kind,
                plan.raw[name],
                spec.seed,
                {k: hashes[v.split(".")[0]] for k, v in st.inputs.items()},
            ]
        )
        if kind in ("label", "audit", "tournament", "ppo"):  # they may use the graders
            h = content_hash([h, {k: g.model_dump() for k, g in spec.graders.items()}])
        hashes[name] = h
        out_file = run_dir / "stages" / f"{name}.json"
        rec = StageRecord(
            name=name,
            kind=kind,
            config_hash=h,
            inputs=dict(st.inputs),
            outputs={"result": str(out_file.relative_to(run_dir))},
        )
        prev = done.get(name)
        if prev is not None and prev.config_hash == h and out_file.exists():
            outputs[name] = KINDS[kind].output.model_validate_json(out_file.read_text("utf-8"))
            rec.status = "skipped"
            rec.threads, rec.wall_s, rec.cpu_s = prev.threads, prev.wall_s, prev.cpu_s
            log_.pipeline.stages.append(rec)
            if on_stage:
                on_stage(rec, i + 1, len(names))
            continue
        inp: dict[str, Any] = {}
        for key, ref in st.inputs.items():
            src, _, attr = ref.partition(".")
            inp[key] = getattr(outputs[src], attr) if attr else outputs[src]
        light = kind in ("prompts", "prompt_file")
        rec.threads = 1 if light else decide_threads(threads)
        if not light:
            apply_threads(rec.threads)
        if on_stage:
            on_stage(rec, i + 1, len(names))
        t0, c0 = time.perf_counter(), _cpu_s()
        try:
            out = _stage_fn(kind)(ctx, name, cfg, inp)
        except JudgeRLError as e:
            rec.status, rec.error = "failed", str(e)
            rec.wall_s = round(time.perf_counter() - t0, 2)
            log_.pipeline.stages.append(rec)
            log_.save(run_dir)
            if isinstance(e, ConfigError) and not str(e).startswith(f"stage {name!r}"):
                raise ConfigError(f"stage {name!r}: {e}") from None
            raise
        rec.wall_s = round(time.perf_counter() - t0, 2)
        rec.cpu_s = round(_cpu_s() - c0, 2)
        rec.status = "done"
        atomic_write_text(out_file, out.model_dump_json())
        outputs[name] = out
        log_.timings[name] = rec.wall_s
        log_.pipeline.stages.append(rec)
        log_.save(run_dir)
    log_.save(run_dir)
    return log_


def stage_config_fields(kind: str) -> list[str]:
    return [f.name for f in dataclasses.fields(KINDS[kind].config)]


__all__ = ["KINDS", "Context", "Plan", "run_pipeline", "validate"]
