"""Count pydantic validator runs of some models (tests that a fast path skips validation)."""

from __future__ import annotations

from typing import Any


class _Counting:
    """Stands in for a model's ``__pydantic_validator__``, noting each ``validate_python``."""

    def __init__(self, inner: Any, runs: list[int]) -> None:
        self.inner = inner
        self.runs = runs

    def validate_python(self, *a: Any, **k: Any) -> Any:
        self.runs.append(1)
        return self.inner.validate_python(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def count_validator_runs(monkeypatch: Any, *models: Any) -> list[int]:
    """A list that gets one entry per validator run of ``models`` (until the test ends)."""
    runs: list[int] = []
    for model in models:
        monkeypatch.setattr(
            model, "__pydantic_validator__", _Counting(model.__pydantic_validator__, runs)
        )
    return runs
