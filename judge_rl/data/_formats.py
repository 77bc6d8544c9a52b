"""What a row means: format detection, field validation and per-format conversion.

Each converter takes one row (a dict whose columns have already been renamed by the user's
``columns`` mapping) and returns records, or raises :class:`RowError` naming the field. The
drivers in :mod:`judge_rl.data._read` turn a ``RowError`` into a :class:`~judge_rl.errors.DataError`
with ``file:line`` (or a skipped-row entry with ``skip_invalid=True``).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from judge_rl._io import content_hash, limit
from judge_rl.data._rows import type_name
from judge_rl.types import Message, PreferenceRecord, Prompt

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
ROLES = ("system", "user", "assistant", "tool", "developer")

PROMPT_KEYS = ("prompt", "question", "instruction", "query", "input")
RESPONSE_KEYS = ("response", "completion", "output", "answer_text")
SOURCE_KEYS = ("source", "model", "model_id", "generator", "policy")
LABEL_KEYS = ("winner", "label", "preference", "choice", "p_a")
THUMBS_KEYS = ("thumbs", "thumb", "vote", "feedback", "liked", "label")
RATING_KEYS = ("rating", "score", "stars")
RANKED_KEYS = ("responses", "ranked_responses", "completions")


@dataclass(frozen=True)
class FormatInfo:
    """One supported input format."""

    name: str
    kind: str
    """preferences | candidates | prompts"""
    summary: str


FORMATS: dict[str, FormatInfo] = {
    f.name: f
    for f in (
        FormatInfo("trl", "preferences", "TRL standard: prompt, chosen, rejected (text)"),
        FormatInfo(
            "conversational",
            "preferences",
            "TRL conversational: chosen/rejected (and prompt) as lists of {role, content}",
        ),
        FormatInfo(
            "trl-implicit", "preferences", "TRL implicit prompt: chosen, rejected sharing a prefix"
        ),
        FormatInfo(
            "hh-rlhf",
            "preferences",
            "Anthropic HH-RLHF: chosen, rejected as Human:/Assistant: transcripts",
        ),
        FormatInfo(
            "pairwise", "preferences", "prompt, response_a, response_b, winner (a/b/tie or P(a))"
        ),
        FormatInfo("ranked", "preferences", "prompt, responses[] best to worst -> K(K-1)/2 pairs"),
        FormatInfo(
            "thumbs", "preferences", "prompt, response, thumbs up/down -> pairs within a prompt"
        ),
        FormatInfo("ratings", "preferences", "prompt, response, rating -> pairs with a margin"),
        FormatInfo(
            "alpaca-eval",
            "preferences",
            "AlpacaEval annotations: instruction, output_1, output_2, preference",
        ),
        FormatInfo(
            "mt-bench-answers",
            "candidates",
            "MT-Bench answers: question_id, model_id, choices[].turns",
        ),
        FormatInfo(
            "candidates",
            "candidates",
            "candidates as written by judge-rl generate / write_candidates",
        ),
        FormatInfo(
            "mt-bench-questions", "prompts", "MT-Bench questions: question_id, category, turns[]"
        ),
        FormatInfo("gsm8k", "prompts", "GSM8K: question, answer (final answer after ####)"),
        FormatInfo(
            "prompts", "prompts", "prompt sets: prompt|question|instruction [, reference, category]"
        ),
    )
}

PREFERENCE_FORMATS = tuple(n for n, f in FORMATS.items() if f.kind == "preferences")
GROUPED_FORMATS = ("thumbs", "ratings")


class RowError(Exception):
    """A row that cannot be converted; ``field`` names the offending column when known."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field


