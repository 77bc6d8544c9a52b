"""The versioned run log: the contract between the pipeline and the reports.

Every command writes ``reports/<run>/log.json``. The terminal and HTML reports are pure functions
of it. A run log holds one optional section per pipeline stage; a combined run (the demo) fills
several. Sections allow extra keys so a stage can record more than the reports render.

Version history:
    1: first version.

Import time (``judge-rl label`` imports this module once its last answer is in): the
annotations are evaluated by Python as each class is made (no ``from __future__ import
annotations``: pydantic would ``eval`` each of ~180 annotation strings), and empty lists and
dicts come from :func:`_list` / :func:`_dict` (pydantic reads a default factory's signature;
the builtins' take ~0.3 ms each, parsed from text). Together ~20% of the import's work.
"""

import itertools
import json
import os
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
)

from judge_rl._env import environment
from judge_rl._io import atomic_write_bytes
from judge_rl.errors import JudgeRLError
from judge_rl.types import Battle, Comparison, JudgeFingerprint, Judgment, Score

LOG_VERSION = 1
SUPPORTED_VERSIONS = (1,)
DEFAULT_ROOT = "reports"


def _list() -> list[Any]:
    """A new empty list: a field's default (see the module's note on import time)."""
    return []


def _dict() -> dict[str, Any]:
    """A new empty dict: a field's default (see the module's note on import time)."""
    return {}


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


def _null_to_nan(v: Any) -> Any:
    """NaN is written to JSON as ``null``; read it back as NaN so such a log loads again."""
    if isinstance(v, list):
        return [_null_to_nan(x) for x in v]
    if isinstance(v, dict):
        return {k: float("nan") if x is None else x for k, x in v.items()}
    return v


class Metric(BaseModel):
    """A number with its uncertainty, or the reason it could not be computed."""

    model_config = ConfigDict(extra="allow")
    value: float | None = None
    lo: float | None = None
    """Lower end of the confidence interval (``level``)."""
    hi: float | None = None
    n: int = 0
    """How many items it was computed on (after skipping failures)."""
    skipped: int = 0
    """How many failed items were skipped."""
    level: float = 0.95
    note: str | None = None
    """Why ``value`` is None, or a caveat."""


class LabelSummary(BaseModel):
    """The label stage's counts (``judge-rl label`` and the pipeline's ``label`` stage).

    A typed record; it replaces the loose dict the section used to hold and reads like it
    (``summary["calls"]``, ``summary.get("transport")``, ``"n" in summary``, ``dict(summary)``):
    the keys are the fields a run set, so an older log (some keys absent) loads, reads and writes
    back the same. Keys it does not know (an older pipeline's ``records``) are kept.
    """

    model_config = ConfigDict(extra="allow")

    n: int = 0
    """Comparisons judged (failures included)."""
    verdicts: dict[str, int] = Field(default_factory=lambda: {"a": 0, "b": 0, "tie": 0})
    ties: int = 0
    failures: dict[str, int] = Field(default_factory=_dict)
    """Error kind -> failed comparisons (they never become labels)."""
    failed: int = 0
    position_consistency: float | None = None
    """Share of the comparisons judged in both orders whose verdicts agreed (None: single order)."""
    position_checked: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """USD of the calls made (cache hits cost nothing)."""
    time_s: float = 0.0
    calls: int = 0
    """Model calls made (cache hits not counted)."""
    cached: int = 0
    """Calls served from the judgment cache."""
    label_mass_mean: float | None = None
    """Mean probability mass of the label tokens at the verdict position (judges that read it)."""
    low_label_mass: int | None = None
    label_mass_calls: int | None = None
    probs_contradict: int | None = None
    verdict_from_probs: int | None = None
    written: int | None = None
    """Preference records produced (written to the output file by ``judge-rl label``)."""
    decided: int | None = None
    """Records that are not ties."""
    ties_dropped: int = 0
    budget_refused: int | None = None
    """Calls the budget refused (``--max-cost`` / ``--max-calls``)."""
    transport: dict[str, Any] = Field(default_factory=_dict)
    """What the judge's backends did on the wire (attempts, retries, timeouts, endpoints)."""

    @model_serializer(mode="wrap")
    def _set_keys_only(self, handler: Any) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        keep = set(self.keys())
        return {k: v for k, v in data.items() if k in keep}

    def keys(self) -> list[str]:
        """The keys this summary has: fields set by the run, then kept unknown keys."""
        extra = list(self.__pydantic_extra__ or {})
        return [k for k in type(self).model_fields if k in self.model_fields_set] + extra

    def values(self) -> list[Any]:
        return [self[k] for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self[k]) for k in self.keys()]

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default


