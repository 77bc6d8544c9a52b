"""Tournaments: contestants x prompts, judged pairwise, paired by a strategy, rated with BT.

A tournament spec (``evals/tournament-*.yaml``, validated: unknown keys are errors)::

    version: 1
    name: mtbench-embedded            # run name (reports/<name>/log.json); optional
    contestants:                      # candidate sets: files, or checkpoints generated on the fly
      - file: ../examples/data/mt_bench/model_answer/gpt-4.jsonl   # MT-Bench answers, candidates
        name: gpt-4                   # optional: defaults to the source named in the file
      - name: my-policy
        model: runs/ppo/checkpoint-100            # generated with `generation` below
        generation: {backend: hf, max_tokens: 256, temperature: 0}
    prompts: ../examples/data/mt_bench/question.jsonl   # or builtin:…; optional for file contestants
    max_prompts: 10                   # first N shared prompts (optional)
    judge: pairwise-embedded          # a judge name or judge.yaml path
    judge_overrides: {}               # spec keys to replace (model, backend, order, …)
    cache: default                    # default | none | a path to a SQLite cache
    pairing:
      strategy: adaptive              # round_robin | vs_baseline | adaptive
      baseline: null                  # for vs_baseline
      top_k: 3                        # adaptive: ranks that must be ordered
      confidence: 0.95                # adaptive: separation level to stop at
      batch_size: 8                   # comparisons judged concurrently
    budget: 200                       # most comparisons (each is 1 or 2 judge calls: order)
    bootstrap: 200                    # bootstrap rounds for the final intervals
    ties: half                        # half | davidson
    seed: 0

Relative paths are resolved against the spec file's folder. Resuming is the judge cache's job:
the same spec run again replays the same pairings and finds the judgments it already paid for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from judge_rl.errors import ConfigError, JudgeRLError
from judge_rl.types import Battle, Candidate, Comparison, Judgment, PromptItem

log = logging.getLogger(__name__)

SPEC_VERSIONS = ("1",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContestantSpec(_Strict):
    """One contestant: a candidate file, or a model generated on the fly."""

    name: str | None = None
    """Display name; for a file, also selects that source when the file holds several."""
    file: str | None = None
    """Candidates (MT-Bench answer file, candidate JSONL from ``judge-rl generate``)."""
    model: str | None = None
    """A model or checkpoint to generate responses with (``generation`` says how)."""
    generation: dict[str, Any] = Field(default_factory=dict)
    """backend (default hf), max_tokens (256), temperature (0), seed, and backend options."""


class PairingSpec(_Strict):
    strategy: Literal["round_robin", "vs_baseline", "adaptive"] = "round_robin"
    baseline: str | None = None
    top_k: int = 3
    confidence: float = 0.95
    batch_size: int = 8

    @field_validator("batch_size", "top_k")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("confidence")
    @classmethod
    def _level(cls, v: float) -> float:
        if not 0.5 <= v < 1:
            raise ValueError("must be in [0.5, 1)")
        return v


class TournamentSpec(_Strict):
    """A validated tournament spec (see the module docstring)."""

    version: str
    name: str | None = None
    description: str = ""
    contestants: list[ContestantSpec]
    prompts: str | None = None
    max_prompts: int | None = None
    judge: str
    judge_overrides: dict[str, Any] = Field(default_factory=dict)
    cache: str = "default"
    pairing: PairingSpec = Field(default_factory=PairingSpec)
    budget: int | None = None
    bootstrap: int = 200
    ties: Literal["half", "davidson"] = "half"
    seed: int = 0

    @field_validator("bootstrap")
    @classmethod
    def _rounds(cls, v: int) -> int:
        from judge_rl.errors import MAX_BOOTSTRAP

        if not 1 <= v <= MAX_BOOTSTRAP:
            raise ValueError(f"must be between 1 and {MAX_BOOTSTRAP:,}")
        return v

    @field_validator("budget", "max_prompts")
    @classmethod
    def _count(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        from judge_rl._io import check_run_name

        if v is None:
            return v
        try:
            return check_run_name(v)
        except ConfigError as e:
            raise ValueError(str(e).split(": ", 1)[-1]) from None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> str:
        if str(v) not in SPEC_VERSIONS:
            raise ValueError(
                f"unsupported spec version {v!r} (supported: {', '.join(SPEC_VERSIONS)})"
            )
        return str(v)

    @field_validator("contestants")
    @classmethod
    def _two(cls, v: list[ContestantSpec]) -> list[ContestantSpec]:
        if len(v) < 2:
            raise ValueError("need at least two contestants")
        for c in v:
            if bool(c.file) == bool(c.model):
                raise ValueError("each contestant needs exactly one of `file` or `model`")
            if c.model and not c.name:
                raise ValueError(f"contestant with model {c.model!r} needs a `name`")
        return v


def load_spec(path: str | Path) -> tuple[TournamentSpec, Path]:
    """Read and validate a tournament spec; errors name the file and the key."""
    from judge_rl._io import safe_yaml_load

    p = Path(path)
    if not p.is_file():
        raise ConfigError("no such tournament spec", file=str(p))
    # Bounded: UTF-8, size, nesting and nodes after alias expansion.
    data = safe_yaml_load(p, file=str(p))
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of settings", file=str(p))
    if "version" not in data:
        raise ConfigError("missing (write `version: 1`)", setting="version", file=str(p))
    try:
        spec = TournamentSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(msg, setting=loc, file=str(p)) from None
    return spec, p.resolve().parent


def _resolve(base: Path, value: str) -> str:
    if value.startswith("builtin:"):
        return value
    cand = Path(value)
    if cand.is_absolute():
        return str(cand)
    here = base / cand
    return str(here if here.exists() or not cand.exists() else cand)


# ----------------------------------------------------------------------------------------------
# Contestants and prompts
# ----------------------------------------------------------------------------------------------


@dataclass
class ContestField:
    """Contestants' candidates by prompt id, and the prompts they all answered."""

    candidates: dict[str, dict[str, Candidate]]
    prompts: list[PromptItem]


