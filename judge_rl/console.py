"""Rich console and progress bars for the CLI (library code logs; only the CLI prints)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

_console: Console | None = None
_err: Console | None = None


def _kwargs(stream: Any) -> dict[str, Any]:
    no_color = bool(os.environ.get("NO_COLOR")) or not getattr(stream, "isatty", lambda: False)()
    # emoji=False: ":name:" in a judge name, a path or a model's text is printed as written
    # (rich would print an emoji for e.g. ":robot:", after loading its 3,608-entry table)
    kw: dict[str, Any] = {"file": stream, "no_color": no_color, "highlight": False, "emoji": False}
    if no_color:
        kw["color_system"] = None
    return kw


def console() -> Console:
    """The stdout console: no colour when not a TTY or when ``NO_COLOR`` is set."""
    global _console
    if _console is None or _console.file is not sys.stdout:
        _console = Console(**_kwargs(sys.stdout))
    return _console


def err_console() -> Console:
    """The stderr console (errors, warnings, progress)."""
    global _err
    if _err is None or _err.file is not sys.stderr:
        _err = Console(**_kwargs(sys.stderr))
    return _err


REFRESH_PER_S = 4
"""How often a progress bar on a terminal is redrawn. Each redraw builds the bar's table on the
thread that draws it (~2.6 ms of CPU on this 2-core machine), and an asyncio command's event
loop waits for it: rich's default of 10 a second took ~2.6% of ``judge-rl label``'s loop."""


def progress(*extra: Any, transient: bool = False) -> Progress:
    """A progress bar on stderr with count, rate-friendly columns and ETA; ``extra`` columns
    (e.g. ``TextColumn("{task.fields[cost]}")``) are appended. It is redrawn
    :data:`REFRESH_PER_S` times a second on a terminal (or in Jupyter); on a pipe or file it is
    drawn once, when it stops (rich draws nothing in between there, but its refresh thread
    still built the bar ten times a second)."""
    # imported here: rich.progress costs ~30 ms, which commands without a bar need not pay
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    con = err_console()
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        console=con,
        transient=transient,
        disable=bool(os.environ.get("JUDGE_RL_NO_PROGRESS")),
        auto_refresh=con.is_terminal or con.is_jupyter,
        refresh_per_second=REFRESH_PER_S,
    )