class Sampling(BaseModel):
    """The sampling settings, recorded on every candidate (``metadata["sampling"]``)."""

    backend: str = "hf"
    model: str = ""
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 0
    seed: int = 0


class GenerateStats(BaseModel):
    """Counts of one ``generate`` run (the run log's ``generate.summary``)."""

    prompts: int = 0
    """Prompts asked for (after any limit)."""
    skipped_done: int = 0
    """Prompts whose samples were already in the output."""
    generated: int = 0
    """Prompts that got all their samples in this run."""
    candidates: int = 0
    """Candidates produced in this run."""
    failed: int = 0
    partial: int = 0
    """Failed prompts that still kept some samples."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    retries: int = 0
    timeouts: int = 0
    prefills: int | None = None
    """Prompt rows the model prefilled (hf: one per prompt, whatever ``n``); None when the
    backend does not say."""
    time_s: float = 0.0
    tokens_per_s: float = 0.0


class GenerateFailure(BaseModel):
    """A prompt that did not get all its samples."""

    prompt_id: str
    error: str
    """``kind: detail``."""
    kept: int = 0
    """Samples it got before failing (written like any other)."""


class GenerateSection(_Section):
    """Run-log record of one ``generate`` run or stage (``log.generate``)."""

    output: str | None = None
    source: str = ""
    sampling: Sampling = Field(default_factory=Sampling)
    summary: GenerateStats = Field(default_factory=GenerateStats)
    failures: list[GenerateFailure] = Field(default_factory=_list)
    """The first 100 failures."""
    failure_kinds: dict[str, int] = Field(default_factory=_dict)
    """Failed prompts by error kind (all of them)."""
    backend: dict[str, Any] | None = None
    """What identifies the backend (its ``describe()``)."""
    transport: dict[str, Any] | None = None
    """openai: transport counts per endpoint."""

    @property
    def prefills(self) -> int | None:
        return self.summary.prefills


class LabelSection(_Section):
    """``judge-rl label`` and the pipeline's ``label`` stage: comparisons, judgments and a
    :class:`LabelSummary`."""

    comparisons: list[Comparison] = Field(default_factory=_list)
    judgments: list[Judgment] = Field(default_factory=_list)
    scores: list[Score] = Field(default_factory=_list)
    summary: LabelSummary = Field(default_factory=LabelSummary)
    """n, verdicts {a,b,tie}, failures {kind: count}, position_consistency, prompt_tokens,
    completion_tokens, cost, time_s, calls, cached, … (see :class:`LabelSummary`)."""
    output: str | None = None
    """Path of the preference file written."""


class AuditSection(_Section):
    """``judge-rl audit``: each metric a :class:`Metric`; variants side by side."""

    judge: str = ""
    n_pairs: int = 0
    metrics: dict[str, Metric] = Field(default_factory=_dict)
    """accuracy, accuracy_with_ties, kappa, position_consistency, p_first_wins,
    p_first_wins_inconsistent, p_longer_wins_judge, p_longer_wins_human, length_coef,
    self_preference, injection_flip_rate, parse_failure_rate, latency_s, tokens, cost …"""
    confusion: dict[str, dict[str, int]] = Field(default_factory=_dict)
    """human verdict -> judge verdict -> count (a/b/tie)."""
    by_category: dict[str, dict[str, Metric]] = Field(default_factory=_dict)
    variants: list[dict[str, Any]] = Field(default_factory=_list)
    """[{"label": "order=both", "metrics": {...}}, …]: mitigations side by side."""
    jury: dict[str, Any] = Field(default_factory=_dict)
    """krippendorff_alpha, member accuracies."""
    comparisons: list[Comparison] = Field(default_factory=_list)
    judgments: list[Judgment] = Field(default_factory=_list)


class RewardModelSection(_Section):
    """``judge-rl train-rm``."""

    model: str = ""
    output_dir: str = ""
    n_train: int = 0
    n_eval: int = 0
    truncated: int = 0
    train: list[dict[str, float]] = Field(default_factory=_list)
    """Per logged step: step, loss, accuracy, pairs_per_s, lr."""
    evals: list[dict[str, float]] = Field(default_factory=_list)
    """Per eval: step, accuracy, margin, ece, loss, chosen_mean, rejected_mean."""
    final: dict[str, float] = Field(default_factory=_dict)
    reward_samples: dict[str, list[float]] = Field(default_factory=_dict)
    """{"chosen": [...], "rejected": [...]} held-out rewards for the distribution plot."""
    checkpoints: list[dict[str, Any]] = Field(default_factory=_list)

    null_is_nan = field_validator("train", "evals", "final", mode="before")(_null_to_nan)


class PPOSection(_Section):
    """``judge-rl ppo``."""

    policy: str = ""
    reward: str = ""
    steps: list[dict[str, float]] = Field(default_factory=_list)
    """Per step: step, reward_mean, reward_std, kl, kl_coef, entropy, response_length,
    policy_loss, value_loss, clip_frac, approx_kl, samples_per_s, time_generate, time_score,
    time_train."""
    samples: list[dict[str, Any]] = Field(default_factory=_list)
    """A few per step: step, prompt, response, reward."""
    checkpoints: list[dict[str, Any]] = Field(default_factory=_list)
    """step, path."""
    stopped_early: str | None = None

    null_is_nan = field_validator("steps", mode="before")(_null_to_nan)


class OveroptSection(_Section):
    """Over-optimisation monitor (during PPO) or offline analysis (``judge-rl overopt``)."""

    gold: str = ""
    proxy: str = ""
    points: list[dict[str, Any]] = Field(default_factory=_list)
    """Per monitor step / checkpoint: step, kl, proxy_mean, proxy_lo, proxy_hi, gold_mean, gold_lo,
    gold_hi, checkpoint."""
    fit: dict[str, Any] = Field(default_factory=_dict)
    """Gao et al. form: alpha, beta, kl_peak, d_peak, r2; or note."""
    alarms: list[dict[str, Any]] = Field(default_factory=_list)
    """step, kind, message, evidence {…}, examples [str]."""
    degeneration: list[dict[str, Any]] = Field(default_factory=_list)
    """Per monitor step: step, metrics {name: value}, reference {name: value}, flags [name],
    examples [str]."""
    probes: list[dict[str, Any]] = Field(default_factory=_list)
    """step, name, text, score, median_real, flagged."""
    best_checkpoint: dict[str, Any] = Field(default_factory=_dict)
    """step, path, gold, reason."""


class TournamentSection(_Section):
    """``judge-rl ratings`` / ``tournament`` / ``winrate``."""

    method: str = "bt"
    leaderboard: list[dict[str, Any]] = Field(default_factory=_list)
    """Sorted best first: model, rating, lo, hi, rank, rank_lo, rank_hi, battles, wins, ties,
    losses, win_rate."""
    models: list[str] = Field(default_factory=_list)
    win_matrix: list[list[float | None]] = Field(default_factory=_list)
    """Observed win rate of row over column (ties half), None where they never met."""
    predicted: list[list[float]] = Field(default_factory=_list)
    battles: list[Battle] = Field(default_factory=_list)
    winrates: list[dict[str, Any]] = Field(default_factory=_list)
    """Vs baseline: model, baseline, mean_pref, se, win_rate, lc_win_rate, wins, draws, losses."""
    warnings: list[str] = Field(default_factory=_list)
    calls: int = 0
    pairing: str = ""


class Interval(BaseModel):
    """A statistic with its confidence interval; how it was computed travels with it."""

    model_config = ConfigDict(extra="forbid")
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    level: float = 0.95
    """Confidence level of ``[lo, hi]``."""
    method: str = "percentile bootstrap"
    """How the interval was computed (``percentile bootstrap``, ``wilson``, …)."""
    resample: str = "prompts"
    """What the bootstrap resampled (``prompts``, ``pairs`` of models, ``battles``)."""
    rounds: int = 0
    """Bootstrap rounds (0 for closed-form intervals)."""
    n: int = 0
    """Items the statistic was computed on."""

    def excludes(self, x: float) -> bool:
        """True when the interval lies entirely above or below ``x``."""
        return self.lo is not None and self.hi is not None and (self.lo > x or self.hi < x)


class StageRecord(BaseModel):
    """One stage of a pipeline run (``judge-rl run``): what ran, with which config, for how long."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: str
    status: str = "pending"
    """``pending`` | ``done`` | ``skipped`` (finished earlier with the same config) | ``failed``."""
    config_hash: str = ""
    """Hash of the stage's resolved config and of its inputs' hashes: a change redoes it."""
    inputs: dict[str, str] = Field(default_factory=_dict)
    """Input name -> ``stage.output`` it was fed from."""
    outputs: dict[str, str] = Field(default_factory=_dict)
    """Output name -> file in the run folder."""
    threads: int = 0
    """Torch threads the stage ran with (decided once, at its start)."""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """CPU seconds of this process during the stage (all threads)."""
    error: str | None = None


