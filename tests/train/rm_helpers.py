"""Shared pieces of the reward-model tests: a planted-preference data set and a tiny model.

Imported by tests/train/test_reward_model*.py (by path: the test run uses importlib mode) and
run as a script by the DDP test to write the data file.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "ran",
    "far",
    "away",
    "to",
    "see",
    "its",
    "old",
    "friend",
    "dog",
    "who",
    "lived",
    "by",
    "the",
    "sea",
    "with",
    "one",
    "red",
    "boat",
]
MARKER = "banana"


def planted_records(n: int, seed: int = 0, p_chosen: float = 1.0):
    """Pairs that differ in one word: chosen ends with the marker word, rejected does not."""
    from judge_rl.types import PreferenceRecord

    rng = random.Random(seed)

    def sent(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    out = []
    for i in range(n):
        base = sent(rng.randint(2, 8))
        out.append(
            PreferenceRecord(
                prompt=f"Q{i % 7}: {sent(3)}\nA:",
                chosen=f" {base} {MARKER}",
                rejected=f" {base} {rng.choice(WORDS)}",
                p_chosen=p_chosen,
            )
        )
    return out


def tiny_reward_model(seed: int = 0, hidden_size: int = 32, num_layers: int = 1):
    """(LlamaForSequenceClassification, tokenizer): a tiny random backbone with a scalar head."""
    from judge_rl.models import tiny_reward_model as build
    from judge_rl.models import tiny_tokenizer

    tok = tiny_tokenizer()
    return build(tok, seed=seed, hidden_size=hidden_size, num_layers=num_layers), tok


def save_tiny_reward_backbone(path: Path, seed: int = 0) -> Path:
    model, tok = tiny_reward_model(seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


if __name__ == "__main__":  # python rm_helpers.py OUT.jsonl N  -> planted pairs file
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from judge_rl.data import write_preferences

    write_preferences(planted_records(int(sys.argv[2])), sys.argv[1])