def load_file_contestant(
    spec: ContestantSpec, base: Path, questions: str | None
) -> dict[str, Candidate]:
    from judge_rl.data import read_candidates

    assert spec.file is not None
    path = _resolve(base, spec.file)
    kwargs: dict[str, Any] = {}
    if questions and not questions.startswith("builtin:"):
        kwargs["questions"] = questions
    try:
        cands = read_candidates(path, **kwargs)
    except TypeError:  # an older reader without `questions`
        cands = read_candidates(path)
    sources = sorted({c.source for c in cands})
    if spec.name and len(sources) > 1:
        cands = [c for c in cands if c.source == spec.name]
        if not cands:
            raise ConfigError(
                f"{path} has no candidates from {spec.name!r} (sources: {', '.join(sources[:8])})",
                setting="contestants.name",
            )
    elif len(sources) > 1:
        raise ConfigError(
            f"{path} holds several sources ({', '.join(sources[:8])}); give `name` to pick one",
            setting="contestants.name",
        )
    if not cands:
        raise ConfigError(f"{path} has no candidates", setting="contestants.file")
    return {c.prompt_id: c for c in cands}


def generate_contestant(
    spec: ContestantSpec, prompts: Sequence[PromptItem], base: Path
) -> dict[str, Candidate]:
    """Responses of ``spec.model`` to ``prompts``: one greedy answer each by default, through
    :func:`judge_rl.pipeline.generate.generate` (the one path from prompts to candidates).

    ``spec.generation`` holds ``backend`` (default hf), ``max_tokens`` (256), ``temperature`` (0),
    ``seed``, any other :class:`~judge_rl.pipeline.generate.GenerateConfig` field, and further
    options of the backend. A prompt whose generation failed is left out (and logged).
    """
    import dataclasses

    from judge_rl.judge.base import _run
    from judge_rl.pipeline.generate import GenerateConfig, agenerate

    assert spec.model is not None and spec.name is not None
    opts = dict(spec.generation)
    model = spec.model
    if not model.startswith(("embedded", "tiny")) and (base / model).exists():
        model = str(base / model)
    fields = {f.name for f in dataclasses.fields(GenerateConfig)} - {
        "model", "n", "source", "output", "backend_options", "max_new_tokens", "temperature"
    }  # fmt: skip
    cfg = GenerateConfig(
        model=model,
        n=1,
        backend=str(opts.pop("backend", "hf")),
        max_new_tokens=int(opts.pop("max_tokens", 256)),
        temperature=float(opts.pop("temperature", 0.0)),
        source=spec.name,
        **{k: opts.pop(k) for k in list(opts) if k in fields},
        backend_options=opts,
    )
    got = _run(agenerate(cfg, prompts))
    for f in got.section.failures:
        log.warning("%s: generation failed on %s: %s", spec.name, f.prompt_id, f.error)
    out: dict[str, Candidate] = {}
    for c in got.candidates:
        c.metadata["model"] = spec.model
        out[c.prompt_id] = c
    return out


