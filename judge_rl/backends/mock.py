"""A scripted backend for tests and examples (Inspect's ``mockllm/model``, lm-eval's ``dummy``).

Registered as ``mock`` like any backend, so a spec can say ``backend: mock``. It answers judge
requests from the structured ``request.metadata["judge"]`` that :class:`judge_rl.judge.LLMJudge`
attaches (task, responses in shown order, reference, scale, criteria), following a rule:

- ``longer`` / ``shorter``: the longer (shorter) response wins; equal lengths tie;
- ``first`` / ``second``: always the first (second) position: a maximally position-biased judge;
- ``tie``: always a tie;
- ``contains:X``: the response containing ``X`` wins (both or neither: tie);
- ``reference``: the response containing the reference answer wins;
- ``random``: a coin flip seeded by the request's content.

It can also answer with fixed ``text`` or a callable ``fn(request) -> str``, sleep a fixed or
random latency, and inject faults (``faults={"timeout": 0.1, "parse": 0.05, ...}``): transport
kinds come back as ``ChatResult.error``, ``parse`` as an unparseable reply. Faults are chosen by
a hash of the request content and ``seed``, so the same request faults the same way every run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from judge_rl.backends.base import ChatRequest, ChatResult
from judge_rl.errors import ConfigError, JudgeRLError

RULES = ("longer", "shorter", "first", "second", "tie", "random", "reference")
FAULT_KINDS = (
    "rate_limit",
    "timeout",
    "server",
    "connection",
    "malformed",
    "empty",
    "backend",
    "parse",
)


class MockBackend:
    """Scripted chat backend. All arguments are optional; the default prefers the longer response.

    Args:
        model: Name recorded in fingerprints.
        rule: One of :data:`RULES` or ``"contains:TEXT"``.
        text: Fixed reply to every request (overrides ``rule``).
        fn: Callable ``fn(request) -> str`` giving the reply (overrides ``rule`` and ``text``).
        latency_s: Seconds per request, or ``[lo, hi]`` for a uniform random latency.
        faults: ``{kind: rate}`` with kinds from :data:`FAULT_KINDS`; rates sum to at most 1.
        seed: Seed of the ``random`` rule and of fault selection.
        label_probs: Answer ``ChatRequest.label_probs`` with probabilities (``confidence`` on the
            chosen label, the rest shared equally); ``False`` behaves like a server without them.
        confidence: Probability put on the chosen label.
        prices: USD per million tokens, ``{"input": x, "output": y}``; tokens are chars / 4.
        cut_at_max_tokens: Cut each reply at the request's ``max_tokens`` (finish reason
            ``length``), as a server does; off by default (a fixed ``text`` comes back whole).
        concurrency: Requests served at once.
        unreachable: Raise :class:`JudgeRLError` on the first call, like an endpoint that is down.
    """

    name = "mock"

    def __init__(
        self,
        model: str = "mock",
        rule: str = "longer",
        text: str | None = None,
        fn: Callable[[ChatRequest], str] | None = None,
        latency_s: float | Sequence[float] = 0.0,
        faults: dict[str, float] | None = None,
        seed: int = 0,
        label_probs: bool = True,
        confidence: float = 0.8,
        prices: dict[str, float] | None = None,
        concurrency: int = 64,
        unreachable: bool = False,
        batch_size: int = 1,
        cut_at_max_tokens: bool = False,
    ) -> None:
        if rule not in RULES and not rule.startswith("contains:"):
            raise ConfigError(
                f"unknown mock rule {rule!r} (known: {', '.join(RULES)}, contains:TEXT)",
                setting="rule",
            )
        faults = dict(faults or {})
        for kind, rate in faults.items():
            if kind not in FAULT_KINDS:
                raise ConfigError(
                    f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})",
                    setting="faults",
                )
            if not 0 <= float(rate) <= 1:
                raise ConfigError(f"fault rate {rate!r} is not in [0, 1]", setting="faults")
        if sum(faults.values()) > 1 + 1e-9:
            raise ConfigError("fault rates sum to more than 1", setting="faults")
        self.model = model
        self.rule = rule
        self.text = text
        self.fn = fn
        self.latency_s = latency_s
        self.faults = faults
        self.seed = seed
        self.label_probs = label_probs
        self.confidence = confidence
        from judge_rl.judge.budget import check_prices

        self.prices = check_prices(prices) or {}
        self.concurrency = concurrency
        self.unreachable = unreachable
        self.batch_size = batch_size
        self.cut_at_max_tokens = bool(cut_at_max_tokens)
        self.calls = 0
        """Requests answered (faults included)."""
        self.requests: list[ChatRequest] = []
        """Every request seen, in arrival order."""
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random(seed)

    async def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if self.unreachable:
            raise JudgeRLError(f"mock backend {self.model!r} is unreachable (unreachable: true)")
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:  # a semaphore belongs to one event loop
            self._sem = asyncio.Semaphore(max(1, self.concurrency))
            self._loop = loop
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def aclose(self) -> None:
        return None

    # --- one request ------------------------------------------------------------------------

    async def _one(self, req: ChatRequest) -> ChatResult:
        assert self._sem is not None
        async with self._sem:
            self.calls += 1
            self.requests.append(req)
            latency = self._latency()
            if latency > 0:
                await asyncio.sleep(latency)
            prompt_tokens = sum(len(m.get("content", "")) for m in req.messages) // 4 + 1
            fault = self._fault(req)
            if fault and fault != "parse":
                return ChatResult(
                    error=f"{fault}: injected by the mock backend",
                    latency_s=latency,
                    prompt_tokens=0,
                )
            if fault == "parse":
                texts, probs = ["I would rather not pick one."] * req.n, None
            else:
                texts, probs = self._answer(req)
            finish = ["stop"] * len(texts)
            if self.cut_at_max_tokens:  # like a server: at most max_tokens per sample
                cap = max(1, int(req.max_tokens))
                finish = ["length" if len(t) // 4 + 1 > cap else "stop" for t in texts]
                texts = [t if len(t) // 4 + 1 <= cap else t[: 4 * cap - 4] for t in texts]
            completion_tokens = sum(len(t) // 4 + 1 for t in texts)
            cost = (
                prompt_tokens * float(self.prices.get("input", 0.0))
                + completion_tokens * float(self.prices.get("output", 0.0))
            ) / 1e6
            return ChatResult(
                texts=texts,
                label_probs=probs if (req.label_probs and self.label_probs) else None,
                finish_reasons=finish,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost=cost,
                latency_s=latency,
            )

    def _latency(self) -> float:
        lat = self.latency_s
        if isinstance(lat, (int, float)):
            return float(lat)
        lo, hi = (float(x) for x in lat)
        return self._rng.uniform(lo, hi)

    def _unit(self, req: ChatRequest, salt: str) -> float:
        """A number in [0, 1) fixed by the request's content, ``seed`` and ``salt``."""
        blob = json.dumps([self.seed, salt, req.messages], sort_keys=True).encode()
        return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") / 2**64

    def _fault(self, req: ChatRequest) -> str | None:
        if not self.faults:
            return None
        u = self._unit(req, "fault")
        acc = 0.0
        for kind in sorted(self.faults):
            acc += float(self.faults[kind])
            if u < acc:
                return kind
        return None

    def _answer(self, req: ChatRequest) -> tuple[list[str], dict[str, float] | None]:
        if self.fn is not None:
            return [self.fn(req)] * req.n, None
        if self.text is not None:
            return [self.text] * req.n, None
        info: dict[str, Any] = req.metadata.get("judge") or {}
        task = info.get("task")
        if task == "pairwise":
            label = self._pairwise(req, info)
            word = {"A": "Response A", "B": "Response B", "C": "Neither"}[label]
            text = f"{word} is better under the rule '{self.rule}'.\n[[{label}]]"
            return [text] * req.n, self._probs(req.label_probs, label)
        if task == "pointwise":
            lo, hi = info.get("scale", (1, 10))
            value = self._pointwise(req, info, lo, hi)
            return [f"Score under the rule '{self.rule}'.\nRating: [[{value}]]"] * req.n, (
                self._probs(req.label_probs, str(value))
            )
        if task == "yesno":
            yes = self._flag(req, info)
            return ["[[YES]]" if yes else "[[NO]]"] * req.n, self._probs(
                req.label_probs, "Yes" if yes else "No"
            )
        if task == "rubric":
            flag = self._flag(req, info)
            answers = {
                name: ("yes" if flag else "no") if typ == "yesno" else (5 if flag else 3)
                for name, typ in info.get("criteria", [])
            }
            return [json.dumps(answers)] * req.n, None
        # Generation: a deterministic echo, different per sample.
        last = req.messages[-1].get("content", "") if req.messages else ""
        return [f"mock answer {i} to: {last[:80]}" for i in range(req.n)], None

    def _pairwise(self, req: ChatRequest, info: dict[str, Any]) -> str:
        a, b = (str(x) for x in info.get("responses", ["", ""]))
        rule = self.rule
        if rule == "first":
            return "A"
        if rule == "second":
            return "B"
        if rule == "tie":
            return "C"
        if rule == "random":
            return "A" if self._unit(req, "rule") < 0.5 else "B"
        if rule in ("longer", "shorter"):
            if len(a) == len(b):
                return "C"
            return "A" if (len(a) > len(b)) == (rule == "longer") else "B"
        needle = str(info.get("reference") or "") if rule == "reference" else rule[9:]
        ha, hb = bool(needle) and needle in a, bool(needle) and needle in b
        return "C" if ha == hb else ("A" if ha else "B")

    def _pointwise(self, req: ChatRequest, info: dict[str, Any], lo: int, hi: int) -> int:
        text = str((info.get("responses") or [""])[0])
        if self.rule in ("longer", "shorter"):
            frac = min(1.0, len(text) / 400)
            frac = frac if self.rule == "longer" else 1 - frac
            return int(round(lo + (hi - lo) * frac))
        if self.rule == "random":
            return lo + int(self._unit(req, "rule") * (hi - lo + 1))
        if self.rule.startswith("contains:") or self.rule == "reference":
            return hi if self._flag(req, info) else lo
        return (lo + hi) // 2

    def _flag(self, req: ChatRequest, info: dict[str, Any]) -> bool:
        text = str((info.get("responses") or [""])[0])
        if self.rule.startswith("contains:"):
            return self.rule[9:] in text
        if self.rule == "reference":
            return bool(info.get("reference")) and str(info["reference"]) in text
        if self.rule == "random":
            return self._unit(req, "flag") < 0.5
        return False

    def _probs(self, labels: list[str] | None, chosen: str) -> dict[str, float] | None:
        if not labels:
            return None
        if chosen not in labels:
            return {lbl: 1.0 / len(labels) for lbl in labels}
        rest = (1.0 - self.confidence) / max(1, len(labels) - 1)
        return {lbl: (self.confidence if lbl == chosen else rest) for lbl in labels}


__all__ = ["FAULT_KINDS", "RULES", "MockBackend"]
