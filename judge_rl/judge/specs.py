"""Judges as data: ``judges/<name>/judge.yaml`` plus a Jinja2 prompt template beside it.

Search order for a name (:func:`find_spec`): an explicit path (a ``judge.yaml`` or the folder
holding one), then each folder in ``$JUDGE_RL_JUDGES`` (an ``os.pathsep`` list), then
``./judges``, then the ``judges/`` folder shipped with judge_rl. Specs are validated on load:
an unknown key, a bad value or a template variable the judge cannot supply is a
:class:`~judge_rl.errors.ConfigError` naming the file and the key.

A full spec (kind ``pairwise``)::

    version: "1"                  # recorded in every judgment's fingerprint
    kind: pairwise                # pairwise | reference | pointwise | rubric | verifier | human |
                                  #   jury | reward_model
    description: General helpfulness, MT-Bench style.
    backend: openai               # openai | hf | vllm | mock
    model: gpt-4o-mini
    base_urls: [https://api.openai.com/v1]
    api_key_env: OPENAI_API_KEY   # the NAME of the variable; the key itself never enters a spec
    prices: {input: 0.15, output: 0.60}   # USD per million tokens
    template: prompt.j2           # relative to this file
    system: You are an impartial judge.
    max_tokens: 512
    temperature: 0
    order: both                   # fixed | random | both
    inconsistent: tie             # tie | average
    hardened: true                # fence candidates as data (injection hardening)
    verdict: brackets             # where the verdict is read: auto | brackets | label | letter |
                                  #   json | {rule: json, field: winner} | {pattern: REGEX}
    label_probs: false            # read p_a from the label probabilities at the verdict slot
    label_position: auto          # start (one-label reply) | verdict (after the reasoning) | auto
    label_prefix: "[["            # start position: text the reply is prefilled with
    turn: 2                       # multi-turn: judge the answers at turn 2 (MT-Bench), shown
                                  #   with the turns before it; templates get questions,
                                  #   answers_a / answers_b (pairwise) or answers (pointwise)

A ``./judges/<name>`` folder in the working directory that shadows a judge shipped with judge_rl
is used (the search order), and :func:`shadowed_builtin` says so, for the CLI to announce it.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from judge_rl._io import canonical_json
from judge_rl.errors import ConfigError
from judge_rl.judge.budget import Budget

log = logging.getLogger(__name__)

SPEC_FILE = "judge.yaml"
KINDS = (
    "pairwise",
    "reference",
    "pointwise",
    "rubric",
    "verifier",
    "human",
    "jury",
    "reward_model",
)

_COMMON = {"name", "version", "kind", "description"}
_ORDER = {"order", "inconsistent", "order_seed"}
_BACKEND = {
    "backend",
    "model",
    "base_url",
    "base_urls",
    "api_key_env",
    "concurrency",
    "timeout_s",
    "max_retries",
    "prices",
    "backend_options",
}
_LLM = (
    _BACKEND
    | _ORDER
    | {
        "template",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "label_probs",
        "hardened",
        "expected_completion_tokens",
        "verdict",
        "label_prefix",
        "label_position",
        "turn",
    }
)
KEYS: dict[str, set[str]] = {
    "pairwise": _COMMON | _LLM,
    "reference": _COMMON | _LLM,
    "pointwise": _COMMON | _LLM | {"scale", "tie_margin"},
    "rubric": _COMMON | _LLM | {"criteria", "rubric_mode", "tie_margin"},
    "verifier": _COMMON | {"mode", "tolerance", "timeout_s"},
    "human": _COMMON | _ORDER | {"path", "format"},
    "jury": _COMMON | _ORDER | {"members", "aggregate", "quorum"},
    "reward_model": _COMMON | {"path", "device", "batch_size", "max_length", "tie_margin"},
}
"""Allowed keys per kind; anything else is an error."""

CRITERION_KEYS = {"name", "question", "type", "weight", "good"}

OVERRIDE_KEYS = _LLM | {"path", "device", "batch_size", "mode", "tolerance", "aggregate"}
"""Keys the CLI (``--model``, ``--backend``, ``--base-url``, ``--concurrency``, ``--order``) and
callers may override; an override that does not apply to the judge's kind is ignored for jury
members' own keys but checked against the kind otherwise."""

