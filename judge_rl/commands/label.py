"""``judge-rl label``: turn comparisons or candidates into a TRL-ready preference file with a judge.

Input: a pair file (any preference or pairwise format ``judge_rl.data`` reads) or a candidates
file / folder (MT-Bench answers, ``judge-rl generate`` output), paired within each prompt (all
pairs, or each candidate against ``--baseline SOURCE``). Output: the preference file (ties as
``p_chosen=0.5``; failures left out and counted) and ``reports/<run>/log.json`` with a ``label``
section holding every comparison and judgment (raw outputs included) and a summary.

Resumable: finished judgments are in the cache, so the same command after an interruption judges
only what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from judge_rl.judge.cli_options import add_judge_options

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


@contextlib.contextmanager
def _run_gc() -> Iterator[None]:
    """The cyclic garbage collector during a run: young collections every 50,000 allocations
    instead of 700, and what the run holds for its whole life (modules, the comparisons read,
    the judge) frozen by :func:`_quiet_gc` once built. A run keeps every judgment until the end,
    so the full collections that allocation triggers would scan ever more live objects (1.2 s
    of 10 s CPU for 10,000 judgments with the defaults). Cycles are still collected, less
    often; the interpreter's settings come back when the run ends (for in-process callers)."""
    import gc

    before = gc.get_threshold()
    if os.environ.get("JUDGE_RL_GC_DEFAULT"):  # the interpreter's defaults, to compare
        yield
        return
    gc.set_threshold(50_000, before[1], before[2])
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _quiet_gc() -> None:
    """Freeze what is alive now (see :func:`_run_gc`)."""
    import gc

    if os.environ.get("JUDGE_RL_GC_DEFAULT") or gc.get_threshold()[0] != 50_000:
        return  # not inside _run_gc
    gc.collect()
    gc.freeze()


PROGRESS_EVERY_S = 0.1
"""Least time between two progress-bar updates (one per judgment cost ~0.05 ms each)."""


def run(args: argparse.Namespace) -> int:
    import asyncio

    with _run_gc():
        return asyncio.run(_run(args))


# --- input ---------------------------------------------------------------------------------------


def read_input(args: argparse.Namespace) -> tuple[list[Any], str, list[tuple[int, str]]]:
    """``(comparisons, description, skipped rows)`` from ``--input``."""
    from pathlib import Path

    from judge_rl.data import FORMATS, detect_format, read_candidates, read_comparisons
    from judge_rl.errors import DataError

    path = Path(args.input)
    if not path.exists():
        raise DataError("no such file or folder", file=str(path))
    skipped: list[tuple[int, str]] = []
    kind = "candidates" if path.is_dir() else None
    fmt = args.input_format
    if kind is None:
        found = fmt or detect_format(path)
        if found == "empty":
            return [], "empty file", skipped
        kind = FORMATS[found].kind if found in FORMATS else "preferences"
        fmt = found
    if kind == "candidates":
        cands = read_candidates(path, fmt=fmt, skip_invalid=args.skip_invalid, skipped=skipped)
        comps = pair_candidates(cands, baseline=args.baseline, seed=args.seed)
        how = f"vs baseline {args.baseline!r}" if args.baseline else "all pairs within each prompt"
        return (
            comps,
            f"{len(cands)} candidates ({fmt or 'folder'}) -> {len(comps)} comparisons, {how}",
            skipped,
        )
    if kind == "prompts":
        raise DataError(
            "this is a prompt file, not comparisons or candidates: generate candidates first "
            "(`judge-rl generate --prompts FILE ...`)",
            file=str(path),
        )
    if args.baseline:
        raise DataError("--baseline applies to candidate files, not to pair files", file=str(path))
    comps = read_comparisons(path, fmt=fmt, skip_invalid=args.skip_invalid, seed=args.seed)
    return comps, f"{len(comps)} comparisons ({fmt})", skipped


