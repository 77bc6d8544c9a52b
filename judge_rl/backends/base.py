"""Model access for judges and generation. Backends are named by string and imported lazily.

A backend turns chat requests into results. It never raises for a per-request failure: the
result carries ``error`` (``kind: detail``) instead; it raises :class:`judge_rl.errors.JudgeRLError`
only for user errors that make every request fail (bad model path, unreachable endpoint).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from judge_rl.errors import ConfigError
from judge_rl.types import Message

BACKENDS: dict[str, str] = {
    "openai": "judge_rl.backends.openai:OpenAIBackend",
    "hf": "judge_rl.backends.hf:HFBackend",
    "vllm": "judge_rl.backends.vllm:VLLMBackend",
    "mock": "judge_rl.backends.mock:MockBackend",
}
"""name -> "module:Class"; imported only when chosen (lm-eval's MODEL_MAPPING pattern)."""


@dataclass
class ChatRequest:
    """One chat completion request."""

    messages: list[Message]
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    """Number of samples (generation)."""
    seed: int | None = None
    stop: list[str] | None = None
    label_probs: list[str] | None = None
    """Ask for the probability of each of these single-token labels (e.g. ["A", "B", "C"]) at the
    verdict position: right after the generation prompt plus ``metadata["label_prefix"]`` (the
    reply prefilled up to the verdict slot, on backends that continue an assistant message:
    ``supports_prefill``); backends that cannot give them return None."""
    metadata: dict[str, Any] = field(default_factory=dict)
    response_format: dict[str, Any] | None = None
    """Structured output, OpenAI's ``response_format`` shape (``{"type": "json_schema",
    "json_schema": {...}}``); set only for backends that declare ``supports_response_format``
    (a judge with ``verdict: json`` asks for its verdict field this way)."""


@dataclass
class ChatResult:
    """One result. ``texts`` has ``n`` entries when ``error`` is None."""

    texts: list[str] = field(default_factory=list)
    error: str | None = None
    """``kind: detail`` with kind in: rate_limit, timeout, server, connection, malformed, empty,
    backend."""
    label_probs: dict[str, float] | None = None
    label_mass: float | None = None
    """Total probability of the label tokens before renormalising (None when unknown)."""
    finish_reasons: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0

    @property
    def text(self) -> str | None:
        return self.texts[0] if self.texts else None


class Backend(Protocol):
    """What judges and ``judge-rl generate`` need from a model."""

    name: str
    model: str

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request, in order. Concurrency and retries are the backend's job."""
        ...

    async def aclose(self) -> None: ...


def load_backend(name: str, **kwargs: Any) -> Backend:
    """Instantiate a backend by registry name (or ``"module:Class"``)."""
    target = BACKENDS.get(name, name)
    if ":" not in target:
        raise ConfigError(
            f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})", setting="backend"
        )
    mod_name, cls_name = target.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(f"backend {name!r} is not available: {e}", setting="backend") from None
    cls = getattr(mod, cls_name, None)
    if not isinstance(cls, type) or not callable(getattr(cls, "chat", None)):
        raise ConfigError(
            f"backend {name!r} is not a backend class (a class with a chat method)",
            setting="backend",
        )
    return cls(**kwargs)  # type: ignore[no-any-return]
