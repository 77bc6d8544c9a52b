"""The math-equivalence engine that runs inside the verifier's worker processes.

The engine is math-verify (Hugging Face; the checker behind TRL's, open-r1's and lighteval's math
rewards), used through its LaTeX path only. Its plain-expression path (``ExprExtractionConfig``)
hands text to ``sympy.parse_expr``, which calls ``eval``: it is never used here. Two places in
latex2sympy2 turn a NUMBER token into a sympy number with ``sympy.Number(text)``, which goes
through ``sympify`` → ``parse_expr`` → ``eval``; the lexer only lets digits through, but
:func:`install_guards` replaces both with a whitelist conversion (``int``/``Float`` of a
``[0-9.]`` string) so that no string written by a model or a file ever reaches an interpreter.

Defence in depth, once per worker (:func:`install_guards`):

* an audit hook (PEP 578) that raises on any ``compile``/``exec`` of source text that is not a
  module file, and on ``os.system``, ``subprocess.Popen``, ``os.exec*``, ``os.spawn*``,
  ``os.posix_spawn``, ``os.fork``, sockets, ``ctypes`` and ``open`` for writing. Audit hooks
  cannot be removed, so no later code in the worker can undo it. Blocked events are counted and
  returned with every answer (a test asserts the count stays 0 on the perturbation suite: the
  legitimate path never needs them);
* an ``RLIMIT_AS`` (memory) limit and a per-check CPU-time timer (``ITIMER_PROF``), set by
  :func:`worker_main`; the parent kills a worker that overruns its wall-clock deadline anyway
  (C code does not see signals).

Library code: nothing here prints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
from functools import lru_cache
from typing import Any

_BLOCKED: list[str] = []
_GUARDED = False

_NUMBER_TOKEN = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_BLOCKED_EVENTS = (
    "os.system",
    "subprocess.Popen",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.mkdir",
    "shutil.",
    "socket.",
    "ctypes.",
    "pty.",
    "webbrowser.",
)


class BlockedOperation(RuntimeError):
    """The worker's audit hook refused an operation the verifier never needs."""


class CheckTimeout(BaseException):
    """Raised by the worker's alarm; a BaseException so that library ``except Exception``
    blocks (math-verify and sympy have many) cannot swallow it and turn it into ``False``."""


# sympy's polynomial code builds its monomial arithmetic by compiling a template filled with a
# variable count (sympy/polys/monomials.py, MonomialOps._build): sympy's text, never the answer's.
_TRUSTED_COMPILERS = (("sympy/polys/monomials.py", "_build"),)


def _module_file(fname: str) -> bool:
    return fname.endswith(".py") and os.path.isfile(fname)


def _trusted_caller() -> bool:
    frame = sys._getframe(2)  # 0: this, 1: _audit, 2: the code calling compile/exec
    code = frame.f_code
    path = code.co_filename.replace("\\", "/")
    return any(path.endswith(f) and code.co_name == n for f, n in _TRUSTED_COMPILERS)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "compile":
        filename = args[1] if len(args) > 1 else None
        fname = str(filename) if filename is not None else "<string>"
        if not _module_file(fname) and not _trusted_caller():
            _BLOCKED.append(event)
            raise BlockedOperation("compile of source text")
        return
    if event == "exec":
        code = args[0] if args else None
        fname = getattr(code, "co_filename", "<string>")
        if not (isinstance(fname, str) and _module_file(fname)) and not _trusted_caller():
            _BLOCKED.append(event)
            raise BlockedOperation("exec of source text")
        return
    if event == "open":
        mode = args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 else 0
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing:
            _BLOCKED.append(event)
            raise BlockedOperation("open for writing")
        return
    if event.startswith(_BLOCKED_EVENTS):
        _BLOCKED.append(event)
        raise BlockedOperation(event)


def _safe_number(text: str) -> Any:
    """A NUMBER token as a sympy number without ``sympify``: digits, one point, an exponent."""
    import sympy

    t = text.replace(",", "").replace(" ", "")
    if not _NUMBER_TOKEN.match(t) or len(t) > 400:
        raise ValueError("not a number token")
    if t.isdigit():
        return sympy.Integer(int(t))
    return sympy.Float(t)


def _safe_convert_number(number: str) -> Any:
    # latex2sympy2's convert_number: "0,111" is a decimal comma, "1,000" a thousands separator.
    if "," in number and number.startswith("0"):
        number = number.replace(",", ".")
    integer = number.translate(str.maketrans("", "", ", ")).lstrip("0") or "0"
    return _safe_number(integer)


def _patch_number_parsing() -> None:
    import latex2sympy2_extended.latex2sympy2 as l2s

    def parse_number(self: Any, text: str) -> Any:  # noqa: ARG001 (method signature)
        t = text.replace(",", "")
        if t.isdigit():
            t = t.lstrip("0") or "0"
        return _safe_number(t)

    l2s.convert_number = _safe_convert_number
    l2s._Latex2Sympy.parse_number = parse_number  # type: ignore[method-assign]

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise BlockedOperation("parse_expr is never used by the verifier")

    l2s.parse_expr = refuse  # type: ignore[assignment]
    import math_verify.parser as mvp

    mvp.parse_expr = refuse  # type: ignore[assignment]
    mvp.parse_expr_cached = refuse  # type: ignore[assignment]


