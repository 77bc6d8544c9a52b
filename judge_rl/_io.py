"""Atomic writes, stable content hashes, and the guards every command shares.

- :func:`check_output_file` / :func:`check_output_dir`: validate an output path *before* the
  work starts (a directory where a file is wanted, a file where a folder is wanted, a parent
  that is a file, an unwritable folder), so no finished work is lost at the end.
- :func:`safe_run_dir` / :func:`check_run_name`: run folders stay inside ``reports/``.
- :func:`safe_yaml_load`: YAML with bounded size, depth and alias expansion (no billion laughs).
- :func:`limit`: the resource caps (``JUDGE_RL_MAX_*`` environment settings, ``docs/errors.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

LIMITS: dict[str, tuple[int, str]] = {
    "JUDGE_RL_MAX_INPUT_BYTES": (
        1 << 30,
        "largest input file, after decompression (bytes; K/M/G suffixes allowed)",
    ),
    "JUDGE_RL_MAX_ROWS": (5_000_000, "most rows read from one input file"),
    "JUDGE_RL_MAX_PAIRS_PER_ROW": (
        10_000,
        "most preference pairs expanded from one ranked row or one prompt's thumbs/ratings",
    ),
    "JUDGE_RL_MAX_JSON_DEPTH": (64, "deepest nesting of lists/objects in one input row"),
    "JUDGE_RL_MAX_SPEC_BYTES": (4 << 20, "largest YAML spec file (bytes)"),
    "JUDGE_RL_MAX_YAML_NODES": (
        100_000,
        "most YAML nodes in a spec after expanding aliases (stops billion-laughs specs)",
    ),
}
"""Resource caps: ``name -> (default, what it bounds)``. Each can be set in the environment."""

_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def limit(name: str) -> int:
    """The value of the cap ``name`` (a key of :data:`LIMITS`): ``$name`` when set, else the
    default. ``K``/``M``/``G`` suffixes multiply by 1024, 1024**2, 1024**3.

    >>> limit("JUDGE_RL_MAX_ROWS") == LIMITS["JUDGE_RL_MAX_ROWS"][0] or "set in the environment"
    True

    Raises:
        ConfigError: naming the variable when its value is not a positive whole number.
    """
    from judge_rl.errors import ConfigError

    default = LIMITS[name][0]
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    mult = _SUFFIX.get(raw[-1].lower(), 1)
    digits = raw[:-1] if mult > 1 else raw
    try:
        value = int(digits.replace("_", "")) * mult
    except ValueError:
        raise ConfigError(f"expected a positive whole number, got {raw!r}", setting=name) from None
    if value <= 0:
        raise ConfigError(f"expected a positive whole number, got {raw!r}", setting=name)
    return value


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
).encode
"""``json.dumps`` with these arguments builds an encoder per call (~40% of a content hash)."""


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every content hash."""
    return _CANONICAL(obj)


def content_hash(obj: Any, n: int = 16) -> str:
    """Stable short hex digest of a JSON-able object.

    >>> content_hash({"b": 1, "a": 2}) == content_hash({"a": 2, "b": 1})
    True
    """
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:n]