def pair_candidates(cands: list[Any], *, baseline: str | None = None, seed: int = 0) -> list[Any]:
    """Comparisons within each prompt: every pair, or each candidate vs the ``baseline`` source.

    Which candidate is ``a`` is a seeded coin flip per pair, so ``--order fixed`` does not
    systematically show one source first. The reference answer comes from either candidate's
    ``metadata["reference"]``.
    """
    import random

    from judge_rl.errors import DataError
    from judge_rl.types import Comparison

    groups: dict[str, list[Any]] = {}
    for c in cands:
        groups.setdefault(c.prompt_id, []).append(c)
    if baseline is not None and not any(c.source == baseline for c in cands):
        sources = sorted({c.source for c in cands})
        raise DataError(f"no candidate has source {baseline!r} (sources: {', '.join(sources)})")
    out = []
    for pid, group in groups.items():
        # One candidate per (source, response): exact duplicates would make empty comparisons.
        uniq: dict[tuple[str, str], Any] = {}
        for c in group:
            uniq.setdefault((c.source, str(c.response)), c)
        group = list(uniq.values())
        if baseline is not None:
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


def read_references(path: str) -> dict[str, list[str]]:
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
    comparisons: list[Any], refs: dict[str, list[str]], *, turn: int = 1
) -> tuple[list[Any], int]:
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


# --- output --------------------------------------------------------------------------------------