class PipelineSection(_Section):
    """``judge-rl run``: the pipeline spec and one record per stage, in order."""

    spec: str = ""
    """Path of the pipeline spec."""
    name: str = ""
    profile: str | None = None
    stages: list[StageRecord] = Field(default_factory=_list)


class DemoSection(_Section):
    """The demo's claims, each computed from the run (the report's sentences come from these)."""

    task: str = ""
    gold: str = ""
    proxy: str = ""
    gold_base: Interval | None = None
    gold_best: Interval | None = None
    gold_last: Interval | None = None
    gain_best: Interval | None = None
    """Gold at the best checkpoint minus gold at the base policy, paired over prompts."""
    drop_last: Interval | None = None
    """Gold at the last checkpoint minus gold at the best one, paired over prompts."""
    proxy_base: float | None = None
    proxy_best: float | None = None
    proxy_last: float | None = None
    best_step: int | None = None
    peak_step: int | None = None
    """Monitor step with the highest gold mean."""
    last_step: int | None = None
    alarm_step: int | None = None
    first_significant_drop_step: int | None = None
    """First monitor step after the peak whose gold is significantly below the peak's (paired CI
    of the difference excludes 0)."""
    exploit: list[str] = Field(default_factory=_list)
    """Degeneration detectors flagged at the alarm (or at the last step)."""
    exploit_detail: list[str] = Field(default_factory=_list)
    """Each flagged detector in words, with its value and the reference policy's."""
    ranking: list[str] = Field(default_factory=_list)
    """Tournament models, best first."""
    best_above_base: bool | None = None
    """The best-by-gold checkpoint's rating interval lies above the base policy's."""
    tournament_judge: str = ""
    tournament_judge_accuracy: Interval | None = None
    """The tournament judge's audit accuracy on pairs whose right verdict is known."""
    tournament_judge_reliable: bool | None = None