def build_field(spec: TournamentSpec, base: Path) -> ContestField:
    """Load file contestants, choose the shared prompts, generate the rest."""
    from judge_rl.data import read_prompts

    questions = _resolve(base, spec.prompts) if spec.prompts else None
    cands: dict[str, dict[str, Candidate]] = {}
    for c in spec.contestants:
        if c.file:
            got = load_file_contestant(c, base, questions)
            name = c.name or next(iter(got.values())).source
            if name in cands:
                raise ConfigError(f"two contestants are named {name!r}", setting="contestants")
            cands[name] = got
    prompts: list[PromptItem]
    if questions:
        prompts = read_prompts(questions)
        if cands:
            prompts = [p for p in prompts if all(p.prompt_id in c for c in cands.values())]
    else:
        if not cands:
            raise ConfigError("needed when every contestant is generated", setting="prompts")
        shared = set.intersection(*(set(c) for c in cands.values()))
        first = next(iter(cands.values()))
        prompts = [PromptItem(prompt_id=pid, prompt=first[pid].prompt) for pid in sorted(shared)]
    if not prompts:
        raise ConfigError(
            "the contestants share no prompt (check that the prompt ids of the files match)",
            setting="prompts",
        )
    if spec.max_prompts is not None:
        prompts = prompts[: spec.max_prompts]
    for c in spec.contestants:
        if c.model:
            assert c.name is not None
            if c.name in cands:
                raise ConfigError(f"two contestants are named {c.name!r}", setting="contestants")
            cands[c.name] = generate_contestant(c, prompts, base)
    keep = [p for p in prompts if all(p.prompt_id in c for c in cands.values())]
    if not keep:
        raise ConfigError("no prompt has a response from every contestant", setting="contestants")
    return ContestField(candidates=cands, prompts=keep)


# ----------------------------------------------------------------------------------------------
# The tournament loop
# ----------------------------------------------------------------------------------------------


@dataclass
class TournamentResult:
    battles: list[Battle]
    judgments: list[Judgment]
    leaderboard: Any  # bradley_terry.Leaderboard
    pairing: str
    stop_reason: str
    comparisons: int
    judge_calls: int
    cached_calls: int
    failures: dict[str, int] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    prompts: int = 0
    time_s: float = 0.0
    compared: list[Comparison] = field(default_factory=list)
    """Every comparison judged, in order (``judgments[i]`` judges ``compared[i]``)."""


def _comparison(f: ContestField, prompt: PromptItem, a: str, b: str) -> Comparison:
    ca, cb = f.candidates[a][prompt.prompt_id], f.candidates[b][prompt.prompt_id]
    return Comparison(
        prompt_id=prompt.prompt_id,
        prompt=prompt.prompt or ca.prompt,
        a=ca,
        b=cb,
        reference=prompt.reference or ca.metadata.get("reference"),
        metadata={"category": prompt.category} if prompt.category else {},
    )


