"""Readers and writers: files -> PreferenceRecords / Candidates / PromptItems / Comparisons.

Every reader validates row by row. By default the first bad row raises
:class:`~judge_rl.errors.DataError` naming ``file:line`` and the field; with
``skip_invalid=True`` bad rows are skipped and listed (line, reason) in the result.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from json.encoder import encode_basestring as _json_text  # what json.dumps uses for text
from pathlib import Path
from typing import Any

from judge_rl._io import atomic_write_bytes
from judge_rl.data import _formats as F
from judge_rl.data._rows import (
    file_kind,
    iter_raw_rows,
    jsonl_bytes,
    jsonl_line_encoder,
    type_name,
    write_jsonl,
    write_jsonl_lines,
)
from judge_rl.errors import DataError
from judge_rl.types import (
    Candidate,
    Comparison,
    PreferenceRecord,
    PromptItem,
    response_text,
    unvalidated,
)

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
BUILTIN_PREFIX = "builtin:"


@dataclass
class ReadResult:
    """What :func:`read_preferences` read: the records, the detected format and skipped rows."""

    records: list[PreferenceRecord]
    format: str
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """``(line, reason)`` of each row skipped with ``skip_invalid=True``."""
    path: str = ""
    rows: int = 0
    """Input rows seen (valid and skipped); differs from ``len(records)`` for ranked/thumbs/ratings."""

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[PreferenceRecord]:
        return iter(self.records)


class _Collector:
    """Raise on the first bad row, or collect (line, reason) with ``skip_invalid``."""

    def __init__(self, path: PathLike, skip_invalid: bool):
        self.file = str(path)
        self.skip_invalid = skip_invalid
        self.skipped: list[tuple[int, str]] = []
        self.rows = 0
        """Input rows seen, valid or not."""

    def bad(self, line: int, reason: str, field: str | None = None) -> None:
        if not self.skip_invalid:
            raise DataError(reason, file=self.file, line=line, field=field)
        self.skipped.append((line, f"{field}: {reason}" if field else reason))


def _dict_rows(
    path: PathLike, columns: Mapping[str, str] | None, coll: _Collector
) -> Iterator[tuple[int, dict[str, Any]]]:
    for raw in iter_raw_rows(path):
        coll.rows += 1
        if raw.error is not None:
            coll.bad(raw.line, raw.error)
        elif not isinstance(raw.value, dict):
            coll.bad(raw.line, f"expected an object (one row), got {type_name(raw.value)}")
        else:
            yield raw.line, F.apply_columns(raw.value, columns)


def _check_fmt(fmt: str | None) -> None:
    if fmt is not None and fmt not in F.FORMATS:
        raise DataError(f"unknown format {fmt!r}; known: {', '.join(F.FORMATS)}")


def _detect(row: Mapping[str, Any], path: PathLike, line: int) -> str:
    fmt = F.detect_row(row)
    if fmt is None:
        cols = ", ".join(sorted(map(str, row))[:12])
        raise DataError(
            f"cannot tell the format from the columns ({cols}); pass --format or map columns "
            "(e.g. --map chosen=good)",
            file=str(path),
            line=line,
        )
    return fmt


def detect_format(
    source: PathLike | Iterable[Mapping[str, Any]], *, columns: Mapping[str, str] | None = None
) -> str:
    """The format of a file (or of rows): see :data:`judge_rl.data.FORMATS` for the names.

    Detection looks at the first valid row's columns (after ``columns`` renaming). An empty
    file is ``"empty"``.

    >>> detect_format([{"prompt": "q", "response_a": "x", "response_b": "y", "winner": "a"}])
    'pairwise'
    """
    if isinstance(source, str | os.PathLike):
        source = _resolve_prompts(source)
        if source.is_dir():  # a folder of candidate files: its first file decides
            return detect_format(_folder_files(source)[0], columns=columns)
        coll = _Collector(source, skip_invalid=True)
        for line, row in _dict_rows(source, columns, coll):
            return _detect(row, source, line)
        if coll.skipped:
            line, reason = coll.skipped[0]
            raise DataError(reason, file=str(source), line=line)
        return "empty"
    for i, item in enumerate(source, start=1):
        return _detect(F.apply_columns(item, columns), "<rows>", i)
    return "empty"


def _kind_error(path: PathLike, line: int, fmt: str, want: str) -> DataError:
    kind = F.FORMATS[fmt].kind
    hint = {
        "preferences": "read it with read_preferences / `judge-rl data convert`",
        "candidates": "read it with read_candidates",
        "prompts": "read it with read_prompts",
    }[kind]
    return DataError(
        f"this file is in the {fmt} format ({kind}), not {want}; {hint}", file=str(path), line=line
    )


# ---------------------------------------------------------------------------------------------
# preferences


def read_preferences(
    path: PathLike,
    *,
    fmt: str | None = None,
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
) -> ReadResult:
    """Read a preference file of any supported format into :class:`PreferenceRecord` s.

    Args:
        path: JSONL (``.gz`` too), JSON array, CSV/TSV or Parquet file.
        fmt: force a format (a key of ``FORMATS``); detected from the first row when None.
        columns: rename the file's columns to ours, e.g. ``{"chosen": "good", "prompt": "q"}``.
        skip_invalid: skip bad rows (listed in ``ReadResult.skipped``) instead of raising.

    Returns:
        ReadResult with records in file order. Ties have ``p_chosen=0.5``; soft labels keep
        their probability; provenance holds file, line, format, sources and every unused column.

    Raises:
        DataError: naming ``file:line`` and the field, for the first bad row (unless
            ``skip_invalid``) or when the format cannot be told.
    """
    _check_fmt(fmt)
    coll = _Collector(path, skip_invalid)
    records: list[PreferenceRecord] = []
    units: list[F.Unit] = []
    found: str | None = fmt
    tabular = file_kind(path) in ("csv", "tsv")
    for line, row in _dict_rows(path, columns, coll):
        if found is None:
            found = _detect(row, path, line)
        if F.FORMATS[found].kind != "preferences":
            raise _kind_error(path, line, found, "preference pairs")
        ctx = F.Ctx(str(path), line, found, tabular=tabular)
        try:
            if found in F.GROUPED_FORMATS:
                units.append(F.convert_unit(row, ctx))
            else:
                records.extend(F.CONVERTERS[found](row, ctx))
        except F.RowError as e:
            coll.bad(line, e.reason, e.field)
    if units:
        records.extend(F.pair_units(units, str(path), found or ""))
    if coll.skipped:
        log.info("%s: skipped %d invalid rows", path, len(coll.skipped))
    return ReadResult(records, found or "empty", coll.skipped, str(path), coll.rows)


def read_comparisons(
    path: PathLike,
    *,
    fmt: str | None = None,
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    seed: int = 0,
) -> list[Comparison]:
    """Read a pair file (labelled or not) into :class:`Comparison` s.

    Pairwise files keep their ``response_a``/``response_b`` as ``a``/``b``; a label, when
    present, goes to ``metadata["human"]`` (``"a"``, ``"b"`` or ``"tie"``) and
    ``metadata["human_p_a"]``. Every other preference format goes through
    :func:`read_preferences` and :func:`records_to_comparisons` (sides randomised with ``seed``).
    """
    _check_fmt(fmt)
    found = fmt or detect_format(path, columns=columns)
    if found == "empty":
        return []
    if found != "pairwise":
        res = read_preferences(path, fmt=found, columns=columns, skip_invalid=skip_invalid)
        return records_to_comparisons(res.records, seed=seed)
    return list(iter_comparisons(path, columns=columns, skip_invalid=skip_invalid))


def iter_comparisons(
    path: PathLike,
    *,
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
) -> Iterator[Comparison]:
    """The comparisons of a ``pairwise`` file (:func:`read_comparisons`' reading of that
    format), one at a time: a streamed ``judge-rl label`` judges the first ones while the rest
    is read. A bad row raises :class:`DataError` when it is reached (``skip_invalid``: it is
    left out)."""
    coll = _Collector(path, skip_invalid)
    tabular = file_kind(path) in ("csv", "tsv")
    label = F.file_label(str(path))
    for line, row in _dict_rows(path, columns, coll):
        if not tabular:
            fast = _plain_pair(row, label, line)
            if fast is not None:
                yield fast
                continue
        ctx = F.Ctx(str(path), line, "pairwise", tabular=tabular)
        try:
            prompt, a, b, p_a, prov = F.pairwise_parts(row, ctx, need_label=False)
            F.check_distinct(a, b)
            pid = F._optional_str(row, "prompt_id") or F.prompt_key(prompt)
            prov.pop("prompt_id", None)
        except F.RowError as e:
            coll.bad(line, e.reason, e.field)
            continue
        ca = Candidate(
            prompt_id=pid,
            prompt=prompt,
            response=response_text(a),
            source=prov.pop("source_a", "") or "",
        )
        cb = Candidate(
            prompt_id=pid,
            prompt=prompt,
            response=response_text(b),
            source=prov.pop("source_b", "") or "",
        )
        meta = dict(prov)
        meta.update(ctx.provenance())
        if p_a is not None:
            meta["human"] = _verdict(p_a)
            meta["human_p_a"] = p_a
        ref = meta.pop("reference", None)
        yield Comparison(
            prompt_id=pid, prompt=prompt, a=ca, b=cb, reference=_ref(ref), metadata=meta
        )


_PLAIN_PAIR_KEYS = frozenset(
    ("prompt", "response_a", "response_b", "prompt_id", "model_a", "model_b")
)
"""Columns of the common unlabelled pair row that :func:`_plain_pair` reads directly."""

_HASH_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
).encode
"""``judge_rl._io.canonical_json`` with the encoder built once (``json.dumps`` with these
arguments builds one per call: a third of the hash's cost)."""


def _hash(obj: Any, n: int = 16) -> str:
    """:func:`judge_rl._io.content_hash`, the same digest (tested), faster: text and lists of
    text are written with the C string encoder ``json.dumps`` itself uses."""
    if type(obj) is str:
        text = _json_text(obj)
    elif type(obj) is list and all(type(x) is str for x in obj):
        text = "[" + ",".join(map(_json_text, obj)) + "]"
    else:
        text = _HASH_JSON(obj)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _hash_text(text: str, n: int = 16) -> str:
    """:func:`_hash` of the value whose JSON (as :func:`_hash` writes it) is ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _plain_pair(row: dict[str, Any], file_label: str, line: int) -> Comparison | None:
    """The comparison of a plain pair row (text ``prompt``, ``response_a``, ``response_b``;
    optional text ``prompt_id``, ``model_a``, ``model_b``; nothing else), or None for any other
    row, which the general path reads (and whose errors it reports).

    What :func:`F.pairwise_parts` and the validating constructors make of such a row, built
    directly: ids are hashed here once (not by each record's ``model_post_init``) and nothing is
    checked twice (issue 19 item 2: reading was ~0.1 ms of CPU per comparison).
    """
    if not row.keys() <= _PLAIN_PAIR_KEYS:
        return None
    prompt, a, b = row.get("prompt"), row.get("response_a"), row.get("response_b")
    if type(prompt) is not str or type(a) is not str or type(b) is not str:
        return None
    if a == b or not prompt.strip():
        return None
    pid = row.get("prompt_id")
    src_a, src_b = row.get("model_a", ""), row.get("model_b", "")
    if type(src_a) is not str or type(src_b) is not str or not (pid is None or type(pid) is str):
        return None
    pid = pid or "q-" + _hash_text(_json_text(prompt), 12)
    # every part is text (checked above): the list's JSON written directly, as _hash would
    ida = "c-" + _hash_text(f"[{_json_text(pid)},{_json_text(src_a)},{_json_text(a)}]")
    idb = "c-" + _hash_text(f"[{_json_text(pid)},{_json_text(src_b)},{_json_text(b)}]")
    # what the validating constructors make of these values (text they keep as it is, ids
    # given), built without running them: half the CPU (tests/data/test_read_fast.py)
    ca = _candidate(ida, pid, prompt, a, src_a)
    cb = _candidate(idb, pid, prompt, b, src_b)
    pair = "p-" + _hash_text(f"[{_json_text(pid)},{_json_text(ida)},{_json_text(idb)}]")
    return unvalidated(
        Comparison,
        {
            "id": pair,
            "prompt_id": pid,
            "prompt": prompt,
            "a": ca,
            "b": cb,
            "reference": None,
            "metadata": {"file": file_label, "line": line, "format": "pairwise"},
        },
        _COMPARISON_FIELDS,
    )


# Candidate and Comparison have no validator that changes a value, and their
# ``model_post_init`` only derives an id that is given here (see :func:`unvalidated`).
_CANDIDATE_FIELDS = frozenset(("id", "prompt_id", "prompt", "response", "source"))
_COMPARISON_FIELDS = frozenset(("id", "prompt_id", "prompt", "a", "b", "reference", "metadata"))


def _candidate(cid: str, pid: str, prompt: str, response: str, source: str) -> Candidate:
    """``Candidate(id=cid, prompt_id=pid, prompt=prompt, response=response, source=source)``
    for text values, without running the validator."""
    return unvalidated(
        Candidate,
        {
            "id": cid,
            "prompt_id": pid,
            "prompt": prompt,
            "response": response,
            "source": source,
            "metadata": {},
        },
        _CANDIDATE_FIELDS,
    )


def _verdict(p_a: float) -> str:
    if abs(p_a - 0.5) < 1e-9:
        return "tie"
    return "a" if p_a > 0.5 else "b"


def _ref(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return str(value[0]) if value else None
    return str(value)


def records_to_comparisons(
    records: Iterable[PreferenceRecord], *, seed: int = 0
) -> list[Comparison]:
    """Turn preference records into comparisons, randomising which side is ``a`` (seeded), so a
    judge never sees the preferred response always first. The record's label is kept as
    ``metadata["human"]`` / ``["human_p_a"]`` (with ``["label_origin"]`` = the record's origin).

    >>> r = PreferenceRecord(prompt="q", chosen="good", rejected="bad")
    >>> c = records_to_comparisons([r], seed=0)[0]
    >>> (c.a.response if c.metadata["human"] == "a" else c.b.response)
    'good'
    """
    rng = random.Random(seed)
    out: list[Comparison] = []
    for rec in records:
        pid = rec.prompt_id or F.prompt_key(rec.prompt)
        prov = rec.provenance
        chosen = Candidate(
            prompt_id=pid,
            prompt=rec.prompt,
            response=response_text(rec.chosen),
            source=str(prov.get("source_chosen", "")),
        )
        rejected = Candidate(
            prompt_id=pid,
            prompt=rec.prompt,
            response=response_text(rec.rejected),
            source=str(prov.get("source_rejected", "")),
        )
        swap = rng.random() < 0.5
        a, b = (rejected, chosen) if swap else (chosen, rejected)
        p_a = 1.0 - rec.p_chosen if swap else rec.p_chosen
        meta: dict[str, Any] = {
            k: v
            for k, v in prov.items()
            if k not in ("source_chosen", "source_rejected", "chosen_side")
        }
        meta.update(human=_verdict(p_a), human_p_a=p_a, label_origin=rec.origin)
        if rec.margin is not None:
            meta["margin"] = rec.margin
        ref = meta.pop("reference", None)
        out.append(
            Comparison(
                prompt_id=pid, prompt=rec.prompt, a=a, b=b, reference=_ref(ref), metadata=meta
            )
        )
    return out


def _trl_row(rec: PreferenceRecord, *, provenance_as_text: bool) -> dict[str, Any]:
    row = rec.to_trl()
    if rec.provenance:
        row["provenance"] = (
            json.dumps(rec.provenance, ensure_ascii=False, sort_keys=True, default=str)
            if provenance_as_text
            else rec.provenance
        )
    return row


def preference_line_encoder() -> Callable[[PreferenceRecord], bytes]:
    """A function giving one record's line of a JSONL preference file (UTF-8, without its
    newline), as :func:`write_preferences` writes it (for its ``lines``): ``judge-rl label``
    encodes each record as its judgment finishes. Raises as :func:`write_preferences` would
    for a record that cannot be written."""
    line = jsonl_line_encoder()

    def one(rec: PreferenceRecord) -> bytes:
        return line(_trl_row(rec, provenance_as_text=False))

    return one


def write_preferences(
    records: Iterable[PreferenceRecord],
    path: PathLike,
    *,
    write: Callable[[Path, bytes], None] | None = None,
    lines: list[bytes] | None = None,
) -> Path:
    """Write records as TRL-ready rows (``prompt``, ``chosen``, ``rejected`` + extra columns:
    ``p_chosen``, ``margin``, ``origin``, ``prompt_id``, ``provenance``), atomically.
    ``write(path, bytes)``: who writes the file's bytes once they are made (default
    :func:`~judge_rl._io.atomic_write_bytes`, now; ``judge-rl label`` hands them to a thread).
    ``lines``: each record's JSONL line, in order, as :func:`preference_line_encoder` made
    it from these very records (``judge-rl label`` makes them while it judges); a JSONL file
    is then those lines joined (the same bytes), other formats ignore them.

    The format follows the extension: ``.jsonl`` (``.gz`` compresses), ``.json`` (an array),
    ``.parquet``, ``.csv`` (message lists and provenance as JSON text). TRL's RewardTrainer and
    DPOTrainer read the JSONL/Parquet output unchanged (``datasets.load_dataset("json"|"parquet")``);
    a ``margin`` column is used by RewardTrainer's loss when present, so when some records have a
    margin, those without one are written with margin 0 (the same loss).

    Raises:
        DataError: for an unsupported extension or rows Parquet cannot hold in one column type
            (text and conversational prompts mixed).
    """
    p = Path(path)
    recs = list(records)
    margined = False
    if any(r.margin is not None for r in recs) and any(r.margin is None for r in recs):
        margined = True  # ``lines`` were made from the records before this
        # TRL's RewardTrainer collates ``margin`` for every row when the column exists (a None
        # fails); margin 0 is exactly the plain Bradley-Terry loss, -log sigmoid(r_c - r_r).
        recs = [r if r.margin is not None else r.model_copy(update={"margin": 0.0}) for r in recs]
    kind = file_kind(p)
    name = p.name.lower()
    if kind == "jsonl" and not (name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz"))):
        raise DataError(
            "unsupported output extension (use .jsonl, .jsonl.gz, .json, .parquet or .csv)",
            file=str(p),
        )
    put = write or atomic_write_bytes
    if kind == "jsonl":
        if lines is not None and not margined and len(lines) == len(recs):
            return write_jsonl_lines(lines, p, write=put)
        return write_jsonl((_trl_row(r, provenance_as_text=False) for r in recs), p, write=put)
    if kind == "json":
        rows = [_trl_row(r, provenance_as_text=False) for r in recs]
        put(p, (json.dumps(rows, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
        return p
    rows = [_trl_row(r, provenance_as_text=True) for r in recs]
    if kind == "parquet":
        _write_parquet(rows, p, put)
        return p
    _write_csv(rows, p, "\t" if kind == "tsv" else ",", put)
    return p


def _write_parquet(
    rows: list[dict[str, Any]], path: Path, write: Callable[[Path, bytes], None]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # from_pylist infers the columns from the first row only: give every row every column.
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    rows = [{c: r.get(c) for c in cols} for r in rows]
    try:
        table = (
            pa.Table.from_pylist(rows)
            if rows
            else pa.table({k: [] for k in ("prompt", "chosen", "rejected")})
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(
            f"cannot write Parquet ({e}); mixed text and conversational rows need .jsonl",
            file=str(path),
        ) from None
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write(path, buf.getvalue())


def _write_csv(
    rows: list[dict[str, Any]], path: Path, delimiter: str, write: Callable[[Path, bytes], None]
) -> None:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    cols = cols or ["prompt", "chosen", "rejected"]
    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else _cell(r.get(c)) for c in cols])
    write(path, out.getvalue().encode("utf-8"))


def _cell(v: Any) -> str:
    if isinstance(v, list | dict):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


# ---------------------------------------------------------------------------------------------
# candidates


def _load_questions(path: PathLike) -> dict[str, dict[str, Any]]:
    return {
        item.prompt_id: {
            "prompt": item.prompt,
            "category": item.category,
            "reference": item.reference,
            "turns": item.metadata.get("turns"),
        }
        for item in read_prompts(path)
    }


def _find_questions(path: Path) -> Path | None:
    """FastChat's layout: ``.../mt_bench/model_answer/<model>.jsonl`` beside ``.../mt_bench/question.jsonl``."""
    for cand in (path.parent / "question.jsonl", path.parent.parent / "question.jsonl"):
        if cand.is_file() and cand.resolve() != path.resolve():
            return cand
    return None


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and f.name.lower().endswith((".jsonl", ".jsonl.gz", ".json"))
    )
    if not files:
        raise DataError("no .jsonl or .json files in this folder", file=str(folder))
    return files