class RunLog(BaseModel):
    """One run. ``version`` says which reader it needs."""

    model_config = ConfigDict(extra="forbid")

    version: int = LOG_VERSION
    run: str
    command: str
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    config: dict[str, Any] = Field(default_factory=_dict)
    environment: dict[str, Any] = Field(default_factory=_dict)
    judges: list[JudgeFingerprint] = Field(default_factory=_list)
    timings: dict[str, float] = Field(default_factory=_dict)
    """Seconds per stage."""
    cost: dict[str, float] = Field(default_factory=_dict)
    notes: list[str] = Field(default_factory=_list)
    """Plain statements the report shows, e.g. "the policy did not improve"."""
    generate: GenerateSection | None = None
    label: LabelSection | None = None
    audit: AuditSection | None = None
    reward_model: RewardModelSection | None = None
    ppo: PPOSection | None = None
    overopt: OveroptSection | None = None
    tournament: TournamentSection | None = None
    pipeline: PipelineSection | None = None
    demo: DemoSection | None = None
    extra: dict[str, Any] = Field(default_factory=_dict)

    def add_judge(self, fp: JudgeFingerprint) -> None:
        if all(j.key != fp.key for j in self.judges):
            self.judges.append(fp)

    def save(
        self,
        run_dir: str | os.PathLike[str],
        *,
        write: Callable[[Path, bytes], None] | None = None,
        label_items: tuple[list[bytes] | None, list[bytes] | None] | None = None,
    ) -> Path:
        """Write ``run_dir/log.json`` atomically; returns its path.

        ``write(path, bytes)``: who writes the serialized log (default
        :func:`~judge_rl._io.atomic_write_bytes`, now); ``judge-rl label`` hands it to a thread
        that writes and syncs the file while the command finishes.
        ``label_items``: the label section's comparisons and judgments already serialized, one
        ``bytes`` each in the section's order, as they sit in the log
        (:func:`judge_rl.pipeline.label.log_item_json`: ``judge-rl label`` makes them while it
        judges; either may be None: serialized here); the rest of the log is serialized here
        and they are put in their place (the same bytes). Ignored unless there is one for each
        of the section's items."""
        path = Path(run_dir) / "log.json"
        data = self._spliced(label_items) if label_items is not None else None
        if data is None:
            # model_dump_json(indent=1)'s bytes as the serializer writes them, not decoded to
            # text and encoded back (twice the log's size copied: 18 MB for 10,000 judgments)
            data = self.__pydantic_serializer__.to_json(self, indent=1)
        (write or atomic_write_bytes)(path, data)
        return path

    def _spliced(self, items: tuple[list[bytes] | None, list[bytes] | None]) -> bytes | None:
        """The log's bytes with the label section's lists taken from ``items`` (see
        :meth:`save`; a list given as None is serialized here with the rest): the log
        serialized with the given lists empty, and each such ``[]`` replaced by the list as
        the serializer writes it at that depth (indent 1: the items at depth 3). None where
        ``items`` does not fit the section."""
        section = self.label
        comparisons, judgments = items
        if section is None or (comparisons is None and judgments is None):
            return None
        empty: dict[str, Any] = {}
        for name, given, have in (
            ("comparisons", comparisons, section.comparisons),
            ("judgments", judgments, section.judgments),
        ):
            if given is not None:
                if len(given) != len(have):
                    return None
                empty[name] = []
        bare = self.model_copy(update={"label": section.model_copy(update=empty)})
        data = bare.__pydantic_serializer__.to_json(bare, indent=1)
        # a raw newline is only ever structure in JSON (text escapes it), so a top-level key
        # is a newline and one space before it, and the label section's own keys two spaces
        # (its items' lines have three or more): this is the label section's opening
        at = data.find(_LABEL_OPENING)
        if at < 0 or data.find(_LABEL_OPENING, at + 1) >= 0:
            return None
        pos = at + len(_LABEL_OPENING)
        parts = [data[:pos]]
        if comparisons is not None:
            if data[pos : pos + 2] != b"[]":
                return None
            _json_list(comparisons, parts)
            pos += 2
        if judgments is not None:
            key = data.find(_JUDGMENTS_KEY, pos)
            end = key + len(_JUDGMENTS_KEY)
            if key < 0 or data[end : end + 2] != b"[]":
                return None
            parts.append(data[pos:end])
            _json_list(judgments, parts)
            pos = end + 2
        parts.append(data[pos:])
        return b"".join(parts)  # the log's one copy of the items (18 MB for 10,000)


