"""The demo: ``evals/demo.yaml`` run through the pipeline runner (:mod:`judge_rl.pipeline`).

``judge-rl demo`` is ``judge-rl run evals/demo.yaml``; ``--quick`` picks the spec's ``quick``
profile. What the demo shows, and why the task and graders are what they are, is in the spec and
in ``docs/pipeline.md``.
"""

from __future__ import annotations

from pathlib import Path

from judge_rl.errors import ConfigError
from judge_rl.pipeline.spec import PipelineSpec, find_pipeline, read_pipeline


def find_spec(path: str | None) -> Path:
    """The demo spec: ``path``, else ``evals/demo.yaml`` (the working directory's, the
    repository's, or the copy shipped in the wheel)."""
    if path:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: no such demo spec", setting="--spec")
        return p
    return find_pipeline("demo")


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and fully validate the demo spec (every profile's stage configs too)."""
    from judge_rl.pipeline.runner import validate

    spec = read_pipeline(path)
    validate(spec, None)
    for profile in spec.profiles:
        validate(spec, profile)
    return spec


__all__ = ["find_spec", "load_spec"]
