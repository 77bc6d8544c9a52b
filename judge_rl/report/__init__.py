"""Reports: pure functions of the run log (``reports/<run>/log.json``).

- :func:`render_text` / :func:`print_report`: the rich terminal summary (80 columns).
- :func:`render_html` / :func:`write_report`: one self-contained, offline HTML file.

Rendering never calls a model; everything that came from a model or a file is escaped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from judge_rl.report.html import render_html, write_report
    from judge_rl.report.terminal import print_report, render_text

__all__ = ["print_report", "render_html", "render_text", "write_report"]


def __getattr__(name: str) -> Any:  # lazy: importing judge_rl.report stays cheap
    if name in ("render_html", "write_report"):
        from judge_rl.report import html

        return getattr(html, name)
    if name in ("print_report", "render_text"):
        from judge_rl.report import terminal

        return getattr(terminal, name)
    raise AttributeError(name)