# One parse and one comparison build antlr's parser tables and sympy's caches before the first
# real check (imports of .py/.pyc module files stay allowed under the audit hook anyway).
_WARMUP = (
    (r"\frac{3}{4}", r"0.75"),
    (r"x^2+2x+1", r"(x+1)^2"),
)


def install_guards() -> None:
    """Patch number parsing and install the audit hook (once per process; irreversible).

    Imports and a warm-up run happen first, so that lazily imported modules are loaded before the
    hook forbids compiling source text.
    """
    global _GUARDED
    if _GUARDED:
        return
    prepare()
    sys.addaudithook(_audit)
    _GUARDED = True


_PREPARED = False


def prepare() -> None:
    """Imports, the number-parsing patch and a warm-up run, before the audit hook (which would
    refuse the source compiles some first imports need)."""
    global _PREPARED
    if _PREPARED:
        return
    import math_verify.grader as mvg
    import math_verify.parser as mvp
    import sympy  # noqa: F401

    # The timeouts are ours (worker alarm + parent deadline); math-verify's own would turn a
    # timeout into False. Its "timeout disabled" warnings would only repeat that.
    mvg.TIMEOUT_WARNING_SHOWN = True
    mvp.TIMEOUT_WARNING_SHOWN = True
    _patch_number_parsing()
    for g, p in _WARMUP:
        with contextlib.suppress(Exception):  # warm-up only loads modules
            latex_equal(g, p)
    _parse.cache_clear()
    _PREPARED = True


def blocked_count() -> int:
    """How many operations the audit hook refused in this process."""
    return len(_BLOCKED)


@lru_cache(maxsize=4096)
def _parse(latex: str) -> tuple[Any, ...]:
    from math_verify import LatexExtractionConfig, parse

    # "$…$" routes the answer to math-verify's LaTeX extraction (its normalisation of units,
    # \text, \dfrac, brace-less fractions, degrees) and nowhere else.
    return tuple(
        parse(
            f"${latex}$",
            extraction_config=[LatexExtractionConfig()],
            fallback_mode="first_match",
            parsing_timeout=None,  # type: ignore[arg-type]
        )
    )


def latex_equal(gold: str, pred: str) -> bool:
    """math-verify equivalence of two answers already reduced to LaTeX (no extraction here)."""
    from math_verify import verify

    g, p = _parse(gold), _parse(pred)
    if not g or not p:
        return False
    return bool(verify(list(g), list(p), timeout_seconds=None))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The worker process


def _alarm(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise CheckTimeout()


def _set_limits(memory_mb: int) -> None:
    try:
        import resource

        if memory_mb > 0:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            want = memory_mb * 1024 * 1024
            if hard != resource.RLIM_INFINITY:
                want = min(want, hard)
            resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or a lower hard limit: keep it
        pass


def _reply(out: Any, status: str, value: Any) -> None:
    out.write(json.dumps([status, value, blocked_count()]) + "\n")
    out.flush()


def worker_main(memory_mb: int = 2048) -> None:
    """Serve JSON-line requests ``[gold, pred, timeout_s]`` on stdin until it closes.

    Replies, one JSON line each: ``["ok", bool, blocked]``, ``["timeout", null, blocked]``,
    ``["error", message, blocked]``. The first line is ``["ready", null, 0]``. ``timeout_s`` is
    CPU time (``ITIMER_PROF``): a loaded machine slows a check down without failing it; the
    parent's wall-clock deadline catches what the timer cannot interrupt.
    """
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the reply channel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _set_limits(memory_mb)
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    try:
        install_guards()
    except Exception as e:  # noqa: BLE001
        _reply(out, "error", f"engine unavailable: {type(e).__name__}: {e}")
        return
    signal.signal(signal.SIGPROF, _alarm)
    _reply(out, "ready", None)
    for line in sys.stdin:
        try:
            gold, pred, timeout_s = json.loads(line)
            gold, pred, timeout_s = str(gold), str(pred), float(timeout_s)
        except (ValueError, TypeError):
            _reply(out, "error", "bad request")
            continue
        try:
            signal.setitimer(signal.ITIMER_PROF, max(0.01, timeout_s))
            try:
                ok = latex_equal(gold, pred)
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            _reply(out, "ok", ok)
        except CheckTimeout:
            _reply(out, "timeout", None)
        except MemoryError:
            _reply(out, "error", "memory: over the worker's memory limit")
        except RecursionError:
            _reply(out, "error", "recursion: expression nested too deeply")
        except Exception as e:  # noqa: BLE001 (an engine failure is an explicit error)
            _reply(out, "error", f"engine: {type(e).__name__}")


if __name__ == "__main__":
    worker_main(int(sys.argv[1]) if len(sys.argv) > 1 else 2048)
