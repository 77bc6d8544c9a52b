"""The ``label`` stage: candidates or comparisons -> judgments -> preference records.

The one labelling path: ``judge-rl label`` (:mod:`judge_rl.commands.label` maps its flags to a
:class:`LabelConfig` and renders what comes back) and the pipeline's ``label`` stage
(:func:`label`, used by ``judge-rl run`` / ``judge-rl demo``) both call the functions here.

- :func:`read_input`: a pair file or a candidates file / folder as comparisons;
- :func:`pair_candidates`: candidates of the same prompt as comparisons, by
  :attr:`LabelConfig.pairing`: ``consecutive`` (samples 0 and 1, 2 and 3, … in the order they were
  generated, at most ``max_pairs_per_prompt`` per prompt; the pipeline's default), ``all`` (every
  pair within a prompt, deduplicated, a seeded coin flip for which side is ``a``; the command's
  default) or ``baseline`` (each candidate against the ``baseline`` source's answer);
- :func:`read_references` / :func:`apply_references`: reference answers keyed by question id;
- :func:`label_comparisons`: judge the comparisons; returns :class:`Labels` (comparisons,
  judgments, preference records, a :class:`~judge_rl.runlog.LabelSection` whose summary is a
  typed :class:`~judge_rl.runlog.LabelSummary`); progress goes to a callback;
- :func:`to_records`: decided pairs and ties become :class:`PreferenceRecord` s (a tie is a soft
  label 0.5; ``drop_ties`` leaves them out); failed judgments are counted by kind and never
  become labels.

Nothing here parses arguments, prints or exits.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import operator
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from judge_rl.errors import ConfigError
from judge_rl.types import Candidate, Comparison, Judgment, PreferenceRecord, unvalidated

if TYPE_CHECKING:  # imported by run_log_models(): once a run's first requests are out
    from judge_rl.runlog import LabelSection, LabelSummary

PAIRINGS = ("consecutive", "all", "baseline")
"""How candidates of one prompt are paired (see the module docstring)."""

PROGRESS_EVERY_S = 0.1
"""Least time between two progress callbacks (one per judgment would cost ~0.05 ms each)."""


@dataclass
class LabelConfig:
    """The ``label`` stage (and ``judge-rl label``, whose flags fill it)."""

    judge: str = "grader:gold"
    """``grader:NAME`` (a grader of the pipeline) or a judge name / ``judge.yaml`` path."""
    max_pairs_per_prompt: int = 1
    """``pairing: consecutive``: comparisons per prompt (pairs of consecutive samples)."""
    judge_options: dict[str, Any] = field(default_factory=dict)
    """Overrides of the judge spec (``model``, ``base_urls``, ``order``, …), as ``--model`` /
    ``--base-url`` give them to ``judge-rl label``."""
    pairing: str = "consecutive"
    """``consecutive`` | ``all`` | ``baseline`` (see :func:`pair_candidates`)."""
    baseline: str | None = None
    """``pairing: baseline``: the source every other candidate is compared with."""
    seed: int = 0
    """Seed of the side assignment (``all`` / ``baseline`` pairs, pair files read)."""
    limit: int | None = None
    """Judge only the first N comparisons."""
    references: str | None = None
    """Reference answers keyed by question id (JSONL, see :func:`read_references`)."""
    reference_turn: int | None = None
    """Which turn's reference applies (None: the judge spec's ``turn``, else 1)."""
    drop_ties: bool = False
    """Leave ties out of the records (``judge-rl label`` drops them by default)."""
    max_failures: str | None = None
    """Failed comparisons tolerated (``N`` or ``P%``; None: 0): ``judge-rl label``'s exit status
    (the pipeline stage keeps going and counts failures by kind in the summary)."""
    refresh: bool = False
    """Ask the judge again for every comparison and replace the cached answers."""
    input_format: str | None = None
    """Force the input file's format (:func:`read_input`; the pipeline stage reads no file)."""
    skip_invalid: bool = False
    """Skip bad input rows (listed) instead of failing (:func:`read_input`)."""
    stream: bool = True
    """Judge a pair file while it is read (:func:`open_stream`, :func:`judge_streamed`); False
    reads the whole input first."""

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ConfigError(
                f"label: pairing must be one of {', '.join(PAIRINGS)}, not {self.pairing!r}",
                setting="pairing",
            )
        if self.pairing == "baseline" and not self.baseline:
            raise ConfigError(
                "label: pairing 'baseline' needs a baseline source", setting="baseline"
            )


def _new_section() -> LabelSection:
    from judge_rl.runlog import LabelSection

    return LabelSection()


class Labels(BaseModel):
    """The ``label`` stage's output."""

    comparisons: list[Comparison] = Field(default_factory=list)
    judgments: list[Judgment] = Field(default_factory=list)
    records: list[PreferenceRecord] = Field(default_factory=list)
    section: LabelSection = Field(default_factory=_new_section)

    # completed on first use (its section's model is imported lazily): built or read back
    def __init__(self, **data: Any) -> None:
        run_log_models()
        super().__init__(**data)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Labels:  # type: ignore[override]
        run_log_models()
        return super().model_validate(obj, **kwargs)

    @classmethod
    def model_validate_json(cls, json_data: Any, **kwargs: Any) -> Labels:  # type: ignore[override]
        run_log_models()
        return super().model_validate_json(json_data, **kwargs)


_MODELS_LOCK = threading.Lock()


def run_log_models() -> None:
    """Import the run log's models (:mod:`judge_rl.runlog`: ~0.1 s of model building) and
    complete :class:`Labels`, once. ``judge-rl label`` has this done on a thread once its first
    requests are out, instead of before them; anything needing them calls it first."""
    with _MODELS_LOCK:
        if "LabelSection" in globals():
            return
        from judge_rl.runlog import LabelSection, LabelSummary

        globals().update(LabelSection=LabelSection, LabelSummary=LabelSummary)
        Labels.model_rebuild()


