"""judge_rl: RLAIF and evaluation with AI judges.

Heavy libraries (torch, transformers, vllm, openai) are imported where used, never here; even the
core records (pydantic) load on first use, so ``judge-rl --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ConfigError": "judge_rl.errors",
    "DataError": "judge_rl.errors",
    "JudgeRLError": "judge_rl.errors",
    "Battle": "judge_rl.types",
    "Candidate": "judge_rl.types",
    "Comparison": "judge_rl.types",
    "JudgeCall": "judge_rl.types",
    "JudgeFingerprint": "judge_rl.types",
    "Judgment": "judge_rl.types",
    "PreferenceRecord": "judge_rl.types",
    "PromptItem": "judge_rl.types",
    "Score": "judge_rl.types",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'judge_rl' has no attribute {name!r}")