def read_candidates(
    path: PathLike,
    *,
    fmt: str | None = None,
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    questions: PathLike | None = None,
    skipped: list[tuple[int, str]] | None = None,
) -> list[Candidate]:
    """Read candidates: MT-Bench answer files (a file or a folder of them), candidate JSONL
    (as written by :func:`write_candidates` / ``judge-rl generate``), or rated responses.

    MT-Bench answers become one candidate per (question, model): the first turn's response,
    ``source`` = ``model_id``, ``prompt_id`` = the question id, all turns in
    ``metadata["turns"]``. The prompt text comes from ``questions`` (an MT-Bench question file),
    else from a ``question.jsonl`` found beside the file or one folder up (FastChat's layout);
    without one, ``prompt`` is empty and ``metadata["question_id"]`` identifies it.
    With ``skip_invalid``, ``(line, reason)`` of each skipped row is appended to ``skipped``
    when a list is given.

    Raises:
        DataError: naming ``file:line`` and field for a bad row (unless ``skip_invalid``).
    """
    _check_fmt(fmt)
    p = Path(path)
    if p.is_dir():
        files = _folder_files(p)
        out: list[Candidate] = []
        for f in files:
            out.extend(
                read_candidates(
                    f,
                    fmt=fmt,
                    columns=columns,
                    skip_invalid=skip_invalid,
                    questions=questions,
                    skipped=skipped,
                )
            )
        return out
    qmap: dict[str, dict[str, Any]] | None = None
    coll = _Collector(p, skip_invalid)
    tabular = file_kind(p) in ("csv", "tsv")
    found = fmt
    out = []
    for line, row in _dict_rows(p, columns, coll):
        if found is None:
            found = _detect(row, p, line)
        if found not in ("mt-bench-answers", "candidates", "thumbs", "ratings"):
            raise _kind_error(p, line, found, "candidates")
        ctx = F.Ctx(str(p), line, found, tabular=tabular)
        try:
            if found == "mt-bench-answers":
                if qmap is None:
                    qpath = questions or _find_questions(p)
                    qmap = _load_questions(qpath) if qpath else {}
                out.append(_mt_bench_answer(row, ctx, qmap))
            else:
                out.append(_candidate_row(row, ctx))
        except F.RowError as e:
            coll.bad(line, e.reason, e.field)
    if coll.skipped:
        log.info("%s: skipped %d invalid rows", p, len(coll.skipped))
        if skipped is not None:
            skipped.extend(coll.skipped)
    return out


