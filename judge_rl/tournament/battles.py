"""One reader for battle and preference files: bytes -> Arrow table -> integer codes.

Every command that rates or counts (``ratings``, ``winrate``, ``tournament``) reads through
:func:`read_table`, which parses in Arrow's C++ readers (no per-row Python on the fast path):

* formats: CSV, JSONL / NDJSON, JSON (a list of rows, an object with a ``battles`` /
  ``annotations`` / ``rows`` list, or a judge_rl run log), Parquet; each may be gzip, bz2 or xz
  compressed (detected from the bytes, not the name);
* bounds: the decompressed size (``JUDGE_RL_MAX_INPUT_BYTES``) and rows
  (``JUDGE_RL_MAX_ROWS``), nesting depth of JSON rows;
* errors: one :class:`~judge_rl.errors.DataError` naming the file and, where a row is at fault,
  its line (CSV lines count the header; JSON list items and Parquet rows are numbered 1-based):
  directories, devices, non-UTF-8 text, malformed JSON, empty files.

:func:`read_battles` then maps a table to codes (:class:`BattleSet`). Accepted layouts:

* ``model_a, model_b, winner``: winner ``a | b | tie`` or Chatbot Arena / FastChat's
  ``model_a | model_b | tie | tie (bothbad)``;
* ``left, right, winner`` with winner ``left | right | tie`` (also ``model_left`` /
  ``model_right``);
* AlpacaEval annotations ``generator_1, generator_2, preference`` (1 = first, 2 = second,
  0 or 1.5 a draw; a soft preference in between becomes two battles weighted ``2 - p`` and
  ``p - 1``, which is what ties-as-half-wins makes of it).

Optional columns: ``weight`` (finite, >= 0), ``prompt_id`` (or ``question_id`` /
``instruction``), ``judge``.
"""

from __future__ import annotations

import bz2
import json
import lzma
import math
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from judge_rl.errors import DataError

if TYPE_CHECKING:  # pydantic is not imported to read battles
    from judge_rl.types import Battle

WINNER_ALIASES: dict[str, int] = {
    "a": 0,
    "model_a": 0,
    "left": 0,
    "b": 1,
    "model_b": 1,
    "right": 1,
    "tie": 2,
    "draw": 2,
    "tie (bothbad)": 2,
    "tie(bothbad)": 2,
    "both_bad": 2,
    "bothbad": 2,
}
WINNER_NAMES = ("a", "b", "tie")
LAYOUTS = (
    ("model_a", "model_b"),
    ("left", "right"),
    ("model_left", "model_right"),
    ("generator_1", "generator_2"),
)
PROMPT_KEYS = ("prompt_id", "question_id", "instruction")
TEXT_COLUMNS = (
    *("model_a", "model_b", "left", "right", "winner", "prompt_id", "question_id", "judge"),
    *("generator_1", "generator_2", "model_left", "model_right", "instruction"),
)
"""Columns read as dictionary-encoded text (few distinct values, many rows)."""
BATTLE_COLUMNS = frozenset(
    {k for lay in LAYOUTS for k in lay}
    | {"winner", "preference", "weight", "judge"}
    | set(PROMPT_KEYS)
)
"""Every column :func:`battles_from_table` reads."""


def parse_winner(value: Any) -> int:
    """Winner code: 0 = a, 1 = b, 2 = tie.

    >>> parse_winner("model_a"), parse_winner("B"), parse_winner("tie (bothbad)")
    (0, 1, 2)
    >>> parse_winner("right")
    1
    >>> parse_winner("c")
    Traceback (most recent call last):
    ...
    ValueError: winner must be one of a, b, tie (or model_a, model_b, tie (bothbad), left, right); got 'c'
    """
    key = str(value).strip().lower() if value is not None else ""
    if key not in WINNER_ALIASES:
        raise ValueError(
            "winner must be one of a, b, tie (or model_a, model_b, tie (bothbad), left, right); "
            f"got {value!r}"
        )
    return WINNER_ALIASES[key]


# ----------------------------------------------------------------------------------------------
# Bytes -> Arrow table
# ----------------------------------------------------------------------------------------------


