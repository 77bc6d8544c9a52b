"""Preference, candidate and prompt data: read any common format, validate, write TRL-ready files.

Readers auto-detect the format from the first row (or take ``fmt=``), rename columns with
``columns={"ours": "theirs"}``, and validate every row: a bad row raises
:class:`~judge_rl.errors.DataError` naming ``file:line`` and the field, or, with
``skip_invalid=True``, is skipped and listed. See ``docs/data.md`` for every format.

>>> from judge_rl.data import FORMATS
>>> sorted(FORMATS)[:3]
['alpaca-eval', 'candidates', 'conversational']
"""

from judge_rl.data._formats import FORMATS, FormatInfo, gsm8k_final_answer, split_hh
from judge_rl.data._read import (
    ReadResult,
    builtin_prompt_sets,
    detect_format,
    read_candidates,
    read_comparisons,
    read_preferences,
    read_prompts,
    records_to_comparisons,
    write_candidates,
    write_preferences,
    write_prompts,
)
from judge_rl.data._rows import iter_jsonl, write_jsonl

__all__ = [
    "FORMATS",
    "FormatInfo",
    "ReadResult",
    "builtin_prompt_sets",
    "detect_format",
    "gsm8k_final_answer",
    "iter_jsonl",
    "read_candidates",
    "read_comparisons",
    "read_preferences",
    "read_prompts",
    "records_to_comparisons",
    "split_hh",
    "write_candidates",
    "write_jsonl",
    "write_preferences",
    "write_prompts",
]