_LABEL_OPENING = b'\n "label": {\n  "comparisons": '
"""The start of a run log's label section, serialized with indent 1, up to its comparisons
(:meth:`RunLog._spliced`)."""

_JUDGMENTS_KEY = b',\n  "judgments": '
"""The label section's judgments key (the first such line after the section's opening)."""


def _json_list(items: list[bytes], parts: list[bytes]) -> None:
    """A list of serialized items at depth 3 of an indent-1 log as the serializer writes it,
    appended to ``parts`` in pieces (joined once, with the rest of the log): ``[]``, or each
    item on its own line three spaces in, the ``]`` two."""
    if not items:
        parts.append(b"[]")
        return
    parts.append(b"[\n   ")
    parts += itertools.chain.from_iterable(zip(items, itertools.repeat(b",\n   ")))
    parts[-1] = b"\n  ]"  # the last item's separator


SECTIONS: tuple[str, ...] = tuple(
    name
    for name, f in RunLog.model_fields.items()
    if any(isinstance(t, type) and issubclass(t, _Section) for t in typing.get_args(f.annotation))
)
"""The run log's stage sections (``generate`` ... ``demo``), in field order."""


def run_dir(name: str | None = None, root: str | os.PathLike[str] = DEFAULT_ROOT) -> Path:
    """``reports/<name>``; a timestamped name when none is given. Created if missing.
    Confined to ``reports/`` (no ``..``): see :func:`judge_rl._io.safe_run_dir`."""
    from judge_rl._io import safe_run_dir

    return safe_run_dir(name, root)