@dataclass
class Table:
    """A parsed file: the Arrow table and how to name its rows in errors."""

    table: Any  # pyarrow.Table
    path: str
    kind: str
    """csv | jsonl | json | parquet | runlog"""
    first_line: int = 1
    """Line (or item) number of row 0: 2 for CSV (the header is line 1)."""
    line_of: np.ndarray | None = None
    """Explicit line number per row where rows are not consecutive (JSONL with blank lines)."""
    runlog: dict[str, Any] | None = None
    source_columns: list[str] | None = None
    """Every column of the file, where the table holds only the ones asked for."""

    def line(self, row: int) -> int:
        if self.line_of is not None:
            return int(self.line_of[row])
        return self.first_line + int(row)

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def __len__(self) -> int:
        return int(self.table.num_rows)


def _decompress(data: bytes, path: str, cap: int) -> bytes:
    """gzip / zlib, bz2 and xz by magic bytes, never past ``cap`` bytes of output."""
    if data[:2] == b"\x1f\x8b":
        dec: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        what = "gzip"
    elif data[:3] == b"BZh":
        dec, what = bz2.BZ2Decompressor(), "bz2"
    elif data[:6] == b"\xfd7zXZ\x00":
        dec, what = lzma.LZMADecompressor(), "xz"
    elif data[:4] == b"\x28\xb5\x2f\xfd":
        raise DataError("zstd-compressed files are not supported; use gzip, bz2 or xz", file=path)
    else:
        return data
    out = bytearray()
    try:
        if what == "gzip":
            buf = data
            while buf:
                out += dec.decompress(buf, cap + 1 - len(out))
                if len(out) > cap:
                    break
                buf = dec.unconsumed_tail
                if dec.eof and dec.unused_data:  # concatenated gzip members
                    buf = dec.unused_data
                    dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
                if not dec.unconsumed_tail and not buf:
                    break
        else:
            out += dec.decompress(data, cap + 1)
            while len(out) <= cap and not dec.eof and not dec.needs_input:
                out += dec.decompress(b"", cap + 1 - len(out))
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
        raise DataError(f"corrupt {what} data ({e})", file=path) from None
    if len(out) > cap:
        raise DataError(
            f"decompresses to more than {cap:,} bytes (JUDGE_RL_MAX_INPUT_BYTES)", file=path
        )
    return bytes(out)


def _utf8(data: bytes, path: str) -> None:
    """Raise a DataError naming the line of the first byte that is not UTF-8."""
    if data.isascii():  # no copy: most battle files are ASCII
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); re-save as UTF-8",
            file=path,
            line=line,
        ) from None