def _mt_bench_answer(
    row: Mapping[str, Any], ctx: F.Ctx, qmap: dict[str, dict[str, Any]]
) -> Candidate:
    qid_raw = F.require(row, "question_id")
    if isinstance(qid_raw, bool) or not isinstance(qid_raw, int | str):
        raise F.RowError(f"expected an id, got {type_name(qid_raw)}", "question_id")
    qid = str(qid_raw)
    model = F.text_field(row, "model_id")
    choices = F.require(row, "choices")
    if not isinstance(choices, list) or not choices:
        raise F.RowError("expected a non-empty list", "choices")
    first = choices[0]
    if not isinstance(first, dict):
        raise F.RowError(f"expected an object, got {type_name(first)}", "choices[0]")
    turns = first.get("turns")
    if not isinstance(turns, list) or not turns:
        raise F.RowError("expected a non-empty list of turns", "choices[0].turns")
    for i, t in enumerate(turns):
        if not isinstance(t, str):
            raise F.RowError(f"expected text, got {type_name(t)}", f"choices[0].turns[{i}]")
    q = qmap.get(qid, {})
    meta: dict[str, Any] = {
        "question_id": qid_raw,
        "turns": turns,
        "file": F.file_label(ctx.file),
        "line": ctx.line,
    }
    for k in ("answer_id", "tstamp"):
        if row.get(k) is not None:
            meta[k] = F._jsonable(row[k])
    if q.get("category"):
        meta["category"] = q["category"]
    if q.get("reference"):
        meta["reference"] = q["reference"]
    if q.get("turns"):
        meta["question_turns"] = q["turns"]
    return Candidate(
        prompt_id=qid, prompt=q.get("prompt", ""), response=turns[0], source=model, metadata=meta
    )