_DEFAULT = object()


# --- finding specs ----------------------------------------------------------------------------


def search_path() -> list[Path]:
    """Folders searched for ``<name>/judge.yaml``, in order."""
    dirs: list[Path] = []
    env = os.environ.get("JUDGE_RL_JUDGES")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(Path.cwd() / "judges")
    pkg = Path(__file__).resolve().parents[1]
    dirs.append(pkg.parent / "judges")  # a source checkout
    dirs.append(pkg / "_builtin" / "judges")  # a wheel with the specs as package data
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_spec(name_or_path: str | os.PathLike[str]) -> Path:
    """The ``judge.yaml`` for a judge name or path.

    Raises:
        ConfigError: no such judge (the message lists the available names).
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir() and (p / SPEC_FILE).is_file():
        return p / SPEC_FILE
    name = str(name_or_path)
    if os.sep not in name and "/" not in name:
        for d in search_path():
            cand = d / name / SPEC_FILE
            if cand.is_file():
                return cand
    known = ", ".join(list_judges()) or "none found"
    raise ConfigError(f"unknown judge {name!r} (known: {known})", setting="judge")


def builtin_dirs() -> list[Path]:
    """The folders of the judges shipped with judge_rl (source checkout, then wheel data)."""
    pkg = Path(__file__).resolve().parents[1]
    return [pkg.parent / "judges", pkg / "_builtin" / "judges"]


def shadowed_builtin(name_or_path: str | os.PathLike[str]) -> str | None:
    """A one-line notice when ``name_or_path`` resolves to a judge outside judge_rl's own folders
    although a built-in judge of that name exists (a ``./judges/<name>`` or ``$JUDGE_RL_JUDGES``
    folder shadows it), else None.

    >>> shadowed_builtin("pairwise") is None  # in a source checkout: the built-in itself
    True
    """
    name = str(name_or_path)
    if os.sep in name or "/" in name or Path(name).exists():
        return None
    try:
        found = find_spec(name).resolve()
    except ConfigError:
        return None
    for d in builtin_dirs():
        builtin = (d / name / SPEC_FILE).resolve()
        if builtin.is_file() and builtin != found:
            return (
                f"note: judge {name!r} comes from {found.parent}, which shadows the built-in "
                f"judge of the same name ({builtin.parent})"
            )
    return None


def list_judges() -> list[str]:
    """Names of every judge on the search path (first occurrence wins)."""
    names: list[str] = []
    for d in search_path():
        if d.is_dir():
            for sub in sorted(d.iterdir()):
                if (sub / SPEC_FILE).is_file() and sub.name not in names:
                    names.append(sub.name)
    return sorted(names)


# --- reading and validating -------------------------------------------------------------------


def read_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a ``judge.yaml`` (keys and value types; templates are checked when the
    judge is built). Returns the spec with ``name`` filled from the folder when absent.

    A file read before with the same bytes is not parsed again (``judge-rl label`` reads its
    spec five times before judging); each caller gets its own copy."""
    import copy

    path = Path(path)
    key: tuple[Any, ...] | None = None
    try:
        if path.is_file() and path.stat().st_size <= 256 * 1024:
            key = (str(path.resolve()), path.read_bytes())
    except OSError:
        key = None  # let the read below name the problem
    if key is not None and key in _READ:
        return copy.deepcopy(_READ[key])
    data = _read_spec(path)
    if key is not None:
        if len(_READ) >= 64:
            _READ.clear()
        _READ[key] = copy.deepcopy(data)
    return data


_READ: dict[tuple[Any, ...], dict[str, Any]] = {}