def new_log(command: str, run: str, config: dict[str, Any] | None = None) -> RunLog:
    """A fresh run log with the environment filled in."""
    return RunLog(run=run, command=command, config=config or {}, environment=environment())


def load(path: str | os.PathLike[str]) -> RunLog:
    """Read a run log (a ``log.json`` or the run folder holding it).

    Raises :class:`JudgeRLError` naming the file when it is missing, not JSON, of an unsupported
    version, or does not match the schema.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "log.json"
    if not p.exists():
        raise JudgeRLError(f"{p}: no run log here (expected a run folder or its log.json)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JudgeRLError(f"{p}: not a valid run log: {e}") from None
    if not isinstance(data, dict):
        raise JudgeRLError(f"{p}: not a valid run log: top level is not an object")
    version = data.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise JudgeRLError(
            f"{p}: run log version {version!r} is not supported by this judge_rl "
            f"(reads versions {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    try:
        return RunLog.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise JudgeRLError(f"{p}: run log field {loc}: {first['msg']}") from None


__all__ = [
    "LOG_VERSION",
    "SECTIONS",
    "AuditSection",
    "DemoSection",
    "GenerateFailure",
    "GenerateSection",
    "GenerateStats",
    "Interval",
    "LabelSection",
    "LabelSummary",
    "Metric",
    "OveroptSection",
    "PPOSection",
    "PipelineSection",
    "RewardModelSection",
    "RunLog",
    "Sampling",
    "StageRecord",
    "TournamentSection",
    "environment",
    "load",
    "new_log",
    "run_dir",
]