def _candidate_row(row: Mapping[str, Any], ctx: F.Ctx) -> Candidate:
    pkey: str
    prompt: Any
    if row.get("prompt") == "" and F._optional_str(row, "prompt_id"):
        # a candidate known only by its prompt id (MT-Bench answers read without questions)
        pkey, prompt = "prompt", ""
    else:
        pkey, prompt = F._pair_prompt(row, ctx)
    rkey = F._first_key(row, F.RESPONSE_KEYS) or "response"
    response = F.require(row, rkey)
    if isinstance(response, list):
        response = response_text(F.as_messages(response, rkey))
    elif not isinstance(response, str):
        raise F.RowError(f"expected text, got {type_name(response)}", rkey)
    skey = F._first_key(row, F.SOURCE_KEYS)
    source = F._optional_str(row, skey) if skey else ""
    pid = F._optional_str(row, "prompt_id") or F.prompt_key(prompt)
    meta = row.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        if isinstance(meta, str) and ctx.tabular:
            meta = F.json_text(meta, "metadata") if meta else {}
        if not isinstance(meta, dict):
            raise F.RowError(
                f"expected an object, got {type_name(row.get('metadata'))}", "metadata"
            )
    metadata = F._jsonable(dict(meta or {}))
    metadata.update(
        F.extras(row, {pkey, rkey, "prompt_id", "id", "metadata", *(k for k in [skey] if k)})
    )
    cid = F._optional_str(row, "id")
    return Candidate(
        id=cid, prompt_id=pid, prompt=prompt, response=response, source=source, metadata=metadata
    )


