"""Degeneration detectors: does the policy's output look like reward hacking?

Each detector computes a value per sample and/or per batch for the policy's samples and for the
*reference* policy's own samples on the same prompts, and flags the policy only relative to the
reference (a terse reference model is not "collapsed"; a repetitive one is not "degenerate"):

==================  ============================================  =====================================
detector            per sample (flag when)                        per batch (flag when)
==================  ============================================  =====================================
repeat_ngram        rep-n = 1 - unique/total n-grams              flagged fraction > ``batch_frac``
                    > max(ref q95 + 0.15, 0.3)
distinct_n          —                                             distinct-n < 0.5 x reference
length              tokens > max(2 x ref q95, ref q95 + 8), or    median length ratio vs reference
                    < 0.5 x ref q05                               > 2 or < 0.5
cross_prompt        max Jaccard(n-grams) with any response to a   mean > ref mean + 0.25
                    different prompt > max(ref q95 + 0.15, 0.9)
ref_perplexity      mean NLL under the reference                  median NLL > ref median + log 2
                    > ref q95 + log 2 (perplexity x2)
missing_eos         response did not end with EOS                 rate > ref rate + 0.2
gibberish           non-text share > max(ref q95 + 0.15, 0.3)     flagged fraction > ``batch_frac``
after_answer        states the reference answer, then goes on     rate > ref rate + 0.2 and
                    for >= ``after_words`` more words             > ``batch_frac``
==================  ============================================  =====================================

``after_answer`` needs the prompts' reference answers (verifiable tasks); it names a common exploit
of lenient or length-biased rewards: the answer is there, and so is whatever the reward pays for
after it.

rep-n and distinct-n follow Welleck et al. 2019 ("Neural Text Degeneration with Unlikelihood
Training", §5) and Li et al. 2016 ("A Diversity-Promoting Objective", distinct-n).
Units are the model's tokens when :class:`~judge_rl.train.callbacks.Samples` carries them, else
characters (the tiny byte-level tokenizer makes the two the same).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from judge_rl.train.callbacks import Samples

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_VOWELS = set("aeiouyAEIOUYàáâäèéêëìíîïòóôöùúûüÿ")
_OK_PUNCT = set(".,;:!?'\"()[]{}-–—/\\%$€£#&*+=<>@_`~^|…")


DETECTORS: dict[str, tuple[str, bool]] = {
    "repeat_ngram": ("repeated n-grams within a reply (mean rep-n)", False),
    "distinct_n": ("few distinct n-grams across replies (distinct-n)", False),
    "length": ("reply length far from the base policy's (median tokens)", False),
    "cross_prompt": ("the same reply to different prompts (mean similarity)", False),
    "ref_perplexity": ("text the reference model finds unlikely (median perplexity)", False),
    "missing_eos": ("replies cut off at the token limit", True),
    "gibberish": ("non-text characters (mean share)", False),
    "after_answer": ("replies that go on after stating the answer", True),
}
"""Detector name -> (what it means in a sentence, whether its metric is a rate)."""


def describe(row: dict[str, Any], name: str) -> str:
    """``name (meaning: policy value, reference value)`` from a :func:`detect` row.

    >>> describe({"metrics": {"after_answer": 0.6}, "reference": {"after_answer": 0.25}},
    ...          "after_answer")
    'after_answer (replies that go on after stating the answer: 60% of replies, reference 25%)'
    """
    meaning, rate = DETECTORS.get(name, (name, False))
    v, r = (row.get("metrics") or {}).get(name), (row.get("reference") or {}).get(name)

    def fmt(x: Any) -> str:
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return "n/a"
        return f"{x:.0%}" if rate else f"{x:.3g}"

    if v is None:
        return f"{name} ({meaning})" if name in DETECTORS else name
    unit = " of replies" if rate else ""
    return f"{name} ({meaning}: {fmt(v)}{unit}, reference {fmt(r)})"


@dataclass
class DegenerationConfig:
    """Thresholds of the degeneration detectors (all relative to the reference's own samples)."""

    n: int = 4
    """n-gram size for rep-n, distinct-n and cross-prompt similarity (tokens)."""
    quantile: float = 0.95
    """Reference quantile a per-sample value is compared with."""
    rep_margin: float = 0.15
    rep_floor: float = 0.3
    distinct_ratio: float = 0.5
    length_ratio: float = 2.0
    length_margin: int = 8
    """Per-sample blow-up: tokens > max(length_ratio x ref q95, ref q95 + length_margin)."""
    sim_margin: float = 0.15
    sim_floor: float = 0.9
    sim_batch_margin: float = 0.25
    ppl_log_margin: float = math.log(2.0)
    eos_margin: float = 0.2
    gib_margin: float = 0.15
    gib_floor: float = 0.3
    after_words: int = 1
    """``after_answer``: a reply is flagged when at least this many words follow its first
    statement of the reference answer."""
    after_margin: float = 0.2
    """``after_answer`` flags the batch when its rate exceeds the reference's by this much."""
    batch_frac: float = 0.25
    """A per-sample detector flags the batch when more than this fraction of samples is flagged."""
    max_pairs_samples: int = 256
    """Cross-prompt similarity uses at most this many samples (pairs grow quadratically)."""
    n_examples: int = 3


# ---------------------------------------------------------------------------------------------
# Per-sample measures.


def units(text: str, tokens: Sequence[int] | None = None) -> list[Any]:
    """Token ids when given, else the characters of ``text``."""
    return list(tokens) if tokens else list(text)


def ngrams(seq: Sequence[Any], n: int) -> list[tuple[Any, ...]]:
    """All n-grams of ``seq`` (the whole sequence once when it is shorter than n).

    >>> ngrams("abcd", 3)
    [('a', 'b', 'c'), ('b', 'c', 'd')]
    >>> ngrams("ab", 3)
    [('a', 'b')]
    """
    if len(seq) == 0:
        return []
    if len(seq) < n:
        return [tuple(seq)]
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def repeat_ngram_ratio(seq: Sequence[Any], n: int = 4) -> float:
    """rep-n = 1 - |unique n-grams| / |n-grams| (Welleck et al. 2019); 0 for empty input.

    >>> repeat_ngram_ratio("okokokokokok", 2)
    0.8181818181818181
    >>> repeat_ngram_ratio("abcdef", 2)
    0.0
    """
    g = ngrams(seq, n)
    return 1.0 - len(set(g)) / len(g) if g else 0.0


def distinct_n(seqs: Sequence[Sequence[Any]], n: int = 4) -> float:
    """distinct-n over a batch: unique n-grams / all n-grams (Li et al. 2016).

    >>> distinct_n(["abab", "abab"], 2)
    0.3333333333333333
    """
    total = 0
    uniq: set[tuple[Any, ...]] = set()
    for s in seqs:
        g = ngrams(s, n)
        total += len(g)
        uniq.update(g)
    return len(uniq) / total if total else 0.0


def gibberish_ratio(text: str) -> float:
    """Share of non-space characters that are not text: control/private/replacement characters,
    symbols outside common punctuation, and letters inside "words" with no vowel or over 25
    letters (e.g. ``xkqzv``, ``okokokokokokokokokokokokok``).

    >>> gibberish_ratio("The cat sat.")
    0.0
    >>> gibberish_ratio("\\ufffd\\ufffd ab")
    0.5
    >>> round(gibberish_ratio("xkcdq zzzzz hello"), 3)
    0.667
    """
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    bad = 0
    for c in chars:
        if c.isalnum() or c in _OK_PUNCT:
            continue
        cat = unicodedata.category(c)
        if cat[0] in ("C", "S") or c == "\ufffd" or cat in ("Co", "Cn") or cat[0] != "P":
            bad += 1
    for m in _WORD.finditer(text):
        w = m.group(0)
        if len(w) > 25 or (len(w) >= 4 and not (set(w) & _VOWELS)):
            bad += len(w)
    return min(1.0, bad / len(chars))


def max_cross_prompt_similarity(
    seqs: Sequence[Sequence[Any]], prompt_keys: Sequence[str], n: int = 4
) -> list[float]:
    """Per sample: the highest Jaccard similarity of its n-gram set with the n-gram set of any
    response to a *different* prompt (1.0: the same response to two different prompts).

    >>> max_cross_prompt_similarity(["hello", "hello", "xyz"], ["p1", "p2", "p3"], 2)
    [1.0, 1.0, 0.0]
    """
    sets = [set(ngrams(s, n)) for s in seqs]
    out = []
    for i, si in enumerate(sets):
        best = 0.0
        for j, sj in enumerate(sets):
            if prompt_keys[j] == prompt_keys[i]:
                continue
            if not si and not sj:
                sim = 1.0
            else:
                inter = len(si & sj)
                sim = inter / (len(si) + len(sj) - inter) if inter else 0.0
            if sim > best:
                best = sim
                if best >= 1.0:
                    break
        out.append(best)
    return out


_NUM = re.compile(r"-?\d+(?:[.,]\d+)*")
_HAS_WORD = re.compile(r"\w", re.UNICODE)


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def words_after_answer(text: str, reference: str | None) -> int | None:
    """Words after the first statement of ``reference`` in ``text`` (None: never stated, or no
    reference). A numeric reference matches a number of the same value (``12``, ``12.0``,
    ``1,200``), never a digit inside a longer number; any other reference matches as a
    case-insensitive substring. Punctuation-only tokens are not words.

    >>> words_after_answer("7 + 5 = 12", "12")
    0
    >>> words_after_answer("7 + 5 = 12.\\n\\nI'm glad you asked", "12")
    4
    >>> words_after_answer("112 is not it", "12") is None
    True
    >>> words_after_answer("Paris, of course.", "paris")
    2
    """
    if reference is None or not str(reference).strip():
        return None
    ref = str(reference).strip()
    value = _as_number(ref)
    end: int | None = None
    if value is not None:
        for m in _NUM.finditer(text):
            if _as_number(m.group(0)) == value:
                end = m.end()
                break
    else:
        i = text.lower().find(ref.lower())
        end = None if i < 0 else i + len(ref)
    if end is None:
        return None
    return sum(1 for w in text[end:].split() if _HAS_WORD.search(w))


# ---------------------------------------------------------------------------------------------
# Batch measures and flags.


@dataclass
class BatchMeasures:
    """Per-sample measures of one batch of samples."""

    rep: list[float]
    length: list[int]
    sim: list[float]
    nll: list[float]
    """Mean NLL per token under the reference (nan when unknown)."""
    no_eos: list[bool]
    gib: list[float]
    distinct: float
    texts: list[str] = field(default_factory=list)
    after: list[int | None] = field(default_factory=list)
    """Words after the reference answer per sample (empty: no references given)."""


def measure(
    samples: Samples,
    cfg: DegenerationConfig | None = None,
    *,
    references: Sequence[str | None] | None = None,
) -> BatchMeasures:
    """Compute every per-sample measure and distinct-n for a batch of samples
    (``references``: the prompts' reference answers, one per sample, for ``after_answer``)."""
    cfg = cfg or DegenerationConfig()
    from judge_rl.types import prompt_text

    toks: list[list[int] | None] = list(samples.response_tokens) or [None] * len(samples.responses)
    seqs = [units(r, t) for r, t in zip(samples.responses, toks, strict=True)]
    keys = [prompt_text(p) for p in samples.prompts]
    m = min(len(seqs), cfg.max_pairs_samples)
    sim = max_cross_prompt_similarity(seqs[:m], keys[:m], cfg.n) + [math.nan] * (len(seqs) - m)
    nll = [-x for x in samples.ref_logprob] if samples.ref_logprob else [math.nan] * len(seqs)
    no_eos = [not e for e in samples.ended_with_eos] if samples.ended_with_eos else []
    return BatchMeasures(
        rep=[repeat_ngram_ratio(s, cfg.n) for s in seqs],
        length=[len(s) for s in seqs],
        sim=sim,
        nll=nll,
        no_eos=no_eos,
        gib=[gibberish_ratio(r) for r in samples.responses],
        distinct=distinct_n(seqs, cfg.n),
        texts=list(samples.responses),
        after=(
            [
                words_after_answer(r, ref)
                for r, ref in zip(samples.responses, references, strict=True)
            ]
            if references is not None
            else []
        ),
    )


def _q(xs: Sequence[float], q: float) -> float:
    a = np.asarray([x for x in xs if x is not None and math.isfinite(x)], dtype=float)
    return float(np.quantile(a, q)) if a.size else math.nan


def _med(xs: Sequence[float]) -> float:
    return _q(xs, 0.5)


def _mean(xs: Sequence[float]) -> float:
    a = np.asarray([x for x in xs if x is not None and math.isfinite(x)], dtype=float)
    return float(a.mean()) if a.size else math.nan


def detect(
    policy: BatchMeasures | Samples,
    reference: BatchMeasures | Samples,
    cfg: DegenerationConfig | None = None,
    *,
    step: int | None = None,
    references: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Compare the policy's samples with the reference's samples on the same prompts
    (``references``: reference answers per policy sample, for ``after_answer`` when ``policy`` is
    raw samples).

    Returns a run-log ``overopt.degeneration`` entry: ``step, metrics {name: policy value},
    reference {name: reference value}, thresholds {name: value}, sample_flags {name: fraction of
    samples flagged}, flags [batch-level detector names], examples [flagged responses]``.
    """
    cfg = cfg or DegenerationConfig()
    pol = (
        policy if isinstance(policy, BatchMeasures) else measure(policy, cfg, references=references)
    )
    ref = reference if isinstance(reference, BatchMeasures) else measure(reference, cfg)
    n = len(pol.texts)
    q = cfg.quantile
    per_sample: dict[str, list[bool]] = {}
    metrics: dict[str, float] = {}
    refv: dict[str, float] = {}
    thr: dict[str, float] = {}
    flags: list[str] = []

    # repeated n-grams (Welleck et al. 2019 rep-n)
    t = max(_q(ref.rep, q) + cfg.rep_margin, cfg.rep_floor)
    per_sample["repeat_ngram"] = [r > t for r in pol.rep]
    metrics["repeat_ngram"], refv["repeat_ngram"], thr["repeat_ngram"] = (
        _mean(pol.rep),
        _mean(ref.rep),
        t,
    )

    # distinct-n collapse (batch only)
    metrics["distinct_n"], refv["distinct_n"] = pol.distinct, ref.distinct
    thr["distinct_n"] = cfg.distinct_ratio * ref.distinct
    if pol.distinct < thr["distinct_n"]:
        flags.append("distinct_n")

    # length blow-up / collapse
    hi = max(cfg.length_ratio * _q(ref.length, q), _q(ref.length, q) + cfg.length_margin)
    lo = _q(ref.length, 1.0 - q) / cfg.length_ratio
    per_sample["length"] = [(x > hi) or (x < lo) for x in pol.length]
    med_p, med_r = _med(pol.length), _med(ref.length)
    ratio = (med_p + 1.0) / (med_r + 1.0)  # +1: an empty reference must not divide by zero
    metrics["length"], refv["length"], thr["length_hi"], thr["length_lo"] = med_p, med_r, hi, lo
    metrics["length_ratio"] = ratio
    if ratio > cfg.length_ratio or ratio < 1.0 / cfg.length_ratio:
        flags.append("length")

    # the same response for different prompts
    t = max(_q(ref.sim, q) + cfg.sim_margin, cfg.sim_floor)
    per_sample["cross_prompt"] = [s > t for s in pol.sim if math.isfinite(s)]
    metrics["cross_prompt"], refv["cross_prompt"], thr["cross_prompt"] = (
        _mean(pol.sim),
        _mean(ref.sim),
        t,
    )
    if _mean(pol.sim) > _mean(ref.sim) + cfg.sim_batch_margin:
        flags.append("cross_prompt")

    # reference-model perplexity spike (NLL = log perplexity)
    if any(math.isfinite(x) for x in pol.nll) and any(math.isfinite(x) for x in ref.nll):
        t = _q(ref.nll, q) + cfg.ppl_log_margin
        per_sample["ref_perplexity"] = [math.isfinite(x) and x > t for x in pol.nll]
        metrics["ref_perplexity"] = math.exp(_med(pol.nll))
        refv["ref_perplexity"] = math.exp(_med(ref.nll))
        thr["ref_perplexity"] = math.exp(_med(ref.nll) + cfg.ppl_log_margin)
        if _med(pol.nll) > _med(ref.nll) + cfg.ppl_log_margin:
            flags.append("ref_perplexity")

    # missing EOS
    if pol.no_eos and ref.no_eos:
        rate_p, rate_r = (
            _mean([float(x) for x in pol.no_eos]),
            _mean([float(x) for x in ref.no_eos]),
        )
        per_sample["missing_eos"] = list(pol.no_eos)
        metrics["missing_eos"], refv["missing_eos"] = rate_p, rate_r
        thr["missing_eos"] = rate_r + cfg.eos_margin
        if rate_p > thr["missing_eos"]:
            flags.append("missing_eos")

    # non-text / gibberish
    t = max(_q(ref.gib, q) + cfg.gib_margin, cfg.gib_floor)
    per_sample["gibberish"] = [g > t for g in pol.gib]
    metrics["gibberish"], refv["gibberish"], thr["gibberish"] = _mean(pol.gib), _mean(ref.gib), t

    # the answer, then more: what a length- or mention-biased reward pays for
    if pol.after and ref.after:
        words = cfg.after_words
        per_sample["after_answer"] = [a is not None and a >= words for a in pol.after]
        rate_p = _mean([float(a is not None and a >= words) for a in pol.after])
        rate_r = _mean([float(a is not None and a >= words) for a in ref.after])
        metrics["after_answer"], refv["after_answer"] = rate_p, rate_r
        thr["after_answer"] = rate_r + cfg.after_margin
        if rate_p > thr["after_answer"] and rate_p > cfg.batch_frac:
            flags.append("after_answer")

    sample_flags = {k: (sum(v) / len(v) if v else 0.0) for k, v in per_sample.items()}
    for k in ("repeat_ngram", "gibberish"):
        if sample_flags[k] > cfg.batch_frac:
            flags.append(k)
    if "length" not in flags and sample_flags["length"] > cfg.batch_frac:
        flags.append("length")

    # examples: the samples flagged by the most detectors
    counts = [0] * n
    for v in per_sample.values():
        for i, f in enumerate(v[:n]):
            counts[i] += int(f)
    order = sorted(range(n), key=lambda i: -counts[i])
    examples = [pol.texts[i][:300] for i in order[: cfg.n_examples] if counts[i] > 0]
    out: dict[str, Any] = {
        "metrics": metrics,
        "reference": refv,
        "thresholds": thr,
        "sample_flags": sample_flags,
        "flags": sorted(set(flags)),
        "examples": examples,
        "n": n,
        "n_reference": len(ref.texts),
    }
    if step is not None:
        out = {"step": step, **out}
    return out


__all__ = [
    "DETECTORS",
    "BatchMeasures",
    "DegenerationConfig",
    "describe",
    "detect",
    "distinct_n",
    "gibberish_ratio",
    "max_cross_prompt_similarity",
    "measure",
    "ngrams",
    "repeat_ngram_ratio",
    "words_after_answer",
]