def _read_spec(path: Path) -> dict[str, Any]:
    from judge_rl._io import safe_yaml_load

    # Bounded: UTF-8, size, nesting and nodes after alias expansion (no billion laughs).
    data = safe_yaml_load(path, file=str(path))
    if not isinstance(data, dict):
        raise ConfigError("a judge spec must be a mapping of keys to values", file=str(path))
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(
            f"kind must be one of {', '.join(KINDS)}, not {kind!r}", file=str(path), setting="kind"
        )
    check_keys(data, kind, file=str(path))
    if "version" not in data:
        raise ConfigError("every judge spec needs a version", file=str(path), setting="version")
    data["version"] = str(data["version"])
    data.setdefault("name", path.parent.name)
    _check_values(data, file=str(path))
    return data


def check_keys(data: Mapping[str, Any], kind: str, *, file: str | None = None) -> None:
    """Unknown keys are errors, named with the file."""
    allowed = KEYS[kind]
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"unknown key for a {kind} judge (allowed: {', '.join(sorted(allowed))})",
                file=file,
                setting=str(key),
            )


def _check_values(data: dict[str, Any], *, file: str) -> None:
    def bad(key: str, msg: str) -> ConfigError:
        return ConfigError(msg, file=file, setting=key)

    if "order" in data and data["order"] not in ("fixed", "random", "both"):
        raise bad("order", f"must be fixed, random or both, not {data['order']!r}")
    if "inconsistent" in data and data["inconsistent"] not in ("tie", "average"):
        raise bad("inconsistent", f"must be tie or average, not {data['inconsistent']!r}")
    for key in ("backend", "model", "template", "system", "name", "description", "api_key_env"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise bad(key, f"must be text, not {type(data[key]).__name__}")
    if "backend" in data:
        from judge_rl.backends.base import BACKENDS

        if data["backend"] not in BACKENDS and ":" not in str(data["backend"]):
            raise bad(
                "backend",
                f"unknown backend {data['backend']!r} (known: {', '.join(sorted(BACKENDS))})",
            )
    for key in (
        "max_tokens",
        "concurrency",
        "max_retries",
        "quorum",
        "batch_size",
        "max_length",
        "turn",
    ):
        low = 0 if key == "max_retries" else 1
        if key in data and (
            not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < low
        ):
            raise bad(key, f"must be an integer >= {low}, not {data[key]!r}")
    for key in ("temperature", "top_p", "tolerance", "timeout_s", "tie_margin"):
        if key in data and (isinstance(data[key], bool) or not isinstance(data[key], (int, float))):
            raise bad(key, f"must be a number, not {data[key]!r}")
    for key in ("label_probs", "hardened"):
        if key in data and not isinstance(data[key], bool):
            raise bad(key, f"must be true or false, not {data[key]!r}")
    if "verdict" in data:
        from judge_rl.judge.parse import verdict_rule

        try:
            verdict_rule(data["verdict"])
        except ValueError as e:
            raise bad("verdict", str(e)) from None
    if "label_prefix" in data and not isinstance(data["label_prefix"], str):
        raise bad("label_prefix", f"must be a string, not {data['label_prefix']!r}")
    if "label_position" in data and data["label_position"] not in ("auto", "start", "verdict"):
        raise bad(
            "label_position", f"must be auto, start or verdict, not {data['label_position']!r}"
        )
    if "prices" in data:
        prices = data["prices"]
        if not isinstance(prices, dict) or set(prices) - {"input", "output"}:
            raise bad("prices", "must be {input: USD per 1M tokens, output: USD per 1M tokens}")
    if "backend_options" in data and not isinstance(data["backend_options"], dict):
        raise bad("backend_options", "must be a mapping of backend arguments")
    if "scale" in data:
        s = data["scale"]
        if not (
            isinstance(s, list)
            and len(s) == 2
            and all(isinstance(x, int) for x in s)
            and s[0] < s[1]
        ):
            raise bad("scale", f"must be [low, high] integers with low < high, not {s!r}")
    if "criteria" in data:
        crits = data["criteria"]
        if not isinstance(crits, list) or not crits:
            raise bad("criteria", "must be a non-empty list of criteria")
        for i, c in enumerate(crits):
            where = f"criteria[{i}]"
            if not isinstance(c, dict):
                raise bad(where, "must be a mapping with name and question")
            for k in c:
                if k not in CRITERION_KEYS:
                    raise bad(
                        f"{where}.{k}",
                        f"unknown key (allowed: {', '.join(sorted(CRITERION_KEYS))})",
                    )
            for k in ("name", "question"):
                if not isinstance(c.get(k), str) or not c.get(k):
                    raise bad(f"{where}.{k}", "is required (a string)")
            if c.get("type", "yesno") not in ("yesno", "scale5"):
                raise bad(f"{where}.type", f"must be yesno or scale5, not {c.get('type')!r}")
            good = c.get("good", "yes" if c.get("type", "yesno") == "yesno" else "high")
            allowed = ("yes", "no") if c.get("type", "yesno") == "yesno" else ("high", "low")
            if good not in allowed:
                raise bad(f"{where}.good", f"must be {' or '.join(allowed)}, not {good!r}")
    if "rubric_mode" in data and data["rubric_mode"] not in ("joint", "per_criterion"):
        raise bad("rubric_mode", f"must be joint or per_criterion, not {data['rubric_mode']!r}")
    if data["kind"] in ("pairwise", "reference", "pointwise", "rubric"):
        for key in ("template", "backend", "model"):
            if key not in data:
                raise bad(key, f"is required for a {data['kind']} judge")
    if data["kind"] == "jury":
        members = data.get("members")
        if (
            not isinstance(members, list)
            or not members
            or not all(isinstance(m, str) for m in members)
        ):
            raise bad("members", "must be a non-empty list of judge names or paths")
        if data.get("aggregate", "majority") not in ("majority", "mean"):
            raise bad("aggregate", f"must be majority or mean, not {data.get('aggregate')!r}")
    if data["kind"] == "reward_model" and "path" not in data:
        raise bad("path", "is required for a reward_model judge")


def validate_spec(
    name_or_path: str | os.PathLike[str], *, _seen: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Everything :func:`load_judge` checks except building the backend (no model is loaded, no
    endpoint contacted): keys, values, template variables, jury members (cycles included), files
    named."""
    path = find_spec(name_or_path)
    here = str(path.resolve())
    if here in _seen:
        raise ConfigError(
            "jury members form a cycle (a jury cannot contain itself, even indirectly)",
            file=str(path),
            setting="members",
        )
    if len(_seen) > 16:
        raise ConfigError("juries nested more than 16 deep", file=str(path), setting="members")
    spec = read_spec(path)
    kind = spec["kind"]
    if kind in ("pairwise", "reference", "pointwise", "rubric"):
        from judge_rl.judge.llm import compile_template

        text, tfile = _template_text(spec, path)
        compile_template(text, kind, file=tfile, mode=spec.get("rubric_mode", "joint"))
    elif kind == "jury":
        for m in spec["members"]:
            mpath = _relative(path, m) if ("/" in m or m.endswith(".yaml")) else m
            if m == spec["name"]:
                raise ConfigError("a jury cannot contain itself", file=str(path), setting="members")
            validate_spec(mpath, _seen=(*_seen, here))
    return spec


# --- building judges --------------------------------------------------------------------------


def load_judge(
    name_or_path: str | os.PathLike[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    cache: Any = None,
    budget: Budget | None = None,
) -> Any:
    """Build a judge from its spec.

    Args:
        name_or_path: A judge name on the search path, or a ``judge.yaml`` / its folder.
        overrides: Spec keys to replace (``model``, ``backend``, ``base_urls``, ``concurrency``,
            ``order``, …); ``None`` values are ignored.
        cache: A :class:`~judge_rl.judge.cache.JudgmentCache`, a path to one, ``"default"`` for
            the shared cache (``$JUDGE_RL_CACHE/judgments.sqlite``), or None for no cache.
        budget: A :class:`Budget` shared by every model call, or None.

    Returns:
        A judge implementing :class:`~judge_rl.judge.base.Judge`. LLM judges come wrapped:
        ``OrderedJudge(CachedJudge(LLMJudge))``.

    Raises:
        ConfigError: unknown judge, unknown key, bad value, template problems, backend problems.
    """
    path = find_spec(name_or_path)
    spec = read_spec(path)
    return build_judge(spec, path, overrides=overrides, cache=_as_cache(cache), budget=budget)


def _as_cache(cache: Any) -> Any:
    if cache is None or cache is False:
        return None
    from judge_rl.judge.cache import JudgmentCache

    if isinstance(cache, JudgmentCache):
        return cache
    if cache == "default" or cache is True:
        return JudgmentCache()
    return JudgmentCache(cache)


def build_judge(
    spec: dict[str, Any],
    path: Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    cache: Any = None,
    budget: Budget | None = None,
    pool: dict[str, Any] | None = None,
    _seen: tuple[str, ...] = (),
) -> Any:
    """Build a judge from an already validated spec (see :func:`load_judge`). ``pool`` shares
    backends between jury members that use the same model."""
    pool = {} if pool is None else pool
    spec = dict(spec)
    # How the spec itself labels (before overrides: an audit builds its judge with order=fixed
    # and must still evaluate the rule the judge labels with).
    labels_with = {
        "order": spec.get("order", "fixed"),
        "inconsistent": spec.get("inconsistent", "tie"),
        "order_seed": int(spec.get("order_seed", 0)),
    }
    kind = spec["kind"]
    file = str(path)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in OVERRIDE_KEYS:
            raise ConfigError(f"cannot override {key!r}", setting=key)
        if key in KEYS[kind] or kind == "jury":
            spec[key] = value
    if overrides:
        _check_values(spec, file=file)
    name = str(spec["name"])
    version = str(spec["version"])

    if kind in ("pairwise", "reference", "pointwise", "rubric"):
        from judge_rl.judge.cache import CachedJudge
        from judge_rl.judge.order import OrderedJudge

        llm = _build_llm(spec, path, budget, pool)
        wrapped = CachedJudge(llm, cache)
        ordered = OrderedJudge(
            wrapped,
            spec.get("order", "fixed"),
            seed=int(spec.get("order_seed", 0)),
            inconsistent=spec.get("inconsistent", "tie"),
        )
        ordered.labels_with = labels_with
        return ordered
    if kind == "verifier":
        from judge_rl.judge.verify import VerifierJudge

        kw: dict[str, Any] = {"name": name, "version": version}
        for key in ("mode", "tolerance", "timeout_s"):
            if key in spec:
                kw[key] = spec[key]
        return VerifierJudge(**kw)
    if kind == "human":
        from judge_rl.judge.human import HumanFileJudge

        fpath = spec.get("path")
        resolved = None if fpath is None else _relative(path, fpath)
        if resolved is not None and not resolved.exists():
            raise ConfigError(
                f"preference file {resolved} does not exist", file=file, setting="path"
            )
        return HumanFileJudge(resolved, fmt=spec.get("format"), name=name, version=version)
    if kind == "jury":
        from judge_rl.judge.jury import Jury

        member_over = dict(overrides or {})
        for key in ("order", "inconsistent", "order_seed"):
            if key in spec:
                member_over[key] = spec[key]
        members = []
        for m in spec["members"]:
            mpath = _relative(path, m) if ("/" in m or m.endswith(".yaml")) else m
            if str(mpath) == str(path) or m == name:
                raise ConfigError("a jury cannot contain itself", file=file, setting="members")
            mspec_path = find_spec(mpath)
            here = str(Path(path).resolve())
            if str(mspec_path.resolve()) in (*_seen, here) or len(_seen) > 16:
                raise ConfigError(
                    "jury members form a cycle (a jury cannot contain itself, even indirectly)",
                    file=file,
                    setting="members",
                )
            mspec = read_spec(mspec_path)
            members.append(
                build_judge(
                    mspec,
                    mspec_path,
                    overrides=member_over,
                    cache=cache,
                    budget=budget,
                    pool=pool,
                    _seen=(*_seen, here),
                )
            )
        return Jury(
            members,
            aggregate=spec.get("aggregate", "majority"),
            name=name,
            version=version,
            quorum=int(spec.get("quorum", 1)),
        )
    if kind == "reward_model":
        from judge_rl.judge.cache import CachedJudge
        from judge_rl.judge.rm import RewardModelJudge

        kw = {k: spec[k] for k in ("device", "batch_size", "max_length", "tie_margin") if k in spec}
        return CachedJudge(
            RewardModelJudge(_relative(path, spec["path"]), name=name, version=version, **kw), cache
        )
    raise ConfigError(f"unknown kind {kind!r}", file=file, setting="kind")  # pragma: no cover


MAX_TEMPLATE_BYTES = 1 << 20
"""Largest prompt template read from a file (1 MiB)."""


def _template_text(spec: Mapping[str, Any], path: Path) -> tuple[str, str]:
    """``(template text, file it came from)``: inline text, or a regular UTF-8 file of at most
    :data:`MAX_TEMPLATE_BYTES` next to the spec (a device, FIFO or folder is refused)."""
    from judge_rl._io import read_bytes_limited
    from judge_rl.errors import DataError

    tmpl = str(spec["template"])
    if "\n" in tmpl or "{{" in tmpl:
        return tmpl, str(path)
    tpath = _relative(path, tmpl)

    try:
        data = read_bytes_limited(tpath, MAX_TEMPLATE_BYTES, "a 1 MiB cap on templates")
    except DataError as e:
        raise ConfigError(
            f"template {tpath}: {e.reason}", file=str(path), setting="template"
        ) from None
    try:
        return data.decode("utf-8"), str(tpath)
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"template {tpath} is not UTF-8 text (byte {e.start})",
            file=str(path),
            setting="template",
        ) from None


def _relative(spec_path: Path, value: str | os.PathLike[str]) -> Path:
    p = Path(os.path.expanduser(str(value)))
    if p.is_absolute() or p.exists():
        return p
    return spec_path.parent / p


def _build_llm(
    spec: dict[str, Any], path: Path, budget: Budget | None, pool: dict[str, Any] | None = None
) -> Any:
    from judge_rl.judge.llm import Criterion, LLMJudge

    file = str(path)
    template_text, template_file = _template_text(spec, path)
    criteria = [
        Criterion(
            name=c["name"],
            question=c["question"],
            type=c.get("type", "yesno"),
            weight=float(c.get("weight", 1.0)),
            good=c.get("good", "yes" if c.get("type", "yesno") == "yesno" else "high"),
        )
        for c in spec.get("criteria", [])
    ]
    backend = make_backend(spec, file=file, pool=pool)
    try:
        return LLMJudge(
            backend,
            template_text,
            name=str(spec["name"]),
            kind=spec["kind"],
            version=str(spec["version"]),
            system=spec.get("system"),
            template_file=template_file,
            max_tokens=int(spec.get("max_tokens", 512)),
            temperature=float(spec.get("temperature", 0.0)),
            top_p=float(spec.get("top_p", 1.0)),
            seed=spec.get("seed"),
            label_probs=bool(spec.get("label_probs", False)),
            hardened=bool(spec.get("hardened", False)),
            scale=tuple(spec.get("scale", (1, 10))),  # type: ignore[arg-type]
            criteria=criteria,
            rubric_mode=spec.get("rubric_mode", "joint"),
            tie_margin=float(spec.get("tie_margin", 0.0)),
            prices=spec.get("prices"),
            expected_completion_tokens=spec.get("expected_completion_tokens"),
            budget=budget,
            verdict=spec.get("verdict"),
            label_prefix=spec.get("label_prefix"),
            label_position=spec.get("label_position", "auto"),
            turn=spec.get("turn"),
        )
    except ConfigError as e:
        if e.file:
            raise
        raise ConfigError(str(e).split(": ", 1)[-1], file=file, setting=e.setting) from None


def make_backend(
    spec: Mapping[str, Any], *, file: str | None = None, pool: dict[str, Any] | None = None
) -> Any:
    """Instantiate the spec's backend with the arguments it accepts.

    ``backend_options`` are passed as given (an argument the backend does not take is an error);
    the generic keys (``base_urls``, ``api_key_env``, ``concurrency``, ``timeout_s``,
    ``max_retries``, ``prices``) are passed when the backend takes them.
    """
    from judge_rl.backends.base import BACKENDS, load_backend

    name = str(spec["backend"])
    target = BACKENDS.get(name, name)
    cls = _backend_class(target, file)
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {"model": spec["model"]}
    generic: dict[str, Any] = {}
    urls = spec.get("base_urls", spec.get("base_url"))
    if urls is not None:
        generic["base_urls"] = [urls] if isinstance(urls, str) else list(urls)
    for key in ("api_key_env", "concurrency", "timeout_s", "max_retries", "prices"):
        if key in spec:
            generic[key] = spec[key]
    for key, value in generic.items():
        if key in params:
            kwargs[key] = value
        else:
            log.warning("backend %s takes no %r; ignored", name, key)
    for key, value in (spec.get("backend_options") or {}).items():
        if not (takes_any or key in params):
            raise ConfigError(
                f"backend {name!r} takes no argument {key!r} "
                f"(it takes: {', '.join(k for k in params if k != 'self')})",
                file=file,
                setting=f"backend_options.{key}",
            )
        kwargs[key] = value
    pool_key = canonical_json([name, kwargs])
    if pool is not None and pool_key in pool:
        return pool[pool_key]  # jury members on the same model share one loaded backend
    try:
        backend = load_backend(name, **kwargs)
        if pool is not None:
            pool[pool_key] = backend
        return backend
    except ConfigError as e:
        if e.file or file is None:
            raise
        raise ConfigError(
            str(e).split(": ", 1)[-1], file=file, setting=e.setting or "backend"
        ) from None
    except TypeError as e:
        raise ConfigError(f"bad backend arguments: {e}", file=file, setting="backend") from None


def _backend_class(target: str, file: str | None) -> Any:
    import importlib

    from judge_rl.backends.base import BACKENDS

    if ":" not in target:
        raise ConfigError(f"unknown backend {target!r}", file=file, setting="backend")
    mod_name, cls_name = target.split(":", 1)
    # A custom backend names a class in an importable module: refuse anything that is not
    # module:Class, and (below) anything that is not a class with ``chat``, before it is called.
    if target not in BACKENDS.values() and not all(
        part.isidentifier() for part in (*mod_name.split("."), cls_name)
    ):
        raise ConfigError(f"backend {target!r} is not module:Class", file=file, setting="backend")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(
            f"backend {target!r} is not available: {e}", file=file, setting="backend"
        ) from None
    cls = getattr(mod, cls_name, None)
    if not isinstance(cls, type) or not callable(getattr(cls, "chat", None)):
        raise ConfigError(
            f"backend {target!r} is not a backend class (a class with a chat method)",
            file=file,
            setting="backend",
        )
    return cls


__all__ = [
    "KEYS",
    "KINDS",
    "SPEC_FILE",
    "build_judge",
    "check_keys",
    "find_spec",
    "list_judges",
    "load_judge",
    "make_backend",
    "read_spec",
    "search_path",
    "shadowed_builtin",
    "validate_spec",
]