def _require_jsonl(path: PathLike) -> None:
    if not Path(path).name.lower().endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        raise DataError(
            "candidates and prompt sets are written as .jsonl or .jsonl.gz", file=str(path)
        )


def write_candidates(cands: Iterable[Candidate], path: PathLike) -> Path:
    """Write candidates as JSONL (one ``Candidate`` per line; ``.gz`` compresses), atomically."""
    _require_jsonl(path)
    return write_jsonl((c.model_dump(mode="json") for c in cands), path)


# ---------------------------------------------------------------------------------------------
# prompts


def builtin_prompt_sets() -> list[str]:
    """Names of the built-in prompt sets (``read_prompts("builtin:<name>")``)."""
    root = resources.files("judge_rl") / "_builtin" / "prompts"
    return sorted(f.name[: -len(".jsonl")] for f in root.iterdir() if f.name.endswith(".jsonl"))


def _resolve_prompts(path_or_name: PathLike) -> Path:
    s = os.fspath(path_or_name)
    if not s.startswith(BUILTIN_PREFIX):
        return Path(s)
    name = s[len(BUILTIN_PREFIX) :]
    f = resources.files("judge_rl") / "_builtin" / "prompts" / f"{name}.jsonl"
    if not f.is_file():
        known = ", ".join(BUILTIN_PREFIX + n for n in builtin_prompt_sets())
        raise DataError(f"unknown built-in prompt set {name!r}; known: {known}", file=s)
    return Path(str(f))


