"""Errors a user can cause, and the exit-status contract every command follows.

Library code raises these (never ``sys.exit``); ``judge_rl.cli.main`` catches them, prints the
message without a traceback, and exits with :data:`EXIT_USER_ERROR`.

Exit status, the same for every command (``docs/errors.md``):

- :data:`EXIT_OK` (0): all the work was done.
- :data:`EXIT_PARTIAL` (1): the work ran but some items failed (or nothing usable came out);
  a summary line counts the failures by kind (:class:`FailureSummary`), and ``--max-failures
  N|P%`` tolerates up to that many.
- :data:`EXIT_USER_ERROR` (2): bad input or set-up; nothing was started (one line naming the file
  and line, or the setting).
- :data:`EXIT_INTERNAL` (70, ``EX_SOFTWARE``): a bug in judge_rl; the CLI prints one line and the
  path of a crash report holding the traceback.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USER_ERROR = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

MAX_BOOTSTRAP = 100_000
"""The most bootstrap rounds a command accepts (``--bootstrap``): 100,000 rounds of a
Bradley-Terry fit already take minutes; more is a typo. Check with :func:`check_count`."""


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
        self.message = message
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


def check_count(value: int, setting: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` when ``minimum <= value <= maximum``, else a :class:`ConfigError` naming
    ``setting``. Use for counts such as ``--bootstrap`` (``maximum=MAX_BOOTSTRAP``).

    >>> check_count(200, "--bootstrap", maximum=MAX_BOOTSTRAP)
    200
    >>> check_count(10**8, "--bootstrap", maximum=MAX_BOOTSTRAP)
    Traceback (most recent call last):
    ...
    judge_rl.errors.ConfigError: --bootstrap: 100000000 is above the limit of 100,000
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected a whole number, got {value!r}", setting=setting)
    if value < minimum:
        raise ConfigError(f"{value} is below the minimum of {minimum:,}", setting=setting)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{value} is above the limit of {maximum:,}", setting=setting)
    return value


def check_finite(
    value: float, setting: str, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """``value`` when it is a finite number within the bounds, else a :class:`ConfigError`.

    >>> check_finite(0.5, "--max-cost", minimum=0)
    0.5
    >>> check_finite(float("nan"), "--max-cost", minimum=0)
    Traceback (most recent call last):
    ...
    judge_rl.errors.ConfigError: --max-cost: expected a finite number, got nan
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {value!r}", setting=setting)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{value:g} is below the minimum of {minimum:g}", setting=setting)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{value:g} is above the maximum of {maximum:g}", setting=setting)
    return float(value)


@dataclass(frozen=True)
class MaxFailures:
    """``--max-failures N|P%``: how many failed items a run tolerates and still exits 0.

    >>> MaxFailures.parse("3").allows(3, 100), MaxFailures.parse("3").allows(4, 100)
    (True, False)
    >>> MaxFailures.parse("5%").allows(5, 100), MaxFailures.parse("5%").allows(6, 100)
    (True, False)
    """

    count: int | None = 0
    fraction: float | None = None

    @classmethod
    def parse(cls, text: str | int | None, setting: str = "--max-failures") -> MaxFailures:
        """``"N"`` (a count) or ``"P%"`` (a share of the items, 0-100); None means 0."""
        if text is None:
            return cls(0)
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(check_count(text, setting))
        s = str(text).strip()
        try:
            if s.endswith("%"):
                pct = float(s[:-1])
                check_finite(pct, setting, minimum=0, maximum=100)
                return cls(None, pct / 100.0)
            return cls(check_count(int(s), setting))
        except ValueError:
            raise ConfigError(
                f"expected a count (e.g. 5) or a percentage (e.g. 2%), got {s!r}", setting=setting
            ) from None

    def allows(self, failed: int, total: int) -> bool:
        """True when ``failed`` of ``total`` items is within the tolerance."""
        if self.fraction is not None:
            return failed <= self.fraction * total + 1e-9
        return failed <= (self.count or 0)

    def __str__(self) -> str:
        if self.fraction is not None:
            return f"{self.fraction * 100:g}%"
        return str(self.count or 0)


@dataclass
class FailureSummary:
    """Failed items counted by kind, and the exit status they imply.

    >>> s = FailureSummary(total=40)
    >>> s.add("timeout", 30); s.add("http_404", 8)
    >>> s.line("comparisons")
    '38 of 40 comparisons failed (timeout: 30, http_404: 8)'
    >>> s.exit_code(), s.exit_code(MaxFailures.parse("100%"))
    (1, 0)
    >>> FailureSummary(total=3).exit_code(written=0)
    1
    """

    total: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, n: int = 1) -> None:
        """Count ``n`` failures of ``kind`` (e.g. ``timeout``, ``http_404``, ``parse``)."""
        if n:
            self.kinds[kind or "error"] += n

    def extend(self, kinds: Iterable[str]) -> None:
        for k in kinds:
            self.add(k)

    @property
    def failed(self) -> int:
        return sum(self.kinds.values())

    def line(self, unit: str = "items") -> str:
        """``"N of M <unit> failed (kind: n, ...)"``, most common kind first."""
        detail = ", ".join(f"{k}: {n:,}" for k, n in self.kinds.most_common())
        text = f"{self.failed:,} of {self.total:,} {unit} failed"
        return f"{text} ({detail})" if detail else text

    def exit_code(
        self, max_failures: MaxFailures | None = None, *, written: int | None = None
    ) -> int:
        """:data:`EXIT_PARTIAL` when failures exceed ``max_failures`` (default 0) or when
        ``written`` is 0 (an empty output is never a success); else :data:`EXIT_OK`."""
        if written is not None and written <= 0:
            return EXIT_PARTIAL
        if self.failed and not (max_failures or MaxFailures(0)).allows(self.failed, self.total):
            return EXIT_PARTIAL
        return EXIT_OK