def _json_rows(data: bytes, path: str) -> tuple[list[Any], list[int]]:
    """Python fallback for JSONL: rows and their line numbers, errors with the line."""
    rows: list[Any] = []
    lines: list[int] = []
    for ln, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            rows.append(json.loads(raw))
        except RecursionError:
            raise DataError("JSON nested too deeply", file=path, line=ln) from None
        except (ValueError, UnicodeDecodeError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            raise DataError(f"not valid JSON ({msg})", file=path, line=ln) from None
        lines.append(ln)
    return rows, lines


def _from_pylist(
    rows: list[Any],
    path: str,
    lines: list[int] | None = None,
    columns: Collection[str] | None = None,
) -> tuple[Any, list[str]]:
    """An Arrow table from Python rows (dicts), naming the first row that is not an object, and
    every key seen. ``columns``: convert only these (a reader that needs a few columns of wide
    rows, e.g. Chatbot Arena's battles with nested metadata, skips converting the rest)."""
    from itertools import repeat

    import pyarrow as pa

    # C-level passes (map, set.union) over the rows; a row-by-row Python loop only to name a
    # bad row or to order the keys of rows that differ.
    if set(map(type, rows)) - {dict}:
        for k, r in enumerate(rows):
            if not isinstance(r, dict):
                raise DataError(
                    f"expected an object per row, got {type(r).__name__}",
                    file=path,
                    line=lines[k] if lines else k + 1,
                )
    keys: dict[str, None] = dict.fromkeys(rows[0]) if rows else {}
    if set().union(*rows) != set(keys):
        for r in rows:
            keys.update(dict.fromkeys(r))
    if columns is not None and not columns & keys.keys():
        columns = None  # none of them: keep every column (the rows still count, errors name them)
    cols: dict[str, Any] = {}
    for key in keys:
        if columns is not None and key not in columns:
            continue
        vals = list(map(dict.get, rows, repeat(key)))
        try:
            cols[key] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # mixed types in one column: keep scalars as text, nested values as JSON text
            cols[key] = pa.array(
                [
                    None
                    if v is None
                    else v
                    if isinstance(v, str)
                    else json.dumps(v)
                    if isinstance(v, dict | list)
                    else str(v)
                    for v in vals
                ],
                type=pa.string(),
            )
    return (pa.table(cols) if cols else pa.table({})), list(keys)


def read_table(path: str | Path, columns: Collection[str] | None = None) -> Table:
    """Parse a battle / annotation file into an Arrow table (see the module docstring).

    ``columns``: the columns the caller uses; others may be left out of the table (JSON and
    Parquet skip converting them; ``Table.source_columns`` still lists every column).

    Raises:
        DataError: naming the file (and line) for anything unreadable, never another exception.
    """
    import pyarrow as pa

    from judge_rl._io import limit, read_bytes_limited

    p = str(path)
    cap = limit("JUDGE_RL_MAX_INPUT_BYTES")
    data: Any = _mapped(p, cap)
    if data is None:
        data = _decompress(read_bytes_limited(p, cap, "JUDGE_RL_MAX_INPUT_BYTES"), p, cap)
    if _first_char(data) == -1:
        raise DataError("no battles in the file (it is empty)", file=p)
    max_rows = limit("JUDGE_RL_MAX_ROWS")
    try:
        t = _parse(data, p, columns)
    except DataError:
        raise
    except RecursionError:
        raise DataError("nested too deeply", file=p) from None
    except (pa.ArrowException, ValueError, TypeError, OverflowError, MemoryError) as e:
        raise DataError(f"cannot read the file ({str(e).splitlines()[0][:200]})", file=p) from None
    if len(t) > max_rows:
        raise DataError(
            f"{len(t):,} rows, over the limit of {max_rows:,} (JUDGE_RL_MAX_ROWS)", file=p
        )
    return t


def _mapped(p: str, cap: int) -> Any:
    """A read-only memory map of a large, uncompressed, regular file (no copy of its bytes);
    ``None`` for anything else (small, compressed, JSON, not a regular file, over the cap),
    which the bounded reader then handles and names."""
    import mmap
    import os
    import stat

    try:
        st = os.stat(p)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or not (1 << 20) < st.st_size <= cap:
        return None
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
                return None
            if head.lstrip()[:1] in (b"[", b"{"):
                return None  # JSON goes through Python's parser: needs the bytes anyway
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None


def _parse(data: Any, p: str, columns: Collection[str] | None = None) -> Table:
    import pyarrow as pa

    if data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        # ParquetFile, not read_table: read_table goes through pyarrow.dataset, which imports
        # pandas (0.35 s). Text columns that name models come back dictionary-encoded, as the
        # CSV reader gives them.
        f = pq.ParquetFile(pa.BufferReader(pa.py_buffer(data)))
        names = set(f.schema_arrow.names)
        keep = [k for k in TEXT_COLUMNS if k in names]
        f = pq.ParquetFile(pa.BufferReader(pa.py_buffer(data)), read_dictionary=keep)
        every = list(f.schema_arrow.names)
        use = None if columns is None else [k for k in every if k in columns]
        return Table(f.read(columns=use, use_threads=False), p, "parquet", source_columns=every)
    if data[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte-order mark (Excel's "CSV UTF-8")
        data = data[3:]
    start = _first_char(data)
    head = data[start : start + 1]
    suffixes = [x.lower() for x in Path(p).suffixes]
    named_json = any(x in (".json", ".jsonl", ".ndjson") for x in suffixes)
    if (head in (b"[", b"{") or named_json) and not isinstance(data, bytes):
        data = bytes(data)  # a memory map: JSON goes through Python's parser
    if head in (b"[", b"{"):
        _utf8(data, p)  # Python's json module decodes: check first, to name the line
    if named_json and head not in (b"[", b"{"):
        first = data[start : start + 40].split(b"\n", 1)[0].decode("utf-8", "replace")
        line = data.count(b"\n", 0, start) + 1
        raise DataError(f"not valid JSON (starts with {first!r})", file=p, line=line)
    if ".parquet" in suffixes:
        raise DataError("not a Parquet file (no PAR1 header)", file=p)
    if head == b"[" or (head == b"{" and not _is_jsonl(data, start)):
        try:
            obj = json.loads(data)
        except RecursionError:
            raise DataError("JSON nested too deeply", file=p) from None
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", file=p, line=e.lineno) from None
        if isinstance(obj, dict):
            if "run" in obj and ("tournament" in obj or "label" in obj):  # a judge_rl run log
                battles = (obj.get("tournament") or {}).get("battles") or []
                tbl, every = _from_pylist(list(battles), p, columns=columns)
                return Table(tbl, p, "runlog", runlog=obj, source_columns=every)
            for key in ("battles", "annotations", "rows"):
                if isinstance(obj.get(key), list):
                    obj = obj[key]
                    break
            else:
                raise DataError(
                    "expected a list of rows, an object with a 'battles' / 'annotations' list, "
                    "or a run log",
                    file=p,
                )
        if not isinstance(obj, list):
            raise DataError("expected a list of rows", file=p)
        tbl, every = _from_pylist(obj, p, columns=columns)
        return Table(tbl, p, "json", source_columns=every)
    if head == b"{":  # JSONL
        import pyarrow.json as pj

        blank = data.find(b"\n\n", start)  # a blank line before the last row shifts lines
        if (blank < 0 or _first_char(data, blank) < 0) and b"\r" not in data:
            try:
                tbl = pj.read_json(
                    pa.BufferReader(data),
                    read_options=pj.ReadOptions(block_size=1 << 26, use_threads=False),
                )
                return Table(tbl, p, "jsonl")
            except (pa.ArrowException, ValueError):
                pass  # mixed types or a bad line: the Python path names the line
        rows, lines = _json_rows(data, p)
        tbl, every = _from_pylist(rows, p, lines, columns)
        return Table(tbl, p, "jsonl", line_of=np.asarray(lines), source_columns=every)
    import pyarrow.csv as pc

    try:
        tbl = pc.read_csv(
            pa.BufferReader(pa.py_buffer(data)),
            # One thread: on a shared machine Arrow's pool costs more CPU than it saves.
            # Blocks of 64 MB: a file up to that size is one chunk (no dictionaries to unify).
            read_options=pc.ReadOptions(block_size=1 << 26, use_threads=False),
            convert_options=pc.ConvertOptions(
                column_types={k: pa.dictionary(pa.int32(), pa.string()) for k in TEXT_COLUMNS},
                strings_can_be_null=True,
                null_values=[""],  # "nan", "NA", "null" stay visible (and are refused)
            ),
        )
    except pa.ArrowInvalid as e:
        _utf8(bytes(data), p)  # Arrow checks UTF-8 too; name the line when that is the fault
        msg = str(e).splitlines()[0][:200]
        raise DataError(f"not a valid CSV file ({msg})", file=p) from None
    return Table(tbl, p, "csv", first_line=2)


def _first_char(data: bytes, pos: int = 0) -> int:
    """Offset of the first non-whitespace byte from ``pos``, -1 when there is none (no copy of
    the data)."""
    import re

    m = re.compile(rb"\S").search(data, pos)
    return -1 if m is None else m.start()


def _is_jsonl(data: bytes, start: int = 0) -> bool:
    """One JSON object per line, rather than one (possibly one-line) container object?

    Decided from the first line where it is a JSON value by itself (more text after it: JSON
    lines), so a large JSONL file is not decoded and parsed whole just to find that out."""
    end = data.find(b"\n", start)
    if end >= 0:
        try:
            json.loads(data[start:end])
        except (ValueError, RecursionError):
            pass  # not a value by itself (a pretty-printed object?): parse the whole text
        else:
            if _first_char(data, end) >= 0:
                return True  # a value, then more values: JSON lines
    try:
        obj = json.loads(data)
    except RecursionError:
        return False
    except ValueError:
        return True  # "Extra data" after the first object: JSON lines
    if not isinstance(obj, dict):
        return False
    if "run" in obj and ("tournament" in obj or "label" in obj):
        return False
    return not any(isinstance(obj.get(k), list) for k in ("battles", "annotations", "rows"))


# ----------------------------------------------------------------------------------------------
# Arrow table -> codes
# ----------------------------------------------------------------------------------------------


@dataclass
class BattleSet:
    """Battles as integer codes over ``models`` (first-seen order)."""

    models: list[str]
    a: np.ndarray  # (N,) int
    b: np.ndarray  # (N,) int
    winner: np.ndarray  # (N,) int: 0 a, 1 b, 2 tie
    weight: np.ndarray | None = None  # (N,) float
    prompt: np.ndarray | None = None  # (N,) int code into prompt_names, -1 none
    prompt_names: list[str] = field(default_factory=list)
    judges: list[str] = field(default_factory=list)
    path: str = ""
    layout: str = "model_a/model_b"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.a)

    @property
    def prompt_ids(self) -> list[str]:
        """Prompt id per battle (``""`` where none); empty list when no battle has one."""
        if self.prompt is None:
            return []
        names = np.asarray([*self.prompt_names, ""], dtype=object)
        return names[self.prompt].tolist()

    @property
    def shared_prompts(self) -> bool:
        return self.prompt is not None and 0 < len(self.prompt_names) < len(self)

    def counts(self) -> Any:
        """Aggregated pair counts (:class:`~judge_rl.tournament.bradley_terry.PairCounts`)."""
        from judge_rl.tournament import bradley_terry as bt

        prompt = self.prompt if self.prompt is not None and np.all(self.prompt >= 0) else None
        return bt.aggregate_codes(self.a, self.b, self.winner, self.models, self.weight, prompt)

    def to_battles(self, limit: int | None = None) -> list[Battle]:
        from judge_rl.types import Battle

        return [Battle(**d) for d in self.battle_dicts(limit)]

    def battle_dicts(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The battles as :class:`~judge_rl.types.Battle` field dicts (no pydantic needed)."""
        n = len(self) if limit is None else min(limit, len(self))
        pids = self.prompt_ids
        models, a, b, w = self.models, self.a[:n].tolist(), self.b[:n].tolist(), self.winner
        weight = self.weight[:n].tolist() if self.weight is not None else [1.0] * n
        return [
            {
                "model_a": models[a[k]],
                "model_b": models[b[k]],
                "winner": WINNER_NAMES[int(w[k])],
                "prompt_id": pids[k] if pids else "",
                "judge": self.judges[k] if self.judges else "",
                "weight": float(weight[k]),
            }
            for k in range(n)
        ]


def _chunks(col: Any) -> list[Any]:
    return list(col.chunks) if hasattr(col, "chunks") else [col]


def _valid(arr: Any) -> np.ndarray:
    """Validity of each slot of a primitive Arrow array, from its bitmap (no pandas).  # (n,)"""
    n = len(arr)
    if arr.null_count == 0:
        return np.ones(n, dtype=bool)
    if arr.null_count == n:
        return np.zeros(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(arr.buffers()[0], np.uint8), bitorder="little")
    return bits[arr.offset : arr.offset + n].astype(bool)


def _values(arr: Any, kind: str) -> np.ndarray:
    """The values of a primitive Arrow array as int64 or float64 (nulls: 0 / NaN).  # (n,)

    Read straight from the data buffer: ``to_numpy`` on an array with nulls imports pandas,
    which alone costs more than parsing a million rows.
    """
    import pyarrow as pa

    typ, dt = (pa.int64(), np.int64) if kind == "i" else (pa.float64(), np.float64)
    if len(arr) == 0:
        return np.zeros(0, dt)
    native = _NATIVE.get(str(arr.type))
    if native is None:  # e.g. decimals: let Arrow convert (imports pyarrow.compute)
        arr, native = arr.cast(typ), dt
    raw = np.frombuffer(arr.buffers()[1], native)[arr.offset : arr.offset + len(arr)]
    out = raw.astype(dt)
    if arr.null_count:
        out[~_valid(arr)] = 0 if kind == "i" else np.nan
    return out


_NATIVE = {
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "float": np.float32,
    "double": np.float64,
}
"""Arrow primitive types whose data buffer numpy reads as is."""


def _as_text(col: Any) -> Any:
    """A column as Arrow strings or dictionary<string> (numbers and nested values as text)."""
    import pyarrow as pa

    typ = col.type
    if pa.types.is_dictionary(typ) and (
        pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)
    ):
        return col
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return col
    if pa.types.is_dictionary(typ):
        col = col.cast(typ.value_type)
        typ = col.type
    if pa.types.is_floating(typ):  # 81.0 -> "81" (JSON readers turn ids into floats)
        try:
            return col.cast(pa.int64()).cast(pa.string())
        except (pa.ArrowException, ValueError):
            pass
    try:
        return col.cast(pa.string())
    except (pa.ArrowException, ValueError, NotImplementedError):
        vals = [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()]
        return pa.chunked_array([pa.array(vals, pa.string())])


def _call(function: str, *args: Any) -> Any:
    """An Arrow compute kernel by name. ``pyarrow.compute`` builds Python wrappers for every
    kernel when imported (~75 ms); its ``call_function`` lives in ``pyarrow._compute``."""
    try:
        from pyarrow._compute import call_function
    except ImportError:  # a pyarrow that moved it: the public module has it too
        from pyarrow.compute import call_function
    return call_function(function, list(args))


def _encode(col: Any) -> tuple[np.ndarray, list[str]]:
    """Dictionary codes of a text column: ``(codes (N,), values)``; null and ``""`` -> -1."""
    import pyarrow as pa

    col = _as_text(col)
    if not pa.types.is_dictionary(col.type):
        col = _call("dictionary_encode", col)
    chunks = _chunks(col)
    if len(chunks) > 1:  # one dictionary for every chunk (Arrow remaps the indices)
        chunks = pa.table({"x": pa.chunked_array(chunks)}).unify_dictionaries().column(0).chunks
    if not chunks:
        return np.zeros(0, np.int64), []
    values = [str(v) for v in chunks[0].dictionary.to_pylist()]
    parts = []
    for c in chunks:
        idx = _values(c.indices, "i")  # int64, a fresh array
        if c.indices.null_count:
            idx[~_valid(c.indices)] = -1
        parts.append(idx)
    idx = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if "" in values:  # an empty string is a missing value
        lut = np.arange(len(values) + 1)
        lut[values.index("")] = -1
        lut[-1] = -1
        idx = lut[idx]
    return idx, values


def _require(t: Table, name: str) -> tuple[np.ndarray, list[str]]:
    """Codes of a text column with no missing value (else the first bad row's line)."""
    if name not in t.columns:
        raise DataError("missing field", file=t.path, line=t.line(0), field=name)
    idx, values = _encode(t.table.column(name))
    if len(idx) and idx.min() < 0:
        row = int(np.argmax(idx < 0))
        raise DataError("missing field", file=t.path, line=t.line(row), field=name)
    return idx, values


def _numbers(t: Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column as float64 and its missing mask (null or empty text).  # (N,), (N,)"""
    import pyarrow as pa

    col = t.table.column(name)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        vals = np.concatenate([_values(c, "f") for c in _chunks(col)] or [np.zeros(0)])
        valid = np.concatenate([_valid(c) for c in _chunks(col)] or [np.zeros(0, bool)])
        return vals, ~valid
    if pa.types.is_null(col.type):
        return np.full(len(t), np.nan), np.ones(len(t), dtype=bool)
    vals = np.full(len(t), np.nan)
    missing = np.zeros(len(t), dtype=bool)
    for k, v in enumerate(_as_text(col).to_pylist()):  # rare: numbers written as text
        if v is None or v == "":
            missing[k] = True
            continue
        try:
            vals[k] = float(v)
        except ValueError:
            raise DataError(
                f"not a number: {v!r}", file=t.path, line=t.line(k), field=name
            ) from None
    return vals, missing


def _winner_codes(t: Table, name: str) -> np.ndarray:
    idx, values = _require(t, name)
    lut = np.empty(len(values), np.int64)
    for k, v in enumerate(values):
        if v == "":
            continue
        try:
            lut[k] = parse_winner(v)
        except ValueError as e:
            row = int(np.argmax(idx == k))
            raise DataError(str(e), file=t.path, line=t.line(row), field=name) from None
    return lut[idx]


def read_battles(path: str | Path) -> BattleSet:
    """Read and validate a battle file (any layout in the module docstring).

    Raises:
        DataError: naming the file and line for a missing field, a model battling itself, a
            winner outside the accepted spellings, a bad weight, an empty file, or a file that
            names one model only.
    """
    t = read_table(path, columns=BATTLE_COLUMNS)
    return battles_from_table(t)


def battles_from_table(t: Table) -> BattleSet:
    """Integer codes from a parsed table; vectorised over rows."""
    if len(t) == 0:
        raise DataError("no battles in the file (it is empty)", file=t.path)
    cols = set(t.columns)
    layout = next((lay for lay in LAYOUTS if lay[0] in cols or lay[1] in cols), None)
    if layout is None:
        every = sorted(t.source_columns if t.source_columns is not None else cols)
        raise DataError(
            "missing field (expected model_a/model_b/winner, left/right/winner or AlpacaEval's "
            f"generator_1/generator_2/preference; columns: {', '.join(every[:12])})",
            file=t.path,
            line=t.line(0),
            field="model_a",
        )
    a, vals_a = _require(t, layout[0])
    b, vals_b = _require(t, layout[1])
    # One model list: model_a's values, then model_b's not seen there.
    names = {v: k for k, v in enumerate(vals_a)}
    for v in vals_b:
        names.setdefault(v, len(names))
    models = list(names)
    remap_b = [names[v] for v in vals_b]
    if remap_b != list(range(len(remap_b))):  # model_b's dictionary in another order
        b = np.asarray(remap_b, np.int64)[b]
    n = len(t)
    same = a == b
    if same.any():
        k = int(np.argmax(same))
        raise DataError(
            f"a model cannot battle itself ({models[a[k]]})", file=t.path, line=t.line(k)
        )
    notes: list[str] = []
    weight = None
    if "weight" in cols:
        weight, missing = _numbers(t, "weight")
        weight = np.where(missing, 1.0, weight)  # an empty cell is weight 1; "nan" is refused
        bad = ~np.isfinite(weight) | (weight < 0)
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(
                f"must be a finite number >= 0 (got {weight[k]})",
                file=t.path,
                line=t.line(k),
                field="weight",
            )
    prompt = None
    prompt_names: list[str] = []
    pkey = next((k for k in PROMPT_KEYS if k in cols), None)
    if pkey is not None:
        pidx, pvals = _encode(t.table.column(pkey))
        if pvals and (pidx >= 0).any():
            prompt, prompt_names = pidx, pvals
    judges: list[str] = []
    if "judge" in cols and n <= 100_000:
        jidx, jvals = _encode(t.table.column("judge"))
        judges = [(jvals[k] if k >= 0 else "") for k in jidx.tolist()]
    if layout[0] == "generator_1":
        if "preference" not in cols:
            raise DataError("missing field", file=t.path, line=t.line(0), field="preference")
        pref, _ = _numbers(t, "preference")
        ok = np.isfinite(pref)
        bad = ok & ~((pref == 0) | ((pref >= 1) & (pref <= 2)))
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(
                f"preference {pref[k]:g} out of range (expected 1..2, or 0 for a draw)",
                file=t.path,
                line=t.line(k),
                field="preference",
            )
        if not ok.all():
            notes.append(f"skipped {int((~ok).sum())} rows without a preference")
            a, b, pref = a[ok], b[ok], pref[ok]
            weight = None if weight is None else weight[ok]
            prompt = None if prompt is None else prompt[ok]
            judges = [j for j, k in zip(judges, ok, strict=False) if k] if judges else []
        pref = np.where(pref == 0, 1.5, pref)
        winner = np.where(pref == 1, 0, np.where(pref == 2, 1, 2))
        soft = (pref != 1) & (pref != 2) & (pref != 1.5)
        if soft.any():  # soft p: a win of generator_1 weighted 2 - p, of generator_2 p - 1
            base = np.ones(len(a)) if weight is None else weight
            winner = np.where(soft, 0, winner)
            weight = np.concatenate(
                [np.where(soft, (2 - pref) * base, base), (pref - 1)[soft] * base[soft]]
            )
            a, b = np.concatenate([a, a[soft]]), np.concatenate([b, b[soft]])
            winner = np.concatenate([winner, np.ones(int(soft.sum()), np.int64)])
            prompt = None if prompt is None else np.concatenate([prompt, prompt[soft]])
            judges = []
    else:
        if "winner" not in cols:
            raise DataError("missing field", file=t.path, line=t.line(0), field="winner")
        winner = _winner_codes(t, "winner")
    if len(a) == 0:
        raise DataError("no battles in the file (every row lacks a verdict)", file=t.path)
    seen = (np.bincount(a, minlength=len(models)) + np.bincount(b, minlength=len(models))) > 0
    used = np.flatnonzero(seen)
    if len(used) < 2:
        raise DataError(
            f"the battles name one model only ({models[int(used[0])]}); need two or more",
            file=t.path,
        )
    if len(used) < len(models):  # drop models only seen in skipped rows; keep first-seen order
        remap = np.full(len(models), -1)
        remap[used] = np.arange(len(used))
        a, b = remap[a], remap[b]
        models = [models[int(k)] for k in used]
    if weight is not None and np.all(weight == 1.0):
        weight = None
    return BattleSet(
        models=[str(m) for m in models],
        a=np.asarray(a, np.int64),
        b=np.asarray(b, np.int64),
        winner=np.asarray(winner, np.int64),
        weight=weight,
        prompt=prompt,
        prompt_names=prompt_names,
        judges=judges if any(judges) else [],
        path=t.path,
        layout="/".join(layout),
        notes=notes,
    )


def from_battles(battles: list[Battle]) -> BattleSet:
    """Integer-code :class:`Battle` records (e.g. from a tournament run)."""
    names: dict[str, int] = {}
    for bt in battles:
        for m in (bt.model_a, bt.model_b):
            names.setdefault(m, len(names))
    codes = {"a": 0, "b": 1, "tie": 2}
    pnames: dict[str, int] = {}
    pr = [pnames.setdefault(x.prompt_id, len(pnames)) if x.prompt_id else -1 for x in battles]
    return BattleSet(
        models=sorted(names, key=names.__getitem__),
        a=np.asarray([names[x.model_a] for x in battles], dtype=np.int64),
        b=np.asarray([names[x.model_b] for x in battles], dtype=np.int64),
        winner=np.asarray([codes[x.winner] for x in battles], dtype=np.int64),
        weight=np.asarray([x.weight for x in battles])
        if any(x.weight != 1.0 for x in battles)
        else None,
        prompt=np.asarray(pr, np.int64) if pnames else None,
        prompt_names=sorted(pnames, key=pnames.__getitem__),
        judges=[x.judge for x in battles],
    )


def finite_or_none(x: Any) -> Any:
    """``None`` for NaN / inf floats (JSON has no NaN), recursively through lists and dicts."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_or_none(v) for v in x]
    if isinstance(x, np.floating):
        return finite_or_none(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x


__all__ = [
    "BattleSet",
    "Table",
    "battles_from_table",
    "finite_or_none",
    "from_battles",
    "parse_winner",
    "read_battles",
    "read_table",
]
