"""Errors a user can cause. The CLI turns them into one clear line and exit status 2.

Library code raises these (never ``sys.exit``); ``judge_rl.cli.main`` catches them, prints the
message without a traceback, and exits with :data:`EXIT_USER_ERROR`.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class JudgeRLError(Exception):
    """A problem the user can fix: bad file, unknown judge, bad setting, unreachable server."""

    exit_code = EXIT_USER_ERROR


class ConfigError(JudgeRLError):
    """A bad setting: names the setting (and the spec file when there is one)."""

    def __init__(self, message: str, *, setting: str | None = None, file: str | None = None):
        where = ""
        if file and setting:
            where = f"{file}: {setting}: "
        elif file:
            where = f"{file}: "
        elif setting:
            where = f"{setting}: "
        super().__init__(f"{where}{message}")
        self.setting = setting
        self.file = file


class DataError(JudgeRLError):
    """A bad input row: names the file, the line (1-based) and, when known, the field.

    >>> str(DataError("missing field", file="x.jsonl", line=3, field="chosen"))
    'x.jsonl:3: chosen: missing field'
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ):
        loc = file or "<input>"
        if line is not None:
            loc += f":{line}"
        parts = [loc]
        if field:
            parts.append(field)
        super().__init__(": ".join(parts) + ": " + message)
        self.file = file
        self.line = line
        self.field = field
        self.reason = message


class BudgetExceeded(JudgeRLError):
    """The next call would exceed ``--max-cost`` / ``--max-calls``; finished work is kept."""
