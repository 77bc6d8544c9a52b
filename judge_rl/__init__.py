"""judge_rl: RLAIF and evaluation with AI judges.

Heavy libraries (torch, transformers, vllm, openai) are imported where used, never here.
"""

from judge_rl.errors import ConfigError, DataError, JudgeRLError
from judge_rl.types import (
    Battle,
    Candidate,
    Comparison,
    JudgeCall,
    JudgeFingerprint,
    Judgment,
    PreferenceRecord,
    Score,
)

__version__ = "0.1.0"

__all__ = [
    "Battle",
    "Candidate",
    "Comparison",
    "ConfigError",
    "DataError",
    "JudgeCall",
    "JudgeFingerprint",
    "JudgeRLError",
    "Judgment",
    "PreferenceRecord",
    "Score",
    "__version__",
]