def to_records(comparisons: list[Any], judgments: list[Any]) -> list[Any]:
    """Preference records for the judgments that did not fail (ties with ``p_chosen=0.5``)."""
    from judge_rl.types import PreferenceRecord

    kind = judgments[0].judge.kind if judgments else ""
    origin = {"verifier": "verifier", "human": "human"}.get(kind, "judge")
    out = []
    keys: dict[int, tuple[Any, str]] = {}  # the fingerprint's key is a hash: once per judge
    for c, j in zip(comparisons, judgments, strict=True):
        if not j.ok:
            continue
        fp_key = keys.get(id(j.judge))
        if fp_key is None or fp_key[0] is not j.judge:
            fp_key = keys[id(j.judge)] = (j.judge, j.judge.key)
        if j.winner == "b":
            chosen, rejected = c.b, c.a
            p = 1.0 - j.p_a if j.p_a is not None else 1.0
        else:
            chosen, rejected = c.a, c.b
            p = j.p_a if j.p_a is not None else 1.0
            if j.winner == "tie":
                p = 0.5
        prov: dict[str, Any] = {
            "judge": j.judge.name,
            "judge_key": fp_key[1],
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
        out.append(
            PreferenceRecord(
                prompt=c.prompt,
                chosen=chosen.response,
                rejected=rejected.response,
                prompt_id=c.prompt_id,
                p_chosen=max(0.5, min(1.0, p)) if j.winner != "tie" else 0.5,
                origin=origin,  # type: ignore[arg-type]
                provenance=prov,
            )
        )
    return out


def summarize(judgments: list[Any], time_s: float) -> dict[str, Any]:
    """The run log's ``label.summary``."""
    from collections import Counter

    verdicts = Counter(j.winner for j in judgments if j.ok)
    failures = Counter(j.error_kind for j in judgments if not j.ok)
    both = [j.consistent for j in judgments if j.consistent is not None]
    calls = [call for j in judgments for call in _all_calls(j)]
    from judge_rl.judge.parse import LOW_LABEL_MASS

    masses = [c.label_mass for c in calls if c.label_mass is not None]
    mass: dict[str, Any] = {}
    if masses:
        low = sum(m < LOW_LABEL_MASS for m in masses)
        mass = {
            "label_mass_mean": sum(masses) / len(masses),
            "low_label_mass": low,
            "label_mass_calls": len(masses),
            "probs_contradict": sum(1 for c in calls if c.note == "probs_contradict"),
            "verdict_from_probs": sum(1 for c in calls if c.note == "verdict_from_probs"),
        }
    return {
        **mass,
        "n": len(judgments),
        "verdicts": {k: verdicts.get(k, 0) for k in ("a", "b", "tie")},
        "ties": verdicts.get("tie", 0),
        "failures": dict(failures),
        "failed": sum(failures.values()),
        "position_consistency": (sum(both) / len(both)) if both else None,
        "position_checked": len(both),
        "prompt_tokens": sum(j.prompt_tokens for j in judgments),
        "completion_tokens": sum(j.completion_tokens for j in judgments),
        "cost": sum(c.cost for c in calls if not c.cached),
        "time_s": time_s,
        "calls": sum(1 for c in calls if not c.cached),
        "cached": sum(1 for c in calls if c.cached),
    }


def _all_calls(j: Any) -> list[Any]:
    if j.members:
        return [c for m in j.members for c in _all_calls(m)]
    return list(j.calls)


def _fingerprints(judge: Any) -> list[Any]:
    fps = [judge.fingerprint]
    for m in getattr(judge, "members", []) or []:
        fps += _fingerprints(m)
    return fps


# --- the run -------------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    import time

    from rich.progress import TextColumn

    from judge_rl.console import console, err_console, progress
    from judge_rl.data import write_preferences
    from judge_rl.judge import estimate, progress_hook
    from judge_rl.judge.cli_options import judge_from_args
    from judge_rl.judge.specs import find_spec, validate_spec
    from judge_rl.runlog import LabelSection, new_log, run_dir

    err = err_console()
    from judge_rl.errors import FailureSummary, MaxFailures
    from judge_rl.judge.specs import shadowed_builtin

    max_failures = MaxFailures.parse(getattr(args, "max_failures", None))

    shadow = shadowed_builtin(args.judge)
    if shadow:  # the first line of output: a local folder replaces a built-in judge
        err.print(shadow, markup=False, highlight=False, soft_wrap=True)
    check_output(args.output)
    validate_spec(args.judge)  # spec problems before reading a large input
    comparisons, described, skipped = read_input(args)
    if args.limit is not None:
        comparisons = comparisons[: max(0, args.limit)]
    if getattr(args, "references", None):
        from judge_rl.judge.specs import read_spec as _read_spec

        turn = int(_read_spec(find_spec(args.judge)).get("turn") or 1)
        refs = read_references(args.references)
        comparisons, matched = apply_references(comparisons, refs, turn=turn)
        if matched == 0 and comparisons:
            from judge_rl.errors import DataError

            raise DataError(
                "no question id in this file matches a comparison of the input",
                file=str(args.references),
            )
        err.print(
            f"references: {matched} of {len(comparisons)} comparisons (turn {turn}) from "
            f"{args.references}",
            markup=False,
            highlight=False,
        )
    if skipped:
        err.print(
            f"skipped {len(skipped)} invalid input rows (first: line {skipped[0][0]}: {skipped[0][1]})"
        )
    judge, budget, cache = judge_from_args(args)
    _quiet_gc()
    if getattr(args, "refresh", False) and cache is not None:
        cache.refresh = True  # every lookup misses; fresh answers replace the stored ones
    fp = judge.fingerprint
    est = estimate(judge, comparisons)
    err.print(
        f"[bold]{fp.name}[/] v{fp.version} ({fp.kind}, {fp.backend or '-'} {fp.model or ''}): {described}"
    )
    err.print(_estimate_line(est, budget))
    if args.dry_run:
        await _close(judge)
        return 0

    state = {"done": 0, "failed": 0, "cost": 0.0, "fresh": 0, "shown": 0, "next": 0.0}
    t0 = time.perf_counter()
    total = max(est.units, 1) if est.units else len(comparisons)
    cols = (TextColumn("{task.fields[stats]}"),)
    with progress(*cols) as bar:
        task = bar.add_task(f"judging with {fp.name}", total=total, stats="")

        def show(now: float) -> None:
            rate = state["fresh"] / max(1e-9, now - t0)
            bar.update(
                task,
                advance=state["done"] - state["shown"],
                stats=f"{rate:.1f}/s  ${state['cost']:.4f}  failed {state['failed']}",
            )
            state["shown"] = state["done"]
            state["next"] = now + PROGRESS_EVERY_S

        def hook(event: str, rec: Any) -> None:
            state["done"] += 1
            calls = getattr(rec, "calls", None)
            fresh = not (getattr(rec, "cached", False) or (calls and all(c.cached for c in calls)))
            if fresh:
                state["fresh"] += 1
                state["cost"] += float(getattr(rec, "cost", 0.0) or 0.0)
            if getattr(rec, "error", None):
                state["failed"] += 1
            now = time.perf_counter()
            if now >= state["next"]:  # the bar redraws ~10 times a second: no need for more
                show(now)

        token = progress_hook.set(hook)
        try:
            judgments = await judge.compare(comparisons)
        finally:
            progress_hook.reset(token)
            await _close(judge)
        show(time.perf_counter())
        bar.update(task, completed=total)
    elapsed = time.perf_counter() - t0

    records = to_records(comparisons, judgments)
    ties = sum(1 for r in records if r.is_tie)
    if getattr(args, "drop_ties", True):
        records = [r for r in records if not r.is_tie]
    out_path = write_preferences(records, args.output)
    summary = summarize(judgments, elapsed)
    summary["written"] = len(records)
    summary["ties_dropped"] = ties if getattr(args, "drop_ties", True) else 0
    summary["budget_refused"] = budget.refused
    from judge_rl.judge.cli_options import transport_summary

    transport = transport_summary(judge)
    if transport:
        summary["transport"] = transport
    rdir = run_dir(args.run)
    log = new_log(
        "label",
        rdir.name,
        config={
            "judge": _text(args.judge),
            "input": _text(args.input),
            "output": _text(args.output),
            "order": judgments[0].order if judgments else None,
            "overrides": _safe_overrides(args),
            "max_cost": args.max_cost,
            "max_calls": args.max_calls,
            "baseline": _text(args.baseline) if args.baseline else None,
            "seed": args.seed,
        },
    )
    for f in _fingerprints(judge):
        log.add_judge(f)
    log.label = LabelSection(
        comparisons=comparisons, judgments=judgments, summary=summary, output=_text(out_path)
    )
    log.timings["label"] = elapsed
    log.cost["label"] = summary["cost"]
    log_path = log.save(rdir)
    console().print(_summary_table(fp.name, summary))
    console().print(f"wrote {len(records)} preferences to {out_path}; run log {log_path}")
    if (
        summary.get("label_mass_calls")
        and summary["low_label_mass"] > summary["label_mass_calls"] / 2
    ):
        from judge_rl.judge.parse import LOW_LABEL_MASS

        console().print(
            f"warning: in {summary['low_label_mass']} of {summary['label_mass_calls']} calls the "
            f"label tokens held under {LOW_LABEL_MASS:.0%} of the probability at the verdict "
            "position: this judge's p_a says little about its verdicts (see `judge-rl audit`)"
        )
    if summary["ties_dropped"]:
        console().print(
            f"left out {summary['ties_dropped']} ties (--drop-ties is the default; "
            "--no-drop-ties keeps them with p_chosen=0.5)"
        )
    if cache is not None:
        cache.close()
    budget.check()  # exit 2 with a clear message when the budget stopped the run
    fails = FailureSummary(total=len(judgments))
    fails.extend(j.error_kind or "error" for j in judgments if not j.ok)
    rc = fails.exit_code(max_failures, written=len(records))
    if rc:
        line = fails.line("comparisons") if fails.failed else "no comparison failed"
        if not records:
            dropped = summary["ties_dropped"]
            line += "; nothing was written" + (f" ({dropped} ties left out)" if dropped else "")
        elif getattr(args, "max_failures", None) is not None:
            line += f" (over --max-failures {max_failures})"
        err.print(f"[bold red]error:[/] {line}", highlight=False)
    return rc


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


def _text(value: Any) -> str:
    r"""A path or name as text the run log can write as UTF-8 JSON: a non-UTF-8 file name
    (surrogate-escaped by Python) shows its undecodable bytes as U+FFFD.

    >>> _text(b"caf\xe9?.jsonl".decode("utf-8", "surrogateescape"))
    'caf\ufffd?.jsonl'
    """
    s = str(value)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return s


def redact_url(url: str) -> str:
    """A URL without credentials, query or fragment (for the run log).

    >>> redact_url("https://user:secret@host:8000/v1?key=abc")
    'https://host:8000/v1'
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _safe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from judge_rl.judge.cli_options import judge_overrides

    over = judge_overrides(args)
    if "base_urls" in over:
        over["base_urls"] = [redact_url(u) for u in over["base_urls"]]
    return over


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


def _summary_table(name: str, s: dict[str, Any]) -> Any:
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
