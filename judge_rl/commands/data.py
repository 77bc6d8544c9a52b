"""``judge-rl data``: inspect and convert preference, candidate and prompt files.

``judge-rl data inspect FILE``   detected format, rows, length statistics, label balance,
                                  duplicates and skipped rows, as a table.
``judge-rl data convert IN OUT``  any supported format -> TRL-ready JSONL/Parquet/CSV.
``judge-rl data formats``         the supported formats.
"""

from __future__ import annotations

import argparse
from typing import Any

COLUMN_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--prompt-col", "prompt", "column holding the prompt"),
    ("--chosen-col", "chosen", "column holding the preferred response"),
    ("--rejected-col", "rejected", "column holding the dispreferred response"),
    ("--response-a-col", "response_a", "pairwise: first response"),
    ("--response-b-col", "response_b", "pairwise: second response"),
    ("--label-col", "winner", "pairwise: label (a/b/tie, P(a) or 1/2)"),
    ("--response-col", "response", "thumbs/ratings/candidates: the response"),
    ("--rating-col", "rating", "ratings: the numeric rating"),
    ("--thumbs-col", "thumbs", "thumbs: up/down"),
    ("--responses-col", "responses", "ranked: list of responses, best first"),
    ("--id-col", "prompt_id", "prompt id (groups thumbs/ratings rows)"),
    ("--source-col", "source", "model/source name"),
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        dest="fmt",
        metavar="FMT",
        help="force the input format (see `judge-rl data formats`)",
    )
    g = p.add_argument_group("column mapping (your column name for each of ours)")
    for flag, ours, help_ in COLUMN_FLAGS:
        g.add_argument(flag, dest=f"col_{ours}", metavar="NAME", help=help_)
    g.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="OURS=THEIRS",
        help="any column, e.g. --map chosen=good (repeatable)",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip bad rows and report how many and why (default: stop at the first, exit 2)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "data",
        help="inspect and convert preference / candidate / prompt files",
        description="Inspect and convert preference, candidate and prompt files "
        "(TRL, HH-RLHF, pairwise, ranked, thumbs, ratings, AlpacaEval, MT-Bench, GSM8K).",
    )
    p.set_defaults(func=run, data_command=None)
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    pi = dsub.add_parser("inspect", help="format, rows, lengths, label balance, duplicates")
    pi.add_argument("file", help="JSONL (.gz), JSON, CSV/TSV or Parquet file")
    pi.add_argument(
        "--show-skipped",
        type=int,
        default=5,
        metavar="N",
        help="list the N most common skip reasons",
    )
    pi.add_argument(
        "--run",
        default=None,
        metavar="NAME",
        help="also write the summary to reports/NAME/log.json (inspect writes nothing by default)",
    )
    _add_common(pi)
    pc = dsub.add_parser("convert", help="convert to TRL-ready rows (prompt, chosen, rejected)")
    pc.add_argument("input", help="input file, any supported format")
    pc.add_argument("output", help="output file: .jsonl, .jsonl.gz, .json, .parquet or .csv")
    pc.add_argument(
        "--drop-ties",
        action="store_true",
        help="leave out ties (p_chosen = 0.5): TRL's trainers ignore p_chosen and would learn them "
        "as preferences",
    )
    pc.add_argument(
        "--run",
        default=None,
        metavar="NAME",
        help="run name: reports/NAME/log.json (default: a timestamp)",
    )
    pc.add_argument(
        "--max-failures",
        default="0",
        metavar="N|P%",
        help="with --skip-invalid: exit 0 when at most N rows (or P%% of them) were skipped "
        "(default 0: any skipped row makes the exit status 1)",
    )
    _add_common(pc)
    dsub.add_parser("formats", help="list the supported input formats")


def _columns(args: argparse.Namespace) -> dict[str, str]:
    from judge_rl.errors import ConfigError

    cols: dict[str, str] = {}
    for _, ours, _ in COLUMN_FLAGS:
        v = getattr(args, f"col_{ours}", None)
        if v:
            cols[ours] = v
    for item in getattr(args, "map", []) or []:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise ConfigError(f"expected OURS=THEIRS, got {item!r}", setting="--map")
        cols[ours.strip()] = theirs.strip()
    return cols


def run(args: argparse.Namespace) -> int:
    from judge_rl.errors import EXIT_USER_ERROR

    action = getattr(args, "data_command", None)
    if action == "inspect":
        return _inspect(args)
    if action == "convert":
        return _convert(args)
    if action == "formats":
        return _formats()
    from judge_rl.console import err_console

    err_console().print(
        "usage: judge-rl data {inspect,convert,formats} ... (see judge-rl data --help)"
    )
    return EXIT_USER_ERROR


