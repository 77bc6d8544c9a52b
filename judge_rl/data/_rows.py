"""Raw rows from JSONL (also ``.gz``), JSON arrays, CSV and Parquet, each with its line number.

Readers here never interpret fields: they yield :class:`RawRow` objects whose ``value`` is the
parsed row (usually a dict) or whose ``error`` says why the line could not be parsed (malformed
JSON, non-UTF-8 bytes). The format layer (:mod:`judge_rl.data._formats`) decides what a row means.

Line numbers are 1-based. For JSONL they are physical lines; for a JSON array, the line on which
the element starts; for CSV, the physical line on which the record starts (the header is
line 1); for Parquet, the row index + 1.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from judge_rl._io import atomic_write_bytes
from judge_rl.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".pq")


@dataclass
class RawRow:
    """One input row: ``value`` when it parsed, else ``error`` (the reason)."""

    line: int
    value: Any = None
    error: str | None = None


def file_kind(path: str | os.PathLike[str]) -> str:
    """The container kind from the file name: jsonl, json, csv, tsv or parquet.

    >>> file_kind("x/prefs.jsonl.gz"), file_kind("a.JSON"), file_kind("b.parquet"), file_kind("c")
    ('jsonl', 'json', 'parquet', 'jsonl')
    """
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, kind in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "json"),
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if name.endswith(suffix):
            return kind
    return "jsonl"


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a file", file=str(path)) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from None
    if path.name.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"not a valid gzip file ({e})", file=str(path)) from None
    return data


def _decode_line(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"non-UTF-8 bytes at byte {e.start + 1} of the line"


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text, parse_constant=_reject_constant), None
    except (json.JSONDecodeError, ValueError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        col = f" (column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        return None, f"malformed JSON: {msg}{col}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; Python accepts them by default. Treat as missing values.
    return math.nan if name == "NaN" else None


def _iter_jsonl(data: bytes) -> Iterator[RawRow]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        text, err = _decode_line(raw.rstrip(b"\r"))
        if err is not None:
            yield RawRow(i, error=err)
            continue
        assert text is not None
        value, err = _parse_json(text)
        yield RawRow(i, value=value, error=err)


def _iter_json_array(data: bytes, path: Path) -> Iterator[RawRow]:
    """Elements of a top-level JSON array (or of ``{"data": [...]}``), each with its start line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError("non-UTF-8 bytes", file=str(path), line=line) from None
    stripped = text.lstrip()
    if not stripped:
        return
    if not stripped.startswith("["):
        # A JSON object holding the rows, or JSONL saved with a .json name.
        value, err = _parse_json(text)
        if err is None and isinstance(value, dict):
            for key in ("data", "rows", "records", "examples", "instances"):
                if isinstance(value.get(key), list):
                    for j, item in enumerate(value[key]):
                        yield RawRow(j + 1, value=item)
                    return
            yield RawRow(1, value=value)
            return
        yield from _iter_jsonl(data)
        return
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    pos = len(text) - len(stripped) + 1
    line = text.count("\n", 0, pos) + 1
    last = pos
    n = len(text)

    def skip_ws(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    def where(p: int) -> int:
        nonlocal line, last
        line += text.count("\n", last, p)
        last = p
        return line

    pos = skip_ws(pos)
    if pos < n and text[pos] == "]":
        return
    while True:
        pos = skip_ws(pos)
        start_line = where(pos)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(
                f"malformed JSON: {e.msg}", file=str(path), line=text.count("\n", 0, e.pos) + 1
            ) from None
        except RecursionError:
            raise DataError(
                "malformed JSON: nested too deeply", file=str(path), line=start_line
            ) from None
        yield RawRow(start_line, value=value)
        pos = skip_ws(end)
        if pos < n and text[pos] == ",":
            pos += 1
            continue
        if pos < n and text[pos] == "]":
            rest = text[pos + 1 :].strip()
            if rest:
                raise DataError(
                    "extra data after the JSON array", file=str(path), line=where(pos + 1)
                )
            return
        raise DataError(
            "malformed JSON array: expected ',' or ']'", file=str(path), line=where(min(pos, n))
        )


def _iter_csv(data: bytes, delimiter: str) -> Iterator[RawRow]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # surrogateescape keeps undecodable bytes visible so the row holding them can be reported.
    text = data.decode("utf-8", errors="surrogateescape")
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield RawRow(reader.line_num or 1, error=f"malformed CSV: {e}")
        return
    header = [h.strip() for h in header]
    if any(_has_surrogate(h) for h in header):
        yield RawRow(1, error="non-UTF-8 bytes in the header")
        return
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield RawRow(reader.line_num, error=f"malformed CSV: {e}")
            return
        if not cells or all(not c.strip() for c in cells):
            continue
        line = start
        if any(_has_surrogate(c) for c in cells):
            yield RawRow(line, error="non-UTF-8 bytes")
            continue
        if len(cells) != len(header):
            yield RawRow(line, error=f"expected {len(header)} columns, found {len(cells)}")
            continue
        yield RawRow(line, value=dict(zip(header, cells, strict=True)))


def _has_surrogate(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        raise DataError(
            "reading Parquet needs pyarrow: pip install pyarrow", file=str(path)
        ) from None
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise DataError("no such file", file=str(path)) from None
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for non-Parquet bytes
        raise DataError(f"not a readable Parquet file ({e})", file=str(path)) from None
    i = 0
    try:
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                i += 1
                yield RawRow(i, value=row)
    except Exception as e:
        raise DataError(f"corrupt Parquet data ({e})", file=str(path), line=i + 1) from None


def iter_raw_rows(path: str | os.PathLike[str]) -> Iterator[RawRow]:
    """Every row of a file, parsed or with the reason it could not be parsed.

    Raises:
        DataError: when the file itself cannot be read (missing, not gzip, not Parquet, a JSON
            array with a syntax error: nothing after it can be located).
    """
    p = Path(path)
    kind = file_kind(p)
    if kind == "parquet":
        yield from _iter_parquet(p)
        return
    data = _read_bytes(p)
    if kind == "json":
        yield from _iter_json_array(data, p)
    elif kind in ("csv", "tsv"):
        yield from _iter_csv(data, "\t" if kind == "tsv" else ",")
    else:
        yield from _iter_jsonl(data)


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file (``.gz`` too), one per non-blank line.

    Raises:
        DataError: naming ``file:line`` for a malformed line, non-UTF-8 bytes, or a value that
            is not a JSON object.
    """
    p = Path(path)
    for row in _iter_jsonl(_read_bytes(p)):
        if row.error is not None:
            raise DataError(row.error, file=str(p), line=row.line)
        if not isinstance(row.value, dict):
            raise DataError(
                f"expected a JSON object, got {type_name(row.value)}", file=str(p), line=row.line
            )
        yield row.value


def type_name(value: Any) -> str:
    """A JSON-ish name for a Python value's type, for error messages.

    >>> type_name([1]), type_name(None), type_name(2.5), type_name("x")
    ('a list', 'null', 'a number', 'text')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _jsonable(row: Any) -> Any:
    if hasattr(row, "model_dump"):
        return row.model_dump(mode="json")
    return row


def jsonl_bytes(rows: Iterable[Any]) -> bytes:
    """Serialise rows (dicts or pydantic models) as JSONL bytes, UTF-8, one object per line."""
    out = io.StringIO()
    for row in rows:
        out.write(json.dumps(_jsonable(row), ensure_ascii=False, allow_nan=False))
        out.write("\n")
    return out.getvalue().encode("utf-8")


def write_jsonl(rows: Iterable[Any], path: str | os.PathLike[str]) -> Path:
    """Write rows (dicts or pydantic models) as JSONL, atomically (``.gz`` compresses).

    Returns:
        The path written.
    """
    p = Path(path)
    data = jsonl_bytes(rows)
    if p.name.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(p, data)
    return p
