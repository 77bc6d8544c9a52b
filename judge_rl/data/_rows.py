"""Raw rows from JSONL (also ``.gz``), JSON arrays, CSV and Parquet, each with its line number.

Readers here never interpret fields: they yield :class:`RawRow` objects whose ``value`` is the
parsed row (usually a dict) or whose ``error`` says why the line could not be parsed (malformed
JSON, non-UTF-8 bytes). The format layer (:mod:`judge_rl.data._formats`) decides what a row means.

Inputs are bounded and checked before they are parsed: only regular files are read (a FIFO or
a device such as ``/dev/zero`` is refused instead of blocking or filling memory), compression is
recognised by its magic bytes (gzip, bzip2, xz; zstd when the ``zstandard`` package is
installed) whatever the file is called, Parquet by its ``PAR1`` magic, UTF-16/UTF-32 by their
byte-order marks. Caps (``judge_rl._io.LIMITS``): the decompressed size
(``JUDGE_RL_MAX_INPUT_BYTES``), rows per file (``JUDGE_RL_MAX_ROWS``) and nesting per row
(``JUDGE_RL_MAX_JSON_DEPTH``). ``NaN``/``Infinity`` parse as non-finite numbers, which every
numeric field refuses; a lone surrogate (``"\\ud800"``) makes the row invalid.

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
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from judge_rl._io import atomic_write_bytes, limit, read_bytes_limited
from judge_rl.errors import DataError

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)

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
    for comp in COMPRESSION_SUFFIXES:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
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
    """The file's bytes, decompressed (by magic bytes) and transcoded to UTF-8 when it carries a
    UTF-16/32 byte-order mark; bounded by ``JUDGE_RL_MAX_INPUT_BYTES`` before and after
    decompression."""
    max_bytes = limit("JUDGE_RL_MAX_INPUT_BYTES")
    data = read_bytes_limited(path, max_bytes, "JUDGE_RL_MAX_INPUT_BYTES")
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            data = _decompress(data, kind, path, max_bytes)
            break
    return _transcode(data, path)


def _decompress(data: bytes, kind: str, path: Path, max_bytes: int) -> bytes:
    """Stream-decompress, stopping one byte past the cap (a zip bomb never fills memory)."""
    import bz2
    import lzma
    import zlib

    stream: Any
    if kind == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            raise DataError(
                "zstd-compressed; decompress it first (zstd -d FILE) or pip install zstandard",
                file=str(path),
            ) from None
        stream = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    elif kind == "gzip":
        stream = gzip.GzipFile(fileobj=io.BytesIO(data))  # noqa: SIM115 - closed below
    elif kind == "bzip2":
        stream = bz2.BZ2File(io.BytesIO(data))  # noqa: SIM115 - closed below
    else:
        stream = lzma.LZMAFile(io.BytesIO(data))  # noqa: SIM115 - closed below
    chunks: list[bytes] = []
    total = 0
    try:
        with stream:
            while True:
                chunk = stream.read(min(1 << 22, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise DataError(
                        f"decompresses to more than {max_bytes:,} bytes (JUDGE_RL_MAX_INPUT_BYTES)",
                        file=str(path),
                    )
    except DataError:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as e:
        raise DataError(f"not a valid {kind} file ({e})", file=str(path)) from None
    except Exception as e:  # zstandard.ZstdError and friends
        raise DataError(f"not a valid {kind} file ({e})", file=str(path)) from None
    return b"".join(chunks)


_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _transcode(data: bytes, path: Path) -> bytes:
    """UTF-16/32 with a byte-order mark (Excel's "Unicode text") -> UTF-8; else unchanged."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(enc)
            except UnicodeDecodeError as e:
                raise DataError(
                    f"starts with a {enc.upper()} byte-order mark but is not valid {enc.upper()} "
                    f"(byte {e.start + len(bom) + 1})",
                    file=str(path),
                ) from None
            return text.encode("utf-8", "surrogateescape")
    return data


def _decode_line(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"non-UTF-8 bytes at byte {e.start + 1} of the line"


def _parse_json(text: str) -> tuple[Any, str | None]:
    try:
        if text.startswith("\ufeff"):  # json.loads's own message for a byte-order mark
            return json.loads(text, parse_constant=_reject_constant), None
        return _DECODER(text), None
    except (json.JSONDecodeError, ValueError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        col = f" (column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        return None, f"malformed JSON: {msg}{col}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; Python accepts them by default. Keep them non-finite so every
    # numeric field refuses them (turning Infinity into "missing" made p_chosen a hard label).
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(name, math.nan)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant).decode
"""What ``json.loads(text, parse_constant=_reject_constant)`` does, with the decoder built once
(``json.loads`` with an argument builds one per row)."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_value(value: Any, text: str | None = None, max_depth: int | None = None) -> str | None:
    """Why a parsed row cannot be used (nested deeper than ``JUDGE_RL_MAX_JSON_DEPTH``, a lone
    surrogate in a string), or None. ``text`` (the row's JSON) lets the surrogate walk be skipped
    when no ``\\uD8xx`` escape occurs.

    >>> check_value({"a": [[[1]]]}, max_depth=3)
    'nested deeper than 3 levels (JUDGE_RL_MAX_JSON_DEPTH)'
    >>> check_value({"a": "\\ud800"})
    'a lone surrogate in a string (not valid Unicode)'
    """
    if not isinstance(value, dict | list):
        if isinstance(value, str) and _has_lone_surrogate(value):
            return "a lone surrogate in a string (not valid Unicode)"
        return None
    max_depth = max_depth or limit("JUDGE_RL_MAX_JSON_DEPTH")
    strings = text is None or _SURROGATE_ESCAPE.search(text) is not None
    if text is not None and not strings and text.count("[") + text.count("{") <= max_depth:
        return None  # C-speed counts: cannot nest deeper than it has brackets
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > max_depth:
            return f"nested deeper than {max_depth} levels (JUDGE_RL_MAX_JSON_DEPTH)"
        items: Iterable[Any]
        if isinstance(v, dict):
            if strings and any(isinstance(k, str) and _has_lone_surrogate(k) for k in v):
                return "a lone surrogate in a string (not valid Unicode)"
            items = v.values()
        else:
            items = v
        for x in items:
            if isinstance(x, dict | list):
                stack.append((x, d + 1))
            elif strings and isinstance(x, str) and _has_lone_surrogate(x):
                return "a lone surrogate in a string (not valid Unicode)"
    return None


def _iter_jsonl(data: bytes) -> Iterator[RawRow]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    depth = limit("JUDGE_RL_MAX_JSON_DEPTH")
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        text, err = _decode_line(raw.rstrip(b"\r"))
        if err is not None:
            yield RawRow(i, error=err)
            continue
        assert text is not None
        value, err = _parse_json(text)
        if err is None:
            err = check_value(value, text, depth)
            if err is not None:
                value = None
        yield RawRow(i, value=value, error=err)


def _iter_json_array(data: bytes, path: Path) -> Iterator[RawRow]:
    """Elements of a top-level JSON array (or of ``{"data": [...]}``), each with its start line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    depth = limit("JUDGE_RL_MAX_JSON_DEPTH")
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
                        bad = check_value(item, None, depth)
                        yield RawRow(j + 1, error=bad) if bad else RawRow(j + 1, value=item)
                    return
            bad = check_value(value, None, depth)
            yield RawRow(1, error=bad) if bad else RawRow(1, value=value)
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
        bad = check_value(value, text[pos:end], depth)
        yield RawRow(start_line, error=bad) if bad else RawRow(start_line, value=value)
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


def _iter_parquet(path: Path, data: bytes | None = None) -> Iterator[RawRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        raise DataError(
            "reading Parquet needs pyarrow: pip install pyarrow", file=str(path)
        ) from None
    if data is None:
        data = _read_bytes(path)
    if not data.startswith(b"PAR1"):
        raise DataError("not a Parquet file (no PAR1 magic bytes)", file=str(path))
    try:
        pf = pq.ParquetFile(io.BytesIO(data))
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for non-Parquet bytes
        raise DataError(f"not a readable Parquet file ({_short(e)})", file=str(path)) from None
    i = 0
    try:
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                i += 1
                yield RawRow(i, value=row)  # Arrow strings are UTF-8; nesting is the schema's
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"corrupt Parquet data ({_short(e)})", file=str(path), line=i + 1) from None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else type(e).__name__
    return first if len(first) <= 200 else first[:200] + "..."


def iter_raw_rows(path: str | os.PathLike[str]) -> Iterator[RawRow]:
    """Every row of a file, parsed or with the reason it could not be parsed.

    Raises:
        DataError: when the file itself cannot be read (missing, a folder or special file, over a
            cap, not gzip, not Parquet, a JSON array with a syntax error: nothing after it can be
            located), or past ``JUDGE_RL_MAX_ROWS`` rows.
    """
    p = Path(path)
    max_rows = limit("JUDGE_RL_MAX_ROWS")
    for n, row in enumerate(_iter_rows(p), start=1):
        if n > max_rows:
            raise DataError(
                f"more than {max_rows:,} rows (JUDGE_RL_MAX_ROWS); split the file or raise the cap",
                file=str(p),
                line=row.line,
            )
        yield row


def _iter_rows(p: Path) -> Iterator[RawRow]:
    kind = file_kind(p)
    data = _read_bytes(p)
    if kind == "parquet" or data.startswith(b"PAR1"):
        yield from _iter_parquet(p, data)
    elif kind == "json":
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
    max_rows = limit("JUDGE_RL_MAX_ROWS")
    for row in _iter_jsonl(_read_bytes(p)):
        if row.line > max_rows:
            raise DataError(f"more than {max_rows:,} rows (JUDGE_RL_MAX_ROWS)", file=str(p))
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


_JSONL_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_JSONL_ROW = _JSONL_ENCODER.encode
"""``json.dumps(row, ensure_ascii=False, allow_nan=False)``, the encoder built once (``dumps``
with arguments builds one per row)."""


def _row_encoder() -> Callable[[Any], str]:
    """:data:`_JSONL_ROW` for the rows of one file: the C encoder it builds for each row (with
    its table of containers being written, against cycles) built once for them all, ~1.5 us a
    row. The same text (the same C encoder, the same settings); a string row takes
    ``JSONEncoder.encode``'s own path."""
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return _JSONL_ROW
    enc = _JSONL_ENCODER
    c_encode = c_make_encoder(
        {},  # markers: emptied again as each container is done (a row that fails ends the file)
        enc.default,
        encode_basestring,
        enc.indent,
        enc.key_separator,
        enc.item_separator,
        enc.sort_keys,
        enc.skipkeys,
        enc.allow_nan,
    )

    def one(row: Any) -> str:
        if isinstance(row, str):
            return _JSONL_ROW(row)
        return "".join(c_encode(row, 0))

    return one


def jsonl_bytes(rows: Iterable[Any]) -> bytes:
    """Serialise rows (dicts or pydantic models) as JSONL bytes, UTF-8, one object per line."""
    encode = _row_encoder()
    lines = [encode(_jsonable(row)) for row in rows]
    if not lines:
        return b""
    lines.append("")  # a newline after the last row too
    return "\n".join(lines).encode("utf-8")


def jsonl_line_encoder() -> Callable[[Any], bytes]:
    """A function giving one row's line (UTF-8, without its newline) as :func:`jsonl_bytes`
    writes it: :func:`jsonl_join` of the lines of a file's rows is :func:`jsonl_bytes` of the
    rows, byte for byte (``judge-rl label`` encodes each record as its judgment finishes). A
    row that cannot be written raises as :func:`jsonl_bytes` would (the same error; the
    encoder stays usable)."""
    state = [_row_encoder()]

    def line(row: Any) -> bytes:
        try:
            return state[0](_jsonable(row)).encode("utf-8")
        except BaseException:
            state[0] = _row_encoder()  # its table of containers may hold the failed row's
            raise

    return line


def jsonl_join(lines: list[bytes]) -> bytes:
    """A JSONL file's bytes from its rows' lines (:func:`jsonl_line_encoder`): one newline
    after each; no bytes for no rows."""
    if not lines:
        return b""
    lines.append(b"")
    try:
        return b"\n".join(lines)
    finally:
        lines.pop()


def write_jsonl(
    rows: Iterable[Any],
    path: str | os.PathLike[str],
    *,
    write: Callable[[Path, bytes], None] | None = None,
) -> Path:
    """Write rows (dicts or pydantic models) as JSONL, atomically (``.gz`` compresses).

    ``write(path, bytes)``: who writes the file's bytes (default
    :func:`~judge_rl._io.atomic_write_bytes`, now).

    Returns:
        The path written.
    """
    return _write_jsonl_bytes(jsonl_bytes(rows), path, write)


def write_jsonl_lines(
    lines: list[bytes],
    path: str | os.PathLike[str],
    *,
    write: Callable[[Path, bytes], None] | None = None,
) -> Path:
    """:func:`write_jsonl` of rows already encoded, one line each
    (:func:`jsonl_line_encoder`): the same bytes."""
    return _write_jsonl_bytes(jsonl_join(lines), path, write)


def _write_jsonl_bytes(
    data: bytes, path: str | os.PathLike[str], write: Callable[[Path, bytes], None] | None
) -> Path:
    p = Path(path)
    if p.name.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    (write or atomic_write_bytes)(p, data)
    return p