def _status(message: str) -> Any:
    """A transient spinner on stderr while a file is read (off with JUDGE_RL_NO_PROGRESS)."""
    import contextlib
    import os

    from rich.markup import escape

    from judge_rl.console import err_console

    if os.environ.get("JUDGE_RL_NO_PROGRESS") or not err_console().is_terminal:
        return contextlib.nullcontext()
    return err_console().status(escape(message))


def _fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {n:,}" if isinstance(n, int) else f"{k}: {n}" for k, n in v.items())
    return str(v)


def _inspect(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from judge_rl._io import safe_run_dir
    from judge_rl.console import console
    from judge_rl.data import FORMATS
    from judge_rl.data._inspect import summarize
    from judge_rl.errors import check_count

    check_count(args.show_skipped, "--show-skipped", maximum=10_000)
    if args.run:
        args.run = str(safe_run_dir(args.run, create=False))  # checked before reading
    with _status(f"reading {args.file}"):
        s = summarize(
            args.file, fmt=args.fmt, columns=_columns(args), skip_invalid=args.skip_invalid
        )
    unit = {"preferences": "pairs", "candidates": "candidates", "prompts": "prompts"}.get(
        s.kind, "items"
    )
    t = Table(title=escape(args.file), show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    desc = FORMATS[s.format].summary if s.format in FORMATS else ""
    t.add_row("format", f"{s.format}" + (f"  ({escape(desc)})" if desc else ""))
    t.add_row("rows", _fmt_num(s.rows))
    t.add_row(unit, _fmt_num(s.items))
    t.add_row("skipped rows", _fmt_num(len(s.skipped)))
    for name, v in s.counts.items():
        t.add_row(escape(name), escape(_fmt_num(v)))
    console().print(t)
    if s.lengths:
        lt = Table(title="length (characters)", title_justify="left")
        for col in ("field", "mean", "median", "min", "max"):
            lt.add_column(col, justify="left" if col == "field" else "right")
        for name, ls in s.lengths.items():
            lt.add_row(name, f"{ls.mean:,.0f}", f"{ls.median:,.0f}", f"{ls.min:,}", f"{ls.max:,}")
        console().print(lt)
    if args.run:
        _write_log(args, "data inspect", _summary_dict(s))
    if s.skipped:
        st = Table(
            title=f"skipped rows: {len(s.skipped):,} (most common reasons)", title_justify="left"
        )
        st.add_column("reason")
        st.add_column("rows", justify="right")
        st.add_column("first line", justify="right")
        first: dict[str, int] = {}
        for line, reason in s.skipped:
            first.setdefault(reason, line)
        for reason, n in s.skip_reasons(args.show_skipped):
            st.add_row(escape(reason), f"{n:,}", str(first[reason]))
        console().print(st)
    return 0


_OUTPUT_SUFFIXES = (
    ".jsonl",
    ".jsonl.gz",
    ".ndjson",
    ".ndjson.gz",
    ".json",
    ".parquet",
    ".pq",
    ".csv",
    ".tsv",
)


def _convert(args: argparse.Namespace) -> int:
    import time

    from judge_rl._io import check_output_file, safe_run_dir
    from judge_rl.errors import ConfigError, MaxFailures

    cols = _columns(args)
    # Everything that can be refused is refused before the input is read.
    args.max_failures = MaxFailures.parse(args.max_failures)
    check_output_file(args.output, "output")
    if not str(args.output).lower().endswith(_OUTPUT_SUFFIXES):
        raise ConfigError(
            f"unsupported output extension: {args.output} (use .jsonl, .jsonl.gz, .json, "
            ".parquet, .csv or .tsv)",
            setting="output",
        )
    args.run = str(safe_run_dir(args.run or time.strftime("%Y%m%d-%H%M%S"), create=False))
    with _status(f"converting {args.input}"):
        return _convert_file(args, cols)


def _convert_file(args: argparse.Namespace, cols: dict[str, str]) -> int:
    from rich.markup import escape

    from judge_rl.console import console, err_console
    from judge_rl.data import (
        FORMATS,
        detect_format,
        read_candidates,
        read_preferences,
        read_prompts,
        write_candidates,
        write_preferences,
        write_prompts,
    )
    from judge_rl.errors import EXIT_OK, ConfigError, DataError, FailureSummary

    fmt = args.fmt or detect_format(args.input, columns=cols)
    if fmt == "empty":
        raise DataError("no rows to convert", file=args.input)
    kind = FORMATS[fmt].kind if fmt in FORMATS else "preferences"
    if kind != "preferences" and not str(args.output).lower().endswith(
        (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
    ):
        raise ConfigError(
            f"{args.output}: {kind} are written as .jsonl or .jsonl.gz", setting="output"
        )
    skipped: list[tuple[int, str]] = []
    rows = 0
    ties = 0
    if kind == "preferences":
        res = read_preferences(args.input, fmt=fmt, columns=cols, skip_invalid=args.skip_invalid)
        recs = [r for r in res.records if not (args.drop_ties and r.is_tie)]
        ties = len(res.records) - len(recs)
        n, unit, skipped, rows = len(recs), "pairs", res.skipped, res.rows
        if ties:
            console().print(f"left out {ties:,} ties (--drop-ties)")
        write: Any = (write_preferences, recs)
    elif kind == "candidates":
        cands = read_candidates(
            args.input, fmt=fmt, columns=cols, skip_invalid=args.skip_invalid, skipped=skipped
        )
        n, unit, rows = len(cands), "candidates", len(cands) + len(skipped)
        write = (write_candidates, cands)
    else:
        items = read_prompts(
            args.input, columns=cols, skip_invalid=args.skip_invalid, skipped=skipped
        )
        n, unit, rows = len(items), "prompts", len(items) + len(skipped)
        write = (write_prompts, items)
    failures = FailureSummary(total=max(rows, len(skipped)))
    failures.extend(_failure_kind(r) for _, r in skipped)
    if n == 0:
        # An empty output is never a success, and an empty file only fails later elsewhere.
        why = []
        if skipped:
            why.append(failures.line("rows"))
        if ties:
            why.append(f"{ties:,} ties left out by --drop-ties")
        err_console().print(
            f"error: no {unit} to write from {escape(str(args.input))}"
            + (f" ({'; '.join(why)})" if why else "")
            + "; nothing written",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        rc = failures.exit_code(args.max_failures, written=0)
    else:
        write[0](write[1], args.output)
        console().print(f"wrote {n:,} {unit} ({fmt} -> {escape(args.output)})")
        rc = failures.exit_code(args.max_failures)
    from collections import Counter

    info = {
        "input": str(args.input),
        "output": str(args.output),
        "format": fmt,
        "kind": kind,
        "written": n,
        "skipped": len(skipped),
        "skip_reasons": dict(Counter(r for _, r in skipped).most_common(20)),
        "columns": cols,
        "exit_code": rc,
    }
    if ties:
        info["ties_left_out"] = ties
    _write_log(args, "data convert", info)
    if skipped:
        console().print(f"skipped {len(skipped):,} invalid rows:")
        for reason, k in Counter(r for _, r in skipped).most_common(5):
            console().print(f"  {k:,} x {escape(reason)}")
        line = failures.line("rows")
        if rc != EXIT_OK:
            line += f" (over --max-failures {args.max_failures})"
        err_console().print(line, markup=False, highlight=False, soft_wrap=True)
    return rc


def _failure_kind(reason: str) -> str:
    """A short kind for the summary line: the reason up to its first detail.

    >>> _failure_kind("chosen: missing field"), _failure_kind("malformed JSON: Expecting value (column 3)")
    ('chosen: missing field', 'malformed JSON')
    """
    if reason.startswith("malformed JSON"):
        return "malformed JSON"
    if reason.startswith("non-UTF-8"):
        return "non-UTF-8"
    return reason if len(reason) <= 60 else reason[:57] + "..."


def _summary_dict(s: Any) -> dict[str, Any]:
    from collections import Counter
    from dataclasses import asdict

    return {
        "input": s.path,
        "format": s.format,
        "kind": s.kind,
        "rows": s.rows,
        "items": s.items,
        "skipped": len(s.skipped),
        "skip_reasons": dict(Counter(r for _, r in s.skipped).most_common(20)),
        "lengths": {k: asdict(v) for k, v in s.lengths.items()},
        "counts": s.counts,
    }


def _write_log(args: argparse.Namespace, command: str, info: dict[str, Any]) -> None:
    """``reports/<run>/log.json`` with the data summary under ``extra["data"]``."""
    from rich.markup import escape

    from judge_rl.console import console
    from judge_rl.runlog import new_log, run_dir

    rdir = run_dir(args.run)
    config = {k: _valid_text(v) for k, v in vars(args).items() if k != "func" and not callable(v)}
    log = new_log(command, rdir.name, config)
    log.extra["data"] = _valid_text(info)
    path = log.save(rdir)
    console().print(f"log: {escape(str(path))}")


def _valid_text(value: Any) -> Any:
    """Strings made writable as UTF-8 JSON: a non-UTF-8 file name (surrogate-escaped by Python)
    shows its undecodable bytes as U+FFFD instead of failing the run log."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid_text(v) for v in value]
    if hasattr(value, "__fspath__"):
        return _valid_text(str(value))
    return value


def _formats() -> int:
    from rich.markup import escape
    from rich.table import Table

    from judge_rl.console import console
    from judge_rl.data import FORMATS

    t = Table(
        title="input formats (detected from the columns; force with --format)", title_justify="left"
    )
    t.add_column("format")
    t.add_column("reads into")
    t.add_column("columns")
    for f in FORMATS.values():
        t.add_row(f.name, f.kind, escape(f.summary))
    console().print(t)
    return 0
