"""``judge-rl``: the command line. Subcommands live in :mod:`judge_rl.commands`, one module each.

Each command module defines ``add_parser(subparsers)`` (cheap: argparse only) and ``run(args)``
(imports what it needs). ``judge-rl --help`` therefore imports no heavy library.

No traceback reaches a user: a :class:`~judge_rl.errors.JudgeRLError` prints one line and exits
with its code (2); anything else is a bug, so the last-resort handler writes a crash report
(the traceback, the command line with secrets masked, versions) under ``$JUDGE_RL_CRASH_DIR``
(default ``$JUDGE_RL_CACHE/crash``, i.e. ``~/.cache/judge_rl/crash``), prints one line with its
path and exits :data:`~judge_rl.errors.EXIT_INTERNAL` (70). Inside the test suite the handler
re-raises instead (``JUDGE_RL_CRASH_RAISE``), so reaching it fails the test.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import sys
from pathlib import Path

from judge_rl.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USER_ERROR, JudgeRLError

COMMANDS: dict[str, str] = {
    "data": "judge_rl.commands.data",
    "models": "judge_rl.commands.models",
    "generate": "judge_rl.commands.generate",
    "label": "judge_rl.commands.label",
    "audit": "judge_rl.commands.audit",
    "train-rm": "judge_rl.commands.train_rm",
    "score": "judge_rl.commands.score",
    "ppo": "judge_rl.commands.ppo",
    "grpo": "judge_rl.commands.grpo",
    "dpo": "judge_rl.commands.dpo",
    "probe": "judge_rl.commands.probe",
    "verify": "judge_rl.commands.verify",
    "overopt": "judge_rl.commands.overopt",
    "ratings": "judge_rl.commands.ratings",
    "winrate": "judge_rl.commands.winrate",
    "tournament": "judge_rl.commands.tournament",
    "report": "judge_rl.commands.report",
    "demo": "judge_rl.commands.demo",
    "run": "judge_rl.commands.run",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or (``only``) of one command: running a command imports
    only its own module, so e.g. ``judge-rl ratings`` does not pay for training imports."""
    parser = argparse.ArgumentParser(
        prog="judge-rl",
        description="RLAIF and evaluation with AI judges: label preferences, train reward models, "
        "run PPO, rank models in tournaments, and catch reward over-optimisation.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).add_parser(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first argument that is not a global option)."""
    for a in argv:
        if a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}):
            continue
        return a if a in COMMANDS else None
    return None


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (importlib.metadata costs ~50 ms to import,
    which every command would otherwise pay at start-up)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: object):
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        parser._print_message(f"judge_rl {_version()}\n", sys.stdout)
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("judge_rl")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (see :mod:`judge_rl.errors`)."""
    try:
        return _main(argv)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _print_error("interrupted; finished work is saved")
        return EXIT_INTERRUPTED
    except JudgeRLError as e:
        _print_error(f"[bold red]error:[/] {_escape(str(e))}", markup=True)
        return e.exit_code
    except BrokenPipeError:
        # `judge-rl ... | head`: the reader went away; nothing to report.
        _quiet_stdout()
        return 0
    except OSError as e:
        if e.errno in _SETUP_ERRNOS:
            where = f"{e.filename}: " if e.filename else ""
            _print_error(
                f"[bold red]error:[/] {_escape(where + (e.strerror or str(e)))}", markup=True
            )
            return EXIT_USER_ERROR
        return _crash(e, argv)
    except Exception as e:
        return _crash(e, argv)


# Environment problems, not bugs: a full disk, a read-only or forbidden folder.
_SETUP_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    getattr(errno, "EDQUOT", errno.ENOSPC),
}


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    parser = build_parser(_command_of(sys.argv[1:] if argv is None else list(argv)))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    rc = args.func(args)
    return int(rc or 0)


def _escape(text: str) -> str:
    from rich.markup import escape

    # escape: messages quote user data (labels, paths) that may look like rich markup
    return escape(text)


def _print_error(text: str, *, markup: bool = False) -> None:
    from judge_rl.console import err_console

    try:
        err_console().print(text, markup=markup, highlight=False, soft_wrap=True)
    except Exception:  # a broken stderr must not turn one line into a traceback
        with contextlib.suppress(Exception):
            sys.stderr.write(text + "\n")


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def crash_dir() -> Path:
    """Where crash reports go: ``$JUDGE_RL_CRASH_DIR``, else ``$JUDGE_RL_CACHE/crash``
    (``~/.cache/judge_rl/crash``)."""
    env = os.environ.get("JUDGE_RL_CRASH_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("JUDGE_RL_CACHE") or str(Path.home() / ".cache" / "judge_rl")
    return Path(cache) / "crash"


def _raise_on_crash() -> bool:
    """Re-raise instead of reporting: ``JUDGE_RL_CRASH_RAISE=1``, or (unless it is ``0``) when
    running inside pytest in this process, so the suite treats a crash as a failure."""
    flag = os.environ.get("JUDGE_RL_CRASH_RAISE", "").strip()
    if flag:
        return flag not in ("0", "false", "no")
    return "pytest" in sys.modules and bool(os.environ.get("PYTEST_CURRENT_TEST"))


_SECRET_WORDS = ("key", "token", "secret", "password", "auth")


def _masked_argv(argv: list[str] | None) -> list[str]:
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    hide_next = False
    for a in args:
        a = str(a)
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag, eq, _ = a.partition("=")
        secret = flag.startswith("-") and any(w in flag.lower() for w in _SECRET_WORDS)
        if secret and eq:
            out.append(f"{flag}=***")
        else:
            out.append(a)
            hide_next = secret
    return out


def write_crash_report(exc: BaseException, argv: list[str] | None = None) -> Path | None:
    """Write the traceback and context to a new file in :func:`crash_dir` (falling back to the
    temp folder); the path, or None when nothing could be written."""
    import datetime
    import platform
    import tempfile
    import traceback

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text = (
        f"judge_rl {_version()} crash report ({stamp} UTC)\n"
        f"command: judge-rl {' '.join(_masked_argv(argv))}\n"
        f"python {platform.python_version()} on {platform.platform()}\n"
        f"cwd: {os.getcwd()}\n\n{tb}"
    )
    for folder in (crash_dir(), Path(tempfile.gettempdir()) / "judge_rl-crash"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix=f"crash-{stamp}-", suffix=".txt", dir=folder)
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
                f.write(text)
            return Path(path)
        except OSError:
            continue
    return None


def _crash(exc: Exception, argv: list[str] | None) -> int:
    """The last-resort handler: a bug in judge_rl. One line, a crash report, exit 70."""
    if _raise_on_crash():
        raise exc
    report = write_crash_report(exc, argv)
    if os.environ.get("PYTEST_CURRENT_TEST"):
        # a subprocess of the test suite: show the traceback in the test's captured stderr
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    what = f"{type(exc).__name__}: {exc}".strip()
    if len(what) > 200:
        what = what[:200] + "..."
    where = f"; crash report: {report}" if report else ""
    _print_error(
        f"[bold red]internal error:[/] {_escape(what)} (a bug in judge_rl, please report it{where})",
        markup=True,
    )
    return EXIT_INTERNAL


def run() -> None:  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":
    run()