def read_prompts(
    path_or_name: PathLike,
    *,
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    skipped: list[tuple[int, str]] | None = None,
) -> list[PromptItem]:
    """Read a prompt set: JSONL/JSON/CSV/Parquet rows with ``prompt``, ``question``,
    ``instruction`` or ``turns``; or a built-in set by name (``"builtin:gsm8k-demo"``,
    ``"builtin:open-demo"``).

    GSM8K rows (``question``, ``answer`` ending in ``#### N``) get ``reference`` = the final
    answer (commas removed) and the worked solution in ``metadata["solution"]``. MT-Bench
    question rows use the first turn as the prompt (all turns in ``metadata["turns"]``, the
    reference answer when present). Rows without an id get a content hash of the prompt.
    With ``skip_invalid``, ``(line, reason)`` of each skipped row is appended to ``skipped``
    when a list is given.

    Raises:
        DataError: naming ``file:line`` and field for a bad row (unless ``skip_invalid``).
    """
    p = _resolve_prompts(path_or_name)
    coll = _Collector(p, skip_invalid)
    tabular = file_kind(p) in ("csv", "tsv")
    found: str | None = None
    out: list[PromptItem] = []
    for line, row in _dict_rows(p, columns, coll):
        if found is None:
            found = _detect(row, p, line)
            if F.FORMATS[found].kind != "prompts":
                raise _kind_error(p, line, found, "a prompt set")
        ctx = F.Ctx(str(p), line, found, tabular=tabular)
        try:
            out.append(_prompt_row(row, ctx))
        except F.RowError as e:
            coll.bad(line, e.reason, e.field)
    if coll.skipped:
        log.info("%s: skipped %d invalid rows", p, len(coll.skipped))
        if skipped is not None:
            skipped.extend(coll.skipped)
    return out