def run_tournament(
    judge: Any,
    f: ContestField,
    *,
    strategy: str = "round_robin",
    baseline: str | None = None,
    budget: int | None = None,
    top_k: int = 3,
    confidence: float = 0.95,
    batch_size: int = 8,
    bootstrap: int = 200,
    ties: str = "half",
    seed: int = 0,
    on_batch: Callable[[int, int | None], None] | None = None,
) -> TournamentResult:
    """Judge pairings chosen by ``strategy`` until it stops; fit Bradley-Terry on the verdicts.

    Args:
        judge: anything implementing :class:`judge_rl.judge.base.Judge` (``compare``).
        f: contestants and prompts (:func:`build_field`).
        on_batch: called after each batch with (comparisons done, total or None) for progress.
    """
    from judge_rl.judge.base import compare_sync
    from judge_rl.tournament import bradley_terry as bt
    from judge_rl.tournament.pairing import make_pairing

    t0 = time.perf_counter()
    models = list(f.candidates)
    by_id = {p.prompt_id: p for p in f.prompts}
    pairing = make_pairing(
        strategy,
        models,
        list(by_id),
        baseline=baseline,
        budget=budget,
        top_k=top_k,
        confidence=confidence,
        batch_size=batch_size,
        seed=seed,
    )
    n_pairs = len(models) * (len(models) - 1) // 2
    total = {
        "round_robin": n_pairs * len(by_id),
        "vs_baseline": (len(models) - 1) * len(by_id),
    }.get(strategy)
    if total is not None and budget is not None:
        total = min(total, budget)
    if strategy == "adaptive":
        total = budget
    battles: list[Battle] = []
    judgments: list[Judgment] = []
    compared: list[Comparison] = []
    failures: dict[str, int] = {}
    calls = cached = done = 0
    fp_name = getattr(getattr(judge, "fingerprint", None), "name", "")
    while True:
        batch = pairing.next_batch()
        if not batch:
            break
        comps = [_comparison(f, by_id[m.prompt_id], m.a, m.b) for m in batch]
        res = compare_sync(judge, comps)
        if len(res) != len(comps):
            raise JudgeRLError(f"judge returned {len(res)} judgments for {len(comps)} comparisons")
        verdicts: list[tuple[Any, str | None]] = []
        for m, c, j in zip(batch, comps, res, strict=True):
            judgments.append(j)
            compared.append(c)
            calls += max(1, len(j.calls))
            cached += sum(1 for x in j.calls if x.cached)
            if j.ok and j.winner is not None and j.a_id == c.a.id and j.b_id == c.b.id:
                verdicts.append((m, j.winner))
                battles.append(
                    Battle(
                        model_a=m.a,
                        model_b=m.b,
                        winner=j.winner,
                        prompt_id=m.prompt_id,
                        judge=fp_name,
                    )
                )
            else:
                kind = j.error_kind or ("mismatch" if j.ok else "error")
                failures[kind] = failures.get(kind, 0) + 1
                verdicts.append((m, None))
        pairing.update(verdicts)
        done += len(batch)
        if on_batch:
            on_batch(done, total)
    if len(battles) == 0:
        raise JudgeRLError(
            f"no usable judgments ({sum(failures.values())} failed: "
            + ", ".join(f"{k} {v}" for k, v in failures.items())
            + ")"
        )
    counts = bt.aggregate(battles, models=models)  # indices follow `models`
    # The pairing fixed how often each pair met: resample within pairs (stratified bootstrap).
    lb = bt.leaderboard(counts, ties=ties, bootstrap_rounds=bootstrap, seed=seed, resample="pairs")  # type: ignore[arg-type]
    return TournamentResult(
        battles=battles,
        judgments=judgments,
        leaderboard=lb,
        pairing=strategy,
        stop_reason=pairing.stop_reason,
        comparisons=done,
        judge_calls=calls,
        cached_calls=cached,
        failures=failures,
        models=models,
        prompts=len(by_id),
        time_s=time.perf_counter() - t0,
        compared=compared,
    )


def tournament_section(result: TournamentResult) -> Any:
    """The run log's ``tournament`` section for a finished tournament."""
    from judge_rl.runlog import TournamentSection

    lb = result.leaderboard
    counts = lb.fit.counts
    warnings = list(lb.warnings)
    if result.failures:
        warnings.append(
            "skipped failed judgments: "
            + ", ".join(f"{k} {v}" for k, v in sorted(result.failures.items()))
        )
    extra: dict[str, Any] = {  # extra keys (the section allows them); the reports ignore them
        "stop_reason": result.stop_reason,
        "comparisons": result.comparisons,
        "cached_calls": result.cached_calls,
        "prompts": result.prompts,
        "failures": result.failures,
        # Every judgment behind the battles (order shown, raw output, p_a, consistency, error)
        # and the comparison it judged, so a report can show why a model won or lost.
        "comparison_records": [c.model_dump(mode="json") for c in result.compared],
        "judgments": [j.model_dump(mode="json") for j in result.judgments],
    }
    return TournamentSection(
        **extra,
        method="bt",
        leaderboard=lb.rows,
        models=counts.models,
        win_matrix=counts.win_matrix(),
        predicted=lb.fit.predicted().tolist(),
        battles=result.battles,
        warnings=warnings,
        calls=result.judge_calls,
        pairing=result.pairing,
    )


__all__ = [
    "ContestantSpec",
    "ContestField",
    "PairingSpec",
    "TournamentResult",
    "TournamentSpec",
    "build_field",
    "load_spec",
    "run_tournament",
    "tournament_section",
]