# ---------------------------------------------------------------------------------------------
# output paths, checked before the work starts


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_file(path: str | os.PathLike[str], setting: str) -> Path:
    """Check that ``path`` can be written as a file, before any work is done.

    Refused (a :class:`~judge_rl.errors.ConfigError` naming ``setting`` and the path): an
    existing directory, a parent that is a file, a special file (a device, a FIFO), or a folder
    that cannot be written. Nothing is created.
    """
    from judge_rl.errors import ConfigError

    p = Path(path)
    where = f"{os.fspath(path)!s}"
    if not where:
        raise ConfigError("empty path", setting=setting)
    try:
        if p.is_dir():
            raise ConfigError(f"{where} is a directory; expected a file path", setting=setting)
        if p.exists() and not p.is_file():
            raise ConfigError(f"{where} is not a regular file", setting=setting)
        base = _nearest_existing(p.parent if p.parent != Path("") else Path("."))
        if not base.is_dir():
            raise ConfigError(
                f"{where}: {base} is a file, so no folder can be made here", setting=setting
            )
        if not os.access(base, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: cannot write in {base}", setting=setting)
    except OSError as e:
        raise ConfigError(f"{where}: {e.strerror or e}", setting=setting) from None
    return p


def check_output_dir(path: str | os.PathLike[str], setting: str) -> Path:
    """Check that ``path`` can be used as an output folder (existing or to be created).

    Refused: an existing file (or anything that is not a folder), a parent that is a file, or
    a folder that cannot be written. Nothing is created.
    """
    from judge_rl.errors import ConfigError

    p = Path(path)
    where = os.fspath(path)
    if not where:
        raise ConfigError("empty path", setting=setting)
    try:
        if p.exists() and not p.is_dir():
            raise ConfigError(
                f"{where} exists and is not a folder; expected a folder path", setting=setting
            )
        base = _nearest_existing(p)
        if not base.is_dir():
            raise ConfigError(
                f"{where}: {base} is a file, so no folder can be made here", setting=setting
            )
        if not os.access(base, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: cannot write in {base}", setting=setting)
    except OSError as e:
        raise ConfigError(f"{where}: {e.strerror or e}", setting=setting) from None
    return p


# ---------------------------------------------------------------------------------------------
# run folders


def check_run_name(name: str, *, setting: str = "name", file: str | None = None) -> str:
    """A run name from a spec file: one plain folder name (no ``/``, no ``..``, not absolute),
    so a spec from elsewhere cannot choose where files are written.

    >>> check_run_name("arena-1")
    'arena-1'
    >>> check_run_name("../../etc")
    Traceback (most recent call last):
    ...
    judge_rl.errors.ConfigError: name: run names are one folder name inside reports/ (no '/', '\\', '..' or absolute paths), got '../../etc'
    """
    from judge_rl.errors import ConfigError

    s = str(name)
    if (
        not s.strip()
        or s in (".", "..")
        or "/" in s
        or "\\" in s
        or "\x00" in s
        or Path(s).is_absolute()
    ):
        raise ConfigError(
            "run names are one folder name inside reports/ (no '/', '\\', '..' or absolute "
            f"paths), got {s!r}",
            setting=setting,
            file=file,
        )
    return s


def safe_run_dir(
    name: str | None,
    root: str | os.PathLike[str] = "reports",
    *,
    setting: str = "--run",
    create: bool = True,
) -> Path:
    """The folder of a run: ``<root>/<name>`` (created), a timestamp when ``name`` is empty.

    A name is confined to ``root``: a ``..`` part is refused. An absolute path is taken as the
    user's explicit choice of folder (``--run /tmp/x``, as tests and scripts do); a relative name
    with several parts (``a/b``) stays inside ``root``. A run folder that exists as a file is
    refused. Errors are :class:`~judge_rl.errors.ConfigError` naming ``setting``. With
    ``create=False`` the name is only checked (call it before the work starts).
    """
    import time

    from judge_rl.errors import ConfigError

    if not name:
        name = time.strftime("%Y%m%d-%H%M%S")
    s = os.fspath(name)
    if "\x00" in s:
        raise ConfigError("run name contains a NUL byte", setting=setting)
    given = Path(s)
    if ".." in given.parts:
        raise ConfigError(
            f"run names stay inside {os.fspath(root)}/: '..' is not allowed, got {s!r}",
            setting=setting,
        )
    if given.is_absolute():
        path = given
    else:
        rootp = Path(root)
        # "reports/x" given with the default root: already inside it.
        path = given if given.parts[: len(rootp.parts)] == rootp.parts else rootp / given
    check_output_dir(path, setting)
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {path}: {e.strerror or e}", setting=setting) from None
    return path


# ---------------------------------------------------------------------------------------------
# YAML


def safe_yaml_load(
    source: str | os.PathLike[str] | bytes | None = None,
    *,
    text: str | None = None,
    file: str | None = None,
    max_nodes: int | None = None,
    max_depth: int | None = None,
) -> Any:
    """Parse a YAML spec safely: plain data only (``yaml.SafeLoader``), UTF-8, bounded size,
    bounded nesting, and a bounded number of nodes *after alias expansion*, so a
    billion-laughs spec (``a: &a [x, x]``, ``b: &b [*a, *a]``, ...) fails at once.

    ``source`` is a path (``str`` or path-like; read here, refusing FIFOs and devices) or the
    raw bytes; ``text=`` passes YAML text instead. ``file`` names the spec in errors.

    >>> safe_yaml_load(text="a: 1\\nb: [x, y]\\n")
    {'a': 1, 'b': ['x', 'y']}

    Raises:
        ConfigError: naming the file (and the line for syntax errors) for unreadable files,
            non-UTF-8 bytes, YAML errors, or a spec over a cap (``JUDGE_RL_MAX_SPEC_BYTES``,
            ``JUDGE_RL_MAX_YAML_NODES``, ``JUDGE_RL_MAX_JSON_DEPTH``).
    """
    import yaml

    from judge_rl.errors import ConfigError

    max_bytes = limit("JUDGE_RL_MAX_SPEC_BYTES")
    data: bytes
    if text is not None or isinstance(source, bytes):
        data = text.encode("utf-8", "surrogatepass") if text is not None else bytes(source)  # type: ignore[arg-type]
        where = file or "<yaml>"
        if len(data) > max_bytes:
            raise ConfigError(
                f"larger than {max_bytes:,} bytes (JUDGE_RL_MAX_SPEC_BYTES)", file=where
            )
    elif source is not None:
        where = file or os.fspath(source)
        data = read_bytes_limited(source, max_bytes, "JUDGE_RL_MAX_SPEC_BYTES", error=ConfigError)
    else:
        raise TypeError("safe_yaml_load needs a path, bytes or text=")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"line {line}: not UTF-8 text (byte {e.start + 1})", file=where) from None
    max_nodes = max_nodes or limit("JUDGE_RL_MAX_YAML_NODES")
    max_depth = max_depth or limit("JUDGE_RL_MAX_JSON_DEPTH")
    try:
        node = yaml.compose(decoded, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{at}not valid YAML: {problem}", file=where) from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply", file=where) from None
    if node is None:
        return None
    _check_yaml_tree(node, where, max_nodes, max_depth)
    try:
        # SafeLoader builds only plain YAML types; size, depth and aliases checked above
        return yaml.load(decoded, Loader=yaml.SafeLoader)  # noqa: S506  # safe: SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{at}not valid YAML: {problem}", file=where) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"not valid YAML: {type(e).__name__}: {e}", file=where) from None


def _check_yaml_tree(root: Any, where: str, max_nodes: int, max_depth: int) -> None:
    """Count the nodes of a composed YAML graph as if aliases were expanded (memoised, so the
    count itself is cheap), and its depth; a cycle counts as too deep."""
    import yaml

    from judge_rl.errors import ConfigError

    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_stack: set[int] = set()
    # iterative post-order walk
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_stack.discard(key)
            kids = _yaml_children(node)
            total = 1 + sum(size[id(k)] for k in kids)
            d = 1 + max((depth[id(k)] for k in kids), default=0)
            size[key] = total
            depth[key] = d
            if total > max_nodes:
                line = node.start_mark.line + 1
                raise ConfigError(
                    f"line {line}: more than {max_nodes:,} values once aliases are expanded "
                    "(JUDGE_RL_MAX_YAML_NODES)",
                    file=where,
                )
            if d > max_depth:
                line = node.start_mark.line + 1
                raise ConfigError(
                    f"line {line}: nested deeper than {max_depth} (JUDGE_RL_MAX_JSON_DEPTH)",
                    file=where,
                )
            continue
        if key in size:
            continue
        if key in on_stack:
            raise ConfigError(
                f"line {node.start_mark.line + 1}: an alias refers to itself", file=where
            )
        on_stack.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.CollectionNode):
            for k in _yaml_children(node):
                if id(k) not in size:
                    stack.append((k, False))
    return None


def _yaml_children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [x for kv in node.value for x in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


# ---------------------------------------------------------------------------------------------
# bounded reads


def read_bytes_limited(
    path: str | os.PathLike[str],
    max_bytes: int,
    setting: str,
    *,
    error: type[Exception] | None = None,
) -> bytes:
    """The bytes of a regular file, refusing directories, devices, FIFOs and sockets (which
    could block or never end) and files larger than ``max_bytes`` (``setting`` names the cap).

    Raises ``error`` (default :class:`~judge_rl.errors.DataError`) naming the file.
    """
    import stat

    from judge_rl.errors import DataError

    exc: Any = error or DataError
    p = os.fspath(path)

    def fail(msg: str) -> Exception:
        return exc(msg, file=p)

    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise fail("no such file") from None
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise fail("is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise fail(f"not a regular file ({_file_type(st.st_mode)}); save the data to a file first")
    if st.st_size > max_bytes:
        raise fail(f"file is {st.st_size:,} bytes, over the limit of {max_bytes:,} ({setting})")
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise fail(f"more than {max_bytes:,} bytes ({setting})")
    return data


def _file_type(mode: int) -> str:
    import stat

    for test, name in (
        (stat.S_ISFIFO, "a FIFO / pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"