def file_label(path: str) -> str:
    """The file's base name as valid text: bytes of a non-UTF-8 file name become U+FFFD (a
    surrogate-escaped name could not be written to a UTF-8 output).

    >>> file_label("/data/" + chr(0xDCFF) + "x.jsonl") == chr(0xFFFD) + "x.jsonl"
    True
    """
    name = os.path.basename(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(name).decode("utf-8", "replace")
    return name


@dataclass
class Ctx:
    """Where a row came from (for provenance and for CSV-specific decoding)."""

    file: str
    line: int
    fmt: str
    tabular: bool = False
    """CSV/TSV: every cell is text; JSON lists of messages are decoded from text cells."""

    def provenance(self, **extra: Any) -> dict[str, Any]:
        prov: dict[str, Any] = {
            "file": file_label(self.file),
            "line": self.line,
            "format": self.fmt,
        }
        prov.update({k: v for k, v in extra.items() if v is not None})
        return prov


# ---------------------------------------------------------------------------------------------
# column mapping and detection


def apply_columns(row: Mapping[str, Any], columns: Mapping[str, str] | None) -> dict[str, Any]:
    """Rename the file's columns to judge_rl's names: ``columns`` maps ours -> theirs.

    >>> apply_columns({"good": "x", "bad": "y", "q": "z"}, {"chosen": "good", "rejected": "bad", "prompt": "q"})
    {'chosen': 'x', 'rejected': 'y', 'prompt': 'z'}
    """
    out = dict(row)
    if not columns:
        return out
    for ours, theirs in columns.items():
        if theirs in row and ours != theirs:
            out.pop(theirs, None)
            out[ours] = row[theirs]
    return out


def _first_key(row: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for k in keys:
        if k in row:
            return k
    return None


def _looks_like_messages(value: Any) -> bool:
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return True
    return isinstance(value, str) and value.lstrip().startswith("[{")


def detect_row(row: Mapping[str, Any]) -> str | None:
    """The format one row looks like, by its keys (and a peek at values); None when unknown.

    >>> detect_row({"prompt": "q", "chosen": "a", "rejected": "b"})
    'trl'
    >>> detect_row({"chosen": "\\n\\nHuman: hi\\n\\nAssistant: yo", "rejected": "\\n\\nHuman: hi\\n\\nAssistant: no"})
    'hh-rlhf'
    >>> detect_row({"instruction": "q", "output_1": "a", "output_2": "b", "preference": 1})
    'alpaca-eval'
    >>> detect_row({"question_id": 81, "model_id": "m", "choices": [{"turns": ["x"]}]})
    'mt-bench-answers'
    >>> detect_row({"question": "q", "answer": "work #### 7"})
    'gsm8k'
    """
    keys = set(row)
    if {"question_id", "model_id", "choices"} <= keys:
        return "mt-bench-answers"
    if {"question_id", "turns"} <= keys:
        return "mt-bench-questions"
    if {"instruction", "output_1", "output_2"} <= keys:
        return "alpaca-eval"
    if {"chosen", "rejected"} <= keys:
        c, r, p = row.get("chosen"), row.get("rejected"), row.get("prompt")
        if _looks_like_messages(c) or _looks_like_messages(r) or isinstance(p, list):
            return "conversational"
        if "prompt" in keys:
            return "trl"
        if isinstance(c, str) and ASSISTANT in c and HUMAN in c:
            return "hh-rlhf"
        return "trl-implicit"
    if {"response_a", "response_b"} <= keys:
        return "pairwise"
    rk = _first_key(row, RANKED_KEYS)
    if rk is not None and (
        isinstance(row[rk], list) or (isinstance(row[rk], str) and row[rk].lstrip().startswith("["))
    ):
        return "ranked"
    resp = _first_key(row, RESPONSE_KEYS)
    if resp is not None:
        if _first_key(row, RATING_KEYS):
            return "ratings"
        if _first_key(row, THUMBS_KEYS):
            return "thumbs"
        if "prompt_id" in keys or _first_key(row, SOURCE_KEYS):
            return "candidates"
    if {"question", "answer"} <= keys and "####" in str(row.get("answer", "")):
        return "gsm8k"
    if _first_key(row, PROMPT_KEYS) or "turns" in keys:
        return "prompts"
    return None


# ---------------------------------------------------------------------------------------------
# field validation


def require(row: Mapping[str, Any], name: str) -> Any:
    if name not in row:
        raise RowError("missing field", name)
    value = row[name]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise RowError("missing value (null)", name)
    return value


def text_field(row: Mapping[str, Any], name: str) -> str:
    """A non-empty text field."""
    return as_text(require(row, name), name)


def as_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RowError(f"expected text, got {type_name(value)}", name)
    if not value.strip():
        raise RowError("empty", name)
    return value


NOT_JSON = object()


def json_text(text: str, name: str) -> Any:
    """The JSON value written in a text cell (CSV, or Parquet's provenance column), or
    :data:`NOT_JSON` when it is not JSON; bounded like a row (``JUDGE_RL_MAX_JSON_DEPTH``, no lone
    surrogates), else :class:`RowError` naming ``name``.

    >>> json_text('{"a": 1}', "metadata"), json_text("not json", "metadata") is NOT_JSON
    ({'a': 1}, True)
    """
    from judge_rl.data._rows import check_value

    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return NOT_JSON
    bad = check_value(value, text)
    if bad is not None:
        raise RowError(bad, name)
    return value


def _decode_cell(value: Any, ctx: Ctx, *, any_list: bool = False, name: str = "") -> Any:
    """CSV cells are text: decode a JSON list of messages (or, with ``any_list``, any JSON list)
    written there; other text, such as a prompt "[1, 2] sorted?", stays text.

    >>> c = Ctx("f.csv", 2, "trl", tabular=True)
    >>> _decode_cell('[{"role": "user", "content": "hi"}]', c), _decode_cell("[1, 2] sorted?", c)
    ([{'role': 'user', 'content': 'hi'}], '[1, 2] sorted?')
    """
    if ctx.tabular and isinstance(value, str) and value.lstrip().startswith("["):
        decoded = json_text(value, name)
        if decoded is NOT_JSON:
            return value
        if isinstance(decoded, list) and (
            any_list or (decoded and all(isinstance(m, dict) for m in decoded))
        ):
            return decoded
    return value


def as_messages(value: Any, name: str, *, allow_empty: bool = False) -> list[Message]:
    """A non-empty list of ``{role, content}`` messages (extra keys are dropped)."""
    if not isinstance(value, list):
        raise RowError(f"expected a list of messages, got {type_name(value)}", name)
    if not value:
        raise RowError("empty message list", name)
    out: list[Message] = []
    for i, m in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise RowError(f"expected a message object, got {type_name(m)}", where)
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or role not in ROLES:
            raise RowError(f"role must be one of {', '.join(ROLES)}, got {role!r}", where)
        if not isinstance(content, str):
            raise RowError(f"content must be text, got {type_name(content)}", where)
        out.append({"role": role, "content": content})
    if not allow_empty and not any(m["content"].strip() for m in out):
        raise RowError("every message is empty", name)
    return out


def prompt_field(row: Mapping[str, Any], name: str, ctx: Ctx) -> Prompt:
    value = _decode_cell(require(row, name), ctx, name=name)
    if isinstance(value, list):
        return as_messages(value, name)
    return as_text(value, name)


def response_field(row: Mapping[str, Any], name: str, ctx: Ctx) -> str | list[Message]:
    """A response: like a prompt, but it may be empty text (a preferred non-answer is real data:
    4 chosen replies of HH-RLHF harmless-base test are empty). Identical pairs are still errors."""
    value = _decode_cell(require(row, name), ctx, name=name)
    if isinstance(value, list):
        return as_messages(value, name, allow_empty=True)
    if not isinstance(value, str):
        raise RowError(f"expected text, got {type_name(value)}", name)
    return value


def as_number(value: Any, name: str) -> float:
    """A finite number (numeric text accepted, for CSV cells)."""
    if isinstance(value, bool):
        raise RowError(f"expected a number, got {type_name(value)}", name)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise RowError(f"expected a number, got {value[:40]!r}", name) from None
    if not isinstance(value, int | float):
        raise RowError(f"expected a number, got {type_name(value)}", name)
    try:
        v = float(value)
    except OverflowError:
        raise RowError("number too large", name) from None
    if not math.isfinite(v):
        raise RowError("expected a finite number", name)
    return v


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def extras(row: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """Columns a converter did not use: kept in provenance so nothing is lost."""
    skip = set(used)
    return {k: _jsonable(v) for k, v in row.items() if k not in skip and v is not None}


def check_distinct(chosen: Any, rejected: Any) -> None:
    if chosen == rejected:
        raise RowError("chosen and rejected are identical", "rejected")


def prompt_key(prompt: Prompt) -> str:
    """A stable id for a prompt without one: a hash of its content.

    >>> prompt_key("What is 2+2?") == prompt_key("What is 2+2?")
    True
    """
    return "q-" + content_hash(prompt, 12)


def _optional_str(row: Mapping[str, Any], name: str) -> str:
    v = row.get(name)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool | dict | list):
        raise RowError(f"expected text or a number, got {type_name(v)}", name)
    return str(v)


# ---------------------------------------------------------------------------------------------
# prefix splitting (HH-RLHF and TRL's implicit prompt)


def common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search on slices: C-speed comparisons,
    unlike ``os.path.commonprefix``'s per-character loop).

    >>> common_prefix_len("abcd", "abxy"), common_prefix_len("", "a"), common_prefix_len("ab", "ab")
    (2, 0, 2)
    """
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str, bool]:
    """Split two HH-RLHF transcripts into (prompt, chosen reply, rejected reply, differs_earlier).

    The prompt is the shared transcript up to and including the last ``"\\n\\nAssistant:"`` that
    both share; the replies are the rest, so ``prompt + reply`` is the original transcript. For
    2,307 of the 2,312 harmless-base test pairs this is simply "up to the last Assistant turn".
    In the other 5, one reply itself contains ``"\\n\\nAssistant:"`` or ``"Human:"`` text (the
    crowdworker's reply ran on), so splitting each transcript at its own last marker would give two
    different prompts; splitting at the last *shared* marker keeps one prompt and puts the whole
    divergent tail in the replies (``differs_earlier=True``, kept in provenance as ``hh_split``).

    >>> split_hh("\\n\\nHuman: hi\\n\\nAssistant: hello", "\\n\\nHuman: hi\\n\\nAssistant: go away")
    ('\\n\\nHuman: hi\\n\\nAssistant:', ' hello', ' go away', False)
    """
    n = common_prefix_len(chosen, rejected)
    cut = chosen.rfind(ASSISTANT, 0, n)
    if cut < 0:
        raise RowError('chosen and rejected share no "\\n\\nAssistant:" turn', "chosen")
    end = cut + len(ASSISTANT)
    prompt = chosen[:end]
    c, r = chosen[end:], rejected[end:]
    own_c = chosen.rfind(ASSISTANT) + len(ASSISTANT)
    own_r = rejected.rfind(ASSISTANT) + len(ASSISTANT)
    differs_earlier = not (own_c == end and own_r == end)
    return prompt, c, r, differs_earlier


def split_implicit_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    """TRL's implicit prompt for text: the longest shared prefix, backing off one character when
    it ends just after a space so the space stays with the completions (as
    ``trl.data_utils.extract_prompt`` does).

    >>> split_implicit_text("The sky is blue.", "The sky is green.")
    ('The sky is', ' blue.', ' green.')
    """
    n = common_prefix_len(chosen, rejected)
    if n == len(chosen) or n == len(rejected):
        # one is a prefix of the other: back off to the last space so both keep a completion
        n = max(chosen.rfind(" ", 0, n), 0)
    if n > 0 and chosen[n - 1] == " ":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def split_implicit_messages(
    chosen: list[Message], rejected: list[Message]
) -> tuple[list[Message], list[Message], list[Message]]:
    """Shared leading messages are the prompt; the rest are the two completions."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    n = min(n, len(chosen) - 1, len(rejected) - 1)
    return chosen[:n], chosen[n:], rejected[n:]


# ---------------------------------------------------------------------------------------------
# label parsing


_A = {"a", "model_a", "response_a", "first", "left", "1st", "output_1"}
_B = {"b", "model_b", "response_b", "second", "right", "2nd", "output_2"}
_TIE = {"tie", "draw", "equal", "both", "neither", "tie (bothbad)", "same", "none", "0.5"}


def parse_pair_label(value: Any, name: str) -> float:
    """P(response_a is better) from a pairwise label.

    Text: ``a``/``b``/``tie`` (also ``model_a``, ``model_b``, ``tie (bothbad)`` as in Chatbot Arena
    files). Numbers: a value in [0, 1] is P(a better) (1 = a, 0 = b, 0.5 = tie); a value in
    (1, 2] follows AlpacaEval's scale (1 = a, 2 = b, 1.5 = tie), so P(a) = 2 - value. The two
    scales agree at 1.

    >>> parse_pair_label("model_b", "winner"), parse_pair_label("tie", "winner")
    (0.0, 0.5)
    >>> parse_pair_label(0.8, "p_a"), parse_pair_label(2, "winner"), parse_pair_label("1.75", "winner")
    (0.8, 0.0, 0.25)
    """
    if isinstance(value, str):
        s = value.strip().lower()
        if s in _A:
            return 1.0
        if s in _B:
            return 0.0
        if s in _TIE:
            return 0.5
        try:
            value = float(s)
        except ValueError:
            raise RowError(
                f"unknown label {value[:40]!r} (expected a, b, tie or a number)", name
            ) from None
    v = as_number(value, name)
    if 0.0 <= v <= 1.0:
        return v
    if 1.0 < v <= 2.0:
        return 2.0 - v
    raise RowError(
        f"label {v:g} out of range (expected [0, 1] as P(a), or [1, 2] as 1=a, 2=b)", name
    )


def parse_alpaca_preference(value: Any, name: str) -> float:
    """P(output_2 is better) from AlpacaEval's ``preference``: 1 = output_1, 2 = output_2,
    a float in between is a soft label, 0 is a draw (as in ``alpaca_eval.metrics``).

    >>> parse_alpaca_preference(1, "preference"), parse_alpaca_preference(1.25, "preference"), parse_alpaca_preference(0, "preference")
    (0.0, 0.25, 0.5)
    """
    v = as_number(value, name)
    if v == 0.0:
        return 0.5
    if 1.0 <= v <= 2.0:
        return v - 1.0
    raise RowError(f"preference {v:g} out of range (expected 1..2, or 0 for a draw)", name)


_UP = {
    "up",
    "thumbs_up",
    "thumbsup",
    "👍",
    "+1",
    "1",
    "true",
    "yes",
    "good",
    "like",
    "liked",
    "positive",
    "pos",
}
_DOWN = {
    "down",
    "thumbs_down",
    "thumbsdown",
    "👎",
    "-1",
    "0",
    "false",
    "no",
    "bad",
    "dislike",
    "disliked",
    "negative",
    "neg",
}


def parse_thumbs(value: Any, name: str) -> int:
    """1 for thumbs up, 0 for thumbs down (bool, 1/0/-1 or words such as up/down, good/bad).

    >>> parse_thumbs(True, "label"), parse_thumbs("down", "thumbs"), parse_thumbs(-1, "vote")
    (1, 0, 0)
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value in (1, 1.0):
            return 1
        if value in (0, -1):
            return 0
        raise RowError(f"expected thumbs up/down, got {value!r}", name)
    if isinstance(value, str):
        s = value.strip().lower()
        if s in _UP:
            return 1
        if s in _DOWN:
            return 0
        raise RowError(f"expected thumbs up/down, got {value[:40]!r}", name)
    raise RowError(f"expected thumbs up/down, got {type_name(value)}", name)


# ---------------------------------------------------------------------------------------------
# converters: one row -> records


_TRL_KNOWN = (
    "prompt",
    "chosen",
    "rejected",
    "p_chosen",
    "margin",
    "origin",
    "prompt_id",
    "provenance",
)
_ORIGINS = ("human", "judge", "verifier", "rating", "synthetic")


def _record_extras(row: Mapping[str, Any], ctx: Ctx) -> dict[str, Any]:
    """p_chosen, margin, origin, prompt_id and provenance columns written by ``write_preferences``."""
    out: dict[str, Any] = {}
    if row.get("p_chosen") is not None and row.get("p_chosen") != "":
        p = as_number(row["p_chosen"], "p_chosen")
        if not 0.0 <= p <= 1.0:
            raise RowError(f"p_chosen {p:g} out of range [0, 1]", "p_chosen")
        out["p_chosen"] = p
    if row.get("margin") is not None and row.get("margin") != "":
        m = row["margin"]
        if not (isinstance(m, float) and math.isnan(m)):
            out["margin"] = as_number(m, "margin")
    if row.get("origin") not in (None, ""):
        if row["origin"] not in _ORIGINS:
            raise RowError(f"origin must be one of {', '.join(_ORIGINS)}", "origin")
        out["origin"] = row["origin"]
    out["prompt_id"] = _optional_str(row, "prompt_id")
    prov = row.get("provenance")
    if prov not in (None, ""):
        if not isinstance(prov, dict):
            if isinstance(prov, str):
                prov = json_text(prov, "provenance")
            if not isinstance(prov, dict):
                raise RowError("expected an object (or its JSON text)", "provenance")
        out["provenance"] = _jsonable(prov)
    return out


def harmonise(
    prompt: Prompt, chosen: str | list[Message], rejected: str | list[Message]
) -> tuple[Prompt, str | list[Message], str | list[Message]]:
    """TRL wants all three text or all three messages: when any is a message list, wrap the text
    ones (the prompt as a user turn, a response as an assistant turn).

    >>> harmonise("hi", [{"role": "assistant", "content": "yo"}], "no")[0]
    [{'role': 'user', 'content': 'hi'}]
    """
    if not any(isinstance(x, list) for x in (prompt, chosen, rejected)):
        return prompt, chosen, rejected

    def wrap(x: Any, role: str) -> list[Message]:
        return x if isinstance(x, list) else [{"role": role, "content": x}]

    return wrap(prompt, "user"), wrap(chosen, "assistant"), wrap(rejected, "assistant")


def _make(
    prompt: Prompt,
    chosen: str | list[Message],
    rejected: str | list[Message],
    ctx: Ctx,
    *,
    p_chosen: float = 1.0,
    margin: float | None = None,
    origin: str = "human",
    prompt_id: str = "",
    provenance: dict[str, Any] | None = None,
) -> PreferenceRecord:
    prompt, chosen, rejected = harmonise(prompt, chosen, rejected)
    check_distinct(chosen, rejected)
    prov = dict(provenance or {})
    # A file written by write_preferences carries the original file/line/format: keep them.
    for k, v in ctx.provenance().items():
        prov.setdefault(k, v)
    return PreferenceRecord(
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        prompt_id=prompt_id or prompt_key(prompt),
        p_chosen=p_chosen,
        margin=margin,
        origin=origin,  # type: ignore[arg-type]
        provenance=prov,
    )


def convert_trl(row: Mapping[str, Any], ctx: Ctx) -> list[PreferenceRecord]:
    """TRL standard / conversational rows (with or without a prompt column)."""
    chosen = response_field(row, "chosen", ctx)
    rejected = response_field(row, "rejected", ctx)
    if "prompt" in row and row["prompt"] is not None:
        prompt = prompt_field(row, "prompt", ctx)
    elif isinstance(chosen, list) and isinstance(rejected, list):
        prompt, chosen, rejected = split_implicit_messages(chosen, rejected)
        if not prompt:
            raise RowError("no prompt column and no shared leading messages", "prompt")
    elif isinstance(chosen, str) and isinstance(rejected, str):
        prompt, chosen, rejected = split_implicit_text(chosen, rejected)
        if not prompt.strip():
            raise RowError(
                "no prompt column and chosen/rejected share no prefix (map one with --prompt-col)",
                "prompt",
            )
    else:
        raise RowError(
            "without a prompt column, chosen and rejected must both be text or both be messages",
            "rejected",
        )
    kw = _record_extras(row, ctx)
    prov = dict(kw.pop("provenance", {}))
    prov.update(extras(row, _TRL_KNOWN))
    return [_make(prompt, chosen, rejected, ctx, provenance=prov, **kw)]


def convert_hh(row: Mapping[str, Any], ctx: Ctx) -> list[PreferenceRecord]:
    """Anthropic HH-RLHF: two full transcripts -> shared prompt + final replies."""
    chosen = text_field(row, "chosen")
    rejected = text_field(row, "rejected")
    check_distinct(chosen, rejected)
    prompt, c, r, earlier = split_hh(chosen, rejected)
    prov = extras(row, ("chosen", "rejected"))
    if earlier:
        prov["hh_split"] = "differs_earlier"
    return [_make(prompt, c, r, ctx, provenance=prov)]


def _pair_prompt(row: Mapping[str, Any], ctx: Ctx) -> tuple[str, Prompt]:
    key = _first_key(row, PROMPT_KEYS)
    if key is None:
        raise RowError("missing field", "prompt")
    return key, prompt_field(row, key, ctx)


def _pair_sources(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    a = row.get("model_a", row.get("source_a", row.get("generator_a")))
    b = row.get("model_b", row.get("source_b", row.get("generator_b")))
    return (str(a) if a not in (None, "") else None, str(b) if b not in (None, "") else None)


def pairwise_parts(
    row: Mapping[str, Any], ctx: Ctx, *, need_label: bool
) -> tuple[Prompt, str | list[Message], str | list[Message], float | None, dict[str, Any]]:
    """(prompt, a, b, P(a better) or None, provenance extras) of a pairwise row."""
    pkey, prompt = _pair_prompt(row, ctx)
    a = response_field(row, "response_a", ctx)
    b = response_field(row, "response_b", ctx)
    lkey = _first_key(row, LABEL_KEYS)
    p_a: float | None = None
    if lkey is not None and row.get(lkey) not in (None, ""):
        p_a = parse_pair_label(row[lkey], lkey)
    elif need_label:
        raise RowError("missing label (winner, label, preference or p_a)", lkey or "winner")
    src_a, src_b = _pair_sources(row)
    used = {
        pkey,
        "response_a",
        "response_b",
        "model_a",
        "model_b",
        "source_a",
        "source_b",
        "generator_a",
        "generator_b",
    }
    if lkey:
        used.add(lkey)
    prov = extras(row, used)
    prov.update({"source_a": src_a, "source_b": src_b})
    return prompt, a, b, p_a, {k: v for k, v in prov.items() if v is not None}


def _from_pair(
    prompt: Prompt,
    a: str | list[Message],
    b: str | list[Message],
    p_a: float,
    prov: dict[str, Any],
    ctx: Ctx,
    *,
    prompt_id: str = "",
    origin: str = "human",
) -> PreferenceRecord:
    """Chosen is the side the label prefers; a tie keeps a as chosen with p_chosen = 0.5."""
    src_a, src_b = prov.pop("source_a", None), prov.pop("source_b", None)
    if p_a >= 0.5:
        side, chosen, rejected, p, sc, sr = "a", a, b, p_a, src_a, src_b
    else:
        side, chosen, rejected, p, sc, sr = "b", b, a, 1.0 - p_a, src_b, src_a
    prov["chosen_side"] = side
    if sc is not None:
        prov["source_chosen"] = sc
    if sr is not None:
        prov["source_rejected"] = sr
    return _make(
        prompt,
        chosen,
        rejected,
        ctx,
        p_chosen=p,
        prompt_id=prompt_id,
        origin=origin,
        provenance=prov,
    )


def convert_pairwise(row: Mapping[str, Any], ctx: Ctx) -> list[PreferenceRecord]:
    prompt, a, b, p_a, prov = pairwise_parts(row, ctx, need_label=True)
    assert p_a is not None
    check_distinct(a, b)
    pid = _optional_str(row, "prompt_id")
    prov.pop("prompt_id", None)
    return [_from_pair(prompt, a, b, p_a, prov, ctx, prompt_id=pid)]


def convert_alpaca(row: Mapping[str, Any], ctx: Ctx) -> list[PreferenceRecord]:
    """AlpacaEval annotations; ``generator_1``/``generator_2`` become the sources."""
    prompt = text_field(row, "instruction")
    o1 = text_field(row, "output_1")
    o2 = text_field(row, "output_2")
    p2 = parse_alpaca_preference(require(row, "preference"), "preference")
    check_distinct(o1, o2)
    prov = extras(
        row, ("instruction", "output_1", "output_2", "preference", "generator_1", "generator_2")
    )
    for k_ours, k_theirs in (("source_a", "generator_1"), ("source_b", "generator_2")):
        if row.get(k_theirs) not in (None, ""):
            prov[k_ours] = str(row[k_theirs])
    return [_from_pair(prompt, o1, o2, 1.0 - p2, prov, ctx, origin="judge")]


def convert_ranked(row: Mapping[str, Any], ctx: Ctx) -> list[PreferenceRecord]:
    """Ranked responses best -> worst give every pair (i < j): i is chosen (InstructGPT,
    Ouyang et al. 2022, sec. 3.5: all K(K-1)/2 comparisons of a prompt)."""
    pkey, prompt = _pair_prompt(row, ctx)
    rkey = _first_key(row, RANKED_KEYS) or "responses"
    value = _decode_cell(require(row, rkey), ctx, any_list=True, name=rkey)
    if not isinstance(value, list):
        raise RowError(f"expected a list of responses, got {type_name(value)}", rkey)
    if len(value) < 2:
        raise RowError("need at least 2 ranked responses", rkey)
    check_pair_count(len(value) * (len(value) - 1) // 2, f"{len(value):,} ranked responses", rkey)
    responses: list[str | list[Message]] = []
    for i, v in enumerate(value):
        responses.append(
            as_messages(v, f"{rkey}[{i}]") if isinstance(v, list) else as_text(v, f"{rkey}[{i}]")
        )
    for i in range(len(responses)):
        for j in range(i):
            if responses[i] == responses[j]:
                raise RowError(f"responses {j} and {i} are identical", rkey)
    sources = row.get("sources") or row.get("models")
    if sources is not None and (not isinstance(sources, list) or len(sources) != len(responses)):
        raise RowError("sources must be a list as long as the responses", "sources")
    pid = _optional_str(row, "prompt_id")
    base = extras(row, (pkey, rkey, "sources", "models", "prompt_id"))
    out = []
    k = len(responses)
    for i in range(k):
        for j in range(i + 1, k):
            prov = dict(base, rank_chosen=i, rank_rejected=j)
            if sources is not None:
                prov["source_chosen"], prov["source_rejected"] = str(sources[i]), str(sources[j])
            out.append(
                _make(
                    prompt,
                    responses[i],
                    responses[j],
                    ctx,
                    margin=float(j - i),
                    prompt_id=pid,
                    provenance=prov,
                )
            )
    return out


def check_pair_count(pairs: int, what: str, name: str | None) -> None:
    """Refuse a row (or prompt group) that would expand into more than
    ``JUDGE_RL_MAX_PAIRS_PER_ROW`` pairs, before any pair is built."""
    cap = limit("JUDGE_RL_MAX_PAIRS_PER_ROW")
    if pairs > cap:
        raise RowError(
            f"{what} would give {pairs:,} pairs, over the limit of {cap:,} "
            "(JUDGE_RL_MAX_PAIRS_PER_ROW)",
            name,
        )


@dataclass
class Unit:
    """One rated response (thumbs/ratings rows), before pairing within its prompt."""

    key: str
    prompt: Prompt
    prompt_id: str
    response: str | list[Message]
    value: float
    source: str | None
    line: int
    extra: dict[str, Any] = field(default_factory=dict)


def convert_unit(row: Mapping[str, Any], ctx: Ctx) -> Unit:
    """A thumbs or ratings row -> :class:`Unit` (paired later by :func:`pair_units`)."""
    pkey, prompt = _pair_prompt(row, ctx)
    rkey = _first_key(row, RESPONSE_KEYS) or "response"
    response = response_field(row, rkey, ctx)
    if ctx.fmt == "ratings":
        vkey = _first_key(row, RATING_KEYS) or "rating"
        value = as_number(require(row, vkey), vkey)
    else:
        vkey = _first_key(row, THUMBS_KEYS) or "thumbs"
        value = float(parse_thumbs(require(row, vkey), vkey))
    skey = _first_key(row, SOURCE_KEYS)
    source = _optional_str(row, skey) or None if skey else None
    pid = _optional_str(row, "prompt_id")
    key = pid or prompt_key(prompt)
    extra = extras(row, {pkey, rkey, vkey, "prompt_id", *(k for k in [skey] if k)})
    return Unit(key, prompt, pid, response, value, source, ctx.line, extra)


def pair_units(units: list[Unit], file: str, fmt: str) -> list[PreferenceRecord]:
    """Pairs within each prompt: every (better, worse) with different values.

    thumbs: each up x each down. ratings: each pair with different ratings, ``margin`` = rating
    difference (for the margin term of Llama 2's reward-model loss, Touvron et al. 2023, eq. 2).
    Identical responses and equal ratings give no pair.
    """
    groups: dict[str, list[Unit]] = {}
    for u in units:
        groups.setdefault(u.key, []).append(u)
    for group in groups.values():
        n = len(group)
        if n * (n - 1) // 2 > limit("JUDGE_RL_MAX_PAIRS_PER_ROW"):
            same = sum(c * (c - 1) // 2 for c in Counter(u.value for u in group).values())
            try:
                check_pair_count(
                    n * (n - 1) // 2 - same, f"{n:,} rated responses to one prompt", "prompt_id"
                )
            except RowError as e:
                from judge_rl.errors import DataError

                raise DataError(e.reason, file=file, line=group[0].line, field=e.field) from None
    out: list[PreferenceRecord] = []
    for group in groups.values():
        ordered = sorted(group, key=lambda u: (-u.value, u.line))
        for i, hi in enumerate(ordered):
            for lo in ordered[i + 1 :]:
                if hi.value <= lo.value or hi.response == lo.response:
                    continue
                ctx = Ctx(file, hi.line, fmt)
                prov = dict(hi.extra)
                prov["lines"] = [hi.line, lo.line]
                if fmt == "ratings":
                    prov["rating_chosen"], prov["rating_rejected"] = hi.value, lo.value
                if hi.source:
                    prov["source_chosen"] = hi.source
                if lo.source:
                    prov["source_rejected"] = lo.source
                margin = hi.value - lo.value if fmt == "ratings" else None
                out.append(
                    _make(
                        hi.prompt,
                        hi.response,
                        lo.response,
                        ctx,
                        margin=margin,
                        origin="rating",
                        prompt_id=hi.prompt_id,
                        provenance=prov,
                    )
                )
    return out


CONVERTERS = {
    "trl": convert_trl,
    "conversational": convert_trl,
    "trl-implicit": convert_trl,
    "hh-rlhf": convert_hh,
    "pairwise": convert_pairwise,
    "ranked": convert_ranked,
    "alpaca-eval": convert_alpaca,
}


# ---------------------------------------------------------------------------------------------
# GSM8K


def gsm8k_final_answer(answer: str) -> str:
    """The final answer of a GSM8K solution: the text after ``####``, commas removed.

    >>> gsm8k_final_answer("16 - 3 - 4 = 9\\n#### 1,018")
    '1018'
    """
    if "####" not in answer:
        raise RowError("no '####' final answer", "answer")
    final = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not final:
        raise RowError("empty final answer after '####'", "answer")
    return final
