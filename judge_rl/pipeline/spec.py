"""Pipeline specs (``evals/*.yaml`` with ``stages:``): the one loader for pipelines and the demo.

A spec names its stages in order; each has a ``kind`` (default: its name), ``inputs`` (input name
-> ``STAGE.OUTPUT`` of an earlier stage) and a ``config`` (the fields of the kind's config
dataclass). ``profiles`` hold per-stage overrides merged into the configs (``--profile quick``).
``graders`` define the task graders that stages reference as ``grader:NAME``.

Everything is checked on load, before any stage runs: unknown keys and wrong types are a
:class:`~judge_rl.errors.ConfigError` naming the file, the stage and the key; so are inputs that do
not name an earlier stage's output.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from judge_rl._io import safe_yaml_load
from judge_rl.errors import ConfigError

SPEC_VERSIONS = ("1",)


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)


class GraderSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    kind: str


class PipelineSpec(BaseModel):
    """A pipeline spec, validated."""

    model_config = ConfigDict(extra="forbid")
    version: str
    name: str = ""
    description: str = ""
    seed: int = 0
    graders: dict[str, GraderSpec] = Field(default_factory=dict)
    stages: dict[str, StageSpec]
    profiles: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    default_profile: str | None = None
    path: str = ""
    """Where the spec was read from (filled by :func:`load_pipeline`)."""

    def kind(self, stage: str) -> str:
        return self.stages[stage].kind or stage


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def resolved_config(spec: PipelineSpec, stage: str, profile: str | None) -> dict[str, Any]:
    """The stage's config with the profile's overrides merged in."""
    cfg = dict(spec.stages[stage].config)
    if profile:
        cfg = _merge(cfg, spec.profiles.get(profile, {}).get(stage, {}))
    return cfg


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, arg) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def build_config(
    cls: type, values: Mapping[str, Any], *, stage: str, file: str = "", prefix: str = ""
) -> Any:
    """``cls(**values)`` for a config dataclass, after checking every key and type; errors name
    the stage and the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        where = f"stages.{stage}.config.{prefix}{key}"
        if key not in fields:
            raise ConfigError(
                f"stage {stage!r}: unknown key {prefix + key!r} "
                f"(known: {', '.join(sorted(fields))})",
                file=file or None,
                setting=where,
            )
        if not _type_ok(value, hints[key]):
            raise ConfigError(
                f"stage {stage!r}: key {prefix + key!r} must be {_type_name(hints[key])}, "
                f"got {type(value).__name__} {value!r}",
                file=file or None,
                setting=where,
            )
    try:
        return cls(**values)
    except ConfigError as e:  # the config's own check (__post_init__): name the stage and key
        key = e.setting or ""
        raise ConfigError(
            f"stage {stage!r}: {e.message}",
            file=file or None,
            setting=f"stages.{stage}.config.{prefix}{key}" if key else f"stages.{stage}.config",
        ) from None


def read_pipeline(path: str | Path) -> PipelineSpec:
    """Read and validate the spec's structure (stage configs are checked by
    :func:`judge_rl.pipeline.runner.validate`)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such pipeline spec", setting="spec")
    data = safe_yaml_load(p, file=str(p))  # the judges' and tournaments' reader: bounded, safe
    if not isinstance(data, dict):
        raise ConfigError("a pipeline spec is a mapping with 'version' and 'stages'", file=str(p))
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(map(str, err["loc"]))
        raise ConfigError(err["msg"], setting=loc, file=str(p)) from None
    if spec.version not in SPEC_VERSIONS:
        raise ConfigError(f"unsupported version {spec.version!r}", setting="version", file=str(p))
    spec.path = str(p)
    for prof, stages in spec.profiles.items():
        for name in stages:
            if name not in spec.stages:
                raise ConfigError(
                    f"profile {prof!r} overrides unknown stage {name!r}",
                    setting=f"profiles.{prof}.{name}",
                    file=str(p),
                )
    return spec


def find_pipeline(name_or_path: str) -> Path:
    """A spec path, or a name looked up in ``./evals``, the repository's ``evals`` and the copy
    shipped in the wheel (``demo`` -> ``evals/demo.yaml``)."""
    from importlib import resources

    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ConfigError(f"{p}: no such pipeline spec", setting="spec")
        return p
    packaged = Path(str(resources.files("judge_rl") / "_builtin" / "evals"))
    for root in (Path("evals"), Path(__file__).resolve().parents[2] / "evals", packaged):
        cand = root / f"{name_or_path}.yaml"
        if cand.exists():
            return cand
    raise ConfigError(f"no pipeline spec {name_or_path!r} (looked in ./evals)", setting="spec")


__all__ = [
    "GraderSpec",
    "PipelineSpec",
    "StageSpec",
    "build_config",
    "find_pipeline",
    "read_pipeline",
    "resolved_config",
]