@dataclass
class LabelInput:
    """What :func:`read_input` read."""

    comparisons: list[Comparison]
    description: str
    """One line: what was read and how it was paired."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """``(line, reason)`` of the input rows skipped (``skip_invalid``)."""


@dataclass
class LabelProgress:
    """Progress of :func:`label_comparisons`, handed to its ``on_progress`` callback."""

    done: int = 0
    """Units finished (judge calls, cache hits included)."""
    fresh: int = 0
    """Units answered by the judge (not the cache)."""
    failed: int = 0
    cost: float = 0.0
    """USD of the fresh units."""
    elapsed_s: float = 0.0
    final: bool = False
    """The last callback of the run."""


# --- input ---------------------------------------------------------------------------------------


def read_input(path: str | os.PathLike[str], cfg: LabelConfig) -> LabelInput:
    """Comparisons from a pair file, or from a candidates file / folder paired by
    ``cfg.pairing``. ``cfg.limit`` is not applied here.

    Raises:
        DataError: no such file, a prompt file, a baseline with a pair file, bad rows.
    """
    from pathlib import Path

    from judge_rl.data import FORMATS, detect_format, read_candidates, read_comparisons
    from judge_rl.errors import DataError

    p = Path(path)
    if not p.exists():
        raise DataError("no such file or folder", file=str(p))
    skipped: list[tuple[int, str]] = []
    kind = "candidates" if p.is_dir() else None
    fmt = cfg.input_format
    if kind is None:
        found = fmt or detect_format(p)
        if found == "empty":
            return LabelInput([], "empty file", skipped)
        kind = FORMATS[found].kind if found in FORMATS else "preferences"
        fmt = found
    if kind == "candidates":
        cands = read_candidates(p, fmt=fmt, skip_invalid=cfg.skip_invalid, skipped=skipped)
        comps = pair_candidates(
            cands,
            pairing=cfg.pairing,
            baseline=cfg.baseline,
            seed=cfg.seed,
            per_prompt=cfg.max_pairs_per_prompt,
        )
        return LabelInput(
            comps,
            f"{len(cands)} candidates ({fmt or 'folder'}) -> {len(comps)} comparisons, "
            f"{pairing_text(cfg)}",
            skipped,
        )
    if kind == "prompts":
        raise DataError(
            "this is a prompt file, not comparisons or candidates: generate candidates first "
            "(`judge-rl generate --prompts FILE ...`)",
            file=str(p),
        )
    if cfg.baseline:
        raise DataError("--baseline applies to candidate files, not to pair files", file=str(p))
    comps = read_comparisons(p, fmt=fmt, skip_invalid=cfg.skip_invalid, seed=cfg.seed)
    return LabelInput(comps, f"{len(comps)} comparisons ({fmt})", skipped)


STREAM_FIRST = 64
"""Comparisons in a streamed run's first chunk: one for each of the 64 requests a backend
keeps in flight by default, sent while the rest of the input is read."""

STREAM_CHUNK = 16
"""Comparisons per later chunk. Each is read, keyed, looked up in the cache and rendered in one
go, during which the event loop handles no answer: ~1.5 ms for 16 (128 stalled it ~12 ms, a
quarter of a 50 ms answer, at every turn of the loop while the input was read, and the first
1.5 s of a 10,000-pair run reached ~60% of the endpoint's limit instead of ~95%)."""

STREAM_YIELD = 1.0
"""After each chunk (read, keyed, looked up, rendered), the event loop has this many times the
chunk's time for answers and requests before the next chunk is read: reading the input takes
at most half of the process's time while the first answers come in. Read as fast as the loop
let it (a turn's worth of answers between two chunks), the input took ~45% of the CPU for its
first seconds and the judgments/s of those seconds fell to 80-85% of the endpoint's limit; the
header and the estimate line (printed once all is read) come about twice the reading's CPU time
after the start instead (~2 s for 10,000 pairs), while judging goes on."""


@dataclass
class PairStream:
    """A pair file read chunk by chunk while it is judged (:func:`open_stream`)."""

    path: str
    format: str
    limit: int | None = None
    skip_invalid: bool = False
    comparisons: list[Comparison] = field(default_factory=list)
    """The comparisons read so far (all of them once :meth:`chunks` is exhausted)."""

    @property
    def description(self) -> str:
        """One line, as :func:`read_input` describes the same file."""
        return f"{len(self.comparisons)} comparisons ({self.format})"

    async def chunks(
        self, first: int | None = None, size: int | None = None
    ) -> AsyncIterator[list[Comparison]]:
        """The comparisons, ``first`` (default :data:`STREAM_FIRST`) then ``size`` (default
        :data:`STREAM_CHUNK`) at a time, ``limit`` in all; between two chunks the event loop
        handles what came in (answers, the next requests) for :data:`STREAM_YIELD` times as
        long as the chunk took."""
        import asyncio
        import itertools

        from judge_rl.data._read import iter_comparisons

        rows = iter_comparisons(self.path, skip_invalid=self.skip_invalid)
        take = first or STREAM_FIRST
        while True:
            t = time.perf_counter()
            if self.limit is not None:
                take = min(take, max(0, self.limit) - len(self.comparisons))
            chunk = list(itertools.islice(rows, take)) if take > 0 else []
            if not chunk:
                return
            self.comparisons.extend(chunk)
            yield chunk  # read here; keyed, looked up and rendered before this returns
            await asyncio.sleep(STREAM_YIELD * (time.perf_counter() - t))
            take = size or STREAM_CHUNK


def open_stream(path: str | os.PathLike[str], cfg: LabelConfig) -> PairStream | None:
    """The input as a :class:`PairStream` (judged while it is read), or None where it must be
    read whole first (:func:`read_input`): a candidates file or folder (paired within each
    prompt), another preference format (sides assigned over the whole file), references to
    match (``cfg.references``), a baseline, a ``limit`` (the header names the whole file's
    comparisons, and a bad row past the limit is still an error), an empty or missing file,
    ``cfg.stream`` off.

    Raises:
        DataError: the file's first row cannot be read (as :func:`read_input`).
    """
    from pathlib import Path

    from judge_rl.data import detect_format

    p = Path(path)
    if not cfg.stream or cfg.references or cfg.baseline or cfg.limit is not None:
        return None
    if not p.is_file():
        return None
    fmt = cfg.input_format or detect_format(p)
    if fmt != "pairwise":
        return None
    return PairStream(str(p), fmt, limit=cfg.limit, skip_invalid=cfg.skip_invalid)


def pairing_text(cfg: LabelConfig) -> str:
    """How candidates are paired, in words."""
    if cfg.pairing == "baseline":
        return f"vs baseline {cfg.baseline!r}"
    if cfg.pairing == "all":
        return "all pairs within each prompt"
    return f"consecutive samples, at most {cfg.max_pairs_per_prompt} per prompt"


def pair_candidates(
    candidates: Sequence[Candidate],
    *,
    pairing: str | None = None,
    baseline: str | None = None,
    seed: int = 0,
    per_prompt: int = 1,
) -> list[Comparison]:
    """Comparisons of the candidates of each prompt.

    ``pairing`` (default: ``baseline`` when a ``baseline`` is given, else ``all``):

    - ``consecutive``: samples 0 and 1, 2 and 3, … of each prompt in input order (``a`` is the
      earlier one), at most ``per_prompt`` pairs per prompt; identical answers are kept (a tie);
    - ``all``: every pair of distinct answers within a prompt;
    - ``baseline``: each candidate against the ``baseline`` source's answer to the same prompt.

    For ``all`` and ``baseline``, one candidate per (source, answer) is kept (duplicates would
    make empty comparisons) and which one is ``a`` is a seeded coin flip per pair, so ``--order
    fixed`` does not systematically show one source first. The reference answer comes from either
    candidate's ``metadata["reference"]`` (``consecutive``: the first's).

    Raises:
        DataError: no candidate has the ``baseline`` source.
        ConfigError: an unknown ``pairing``.
    """
    if pairing is None:
        pairing = "baseline" if baseline is not None else "all"
    if pairing not in PAIRINGS:
        raise ConfigError(
            f"pairing must be one of {', '.join(PAIRINGS)}, not {pairing!r}", setting="pairing"
        )
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.prompt_id, []).append(c)
    if pairing == "consecutive":
        return _consecutive(groups, per_prompt)
    if pairing == "baseline":
        if baseline is None:
            raise ConfigError("pairing 'baseline' needs a baseline source", setting="baseline")
        if not any(c.source == baseline for c in candidates):
            from judge_rl.errors import DataError

            sources = sorted({c.source for c in candidates})
            raise DataError(f"no candidate has source {baseline!r} (sources: {', '.join(sources)})")
    import random

    out = []
    for pid, group in groups.items():
        uniq: dict[tuple[str, str], Candidate] = {}
        for c in group:
            uniq.setdefault((c.source, str(c.response)), c)
        group = list(uniq.values())
        if pairing == "baseline":
            base = next((c for c in group if c.source == baseline), None)
            if base is None:
                continue
            pairs = [(c, base) for c in group if c is not base]
        else:
            pairs = [
                (group[i], group[j]) for i in range(len(group)) for j in range(i + 1, len(group))
            ]
        for x, y in pairs:
            if str(x.response) == str(y.response):
                continue
            if random.Random(f"{seed}:{pid}:{x.id}:{y.id}").random() < 0.5:
                x, y = y, x
            ref = x.metadata.get("reference") or y.metadata.get("reference")
            out.append(
                Comparison(
                    prompt_id=pid,
                    prompt=x.prompt,
                    a=x,
                    b=y,
                    reference=None if ref is None else str(ref),
                    metadata={
                        k: v for k, v in {"category": x.metadata.get("category")}.items() if v
                    },
                )
            )
    return out


