"""``judge-rl label``: turn comparisons or candidates into a TRL-ready preference file with a judge.

Input: a pair file (any preference or pairwise format ``judge_rl.data`` reads) or a candidates
file / folder (MT-Bench answers, ``judge-rl generate`` output), paired within each prompt (all
pairs, or each candidate against ``--baseline SOURCE``). Output: the preference file (ties as
``p_chosen=0.5``; failures left out and counted) and ``reports/<run>/log.json`` with a ``label``
section holding every comparison and judgment (raw outputs included) and a summary.

Resumable: finished judgments are in the cache, so the same command after an interruption judges
only what is missing.

This module maps the flags to a :class:`~judge_rl.pipeline.label.LabelConfig`, calls the label
stage's library functions (:mod:`judge_rl.pipeline.label`: reading, pairing, references,
judging, records, summary) and renders what they return with rich; it decides the exit status.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from judge_rl.commands._judge_options import add_judge_options

    p = sub.add_parser(
        "label",
        help="label comparisons or candidates with a judge -> preference file",
        description="Judge comparisons (pairs) or candidates (paired within each prompt) and "
        "write a TRL-ready preference file plus the run log. Re-running the same command resumes "
        "from the judgment cache.",
    )
    p.add_argument(
        "--input", required=True, metavar="FILE", help="pair file or candidates file/folder"
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="preference file (.jsonl/.json/.parquet/.csv)",
    )
    p.add_argument(
        "--input-format",
        default=None,
        metavar="FMT",
        help="force the input format (see `judge-rl data formats`)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="SOURCE",
        help="candidates: compare each candidate with this source's answer to the same prompt "
        "(default: all pairs within a prompt)",
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="judge only the first N comparisons"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for side assignment of candidate pairs"
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip bad input rows (listed) instead of failing",
    )
    p.add_argument("--dry-run", action="store_true", help="print the estimate and stop")
    p.add_argument("--run", default=None, metavar="NAME", help="run name: reports/NAME/log.json")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="ask the judge again for every comparison and replace the cached answers",
    )
    p.add_argument(
        "--references",
        default=None,
        metavar="FILE",
        help="reference answers keyed by question id (JSONL: FastChat's reference_answer/*.jsonl, "
        'or {"question_id"|"id"|"prompt_id": ..., "reference"|"answer": ...} rows); they '
        "replace the input's own references",
    )
    p.add_argument(
        "--max-failures",
        default=None,
        metavar="N|P%",
        help="failed comparisons tolerated with exit status 0 (default 0: any failure exits 1 "
        "with counts by error kind)",
    )
    p.add_argument(
        "--drop-ties",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave ties out of the preference file (default: on; TRL's trainers read "
        "chosen/rejected and ignore p_chosen, so a tie would train as a preference for one "
        "side); --no-drop-ties keeps them with p_chosen=0.5",
    )
    add_judge_options(p)
    p.set_defaults(func=run)


def _quiet_gc() -> None:
    """Freeze what the run holds for its whole life (see
    :func:`judge_rl.pipeline.label.run_gc`)."""
    from judge_rl.pipeline.label import quiet_gc

    quiet_gc()


def run(args: argparse.Namespace) -> int:
    import asyncio

    from judge_rl.pipeline.label import run_gc

    exits = _exits_after()
    keep: list[Any] | None = _KEPT if exits else None
    with run_gc(keep_frozen=exits):
        rc = asyncio.run(_run(args, keep))
        if keep:
            _never_freed(keep)
    if exits:
        _end_process(rc)
    return rc


def _end_process(rc: int) -> None:
    """End the ``judge-rl`` process now with status ``rc``, as the interpreter would once the
    command returns (its ``atexit`` handlers run, stdout and stderr flushed) but without its
    finalization (~20 ms of CPU after a 10,000-judgment run: 56 -> 35 ms from the last
    ``atexit`` handler to the process gone, the rest is the kernel's); the run's own files are
    closed and synced by now. Returns, and the interpreter ends as usual, in a process not
    started as the command itself (:func:`_started_as_command`: a caller that only names its
    ``__main__`` like it, as a benchmark may, goes on after the command) or where a thread
    that is not a daemon still runs."""
    import atexit
    import os
    import sys
    import threading

    if not _started_as_command():
        return
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()  # a reader gone (BrokenPipeError): the CLI's handler, as ever
    sys.stderr.flush()
    os._exit(rc)


_KEPT: list[Any] = []
"""What a run held (the comparisons, judgments, records and run log: ~200,000 objects for
10,000 judgments), kept past the end of a process that exits when the command returns (see
:func:`_never_freed`)."""


def _never_freed(keep: list[Any]) -> None:
    """Leave ``keep`` to the operating system: a process that exits when the command returns
    would otherwise free every object of the run one by one (~60 ms of CPU for 10,000
    judgments, when the run's locals go and again nothing to show for it). ``keep`` refers to
    itself and is frozen, so neither the interpreter's teardown of modules nor its last
    collection frees it; nothing in it has a finaliser (plain records: no files, sockets or
    database handles), so no work is lost."""
    import gc

    keep.append(keep)
    gc.freeze()


def _exits_after() -> bool:
    """Whether this process is the ``judge-rl`` command itself (``python -m judge_rl`` or the
    ``judge-rl`` script), which exits when the command returns: what the run froze may stay
    frozen. An in-process caller (tests, a notebook) gets its collector back as it was."""
    import os
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) == "judge_rl.__main__":
        return True
    return os.path.basename(str(getattr(main, "__file__", "") or "")) == "judge-rl"


def _started_as_command() -> bool:
    """Whether this process was started as ``judge-rl`` or ``python -m judge_rl``: its
    ``sys.argv[0]`` is the ``judge-rl`` script, or the file its ``__main__`` module runs."""
    import os
    import sys

    arg0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(arg0) == "judge-rl":
        return True
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    origin = getattr(spec, "origin", None)
    if getattr(spec, "name", None) != "judge_rl.__main__" or not origin or not arg0:
        return False
    return os.path.realpath(arg0) == os.path.realpath(origin)


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~judge_rl.pipeline.label.LabelConfig` the flags describe."""
    from judge_rl.commands._judge_options import _plain_overrides
    from judge_rl.pipeline.label import LabelConfig

    return LabelConfig(
        judge=args.judge,
        judge_options=_plain_overrides(args),
        pairing="baseline" if args.baseline else "all",
        baseline=args.baseline,
        seed=args.seed,
        limit=args.limit,
        references=getattr(args, "references", None),
        drop_ties=getattr(args, "drop_ties", True),
        max_failures=getattr(args, "max_failures", None),
        refresh=getattr(args, "refresh", False),
        input_format=args.input_format,
        skip_invalid=args.skip_invalid,
    )


async def _run(args: argparse.Namespace, keep: list[Any] | None = None) -> int:
    """The command; ``keep``: a list that takes what the run held once it is done (see
    :func:`run`)."""
    import time

    from rich.progress import TextColumn

    from judge_rl.commands._judge_options import judge_from_args, judge_overrides
    from judge_rl.console import console, err_console, progress
    from judge_rl.data import write_preferences
    from judge_rl.errors import FailureSummary, MaxFailures
    from judge_rl.judge import estimate
    from judge_rl.judge.specs import shadowed_builtin, validate_spec
    from judge_rl.pipeline.label import (
        LabelProgress,
        fingerprints,
        judge_comparisons,
        judge_streamed,
        log_text,
        make_labels,
        open_stream,
        read_input,
        select,
    )

    err = err_console()
    max_failures = MaxFailures.parse(getattr(args, "max_failures", None))

    shadow = shadowed_builtin(args.judge)
    if shadow:  # the first line of output: a local folder replaces a built-in judge
        err.print(shadow, markup=False, highlight=False, soft_wrap=True)
    check_output(args.output)
    validate_spec(args.judge)  # spec problems before reading a large input
    cfg = config_from_args(args)
    # A pair file is judged while it is read (the first chunk's requests go out while the rest
    # is read, keyed and looked up); the header and estimate lines come once it is all read.
    # Other inputs (candidates, references, other formats) and --dry-run read it all first.
    stream = None if args.dry_run else open_stream(args.input, cfg)
    comparisons: list[Any] = []
    if stream is None:
        got = read_input(args.input, cfg)
        chosen = select(cfg, got.comparisons)  # --limit, --references
        comparisons = chosen.comparisons
        if chosen.references_matched is not None:
            err.print(
                f"references: {chosen.references_matched} of {len(comparisons)} comparisons "
                f"(turn {chosen.reference_turn}) from {args.references}",
                markup=False,
                highlight=False,
            )
        skipped = got.skipped
        if skipped:
            err.print(
                f"skipped {len(skipped)} invalid input rows (first: line {skipped[0][0]}: "
                f"{skipped[0][1]})"
            )
    judge, budget, cache = judge_from_args(args)
    _quiet_gc()
    fp = judge.fingerprint

    def header(est: Any, description: str) -> None:
        err.print(
            f"[bold]{fp.name}[/] v{fp.version} ({fp.kind}, {fp.backend or '-'} "
            f"{fp.model or ''}): {description}"
        )
        err.print(_estimate_line(est, budget))

    total: int | None = None
    if stream is None:
        est = estimate(judge, comparisons)
        header(est, got.description)
        if args.dry_run:
            await _close(judge)
            return 0
        total = max(est.units, 1) if est.units else len(comparisons)

    # each judgment's record, summary share, preference-file line and run-log JSON are made
    # as it finishes, while the loop waits on the network: after the last answer, joins
    from judge_rl.pipeline.label import LabelBuilder

    built = LabelBuilder(
        cfg,
        comparisons if stream is None else stream.comparisons,
        judge=judge,
        lines=_jsonl_output(args.output),
    )
    t0 = time.perf_counter()
    cols = (TextColumn("{task.fields[stats]}"),)
    with progress(*cols) as bar:
        task = bar.add_task(f"judging with {fp.name}", total=total, stats="")

        def show(p: LabelProgress) -> None:
            rate = p.fresh / max(1e-9, p.elapsed_s)
            bar.update(
                task,
                completed=p.done,
                stats=f"{rate:.1f}/s  ${p.cost:.4f}  failed {p.failed}",
            )

        def read(est: Any) -> None:  # the streamed input is all read; judging goes on
            nonlocal total
            assert stream is not None
            _quiet_gc()  # what was read lives to the end of the run
            header(est, stream.description)
            total = max(est.units, 1) if est.units else len(stream.comparisons)
            bar.update(task, total=total)

        try:
            if stream is None:
                judgments, _ = await judge_comparisons(
                    cfg, comparisons, judge, cache=cache, on_progress=show, built=built
                )
            else:
                comparisons, judgments, _ = await judge_streamed(
                    cfg, stream, judge, cache=cache, on_progress=show, on_read=read, built=built
                )
        finally:
            await _close(judge)
            # every judgment is stored: the cache's last checkpoint (SQLite copying its
            # write-ahead log into the database and syncing it) runs on a thread while the
            # records and the run log are written, instead of after them
            closing = _close_cache_soon(cache)
        bar.update(task, completed=total)
    elapsed = time.perf_counter() - t0  # the judging window: the run log's timings.label
    labels = make_labels(
        cfg, comparisons, judgments, elapsed, judge=judge, budget=budget, built=built
    )

    from judge_rl.runlog import new_log, run_dir

    records = labels.records
    summary = labels.section.summary
    try:
        rdir = run_dir(args.run)
    except BaseException:
        # written as before the run folder's error
        write_preferences(records, args.output, lines=built.lines())
        raise
    log = new_log(
        "label",
        rdir.name,
        config={
            "judge": log_text(args.judge),
            "input": log_text(args.input),
            "output": log_text(args.output),
            "order": labels.judgments[0].order if labels.judgments else None,
            "overrides": _safe_overrides(judge_overrides(args)),
            "max_cost": args.max_cost,
            "max_calls": args.max_calls,
            "baseline": log_text(args.baseline) if args.baseline else None,
            "seed": args.seed,
        },
    )
    for f in fingerprints(judge):
        log.add_judge(f)
    labels.section.output = log_text(Path(args.output))  # the path write_preferences returns
    log.label = labels.section
    log.timings["label"] = elapsed
    log.cost["label"] = summary.cost
    # The run log first: its bytes (18 MB for 10,000 judgments) are written and synced on a
    # thread while the preference file is made, and take their place once that file is on
    # disk (as before, no run log names a preference file that was not written); the
    # preference file's own bytes are written and synced while the table is drawn.
    pending: list[_PendingWrite] = []
    log_path = log.save(
        rdir,
        write=lambda path, data: pending.append(_PendingWrite(path, data)),
        label_items=built.log_items(),
    )
    try:
        writing: list[_Soon] = []
        out_path = write_preferences(
            records,
            args.output,
            write=lambda path, data: writing.append(_write_soon(path, data)),
            lines=built.lines(),
        )
        console().print(_summary_table(fp.name, summary))
        for w in writing:
            w.join()
    except BaseException:
        for p in pending:
            p.abort()
        raise
    for p in pending:
        p.commit()  # on disk before the line that says so
    console().print(f"wrote {len(records)} preferences to {out_path}; run log {log_path}")
    if summary.label_mass_calls and (summary.low_label_mass or 0) > summary.label_mass_calls / 2:
        from judge_rl.judge.parse import LOW_LABEL_MASS

        console().print(
            f"warning: in {summary.low_label_mass} of {summary.label_mass_calls} calls the "
            f"label tokens held under {LOW_LABEL_MASS:.0%} of the probability at the verdict "
            "position: this judge's p_a says little about its verdicts (see `judge-rl audit`)"
        )
    if summary.ties_dropped:
        console().print(
            f"left out {summary.ties_dropped} ties (--drop-ties is the default; "
            "--no-drop-ties keeps them with p_chosen=0.5)"
        )
    if closing is not None:
        closing.join()
    budget.check()  # exit 2 with a clear message when the budget stopped the run
    fails = FailureSummary(total=len(labels.judgments))
    if summary.failed:  # the judgments that are not ok, as summarize counted them
        fails.extend(j.error_kind or "error" for j in labels.judgments if not j.ok)
    rc = fails.exit_code(max_failures, written=len(records))
    if rc:
        line = fails.line("comparisons") if fails.failed else "no comparison failed"
        if not records:
            dropped = summary.ties_dropped
            line += "; nothing was written" + (f" ({dropped} ties left out)" if dropped else "")
        elif getattr(args, "max_failures", None) is not None:
            line += f" (over --max-failures {max_failures})"
        err.print(f"[bold red]error:[/] {line}", highlight=False)
    if keep is not None:
        keep += [labels, comparisons, judgments, records, log, stream, built]
    return rc


def _jsonl_output(path: str) -> bool:
    """Whether ``write_preferences`` writes ``path`` as JSONL (its lines are then made while
    judging)."""
    from judge_rl.data._rows import file_kind

    return file_kind(path) == "jsonl"


OUTPUT_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".parquet", ".csv")


def check_output(path: str) -> None:
    """Refuse an output extension ``write_preferences`` cannot write, before any judging."""
    from judge_rl.errors import ConfigError

    if not str(path).lower().endswith(OUTPUT_SUFFIXES):
        raise ConfigError(
            f"cannot write {path!r}: use one of {', '.join(OUTPUT_SUFFIXES)}", setting="--output"
        )
    from judge_rl._io import check_output_file

    check_output_file(path, "--output")  # a folder, a file as parent, no permission: now


def _safe_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The judge overrides for the run log: base URLs without credentials."""
    over = dict(overrides)
    if "base_urls" in over:
        from judge_rl.backends.openai import redact_url

        over["base_urls"] = [redact_url(u) for u in over["base_urls"]]
    return over


class _Soon:
    """``fn()`` started on a thread named ``name``; :meth:`join` waits for it and raises what
    it raised, in the command's thread."""

    def __init__(self, name: str, fn: Any) -> None:
        import threading

        self.error: BaseException | None = None

        def run() -> None:
            try:
                fn()
            except BaseException as e:
                self.error = e

        self.thread = threading.Thread(target=run, name=name)
        self.thread.start()

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _write_soon(path: Any, data: bytes) -> _Soon:
    """:func:`judge_rl._io.atomic_write_bytes` on a thread of its own: the run log (18 MB for
    10,000 judgments) is written and synced to disk while the command draws its summary table
    and the cache closes (a full disk: the command's error at ``join``, as before)."""

    def write() -> None:
        from judge_rl._io import atomic_write_bytes

        atomic_write_bytes(path, data)

    return _Soon("judge-rl-write", write)


class _PendingWrite:
    """``data`` for ``path``, written and synced to disk now on a thread (``judge-rl-write``)
    to a hidden file beside it (:func:`_write_soon`); :meth:`commit` waits for it and renames
    it into place (atomic, as :func:`~judge_rl._io.atomic_write_bytes`) or raises the write's
    error; :meth:`abort` waits and removes it."""

    def __init__(self, path: Any, data: bytes) -> None:
        self.path = Path(path)
        self.staged = self.path.with_name(f".{self.path.name}.pending")
        self.soon = _write_soon(self.staged, data)

    def commit(self) -> None:
        import os

        self.soon.join()
        os.replace(self.staged, self.path)

    def abort(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):  # the error being raised is the caller's
            self.soon.join()
        with contextlib.suppress(FileNotFoundError):
            self.staged.unlink()


def _close_cache_soon(cache: Any) -> _Soon | None:
    """``cache.close()`` started on a thread; ``.join()`` on what this returns waits for it and
    raises what it raised. None without a cache."""
    if cache is None:
        return None

    def close() -> None:
        from judge_rl.judge.cache import _background

        _background()  # the records and the run log first; this is mostly a sync to disk
        cache.close()

    return _Soon("judge-rl-cache-close", close)


async def _close(judge: Any) -> None:
    close = getattr(judge, "aclose", None)
    if close is not None:
        await close()


def _estimate_line(est: Any, budget: Any) -> str:
    parts = [f"estimate: {est.calls} calls"]
    if est.cached:
        parts.append(f"{est.cached} cached")
    if est.calls:
        parts.append(
            f"~{est.prompt_tokens:,} prompt + ≤{est.completion_tokens:,} completion tokens"
        )
        parts.append(f"≤ ${est.cost:.4f}" if est.priced else "cost unknown (no price table)")
    if budget.max_calls is not None or budget.max_cost is not None:
        limits = []
        if budget.max_calls is not None:
            limits.append(f"{budget.max_calls} calls")
        if budget.max_cost is not None:
            limits.append(f"${budget.max_cost:g}")
        parts.append("budget " + " / ".join(limits))
    return ", ".join(parts)


def _summary_table(name: str, s: Any) -> Any:
    from rich.table import Table

    t = Table(title=f"label: {name}", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    v = s["verdicts"]
    t.add_row("comparisons", str(s["n"]))
    t.add_row("verdicts", f"a {v['a']}  b {v['b']}  tie {v['tie']}")
    fails = ", ".join(f"{k} {n}" for k, n in sorted(s["failures"].items())) or "none"
    t.add_row("failures", f"{s['failed']} ({fails})")
    pc = s["position_consistency"]
    t.add_row(
        "position consistency",
        f"{pc:.1%} of {s['position_checked']}" if pc is not None else "n/a (single order)",
    )
    t.add_row("calls", f"{s['calls']} made, {s['cached']} from cache")
    t.add_row("tokens", f"{s['prompt_tokens']:,} prompt, {s['completion_tokens']:,} completion")
    t.add_row("cost", f"${s['cost']:.4f}")
    t.add_row("time", f"{s['time_s']:.1f} s")
    if s.get("label_mass_calls"):
        t.add_row(
            "label mass",
            f"{s['label_mass_mean']:.2f} mean at the verdict; {s['low_label_mass']} of "
            f"{s['label_mass_calls']} calls below the flag threshold",
        )
    tr = s.get("transport") or {}
    if "attempts" in tr:
        urls = len(tr.get("endpoints") or [])
        t.add_row(
            "transport",
            f"{tr['attempts']} attempts, {tr.get('retries', 0)} retries, "
            f"{tr.get('timeouts', 0)} timeouts" + (f" over {urls} endpoint(s)" if urls else ""),
        )
    t.add_row("written", str(s.get("written", 0)))
    if s.get("ties_dropped"):
        t.add_row("ties left out", f"{s['ties_dropped']} (--drop-ties)")
    return t