def _prompt_row(row: Mapping[str, Any], ctx: F.Ctx) -> PromptItem:
    meta_in = row.get("metadata")
    meta: dict[str, Any] = F._jsonable(dict(meta_in)) if isinstance(meta_in, dict) else {}
    reference: str | None = None
    used = {"prompt_id", "id", "question_id", "metadata", "reference", "category", "turns"}
    if "turns" in row and not F._first_key(row, ("prompt", "instruction", "question")):
        turns = F.require(row, "turns")
        if not isinstance(turns, list) or not turns:
            raise F.RowError("expected a non-empty list of turns", "turns")
        for i, t in enumerate(turns):
            F.as_text(t, f"turns[{i}]")
        prompt: Any = turns[0]
        meta["turns"] = turns
    elif ctx.fmt == "gsm8k" or (
        {"question", "answer"} <= set(row) and "####" in str(row.get("answer"))
    ):
        prompt = F.text_field(row, "question")
        solution = F.text_field(row, "answer")
        reference = F.gsm8k_final_answer(solution)
        meta["solution"] = solution
        used |= {"question", "answer"}
    else:
        key, prompt = F._pair_prompt(row, ctx)
        used.add(key)
    ref_key = (
        "reference"
        if "reference" in row
        else ("answer" if "answer" in row and reference is None else None)
    )
    if ref_key and reference is None and row.get(ref_key) not in (None, ""):
        ref = row[ref_key]
        if isinstance(ref, list):
            meta["references"] = F._jsonable(ref)
            ref = ref[0] if ref else None
        if ref is not None and not isinstance(ref, str | int | float):
            raise F.RowError(f"expected text, got {type_name(ref)}", ref_key)
        if isinstance(ref, float) and not math.isfinite(ref):
            raise F.RowError("expected a finite number or text", ref_key)
        reference = None if ref is None else str(ref)
        used.add(ref_key)
    pid = ""
    for k in ("prompt_id", "id", "question_id"):
        if row.get(k) not in (None, ""):
            pid = F._optional_str(row, k)
            break
    cat = row.get("category")
    if cat is not None and not isinstance(cat, str):
        raise F.RowError(f"expected text, got {type_name(cat)}", "category")
    meta.update(F.extras(row, used))
    return PromptItem(
        prompt_id=pid or F.prompt_key(prompt),
        prompt=prompt,
        reference=reference,
        category=cat or None,
        metadata=meta,
    )


def write_prompts(items: Iterable[PromptItem], path: PathLike) -> Path:
    """Write a prompt set as JSONL (``read_prompts`` reads it back), atomically."""
    _require_jsonl(path)
    return write_jsonl((i.model_dump(mode="json", exclude_none=True) for i in items), path)


Reader = Callable[..., Any]
__all__ = [
    "ReadResult",
    "preference_line_encoder",
    "builtin_prompt_sets",
    "detect_format",
    "read_candidates",
    "read_comparisons",
    "read_preferences",
    "read_prompts",
    "records_to_comparisons",
    "write_candidates",
    "write_preferences",
    "write_prompts",
    "jsonl_bytes",
]