def _consecutive(groups: dict[str, list[Candidate]], per_prompt: int) -> list[Comparison]:
    out = []
    for pid, cs in groups.items():
        for k in range(0, min(len(cs) - 1, 2 * per_prompt), 2):
            a, b = cs[k], cs[k + 1]
            out.append(
                Comparison(
                    prompt_id=pid,
                    prompt=a.prompt,
                    a=a,
                    b=b,
                    reference=a.metadata.get("reference"),
                    metadata={"category": a.metadata["category"]}
                    if a.metadata.get("category")
                    else {},
                )
            )
    return out


def read_references(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Reference answers by question id, one entry per turn, from a JSONL file.

    Rows are FastChat's ``reference_answer/*.jsonl`` (``question_id`` and
    ``choices[0].turns``), or ``{"question_id" | "id" | "prompt_id": ..., "reference" |
    "answer": "..." | [...]}`` (GSM8K/MATH-style sets; a list gives one reference per turn).

    Raises:
        DataError: naming the file and line of a row that is not one of these.
    """
    import json
    from pathlib import Path

    from judge_rl.errors import DataError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read reference answers: {e}", file=str(p)) from None
    out: dict[str, list[str]] = {}
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            raise DataError("not a JSON object", file=str(p), line=no) from None
        if not isinstance(row, dict):
            raise DataError("not a JSON object", file=str(p), line=no)
        qid = next((row[k] for k in ("question_id", "id", "prompt_id") if k in row), None)
        if qid is None or isinstance(qid, bool) or not isinstance(qid, int | str):
            raise DataError("needs question_id, id or prompt_id", file=str(p), line=no)
        refs: Any = None
        choices = row.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            refs = choices[0].get("turns")
        if refs is None:
            refs = row.get("reference", row.get("answer"))
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list) or not refs or not all(isinstance(x, str) for x in refs):
            raise DataError(
                "needs a reference: choices[0].turns, reference or answer (text)",
                file=str(p),
                line=no,
            )
        out[str(qid)] = list(refs)
    return out


def apply_references(
    comparisons: Sequence[Comparison], refs: dict[str, list[str]], *, turn: int = 1
) -> tuple[list[Comparison], int]:
    """Comparisons with ``reference`` (and both candidates' ``metadata["reference"]``) set from
    ``refs`` by prompt id, the turn-``turn`` reference (the last one a shorter list has).
    Returns the comparisons and how many matched."""
    out, matched = [], 0
    for c in comparisons:
        r = refs.get(str(c.prompt_id))
        if r is None:
            qid = c.a.metadata.get("question_id")
            r = refs.get(str(qid)) if qid is not None else None
        if r is None:
            out.append(c)
            continue
        ref = r[min(turn, len(r)) - 1]
        matched += 1
        a = c.a.model_copy(update={"metadata": {**c.a.metadata, "reference": ref}})
        b = c.b.model_copy(update={"metadata": {**c.b.metadata, "reference": ref}})
        out.append(c.model_copy(update={"reference": ref, "a": a, "b": b}))
    return out, matched


@dataclass
class Selected:
    """What :func:`select` kept."""

    comparisons: list[Comparison]
    references_matched: int | None = None
    """Comparisons given a reference (None: no references file)."""
    reference_turn: int = 1


def select(cfg: LabelConfig, comparisons: Sequence[Comparison]) -> Selected:
    """``cfg.limit`` and ``cfg.references`` applied to ``comparisons``.

    Raises:
        DataError: the references file matches none of the comparisons (or cannot be read).
    """
    comps = list(comparisons)
    if cfg.limit is not None:
        comps = comps[: max(0, cfg.limit)]
    if not cfg.references:
        return Selected(comps)
    turn = cfg.reference_turn or spec_turn(cfg.judge)
    refs = read_references(cfg.references)
    comps, matched = apply_references(comps, refs, turn=turn)
    if matched == 0 and comps:
        from judge_rl.errors import DataError

        raise DataError(
            "no question id in this file matches a comparison of the input",
            file=str(cfg.references),
        )
    return Selected(comps, matched, turn)


def spec_turn(judge: str) -> int:
    """The ``turn`` of the judge spec ``judge`` names (1 for a grader or a spec without one)."""
    if judge.startswith("grader:"):
        return 1
    from judge_rl.judge.specs import find_spec, read_spec

    return int(read_spec(find_spec(judge)).get("turn") or 1)


# --- judging -------------------------------------------------------------------------------------


async def label_comparisons(
    cfg: LabelConfig,
    comparisons: Sequence[Comparison],
    judge: Any,
    *,
    cache: Any = None,
    budget: Any = None,
    on_progress: Callable[[LabelProgress], None] | None = None,
) -> Labels:
    """Judge ``comparisons`` with ``judge`` (anything with an async ``compare``) and turn the
    verdicts into preference records: :func:`judge_comparisons` then :func:`make_labels`.

    ``budget``: recorded in the summary (``budget_refused``); ``cache``, ``on_progress``: see
    :func:`judge_comparisons`. The judge is not closed (its owner closes it).
    """
    comps = list(comparisons)
    judgments, elapsed = await judge_comparisons(
        cfg, comps, judge, cache=cache, on_progress=on_progress
    )
    return make_labels(cfg, comps, judgments, elapsed, judge=judge, budget=budget)


async def judge_comparisons(
    cfg: LabelConfig,
    comparisons: Sequence[Comparison],
    judge: Any,
    *,
    cache: Any = None,
    on_progress: Callable[[LabelProgress], None] | None = None,
    built: LabelBuilder | None = None,
) -> tuple[list[Judgment], float]:
    """``(judgments, seconds)``: ``judge``'s verdicts on ``comparisons``, in their order.

    ``cache``: the judge's :class:`~judge_rl.judge.cache.JudgmentCache`, set to refresh when
    ``cfg.refresh``; ``on_progress``: called at most every :data:`PROGRESS_EVERY_S` seconds while
    judging and once at the end (``final``); ``built``: a :class:`LabelBuilder` of
    ``comparisons`` (this very list, when it is a list) given each judgment as it finishes. The
    judge is not closed.
    """
    comps = comparisons if type(comparisons) is list else list(comparisons)

    async def work() -> list[Judgment]:
        return list(await judge.compare(comps)) if comps else []

    return await _tracked(cfg, cache, on_progress, work, built)


async def _tracked(
    cfg: LabelConfig,
    cache: Any,
    on_progress: Callable[[LabelProgress], None] | None,
    work: Callable[[], Awaitable[list[Judgment]]],
    built: LabelBuilder | None = None,
) -> tuple[list[Judgment], float]:
    """Run ``work`` with the progress hook set (``on_progress`` as :func:`judge_comparisons`
    describes, once more at the end with ``final``) and the cache refreshing when
    ``cfg.refresh``: ``(judgments, seconds)``."""
    from judge_rl.judge._common import progress_hook

    if cfg.refresh and cache is not None:
        cache.refresh = True  # every lookup misses; fresh answers replace the stored ones
    t0 = time.perf_counter()
    state = LabelProgress()
    token = progress_hook.set(_progress_hook(state, t0, on_progress, built))
    try:
        judgments = await work()
    finally:
        progress_hook.reset(token)
    elapsed = time.perf_counter() - t0
    if on_progress is not None:
        state.elapsed_s, state.final = elapsed, True
        on_progress(state)
    return judgments, elapsed


async def judge_streamed(
    cfg: LabelConfig,
    stream: PairStream,
    judge: Any,
    *,
    cache: Any = None,
    on_progress: Callable[[LabelProgress], None] | None = None,
    on_read: Callable[[Any], None] | None = None,
    built: LabelBuilder | None = None,
) -> tuple[list[Comparison], list[Judgment], float]:
    """``(comparisons, judgments, seconds)``: :func:`judge_comparisons` of the comparisons
    ``stream`` reads, judging from its first chunk on while the rest is read (the same
    judgments, in the same order, as reading first and judging after: a comparison equal to an
    earlier one is judged once; the budget is checked call by call as ever).

    ``on_read(estimate)``: called once the whole input is read (judging goes on), with the
    :class:`~judge_rl.judge.budget.Estimate` that :func:`judge_rl.judge.estimate` gives for it
    (each chunk's cache lookup counted as it came). A bad row raises :class:`DataError` when it
    is reached: the judging stops, what finished is in the cache. A judge without
    ``compare_stream`` gets the whole input once it is read. ``built``: a
    :class:`LabelBuilder` of ``stream.comparisons`` given each judgment as it finishes.
    """
    from judge_rl.judge import estimate

    async def work() -> list[Judgment]:
        stream_fn = getattr(judge, "compare_stream", None)
        if stream_fn is not None:
            return list(await stream_fn(stream.chunks(), on_estimate=on_read))
        async for _ in stream.chunks():
            pass
        if on_read is not None:
            on_read(estimate(judge, stream.comparisons))
        comps = stream.comparisons
        return list(await judge.compare(comps)) if comps else []

    judgments, elapsed = await _tracked(cfg, cache, on_progress, work, built)
    return stream.comparisons, judgments, elapsed


def _progress_hook(
    state: LabelProgress,
    t0: float,
    on_progress: Callable[[LabelProgress], None] | None,
    built: LabelBuilder | None = None,
) -> Callable[[str, Any], None]:
    """The judge layer's progress hook: counts into ``state``, calls ``on_progress`` at most
    every :data:`PROGRESS_EVERY_S` seconds, hands each judgment to ``built``."""
    next_at = 0.0
    add = built.add if built is not None else None

    def hook(event: str, rec: Any) -> None:
        nonlocal next_at
        state.done += 1
        if add is not None:
            add(rec)
        calls = getattr(rec, "calls", None)
        # a Judgment has calls and no ``cached`` field (getattr's default on a pydantic model goes
        # through __getattr__ raising AttributeError: ~7 us a judgment); a Score has ``cached``
        cached = getattr(rec, "cached", False) if calls is None else False
        fresh = not (cached or (calls and all(c.cached for c in calls)))
        if fresh:
            state.fresh += 1
            state.cost += float(getattr(rec, "cost", 0.0) or 0.0)
        if getattr(rec, "error", None):
            state.failed += 1
        if on_progress is not None:
            now = time.perf_counter()
            if now >= next_at:  # a bar redraws ~10 times a second: no need for more
                state.elapsed_s = now - t0
                on_progress(state)
                next_at = now + PROGRESS_EVERY_S

    return hook


def label(cfg: LabelConfig, candidates: Sequence[Candidate], judge: Any) -> Labels:
    """The pipeline's ``label`` stage: pair ``candidates`` by ``cfg.pairing``, apply
    ``cfg.limit`` / ``cfg.references``, judge with ``judge`` (synchronously)."""
    from judge_rl.judge.base import _run

    comps = pair_candidates(
        candidates,
        pairing=cfg.pairing,
        baseline=cfg.baseline,
        seed=cfg.seed,
        per_prompt=cfg.max_pairs_per_prompt,
    )
    comps = select(cfg, comps).comparisons
    if cfg.refresh:
        for cache in _caches(judge):
            cache.refresh = True
    out: Labels = _run(label_comparisons(cfg, comps, judge))
    return out


def _caches(judge: Any, _seen: set[int] | None = None) -> list[Any]:
    """The judgment caches inside a judge tree (``inner`` wrappers, jury ``members``)."""
    seen = set() if _seen is None else _seen
    if judge is None or id(judge) in seen:
        return []
    seen.add(id(judge))
    cache = getattr(judge, "cache", None)
    found = [cache] if cache is not None and hasattr(cache, "refresh") else []
    for sub in (getattr(judge, "inner", None), *(getattr(judge, "members", None) or [])):
        found += _caches(sub, seen)
    return found


def make_labels(
    cfg: LabelConfig,
    comparisons: list[Comparison],
    judgments: list[Judgment],
    time_s: float,
    *,
    judge: Any = None,
    budget: Any = None,
    built: LabelBuilder | None = None,
) -> Labels:
    """:class:`Labels` of finished judgments: records (ties dropped when ``cfg.drop_ties``) and
    the section with its summary.

    ``built``: the :class:`LabelBuilder` the judging fed (``built=`` of
    :func:`judge_comparisons` / :func:`judge_streamed`): the records and the summary shares it
    made as the judgments finished are taken from it (the same records and summary); it is
    then ready for ``write_preferences``' ``lines`` and ``RunLog.save``'s ``label_items``."""
    run_log_models()
    if built is not None:
        records, ties = built.finish(comparisons, judgments)
        summary = built.summary(time_s)
        decided = built.decided()
    else:
        records, ties = _records(comparisons, judgments, drop_ties=cfg.drop_ties)
        summary = summarize(judgments, time_s)
        decided = sum(1 for r in records if not r.is_tie)
    summary.written = len(records)
    summary.decided = decided
    summary.ties_dropped = ties if cfg.drop_ties else 0
    if budget is not None:
        summary.budget_refused = budget.refused
    if judge is not None:
        transport = transport_summary(judge)
        if transport:
            summary.transport = transport
    return Labels(
        comparisons=comparisons,
        judgments=judgments,
        records=records,
        section=LabelSection(comparisons=comparisons, judgments=judgments, summary=summary),
    )


# --- output --------------------------------------------------------------------------------------


def to_records(
    comparisons: Sequence[Comparison], judgments: Sequence[Judgment]
) -> list[PreferenceRecord]:
    """Preference records for the judgments that did not fail.

    ``p_chosen`` is the judge's probability for the chosen side (clipped to [0.5, 1]; 1 when the
    judge gives none; ties 0.5). The provenance names the judge (name and fingerprint key), the
    comparison, both candidates and their sources, the order shown and, when checked, whether
    both orders agreed.
    """
    return _records(comparisons, judgments)[0]


def _records(
    comparisons: Sequence[Comparison],
    judgments: Sequence[Judgment],
    *,
    drop_ties: bool = False,
) -> tuple[list[PreferenceRecord], int]:
    """:func:`to_records` and the number of ties among them; ``drop_ties``: the ties are
    counted but never built (a third of the records for a judge that often says C)."""
    ties = 0
    kind = judgments[0].judge.kind if judgments else ""
    origin = _ORIGIN.get(kind, "judge")
    out = []
    keys = _FingerprintKeys()
    for c, j in zip(comparisons, judgments, strict=True):
        rec, tie = _record(c, j, keys, origin, drop_ties)
        ties += tie
        if rec is not None:
            out.append(rec)
    return out, ties


_ORIGIN = {"verifier": "verifier", "human": "human"}


class _FingerprintKeys:
    """A judge fingerprint's key (a hash) per fingerprint object, once per distinct JSON."""

    def __init__(self) -> None:
        self.keys: dict[int, tuple[Any, str]] = {}
        self.by_json: dict[bytes, str] = {}  # a fingerprint's JSON -> its key

    def __call__(self, fp: Any) -> str:
        got = self.keys.get(id(fp))
        if got is None or got[0] is not fp:
            # judgments read back from the cache each carry their own copy of the fingerprint:
            # one with the same JSON has the same key (its JSON costs a quarter of the hash).
            # The JSON from the serializer itself: model_dump_json's wrapper (its arguments,
            # the bytes decoded to text) took 40% of the time (~2 us a record).
            text = type(fp).__pydantic_serializer__.to_json(fp)
            key = self.by_json.get(text)
            if key is None:
                key = self.by_json[text] = fp.key
            got = self.keys[id(fp)] = (fp, key)
        return got[1]  # type: ignore[no-any-return]


def _record(
    c: Comparison, j: Judgment, keys: _FingerprintKeys, origin: str, drop_ties: bool
) -> tuple[PreferenceRecord | None, bool]:
    """``(record or None, is a tie)`` of one comparison's judgment: None for a failure and for
    a tie that ``drop_ties`` leaves out."""
    if not j.ok:
        return None, False
    if j.winner == "b":
        chosen, rejected = c.b, c.a
        p = 1.0 - j.p_a if j.p_a is not None else 1.0
    else:
        chosen, rejected = c.a, c.b
        p = j.p_a if j.p_a is not None else 1.0
        if j.winner == "tie":
            p = 0.5
    p_chosen = max(0.5, min(1.0, p)) if j.winner != "tie" else 0.5
    tie = abs(p_chosen - 0.5) < 1e-9  # PreferenceRecord.is_tie
    if tie and drop_ties:
        return None, True
    prov: dict[str, Any] = {
        "judge": j.judge.name,
        "judge_key": keys(j.judge),
        "comparison_id": c.id,
        "chosen_id": chosen.id,
        "rejected_id": rejected.id,
        "chosen_source": chosen.source,
        "rejected_source": rejected.source,
        "order": j.order,
    }
    if j.consistent is not None:
        prov["consistent"] = j.consistent
    if c.metadata.get("category"):
        prov["category"] = c.metadata["category"]
    prompt, chosen_text, rejected_text = c.prompt, chosen.response, rejected.response
    if (
        type(prompt) is str
        and type(chosen_text) is str
        and type(rejected_text) is str
        and type(c.prompt_id) is str
        and type(p_chosen) is float
    ):
        # values the validating constructor keeps as they are (text, a float, an origin it
        # accepts, a fresh dict): its instance state without running it (~3 us of ~5 a record)
        rec = unvalidated(
            PreferenceRecord,
            {
                "prompt": prompt,
                "chosen": chosen_text,
                "rejected": rejected_text,
                "prompt_id": c.prompt_id,
                "p_chosen": p_chosen,
                "margin": None,
                "origin": origin,
                "provenance": prov,
            },
            _RECORD_FIELDS,
        )
        return rec, tie
    rec = PreferenceRecord(
        prompt=prompt,
        chosen=chosen_text,
        rejected=rejected_text,
        prompt_id=c.prompt_id,
        p_chosen=p_chosen,
        origin=origin,  # type: ignore[arg-type]
        provenance=prov,
    )
    return rec, tie


_RECORD_FIELDS = frozenset(
    ("prompt", "chosen", "rejected", "prompt_id", "p_chosen", "origin", "provenance")
)
"""The fields :func:`_record` gives a :class:`PreferenceRecord` (``margin``: its default)."""


def summarize(judgments: Sequence[Judgment], time_s: float) -> LabelSummary:
    """Counts of finished judgments: verdicts, failures by kind, position consistency, tokens,
    cost, calls made and served from the cache, label-token mass (judges that read it)."""
    # One pass over the judgments and their calls (was ten: ~8 us a judgment). The sums add
    # the same values in the same order from the same start (0), so the floats are the same.
    verdicts: dict[Any, int] = {}
    failures: dict[Any, int] = {}  # error kind -> count, in order of first appearance
    checked = agreed = prompt_tokens = completion_tokens = made = cached = 0
    cost: Any = 0
    masses: list[float] = []
    contradict = from_probs = 0
    for j in judgments:
        error, winner = j.error, j.winner
        if error is None and winner is not None:  # Judgment.ok
            verdicts[winner] = verdicts.get(winner, 0) + 1
        else:
            kind = None if error is None else error.split(":", 1)[0].strip()  # .error_kind
            failures[kind] = failures.get(kind, 0) + 1
        if j.consistent is not None:
            checked += 1
            agreed += j.consistent
        prompt_tokens += j.prompt_tokens
        completion_tokens += j.completion_tokens
        for c in _all_calls(j) if j.members else j.calls:
            if c.cached:
                cached += 1
            else:
                made += 1
                cost += c.cost
            if c.label_mass is not None:
                masses.append(c.label_mass)
            note = c.note
            if note is not None:
                contradict += note == "probs_contradict"
                from_probs += note == "verdict_from_probs"
    return _label_summary(
        len(judgments),
        verdicts,
        failures,
        checked,
        agreed,
        prompt_tokens,
        completion_tokens,
        made,
        cached,
        cost,
        masses,
        contradict,
        from_probs,
        time_s,
    )


def _label_summary(
    n: int,
    verdicts: dict[Any, int],
    failures: dict[Any, int],
    checked: int,
    agreed: int,
    prompt_tokens: int,
    completion_tokens: int,
    made: int,
    cached: int,
    cost: Any,
    masses: list[float],
    contradict: int,
    from_probs: int,
    time_s: float,
) -> LabelSummary:
    """The :class:`LabelSummary` of :func:`summarize`'s counts (and of
    :meth:`LabelBuilder.labels`')."""
    from judge_rl.judge.parse import LOW_LABEL_MASS
    from judge_rl.runlog import LabelSummary

    mass: dict[str, Any] = {}
    if masses:
        mass = {
            "label_mass_mean": sum(masses) / len(masses),
            "low_label_mass": sum(m < LOW_LABEL_MASS for m in masses),
            "label_mass_calls": len(masses),
            "probs_contradict": contradict,
            "verdict_from_probs": from_probs,
        }
    return LabelSummary(
        **mass,
        n=n,
        verdicts={k: verdicts.get(k, 0) for k in ("a", "b", "tie")},
        ties=verdicts.get("tie", 0),
        failures={str(k): n for k, n in failures.items()},
        failed=sum(failures.values()),
        position_consistency=(agreed / checked) if checked else None,
        position_checked=checked,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost,
        time_s=time_s,
        calls=made,
        cached=cached,
    )


def _all_calls(j: Any) -> list[Any]:
    if j.members:
        return [c for m in j.members for c in _all_calls(m)]
    return list(j.calls)


# --- the outputs made while judging --------------------------------------------------------------


def log_item_json(item: Any) -> bytes:
    """A label section's comparison or judgment as :meth:`~judge_rl.runlog.RunLog.save` writes
    it inside the run log (its ``label_items``): the item's JSON with indent 1, each line after
    the first three spaces further in (depth 3; a raw newline is only ever structure in JSON).
    """
    return type(item).__pydantic_serializer__.to_json(item, indent=1).replace(b"\n", b"\n   ")


_SummaryPart = tuple[Any, Any, Any, int, int, int, int, list[Any], list[float], int, int]
"""One judgment's share of :func:`summarize`: ``(verdict or None, error kind or None, consistent,
prompt tokens, completion tokens, calls made, calls cached, the made calls' costs in order,
label masses in order, probs_contradict notes, verdict_from_probs notes)``."""

_FAILED = object()
"""A summary part's verdict for a judgment that is not ok (its error kind may be None)."""


def _summary_part(j: Judgment) -> _SummaryPart:
    """``j``'s share of :func:`summarize` (:data:`_SummaryPart`), its calls read in the order
    :func:`summarize` reads them."""
    error, winner = j.error, j.winner
    kind = None
    verdict: Any
    if error is None and winner is not None:  # Judgment.ok
        verdict = winner
    else:
        verdict = _FAILED
        kind = None if error is None else error.split(":", 1)[0].strip()  # .error_kind
    made = cached = contradict = from_probs = 0
    costs: list[Any] = []
    masses: list[float] = []
    for c in _all_calls(j) if j.members else j.calls:
        if c.cached:
            cached += 1
        else:
            made += 1
            costs.append(c.cost)
        if c.label_mass is not None:
            masses.append(c.label_mass)
        note = c.note
        if note is not None:
            contradict += note == "probs_contradict"
            from_probs += note == "verdict_from_probs"
    return (
        verdict,
        kind,
        j.consistent,
        j.prompt_tokens,
        j.completion_tokens,
        made,
        cached,
        costs,
        masses,
        contradict,
        from_probs,
    )


MODELS_AFTER = 512
"""Judgments reported to a :class:`LabelBuilder` before it imports the run log's models
(:func:`run_log_models`: ~30-50 ms of one turn of the event loop, once) in a turn with nothing
else ready and nothing queued: long after the first requests went out, and no longer after
the last answer (where :func:`make_labels` needs them)."""

_COSTS = operator.itemgetter(7)
_MASSES = operator.itemgetter(8)

IDLE_SLICE = 4
"""Judgments a :class:`LabelBuilder` handles in one turn of the event loop that has nothing
else ready (0: each as it is reported)."""


class LabelBuilder:
    """What ``judge-rl label`` writes after its last answer, made from each judgment as it
    finishes, inside the judging window (the event loop waits on the network a third of it):
    its preference record and summary share (:func:`make_labels`' ``built``), its line of a
    JSONL preference file (:meth:`lines`, for :func:`~judge_rl.data.write_preferences`) and
    the comparison's and the judgment's JSON as they sit in the run log (:meth:`log_items`, for
    :meth:`~judge_rl.runlog.RunLog.save`). After the last answer only joins remain.

    :func:`judge_comparisons` / :func:`judge_streamed` (``built=``) hand it each judgment as
    the judge layer reports it; on a running event loop the judgment is queued and its outputs
    made in a turn of the loop where nothing else is ready, :data:`IDLE_SLICE` at a time
    (answers are read and requests sent first: made as each was reported, the same work held
    the answers behind it back and the window's rate fell ~0.8 points; see docs/judges.md).
    It finds the comparison a judgment was made for in ``comparisons`` (the list being judged:
    a stream's grows as it is read) by id. At the end (:meth:`finish`) each position's outputs
    are kept only if they were made from exactly that position's comparison and judgment
    objects (the judge layer may hand back another object: an ``order: both`` judgment
    combined from two, a judgment re-bound to a duplicate's ids); the others (and those still
    queued) are made then, by the same code. The outputs are pure functions of those
    objects, so the bytes are the ones :func:`make_labels`, ``write_preferences`` and
    ``RunLog.save`` make from the finished lists.

    ``judge``: the judge the run calls: a judgment is taken as it finishes only if it is of
    that judge (its fingerprint's name: not a jury member's) in the order it labels with (its
    ``order``: the judgment of one order that an ``order: both`` or ``random`` judge turns into
    another object is left for the end, as is everything of a judge whose reports are not
    its judgments). ``lines``: make each record's JSONL line (the output is a JSONL file).
    Nothing here raises into the judge layer: an item whose outputs cannot be made is made
    again at the end, where the error is raised where it was before (the records in
    :func:`make_labels`; a line or a log item that cannot be written: :meth:`lines` /
    :meth:`log_items` give None, and the writer's own path raises it).
    """

    def __init__(
        self,
        cfg: LabelConfig,
        comparisons: list[Comparison],
        *,
        judge: Any = None,
        lines: bool = False,
    ) -> None:
        from judge_rl.data._read import preference_line_encoder

        self.cfg = cfg
        self.judge = judge
        fp = getattr(judge, "fingerprint", None) if judge is not None else None
        self._name: str | None = getattr(fp, "name", None)
        order = getattr(judge, "order", None)
        self._order: str | None = order if isinstance(order, str) else None
        self.drop_ties = cfg.drop_ties
        self.comparisons = comparisons
        self._line = preference_line_encoder() if lines else None
        self._keys = _FingerprintKeys()
        self._origin: str | None = None
        self._indexed = 0
        self._open: dict[str, list[int]] = {}
        """Comparison id -> the positions of that id not given a judgment yet, in order."""
        # per position of ``comparisons``: the judgment its outputs were made from (None: not
        # yet), its record (None: a failure or a dropped tie), whether it is a tie, its JSONL
        # line, the comparison's and the judgment's JSON in the run log, its summary share
        self._judgment: list[Judgment | None] = []
        self._record: list[PreferenceRecord | None] = []
        self._tie: list[bool] = []
        self._row: list[bytes | None] = []
        self._cjson: list[bytes | None] = []
        self._jjson: list[bytes | None] = []
        self._part: list[_SummaryPart | None] = []
        self.early = 0
        """Judgments whose outputs were made as they finished."""
        self.late = 0
        """Positions whose outputs :meth:`finish` made (their judgment came as another object,
        or not at all)."""
        self._finished: tuple[list[Comparison], list[Judgment]] | None = None
        self._verdicts: dict[Any, int] = {}
        self._totals = [0] * 9
        """Of the positions made: failed, checked, agreed, prompt tokens, completion tokens,
        calls made, calls cached, probs_contradict and verdict_from_probs notes."""
        self._queue: collections.deque[Judgment] = collections.deque()
        self._cnext = 0
        """The next position whose comparison's run-log JSON is made in an idle turn."""
        self._reports = 0
        self._scheduled = False
        self._loop: Any = None
        self._ready: Any = None
        self._lines: list[bytes] | None = None
        self._items: tuple[list[bytes] | None, list[bytes] | None] | None = None
        self._bulk: tuple[list[PreferenceRecord], int] | None = None
        """``finish``'s records and ties where most positions were left for the end."""

    # --- while judging

    def add(self, rec: Any) -> None:
        """A judgment the judge layer finished (its progress report): its outputs, now (on a
        running event loop: queued for a turn with nothing else ready)."""
        if self._finished is not None:
            return
        self._reports += 1
        take = type(rec) is Judgment and not (
            (self._order is not None and rec.order != self._order)
            or (self._name is not None and rec.judge.name != self._name)
        )  # else not what the judge hands back: its outputs are made at the end
        if not IDLE_SLICE:
            if take:
                self._one(rec)
            return
        if take:
            self._queue.append(rec)
        elif self._cnext >= len(self.comparisons):
            return
        if not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                import asyncio

                try:
                    self._loop = asyncio.get_running_loop()
                except RuntimeError:  # no loop (a caller's own): now
                    self._scheduled = False
                    if take:
                        self._one(self._queue.pop())
                    return
                # asyncio's queue of callbacks ready to run (private: an event loop without
                # it, e.g. uvloop, makes each judgment's outputs at the next turn instead)
                self._ready = getattr(self._loop, "_ready", None)
            self._loop.call_soon(self._work)

    def _work(self) -> None:
        """Up to :data:`IDLE_SLICE` queued judgments (then, with none queued, twice as many
        comparisons' run-log JSON, which needs no judgment: also for a judge whose judgments
        are all made at the end), when the event loop has nothing else ready to run (answers
        to read, requests to send come first); the rest in a later turn."""
        queue, ready = self._queue, self._ready
        if ready:
            self._loop.call_soon(self._work)  # behind what is ready
            return
        n = IDLE_SLICE
        while n and queue:
            self._one(queue.popleft())
            n -= 1
        if n:
            self._comparisons_json(2 * n)
        if queue or self._cnext < len(self.comparisons):
            self._loop.call_soon(self._work)
            return
        self._scheduled = False
        if self._reports >= MODELS_AFTER and "LabelSection" not in globals():
            run_log_models()  # once, in an idle turn, instead of after the last answer

    @property
    def comparisons_made(self) -> int:
        """Comparisons whose run-log JSON is made (in idle turns or with their judgment)."""
        return sum(x is not None for x in self._cjson)

    def _comparisons_json(self, k: int) -> None:
        """The run-log JSON of the next ``k`` comparisons read (in their order)."""
        comps = self.comparisons
        if self._indexed < len(comps):
            self._index()
        i, end = self._cnext, min(len(comps), self._cnext + k)
        cjson = self._cjson
        while i < end:
            c = comps[i]
            if cjson[i] is None and type(c) is Comparison:
                with contextlib.suppress(Exception):  # made again at the end
                    cjson[i] = log_item_json(c)
            i += 1
        self._cnext = end

    def _one(self, rec: Judgment) -> None:
        if self._finished is not None:
            return
        try:
            i = self._position(rec)
            if i is not None and self._make(i, self.comparisons[i], rec, early=True):
                self.early += 1
        except Exception:  # made again at the end, where an error is raised where it was
            return

    def _index(self) -> None:
        comps, opened = self.comparisons, self._open
        start, end = self._indexed, len(comps)
        for i in range(start, end):
            cid = comps[i].id
            at = opened.get(cid)
            if at is None:
                opened[cid] = [i]
            else:
                at.append(i)
        grow = [None] * (end - start)
        for col in (self._judgment, self._record, self._row, self._cjson, self._jjson):
            col.extend(grow)  # type: ignore[attr-defined]
        self._part.extend(grow)
        self._tie.extend([False] * (end - start))
        self._indexed = end

    def _position(self, rec: Judgment) -> int | None:
        """The first position not given a judgment yet whose comparison ``rec`` is bound to
        (the ids the cache layer's ``_bound`` compares), or None."""
        cid = rec.comparison_id
        at = self._open.get(cid)
        if at is None:
            self._index()
            at = self._open.get(cid)
            if at is None:
                return None
        comps = self.comparisons
        for k, i in enumerate(at):
            c = comps[i]
            if (c.a.id, c.b.id, c.prompt_id) == (rec.a_id, rec.b_id, rec.prompt_id):
                del at[k]
                if not at:
                    del self._open[cid]
                return i
        return None

    def _make(self, i: int, c: Comparison, j: Judgment, *, early: bool) -> bool:
        """Position ``i``'s outputs from ``c`` and ``j``; False (nothing kept) where ``early``
        and they cannot all be made, or the judges' kinds would give another origin."""
        if self._origin is None:
            self._origin = _ORIGIN.get(j.judge.kind, "judge")
        elif early and _ORIGIN.get(j.judge.kind, "judge") != self._origin:
            return False
        rec, tie = _record(c, j, self._keys, self._origin, self.drop_ties)
        part = _summary_part(j)
        row = cjson = jjson = None
        if self._line is not None and rec is not None:
            try:
                row = self._line(rec)
            except Exception:
                if early:
                    return False
        if type(c) is Comparison and type(j) is Judgment:
            try:  # the comparison's may be made already (it needs no judgment)
                cjson = self._cjson[i] or log_item_json(c)
                jjson = log_item_json(j)
            except Exception:
                if early:
                    return False
        old = self._part[i]
        if old is not None:
            self._count(old, -1)
        self._count(part, 1)
        self._record[i], self._tie[i], self._part[i] = rec, tie, part
        self._row[i], self._cjson[i], self._jjson[i] = row, cjson, jjson
        self._judgment[i] = j
        return True

    def _count(self, part: _SummaryPart, k: int) -> None:
        """Add (``k`` 1) or take away (-1) a position's summary share from the totals (the
        counts: integers, in any order; the floats are summed in order by :meth:`summary`)."""
        verdict, _, consistent, pt, ct, made, cached, _, _, pc, vp = part
        totals = self._totals
        if verdict is _FAILED:
            totals[0] += k
        else:
            self._verdicts[verdict] = self._verdicts.get(verdict, 0) + k
        if consistent is not None:
            totals[1] += k
            totals[2] += k * consistent
        totals[3] += k * pt
        totals[4] += k * ct
        totals[5] += k * made
        totals[6] += k * cached
        totals[7] += k * pc
        totals[8] += k * vp

    # --- after the last answer

    def finish(
        self, comparisons: list[Comparison], judgments: list[Judgment]
    ) -> tuple[list[PreferenceRecord], int]:
        """``(records, ties)`` of the finished run, as :func:`_records` gives them for
        ``comparisons`` and ``judgments``; the positions whose outputs were not made from
        exactly these objects are made now. Then :meth:`summary`, :meth:`decided`,
        :meth:`lines` and :meth:`log_items` give the rest."""
        if len(comparisons) != len(judgments):
            raise ValueError(
                f"{len(comparisons)} comparisons but {len(judgments)} judgments"
            )  # zip(strict=True) in _records
        n = len(comparisons)
        mine = self.comparisons
        if comparisons is not mine and not (
            len(mine) == n and all(map(operator.is_, mine, comparisons))
        ):
            self._reset(comparisons)  # not the comparisons it was given: all made now
        self.comparisons = comparisons
        self._index()
        origin = _ORIGIN.get(judgments[0].judge.kind, "judge") if judgments else None
        if origin != self._origin and self.early:
            self._reset(comparisons)
            self._index()
        self._origin = origin
        made = self._judgment
        self._finished = (comparisons, judgments)
        cjson, jjson = self._cjson, self._jjson
        if not all(map(operator.is_, made, judgments)):
            todo = [i for i, j in enumerate(judgments) if made[i] is not j]
            self.late = len(todo)
            if 2 * len(todo) > n:
                # most positions would be made now one by one (a judge whose judgments are
                # made after the last answer: order both or random, a jury): the lists as
                # before, whole, keeping only the comparisons' run-log JSON made while judging
                self._bulk = _records(comparisons, judgments, drop_ties=self.drop_ties)
                missing = [i for i, x in enumerate(cjson) if x is None]
                if 2 * len(missing) <= n:
                    self._comparisons_json_at(missing)
                if None not in cjson:
                    self._items = (cjson, None)  # type: ignore[assignment]
                return self._bulk
            for i in todo:
                self._make(i, comparisons[i], judgments[i], early=False)
        records = [r for r in self._record if r is not None]
        if self._line is not None:
            lines = [x for x, r in zip(self._row, self._record, strict=True) if r is not None]
            self._lines = None if None in lines else lines  # type: ignore[assignment]
        if None not in cjson and None not in jjson:
            self._items = (cjson, jjson)  # type: ignore[assignment]
        return records, sum(self._tie)

    def _comparisons_json_at(self, positions: list[int]) -> None:
        comps, cjson = self.comparisons, self._cjson
        for i in positions:
            c = comps[i]
            if type(c) is Comparison:
                with contextlib.suppress(Exception):  # None: the log serialized whole
                    cjson[i] = log_item_json(c)

    def summary(self, time_s: float) -> LabelSummary:
        """:func:`summarize` of the judgments :meth:`finish` was given, from the totals kept
        as each position was made: the same counts, the failures by kind in order of first
        appearance, the costs and label masses in the judgments' order (the same floats)."""
        if self._bulk is not None and self._finished is not None:
            return summarize(self._finished[1], time_s)
        parts: list[_SummaryPart] = self._part  # type: ignore[assignment]
        failed, checked, agreed, pt, ct, made, cached, pc, vp = self._totals
        failures: dict[Any, int] = {}
        if failed:
            for part in parts:
                if part[0] is _FAILED:
                    failures[part[1]] = failures.get(part[1], 0) + 1
        cost = functools.reduce(
            operator.add, itertools.chain.from_iterable(map(_COSTS, parts)), 0
        )  # cost += x, one by one, from 0: summarize's sum
        masses = list(itertools.chain.from_iterable(map(_MASSES, parts)))
        return _label_summary(
            len(parts),
            self._verdicts,
            failures,
            checked,
            agreed,
            pt,
            ct,
            made,
            cached,
            cost,
            masses,
            pc,
            vp,
            time_s,
        )

    def decided(self) -> int:
        """Records that are not ties, once :meth:`finish` ran."""
        if self._bulk is not None:
            return sum(1 for r in self._bulk[0] if not r.is_tie)
        ties = sum(t for t, r in zip(self._tie, self._record, strict=True) if r is not None)
        return sum(r is not None for r in self._record) - ties

    def _reset(self, comparisons: list[Comparison]) -> None:
        """Nothing made yet, for ``comparisons``."""
        self.__init__(  # type: ignore[misc]
            self.cfg, comparisons, judge=self.judge, lines=self._line is not None
        )

    def lines(self) -> list[bytes] | None:
        """The records' JSONL lines, in order (``write_preferences``' ``lines``), once
        :meth:`finish` ran; None where a line could not be made (the writer makes them)."""
        return self._lines

    def log_items(self) -> tuple[list[bytes] | None, list[bytes] | None] | None:
        """The comparisons' and the judgments' JSON as they sit in the run log
        (``RunLog.save``'s ``label_items``), once :meth:`finish` ran; None where one could not
        be made."""
        return self._items


def fingerprints(judge: Any) -> list[Any]:
    """The fingerprints of ``judge`` and of its members (a jury's), for the run log."""
    fps = [judge.fingerprint]
    for m in getattr(judge, "members", []) or []:
        fps += fingerprints(m)
    return fps


def transport_summary(judge: Any) -> dict[str, Any]:
    """What the judge's backends did on the wire, for a run log's summary: counters summed over
    the distinct backends (``requests``, ``attempts``, ``retries``, ``timeouts``,
    ``breaker_opened``) and, per base URL, ``endpoint_stats()`` (attempts, answers, failures by
    kind, breaker state, current concurrency limit). Empty for backends that keep none."""
    from judge_rl.judge.budget import _llm_judges

    totals: dict[str, int] = {}
    endpoints: list[dict[str, Any]] = []
    seen: set[int] = set()
    for llm in _llm_judges(judge):
        backend = getattr(llm, "backend", None)
        if backend is None or id(backend) in seen:
            continue
        seen.add(id(backend))
        for key, value in (getattr(backend, "stats", None) or {}).items():
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
        eps = getattr(backend, "endpoint_stats", None)
        if callable(eps):
            endpoints += eps()
    out: dict[str, Any] = dict(totals)
    if endpoints:
        out["endpoints"] = endpoints
    return out


# --- the process's garbage collector during a large run ------------------------------------------


YOUNG_GC_THRESHOLD = 500_000
"""Allocations between two young collections during a run (:func:`run_gc`). A young collection
scans every object made since the last one, and nearly all of a run's survive it (judgments,
records: kept to the end; 405 objects of cyclic garbage in a run of 10,000 judgments); at
50,000, four to five of them cost 0.12-0.14 s of CPU in that run, at 500,000 none happens
before its end (~0.01 s, the start-up's), and a longer run scans each object about once, as
before. At most this many objects of garbage wait for a collection."""


@contextlib.contextmanager
def run_gc(*, keep_frozen: bool = False) -> Iterator[None]:
    """The cyclic garbage collector during a run: young collections every
    :data:`YOUNG_GC_THRESHOLD` allocations instead of 700, and what the run holds for its whole
    life (modules, the comparisons read, the judge) frozen by :func:`quiet_gc` once built. A
    run keeps every judgment until the end, so the full collections that allocation triggers
    would scan ever more live objects (1.2 s of 10 s CPU for 10,000 judgments with the
    defaults). Cycles are still collected, less often; the interpreter's settings come back
    when the run ends (for in-process callers).
    ``keep_frozen``: what was frozen stays frozen (a process that exits when the run ends:
    the interpreter's last collection at exit then skips it, ~0.2 s for 10,000 judgments).
    ``JUDGE_RL_GC_DEFAULT=1`` keeps the interpreter's defaults (to compare)."""
    import gc

    before = gc.get_threshold()
    if os.environ.get("JUDGE_RL_GC_DEFAULT"):
        yield
        return
    gc.set_threshold(YOUNG_GC_THRESHOLD, before[1], before[2])
    try:
        yield
    finally:
        if not keep_frozen:
            gc.unfreeze()
        gc.set_threshold(*before)


def quiet_gc() -> None:
    """Freeze what is tracked now (see :func:`run_gc`); nothing outside :func:`run_gc`.

    No full collection first: it scanned every object the run holds (0.14 s of CPU before the
    first call for 10,000 pairs) to find the little garbage that imports leave, which stays
    frozen only until :func:`run_gc` ends and is collected then."""
    import gc

    if os.environ.get("JUDGE_RL_GC_DEFAULT") or gc.get_threshold()[0] != YOUNG_GC_THRESHOLD:
        return  # not inside run_gc
    gc.freeze()


def log_text(value: Any) -> str:
    r"""A path or name as text a run log can write as UTF-8 JSON: a non-UTF-8 file name
    (surrogate-escaped by Python) shows its undecodable bytes as U+FFFD.

    >>> log_text(b"caf\xe9?.jsonl".decode("utf-8", "surrogateescape"))
    'caf\ufffd?.jsonl'
    """
    s = str(value)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return s


__all__ = [
    "PAIRINGS",
    "LabelConfig",
    "LabelInput",
    "LabelProgress",
    "LabelBuilder",
    "Labels",
    "PairStream",
    "Selected",
    "apply_references",
    "fingerprints",
    "judge_comparisons",
    "judge_streamed",
    "label",
    "label_comparisons",
    "log_item_json",
    "log_text",
    "make_labels",
    "open_stream",
    "pair_candidates",
    "quiet_gc",
    "read_input",
    "read_references",
    "run_gc",
    "select",
    "spec_turn",
    "summarize",
    "to_records",
    "transport_summary",
]
